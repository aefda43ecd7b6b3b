//! The dashboard notification: one signed JSON POST to `relay_url` per newly
//! recorded event, sent after Vapi has its answer so a slow or dead relay never
//! delays or fails the webhook. What it says and how it is signed is decided
//! here; the host adapter only sends the bytes.

use crate::standard_webhooks::{self, SigningKey};
use thiserror::Error;

/// Longest the relay may take, connection to last byte of its answer.
pub const TIMEOUT_MS: u64 = 2_000;

/// Why a notification got no answer (a non-2xx answer is a status, not this).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayError {
    #[error("relay_url: {0}")]
    InvalidUrl(&'static str),
    /// The host would not send it (e.g. not in `allowed_outbound_hosts`).
    #[error("refused: {0}")]
    Refused(String),
    #[error("no answer within {TIMEOUT_MS} ms")]
    Timeout,
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Transport(String),
}

/// A notification ready to send.
pub struct Notification {
    pub url: String,
    pub key: Option<SigningKey>,
    /// The Standard Webhooks `webhook-id`: stable per event, so the relay can
    /// drop a repeat.
    pub message_id: String,
    pub body: Vec<u8>,
}

impl Notification {
    /// The request headers at `now_ms`: JSON, its length (the body is known,
    /// so no chunked encoding, which some receivers refuse), and the Standard
    /// Webhooks signature when there is a key.
    pub fn headers(&self, now_ms: i64) -> Vec<(String, Vec<u8>)> {
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), b"application/json".to_vec()),
            (
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ),
            ("user-agent".into(), b"vapi-edge".to_vec()),
        ];
        if let Some(key) = &self.key {
            let signed =
                standard_webhooks::headers(key, &self.message_id, now_ms / 1000, &self.body);
            headers.extend(
                signed
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value.into_bytes())),
            );
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    #[test]
    fn signed_headers_verify_and_carry_the_length() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let notification = Notification {
            url: "http://127.0.0.1:8787/events".into(),
            key: Some(key),
            message_id: "msg_1".into(),
            body: br#"{"type":"call.event"}"#.to_vec(),
        };
        let headers: Headers = notification
            .headers(1_700_000_000_000)
            .into_iter()
            .collect();
        assert_eq!(headers.one("content-length").unwrap(), Some("21"));
        assert_eq!(headers.one("webhook-id").unwrap(), Some("msg_1"));
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        standard_webhooks::verify(&key, &headers, &notification.body, 1_700_000_000).unwrap();
    }

    #[test]
    fn without_a_key_nothing_is_signed() {
        let notification = Notification {
            url: "http://relay/events".into(),
            key: None,
            message_id: "msg_1".into(),
            body: b"{}".to_vec(),
        };
        let names: Vec<String> = notification
            .headers(0)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["content-type", "content-length", "user-agent"]);
    }
}
