//! `vapi-edge-host prune` on both stores: old delivery records and replayed
//! dead letters go, idempotency records go after their own window except an
//! event's with a pending dead letter, calls stay, `/metrics`' counters do not
//! go down, and what is inside the windows still deduplicates.

use crate::common::*;

const CALLER: &str = "+12125550187";
const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";

async fn old_records_go_and_the_windows_hold(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        extra: vec![("metrics_token".into(), METRICS_TOKEN.into())],
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let (old, recent, old_with_letter) = (unique_id("call"), unique_id("call"), unique_id("call"));
    let recent_body = inbound_start(&recent, &agent.assistant_id, CALLER);
    for call in [&old, &old_with_letter] {
        let response = app
            .deliver(&inbound_start(call, &agent.assistant_id, CALLER))
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(app.deliver(&recent_body).await.status, 200);
    // The event rows are written after the response.
    for _ in 0..100 {
        if app.db.count("SELECT count(*) FROM webhook_events").await == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Two calls' records age past every window; one of them still has a
    // pending dead letter (a failed delivery not yet replayed).
    for call in [&old, &old_with_letter] {
        app.db
            .rows(
                "UPDATE processed_webhook_events SET processed_at = $1 WHERE vapi_call_id = $2",
                &[LONG_AGO, call],
            )
            .await;
        app.db
            .rows(
                "UPDATE webhook_events SET received_at = $1 WHERE vapi_call_id = $2",
                &[LONG_AGO, call],
            )
            .await;
    }
    let letter_key = app
        .db
        .row(
            "SELECT event_key FROM processed_webhook_events WHERE vapi_call_id = $1",
            &[&old_with_letter],
        )
        .await
        .unwrap()
        .text(0);
    app.db
        .rows(
            "INSERT INTO dead_letters (event_key, reason, body) VALUES ($1, 'database', '')",
            &[&letter_key],
        )
        .await;
    app.db
        .rows(
            "INSERT INTO dead_letters (event_key, reason, body, replayed_at, replay_outcome)
             VALUES ('k-replayed-long-ago', 'database', '', $1, 'recorded'),
                    ('k-replayed-today', 'database', '', $2, 'recorded')",
            &[LONG_AGO, &now_iso()],
        )
        .await;

    // One row per statement: the batches loop until a short one.
    let prune = |db: &TestDb| prune_with(db, &["--keep-days", "30", "--batch", "1"]);
    let counters_before = metrics(app.host.addr).await;
    let first = prune(&app.db);
    assert_eq!(
        first,
        serde_json::json!({"webhook_events": 2, "processed_webhook_events": 1, "dead_letters": 1})
    );
    // Once is enough.
    let again = prune(&app.db);
    assert_eq!(
        again,
        serde_json::json!({"webhook_events": 0, "processed_webhook_events": 0, "dead_letters": 0})
    );

    let kept: Vec<String> = app
        .db
        .rows(
            "SELECT vapi_call_id FROM processed_webhook_events ORDER BY vapi_call_id",
            &[],
        )
        .await
        .iter()
        .map(|row| row.text(0))
        .collect();
    let mut expected = vec![recent.clone(), old_with_letter.clone()];
    expected.sort();
    assert_eq!(kept, expected);
    assert_eq!(app.db.count("SELECT count(*) FROM dead_letters").await, 2);
    // The calls are the business's records: all three stay.
    assert_eq!(all_call_rows(&app.db).await, (3, 3, 2));
    // The counters of /metrics are all-time totals: pruning the rows they
    // counted does not take them back (Prometheus would read a reset).
    let counters_after = metrics(app.host.addr).await;
    let counter_lines = |exposition: &str| -> Vec<String> {
        exposition
            .lines()
            .filter(|line| !line.starts_with('#') && !line.contains("_last_hour"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(webhook_requests_total(&counters_before), 3);
    assert_eq!(
        counter_lines(&counters_after),
        counter_lines(&counters_before)
    );
    // Inside the window the event is still a duplicate.
    let response = app.deliver(&recent_body).await;
    assert_eq!(response.json()["outcome"], "duplicate");
    println!(
        "[retention] {}: first prune {first}, second {again}; kept the recent event's record and \
         the old one with a pending dead letter",
        store.name()
    );
}

/// `vapi-edge-host prune` on `db` with `flags`: its JSON report.
fn prune_with(db: &TestDb, flags: &[&str]) -> serde_json::Value {
    let [flag, target] = db.database_args();
    let mut args = vec!["prune", flag.as_str(), target.as_str()];
    args.extend_from_slice(flags);
    let output = run_host(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_old_records_go_and_the_windows_hold() {
    old_records_go_and_the_windows_hold(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_old_records_go_and_the_windows_hold() {
    old_records_go_and_the_windows_hold(StoreKind::Sqlite).await;
}

/// A tenant's `retention_days` replaces `--keep-days` for its own delivery
/// records only: the deployment's and other tenants' keep the flag's.
async fn a_tenants_retention_applies_to_its_records_only(store: StoreKind) {
    let db = TestDb::migrated_on(store).await;
    const KEY: &str = "tenant-secrets-key-for-retention-0123456789";
    db.tenant(
        "set",
        KEY,
        &["acme", "vapi_server_secret=x", "retention_days=5"],
    );
    db.tenant("set", KEY, &["globex", "vapi_server_secret=y"]);
    let ten_days_ago = (chrono::Utc::now() - chrono::Duration::days(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for tenant in ["", "acme", "globex"] {
        db.rows(
            "INSERT INTO webhook_events (outcome, status_code, duration_ms, tenant, received_at)
             VALUES ('recorded', 200, 1.0, $1, $2)",
            &[tenant, &ten_days_ago],
        )
        .await;
    }
    let pruned = prune_with(&db, &["--keep-days", "30"]);
    assert_eq!(pruned["webhook_events"], 1);
    assert_eq!(pruned["tenants"], serde_json::json!({"acme": 1}));
    let left: Vec<String> = db
        .rows("SELECT tenant FROM webhook_events ORDER BY tenant", &[])
        .await
        .iter()
        .map(|row| row.text(0))
        .collect();
    assert_eq!(left, ["", "globex"]);
    // A retention a prune cannot use is refused when it is set.
    let refused = std::process::Command::new(host_binary())
        .args(["tenant", "set"])
        .args(db.database_args())
        .args(["acme", "retention_days=0"])
        .env_clear()
        .env("SPIN_VARIABLE_TENANT_SECRETS_KEY", KEY)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("retention_days"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_tenants_retention_applies_to_its_records_only() {
    a_tenants_retention_applies_to_its_records_only(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_tenants_retention_applies_to_its_records_only() {
    a_tenants_retention_applies_to_its_records_only(StoreKind::Sqlite).await;
}
