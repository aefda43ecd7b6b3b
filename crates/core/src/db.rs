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

/// How a call's organisation was found: the handles Vapi sends, tried in this
/// order (README, "Who owns a call"). The first that resolves decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerVia {
    /// The agent with the call's assistant id (`agents.vapi_assistant_id`).
    Assistant,
    /// The agent mapped to the call's squad (`agents.vapi_squad_id`), also
    /// when the squad's active member is an assistant no agent has.
    Squad,
    /// The agent mapped to the call's workflow (`agents.vapi_workflow_id`).
    Workflow,
    /// The organisation that owns the line (`phone_numbers`); no agent.
    Line,
    /// The organisation mapped to Vapi's organisation id, `call.orgId`
    /// (`vapi_organizations`); no agent.
    VapiOrg,
    /// The deployment's `default_org_id`; no agent.
    Default,
}

impl OwnerVia {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerVia::Assistant => "assistant",
            OwnerVia::Squad => "squad",
            OwnerVia::Workflow => "workflow",
            OwnerVia::Line => "line",
            OwnerVia::VapiOrg => "vapi_org",
            OwnerVia::Default => "default",
        }
    }

    pub fn from_name(name: &str) -> Option<OwnerVia> {
        Some(match name {
            "assistant" => OwnerVia::Assistant,
            "squad" => OwnerVia::Squad,
            "workflow" => OwnerVia::Workflow,
            "line" => OwnerVia::Line,
            "vapi_org" => OwnerVia::VapiOrg,
            "default" => OwnerVia::Default,
            _ => return None,
        })
    }
}

/// What the recording statement's `via` column says when it wrote the call
/// without an owner (see [`Recorded::New`]).
pub const UNASSIGNED_VIA: &str = "none";

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

/// What recording one event did. `owner` is `None` for a call recorded
/// without an organisation ("unassigned"): no handle it carries resolves and it
/// has no assistant id to wait for. Its rows are kept with a NULL `org_id`
/// until `vapi-edge-host map-org` attributes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This attempt wrote the event.
    New {
        owner: Option<Owner>,
        tracked: bool,
        lead_id: Option<String>,
    },
    /// `processed_webhook_events` already had the key: nothing was written.
    Duplicate { owner: Option<Owner> },
    /// No agent has the call's assistant id (yet) and no other handle
    /// resolves: nothing was written, and the caller may retry.
    OwnerNotFound,
    /// The organisation is outside the inbound rollout: nothing was written.
    OutsideRollout { owner: Owner },
    /// The call's row belongs to another tenant: the event was claimed (so
    /// it is not retried) and nothing else was written.
    OtherTenant,
}

/// The `via` of a recording whose call row is another tenant's.
pub const OTHER_TENANT_VIA: &str = "other_tenant";

impl Recorded {
    /// Reads the one row of the recording statement (`pg_sql::RECORD_EVENT_CALL`):
    /// the owner as read back, its `via` column, the claimed and tracked counts,
    /// the lead id and whether the organisation is in the rollout.
    pub fn from_record_event_row(
        owner: Option<Owner>,
        via: Option<&str>,
        claimed: Option<i64>,
        tracked: Option<i64>,
        lead_id: Option<String>,
        in_rollout: Option<bool>,
    ) -> Recorded {
        if via == Some(OTHER_TENANT_VIA) {
            return Recorded::OtherTenant;
        }
        if owner.is_none() && via != Some(UNASSIGNED_VIA) {
            return Recorded::OwnerNotFound;
        }
        if let (Some(owner), Some(false)) = (&owner, in_rollout) {
            return Recorded::OutsideRollout {
                owner: owner.clone(),
            };
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

    /// The database holds the event (its claim is done, not given back).
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            Recorded::New { .. } | Recorded::Duplicate { .. } | Recorded::OtherTenant
        )
    }
}

/// What answers an `assistant-request` for a line: the agent that takes its
/// inbound calls (with its assistant id), and what the line falls back to
/// when neither an agent nor the upstream answers in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineAnswer {
    pub agent: Option<(Agent, String)>,
    pub fallback: Option<crate::upstream::Fallback>,
}

impl LineAnswer {
    /// From the columns of `pg_sql::LINE_ANSWER` (or its SQLite twin): agent
    /// id, org id, agent name, assistant id, fallback assistant id, fallback
    /// number. A line not there, or without an agent, reads as no agent.
    pub fn from_columns(columns: [Option<String>; 6]) -> LineAnswer {
        let [agent_id, org_id, name, assistant_id, fallback_assistant_id, fallback_number] =
            columns;
        let agent = Agent::from_columns(agent_id, org_id, name)
            .and_then(|agent| Some((agent, assistant_id?)));
        LineAnswer {
            agent,
            fallback: crate::upstream::Fallback::from_columns(
                fallback_assistant_id,
                fallback_number,
            ),
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
    /// The tenant whose URL it came in on; '' for the single-tenant route.
    pub tenant: String,
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
    /// Its event's key, which names its tenant (`event_key::tenant_of`).
    pub event_key: String,
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

/// Where the records go, as configured: what names the database without
/// asking it (see `claim::ClaimScope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseAddress {
    /// `pg_url`.
    Postgres { url: String },
    /// The host's SQLite database with this label.
    Sqlite { label: String },
}

impl DatabaseAddress {
    /// Which database this is, without the credentials and the connection
    /// settings: `postgres|<host>|<port>|<database>` (libpq's defaults: port
    /// 5432, the user's name for a missing database), or `sqlite|<label>`.
    pub fn identity(&self) -> String {
        match self {
            DatabaseAddress::Sqlite { label } => format!("sqlite|{label}"),
            DatabaseAddress::Postgres { url } => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let rest = rest.split(['?', '#']).next().unwrap_or_default();
                let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
                let (user, host_port) = match authority.rsplit_once('@') {
                    Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or(""), host),
                    None => ("", authority),
                };
                // `[::1]:5432`: an IPv6 literal keeps its colons.
                let (host, port) = match host_port.split_once(']') {
                    Some((v6, after)) => (v6, after.trim_start_matches(':')),
                    None => host_port.rsplit_once(':').unwrap_or((host_port, "")),
                };
                let port = if port.is_empty() { "5432" } else { port };
                let database = if database.is_empty() { user } else { database };
                format!("postgres|{}|{port}|{database}", host.to_ascii_lowercase())
            }
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
        let read = |owner: Option<Owner>, via, claimed, in_rollout| {
            Recorded::from_record_event_row(owner, via, Some(claimed), Some(0), None, in_rollout)
        };
        assert_eq!(read(None, None, 0, None), Recorded::OwnerNotFound);
        assert_eq!(
            read(Some(ava()), Some("assistant"), 0, Some(false)),
            Recorded::OutsideRollout { owner: ava() }
        );
        assert_eq!(
            read(Some(ava()), Some("assistant"), 0, Some(true)),
            Recorded::Duplicate { owner: Some(ava()) }
        );
        assert_eq!(
            Recorded::from_record_event_row(
                Some(ava()),
                Some("assistant"),
                Some(1),
                Some(1),
                Some("lead".into()),
                Some(true)
            ),
            Recorded::New {
                owner: Some(ava()),
                tracked: true,
                lead_id: Some("lead".into())
            }
        );
        // Written without an owner: new, then a duplicate; never "not found".
        assert_eq!(
            read(None, Some(UNASSIGNED_VIA), 1, Some(true)),
            Recorded::New {
                owner: None,
                tracked: false,
                lead_id: None
            }
        );
        assert_eq!(
            read(None, Some(UNASSIGNED_VIA), 0, Some(true)),
            Recorded::Duplicate { owner: None }
        );
        assert!(read(None, Some(UNASSIGNED_VIA), 1, Some(true)).is_held());
        assert!(!read(None, None, 0, None).is_held());
    }

    #[test]
    fn every_via_reads_back_as_itself() {
        for via in [
            OwnerVia::Assistant,
            OwnerVia::Squad,
            OwnerVia::Workflow,
            OwnerVia::Line,
            OwnerVia::VapiOrg,
            OwnerVia::Default,
        ] {
            assert_eq!(OwnerVia::from_name(via.as_str()), Some(via));
        }
        assert_eq!(OwnerVia::from_name(UNASSIGNED_VIA), None);
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
