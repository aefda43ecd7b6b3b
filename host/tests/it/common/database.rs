//! A database per test: a fresh PostgreSQL database (dropped after) or a
//! SQLite file in the test's app folder, with portable helpers to read rows
//! and seed agents and leads.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Which store the component keeps its records in: PostgreSQL (`pg_url`
/// set) or the host's built-in SQLite database (no `pg_url`, the zero-config
/// run). The end-to-end suites run against both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    /// The store's name in the component's logs (`guard`, `store`) and `/healthz`.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Sqlite => "sqlite",
        }
    }

    /// The folder `vapi-edge-host migrate` applies to this store.
    pub fn migrations(self) -> PathBuf {
        match self {
            StoreKind::Postgres => workspace_root().join("migrations"),
            StoreKind::Sqlite => workspace_root().join("migrations/sqlite"),
        }
    }
}

/// A database that exists for one test: a fresh PostgreSQL database, dropped
/// after it; or a SQLite file in the test's own app folder, where the host
/// finds it with no configuration (`<folder of spin.toml>/.spin/sqlite_db.db`).
pub struct TestDb {
    pub kind: StoreKind,
    pub name: String,
    /// PostgreSQL only; empty for SQLite.
    pub url: String,
    /// SQLite only: the folder whose spin.toml the host runs.
    pub app_dir: Option<PathBuf>,
}

impl TestDb {
    pub async fn create() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "vapi_edge_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = admin_client().await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        // Spin verifies TLS unless sslmode=disable, and so does vapi-edge-host;
        // this machine's server has a self-signed certificate.
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable");
        TestDb {
            kind: StoreKind::Postgres,
            name,
            url,
            app_dir: None,
        }
    }

    /// A PostgreSQL database migrated with the real `vapi-edge-host migrate`.
    pub async fn migrated() -> TestDb {
        TestDb::migrated_on(StoreKind::Postgres).await
    }

    /// Created and migrated with the real `vapi-edge-host migrate` command,
    /// which applies `migrations/` to Postgres or `migrations/sqlite/` to the
    /// SQLite file.
    pub async fn migrated_on(kind: StoreKind) -> TestDb {
        let db = TestDb::create_on(kind).await;
        db.migrate_from(&kind.migrations());
        db
    }

    /// A database of this kind with no schema yet: a fresh PostgreSQL
    /// database, or a SQLite file (not yet there) in a test app folder.
    pub async fn create_on(kind: StoreKind) -> TestDb {
        match kind {
            StoreKind::Postgres => TestDb::create().await,
            StoreKind::Sqlite => {
                let dir = temp_dir("sqlite");
                TestDb {
                    kind,
                    name: dir.display().to_string(),
                    url: String::new(),
                    app_dir: Some(dir),
                }
            }
        }
    }

    /// The `vapi-edge-host` flags that name this database to `migrate`,
    /// `prune` and `seed-agent`: `--pg-url URL` or `--sqlite PATH`.
    pub fn database_args(&self) -> [String; 2] {
        match self.kind {
            StoreKind::Postgres => ["--pg-url".into(), self.url.clone()],
            StoreKind::Sqlite => ["--sqlite".into(), self.sqlite_path().display().to_string()],
        }
    }

    /// Applies the migrations in `folder` with the real `vapi-edge-host migrate`.
    pub fn migrate_from(&self, folder: &std::path::Path) {
        let [flag, target] = self.database_args();
        let out = run_host(&[
            "migrate",
            &flag,
            &target,
            "--migrations",
            folder.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `vapi-edge-host map-org` on this database: its JSON report.
    pub fn map_org(&self, vapi_org: &str, org_id: &str) -> serde_json::Value {
        let out = self.run_command("map-org", &["--vapi-org-id", vapi_org, "--org-id", org_id]);
        serde_json::from_slice(&out).expect("map-org prints JSON")
    }

    /// `vapi-edge-host map-line` on this database, with these flags.
    pub fn map_line(&self, flags: &[&str]) {
        self.run_command("map-line", flags);
    }

    /// `vapi-edge-host tenant <action>` on this database, with the sealing
    /// key in `SPIN_VARIABLE_TENANT_SECRETS_KEY` as an operator's shell has
    /// it; its stdout.
    pub fn tenant(&self, action: &str, secrets_key: &str, args: &[&str]) -> String {
        let [flag, target] = self.database_args();
        let out = std::process::Command::new(host_binary())
            .args(["tenant", action, &flag, &target])
            .args(args)
            .env_clear()
            .env("SPIN_VARIABLE_TENANT_SECRETS_KEY", secrets_key)
            .output()
            .expect("host binary runs");
        assert!(
            out.status.success(),
            "tenant {action} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// An agent of `org_id` that answers `tenant`'s webhooks.
    pub async fn seed_tenant_agent(&self, tenant: &str, org_id: &str, role: &str) -> Agent {
        let agent = self.seed_agent(org_id, role, role).await;
        self.rows(
            "UPDATE agents SET tenant = $1 WHERE id = $2",
            &[tenant, &agent.id],
        )
        .await;
        agent
    }

    /// Runs a `vapi-edge-host` command on this database; its stdout.
    fn run_command(&self, command: &str, flags: &[&str]) -> Vec<u8> {
        let [flag, target] = self.database_args();
        let mut args = vec![command, &flag, &target];
        args.extend_from_slice(flags);
        let out = run_host(&args);
        assert!(
            out.status.success(),
            "{command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// PostgreSQL only: a client for statements the portable helpers below
    /// do not cover.
    pub async fn client(&self) -> tokio_postgres::Client {
        assert_eq!(self.kind, StoreKind::Postgres, "client() is PostgreSQL's");
        connect(&self.url).await
    }

    /// SQLite only: the database file, where the host's default puts it.
    pub fn sqlite_path(&self) -> PathBuf {
        self.app_dir
            .as_ref()
            .expect("a SQLite test database")
            .join(".spin/sqlite_db.db")
    }

    /// Host options that run the app on this database: the manifest (for
    /// SQLite, in the folder that holds the database) and `pg_url` when Postgres.
    pub fn host_options(&self) -> HostOptions {
        match self.kind {
            StoreKind::Postgres => HostOptions {
                manifest: app_manifest(&temp_dir("app")),
                ..Default::default()
            }
            .var("pg_url", &self.url),
            StoreKind::Sqlite => HostOptions {
                manifest: app_manifest(self.app_dir.as_ref().unwrap()),
                ..Default::default()
            },
        }
    }

    /// Runs `sql` with `$1`, `$2`, ... bound to `params` and returns every
    /// row with every value as text (NULL as `None`), the same on both
    /// stores: write the SQL both dialects accept (no `::` casts).
    pub async fn rows(&self, sql: &str, params: &[&str]) -> Vec<Row> {
        match self.kind {
            StoreKind::Postgres => {
                // The simple protocol returns every value in its text form;
                // parameters are inlined as quoted literals (test values only).
                let mut inlined = sql.to_string();
                for (i, value) in params.iter().enumerate().rev() {
                    let literal = format!("'{}'", value.replace('\'', "''"));
                    inlined = inlined.replace(&format!("${}", i + 1), &literal);
                }
                let messages = self.client().await.simple_query(&inlined).await.unwrap();
                messages
                    .iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(Row((0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect())),
                        _ => None,
                    })
                    .collect()
            }
            StoreKind::Sqlite => {
                let connection = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                connection.busy_timeout(Duration::from_secs(10)).unwrap();
                let mut statement = connection.prepare(sql).unwrap();
                let columns = statement.column_count();
                let rows = statement
                    .query_map(rusqlite::params_from_iter(params.iter()), |row| {
                        Ok(Row((0..columns)
                            .map(|i| sqlite_text(row.get_ref(i).unwrap()))
                            .collect()))
                    })
                    .unwrap();
                rows.map(Result::unwrap).collect()
            }
        }
    }

    /// The first row of [`TestDb::rows`], if any.
    pub async fn row(&self, sql: &str, params: &[&str]) -> Option<Row> {
        self.rows(sql, params).await.into_iter().next()
    }
}

fn sqlite_text(value: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

/// One row of [`TestDb::rows`]: every value as text.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Option<String>>);
impl Row {
    /// Column `i`, which must not be NULL.
    pub fn text(&self, i: usize) -> String {
        self.opt(i)
            .unwrap_or_else(|| panic!("column {i} is NULL in {:?}", self.0))
    }

    pub fn opt(&self, i: usize) -> Option<String> {
        self.0.get(i).cloned().flatten()
    }

    pub fn int(&self, i: usize) -> i64 {
        self.text(i).parse().unwrap()
    }

    /// A JSON column (jsonb in Postgres, JSON text in SQLite).
    pub fn json(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.text(i)).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.kind != StoreKind::Postgres {
            // The file lives in the test's temp folder.
            return;
        }
        let name = self.name.clone();
        finish_on_own_thread(async move {
            let admin = admin_client().await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
    }
}

pub fn migrations_dir() -> String {
    workspace_root().join("migrations").display().to_string()
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 answers");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn admin_client() -> tokio_postgres::Client {
    connect(ADMIN_URL).await
}

pub struct Agent {
    pub id: String,
    pub assistant_id: String,
}

impl TestDb {
    /// Seeds an agent with only the contract's columns, as outside tools do.
    pub async fn seed_agent(&self, org_id: &str, role: &str, name: &str) -> Agent {
        let assistant_id = unique_id("asst");
        let row = self
            .row(
                "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, $2, $3, $4) RETURNING id",
                &[org_id, role, name, &assistant_id],
            )
            .await
            .unwrap();
        Agent {
            id: row.text(0),
            assistant_id,
        }
    }

    pub async fn seed_lead(&self, org_id: &str, phone: &str) -> String {
        self.row(
            "INSERT INTO leads (org_id, phone_e164) VALUES ($1, $2) RETURNING id",
            &[org_id, phone],
        )
        .await
        .unwrap()
        .text(0)
    }

    /// The single integer `sql` returns (a `count(*)`, say).
    pub async fn count(&self, sql: &str) -> i64 {
        self.row(sql, &[]).await.unwrap().int(0)
    }
}

/// Rows of one call: (call_tracking, call_logs, processed_webhook_events).
pub async fn call_rows(db: &TestDb, call_id: &str) -> (i64, i64, i64) {
    let mut counts = [0i64; 3];
    for (count, table) in
        counts
            .iter_mut()
            .zip(["call_tracking", "call_logs", "processed_webhook_events"])
    {
        *count = db
            .row(
                &format!("SELECT count(*) FROM {table} WHERE vapi_call_id = $1"),
                &[call_id],
            )
            .await
            .unwrap()
            .int(0);
    }
    (counts[0], counts[1], counts[2])
}

/// Rows of every call: (call_tracking, call_logs, processed_webhook_events).
pub async fn all_call_rows(db: &TestDb) -> (i64, i64, i64) {
    (
        db.count("SELECT count(*) FROM call_tracking").await,
        db.count("SELECT count(*) FROM call_logs").await,
        db.count("SELECT count(*) FROM processed_webhook_events")
            .await,
    )
}
