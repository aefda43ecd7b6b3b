//! Everything the webhook flow does to the world, as one trait: variables,
//! the clock, log lines, the key-value store, the database and the relay. The
//! component implements it over Spin's interfaces, the native baseline over
//! tokio-postgres and Redis, and the unit tests over a fake that records.
//!
//! Async so that a native host can await its I/O; the component's calls
//! complete at once (Spin's interfaces it uses are blocking).

use crate::dashboard::Read;
use crate::db::{
    Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, PendingLetter, Recorded,
};
use crate::handling::CallRecord;
use crate::kv::KeyValue;
use crate::log::LogLine;
use crate::outbound::{OutboundError, OutboundReply, OutboundRequest};
use crate::tenant::Tenant;

#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound needed
pub trait Effects: KeyValue {
    /// A deployment variable's value (the host's configuration); unset and
    /// empty (after trimming) are both `None`.
    fn deployment_variable(&self, name: &str) -> Option<String>;
    /// The tenant whose server URL the request came in on, once the flow has
    /// looked it up; `None` on the single-tenant route.
    fn tenant_scope(&self) -> Option<&Tenant>;
    /// Puts the request in `tenant`'s scope (or out of any).
    fn set_tenant_scope(&mut self, tenant: Option<Tenant>);

    /// A variable as the request sees it: in a tenant's scope, the tenant's
    /// own for what a tenant sets ([`Tenant::variable`]), else the
    /// deployment's.
    fn variable(&self, name: &str) -> Option<String> {
        match self.tenant_scope() {
            Some(tenant) => tenant.variable(name, |name| self.deployment_variable(name)),
            None => self.deployment_variable(name),
        }
    }
    /// The request's tenant id; '' for the single-tenant route.
    fn tenant(&self) -> &str {
        self.tenant_scope().map_or("", |tenant| tenant.id.as_str())
    }
    /// Wall-clock time in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Waits `ms` milliseconds (the agent lookup's retry schedule).
    async fn sleep_ms(&mut self, ms: u64);
    /// Writes one log line.
    fn emit(&mut self, line: &LogLine);

    /// The database the records go to, as configured.
    fn database(&mut self) -> Database;
    /// Where that database is, as configured (what scopes the claims).
    fn database_address(&mut self) -> DatabaseAddress;
    /// Finds the call's owner (in `CallRecord`'s order) and, in one
    /// transaction, records the event in `processed_webhook_events` and
    /// upserts `call_tracking` (inbound) and `call_logs`. Inbound calls of
    /// organisations outside the rollout write nothing; a call nobody owns is
    /// written without an owner when `CallRecord::keeps_unowned`, else not.
    async fn record_event(
        &mut self,
        record: &CallRecord,
        rollout_percent: u32,
    ) -> Result<Recorded, DbError>;
    /// What answers an `assistant-request` on a line of `tenant` (by Vapi
    /// phone-number id, else by E.164 number): its agent with the assistant id, and the
    /// line's fallback.
    async fn line_answer(
        &mut self,
        tenant: &str,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<LineAnswer, DbError>;
    /// Every tenant, as one JSON array of `{"id", "config"}` (see
    /// [`crate::tenant::Stored`]); `[]` when there is none.
    async fn tenants(&mut self) -> Result<String, DbError>;
    /// Writes tenant `id`'s whole configuration (JSON text of
    /// [`crate::tenant::Stored`]), creating the tenant if needed.
    async fn put_tenant(&mut self, id: &str, config: &str) -> Result<(), DbError>;
    /// Deletes tenant `id` (its calls and mappings stay).
    async fn delete_tenant(&mut self, id: &str) -> Result<(), DbError>;
    /// 12 random bytes from the host's secure source: a nonce to seal with.
    fn nonce(&mut self) -> [u8; 12];
    /// Keeps one pending dead letter per event; a repeated failure bumps `attempts`.
    async fn upsert_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DbError>;
    async fn insert_event_row(&mut self, row: &EventRow) -> Result<(), DbError>;
    /// Pending dead letters, oldest first.
    async fn pending_dead_letters(&mut self, limit: i64) -> Result<Vec<PendingLetter>, DbError>;
    async fn mark_replayed(&mut self, id: i64, outcome: &str) -> Result<(), DbError>;
    async fn count_pending_dead_letters(&mut self) -> Result<i64, DbError>;
    /// The newest applied migration; `None` when the schema was never migrated.
    async fn schema_version(&mut self) -> Result<Option<String>, DbError>;
    /// The metrics snapshot as JSON text (see `metrics::Snapshot`).
    async fn metrics_snapshot(&mut self) -> Result<String, DbError>;
    /// A statement of one JSON row ([`Read`]: the dashboard's reads,
    /// reconciliation's statements): that row's text, `None` when it is NULL
    /// or (SQLite) there is no row.
    async fn read_json(&mut self, read: &Read) -> Result<Option<String>, DbError>;

    /// Sends a request (a POST to the relay or the upstream, a GET to Vapi's
    /// API) and reads the answer,
    /// within the post's own timeout.
    async fn send(&mut self, post: &OutboundRequest) -> Result<OutboundReply, OutboundError>;
}
