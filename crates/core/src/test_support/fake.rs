//! [`Fake`] effects for the flows' unit tests: a map for the key-value
//! store, a scripted database, a clock that only moves when told, every log
//! line and every POST kept.

use crate::db::{
    Agent, Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, Owner, OwnerVia,
    PendingLetter, Recorded,
};
use crate::effects::Effects;
use crate::handling::CallRecord;
use crate::kv::fake::MapStore;
use crate::kv::{KeyValue, KvError};
use crate::log::LogLine;
use crate::outbound::{OutboundError, OutboundReply, OutboundRequest};
use std::collections::{HashMap, VecDeque};

/// The shared secret [`Fake::new`] configures.
pub(crate) const SECRET: &str = "shared-secret-1";
/// The organisation of [`ava`].
pub(crate) const ORG: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";

/// The agent the fake database finds by default.
pub(crate) fn ava() -> Owner {
    Owner {
        org_id: ORG.into(),
        agent: Some(Agent {
            id: "agent-1".into(),
            org_id: ORG.into(),
            name: "Ava".into(),
        }),
        via: OwnerVia::Assistant,
    }
}

#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) kv: MapStore,
    pub(crate) vars: HashMap<&'static str, String>,
    pub(crate) now_ms: i64,
    pub(crate) slept: Vec<u64>,
    pub(crate) lines: Vec<LogLine>,
    /// Answers of `record_event`, in order; when empty, `Recorded::New`.
    pub(crate) record_answers: VecDeque<Result<Recorded, DbError>>,
    pub(crate) record_calls: usize,
    /// The records `record_event` was given, in order.
    pub(crate) records: Vec<CallRecord>,
    pub(crate) line: LineAnswer,
    pub(crate) database_down: bool,
    pub(crate) dead_letters: Vec<DeadLetter>,
    pub(crate) event_rows: Vec<EventRow>,
    pub(crate) pending: Vec<PendingLetter>,
    pub(crate) replayed: Vec<(i64, String)>,
    /// Every POST sent (relay notifications, upstream forwards).
    pub(crate) posted: Vec<OutboundRequest>,
    pub(crate) relay_status: u16,
    /// The upstream's answer, when set; otherwise every POST gets
    /// `relay_status` with an empty body.
    pub(crate) upstream_reply: Option<Result<OutboundReply, OutboundError>>,
    /// Every dashboard read asked for, and the answers to give, in order
    /// (when empty: one NULL row).
    pub(crate) dashboard_reads: Vec<crate::dashboard::Read>,
    pub(crate) dashboard_answers: VecDeque<Result<Option<String>, DbError>>,
    /// The `tenants` table, as `Effects::tenants` returns it, and how many
    /// times it was read.
    pub(crate) tenants: Vec<(String, crate::tenant::Stored)>,
    pub(crate) tenant_reads: usize,
    /// The tenant `line_answer` was asked for, last.
    pub(crate) line_tenant: Option<String>,
    pub(crate) nonces: u8,
    pub(crate) tenant: Option<crate::tenant::Tenant>,
    /// Answers to GET requests (Vapi's API), in order; when empty, 404.
    pub(crate) get_answers: VecDeque<Result<OutboundReply, OutboundError>>,
}

impl Fake {
    pub(crate) fn new() -> Fake {
        let mut fake = Fake {
            now_ms: 1_796_000_000_000,
            relay_status: 200,
            ..Fake::default()
        };
        fake.vars.insert("vapi_server_secret", SECRET.into());
        fake
    }

    pub(crate) fn var(mut self, name: &'static str, value: &str) -> Fake {
        self.vars.insert(name, value.into());
        self
    }

    pub(crate) fn lines_with(&self, msg: &str) -> Vec<&LogLine> {
        self.lines.iter().filter(|l| l.msg() == msg).collect()
    }

    fn down(&self) -> Result<(), DbError> {
        if self.database_down {
            return Err(DbError::transient("connection failed: refused").unreachable());
        }
        Ok(())
    }
}

impl KeyValue for Fake {
    async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.get(key).await
    }
    async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv.set(key, value).await
    }
    async fn delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv.delete(key).await
    }
    async fn exists(&mut self, key: &str) -> Result<bool, KvError> {
        self.kv.exists(key).await
    }
    async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.kv.increment(key, delta).await
    }
}

impl Effects for Fake {
    fn tenant_scope(&self) -> Option<&crate::tenant::Tenant> {
        self.tenant.as_ref()
    }
    fn set_tenant_scope(&mut self, tenant: Option<crate::tenant::Tenant>) {
        self.tenant = tenant;
    }
    fn deployment_variable(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .cloned()
            .filter(|v| !v.trim().is_empty())
    }
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    async fn sleep_ms(&mut self, ms: u64) {
        self.slept.push(ms);
        self.now_ms += ms as i64;
    }
    fn emit(&mut self, line: &LogLine) {
        self.lines.push(line.clone());
    }
    fn database(&mut self) -> Database {
        Database::Postgres
    }
    fn database_address(&mut self) -> DatabaseAddress {
        DatabaseAddress::Postgres {
            url: "postgres://app@db.example.com/vapi_edge".into(),
        }
    }
    async fn record_event(
        &mut self,
        record: &CallRecord,
        _rollout_percent: u32,
    ) -> Result<Recorded, DbError> {
        self.down()?;
        self.record_calls += 1;
        self.records.push(record.clone());
        self.record_answers.pop_front().unwrap_or(Ok(Recorded::New {
            owner: Some(ava()),
            tracked: true,
            lead_id: None,
        }))
    }
    async fn line_answer(
        &mut self,
        tenant: &str,
        _id: Option<&str>,
        _e164: Option<&str>,
    ) -> Result<LineAnswer, DbError> {
        self.down()?;
        self.line_tenant = Some(tenant.to_string());
        Ok(self.line.clone())
    }
    async fn put_tenant(&mut self, id: &str, config: &str) -> Result<(), DbError> {
        self.down()?;
        let config =
            crate::tenant::Stored::from_json(&serde_json::from_str(config).unwrap()).unwrap();
        self.tenants.retain(|(i, _)| i != id);
        self.tenants.push((id.to_string(), config));
        Ok(())
    }
    async fn delete_tenant(&mut self, id: &str) -> Result<(), DbError> {
        self.down()?;
        self.tenants.retain(|(i, _)| i != id);
        Ok(())
    }
    fn nonce(&mut self) -> [u8; 12] {
        self.nonces += 1;
        [self.nonces; 12]
    }
    async fn tenants(&mut self) -> Result<String, DbError> {
        self.down()?;
        self.tenant_reads += 1;
        let rows: Vec<serde_json::Value> = self
            .tenants
            .iter()
            .map(|(id, config)| serde_json::json!({ "id": id, "config": config.to_json() }))
            .collect();
        Ok(serde_json::Value::Array(rows).to_string())
    }
    async fn upsert_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DbError> {
        self.down()?;
        self.dead_letters.push(letter.clone());
        Ok(())
    }
    async fn insert_event_row(&mut self, row: &EventRow) -> Result<(), DbError> {
        self.down()?;
        self.event_rows.push(row.clone());
        Ok(())
    }
    async fn pending_dead_letters(&mut self, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
        self.down()?;
        Ok(self.pending.iter().take(limit as usize).cloned().collect())
    }
    async fn mark_replayed(&mut self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.down()?;
        self.pending.retain(|l| l.id != id);
        self.replayed.push((id, outcome.to_string()));
        Ok(())
    }
    async fn count_pending_dead_letters(&mut self) -> Result<i64, DbError> {
        self.down()?;
        Ok(self.pending.len() as i64)
    }
    async fn schema_version(&mut self) -> Result<Option<String>, DbError> {
        self.down()?;
        Ok(Some("0002_operations".into()))
    }
    async fn metrics_snapshot(&mut self) -> Result<String, DbError> {
        self.down()?;
        Err(DbError::lasting("not in this fake"))
    }
    async fn read_json(
        &mut self,
        read: &crate::dashboard::Read,
    ) -> Result<Option<String>, DbError> {
        self.down()?;
        self.dashboard_reads.push(read.clone());
        self.dashboard_answers.pop_front().unwrap_or(Ok(None))
    }
    async fn send(&mut self, post: &OutboundRequest) -> Result<OutboundReply, OutboundError> {
        self.posted.push(post.clone());
        if post.get {
            return self.get_answers.pop_front().unwrap_or(Ok(OutboundReply {
                retry_after: None,
                status: 404,
                content_type: None,
                body: Vec::new(),
            }));
        }
        match &self.upstream_reply {
            Some(reply) => reply.clone(),
            None => Ok(OutboundReply {
                retry_after: None,
                status: self.relay_status,
                content_type: None,
                body: Vec::new(),
            }),
        }
    }
}
