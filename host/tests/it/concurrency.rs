//! Concurrent deliveries, end to end through the real `.wasm` in
//! `vapi-edge-host`, real PostgreSQL (or SQLite) and Redis: many copies of one
//! event make one effect; many distinct events are all recorded and notified.
//!
//! Figures are printed with the prefix `[reliability]`:
//! `cargo test --release -p vapi-edge-host --test it concurrency -- --nocapture | grep '\[reliability\]'`

use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";

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
    let notified: Vec<String> = relay
        .events()
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
