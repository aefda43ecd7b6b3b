//! A local fake of Vapi's REST API, as reconciliation reads it: `GET /call`
//! (filters `createdAtGe/Gt/Le/Lt`, `limit`, newest first, as Vapi answers)
//! and `GET /phone-number/{id}`, behind a Bearer private key; with 429s and a
//! slow page on demand. Its calls are `Call` objects shaped as Vapi's OpenAPI
//! `Call` schema (the tests build them).

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake holds and how it misbehaves; change it while it runs.
#[derive(Default)]
pub struct VapiApiState {
    pub key: String,
    pub calls: Vec<Value>,
    /// Phone-number id → its number.
    pub lines: HashMap<String, String>,
    /// The next this many requests are answered 429 (`Retry-After: 1`).
    pub rate_limit_next: usize,
    /// The list request with this index (0-based) waits this long.
    pub slow_page: Option<(usize, Duration)>,
    /// Every request: (path and query, authorised).
    pub requests: Vec<(String, bool)>,
    list_requests: usize,
}

pub struct VapiApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<VapiApiState>>,
}

impl VapiApi {
    pub async fn start(key: &str) -> VapiApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(VapiApiState {
            key: key.to_string(),
            ..VapiApiState::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(answer(&shared, request).await)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        VapiApi { addr, state }
    }

    /// `scheme://host:port`: the base URL and the allowed host.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, VapiApiState> {
        self.state.lock().unwrap()
    }

    /// The list requests made so far (path and query).
    pub fn list_requests(&self) -> Vec<String> {
        self.state()
            .requests
            .iter()
            .filter(|(path, _)| path.starts_with("/call"))
            .map(|(path, _)| path.clone())
            .collect()
    }
}

fn respond(status: u16, body: Value, retry_after: Option<&str>) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(after) = retry_after {
        headers.insert("retry-after", after.parse().unwrap());
    }
    response
}

async fn answer(
    shared: &Mutex<VapiApiState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (reply, wait) = {
        let mut state = shared.lock().unwrap();
        let authorised = presented.as_deref() == Some(&format!("Bearer {}", state.key));
        state.requests.push((target.clone(), authorised));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut wait = None;
        let reply = if !authorised {
            respond(
                401,
                json!({"message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.", "error": "Unauthorized", "statusCode": 401}),
                None,
            )
        } else if state.rate_limit_next > 0 {
            state.rate_limit_next -= 1;
            respond(
                429,
                json!({"message": "Too Many Requests", "statusCode": 429}),
                Some("1"),
            )
        } else if request.method() != hyper::Method::GET {
            respond(405, json!({}), None)
        } else if path == "/call" {
            if let Some((index, delay)) = state.slow_page {
                if index == state.list_requests {
                    wait = Some(delay);
                }
            }
            state.list_requests += 1;
            respond(200, Value::Array(list(&state.calls, query)), None)
        } else if let Some(id) = path.strip_prefix("/phone-number/") {
            match state.lines.get(id) {
                Some(number) => respond(
                    200,
                    json!({"id": id, "number": number, "provider": "twilio"}),
                    None,
                ),
                None => respond(
                    404,
                    json!({"message": "Not Found", "statusCode": 404}),
                    None,
                ),
            }
        } else {
            respond(
                404,
                json!({"message": "Not Found", "statusCode": 404}),
                None,
            )
        };
        (reply, wait)
    };
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
    reply
}

/// `GET /call`'s answer: the calls inside the query's `createdAt` bounds,
/// newest first, at most `limit` (default 100).
fn list(calls: &[Value], query: &str) -> Vec<Value> {
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), vapi_edge_core::http::percent_decode(v)))
        .collect();
    let bound = |name: &str| {
        params
            .get(name)
            .and_then(|v| vapi_edge_core::json::iso_to_ms(v))
    };
    let created = |call: &Value| {
        vapi_edge_core::json::iso_to_ms(call["createdAt"].as_str().unwrap_or_default()).unwrap_or(0)
    };
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut found: Vec<Value> = calls
        .iter()
        .filter(|call| {
            let at = created(call);
            bound("createdAtGe").is_none_or(|b| at >= b)
                && bound("createdAtGt").is_none_or(|b| at > b)
                && bound("createdAtLe").is_none_or(|b| at <= b)
                && bound("createdAtLt").is_none_or(|b| at < b)
        })
        .cloned()
        .collect();
    found.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| b["id"].as_str().cmp(&a["id"].as_str()))
    });
    found.truncate(limit);
    found
}
