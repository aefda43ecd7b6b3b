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

/// The parts of an `http(s)://authority/path?query` URL an outgoing request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTarget {
    pub scheme: String,
    pub authority: String,
    pub path_and_query: String,
}

/// Splits an absolute http or https URL; anything else is an error that says why.
pub fn split_url(url: &str) -> Result<UrlTarget, &'static str> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must start with http:// or https://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("must start with http:// or https://");
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("must name a host (and no user information)");
    }
    let path_and_query = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(UrlTarget {
        scheme,
        authority: authority.to_string(),
        path_and_query,
    })
}

/// A query string's (or a form body's) parameters, percent-decoded.
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(name), percent_decode(value))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `text` with every byte outside RFC 3986's unreserved set as `%XX`: safe as
/// a path segment or a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `%XX` and `+` decoded; anything malformed is kept as it is.
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
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

    #[test]
    fn urls_split_into_request_parts() {
        let target = split_url("https://relay.example.com:8443/hooks/vapi?x=1").unwrap();
        assert_eq!(target.scheme, "https");
        assert_eq!(target.authority, "relay.example.com:8443");
        assert_eq!(target.path_and_query, "/hooks/vapi?x=1");
        assert_eq!(
            split_url("http://127.0.0.1:8787").unwrap().path_and_query,
            "/"
        );
        for bad in [
            "relay.example.com/x",
            "ftp://h/",
            "http:///x",
            "http://u:p@h/",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
