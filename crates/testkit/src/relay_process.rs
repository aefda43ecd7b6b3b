//! The relay as a child process (`vapi-edge-relay`, or `vapi-edge-host
//! relay`): started on a free port, its log kept and checked when it stops.

use crate::{now_ms, send, TestResponse, REDIS_URL, RELAY_SECRET};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vapi_edge_core::standard_webhooks::{self, SigningKey};

/// The longest any wait here takes.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running relay, killed when dropped; then every line it
/// wrote must be one JSON object holding no secret and no token.
pub struct RelayProcess {
    pub addr: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The `dashboard_token` it runs with: never in its log.
    tokens: Option<String>,
}

#[derive(Clone)]
pub struct RelayOptions {
    /// The program and the arguments before the relay's own: `vapi-edge-relay`,
    /// or `vapi-edge-host relay`.
    command: Vec<String>,
    /// Dashboard tokens, as SPIN_VARIABLE_DASHBOARD_TOKEN.
    tokens: Option<String>,
    /// Share through Redis on this channel.
    channel: Option<String>,
    /// Another Redis than REDIS_URL (a proxy that can fail).
    redis_url: Option<String>,
    args: Vec<String>,
}

impl RelayOptions {
    /// The relay that `program` (followed by `args`) runs.
    pub fn new(program: &str, args: &[&str]) -> Self {
        RelayOptions {
            command: std::iter::once(program)
                .chain(args.iter().copied())
                .map(String::from)
                .collect(),
            tokens: None,
            channel: None,
            redis_url: None,
            args: Vec::new(),
        }
    }

    /// `dashboard_token`, as SPIN_VARIABLE_DASHBOARD_TOKEN.
    pub fn tokens(mut self, tokens: &str) -> Self {
        self.tokens = Some(tokens.to_string());
        self
    }

    pub fn redis(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_string());
        self
    }

    pub fn redis_at(mut self, url: &str, channel: &str) -> Self {
        self.redis_url = Some(url.to_string());
        self.redis(channel)
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// The relay's command line with `args` and only the variables `env`.
    pub fn command(&self, args: &[String], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .envs(env.iter().copied());
        command
    }
}

impl RelayProcess {
    pub fn start(options: RelayOptions) -> RelayProcess {
        let mut env = vec![("SPIN_VARIABLE_RELAY_SECRET", RELAY_SECRET)];
        if let Some(tokens) = &options.tokens {
            env.push(("SPIN_VARIABLE_DASHBOARD_TOKEN", tokens));
        }
        let mut args = options.args.clone();
        if let Some(channel) = &options.channel {
            let url = options.redis_url.as_deref().unwrap_or(REDIS_URL);
            env.push(("SPIN_VARIABLE_RELAY_REDIS_URL", url));
            args.extend(["--redis-channel".to_string(), channel.clone()]);
        }
        let mut child = options
            .command(&args, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay starts");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let lines = lines.clone();
            let addr_tx = addr_tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        if value["msg"] == "Relay serving" {
                            let addr = value["addr"].as_str().and_then(|a| a.parse().ok());
                            let _ = addr_tx.send(addr);
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!(
                    "relay did not start; output:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        RelayProcess {
            addr,
            child,
            lines,
            readers,
            tokens: options.tokens,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub async fn wait_for_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.json_lines().into_iter().find(&pred) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching log line; output:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn health(&self) -> Value {
        let response = send(self.addr, "GET", "/healthz", &[], Vec::new()).await;
        assert_eq!(response.status, 200);
        response.json()
    }

    pub async fn wait_for_subscribers(&self, n: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let health = self.health().await;
            if health["subscribers"] == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} subscribers: {health}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs `body` signed with `secret` at `timestamp_s`, on a fresh connection.
    pub async fn post_signed(&self, id: &str, body: &[u8], secret: &str, ts: i64) -> TestResponse {
        let headers = signed_headers(id, body, secret, ts);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        send(self.addr, "POST", "/events", &headers, body.to_vec()).await
    }

    /// POSTs `body` as the component would.
    pub async fn post(&self, id: &str, body: &[u8]) -> TestResponse {
        self.post_signed(id, body, RELAY_SECRET, now_ms() / 1000)
            .await
    }

    /// Sends `signal` ("TERM", "INT"); the exit status.
    pub async fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the relay ignored SIG{signal}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            return;
        }
        let lines = self.lines();
        // The dashboard tokens it was given: `<org>:<token>` or a bare token.
        let tokens = self.tokens.iter().flat_map(|list| {
            list.split(',').map(|entry| {
                entry
                    .trim()
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        });
        let secrets: Vec<String> = [RELAY_SECRET, &RELAY_SECRET["whsec_".len()..], "token="]
            .map(String::from)
            .into_iter()
            .chain(tokens)
            .collect();
        for secret in &secrets {
            let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
            assert!(leaks.is_empty(), "a secret in the relay's log: {leaks:?}");
        }
        let broken: Vec<&String> = lines
            .iter()
            .filter(|l| !serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
            .collect();
        assert!(broken.is_empty(), "not one JSON object each: {broken:?}");
    }
}

/// Standard Webhooks headers for `body` under `secret` at `ts` (seconds), as the component sends them.
pub fn signed_headers(id: &str, body: &[u8], secret: &str, ts: i64) -> Vec<(&'static str, String)> {
    let key = SigningKey::from_secret(secret).unwrap();
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend(standard_webhooks::headers(&key, id, ts, body));
    headers
}
