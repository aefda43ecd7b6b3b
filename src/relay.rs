//! The dashboard notification: one signed JSON POST to `relay_url` per newly
//! recorded event, sent after Vapi has its answer so a slow or dead relay never
//! delays or fails the webhook.
#![forbid(unsafe_code)]

use crate::logging;
use vapi_edge_core::http::split_url;
use vapi_edge_core::log::{Level, LogLine};
use vapi_edge_core::standard_webhooks::{self, SigningKey};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

/// Longest the relay may take, connection to last byte of its answer.
pub const TIMEOUT_MS: u64 = 2_000;

/// A notification ready to send.
pub struct Notification {
    pub url: String,
    pub key: Option<SigningKey>,
    pub message_id: String,
    pub body: Vec<u8>,
    /// Fields that identify the event in the log line written on failure.
    pub log_fields: Vec<(&'static str, serde_json::Value)>,
}

impl Notification {
    /// Sends it; a failure is logged at warn and goes no further.
    pub fn send(self, now_ms: i64) {
        let outcome = self.deliver(now_ms);
        let (level, msg) = match &outcome {
            Ok(status) if (200..300).contains(status) => (Level::Debug, "Relay notified"),
            _ => (Level::Warn, "Relay notification failed"),
        };
        if level == Level::Debug {
            return;
        }
        let mut line = LogLine::new(level, msg).field("webhook_id", self.message_id.as_str());
        for (key, value) in self.log_fields {
            line = line.field(key, value);
        }
        line = match outcome {
            Ok(status) => line.field("relay_status", status),
            Err(error) => line.field("error", error),
        };
        logging::emit(&line);
    }

    fn deliver(&self, now_ms: i64) -> Result<u16, String> {
        let target = split_url(&self.url).map_err(|e| format!("relay_url: {e}"))?;
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("user-agent".into(), b"vapi-edge".to_vec()),
        ];
        if let Some(key) = &self.key {
            let signed =
                standard_webhooks::headers(key, &self.message_id, now_ms / 1000, &self.body);
            headers.extend(
                signed
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value.into_bytes())),
            );
        }
        let fields = Fields::from_list(&headers).map_err(|e| format!("headers: {e:?}"))?;
        let request = OutgoingRequest::new(fields);
        let scheme = if target.scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        request
            .set_method(&Method::Post)
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(&target.authority)))
            .and_then(|()| request.set_path_with_query(Some(&target.path_and_query)))
            .map_err(|()| "relay_url is not a valid request target".to_string())?;
        let body = request.body().map_err(|()| "request body unavailable")?;

        let timeout_ns = TIMEOUT_MS * 1_000_000;
        let options = RequestOptions::new();
        // Hosts may not support every option; the deadline below holds regardless.
        let _ = options.set_connect_timeout(Some(timeout_ns));
        let _ = options.set_first_byte_timeout(Some(timeout_ns));
        let _ = options.set_between_bytes_timeout(Some(timeout_ns));
        let deadline = wasi::clocks::monotonic_clock::subscribe_duration(timeout_ns);

        let pending = outgoing_handler::handle(request, Some(options))
            .map_err(|e| format!("refused: {e:?}"))?;
        {
            let stream = body.write().map_err(|()| "request body unavailable")?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| format!("write: {e:?}"))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| format!("finish: {e:?}"))?;

        let ready = pending.subscribe();
        loop {
            if let Some(result) = pending.get() {
                let response = result
                    .map_err(|()| "response taken twice".to_string())?
                    .map_err(|e| format!("{e:?}"))?;
                return Ok(response.status());
            }
            if deadline.ready() {
                return Err(format!("no answer within {TIMEOUT_MS} ms"));
            }
            wasi::io::poll::poll(&[&ready, &deadline]);
        }
    }
}
