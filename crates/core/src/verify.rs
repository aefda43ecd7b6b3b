//! Proves that a webhook request came from Vapi, before anything reads its body: an HMAC
//! signature over the raw bytes (Vapi's HMAC credential) and/or a shared secret header.

//!
//! This module holds the configuration (from the variables) and the errors;
//! `signature` checks the HMAC signature and `shared_secret` the secret header.

mod shared_secret;
mod signature;
#[cfg(test)]
mod tests;

use self::shared_secret::*;
pub use self::shared_secret::{bearer_matches, bearer_token, secret_matches};
pub(crate) use self::signature::decode_base64_any;
pub use self::signature::{Algorithm, HmacScheme, PayloadFormat, Secret, SignatureEncoding};
use crate::headers::{HeaderError, Headers};
use thiserror::Error;

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
    pub const SERVER_SECRET_HEADER: &str = "vapi_server_secret_header";
    /// The Bearer secrets kept as SHA-256 hashes (hex, comma-separated)
    /// instead of in clear: a tenant's always, a deployment's if it likes.
    pub const SERVER_SECRET_SHA256: &str = "vapi_server_secret_sha256";
    pub const SIGNATURE_URL: &str = "vapi_signature_url";
    pub const MESSAGE_ID_HEADER: &str = "vapi_message_id_header";
}

/// Everything that proves a request came from Vapi.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub hmac: Option<HmacScheme>,
    /// Accepted values of the shared-secret header or `Authorization`; several for rotation.
    pub shared_secrets: Vec<Secret>,
    /// SHA-256 of more accepted values (`vapi_server_secret_sha256`).
    pub shared_secret_hashes: Vec<[u8; 32]>,
    /// A tenant's OAuth2 credential: its access tokens are accepted where a
    /// shared secret is (set by the webhook flow, not read from variables).
    pub oauth: Option<crate::tenant::oauth::Tokens>,
    /// Lower-case name of the header of Vapi's Bearer credential (its
    /// `headerName`; `x-vapi-secret` for the legacy `serverUrlSecret`).
    pub shared_secret_header: String,
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
        // One body for every caller's closure: the component's size.
        Self::read(&get)
    }

    fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<VerifyConfig, ConfigError> {
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
        let url = value(var::SIGNATURE_URL);
        if payload_format.uses_url() && url.is_none() {
            return Err(ConfigError::UrlWithoutSignatureUrl);
        }
        let message_id_header = match raw(var::MESSAGE_ID_HEADER) {
            None => None,
            Some(v) => Some(header_name(var::MESSAGE_ID_HEADER, &v)?),
        };
        if payload_format.uses_message_id() && message_id_header.is_none() {
            return Err(ConfigError::MessageIdWithoutHeader);
        }

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
                url,
                message_id_header,
            })
        };
        let shared_secret_header = match raw(var::SERVER_SECRET_HEADER) {
            None => SHARED_SECRET_HEADER.to_owned(),
            Some(v) => header_name(var::SERVER_SECRET_HEADER, &v)?,
        };
        let shared_secrets = list_items(raw(var::SERVER_SECRET).as_deref())
            .map(Secret::from)
            .collect();
        let mut shared_secret_hashes = Vec::new();
        for item in list_items(raw(var::SERVER_SECRET_SHA256).as_deref()) {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(item, &mut hash) {
                Ok(()) => shared_secret_hashes.push(hash),
                Err(_) => {
                    return Err(ConfigError::InvalidValue {
                        variable: var::SERVER_SECRET_SHA256,
                        expected: "SHA-256 hashes (64 hex digits each)",
                        // A hash is not the secret; a wrong one is shown
                        // shortened all the same.
                        value: item.chars().take(8).collect::<String>() + "…",
                    });
                }
            }
        }
        Ok(VerifyConfig {
            hmac,
            shared_secrets,
            shared_secret_hashes,
            oauth: None,
            shared_secret_header,
        })
    }

    /// False when neither an HMAC secret nor a shared secret is set: every request must then be refused.
    pub fn is_configured(&self) -> bool {
        self.hmac.as_ref().is_some_and(HmacScheme::has_secret) || self.has_shared_secret()
    }

    /// Whether a shared secret (in clear or hashed) is set.
    fn has_shared_secret(&self) -> bool {
        self.shared_secrets.iter().any(|s| !s.is_empty())
            || !self.shared_secret_hashes.is_empty()
            || self.oauth.is_some()
    }

    /// Checks every configured method (when both HMAC and shared secret are configured, BOTH must pass).
    /// `now_unix_ms` is the clock, passed in so every time rule is testable.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now_unix_ms: i64,
    ) -> Result<Verified, VerifyError> {
        self.verify_request("POST", headers, body, now_unix_ms)
    }

    /// Every check of [`VerifyConfig::verify_request`] that needs no body
    /// (the shared secret whole; of HMAC, the headers and the timestamp): a
    /// request that fails it cannot be authentic whatever its body, so it is
    /// refused before the body is read.
    pub fn verify_head(&self, headers: &Headers, now_unix_ms: i64) -> Result<(), VerifyError> {
        if !self.is_configured() {
            return Err(VerifyError::NotConfigured);
        }
        if let Some(scheme) = self.hmac.as_ref().filter(|s| s.has_secret()) {
            scheme.verify_head(headers, now_unix_ms)?;
        }
        if self.has_shared_secret() {
            verify_shared_secret(self, headers, now_unix_ms)?;
        }
        Ok(())
    }

    /// [`VerifyConfig::verify`] for a request of any method (`{method}`).
    pub fn verify_request(
        &self,
        method: &str,
        headers: &Headers,
        body: &[u8],
        now_unix_ms: i64,
    ) -> Result<Verified, VerifyError> {
        if !self.is_configured() {
            return Err(VerifyError::NotConfigured);
        }
        let mut methods = Vec::new();
        if let Some(scheme) = self.hmac.as_ref().filter(|s| s.has_secret()) {
            scheme.verify_request(method, headers, body, now_unix_ms)?;
            methods.push("hmac");
        }
        if self.has_shared_secret() {
            verify_shared_secret(self, headers, now_unix_ms)?;
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
        "vapi_signature_payload: unsupported placeholder `{{{0}}}` (Vapi's are {{timestamp}}, {{body}}, {{method}}, {{url}} and {{svix-id}})"
    )]
    UnknownPlaceholder(String),
    #[error("vapi_signature_payload: uses {{url}} but vapi_signature_url is not set (the server URL exactly as Vapi has it)")]
    UrlWithoutSignatureUrl,
    #[error("vapi_signature_payload: uses {{svix-id}} but vapi_message_id_header is not set")]
    MessageIdWithoutHeader,
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
