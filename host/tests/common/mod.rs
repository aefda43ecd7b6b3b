//! Shared harness for the end-to-end tests: builds the real `.wasm`, creates a
//! fresh database per test (PostgreSQL, or a SQLite file for the zero-config
//! store), starts a host as a child process on an ephemeral port, and talks
//! HTTP to it. The host is `vapi-edge-host`, or for the conformance scenarios
//! (see [`conformance`]) the real Spin CLI as well.
#![allow(dead_code)] // each test binary uses a different part of the harness

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds a workspace component for wasm32-wasip2 (profile `component`) once per test
/// binary and returns the path of the `.wasm`.
pub fn build_component(package: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some((_, path)) = built.iter().find(|(p, _)| p == package) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
            "-p",
            package,
        ])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed"
    );
    let path = target_dir()
        .join("wasm32-wasip2/component")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let size = std::fs::metadata(&path).expect("the .wasm exists").len();
    println!(
        "built {} (profile component): {size} bytes = {:.1} KiB (goal: <= 1024 KiB)",
        path.display(),
        size as f64 / 1024.0
    );
    built.push((package.to_string(), path.clone()));
    path
}

/// The repository's own spin.toml with `source` pointed at the built `.wasm`,
/// so tests run the real manifest wherever the target directory is.
pub fn app_manifest(dir: &Path) -> PathBuf {
    let wasm = build_component("vapi-edge");
    let text = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
    let text = text.replace(
        "source = \"target/wasm32-wasip2/component/vapi_edge.wasm\"",
        &format!("source = {:?}", wasm.display().to_string()),
    );
    assert!(
        text.contains(&wasm.display().to_string()),
        "spin.toml source line changed"
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vapi-edge-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs each named test body (`async fn name(store: StoreKind)`) once per
/// store, as `postgres::<name>` and `sqlite::<name>`. Use with
/// `#[macro_use] mod common;`.
#[allow(unused_macros)] // each test binary uses a different part of the harness
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::StoreKind::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::StoreKind::Sqlite).await
                }
            )*
        }
    };
}

/// The conformance scenarios: test bodies `async fn name(store: StoreKind,
/// host: HostKind)` that must behave the same in `vapi-edge-host` and in the
/// real Spin CLI, each run under both as `vapi_edge_host::<store>::<name>` and
/// `spin::<store>::<name>`. `host_only` scenarios (`async fn name()`) need a
/// feature Spin does not have; under Spin they are skipped with the reason
/// given. Without a Spin binary ([`spin_binary`]) the Spin half is skipped
/// with a line that says so. Each run prints one line (see [`conformance`]).
/// One invocation per test file; use with `#[macro_use] mod common;`.
#[allow(unused_macros)] // each test binary uses a different part of the harness
macro_rules! conformance {
    (
        every_store: [$($all:ident),* $(,)?],
        postgres: [$($pg:ident),* $(,)?],
        sqlite: [$($lite:ident),* $(,)?],
        host_only: [$($only:ident => $why:literal),* $(,)?] $(,)?
    ) => {
        conformance!(@host vapi_edge_host, VapiEdgeHost, [$($all),*], [$($pg),*], [$($lite),*]);
        conformance!(@host spin, Spin, [$($all),*], [$($pg),*], [$($lite),*]);
        mod vapi_edge_host_only {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $only() {
                    crate::common::conformance::run_host_only(
                        stringify!($only), crate::common::HostKind::VapiEdgeHost, $why, crate::$only,
                    ).await
                }
            )*
        }
        mod spin_host_only {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $only() {
                    crate::common::conformance::run_host_only(
                        stringify!($only), crate::common::HostKind::Spin, $why, crate::$only,
                    ).await
                }
            )*
        }
    };
    (@host $module:ident, $kind:ident, [$($all:ident),*], [$($pg:ident),*], [$($lite:ident),*]) => {
        mod $module {
            mod postgres {
                $( conformance!(@test $all, $kind, Postgres); )*
                $( conformance!(@test $pg, $kind, Postgres); )*
            }
            mod sqlite {
                $( conformance!(@test $all, $kind, Sqlite); )*
                $( conformance!(@test $lite, $kind, Sqlite); )*
            }
        }
    };
    (@test $name:ident, $kind:ident, $store:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            crate::common::conformance::run(
                stringify!($name),
                crate::common::HostKind::$kind,
                crate::common::StoreKind::$store,
                crate::$name,
            )
            .await
        }
    };
}

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
        let db = match kind {
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
        };
        let out = match kind {
            StoreKind::Postgres => run_host(&[
                "migrate",
                "--pg-url",
                &db.url,
                "--migrations",
                &migrations_dir(),
            ]),
            StoreKind::Sqlite => {
                let path = db.sqlite_path();
                let dir = workspace_root().join("migrations/sqlite");
                run_host(&[
                    "migrate",
                    "--sqlite",
                    path.to_str().unwrap(),
                    "--migrations",
                    dir.to_str().unwrap(),
                ])
            }
        };
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
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

    /// A boolean column (`t`/`f` in Postgres, 1/0 in SQLite).
    pub fn bool(&self, i: usize) -> bool {
        match self.text(i).as_str() {
            "t" | "true" | "1" => true,
            "f" | "false" | "0" => false,
            other => panic!("column {i} is not a boolean: {other}"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.kind != StoreKind::Postgres {
            // The file lives in the test's temp folder.
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee, so use a private one.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = admin_client().await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
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

pub fn host_binary() -> &'static str {
    env!("CARGO_BIN_EXE_vapi-edge-host")
}

/// Runs the host binary to completion (for `migrate` and start-up errors).
pub fn run_host(args: &[&str]) -> std::process::Output {
    Command::new(host_binary())
        .args(args)
        .env_clear()
        .output()
        .expect("host binary runs")
}

/// Which program runs the component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKind {
    /// This repository's wasmtime host.
    #[default]
    VapiEdgeHost,
    /// The real Spin CLI ([`spin_binary`]).
    Spin,
}

impl HostKind {
    pub fn name(self) -> &'static str {
        match self {
            HostKind::VapiEdgeHost => "vapi-edge-host",
            HostKind::Spin => "spin",
        }
    }
}

/// The Spin CLI the suite runs the conformance scenarios in: `SPIN_BIN` when
/// set (empty: none), else `../shared/bin/spin` beside the repository, else
/// `spin` on `PATH`. `None` skips the Spin half.
pub fn spin_binary() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SPIN_BIN") {
                return (!path.is_empty()).then(|| PathBuf::from(path));
            }
            let beside = shared_dir().join("bin/spin");
            if beside.is_file() {
                return Some(beside);
            }
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("spin"))
                    .find(|path| path.is_file())
            })
        })
        .clone()
}

/// Spin's home while tests run: its Wasmtime compilation cache lives there,
/// so only the first `spin up` of a build compiles the component.
fn spin_home() -> PathBuf {
    let dir = target_dir().join("spin-test-home");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How to start a host.
#[derive(Default, Clone)]
pub struct HostOptions {
    pub kind: HostKind,
    pub manifest: PathBuf,
    pub vars: Vec<(String, String)>,
    pub runtime_config: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl HostOptions {
    pub fn on(mut self, kind: HostKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.push((
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value.into(),
        ));
        self
    }

    pub fn redis_kv(self, dir: &Path) -> Self {
        self.redis_kv_at(dir, REDIS_URL)
    }

    /// The key-value store in Redis at `url` (e.g. one of its numbered databases).
    pub fn redis_kv_at(mut self, dir: &Path, url: &str) -> Self {
        let path = dir.join("runtime-config.toml");
        std::fs::write(
            &path,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n"),
        )
        .unwrap();
        self.runtime_config = Some(path);
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
}

/// A running `vapi-edge-host up` or `spin up`, killed when dropped. Every
/// line it writes (host and guest logs) is kept for assertions: Spin, too,
/// copies the component's stdout and stderr to its own (and to `.spin/logs/`).
pub struct Host {
    pub addr: SocketAddr,
    pub kind: HostKind,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Host {
    pub fn start(options: HostOptions) -> Host {
        let mut command = match options.kind {
            HostKind::VapiEdgeHost => Command::new(host_binary()),
            HostKind::Spin => {
                assert!(
                    options.extra_args.is_empty(),
                    "{:?} are vapi-edge-host flags: skip this scenario under Spin",
                    options.extra_args
                );
                let mut command =
                    Command::new(spin_binary().expect("a Spin binary (see spin_binary)"));
                // Spin reads `.env` from its working directory: the app's own
                // folder has none.
                command.current_dir(options.manifest.parent().unwrap());
                command
            }
        };
        command
            .arg("up")
            .arg("--from")
            .arg(&options.manifest)
            .args(["--listen", "127.0.0.1:0"])
            .args(&options.extra_args)
            .env_clear()
            .envs(options.vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if options.kind == HostKind::Spin {
            // HOME holds Spin's compilation cache.
            command.env("HOME", spin_home());
        }
        if let Some(path) = &options.runtime_config {
            command.arg("--runtime-config-file").arg(path);
        }
        // `spin up` runs the app in a child process (`spin trigger http`) that
        // shares its output pipes: a group of their own, so that `drop` stops both.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("host starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(addr_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let (Some(tx), Some(addr)) = (&tx, line.strip_prefix("Serving http://")) {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "host did not start; output:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        Host {
            addr,
            kind: options.kind,
            child,
            lines,
            readers,
        }
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines that parse as JSON objects (the structured logs).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// Waits until a log line satisfies `pred`, or fails after `timeout`.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.json_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if Instant::now() > deadline {
                panic!("no matching log line; output:\n{}", self.lines().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        send(self.addr, "GET", path, &[], Vec::new()).await
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> TestResponse {
        send(self.addr, "POST", path, headers, body.into()).await
    }
}

/// Values that must never reach a log line: the suite's secrets, and the
/// digits of every phone number its payloads carry (the shared fixtures'
/// callers and lines, and the tests' own).
const NEVER_LOGGED: &[&str] = &[
    HMAC_SECRET,
    SERVER_SECRET,
    RELAY_SECRET,
    METRICS_TOKEN,
    ADMIN_TOKEN,
    "2125550187",
    "4155550142",
    "3055550164",
    "6175550123",
];

impl Drop for Host {
    /// Stops the host, then scans every line it wrote: with every test's host
    /// scanned here, no line of the whole suite may hold a secret or a full
    /// phone number, or be anything but one JSON object.
    fn drop(&mut self) {
        // The whole process group (see `start`), then the leader itself.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            return;
        }
        let leaks: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|line| NEVER_LOGGED.iter().any(|secret| line.contains(secret)))
            .collect();
        assert!(
            leaks.is_empty(),
            "secret or full phone number in the host's output: {leaks:?}"
        );
        // vapi-edge-host says when a `spin:postgres` query had no rows: Spin
        // 4.0.0-4.0.2 would never have answered it (spinframework/spin#3671).
        let empty: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|line| line.contains("\"postgres query returned no rows\""))
            .collect();
        assert!(
            empty.is_empty(),
            "a query returned no rows, which hangs under Spin 4.0.0-4.0.2: {empty:?}"
        );
        // Every line but `spin up`'s banner is one whole JSON object: concurrent
        // instances share stdout and stderr, and their lines must not interleave.
        // (Only where the vapi-edge component runs: the misbehaving test guest
        // prints what Rust prints when it runs out of memory.)
        let lines = self.lines();
        if !lines.iter().any(|l| l.starts_with("  vapi-edge: ")) {
            return;
        }
        let broken: Vec<String> = lines
            .into_iter()
            .filter(|line| {
                !(line.starts_with("Serving http://")
                    || line == "Available Routes:"
                    || line.starts_with("  "))
            })
            // Spin's own start-up lines (on stderr, before any request).
            .filter(|line| {
                self.kind != HostKind::Spin
                    || !(line.is_empty()
                        || line.starts_with("Logging component stdio to ")
                        || line.starts_with("Storing default ")
                        || line.starts_with("Using runtime config "))
            })
            .filter(|line| {
                !serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
            })
            .collect();
        assert!(
            broken.is_empty(),
            "log lines that are not one JSON object each: {broken:?}"
        );
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> TestResponse {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to host");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    TestResponse {
        status,
        headers,
        body,
    }
}

// ---- Vapi webhooks: signing, fixtures, seeding, a relay that records ----

pub const HMAC_SECRET: &str = "test-hmac-secret-7f3a";
pub const METRICS_TOKEN: &str = "metrics-token-5d1e";
pub const ADMIN_TOKEN: &str = "admin-token-8c2f";
pub const SERVER_SECRET: &str = "test-shared-secret-91c2";
pub const RELAY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ORG_ID: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
pub const OTHER_ORG_ID: &str = "0b7d9c1e-2f3a-4b5c-8d6e-7f8091a2b3c4";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A call id no other test or earlier run has used: the Redis store is shared
/// by every run on this machine and remembers handled events.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn shared_dir() -> PathBuf {
    workspace_root().parent().unwrap().join("shared")
}

/// A payload from ../shared/vapi/examples.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = shared_dir().join("vapi/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// An inbound call-start (`status-update` `in-progress`) for `call_id`, answered
/// by `assistant_id`, from `caller`.
pub fn inbound_start(call_id: &str, assistant_id: &str, caller: &str) -> serde_json::Value {
    let mut body = fixture("03-inbound-status-update-in-progress.json");
    retarget(&mut body, call_id, assistant_id);
    body["message"]["customer"]["number"] = caller.into();
    body["message"]["call"]["customer"]["number"] = caller.into();
    body
}

/// Points a fixture at another call and assistant (every place they appear).
pub fn retarget(body: &mut serde_json::Value, call_id: &str, assistant_id: &str) {
    let message = &mut body["message"];
    message["call"]["id"] = call_id.into();
    for path in [
        &["call", "assistantId"][..],
        &["assistant", "id"],
        &["phoneNumber", "assistantId"],
    ] {
        let mut node = &mut *message;
        for key in &path[..path.len() - 1] {
            node = &mut node[*key];
        }
        if node.is_object() {
            node[path[path.len() - 1]] = assistant_id.into();
        }
    }
}

/// Headers Vapi's HMAC credential (default settings) sends for `body`.
pub fn vapi_headers(body: &[u8]) -> Vec<(String, String)> {
    let timestamp = (now_ms() / 1000).to_string();
    let scheme = vapi_edge_core::verify::HmacScheme::new(vec![HMAC_SECRET.into()]);
    let signature = scheme.sign(&timestamp, body).unwrap();
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature".into(), signature),
        ("x-timestamp".into(), timestamp),
    ]
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

/// What the relay test server does with each request.
#[derive(Clone, Copy, Debug)]
pub enum RelayMode {
    Ok,
    Fail500,
    Slow(Duration),
}

/// One notification as the relay received it.
#[derive(Clone, Debug)]
pub struct RelayHit {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// A dashboard relay on loopback that records what it receives.
pub struct Relay {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<RelayHit>>>,
}

impl Relay {
    pub async fn start(mode: RelayMode) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<RelayHit>>> = Arc::default();
        let recorded = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move {
                                let headers = request.headers().clone();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                recorded.lock().unwrap().push(RelayHit { headers, body });
                                let status = match mode {
                                    RelayMode::Ok => 204,
                                    RelayMode::Fail500 => 500,
                                    RelayMode::Slow(delay) => {
                                        tokio::time::sleep(delay).await;
                                        204
                                    }
                                };
                                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Relay { addr, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn hits(&self) -> Vec<RelayHit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` notifications arrived (or `timeout` passed).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RelayHit> {
        let deadline = Instant::now() + timeout;
        while self.hits.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.hits()
    }
}

/// A loopback address where nothing listens.
pub fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A host serving the real component with verification, Postgres, a Redis
/// key-value store and (optionally) a relay.
pub struct WebhookApp {
    pub host: Host,
    pub db: TestDb,
}

pub struct AppOptions {
    pub host: HostKind,
    pub store: StoreKind,
    pub relay_url: Option<String>,
    pub retry_ms: Option<String>,
    pub redis: bool,
    pub extra: Vec<(String, String)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            host: HostKind::VapiEdgeHost,
            store: StoreKind::Postgres,
            relay_url: None,
            retry_ms: None,
            redis: true,
            extra: Vec::new(),
        }
    }
}

impl WebhookApp {
    pub async fn start(options: AppOptions) -> WebhookApp {
        let db = TestDb::migrated_on(options.store).await;
        Self::start_with_db(db, options)
    }

    pub fn start_with_db(db: TestDb, options: AppOptions) -> WebhookApp {
        Self::start_with_db_and(db, options, |host_options| host_options)
    }

    /// POSTs a signed webhook.
    pub async fn deliver(&self, body: &serde_json::Value) -> TestResponse {
        let bytes = serde_json::to_vec(body).unwrap();
        self.deliver_bytes(&bytes).await
    }

    pub async fn deliver_bytes(&self, bytes: &[u8]) -> TestResponse {
        let headers = vapi_headers(bytes);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.host
            .post("/webhooks/vapi", &headers, bytes.to_vec())
            .await
    }

    /// Log lines with this `msg`, once at least one has arrived (the host's
    /// output reaches the test through a pipe, a moment after the response).
    pub async fn logs(&self, msg: &str) -> Vec<serde_json::Value> {
        self.host
            .wait_for_log(Duration::from_secs(5), |l| l["msg"] == msg)
            .await;
        self.host
            .json_lines()
            .into_iter()
            .filter(|l| l["msg"] == msg)
            .collect()
    }
}

/// A TCP proxy in front of PostgreSQL that the test can take down and bring
/// back: while down it drops every open connection and refuses new ones, as a
/// database outage looks from the host.
pub struct PgProxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    executed: Arc<Mutex<Vec<String>>>,
}

/// Reads the client's side of the PostgreSQL wire protocol as it passes and
/// notes the SQL of every statement the server is asked to run: one entry per
/// simple `Query`, and per `Bind` of a prepared statement (whose text came in
/// its `Parse`). A statement bound and executed in one `Bind`/`Execute`/`Sync`
/// exchange is one round trip.
struct FrontendReader {
    buffer: Vec<u8>,
    /// Before the startup message, messages have no type byte.
    started: bool,
    /// Prepared statement name -> its SQL, on this connection.
    prepared: HashMap<String, String>,
    executed: Arc<Mutex<Vec<String>>>,
}

impl FrontendReader {
    fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.buffer.len() < header {
                return;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(self.buffer[at..at + 4].try_into().unwrap()) as usize;
            let total = at + length;
            if self.buffer.len() < total {
                return;
            }
            let message: Vec<u8> = self.buffer.drain(..total).collect();
            if !self.started {
                // SSLRequest and GSSENCRequest come before the startup message.
                let code = u32::from_be_bytes(message[4..8].try_into().unwrap());
                self.started = !matches!(code, 80_877_103 | 80_877_104);
                continue;
            }
            let body = &message[5..];
            let cstrings: Vec<String> = body
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            match message[0] {
                b'P' => {
                    self.prepared
                        .insert(cstrings[0].clone(), cstrings[1].clone());
                }
                b'B' => {
                    let sql = self.prepared.get(&cstrings[1]).cloned().unwrap_or_default();
                    self.executed.lock().unwrap().push(sql);
                }
                b'Q' => self.executed.lock().unwrap().push(cstrings[0].clone()),
                _ => {}
            }
        }
    }
}

impl PgProxy {
    pub async fn start() -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let executed: Arc<Mutex<Vec<String>>> = Arc::default();
        let (flag, tasks, log) = (up.clone(), connections.clone(), executed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut reader = FrontendReader {
                    buffer: Vec::new(),
                    started: false,
                    prepared: HashMap::new(),
                    executed: log.clone(),
                };
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    let (mut from_server, mut to_server) = server.into_split();
                    let (mut from_client, mut to_client) = client.split();
                    let upstream = async {
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_client.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            reader.feed(&chunk[..n]);
                            if to_server.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        PgProxy {
            addr,
            up,
            connections,
            executed,
        }
    }

    /// The SQL of every statement run through the proxy so far, in order.
    pub fn executed(&self) -> Vec<String> {
        self.executed.lock().unwrap().clone()
    }

    /// A connection string for `db` through the proxy.
    pub fn url(&self, db: &TestDb) -> String {
        format!(
            "postgres://postgres@{}/{}?sslmode=disable",
            self.addr, db.name
        )
    }

    pub fn allowed_host(&self) -> String {
        format!("postgres://{}", self.addr)
    }

    /// The variables that send a component's database traffic for `db`
    /// through the proxy (`AppOptions::extra`).
    pub fn variables(&self, db: &TestDb) -> Vec<(String, String)> {
        vec![
            ("pg_url".into(), self.url(db)),
            ("pg_allowed_host".into(), self.allowed_host()),
        ]
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

// ---- Reliability and security helpers (host/tests/reliability.rs; usable by any test) ----

/// Borrowed view of owned headers: the shape `send` and `Host::post` take.
pub fn header_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The headers of `vapi_headers`, signed at a chosen `timestamp` (the text of
/// the `x-timestamp` header: Unix seconds or milliseconds).
pub fn vapi_headers_at(body: &[u8], timestamp: &str) -> Vec<(String, String)> {
    let scheme = vapi_edge_core::verify::HmacScheme::new(vec![HMAC_SECRET.into()]);
    let signature = scheme.sign(timestamp, body).unwrap();
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature".into(), signature),
        ("x-timestamp".into(), timestamp.to_string()),
    ]
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

impl WebhookApp {
    /// `start_with_db`, with the last word on the host's options: extra flags
    /// (`.arg("--request-timeout-ms").arg("1500")`) or another runtime config.
    pub fn start_with_db_and(
        db: TestDb,
        options: AppOptions,
        customize: impl FnOnce(HostOptions) -> HostOptions,
    ) -> WebhookApp {
        let mut host_options = db
            .host_options()
            .on(options.host)
            .var("vapi_hmac_secret", HMAC_SECRET)
            .var("relay_secret", RELAY_SECRET);
        let dir = host_options.manifest.parent().unwrap().to_path_buf();
        if let Some(url) = &options.relay_url {
            let target = url.split('/').take(3).collect::<Vec<_>>().join("/");
            host_options = host_options
                .var("relay_url", url)
                .var("relay_allowed_host", target);
        }
        if let Some(retry) = &options.retry_ms {
            host_options = host_options.var("agent_lookup_retry_ms", retry);
        }
        for (name, value) in &options.extra {
            host_options = host_options.var(name, value);
        }
        if options.redis {
            host_options = host_options.redis_kv(&dir);
        }
        WebhookApp {
            host: Host::start(customize(host_options)),
            db,
        }
    }
}

/// A runtime config whose `default` key-value store is Redis on a loopback
/// port where nothing listens: the store is down for the whole run.
pub fn unreachable_kv_config(dir: &Path) -> PathBuf {
    let path = dir.join("runtime-config.unreachable.toml");
    std::fs::write(
        &path,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n",
    )
    .unwrap();
    path
}

/// Sleeps until the current claim-lease window (`now_ms / lease_ms`, as the
/// component computes it) is at most `within_ms` old.
pub async fn wait_for_lease_window_start(lease_ms: i64, within_ms: i64) {
    for _ in 0..2 {
        let into_window = now_ms().rem_euclid(lease_ms);
        if into_window <= within_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis((lease_ms - into_window) as u64 + 5)).await;
    }
    panic!("could not reach the start of a {lease_ms} ms lease window");
}

/// Deletes, when dropped, the dead letters the component parked in the shared
/// Redis store for these calls (while Postgres was down), so that no other
/// test's `POST /admin/replay` picks them up (nor a later run of the same
/// test, after a failure).
pub struct ParkedDeadLetterCleanup {
    pub call_ids: Vec<String>,
    /// The Redis the host parks in: `REDIS_URL`, or one of its numbered databases.
    pub redis_url: String,
}

impl ParkedDeadLetterCleanup {
    pub fn new(call_ids: Vec<String>) -> Self {
        ParkedDeadLetterCleanup {
            call_ids,
            redis_url: REDIS_URL.to_string(),
        }
    }
}

impl Drop for ParkedDeadLetterCleanup {
    fn drop(&mut self) {
        let call_ids = std::mem::take(&mut self.call_ids);
        let redis_url = std::mem::take(&mut self.redis_url);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(client) = redis::Client::open(redis_url) else {
                    return;
                };
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                    return;
                };
                for id in call_ids {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("vapi-edge/dead-letter/*{id}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    for key in keys {
                        let _: Result<i64, _> =
                            redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

/// The forms in which a phone number could leak into a log: as sent, and
/// every run of 8 or more of its trailing digits (the E.164 digits, the
/// national number, the subscriber part).
pub fn phone_number_forms(number: &str) -> Vec<String> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let mut forms = vec![number.to_string()];
    for start in 0..digits.len() {
        if digits.len() - start >= 8 {
            forms.push(digits[start..].to_string());
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Every line `host` wrote (host and component, stdout and stderr) that
/// contains one of `needles`, with the needle it contains.
pub fn lines_containing(host: &Host, needles: &[String]) -> Vec<(String, String)> {
    host.lines()
        .into_iter()
        .flat_map(|line| {
            needles
                .iter()
                .filter(|needle| !needle.is_empty() && line.contains(needle.as_str()))
                .map(|needle| (needle.clone(), line.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fails, quoting each offending line, if anything `host` wrote holds one of
/// `secrets` or a full phone number of `phone_numbers` (any of the forms of
/// [`phone_number_forms`]). Call it at the end of a test with the secrets it
/// configured and the caller numbers it sent.
pub fn assert_logs_hide(host: &Host, secrets: &[&str], phone_numbers: &[&str]) {
    let mut needles: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    for number in phone_numbers {
        needles.extend(phone_number_forms(number));
    }
    let leaks = lines_containing(host, &needles);
    assert!(
        leaks.is_empty(),
        "{} log line(s) hold a secret or a full phone number:\n{}",
        leaks.len(),
        leaks
            .iter()
            .map(|(needle, line)| format!("  [{needle}] {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One line per conformance scenario and host, written straight to the
/// terminal (past the test harness's capture, so `cargo test` shows it even
/// when the test passes) and, when `CONFORMANCE_REPORT` names a file, appended
/// there too: `.ci/run` prints that file as a table.
pub mod conformance {
    use super::{spin_binary, HostKind, StoreKind};
    use std::future::Future;
    use std::io::Write;
    use std::time::Instant;

    const NO_SPIN: &str =
        "no Spin binary (set SPIN_BIN, or put spin on PATH, to run the Spin half)";

    fn report(name: &str, host: HostKind, store: &str, result: &str) {
        let line = format!(
            "conformance: {:<14} {:<8} {name}: {result}\n",
            host.name(),
            store
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(path) = std::env::var_os("CONFORMANCE_REPORT") {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = file.write_all(line.as_bytes());
            }
        }
    }

    /// Reports FAIL when dropped during a panic (an assertion failed).
    struct Running<'a> {
        name: &'a str,
        host: HostKind,
        store: &'a str,
        started: Instant,
    }

    impl Drop for Running<'_> {
        fn drop(&mut self) {
            let elapsed = self.started.elapsed().as_secs_f64();
            let result = if std::thread::panicking() {
                format!("FAIL after {elapsed:.1} s")
            } else {
                format!("pass in {elapsed:.1} s")
            };
            report(self.name, self.host, self.store, &result);
        }
    }

    pub async fn run<F, Fut>(name: &str, host: HostKind, store: StoreKind, body: F)
    where
        F: FnOnce(StoreKind, HostKind) -> Fut,
        Fut: Future<Output = ()>,
    {
        if host == HostKind::Spin && spin_binary().is_none() {
            report(name, host, store.name(), &format!("skipped: {NO_SPIN}"));
            return;
        }
        let _running = Running {
            name,
            host,
            store: store.name(),
            started: Instant::now(),
        };
        body(store, host).await;
    }

    pub async fn run_host_only<F, Fut>(name: &str, host: HostKind, reason: &str, body: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        if host == HostKind::Spin {
            report(name, host, "-", &format!("skipped: {reason}"));
            return;
        }
        let _running = Running {
            name,
            host,
            store: "-",
            started: Instant::now(),
        };
        body().await;
    }
}
