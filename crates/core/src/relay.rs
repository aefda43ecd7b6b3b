//! The dashboard notification: one signed JSON POST to `relay_url` per newly
//! recorded event, sent after Vapi has its answer so a slow or dead relay never
//! delays or fails the webhook. What it says and how it is signed is decided
//! here; the host adapter only sends the bytes.

use crate::outbound::{self, OutboundRequest};
use crate::standard_webhooks::{self, SigningKey};

/// Longest the relay may take, connection to last byte of its answer.
pub const TIMEOUT_MS: u64 = 2_000;

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
        signed_headers(self.key.as_ref(), &self.message_id, now_ms, &self.body)
    }

    /// The POST that delivers it at `now_ms`.
    pub fn post(&self, now_ms: i64) -> OutboundRequest {
        OutboundRequest {
            get: false,
            url: self.url.clone(),
            headers: self.headers(now_ms),
            body: self.body.clone(),
            timeout_ms: TIMEOUT_MS,
        }
    }
}

/// JSON headers, signed with Standard Webhooks when there is a key: what the
/// relay and the upstream receive.
pub fn signed_headers(
    key: Option<&SigningKey>,
    message_id: &str,
    now_ms: i64,
    body: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let mut headers = outbound::json_headers(body.len());
    if let Some(key) = key {
        let signed = standard_webhooks::headers(key, message_id, now_ms / 1000, body);
        headers.extend(
            signed
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.into_bytes())),
        );
    }
    headers
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
