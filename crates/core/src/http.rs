//! The request and response as the pure logic sees them, and the public error bodies.
//!
//! Every error body is JSON `{"error": "...", "field": "..."}` with a short public
//! message; internal error text never reaches a response.

use crate::headers::Headers;
use serde_json::{json, Value};

/// The largest body accepted (5 MiB). Vapi documents no limit; long calls'
/// end-of-call reports repeat the transcript three times, so allow several MB.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// One HTTP request, fully read.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without its query string.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A JSON error body with a public message.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "error": message }))
    }

    /// 400 naming the field that failed.
    pub fn bad_request(field: &str, problem: &str) -> Self {
        Self::json(
            400,
            &json!({ "error": format!("{field}: {problem}"), "field": field }),
        )
    }

    pub fn not_found() -> Self {
        Self::error(404, "no such route")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::error(405, "method not allowed").with_header("allow", allow)
    }

    pub fn payload_too_large() -> Self {
        Self::error(413, "request body is larger than 5 MiB")
    }

    pub fn unsupported_media_type() -> Self {
        Self::error(415, "content-type must be application/json")
    }

    /// The body as JSON, for tests and logs.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_names_the_field() {
        let response = Response::bad_request("message.call.id", "expected a string");
        assert_eq!(response.status, 400);
        let body = response.body_json().unwrap();
        assert_eq!(body["field"], "message.call.id");
        assert_eq!(body["error"], "message.call.id: expected a string");
    }

    #[test]
    fn route_drops_the_query() {
        let request = Request {
            method: "GET".into(),
            path: "/healthz?verbose=1".into(),
            headers: Headers::new(),
            body: Vec::new(),
        };
        assert_eq!(request.route(), "/healthz");
    }
}
