//! The records in PostgreSQL over `spin:postgres`: one statement per event
//! (`pg_sql::RECORD_EVENT`) finds the agent, records the event in
//! `processed_webhook_events` and upserts `call_tracking` and `call_logs`, so
//! the writes and the idempotency record commit together in one round trip.
//!
//! Statements that return rows go through [`query`], which only takes the
//! statements of `vapi_edge_core::pg_sql::ROW_QUERIES`: each returns at least
//! one row, because Spin 4.0.0-4.0.2 never answers a query with an empty result
//! (spinframework/spin#3671).
#![forbid(unsafe_code)]

use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError, RowSet};
use vapi_edge_core::dashboard::{Param, Read};
use vapi_edge_core::db::{
    DbError, DeadLetter, EventRow, LineAnswer, Owner, PendingLetter, Recorded,
};
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::pg_sql::{self, RowQuery};

/// The error reduced to what may be logged (the SQLSTATE and the message,
/// never parameter values), and whether a retry could succeed. Only the first
/// line of a host's text is kept: with `RUST_BACKTRACE` set, Spin appends a
/// backtrace to it.
fn db_error(error: PgError) -> DbError {
    let first_line = |text: &str| text.lines().next().unwrap_or_default().to_string();
    match error {
        PgError::ConnectionFailed(why) => {
            DbError::transient(format!("connection failed: {}", first_line(&why)))
        }
        PgError::QueryFailed(QueryError::DbError(db)) => {
            DbError::from_sqlstate(&db.code, &db.message)
        }
        PgError::QueryFailed(QueryError::Text(text)) => DbError::lasting(first_line(&text)),
        PgError::BadParameter(why) => DbError::lasting(format!("bad parameter: {why}")),
        PgError::ValueConversionFailed(why) => {
            DbError::lasting(format!("value conversion failed: {why}"))
        }
        PgError::Other(why) => DbError::lasting(first_line(&why)),
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

fn boolean(value: Option<&DbValue>) -> Option<bool> {
    match value? {
        DbValue::Boolean(b) => Some(*b),
        _ => None,
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

pub fn open(url: &str) -> Result<Connection, DbError> {
    Connection::open(url).map_err(db_error)
}

/// The only place that sends a statement with `query`: `statement` is one of
/// `pg_sql::ROW_QUERIES`, so its result has a row even when nothing is found.
fn query(
    db: &Connection,
    statement: &RowQuery,
    params: &[ParameterValue],
) -> Result<RowSet, PgError> {
    db.query(statement.sql, params)
}

fn execute(db: &Connection, sql: &str, params: &[ParameterValue]) -> Result<(), DbError> {
    db.execute(sql, params).map(drop).map_err(db_error)
}

pub fn schema_version(db: &Connection) -> Result<Option<String>, DbError> {
    match query(db, &pg_sql::SCHEMA_VERSION_QUERY, &[]) {
        Ok(rows) => Ok(Some(
            text(rows.rows.first().and_then(|row| row.first())).unwrap_or_default(),
        )),
        Err(error) if is_undefined_table(&error) => Ok(None),
        Err(error) => Err(db_error(error)),
    }
}

pub fn record_event(
    db: &Connection,
    record: &CallRecord,
    rollout_percent: u32,
) -> Result<Recorded, DbError> {
    let json = |value: &Option<serde_json::Value>| match value {
        Some(value) => ParameterValue::Jsonb(value.to_string().into_bytes()),
        None => ParameterValue::DbNull,
    };
    let params = [
        optional_text(&record.assistant_id),
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
        optional_text(&record.squad_id),
        optional_text(&record.workflow_id),
        optional_text(&record.line_id),
        optional_text(&record.line_e164),
        json(&record.structured_data),
        optional_text(&record.success_evaluation),
        json(&record.costs),
        optional_text(&record.default_org_id),
        ParameterValue::Boolean(record.keeps_unowned()),
        ParameterValue::Str(record.tenant.clone()),
    ];
    let rows = query(db, &pg_sql::RECORD_EVENT_QUERY, &params).map_err(db_error)?;
    // No row only from a host that answers empty results; the statement's
    // not-found row has a NULL organisation and `via`.
    let Some(row) = rows.rows.first() else {
        return Ok(Recorded::OwnerNotFound);
    };
    let via = text(row.get(7));
    Ok(Recorded::from_record_event_row(
        Owner::from_columns(
            text(row.first()),
            text(row.get(1)),
            text(row.get(2)),
            via.clone(),
        ),
        via.as_deref(),
        integer(row.get(3)),
        integer(row.get(4)),
        text(row.get(5)),
        boolean(row.get(6)),
    ))
}

pub fn insert_event_row(db: &Connection, row: &EventRow) -> Result<(), DbError> {
    execute(
        db,
        pg_sql::INSERT_EVENT_ROW,
        &[
            optional_text(&row.message_type),
            optional_text(&row.call_id),
            optional_text(&row.org_id),
            optional_text(&row.direction),
            ParameterValue::Str(row.outcome.clone()),
            ParameterValue::Int16(row.status as i16),
            ParameterValue::Floating64(row.duration_ms),
            optional_text(&row.error_class),
            ParameterValue::Str(row.tenant.clone()),
        ],
    )
}

pub fn upsert_dead_letter(db: &Connection, letter: &DeadLetter) -> Result<(), DbError> {
    execute(
        db,
        pg_sql::UPSERT_DEAD_LETTER,
        &[
            ParameterValue::Str(letter.event_key.clone()),
            optional_text(&letter.message_type),
            optional_text(&letter.call_id),
            ParameterValue::Str(letter.reason.clone()),
            ParameterValue::Jsonb(letter.headers.to_string().into_bytes()),
            ParameterValue::Binary(letter.body.clone()),
        ],
    )
}

pub fn pending_dead_letters(db: &Connection, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
    let rows = query(
        db,
        &pg_sql::PENDING_DEAD_LETTERS_QUERY,
        &[ParameterValue::Int64(limit)],
    )
    .map_err(db_error)?;
    // With none pending, the one row is NULLs and is skipped here.
    Ok(rows
        .rows
        .iter()
        .filter_map(|row| match (integer(row.first()), row.get(1)) {
            (Some(id), Some(DbValue::Binary(body))) => Some(PendingLetter {
                id,
                body: body.clone(),
                event_key: text(row.get(2)).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect())
}

pub fn mark_replayed(db: &Connection, id: i64, outcome: &str) -> Result<(), DbError> {
    execute(
        db,
        pg_sql::MARK_REPLAYED,
        &[
            ParameterValue::Int64(id),
            ParameterValue::Str(outcome.to_string()),
        ],
    )
}

pub fn count_pending_dead_letters(db: &Connection) -> Result<i64, DbError> {
    let rows = query(db, &pg_sql::COUNT_PENDING_DEAD_LETTERS_QUERY, &[]).map_err(db_error)?;
    Ok(integer(rows.rows.first().and_then(|r| r.first())).unwrap_or(0))
}

pub fn line_answer(
    db: &Connection,
    tenant: &str,
    vapi_phone_number_id: Option<&str>,
    phone_e164: Option<&str>,
) -> Result<LineAnswer, DbError> {
    let text_or_null = |v: Option<&str>| match v {
        Some(v) => ParameterValue::Str(v.to_string()),
        None => ParameterValue::DbNull,
    };
    let rows = query(
        db,
        &pg_sql::LINE_ANSWER_QUERY,
        &[
            text_or_null(vapi_phone_number_id),
            text_or_null(phone_e164),
            ParameterValue::Str(tenant.to_string()),
        ],
    )
    .map_err(db_error)?;
    // A line that is not there is one row of NULLs.
    Ok(rows.rows.first().map_or_else(LineAnswer::default, |row| {
        LineAnswer::from_columns(std::array::from_fn(|i| text(row.get(i))))
    }))
}

pub fn put_tenant(db: &Connection, id: &str, config: &str) -> Result<(), DbError> {
    execute(
        db,
        pg_sql::PUT_TENANT,
        &[
            ParameterValue::Str(id.to_string()),
            ParameterValue::Str(config.to_string()),
        ],
    )
}

pub fn delete_tenant(db: &Connection, id: &str) -> Result<(), DbError> {
    execute(
        db,
        pg_sql::DELETE_TENANT,
        &[ParameterValue::Str(id.to_string())],
    )
}

/// Every tenant as one JSON array text (`tenant::Stored` rows).
pub fn tenants(db: &Connection) -> Result<String, DbError> {
    let rows = query(db, &pg_sql::TENANTS_QUERY, &[]).map_err(db_error)?;
    Ok(text(rows.rows.first().and_then(|row| row.first())).unwrap_or_else(|| "[]".into()))
}

/// Everything `/metrics` shows, in one query.
pub fn metrics_snapshot(db: &Connection) -> Result<String, DbError> {
    let rows = query(db, &pg_sql::METRICS_SNAPSHOT_QUERY, &[]).map_err(db_error)?;
    text(rows.rows.first().and_then(|r| r.first()))
        .ok_or_else(|| DbError::lasting("metrics query returned nothing"))
}

/// A dashboard read: its one row's JSON text, `None` for a NULL row.
pub fn read_json(db: &Connection, read: &Read) -> Result<Option<String>, DbError> {
    let params: Vec<ParameterValue> = read
        .params()
        .into_iter()
        .map(|param| match param {
            Param::Text(value) => optional_text(&value),
            Param::Int(n) => ParameterValue::Int64(n),
        })
        .collect();
    let rows = query(db, &read.pg_query(), &params).map_err(db_error)?;
    Ok(text(rows.rows.first().and_then(|r| r.first())))
}
