//! The records in Postgres: one statement per event that finds the agent,
//! records the event in `processed_webhook_events`, and upserts `call_tracking`
//! and `call_logs`, so the writes and the idempotency record commit together in
//! one round trip.
#![forbid(unsafe_code)]

use super::{Agent, DbError, DeadLetter, EventRow, Recorded};
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError};
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::sql::{self, RECORD_EVENT};

impl From<PgError> for DbError {
    fn from(error: PgError) -> Self {
        DbError {
            detail: describe(&error),
            transient: is_transient(&error),
        }
    }
}

/// The error reduced to what may be logged: the SQLSTATE and the constraint
/// or message, never parameter values.
fn describe(error: &PgError) -> String {
    match error {
        PgError::ConnectionFailed(why) => format!("connection failed: {why}"),
        PgError::BadParameter(why) => format!("bad parameter: {why}"),
        PgError::QueryFailed(QueryError::DbError(db)) => format!("{} {}", db.code, db.message),
        PgError::QueryFailed(QueryError::Text(text)) => text.clone(),
        PgError::ValueConversionFailed(why) => format!("value conversion failed: {why}"),
        PgError::Other(why) => why.clone(),
    }
}

fn is_transient(error: &PgError) -> bool {
    match error {
        PgError::ConnectionFailed(_) => true,
        PgError::QueryFailed(QueryError::DbError(db)) => {
            // Connection exceptions, serialization failures and deadlocks,
            // insufficient resources, operator intervention (e.g. shutdown).
            ["08", "40", "53", "57"]
                .iter()
                .any(|class| db.code.starts_with(class))
        }
        _ => false,
    }
}

fn is_undefined_table(error: &PgError) -> bool {
    matches!(error, PgError::QueryFailed(QueryError::DbError(db)) if db.code == "42P01")
}

/// Text of a column value, for ids and names read back.
fn text(value: Option<&DbValue>) -> Option<String> {
    match value? {
        DbValue::Str(s) | DbValue::Uuid(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(value: Option<&DbValue>) -> Option<i64> {
    match value? {
        DbValue::Int64(n) => Some(*n),
        DbValue::Int32(n) => Some(i64::from(*n)),
        DbValue::Int16(n) => Some(i64::from(*n)),
        _ => None,
    }
}

pub fn open(url: &str) -> Result<Connection, DbError> {
    Ok(Connection::open(url)?)
}

pub fn schema_version(db: &Connection) -> Result<Option<String>, DbError> {
    match db.query(
        "SELECT coalesce(max(version), '') AS version FROM schema_migrations",
        &[],
    ) {
        Ok(rows) => Ok(Some(
            text(rows.rows.first().and_then(|row| row.first())).unwrap_or_default(),
        )),
        Err(error) if is_undefined_table(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
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
) -> Result<Recorded, DbError> {
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

pub fn insert_event_row(db: &Connection, row: &EventRow) -> Result<(), DbError> {
    db.execute(
        sql::INSERT_EVENT_ROW,
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

pub fn upsert_dead_letter(db: &Connection, letter: &DeadLetter) -> Result<(), DbError> {
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

pub fn pending_dead_letters(db: &Connection, limit: i64) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
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

pub fn mark_replayed(db: &Connection, id: i64, outcome: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE dead_letters SET replayed_at = now(), replay_outcome = $2::text WHERE id = $1::int8",
        &[ParameterValue::Int64(id), ParameterValue::Str(outcome.to_string())],
    )?;
    Ok(())
}

pub fn count_pending_dead_letters(db: &Connection) -> Result<i64, DbError> {
    let rows = db.query(
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL",
        &[],
    )?;
    Ok(integer(rows.rows.first().and_then(|r| r.first())).unwrap_or(0))
}

pub fn inbound_agent_for_line(
    db: &Connection,
    vapi_phone_number_id: Option<&str>,
    phone_e164: Option<&str>,
) -> Result<Option<(Agent, String)>, DbError> {
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
        let agent = Agent::from_columns(text(row.first()), text(row.get(1)), text(row.get(2)))?;
        Some((agent, text(row.get(3))?))
    }))
}

/// In one query.
pub fn metrics_snapshot(db: &Connection) -> Result<String, DbError> {
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
        .ok_or_else(|| DbError::lasting("metrics query returned nothing"))
}
