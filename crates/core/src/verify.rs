//! Proves that a webhook request came from Vapi, before anything reads its body: an HMAC
//! signature over the raw bytes (Vapi's HMAC credential) and/or a shared secret header.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use thiserror::Error;

use crate::headers::{HeaderError, Headers};

pub const DEFAULT_SIGNATURE_HEADER: &str = "x-signature";
pub const DEFAULT_TIMESTAMP_HEADER: &str = "x-timestamp";
pub const DEFAULT_PAYLOAD_WITH_TIMESTAMP: &str = "{timestamp}.{body}";
pub const DEFAULT_PAYLOAD_WITHOUT_TIMESTAMP: &str = "{body}";
pub const DEFAULT_TOLERANCE_S: u64 = 300;

/// The legacy `serverUrlSecret` header, which Vapi sends without any prefix.
pub const SHARED_SECRET_HEADER: &str = "x-vapi-secret";
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Vapi does not document the unit of its timestamp header. 10^11 seconds is the year
/// 5138 while 10^11 milliseconds is 1973, so the magnitude tells them apart.
const MILLISECONDS_ABOVE: u64 = 100_000_000_000;

/// Variable names, as declared in spin.toml.
pub mod var {
    pub const HMAC_SECRET: &str = "vapi_hmac_secret";
    pub const SIGNATURE_HEADER: &str = "vapi_signature_header";
    pub const TIMESTAMP_HEADER: &str = "vapi_timestamp_header";
    pub const SIGNATURE_PAYLOAD: &str = "vapi_signature_payload";
    pub const SIGNATURE_ENCODING: &str = "vapi_signature_encoding";
    pub const SIGNATURE_PREFIX: &str = "vapi_signature_prefix";
    pub const HMAC_ALGORITHM: &str = "vapi_hmac_algorithm";
    pub const HMAC_SECRET_BASE64: &str = "vapi_hmac_secret_base64";
    pub const TIMESTAMP_TOLERANCE_S: &str = "vapi_timestamp_tolerance_s";
    pub const SERVER_SECRET: &str = "vapi_server_secret";
}

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
enum Segment {
    Literal(String),
    Timestamp,
    Body,
}

impl PayloadFormat {
    /// Accepts `{timestamp}` and `{body}`; any other `{name}` is refused rather than
    /// signed literally, since Vapi would substitute it and no signature could match.
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

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Feeds the signed message piece by piece, so the body is never copied.
    fn feed(&self, mac: &mut MacState, timestamp: &str, body: &[u8]) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => mac.update(text.as_bytes()),
                Segment::Timestamp => mac.update(timestamp.as_bytes()),
                Segment::Body => mac.update(body),
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
        }
    }

    fn has_secret(&self) -> bool {
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
        let candidates = self.decode_candidates(signature_value)?;

        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            let Some(mut mac) = MacState::new(self.algorithm, secret.as_bytes()) else {
                continue;
            };
            self.payload_format.feed(&mut mac, timestamp, body);
            if candidates.iter().any(|candidate| mac.matches(candidate)) {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }

    /// The header value Vapi would send for `body` signed at `timestamp` with the
    /// first secret: for test clients and `vapi-edge-host sign`. `None` without a secret.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> Option<String> {
        let secret = self.secrets.iter().find(|s| !s.is_empty())?;
        let mut mac = MacState::new(self.algorithm, secret.as_bytes())?;
        self.payload_format.feed(&mut mac, timestamp, body);
        let tag = mac.finish();
        let encoded = match self.encoding {
            SignatureEncoding::Hex => tag.iter().map(|b| format!("{b:02x}")).collect(),
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

/// Everything that proves a request came from Vapi.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub hmac: Option<HmacScheme>,
    /// Accepted values of `x-vapi-secret` or `Authorization: Bearer`; several for rotation.
    pub shared_secrets: Vec<Secret>,
}

/// Which methods a request passed, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub methods: Vec<&'static str>,
}

impl VerifyConfig {
    /// Reads the spin.toml variables by their names; `get` returns None for unset or empty.
    /// Values are trimmed; a value that is empty after trimming counts as unset, except a
    /// header name, where it is an error.
    pub fn from_variables(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<VerifyConfig, ConfigError> {
        let raw = |name: &str| get(name).filter(|v| !v.is_empty());
        let value = |name: &str| {
            raw(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let secret_is_base64 = parsed(
            var::HMAC_SECRET_BASE64,
            value(var::HMAC_SECRET_BASE64),
            "true or false",
            parse_bool,
        )?
        .unwrap_or(false);
        let mut hmac_secrets = Vec::new();
        for (index, item) in list_items(raw(var::HMAC_SECRET).as_deref()).enumerate() {
            let bytes = if secret_is_base64 {
                decode_base64_any(item)
                    .filter(|b| !b.is_empty())
                    .ok_or(ConfigError::SecretNotBase64 { item: index + 1 })?
            } else {
                item.as_bytes().to_vec()
            };
            hmac_secrets.push(Secret::new(bytes));
        }

        let signature_header = match raw(var::SIGNATURE_HEADER) {
            None => DEFAULT_SIGNATURE_HEADER.to_owned(),
            Some(v) => header_name(var::SIGNATURE_HEADER, &v)?,
        };
        let timestamp_header = match raw(var::TIMESTAMP_HEADER) {
            None => Some(DEFAULT_TIMESTAMP_HEADER.to_owned()),
            Some(v) if v.trim().eq_ignore_ascii_case("none") => None,
            Some(v) => Some(header_name(var::TIMESTAMP_HEADER, &v)?),
        };
        let payload_format =
            PayloadFormat::parse(&value(var::SIGNATURE_PAYLOAD).unwrap_or_else(|| {
                if timestamp_header.is_some() {
                    DEFAULT_PAYLOAD_WITH_TIMESTAMP.to_owned()
                } else {
                    DEFAULT_PAYLOAD_WITHOUT_TIMESTAMP.to_owned()
                }
            }))?;
        if payload_format.uses_timestamp() && timestamp_header.is_none() {
            return Err(ConfigError::TimestampWithoutHeader);
        }
        let encoding = parsed(
            var::SIGNATURE_ENCODING,
            value(var::SIGNATURE_ENCODING),
            "hex or base64",
            SignatureEncoding::parse,
        )?
        .unwrap_or(SignatureEncoding::Hex);
        let algorithm = parsed(
            var::HMAC_ALGORITHM,
            value(var::HMAC_ALGORITHM),
            "sha256, sha512 or sha1",
            Algorithm::parse,
        )?
        .unwrap_or(Algorithm::Sha256);
        let tolerance_s = parsed(
            var::TIMESTAMP_TOLERANCE_S,
            value(var::TIMESTAMP_TOLERANCE_S),
            "a non-negative integer (seconds)",
            |v| v.parse::<u64>().ok(),
        )?
        .unwrap_or(DEFAULT_TOLERANCE_S);
        let prefix = value(var::SIGNATURE_PREFIX).unwrap_or_default();

        // The HMAC settings are validated even without a secret, so a typo is reported
        // when it is made rather than when the secret is added later.
        let hmac = if hmac_secrets.is_empty() {
            None
        } else {
            Some(HmacScheme {
                secrets: hmac_secrets,
                signature_header,
                timestamp_header,
                payload_format,
                encoding,
                prefix,
                algorithm,
                tolerance_s,
            })
        };
        let shared_secrets = list_items(raw(var::SERVER_SECRET).as_deref())
            .map(Secret::from)
            .collect();
        Ok(VerifyConfig {
            hmac,
            shared_secrets,
        })
    }

    /// False when neither an HMAC secret nor a shared secret is set: every request must then be refused.
    pub fn is_configured(&self) -> bool {
        self.hmac.as_ref().is_some_and(HmacScheme::has_secret)
            || self.shared_secrets.iter().any(|s| !s.is_empty())
    }

    /// Checks every configured method (when both HMAC and shared secret are configured, BOTH must pass).
    /// `now_unix_ms` is the clock, passed in so every time rule is testable.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now_unix_ms: i64,
    ) -> Result<Verified, VerifyError> {
        if !self.is_configured() {
            return Err(VerifyError::NotConfigured);
        }
        let mut methods = Vec::new();
        if let Some(scheme) = self.hmac.as_ref().filter(|s| s.has_secret()) {
            scheme.verify(headers, body, now_unix_ms)?;
            methods.push("hmac");
        }
        if self.shared_secrets.iter().any(|s| !s.is_empty()) {
            verify_shared_secret(&self.shared_secrets, headers)?;
            methods.push("shared-secret");
        }
        Ok(Verified { methods })
    }
}

/// A configuration mistake; the message names the variable and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{variable}: expected {expected}, got `{value}`")]
    InvalidValue {
        variable: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{0}: the header name is empty")]
    EmptyHeaderName(&'static str),
    #[error("{variable}: `{value}` is not a valid header name")]
    InvalidHeaderName {
        variable: &'static str,
        value: String,
    },
    #[error("vapi_signature_payload: uses {{timestamp}} but vapi_timestamp_header is `none`")]
    TimestampWithoutHeader,
    #[error("vapi_signature_payload: must contain {{body}}")]
    MissingBodyPlaceholder,
    #[error(
        "vapi_signature_payload: unsupported placeholder `{{{0}}}` (only {{timestamp}} and {{body}} are supported)"
    )]
    UnknownPlaceholder(String),
    #[error("vapi_signature_payload: `{{` without a closing `}}`")]
    UnclosedPlaceholder,
    #[error(
        "vapi_hmac_secret: secret number {item} is not valid base64 (vapi_hmac_secret_base64 is true)"
    )]
    SecretNotBase64 { item: usize },
}

/// Why a request was refused. No variant carries a secret or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("webhook verification is not configured")]
    NotConfigured,
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("repeated header {0}")]
    RepeatedHeader(String),
    #[error("malformed header {0}")]
    MalformedHeader(String),
    #[error("timestamp is not an integer")]
    MalformedTimestamp,
    #[error("timestamp is too old")]
    TimestampTooOld,
    #[error("timestamp is in the future")]
    TimestampInFuture,
    #[error("no matching signature")]
    NoMatchingSignature,
    #[error("shared secret does not match")]
    SharedSecretMismatch,
}

impl VerifyError {
    /// Short public reason for a 401 body: never contains a secret or the expected signature.
    pub fn public_reason(&self) -> String {
        self.to_string()
    }

    /// A stable, low-cardinality name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::NotConfigured => "not_configured",
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::RepeatedHeader(_) => "repeated_header",
            VerifyError::MalformedHeader(_) => "malformed_header",
            VerifyError::MalformedTimestamp => "malformed_timestamp",
            VerifyError::TimestampTooOld => "timestamp_too_old",
            VerifyError::TimestampInFuture => "timestamp_in_future",
            VerifyError::NoMatchingSignature => "no_matching_signature",
            VerifyError::SharedSecretMismatch => "shared_secret_mismatch",
        }
    }
}

/// `x-vapi-secret` decides when present, so a wrong value cannot be rescued by adding an
/// `Authorization` header.
fn verify_shared_secret(secrets: &[Secret], headers: &Headers) -> Result<(), VerifyError> {
    let presented = match optional_header(headers, SHARED_SECRET_HEADER)? {
        Some(value) => value,
        None => match optional_header(headers, AUTHORIZATION_HEADER)? {
            Some(value) => bearer_token(value)
                .ok_or_else(|| VerifyError::MalformedHeader(AUTHORIZATION_HEADER.to_owned()))?,
            None => {
                return Err(VerifyError::MissingHeader(format!(
                    "{SHARED_SECRET_HEADER} or {AUTHORIZATION_HEADER}"
                )))
            }
        },
    };
    if presented.is_empty() {
        return Err(VerifyError::SharedSecretMismatch);
    }
    let matched = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(false, |found, s| {
            secret_matches(s.as_bytes(), presented.as_bytes()) | found
        });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::SharedSecretMismatch)
    }
}

/// Compares MACs keyed by the secret instead of the raw strings: `verify_slice` is constant
/// time, and the secret's length does not show in the timing either.
fn secret_matches(secret: &[u8], presented: &[u8]) -> bool {
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
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn check_timestamp(value: &str, tolerance_s: u64, now_unix_ms: i64) -> Result<(), VerifyError> {
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

fn optional_header<'a>(headers: &'a Headers, name: &str) -> Result<Option<&'a str>, VerifyError> {
    headers.one(name).map_err(|e| match e {
        HeaderError::Repeated(name) => VerifyError::RepeatedHeader(name),
        HeaderError::NotUtf8(name) => VerifyError::MalformedHeader(name),
    })
}

fn required_header<'a>(headers: &'a Headers, name: &str) -> Result<&'a str, VerifyError> {
    optional_header(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Comma-separated, trimmed, empty items dropped.
fn list_items(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `None` when the variable is unset; an error naming it when `parse` refuses its value.
fn parsed<T>(
    variable: &'static str,
    value: Option<String>,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match parse(&value) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(ConfigError::InvalidValue {
            variable,
            expected,
            value,
        }),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn header_name(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let name = value.trim();
    if name.is_empty() {
        return Err(ConfigError::EmptyHeaderName(variable));
    }
    // RFC 9110 token characters.
    let is_token = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(ConfigError::InvalidHeaderName {
            variable,
            value: name.to_owned(),
        });
    }
    Ok(name.to_ascii_lowercase())
}

fn strip_prefix_ignore_case<'a>(token: &'a str, prefix: &str) -> Option<&'a str> {
    let head = token.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| token.get(prefix.len()..))
        .flatten()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(nibble(*high)? << 4 | nibble(*low)?),
            _ => None,
        })
        .collect()
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard or URL-safe alphabet, padded or not.
pub(crate) fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .ok()
}

/// One running HMAC per algorithm; cloned per candidate so the body is hashed once.
#[derive(Clone)]
enum MacState {
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use std::collections::HashMap;

    const SECRET: &str = "vapi-test-secret";
    const BODY: &[u8] = br#"{"message":{"type":"status-update","status":"ringing"}}"#;
    const TS: &str = "1700000000";
    const NOW_MS: i64 = 1_700_000_000_000 + 5_000;

    fn config(vars: &[(&str, &str)]) -> Result<VerifyConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        VerifyConfig::from_variables(|name| map.get(name).filter(|v| !v.is_empty()).cloned())
    }

    fn default_config() -> VerifyConfig {
        config(&[(var::HMAC_SECRET, SECRET)]).expect("valid config")
    }

    #[test]
    fn sign_produces_what_verify_accepts_and_matches_an_independent_hmac() {
        let scheme = HmacScheme::new(vec![Secret::from(SECRET)]);
        let signature = scheme.sign(TS, BODY).expect("a secret is set");
        let mut message = TS.as_bytes().to_vec();
        message.push(b'.');
        message.extend_from_slice(BODY);
        let expected: String = hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), &message)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signature, expected);
        let headers: Headers = [("x-signature", signature.as_str()), ("x-timestamp", TS)]
            .into_iter()
            .collect();
        assert!(scheme.verify(&headers, BODY, NOW_MS).is_ok());

        let mut base64 = HmacScheme::new(vec![Secret::from(SECRET)]);
        base64.encoding = SignatureEncoding::Base64;
        base64.prefix = "sha256=".into();
        let signed = base64.sign(TS, BODY).unwrap();
        assert!(signed.starts_with("sha256="));
        let headers: Headers = [("x-signature", signed.as_str()), ("x-timestamp", TS)]
            .into_iter()
            .collect();
        assert!(base64.verify(&headers, BODY, NOW_MS).is_ok());
        assert_eq!(HmacScheme::new(Vec::new()).sign(TS, BODY), None);
    }

    #[test]
    fn operator_bearer_tokens() {
        assert!(bearer_matches(Some("Bearer tok-1"), "tok-1"));
        assert!(bearer_matches(Some("bearer tok-1"), "tok-1"));
        assert!(!bearer_matches(Some("Bearer tok-2"), "tok-1"));
        assert!(!bearer_matches(Some("tok-1"), "tok-1"));
        assert!(!bearer_matches(None, "tok-1"));
        assert!(!bearer_matches(Some("Bearer "), ""));
    }

    /// Computed directly with `hmac`, independently of the code under test.
    fn hmac_bytes(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
        match algorithm {
            Algorithm::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Algorithm::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Algorithm::Sha1 => {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn signed_message(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut message = format!("{ts}.").into_bytes();
        message.extend_from_slice(body);
        message
    }

    fn default_signature(secret: &str, ts: &str, body: &[u8]) -> String {
        hex(&hmac_bytes(
            Algorithm::Sha256,
            secret.as_bytes(),
            &signed_message(ts, body),
        ))
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn signed_headers(signature: &str) -> Headers {
        headers(&[("X-Signature", signature), ("X-Timestamp", TS)])
    }

    #[test]
    fn valid_default_signature_verifies() {
        let sig = default_signature(SECRET, TS, BODY);
        let verified = default_config()
            .verify(&signed_headers(&sig), BODY, NOW_MS)
            .expect("verifies");
        assert_eq!(verified.methods, vec!["hmac"]);
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let sig = default_signature(SECRET, TS, BODY).to_ascii_uppercase();
        assert!(default_config()
            .verify(&signed_headers(&sig), BODY, NOW_MS)
            .is_ok());
    }

    #[test]
    fn base64_signatures_in_every_alphabet_and_padding() {
        let cfg = config(&[
            (var::HMAC_SECRET, SECRET),
            (var::SIGNATURE_ENCODING, "Base64"),
        ])
        .expect("config");
        let raw = hmac_bytes(
            Algorithm::Sha256,
            SECRET.as_bytes(),
            &signed_message(TS, BODY),
        );
        for sig in [STANDARD.encode(&raw), URL_SAFE_NO_PAD.encode(&raw)] {
            assert_eq!(
                cfg.verify(&signed_headers(&sig), BODY, NOW_MS)
                    .map(|v| v.methods),
                Ok(vec!["hmac"]),
                "{sig}"
            );
        }
        // Hex is not what this config expects.
        let hex_sig = hex(&raw);
        assert!(cfg.verify(&signed_headers(&hex_sig), BODY, NOW_MS).is_err());
    }

    #[test]
    fn prefix_is_stripped_and_required() {
        let cfg = config(&[
            (var::HMAC_SECRET, SECRET),
            (var::SIGNATURE_PREFIX, "sha256="),
        ])
        .expect("config");
        let sig = default_signature(SECRET, TS, BODY);
        assert!(cfg
            .verify(&signed_headers(&format!("sha256={sig}")), BODY, NOW_MS)
            .is_ok());
        assert_eq!(
            cfg.verify(&signed_headers(&sig), BODY, NOW_MS),
            Err(VerifyError::MalformedHeader("x-signature".into()))
        );
    }

    #[test]
    fn sha512_and_sha1() {
        for (name, algorithm) in [("SHA512", Algorithm::Sha512), ("sha1", Algorithm::Sha1)] {
            let cfg =
                config(&[(var::HMAC_SECRET, SECRET), (var::HMAC_ALGORITHM, name)]).expect("config");
            let sig = hex(&hmac_bytes(
                algorithm,
                SECRET.as_bytes(),
                &signed_message(TS, BODY),
            ));
            assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
            // A sha256 signature is not accepted in their place.
            let sha256 = default_signature(SECRET, TS, BODY);
            assert_eq!(
                cfg.verify(&signed_headers(&sha256), BODY, NOW_MS),
                Err(VerifyError::NoMatchingSignature)
            );
        }
    }

    #[test]
    fn base64_secret_is_decoded_before_use() {
        let key = [0u8, 1, 2, 250, 251, 252, 253, 254, 255];
        let cfg = config(&[
            (var::HMAC_SECRET, &STANDARD.encode(key)),
            (var::HMAC_SECRET_BASE64, "TRUE"),
        ])
        .expect("config");
        let sig = hex(&hmac_bytes(
            Algorithm::Sha256,
            &key,
            &signed_message(TS, BODY),
        ));
        assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
        // The base64 text itself is not the key.
        let as_text = default_signature(&STANDARD.encode(key), TS, BODY);
        assert_eq!(
            cfg.verify(&signed_headers(&as_text), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn rotation_second_secret_matches() {
        let cfg = config(&[(var::HMAC_SECRET, " old-secret , ,new-secret ")]).expect("config");
        let sig = default_signature("new-secret", TS, BODY);
        assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
        let sig = default_signature("old-secret", TS, BODY);
        assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
    }

    #[test]
    fn several_signatures_in_one_header() {
        let cfg = default_config();
        let good = default_signature(SECRET, TS, BODY);
        let bad = default_signature("other", TS, BODY);
        for value in [
            format!("{bad} {good}"),
            format!("{bad},{good}"),
            format!("{bad}, not-hex {good}"),
        ] {
            assert!(
                cfg.verify(&signed_headers(&value), BODY, NOW_MS).is_ok(),
                "{value}"
            );
        }
        let other_bad = default_signature("another", TS, BODY);
        assert_eq!(
            cfg.verify(&signed_headers(&format!("{bad} {other_bad}")), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn prefix_with_comma_still_allows_several_signatures() {
        let cfg =
            config(&[(var::HMAC_SECRET, SECRET), (var::SIGNATURE_PREFIX, "v1,")]).expect("config");
        let good = default_signature(SECRET, TS, BODY);
        let bad = default_signature("other", TS, BODY);
        let value = format!("v1,{bad} v1,{good}");
        assert!(cfg.verify(&signed_headers(&value), BODY, NOW_MS).is_ok());
    }

    #[test]
    fn partial_signature_fails() {
        let cfg = default_config();
        let good = default_signature(SECRET, TS, BODY);
        assert_eq!(
            cfg.verify(&signed_headers(&good[..good.len() - 2]), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            cfg.verify(&signed_headers(&good[..good.len() - 1]), BODY, NOW_MS),
            Err(VerifyError::MalformedHeader("x-signature".into()))
        );
        assert_eq!(
            cfg.verify(&signed_headers(&good[..2]), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
        // Too long is as wrong as too short.
        assert_eq!(
            cfg.verify(&signed_headers(&format!("{good}00")), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let sig = default_signature("not-the-secret", TS, BODY);
        assert_eq!(
            default_config().verify(&signed_headers(&sig), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn tampered_body_fails() {
        let sig = default_signature(SECRET, TS, BODY);
        let mut tampered = BODY.to_vec();
        tampered[20] ^= 0x01;
        assert_eq!(
            default_config().verify(&signed_headers(&sig), &tampered, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn signed_timestamp_cannot_be_swapped() {
        let sig = default_signature(SECRET, TS, BODY);
        let h = headers(&[("x-signature", &sig), ("x-timestamp", "1700000001")]);
        assert_eq!(
            default_config().verify(&h, BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn each_missing_header_in_turn() {
        let cfg = default_config();
        let sig = default_signature(SECRET, TS, BODY);
        assert_eq!(
            cfg.verify(&headers(&[("x-timestamp", TS)]), BODY, NOW_MS),
            Err(VerifyError::MissingHeader("x-signature".into()))
        );
        assert_eq!(
            cfg.verify(&headers(&[("x-signature", &sig)]), BODY, NOW_MS),
            Err(VerifyError::MissingHeader("x-timestamp".into()))
        );
        assert_eq!(
            cfg.verify(&Headers::new(), BODY, NOW_MS),
            Err(VerifyError::MissingHeader("x-signature".into()))
        );
    }

    #[test]
    fn repeated_headers_are_refused() {
        let cfg = default_config();
        let good = default_signature(SECRET, TS, BODY);
        let h = headers(&[
            ("x-signature", "00"),
            ("x-timestamp", TS),
            ("X-Signature", &good),
        ]);
        assert_eq!(
            cfg.verify(&h, BODY, NOW_MS),
            Err(VerifyError::RepeatedHeader("x-signature".into()))
        );
        let h = headers(&[
            ("x-signature", &good),
            ("x-timestamp", TS),
            ("x-timestamp", "1"),
        ]);
        assert_eq!(
            cfg.verify(&h, BODY, NOW_MS),
            Err(VerifyError::RepeatedHeader("x-timestamp".into()))
        );
    }

    #[test]
    fn non_utf8_signature_header_is_malformed() {
        let mut h = Headers::new();
        h.push("x-signature", vec![0xff, 0x00]);
        h.push("x-timestamp", TS);
        assert_eq!(
            default_config().verify(&h, BODY, NOW_MS),
            Err(VerifyError::MalformedHeader("x-signature".into()))
        );
    }

    #[test]
    fn timestamp_tolerance_both_sides_of_the_boundary() {
        let cfg = default_config();
        let sig = default_signature(SECRET, TS, BODY);
        let h = signed_headers(&sig);
        let signed_ms = 1_700_000_000_000_i64;
        assert!(cfg.verify(&h, BODY, signed_ms + 300_000).is_ok());
        assert_eq!(
            cfg.verify(&h, BODY, signed_ms + 300_001),
            Err(VerifyError::TimestampTooOld)
        );
        assert!(cfg.verify(&h, BODY, signed_ms - 300_000).is_ok());
        assert_eq!(
            cfg.verify(&h, BODY, signed_ms - 300_001),
            Err(VerifyError::TimestampInFuture)
        );
    }

    #[test]
    fn configured_tolerance_is_used() {
        let cfg = config(&[
            (var::HMAC_SECRET, SECRET),
            (var::TIMESTAMP_TOLERANCE_S, "10"),
        ])
        .expect("config");
        let h = signed_headers(&default_signature(SECRET, TS, BODY));
        assert!(cfg.verify(&h, BODY, 1_700_000_010_000).is_ok());
        assert_eq!(
            cfg.verify(&h, BODY, 1_700_000_011_000),
            Err(VerifyError::TimestampTooOld)
        );
        let zero = config(&[
            (var::HMAC_SECRET, SECRET),
            (var::TIMESTAMP_TOLERANCE_S, "0"),
        ])
        .expect("config");
        assert!(zero.verify(&h, BODY, 1_700_000_000_000).is_ok());
        assert_eq!(
            zero.verify(&h, BODY, 1_699_999_999_999),
            Err(VerifyError::TimestampInFuture)
        );
    }

    #[test]
    fn timestamp_in_milliseconds_or_seconds() {
        let cfg = default_config();
        let ts_ms = "1700000000123";
        let sig = default_signature(SECRET, ts_ms, BODY);
        let h = headers(&[("x-signature", &sig), ("x-timestamp", ts_ms)]);
        assert!(cfg.verify(&h, BODY, 1_700_000_000_123 + 300_000).is_ok());
        assert_eq!(
            cfg.verify(&h, BODY, 1_700_000_000_123 + 300_001),
            Err(VerifyError::TimestampTooOld)
        );
        // The same instant in seconds verifies against the same clock.
        let sig = default_signature(SECRET, TS, BODY);
        assert!(cfg
            .verify(&signed_headers(&sig), BODY, 1_700_000_000_123)
            .is_ok());
    }

    #[test]
    fn malformed_timestamps() {
        let cfg = default_config();
        for ts in [
            "abc",
            "-5",
            "+1700000000",
            "1700000000.5",
            "1.7e9",
            "",
            "99999999999999999999999999",
        ] {
            let sig = default_signature(SECRET, ts, BODY);
            let h = headers(&[("x-signature", &sig), ("x-timestamp", ts)]);
            assert_eq!(
                cfg.verify(&h, BODY, NOW_MS),
                Err(VerifyError::MalformedTimestamp),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        let cfg = default_config();
        let ts = u64::MAX.to_string();
        let sig = default_signature(SECRET, &ts, BODY);
        let h = headers(&[("x-signature", &sig), ("x-timestamp", &ts)]);
        assert_eq!(
            cfg.verify(&h, BODY, i64::MIN),
            Err(VerifyError::TimestampInFuture)
        );
        let h = signed_headers(&default_signature(SECRET, TS, BODY));
        assert_eq!(
            cfg.verify(&h, BODY, i64::MAX),
            Err(VerifyError::TimestampTooOld)
        );
    }

    #[test]
    fn no_timestamp_header_signs_the_body_alone() {
        let cfg =
            config(&[(var::HMAC_SECRET, SECRET), (var::TIMESTAMP_HEADER, "None")]).expect("config");
        let hmac = cfg.hmac.as_ref().expect("hmac");
        assert_eq!(hmac.timestamp_header, None);
        assert_eq!(hmac.payload_format.as_str(), "{body}");
        let sig = hex(&hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), BODY));
        let h = headers(&[("x-signature", &sig)]);
        assert!(cfg.verify(&h, BODY, NOW_MS).is_ok());
        // Any clock: nothing time-bound is signed.
        assert!(cfg.verify(&h, BODY, 0).is_ok());
    }

    #[test]
    fn custom_payload_format_and_headers() {
        let cfg = config(&[
            (var::HMAC_SECRET, SECRET),
            (var::SIGNATURE_HEADER, "X-Vapi-Signature"),
            (var::TIMESTAMP_HEADER, "X-Vapi-Timestamp"),
            (var::SIGNATURE_PAYLOAD, "v0:{timestamp}:{body}"),
        ])
        .expect("config");
        let mut message = format!("v0:{TS}:").into_bytes();
        message.extend_from_slice(BODY);
        let sig = hex(&hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), &message));
        let h = headers(&[("x-vapi-signature", &sig), ("x-vapi-timestamp", TS)]);
        assert!(cfg.verify(&h, BODY, NOW_MS).is_ok());
    }

    #[test]
    fn empty_or_absent_secrets_mean_not_configured() {
        let sig = default_signature(SECRET, TS, BODY);
        for cfg in [
            config(&[]).expect("config"),
            config(&[(var::HMAC_SECRET, " , ,"), (var::SERVER_SECRET, ",")]).expect("config"),
        ] {
            assert!(!cfg.is_configured());
            assert!(cfg.hmac.is_none());
            assert_eq!(
                cfg.verify(&signed_headers(&sig), BODY, NOW_MS),
                Err(VerifyError::NotConfigured)
            );
        }
        // Built by hand with empty secrets: still refused, and an empty value never matches.
        let cfg = VerifyConfig {
            hmac: Some(HmacScheme::new(vec![Secret::from("")])),
            shared_secrets: vec![Secret::from("")],
        };
        assert!(!cfg.is_configured());
        let empty_sig = hex(&hmac_bytes(
            Algorithm::Sha256,
            b"",
            &signed_message(TS, BODY),
        ));
        let h = headers(&[
            ("x-signature", &empty_sig),
            ("x-timestamp", TS),
            ("x-vapi-secret", ""),
        ]);
        assert_eq!(
            cfg.verify(&h, BODY, NOW_MS),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn empty_presented_shared_secret_never_matches() {
        let cfg = config(&[(var::SERVER_SECRET, "shh")]).expect("config");
        assert_eq!(
            cfg.verify(&headers(&[("x-vapi-secret", "  ")]), BODY, NOW_MS),
            Err(VerifyError::SharedSecretMismatch)
        );
        assert_eq!(
            cfg.verify(&headers(&[("authorization", "Bearer ")]), BODY, NOW_MS),
            Err(VerifyError::MalformedHeader("authorization".into()))
        );
    }

    #[test]
    fn inconsistent_hand_built_scheme_fails_closed() {
        let mut scheme = HmacScheme::new(vec![Secret::from(SECRET)]);
        scheme.timestamp_header = None;
        let cfg = VerifyConfig {
            hmac: Some(scheme),
            shared_secrets: Vec::new(),
        };
        let sig = default_signature(SECRET, "", BODY);
        assert_eq!(
            cfg.verify(&headers(&[("x-signature", &sig)]), BODY, NOW_MS),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn hand_built_default_scheme_matches_from_variables() {
        let cfg = VerifyConfig {
            hmac: Some(HmacScheme::new(vec![Secret::from(SECRET)])),
            shared_secrets: Vec::new(),
        };
        let sig = default_signature(SECRET, TS, BODY);
        assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
        assert_eq!(
            format!("{:?}", cfg.hmac),
            format!("{:?}", default_config().hmac)
        );
    }

    #[test]
    fn both_methods_configured_both_must_pass() {
        let cfg =
            config(&[(var::HMAC_SECRET, SECRET), (var::SERVER_SECRET, "shared")]).expect("config");
        let good = default_signature(SECRET, TS, BODY);
        let bad = default_signature("other", TS, BODY);
        let both = headers(&[
            ("x-signature", &good),
            ("x-timestamp", TS),
            ("x-vapi-secret", "shared"),
        ]);
        assert_eq!(
            cfg.verify(&both, BODY, NOW_MS).map(|v| v.methods),
            Ok(vec!["hmac", "shared-secret"])
        );
        let only_hmac = headers(&[
            ("x-signature", &good),
            ("x-timestamp", TS),
            ("x-vapi-secret", "wrong"),
        ]);
        assert_eq!(
            cfg.verify(&only_hmac, BODY, NOW_MS),
            Err(VerifyError::SharedSecretMismatch)
        );
        let hmac_no_secret = signed_headers(&good);
        assert_eq!(
            cfg.verify(&hmac_no_secret, BODY, NOW_MS),
            Err(VerifyError::MissingHeader(
                "x-vapi-secret or authorization".into()
            ))
        );
        let only_shared = headers(&[
            ("x-signature", &bad),
            ("x-timestamp", TS),
            ("x-vapi-secret", "shared"),
        ]);
        assert_eq!(
            cfg.verify(&only_shared, BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn shared_secret_by_header_or_bearer() {
        let cfg = config(&[(var::SERVER_SECRET, "first, second")]).expect("config");
        let ok = |pairs: &[(&str, &str)]| cfg.verify(&headers(pairs), BODY, NOW_MS);
        assert_eq!(
            ok(&[("X-Vapi-Secret", "first")]).map(|v| v.methods),
            Ok(vec!["shared-secret"])
        );
        assert!(ok(&[("x-vapi-secret", "second")]).is_ok());
        assert!(ok(&[("Authorization", "Bearer first")]).is_ok());
        assert!(ok(&[("authorization", "bearer   second")]).is_ok());
        assert_eq!(
            ok(&[("x-vapi-secret", "firs")]),
            Err(VerifyError::SharedSecretMismatch)
        );
        assert_eq!(
            ok(&[("x-vapi-secret", "first-and-more")]),
            Err(VerifyError::SharedSecretMismatch)
        );
        assert_eq!(
            ok(&[("authorization", "Bearer wrong")]),
            Err(VerifyError::SharedSecretMismatch)
        );
        assert_eq!(
            ok(&[("authorization", "Basic Zmlyc3Q=")]),
            Err(VerifyError::MalformedHeader("authorization".into()))
        );
        assert_eq!(
            ok(&[("authorization", "first")]),
            Err(VerifyError::MalformedHeader("authorization".into()))
        );
        // x-vapi-secret decides when present.
        assert_eq!(
            ok(&[
                ("x-vapi-secret", "wrong"),
                ("authorization", "Bearer first")
            ]),
            Err(VerifyError::SharedSecretMismatch)
        );
        assert_eq!(
            ok(&[]),
            Err(VerifyError::MissingHeader(
                "x-vapi-secret or authorization".into()
            ))
        );
        assert_eq!(
            ok(&[("x-vapi-secret", "first"), ("x-vapi-secret", "first")]),
            Err(VerifyError::RepeatedHeader("x-vapi-secret".into()))
        );
        assert_eq!(
            ok(&[
                ("authorization", "Bearer first"),
                ("authorization", "Bearer x")
            ]),
            Err(VerifyError::RepeatedHeader("authorization".into()))
        );
    }

    #[test]
    fn github_published_vector() {
        let cfg = config(&[
            (var::HMAC_SECRET, "It's a Secret to Everybody"),
            (var::SIGNATURE_HEADER, "x-hub-signature-256"),
            (var::TIMESTAMP_HEADER, "none"),
            (var::SIGNATURE_PAYLOAD, "{body}"),
            (var::SIGNATURE_PREFIX, "sha256="),
        ])
        .expect("config");
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            cfg.verify(&h, b"Hello, World!", NOW_MS).map(|v| v.methods),
            Ok(vec!["hmac"])
        );
        assert_eq!(
            cfg.verify(&h, b"Hello, World?", NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn config_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(var::HMAC_ALGORITHM, "md5")],
                "vapi_hmac_algorithm: expected sha256, sha512 or sha1",
            ),
            (
                &[(var::SIGNATURE_ENCODING, "base32")],
                "vapi_signature_encoding: expected hex or base64",
            ),
            (
                &[(var::HMAC_SECRET_BASE64, "yes")],
                "vapi_hmac_secret_base64: expected true or false",
            ),
            (
                &[(var::TIMESTAMP_TOLERANCE_S, "-1")],
                "vapi_timestamp_tolerance_s: expected a non-negative integer",
            ),
            (
                &[(var::TIMESTAMP_TOLERANCE_S, "5m")],
                "vapi_timestamp_tolerance_s: expected a non-negative integer",
            ),
            (
                &[
                    (var::TIMESTAMP_HEADER, "none"),
                    (var::SIGNATURE_PAYLOAD, "{timestamp}.{body}"),
                ],
                "vapi_signature_payload: uses {timestamp} but vapi_timestamp_header is `none`",
            ),
            (
                &[(var::SIGNATURE_PAYLOAD, "{timestamp}.")],
                "vapi_signature_payload: must contain {body}",
            ),
            (
                &[(var::SIGNATURE_PAYLOAD, "{timestamp}.{url}.{body}")],
                "vapi_signature_payload: unsupported placeholder `{url}`",
            ),
            (
                &[(var::SIGNATURE_PAYLOAD, "{body}.{timestamp")],
                "vapi_signature_payload: `{` without a closing `}`",
            ),
            (
                &[(var::SIGNATURE_HEADER, "   ")],
                "vapi_signature_header: the header name is empty",
            ),
            (
                &[(var::TIMESTAMP_HEADER, " ")],
                "vapi_timestamp_header: the header name is empty",
            ),
            (
                &[(var::SIGNATURE_HEADER, "x signature")],
                "vapi_signature_header: `x signature` is not a valid header name",
            ),
            (
                &[
                    (var::HMAC_SECRET, "c2VjcmV0, not base64!"),
                    (var::HMAC_SECRET_BASE64, "true"),
                ],
                "vapi_hmac_secret: secret number 2 is not valid base64",
            ),
        ];
        for (vars, expected) in cases {
            let mut vars = vars.to_vec();
            if !vars.iter().any(|(name, _)| *name == var::HMAC_SECRET) {
                vars.push((var::HMAC_SECRET, SECRET));
            }
            let err = config(&vars).expect_err(expected);
            let message = err.to_string();
            assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
            assert!(!message.contains(SECRET));
        }
    }

    #[test]
    fn secret_not_base64_error_hides_the_secret() {
        let err = config(&[
            (var::HMAC_SECRET, "super$ecret!"),
            (var::HMAC_SECRET_BASE64, "true"),
        ])
        .expect_err("not base64");
        assert!(!err.to_string().contains("super$ecret!"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = config(&[
            (var::HMAC_SECRET, "hmac-secret-value"),
            (var::SERVER_SECRET, "shared-secret-value"),
        ])
        .expect("config");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hmac-secret-value"), "{debug}");
        assert!(!debug.contains("shared-secret-value"), "{debug}");
        assert!(debug.contains("[REDACTED]"));
        // Byte-wise too: Debug of a Vec<u8> would print the numbers.
        let bytes = format!("{:?}", b"hmac-secret-value".to_vec());
        assert!(!debug.contains(&bytes[1..bytes.len() - 1]));
    }

    #[test]
    fn public_reasons_never_carry_the_expected_signature() {
        let cfg = default_config();
        let expected = default_signature(SECRET, TS, BODY);
        let wrong = default_signature("other", TS, BODY);
        let err = cfg
            .verify(&signed_headers(&wrong), BODY, NOW_MS)
            .expect_err("wrong signature");
        let reason = err.public_reason();
        assert_eq!(reason, "no matching signature");
        assert!(!reason.contains(&expected) && !reason.contains(SECRET));
        assert_eq!(err.kind(), "no_matching_signature");
        assert_eq!(
            VerifyError::MissingHeader("x-signature".into()).public_reason(),
            "missing header x-signature"
        );
    }
}
