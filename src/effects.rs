//! `vapi_edge_core::effects::Effects` over Spin's interfaces: variables, the
//! clocks, stdout/stderr, `wasi:keyvalue`, the configured database and
//! outbound HTTP. A few lines of translation each; decisions live in core.
//!
//! One `SpinEffects` serves one request: the key-value bucket and the database
//! connection are opened on first use and kept, so what follows the response
//! (the event record) reuses the request's connection.
#![forbid(unsafe_code)]

use crate::db::{Connection, Target};
use crate::outbound;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use std::io::Write;
use vapi_edge_core::dashboard::Read;
use vapi_edge_core::db::{
    Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, PendingLetter, Recorded,
};
use vapi_edge_core::effects::Effects;
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::kv::{KeyValue, KvError};
use vapi_edge_core::log::{Level, LogLine};
use vapi_edge_core::outbound::{OutboundError, OutboundReply, OutboundRequest};

/// The key-value store label granted in spin.toml.
const KV_STORE: &str = "default";

#[derive(Default)]
pub struct SpinEffects {
    bucket: Option<store::Bucket>,
    target: Option<Target>,
    db: Option<Connection>,
    tenant: Option<vapi_edge_core::tenant::Tenant>,
}

impl SpinEffects {
    fn bucket(&mut self) -> Result<&store::Bucket, KvError> {
        if self.bucket.is_none() {
            let bucket = store::open(KV_STORE).map_err(|e| kv_error("open", &e))?;
            self.bucket = Some(bucket);
        }
        Ok(self.bucket.as_ref().expect("opened above"))
    }

    fn target(&mut self) -> &Target {
        self.target
            .get_or_insert_with(|| Target::from_pg_url(self::variable("pg_url")))
    }

    /// The request's connection, opened on first use. A failed open is not
    /// kept: the next operation (e.g. keeping a dead letter) tries again.
    fn db(&mut self) -> Result<&Connection, DbError> {
        if self.db.is_none() {
            let connection = self.target().open().map_err(DbError::unreachable)?;
            self.db = Some(connection);
        }
        Ok(self.db.as_ref().expect("opened above"))
    }
}

/// A variable's value; unset and empty are the same (Spin defaults are strings).
fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// A store error as a short reason (Spin's error enum, without host text).
fn kv_error(operation: &str, error: &store::Error) -> KvError {
    let kind = match error {
        store::Error::NoSuchStore => "no such store",
        store::Error::AccessDenied => "access denied",
        store::Error::Other(_) => "store error",
    };
    KvError(format!("{operation}: {kind}"))
}

impl KeyValue for SpinEffects {
    async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?.get(key).map_err(|e| kv_error("get", &e))
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?
            .set(key, value)
            .map_err(|e| kv_error("set", &e))
    }

    async fn delete(&mut self, key: &str) -> Result<(), KvError> {
        self.bucket()?
            .delete(key)
            .map_err(|e| kv_error("delete", &e))
    }

    async fn exists(&mut self, key: &str) -> Result<bool, KvError> {
        self.bucket()?
            .exists(key)
            .map_err(|e| kv_error("exists", &e))
    }

    async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(self.bucket()?, key, delta).map_err(|e| kv_error("increment", &e))
    }
}

impl Effects for SpinEffects {
    fn tenant_scope(&self) -> Option<&vapi_edge_core::tenant::Tenant> {
        self.tenant.as_ref()
    }

    fn set_tenant_scope(&mut self, tenant: Option<vapi_edge_core::tenant::Tenant>) {
        self.tenant = tenant;
    }

    fn deployment_variable(&self, name: &str) -> Option<String> {
        variable(name)
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// Blocks this instance on the host's monotonic clock.
    async fn sleep_ms(&mut self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    /// INFO on stdout; WARN and worse on stderr (Spin collects both). One
    /// write per line: instances share the host's stdout and stderr, and a pipe
    /// keeps a single write of up to 4 KiB whole, where `println!` may split a
    /// line into several writes that interleave with another instance's.
    fn emit(&mut self, line: &LogLine) {
        let mut text = line.render(self.now_ms());
        text.push('\n');
        let _ = match line.level() {
            Level::Debug => return,
            Level::Info => std::io::stdout().lock().write_all(text.as_bytes()),
            Level::Warn | Level::Error | Level::Critical => {
                std::io::stderr().lock().write_all(text.as_bytes())
            }
        };
    }

    fn database(&mut self) -> Database {
        self.target().database()
    }

    fn database_address(&mut self) -> DatabaseAddress {
        self.target().address()
    }

    async fn record_event(
        &mut self,
        record: &CallRecord,
        rollout: u32,
    ) -> Result<Recorded, DbError> {
        self.db()?.record_event(record, rollout)
    }

    async fn line_answer(
        &mut self,
        tenant: &str,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<LineAnswer, DbError> {
        self.db()?
            .line_answer(tenant, vapi_phone_number_id, phone_e164)
    }

    async fn tenants(&mut self) -> Result<String, DbError> {
        self.db()?.tenants()
    }

    async fn put_tenant(&mut self, id: &str, config: &str) -> Result<(), DbError> {
        self.db()?.put_tenant(id, config)
    }

    async fn delete_tenant(&mut self, id: &str) -> Result<(), DbError> {
        self.db()?.delete_tenant(id)
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        let random = wasi::random::random::get_random_bytes(12);
        nonce.copy_from_slice(&random[..12]);
        nonce
    }

    async fn upsert_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DbError> {
        self.db()?.upsert_dead_letter(letter)
    }

    async fn insert_event_row(&mut self, row: &EventRow) -> Result<(), DbError> {
        self.db()?.insert_event_row(row)
    }

    async fn pending_dead_letters(&mut self, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
        self.db()?.pending_dead_letters(limit)
    }

    async fn mark_replayed(&mut self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.db()?.mark_replayed(id, outcome)
    }

    async fn count_pending_dead_letters(&mut self) -> Result<i64, DbError> {
        self.db()?.count_pending_dead_letters()
    }

    async fn schema_version(&mut self) -> Result<Option<String>, DbError> {
        self.db()?.schema_version()
    }

    async fn metrics_snapshot(&mut self) -> Result<String, DbError> {
        self.db()?.metrics_snapshot()
    }

    async fn read_json(&mut self, read: &Read) -> Result<Option<String>, DbError> {
        self.db()?.read_json(read)
    }

    async fn send(&mut self, post: &OutboundRequest) -> Result<OutboundReply, OutboundError> {
        outbound::send(post)
    }
}
