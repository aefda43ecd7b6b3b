//! The durable records: in PostgreSQL when `pg_url` is set (production), and
//! otherwise in the host's built-in SQLite database `default` (Spin's
//! zero-configuration store, granted in spin.toml). Both keep the same tables
//! with the same guarantees: an event's rows and its idempotency record
//! commit together or not at all.
#![forbid(unsafe_code)]

mod postgres;
mod sqlite;

use crate::services::variable;
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::health::Check;
use vapi_edge_core::schema::{is_compatible, version_number, SCHEMA_VERSION};

/// The agent that owns the call (found by its Vapi assistant id).
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub org_id: String,
    pub name: String,
}

impl Agent {
    /// From the columns (id, org_id, name) as read back; `None` without an
    /// id or organisation.
    fn from_columns(
        id: Option<String>,
        org_id: Option<String>,
        name: Option<String>,
    ) -> Option<Agent> {
        Some(Agent {
            id: id?,
            org_id: org_id?,
            name: name.unwrap_or_default(),
        })
    }
}

pub enum Recorded {
    /// This attempt wrote the event.
    New {
        agent: Agent,
        tracked: bool,
        lead_id: Option<String>,
    },
    /// `processed_webhook_events` already had the key: nothing was written.
    Duplicate { agent: Agent },
    /// No agent has the assistant id (yet): nothing was written.
    AgentNotFound,
    /// The agent's organisation is outside the inbound rollout: nothing was written.
    OutsideRollout { agent: Agent },
}

/// What `webhook_events` keeps of one verified request (the metrics' source).
#[derive(Debug, Clone, Default)]
pub struct EventRow {
    pub message_type: Option<String>,
    pub call_id: Option<String>,
    pub org_id: Option<String>,
    pub direction: Option<String>,
    pub outcome: String,
    pub status: u16,
    pub duration_ms: f64,
    pub error_class: Option<String>,
}

/// A verified request that failed, kept for replay.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub event_key: String,
    pub message_type: Option<String>,
    pub call_id: Option<String>,
    pub reason: String,
    /// Non-credential headers, as JSON.
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// A database failure reduced to what may be logged (a code and the
/// database's message, never parameter values) and whether a retry by Vapi
/// could succeed without anyone changing anything.
#[derive(Debug, Clone)]
pub struct DbError {
    pub detail: String,
    pub transient: bool,
}

impl DbError {
    /// A failure that a retry would meet again.
    fn lasting(detail: &str) -> DbError {
        DbError {
            detail: detail.to_string(),
            transient: false,
        }
    }
}

/// Where the records live, as configured.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres {
        url: String,
    },
    /// The host's SQLite database with this label.
    Sqlite {
        label: &'static str,
    },
}

/// An open connection to the configured store.
pub enum Store {
    Postgres(spin_sdk::pg4::Connection),
    Sqlite(spin_sdk::sqlite3::Connection),
}

impl Target {
    /// `pg_url` when set, else the built-in SQLite database `default`.
    pub fn configured() -> Target {
        match variable("pg_url") {
            Some(url) => Target::Postgres { url },
            None => Target::Sqlite { label: "default" },
        }
    }

    /// The store's name in logs (`guard`, `store`) and in `/healthz`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Postgres { .. } => "postgres",
            Target::Sqlite { .. } => "sqlite",
        }
    }

    /// Opens a connection. The SQLite store is migrated here when it lacks a
    /// migration this build embeds, so a fresh `spin up` needs no setup;
    /// Postgres is migrated by `vapi-edge-host migrate`, never from here.
    pub fn open(&self) -> Result<Store, DbError> {
        match self {
            Target::Postgres { url } => postgres::open(url).map(Store::Postgres),
            Target::Sqlite { label } => sqlite::open(label).map(Store::Sqlite),
        }
    }
}

impl Store {
    /// Finds the agent and, in one transaction, records the event in
    /// `processed_webhook_events` and upserts `call_tracking` (inbound) and
    /// `call_logs`. Inbound calls of organisations outside the rollout write
    /// nothing.
    pub fn record_event(
        &self,
        record: &CallRecord,
        rollout_percent: u32,
    ) -> Result<Recorded, DbError> {
        match self {
            Store::Postgres(db) => postgres::record_event(db, record, rollout_percent),
            Store::Sqlite(db) => sqlite::record_event(db, record, rollout_percent),
        }
    }

    pub fn insert_event_row(&self, row: &EventRow) -> Result<(), DbError> {
        match self {
            Store::Postgres(db) => postgres::insert_event_row(db, row),
            Store::Sqlite(db) => sqlite::insert_event_row(db, row),
        }
    }

    /// Keeps one pending dead letter per event; a repeated failure bumps `attempts`.
    pub fn upsert_dead_letter(&self, letter: &DeadLetter) -> Result<(), DbError> {
        match self {
            Store::Postgres(db) => postgres::upsert_dead_letter(db, letter),
            Store::Sqlite(db) => sqlite::upsert_dead_letter(db, letter),
        }
    }

    /// Pending dead letters, oldest first: (id, body).
    pub fn pending_dead_letters(&self, limit: i64) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
        match self {
            Store::Postgres(db) => postgres::pending_dead_letters(db, limit),
            Store::Sqlite(db) => sqlite::pending_dead_letters(db, limit),
        }
    }

    pub fn mark_replayed(&self, id: i64, outcome: &str) -> Result<(), DbError> {
        match self {
            Store::Postgres(db) => postgres::mark_replayed(db, id, outcome),
            Store::Sqlite(db) => sqlite::mark_replayed(db, id, outcome),
        }
    }

    pub fn count_pending_dead_letters(&self) -> Result<i64, DbError> {
        match self {
            Store::Postgres(db) => postgres::count_pending_dead_letters(db),
            Store::Sqlite(db) => sqlite::count_pending_dead_letters(db),
        }
    }

    /// The agent that answers inbound calls on a line: the organisation that
    /// owns the number, and its agent with the line's inbound role; with the
    /// agent's assistant id.
    pub fn inbound_agent_for_line(
        &self,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<Option<(Agent, String)>, DbError> {
        match self {
            Store::Postgres(db) => {
                postgres::inbound_agent_for_line(db, vapi_phone_number_id, phone_e164)
            }
            Store::Sqlite(db) => {
                sqlite::inbound_agent_for_line(db, vapi_phone_number_id, phone_e164)
            }
        }
    }

    /// The metrics snapshot as JSON (see `vapi_edge_core::metrics`).
    pub fn metrics_snapshot(&self) -> Result<String, DbError> {
        match self {
            Store::Postgres(db) => postgres::metrics_snapshot(db),
            Store::Sqlite(db) => sqlite::metrics_snapshot(db),
        }
    }

    /// The newest applied migration; `None` when the schema was never migrated.
    fn schema_version(&self) -> Result<Option<String>, DbError> {
        match self {
            Store::Postgres(db) => postgres::schema_version(db),
            Store::Sqlite(db) => sqlite::schema_version(db),
        }
    }
}

/// `/healthz`: the store answers and its schema is one this build runs on.
pub fn health_check() -> Check {
    let target = Target::configured();
    let name = target.name();
    let store = match target.open() {
        Ok(store) => store,
        Err(_) => return Check::fail(name, "connection failed"),
    };
    let seen = match store.schema_version() {
        Ok(Some(seen)) => seen,
        Ok(None) => {
            return Check::fail(name, "schema is not migrated (run vapi-edge-host migrate)")
        }
        Err(_) => return Check::fail(name, "query failed"),
    };
    let check = match version_number(&seen) {
        Some(v) if is_compatible(v) => Check::pass(name),
        _ => Check::fail(
            name,
            "schema is older than this build needs (run vapi-edge-host migrate)",
        ),
    };
    check
        .with("schema_version", seen)
        .with("expected_schema_version", SCHEMA_VERSION)
}
