//! The records: in PostgreSQL when `pg_url` is set (production), and otherwise
//! in the host's built-in SQLite database `default` (Spin's zero-configuration
//! store, granted in spin.toml). Both keep the same tables with the same
//! guarantees: an event's rows and its idempotency record commit together or
//! not at all. This module only translates; `vapi_edge_core::webhook` decides.
#![forbid(unsafe_code)]

mod postgres;
mod sqlite;

use vapi_edge_core::dashboard::Read;
use vapi_edge_core::db::{
    Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, PendingLetter, Recorded,
};
use vapi_edge_core::handling::CallRecord;

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

impl Target {
    /// `pg_url` when set, else the built-in SQLite database `default`.
    pub fn from_pg_url(pg_url: Option<String>) -> Target {
        match pg_url {
            Some(url) => Target::Postgres { url },
            None => Target::Sqlite { label: "default" },
        }
    }

    pub fn database(&self) -> Database {
        match self {
            Target::Postgres { .. } => Database::Postgres,
            Target::Sqlite { .. } => Database::Sqlite,
        }
    }

    pub fn address(&self) -> DatabaseAddress {
        match self {
            Target::Postgres { url } => DatabaseAddress::Postgres { url: url.clone() },
            Target::Sqlite { label } => DatabaseAddress::Sqlite {
                label: (*label).to_string(),
            },
        }
    }

    /// Opens a connection. The SQLite store is migrated here when it lacks a
    /// migration this build embeds, so a fresh `spin up` needs no setup (Spin
    /// has no migration step for its built-in database); PostgreSQL is
    /// migrated by `vapi-edge-host migrate`, never from the request path.
    pub fn open(&self) -> Result<Connection, DbError> {
        match self {
            Target::Postgres { url } => postgres::open(url).map(Connection::Postgres),
            Target::Sqlite { label } => sqlite::open(label).map(Connection::Sqlite),
        }
    }
}

/// An open connection to the configured database.
pub enum Connection {
    Postgres(spin_sdk::pg4::Connection),
    Sqlite(spin_sdk::sqlite3::Connection),
}

/// Each operation of `vapi_edge_core::effects::Effects` on the database, by engine.
macro_rules! dispatch {
    ($self:ident . $op:ident ( $($arg:expr),* )) => {
        match $self {
            Connection::Postgres(db) => postgres::$op(db, $($arg),*),
            Connection::Sqlite(db) => sqlite::$op(db, $($arg),*),
        }
    };
}

impl Connection {
    pub fn record_event(&self, record: &CallRecord, rollout: u32) -> Result<Recorded, DbError> {
        dispatch!(self.record_event(record, rollout))
    }

    pub fn insert_event_row(&self, row: &EventRow) -> Result<(), DbError> {
        dispatch!(self.insert_event_row(row))
    }

    pub fn upsert_dead_letter(&self, letter: &DeadLetter) -> Result<(), DbError> {
        dispatch!(self.upsert_dead_letter(letter))
    }

    pub fn pending_dead_letters(&self, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
        dispatch!(self.pending_dead_letters(limit))
    }

    pub fn mark_replayed(&self, id: i64, outcome: &str) -> Result<(), DbError> {
        dispatch!(self.mark_replayed(id, outcome))
    }

    pub fn count_pending_dead_letters(&self) -> Result<i64, DbError> {
        dispatch!(self.count_pending_dead_letters())
    }

    pub fn line_answer(
        &self,
        tenant: &str,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<LineAnswer, DbError> {
        dispatch!(self.line_answer(tenant, vapi_phone_number_id, phone_e164))
    }

    pub fn tenants(&self) -> Result<String, DbError> {
        dispatch!(self.tenants())
    }

    pub fn put_tenant(&self, id: &str, config: &str) -> Result<(), DbError> {
        dispatch!(self.put_tenant(id, config))
    }

    pub fn delete_tenant(&self, id: &str) -> Result<(), DbError> {
        dispatch!(self.delete_tenant(id))
    }

    pub fn metrics_snapshot(&self) -> Result<String, DbError> {
        dispatch!(self.metrics_snapshot())
    }

    pub fn schema_version(&self) -> Result<Option<String>, DbError> {
        dispatch!(self.schema_version())
    }

    pub fn read_json(&self, read: &Read) -> Result<Option<String>, DbError> {
        dispatch!(self.read_json(read))
    }
}
