//! An HTTP request the component sends (a POST to the dashboard relay or the
//! upstream, a GET to Vapi's API), as the flow describes it and the host
//! adapter carries it out.

use thiserror::Error;

/// Largest answer read back: an upstream's JSON, or its `voice-request` audio.
pub const MAX_REPLY_BYTES: usize = 5 * 1024 * 1024;

/// A POST with its whole body known (so it is sent with `content-length`,
/// never chunked: some receivers and proxies refuse chunked requests), or a
/// GET (`get`; no body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// GET instead of POST.
    pub get: bool,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// From sending to the last byte of the answer.
    pub timeout_ms: u64,
}

/// The answer, read whole (up to [`MAX_REPLY_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundReply {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Retry-After` (a 429's or a 503's), as sent.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// Why there is no answer (a non-2xx answer is a reply, not this).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutboundError {
    #[error("invalid URL: {0}")]
    InvalidUrl(&'static str),
    /// The host would not send it (e.g. not in `allowed_outbound_hosts`).
    #[error("refused: {0}")]
    Refused(String),
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("answer larger than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Transport(String),
}

/// The headers every POST with a JSON body carries.
pub fn json_headers(body_len: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        ("content-type".into(), b"application/json".to_vec()),
        ("content-length".into(), body_len.to_string().into_bytes()),
        ("user-agent".into(), b"vapi-edge".to_vec()),
    ]
}
