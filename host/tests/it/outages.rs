//! Outages, end to end through the real `.wasm` in `vapi-edge-host`, real
//! PostgreSQL and Redis: a database outage in the middle of a stream, an
//! attempt that dies between its claim and its commit, a statement abandoned
//! by the deadline, and a key-value store that is down. Vapi's retries record
//! each event exactly once.
//!
//! Figures are printed with the prefix `[reliability]`:
//! `cargo test --release -p vapi-edge-host --test it outages -- --nocapture | grep '\[reliability\]'`

use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";

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
    let mut notified: Vec<(String, String)> = relay
        .events()
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
    let notified = relay
        .events()
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
    let notified: Vec<String> = relay
        .events()
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
