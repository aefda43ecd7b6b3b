//! A test-only component for `vapi-edge-host`'s own tests. It does what the real
//! component must never do, so the host's limits can be shown to hold:
//! `/loop` spins forever (epoch deadline), `/fetch` requests the URL in the
//! `x-target` header (outbound allow-list), `/grow` allocates without bound
//! (memory limit), `/sqlite/...` uses Spin's built-in SQLite (see [`sqlite`]),
//! anything else answers 200 `ok`.

use spin_sdk::http::{send, Request, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite3::{Connection, Error, QueryResult, Value};

#[http_component]
async fn handle(request: Request) -> anyhow::Result<Response> {
    match request.path() {
        "/loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "/grow" => {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            loop {
                chunks.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&chunks);
            }
        }
        "/fetch" => {
            let target = request
                .header("x-target")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            match send::<_, Response>(Request::get(target)).await {
                Ok(upstream) => Ok(Response::new(
                    200,
                    format!("upstream {}", upstream.status()),
                )),
                Err(error) => Ok(Response::new(502, format!("refused: {error}"))),
            }
        }
        path if path.starts_with("/sqlite/") => {
            let label = request
                .header("x-database")
                .and_then(|v| v.as_str())
                .unwrap_or("default")
                .to_string();
            Ok(match sqlite(&path["/sqlite/".len()..], &label) {
                Ok(report) => Response::new(200, report),
                Err(error) => Response::new(500, error),
            })
        }
        _ => Ok(Response::new(200, "ok")),
    }
}

/// Exercises the SQLite database `label`; the report is one `name=value` line
/// per fact, errors as `show_error` writes them.
///
/// - `roundtrip`: stores a value of each type with parameters and reads it back.
/// - `visit`: records a visit; reports how many there were (persistence).
/// - `abandon`: leaves an insert uncommitted, drops the connection, and reports
///   what a new connection sees.
/// - `stuck`: takes the write lock, inserts a visit, then loops forever.
/// - `many`: opens connections until one fails.
fn sqlite(action: &str, label: &str) -> Result<String, String> {
    if action == "many" {
        let mut open = Vec::new();
        loop {
            match Connection::open(label) {
                Ok(connection) => open.push(connection),
                Err(error) => {
                    return Ok(format!(
                        "opened={}\nerror={}\n",
                        open.len(),
                        show_error(&error)
                    ))
                }
            }
        }
    }
    let db = Connection::open(label).map_err(|e| format!("open={}\n", show_error(&e)))?;
    let run = |sql: &str, params: &[Value]| -> Result<QueryResult, String> {
        db.execute(sql, params)
            .map_err(|e| format!("statement={sql}\nerror={}\n", show_error(&e)))
    };
    let mut report = String::new();
    match action {
        "roundtrip" => {
            run("CREATE TABLE IF NOT EXISTS kinds (id INTEGER PRIMARY KEY, i, r, t, b, n, u TEXT UNIQUE)", &[])?;
            run("DELETE FROM kinds", &[])?;
            run(
                "INSERT INTO kinds (i, r, t, b, n, u) VALUES (?, ?, ?, ?, ?, ?6)",
                &[
                    Value::Integer(-42),
                    Value::Real(2.5),
                    Value::Text("héllo ✓".into()),
                    Value::Blob(vec![0, 1, 255]),
                    Value::Null,
                    Value::Text("do-not-echo-me".into()),
                ],
            )?;
            report += &format!(
                "changes={}\nrowid={}\n",
                db.changes(),
                db.last_insert_rowid()
            );
            let rows = run(
                "SELECT i, r, t, b, n FROM kinds WHERE id = ?1",
                &[Value::Integer(db.last_insert_rowid())],
            )?;
            report += &format!("columns={}\n", rows.columns.join(","));
            for row in &rows.rows {
                let values: Vec<String> = row.values.iter().map(show_value).collect();
                report += &format!("row={}\n", values.join(","));
            }
            let duplicate = db.execute(
                "INSERT INTO kinds (u) VALUES (?)",
                &[Value::Text("do-not-echo-me".into())],
            );
            report += &format!(
                "duplicate={}\n",
                duplicate.err().map(|e| show_error(&e)).unwrap_or_default()
            );
        }
        "visit" => {
            run("CREATE TABLE IF NOT EXISTS visits (at INTEGER)", &[])?;
            run("INSERT INTO visits (at) VALUES (1)", &[])?;
            report += &format!("visits={}\n", count_visits(&db)?);
        }
        "abandon" => {
            run("CREATE TABLE IF NOT EXISTS visits (at INTEGER)", &[])?;
            let before = count_visits(&db)?;
            run("BEGIN IMMEDIATE", &[])?;
            run("INSERT INTO visits (at) VALUES (2)", &[])?;
            let inside = count_visits(&db)?;
            drop(db);
            let fresh = Connection::open(label).map_err(|e| show_error(&e))?;
            // The write lock went with the dropped connection.
            fresh
                .execute("BEGIN IMMEDIATE", &[])
                .map_err(|e| show_error(&e))?;
            fresh.execute("COMMIT", &[]).map_err(|e| show_error(&e))?;
            let after = count_visits(&fresh)?;
            report += &format!("before={before}\ninside={inside}\nafter={after}\n");
        }
        "stuck" => {
            run("CREATE TABLE IF NOT EXISTS visits (at INTEGER)", &[])?;
            run("BEGIN IMMEDIATE", &[])?;
            run("INSERT INTO visits (at) VALUES (3)", &[])?;
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        other => return Err(format!("unknown action {other}\n")),
    }
    Ok(report)
}

fn count_visits(db: &Connection) -> Result<i64, String> {
    let result = db
        .execute("SELECT count(*) FROM visits", &[])
        .map_err(|e| show_error(&e))?;
    match result.rows.first().and_then(|row| row.values.first()) {
        Some(Value::Integer(n)) => Ok(*n),
        other => Err(format!("count is {other:?}")),
    }
}

fn show_value(value: &Value) -> String {
    match value {
        Value::Integer(v) => format!("integer:{v}"),
        Value::Real(v) => format!("real:{v}"),
        Value::Text(v) => format!("text:{v}"),
        Value::Blob(v) => format!("blob:{v:?}"),
        Value::Null => "null".to_string(),
    }
}

fn show_error(error: &Error) -> String {
    match error {
        Error::NoSuchDatabase => "no-such-database".to_string(),
        Error::AccessDenied => "access-denied".to_string(),
        Error::InvalidConnection => "invalid-connection".to_string(),
        Error::DatabaseFull => "database-full".to_string(),
        Error::Io(message) => format!("io: {message}"),
    }
}
