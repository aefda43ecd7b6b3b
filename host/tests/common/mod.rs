//! Shared harness for the end-to-end tests: builds the real `.wasm`, creates a
//! fresh PostgreSQL database per test, starts `vapi-edge-host` as a child
//! process on an ephemeral port, and talks HTTP to it.
#![allow(dead_code)] // each test binary uses a different part of the harness

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
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

/// Builds a workspace component for wasm32-wasip2 (release) once per test
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
            "--release",
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
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let size = std::fs::metadata(&path).expect("the .wasm exists").len();
    println!(
        "built {} (release): {size} bytes = {:.1} KiB (goal: <= 1024 KiB)",
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
        "source = \"target/wasm32-wasip2/release/vapi_edge.wasm\"",
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

/// A PostgreSQL database that exists for one test and is dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
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
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        TestDb { name, url }
    }

    /// Created and migrated with the real `vapi-edge-host migrate` command.
    pub async fn migrated() -> TestDb {
        let db = TestDb::create().await;
        let out = run_host(&[
            "migrate",
            "--pg-url",
            &db.url,
            "--migrations",
            &migrations_dir(),
        ]);
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
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

/// How to start a host.
#[derive(Default, Clone)]
pub struct HostOptions {
    pub manifest: PathBuf,
    pub vars: Vec<(String, String)>,
    pub runtime_config: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl HostOptions {
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.push((
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value.into(),
        ));
        self
    }

    pub fn redis_kv(mut self, dir: &Path) -> Self {
        let path = dir.join("runtime-config.toml");
        std::fs::write(
            &path,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\n"),
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

/// A running `vapi-edge-host up`, killed when dropped. Every line it writes
/// (host and guest logs) is kept for assertions.
pub struct Host {
    pub addr: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Host {
    pub fn start(options: HostOptions) -> Host {
        let mut command = Command::new(host_binary());
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
        if let Some(path) = &options.runtime_config {
            command.arg("--runtime-config-file").arg(path);
        }
        let mut child = command.spawn().expect("host starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
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
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let (Some(tx), Some(addr)) = (&tx, line.strip_prefix("Serving http://")) {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
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
        Host { addr, child, lines }
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

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
