//! Logs keep secrets and callers' numbers out: every line the host and the
//! component write, through every outcome, scanned for each secret and every
//! form of the caller's number.
//!
//! Figures are printed with the prefix `[reliability]`:
//! `cargo test --release -p vapi-edge-host --test it logging -- --nocapture | grep '\[reliability\]'`

use crate::common::*;
use serde_json::json;
use std::time::Duration;

const CALLER: &str = "+12125550187";
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
