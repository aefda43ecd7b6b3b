//! Inbound call handling, end to end: the checklist's test plan automated
//! against the real `.wasm` in `vapi-edge-host` and a Redis key-value store,
//! once per store: every test runs on real PostgreSQL (`postgres::…`) and on
//! the host's built-in SQLite database, the zero-config run (`sqlite::…`).

use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";
const LINE: &str = "+14155550142";

async fn tracking_row(db: &TestDb, call_id: &str) -> Option<Row> {
    db.row(
        "SELECT org_id, agent_id, direction, from_number, to_number, status
         FROM call_tracking WHERE vapi_call_id = $1",
        &[call_id],
    )
    .await
}

async fn log_row(db: &TestDb, call_id: &str) -> Option<Row> {
    db.row(
        "SELECT org_id, agent_id, lead_id, status, metadata, direction,
                from_number, to_number, ended_reason
         FROM call_logs WHERE vapi_call_id = $1",
        &[call_id],
    )
    .await
}

/// Checklist 3: an inbound call creates call_tracking and call_logs rows with the
/// right organisation, agent, direction, numbers, metadata and lead.
async fn inbound_call_creates_tracking_and_log_rows_linked_to_the_lead(
    store: StoreKind,
    host: HostKind,
) {
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let lead = app.db.seed_lead(ORG_ID, CALLER).await;
    // A lead with the same number in another organisation must not be linked.
    app.db.seed_lead(OTHER_ORG_ID, CALLER).await;
    let call_id = unique_id("call");

    let response = app
        .deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["outcome"], "recorded");

    let tracking = tracking_row(&app.db, &call_id)
        .await
        .expect("a call_tracking row");
    assert_eq!(tracking.text(0), ORG_ID);
    assert_eq!(tracking.text(1), agent.id);
    assert_eq!(tracking.text(2), "inbound");
    assert_eq!(tracking.text(3), CALLER);
    assert_eq!(tracking.text(4), LINE);
    assert_eq!(tracking.text(5), "in-progress");

    let log = log_row(&app.db, &call_id).await.expect("a call_logs row");
    assert_eq!(log.text(0), ORG_ID);
    assert_eq!(log.text(1), agent.id);
    assert_eq!(log.opt(2), Some(lead));
    assert_eq!(log.text(3), "in-progress");
    let metadata = log.json(4);
    assert_eq!(metadata["channel"], "phone");
    assert_eq!(metadata["is_test_call"], false);
    assert_eq!(log.text(5), "inbound");

    // The request's log line names the agent, org and outcome (checklist: "Verify Agent Routing").
    let line = app
        .logs("Webhook handled")
        .await
        .pop()
        .expect("a summary line");
    assert_eq!(line["agent"], "Ava");
    assert_eq!(line["org_id"], ORG_ID);
    assert_eq!(line["outcome"], "recorded");
    assert_eq!(line["call_id"], call_id.as_str());
    assert!(line["duration_ms"].as_f64().is_some());
}

/// Checklist 1: the same webhook twice; the second is skipped and logged.
async fn the_same_webhook_twice_records_once(store: StoreKind, host: HostKind) {
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let body = inbound_start(&call_id, &agent.assistant_id, CALLER);

    assert_eq!(app.deliver(&body).await.json()["outcome"], "recorded");
    // Vapi's retry is not byte-identical (new presigned URLs, new timestamp).
    let mut retry = body.clone();
    retry["message"]["timestamp"] = json!(now_ms());
    retry["message"]["artifact"]["recordingUrl"] = json!("https://storage.vapi.ai/presigned?sig=2");
    let second = app.deliver(&retry).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["outcome"], "duplicate");

    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    let duplicate = app.logs("Duplicate event detected").await;
    assert_eq!(duplicate.len(), 1, "{duplicate:?}");
    assert_eq!(duplicate[0]["call_id"], call_id.as_str());
    assert_eq!(relay.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.hits().len(), 1, "a duplicate must not notify again");
}

/// With the key-value store's memory wiped (a new host, and the default
/// store's file deleted), the database alone still refuses the duplicate.
async fn the_database_refuses_a_duplicate_the_key_value_store_forgot(store: StoreKind) {
    let db = TestDb::migrated_on(store).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let body = inbound_start(&call_id, &agent.assistant_id, CALLER);
    let first = WebhookApp::start_with_db(
        db,
        AppOptions {
            store,
            redis: false,
            ..Default::default()
        },
    );
    assert_eq!(first.deliver(&body).await.json()["outcome"], "recorded");
    let WebhookApp { host, db } = first;
    drop(host);
    if let Some(dir) = &db.app_dir {
        std::fs::remove_file(dir.join(".spin/sqlite_key_value.db")).unwrap();
    }

    let second = WebhookApp::start_with_db(
        db,
        AppOptions {
            store,
            redis: false,
            ..Default::default()
        },
    );
    let response = second.deliver(&body).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["outcome"], "duplicate");
    let line = second.logs("Duplicate event detected").await.pop().unwrap();
    assert_eq!(line["guard"], store.name());
    assert_eq!(call_rows(&second.db, &call_id).await, (1, 1, 1));
}

/// Checklist 2: an unknown assistant id is retried on the configured schedule,
/// then answered 500 so Vapi retries; once the agent exists the retry succeeds.
async fn unknown_assistant_is_retried_then_500_and_a_later_retry_succeeds(
    store: StoreKind,
    host: HostKind,
) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let call_id = unique_id("call");
    let assistant_id = unique_id("asst-not-yet");
    let body = inbound_start(&call_id, &assistant_id, CALLER);

    let started = Instant::now();
    let response = app.deliver(&body).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(
        !response.text().contains("SELECT"),
        "internal text leaked: {}",
        response.text()
    );
    // The default schedule is 5 retries of 100+250+500+1000+2000 ms.
    assert!(
        elapsed >= Duration::from_millis(3850),
        "gave up after {elapsed:?}"
    );
    // Bounded: the schedule, plus six statements' time; never a hang.
    assert!(
        elapsed < Duration::from_secs(8),
        "answered only after {elapsed:?}"
    );
    let failed = app.logs("Agent lookup failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 6);
    assert_eq!(failed[0]["level"], "ERROR");
    assert_eq!(call_rows(&app.db, &call_id).await, (0, 0, 0));

    // The agent is created (e.g. the dashboard finished saving it); Vapi retries.
    app.db
        .rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, 'receptionist', 'Ava', $2)",
            &[ORG_ID, &assistant_id],
        )
        .await;
    let retry = app.deliver(&body).await;
    assert_eq!(
        retry.status,
        200,
        "the failed attempt blocked the retry: {}",
        retry.text()
    );
    assert_eq!(retry.json()["outcome"], "recorded");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
}

/// Checklist 4: a number that is not E.164 is logged masked and the call is
/// still tracked with the best-effort value.
async fn an_invalid_number_is_a_masked_warning_and_the_call_is_tracked(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let national = "(212) 555-0187"; // normalised with default_country US
    let invalid = "555-01987";
    let response = app
        .deliver(&inbound_start(&call_id, &agent.assistant_id, national))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        tracking_row(&app.db, &call_id).await.unwrap().text(3),
        "+12125550187"
    );

    let bad_call = unique_id("call");
    let response = app
        .deliver(&inbound_start(&bad_call, &agent.assistant_id, invalid))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let tracking = tracking_row(&app.db, &bad_call)
        .await
        .expect("the call is still tracked");
    assert_eq!(tracking.text(3), "55501987");
    let warning = app
        .logs("Phone number is not valid E.164; stored best-effort")
        .await
        .into_iter()
        .find(|l| l["call_id"] == bad_call.as_str())
        .expect("a warning");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["field"], "customer.number");
    assert!(!warning["number"].as_str().unwrap().contains("55501987"));
}

/// Checklist 5: the relay receives one signed notification per event, and a
/// relay that is down, slow or failing never fails the webhook.
async fn relay_notifications_are_signed_and_their_failure_never_fails_the_webhook(
    store: StoreKind,
    host: HostKind,
) {
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    assert_eq!(
        app.deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
            .await
            .status,
        200
    );
    let hits = relay.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    hit.verified_headers(RELAY_SECRET);
    // The body is known: sent with its length, never chunked (some
    // receivers and proxies refuse chunked POSTs).
    assert_eq!(
        hit.headers["content-length"].to_str().unwrap(),
        hit.body.len().to_string()
    );
    assert!(hit.headers.get("transfer-encoding").is_none());
    let event: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(event["vapi_call_id"], call_id.as_str());
    assert_eq!(event["org_id"], ORG_ID);
    assert_eq!(event["agent_name"], "Ava");
    assert_eq!(event["status"], "in-progress");
    assert_eq!(event["direction"], "inbound");

    for (mode, label) in [
        (None, "down"),
        (Some(RelayMode::Slow(Duration::from_secs(10))), "slow"),
        (Some(RelayMode::Fail500), "500"),
    ] {
        let (url, _relay) = match mode {
            None => (format!("http://{}/events", dead_address()), None),
            Some(mode) => {
                let relay = Relay::start(mode).await;
                (relay.url(), Some(relay))
            }
        };
        let app = WebhookApp::start(AppOptions {
            host,
            store,
            relay_url: Some(url),
            ..Default::default()
        })
        .await;
        let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
        let call_id = unique_id("call");
        let started = Instant::now();
        let response = app
            .deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
            .await;
        assert_eq!(response.status, 200, "relay {label}: {}", response.text());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "relay {label} delayed the webhook"
        );
        assert_eq!(
            call_rows(&app.db, &call_id).await,
            (1, 1, 1),
            "relay {label}"
        );
        let warning = app
            .host
            .wait_for_log(Duration::from_secs(10), |l| {
                l["msg"] == "Relay notification failed"
            })
            .await;
        assert_eq!(warning["level"], "WARN", "relay {label}");
    }
}

/// Integration plan: 10 distinct inbound calls → 10 tracked (100%).
async fn ten_inbound_calls_are_all_tracked(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let mut ok = 0;
    for _ in 0..10 {
        let call_id = unique_id("call");
        let response = app
            .deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
            .await;
        if response.status == 200 && call_rows(&app.db, &call_id).await == (1, 1, 1) {
            ok += 1;
        }
    }
    println!("inbound calls tracked: {ok}/10");
    assert_eq!(ok, 10);
    assert_eq!(app.db.count("SELECT count(*) FROM call_tracking").await, 10);
}

/// 20 concurrent deliveries of one event: exactly one set of rows and one notification.
async fn twenty_concurrent_duplicates_make_one_effect(store: StoreKind, host: HostKind) {
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let body = serde_json::to_vec(&inbound_start(&call_id, &agent.assistant_id, CALLER)).unwrap();
    let headers = vapi_headers(&body);
    let addr = app.host.addr;
    let deliveries: Vec<_> = (0..20)
        .map(|_| {
            let body = body.clone();
            let headers = headers.clone();
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                send(addr, "POST", "/webhooks/vapi", &headers, body).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delivery in deliveries {
        let response = delivery.await.unwrap();
        assert!(
            matches!(response.status, 200 | 503),
            "{} {}",
            response.status,
            response.text()
        );
        outcomes.push(
            response.json()["outcome"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| response.text()),
        );
    }
    let recorded = outcomes.iter().filter(|o| *o == "recorded").count();
    println!("20 concurrent deliveries: outcomes {outcomes:?}");
    assert_eq!(recorded, 1, "{outcomes:?}");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    relay.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.hits().len(), 1, "one notification");
}

/// Statuses only move forward, whatever order Vapi's messages arrive in.
async fn statuses_never_move_backwards(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let mut ended = fixture("07-inbound-status-update-ended.json");
    retarget(&mut ended, &call_id, &agent.assistant_id);
    let mut ringing = fixture("02-inbound-status-update-ringing.json");
    retarget(&mut ringing, &call_id, &agent.assistant_id);
    let start = inbound_start(&call_id, &agent.assistant_id, CALLER);
    for body in [&ended, &ringing, &start] {
        assert_eq!(app.deliver(body).await.status, 200);
    }
    assert_eq!(
        tracking_row(&app.db, &call_id).await.unwrap().text(5),
        "ended"
    );
    let log = log_row(&app.db, &call_id).await.unwrap();
    assert_eq!(log.text(3), "ended");
    assert_eq!(log.opt(8).as_deref(), Some("customer-ended-call"));
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 3));
}

/// Outbound and web calls are logged with their channel and get no call_tracking row.
async fn outbound_and_web_calls_are_logged_but_not_tracked(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "outbound", "Otto").await;
    for (fixture_name, direction, channel, test_call) in [
        (
            "09-outbound-status-update-ringing.json",
            "outbound",
            "phone",
            false,
        ),
        (
            "11-webcall-status-update-in-progress.json",
            "web",
            "web",
            true,
        ),
    ] {
        let call_id = unique_id("call");
        let mut body = fixture(fixture_name);
        retarget(&mut body, &call_id, &agent.assistant_id);
        let response = app.deliver(&body).await;
        assert_eq!(response.status, 200, "{fixture_name}: {}", response.text());
        assert_eq!(
            call_rows(&app.db, &call_id).await,
            (0, 1, 1),
            "{fixture_name}"
        );
        let log = log_row(&app.db, &call_id).await.unwrap();
        assert_eq!(log.text(5), direction);
        let metadata = log.json(4);
        assert_eq!(metadata["channel"], channel);
        assert_eq!(metadata["is_test_call"], test_call);
    }
}

/// Every refusal: its status, a body that names the field, the search term in
/// the logs, and no side effect.
async fn bad_requests_get_the_right_status_and_name_the_field(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        host,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let valid = serde_json::to_vec(&inbound_start(&call_id, &agent.assistant_id, CALLER)).unwrap();
    let signed = vapi_headers(&valid);
    let header = |name: &str| signed.iter().find(|(k, _)| k == name).unwrap().1.clone();

    // Verification: wrong signature, missing headers, stale timestamp → 401.
    let stale = ((now_ms() / 1000) - 3600).to_string();
    let stale_signature = vapi_edge_core::verify::HmacScheme::new(vec![HMAC_SECRET.into()])
        .sign(&stale, &valid)
        .unwrap();
    let bad_signature = "0".repeat(64);
    let ts = header("x-timestamp");
    let sig = header("x-signature");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("content-type", "application/json"),
                ("x-signature", &bad_signature),
                ("x-timestamp", &ts),
            ],
            "no matching signature",
        ),
        (
            vec![("content-type", "application/json"), ("x-timestamp", &ts)],
            "x-signature",
        ),
        (
            vec![("content-type", "application/json"), ("x-signature", &sig)],
            "x-timestamp",
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("x-signature", &stale_signature),
                ("x-timestamp", &stale),
            ],
            "old",
        ),
    ];
    for (headers, reason) in cases {
        let response = app
            .host
            .post("/webhooks/vapi", &headers, valid.clone())
            .await;
        assert_eq!(response.status, 401, "{reason}: {}", response.text());
        assert!(
            response.json()["error"].as_str().unwrap().contains(reason),
            "{}",
            response.text()
        );
    }

    // Payloads: each names the failing field.
    let payload_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "body"),
        (b"".to_vec(), "body"),
        (br#"{"nothing": 1}"#.to_vec(), "message"),
        (
            br#"{"message": {"call": {"id": "c"}}}"#.to_vec(),
            "message.type",
        ),
        (
            br#"{"message": {"type": "status-update", "status": "ringing"}}"#.to_vec(),
            "message.call",
        ),
        (
            br#"{"message": {"type": "status-update", "status": "ringing", "call": {"id": 42}}}"#
                .to_vec(),
            "message.call.id",
        ),
        (
            br#"{"message": {"type": "status-update", "call": {"id": "c"}}}"#.to_vec(),
            "message.status",
        ),
        (
            b"{\"message\": {\"type\": \"status-update\xff\"}}".to_vec(),
            "body",
        ),
    ];
    for (body, field) in payload_cases {
        let response = app.deliver_bytes(&body).await;
        assert_eq!(response.status, 400, "{field}: {}", response.text());
        assert_eq!(response.json()["field"], field, "{}", response.text());
    }

    // Call type: unknown → 400 and the checklist's search term.
    let mut unknown_type = inbound_start(&unique_id("call"), &agent.assistant_id, CALLER);
    unknown_type["message"]["call"]["type"] = json!("carrierPigeonCall");
    let response = app.deliver(&unknown_type).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["field"], "message.call.type");
    let line = app
        .logs("Cannot determine call type")
        .await
        .pop()
        .expect("search term logged");
    assert_eq!(line["call_id"], unknown_type["message"]["call"]["id"]);

    // Content type, method, size.
    let mut text_headers = signed.clone();
    text_headers[0].1 = "text/plain".into();
    let text_headers: Vec<(&str, &str)> = text_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        app.host
            .post("/webhooks/vapi", &text_headers, valid.clone())
            .await
            .status,
        415
    );
    let get = app.host.get("/webhooks/vapi").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
    // A body over 5 MiB is refused from its content-length, before it is read.
    assert_eq!(
        status_of_oversized_post(app.host.addr, 5 * 1024 * 1024 + 1).await,
        413
    );

    // None of it touched the database.
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM processed_webhook_events")
            .await,
        0
    );
    assert_eq!(app.db.count("SELECT count(*) FROM call_logs").await, 0);
    // Every line the host and component wrote is JSON, and none holds a secret.
    for line in app.host.lines() {
        if is_banner(host, &line) {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            value["level"].is_string() && value["msg"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains(HMAC_SECRET) && !line.contains(RELAY_SECRET),
            "secret in log: {line}"
        );
        assert!(!line.contains(CALLER), "full phone number in log: {line}");
    }
}

/// Fail closed: with no verification secret every webhook is refused, with one
/// CRITICAL line per request, and nothing is written.
async fn without_secrets_every_webhook_is_refused(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let host = Host::start(db.host_options().on(kind));
    let body = serde_json::to_vec(&inbound_start(
        &unique_id("call"),
        &agent.assistant_id,
        CALLER,
    ))
    .unwrap();
    let headers = vapi_headers(&body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = host.post("/webhooks/vapi", &headers, body).await;
    assert_eq!(response.status, 503, "{}", response.text());
    host.wait_for_log(Duration::from_secs(5), |l| l["msg"] == "Webhook failed")
        .await;
    let critical: Vec<Value> = host
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "CRITICAL")
        .collect();
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(critical[0]["error"]
        .as_str()
        .unwrap()
        .contains("vapi_hmac_secret"));
    assert_eq!(
        db.count("SELECT count(*) FROM processed_webhook_events")
            .await,
        0
    );
}

/// The shared-secret modes Vapi offers: `x-vapi-secret` and `Authorization: Bearer`.
async fn shared_secret_headers_are_accepted_and_wrong_ones_refused(
    store: StoreKind,
    kind: HostKind,
) {
    let db = TestDb::migrated_on(store).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let host = Host::start(
        db.host_options()
            .on(kind)
            .var("vapi_server_secret", format!("old-secret,{SERVER_SECRET}")),
    );
    let bearer = format!("Bearer {SERVER_SECRET}");
    for (name, value, status) in [
        ("x-vapi-secret", SERVER_SECRET, 200),
        ("authorization", bearer.as_str(), 200),
        ("x-vapi-secret", "wrong", 401),
        ("authorization", "Bearer wrong", 401),
    ] {
        let body = serde_json::to_vec(&inbound_start(
            &unique_id("call"),
            &agent.assistant_id,
            CALLER,
        ))
        .unwrap();
        let response = host
            .post(
                "/webhooks/vapi",
                &[("content-type", "application/json"), (name, value)],
                body,
            )
            .await;
        assert_eq!(response.status, status, "{name}: {}", response.text());
    }
    assert_eq!(db.count("SELECT count(*) FROM call_tracking").await, 2);
}

/// Message types this version does not act on are acknowledged, logged once, and change nothing.
async fn unhandled_message_types_are_acknowledged_without_side_effects(store: StoreKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    for name in [
        "04-inbound-transcript-final.json",
        "14-undocumented-type-assistant-started.json",
    ] {
        let mut body = fixture(name);
        retarget(&mut body, &unique_id("call"), &agent.assistant_id);
        let response = app.deliver(&body).await;
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(response.json()["outcome"], "ignored");
    }
    while app.logs("Webhook handled").await.len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<Value> = app
        .host
        .json_lines()
        .into_iter()
        .filter(|l| l["outcome"] == "ignored")
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["level"] == "INFO"));
    assert_eq!(app.db.count("SELECT count(*) FROM call_logs").await, 0);
}

/// The statements the host sent through `proxy` since `from`, once `count` of
/// them have arrived and nothing more follows for a moment.
/// A call-start event costs one database round trip: the recording statement
/// (agent, lead, idempotency record, call_tracking and call_logs in one).
/// The only other statement is the event record for /metrics, sent after the
/// response; a duplicate caught by the key-value store sends only that one.
/// Counted on the wire, by a proxy that reads every statement the host sends.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_start_event_is_one_database_round_trip() {
    use vapi_edge_core::pg_sql::{INSERT_EVENT_ROW, RECORD_EVENT_CALL};
    let proxy = PgProxy::start().await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let extra = proxy.variables(&db);
    let app = WebhookApp::start_with_db(
        db,
        AppOptions {
            extra,
            ..Default::default()
        },
    );
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let body = inbound_start(&unique_id("call"), &agent.assistant_id, CALLER);
        let from = proxy.executed().len();
        assert_eq!(app.deliver(&body).await.json()["outcome"], "recorded");
        let sent = proxy.statements_since(from, 2).await;
        assert_eq!(
            sent,
            [RECORD_EVENT_CALL, INSERT_EVENT_ROW],
            "statements of one call-start"
        );
        bodies.push(body);
    }
    let from = proxy.executed().len();
    assert_eq!(app.deliver(&bodies[0]).await.json()["outcome"], "duplicate");
    assert_eq!(proxy.statements_since(from, 1).await, [INSERT_EVENT_ROW]);
}

/// Answers say how long they are (no chunked encoding), and `HEAD /healthz`
/// answers the status and headers of `GET` without a body.
async fn responses_carry_their_length_and_head_has_no_body(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let answers = [
        app.deliver(&inbound_start(&call_id, &agent.assistant_id, CALLER))
            .await,
        app.deliver_bytes(b"{\"message\": {}}").await,
        app.host.get("/healthz").await,
    ];
    for answer in &answers {
        let length = answer
            .headers
            .get("content-length")
            .map(|v| v.to_str().unwrap());
        assert_eq!(
            length,
            Some(answer.body.len().to_string().as_str()),
            "{}",
            answer.text()
        );
        assert!(answer.headers.get("transfer-encoding").is_none());
    }
    let head = send(app.host.addr, "HEAD", "/healthz", &[], Vec::new()).await;
    assert_eq!(head.status, answers[2].status);
    assert!(head.body.is_empty());
}

/// Sends only the head of a POST announcing `length` bytes and reads the status
/// line: the server must answer without waiting for the body.
async fn status_of_oversized_post(addr: std::net::SocketAddr, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/vapi HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buffer[..read]);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The newcomer's path (README, "Send a signed test webhook"):
/// `vapi-edge-host seed-agent` adds an agent and its line, `vapi-edge-host
/// sign` prints the headers a Vapi HMAC credential sends, and the component
/// accepts the signed webhook and answers the line's assistant-request.
async fn the_seed_and_sign_commands_make_a_webhook_the_component_accepts(store: StoreKind) {
    use std::io::Write;
    let app = WebhookApp::start(AppOptions {
        store,
        ..Default::default()
    })
    .await;
    let assistant_id = unique_id("asst");
    let database = match store {
        StoreKind::Postgres => vec!["--pg-url".to_string(), app.db.url.clone()],
        StoreKind::Sqlite => vec![
            "--sqlite".to_string(),
            app.db.sqlite_path().display().to_string(),
        ],
    };
    let mut seed = vec![
        "seed-agent",
        "--org-id",
        ORG_ID,
        "--assistant-id",
        &assistant_id,
        "--name",
        "Ava",
        "--line",
        LINE,
    ];
    seed.extend(database.iter().map(String::as_str));
    let output = run_host(&seed);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It says which database it wrote to, without the URL's credentials.
    let said = String::from_utf8_lossy(&output.stdout);
    let written_to = match store {
        StoreKind::Postgres => format!("written to PostgreSQL 127.0.0.1:5432/{}", app.db.name),
        StoreKind::Sqlite => format!("written to SQLite {}", app.db.sqlite_path().display()),
    };
    assert!(said.contains(&written_to), "{said}");
    let mut request = fixture("01-inbound-assistant-request.json");
    request["message"]["call"]["id"] = json!(unique_id("call"));
    let answer = app.deliver(&request).await;
    assert_eq!(answer.json(), json!({ "assistantId": assistant_id }));

    let body =
        serde_json::to_vec(&inbound_start(&unique_id("call"), &assistant_id, CALLER)).unwrap();
    let mut child = std::process::Command::new(host_binary())
        .args(["sign", "--secret", HMAC_SECRET])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let headers: Vec<(String, String)> = text
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("`name: value`");
            (name.to_string(), value.to_string())
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type", "x-signature", "x-timestamp"]);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = app.host.post("/webhooks/vapi", &headers, body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["outcome"], "recorded");
}

/// A fresh clone's run: no `pg_url`, no runtime config, no migrate step. The
/// component migrates the built-in store on first use (as under `spin build
/// --up`), in `.spin/sqlite_db.db` beside spin.toml, and records calls there.
async fn zero_config_run_records_into_the_builtin_sqlite_store(store: StoreKind, kind: HostKind) {
    assert_eq!(store, StoreKind::Sqlite, "the zero-config store is SQLite");
    let dir = temp_dir("zero-config");
    let manifest = app_manifest(&dir);
    let host = Host::start(
        HostOptions {
            manifest: manifest.clone(),
            ..Default::default()
        }
        .on(kind)
        .var("vapi_hmac_secret", HMAC_SECRET),
    );
    let health = host.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["checks"]["sqlite"]["ok"], true);
    let database = dir.join(".spin/sqlite_db.db");
    assert!(database.exists(), "no {}", database.display());

    let assistant_id = unique_id("asst");
    let output = run_host(&[
        "seed-agent",
        "--from",
        manifest.to_str().unwrap(),
        "--org-id",
        ORG_ID,
        "--assistant-id",
        &assistant_id,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let call_id = unique_id("call");
    let body = serde_json::to_vec(&inbound_start(&call_id, &assistant_id, CALLER)).unwrap();
    let headers = vapi_headers(&body);
    let response = host
        .post("/webhooks/vapi", &header_refs(&headers), body)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["outcome"], "recorded");

    let rows = rusqlite::Connection::open(&database)
        .unwrap()
        .query_row(
            "SELECT (SELECT count(*) FROM call_tracking WHERE vapi_call_id = ?1),
                    (SELECT count(*) FROM call_logs WHERE vapi_call_id = ?1),
                    (SELECT count(*) FROM processed_webhook_events WHERE vapi_call_id = ?1)",
            [&call_id],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(rows, (1, 1, 1));
}

// Each test body above, once per store: `postgres::<name>` and `sqlite::<name>`.
on_every_store!(
    the_database_refuses_a_duplicate_the_key_value_store_forgot,
    an_invalid_number_is_a_masked_warning_and_the_call_is_tracked,
    ten_inbound_calls_are_all_tracked,
    statuses_never_move_backwards,
    outbound_and_web_calls_are_logged_but_not_tracked,
    unhandled_message_types_are_acknowledged_without_side_effects,
    the_seed_and_sign_commands_make_a_webhook_the_component_accepts,
);

// The scenarios that must behave the same under real Spin (see `conformance!`).
conformance! {
    every_store: [
        inbound_call_creates_tracking_and_log_rows_linked_to_the_lead,
        the_same_webhook_twice_records_once,
        unknown_assistant_is_retried_then_500_and_a_later_retry_succeeds,
        relay_notifications_are_signed_and_their_failure_never_fails_the_webhook,
        twenty_concurrent_duplicates_make_one_effect,
        responses_carry_their_length_and_head_has_no_body,
        bad_requests_get_the_right_status_and_name_the_field,
        without_secrets_every_webhook_is_refused,
        shared_secret_headers_are_accepted_and_wrong_ones_refused,
    ],
    postgres: [],
    sqlite: [zero_config_run_records_into_the_builtin_sqlite_store],
    host_only: [],
}
