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
                                recorded.lock().unwrap().push(RelayHit { headers, body });
                                let (status, body) = match mode {
                                    RelayMode::Ok => (204, ""),
                                    RelayMode::Fail500 => (500, ""),
                                    RelayMode::Slow(delay) => {
                                        tokio::time::sleep(delay).await;
                                        (204, "")
                                    }
                                    RelayMode::Answer(body, delay) => {
                                        tokio::time::sleep(delay).await;
                                        (200, body)
                                    }
                                };
                                let mut response = hyper::Response::new(Full::new(
                                    Bytes::from_static(body.as_bytes()),
                                ));
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
