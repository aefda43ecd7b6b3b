//! A tenant's webhook runs the single-tenant flow unchanged: [`Scoped`] is
//! the host's [`Effects`] with the tenant's variables in front of the
//! deployment's ([`Tenant::variable`]) and the tenant named
//! ([`Effects::tenant`]); every other effect is the host's own.

use super::Tenant;
use crate::dashboard::Read;
use crate::db::{
    Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, PendingLetter, Recorded,
};
use crate::effects::Effects;
use crate::handling::CallRecord;
use crate::kv::{KeyValue, KvError};
use crate::log::LogLine;
use crate::outbound::{OutboundError, OutboundPost, OutboundReply};

pub struct Scoped<'a, E> {
    inner: &'a mut E,
    tenant: &'a Tenant,
}

impl<'a, E: Effects> Scoped<'a, E> {
    pub fn new(inner: &'a mut E, tenant: &'a Tenant) -> Self {
        Scoped { inner, tenant }
    }
}

impl<E: Effects> KeyValue for Scoped<'_, E> {
    async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key).await
    }
    async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.set(key, value).await
    }
    async fn delete(&mut self, key: &str) -> Result<(), KvError> {
        self.inner.delete(key).await
    }
    async fn exists(&mut self, key: &str) -> Result<bool, KvError> {
        self.inner.exists(key).await
    }
    async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.increment(key, delta).await
    }
}

impl<E: Effects> Effects for Scoped<'_, E> {
    fn variable(&self, name: &str) -> Option<String> {
        self.tenant.variable(name, |name| self.inner.variable(name))
    }
    fn tenant(&self) -> &str {
        &self.tenant.id
    }
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    async fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms).await
    }
    fn emit(&mut self, line: &LogLine) {
        self.inner.emit(line)
    }
    fn database(&mut self) -> Database {
        self.inner.database()
    }
    fn database_address(&mut self) -> DatabaseAddress {
        self.inner.database_address()
    }
    async fn record_event(
        &mut self,
        record: &CallRecord,
        rollout_percent: u32,
    ) -> Result<Recorded, DbError> {
        self.inner.record_event(record, rollout_percent).await
    }
    async fn line_answer(
        &mut self,
        tenant: &str,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<LineAnswer, DbError> {
        self.inner
            .line_answer(tenant, vapi_phone_number_id, phone_e164)
            .await
    }
    async fn tenants(&mut self) -> Result<String, DbError> {
        self.inner.tenants().await
    }
    async fn put_tenant(&mut self, id: &str, config: &str) -> Result<(), DbError> {
        self.inner.put_tenant(id, config).await
    }
    async fn delete_tenant(&mut self, id: &str) -> Result<(), DbError> {
        self.inner.delete_tenant(id).await
    }
    fn nonce(&mut self) -> [u8; 12] {
        self.inner.nonce()
    }
    async fn upsert_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DbError> {
        self.inner.upsert_dead_letter(letter).await
    }
    async fn insert_event_row(&mut self, row: &EventRow) -> Result<(), DbError> {
        self.inner.insert_event_row(row).await
    }
    async fn pending_dead_letters(&mut self, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
        self.inner.pending_dead_letters(limit).await
    }
    async fn mark_replayed(&mut self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.inner.mark_replayed(id, outcome).await
    }
    async fn count_pending_dead_letters(&mut self) -> Result<i64, DbError> {
        self.inner.count_pending_dead_letters().await
    }
    async fn schema_version(&mut self) -> Result<Option<String>, DbError> {
        self.inner.schema_version().await
    }
    async fn metrics_snapshot(&mut self) -> Result<String, DbError> {
        self.inner.metrics_snapshot().await
    }
    async fn dashboard_read(&mut self, read: &Read) -> Result<Option<String>, DbError> {
        self.inner.dashboard_read(read).await
    }
    async fn post(&mut self, post: &OutboundPost) -> Result<OutboundReply, OutboundError> {
        self.inner.post(post).await
    }
}
