//! Strangers on the open internet, with nothing but TCP and a false
//! credential (a well-formed 64-hex `x-signature` and a current
//! `x-timestamp`, so no shortcut on the credential passes by itself), against
//! the real `vapi-edge-host` and the real `.wasm` on PostgreSQL and Redis:
//! idle connections under a small container's file limit, bodies trickled a
//! byte at a time, and megabyte bodies that never finish. After each, or
//! during it, `/healthz` answers and Vapi's signed webhook is recorded.
//!
//! `vapi-edge-host` only (its HTTP server is the one under test); what Spin's
//! own server does with the same attacks is in RELIABILITY.md, measured with
//! `spin_reports_what_it_does` (run by hand: `cargo test --release -p
//! vapi-edge-host --test it hostile:: -- --ignored --nocapture`).

use crate::common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CALLER: &str = "+12125550187";

/// The head of a webhook with a false credential, announcing `length` bytes.
fn forged_head(addr: SocketAddr, length: usize) -> String {
    format!(
        "POST /webhooks/vapi HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\nx-signature: {}\r\nx-timestamp: {}\r\n\r\n",
        "ab".repeat(32),
        now_ms() / 1000
    )
}

/// Resident memory of a host, in MiB: `VmRSS` summed over its process group
/// (the harness starts each host as a group's leader; `spin up` serves from a
/// child, `spin trigger http`).
fn rss_mib(leader: u32) -> f64 {
    let in_group = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command's `(name)`: state, ppid, pgrp, ...
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .is_some_and(|pgrp| pgrp == leader.to_string())
    };
    let rss = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && in_group(name))
        .map(|pid| rss(&pid))
        .sum::<f64>()
        / 1024.0
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Vapi's call-start for a new call of `agent`, signed: its answer (or why
/// there was none) and how long it took.
async fn signed_webhook(
    app: &WebhookApp,
    assistant_id: &str,
) -> (Result<TestResponse, SendError>, Duration) {
    let body =
        serde_json::to_vec(&inbound_start(&unique_id("call"), assistant_id, CALLER)).unwrap();
    let headers = vapi_headers(&body);
    let started = Instant::now();
    let response = try_send(
        app.host.addr,
        "POST",
        "/webhooks/vapi",
        &header_refs(&headers),
        body,
    )
    .await;
    (response, started.elapsed())
}

async fn healthz_took(addr: SocketAddr) -> (Result<u16, SendError>, Duration) {
    let started = Instant::now();
    let response = try_send(addr, "GET", "/healthz", &[], Vec::new()).await;
    (response.map(|r| r.status), started.elapsed())
}

/// Lets the test process open many sockets (its soft limit up to the hard one).
fn raise_own_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct this function owns.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// What a signed webhook and `/healthz` got while (or after) an attack:
/// `Ok((status, outcome, took))`, or why there was no answer.
#[derive(Debug)]
struct Served {
    health: Result<(u16, Duration), String>,
    webhook: Result<(u16, String, Duration), String>,
}

impl Served {
    /// Both asked, each given `limit` to answer.
    async fn measure(app: &WebhookApp, assistant_id: &str, limit: Duration) -> Served {
        let no_answer = || format!("no answer in {} s", limit.as_secs());
        let health = match tokio::time::timeout(limit, healthz_took(app.host.addr)).await {
            Ok((Ok(status), took)) => Ok((status, took)),
            Ok((Err(error), _)) => Err(error.to_string()),
            Err(_) => Err(no_answer()),
        };
        let webhook = match tokio::time::timeout(limit, signed_webhook(app, assistant_id)).await {
            Ok((Ok(response), took)) => {
                let outcome = serde_json::from_slice::<serde_json::Value>(&response.body)
                    .ok()
                    .and_then(|body| body["outcome"].as_str().map(str::to_string))
                    .unwrap_or_default();
                Ok((response.status, outcome, took))
            }
            Ok((Err(error), _)) => Err(error.to_string()),
            Err(_) => Err(no_answer()),
        };
        Served { health, webhook }
    }

    fn recorded_within(&self, limit: Duration) -> bool {
        matches!(&self.webhook, Ok((200, outcome, took)) if outcome == "recorded" && *took < limit)
    }

    fn healthy_within(&self, limit: Duration) -> bool {
        matches!(self.health, Ok((200, took)) if took < limit)
    }

    fn describe(&self) -> String {
        let health = match &self.health {
            Ok((status, took)) => format!("/healthz {status} in {} ms", took.as_millis()),
            Err(why) => format!("/healthz: {why}"),
        };
        let webhook = match &self.webhook {
            Ok((status, outcome, took)) => {
                format!(
                    "a signed webhook {status} {outcome} in {} ms",
                    took.as_millis()
                )
            }
            Err(why) => format!("a signed webhook: {why}"),
        };
        format!("{health}, {webhook}")
    }
}

/// A migrated PostgreSQL database with one agent, and an app on it.
async fn app_on(
    host: HostKind,
    customize: impl FnOnce(HostOptions) -> HostOptions,
) -> (WebhookApp, String) {
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let options = AppOptions {
        host,
        ..Default::default()
    };
    let mut app = WebhookApp::start_with_db_and(db, options, customize);
    // Spin logs what its own server meets (dropped bodies, its exit) as text.
    app.host.foreign_lines_expected = host == HostKind::Spin;
    (app, agent.assistant_id)
}

/// 600 connections that send nothing: how many the host closed by itself
/// within `wait`, whether it is alive, and what it serves once they are gone.
async fn idle_attack(
    app: &WebhookApp,
    assistant_id: &str,
    wait: Duration,
) -> (usize, usize, bool, Served) {
    let pid = app.host.pid();
    let mut idle = Vec::new();
    for _ in 0..600 {
        // Past the cap the kernel's backlog holds them: connect still succeeds.
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(app.host.addr)).await
        {
            idle.push(stream);
        }
    }
    let opened = idle.len();
    tokio::time::sleep(wait).await;
    let mut closed_by_host = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(5), stream.read(&mut byte)).await
        {
            closed_by_host += 1;
        }
    }
    let alive_after = alive(pid);
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = Served::measure(app, assistant_id, Duration::from_secs(30)).await;
    (opened, closed_by_host, alive_after, served)
}

/// 300 connections with a webhook's head and 1 byte of its 1,000-byte body:
/// what is served meanwhile, and how many tricklers were answered 408 by
/// `deadline`.
async fn trickle_attack(
    app: &WebhookApp,
    assistant_id: &str,
    deadline: Duration,
) -> (Served, usize) {
    let addr = app.host.addr;
    let mut tricklers = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(forged_head(addr, 1_000).as_bytes())
            .await
            .unwrap();
        stream.write_all(b"{").await.unwrap();
        tricklers.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = Served::measure(app, assistant_id, Duration::from_secs(30)).await;
    let mut timed_out = 0;
    let until = Instant::now() + deadline;
    for stream in &mut tricklers {
        let mut answer = Vec::new();
        let left = until.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, stream.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    (served, timed_out)
}

/// 200 requests announcing 5 MiB, all sent but the last byte: resident
/// memory before and at its peak (MiB), and what is served meanwhile.
async fn large_body_attack(app: &WebhookApp, assistant_id: &str) -> (f64, f64, Served) {
    const BODY: usize = 5 * 1024 * 1024;
    let addr = app.host.addr;
    let pid = app.host.pid();
    // Warm: instances, pools and the allocator as a running service has them.
    for _ in 0..5 {
        let _ = Served::measure(app, assistant_id, Duration::from_secs(10)).await;
    }
    let before = rss_mib(pid);
    let peak = std::sync::Arc::new(std::sync::Mutex::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mib(pid);
                {
                    let mut peak = peak.lock().unwrap();
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let chunk = std::sync::Arc::new(vec![b' '; BODY - 1]);
    let attackers: Vec<_> = (0..200)
        .map(|_| {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.ok()?;
                stream
                    .write_all(forged_head(addr, BODY).as_bytes())
                    .await
                    .ok()?;
                // Refused ones are closed while this is still writing.
                let _ = stream.write_all(&chunk).await;
                Some(stream)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = Served::measure(app, assistant_id, Duration::from_secs(30)).await;
    let mut held = Vec::new();
    for attacker in attackers {
        if let Ok(Ok(Some(stream))) = tokio::time::timeout(Duration::from_secs(60), attacker).await
        {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_mib = *peak.lock().unwrap();
    sampler.abort();
    drop(held);
    (before, peak_mib, served)
}

/// 600 connections that send nothing, to a host whose file limit is 512 (a
/// small container): it neither exits nor stops; it closes them itself after
/// its header deadline; and once they are gone `/healthz` answers and a
/// signed webhook is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_under_a_small_file_limit_neither_kill_nor_starve_the_host() {
    raise_own_file_limit();
    let (app, assistant_id) = app_on(HostKind::VapiEdgeHost, |mut options| {
        options.open_files = Some(512);
        options.arg("--header-timeout-ms").arg("2000")
    })
    .await;
    let (opened, closed_by_host, alive_after, served) =
        idle_attack(&app, &assistant_id, Duration::from_secs(3)).await;
    assert!(alive_after, "the host exited under 600 idle connections");
    assert!(alive(app.host.pid()));
    assert!(served.healthy_within(Duration::from_secs(1)), "{served:?}");
    assert!(served.recorded_within(Duration::from_secs(2)), "{served:?}");
    assert!(
        closed_by_host >= 400,
        "the host closed only {closed_by_host} of {opened} idle connections"
    );
    let cap = app
        .host
        .json_lines()
        .into_iter()
        .find(|l| l["msg"] == "listening")
        .map(|l| l["max_connections"].clone())
        .unwrap();
    // 64 of the 512 files are kept for the pools, the store and the log.
    assert_eq!(cap, 512 - 64, "the connection cap the host chose");
    println!(
        "[hostile] idle: {opened} connections to a host with 512 files (cap {cap}): alive; \
         {closed_by_host} closed by the host after its 2 s header deadline; then {}",
        served.describe()
    );
}

/// 300 connections that send a webhook's head and one byte of its 1,000-byte
/// body, and no more: they hold no instance, so `/healthz` answers in < 1 s
/// and a signed webhook is recorded in < 2 s; each trickler gets 408 at its
/// body deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_do_not_block_other_requests() {
    raise_own_file_limit();
    let (app, assistant_id) = app_on(HostKind::VapiEdgeHost, |options| {
        options.arg("--body-timeout-ms").arg("4000")
    })
    .await;
    let (served, timed_out) = trickle_attack(&app, &assistant_id, Duration::from_secs(8)).await;
    assert!(served.healthy_within(Duration::from_secs(1)), "{served:?}");
    assert!(served.recorded_within(Duration::from_secs(2)), "{served:?}");
    assert_eq!(timed_out, 300);
    println!(
        "[hostile] trickle: 300 bodies sent 1 byte of 1,000: {}; all 300 answered 408 at the \
         4 s body deadline",
        served.describe()
    );
}

/// 200 requests that announce 5 MiB and send all of it but the last byte:
/// the body budget admits a few and answers the rest 503 before reading them,
/// so resident memory grows by < 256 MiB, and a signed webhook (a small body,
/// with the budget's reserve) is recorded in < 2 s meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_large_bodies_cannot_exhaust_memory() {
    raise_own_file_limit();
    let (app, assistant_id) = app_on(HostKind::VapiEdgeHost, |options| options).await;
    let (before, peak, served) = large_body_attack(&app, &assistant_id).await;
    assert!(served.recorded_within(Duration::from_secs(2)), "{served:?}");
    let growth = peak - before;
    assert!(
        growth < 256.0,
        "resident memory grew {growth:.0} MiB ({before:.0} -> {peak:.0})"
    );
    let (status, _) = healthz_took(app.host.addr).await;
    assert_eq!(status.ok(), Some(200));
    println!(
        "[hostile] large: 200 bodies announcing 5 MiB, all sent but 1 byte: RSS {before:.0} -> \
         peak {peak:.0} MiB (+{growth:.0}); {}",
        served.describe()
    );
}

/// The same attacks on the same `.wasm` under the Spin CLI, whose HTTP
/// server is Spin's own: printed for RELIABILITY.md, not asserted (what Spin
/// does is Spin's). Run by hand with `SPIN_BIN` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures Spin's own HTTP server for RELIABILITY.md; run by hand with SPIN_BIN"]
async fn spin_reports_what_it_does() {
    raise_own_file_limit();
    assert!(spin_binary().is_some(), "set SPIN_BIN");
    let (app, assistant_id) = app_on(HostKind::Spin, |mut options| {
        options.open_files = Some(512);
        options
    })
    .await;
    let pid = app.host.pid();
    let (opened, closed, alive_after, served) =
        idle_attack(&app, &assistant_id, Duration::from_secs(15)).await;
    let errors: Vec<String> = app
        .host
        .lines()
        .into_iter()
        .filter(|line| line.to_ascii_lowercase().contains("error"))
        .take(3)
        .collect();
    println!(
        "[hostile] spin idle: {opened} connections, 512 files: `spin up` alive {alive_after} \
         (now {}); {closed} closed by Spin within 15 s; then {}; Spin's first error lines: {errors:?}",
        alive(pid),
        served.describe()
    );
    drop(app);
    let (app, assistant_id) = app_on(HostKind::Spin, |options| options).await;
    let (served, timed_out) = trickle_attack(&app, &assistant_id, Duration::from_secs(35)).await;
    println!(
        "[hostile] spin trickle: 300 bodies sent 1 byte of 1,000: {}; {timed_out} of 300 \
         answered 408 within 35 s",
        served.describe()
    );
    drop(app);
    let (app, assistant_id) = app_on(HostKind::Spin, |options| options).await;
    let (before, peak, served) = large_body_attack(&app, &assistant_id).await;
    println!(
        "[hostile] spin large: 200 bodies announcing 5 MiB, all but 1 byte sent: RSS of Spin's \
         processes {before:.0} -> peak {peak:.0} MiB; {}",
        served.describe()
    );
}

/// The body budget's other answers, one request each: 503 with `retry-after`
/// when a large body does not fit, 413 past the largest body, both before the
/// body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_cannot_be_taken_are_refused_before_they_are_read() {
    let app =
        WebhookApp::start_with_db_and(TestDb::migrated().await, AppOptions::default(), |options| {
            options
                .arg("--body-budget-mb")
                .arg("4")
                .arg("--max-body-mb")
                .arg("8")
        });
    let addr = app.host.addr;
    let head_only = |length: usize| {
        let head = forged_head(addr, length);
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    // 4 MiB budget, a quarter kept for small bodies: 3.5 MiB does not fit.
    let busy = head_only(3_500_000).await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );
    let too_large = head_only(9 << 20).await;
    assert!(too_large.starts_with("HTTP/1.1 413"), "{too_large}");
}

/// A flood of webhooks for tenants that do not exist (made-up ids on
/// `/webhooks/vapi/{tenant}`) and for a real tenant with a false credential
/// costs the database nothing and the key-value store no write: every
/// statement the database sees during it is counted on the wire.
async fn a_flood_for_unknown_tenants_costs_the_database_nothing(store: StoreKind, kind: HostKind) {
    assert_eq!(store, StoreKind::Postgres);
    const KEY: &str = "tenant-secrets-key-for-the-flood-0123456789";
    let proxy = PgProxy::start().await;
    let db = TestDb::migrated().await;
    db.tenant("set", KEY, &["acme", "vapi_server_secret=acme-bearer"]);
    let agent = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let host = Host::start(
        proxy
            .variables(&db)
            .iter()
            .fold(
                HostOptions {
                    manifest: app_manifest(&temp_dir("flood-app")),
                    ..Default::default()
                }
                .on(kind),
                |options, (name, value)| options.var(name, value.clone()),
            )
            .var("vapi_server_secret", SERVER_SECRET)
            .var("tenant_secrets_key", KEY)
            .var("tenant_cache_ms", "60000")
            .redis_kv(&temp_dir("flood")),
    );
    let acme = async |token: &str| {
        let body = bytes_of(&inbound_start(
            &unique_id("call"),
            &agent.assistant_id,
            CALLER,
        ));
        let headers = [
            ("content-type", "application/json"),
            ("x-vapi-secret", token),
        ];
        send(host.addr, "POST", "/webhooks/vapi/acme", &headers, body).await
    };
    assert_eq!(acme("acme-bearer").await.json()["outcome"], "recorded");
    // Its event row goes after the answer: wait for it.
    let warm = proxy.executed().len();
    proxy.statements_since(warm - 1, 1).await;
    let from = proxy.executed().len();

    let started = Instant::now();
    let (senders, per_sender) = (16, 250);
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let addr = host.addr;
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                let body = br#"{"message":{"type":"status-update"}}"#.to_vec();
                for i in 0..per_sender {
                    let path = format!("/webhooks/vapi/made-up-{sender}-{i}-{}", now_ms());
                    let headers = [("content-type", "application/json"), ("x-vapi-secret", "x")];
                    let status = send(addr, "POST", &path, &headers, body.clone())
                        .await
                        .status;
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        for (status, n) in task.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    let unknown_secs = started.elapsed().as_secs_f64();
    let mut refused = 0;
    let started = Instant::now();
    for _ in 0..200 {
        refused += usize::from(acme("not-acmes-secret").await.status == 401);
    }
    let refused_secs = started.elapsed().as_secs_f64();
    let during = proxy.statements_since(from, 0).await;
    assert_eq!(
        statuses,
        [(404, senders * per_sender)].into_iter().collect(),
        "every made-up tenant is 404"
    );
    assert_eq!(refused, 200);
    assert_eq!(during, Vec::<String>::new(), "no statement for any of them");
    // Nothing was written for the made-up ids.
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let written: Vec<String> = redis::cmd("KEYS")
        .arg("*vapi-edge/tenants/*/entry/made-up-*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(written.is_empty(), "{written:?}");
    // And the real tenant's webhook is recorded right after, with the
    // statements of any webhook: its tenant costs the database nothing.
    let from = proxy.executed().len();
    assert_eq!(acme("acme-bearer").await.json()["outcome"], "recorded");
    // (Spin resets its pooled connection before each request's first
    // statement: that is Spin's, not the tenant's.)
    let spin_reset = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT;";
    let mut statements = proxy.statements_since(from, 2).await;
    statements.retain(|s| !s.starts_with(spin_reset));
    assert_eq!(
        statements,
        [
            vapi_edge_core::pg_sql::RECORD_EVENT_CALL,
            vapi_edge_core::pg_sql::INSERT_EVENT_ROW
        ]
    );
    figure(&format!(
        "hostile: {}: {} webhooks for made-up tenants in {unknown_secs:.2} s, all 404, and 200 with \
         a false credential for a real one in {refused_secs:.2} s, all 401: 0 database \
         statements, 0 keys written",
        kind.name(),
        senders * per_sender
    ));
}

conformance! {
    every_store: [],
    postgres: [a_flood_for_unknown_tenants_costs_the_database_nothing],
    sqlite: [],
    host_only: [],
}
