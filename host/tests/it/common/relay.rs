//! A dashboard relay that records what it receives (or fails on purpose).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the relay test server does with each request.
#[derive(Clone, Copy, Debug)]
pub enum RelayMode {
    Ok,
    Fail500,
    Slow(Duration),
    /// 200 with this JSON body, after this delay (an upstream).
    Answer(&'static str, Duration),
    /// An upstream of tools: for a `tool-calls` message, 200 with a result
    /// per tool call, after waiting the milliseconds its tool's name ends with
    /// (`wait_25000`: 25 s), the longest of them.
    Tools,
}

/// The answer of [`RelayMode::Tools`] to `body`, and how long to wait first.
fn tool_results(body: &[u8]) -> (String, Duration) {
    let message: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let calls = message["message"]["toolCallList"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut wait = Duration::ZERO;
    let results: Vec<serde_json::Value> = calls
        .iter()
        .map(|call| {
            let name = call["function"]["name"]
                .as_str()
                .or(call["name"].as_str())
                .unwrap_or_default();
            let ms = name
                .rsplit('_')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            wait = wait.max(Duration::from_millis(ms));
            serde_json::json!({"toolCallId": call["id"], "name": name, "result": "done"})
        })
        .collect();
    (serde_json::json!({ "results": results }).to_string(), wait)
}

/// One notification as the relay received it.
#[derive(Clone, Debug)]
pub struct RelayHit {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl RelayHit {
    /// Its headers, once its Standard Webhooks signature under `secret`
    /// verifies (panics naming the failure otherwise).
    pub fn verified_headers(&self, secret: &str) -> vapi_edge_core::headers::Headers {
        use vapi_edge_core::standard_webhooks::{verify, SigningKey};
        let headers: vapi_edge_core::headers::Headers = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        let key = SigningKey::from_secret(secret).unwrap();
        if let Err(error) = verify(&key, &headers, &self.body, super::now_ms() / 1000) {
            panic!("the Standard Webhooks signature does not verify: {error:?}");
        }
        headers
    }
}

/// A dashboard relay on loopback that records what it receives.
pub struct Relay {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<RelayHit>>>,
}

impl Relay {
    pub async fn start(mode: RelayMode) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<RelayHit>>> = Arc::default();
        let recorded = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move {
                                let headers = request.headers().clone();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                let received = body.clone();
                                recorded.lock().unwrap().push(RelayHit { headers, body });
                                let (status, body) = match mode {
                                    RelayMode::Ok => (204, String::new()),
                                    RelayMode::Fail500 => (500, String::new()),
                                    RelayMode::Slow(delay) => {
                                        tokio::time::sleep(delay).await;
                                        (204, String::new())
                                    }
                                    RelayMode::Answer(body, delay) => {
                                        tokio::time::sleep(delay).await;
                                        (200, body.to_string())
                                    }
                                    RelayMode::Tools => {
                                        let (body, wait) = tool_results(&received);
                                        tokio::time::sleep(wait).await;
                                        (200, body)
                                    }
                                };
                                let mut response =
                                    hyper::Response::new(Full::new(Bytes::from(body.clone())));
                                if !body.is_empty() {
                                    response.headers_mut().insert(
                                        "content-type",
                                        hyper::header::HeaderValue::from_static("application/json"),
                                    );
                                }
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Relay { addr, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// `scheme://host:port`, for `*_allowed_host`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> Vec<RelayHit> {
        self.hits.lock().unwrap().clone()
    }

    /// The notifications' bodies, as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.hits()
            .iter()
            .map(|hit| serde_json::from_slice(&hit.body).expect("the relay got JSON"))
            .collect()
    }

    /// Waits until at least `n` notifications arrived (or `timeout` passed).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RelayHit> {
        let deadline = Instant::now() + timeout;
        while self.hits.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.hits()
    }
}

/// A free loopback address: nothing listens there (until a test binds it).
pub fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
