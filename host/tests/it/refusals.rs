//! Refusals: hostile signatures and hostile bodies get the right 4xx and
//! change nothing, end to end through the real `.wasm`, in both hosts (each
//! has its own HTTP stack in front of the component) and on both stores.
//!
//! Figures are printed with the prefix `[reliability]`:
//! `cargo test --release -p vapi-edge-host --test it refusals -- --nocapture | grep '\[reliability\]'`

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CALLER: &str = "+12125550187";

/// Signatures an attacker can produce: every one is 401, none is accepted,
/// nothing is written; the genuine delivery of the same body then succeeds.
async fn hostile_signatures_are_all_refused_and_change_nothing(store: StoreKind, host: HostKind) {
    use vapi_edge_core::verify::{Algorithm, HmacScheme, SignatureEncoding};
    let app = WebhookApp::start(AppOptions {
        store,
        host,
        ..Default::default()
    })
    .await;
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
async fn hostile_bodies_get_the_right_4xx_and_leave_no_trace(store: StoreKind, host: HostKind) {
    let app = WebhookApp::start(AppOptions {
        store,
        host,
        ..Default::default()
    })
    .await;
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
        .filter(|l| {
            // vapi-edge-host's line for a trap, and Spin's.
            l.contains("request failed in the component")
                || l.contains("panicked")
                || l.contains("wasm trap")
        })
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

// The refusals must be the same under real Spin (see `conformance!`).
conformance! {
    every_store: [
        hostile_signatures_are_all_refused_and_change_nothing,
        hostile_bodies_get_the_right_4xx_and_leave_no_trace,
    ],
    postgres: [],
    sqlite: [],
    host_only: [],
}
