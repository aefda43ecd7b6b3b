//! Signs the component's own notifications to the dashboard relay per the Standard Webhooks
//! spec, and verifies them the way a receiver does (for tests and the relay test server).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::headers::{HeaderError, Headers};

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Accepted clock skew in seconds, both ways (the spec's recommendation).
pub const TOLERANCE_S: i64 = 300;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";

/// The signing key: a secret starting `whsec_` is base64 after the prefix; any other string is used as its UTF-8 bytes. Debug prints [REDACTED].
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

/// Why a secret cannot be used as a signing key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("the signing secret is empty")]
    Empty,
    #[error("the signing secret after `whsec_` is not valid base64")]
    NotBase64,
}

impl SigningKey {
    pub fn from_secret(secret: &str) -> Result<SigningKey, KeyError> {
        let bytes = match secret.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => {
                crate::verify::decode_base64_any(encoded).ok_or(KeyError::NotBase64)?
            }
            None => secret.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        // Keyed once here, so signing has no failure path; HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&bytes)
            .map(SigningKey)
            .map_err(|_| KeyError::Empty)
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// `v1,<base64 of HMAC-SHA256(key, "{msg_id}.{timestamp_s}.{body}")>`.
pub fn sign(key: &SigningKey, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let tag = key
        .mac(msg_id, &timestamp_s.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// The three headers to send, in order: webhook-id, webhook-timestamp, webhook-signature.
pub fn headers(
    key: &SigningKey,
    msg_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (ID_HEADER, msg_id.to_owned()),
        (TIMESTAMP_HEADER, timestamp_s.to_string()),
        (SIGNATURE_HEADER, sign(key, msg_id, timestamp_s, body)),
    ]
}

/// Why a received notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("repeated header {0}")]
    RepeatedHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("timestamp is not an integer")]
    InvalidTimestamp,
    #[error("timestamp is too old")]
    TimestampTooOld,
    #[error("timestamp is in the future")]
    TimestampInFuture,
    #[error("no matching signature")]
    NoMatchingSignature,
}

/// Verification as a receiver does it (tests and the relay test server use it): tolerance 300 s both ways, constant time, any of several v1 signatures.
pub fn verify(
    key: &SigningKey,
    headers: &Headers,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookError> {
    let msg_id = required(headers, ID_HEADER)?;
    let timestamp = required(headers, TIMESTAMP_HEADER)?;
    let signatures = required(headers, SIGNATURE_HEADER)?;

    // Digits only: `i64::from_str` would also take a sign.
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::InvalidTimestamp);
    }
    let sent_s: i64 = timestamp
        .parse()
        .map_err(|_| WebhookError::InvalidTimestamp)?;
    let age_s = i128::from(now_s) - i128::from(sent_s);
    if age_s > i128::from(TOLERANCE_S) {
        return Err(WebhookError::TimestampTooOld);
    }
    if age_s < -i128::from(TOLERANCE_S) {
        return Err(WebhookError::TimestampInFuture);
    }

    // The timestamp is signed as received, like the other headers.
    let mac = key.mac(msg_id, timestamp, body);
    // Entries of other versions (e.g. `v1a` asymmetric ones) are not ours to check.
    let matched = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| crate::verify::decode_base64_any(encoded))
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(WebhookError::NoMatchingSignature)
    }
}

fn required<'a>(headers: &'a Headers, name: &'static str) -> Result<&'a str, WebhookError> {
    match headers.one(name) {
        Ok(Some("")) => Err(WebhookError::MalformedHeader(name)),
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(WebhookError::MissingHeader(name)),
        Err(HeaderError::Repeated(_)) => Err(WebhookError::RepeatedHeader(name)),
        Err(HeaderError::NotUtf8(_)) => Err(WebhookError::MalformedHeader(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector published in the Standard Webhooks libraries' tests.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key() -> SigningKey {
        SigningKey::from_secret(VECTOR_SECRET).expect("valid key")
    }

    fn received(id: &str, ts: &str, signature: &str) -> Headers {
        [
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", signature),
        ]
        .into_iter()
        .collect()
    }

    fn vector_headers(signature: &str) -> Headers {
        received(VECTOR_ID, &VECTOR_TS.to_string(), signature)
    }

    #[test]
    fn published_vector_signs() {
        assert_eq!(
            sign(&key(), VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn published_vector_verifies() {
        assert_eq!(
            verify(
                &key(),
                &vector_headers(VECTOR_SIGNATURE),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Ok(())
        );
    }

    #[test]
    fn headers_are_in_order_and_round_trip() {
        let sent = headers(&key(), VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        assert_eq!(
            sent,
            [
                ("webhook-id", VECTOR_ID.to_owned()),
                ("webhook-timestamp", "1614265330".to_owned()),
                ("webhook-signature", VECTOR_SIGNATURE.to_owned()),
            ]
        );
        let received: Headers = sent.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            verify(&key(), &received, VECTOR_BODY, VECTOR_TS + 1),
            Ok(())
        );
    }

    #[test]
    fn plain_secret_is_used_as_its_bytes() {
        let plain = SigningKey::from_secret("relay-secret").expect("key");
        let signature = sign(&plain, "msg_1", VECTOR_TS, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"relay-secret").expect("key");
        mac.update(b"msg_1.1614265330.{}");
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(signature, expected);
        let h = received("msg_1", "1614265330", &signature);
        assert_eq!(verify(&plain, &h, b"{}", VECTOR_TS), Ok(()));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(SigningKey::from_secret("").err(), Some(KeyError::Empty));
        assert_eq!(
            SigningKey::from_secret("whsec_").err(),
            Some(KeyError::Empty)
        );
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!").err(),
            Some(KeyError::NotBase64)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let debug = format!("{:?}", key());
        assert_eq!(debug, "SigningKey([REDACTED])");
    }

    #[test]
    fn wrong_key_fails() {
        let other = SigningKey::from_secret("whsec_dGhpcyBpcyBub3QgdGhlIGtleQ==").expect("key");
        assert_eq!(
            verify(
                &other,
                &vector_headers(VECTOR_SIGNATURE),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(WebhookError::NoMatchingSignature)
        );
        // The base64 text used as raw bytes, not decoded, is a different key.
        let raw = SigningKey::from_secret(&VECTOR_SECRET[6..]).expect("key");
        assert_eq!(
            verify(
                &raw,
                &vector_headers(VECTOR_SIGNATURE),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn tampered_body_fails() {
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(
                &key(),
                &vector_headers(VECTOR_SIGNATURE),
                tampered,
                VECTOR_TS
            ),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn tampered_id_or_timestamp_fails() {
        let h = received("msg_other", "1614265330", VECTOR_SIGNATURE);
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::NoMatchingSignature)
        );
        let h = received(VECTOR_ID, "1614265331", VECTOR_SIGNATURE);
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_both_sides_of_the_boundary() {
        let h = vector_headers(VECTOR_SIGNATURE);
        assert_eq!(verify(&key(), &h, VECTOR_BODY, VECTOR_TS + 300), Ok(()));
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS + 301),
            Err(WebhookError::TimestampTooOld)
        );
        assert_eq!(verify(&key(), &h, VECTOR_BODY, VECTOR_TS - 300), Ok(()));
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS - 301),
            Err(WebhookError::TimestampInFuture)
        );
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, i64::MAX),
            Err(WebhookError::TimestampTooOld)
        );
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, i64::MIN),
            Err(WebhookError::TimestampInFuture)
        );
    }

    #[test]
    fn malformed_timestamps() {
        for ts in [
            "abc",
            "-1614265330",
            "+1614265330",
            "1614265330.0",
            "99999999999999999999",
        ] {
            let h = received(VECTOR_ID, ts, VECTOR_SIGNATURE);
            assert_eq!(
                verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
                Err(WebhookError::InvalidTimestamp),
                "{ts}"
            );
        }
    }

    #[test]
    fn each_missing_header_in_turn() {
        let ts = VECTOR_TS.to_string();
        let all = [
            ("webhook-id", VECTOR_ID),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", VECTOR_SIGNATURE),
        ];
        for (missing, _) in all {
            let h: Headers = all.iter().filter(|(n, _)| *n != missing).copied().collect();
            assert_eq!(
                verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
                Err(WebhookError::MissingHeader(missing))
            );
        }
        let h = received("", &ts, VECTOR_SIGNATURE);
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::MalformedHeader("webhook-id"))
        );
    }

    #[test]
    fn repeated_signature_header_is_refused() {
        let mut h = vector_headers("v1,Zm9v");
        h.push("Webhook-Signature", VECTOR_SIGNATURE);
        assert_eq!(
            verify(&key(), &h, VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::RepeatedHeader("webhook-signature"))
        );
    }

    #[test]
    fn list_of_signatures_where_one_matches() {
        let bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let list = format!(
            "{bad} v1a,{} garbage v2,xyz {VECTOR_SIGNATURE}",
            &VECTOR_SIGNATURE[3..]
        );
        assert_eq!(
            verify(&key(), &vector_headers(&list), VECTOR_BODY, VECTOR_TS),
            Ok(())
        );
        let none = format!("{bad} v1a,{}", &VECTOR_SIGNATURE[3..]);
        assert_eq!(
            verify(&key(), &vector_headers(&none), VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn partial_signature_fails() {
        let raw = STANDARD
            .decode(&VECTOR_SIGNATURE[3..])
            .expect("vector is base64");
        let truncated = format!("v1,{}", STANDARD.encode(&raw[..raw.len() - 1]));
        assert_eq!(
            verify(&key(), &vector_headers(&truncated), VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::NoMatchingSignature)
        );
        let cut_text = &VECTOR_SIGNATURE[..VECTOR_SIGNATURE.len() - 4];
        assert_eq!(
            verify(&key(), &vector_headers(cut_text), VECTOR_BODY, VECTOR_TS),
            Err(WebhookError::NoMatchingSignature)
        );
    }
}
