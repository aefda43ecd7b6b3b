//! Adapters from the pure logic to the host's services: variables, key-value, Postgres.
//!
//! Everything here is a few lines of translation; decisions live in `vapi-edge-core`.
#![forbid(unsafe_code)]

use spin_sdk::pg4::{Connection, Decode, PgError};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use vapi_edge_core::health::Check;
use vapi_edge_core::schema::{version_number, SCHEMA_VERSION};

/// The key-value store label granted in spin.toml.
pub const KV_STORE: &str = "default";

/// A variable's value; unset and empty are the same (Spin defaults are strings).
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

pub fn postgres_check() -> Check {
    let Some(url) = variable("pg_url") else {
        return Check::fail("postgres", "pg_url is not set");
    };
    let connection = match Connection::open(&url) {
        Ok(connection) => connection,
        Err(_) => return Check::fail("postgres", "connection failed"),
    };
    let rows = match connection.query(
        "SELECT coalesce(max(version), '') AS version FROM schema_migrations",
        &[],
    ) {
        Ok(rows) => rows,
        Err(error) if is_undefined_table(&error) => {
            return Check::fail(
                "postgres",
                "schema is not migrated (run vapi-edge-host migrate)",
            )
        }
        Err(_) => return Check::fail("postgres", "query failed"),
    };
    let seen = rows
        .rows
        .first()
        .and_then(|row| row.first())
        .and_then(|value| String::decode(value).ok())
        .unwrap_or_default();
    let check = match version_number(&seen) {
        Some(v) if v == SCHEMA_VERSION => Check::pass("postgres"),
        _ => Check::fail("postgres", "schema version differs from the expected one"),
    };
    check
        .with("schema_version", seen)
        .with("expected_schema_version", SCHEMA_VERSION)
}

fn is_undefined_table(error: &PgError) -> bool {
    matches!(error, PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db)) if db.code == "42P01")
}

/// Proves the store answers and keeps state across requests: each probe
/// increments a counter that lives in the host, not in this instance.
pub fn key_value_check() -> Check {
    let bucket = match store::open(KV_STORE) {
        Ok(bucket) => bucket,
        Err(_) => return Check::fail("key_value", "store could not be opened"),
    };
    match atomics::increment(&bucket, "vapi-edge/healthz/probes", 1) {
        Ok(count) => Check::pass("key_value").with("probes", count),
        Err(_) => Check::fail("key_value", "store did not answer"),
    }
}
