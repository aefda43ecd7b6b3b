//! The records in the host's SQLite database (`spin:sqlite`), with the
//! statements of `vapi_edge_core::sqlite_sql`. An event is one `BEGIN IMMEDIATE`
//! transaction on this request's own connection: SQLite takes the write lock
//! at BEGIN, so concurrent deliveries of one event run one after the other
//! and the second finds the key already recorded.
#![forbid(unsafe_code)]

use spin_sdk::sqlite3::{Connection, Error, QueryResult, Value};
use vapi_edge_core::call::CallDirection;
use vapi_edge_core::dashboard::{Param, Read};
use vapi_edge_core::db::{
    DbError, DeadLetter, EventRow, LineAnswer, Owner, PendingLetter, Recorded,
};
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::rollout;
use vapi_edge_core::sqlite_sql::{self as sql, MIGRATIONS};

/// The error as it may be logged, and whether a retry could succeed.
fn db_error(error: Error) -> DbError {
    let (detail, transient) = match error {
        Error::NoSuchDatabase => ("no such database".to_string(), false),
        Error::AccessDenied => ("access denied".to_string(), false),
        Error::InvalidConnection => ("invalid connection".to_string(), false),
        Error::DatabaseFull => ("database full".to_string(), false),
        // SQLite's own message (never parameter values). A lock held past
        // the busy timeout clears by itself; other I/O errors may too.
        Error::Io(message) => {
            let lower = message.to_ascii_lowercase();
            let transient = ["locked", "busy", "disk i/o"]
                .iter()
                .any(|word| lower.contains(word));
            (message, transient)
        }
    };
    if transient {
        DbError::transient(detail)
    } else {
        DbError::lasting(detail)
    }
}

/// Runs one statement on this request's connection.
fn run(db: &Connection, sql: &str, params: &[Value]) -> Result<QueryResult, DbError> {
    db.execute(sql, params).map_err(db_error)
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Integer(n) => Some(*n),
        _ => None,
    }
}

fn first(result: &QueryResult) -> Option<&Vec<Value>> {
    result.rows.first().map(|row| &row.values)
}

fn optional_text(value: &Option<String>) -> Value {
    value.clone().map(Value::Text).unwrap_or(Value::Null)
}

fn optional<T>(value: Option<T>, wrap: impl Fn(T) -> Value) -> Value {
    value.map(wrap).unwrap_or(Value::Null)
}

/// Runs `work` inside `BEGIN IMMEDIATE`; commits when it returns `Ok`,
/// rolls back otherwise (and the host rolls back if this instance dies).
fn transaction<T>(
    db: &Connection,
    work: impl FnOnce() -> Result<(T, bool), DbError>,
) -> Result<T, DbError> {
    run(db, "BEGIN IMMEDIATE", &[])?;
    match work() {
        Ok((value, true)) => {
            run(db, "COMMIT", &[])?;
            Ok(value)
        }
        Ok((value, false)) => {
            run(db, "ROLLBACK", &[])?;
            Ok(value)
        }
        Err(error) => {
            let _ = run(db, "ROLLBACK", &[]);
            Err(error)
        }
    }
}

pub fn open(label: &str) -> Result<Connection, DbError> {
    let db = Connection::open(label).map_err(db_error)?;
    migrate(&db)?;
    Ok(db)
}

fn applied_versions(db: &Connection) -> Result<Vec<String>, DbError> {
    let rows = run(db, "SELECT version FROM schema_migrations", &[])?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|row| text(row.values.first()))
        .collect())
}

fn is_missing(applied: &[String]) -> bool {
    MIGRATIONS
        .iter()
        .any(|m| !applied.iter().any(|v| v == m.version))
}

/// Applies the embedded migrations this database lacks, each with its
/// `schema_migrations` row, in one transaction (the same record as
/// `vapi-edge-host migrate` keeps, so either can run first).
fn migrate(db: &Connection) -> Result<(), DbError> {
    if let Ok(applied) = applied_versions(db) {
        if !is_missing(&applied) {
            return Ok(());
        }
    }
    transaction(db, || {
        run(db, sql::CREATE_SCHEMA_MIGRATIONS, &[])?;
        let applied = applied_versions(db)?;
        for migration in MIGRATIONS {
            if applied.iter().any(|v| v == migration.version) {
                continue;
            }
            for statement in sql::statements(migration.sql) {
                run(db, &statement, &[])?;
            }
            run(
                db,
                "INSERT INTO schema_migrations (version, checksum) VALUES (?1, ?2)",
                &[
                    Value::Text(migration.version.to_string()),
                    Value::Text(sql::checksum(migration.sql)),
                ],
            )?;
        }
        Ok(((), true))
    })
}

pub fn schema_version(db: &Connection) -> Result<Option<String>, DbError> {
    let rows = run(db, sql::SCHEMA_VERSION_APPLIED, &[])?;
    Ok(Some(
        text(first(&rows).and_then(|row| row.first())).unwrap_or_default(),
    ))
}

pub fn record_event(
    db: &Connection,
    record: &CallRecord,
    rollout_percent: u32,
) -> Result<Recorded, DbError> {
    transaction(db, || {
        // BEGIN IMMEDIATE holds the write lock from here: `map-org` (its own
        // BEGIN IMMEDIATE) maps and attributes before or after this, never
        // in between, so an unowned call cannot miss a mapping.
        let owner = find_owner(db, record)?;
        if owner.is_none() && !record.keeps_unowned() {
            return Ok((Recorded::OwnerNotFound, false));
        }
        if let Some(owner) = &owner {
            if record.direction == CallDirection::Inbound
                && !rollout::includes(&owner.org_id, rollout_percent)
            {
                return Ok((
                    Recorded::OutsideRollout {
                        owner: owner.clone(),
                    },
                    false,
                ));
            }
        }
        let org_id = optional_text(&owner.as_ref().map(|o| o.org_id.clone()));
        let claimed = run(
            db,
            sql::CLAIM_EVENT,
            &[
                Value::Text(record.event_key.to_string()),
                Value::Text(record.message_type.clone()),
                Value::Text(record.call_id.clone()),
                org_id.clone(),
            ],
        )?;
        if claimed.rows.is_empty() {
            return Ok((Recorded::Duplicate { owner }, false));
        }
        let agent_id = optional_text(
            &owner
                .as_ref()
                .and_then(|o| o.agent.as_ref())
                .map(|a| a.id.clone()),
        );
        let tracked = record.tracks_call();
        if tracked {
            run(
                db,
                sql::TRACK_CALL,
                &[
                    Value::Text(record.call_id.clone()),
                    org_id.clone(),
                    agent_id.clone(),
                    optional_text(&record.from_number),
                    optional_text(&record.to_number),
                    optional_text(&record.status),
                    optional(record.status_rank, |r| Value::Integer(i64::from(r))),
                    optional_text(&record.vapi_org_id),
                    Value::Text(record.tenant.clone()),
                ],
            )?;
        }
        let logged = run(
            db,
            sql::LOG_CALL,
            &[
                Value::Text(record.call_id.clone()),
                org_id,
                agent_id,
                optional_text(&record.customer_e164),
                optional_text(&record.status),
                optional(record.status_rank, |r| Value::Integer(i64::from(r))),
                Value::Text(record.metadata.to_string()),
                Value::Text(record.direction.as_str().to_string()),
                optional_text(&record.from_number),
                optional_text(&record.to_number),
                optional(record.started_at_ms, Value::Integer),
                optional(record.ended_at_ms, Value::Integer),
                optional_text(&record.ended_reason),
                optional(record.duration_seconds, Value::Real),
                optional(record.cost, Value::Real),
                optional_text(&record.summary),
                optional_text(&record.transcript),
                optional_text(&record.recording_url),
                Value::Integer(i64::from(record.is_final_report())),
                optional_text(&record.structured_data.as_ref().map(|v| v.to_string())),
                optional_text(&record.success_evaluation),
                optional_text(&record.costs.as_ref().map(|v| v.to_string())),
                optional_text(&record.vapi_org_id),
                Value::Text(record.tenant.clone()),
            ],
        )?;
        // No row back: the call's row is another tenant's, left as it was.
        if logged.rows.is_empty() {
            return Ok((Recorded::OtherTenant, true));
        }
        let lead_id = text(first(&logged).and_then(|row| row.first()));
        Ok((
            Recorded::New {
                owner,
                tracked,
                lead_id,
            },
            true,
        ))
    })
}

/// The call's owner, in the order of the PostgreSQL recording function
/// (`vapi_record_event_v3`, migration 0008), among the mappings of the
/// event's tenant only: the agent with its assistant id;
/// the agent mapped to its squad, then to its workflow; the organisation that
/// owns its line; the organisation mapped to its Vapi organisation; the
/// default organisation. `None` when nothing resolves.
fn find_owner(db: &Connection, record: &CallRecord) -> Result<Option<Owner>, DbError> {
    let tenant = || Value::Text(record.tenant.clone());
    let agent_by = |statement: &str, id: &Option<String>, via: &str| match id {
        Some(id) => Ok(
            first(&run(db, statement, &[Value::Text(id.clone()), tenant()])?).and_then(|row| {
                Owner::from_columns(
                    text(row.first()),
                    text(row.get(1)),
                    text(row.get(2)),
                    Some(via.to_string()),
                )
            }),
        ),
        None => Ok(None),
    };
    let org = |org_id: Option<String>, via: &str| {
        Owner::from_columns(None, org_id, None, Some(via.to_string()))
    };
    if let Some(owner) = agent_by(sql::AGENT_BY_ASSISTANT, &record.assistant_id, "assistant")? {
        return Ok(Some(owner));
    }
    if let Some(owner) = agent_by(sql::AGENT_BY_SQUAD, &record.squad_id, "squad")? {
        return Ok(Some(owner));
    }
    if let Some(owner) = agent_by(sql::AGENT_BY_WORKFLOW, &record.workflow_id, "workflow")? {
        return Ok(Some(owner));
    }
    if record.line_id.is_some() || record.line_e164.is_some() {
        let rows = run(
            db,
            sql::ORG_BY_LINE,
            &[
                optional_text(&record.line_id),
                optional_text(&record.line_e164),
                tenant(),
            ],
        )?;
        if let Some(owner) = first(&rows).and_then(|row| org(text(row.first()), "line")) {
            return Ok(Some(owner));
        }
    }
    if let Some(vapi_org_id) = &record.vapi_org_id {
        let rows = run(
            db,
            sql::ORG_BY_VAPI_ORG,
            &[Value::Text(vapi_org_id.clone()), tenant()],
        )?;
        if let Some(owner) = first(&rows).and_then(|row| org(text(row.first()), "vapi_org")) {
            return Ok(Some(owner));
        }
    }
    Ok(org(record.default_org_id.clone(), "default"))
}

pub fn insert_event_row(db: &Connection, row: &EventRow) -> Result<(), DbError> {
    run(
        db,
        sql::INSERT_EVENT_ROW,
        &[
            optional_text(&row.message_type),
            optional_text(&row.call_id),
            optional_text(&row.org_id),
            optional_text(&row.direction),
            Value::Text(row.outcome.clone()),
            Value::Integer(i64::from(row.status)),
            Value::Real(row.duration_ms),
            optional_text(&row.error_class),
            Value::Text(row.tenant.clone()),
        ],
    )?;
    Ok(())
}

pub fn upsert_dead_letter(db: &Connection, letter: &DeadLetter) -> Result<(), DbError> {
    run(
        db,
        sql::UPSERT_DEAD_LETTER,
        &[
            Value::Text(letter.event_key.clone()),
            optional_text(&letter.message_type),
            optional_text(&letter.call_id),
            Value::Text(letter.reason.clone()),
            Value::Text(letter.headers.to_string()),
            Value::Blob(letter.body.clone()),
        ],
    )?;
    Ok(())
}

pub fn pending_dead_letters(db: &Connection, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
    let rows = run(db, sql::PENDING_DEAD_LETTERS, &[Value::Integer(limit)])?;
    Ok(rows
        .rows
        .iter()
        .filter_map(
            |row| match (integer(row.values.first()), row.values.get(1)) {
                (Some(id), Some(Value::Blob(body))) => Some(PendingLetter {
                    id,
                    body: body.clone(),
                    event_key: text(row.values.get(2)).unwrap_or_default(),
                }),
                _ => None,
            },
        )
        .collect())
}

pub fn mark_replayed(db: &Connection, id: i64, outcome: &str) -> Result<(), DbError> {
    run(
        db,
        sql::MARK_REPLAYED,
        &[Value::Integer(id), Value::Text(outcome.to_string())],
    )?;
    Ok(())
}

pub fn put_tenant(db: &Connection, id: &str, config: &str) -> Result<(), DbError> {
    run(
        db,
        sql::PUT_TENANT,
        &[Value::Text(id.to_string()), Value::Text(config.to_string())],
    )?;
    Ok(())
}

pub fn delete_tenant(db: &Connection, id: &str) -> Result<(), DbError> {
    run(db, sql::DELETE_TENANT, &[Value::Text(id.to_string())])?;
    Ok(())
}

/// Every tenant as one JSON array text (`tenant::Stored` rows).
pub fn tenants(db: &Connection) -> Result<String, DbError> {
    let rows = run(db, sql::TENANTS, &[])?;
    Ok(text(first(&rows).and_then(|row| row.first())).unwrap_or_else(|| "[]".into()))
}

pub fn count_pending_dead_letters(db: &Connection) -> Result<i64, DbError> {
    let rows = run(db, sql::COUNT_PENDING_DEAD_LETTERS, &[])?;
    Ok(integer(first(&rows).and_then(|row| row.first())).unwrap_or(0))
}

pub fn line_answer(
    db: &Connection,
    tenant: &str,
    vapi_phone_number_id: Option<&str>,
    phone_e164: Option<&str>,
) -> Result<LineAnswer, DbError> {
    let text_or_null =
        |v: Option<&str>| v.map(|v| Value::Text(v.to_string())).unwrap_or(Value::Null);
    let rows = run(
        db,
        sql::LINE_ANSWER,
        &[
            text_or_null(vapi_phone_number_id),
            text_or_null(phone_e164),
            Value::Text(tenant.to_string()),
        ],
    )?;
    Ok(first(&rows).map_or_else(LineAnswer::default, |row| {
        LineAnswer::from_columns(std::array::from_fn(|i| text(row.get(i))))
    }))
}

pub fn metrics_snapshot(db: &Connection) -> Result<String, DbError> {
    let rows = run(db, &sql::metrics_snapshot(), &[])?;
    text(first(&rows).and_then(|row| row.first()))
        .ok_or_else(|| DbError::lasting("metrics query returned nothing"))
}

/// A dashboard read: its one row's JSON text, `None` for a NULL row.
pub fn read_json(db: &Connection, read: &Read) -> Result<Option<String>, DbError> {
    let params: Vec<Value> = read
        .params()
        .into_iter()
        .map(|param| match param {
            Param::Text(value) => optional_text(&value),
            Param::Int(n) => Value::Integer(n),
        })
        .collect();
    let rows = run(db, read.sqlite_statement(), &params)?;
    Ok(text(first(&rows).and_then(|row| row.first())))
}
