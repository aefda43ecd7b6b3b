//! Reliability and security (issue 5), end to end through the real `.wasm` in
//! `vapi-edge-host`, real PostgreSQL and Redis: a database outage in the
//! middle of a stream, an attempt that dies between its claim and its commit,
//! a key-value store that is down, concurrent deliveries, hostile signatures
//! and bodies, and logs that keep secrets and caller numbers out.
//!
//! Figures are printed with the prefix `[reliability]`:
//! `cargo test --release -p vapi-edge-host --test reliability -- --nocapture | grep '\[reliability\]'`

#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";

/// These tests measure deadlines, lease windows and concurrency on a small
/// machine; run one at a time so that they do not skew each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn figure(text: &str) {
    println!("[reliability] {text}");
}

fn bytes_of(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}

fn relay_events(relay: &Relay) -> Vec<Value> {
    relay
        .hits()
        .iter()
        .map(|hit| serde_json::from_slice(&hit.body).expect("the relay got JSON"))
        .collect()
}

/// Waits until `host` has written at least `n` lines with this `msg` (lines
/// reach the test through pipes, a moment after the response), then a little
/// longer so that an extra line would show up too.
async fn log_lines(host: &Host, msg: &str, n: usize) -> Vec<Value> {
    let matching = || -> Vec<Value> {
        host.json_lines()
            .into_iter()
            .filter(|l| l["msg"] == msg)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while matching().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    matching()
}

/// Postgres goes down in the middle of a stream of events: every event that
/// arrives during the outage is answered 503 and leaves no row behind, its
/// key-value claim is given back, and Vapi's own retries (the same bytes,
/// signed again) record each event exactly once when Postgres is back.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_mid_stream_leaves_no_partial_rows_and_vapi_retries_record_each_once() {
    let _serial = SERIAL.lock().await;
    let proxy = PgProxy::start().await;
    let relay = Relay::start(RelayMode::Ok).await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let extra = vec![
        ("pg_url".to_string(), proxy.url(&db)),
        ("pg_allowed_host".to_string(), proxy.allowed_host()),
        // A lease far longer than the test: a claim that was not given back
        // would answer every retry below "being handled".
        ("claim_lease_ms".to_string(), "3600000".to_string()),
    ];
    let app = WebhookApp::start_with_db(
        db,
        AppOptions {
            relay_url: Some(relay.url()),
            redis: true,
            extra,
            ..Default::default()
        },
    );

    let first_call = unique_id("call");
    let second_call = unique_id("call");
    let third_call = unique_id("call");
    let _cleanup = ParkedDeadLetterCleanup::new(vec![
        first_call.clone(),
        second_call.clone(),
        third_call.clone(),
    ]);
    let first = app
        .deliver(&inbound_start(&first_call, &agent.assistant_id, CALLER))
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["outcome"], "recorded");
    assert_eq!(relay.wait_for(1, Duration::from_secs(5)).await.len(), 1);

    proxy.down();
    // The stream goes on: two new calls, and the first call's end-of-call report.
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &first_call, &agent.assistant_id);
    let during_outage: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "start of call 2",
            second_call.as_str(),
            bytes_of(&inbound_start(&second_call, &agent.assistant_id, CALLER)),
        ),
        (
            "end-of-call report of call 1",
            first_call.as_str(),
            bytes_of(&report),
        ),
        (
            "start of call 3",
            third_call.as_str(),
            bytes_of(&inbound_start(&third_call, &agent.assistant_id, CALLER)),
        ),
    ];
    let mut outage_statuses = Vec::new();
    for (label, _, bytes) in &during_outage {
        let response = app.deliver_bytes(bytes).await;
        assert_eq!(
            response.status,
            503,
            "{label} during the outage: {}",
            response.text()
        );
        assert!(
            response.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("retry later")),
            "{label}: {}",
            response.text()
        );
        outage_statuses.push(response.status);
    }

    // No partial rows: only the first call's start is there (read directly, not through the proxy).
    assert_eq!(all_call_rows(&app.db).await, (1, 1, 1), "no partial rows");
    assert_eq!(call_rows(&app.db, &second_call).await, (0, 0, 0));
    assert_eq!(call_rows(&app.db, &third_call).await, (0, 0, 0));
    let status: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT status FROM call_logs WHERE vapi_call_id = $1",
            &[&first_call],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "in-progress", "the report was not half applied");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.hits().len(), 1, "a failed event must not notify");

    proxy.up();
    // Vapi retries each one: the same body, with fresh signing headers.
    for (label, _, bytes) in &during_outage {
        let response = app.deliver_bytes(bytes).await;
        assert_eq!(
            response.status,
            200,
            "{label}: the retry after the outage was refused: {}",
            response.text()
        );
        assert_eq!(response.json()["outcome"], "recorded", "{label}");
    }
    assert_eq!(call_rows(&app.db, &first_call).await, (1, 1, 2));
    assert_eq!(call_rows(&app.db, &second_call).await, (1, 1, 1));
    assert_eq!(call_rows(&app.db, &third_call).await, (1, 1, 1));
    assert_eq!(all_call_rows(&app.db).await, (3, 3, 4));
    let status: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT status FROM call_logs WHERE vapi_call_id = $1",
            &[&first_call],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "ended");

    // One notification per recorded event, none twice.
    relay.wait_for(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut notified: Vec<(String, String)> = relay_events(&relay)
        .iter()
        .map(|e| {
            (
                e["vapi_call_id"].as_str().unwrap_or_default().to_string(),
                e["event_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    notified.sort();
    let mut expected = vec![
        (first_call.clone(), "status-update".to_string()),
        (first_call.clone(), "end-of-call-report".to_string()),
        (second_call.clone(), "status-update".to_string()),
        (third_call.clone(), "status-update".to_string()),
    ];
    expected.sort();
    assert_eq!(notified, expected);

    // A further retry is a duplicate and changes nothing.
    let again = app.deliver_bytes(&during_outage[0].2).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["outcome"], "duplicate");
    assert_eq!(all_call_rows(&app.db).await, (3, 3, 4));
    figure(&format!(
        "postgres outage: {} events during the outage answered {:?}, 0 partial rows; \
         after recovery {} Vapi retries recorded, rows (tracking, logs, events) = (3, 3, 4), {} notifications",
        during_outage.len(),
        outage_statuses,
        during_outage.len(),
        relay.hits().len()
    ));
}

/// Sets up "crash between claim and commit": a transaction holds an ACCESS
/// EXCLUSIVE lock on `processed_webhook_events`, so the attempt's one
/// statement blocks after its claim until the host's 1.5 s deadline kills it.
/// A first event of another call warms the host's pooled connection, so the
/// attempt's statement is already prepared and blocks while executing.
/// Returns the locking client, the claim window and the killed answer.
async fn deliver_into_a_locked_table(
    app: &WebhookApp,
    assistant_id: &str,
    bytes: &[u8],
    lease_ms: i64,
) -> (tokio_postgres::Client, i64, TestResponse, Duration) {
    let warm_up = app
        .deliver(&inbound_start(&unique_id("call"), assistant_id, CALLER))
        .await;
    assert_eq!(warm_up.status, 200, "{}", warm_up.text());
    // Let its event record and notification finish, so the one pooled
    // connection (with the statement prepared) is idle again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let locker = app.db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE processed_webhook_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Start early in a lease window, so what follows happens inside the claim's window.
    wait_for_lease_window_start(lease_ms, 250).await;
    let window = now_ms() / lease_ms;
    let started = Instant::now();
    let response = app.deliver_bytes(bytes).await;
    let took = started.elapsed();
    assert!(
        response.status >= 500,
        "the attempt should have been killed: {} {}",
        response.status,
        response.text()
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "killed after {took:?}, expected the 1500 ms deadline"
    );
    (locker, window, response, took)
}

/// An attempt that dies after claiming (the host's deadline kills it while its
/// statement waits): nothing is committed, an immediate retry is told to retry
/// later (503 + retry-after, not a silent 200), and a retry once the lease
/// window has passed records the event exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_killed_after_its_claim_blocks_retries_until_the_lease_ends_then_records_once() {
    let _serial = SERIAL.lock().await;
    const LEASE_MS: i64 = 4000;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let app = WebhookApp::start_with_db_and(
        db,
        AppOptions {
            redis: false, // this host's own in-memory store
            retry_ms: Some(String::new()),
            extra: vec![("claim_lease_ms".into(), LEASE_MS.to_string())],
            ..Default::default()
        },
        |options| options.arg("--request-timeout-ms").arg("1500"),
    );
    let call_id = unique_id("call");
    let bytes = bytes_of(&inbound_start(&call_id, &agent.assistant_id, CALLER));

    let (locker, window, killed, took) =
        deliver_into_a_locked_table(&app, &agent.assistant_id, &bytes, LEASE_MS).await;
    // The host cancels the statement the killed attempt left behind; should one
    // still wait on the lock, it dies with its backend. Then the lock goes.
    let terminated: Vec<bool> = app
        .db
        .client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        terminated.iter().all(|t| *t),
        "a waiting statement could not be terminated: {terminated:?}"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        call_rows(&app.db, &call_id).await,
        (0, 0, 0),
        "nothing committed"
    );

    // Vapi retries at once: the dead attempt's claim is still live.
    assert_eq!(
        now_ms() / LEASE_MS,
        window,
        "the retry left the claim's lease window (machine too slow for this test)"
    );
    let retry = app.deliver_bytes(&bytes).await;
    assert_eq!(
        retry.status,
        503,
        "an immediate retry must be told to retry later: {}",
        retry.text()
    );
    assert_eq!(
        retry
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(
        retry.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry later")),
        "{}",
        retry.text()
    );
    assert_eq!(call_rows(&app.db, &call_id).await, (0, 0, 0));

    // Once the lease window is over, the next retry owns the event.
    let next_window_at = (window + 1) * LEASE_MS;
    tokio::time::sleep(Duration::from_millis(
        (next_window_at - now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let late = app.deliver_bytes(&bytes).await;
    assert_eq!(late.status, 200, "{}", late.text());
    assert_eq!(late.json()["outcome"], "recorded");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    let again = app.deliver_bytes(&bytes).await;
    assert_eq!(again.json()["outcome"], "duplicate");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    assert_eq!(app.host.get("/healthz").await.status, 200);
    figure(&format!(
        "crash between claim and commit: killed with {} after {} ms, 0 rows; immediate retry → {} retry-after 1; \
         retry after the {LEASE_MS} ms lease → {} {}, rows (1, 1, 1)",
        killed.status,
        took.as_millis(),
        retry.status,
        late.status,
        late.json()["outcome"]
    ));
}

/// The same crash, without anyone terminating the statement the killed attempt
/// left waiting: once the lock goes, that statement must not commit behind
/// Vapi's back (the attempt was answered 5xx and never notified the relay).
/// Vapi's retry must then record the event and the dashboard hear of it once.
async fn a_statement_abandoned_by_the_deadline_does_not_commit_after_the_answer() {
    let _serial = SERIAL.lock().await;
    const LEASE_MS: i64 = 2000;
    let relay = Relay::start(RelayMode::Ok).await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let app = WebhookApp::start_with_db_and(
        db,
        AppOptions {
            redis: false,
            relay_url: Some(relay.url()),
            retry_ms: Some(String::new()),
            extra: vec![("claim_lease_ms".into(), LEASE_MS.to_string())],
            ..Default::default()
        },
        |options| options.arg("--request-timeout-ms").arg("1500"),
    );
    let call_id = unique_id("call");
    let bytes = bytes_of(&inbound_start(&call_id, &agent.assistant_id, CALLER));

    let (locker, window, killed, _) =
        deliver_into_a_locked_table(&app, &agent.assistant_id, &bytes, LEASE_MS).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_kill = call_rows(&app.db, &call_id).await;

    let next_window_at = (window + 1) * LEASE_MS;
    tokio::time::sleep(Duration::from_millis(
        (next_window_at - now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let retry = app.deliver_bytes(&bytes).await;
    // One notification for the warm-up call, and one expected for this one.
    relay.wait_for(2, Duration::from_secs(3)).await;
    let notified = relay_events(&relay)
        .iter()
        .filter(|e| e["vapi_call_id"] == call_id.as_str())
        .count();
    figure(&format!(
        "abandoned statement: attempt answered {}, rows 500 ms after the lock went = {after_kill:?}; \
         Vapi's retry → {} {}; notifications for the call = {notified}",
        killed.status,
        retry.status,
        retry.json()["outcome"],
    ));
    assert_eq!(
        after_kill,
        (0, 0, 0),
        "the killed attempt (answered {}) committed afterwards",
        killed.status
    );
    assert_eq!(retry.json()["outcome"], "recorded");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    assert_eq!(notified, 1, "the dashboard hears of the call once");
}

/// With the key-value store down (Redis where nothing listens), Postgres alone
/// guards each event: the first delivery is recorded and notified, retries are
/// 200 `duplicate` with no second row, and every request says so in exactly
/// one WARN line. /healthz names the broken store.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_key_value_store_down_postgres_alone_guards_each_event() {
    let _serial = SERIAL.lock().await;
    let relay = Relay::start(RelayMode::Ok).await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let config = unreachable_kv_config(&temp_dir("kv-down"));
    let app = WebhookApp::start_with_db_and(
        db,
        AppOptions {
            relay_url: Some(relay.url()),
            redis: false,
            ..Default::default()
        },
        |options| HostOptions {
            runtime_config: Some(config),
            ..options
        },
    );
    let call_id = unique_id("call");
    let other_call = unique_id("call");
    let body = inbound_start(&call_id, &agent.assistant_id, CALLER);
    let bytes = bytes_of(&body);
    // Vapi's retry is not byte-identical (new timestamp, new presigned URL).
    let mut regenerated = body.clone();
    regenerated["message"]["timestamp"] = json!(now_ms());
    regenerated["message"]["artifact"]["recordingUrl"] =
        json!("https://storage.vapi.ai/presigned?sig=2");

    let mut outcomes = Vec::new();
    for (label, bytes, outcome) in [
        ("first delivery", bytes.clone(), "recorded"),
        ("same bytes again", bytes.clone(), "duplicate"),
        ("regenerated retry", bytes_of(&regenerated), "duplicate"),
        (
            "another call",
            bytes_of(&inbound_start(&other_call, &agent.assistant_id, CALLER)),
            "recorded",
        ),
    ] {
        let response = app.deliver_bytes(&bytes).await;
        assert_eq!(response.status, 200, "{label}: {}", response.text());
        assert_eq!(response.json()["outcome"], outcome, "{label}");
        outcomes.push(outcome);
    }
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    assert_eq!(call_rows(&app.db, &other_call).await, (1, 1, 1));
    assert_eq!(all_call_rows(&app.db).await, (2, 2, 2));

    let warnings = log_lines(
        &app.host,
        "Key-value store unavailable; the database guards this event",
        4,
    )
    .await;
    assert_eq!(warnings.len(), 4, "one per request: {warnings:#?}");
    assert!(warnings.iter().all(|l| l["level"] == "WARN"));
    let per_call = |id: &str| warnings.iter().filter(|l| l["call_id"] == id).count();
    assert_eq!((per_call(&call_id), per_call(&other_call)), (3, 1));
    let duplicates = log_lines(&app.host, "Duplicate event detected", 2).await;
    assert_eq!(duplicates.len(), 2);
    assert!(duplicates.iter().all(|l| l["guard"] == "postgres"));

    relay.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notified: Vec<String> = relay_events(&relay)
        .iter()
        .map(|e| e["vapi_call_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(notified.len(), 2, "{notified:?}");
    assert!(notified.contains(&call_id) && notified.contains(&other_call));

    let health = app.host.get("/healthz").await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(
        health.json()["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "key_value")),
        "{}",
        health.text()
    );
    figure(&format!(
        "key-value store down: 4 requests → {outcomes:?}, rows (2, 2, 2), {} notifications, {} WARN lines (1 per request)",
        notified.len(),
        warnings.len()
    ));
}

/// 50 concurrent deliveries of one event (same bytes, same headers): one set
/// of rows, one notification, and every answer 200 or 503 "retry later".
#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_deliveries_of_one_event_make_one_effect() {
    let _serial = SERIAL.lock().await;
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let body = bytes_of(&inbound_start(&call_id, &agent.assistant_id, CALLER));
    let headers = vapi_headers(&body);
    let addr = app.host.addr;
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let deliveries: Vec<_> = (0..50)
        .map(|_| {
            let (body, headers, gate) = (body.clone(), headers.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                send(addr, "POST", "/webhooks/vapi", &header_refs(&headers), body).await
            })
        })
        .collect();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in deliveries {
        let response = delivery.await.unwrap();
        let outcome = response.json()["outcome"].as_str().map(str::to_string);
        let label = match (response.status, outcome) {
            (200, Some(outcome)) => format!("200 {outcome}"),
            (503, _) => {
                assert_eq!(
                    response
                        .headers
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap()),
                    Some("1"),
                    "{}",
                    response.text()
                );
                "503 retry later".to_string()
            }
            (status, _) => panic!("unexpected answer {status}: {}", response.text()),
        };
        *tally.entry(label).or_default() += 1;
    }
    assert_eq!(tally.get("200 recorded"), Some(&1), "{tally:?}");
    assert_eq!(tally.values().sum::<usize>(), 50);
    let rows = call_rows(&app.db, &call_id).await;
    assert_eq!(rows, (1, 1, 1));
    relay.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.hits().len(), 1, "one notification");
    // Vapi retries the 503s: each is now a duplicate.
    let retry = app.deliver_bytes(&body).await;
    assert_eq!(retry.json()["outcome"], "duplicate");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    figure(&format!(
        "50 concurrent duplicates → {} row, {} notification; answers {tally:?}",
        rows.0,
        relay.hits().len()
    ));
}

/// 200 distinct events at once: every answer 2xx, 200 call_tracking rows,
/// 200 notifications, none missing and none twice.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_distinct_events_are_all_recorded_and_notified() {
    let _serial = SERIAL.lock().await;
    const N: usize = 200;
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_ids: Vec<String> = (0..N).map(|_| unique_id("call")).collect();
    let addr = app.host.addr;
    let started = Instant::now();
    let deliveries: Vec<_> = call_ids
        .iter()
        .map(|call_id| {
            let body = bytes_of(&inbound_start(call_id, &agent.assistant_id, CALLER));
            let headers = vapi_headers(&body);
            tokio::spawn(async move {
                send(addr, "POST", "/webhooks/vapi", &header_refs(&headers), body).await
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut recorded = 0;
    for delivery in deliveries {
        let response = delivery.await.unwrap();
        *statuses.entry(response.status).or_default() += 1;
        if response.status == 200 && response.json()["outcome"] == "recorded" {
            recorded += 1;
        }
    }
    let answered_in = started.elapsed();
    let tracked = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT vapi_call_id) FROM call_tracking WHERE vapi_call_id = ANY($1)",
            &[&call_ids],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    relay.wait_for(N, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notified: Vec<String> = relay_events(&relay)
        .iter()
        .map(|e| e["vapi_call_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let distinct: BTreeSet<&String> = notified.iter().collect();
    let missing = call_ids.iter().filter(|id| !distinct.contains(id)).count();
    figure(&format!(
        "{N} concurrent distinct events → {tracked} rows, {} notifications ({} distinct, {missing} missing), \
         answers {statuses:?} in {:.1} s",
        notified.len(),
        distinct.len(),
        answered_in.as_secs_f64()
    ));
    assert_eq!(
        statuses.get(&200),
        Some(&N),
        "every answer 2xx: {statuses:?}"
    );
    assert_eq!(recorded, N);
    assert_eq!(tracked, N as i64);
    assert_eq!(all_call_rows(&app.db).await, (N as i64, N as i64, N as i64));
    assert_eq!(missing, 0);
    assert_eq!(notified.len(), N, "one notification each");
}

/// Signatures an attacker can produce: every one is 401, none is accepted,
/// nothing is written; the genuine delivery of the same body then succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_signatures_are_all_refused_and_change_nothing() {
    use vapi_edge_core::verify::{Algorithm, HmacScheme, SignatureEncoding};
    let _serial = SERIAL.lock().await;
    let app = WebhookApp::start(AppOptions::default()).await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let body = bytes_of(&inbound_start(&call_id, &agent.assistant_id, CALLER));
    let now = now_ms();
    let ts = (now / 1000).to_string();
    let scheme = HmacScheme::new(vec![HMAC_SECRET.into()]);
    let valid = scheme.sign(&ts, &body).unwrap();
    let with = |change: &dyn Fn(&mut HmacScheme)| {
        let mut scheme = HmacScheme::new(vec![HMAC_SECRET.into()]);
        change(&mut scheme);
        scheme.sign(&ts, &body).unwrap()
    };
    let base64 = with(&|s| s.encoding = SignatureEncoding::Base64);
    let base64_url = base64
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let sha512 = with(&|s| s.algorithm = Algorithm::Sha512);
    let sha1 = with(&|s| s.algorithm = Algorithm::Sha1);
    let forged: String = {
        use sha2::Digest;
        sha2::Sha256::digest(unique_id("forged").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // One byte of the call id flipped after signing: still a well-formed event.
    let mut tampered = body.clone();
    let at = body
        .windows(call_id.len())
        .position(|w| w == call_id.as_bytes())
        .unwrap();
    tampered[at] ^= 0x01;
    let other_body = bytes_of(&inbound_start(
        &unique_id("call"),
        &agent.assistant_id,
        CALLER,
    ));
    let other_signature = scheme.sign(&ts, &other_body).unwrap();
    let signed_at = |timestamp: String| {
        let signature = scheme.sign(&timestamp, &body).unwrap();
        (timestamp, signature)
    };
    let (old_s, old_s_sig) = signed_at((now / 1000 - 301).to_string());
    let (future_s, future_s_sig) = signed_at(((now + 999) / 1000 + 301).to_string());
    let (old_ms, old_ms_sig) = signed_at((now - 301_000).to_string());
    let (future_ms, future_ms_sig) = signed_at((now + 301_000).to_string());
    let earlier_ts = (now / 1000 - 1).to_string();
    let prefixed = format!("sha256={valid}");

    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let json = ("content-type", "application/json");
    let cases: Vec<Case> = vec![
        (
            "forged (random signature)",
            body.clone(),
            vec![json, ("x-signature", &forged), ("x-timestamp", &ts)],
        ),
        (
            "tampered body (one byte flipped after signing)",
            tampered.clone(),
            vec![json, ("x-signature", &valid), ("x-timestamp", &ts)],
        ),
        (
            "truncated signature (62 hex digits)",
            body.clone(),
            vec![json, ("x-signature", &valid[..62]), ("x-timestamp", &ts)],
        ),
        (
            "truncated signature (63 hex digits)",
            body.clone(),
            vec![json, ("x-signature", &valid[..63]), ("x-timestamp", &ts)],
        ),
        (
            "truncated signature (half)",
            body.clone(),
            vec![json, ("x-signature", &valid[..32]), ("x-timestamp", &ts)],
        ),
        (
            "empty signature",
            body.clone(),
            vec![json, ("x-signature", ""), ("x-timestamp", &ts)],
        ),
        (
            "repeated x-signature: valid, then invalid",
            body.clone(),
            vec![
                json,
                ("x-signature", &valid),
                ("x-signature", &forged),
                ("x-timestamp", &ts),
            ],
        ),
        (
            "repeated x-signature: invalid, then valid",
            body.clone(),
            vec![
                json,
                ("x-signature", &forged),
                ("x-signature", &valid),
                ("x-timestamp", &ts),
            ],
        ),
        (
            "repeated x-signature: valid twice",
            body.clone(),
            vec![
                json,
                ("x-signature", &valid),
                ("x-signature", &valid),
                ("x-timestamp", &ts),
            ],
        ),
        (
            "repeated x-timestamp",
            body.clone(),
            vec![
                json,
                ("x-signature", &valid),
                ("x-timestamp", &ts),
                ("x-timestamp", &earlier_ts),
            ],
        ),
        (
            "base64 of the right HMAC (hex configured)",
            body.clone(),
            vec![json, ("x-signature", &base64), ("x-timestamp", &ts)],
        ),
        (
            "URL-safe unpadded base64 of the right HMAC",
            body.clone(),
            vec![json, ("x-signature", &base64_url), ("x-timestamp", &ts)],
        ),
        (
            "right HMAC behind an unconfigured `sha256=` prefix",
            body.clone(),
            vec![json, ("x-signature", &prefixed), ("x-timestamp", &ts)],
        ),
        (
            "HMAC-SHA512 of the right message (SHA-256 configured)",
            body.clone(),
            vec![json, ("x-signature", &sha512), ("x-timestamp", &ts)],
        ),
        (
            "HMAC-SHA1 of the right message",
            body.clone(),
            vec![json, ("x-signature", &sha1), ("x-timestamp", &ts)],
        ),
        (
            "replay: valid signature, timestamp 301 s old",
            body.clone(),
            vec![json, ("x-signature", &old_s_sig), ("x-timestamp", &old_s)],
        ),
        (
            "replay: valid signature, timestamp 301 s in the future",
            body.clone(),
            vec![
                json,
                ("x-signature", &future_s_sig),
                ("x-timestamp", &future_s),
            ],
        ),
        (
            "replay: valid signature, timestamp 301 000 ms old",
            body.clone(),
            vec![json, ("x-signature", &old_ms_sig), ("x-timestamp", &old_ms)],
        ),
        (
            "replay: valid signature, timestamp 301 000 ms in the future",
            body.clone(),
            vec![
                json,
                ("x-signature", &future_ms_sig),
                ("x-timestamp", &future_ms),
            ],
        ),
        (
            "valid signature, timestamp header changed by 1 s",
            body.clone(),
            vec![json, ("x-signature", &valid), ("x-timestamp", &earlier_ts)],
        ),
        (
            "valid signature of another body",
            body.clone(),
            vec![
                json,
                ("x-signature", &other_signature),
                ("x-timestamp", &ts),
            ],
        ),
    ];
    let tried = cases.len();
    let mut accepted = 0;
    for (label, bytes, headers) in cases {
        let response = send(app.host.addr, "POST", "/webhooks/vapi", &headers, bytes).await;
        if response.status < 300 {
            accepted += 1;
        }
        assert_eq!(response.status, 401, "{label}: {}", response.text());
        let text = response.text();
        assert!(
            response.json()["error"].is_string() && !text.contains(&valid[..16]),
            "{label}: {text}"
        );
    }
    assert_eq!(accepted, 0);
    assert_eq!(all_call_rows(&app.db).await, (0, 0, 0));
    assert_eq!(
        app.db.count("SELECT count(*) FROM dead_letters").await,
        0,
        "no dead letter"
    );
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_events").await,
        0,
        "unverified requests are not recorded"
    );
    figure(&format!(
        "hostile signatures: {tried} tried, {accepted} accepted"
    ));

    // Control: the same body, genuinely signed, is accepted.
    let genuine = app.deliver_bytes(&body).await;
    assert_eq!(genuine.status, 200, "{}", genuine.text());
    assert_eq!(genuine.json()["outcome"], "recorded");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
}

/// Validly signed bodies an attacker (or a broken client) can send: each gets
/// the right 4xx with a JSON body (naming the field for 400s), the host stays
/// up, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_get_the_right_4xx_and_leave_no_trace() {
    let _serial = SERIAL.lock().await;
    let app = WebhookApp::start(AppOptions::default()).await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let valid = bytes_of(&inbound_start(&call_id, &agent.assistant_id, CALLER));
    let valid_text = String::from_utf8(valid.clone()).unwrap();
    let with_timestamp = |raw: &str| -> Vec<u8> {
        let mut body: Value = serde_json::from_slice(&valid).unwrap();
        body["message"]["timestamp"] = json!("@@");
        serde_json::to_string(&body)
            .unwrap()
            .replace("\"@@\"", raw)
            .into_bytes()
    };
    let deep =
        |levels: usize| -> String { format!("{}{}", "[".repeat(levels), "]".repeat(levels)) };
    let mut nested_in_message: Value = serde_json::from_slice(&valid).unwrap();
    nested_in_message["message"]["call"]["metadata"] = json!("@@");
    let nested_in_message = serde_json::to_string(&nested_in_message)
        .unwrap()
        .replace("\"@@\"", &deep(100_000))
        .into_bytes();
    let with_bytes = |needle: &str, replacement: &[u8]| -> Vec<u8> {
        let at = valid_text.find(needle).unwrap();
        let mut bytes = valid[..at].to_vec();
        bytes.extend_from_slice(replacement);
        bytes.extend_from_slice(&valid[at + needle.len()..]);
        bytes
    };

    // (label, body, expected field) — all validly signed application/json.
    let bad_payloads: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "body"),
        ("whitespace only", b" \r\n\t ".to_vec(), "body"),
        ("not JSON", b"<xml>status-update</xml>".to_vec(), "body"),
        ("truncated JSON", valid[..valid.len() / 2].to_vec(), "body"),
        ("JSON array", b"[]".to_vec(), "body"),
        (
            "JSON array holding the event",
            format!("[{valid_text}]").into_bytes(),
            "body",
        ),
        ("JSON string", b"\"status-update\"".to_vec(), "body"),
        ("JSON null", b"null".to_vec(), "body"),
        ("JSON number", b"42".to_vec(), "body"),
        (
            "message is an array",
            br#"{"message": []}"#.to_vec(),
            "message",
        ),
        (
            "message is a string",
            br#"{"message": "status-update"}"#.to_vec(),
            "message",
        ),
        (
            "message.type is an array",
            br#"{"message": {"type": ["status-update"]}}"#.to_vec(),
            "message.type",
        ),
        (
            "message.call is an array",
            br#"{"message": {"type": "status-update", "status": "in-progress", "call": []}}"#
                .to_vec(),
            "message.call",
        ),
        ("timestamp 1e400", with_timestamp("1e400"), "body"),
        (
            "timestamp a 400-digit integer",
            with_timestamp(&format!("1{}", "0".repeat(399))),
            "body",
        ),
        ("timestamp -1", with_timestamp("-1"), "message.timestamp"),
        ("100000 nested arrays", deep(100_000).into_bytes(), "body"),
        (
            "100000 nested arrays inside the call",
            nested_in_message,
            "body",
        ),
        (
            "invalid UTF-8 in the call id",
            with_bytes(&call_id, b"call-\xc0\xaf-overlong"),
            "body",
        ),
        (
            "invalid UTF-8 in a key",
            with_bytes("\"message\"", b"\"mess\xffage\""),
            "body",
        ),
        ("lone continuation byte", b"\x80".to_vec(), "body"),
        (
            "lone surrogate escape in the call id",
            with_bytes(&call_id, b"\\ud800"),
            "body",
        ),
    ];
    let mut tried = 0;
    let mut refusals: BTreeMap<u16, usize> = BTreeMap::new();
    for (label, body, field) in bad_payloads {
        let response = app.deliver_bytes(&body).await;
        tried += 1;
        *refusals.entry(response.status).or_default() += 1;
        assert_eq!(response.status, 400, "{label}: {}", response.text());
        let answer = response.json();
        assert_eq!(answer["field"], field, "{label}: {answer}");
        assert!(answer["error"].is_string(), "{label}: {answer}");
    }

    // Content type and method, validly signed.
    let signed = vapi_headers(&valid);
    let mut text_plain = signed.clone();
    text_plain[0].1 = "text/plain".into();
    let mut form = signed.clone();
    form[0].1 = "application/x-www-form-urlencoded".into();
    let no_content_type: Vec<(String, String)> = signed[1..].to_vec();
    for (label, headers) in [
        ("text/plain", &text_plain),
        ("form-encoded", &form),
        ("no content-type", &no_content_type),
    ] {
        let response = app
            .host
            .post("/webhooks/vapi", &header_refs(headers), valid.clone())
            .await;
        tried += 1;
        *refusals.entry(response.status).or_default() += 1;
        assert_eq!(response.status, 415, "{label}: {}", response.text());
        assert!(response.json()["error"].is_string());
    }
    for method in ["PUT", "GET", "PATCH", "DELETE"] {
        let body = if method == "GET" {
            Vec::new()
        } else {
            valid.clone()
        };
        let response = send(
            app.host.addr,
            method,
            "/webhooks/vapi",
            &header_refs(&signed),
            body,
        )
        .await;
        tried += 1;
        *refusals.entry(response.status).or_default() += 1;
        assert_eq!(response.status, 405, "{method}: {}", response.text());
        assert_eq!(response.headers["allow"], "POST", "{method}");
        assert!(response.json()["error"].is_string());
    }

    // No panic, no trap: the host is up and nothing failed inside the component.
    let health = app.host.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    let crashes: Vec<String> = app
        .host
        .lines()
        .into_iter()
        .filter(|l| l.contains("request failed in the component") || l.contains("panicked"))
        .collect();
    assert!(crashes.is_empty(), "{crashes:#?}");
    assert_eq!(all_call_rows(&app.db).await, (0, 0, 0), "no side effect");
    assert_eq!(app.db.count("SELECT count(*) FROM dead_letters").await, 0);
    figure(&format!(
        "hostile bodies: {tried} tried, answers {refusals:?}, 0 rows, /healthz {} after",
        health.status
    ));

    // Still serving: the genuine event goes through.
    let genuine = app.deliver_bytes(&valid).await;
    assert_eq!(genuine.status, 200, "{}", genuine.text());
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
}

const METRICS_TOKEN: &str = "metrics-token-reliability-4e7b";
const ADMIN_TOKEN: &str = "admin-token-reliability-a19d";
const PG_PASSWORD: &str = "pg-password-reliability-77c3";

/// A mix of good and bad requests (invalid numbers, refusals, an unknown
/// agent, a database outage, a failing relay, operator routes) with every
/// secret configured: nothing the host wrote holds a secret, a signature or a
/// full caller number.
#[tokio::test(flavor = "multi_thread")]
async fn logs_hold_no_secret_and_no_full_caller_number() {
    let _serial = SERIAL.lock().await;
    let proxy = PgProxy::start().await;
    let relay = Relay::start(RelayMode::Fail500).await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    // Trust authentication ignores the password, but the component holds it.
    let pg_url = format!(
        "postgres://postgres:{PG_PASSWORD}@{}/{}?sslmode=disable",
        proxy.addr, db.name
    );
    let app = WebhookApp::start_with_db(
        db,
        AppOptions {
            relay_url: Some(relay.url()),
            retry_ms: Some(String::new()),
            redis: false,
            extra: vec![
                ("pg_url".into(), pg_url),
                ("pg_allowed_host".into(), proxy.allowed_host()),
                ("vapi_server_secret".into(), SERVER_SECRET.into()),
                ("metrics_token".into(), METRICS_TOKEN.into()),
                ("admin_token".into(), ADMIN_TOKEN.into()),
            ],
            ..Default::default()
        },
    );
    let callers = [
        "+12125550134",   // E.164
        "(646) 555-0199", // national format, normalised with default_country US
        "555-01987",      // not a valid number: stored best-effort
        "+447700900461",  // UK mobile
    ];
    let mut signatures: Vec<String> = Vec::new();
    let mut answers: Vec<(String, u16)> = Vec::new();
    let mut bodies: Vec<String> = Vec::new();

    // Sends `body` signed, with the shared secret in `secret_header` (if any).
    macro_rules! deliver {
        ($label:expr, $body:expr, $secret_header:expr) => {{
            let bytes: Vec<u8> = $body;
            let mut headers = vapi_headers(&bytes);
            signatures.push(headers[1].1.clone());
            if let Some((name, value)) = $secret_header {
                headers.push((String::from(name), String::from(value)));
            }
            let response = app
                .host
                .post("/webhooks/vapi", &header_refs(&headers), bytes)
                .await;
            answers.push(($label.to_string(), response.status));
            bodies.push(response.text());
            response
        }};
    }
    let secret = Some(("x-vapi-secret", SERVER_SECRET));
    let bearer_value = format!("Bearer {SERVER_SECRET}");
    let bearer = Some(("authorization", bearer_value.as_str()));
    let none: Option<(&str, &str)> = None;
    let start = |caller: &str| -> (String, Vec<u8>) {
        let id = unique_id("call");
        let body = bytes_of(&inbound_start(&id, &agent.assistant_id, caller));
        (id, body)
    };
    let report_for = |call_id: &str, caller: &str| -> Vec<u8> {
        let mut report = fixture("08-inbound-end-of-call-report.json");
        retarget(&mut report, call_id, &agent.assistant_id);
        serde_json::to_string(&report)
            .unwrap()
            .replace(CALLER, caller)
            .into_bytes()
    };

    let expect = |label: &str, status: u16, got: u16| {
        assert_eq!(got, status, "{label}");
    };
    let (first_call, body) = start(callers[0]);
    let r = deliver!("valid E.164 caller", body, secret);
    expect("valid E.164 caller", 200, r.status);
    let (_, body) = start(callers[1]);
    let r = deliver!("national-format caller", body, secret);
    expect("national-format caller", 200, r.status);
    let (_, body) = start(callers[2]);
    let r = deliver!("invalid caller number", body, secret);
    expect("invalid caller number", 200, r.status);
    let (_, body) = start(callers[3]);
    let r = deliver!("shared secret as Bearer", body, bearer);
    expect("shared secret as Bearer", 200, r.status);
    let (_, body) = start(callers[0]);
    let r = deliver!(
        "wrong shared secret",
        body,
        Some(("x-vapi-secret", "not-it"))
    );
    expect("wrong shared secret", 401, r.status);
    let (_, body) = start(callers[1]);
    let r = deliver!("no shared secret", body, none);
    expect("no shared secret", 401, r.status);
    let unknown = unique_id("call");
    let r = deliver!(
        "unknown assistant",
        bytes_of(&inbound_start(&unknown, "no-such-assistant", callers[0])),
        secret
    );
    expect("unknown assistant", 500, r.status);
    let r = deliver!(
        "end-of-call report",
        report_for(&first_call, callers[0]),
        secret
    );
    expect("end-of-call report", 200, r.status);
    let mut no_id = inbound_start(&unique_id("call"), &agent.assistant_id, callers[3]);
    no_id["message"]["call"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let r = deliver!("payload without a call id", bytes_of(&no_id), secret);
    expect("payload without a call id", 400, r.status);
    let mut pigeon = inbound_start(&unique_id("call"), &agent.assistant_id, callers[0]);
    pigeon["message"]["call"]["type"] = json!("carrierPigeonCall");
    let r = deliver!("unknown call type", bytes_of(&pigeon), secret);
    expect("unknown call type", 400, r.status);
    let mut request = fixture("01-inbound-assistant-request.json");
    request["message"]["call"]["id"] = json!(unique_id("call"));
    request["message"]["phoneNumber"]["number"] = json!("+14155550100");
    request["message"]["call"]["phoneNumberId"] = json!("unknown-line");
    let request = serde_json::to_string(&request)
        .unwrap()
        .replace(CALLER, callers[0])
        .into_bytes();
    let r = deliver!("assistant-request for an unknown line", request, secret);
    expect("assistant-request for an unknown line", 200, r.status);

    proxy.down();
    let (_, body) = start(callers[3]);
    let r = deliver!("database down", body, secret);
    expect("database down", 503, r.status);
    let r = deliver!(
        "database down, end-of-call report",
        report_for(&unique_id("call"), callers[1]),
        secret
    );
    expect("database down, end-of-call report", 503, r.status);
    proxy.up();

    // Operator routes, with wrong and right tokens.
    for (path, method, token, status) in [
        ("/metrics", "GET", "wrong-token", 401),
        ("/metrics", "GET", METRICS_TOKEN, 200),
        ("/admin/replay", "POST", "wrong-token", 401),
        ("/admin/replay", "POST", ADMIN_TOKEN, 200),
    ] {
        let authorization = format!("Bearer {token}");
        let response = send(
            app.host.addr,
            method,
            path,
            &[("authorization", &authorization)],
            Vec::new(),
        )
        .await;
        answers.push((format!("{method} {path}"), response.status));
        bodies.push(response.text());
        expect(path, status, response.status);
    }

    // The risky paths ran: each of these lines was written at least once.
    for msg in [
        "Webhook handled",
        "Webhook refused",
        "Webhook failed",
        "Webhook verification failed",
        "Phone number is not valid E.164; stored best-effort",
        "Agent lookup failed",
        "Cannot determine call type",
        "Database unavailable",
        "Dead letter kept",
        "Relay notification failed",
        "postgres connection failed",
    ] {
        app.host
            .wait_for_log(Duration::from_secs(5), |l| l["msg"] == msg)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warning = app
        .host
        .json_lines()
        .into_iter()
        .find(|l| l["msg"] == "Phone number is not valid E.164; stored best-effort")
        .unwrap();
    assert!(
        warning["number"].as_str().is_some_and(|n| n.contains('*')),
        "the number is logged masked: {warning}"
    );

    let relay_key = RELAY_SECRET.trim_start_matches("whsec_");
    let mut secrets = vec![
        HMAC_SECRET,
        SERVER_SECRET,
        RELAY_SECRET,
        relay_key,
        METRICS_TOKEN,
        ADMIN_TOKEN,
        PG_PASSWORD,
    ];
    secrets.extend(signatures.iter().map(String::as_str));
    // The scan sees the component's lines: the first call's id is in them.
    assert!(!lines_containing(&app.host, std::slice::from_ref(&first_call)).is_empty());
    assert_logs_hide(&app.host, &secrets, &callers);
    // Nor does any answer.
    for ((label, _), body) in answers.iter().zip(&bodies) {
        for secret in &secrets {
            assert!(!body.contains(secret), "{label} answered a secret: {body}");
        }
    }
    let lines = app.host.lines().len();
    figure(&format!(
        "secrets and PII: {} requests, {lines} log lines scanned for {} secrets/signatures and {} caller numbers → 0 found",
        answers.len(),
        secrets.len(),
        callers.len()
    ));
}

/// The built-in SQLite store under concurrency, with the key-value store down
/// so that the database alone decides: 30 deliveries of one event at once
/// make one set of rows (SQLite's write lock, taken at BEGIN IMMEDIATE, puts
/// them one after another and the later ones find the key), and 60 distinct
/// events at once are all recorded (none lost to "database is locked").
#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_concurrent_deliveries_make_one_effect_and_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::migrated_on(StoreKind::Sqlite).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let config = unreachable_kv_config(&temp_dir("sqlite-kv-down"));
    let app = WebhookApp::start_with_db_and(
        db,
        AppOptions {
            store: StoreKind::Sqlite,
            redis: false,
            ..Default::default()
        },
        |options| HostOptions {
            runtime_config: Some(config),
            ..options
        },
    );
    let duplicate_call = unique_id("call");
    let duplicate = bytes_of(&inbound_start(&duplicate_call, &agent.assistant_id, CALLER));
    let mut bodies = vec![duplicate; 30];
    let distinct: Vec<String> = (0..60).map(|_| unique_id("call")).collect();
    bodies.extend(
        distinct
            .iter()
            .map(|id| bytes_of(&inbound_start(id, &agent.assistant_id, CALLER))),
    );
    let addr = app.host.addr;
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let deliveries: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let headers = vapi_headers(&body);
                gate.wait().await;
                send(addr, "POST", "/webhooks/vapi", &header_refs(&headers), body).await
            })
        })
        .collect();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in deliveries {
        let response = delivery.await.unwrap();
        let outcome = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|body| body["outcome"].as_str().map(str::to_string))
            .unwrap_or_else(|| response.text());
        *tally
            .entry(format!("{} {outcome}", response.status))
            .or_default() += 1;
    }
    let errors: Vec<String> = app
        .host
        .lines()
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.contains("error"))
        .take(5)
        .collect();
    assert_eq!(
        tally.get("200 recorded"),
        Some(&61),
        "{tally:?} {errors:#?}"
    );
    assert_eq!(tally.get("200 duplicate"), Some(&29), "{tally:?}");
    assert_eq!(call_rows(&app.db, &duplicate_call).await, (1, 1, 1));
    for id in &distinct {
        assert_eq!(call_rows(&app.db, id).await, (1, 1, 1), "{id}");
    }
    assert_eq!(all_call_rows(&app.db).await, (61, 61, 61));
    figure(&format!(
        "SQLite store, key-value down: 30 concurrent duplicates + 60 distinct → {tally:?}, rows (61, 61, 61)"
    ));
}

// Under real Spin, see `conformance!`: this one needs vapi-edge-host's deadline.
conformance! {
    every_store: [],
    postgres: [],
    sqlite: [],
    host_only: [
        a_statement_abandoned_by_the_deadline_does_not_commit_after_the_answer =>
            "a per-request deadline (vapi-edge-host up --request-timeout-ms); spin up has none",
    ],
}
