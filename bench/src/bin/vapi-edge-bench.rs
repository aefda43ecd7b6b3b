//! `vapi-edge-bench`: a load generator for a running vapi-edge server.
//!
//! It sends signed inbound call-start webhooks (`status-update` `in-progress`,
//! built from the shared fixture) at a fixed concurrency over keep-alive
//! HTTP/1.1 connections, one per worker, and reports throughput and latency.
//!
//! - `unique` mode: every request carries a new call id, so each one takes the
//!   full path (verify, parse, claim, record in PostgreSQL). Afterwards the
//!   number of new `call_tracking` rows is checked against the successes.
//! - `duplicate` mode: one event is recorded first, then every request repeats
//!   it (the duplicate fast path).
//!
//! Every request is freshly signed with Vapi's default HMAC scheme. The run is
//! bounded by a request count or a duration, and only loopback targets are
//! accepted. The last line printed is one JSON object for scripts.

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vapi_edge_core::verify::HmacScheme;

const ORG_ID: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
const FIXTURE: &str = "examples/vapi/03-inbound-status-update-in-progress.json";
const CALL_ID_PLACEHOLDER: &str = "__VAPI_EDGE_BENCH_CALL_ID__";
/// How many failed requests are shown in full.
const SHOWN_ERRORS: usize = 5;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

fn main() {
    let options = match Options::from_cli(Cli::parse()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        });
    match runtime.block_on(run(options)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    }
}

// ---- options -----------------------------------------------------------------

/// Seeds one agent (unless --assistant-id is given), then sends signed inbound
/// call-start webhooks at a fixed concurrency over keep-alive HTTP/1.1. Only
/// loopback targets are accepted. Exits non-zero when any request failed or
/// the database check does not match. With --server-pid (Linux), it also
/// reports the CPU time per request of the server, PostgreSQL, Redis and
/// itself over the measured requests, from /proc.
#[derive(Parser, Debug)]
#[command(name = "vapi-edge-bench", version)]
struct Cli {
    /// The server, e.g. http://127.0.0.1:3000 (loopback only).
    #[arg(long)]
    url: String,
    /// The server's PostgreSQL, to seed the agent and count the rows.
    #[arg(long)]
    pg_url: String,
    /// The server's `vapi_hmac_secret`: every request is signed with it.
    #[arg(long)]
    hmac_secret: String,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Measured requests (default 2000).
    #[arg(long, conflicts_with = "duration_s",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: Option<u64>,
    /// Or: measure for this many seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: Option<u64>,
    /// Requests sent first and not measured.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    #[arg(long, value_enum, default_value_t = Mode::Unique)]
    mode: Mode,
    /// An agent that exists already (else one is seeded).
    #[arg(long)]
    assistant_id: Option<String>,
    /// The request template (default: the shared inbound call-start example).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// The request path (default: the URL's, else /webhooks/vapi).
    #[arg(long)]
    path: Option<String>,
    /// The tenant whose mappings the seeded agent is in (for --path
    /// /webhooks/vapi/<tenant>; README, "Tenants").
    #[arg(long, default_value = "")]
    tenant: String,
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// The driver's own worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    threads: u8,
    /// The server's process id, for the CPU split (Linux).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Mode {
    /// Every request a new call: the full path.
    Unique,
    /// One event, repeated: the duplicate fast path.
    Duplicate,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Unique => "unique",
            Mode::Duplicate => "duplicate",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Bound {
    Requests(u64),
    Duration(Duration),
}

struct Options {
    addr: SocketAddr,
    authority: String,
    path: String,
    pg_url: String,
    hmac_secret: String,
    concurrency: usize,
    bound: Bound,
    warmup: u64,
    mode: Mode,
    assistant_id: Option<String>,
    tenant: String,
    fixture: PathBuf,
    timeout: Duration,
    threads: usize,
    server_pid: Option<u32>,
}

impl Options {
    fn from_cli(cli: Cli) -> Result<Options> {
        let (addr, authority, url_path) = parse_url(&cli.url)?;
        let path = match cli.path {
            Some(p) => p,
            None if url_path.is_empty() || url_path == "/" => "/webhooks/vapi".to_string(),
            None => url_path,
        };
        let bound = match cli.duration_s {
            Some(seconds) => Bound::Duration(Duration::from_secs(seconds)),
            None => Bound::Requests(cli.requests.unwrap_or(2000)),
        };
        Ok(Options {
            addr,
            authority,
            path,
            pg_url: cli.pg_url,
            hmac_secret: cli.hmac_secret,
            concurrency: usize::from(cli.concurrency),
            bound,
            warmup: cli.warmup,
            mode: cli.mode,
            assistant_id: cli.assistant_id.filter(|v| !v.is_empty()),
            tenant: cli.tenant,
            fixture: cli.fixture.unwrap_or_else(default_fixture),
            timeout: Duration::from_millis(cli.timeout_ms),
            threads: usize::from(cli.threads),
            server_pid: cli.server_pid,
        })
    }
}

/// [`FIXTURE`] in the repository (the parent of this package).
fn default_fixture() -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    package.parent().unwrap_or(&package).join(FIXTURE)
}

/// `http://host:port[/path]` to a loopback socket address, the `host` header
/// value and the path.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String)> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("--url `{url}`: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("--url `{url}`: only http:// is supported").into());
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url `{url}` has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("--url `{url}`: {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            format!(
                "--url `{url}`: not a loopback address; this benchmark only targets this machine"
            )
        })?;
    Ok((addr, authority.to_string(), uri.path().to_string()))
}

// ---- latency ------------------------------------------------------------------

/// Microseconds, 1 µs to 1 h, with 3 significant digits (HdrHistogram).
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---- requests --------------------------------------------------------------------

/// The request body with the call id cut out, so a unique body is two copies.
struct Template {
    head: String,
    tail: String,
}

impl Template {
    fn load(path: &PathBuf, assistant_id: &str) -> Result<Template> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("fixture {}: {e}", path.display()))?;
        let mut body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("fixture {}: {e}", path.display()))?;
        let message = body
            .get_mut("message")
            .filter(|m| m.is_object())
            .ok_or_else(|| format!("fixture {}: no `message` object", path.display()))?;
        if !message["call"].is_object() {
            return Err(format!("fixture {}: no `message.call` object", path.display()).into());
        }
        message["call"]["id"] = CALL_ID_PLACEHOLDER.into();
        for (parent, field) in [
            ("call", "assistantId"),
            ("assistant", "id"),
            ("phoneNumber", "assistantId"),
        ] {
            if message[parent].is_object() {
                message[parent][field] = assistant_id.into();
            }
        }
        let text = serde_json::to_string(&body)?;
        let quoted = format!("\"{CALL_ID_PLACEHOLDER}\"");
        let (head, tail) = text
            .split_once(&quoted)
            .ok_or("the call id placeholder is missing from the serialised body")?;
        Ok(Template {
            head: format!("{head}\""),
            tail: format!("\"{tail}"),
        })
    }

    fn body(&self, call_id: &str) -> Bytes {
        let mut out = String::with_capacity(self.head.len() + call_id.len() + self.tail.len());
        out.push_str(&self.head);
        out.push_str(call_id);
        out.push_str(&self.tail);
        Bytes::from(out)
    }
}

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    scheme: HmacScheme,
    timeout: Duration,
}

struct Reply {
    status: u16,
    body: Bytes,
}

impl Target {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(self.addr))
            .await
            .map_err(|_| "connect timed out")??;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn request(&self, body: Bytes) -> Result<hyper::Request<Full<Bytes>>> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_secs()
            .to_string();
        let signature = self
            .scheme
            .sign(&timestamp, &body)
            .ok_or("the HMAC secret is empty")?;
        Ok(hyper::Request::builder()
            .method("POST")
            .uri(self.path.as_str())
            .header("host", self.authority.as_str())
            .header("content-type", "application/json")
            .header("x-signature", signature)
            .header("x-timestamp", timestamp)
            .body(Full::new(body))?)
    }

    /// Sends one request on `sender`, connecting first when there is no open
    /// connection. Returns the reply and whether a (re)connection was made.
    async fn send(
        &self,
        sender: &mut Option<SendRequest<Full<Bytes>>>,
        body: Bytes,
    ) -> (Result<Reply>, bool) {
        let mut connected = false;
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match self.connect().await {
                Ok(s) => {
                    *sender = Some(s);
                    connected = true;
                }
                Err(e) => return (Err(format!("connect: {e}").into()), true),
            }
        }
        let request = match self.request(body) {
            Ok(r) => r,
            Err(e) => return (Err(e), connected),
        };
        let Some(s) = sender.as_mut() else {
            return (Err("no connection".into()), connected);
        };
        let exchange = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Error>(Reply { status, body })
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis()).into()),
        };
        if result.is_err() {
            // The connection is in an unknown state: start afresh next time.
            *sender = None;
        }
        (result, connected)
    }
}

fn outcome_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("outcome").and_then(|o| o.as_str()).map(String::from))
        .unwrap_or_else(|| "-".to_string())
}

fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

// ---- a phase -------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    requests: u64,
    ok: u64,
    errors: u64,
    reconnects: u64,
    outcomes: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
    shown: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for line in other.shown {
            if self.shown.len() < SHOWN_ERRORS {
                self.shown.push(line);
            }
        }
    }
}

struct PhaseResult {
    tally: Tally,
    histogram: Histogram<u64>,
    elapsed: Duration,
}

/// What the workers of one phase send: call ids `{prefix}{n}` (unique) or one
/// fixed body (duplicate).
#[derive(Clone)]
enum Bodies {
    Unique {
        template: Arc<Template>,
        prefix: String,
    },
    Same(Bytes),
}

impl Bodies {
    fn body(&self, n: u64) -> Bytes {
        match self {
            Bodies::Unique { template, prefix } => template.body(&format!("{prefix}{n}")),
            Bodies::Same(body) => body.clone(),
        }
    }
}

async fn phase(
    target: Arc<Target>,
    bodies: Bodies,
    concurrency: usize,
    bound: Bound,
) -> PhaseResult {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = match bound {
        Bound::Duration(d) => Some(started + d),
        Bound::Requests(_) => None,
    };
    let limit = match bound {
        Bound::Requests(n) => n,
        // Time decides; the count only keeps the loop finite by construction.
        Bound::Duration(_) => u64::MAX,
    };
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let target = target.clone();
        let bodies = bodies.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut tally = Tally::default();
            let mut sender = None;
            let mut connected_before = false;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    break;
                }
                let body = bodies.body(n);
                let sent = Instant::now();
                let (result, connected) = target.send(&mut sender, body).await;
                let micros = sent.elapsed().as_micros() as u64;
                tally.requests += 1;
                if connected {
                    if connected_before {
                        tally.reconnects += 1;
                    }
                    connected_before = true;
                }
                match result {
                    Ok(reply) => {
                        histogram.saturating_record(micros.max(1));
                        *tally.statuses.entry(reply.status).or_default() += 1;
                        if (200..300).contains(&reply.status) {
                            tally.ok += 1;
                            *tally.outcomes.entry(outcome_of(&reply.body)).or_default() += 1;
                        } else {
                            tally.errors += 1;
                            if tally.shown.len() < SHOWN_ERRORS {
                                tally.shown.push(format!(
                                    "HTTP {}: {}",
                                    reply.status,
                                    short(&reply.body)
                                ));
                            }
                        }
                    }
                    Err(error) => {
                        tally.errors += 1;
                        if tally.shown.len() < SHOWN_ERRORS {
                            tally.shown.push(format!("transport: {error}"));
                        }
                    }
                }
            }
            (tally, histogram)
        }));
    }
    let mut tally = Tally::default();
    let mut histogram = new_histogram();
    for worker in workers {
        match worker.await {
            Ok((t, h)) => {
                tally.merge(t);
                let _ = histogram.add(&h);
            }
            Err(e) => {
                tally.errors += 1;
                tally.shown.push(format!("worker failed: {e}"));
            }
        }
    }
    PhaseResult {
        tally,
        histogram,
        elapsed: started.elapsed(),
    }
}

// ---- database --------------------------------------------------------------------

async fn connect_pg(url: &str) -> Result<tokio_postgres::Client> {
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        vapi_edge_backends::pg_tls::connect(url),
    )
    .await
    .map_err(|_| "PostgreSQL did not answer within 10 s")?
    .map_err(|e| format!("PostgreSQL: {e:#}"))?;
    Ok(client)
}

async fn count_rows(client: &tokio_postgres::Client, prefix: Option<&str>) -> Result<i64> {
    let row = match prefix {
        None => {
            client
                .query_one("SELECT count(*) FROM call_tracking", &[])
                .await?
        }
        Some(prefix) => {
            client
                .query_one(
                    "SELECT count(*) FROM call_tracking WHERE starts_with(vapi_call_id, $1)",
                    &[&prefix],
                )
                .await?
        }
    };
    Ok(row.get(0))
}

fn random_hex() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

// ---- the run ---------------------------------------------------------------------

async fn run(options: Options) -> Result<bool> {
    let run_id = random_hex();
    let db = connect_pg(&options.pg_url).await?;

    let assistant_id = match &options.assistant_id {
        Some(id) => {
            println!("agent: using assistant id {id}");
            id.clone()
        }
        None => {
            let assistant_id = format!("bench-asst-{run_id}");
            let role = format!("bench-{run_id}");
            let row = db
                .query_one(
                    "INSERT INTO agents (org_id, role, name, vapi_assistant_id, tenant) \
                     VALUES ($1::text::uuid, $2, $3, $4, $5) RETURNING id::text",
                    &[&ORG_ID, &role, &"Bench", &assistant_id, &options.tenant],
                )
                .await
                .map_err(|e| format!("seeding the agent: {e}"))?;
            let agent_id: String = row.get(0);
            println!(
                "agent: seeded {agent_id} (org {ORG_ID}, role {role}, assistant id {assistant_id})"
            );
            assistant_id
        }
    };

    let template = Arc::new(Template::load(&options.fixture, &assistant_id)?);
    let target = Arc::new(Target {
        addr: options.addr,
        authority: options.authority.clone(),
        path: options.path.clone(),
        scheme: HmacScheme::new(vec![options.hmac_secret.as_str().into()]),
        timeout: options.timeout,
    });
    let bound_text = match options.bound {
        Bound::Requests(n) => format!("{n} requests"),
        Bound::Duration(d) => format!("{} s", d.as_secs()),
    };
    println!(
        "target: http://{}{} (mode {}, concurrency {}, {}, warm-up {}, fixture {})",
        options.addr,
        options.path,
        options.mode.name(),
        options.concurrency,
        bound_text,
        options.warmup,
        options.fixture.display()
    );

    let (warmup_bodies, bodies, expected_outcome) = match options.mode {
        Mode::Unique => (
            Bodies::Unique {
                template: template.clone(),
                prefix: format!("bench-{run_id}-w-"),
            },
            Bodies::Unique {
                template: template.clone(),
                prefix: format!("bench-{run_id}-m-"),
            },
            "recorded",
        ),
        Mode::Duplicate => {
            // Record the event once; every later request repeats it.
            let body = template.body(&format!("bench-{run_id}-dup"));
            let mut sender = None;
            let (result, _) = target.send(&mut sender, body.clone()).await;
            let reply = result.map_err(|e| format!("recording the duplicate event: {e}"))?;
            let outcome = outcome_of(&reply.body);
            if reply.status != 200 || outcome != "recorded" {
                return Err(format!(
                    "recording the duplicate event: HTTP {} {}",
                    reply.status,
                    short(&reply.body)
                )
                .into());
            }
            println!("duplicate: event of call bench-{run_id}-dup recorded once");
            (Bodies::Same(body.clone()), Bodies::Same(body), "duplicate")
        }
    };

    if options.warmup > 0 {
        let warm = phase(
            target.clone(),
            warmup_bodies,
            options.concurrency,
            Bound::Requests(options.warmup),
        )
        .await;
        println!(
            "warm-up: {} requests, {} errors in {:.2} s",
            warm.tally.requests,
            warm.tally.errors,
            warm.elapsed.as_secs_f64()
        );
        for line in &warm.tally.shown {
            println!("  warm-up error: {line}");
        }
    }

    let rows_before = count_rows(&db, None).await?;
    let cpu_before = options.server_pid.map(CpuSplit::read);
    let result = phase(target.clone(), bodies, options.concurrency, options.bound).await;
    let cpu_used = options
        .server_pid
        .zip(cpu_before)
        .map(|(pid, before)| CpuSplit::read(pid).since(&before));
    let rows_after = count_rows(&db, None).await?;

    let tally = &result.tally;
    let h = &result.histogram;
    let seconds = result.elapsed.as_secs_f64();
    let throughput = if seconds > 0.0 {
        tally.requests as f64 / seconds
    } else {
        0.0
    };
    let mut ok = tally.errors == 0;

    println!("requests: {} in {:.3} s", tally.requests, seconds);
    println!(
        "errors: {} (non-2xx or transport){}",
        tally.errors,
        if tally.errors == 0 {
            ""
        } else {
            "  <-- must be 0"
        }
    );
    for line in &tally.shown {
        println!("  error: {line}");
    }
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}x{n}"))
        .collect();
    let outcomes: Vec<String> = tally
        .outcomes
        .iter()
        .map(|(o, n)| format!("{o}x{n}"))
        .collect();
    println!(
        "statuses: {}; outcomes: {}; reconnects after the first connection: {}",
        statuses.join(" "),
        outcomes.join(" "),
        tally.reconnects
    );
    let unexpected: u64 = tally
        .outcomes
        .iter()
        .filter(|(o, _)| o.as_str() != expected_outcome)
        .map(|(_, n)| n)
        .sum();
    if unexpected > 0 {
        println!("unexpected outcomes: {unexpected} (expected every 2xx to be `{expected_outcome}`)  <-- FAIL");
        ok = false;
    }
    println!("throughput: {throughput:.1} req/s");
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (mean {:.3}, min {:.3})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.mean() / 1000.0,
        ms(h.min())
    );

    if options.mode == Mode::Unique {
        let new_rows = rows_after - rows_before;
        let this_run = count_rows(&db, Some(&format!("bench-{run_id}-m-"))).await?;
        let matches = new_rows == tally.ok as i64 && this_run == tally.ok as i64;
        println!(
            "db check: {new_rows} new call_tracking rows ({this_run} with this run's call ids) for {} successful unique requests: {}",
            tally.ok,
            if matches { "ok" } else { "MISMATCH" }
        );
        ok &= matches;
    }

    let mut cpu_fields = serde_json::Map::new();
    if let Some(used) = &cpu_used {
        let per_request = |ticks: u64| {
            let us = ticks as f64 * 1e6 / clock_ticks_per_second() / tally.requests.max(1) as f64;
            (us * 10.0).round() / 10.0
        };
        let split = [
            ("server", used.server),
            ("postgres", used.postgres),
            ("redis", used.redis),
            ("driver", used.driver),
        ];
        let shown: Vec<String> = split
            .iter()
            .map(|(name, ticks)| format!("{name} {:.1}", per_request(*ticks)))
            .collect();
        println!(
            "cpu µs per request: {} (total {:.1}; from /proc, {} ms resolution)",
            shown.join(", "),
            per_request(split.iter().map(|(_, t)| t).sum()),
            1000.0 / clock_ticks_per_second()
        );
        for (name, ticks) in split {
            cpu_fields.insert(format!("cpu_us_{name}"), per_request(ticks).into());
        }
        println!(
            "machine cpu µs per request: {:.1} (every core's busy time, /proc/stat)",
            per_request(used.machine)
        );
        cpu_fields.insert("cpu_us_machine".into(), per_request(used.machine).into());
    }
    let mut summary = serde_json::json!({
        "mode": options.mode.name(),
        "concurrency": options.concurrency,
        "requests": tally.requests,
        "errors": tally.errors,
        "throughput_rps": (throughput * 10.0).round() / 10.0,
        "p50_ms": round3(ms(h.value_at_quantile(0.50))),
        "p90_ms": round3(ms(h.value_at_quantile(0.90))),
        "p99_ms": round3(ms(h.value_at_quantile(0.99))),
        "max_ms": round3(ms(h.max())),
    });
    if let Some(object) = summary.as_object_mut() {
        object.extend(cpu_fields);
    }
    println!("{summary}");
    Ok(ok)
}

/// CPU time (user + system, in clock ticks) used so far by the server, every
/// PostgreSQL and Redis process, and this driver: where the cores went; and
/// the whole machine's busy time (`/proc/stat`), which also holds what the
/// split misses (a PostgreSQL backend that exited, the kernel's own work).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct CpuSplit {
    server: u64,
    postgres: u64,
    redis: u64,
    driver: u64,
    machine: u64,
}

impl CpuSplit {
    fn read(server_pid: u32) -> CpuSplit {
        let mut split = CpuSplit {
            server: process_ticks(&format!("/proc/{server_pid}/stat"))
                .map_or(0, |(_, ticks)| ticks),
            driver: process_ticks("/proc/self/stat").map_or(0, |(_, ticks)| ticks),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|stat| machine_busy_ticks(&stat))
                .unwrap_or(0),
            ..CpuSplit::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return split;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            match process_ticks(&format!("/proc/{pid}/stat")) {
                Some((command, ticks)) if command == "postgres" => split.postgres += ticks,
                Some((command, ticks)) if command == "redis-server" => split.redis += ticks,
                _ => {}
            }
        }
        split
    }

    /// What was used between `earlier` and this reading. A PostgreSQL backend
    /// that exited in between takes its time with it, so that share may read low.
    fn since(&self, earlier: &CpuSplit) -> CpuSplit {
        CpuSplit {
            server: self.server.saturating_sub(earlier.server),
            postgres: self.postgres.saturating_sub(earlier.postgres),
            redis: self.redis.saturating_sub(earlier.redis),
            driver: self.driver.saturating_sub(earlier.driver),
            machine: self.machine.saturating_sub(earlier.machine),
        }
    }
}

/// Busy ticks of every core from `/proc/stat`'s `cpu` line: user, nice,
/// system, irq, softirq and steal (not idle, not iowait; guest time is
/// already in user).
fn machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// (command, utime + stime) from a `/proc/PID/stat` line.
fn process_ticks(path: &str) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The command is in parentheses and may itself hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let command = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the command: state is field 3 of proc(5); utime and stime are 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((command, utime + stime))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (the kernel's USER_HZ).
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_machine_line_gives_busy_ticks_without_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 40 6 7 8 0 0\ncpu0 50 1 15 2500 20 3 3 4 0 0\n";
        assert_eq!(
            super::machine_busy_ticks(stat),
            Some(100 + 2 + 30 + 6 + 7 + 8)
        );
        assert_eq!(super::machine_busy_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn stat_lines_give_the_command_and_its_cpu_ticks() {
        let line = "4242 (postgres: post) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0";
        assert_eq!(
            super::parse_stat(line),
            Some(("postgres: post".to_string(), 22))
        );
        assert_eq!(super::parse_stat("garbage"), None);
    }
}
