//! The operations side, end to end through the real `.wasm`: metrics from the
//! durable event record, the rollout flag, assistant requests, and dead
//! letters replayed after a PostgreSQL outage. Every test but the outage
//! (which needs a proxy in front of PostgreSQL) runs on both stores, as
//! `postgres::…` and `sqlite::…`.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const CALLER: &str = "+12125550187";

fn tokens() -> Vec<(String, String)> {
    vec![
        ("metrics_token".into(), METRICS_TOKEN.into()),
        ("admin_token".into(), ADMIN_TOKEN.into()),
    ]
}

async fn get_with_token(host: &Host, path: &str, token: Option<&str>) -> TestResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    send(host.addr, "GET", path, &headers, Vec::new()).await
}

/// Samples of a Prometheus text exposition: series (with labels) → value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

async fn wait_for_count(db: &TestDb, sql: &str, expected: i64) {
    for _ in 0..100 {
        if db.count(sql).await >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql} never reached {expected}");
}

/// After a scripted mix of successes and failures, /metrics reports that mix.
async fn metrics_match_a_scripted_mix_of_outcomes(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        retry_ms: Some(String::new()),
        extra: tokens(),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let first = inbound_start(&unique_id("call"), &agent.assistant_id, CALLER);
    for body in [
        first.clone(),
        inbound_start(&unique_id("call"), &agent.assistant_id, CALLER),
        inbound_start(&unique_id("call"), &agent.assistant_id, CALLER),
        first,                                                          // duplicate
        inbound_start(&unique_id("call"), "no-such-assistant", CALLER), // agent lookup fails
    ] {
        app.deliver(&body).await;
    }
    assert_eq!(app.deliver_bytes(b"{\"message\": {}}").await.status, 400);
    // A request that fails verification is not recorded (anyone can send one).
    assert_eq!(
        app.host
            .post(
                "/webhooks/vapi",
                &[("content-type", "application/json")],
                b"{}".to_vec()
            )
            .await
            .status,
        401
    );
    wait_for_count(&app.db, "SELECT count(*) FROM webhook_events", 6).await;

    assert_eq!(
        get_with_token(&app.host, "/metrics", None).await.status,
        401
    );
    assert_eq!(
        get_with_token(&app.host, "/metrics", Some("wrong"))
            .await
            .status,
        401
    );
    let response = get_with_token(&app.host, "/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = parse_exposition(&response.text());
    let requests = |outcome: &str, class: &str| {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("vapi_edge_webhook_requests_total{")
                    && k.contains(&format!("outcome=\"{outcome}\""))
                    && k.contains(&format!("status_class=\"{class}\""))
            })
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(requests("recorded", "2xx"), 3.0);
    assert_eq!(requests("duplicate", "2xx"), 1.0);
    assert_eq!(requests("agent_not_found", "5xx"), 1.0);
    assert_eq!(requests("invalid_payload", "4xx"), 1.0);
    assert_eq!(m["vapi_edge_inbound_calls_total"], 3.0);
    assert_eq!(m["vapi_edge_agent_lookup_failures_total"], 1.0);
    assert_eq!(m["vapi_edge_call_tracking_failures_total"], 0.0);
    assert_eq!(m["vapi_edge_webhook_processing_seconds_count"], 6.0);
    assert_eq!(
        m["vapi_edge_webhook_processing_seconds_bucket{le=\"+Inf\"}"],
        6.0
    );
    assert_eq!(m["vapi_edge_inbound_calls_last_hour"], 3.0);
    assert!((m["vapi_edge_webhook_success_ratio_last_hour"] - 4.0 / 6.0).abs() < 1e-9);
    assert!((m["vapi_edge_webhook_error_ratio_last_hour"] - 1.0 / 6.0).abs() < 1e-9);
    assert_eq!(m["vapi_edge_agent_lookup_failures_last_hour"], 1.0);
    assert!(m["vapi_edge_webhook_processing_seconds_p95_last_hour"] > 0.0);
    assert!(m.keys().all(|k| k.starts_with("vapi_edge_")));
    assert!(
        !response.text().contains(&agent.assistant_id),
        "no ids in labels"
    );
}

/// The rollout flag: 0% records nothing, 100% everything, and a split is
/// decided per organisation exactly as `rollout::bucket` computes it.
async fn rollout_is_deterministic_per_organisation(store: StoreKind, host: HostKind) {
    use vapi_edge_core::rollout::bucket;
    // Two organisations on either side of 50.
    let orgs: Vec<String> = (0..200)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let inside = orgs.iter().find(|o| bucket(o) < 50).unwrap().clone();
    let outside = orgs.iter().find(|o| bucket(o) >= 50).unwrap().clone();

    for (percent, expect_inside, expect_outside) in [
        ("0", false, false),
        ("100", true, true),
        ("50", true, false),
    ] {
        let app = WebhookApp::start(AppOptions {
            host,
            store,
            extra: vec![("inbound_rollout_percent".into(), percent.into())],
            ..Default::default()
        })
        .await;
        for (org, expected) in [(&inside, expect_inside), (&outside, expect_outside)] {
            let agent = app.db.seed_agent(org, "receptionist", "Ava").await;
            let call_id = unique_id("call");
            let response = app
                .deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
                .await;
            assert_eq!(response.status, 200, "{}", response.text());
            let outcome = if expected {
                "recorded"
            } else {
                "outside_rollout"
            };
            assert_eq!(
                response.json()["outcome"],
                outcome,
                "{percent}% org bucket {}",
                bucket(org)
            );
            let tracked = app
                .db
                .count(&format!(
                    "SELECT count(*) FROM call_tracking WHERE vapi_call_id = '{call_id}'"
                ))
                .await;
            assert_eq!(tracked, i64::from(expected), "{percent}%");
            let events = app
                .db
                .count(&format!("SELECT count(*) FROM processed_webhook_events WHERE vapi_call_id = '{call_id}'"))
                .await;
            assert_eq!(
                events,
                i64::from(expected),
                "no side effect outside the rollout"
            );
        }
        if !expect_outside {
            app.logs("Organisation is outside the inbound rollout; not recorded")
                .await;
        }
    }
}

/// assistant-request: the receptionist of the organisation that owns the
/// called line, or Vapi's `error` shape when there is none.
async fn assistant_requests_are_answered_with_the_lines_receptionist(
    store: StoreKind,
    host: HostKind,
) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let receptionist = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    app.db.seed_agent(ORG_ID, "outbound", "Otto").await;
    app.db
        .seed_agent(OTHER_ORG_ID, "receptionist", "Other")
        .await;
    app.db
        .rows(
            "INSERT INTO phone_numbers (org_id, phone_e164) VALUES ($1, '+14155550142')",
            &[ORG_ID],
        )
        .await;

    let mut request = fixture("01-inbound-assistant-request.json");
    request["message"]["call"]["id"] = json!(unique_id("call"));
    let response = app.deliver(&request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({ "assistantId": receptionist.assistant_id })
    );

    request["message"]["phoneNumber"]["number"] = json!("+14155550199");
    request["message"]["call"]["phoneNumberId"] = json!("unknown-line");
    let response = app.deliver(&request).await;
    assert_eq!(response.status, 200);
    assert!(response.json()["error"].is_string(), "{}", response.text());
    assert!(response.json().get("assistantId").is_none());
    app.logs("Agent lookup failed").await;
}

/// A host whose database is reached through `proxy`, so the test can take it
/// down, with the in-memory key-value store unless `customize` sets another.
fn app_behind(
    proxy: &PgProxy,
    db: TestDb,
    customize: impl FnOnce(HostOptions) -> HostOptions,
) -> WebhookApp {
    let mut extra = tokens();
    extra.extend(proxy.variables(&db));
    WebhookApp::start_with_db_and(
        db,
        AppOptions {
            redis: false,
            extra,
            ..Default::default()
        },
        customize,
    )
}

/// A PostgreSQL outage: every affected webhook is 503 and kept as a dead
/// letter; no partial rows; when Postgres is back, a replay processes each
/// dead letter exactly once, and Vapi's own retries are then duplicates.
async fn dead_letters_from_an_outage_are_replayed_exactly_once(store: StoreKind, host: HostKind) {
    assert_eq!(store, StoreKind::Postgres, "the outage is PostgreSQL's");
    let proxy = PgProxy::start().await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    // The host's default store (in memory, or Spin's file in the app's own
    // folder), so no other test sees its dead letters.
    let app = app_behind(&proxy, db, |options| options.on(host));
    let first = inbound_start(&unique_id("call"), &agent.assistant_id, CALLER);
    assert_eq!(app.deliver(&first).await.status, 200);

    proxy.down();
    let lost: Vec<Value> = (0..3)
        .map(|_| inbound_start(&unique_id("call"), &agent.assistant_id, CALLER))
        .collect();
    for body in &lost {
        let response = app.deliver(body).await;
        assert_eq!(response.status, 503, "{}", response.text());
    }
    let kept = app.logs("Dead letter kept").await;
    assert!(kept.iter().all(|l| l["store"] == "key_value"), "{kept:?}");

    proxy.up();
    assert_eq!(
        app.db.count("SELECT count(*) FROM call_tracking").await,
        1,
        "no partial rows"
    );
    let report = app.replay().await;
    assert_eq!(report["moved_from_key_value"], 3, "{report}");
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    for body in &lost {
        let call_id = body["message"]["call"]["id"].as_str().unwrap();
        let rows = app
            .db
            .count(&format!(
                "SELECT count(*) FROM call_tracking WHERE vapi_call_id = '{call_id}'"
            ))
            .await;
        assert_eq!(rows, 1, "{call_id}");
    }
    // Replaying again does nothing; Vapi's retry of the same bytes is a duplicate.
    assert_eq!(app.replay().await["replayed"], 0);
    let retry = app.deliver(&lost[0]).await;
    assert_eq!(retry.json()["outcome"], "duplicate");
    assert_eq!(app.db.count("SELECT count(*) FROM call_tracking").await, 4);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM processed_webhook_events")
            .await,
        4
    );
}

/// Keys written straight into Redis, deleted when dropped.
struct RedisKeys {
    url: String,
    keys: Vec<String>,
}

impl RedisKeys {
    /// Writes `count` keys shaped like the claims a busy store holds.
    async fn fill(url: &str, count: usize) -> RedisKeys {
        let prefix = unique_id("filler");
        let keys: Vec<String> = (0..count)
            .map(|n| format!("vapi-edge/done/v1|status-update|{prefix}-{n:07}|in-progress"))
            .collect();
        let mut conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379 answers");
        for chunk in keys.chunks(10_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET").arg(key).arg("1").ignore();
            }
            let () = pipe.query_async(&mut conn).await.unwrap();
        }
        RedisKeys {
            url: url.to_string(),
            keys,
        }
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let (url, keys) = (self.url.clone(), std::mem::take(&mut self.keys));
        let _ = std::thread::spawn(move || {
            let mut conn = redis::Client::open(url).ok()?.get_connection().ok()?;
            for chunk in keys.chunks(10_000) {
                let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
            }
            Some(())
        })
        .join();
    }
}

/// A replay finds the letters parked during an outage through their own
/// index, not by listing the store: Redis holds 300,000 other keys, more than
/// a 16 MiB instance could list, and the letters are still moved and replayed.
#[tokio::test(flavor = "multi_thread")]
async fn parked_dead_letters_are_found_among_many_other_keys() {
    // A database of its own in Redis, so no other test's replay takes these letters.
    let redis_url = format!("{REDIS_URL}/11");
    let _filler = RedisKeys::fill(&redis_url, 300_000).await;
    let proxy = PgProxy::start().await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let app = app_behind(&proxy, db, |host| {
        let dir = host.manifest.parent().unwrap().to_path_buf();
        host.redis_kv_at(&dir, &redis_url)
            .arg("--max-memory-mb")
            .arg("16")
    });
    proxy.down();
    let lost: Vec<Value> = (0..2)
        .map(|_| inbound_start(&unique_id("call"), &agent.assistant_id, CALLER))
        .collect();
    let _cleanup = ParkedDeadLetterCleanup {
        call_ids: lost
            .iter()
            .map(|body| body["message"]["call"]["id"].as_str().unwrap().to_string())
            .collect(),
        redis_url: redis_url.clone(),
    };
    for body in &lost {
        assert_eq!(app.deliver(body).await.status, 503);
    }
    proxy.up();

    let report = app.replay().await;
    assert_eq!(report["moved_from_key_value"], 2, "{report}");
    assert_eq!(report["replayed"], 2, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert_eq!(report["parked_in_key_value"], 0, "{report}");
    assert_eq!(app.db.count("SELECT count(*) FROM call_tracking").await, 2);
}

/// A dead letter whose agent never appears stays pending, its attempts counted;
/// once the agent exists, the replay records it.
async fn dead_letters_wait_for_their_agent(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        retry_ms: Some(String::new()),
        extra: tokens(),
        ..Default::default()
    })
    .await;
    let assistant_id = unique_id("asst-late");
    let call_id = unique_id("call");
    assert_eq!(
        app.deliver(&inbound_start(&call_id, &assistant_id, CALLER))
            .await
            .status,
        500
    );
    wait_for_count(
        &app.db,
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL",
        1,
    )
    .await;
    let stored = app
        .db
        .row("SELECT headers FROM dead_letters", &[])
        .await
        .unwrap()
        .text(0);
    assert!(
        !stored.contains("x-signature") && !stored.contains(HMAC_SECRET),
        "credentials kept: {stored}"
    );

    let report = app.replay().await;
    assert_eq!(
        (report["replayed"].as_i64(), report["remaining"].as_i64()),
        (Some(0), Some(1)),
        "{report}"
    );
    assert_eq!(app.db.count("SELECT attempts FROM dead_letters").await, 2);

    app.db
        .rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, 'receptionist', 'Ava', $2)",
            &[ORG_ID, &assistant_id],
        )
        .await;
    // This time through the command an operator runs.
    let output = std::process::Command::new(host_binary())
        .args([
            "replay",
            "--url",
            &format!("http://{}", app.host.addr),
            "--token",
            ADMIN_TOKEN,
        ])
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("\"replayed\":1") && stdout.contains("\"remaining\":0"),
        "{stdout}"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM call_tracking").await, 1);
}

async fn operator_routes_are_closed_without_their_tokens(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    assert_eq!(
        get_with_token(&app.host, "/metrics", Some("anything"))
            .await
            .status,
        403
    );
    let response = send(
        app.host.addr,
        "POST",
        "/admin/replay",
        &[("authorization", "Bearer x")],
        Vec::new(),
    )
    .await;
    assert_eq!(response.status, 403);
}

/// The rows a call ends with, without ids and bookkeeping times.
async fn final_rows(db: &TestDb, call_id: &str) -> (Vec<Option<String>>, Vec<Option<String>>) {
    let tracking = db
        .row(
            "SELECT org_id, agent_id, direction, from_number, to_number, status
             FROM call_tracking WHERE vapi_call_id = $1",
            &[call_id],
        )
        .await
        .expect("a call_tracking row");
    let log = db
        .row(
            "SELECT org_id, agent_id, lead_id, status, metadata, direction,
                    from_number, to_number, started_at, ended_at, ended_reason,
                    duration_seconds, cost, summary, transcript, recording_url
             FROM call_logs WHERE vapi_call_id = $1",
            &[call_id],
        )
        .await
        .expect("a call_logs row");
    (tracking.0, log.0)
}

/// One inbound call's messages, from assistant-request to end-of-call-report.
fn one_call(call_id: &str, assistant_id: &str) -> Vec<Value> {
    [
        "01-inbound-assistant-request.json",
        "02-inbound-status-update-ringing.json",
        "03-inbound-status-update-in-progress.json",
        "04-inbound-transcript-final.json",
        "05-inbound-tool-calls.json",
        "06-inbound-hang.json",
        "07-inbound-status-update-ended.json",
        "08-inbound-end-of-call-report.json",
    ]
    .iter()
    .map(|name| {
        let mut body = fixture(name);
        retarget(&mut body, call_id, assistant_id);
        body["message"]["customer"]["number"] = json!(CALLER);
        body
    })
    .collect()
}

/// A full inbound call gives the same final rows whether its messages arrive
/// in order or shuffled; the report fills in duration, cost, summary,
/// transcript and recording.
async fn a_full_call_in_order_and_shuffled_gives_the_same_rows(store: StoreKind) {
    let mut results = Vec::new();
    for order in [
        vec![0, 1, 2, 3, 4, 5, 6, 7],
        vec![7, 3, 6, 0, 2, 5, 1, 4],
        vec![7, 6, 5, 4, 3, 2, 1, 0],
    ] {
        let app = WebhookApp::start(AppOptions {
            store,
            ..Default::default()
        })
        .await;
        let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
        app.db.seed_lead(ORG_ID, CALLER).await;
        app.db
            .rows(
                "INSERT INTO phone_numbers (org_id, phone_e164) VALUES ($1, '+14155550142')",
                &[ORG_ID],
            )
            .await;
        let call_id = unique_id("call");
        let messages = one_call(&call_id, &agent.assistant_id);
        for index in &order {
            let response = app.deliver(&messages[*index]).await;
            assert_eq!(response.status, 200, "message {index}: {}", response.text());
            if *index == 0 {
                assert_eq!(response.json()["assistantId"], agent.assistant_id.as_str());
            }
        }
        let (tracking, log) = final_rows(&app.db, &call_id).await;
        // Ids differ per run (fresh database); compare everything else.
        let tracking: Vec<Option<String>> = tracking.into_iter().skip(2).collect();
        let mut log_rest: Vec<Option<String>> = log.clone().into_iter().skip(3).collect();
        assert!(log[2].is_some(), "lead linked");
        assert_eq!(tracking[3].as_deref(), Some("ended"));
        assert_eq!(log_rest[0].as_deref(), Some("ended"));
        assert_eq!(log_rest[7].as_deref(), Some("customer-ended-call"));
        for (i, field) in [
            (8, "duration"),
            (9, "cost"),
            (10, "summary"),
            (11, "transcript"),
            (12, "recording"),
        ] {
            assert!(
                log_rest[i].is_some(),
                "{field} missing after order {order:?}"
            );
        }
        log_rest.push(log[0].clone());
        results.push((order, tracking, log_rest));
    }
    let (_, first_tracking, first_log) = &results[0];
    for (order, tracking, log) in &results[1..] {
        assert_eq!(
            tracking, first_tracking,
            "call_tracking differs for order {order:?}"
        );
        assert_eq!(log, first_log, "call_logs differs for order {order:?}");
    }
}

/// Long calls make large reports: one just under the 5 MiB limit is recorded
/// whole.
async fn large_reports_are_accepted_up_to_the_limit(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &call_id, &agent.assistant_id);
    let base = serde_json::to_vec(&report).unwrap().len();
    let limit = 5 * 1024 * 1024;
    report["message"]["artifact"]["transcript"] =
        json!("AI: hello. User: hi. ".repeat((limit - base - 4096) / 21));
    let body = serde_json::to_vec(&report).unwrap();
    assert!(
        body.len() < limit && body.len() > limit - 8192,
        "{}",
        body.len()
    );
    let response = app.deliver_bytes(&body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let stored = app
        .db
        .count(&format!(
            "SELECT length(transcript) FROM call_logs WHERE vapi_call_id = '{call_id}'"
        ))
        .await;
    assert!(stored as usize > limit - base - 8192, "{stored}");
    // One byte over the limit is 413: webhooks.rs, bad_requests_get_the_right_status_and_name_the_field.
}

/// An event answered `outside_rollout` is not done: once the organisation is
/// rolled in, Vapi's retry of it is recorded, not skipped as a duplicate.
async fn an_event_outside_the_rollout_is_recorded_once_rolled_in(store: StoreKind) {
    let db = TestDb::migrated_on(store).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let body = inbound_start(&unique_id("call"), &agent.assistant_id, CALLER);
    let rollout = |percent: &str| AppOptions {
        store,
        extra: vec![("inbound_rollout_percent".into(), percent.into())],
        ..Default::default()
    };
    let before = WebhookApp::start_with_db(db, rollout("0"));
    assert_eq!(
        before.deliver(&body).await.json()["outcome"],
        "outside_rollout"
    );
    let WebhookApp { host, db } = before;
    drop(host);
    // Same database, same Redis store: only the flag changed.
    let after = WebhookApp::start_with_db(db, rollout("100"));
    assert_eq!(after.deliver(&body).await.json()["outcome"], "recorded");
    assert_eq!(
        after.db.count("SELECT count(*) FROM call_tracking").await,
        1
    );
}

// Each test body above but the outage, once per store: `postgres::<name>` and
// `sqlite::<name>`.
on_every_store!(
    dead_letters_wait_for_their_agent,
    operator_routes_are_closed_without_their_tokens,
    a_full_call_in_order_and_shuffled_gives_the_same_rows,
    large_reports_are_accepted_up_to_the_limit,
    an_event_outside_the_rollout_is_recorded_once_rolled_in,
);

// The scenarios that must behave the same under real Spin (see `conformance!`).
/// README's own flow: the zero-config run (SQLite records, claims in the
/// key-value file `.spin/sqlite_key_value.db`), then the same app folder with
/// `pg_url`. The claims the SQLite run marked done speak for SQLite only: the
/// PostgreSQL run records the same event instead of answering `duplicate`.
async fn switching_from_the_zero_config_store_to_postgres_records_every_event(
    _store: StoreKind,
    host: HostKind,
) {
    let sqlite = TestDb::migrated_on(StoreKind::Sqlite).await;
    let postgres = TestDb::migrated().await;
    let ava_sqlite = sqlite.seed_agent(ORG_ID, "receptionist", "Ava").await;
    // The same assistant in both databases, as an operator moving over would have it.
    postgres
        .rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, 'receptionist', 'Ava', $2)",
            &[ORG_ID, &ava_sqlite.assistant_id],
        )
        .await;
    let call_id = unique_id("call");
    let body = inbound_start(&call_id, &ava_sqlite.assistant_id, CALLER);
    let zero_config = Host::start(
        sqlite
            .host_options()
            .on(host)
            .var("vapi_hmac_secret", HMAC_SECRET),
    );
    assert_eq!(
        deliver_to(&zero_config, &body).await.json()["outcome"],
        "recorded"
    );
    assert_eq!(
        deliver_to(&zero_config, &body).await.json()["outcome"],
        "duplicate"
    );
    drop(zero_config);
    let with_postgres = Host::start(
        sqlite
            .host_options()
            .on(host)
            .var("vapi_hmac_secret", HMAC_SECRET)
            .var("pg_url", &postgres.url),
    );
    let moved = deliver_to(&with_postgres, &body).await;
    assert_eq!(moved.json()["outcome"], "recorded", "{}", moved.text());
    assert_eq!(call_rows(&postgres, &call_id).await, (1, 1, 1));
    assert_eq!(
        deliver_to(&with_postgres, &body).await.json()["outcome"],
        "duplicate"
    );
}

/// Staging and production on one Redis: an event each receives is recorded
/// in each; and after a database is restored from a backup (here: its rows
/// of the event deleted), a new `claim_scope` makes the claims made before
/// the restore speak for nothing (RUNBOOK, "Restoring the database").
async fn two_databases_sharing_one_redis_each_record_every_event(
    _store: StoreKind,
    host: HostKind,
) {
    let staging = TestDb::migrated().await;
    let production = TestDb::migrated().await;
    let call_id = unique_id("call");
    let assistant_id = unique_id("asst");
    for db in [&staging, &production] {
        db.rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, 'receptionist', 'Ava', $2)",
            &[ORG_ID, &assistant_id],
        )
        .await;
    }
    let start = |db: &TestDb, scope: &str| {
        webhook_host(
            db,
            AppOptions {
                host,
                extra: vec![("claim_scope".into(), scope.into())],
                ..Default::default()
            },
        )
    };
    let body = inbound_start(&call_id, &assistant_id, CALLER);
    let outcome = |response: TestResponse| response.json()["outcome"].clone();
    let staging_host = start(&staging, "");
    let production_host = start(&production, "");
    assert_eq!(outcome(deliver_to(&staging_host, &body).await), "recorded");
    assert_eq!(
        outcome(deliver_to(&production_host, &body).await),
        "recorded"
    );
    assert_eq!(
        outcome(deliver_to(&production_host, &body).await),
        "duplicate"
    );
    for db in [&staging, &production] {
        assert_eq!(call_rows(db, &call_id).await, (1, 1, 1));
    }
    drop(production_host);

    // Production restored to before the event: the old claims would call it
    // done; a new claim_scope forgets them.
    for table in ["call_tracking", "call_logs", "processed_webhook_events"] {
        production
            .rows(
                &format!("DELETE FROM {table} WHERE vapi_call_id = $1"),
                &[&call_id],
            )
            .await;
    }
    let stale = start(&production, "");
    assert_eq!(
        outcome(deliver_to(&stale, &body).await),
        "duplicate",
        "the hazard the RUNBOOK step is for"
    );
    drop(stale);
    let rescoped = start(&production, "restored-2026-12-07");
    assert_eq!(outcome(deliver_to(&rescoped, &body).await), "recorded");
    assert_eq!(call_rows(&production, &call_id).await, (1, 1, 1));
}

/// `vapi-edge-host relay`, which users run where the host runs, is the
/// relay crate's relay (crates/relay/tests has its own tests): it takes a
/// signed event once, refuses it again, and counts a subscriber.
#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_relay_command_is_the_relay() {
    let relay = RelayProcess::start(host_relay().tokens(&format!("{ORG_ID}:relay-cmd-token-0001")));
    let event = json!({"type": "call.event", "org_id": ORG_ID, "vapi_call_id": unique_id("call")});
    let body = serde_json::to_vec(&event).unwrap();
    let id = unique_id("msg");
    let first = relay.post(&id, &body).await;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(relay.post(&id, &body).await.status, 409, "a replayed id");
    let health = relay.health().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["redis"], "off", "{health}");
}

conformance! {
    every_store: [
        metrics_match_a_scripted_mix_of_outcomes,
        rollout_is_deterministic_per_organisation,
        assistant_requests_are_answered_with_the_lines_receptionist,
    ],
    postgres: [
        dead_letters_from_an_outage_are_replayed_exactly_once,
        switching_from_the_zero_config_store_to_postgres_records_every_event,
        two_databases_sharing_one_redis_each_record_every_event,
    ],
    sqlite: [],
    host_only: [],
}
