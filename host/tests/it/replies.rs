//! The traffic Vapi really sends, end to end through the real `.wasm`, on both
//! stores and under both hosts (`conformance!`): calls that no single
//! assistant ran are still recorded, every message whose reply Vapi uses is
//! answered in Vapi's shape (by the upstream when one is set, else here), and
//! a call type this version does not know is kept for replay.
//!
//! Payloads are built from the OpenAPI schema's names (`toolCallList`,
//! `squadId`, `phoneNumberId`, ...), not only from the shared examples.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";
const LINE: &str = "+14155550142";
const UPSTREAM_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn upstream_vars(upstream: &Relay) -> Vec<(String, String)> {
    vec![
        ("upstream_url".into(), format!("{}/vapi", upstream.origin())),
        ("upstream_allowed_host".into(), upstream.origin()),
        ("upstream_secret".into(), UPSTREAM_SECRET.into()),
    ]
}

fn tokens() -> Vec<(String, String)> {
    vec![("admin_token".into(), ADMIN_TOKEN.into())]
}

/// A `tool-calls` message with three calls to tools run on our server.
fn tool_calls(call_id: &str) -> Value {
    json!({"message": {
    "type": "tool-calls",
    "timestamp": now_ms(),
    "call": {"id": call_id, "orgId": "vapi-org-1", "type": "inboundPhoneCall",
             "phoneCallProvider": "twilio"},
    "toolCallList": [
        {"id": "call_tool_1", "type": "function",
         "function": {"name": "book_appointment", "arguments": {"day": "monday"}}},
        {"id": "call_tool_2", "type": "function",
         "function": {"name": "check_insurance", "arguments": "{}"}},
        {"id": "call_tool_3", "type": "function",
         "function": {"name": "send_sms", "arguments": {"to": CALLER}}}
    ]}})
}

/// Without an upstream: one error result per tool call, each with its id.
async fn tool_calls_without_an_upstream_get_a_result_each(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let response = app.deliver(&tool_calls(&unique_id("call"))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let results = response.json()["results"].as_array().unwrap().clone();
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["toolCallId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["call_tool_1", "call_tool_2", "call_tool_3"]);
    assert_eq!(results[0]["name"], "book_appointment");
    assert!(results.iter().all(|r| r["error"].is_string()));
    assert_eq!(app.db.count("SELECT count(*) FROM call_logs").await, 0);
}

/// With an upstream: its answer goes back as it is, and what it received is
/// the verified body, signed with `upstream_secret`, without Vapi's credential.
async fn tool_calls_go_to_the_upstream_and_its_answer_comes_back(store: StoreKind, host: HostKind) {
    const ANSWER: &str = r#"{"results":[{"toolCallId":"call_tool_1","result":"booked for monday"},{"toolCallId":"call_tool_2","result":"covered"},{"toolCallId":"call_tool_3","result":"sent"}]}"#;
    let upstream = Relay::start(RelayMode::Answer(ANSWER, Duration::ZERO)).await;
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        extra: upstream_vars(&upstream),
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&tool_calls(&unique_id("call"))).unwrap();
    let response = app.deliver_bytes(&body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), ANSWER, "verbatim");
    let hits = upstream.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.body, body, "the verified body, as Vapi sent it");
    for credential in [
        "x-signature",
        "x-timestamp",
        "x-vapi-secret",
        "authorization",
    ] {
        assert!(
            hit.headers.get(credential).is_none(),
            "{credential} forwarded"
        );
    }
    assert_eq!(
        hit.headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    let headers = hit.verified_headers(UPSTREAM_SECRET);
    assert!(headers
        .one("webhook-id")
        .unwrap()
        .unwrap()
        .starts_with("msg_"));
}

/// An upstream that answers after the deadline: the fallback answers within
/// `upstream_timeout_ms`, with the search term and a count in `/metrics`.
async fn a_slow_upstream_gets_the_fallback_within_the_deadline(store: StoreKind, host: HostKind) {
    let upstream = Relay::start(RelayMode::Answer("{}", Duration::from_secs(10))).await;
    let mut extra = upstream_vars(&upstream);
    extra.push(("upstream_timeout_ms".into(), "1500".into()));
    extra.push(("metrics_token".into(), METRICS_TOKEN.into()));
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        extra,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let response = app.deliver(&tool_calls(&unique_id("call"))).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["results"].as_array().unwrap().len(),
        3,
        "{}",
        response.text()
    );
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(4000),
        "answered after {elapsed:?}"
    );
    println!(
        "[replies] {} {}: upstream sleeping 10 s, upstream_timeout_ms 1500: fallback after {} ms",
        host.name(),
        store.name(),
        elapsed.as_millis()
    );
    let failed = app.logs("Upstream failed").await;
    assert_eq!(failed[0]["reason"], "timeout");
    // The event row is written after the response.
    for _ in 0..100 {
        if app
            .db
            .count("SELECT count(*) FROM webhook_events WHERE error_class = 'upstream'")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics(app.host.addr).await;
    assert!(
        metrics.contains("vapi_edge_upstream_failures_total 1"),
        "{metrics}"
    );
}

/// Without an upstream, each reply-expecting type gets Vapi's documented shape.
async fn every_reply_type_is_answered_in_vapis_shape(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        extra: vec![("campaign_predial_eligible".into(), "true".into())],
        ..Default::default()
    })
    .await;
    let call = json!({"id": unique_id("call"), "type": "inboundPhoneCall"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "transfer-destination-request", "call": call}),
            "error",
        ),
        (
            json!({"type": "handoff-destination-request", "call": call}),
            "error",
        ),
        (
            json!({"type": "knowledge-base-request", "call": call,
                   "messages": [{"role": "user", "message": "opening hours?"}]}),
            "documents",
        ),
        (
            json!({"type": "call.endpointing.request", "call": call}),
            "timeoutSeconds",
        ),
        (
            json!({"type": "campaign.predial", "customer": {"number": CALLER}}),
            "eligible",
        ),
        (
            json!({"type": "function-call", "call": call,
                   "functionCall": {"name": "lookup", "parameters": {}}}),
            "result",
        ),
    ];
    for (message, key) in cases {
        let kind = message["type"].as_str().unwrap().to_string();
        let response = app.deliver(&json!({ "message": message })).await;
        assert_eq!(response.status, 200, "{kind}: {}", response.text());
        let body = response.json();
        assert!(body.get(key).is_some(), "{kind}: {body}");
        match kind.as_str() {
            "knowledge-base-request" => assert_eq!(body["documents"], json!([])),
            "campaign.predial" => assert_eq!(body["eligible"], true),
            "call.endpointing.request" => assert!(body["timeoutSeconds"].is_number()),
            _ => {}
        }
    }
    let voice = app
        .deliver(&json!({"message": {"type": "voice-request", "call": call,
            "text": "Hello", "sampleRate": 24000}}))
        .await;
    assert_eq!(voice.status, 200);
    assert_eq!(
        voice.headers["content-type"].to_str().unwrap(),
        "application/octet-stream"
    );
    // Types that need no reply are acknowledged at once.
    let started = Instant::now();
    let hang = app
        .deliver(&json!({"message": {"type": "hang", "call": call}}))
        .await;
    assert_eq!(hang.json()["outcome"], "ignored");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A status update of a call that no single assistant ran.
fn start_without_assistant(call_id: &str, call: Value) -> Value {
    let mut body = fixture("03-inbound-status-update-in-progress.json");
    let message = &mut body["message"];
    message["call"] = call;
    message["call"]["id"] = call_id.into();
    message["call"]["type"] = "inboundPhoneCall".into();
    message["call"]["customer"] = json!({ "number": CALLER });
    message["assistant"] = Value::Null;
    message["phoneNumber"]["assistantId"] = Value::Null;
    message["phoneNumber"]["number"] = LINE.into();
    message["customer"]["number"] = CALLER.into();
    body
}

/// Squad, workflow and transient-assistant calls, and an inbound call whose
/// assistant-request failed: each is recorded for the right organisation
/// (with the mapped agent, or none), and a duplicate is still one row.
async fn calls_no_single_assistant_ran_are_recorded(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let squad_agent = app.db.seed_agent(ORG_ID, "squad-lead", "Squad").await;
    let workflow_agent = app.db.seed_agent(ORG_ID, "flow", "Flow").await;
    app.db
        .rows(
            "UPDATE agents SET vapi_squad_id = 'squad-1' WHERE id = $1",
            &[&squad_agent.id],
        )
        .await;
    app.db
        .rows(
            "UPDATE agents SET vapi_workflow_id = 'workflow-1' WHERE id = $1",
            &[&workflow_agent.id],
        )
        .await;
    app.db
        .rows(
            "INSERT INTO phone_numbers (org_id, phone_e164, vapi_phone_number_id) VALUES ($1, $2, 'pn-1')",
            &[ORG_ID, LINE],
        )
        .await;
    let failed = {
        let mut body = fixture("12-inbound-status-update-ended-assistant-request-failed.json");
        body["message"]["call"]["id"] = unique_id("call").into();
        body
    };
    let cases = [
        (
            "squad",
            start_without_assistant(&unique_id("call"), json!({"squadId": "squad-1"})),
            Some(squad_agent.id.clone()),
        ),
        (
            "workflow",
            start_without_assistant(&unique_id("call"), json!({"workflowId": "workflow-1"})),
            Some(workflow_agent.id.clone()),
        ),
        (
            "transient assistant",
            start_without_assistant(
                &unique_id("call"),
                json!({"assistant": {"name": "inline", "model": {"provider": "openai"}},
                       "phoneNumberId": "pn-1"}),
            ),
            None,
        ),
        ("failed assistant-request", failed, None),
    ];
    for (label, body, agent) in cases {
        let call_id = body["message"]["call"]["id"].as_str().unwrap().to_string();
        let response = app.deliver(&body).await;
        assert_eq!(response.status, 200, "{label}: {}", response.text());
        assert_eq!(response.json()["outcome"], "recorded", "{label}");
        let again = app.deliver(&body).await;
        assert_eq!(again.json()["outcome"], "duplicate", "{label}");
        let row = app
            .db
            .row(
                "SELECT org_id, agent_id, ended_reason FROM call_logs WHERE vapi_call_id = $1",
                &[&call_id],
            )
            .await
            .unwrap_or_else(|| panic!("{label}: no call_logs row"));
        assert_eq!(row.text(0), ORG_ID, "{label}");
        assert_eq!(row.opt(1), agent, "{label}");
        assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1), "{label}");
        if label == "failed assistant-request" {
            assert!(
                row.text(2).starts_with("assistant-request"),
                "{label}: {:?}",
                row.opt(2)
            );
        }
    }
    let warnings = app.logs("Call recorded without an agent").await;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

/// A call type Vapi adds later: 400 now, kept as a dead letter, and recorded
/// by a replay once `call_type_aliases` names its direction.
async fn an_unknown_call_type_is_kept_and_replayed_once_known(store: StoreKind, host: HostKind) {
    let db = TestDb::migrated_on(store).await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let call_id = unique_id("call");
    let mut body = inbound_start(&call_id, &agent.assistant_id, CALLER);
    body["message"]["call"]["type"] = "vapi.sipCall".into();
    let app = WebhookApp::start_with_db(
        db,
        AppOptions {
            host,
            store,
            redis: false,
            extra: tokens(),
            ..Default::default()
        },
    );
    let response = app.deliver(&body).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["field"], "message.call.type");
    app.logs("Cannot determine call type").await;
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM dead_letters WHERE reason = 'invalid_call_type'")
            .await,
        1
    );
    let WebhookApp { host: first, db } = app;
    drop(first);

    // The operator maps the new type, restarts, and replays.
    let mut extra = tokens();
    extra.push(("call_type_aliases".into(), "vapi.sipCall=inbound".into()));
    let app = WebhookApp::start_with_db(
        db,
        AppOptions {
            host,
            store,
            redis: false,
            extra,
            ..Default::default()
        },
    );
    let report = app.replay().await;
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    let direction = app
        .db
        .row(
            "SELECT direction FROM call_logs WHERE vapi_call_id = $1",
            &[&call_id],
        )
        .await
        .unwrap();
    assert_eq!(direction.text(0), "inbound");
}

/// Vapi's Bearer credential with a header name of one's own sends the
/// `Bearer ` prefix there too (its default): accepted alone, and with HMAC.
async fn a_bearer_credential_in_a_custom_header_with_its_prefix(store: StoreKind, host: HostKind) {
    const TOKEN: &str = "bearer-token-in-custom-header";
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        extra: vec![
            ("vapi_hmac_secret".into(), String::new()),
            ("vapi_server_secret".into(), TOKEN.into()),
            ("vapi_server_secret_header".into(), "X-Vapi-Secret".into()),
        ],
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&tool_calls(&unique_id("call"))).unwrap();
    let send_with = |value: String| {
        let body = body.clone();
        let addr = app.host.addr;
        async move {
            send(
                addr,
                "POST",
                "/webhooks/vapi",
                &[
                    ("content-type", "application/json"),
                    ("x-vapi-secret", &value),
                ],
                body,
            )
            .await
        }
    };
    assert_eq!(send_with(format!("Bearer {TOKEN}")).await.status, 200);
    assert_eq!(send_with(TOKEN.to_string()).await.status, 200);
    let wrong = send_with("Bearer not-the-token".into()).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(!wrong.text().contains(TOKEN));
}

/// A tool call in the schema's shape and in the flat shape of Vapi's docs
/// example: each result names its tool (`ToolCallResult.name` is required).
async fn a_tool_call_in_either_shape_gets_its_name_back(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let body = json!({"message": {
    "type": "tool-calls", "timestamp": now_ms(),
    "call": {"id": unique_id("call"), "orgId": "vapi-org-1", "type": "webCall"},
    "toolCallList": [
        {"id": "call_schema", "type": "function",
         "function": {"name": "book_appointment", "arguments": {"day": "monday"}}},
        {"id": "call_flat", "name": "get_weather", "arguments": {"location": "San Francisco"}}
    ]}});
    let response = app.deliver(&body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let results = response.json()["results"].clone();
    assert_eq!(results[0]["toolCallId"], "call_schema");
    assert_eq!(results[0]["name"], "book_appointment");
    assert_eq!(results[1]["toolCallId"], "call_flat");
    assert_eq!(results[1]["name"], "get_weather");
    assert!(results[1]["error"].is_string());
    // Neither shape's name: 400, naming the field.
    let nameless = json!({"message": {"type": "tool-calls",
        "call": {"id": unique_id("call")}, "toolCallList": [{"id": "t1"}]}});
    let response = app.deliver(&nameless).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json()["field"],
        "message.toolCallList[0].function.name"
    );
}

/// The handoff fallback has the `destination` Vapi's schema requires (the
/// assistant speaking now) with the `error` that declines the handoff.
async fn the_handoff_fallback_has_a_destination(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let response = app
        .deliver(&json!({"message": {"type": "handoff-destination-request",
            "call": {"id": unique_id("call"), "type": "webCall"},
            "assistant": {"id": "asst-front-desk", "name": "Front desk"}}}))
        .await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(
        body["destination"],
        json!({"type": "assistant", "assistantId": "asst-front-desk"})
    );
    assert!(body["error"].is_string());
}

/// A tool Vapi waits 40 s for (`upstream_timeouts`): a 25 s answer comes
/// back, past the default 20 s and the host's old 30 s deadline; a tool
/// slower than 40 s gets the fallback at 40 s.
async fn a_25_s_tool_answers_within_its_40_s_deadline_and_a_slower_one_falls_back(
    store: StoreKind,
    host: HostKind,
) {
    let upstream = Relay::start(RelayMode::Tools).await;
    let mut extra = upstream_vars(&upstream);
    extra.push(("upstream_timeouts".into(), "tool-calls=40000".into()));
    let app = Arc::new(
        WebhookApp::start(AppOptions {
            host,
            store,
            extra,
            ..Default::default()
        })
        .await,
    );
    let tool = |name: &str| {
        json!({"message": {"type": "tool-calls", "timestamp": now_ms(),
            "call": {"id": unique_id("call"), "type": "webCall"},
            "toolCallList": [{"id": "t1", "type": "function", "function": {"name": name}}]}})
    };
    let timed = |body: Value| {
        let app = app.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = app.deliver(&body).await;
            (response, started.elapsed())
        })
    };
    let quick = timed(tool("wait_25000"));
    let slow = timed(tool("wait_60000"));
    let (answered, quick_took) = quick.await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert_eq!(answered.json()["results"][0]["result"], "done");
    assert!(
        quick_took >= Duration::from_secs(25) && quick_took < Duration::from_secs(30),
        "{quick_took:?}"
    );
    let (fallback, slow_took) = slow.await.unwrap();
    assert_eq!(fallback.status, 200, "{}", fallback.text());
    assert!(fallback.json()["results"][0]["error"].is_string());
    assert!(
        slow_took >= Duration::from_secs(40) && slow_took < Duration::from_secs(45),
        "{slow_took:?}"
    );
    println!(
        "[replies] {} {}: tool-calls=40000: a 25 s tool answered after {} ms, a 60 s one fell back after {} ms",
        host.name(),
        store.name(),
        quick_took.as_millis(),
        slow_took.as_millis()
    );
}

/// An `assistant-request` whose upstream sleeps past Vapi's 7.5 s: the line's
/// fallback assistant answers in time, and it is counted.
async fn an_assistant_request_falls_back_within_vapis_7_5_s(store: StoreKind, host: HostKind) {
    let upstream = Relay::start(RelayMode::Answer(
        r#"{"assistantId":"too-late"}"#,
        Duration::from_secs(8),
    ))
    .await;
    let mut extra = upstream_vars(&upstream);
    extra.push(("metrics_token".into(), METRICS_TOKEN.into()));
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        extra,
        ..Default::default()
    })
    .await;
    app.db.map_line(&[
        "--number",
        LINE,
        "--org-id",
        ORG_ID,
        "--vapi-phone-number-id",
        "pn-fallback",
        "--fallback-assistant-id",
        "asst-fallback",
    ]);
    let mut request = fixture("01-inbound-assistant-request.json");
    request["message"]["call"]["id"] = unique_id("call").into();
    request["message"]["phoneNumber"]["number"] = LINE.into();
    let started = Instant::now();
    let response = app.deliver(&request).await;
    let took = started.elapsed();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"assistantId": "asst-fallback"}));
    assert!(took < Duration::from_millis(7_500), "{took:?}");
    println!(
        "[replies] {} {}: assistant-request, upstream sleeping 8 s: the line's fallback after {} ms",
        host.name(),
        store.name(),
        took.as_millis()
    );
    for _ in 0..100 {
        let metrics = metrics(app.host.addr).await;
        if metrics.contains(
            r#"message_type="assistant-request",outcome="fallback",status_class="2xx"} 1"#,
        ) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the fallback is not counted: {}",
        metrics(app.host.addr).await
    );
}

/// An `assistant-request` that names its line only by `message.phoneNumber.id`
/// finds the line's agent.
async fn an_assistant_request_is_matched_by_its_phone_number_id(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        host,
        store,
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    app.db.map_line(&[
        "--number",
        LINE,
        "--org-id",
        ORG_ID,
        "--vapi-phone-number-id",
        "pn-by-id-only",
    ]);
    let request = json!({"message": {"type": "assistant-request", "timestamp": now_ms(),
        "call": {"id": unique_id("call"), "type": "inboundPhoneCall", "orgId": "vapi-org-1"},
        "phoneNumber": {"id": "pn-by-id-only"},
        "customer": {"number": CALLER}}});
    let response = app.deliver(&request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"assistantId": agent.assistant_id}),
        "matched by phoneNumber.id alone"
    );
}

conformance! {
    every_store: [
        tool_calls_without_an_upstream_get_a_result_each,
        tool_calls_go_to_the_upstream_and_its_answer_comes_back,
        a_slow_upstream_gets_the_fallback_within_the_deadline,
        every_reply_type_is_answered_in_vapis_shape,
        calls_no_single_assistant_ran_are_recorded,
        an_unknown_call_type_is_kept_and_replayed_once_known,
        a_bearer_credential_in_a_custom_header_with_its_prefix,
        a_tool_call_in_either_shape_gets_its_name_back,
        the_handoff_fallback_has_a_destination,
        a_25_s_tool_answers_within_its_40_s_deadline_and_a_slower_one_falls_back,
        an_assistant_request_falls_back_within_vapis_7_5_s,
        an_assistant_request_is_matched_by_its_phone_number_id,
    ],
    postgres: [],
    sqlite: [],
    host_only: [],
}
