//! One HTTP/1.1 request per connection, each with a deadline: a host that
//! hangs fails the test that asked instead of holding CI until its limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest any test request may take, connection to the last byte of the
/// answer. The slowest answer a test waits for on purpose is a tool call's
/// 40 s fallback; past this, the host hangs.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request without a body and with `Authorization: Bearer <token>`.
pub async fn send_bearer(addr: SocketAddr, method: &str, path: &str, token: &str) -> TestResponse {
    let bearer = format!("Bearer {token}");
    send(
        addr,
        method,
        path,
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await
}

/// One HTTP/1.1 request on a fresh connection; panics without a whole
/// response within [`REQUEST_DEADLINE`].
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> TestResponse {
    match try_send(addr, method, path, headers, body).await {
        Ok(response) => response,
        Err(error) => panic!("{method} {path}: {error}"),
    }
}

/// Why [`try_send`] got no response: the host refused the connection, or
/// dropped it before the whole response arrived (it died, say), or took
/// longer than [`REQUEST_DEADLINE`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to host: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("response: {0}")]
    Response(hyper::Error),
    #[error("body: {0}")]
    Body(hyper::Error),
    #[error("no whole response within {} s: the host hangs", REQUEST_DEADLINE.as_secs())]
    Deadline,
}

/// [`send`], with a failed connection as a value: a client that retries.
pub async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<TestResponse, SendError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(SendError::Connect)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Handshake)?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(SendError::Response)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(SendError::Body)?
            .to_bytes()
            .to_vec();
        Ok(TestResponse {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(REQUEST_DEADLINE, exchange)
        .await
        .unwrap_or(Err(SendError::Deadline))
}
