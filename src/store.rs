//! The call records in Postgres: one statement per event that finds the agent,
//! records the event in `processed_webhook_events`, and upserts `call_tracking`
//! and `call_logs`, so the writes and the idempotency record commit together in
//! one round trip.
#![forbid(unsafe_code)]

use crate::services::{integer, text};
use spin_sdk::pg4::{Connection, ParameterValue, PgError};
use vapi_edge_core::handling::CallRecord;

/// Runs as one statement, hence one transaction. When no agent has the
/// assistant id every CTE selects from an empty `agent` and nothing is
/// written; when the event key is already recorded `claimed` is empty and the
/// upserts select nothing either. Statuses move forward only (`status_rank`).
const RECORD_EVENT: &str = "
WITH agent AS (
    SELECT id, org_id, name FROM agents WHERE vapi_assistant_id = $1::text
), claimed AS (
    INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
    SELECT $2::text, $3::text, $4::text, agent.org_id FROM agent
    ON CONFLICT (event_key) DO NOTHING
    RETURNING event_key
), lead AS (
    SELECT leads.id FROM leads JOIN agent ON leads.org_id = agent.org_id
    WHERE leads.phone_e164 = $8::text
), tracking AS (
    INSERT INTO call_tracking AS t
        (vapi_call_id, org_id, agent_id, direction, from_number, to_number,
         status, status_rank, vapi_org_id)
    SELECT $4::text, agent.org_id, agent.id, 'inbound', $6::text, $7::text,
           $9::text, $10::int2, $11::text
    FROM agent, claimed
    WHERE $5::text = 'inbound'
    ON CONFLICT (vapi_call_id) DO UPDATE SET
        status = CASE WHEN EXCLUDED.status_rank > coalesce(t.status_rank, 0)
                      THEN EXCLUDED.status ELSE t.status END,
        status_rank = greatest(t.status_rank, EXCLUDED.status_rank),
        from_number = coalesce(t.from_number, EXCLUDED.from_number),
        to_number = coalesce(t.to_number, EXCLUDED.to_number),
        updated_at = now()
    RETURNING t.id
), logged AS (
    INSERT INTO call_logs AS l
        (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
         direction, from_number, to_number, started_at, ended_at, ended_reason,
         duration_seconds, cost, summary, transcript, recording_url)
    SELECT $4::text, agent.org_id, agent.id, (SELECT id FROM lead), $9::text,
           $10::int2, $12::jsonb, $5::text, $6::text, $7::text,
           to_timestamp($13::int8 / 1000.0), to_timestamp($14::int8 / 1000.0),
           $15::text, $16::float8, $17::float8::numeric, $18::text, $19::text,
           $20::text
    FROM agent, claimed
    ON CONFLICT (vapi_call_id) DO UPDATE SET
        status = CASE WHEN EXCLUDED.status_rank > coalesce(l.status_rank, 0)
                      THEN EXCLUDED.status ELSE l.status END,
        status_rank = greatest(l.status_rank, EXCLUDED.status_rank),
        lead_id = coalesce(l.lead_id, EXCLUDED.lead_id),
        metadata = l.metadata || EXCLUDED.metadata,
        from_number = coalesce(l.from_number, EXCLUDED.from_number),
        to_number = coalesce(l.to_number, EXCLUDED.to_number),
        started_at = coalesce(l.started_at, EXCLUDED.started_at),
        ended_at = coalesce(EXCLUDED.ended_at, l.ended_at),
        ended_reason = coalesce(EXCLUDED.ended_reason, l.ended_reason),
        duration_seconds = coalesce(EXCLUDED.duration_seconds, l.duration_seconds),
        cost = coalesce(EXCLUDED.cost, l.cost),
        summary = coalesce(EXCLUDED.summary, l.summary),
        transcript = coalesce(EXCLUDED.transcript, l.transcript),
        recording_url = coalesce(EXCLUDED.recording_url, l.recording_url),
        updated_at = now()
    RETURNING l.id, l.lead_id
)
SELECT agent.id::text, agent.org_id::text, agent.name,
       (SELECT count(*) FROM claimed) AS claimed,
       (SELECT count(*) FROM tracking) AS tracked,
       (SELECT lead_id::text FROM logged) AS lead_id
FROM agent";

/// The agent that owns the call (found by its Vapi assistant id).
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub org_id: String,
    pub name: String,
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
}

fn optional_text(value: &Option<String>) -> ParameterValue {
    match value {
        Some(s) => ParameterValue::Str(s.clone()),
        None => ParameterValue::DbNull,
    }
}

fn optional<T>(value: Option<T>, wrap: impl Fn(T) -> ParameterValue) -> ParameterValue {
    value.map(wrap).unwrap_or(ParameterValue::DbNull)
}

pub fn record_event(db: &Connection, record: &CallRecord) -> Result<Recorded, PgError> {
    let params = [
        ParameterValue::Str(record.assistant_id.clone()),
        ParameterValue::Str(record.event_key.to_string()),
        ParameterValue::Str(record.message_type.clone()),
        ParameterValue::Str(record.call_id.clone()),
        ParameterValue::Str(record.direction.as_str().to_string()),
        optional_text(&record.from_number),
        optional_text(&record.to_number),
        optional_text(&record.customer_e164),
        optional_text(&record.status),
        optional(record.status_rank, ParameterValue::Int16),
        optional_text(&record.vapi_org_id),
        ParameterValue::Jsonb(record.metadata.to_string().into_bytes()),
        optional(record.started_at_ms, ParameterValue::Int64),
        optional(record.ended_at_ms, ParameterValue::Int64),
        optional_text(&record.ended_reason),
        optional(record.duration_seconds, ParameterValue::Floating64),
        optional(record.cost, ParameterValue::Floating64),
        optional_text(&record.summary),
        optional_text(&record.transcript),
        optional_text(&record.recording_url),
    ];
    let rows = db.query(RECORD_EVENT, &params)?;
    let Some(row) = rows.rows.first() else {
        return Ok(Recorded::AgentNotFound);
    };
    let agent = Agent {
        id: text(row.first()).unwrap_or_default(),
        org_id: text(row.get(1)).unwrap_or_default(),
        name: text(row.get(2)).unwrap_or_default(),
    };
    if integer(row.get(3)) != Some(1) {
        return Ok(Recorded::Duplicate { agent });
    }
    Ok(Recorded::New {
        agent,
        tracked: integer(row.get(4)) == Some(1),
        lead_id: text(row.get(5)),
    })
}
