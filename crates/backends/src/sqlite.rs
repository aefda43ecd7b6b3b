//! Spin's built-in SQLite (`spin:sqlite/sqlite@3.0.0`): each label names a
//! database file (or an in-memory database shared by the process), and every
//! `open` gets a connection of its own, so a transaction that a request begins
//! with `execute("BEGIN IMMEDIATE")` belongs to that request alone and is
//! rolled back when its connection closes without a COMMIT.
//!
//! SQLite calls block (a writer waits for the lock up to [`BUSY_TIMEOUT`]), so
//! they run on tokio's blocking pool, never on the threads serving requests.

use anyhow::{Context, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// A value bound to or read from a statement (`spin:sqlite` `value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    pub values: Vec<Value>,
}

/// A statement's result (`spin:sqlite` `query-result`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<RowResult>,
}

/// `spin:sqlite`'s errors; this host reports statement failures as `Io`
/// with SQLite's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteError {
    NoSuchDatabase,
    AccessDenied,
    InvalidConnection,
    DatabaseFull,
    Io(String),
}

/// How long a statement waits for another connection's lock before failing
/// with "database is locked". 5 s is rusqlite's default; set explicitly so an
/// upgrade cannot change it under us.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections one request may hold open at once, as in Spin.
pub const MAX_CONNECTIONS_PER_REQUEST: usize = 256;

/// Largest result a statement may return, counted as Spin counts it (Spin's
/// `MAX_HOST_BUFFERED_BYTES`): a bigger one is an error, not host memory.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// Where a labelled database lives (runtime config, or Spin's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    File(PathBuf),
    /// Lives as long as the process; every request of every component that
    /// is granted the label sees the same one.
    Memory,
}

/// A database ready for requests, shared by every request that may open it.
#[derive(Clone)]
pub struct SqliteDatabase {
    inner: Arc<Database>,
}

struct Database {
    location: SqliteLocation,
    /// What `sqlite3_open` is given: the file's path, or a `memdb` URI.
    target: PathBuf,
    /// Held for the life of the process: an in-memory database exists only
    /// while a connection to it is open, and a file database in WAL mode would
    /// otherwise be checkpointed each time a request closed the last connection.
    _keeper: Mutex<rusqlite::Connection>,
}

impl SqliteDatabase {
    /// Opens (creating if needed) the database at `location`, so that a
    /// missing directory or an unwritable file is a start-up error.
    pub fn prepare(location: &SqliteLocation) -> Result<Self> {
        let (target, keeper) = match location {
            SqliteLocation::File(path) => {
                let keeper = open_file(path)?;
                (path.clone(), keeper)
            }
            SqliteLocation::Memory => {
                // `memdb` databases whose name starts with `/` are shared by
                // every connection of the process, with SQLite's usual locking.
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let target = PathBuf::from(format!(
                    "file:/vapi-edge-sqlite-{}?vfs=memdb",
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                let keeper =
                    connect(&target).context("cannot create an in-memory SQLite database")?;
                (target, keeper)
            }
        };
        Ok(SqliteDatabase {
            inner: Arc::new(Database {
                location: location.clone(),
                target,
                _keeper: Mutex::new(keeper),
            }),
        })
    }

    /// For logs: the file's path, or `memory`.
    pub fn describe(&self) -> String {
        match &self.inner.location {
            SqliteLocation::File(path) => path.display().to_string(),
            SqliteLocation::Memory => "memory".to_string(),
        }
    }

    /// A new connection of the caller's own.
    pub async fn open(&self) -> Result<SqliteConnection, SqliteError> {
        let database = self.inner.clone();
        let opened = tokio::task::spawn_blocking(move || connect(&database.target)).await;
        let connection = match opened {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                crate::log::write(
                    crate::log::warn("sqlite database could not be opened")
                        .field("database", self.describe())
                        .field("error", error.to_string()),
                );
                return Err(statement_error(error));
            }
            Err(_) => {
                return Err(SqliteError::Io(
                    "the host could not open the database".into(),
                ))
            }
        };
        Ok(SqliteConnection {
            interrupt: Arc::new(connection.get_interrupt_handle()),
            connection: Arc::new(Mutex::new(connection)),
            running: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Opens a database file the way every connection to it is opened, creating
/// its folder if needed, and switches it to WAL journaling (which is stored in
/// the file, so once is enough): readers then never block the writer.
pub fn open_file(path: &Path) -> Result<rusqlite::Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    }
    let connection =
        connect(path).with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .with_context(|| format!("cannot switch {} to WAL journaling", path.display()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        crate::log::write(
            crate::log::warn("sqlite database is not in WAL mode")
                .field("database", path.display().to_string())
                .field("mode", mode.as_str()),
        );
    }
    Ok(connection)
}

fn connect(target: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(target)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// An open connection, owned by one request (a resource in its table).
pub struct SqliteConnection {
    connection: Arc<Mutex<rusqlite::Connection>>,
    interrupt: Arc<rusqlite::InterruptHandle>,
    /// Set while a statement runs on the blocking pool.
    running: Arc<AtomicBool>,
}

impl SqliteConnection {
    /// Runs one statement with positional parameters (`?`, `?1`, …) and
    /// returns its rows. Errors carry SQLite's message, never a parameter.
    pub async fn execute(
        &self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<QueryResult, SqliteError> {
        let connection = self.connection.clone();
        let running = self.running.clone();
        running.store(true, Ordering::SeqCst);
        let job = tokio::task::spawn_blocking(move || {
            let result = run_statement(&lock(&connection), &statement, params);
            running.store(false, Ordering::SeqCst);
            result
        });
        job.await
            .unwrap_or_else(|_| Err(SqliteError::Io("the statement was aborted".into())))
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE on this connection.
    pub fn changes(&self) -> u64 {
        // The guest waits for each call, so no statement of this connection
        // holds the lock here: this never waits.
        lock(&self.connection).changes()
    }

    /// The rowid of the last successful INSERT on this connection, or 0.
    pub fn last_insert_rowid(&self) -> i64 {
        lock(&self.connection).last_insert_rowid()
    }

    /// What the request keeps to settle this connection's statement if the
    /// host cuts it off: see [`InFlight::cancel`].
    pub fn in_flight(&self) -> InFlight {
        InFlight {
            running: self.running.clone(),
            interrupt: self.interrupt.clone(),
            connection: Arc::downgrade(&self.connection),
        }
    }
}

impl Drop for SqliteConnection {
    /// Closing the connection rolls back a transaction left open. A statement
    /// still running (the guest was cut off waiting for it) keeps the
    /// connection until it ends; interrupting it makes that soon.
    fn drop(&mut self) {
        if self.running.load(Ordering::SeqCst) {
            self.interrupt.interrupt();
        }
    }
}

/// A request's hold on one of its connections, for [`InFlight::cancel`].
pub struct InFlight {
    running: Arc<AtomicBool>,
    interrupt: Arc<rusqlite::InterruptHandle>,
    connection: Weak<Mutex<rusqlite::Connection>>,
}

impl InFlight {
    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.connection.strong_count() > 0
    }

    /// Interrupts the statement still running, if any, waits until it has
    /// ended and rolls back the transaction it was part of: called before the
    /// host answers a request it cut off, so that nothing commits behind that
    /// answer. A statement waiting for a lock is not interrupted by SQLite, so
    /// this can take up to [`BUSY_TIMEOUT`].
    pub async fn cancel(&self) {
        if !self.running.load(Ordering::SeqCst) {
            return;
        }
        self.interrupt.interrupt();
        let Some(connection) = self.connection.upgrade() else {
            return;
        };
        let settle = tokio::task::spawn_blocking(move || {
            let connection = lock(&connection);
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
        });
        if !matches!(
            tokio::time::timeout(BUSY_TIMEOUT + Duration::from_secs(1), settle).await,
            Ok(Ok(()))
        ) {
            crate::log::write(crate::log::warn("sqlite statement could not be cancelled"));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // rusqlite does not panic while holding a connection, and a connection
    // left mid-statement by one would be reset by its next statement anyway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_statement(
    connection: &rusqlite::Connection,
    sql: &str,
    params: Vec<Value>,
) -> Result<QueryResult, SqliteError> {
    // `prepare` refuses a second statement after the first.
    let mut statement = connection.prepare(sql).map_err(statement_error)?;
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut cursor = statement
        .query(rusqlite::params_from_iter(params.into_iter().map(to_sql)))
        .map_err(statement_error)?;
    let mut rows = Vec::new();
    let mut size = 0usize;
    while let Some(row) = cursor.next().map_err(statement_error)? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let value = from_sql(row.get_ref(i).map_err(statement_error)?, column)?;
            size += value_size(&value);
            values.push(value);
        }
        if size > MAX_RESULT_BYTES {
            return Err(SqliteError::Io(format!(
                "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        rows.push(RowResult { values });
    }
    Ok(QueryResult { columns, rows })
}

/// SQLite's own message. (rusqlite's text for a syntax error would repeat the
/// statement; the message alone names the place.)
fn statement_error(error: rusqlite::Error) -> SqliteError {
    SqliteError::Io(match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            message.unwrap_or_else(|| code.to_string())
        }
        rusqlite::Error::SqlInputError { msg, .. } => msg,
        other => other.to_string(),
    })
}

fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Integer(v) => SqlValue::Integer(v),
        Value::Real(v) => SqlValue::Real(v),
        Value::Text(v) => SqlValue::Text(v),
        Value::Blob(v) => SqlValue::Blob(v),
        Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>, column: &str) -> Result<Value, SqliteError> {
    Ok(match value {
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(bytes) => Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| {
            SqliteError::Io(format!("column {column} holds text that is not UTF-8"))
        })?),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        ValueRef::Null => Value::Null,
    })
}

fn value_size(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::Text(text) => text.len(),
            Value::Blob(bytes) => bytes.len(),
            Value::Integer(_) | Value::Real(_) | Value::Null => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir()
            .join(format!(
                "vapi-edge-sqlite-unit-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ))
            .join("db.sqlite")
    }

    async fn run(connection: &SqliteConnection, sql: &str, params: Vec<Value>) -> QueryResult {
        connection.execute(sql.to_string(), params).await.unwrap()
    }

    async fn count(connection: &SqliteConnection) -> i64 {
        match run(connection, "SELECT count(*) FROM t", vec![]).await.rows[0].values[0] {
            Value::Integer(n) => n,
            ref other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn values_of_every_type_round_trip() {
        let database = SqliteDatabase::prepare(&SqliteLocation::Memory).unwrap();
        let connection = database.open().await.unwrap();
        run(&connection, "CREATE TABLE t (i, r, x, b, n)", vec![]).await;
        let values = vec![
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::Text("héllo ✓".into()),
            Value::Blob(vec![0, 1, 255]),
            Value::Null,
        ];
        run(
            &connection,
            "INSERT INTO t VALUES (?, ?2, ?3, ?4, ?5)",
            values.clone(),
        )
        .await;
        assert_eq!(connection.changes(), 1);
        assert_eq!(connection.last_insert_rowid(), 1);
        let result = run(&connection, "SELECT i, r, x AS text, b, n FROM t", vec![]).await;
        assert_eq!(result.columns, ["i", "r", "text", "b", "n"]);
        assert_eq!(result.rows.len(), 1);
        assert_eq!(
            format!("{:?}", result.rows[0].values),
            format!("{values:?}")
        );
    }

    #[tokio::test]
    async fn an_in_memory_database_is_shared_by_its_connections_only() {
        let database = SqliteDatabase::prepare(&SqliteLocation::Memory).unwrap();
        let writer = database.open().await.unwrap();
        run(&writer, "CREATE TABLE t (x)", vec![]).await;
        run(&writer, "INSERT INTO t VALUES (1)", vec![]).await;
        drop(writer);
        assert_eq!(count(&database.open().await.unwrap()).await, 1);
        let other = SqliteDatabase::prepare(&SqliteLocation::Memory).unwrap();
        let missing = other
            .open()
            .await
            .unwrap()
            .execute("SELECT * FROM t".into(), vec![])
            .await
            .unwrap_err();
        assert!(matches!(missing, SqliteError::Io(ref m) if m == "no such table: t"));
    }

    #[tokio::test]
    async fn errors_carry_sqlite_messages_and_no_parameter_values() {
        let database = SqliteDatabase::prepare(&SqliteLocation::Memory).unwrap();
        let connection = database.open().await.unwrap();
        let error = |result: Result<QueryResult, SqliteError>| match result.unwrap_err() {
            SqliteError::Io(message) => message,
            other => panic!("{other:?}"),
        };
        run(&connection, "CREATE TABLE t (x TEXT UNIQUE)", vec![]).await;
        let secret = || vec![Value::Text("do-not-echo-me".into())];
        run(&connection, "INSERT INTO t VALUES (?)", secret()).await;
        let duplicate = error(
            connection
                .execute("INSERT INTO t VALUES (?)".into(), secret())
                .await,
        );
        assert_eq!(duplicate, "UNIQUE constraint failed: t.x");
        let syntax = error(connection.execute("SELEC 1".into(), vec![]).await);
        assert!(syntax.contains("syntax error"), "{syntax}");
        let two = error(
            connection
                .execute("SELECT 1; SELECT 2".into(), vec![])
                .await,
        );
        assert!(two.contains("Multiple statements"), "{two}");
        let params = error(connection.execute("SELECT ?".into(), vec![]).await);
        assert!(params.contains("parameters"), "{params}");
    }

    #[tokio::test]
    async fn a_file_is_in_wal_mode_and_a_dropped_connection_rolls_back() {
        let path = temp_file("rollback");
        let database = SqliteDatabase::prepare(&SqliteLocation::File(path.clone())).unwrap();
        let first = database.open().await.unwrap();
        let mode = run(&first, "PRAGMA journal_mode", vec![]).await;
        assert!(matches!(&mode.rows[0].values[0], Value::Text(m) if m == "wal"));
        run(&first, "CREATE TABLE t (x)", vec![]).await;
        run(&first, "BEGIN IMMEDIATE", vec![]).await;
        run(&first, "INSERT INTO t VALUES (1)", vec![]).await;
        drop(first);
        let second = database.open().await.unwrap();
        assert_eq!(count(&second).await, 0);
        // The write lock went with the first connection.
        run(&second, "BEGIN IMMEDIATE", vec![]).await;
        run(&second, "COMMIT", vec![]).await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A writer waiting for the lock waits on the blocking pool: on this
    /// single-threaded runtime the holder still gets to commit, and the
    /// waiter then proceeds instead of timing out.
    #[tokio::test]
    async fn a_busy_wait_does_not_stall_the_runtime() {
        let path = temp_file("busy");
        let database = SqliteDatabase::prepare(&SqliteLocation::File(path.clone())).unwrap();
        let holder = database.open().await.unwrap();
        run(&holder, "CREATE TABLE t (x)", vec![]).await;
        run(&holder, "BEGIN IMMEDIATE", vec![]).await;
        run(&holder, "INSERT INTO t VALUES (1)", vec![]).await;
        let waiter = database.open().await.unwrap();
        let started = std::time::Instant::now();
        let waiting = tokio::spawn(async move {
            waiter
                .execute("INSERT INTO t VALUES (2)".into(), vec![])
                .await
                .map(|_| waiter.changes())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        run(&holder, "COMMIT", vec![]).await;
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
        assert!(started.elapsed() < BUSY_TIMEOUT);
        assert_eq!(count(&holder).await, 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// What the host does to a request it cuts off mid-statement: the
    /// statement is interrupted, and the request's transaction is gone before
    /// `cancel` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_interrupts_the_statement_and_rolls_its_transaction_back() {
        let database = SqliteDatabase::prepare(&SqliteLocation::Memory).unwrap();
        let cut_off = database.open().await.unwrap();
        run(&cut_off, "CREATE TABLE t (x)", vec![]).await;
        run(&cut_off, "BEGIN IMMEDIATE", vec![]).await;
        run(&cut_off, "INSERT INTO t VALUES (1)", vec![]).await;
        let in_flight = cut_off.in_flight();
        let endless = tokio::spawn(async move {
            cut_off
                .execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                     SELECT count(*) FROM c"
                        .into(),
                    vec![],
                )
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        in_flight.cancel().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            endless.await.unwrap(),
            Err(SqliteError::Io(ref m)) if m == "interrupted"
        ));
        let other = database.open().await.unwrap();
        assert_eq!(count(&other).await, 0);
        run(&other, "BEGIN IMMEDIATE", vec![]).await;
        run(&other, "COMMIT", vec![]).await;
    }
}
