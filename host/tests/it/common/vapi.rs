//! What Vapi sends: the repository's example payloads, retargeted to a test's
//! call, and the headers of its HMAC credential.

use super::*;
use std::path::PathBuf;

pub const HMAC_SECRET: &str = "test-hmac-secret-7f3a";
pub const METRICS_TOKEN: &str = "metrics-token-5d1e";
pub const ADMIN_TOKEN: &str = "admin-token-8c2f";
pub const SERVER_SECRET: &str = "test-shared-secret-91c2";
/// The repository's example payloads of Vapi's server messages.
pub fn examples_dir() -> PathBuf {
    workspace_root().join("examples").join("vapi")
}

/// A payload from examples/vapi.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// An inbound call-start (`status-update` `in-progress`) for `call_id`, answered
/// by `assistant_id`, from `caller`.
pub fn inbound_start(call_id: &str, assistant_id: &str, caller: &str) -> serde_json::Value {
    let mut body = fixture("03-inbound-status-update-in-progress.json");
    retarget(&mut body, call_id, assistant_id);
    body["message"]["customer"]["number"] = caller.into();
    body["message"]["call"]["customer"]["number"] = caller.into();
    body
}

/// Points a fixture at another call and assistant (every place they appear).
pub fn retarget(body: &mut serde_json::Value, call_id: &str, assistant_id: &str) {
    let message = &mut body["message"];
    message["call"]["id"] = call_id.into();
    for path in [
        &["call", "assistantId"][..],
        &["assistant", "id"],
        &["phoneNumber", "assistantId"],
    ] {
        let mut node = &mut *message;
        for key in &path[..path.len() - 1] {
            node = &mut node[*key];
        }
        if node.is_object() {
            node[path[path.len() - 1]] = assistant_id.into();
        }
    }
}

/// Headers Vapi's HMAC credential (default settings) sends for `body`.
pub fn vapi_headers(body: &[u8]) -> Vec<(String, String)> {
    vapi_headers_at(body, &(now_ms() / 1000).to_string())
}

/// A payload's bytes, as sent.
pub fn bytes_of(body: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}

/// Borrowed view of owned headers: the shape `send` and `Host::post` take.
pub fn header_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The headers of `vapi_headers`, signed at a chosen `timestamp` (the text of
/// the `x-timestamp` header: Unix seconds or milliseconds).
pub fn vapi_headers_at(body: &[u8], timestamp: &str) -> Vec<(String, String)> {
    let scheme = vapi_edge_core::verify::HmacScheme::new(vec![HMAC_SECRET.into()]);
    let signature = scheme.sign(timestamp, body).unwrap();
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature".into(), signature),
        ("x-timestamp".into(), timestamp.to_string()),
    ]
}

/// `GET /metrics` with the metrics token (`metrics_token` = [`METRICS_TOKEN`]).
pub async fn metrics(addr: std::net::SocketAddr) -> String {
    let response = send_bearer(addr, "GET", "/metrics", METRICS_TOKEN).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

/// The sum of `vapi_edge_webhook_requests_total` over its labels.
pub fn webhook_requests_total(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter(|line| line.starts_with("vapi_edge_webhook_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}
