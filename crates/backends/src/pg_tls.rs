//! TLS to PostgreSQL, the way Spin does it, so that one `pg_url` behaves the
//! same in `spin up` and in `vapi-edge-host`.
//!
//! Spin's outbound PostgreSQL uses TLS with certificate verification against
//! the system's roots for every `sslmode` except `disable` (`prefer` still falls
//! back to plain text when the server offers no TLS). This host does exactly
//! that, with rustls and the system's roots: `sslmode=disable` never sends a TLS
//! request, and any other mode verifies the server's certificate and host name.
//! (libpq's `require` does not verify; Spin's does, and parity with Spin is
//! what lets a URL tested here work there.)

use std::sync::{Arc, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for every PostgreSQL connection this process opens. With
/// `sslmode=disable` tokio-postgres never calls it.
pub fn connector() -> MakeRustlsConnect {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    MakeRustlsConnect::new(CONFIG.get_or_init(client_config).clone())
}

/// Verifies servers against the system's root certificates (what native-tls,
/// Spin's TLS library, uses on Linux). Unreadable certificates are skipped:
/// with no usable root every TLS connection fails verification, which is the
/// safe way to fail.
fn client_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
