//! Running a host (`vapi-edge-host up` or the real `spin up`) as a child
//! process, keeping every line it writes, and talking HTTP to it.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The host binary: `VAPI_EDGE_HOST_BIN` when set, else cargo's. With a
/// target directory shared between worktrees, cargo's uplifted
/// `release/vapi-edge-host` is whichever worktree linked last; the
/// worktree's own is `release/deps/vapi_edge_host-<hash>`.
pub fn host_binary() -> &'static str {
    static BINARY: OnceLock<String> = OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("VAPI_EDGE_HOST_BIN")
            .ok()
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_vapi-edge-host").to_string())
    })
}

/// `vapi-edge-host relay`: the relay crate's, as the host's users start it.
pub fn host_relay() -> RelayOptions {
    RelayOptions::new(host_binary(), &["relay"])
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
            // The Spin CLI built for this machine, where CI keeps it.
            let beside = workspace_root().join("../shared/bin/spin");
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
    /// The host's limit on open files (`RLIMIT_NOFILE`), as a small
    /// container has it; `None` keeps the test's.
    pub open_files: Option<u64>,
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
    /// Reaped by [`Host::kill_hard`]: its process group id may belong to
    /// another process by the time this is dropped.
    reaped: bool,
    /// Set when the host is meant to fail in a way that prints what it
    /// prints (Spin's own crash lines): the JSON-lines check is skipped.
    pub foreign_lines_expected: bool,
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
        if let Some(files) = options.open_files {
            let limit = libc::rlimit {
                rlim_cur: files as libc::rlim_t,
                rlim_max: files as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe, and the closure touches
            // nothing but the copied struct.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
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
            reaped: false,
            foreign_lines_expected: false,
        }
    }

    /// The host's process id (the leader of its own process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process dies wherever it is, with no chance to finish a
    /// request, give back a claim or send a notification, as when a node or
    /// pod is lost. Its output so far stays readable.
    pub fn kill_hard(&mut self) {
        if self.reaped {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
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

    /// Sends `signal` (`TERM`, `INT`, ...) to the host process itself.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the host to exit by itself: its exit status,
    /// or `None` while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        self.kill_hard();
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
        if self.foreign_lines_expected || !lines.iter().any(|l| l.starts_with("  vapi-edge: ")) {
            return;
        }
        let broken: Vec<String> = lines
            .into_iter()
            .filter(|line| !is_banner(self.kind, line))
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

/// Whether `line` is what the host itself prints around the component's log:
/// `spin up`'s banner (and, under Spin, its start-up lines on stderr).
pub fn is_banner(kind: HostKind, line: &str) -> bool {
    let banner = line.starts_with("Serving http://")
        || line == "Available Routes:"
        || line.starts_with("  ");
    let spin_start_up = line.is_empty()
        || line.starts_with("Logging component stdio to ")
        || line.starts_with("Storing default ")
        || line.starts_with("Using runtime config ")
        // When compiling the .wasm takes a while (a cold cache, a busy machine).
        || line.starts_with("Preparing Wasm modules is taking");
    banner || (kind == HostKind::Spin && spin_start_up)
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

    /// `POST /admin/replay` with the admin token: its 200 report.
    pub async fn replay(&self) -> serde_json::Value {
        let response = send_bearer(self.host.addr, "POST", "/admin/replay", ADMIN_TOKEN).await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
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

impl WebhookApp {
    /// `start_with_db`, with the last word on the host's options: extra flags
    /// (`.arg("--request-timeout-ms").arg("1500")`) or another runtime config.
    pub fn start_with_db_and(
        db: TestDb,
        options: AppOptions,
        customize: impl FnOnce(HostOptions) -> HostOptions,
    ) -> WebhookApp {
        WebhookApp {
            host: Host::start(customize(webhook_host_options(&db, &options))),
            db,
        }
    }
}

/// A host serving the real component on `db` as `options` say, without
/// taking `db` (so several hosts, one after another, can serve one database).
pub fn webhook_host(db: &TestDb, options: AppOptions) -> Host {
    Host::start(webhook_host_options(db, &options))
}

/// POSTs a signed webhook to `host`.
pub async fn deliver_to(host: &Host, body: &serde_json::Value) -> TestResponse {
    let bytes = serde_json::to_vec(body).unwrap();
    let headers = vapi_headers(&bytes);
    host.post("/webhooks/vapi", &header_refs(&headers), bytes)
        .await
}

/// The options of a host that serves the real component on `db` as `options` say.
fn webhook_host_options(db: &TestDb, options: &AppOptions) -> HostOptions {
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
    host_options
}

/// Several hosts serving the real component on one database and one
/// key-value store, as a deployment with `replicas: N` runs it: each host has
/// its own app folder, port and instances, and shares nothing else.
pub struct WebhookReplicas {
    pub hosts: Vec<Host>,
    pub db: TestDb,
}

impl WebhookReplicas {
    /// `count` hosts, each started with the same options; `customize` has the
    /// last word on each (it is called once per host, with that host's own
    /// app folder in `manifest`).
    pub fn start_with_db_and(
        count: usize,
        db: TestDb,
        options: AppOptions,
        customize: impl Fn(HostOptions) -> HostOptions,
    ) -> WebhookReplicas {
        let hosts = (0..count)
            .map(|_| Host::start(customize(webhook_host_options(&db, &options))))
            .collect();
        WebhookReplicas { hosts, db }
    }
}
