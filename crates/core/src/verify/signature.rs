//! Vapi's HMAC credential: what is signed (`payloadFormat`), how the
//! signature is encoded, which digest, and the timestamp's two-sided tolerance.

use super::*;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::fmt;

/// The digest of Vapi's HMAC credential (`algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Sha1,
}

impl Algorithm {
    /// Case-insensitive: `sha256`, `sha512` or `sha1`.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            "sha1" => Some(Algorithm::Sha1),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha1 => "sha1",
        }
    }
}

/// How the signature bytes are written in the header (`signatureEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Vapi sends lower-case; upper-case is accepted too.
    Hex,
    /// Standard or URL-safe alphabet, with or without padding.
    Base64,
}

impl SignatureEncoding {
    /// Case-insensitive: `hex` or `base64`.
    pub fn parse(name: &str) -> Option<SignatureEncoding> {
        match name.trim().to_ascii_lowercase().as_str() {
            "hex" => Some(SignatureEncoding::Hex),
            "base64" => Some(SignatureEncoding::Base64),
            _ => None,
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            SignatureEncoding::Hex => decode_hex(text),
            SignatureEncoding::Base64 => decode_base64_any(text),
        }
    }
}

/// A secret; Debug prints [REDACTED].
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret::new(secret.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// What the HMAC covers (`payloadFormat`), parsed once so a bad format fails at start-up
/// rather than on every request.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    Timestamp,
    Body,
    /// `{method}`: the request's method.
    Method,
    /// `{url}`: the server URL as configured in Vapi (`vapi_signature_url`).
    Url,
    /// `{svix-id}`: the value of the message id header (`vapi_message_id_header`).
    MessageId,
}

/// What a signed message is made of, besides its fixed text.
pub(super) struct SignedParts<'a> {
    pub timestamp: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    pub message_id: &'a str,
    pub body: &'a [u8],
}

impl PayloadFormat {
    /// Accepts Vapi's placeholders (`{timestamp}`, `{body}`, `{method}`, `{url}`,
    /// `{svix-id}`); any other `{name}` is refused rather than signed literally,
    /// since Vapi would substitute it and no signature could match.
    pub fn parse(format: &str) -> Result<PayloadFormat, ConfigError> {
        let mut segments = Vec::new();
        let mut rest = format;
        while let Some((literal, after_open)) = rest.split_once('{') {
            if !literal.is_empty() {
                segments.push(Segment::Literal(literal.to_owned()));
            }
            let Some((name, after_close)) = after_open.split_once('}') else {
                return Err(ConfigError::UnclosedPlaceholder);
            };
            segments.push(match name {
                "timestamp" => Segment::Timestamp,
                "body" => Segment::Body,
                "method" => Segment::Method,
                "url" => Segment::Url,
                "svix-id" => Segment::MessageId,
                other => return Err(ConfigError::UnknownPlaceholder(other.to_owned())),
            });
            rest = after_close;
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        if !segments.contains(&Segment::Body) {
            return Err(ConfigError::MissingBodyPlaceholder);
        }
        Ok(PayloadFormat {
            text: format.to_owned(),
            segments,
        })
    }

    pub fn uses_timestamp(&self) -> bool {
        self.segments.contains(&Segment::Timestamp)
    }

    pub fn uses_url(&self) -> bool {
        self.segments.contains(&Segment::Url)
    }

    pub fn uses_message_id(&self) -> bool {
        self.segments.contains(&Segment::MessageId)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Feeds the signed message piece by piece, so the body is never copied.
    fn feed(&self, mac: &mut MacState, parts: &SignedParts<'_>) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => mac.update(text.as_bytes()),
                Segment::Timestamp => mac.update(parts.timestamp.as_bytes()),
                Segment::Body => mac.update(parts.body),
                Segment::Method => mac.update(parts.method.as_bytes()),
                Segment::Url => mac.update(parts.url.as_bytes()),
                Segment::MessageId => mac.update(parts.message_id.as_bytes()),
            }
        }
    }
}

impl fmt::Debug for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Vapi's HMAC credential, as configured on our side.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    /// Several, so a secret can be rotated without downtime; empty ones never match.
    pub secrets: Vec<Secret>,
    /// Lower-case header name.
    pub signature_header: String,
    /// `None` when the credential signs no timestamp (then there is no replay window check).
    pub timestamp_header: Option<String>,
    pub payload_format: PayloadFormat,
    pub encoding: SignatureEncoding,
    /// Required in front of every signature when not empty, e.g. `sha256=`.
    pub prefix: String,
    pub algorithm: Algorithm,
    /// Accepted clock skew, both ways.
    pub tolerance_s: u64,
    /// What `{url}` stands for: the server URL exactly as Vapi has it.
    pub url: Option<String>,
    /// Lower-case name of the header whose value `{svix-id}` stands for.
    pub message_id_header: Option<String>,
}

impl HmacScheme {
    /// Vapi's defaults: `x-signature`, `x-timestamp`, `{timestamp}.{body}`, hex, sha256,
    /// no prefix, 300 s.
    pub fn new(secrets: Vec<Secret>) -> HmacScheme {
        HmacScheme {
            secrets,
            signature_header: DEFAULT_SIGNATURE_HEADER.to_owned(),
            timestamp_header: Some(DEFAULT_TIMESTAMP_HEADER.to_owned()),
            payload_format: PayloadFormat {
                text: DEFAULT_PAYLOAD_WITH_TIMESTAMP.to_owned(),
                segments: vec![
                    Segment::Timestamp,
                    Segment::Literal(".".to_owned()),
                    Segment::Body,
                ],
            },
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
            algorithm: Algorithm::Sha256,
            tolerance_s: DEFAULT_TOLERANCE_S,
            url: None,
            message_id_header: None,
        }
    }

    pub(crate) fn has_secret(&self) -> bool {
        self.secrets.iter().any(|s| !s.is_empty())
    }

    /// Checks the timestamp window and that one of the header's signatures is the HMAC of
    /// the signed message under one of the secrets.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now_unix_ms: i64,
    ) -> Result<(), VerifyError> {
        self.verify_request("POST", headers, body, now_unix_ms)
    }

    /// [`HmacScheme::verify`] for a request of any method (`{method}`).
    pub fn verify_request(
        &self,
        method: &str,
        headers: &Headers,
        body: &[u8],
        now_unix_ms: i64,
    ) -> Result<(), VerifyError> {
        let head = self.verify_head(headers, now_unix_ms)?;
        let (timestamp, message_id, candidates) =
            (head.timestamp, head.message_id, head.candidates);
        let parts = SignedParts {
            timestamp,
            method,
            url: self.url.as_deref().unwrap_or_default(),
            message_id,
            body,
        };

        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            let Some(mut mac) = MacState::new(self.algorithm, secret.as_bytes()) else {
                continue;
            };
            self.payload_format.feed(&mut mac, &parts);
            if candidates.iter().any(|candidate| mac.matches(candidate)) {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }

    /// Every check that needs no body: the headers are there once each, the
    /// signature is in the configured encoding and prefix, the timestamp is
    /// fresh. What passes may still fail on the body; what fails here cannot
    /// be authentic whatever the body, so it is refused before it is read.
    pub fn verify_head<'h>(
        &self,
        headers: &'h Headers,
        now_unix_ms: i64,
    ) -> Result<SignedHead<'h>, VerifyError> {
        if !self.has_secret() {
            return Err(VerifyError::NotConfigured);
        }
        // Fields are public, so this inconsistency can be built by hand; fail closed.
        if self.payload_format.uses_timestamp() && self.timestamp_header.is_none() {
            return Err(VerifyError::NotConfigured);
        }
        let signature_value = required_header(headers, &self.signature_header)?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let value = required_header(headers, name)?;
                check_timestamp(value, self.tolerance_s, now_unix_ms)?;
                value
            }
            None => "",
        };
        let message_id = match &self.message_id_header {
            Some(name) if self.payload_format.uses_message_id() => required_header(headers, name)?,
            _ => "",
        };
        Ok(SignedHead {
            timestamp,
            message_id,
            candidates: self.decode_candidates(signature_value)?,
        })
    }

    /// The header value Vapi would send for `body` signed at `timestamp` with the
    /// first secret: for test clients and `vapi-edge-host sign`. `None` without a secret.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> Option<String> {
        let secret = self.secrets.iter().find(|s| !s.is_empty())?;
        let mut mac = MacState::new(self.algorithm, secret.as_bytes())?;
        let parts = SignedParts {
            timestamp,
            method: "POST",
            url: self.url.as_deref().unwrap_or_default(),
            message_id: "",
            body,
        };
        self.payload_format.feed(&mut mac, &parts);
        let tag = mac.finish();
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(tag)
            }
        };
        Some(format!("{}{encoded}", self.prefix))
    }

    /// Every well-formed signature in the header. Ones without the configured prefix or
    /// that do not decode are skipped, so one junk entry cannot hide a valid one.
    fn decode_candidates(&self, value: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
        // A prefix such as `v1,` contains the comma, so commas cannot separate then.
        let comma_separates = !self.prefix.contains(',');
        let candidates: Vec<Vec<u8>> = value
            .split(|c: char| c.is_ascii_whitespace() || (comma_separates && c == ','))
            .filter(|token| !token.is_empty())
            .filter_map(|token| strip_prefix_ignore_case(token, &self.prefix))
            .filter_map(|encoded| self.encoding.decode(encoded))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::MalformedHeader(self.signature_header.clone()));
        }
        Ok(candidates)
    }
}

/// What the headers of a request give the signature check.
pub struct SignedHead<'h> {
    timestamp: &'h str,
    message_id: &'h str,
    /// The signatures presented, decoded.
    candidates: Vec<Vec<u8>>,
}

pub(super) fn check_timestamp(
    value: &str,
    tolerance_s: u64,
    now_unix_ms: i64,
) -> Result<(), VerifyError> {
    // Digits only: `u64::from_str` would also take a leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedTimestamp);
    }
    let timestamp: u64 = value.parse().map_err(|_| VerifyError::MalformedTimestamp)?;
    let timestamp_ms = if timestamp > MILLISECONDS_ABOVE {
        i128::from(timestamp)
    } else {
        i128::from(timestamp) * 1000
    };
    let age_ms = i128::from(now_unix_ms) - timestamp_ms;
    let tolerance_ms = i128::from(tolerance_s) * 1000;
    if age_ms > tolerance_ms {
        Err(VerifyError::TimestampTooOld)
    } else if age_ms < -tolerance_ms {
        Err(VerifyError::TimestampInFuture)
    } else {
        Ok(())
    }
}

pub(super) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

pub(super) const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
pub(super) const STANDARD_LENIENT: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
pub(super) const URL_SAFE_LENIENT: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard or URL-safe alphabet, padded or not.
pub(crate) fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .ok()
}

/// One running HMAC per algorithm; cloned per candidate so the body is hashed once.
#[derive(Clone)]
pub(super) enum MacState {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
    Sha1(Hmac<Sha1>),
}

impl MacState {
    fn new(algorithm: Algorithm, key: &[u8]) -> Option<MacState> {
        // HMAC takes keys of any length, so these never fail.
        Some(match algorithm {
            Algorithm::Sha256 => MacState::Sha256(Hmac::new_from_slice(key).ok()?),
            Algorithm::Sha512 => MacState::Sha512(Hmac::new_from_slice(key).ok()?),
            Algorithm::Sha1 => MacState::Sha1(Hmac::new_from_slice(key).ok()?),
        })
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            MacState::Sha256(mac) => mac.update(data),
            MacState::Sha512(mac) => mac.update(data),
            MacState::Sha1(mac) => mac.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            MacState::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
            MacState::Sha512(mac) => mac.finalize().into_bytes().to_vec(),
            MacState::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
        }
    }

    /// Constant time, and a tag of any other length (a truncated one) never matches.
    fn matches(&self, tag: &[u8]) -> bool {
        match self.clone() {
            MacState::Sha256(mac) => mac.verify_slice(tag).is_ok(),
            MacState::Sha512(mac) => mac.verify_slice(tag).is_ok(),
            MacState::Sha1(mac) => mac.verify_slice(tag).is_ok(),
        }
    }
}
