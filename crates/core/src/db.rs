//! What the webhook flow asks of the database and what it gets back, in plain
//! types: the host adapters (Spin's PostgreSQL and SQLite in the component,
//! tokio-postgres in the native baseline) turn these into statements and back.

use thiserror::Error;

/// The agent that owns a call (found by its Vapi assistant id or by the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub org_id: String,
    pub name: String,
}

impl Agent {
    /// From the columns (id, org_id, name) as read back; `None` without an id
    /// or an organisation (the not-found row of a statement that always
    /// returns one, see `pg_sql`).
    pub fn from_columns(
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

/// How a call's organisation was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerVia {
    /// The agent with the call's assistant id.
    Assistant,
    /// The agent mapped to the call's squad (`agents.vapi_squad_id`).
    Squad,
    /// The agent mapped to the call's workflow (`agents.vapi_workflow_id`).
    Workflow,
    /// The organisation that owns the line; no agent.
    Line,
}

impl OwnerVia {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerVia::Assistant => "assistant",
            OwnerVia::Squad => "squad",
            OwnerVia::Workflow => "workflow",
            OwnerVia::Line => "line",
        }
    }

    pub fn from_name(name: &str) -> Option<OwnerVia> {
        Some(match name {
            "assistant" => OwnerVia::Assistant,
            "squad" => OwnerVia::Squad,
            "workflow" => OwnerVia::Workflow,
            "line" => OwnerVia::Line,
            _ => return None,
        })
    }
}

/// Who owns a recorded call: always an organisation, and its agent when one
/// is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub org_id: String,
    pub agent: Option<Agent>,
    pub via: OwnerVia,
}

impl Owner {
    /// From the columns (agent id, org id, agent name, via) as read back;
    /// `None` without an organisation (the not-found row).
    pub fn from_columns(
        agent_id: Option<String>,
        org_id: Option<String>,
        agent_name: Option<String>,
        via: Option<String>,
    ) -> Option<Owner> {
        let org_id = org_id?;
        let agent = agent_id.map(|id| Agent {
            id,
            org_id: org_id.clone(),
            name: agent_name.unwrap_or_default(),
        });
        let via = via
            .as_deref()
            .and_then(OwnerVia::from_name)
            .unwrap_or(OwnerVia::Assistant);
        Some(Owner { org_id, agent, via })
    }
}

/// What recording one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This attempt wrote the event.
    New {
        owner: Owner,
        tracked: bool,
        lead_id: Option<String>,
    },
    /// `processed_webhook_events` already had the key: nothing was written.
    Duplicate { owner: Owner },
    /// Nobody owns the call yet: no agent has its assistant id, or (without
    /// one) neither its squad, its workflow nor its line maps to an
    /// organisation. Nothing was written.
    OwnerNotFound,
    /// The organisation is outside the inbound rollout: nothing was written.
    OutsideRollout { owner: Owner },
}

impl Recorded {
    /// Reads the one row of `pg_sql::RECORD_EVENT`: (agent id, org id, agent
    /// name, claimed count, tracked count, lead id, in rollout, via).
    pub fn from_record_event_row(
        owner: Option<Owner>,
        claimed: Option<i64>,
        tracked: Option<i64>,
        lead_id: Option<String>,
        in_rollout: Option<bool>,
    ) -> Recorded {
        let Some(owner) = owner else {
            return Recorded::OwnerNotFound;
        };
        if in_rollout == Some(false) {
            return Recorded::OutsideRollout { owner };
        }
        if claimed != Some(1) {
            return Recorded::Duplicate { owner };
        }
        Recorded::New {
            owner,
            tracked: tracked == Some(1),
            lead_id,
        }
    }
}

/// What `webhook_events` keeps of one verified request (the metrics' source).
#[derive(Debug, Clone, Default, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub event_key: String,
    pub message_type: Option<String>,
    pub call_id: Option<String>,
    pub reason: String,
    /// Non-credential headers, as JSON.
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// A pending dead letter, as read back for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLetter {
    pub id: i64,
    pub body: Vec<u8>,
}

/// A database failure reduced to what may be logged (a code and the
/// database's message, never parameter values) and whether a retry by Vapi
/// could succeed without anyone changing anything.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{detail}")]
pub struct DbError {
    pub detail: String,
    pub transient: bool,
    /// No connection could be opened: the database is unreachable, as
    /// opposed to a statement that failed on an open connection.
    pub unreachable: bool,
}

impl DbError {
    /// A failure that a retry could get past (connection lost, deadlock, ...).
    pub fn transient(detail: impl Into<String>) -> DbError {
        DbError {
            detail: detail.into(),
            transient: true,
            unreachable: false,
        }
    }

    /// A failure that a retry would meet again.
    pub fn lasting(detail: impl Into<String>) -> DbError {
        DbError {
            detail: detail.into(),
            transient: false,
            unreachable: false,
        }
    }

    /// Opening a connection failed: whatever the cause, the database cannot
    /// be reached now, and a retry later may find it.
    pub fn unreachable(self) -> DbError {
        DbError {
            transient: true,
            unreachable: true,
            ..self
        }
    }

    /// PostgreSQL's rule: SQLSTATE classes 08 (connection), 40 (serialization,
    /// deadlock), 53 (insufficient resources) and 57 (operator intervention)
    /// clear by themselves.
    pub fn from_sqlstate(code: &str, message: &str) -> DbError {
        let transient = ["08", "40", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class));
        DbError {
            detail: format!("{code} {message}"),
            transient,
            unreachable: false,
        }
    }
}

/// Which database holds the records: its name in logs (`guard`, `store`) and
/// in `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Postgres,
    Sqlite,
}

impl Database {
    pub fn name(self) -> &'static str {
        match self {
            Database::Postgres => "postgres",
            Database::Sqlite => "sqlite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ava() -> Owner {
        Owner::from_columns(
            Some("a".into()),
            Some("o".into()),
            Some("Ava".into()),
            Some("assistant".into()),
        )
        .unwrap()
    }

    #[test]
    fn the_record_event_row_reads_each_outcome() {
        assert_eq!(
            Recorded::from_record_event_row(None, Some(0), Some(0), None, None),
            Recorded::OwnerNotFound
        );
        assert_eq!(
            Recorded::from_record_event_row(Some(ava()), Some(0), Some(0), None, Some(false)),
            Recorded::OutsideRollout { owner: ava() }
        );
        assert_eq!(
            Recorded::from_record_event_row(Some(ava()), Some(0), Some(0), None, Some(true)),
            Recorded::Duplicate { owner: ava() }
        );
        assert_eq!(
            Recorded::from_record_event_row(
                Some(ava()),
                Some(1),
                Some(1),
                Some("lead".into()),
                Some(true)
            ),
            Recorded::New {
                owner: ava(),
                tracked: true,
                lead_id: Some("lead".into())
            }
        );
    }

    #[test]
    fn an_owner_needs_an_organisation_and_may_lack_an_agent() {
        assert_eq!(
            Owner::from_columns(Some("a".into()), None, None, None),
            None
        );
        let line = Owner::from_columns(None, Some("o".into()), None, Some("line".into())).unwrap();
        assert_eq!(line.agent, None);
        assert_eq!(line.via, OwnerVia::Line);
    }

    #[test]
    fn an_agent_needs_an_id_and_an_organisation() {
        assert_eq!(Agent::from_columns(None, Some("o".into()), None), None);
        assert_eq!(Agent::from_columns(Some("a".into()), None, None), None);
        assert_eq!(
            Agent::from_columns(Some("a".into()), Some("o".into()), None).map(|a| a.name),
            Some(String::new())
        );
    }

    #[test]
    fn sqlstate_classes_decide_what_is_transient() {
        assert!(DbError::from_sqlstate("08006", "connection failure").transient);
        assert!(DbError::from_sqlstate("40P01", "deadlock detected").transient);
        assert!(DbError::from_sqlstate("57P01", "admin shutdown").transient);
        assert!(!DbError::from_sqlstate("23505", "unique violation").transient);
        assert!(!DbError::from_sqlstate("42P01", "undefined table").transient);
        assert_eq!(
            DbError::from_sqlstate("23505", "duplicate").detail,
            "23505 duplicate"
        );
    }
}
