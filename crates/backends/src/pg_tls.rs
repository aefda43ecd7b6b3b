//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` in a `pg_url`, read
//! here (tokio-postgres knows neither `verify-ca`, `verify-full` nor
//! `sslrootcert`) and turned into a rustls connector, for every command that
//! connects (`up`, `migrate`, `seed-agent`, the benchmark).
//!
//! Spin's outbound PostgreSQL verifies the server's certificate and host name
//! against the system's roots for every `sslmode` except `disable`, so this
//! host does too: `prefer` and `require` verify like `verify-full`. That is
//! stricter than libpq, whose `require` encrypts without verifying, and it is
//! deliberate: a `pg_url` that works here must work in `spin up`, and an
//! unverified `require` here would pass against a server Spin refuses.
//! `prefer` still falls back to plain text when the server offers no TLS, as
//! in libpq and Spin (a server that offers TLS with a bad certificate fails).
//!
//! | `sslmode`             | TLS                        | verifies                   |
//! |-----------------------|----------------------------|----------------------------|
//! | `disable`             | never                      | -                          |
//! | `prefer` (default)    | if the server offers it    | chain and host name        |
//! | `require`             | always                     | chain and host name (Spin) |
//! | `verify-ca`           | always                     | chain only                 |
//! | `verify-full`         | always                     | chain and host name        |
//!
//! The roots are the system's (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured)
//! plus, with `sslrootcert=<file>`, every certificate in that PEM file, so a
//! managed server's CA (RDS, Cloud SQL, a private CA) can be trusted without
//! touching the system store. Unlike libpq, a file adds to the system roots
//! rather than replacing them; `sslrootcert=system` means the system roots
//! alone, as in libpq 16.
//!
//! `verify-ca`, `verify-full` and `sslrootcert` are this host's additions:
//! Spin 4.0.2 does not accept them (`host/tests/it/tls.rs`). The portable
//! form for a private CA is `sslmode=require` with the CA in the system's
//! store (or `SSL_CERT_FILE`), which both hosts read.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as this host applies it (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, PgUrlError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plain text first: Spin has no such mode.
            other => return Err(PgUrlError::UnknownSslMode(other.to_string())),
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether to
    /// carry on in plain text when the server declines.
    fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            SslMode::Disable => Wire::Disable,
            SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        }
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's roots (no `sslrootcert`, or `sslrootcert=system`).
    System,
    /// The system's roots and every certificate in this PEM file.
    SystemAnd(PathBuf),
}

/// Why a `pg_url` cannot be used. None of these carries the URL itself: it
/// may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error("pg_url is not a valid PostgreSQL connection string: {0}")]
    Invalid(String),
    #[error(
        "pg_url has sslmode={0}, which this host does not support \
         (use disable, prefer, require, verify-ca or verify-full)"
    )]
    UnknownSslMode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    UnreadableRootCert { path: PathBuf, reason: String },
    #[error("sslrootcert {path} holds no PEM certificate")]
    NoRootCert { path: PathBuf },
}

/// A `pg_url` made ready to connect: the tokio-postgres configuration
/// (without the parameters handled here) and the TLS connector its mode needs.
#[derive(Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
}

impl std::fmt::Debug for PgTarget {
    // tokio_postgres::Config's Debug already redacts the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Reads `url` (a `postgres://` URL or libpq's `key=value` form) and
    /// loads the roots it names; an unreadable `sslrootcert` fails here.
    pub fn parse(url: &str) -> Result<PgTarget, PgUrlError> {
        let settings = TlsSettings::take_from(url)?;
        // tokio-postgres' reason (`unknown option `sslcert``) is in the
        // error's source; it names keys, never values.
        let mut config = tokio_postgres::Config::from_str(&settings.rest).map_err(|e| {
            use std::error::Error;
            PgUrlError::Invalid(match e.source() {
                Some(reason) => format!("{e}: {reason}"),
                None => e.to_string(),
            })
        })?;
        config.ssl_mode(settings.mode.for_tokio_postgres());
        let tls = MakeRustlsConnect::new(client_config(settings.mode, &settings.roots)?);
        Ok(PgTarget {
            config,
            tls,
            mode: settings.mode,
        })
    }
}

/// One connection for a command (`migrate`, `seed-agent`, the benchmark),
/// with the TLS `url`'s `sslmode` and `sslrootcert` ask for. Errors name the
/// parameter or file at fault, never the URL, which may hold a password.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let PgTarget {
        mut config, tls, ..
    } = PgTarget::parse(url)?;
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(tls).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at pg_url: {} ({TLS_HINT})",
            error_chain(&e)
        )
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The TLS parameters of a connection string, and the string without them.
#[derive(Debug, PartialEq, Eq)]
struct TlsSettings {
    mode: SslMode,
    roots: Roots,
    rest: String,
}

impl TlsSettings {
    fn take_from(url: &str) -> Result<TlsSettings, PgUrlError> {
        let mut mode = None;
        let mut root_file = None;
        let mut take = |key: &str, value: &str| -> Result<bool, PgUrlError> {
            match key {
                "sslmode" => mode = Some(SslMode::parse(value)?),
                "sslrootcert" => root_file = Some(value.to_string()),
                _ => return Ok(false),
            }
            Ok(true)
        };
        let rest = if is_url(url) {
            strip_url_params(url, &mut take)?
        } else {
            strip_keyword_params(url, &mut take)?
        };
        let roots = match root_file.as_deref() {
            None | Some("system") => Roots::System,
            Some(path) => Roots::SystemAnd(PathBuf::from(path)),
        };
        Ok(TlsSettings {
            mode: mode.unwrap_or(SslMode::Prefer),
            roots,
            rest,
        })
    }
}

fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

type Take<'a> = dyn FnMut(&str, &str) -> Result<bool, PgUrlError> + 'a;

/// Removes the parameters `take` accepts from a URL's query. The query starts
/// at the first `?` after the credentials, which end at the first `@`, as in
/// tokio-postgres' own parser (so a `?` in a password is not mistaken).
fn strip_url_params(url: &str, take: &mut Take<'_>) -> Result<String, PgUrlError> {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(query_at) = url[after_credentials..]
        .find('?')
        .map(|i| i + after_credentials)
    else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for pair in url[query_at + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(&decode(key)?, &decode(value)?)? {
            kept.push(pair);
        }
    }
    let mut rest = url[..query_at].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(rest)
}

fn decode(text: &str) -> Result<Cow<'_, str>, PgUrlError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| PgUrlError::Invalid("a parameter is not UTF-8 once decoded".into()))
}

/// Removes the parameters `take` accepts from libpq's `key=value` form
/// (values optionally single-quoted, with backslash escapes), re-quoting the
/// others.
fn strip_keyword_params(text: &str, take: &mut Take<'_>) -> Result<String, PgUrlError> {
    let mut kept = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(PgUrlError::Invalid(format!("expected `=` after `{key}`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(PgUrlError::Invalid("unterminated quoted value".into())),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&key, &value)? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(kept.join(" "))
}

/// The system's roots, read once per process. Certificates that do not parse
/// are skipped: with no usable root every verified connection fails, which
/// is the safe way to fail.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, PgUrlError> {
    let mut store = system_roots().clone();
    if let Roots::SystemAnd(path) = roots {
        store.add_parsable_certificates(read_pem_certificates(path)?);
    }
    Ok(store)
}

/// Every certificate in a PEM file; an unreadable file, or one with no
/// certificate in it, is an error that names the file.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PgUrlError> {
    let unreadable = |reason: String| PgUrlError::UnreadableRootCert {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PgUrlError::NoRootCert {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: SslMode, roots: &Roots) -> Result<rustls::ClientConfig, PgUrlError> {
    if mode == SslMode::Disable {
        // tokio-postgres never asks for TLS: skip reading any file.
        return Ok(builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    let roots = load_roots(roots)?;
    Ok(match mode {
        SslMode::VerifyCa => builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots,
                provider: provider(),
            }))
            .with_no_client_auth(),
        _ => builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    })
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

/// `verify-ca`: the chain must lead to a trusted root, the name is not
/// checked (the server may be reached by an address its certificate does not
/// list). Signatures of the handshake are still verified.
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An error and its causes on one line: tokio-postgres says "error
/// performing TLS handshake" and keeps rustls' reason (`UnknownIssuer`,
/// `NotValidForName`) in the source. Driver errors hold no connection string.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = next.source();
    }
    text
}

/// A hint for a failed connection's log line, when the failure looks like TLS.
pub const TLS_HINT: &str = "TLS is verified for every sslmode except disable, require \
     included, as in Spin; for a private CA add sslrootcert=<ca.pem> to pg_url, \
     for a server reached by an address its certificate does not name use sslmode=verify-ca, \
     for a local server without TLS use sslmode=disable";

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> TlsSettings {
        TlsSettings::take_from(url).unwrap()
    }

    #[test]
    fn without_sslmode_the_mode_is_prefer_with_system_roots() {
        let s = settings("postgres://u:p@db.example.com:5432/app");
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(s.roots, Roots::System);
        assert_eq!(s.rest, "postgres://u:p@db.example.com:5432/app");
    }

    #[test]
    fn every_mode_is_read_and_removed_from_the_url() {
        for (word, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let s = settings(&format!(
                "postgres://u@h/db?application_name=x&sslmode={word}&connect_timeout=3"
            ));
            assert_eq!(s.mode, mode, "{word}");
            assert_eq!(
                s.rest,
                "postgres://u@h/db?application_name=x&connect_timeout=3"
            );
        }
    }

    #[test]
    fn sslrootcert_is_a_percent_decoded_path_or_system() {
        let s =
            settings("postgresql://h/db?sslrootcert=%2Fetc%2Fca%20bundle.pem&sslmode=verify-full");
        assert_eq!(
            s.roots,
            Roots::SystemAnd(PathBuf::from("/etc/ca bundle.pem"))
        );
        assert_eq!(s.rest, "postgresql://h/db");
        assert_eq!(
            settings("postgres://h/db?sslrootcert=system").roots,
            Roots::System
        );
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let s = settings("postgres://u:pa?ss@h/db?sslmode=require");
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.rest, "postgres://u:pa?ss@h/db");
    }

    #[test]
    fn unknown_modes_are_named_and_the_url_is_not() {
        let err = TlsSettings::take_from("postgres://u:hunter2@h/db?sslmode=allow").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sslmode=allow"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn keyword_form_is_read_and_the_rest_requoted() {
        let s = settings(
            "host=h  user = 'o\\'brien' sslmode=verify-ca sslrootcert='/a b/ca.pem' dbname=x",
        );
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.roots, Roots::SystemAnd(PathBuf::from("/a b/ca.pem")));
        assert_eq!(s.rest, "host='h' user='o\\'brien' dbname='x'");
        let config = tokio_postgres::Config::from_str(&s.rest).unwrap();
        assert_eq!(config.get_user(), Some("o'brien"));
    }

    #[test]
    fn verify_modes_pass_tokio_postgres_require() {
        let target = PgTarget::parse("postgres://u@h/db?sslmode=verify-full").unwrap();
        assert_eq!(target.mode, SslMode::VerifyFull);
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let target = PgTarget::parse("postgres://u@h/db").unwrap();
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
    }

    #[test]
    fn an_unreadable_sslrootcert_names_the_file() {
        let err = PgTarget::parse(
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let dir = std::env::temp_dir().join(format!("pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = PgTarget::parse(&format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .unwrap_err();
        assert!(matches!(err, PgUrlError::NoRootCert { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disable_reads_no_file() {
        let target =
            PgTarget::parse("postgres://h/db?sslmode=disable&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn other_libpq_parameters_still_reach_tokio_postgres() {
        let err = PgTarget::parse("postgres://h/db?sslmode=require&sslcert=/c.pem").unwrap_err();
        assert!(err.to_string().contains("sslcert"), "{err}");
    }
}
