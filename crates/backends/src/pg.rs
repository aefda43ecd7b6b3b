//! Outbound PostgreSQL: a pool per address (TLS from its `sslmode` and
//! `sslrootcert`, at least as strict as Spin, see `pg_tls`), statements
//! prepared once per connection, and conversions between the values of
//! `spin:postgres/postgres@4.0.0` and PostgreSQL's.
//!
//! The value, row and error types below mirror that interface's, variant for
//! variant, as plain Rust: the host converts its generated WIT types to these
//! one to one, and everything here is tested without a component.

// The error type mirrors the WIT interface's (as in spin-sdk itself).
#![allow(clippy::result_large_err)]

use crate::allowed_hosts::{default_port, AllowedHosts};
use crate::pg_tls::PgTarget;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A statement parameter (`spin:postgres` `parameter-value`). Ranges and
/// intervals, which this host does not bind, arrive as `Unsupported`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    Timestamp(i64),
    Uuid(String),
    Jsonb(Vec<u8>),
    Decimal(String),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    /// A parameter kind this host does not bind (named for the error).
    Unsupported(&'static str),
    DbNull,
}

/// A column value read back (`spin:postgres` `db-value`).
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    Uuid(String),
    Jsonb(Vec<u8>),
    Decimal(String),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    DbNull,
    /// The raw bytes of a type this host does not convert.
    Unsupported(Vec<u8>),
}

/// A column's type (`spin:postgres` `db-data-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbDataType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Date,
    Time,
    Datetime,
    Timestamp,
    Uuid,
    Jsonb,
    Decimal,
    ArrayInt32,
    ArrayInt64,
    ArrayDecimal,
    ArrayStr,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: DbDataType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<DbValue>>,
}

/// The server's error, as `spin:postgres` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub as_text: String,
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub extras: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    Text(String),
    DbError(DbError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgError {
    ConnectionFailed(String),
    BadParameter(String),
    QueryFailed(QueryError),
    ValueConversionFailed(String),
    Other(String),
}

/// Connections the guest holds open; returned to the pool when the guest drops them.
pub struct PgConnection {
    // Shared (weakly) with this request's `InFlight`, which may need the
    // connection to wait out a cancelled statement.
    client: Option<Arc<deadpool_postgres::Object>>,
    /// Set by BEGIN, cleared by COMMIT/ROLLBACK, so a connection dropped in the
    /// middle of a transaction is rolled back before it is reused.
    in_transaction: bool,
    /// Set while a statement is on the wire. Still set at drop means the guest
    /// was cut off (deadline, trap) mid-statement: the statement is cancelled,
    /// or it could commit after the caller was told the request failed.
    in_flight: Arc<AtomicBool>,
    tls: MakeRustlsConnect,
}

/// What a request keeps of each connection it opened, so that when the host
/// cuts the request off it can cancel a statement still running before it
/// answers: see [`InFlight::cancel`].
pub struct InFlight {
    running: Arc<AtomicBool>,
    client: std::sync::Weak<deadpool_postgres::Object>,
    /// The connection's own TLS settings: a cancel request opens a new connection.
    tls: MakeRustlsConnect,
}

impl InFlight {
    /// Cancels the statement if one is still running and waits (up to 5 s)
    /// until it has ended: a query queued behind it on the same connection
    /// answers only then. A cancel request alone returns before the server
    /// acts on it, and a lock released in between would let the statement
    /// commit after all.
    pub async fn cancel(&self) {
        if !self.running.load(Ordering::SeqCst) {
            return;
        }
        let Some(client) = self.client.upgrade() else {
            return;
        };
        let token = client.cancel_token();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            token.cancel_query(self.tls.clone()).await?;
            client.simple_query("SELECT 1").await
        })
        .await;
        if !matches!(ended, Ok(Ok(_))) {
            crate::log::write(crate::log::warn(
                "postgres statement could not be cancelled",
            ));
        }
    }
}

/// Pools shared by every request, one per connection string.
#[derive(Clone, Default)]
pub struct PgPools {
    pools: Arc<Mutex<HashMap<String, (Pool, MakeRustlsConnect)>>>,
}

impl PgPools {
    pub async fn open(
        &self,
        address: &str,
        allowed: &AllowedHosts,
    ) -> Result<PgConnection, PgError> {
        let (pool, tls) = self.pool_and_tls(address, allowed)?;
        let client = pool
            .get()
            .await
            .map_err(|e| PgError::ConnectionFailed(public_pool_error(&e)))?;
        Ok(PgConnection {
            client: Some(Arc::new(client)),
            in_transaction: false,
            in_flight: Arc::new(AtomicBool::new(false)),
            tls,
        })
    }

    /// The pool for `address` (built on first use, after the allow-list check).
    pub fn pool(&self, address: &str, allowed: &AllowedHosts) -> Result<Pool, PgError> {
        self.pool_and_tls(address, allowed).map(|(pool, _)| pool)
    }

    fn pool_and_tls(
        &self,
        address: &str,
        allowed: &AllowedHosts,
    ) -> Result<(Pool, MakeRustlsConnect), PgError> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = pools.get(address) {
            return Ok(entry.clone());
        }
        // Not cached on failure: a missing sslrootcert may be put in place
        // without restarting the host. On success the roots are read once,
        // for the pool's life: a replaced CA file needs a restart.
        let PgTarget {
            mut config, tls, ..
        } = PgTarget::parse(address).map_err(|e| {
            // Names the file or the parameter at fault, never the address.
            crate::log::write(
                crate::log::warn("postgres connection string rejected")
                    .field("error", e.to_string()),
            );
            PgError::ConnectionFailed(e.to_string())
        })?;
        check_allowed(&config, allowed)?;
        config.connect_timeout(Duration::from_secs(5));
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(32)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PgError::ConnectionFailed(format!("cannot build pool: {e}")))?;
        pools.insert(address.to_string(), (pool.clone(), tls.clone()));
        Ok((pool, tls))
    }
}

fn check_allowed(config: &tokio_postgres::Config, allowed: &AllowedHosts) -> Result<(), PgError> {
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let host = match host {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => {
                return Err(PgError::ConnectionFailed(
                    "unix-socket addresses are not allowed; use host:port".into(),
                ))
            }
        };
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .or(default_port("postgres"))
            .unwrap_or(5432);
        if !allowed.allows("postgres", &host, port) {
            crate::log::write(
                crate::log::warn("outbound connection denied")
                    .field("target", format!("postgres://{host}:{port}"))
                    .field("reason", "not in allowed_outbound_hosts"),
            );
            return Err(PgError::ConnectionFailed(format!(
                "postgres://{host}:{port} is not in allowed_outbound_hosts"
            )));
        }
    }
    Ok(())
}

/// The search term of [`warn_empty_result`]'s line.
pub const EMPTY_RESULT: &str = "postgres query returned no rows";

/// This host answers a `query` with no rows at once, but Spin 4.0.0 to 4.0.2
/// never answers it (spinframework/spin#3671): a component that relies on an
/// empty result hangs there. Said here, so it shows before anyone deploys.
fn warn_empty_result() {
    crate::log::write(crate::log::warn(EMPTY_RESULT).field(
        "portability",
        "Spin 4.0.0-4.0.2 never answers a spin:postgres query whose result is empty \
             (spinframework/spin#3671); write the statement to return at least one row",
    ));
}

fn public_pool_error(error: &deadpool_postgres::PoolError) -> String {
    let detail = crate::pg_tls::error_chain(error);
    let tls = detail.contains("TLS") || detail.contains("certificate");
    crate::log::write(
        crate::log::warn("postgres connection failed")
            .field("error", detail.as_str())
            .field("hint", tls.then_some(crate::pg_tls::TLS_HINT)),
    );
    match error {
        deadpool_postgres::PoolError::Timeout(_) => "timed out connecting to postgres".into(),
        _ => "could not connect to postgres".into(),
    }
}

impl PgConnection {
    pub fn in_flight(&self) -> Option<InFlight> {
        Some(InFlight {
            running: self.in_flight.clone(),
            tls: self.tls.clone(),
            client: Arc::downgrade(self.client.as_ref()?),
        })
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, PgError> {
        self.client
            .as_deref()
            .ok_or_else(|| PgError::ConnectionFailed("connection closed".into()))
    }

    pub async fn query(
        &mut self,
        statement: &str,
        params: Vec<ParameterValue>,
    ) -> Result<RowSet, PgError> {
        let client = self.client()?;
        let prepared = client
            .prepare_cached(statement)
            .await
            .map_err(query_error)?;
        let values = bind(params, prepared.params())?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        self.in_flight.store(true, Ordering::SeqCst);
        let rows = client.query(&prepared, &refs).await;
        self.in_flight.store(false, Ordering::SeqCst);
        let rows = rows.map_err(query_error)?;
        self.track_transaction(statement);
        if rows.is_empty() {
            warn_empty_result();
        }
        let columns = prepared
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                data_type: data_type(c.type_()),
            })
            .collect();
        let rows = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| db_value(row, i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RowSet { columns, rows })
    }

    pub async fn execute(
        &mut self,
        statement: &str,
        params: Vec<ParameterValue>,
    ) -> Result<u64, PgError> {
        let client = self.client()?;
        let prepared = client
            .prepare_cached(statement)
            .await
            .map_err(query_error)?;
        let values = bind(params, prepared.params())?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        self.in_flight.store(true, Ordering::SeqCst);
        let count = client.execute(&prepared, &refs).await;
        self.in_flight.store(false, Ordering::SeqCst);
        let count = count.map_err(query_error)?;
        self.track_transaction(statement);
        Ok(count)
    }

    fn track_transaction(&mut self, statement: &str) {
        let first = statement
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match first.trim_end_matches(';') {
            "BEGIN" | "START" => self.in_transaction = true,
            "COMMIT" | "ROLLBACK" | "END" | "ABORT" => self.in_transaction = false,
            _ => {}
        }
    }
}

impl Drop for PgConnection {
    /// A connection the guest left inside a transaction (for example because it
    /// trapped) is closed rather than returned to the pool: the server then rolls
    /// the transaction back, and no later request inherits it. So is one whose
    /// statement was still running (the guest was cut off waiting for it): the
    /// host cancels that statement before answering (`InFlight::cancel`), since
    /// a backend waiting on a lock does not notice its client has gone.
    fn drop(&mut self) {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        if !(self.in_transaction || in_flight) {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        // The request's `InFlight` holds only a weak reference, so this is the
        // last one unless a cancel is still running, which then drops it.
        if let Ok(client) = Arc::try_unwrap(client) {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

fn query_error(error: tokio_postgres::Error) -> PgError {
    if let Some(db) = error.as_db_error() {
        return PgError::QueryFailed(QueryError::DbError(DbError {
            as_text: db.to_string(),
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            extras: Vec::new(),
        }));
    }
    if error.is_closed() {
        return PgError::ConnectionFailed("connection closed".into());
    }
    PgError::QueryFailed(QueryError::Text(error.to_string()))
}

/// NULL for a parameter of any type.
#[derive(Debug)]
struct SqlNull;

impl ToSql for SqlNull {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

type BoxedParam = Box<dyn ToSql + Sync + Send>;

fn bind(params: Vec<ParameterValue>, types: &[Type]) -> Result<Vec<BoxedParam>, PgError> {
    if params.len() != types.len() {
        return Err(PgError::BadParameter(format!(
            "statement has {} parameters, {} given",
            types.len(),
            params.len()
        )));
    }
    params
        .into_iter()
        .zip(types)
        .enumerate()
        .map(|(i, (param, ty))| {
            to_sql(param, ty).map_err(|why| PgError::BadParameter(format!("${}: {why}", i + 1)))
        })
        .collect()
}

/// Converts one parameter, widening integers and parsing text where the
/// statement's declared type asks for it.
fn to_sql(param: ParameterValue, ty: &Type) -> Result<BoxedParam, String> {
    use ParameterValue as P;
    let int = |v: i64| -> Result<BoxedParam, String> {
        Ok(match *ty {
            Type::INT2 => Box::new(i16::try_from(v).map_err(|_| "out of range for int2")?),
            Type::INT4 => Box::new(i32::try_from(v).map_err(|_| "out of range for int4")?),
            Type::INT8 => Box::new(v),
            Type::FLOAT8 => Box::new(v as f64),
            Type::NUMERIC => Box::new(Decimal::from(v)),
            Type::TEXT | Type::VARCHAR => Box::new(v.to_string()),
            _ => return Err(format!("integer given for {ty}")),
        })
    };
    Ok(match param {
        P::DbNull => Box::new(SqlNull),
        P::Boolean(v) => Box::new(v),
        P::Int8(v) if *ty == Type::CHAR => Box::new(v),
        P::Int8(v) => return int(v.into()),
        P::Int16(v) => return int(v.into()),
        P::Int32(v) => return int(v.into()),
        P::Int64(v) => return int(v),
        P::Floating32(v) if *ty == Type::FLOAT4 => Box::new(v),
        P::Floating32(v) => Box::new(f64::from(v)),
        P::Floating64(v) if *ty == Type::FLOAT4 => Box::new(v as f32),
        P::Floating64(v) if *ty == Type::NUMERIC => {
            Box::new(Decimal::try_from(v).map_err(|_| "not a finite decimal")?)
        }
        P::Floating64(v) => Box::new(v),
        P::Str(s) => match *ty {
            Type::UUID => Box::new(uuid::Uuid::parse_str(&s).map_err(|_| "not a uuid")?),
            Type::JSON | Type::JSONB => {
                Box::new(serde_json::from_str::<serde_json::Value>(&s).map_err(|_| "not JSON")?)
            }
            Type::NUMERIC => Box::new(Decimal::from_str(&s).map_err(|_| "not a decimal")?),
            _ => Box::new(s),
        },
        P::Binary(v) => Box::new(v),
        P::Date((y, m, d)) => Box::new(date(y, m, d)?),
        P::Time((h, m, s, ns)) => Box::new(time(h, m, s, ns)?),
        P::Datetime((y, mo, d, h, mi, s, ns)) => {
            let naive = NaiveDateTime::new(date(y, mo, d)?, time(h, mi, s, ns)?);
            if *ty == Type::TIMESTAMPTZ {
                Box::new(naive.and_utc())
            } else {
                Box::new(naive)
            }
        }
        P::Timestamp(secs) => {
            let at = DateTime::<Utc>::from_timestamp(secs, 0).ok_or("timestamp out of range")?;
            match *ty {
                Type::TIMESTAMPTZ => Box::new(at),
                Type::TIMESTAMP => Box::new(at.naive_utc()),
                _ => return int(secs),
            }
        }
        P::Uuid(s) => Box::new(uuid::Uuid::parse_str(&s).map_err(|_| "not a uuid")?),
        P::Jsonb(bytes) => {
            Box::new(serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|_| "not JSON")?)
        }
        P::Decimal(s) => Box::new(Decimal::from_str(&s).map_err(|_| "not a decimal")?),
        P::ArrayInt32(v) => Box::new(v),
        P::ArrayInt64(v) => Box::new(v),
        P::ArrayStr(v) => Box::new(v),
        P::ArrayDecimal(v) => Box::new(
            v.into_iter()
                .map(|d| d.map(|d| Decimal::from_str(&d)).transpose())
                .collect::<Result<Vec<Option<Decimal>>, _>>()
                .map_err(|_| "not a decimal")?,
        ),
        P::Unsupported(kind) => {
            return Err(format!("{kind} parameters are not supported by this host"))
        }
    })
}

fn date(y: i32, m: u8, d: u8) -> Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| "invalid date".into())
}

fn time(h: u8, m: u8, s: u8, ns: u32) -> Result<NaiveTime, String> {
    NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| "invalid time".into())
}

fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSON | Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => DbDataType::ArrayStr,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

/// The raw bytes of a value of a type this host does not convert.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn db_value(row: &tokio_postgres::Row, i: usize) -> Result<DbValue, PgError> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
    ) -> Result<Option<T>, PgError> {
        row.try_get::<_, Option<T>>(i)
            .map_err(|e| PgError::ValueConversionFailed(format!("column {i}: {e}")))
    }
    fn datetime(at: NaiveDateTime) -> DbValue {
        DbValue::Datetime((
            at.year(),
            at.month() as u8,
            at.day() as u8,
            at.hour() as u8,
            at.minute() as u8,
            at.second() as u8,
            at.nanosecond(),
        ))
    }
    let ty = row.columns()[i].type_().clone();
    let value = match ty {
        Type::BOOL => get::<bool>(row, i)?.map(DbValue::Boolean),
        Type::CHAR => get::<i8>(row, i)?.map(DbValue::Int8),
        Type::INT2 => get::<i16>(row, i)?.map(DbValue::Int16),
        Type::INT4 => get::<i32>(row, i)?.map(DbValue::Int32),
        Type::INT8 => get::<i64>(row, i)?.map(DbValue::Int64),
        Type::FLOAT4 => get::<f32>(row, i)?.map(DbValue::Floating32),
        Type::FLOAT8 => get::<f64>(row, i)?.map(DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            get::<String>(row, i)?.map(DbValue::Str)
        }
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(DbValue::Binary),
        Type::DATE => get::<NaiveDate>(row, i)?
            .map(|d| DbValue::Date((d.year(), d.month() as u8, d.day() as u8))),
        Type::TIME => get::<NaiveTime>(row, i)?.map(|t| {
            DbValue::Time((
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond(),
            ))
        }),
        Type::TIMESTAMP => get::<NaiveDateTime>(row, i)?.map(datetime),
        Type::TIMESTAMPTZ => get::<DateTime<Utc>>(row, i)?.map(|t| datetime(t.naive_utc())),
        Type::UUID => get::<uuid::Uuid>(row, i)?.map(|u| DbValue::Uuid(u.to_string())),
        Type::JSON | Type::JSONB => get::<serde_json::Value>(row, i)?
            .map(|v| DbValue::Jsonb(serde_json::to_vec(&v).unwrap_or_default())),
        Type::NUMERIC => get::<Decimal>(row, i)?.map(|d| DbValue::Decimal(d.to_string())),
        Type::INT4_ARRAY => get::<Vec<Option<i32>>>(row, i)?.map(DbValue::ArrayInt32),
        Type::INT8_ARRAY => get::<Vec<Option<i64>>>(row, i)?.map(DbValue::ArrayInt64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            get::<Vec<Option<String>>>(row, i)?.map(DbValue::ArrayStr)
        }
        Type::NUMERIC_ARRAY => get::<Vec<Option<Decimal>>>(row, i)?.map(|v| {
            DbValue::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        _ => get::<Raw>(row, i)?.map(|raw| DbValue::Unsupported(raw.0)),
    };
    Ok(value.unwrap_or(DbValue::DbNull))
}
