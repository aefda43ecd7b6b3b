//! Adapters from the pure logic to the host's services: variables, clocks,
//! key-value and Postgres.
//!
//! Everything here is a few lines of translation; decisions live in `vapi-edge-core`.
#![forbid(unsafe_code)]

use spin_sdk::pg4::{Connection, DbValue, PgError};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use vapi_edge_core::health::Check;
use vapi_edge_core::schema::{is_compatible, version_number, SCHEMA_VERSION};

/// The key-value store label granted in spin.toml.
pub const KV_STORE: &str = "default";

/// A variable's value; unset and empty are the same (Spin defaults are strings).
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Wall-clock time in Unix milliseconds (for signatures' timestamps and logs).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Blocks this instance for `ms` milliseconds on the host's monotonic clock.
pub fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

pub fn open_postgres(url: &str) -> Result<Connection, PgError> {
    Connection::open(url)
}

/// Text of a column value, for ids and names read back from Postgres.
pub fn text(value: Option<&DbValue>) -> Option<String> {
    match value? {
        DbValue::Str(s) | DbValue::Uuid(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn integer(value: Option<&DbValue>) -> Option<i64> {
    match value? {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(i64::from(*n)),
        DbValue::Int16(n) => Some(i64::from(*n)),
        _ => None,
    }
}

pub fn postgres_check() -> Check {
    let Some(url) = variable("pg_url") else {
        return Check::fail("postgres", "pg_url is not set");
    };
    let connection = match open_postgres(&url) {
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
    let seen = text(rows.rows.first().and_then(|row| row.first())).unwrap_or_default();
    let check = match version_number(&seen) {
        Some(v) if is_compatible(v) => Check::pass("postgres"),
        _ => Check::fail(
            "postgres",
            "schema is older than this build needs (run vapi-edge-host migrate)",
        ),
    };
    check
        .with("schema_version", seen)
        .with("expected_schema_version", SCHEMA_VERSION)
}

fn is_undefined_table(error: &PgError) -> bool {
    matches!(error, PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db)) if db.code == "42P01")
}

/// A Postgres error reduced to what may be logged: the SQLSTATE and the
/// constraint or message, never parameter values.
pub fn describe_pg_error(error: &PgError) -> String {
    match error {
        PgError::ConnectionFailed(why) => format!("connection failed: {why}"),
        PgError::BadParameter(why) => format!("bad parameter: {why}"),
        PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db)) => {
            format!("{} {}", db.code, db.message)
        }
        PgError::QueryFailed(spin_sdk::pg4::QueryError::Text(text)) => text.clone(),
        PgError::ValueConversionFailed(why) => format!("value conversion failed: {why}"),
        PgError::Other(why) => why.clone(),
    }
}

/// Whether a retry by Vapi could succeed without anyone changing anything.
pub fn is_transient(error: &PgError) -> bool {
    match error {
        PgError::ConnectionFailed(_) => true,
        PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(db)) => {
            // Connection exceptions, serialization failures and deadlocks,
            // insufficient resources, operator intervention (e.g. shutdown).
            ["08", "40", "53", "57"]
                .iter()
                .any(|class| db.code.starts_with(class))
        }
        _ => false,
    }
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
