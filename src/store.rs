//! The call records in Postgres: one statement per event that finds the agent,
//! records the event in `processed_webhook_events`, and upserts `call_tracking`
//! and `call_logs`, so the writes and the idempotency record commit together in
//! one round trip.
#![forbid(unsafe_code)]

use crate::services::{integer, text};
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError};
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::sql::RECORD_EVENT;

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
    /// The agent's organisation is outside the inbound rollout: nothing was written.
    OutsideRollout { agent: Agent },
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

pub fn record_event(
    db: &Connection,
    record: &CallRecord,
    rollout_percent: u32,
) -> Result<Recorded, PgError> {
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
        ParameterValue::Int64(i64::from(rollout_percent)),
        ParameterValue::Boolean(record.is_final_report()),
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
    if matches!(row.get(6), Some(DbValue::Boolean(false))) {
        return Ok(Recorded::OutsideRollout { agent });
    }
    if integer(row.get(3)) != Some(1) {
        return Ok(Recorded::Duplicate { agent });
    }
    Ok(Recorded::New {
        agent,
        tracked: integer(row.get(4)) == Some(1),
        lead_id: text(row.get(5)),
    })
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

pub fn insert_event_row(db: &Connection, row: &EventRow) -> Result<(), PgError> {
    db.execute(
        "INSERT INTO webhook_events
             (message_type, vapi_call_id, org_id, direction, outcome, status_code, duration_ms, error_class)
         VALUES ($1::text, $2::text, $3::text::uuid, $4::text, $5::text, $6::int2, $7::float8, $8::text)",
        &[
            optional_text(&row.message_type),
            optional_text(&row.call_id),
            optional_text(&row.org_id),
            optional_text(&row.direction),
            ParameterValue::Str(row.outcome.clone()),
            ParameterValue::Int16(row.status as i16),
            ParameterValue::Floating64(row.duration_ms),
            optional_text(&row.error_class),
        ],
    )?;
    Ok(())
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

/// Keeps one pending dead letter per event; a repeated failure bumps `attempts`.
pub fn upsert_dead_letter(db: &Connection, letter: &DeadLetter) -> Result<(), PgError> {
    db.execute(
        "INSERT INTO dead_letters (event_key, message_type, vapi_call_id, reason, headers, body)
         VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::bytea)
         ON CONFLICT (event_key) WHERE replayed_at IS NULL DO UPDATE SET
             attempts = dead_letters.attempts + 1,
             reason = EXCLUDED.reason,
             body = EXCLUDED.body",
        &[
            ParameterValue::Str(letter.event_key.clone()),
            optional_text(&letter.message_type),
            optional_text(&letter.call_id),
            ParameterValue::Str(letter.reason.clone()),
            ParameterValue::Jsonb(letter.headers.to_string().into_bytes()),
            ParameterValue::Binary(letter.body.clone()),
        ],
    )?;
    Ok(())
}

/// Pending dead letters, oldest first: (id, body).
pub fn pending_dead_letters(db: &Connection, limit: i64) -> Result<Vec<(i64, Vec<u8>)>, PgError> {
    let rows = db.query(
        "SELECT id, body FROM dead_letters WHERE replayed_at IS NULL ORDER BY id LIMIT $1::int8",
        &[ParameterValue::Int64(limit)],
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|row| match (integer(row.first()), row.get(1)) {
            (Some(id), Some(DbValue::Binary(body))) => Some((id, body.clone())),
            _ => None,
        })
        .collect())
}

pub fn mark_replayed(db: &Connection, id: i64, outcome: &str) -> Result<(), PgError> {
    db.execute(
        "UPDATE dead_letters SET replayed_at = now(), replay_outcome = $2::text WHERE id = $1::int8",
        &[ParameterValue::Int64(id), ParameterValue::Str(outcome.to_string())],
    )?;
    Ok(())
}

pub fn count_pending_dead_letters(db: &Connection) -> Result<i64, PgError> {
    let rows = db.query(
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL",
        &[],
    )?;
    Ok(integer(rows.rows.first().and_then(|r| r.first())).unwrap_or(0))
}

/// The agent that answers inbound calls on a line: the organisation that owns
/// the number, and its agent with the line's inbound role.
pub fn inbound_agent_for_line(
    db: &Connection,
    vapi_phone_number_id: Option<&str>,
    phone_e164: Option<&str>,
) -> Result<Option<(Agent, String)>, PgError> {
    let text_or_null = |v: Option<&str>| match v {
        Some(v) => ParameterValue::Str(v.to_string()),
        None => ParameterValue::DbNull,
    };
    let rows = db.query(
        "SELECT a.id::text, a.org_id::text, a.name, a.vapi_assistant_id
         FROM phone_numbers p
         JOIN agents a ON a.org_id = p.org_id AND a.role = p.inbound_role
         WHERE (p.vapi_phone_number_id = $1::text OR p.phone_e164 = $2::text)
           AND a.vapi_assistant_id IS NOT NULL
         ORDER BY (p.vapi_phone_number_id = $1::text) DESC NULLS LAST
         LIMIT 1",
        &[text_or_null(vapi_phone_number_id), text_or_null(phone_e164)],
    )?;
    Ok(rows.rows.first().and_then(|row| {
        let agent = Agent {
            id: text(row.first())?,
            org_id: text(row.get(1))?,
            name: text(row.get(2)).unwrap_or_default(),
        };
        Some((agent, text(row.get(3))?))
    }))
}

/// The metrics snapshot as JSON, in one query (see `vapi_edge_core::metrics`).
pub fn metrics_snapshot(db: &Connection) -> Result<String, PgError> {
    let buckets: Vec<String> = vapi_edge_core::metrics::BUCKETS_S
        .iter()
        .map(|s| format!("count(*) FILTER (WHERE duration_ms <= {})", s * 1000.0))
        .collect();
    let sql = format!(
        "WITH hour AS (SELECT * FROM webhook_events WHERE received_at > now() - interval '1 hour')
         SELECT json_build_object(
           'requests', (SELECT coalesce(json_agg(r), '[]'::json) FROM (
               SELECT coalesce(message_type, '') AS message_type, outcome,
                      (status_code / 100)::text || 'xx' AS status_class, count(*) AS count
               FROM webhook_events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3) r),
           'inbound_calls_total', (SELECT count(*) FROM call_tracking),
           'agent_lookup_failures_total',
               (SELECT count(*) FROM webhook_events WHERE error_class = 'agent_lookup'),
           'call_tracking_failures_total',
               (SELECT count(*) FROM webhook_events WHERE error_class = 'call_tracking'),
           'processing', (SELECT json_build_object(
               'buckets', json_build_array({buckets}),
               'count', count(*),
               'sum_seconds', coalesce(sum(duration_ms), 0) / 1000.0) FROM webhook_events),
           'last_hour', (SELECT json_build_object(
               'inbound_calls', (SELECT count(*) FROM call_tracking
                                 WHERE created_at > now() - interval '1 hour'),
               'requests', count(*),
               'succeeded', count(*) FILTER (WHERE status_code < 300),
               'failed', count(*) FILTER (WHERE status_code >= 500),
               'avg_seconds', avg(duration_ms) / 1000.0,
               'p95_seconds', percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) / 1000.0,
               'agent_lookup_failures', count(*) FILTER (WHERE error_class = 'agent_lookup'),
               'call_tracking_failures', count(*) FILTER (WHERE error_class = 'call_tracking'))
             FROM hour)
         )::text",
        buckets = buckets.join(", ")
    );
    let rows = db.query(&sql, &[])?;
    text(rows.rows.first().and_then(|r| r.first()))
        .ok_or_else(|| PgError::Other("metrics query returned nothing".into()))
}
