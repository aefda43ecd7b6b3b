//! The dashboard's API, end to end through the real `.wasm`, on both stores
//! and under both hosts (`conformance!`): each organisation's token sees its
//! own calls only, numbers are masked, a page that has not changed is 304, and
//! paging neither repeats nor skips a call while new calls arrive.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const OPERATOR_TOKEN: &str = "operator-token-7d41c0a2";
const TOKEN_A: &str = "token-of-org-a-51e9b7";
const TOKEN_B: &str = "token-of-org-b-0c3d88";
const CALLER: &str = "+12125550187";

fn dashboard_vars() -> Vec<(String, String)> {
    vec![(
        "dashboard_token".into(),
        format!("{OPERATOR_TOKEN},{ORG_ID}:{TOKEN_A},{OTHER_ORG_ID}:{TOKEN_B}"),
    )]
}

async fn dashboard_app(store: StoreKind, host: HostKind) -> WebhookApp {
    WebhookApp::start(AppOptions {
        host,
        store,
        extra: dashboard_vars(),
        ..Default::default()
    })
    .await
}

async fn api(host: &Host, path: &str, token: &str) -> TestResponse {
    send_bearer(host.addr, "GET", path, token).await
}

async fn api_json(host: &Host, path: &str, token: &str) -> Value {
    let response = api(host, path, token).await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

fn call_ids(page: &Value) -> Vec<String> {
    page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["vapi_call_id"].as_str().unwrap().to_string())
        .collect()
}

/// Three calls of two organisations: an inbound call in progress and an
/// inbound call ended with its report (org A), an outbound call ringing
/// (org B).
async fn the_dashboard_shows_each_organisation_its_own_calls(store: StoreKind, host: HostKind) {
    let app = dashboard_app(store, host).await;
    let ava = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let otto = app.db.seed_agent(OTHER_ORG_ID, "outbound", "Otto").await;
    let in_progress = unique_id("call");
    let ended = unique_id("call");
    let outbound = unique_id("call");
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &ended, &ava.assistant_id);
    let mut ringing = fixture("09-outbound-status-update-ringing.json");
    retarget(&mut ringing, &outbound, &otto.assistant_id);
    for body in [
        inbound_start(&in_progress, &ava.assistant_id, CALLER),
        report,
        ringing,
    ] {
        let response = app.deliver(&body).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    // The page itself is public; the API is not.
    let page = app.host.get("/dashboard").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>vapi-edge"));
    assert_eq!(app.host.get("/api/calls").await.status, 401);
    assert_eq!(
        api(&app.host, "/api/calls", "not-a-token-00000000")
            .await
            .status,
        401
    );

    let of_a = api_json(&app.host, "/api/calls", TOKEN_A).await;
    let ids_a: HashSet<String> = call_ids(&of_a).into_iter().collect();
    assert_eq!(ids_a, HashSet::from([in_progress.clone(), ended.clone()]));
    let of_b = api_json(&app.host, "/api/calls", TOKEN_B).await;
    assert_eq!(call_ids(&of_b), [outbound.as_str()]);
    assert_eq!(of_b["calls"][0]["direction"], "outbound");
    assert_eq!(of_b["calls"][0]["status"], "ringing");
    assert_eq!(of_b["calls"][0]["agent_name"], "Otto");
    let all = api_json(&app.host, "/api/calls", OPERATOR_TOKEN).await;
    assert_eq!(call_ids(&all).len(), 3);
    // Newest first.
    assert_eq!(call_ids(&all)[0], outbound);

    let started = of_a["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["vapi_call_id"] == in_progress.as_str())
        .unwrap();
    assert_eq!(started["status"], "in-progress");
    assert_eq!(started["direction"], "inbound");
    assert_eq!(started["agent_name"], "Ava");
    assert_eq!(started["from_number"], "+12*******87");
    assert!(
        !of_a.to_string().contains(&CALLER[1..]),
        "a full number: {of_a}"
    );

    // One call in full, and the same call hidden from the other organisation.
    let path = format!("/api/calls/{ended}");
    let detail = api_json(&app.host, &path, TOKEN_A).await;
    assert_eq!(detail["status"], "ended");
    assert_eq!(detail["agent_name"], "Ava");
    assert!(
        detail["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{detail}"
    );
    assert!(detail["ended_reason"].is_string(), "{detail}");
    let events = detail["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{detail}");
    assert_eq!(events[0]["message_type"], "end-of-call-report");
    assert_eq!(events[0]["outcome"], "recorded");
    assert_eq!(api(&app.host, &path, TOKEN_B).await.status, 404);
    assert_eq!(
        api(&app.host, &format!("/api/calls/{outbound}"), TOKEN_A)
            .await
            .status,
        404
    );

    let summary = api_json(&app.host, "/api/summary", TOKEN_A).await;
    assert_eq!(summary["calls_today"], 2, "{summary}");
    assert_eq!(summary["in_progress"], 1, "{summary}");
    assert_eq!(summary["scope"], json!([ORG_ID]));
    let hourly = summary["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 24);
    let calls: i64 = hourly.iter().map(|h| h["calls"].as_i64().unwrap()).sum();
    assert_eq!(calls, 2, "{summary}");
    let summary_b = api_json(&app.host, "/api/summary", TOKEN_B).await;
    assert_eq!(summary_b["calls_today"], 1, "{summary_b}");
    assert_eq!(summary_b["in_progress"], 1, "{summary_b}");
    let summary_all = api_json(&app.host, "/api/summary", OPERATOR_TOKEN).await;
    assert_eq!(summary_all["calls_today"], 3, "{summary_all}");
    assert_eq!(summary_all["scope"], "all");

    // Filters.
    let ended_only = api_json(&app.host, "/api/calls?status=ended", OPERATOR_TOKEN).await;
    assert_eq!(call_ids(&ended_only), [ended.as_str()]);
    let outbound_only = api_json(&app.host, "/api/calls?direction=outbound", OPERATOR_TOKEN).await;
    assert_eq!(call_ids(&outbound_only), [outbound.as_str()]);

    // Nothing changed: 304 without a body; a new event changes the answer.
    let first = api(&app.host, "/api/calls", TOKEN_A).await;
    let etag = first.headers["etag"].to_str().unwrap().to_string();
    let if_changed = || async {
        let bearer = format!("Bearer {TOKEN_A}");
        let headers = [("authorization", bearer.as_str()), ("if-none-match", &etag)];
        send(app.host.addr, "GET", "/api/calls", &headers, Vec::new()).await
    };
    let again = if_changed().await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    app.deliver(&inbound_start(
        &unique_id("call"),
        &ava.assistant_id,
        CALLER,
    ))
    .await;
    let changed = if_changed().await;
    assert_eq!(changed.status, 200);
    assert_eq!(call_ids(&changed.json()).len(), 3);
}

/// Seven calls read three at a time while two more arrive between pages:
/// the pages hold the seven, each once, and the new ones top the first page.
async fn paging_neither_repeats_nor_skips_while_calls_arrive(store: StoreKind, host: HostKind) {
    let app = dashboard_app(store, host).await;
    let ava = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let mut before = Vec::new();
    for _ in 0..7 {
        let id = unique_id("call");
        app.deliver(&inbound_start(&id, &ava.assistant_id, CALLER))
            .await;
        before.push(id);
        // SQLite keeps milliseconds: one call per millisecond at most, so
        // that "newest first" is the delivery order reversed.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arrived = Vec::new();
    for page_number in 0.. {
        let path = match &cursor {
            None => "/api/calls?limit=3".to_string(),
            Some(c) => format!("/api/calls?limit=3&cursor={c}"),
        };
        let page = api_json(&app.host, &path, TOKEN_A).await;
        seen.extend(call_ids(&page));
        if page_number < 2 {
            let id = unique_id("call");
            app.deliver(&inbound_start(&id, &ava.assistant_id, CALLER))
                .await;
            arrived.push(id);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(page_number < 5, "paging does not end: {seen:?}");
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let seen_set: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen_set, before.iter().collect::<HashSet<_>>());
    // Newest first: the reverse of the order they were delivered in.
    let mut newest_first = before.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let top = api_json(&app.host, "/api/calls?limit=2", TOKEN_A).await;
    let mut expected = arrived.clone();
    expected.reverse();
    assert_eq!(call_ids(&top), expected);
    assert_eq!(
        api(&app.host, "/api/calls?limit=500", TOKEN_A).await.status,
        400
    );
}

/// Every parameter of the API with bad values, on both stores: each is the
/// client's mistake, answered 4xx naming the parameter where there is one,
/// and never a 5xx or an ERROR line (which would page whoever watches the
/// database). A cursor that looks right but holds an impossible time is the
/// case PostgreSQL used to fail on (SQLSTATE 22008).
async fn every_bad_api_parameter_is_a_4xx_and_no_error(store: StoreKind, host: HostKind) {
    use base64::Engine as _;
    let app = dashboard_app(store, host).await;
    let ava = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let started = app
        .deliver(&inbound_start(&call_id, &ava.assistant_id, CALLER))
        .await;
    assert_eq!(started.status, 200);
    let cursor = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let uuid = "0b5e3c1d-2a4f-4e6b-8c7d-9e1f2a3b4c5d";
    let long_id = "x".repeat(201);
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("/api/calls?limit=0".into(), 400, Some("limit")),
        ("/api/calls?limit=101".into(), 400, Some("limit")),
        ("/api/calls?limit=-1".into(), 400, Some("limit")),
        ("/api/calls?limit=1e3".into(), 400, Some("limit")),
        (
            "/api/calls?limit=99999999999999999999".into(),
            400,
            Some("limit"),
        ),
        ("/api/calls?status=done".into(), 400, Some("status")),
        ("/api/calls?status=%00".into(), 400, Some("status")),
        (
            "/api/calls?direction=sideways".into(),
            400,
            Some("direction"),
        ),
        (
            "/api/calls?direction=INBOUND".into(),
            400,
            Some("direction"),
        ),
        ("/api/calls?cursor=%%%".into(), 400, Some("cursor")),
        ("/api/calls?cursor=not-a-cursor".into(), 400, Some("cursor")),
        (
            format!("/api/calls?cursor={}", cursor("2026|x")),
            400,
            Some("cursor"),
        ),
        (
            format!(
                "/api/calls?cursor={}",
                cursor(&format!("2026-13-45T25:61:61.000000Z|{uuid}"))
            ),
            400,
            Some("cursor"),
        ),
        (
            format!(
                "/api/calls?cursor={}",
                cursor(&format!("2026-02-30T00:00:00.000Z|{uuid}"))
            ),
            400,
            Some("cursor"),
        ),
        (
            format!(
                "/api/calls?cursor={}",
                cursor(&format!("99999-01-01T00:00:00.000Z|{uuid}"))
            ),
            400,
            Some("cursor"),
        ),
        (
            format!(
                "/api/calls?cursor={}",
                cursor("2026-12-07T18:42:54.000Z|not-a-uuid")
            ),
            400,
            Some("cursor"),
        ),
        (format!("/api/calls/{long_id}"), 400, Some("vapi_call_id")),
        ("/api/calls/no-such-call".into(), 404, None),
        ("/api/calls/%E2%80%AE%00".into(), 400, Some("vapi_call_id")),
        ("/api/calls/call%0Aid".into(), 400, Some("vapi_call_id")),
        ("/api/calls/%E2%80%AEcall".into(), 404, None),
        ("/api/nothing-here".into(), 404, None),
        ("/api".into(), 404, None),
    ];
    for (path, status, field) in &cases {
        let response = api(&app.host, path, OPERATOR_TOKEN).await;
        assert_eq!(response.status, *status, "{path}: {}", response.text());
        if let Some(field) = field {
            assert_eq!(response.json()["field"], *field, "{path}");
        }
    }
    // Not a token's: 401 whatever the parameters.
    let response = api(&app.host, "/api/calls?cursor=%%%", "not-a-token-0000000").await;
    assert_eq!(response.status, 401);
    // A good request still answers after them all.
    let page = api_json(&app.host, "/api/calls?limit=1", OPERATOR_TOKEN).await;
    assert_eq!(call_ids(&page), [call_id]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let errors: Vec<Value> = app
        .host
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR" || l["level"] == "CRITICAL")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    println!(
        "[dashboard] {} {}: {} bad API requests: each 4xx, 0 ERROR lines",
        host.name(),
        store.name(),
        cases.len() + 1
    );
}

/// The transcript, summary and structured data of a call hold the caller's
/// numbers too: masked there as well unless `dashboard_full_numbers`.
async fn numbers_in_a_calls_free_text_are_masked(store: StoreKind, host: HostKind) {
    let app = dashboard_app(store, host).await;
    let ava = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &call_id, &ava.assistant_id);
    let message = &mut report["message"];
    message["analysis"]["summary"] = "Wants a call back on 415-555-0199 after 5.".into();
    message["analysis"]["structuredData"] =
        json!({"callback": "+1 (212) 555-0187", "notes": ["alt: 212.555.0111"]});
    message["artifact"]["transcript"] = "User: my number is (415) 555 0188.\nAI: Thank you.".into();
    let response = app.deliver(&report).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let detail = api(&app.host, &format!("/api/calls/{call_id}"), OPERATOR_TOKEN).await;
    assert_eq!(detail.status, 200, "{}", detail.text());
    let text = detail.text();
    for digits in ["4155550199", "555-0199", "555-0187", "555.0111", "555 0188"] {
        assert!(!text.contains(digits), "{digits} in {text}");
    }
    let body = detail.json();
    assert_eq!(body["summary"], "Wants a call back on 41******99 after 5.");
    assert_eq!(body["structured_data"]["callback"], "+12*******87");
    assert_eq!(body["vapi_call_id"], call_id.as_str());
}

conformance! {
    every_store: [
        the_dashboard_shows_each_organisation_its_own_calls,
        paging_neither_repeats_nor_skips_while_calls_arrive,
        every_bad_api_parameter_is_a_4xx_and_no_error,
        numbers_in_a_calls_free_text_are_masked,
    ],
    postgres: [],
    sqlite: [],
    host_only: [],
}
