//! `vapi-edge-relay` end to end: the real binary as a child process,
//! real Redis at 127.0.0.1:6379 (a channel of its own per test), and tiny
//! SSE and WebSocket clients standing in for dashboards. What a user checks:
//! only correctly signed, fresh, first-time notifications get through; every
//! dashboard receives every event of its organisations, in order, while one
//! that stopped reading is dropped without holding anyone up; a browser on
//! one replica sees what was posted to another; a dashboard that reconnects
//! gets exactly what it missed.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use vapi_edge_testkit::*;

/// Opens every organisation.
const OPERATOR_TOKEN: &str = "operator-token-00000001";
/// Opens ORG_ID only.
const TOKEN_A: &str = "org-a-dashboard-token-0001";
/// Opens OTHER_ORG_ID only.
const TOKEN_B: &str = "org-b-dashboard-token-0002";
const WRONG_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIGtleQ==";

/// The relay binary this crate builds.
fn relay_binary() -> RelayOptions {
    RelayOptions::new(env!("CARGO_BIN_EXE_vapi-edge-relay"), &[])
}

fn dashboard_tokens() -> String {
    format!("{OPERATOR_TOKEN}, {ORG_ID}:{TOKEN_A}, {OTHER_ORG_ID}:{TOKEN_B}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A notification as the component sends it; `padding` bytes of bulk.
fn call_event(org_id: &str, call_id: &str, padding: usize) -> Vec<u8> {
    let mut event = json!({
        "type": "call.event",
        "event_type": "status-update",
        "vapi_call_id": call_id,
        "org_id": org_id,
        "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
        "agent_name": "Receptionist",
        "direction": "inbound",
        "channel": "phone",
        "status": "in-progress",
        "tracked": true,
        "lead_id": null,
        "occurred_at": "2026-12-02T10:00:00.000Z",
    });
    if padding > 0 {
        event["padding"] = json!("x".repeat(padding));
    }
    serde_json::to_vec(&event).unwrap()
}

// ---------------------------------------------------------------------------
// A tiny SSE client

#[derive(Debug, Clone, PartialEq)]
enum SseItem {
    Retry(String),
    Comment(String),
    Event {
        id: Option<String>,
        event: String,
        data: String,
    },
}

fn parse_sse_block(block: &str) -> SseItem {
    let mut id = None;
    let mut event = "message".to_string();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            return SseItem::Comment(comment.trim().to_string());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "retry" => return SseItem::Retry(value),
            "id" => id = Some(value),
            "event" => event = value,
            "data" => data.push(value),
            other => panic!("unexpected SSE field {other:?} in {block:?}"),
        }
    }
    SseItem::Event {
        id,
        event,
        data: data.join("\n"),
    }
}

struct SseClient {
    headers: http::HeaderMap,
    items: mpsc::UnboundedReceiver<SseItem>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// `GET path` with `headers`: the open stream, or the refusal.
async fn sse_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<SseClient, TestResponse> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    if status != 200 {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        return Err(TestResponse {
            status,
            headers: response_headers,
            body: body.to_vec(),
        });
    }
    let (tx, items) = mpsc::unbounded_channel();
    let mut body = response.into_body();
    let reader = tokio::spawn(async move {
        let _connection = sender;
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("SSE is UTF-8");
                if tx.send(parse_sse_block(block.trim_end())).is_err() {
                    return;
                }
            }
        }
    });
    Ok(SseClient {
        headers: response_headers,
        items,
        reader,
    })
}

impl SseClient {
    async fn next_item(&mut self) -> Option<SseItem> {
        tokio::time::timeout(WAIT, self.items.recv())
            .await
            .expect("an SSE item in time")
    }

    /// The next event (comments and `retry:` skipped): (id, event, data).
    async fn next_event(&mut self) -> (Option<String>, String, String) {
        loop {
            match self.next_item().await.expect("the stream is open") {
                SseItem::Event { id, event, data } => return (id, event, data),
                SseItem::Retry(_) | SseItem::Comment(_) => continue,
            }
        }
    }

    async fn next_ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let (id, event, _) = self.next_event().await;
            assert_eq!(event, "call.event");
            ids.push(id.expect("an id"));
        }
        ids
    }
}

async fn operator_stream(relay: &RelayProcess) -> SseClient {
    sse_connect(
        relay.addr,
        "/events/stream",
        &[("authorization", &bearer(OPERATOR_TOKEN))],
    )
    .await
    .expect("the operator may subscribe")
}

// ---------------------------------------------------------------------------
// A tiny WebSocket client

type WebSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(addr: SocketAddr, query: &str) -> Result<WebSocket, u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("ws://{addr}/ws{query}")
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("WebSocket handshake failed: {other}"),
    }
}

/// The next text frame as JSON (pings skipped, but counted in `pings`).
async fn ws_next(socket: &mut WebSocket, pings: &mut usize) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a WebSocket message in time")
            .expect("the socket is open")
            .expect("a good frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) => *pings += 1,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Redis that can go away

/// A TCP proxy in front of Redis: `down` drops every open connection and
/// refuses new ones, as an outage looks from the relay; `up` ends it.
struct RedisProxy {
    url: String,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl RedisProxy {
    async fn start() -> RedisProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (flag, tasks) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    let redis = REDIS_URL.trim_start_matches("redis://");
                    if let Ok(mut server) = tokio::net::TcpStream::connect(redis).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        RedisProxy {
            url,
            up,
            connections,
        }
    }

    fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_without_a_secret_or_with_a_bad_dashboard_token() {
    let no_secret = relay_binary()
        .command(&[], &[("SPIN_VARIABLE_RELAY_SECRET", "")])
        .output()
        .unwrap();
    assert!(!no_secret.status.success());
    let stderr = String::from_utf8_lossy(&no_secret.stderr);
    assert!(stderr.contains("no relay secret"), "{stderr}");

    let bad_token = relay_binary()
        .command(
            &[
                "--relay-secret".into(),
                RELAY_SECRET.into(),
                "--dashboard-token".into(),
                format!("{OPERATOR_TOKEN},tiny-tok"),
            ],
            &[],
        )
        .output()
        .unwrap();
    assert!(!bad_token.status.success());
    let stderr = String::from_utf8_lossy(&bad_token.stderr);
    assert!(stderr.contains("entry 2"), "{stderr}");
    for secret in [OPERATOR_TOKEN, "tiny-tok", RELAY_SECRET] {
        assert!(
            !stderr.contains(secret),
            "the error shows a secret: {stderr}"
        );
    }
    println!("[relay] refused: {}", stderr.trim());
}

/// The relay's Redis URL is `SPIN_VARIABLE_RELAY_REDIS_URL` like every other
/// setting; the name it had before (`VAPI_EDGE_RELAY_REDIS_URL`) still works,
/// with a warning that names the new one.
#[tokio::test(flavor = "multi_thread")]
async fn the_older_redis_variable_still_works_and_says_its_new_name() {
    use std::io::{BufRead, BufReader};
    let channel = unique_id("vapi-edge-test:relay");
    let mut child = relay_binary()
        .command(
            &["--redis-channel".into(), channel],
            &[
                ("SPIN_VARIABLE_RELAY_SECRET", RELAY_SECRET),
                ("VAPI_EDGE_RELAY_REDIS_URL", REDIS_URL),
            ],
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let serving = line["msg"] == "Relay serving";
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warning = lines
        .iter()
        .find(|l| l["msg"] == "deprecated variable: use the new name")
        .unwrap_or_else(|| panic!("no deprecation warning: {lines:?}"));
    assert_eq!(warning["variable"], "VAPI_EDGE_RELAY_REDIS_URL");
    assert_eq!(warning["new_name"], "SPIN_VARIABLE_RELAY_REDIS_URL");
    assert_eq!(lines.last().unwrap()["redis"], "up", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_signed_fresh_first_time_events_are_accepted_and_delivered() {
    let mut relay = RelayProcess::start(relay_binary().tokens(&dashboard_tokens()));
    let mut stream = operator_stream(&relay).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-store");
    assert_eq!(stream.headers["access-control-allow-origin"], "*");
    assert_eq!(
        stream.next_item().await,
        Some(SseItem::Retry("2000".into()))
    );

    let id = unique_id("msg-sig");
    let body = call_event(ORG_ID, &id, 0);
    let now = now_ms() / 1000;
    let refused = |response: TestResponse, status: u16, says: &str| {
        assert_eq!(response.status, status, "{}", response.text());
        let error = response.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    };

    let unsigned = send(
        relay.addr,
        "POST",
        "/events",
        &[("content-type", "application/json")],
        body.clone(),
    )
    .await;
    refused(unsigned, 401, "missing header");
    let wrong_secret = relay.post_signed(&id, &body, WRONG_SECRET, now).await;
    refused(wrong_secret, 401, "no matching signature");
    let stale = relay.post_signed(&id, &body, RELAY_SECRET, now - 301).await;
    refused(stale, 401, "too old");
    let future = relay.post_signed(&id, &body, RELAY_SECRET, now + 301).await;
    refused(future, 401, "future");
    // Signed for one body, sent with another.
    let headers = signed_headers(&id, &body, RELAY_SECRET, now);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let tampered = send(
        relay.addr,
        "POST",
        "/events",
        &headers,
        call_event(OTHER_ORG_ID, &id, 0),
    )
    .await;
    refused(tampered, 401, "no matching signature");

    let accepted = relay.post(&id, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert_eq!(accepted.json(), json!({"ok": true}));
    let (got_id, event, data) = stream.next_event().await;
    assert_eq!(got_id.as_deref(), Some(id.as_str()));
    assert_eq!(event, "call.event");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap(), sent);

    // The same id again, freshly signed: a replay.
    refused(relay.post(&id, &body).await, 409, "already accepted");

    let not_an_event = unique_id("msg-bad");
    for bad in [&b"[1,2]"[..], b"{\"org_id\":42}", b"not json"] {
        refused(relay.post(&not_an_event, bad).await, 400, "org_id");
    }
    let too_large = call_event(ORG_ID, &unique_id("big"), 1 << 20);
    refused(
        relay.post(&unique_id("msg-big"), &too_large).await,
        413,
        "larger",
    );
    assert_eq!(
        send(relay.addr, "GET", "/nowhere", &[], Vec::new())
            .await
            .status,
        404
    );

    // Nothing refused reached the stream: the next event is the next good one.
    let next = unique_id("msg-next");
    assert_eq!(
        relay
            .post(&next, &call_event(ORG_ID, &next, 0))
            .await
            .status,
        202
    );
    assert_eq!(stream.next_ids(1).await, [next]);

    let health = relay.health().await;
    assert_eq!(
        health,
        json!({"status": "ok", "subscribers": 1, "redis": "off"})
    );
    drop(stream);
    relay.wait_for_subscribers(0).await;

    let status = relay.stop_with("TERM").await;
    assert!(status.success(), "SIGTERM: {status}");
    relay.wait_for_log(|l| l["msg"] == "Relay stopped").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_dashboards_get_everything_in_order_and_a_stalled_one_is_dropped() {
    const SUBSCRIBERS: usize = 200;
    const EVENTS: usize = 500;
    // Bulk so that the stalled connection fills: ~2 KiB an event.
    const PADDING: usize = 2000;
    let channel = unique_id("vapi-edge-test:relay");
    let relay = RelayProcess::start(
        relay_binary()
            .tokens(&dashboard_tokens())
            .redis(&channel)
            // 201 dashboards on one token: past the per-token default.
            .arg("--max-subscribers-per-token")
            .arg("1000"),
    );

    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut stream = operator_stream(&relay).await;
        readers.push(tokio::spawn(async move {
            let ids = stream.next_ids(EVENTS).await;
            (ids, Instant::now(), stream)
        }));
    }
    // Connects, asks, and never reads; its receive window is kept small.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(relay.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /events/stream HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {OPERATOR_TOKEN}\r\n\r\n",
                relay.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    relay.wait_for_subscribers(SUBSCRIBERS as u64 + 1).await;
    println!(
        "[relay] {} SSE subscribers connected in {} ms",
        SUBSCRIBERS + 1,
        started.elapsed().as_millis()
    );

    // One keep-alive connection, one POST after another, as the component's
    // instances would send them.
    let stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut sent = Vec::with_capacity(EVENTS);
    let mut latencies = Vec::with_capacity(EVENTS);
    let posting = Instant::now();
    for n in 0..EVENTS {
        let id = format!("{channel}-event-{n:04}");
        let org = if n % 2 == 0 { ORG_ID } else { OTHER_ORG_ID };
        let body = call_event(org, &format!("call-{n}"), PADDING);
        let mut request = http::Request::post("/events").header("host", relay.addr.to_string());
        for (name, value) in signed_headers(&id, &body, RELAY_SECRET, now_ms() / 1000) {
            request = request.header(name, value);
        }
        let one = Instant::now();
        sender.ready().await.unwrap();
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await.unwrap();
        latencies.push(one.elapsed());
        assert_eq!(status, 202);
        sent.push(id);
    }
    let posted_in = posting.elapsed();

    let mut last_arrival = posting;
    let mut still_open = Vec::new();
    for reader in readers {
        let (ids, done, stream) = tokio::time::timeout(WAIT * 2, reader)
            .await
            .expect("every subscriber gets every event in time")
            .unwrap();
        assert_eq!(
            ids, sent,
            "a subscriber missed an event or got one out of order"
        );
        last_arrival = last_arrival.max(done);
        still_open.push(stream);
    }
    let dropped = relay
        .wait_for_log(|l| l["msg"] == "Relay subscriber dropped")
        .await;
    assert_eq!(dropped["level"], "WARN");
    assert_eq!(dropped["reason"], "slow");
    // Its connection is closed: what was buffered, then the end.
    let closed = tokio::time::timeout(WAIT, async {
        let mut buffer = vec![0u8; 64 << 10];
        let mut received = 0usize;
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received += n,
            }
        }
    })
    .await
    .expect("the stalled subscriber's connection is closed");
    relay.wait_for_subscribers(SUBSCRIBERS as u64).await;
    assert_eq!(
        relay
            .json_lines()
            .iter()
            .filter(|l| l["msg"] == "Relay subscriber dropped")
            .count(),
        1,
        "only the stalled subscriber is dropped"
    );

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "[relay] {EVENTS} signed POSTs (~{} B each, SET NX + PUBLISH in one Redis script) in {} ms: {:.0}/s; per POST p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        PADDING + 330,
        posted_in.as_millis(),
        EVENTS as f64 / posted_in.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0),
    );
    println!(
        "[relay] all {SUBSCRIBERS} subscribers had all {EVENTS} events, in order, {} ms after the first POST ({} events delivered); the stalled one was dropped after taking {} KiB and closed",
        (last_arrival - posting).as_millis(),
        SUBSCRIBERS * EVENTS,
        closed >> 10
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_dashboard_sees_only_the_organisations_its_token_opens() {
    let relay = RelayProcess::start(relay_binary().tokens(&dashboard_tokens()));
    let mut all = operator_stream(&relay).await;
    // EventSource cannot set headers: the token rides in the query.
    let mut only_b = sse_connect(relay.addr, &format!("/events/stream?token={TOKEN_B}"), &[])
        .await
        .expect("org B's token may subscribe");
    let mut only_a = sse_connect(
        relay.addr,
        "/events/stream",
        &[("authorization", &bearer(TOKEN_A))],
    )
    .await
    .expect("org A's token may subscribe");
    let mut ws_b = ws_connect(relay.addr, &format!("?token={TOKEN_B}"))
        .await
        .expect("org B's token may open a WebSocket");
    relay.wait_for_subscribers(4).await;

    let a1 = unique_id("a1");
    let b1 = unique_id("b1");
    let a2 = unique_id("a2");
    let b2 = unique_id("b2");
    for (id, org) in [(&a1, ORG_ID), (&b1, OTHER_ORG_ID), (&a2, ORG_ID)] {
        assert_eq!(relay.post(id, &call_event(org, id, 0)).await.status, 202);
    }
    assert_eq!(
        all.next_ids(3).await,
        [a1.as_str(), b1.as_str(), a2.as_str()]
    );
    assert_eq!(only_a.next_ids(2).await, [a1.as_str(), a2.as_str()]);
    assert_eq!(only_b.next_ids(1).await, [b1.as_str()]);
    // a2 was delivered everywhere before b2 was posted: org B's next is b2.
    assert_eq!(
        relay
            .post(&b2, &call_event(OTHER_ORG_ID, &b2, 0))
            .await
            .status,
        202
    );
    assert_eq!(only_b.next_ids(1).await, [b2.as_str()]);
    let mut pings = 0;
    for expected in [&b1, &b2] {
        let frame = ws_next(&mut ws_b, &mut pings).await;
        assert_eq!(frame["id"], **expected);
        assert_eq!(frame["org_id"], OTHER_ORG_ID);
    }

    // Refusals.
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-token-of-this-relay")],
        vec![("authorization", TOKEN_A)],
    ] {
        let refused = sse_connect(relay.addr, "/events/stream", &headers)
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.status, 401);
        assert!(refused.json()["error"].is_string());
    }
    let refused = sse_connect(relay.addr, "/events/stream?token=nope-nope-nope-nope", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert_eq!(
        ws_connect(relay.addr, "?token=nope-nope-nope-nope")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(ws_connect(relay.addr, "").await.err(), Some(401));
    // The log names the path, never the query that carried the token.
    let logged = relay
        .wait_for_log(|l| l["msg"] == "Relay request" && l["status"] == 101)
        .await;
    assert_eq!(logged["path"], "/ws");

    // Without dashboard_token nobody may subscribe; events are still accepted.
    let mut closed = RelayProcess::start(relay_binary());
    let forbidden = sse_connect(
        closed.addr,
        "/events/stream",
        &[("authorization", &bearer(OPERATOR_TOKEN))],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        ws_connect(closed.addr, &format!("?token={OPERATOR_TOKEN}"))
            .await
            .err(),
        Some(403)
    );
    let id = unique_id("unwatched");
    assert_eq!(
        closed.post(&id, &call_event(ORG_ID, &id, 0)).await.status,
        202
    );
    let status = closed.stop_with("INT").await;
    assert!(status.success(), "SIGINT: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_events_and_the_replay_guard_through_redis() {
    let channel = unique_id("vapi-edge-test:relay");
    let a = RelayProcess::start(relay_binary().tokens(&dashboard_tokens()).redis(&channel));
    let b = RelayProcess::start(relay_binary().tokens(&dashboard_tokens()).redis(&channel));
    let mut on_a = operator_stream(&a).await;
    let mut on_b = operator_stream(&b).await;
    a.wait_for_subscribers(1).await;
    b.wait_for_subscribers(1).await;

    let id = unique_id("msg-replica");
    let body = call_event(OTHER_ORG_ID, &id, 0);
    let posted = Instant::now();
    assert_eq!(b.post(&id, &body).await.status, 202);
    assert_eq!(on_a.next_ids(1).await, [id.as_str()]);
    let across = posted.elapsed();
    assert_eq!(on_b.next_ids(1).await, [id.as_str()]);
    // Accepted by B: a replay to A is refused.
    let replay = a.post(&id, &body).await;
    assert_eq!(replay.status, 409, "{}", replay.text());

    for relay in [&a, &b] {
        assert_eq!(relay.health().await["redis"], "up");
    }
    println!(
        "[relay] POST to replica B -> SSE event on replica A in {:.2} ms",
        across.as_secs_f64() * 1e3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_delivers_and_a_reconnecting_dashboard_gets_exactly_what_it_missed() {
    let channel = unique_id("vapi-edge-test:relay");
    let relay = RelayProcess::start(
        relay_binary()
            .tokens(&dashboard_tokens())
            .redis(&channel)
            .arg("--heartbeat-ms")
            .arg("200"),
    );
    let mut ws = ws_connect(relay.addr, &format!("?token={OPERATOR_TOKEN}"))
        .await
        .expect("the operator may open a WebSocket");
    let mut first = operator_stream(&relay).await;
    relay.wait_for_subscribers(2).await;

    let ids: Vec<String> = (1..=6).map(|n| unique_id(&format!("e{n}"))).collect();
    let post = |n: usize| {
        let id = ids[n - 1].clone();
        let relay = &relay;
        async move {
            let response = relay.post(&id, &call_event(ORG_ID, &id, 0)).await;
            assert_eq!(response.status, 202);
        }
    };
    post(1).await;
    post(2).await;
    let mut pings = 0;
    for n in [1, 2] {
        let frame = ws_next(&mut ws, &mut pings).await;
        let id = &ids[n - 1];
        assert_eq!(frame["id"], *id);
        assert_eq!(frame["org_id"], ORG_ID);
        assert_eq!(
            frame["event"],
            serde_json::from_slice::<Value>(&call_event(ORG_ID, id, 0)).unwrap()
        );
    }
    assert_eq!(first.next_ids(2).await, ids[..2]);
    // The heartbeat: SSE comments, WebSocket pings.
    loop {
        if let Some(SseItem::Comment(ping)) = first.next_item().await {
            assert_eq!(ping, "ping");
            break;
        }
    }
    drop(first);
    relay.wait_for_subscribers(1).await;

    post(3).await;
    post(4).await;
    post(5).await;
    let mut resumed = sse_connect(
        relay.addr,
        "/events/stream",
        &[
            ("authorization", &bearer(OPERATOR_TOKEN)),
            ("last-event-id", &ids[1]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resumed.next_ids(3).await, ids[2..5]);
    post(6).await;
    // Nothing repeated or extra between the missed events and the live ones.
    assert_eq!(resumed.next_ids(1).await, ids[5..6]);

    let mut on_ws_resume = ws_connect(
        relay.addr,
        &format!("?token={OPERATOR_TOKEN}&last_event_id={}", ids[2]),
    )
    .await
    .unwrap();
    for expected in &ids[3..6] {
        assert_eq!(
            ws_next(&mut on_ws_resume, &mut pings).await["id"],
            **expected
        );
    }

    // An id the ring does not hold: one reset, so the page refetches.
    let mut lost = sse_connect(
        relay.addr,
        "/events/stream?last_event_id=long-gone",
        &[("authorization", &bearer(OPERATOR_TOKEN))],
    )
    .await
    .unwrap();
    let (id, event, data) = lost.next_event().await;
    assert_eq!((id, event.as_str(), data.as_str()), (None, "reset", "{}"));
    let mut ws_lost = ws_connect(
        relay.addr,
        &format!("?token={OPERATOR_TOKEN}&last_event_id=long-gone"),
    )
    .await
    .unwrap();
    assert_eq!(
        ws_next(&mut ws_lost, &mut pings).await,
        json!({"type": "reset"})
    );

    // The first socket saw e3..e6 live, and pings in between.
    for expected in &ids[2..6] {
        assert_eq!(ws_next(&mut ws, &mut pings).await["id"], **expected);
    }
    while pings == 0 {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("expected a WebSocket ping, got {other:?}"),
        }
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_redis_subscription_comes_back_and_dashboards_are_told_to_refetch() {
    let proxy = RedisProxy::start().await;
    let channel = unique_id("vapi-edge-test:relay");
    let relay = RelayProcess::start(
        relay_binary()
            .tokens(&dashboard_tokens())
            .redis_at(&proxy.url, &channel),
    );
    let mut stream = operator_stream(&relay).await;
    relay.wait_for_subscribers(1).await;
    let before = unique_id("before-outage");
    assert_eq!(
        relay
            .post(&before, &call_event(ORG_ID, &before, 0))
            .await
            .status,
        202
    );
    assert_eq!(stream.next_ids(1).await, [before.as_str()]);

    proxy.down();
    relay
        .wait_for_log(|l| l["msg"] == "Relay Redis subscription lost")
        .await;
    assert_eq!(relay.health().await["redis"], "down");
    // Neither the replay guard nor the other replicas can be reached.
    let during = unique_id("during-outage");
    let refused = relay.post(&during, &call_event(ORG_ID, &during, 0)).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.json()["error"].is_string());

    let outage = Instant::now();
    proxy.up();
    relay
        .wait_for_log(|l| l["msg"] == "Relay Redis subscription restored")
        .await;
    let back_in = outage.elapsed();
    assert_eq!(relay.health().await["redis"], "up");
    // Events published meanwhile never reached this replica: refetch.
    let (id, event, data) = stream.next_event().await;
    assert_eq!((id, event.as_str(), data.as_str()), (None, "reset", "{}"));
    // The refused event was not remembered: its retry is accepted.
    assert_eq!(
        relay
            .post(&during, &call_event(ORG_ID, &during, 0))
            .await
            .status,
        202
    );
    assert_eq!(stream.next_ids(1).await, [during]);
    println!(
        "[relay] Redis subscription restored {} ms after Redis came back",
        back_in.as_millis()
    );
}

/// Subscribers are capped in all and per token (429 with `retry-after`, and
/// room again once one leaves), and a browser's page from an origin not on
/// `--allowed-origin` is refused (clients that send no `Origin` are not).
#[tokio::test(flavor = "multi_thread")]
async fn subscribers_are_capped_and_foreign_origins_refused() {
    let relay = RelayProcess::start(
        relay_binary()
            .tokens(&dashboard_tokens())
            .arg("--max-subscribers")
            .arg("5")
            .arg("--max-subscribers-per-token")
            .arg("3")
            .arg("--allowed-origin")
            .arg("https://edge.example.com/"),
    );
    let subscribe = |token: &'static str, origin: Option<&'static str>| {
        let addr = relay.addr;
        async move {
            let bearer = bearer(token);
            let mut headers = vec![("authorization", bearer.as_str())];
            if let Some(origin) = origin {
                headers.push(("origin", origin));
            }
            sse_connect(addr, "/events/stream", &headers).await
        }
    };
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(subscribe(TOKEN_A, None).await.expect("within A's cap"));
    }
    let crowded = subscribe(TOKEN_A, None).await.err().expect("A's fourth");
    assert_eq!(crowded.status, 429, "{}", crowded.text());
    assert!(crowded.headers.get("retry-after").is_some());
    // Over WebSocket too, with the token in the query.
    assert_eq!(
        ws_connect(relay.addr, &format!("?token={TOKEN_A}"))
            .await
            .err(),
        Some(429)
    );
    // Another token has its own room, up to the relay's.
    let b1 = subscribe(TOKEN_B, Some("https://edge.example.com"))
        .await
        .expect("an allowed origin");
    assert_eq!(
        b1.headers["access-control-allow-origin"],
        "https://edge.example.com"
    );
    let b2 = subscribe(TOKEN_B, None).await.expect("B's second");
    let full = subscribe(OPERATOR_TOKEN, None)
        .await
        .err()
        .expect("the relay's sixth");
    assert_eq!(full.status, 429);
    // One leaves: room again.
    drop(a.pop());
    relay.wait_for_subscribers(4).await;
    let again = subscribe(OPERATOR_TOKEN, None).await.expect("room again");
    // A page of another origin, with a valid token: 403, before any cap.
    let foreign = subscribe(OPERATOR_TOKEN, Some("https://evil.example.net"))
        .await
        .err()
        .expect("a foreign origin");
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    drop((a, b1, b2, again));
}
