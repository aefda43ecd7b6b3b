//! The shared secret: the header of Vapi's Bearer credential (`x-vapi-secret`
//! by default: a Bearer credential with that header name and the prefix off,
//! or the legacy `serverUrlSecret`), or `Authorization` with or without the
//! `Bearer` prefix, compared in constant time; and the operator routes' bearer
//! tokens.

use super::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The credential's own header decides when present, so a wrong value cannot
/// be rescued by adding an `Authorization` header. Any header carries the
/// token after `Bearer ` or alone: Vapi's Bearer credential sends the prefix
/// (its default) or not, in whatever header it names. A secret that itself
/// starts with `Bearer ` still matches as a whole value.
pub(super) fn verify_shared_secret(
    config: &VerifyConfig,
    headers: &Headers,
    now_ms: i64,
) -> Result<(), VerifyError> {
    let header = config.shared_secret_header.as_str();
    let presented = match optional_header(headers, header)? {
        Some(value) => value,
        None => match optional_header(headers, AUTHORIZATION_HEADER)? {
            Some(value) => value,
            None if header == AUTHORIZATION_HEADER => {
                return Err(VerifyError::MissingHeader(AUTHORIZATION_HEADER.to_owned()))
            }
            None => {
                return Err(VerifyError::MissingHeader(format!(
                    "{header} or {AUTHORIZATION_HEADER}"
                )))
            }
        },
    };
    let whole = presented.trim();
    let token = token_of_authorization(presented);
    if token.is_empty() {
        return Err(VerifyError::SharedSecretMismatch);
    }
    let matched = config
        .shared_secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(false, |found, s| {
            let as_token = secret_matches(s.as_bytes(), token.as_bytes());
            let as_whole = secret_matches(s.as_bytes(), whole.as_bytes());
            as_token | as_whole | found
        });
    // Hashed secrets: the presented value's hash against each, in constant
    // time as the others.
    let token_hash = Sha256::digest(token.as_bytes());
    let whole_hash = Sha256::digest(whole.as_bytes());
    let matched = config
        .shared_secret_hashes
        .iter()
        .fold(matched, |found, hash| {
            let as_token = secret_matches(hash, &token_hash);
            let as_whole = secret_matches(hash, &whole_hash);
            as_token | as_whole | found
        });
    // A tenant's OAuth2 access token.
    let matched = matched
        | config
            .oauth
            .as_ref()
            .is_some_and(|oauth| oauth.client.accepts(&oauth.keys, token, now_ms));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::SharedSecretMismatch)
    }
}

/// The token of a credential header's value: after `Bearer `, or the whole
/// value when the credential sends it without the prefix.
fn token_of_authorization(value: &str) -> &str {
    bearer_token(value).unwrap_or(value.trim())
}

/// Compares MACs keyed by the secret instead of the raw strings: `verify_slice` is constant
/// time, and the secret's length does not show in the timing either.
pub fn secret_matches(secret: &[u8], presented: &[u8]) -> bool {
    let Ok(keyed) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    let mut expected = keyed.clone();
    expected.update(secret);
    let mut candidate = keyed;
    candidate.update(presented);
    candidate
        .verify_slice(&expected.finalize().into_bytes())
        .is_ok()
}

/// Whether an `Authorization` header value is `Bearer <token>` for `token`
/// (constant time); for the operator routes (`/metrics`, `/admin/replay`).
pub fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    match authorization.and_then(bearer_token) {
        Some(presented) if !token.is_empty() => {
            secret_matches(token.as_bytes(), presented.as_bytes())
        }
        _ => false,
    }
}

/// `Bearer <token>`, scheme case-insensitive.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub(super) fn strip_prefix_ignore_case<'a>(token: &'a str, prefix: &str) -> Option<&'a str> {
    let head = token.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| token.get(prefix.len()..))
        .flatten()
}
