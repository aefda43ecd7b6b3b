//! Structured log lines: one JSON object per line, with the fields operators
//! search on (`level`, `msg`, event type, call id, org id, outcome, duration).
//!
//! The checklist's search terms are exact `msg` values, so they are constants
//! here and nowhere else.

use serde_json::Value;

pub const DUPLICATE_EVENT: &str = "Duplicate event detected";
pub const AGENT_LOOKUP_FAILED: &str = "Agent lookup failed";
pub const CANNOT_DETERMINE_CALL_TYPE: &str = "Cannot determine call type";
pub const CALL_TRACKING_FAILED: &str = "Failed to create call_tracking";
pub const CALL_LOGS_FAILED: &str = "Failed to upsert call_logs";
/// A call without an assistant id that no squad, workflow, line or Vapi
/// organisation maps to an organisation: recorded without one, for an operator
/// to map (`vapi-edge-host map-org`).
pub const CALL_UNASSIGNED: &str = "Call recorded without an organisation";
/// The upstream did not answer a reply-expecting message in time, or not in
/// Vapi's shape; the fallback answered.
pub const UPSTREAM_FAILED: &str = "Upstream failed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    /// Misconfiguration or a risk of losing data: someone must act.
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

/// One log line being built.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    msg: String,
    /// In the order they were added; a key added again keeps its place and
    /// takes the new value.
    fields: Vec<(String, Value)>,
}

impl LogLine {
    pub fn new(level: Level, msg: &str) -> Self {
        LogLine {
            level,
            msg: msg.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds a field; `None` values are left out so lines stay short.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        if value.is_null() || matches!(key, "ts" | "level" | "msg") {
            return self;
        }
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
        self
    }

    pub fn msg(&self) -> &str {
        &self.msg
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The line as one JSON object: `ts`, `level` and `msg` first, then the
    /// fields in the order they were added. Written straight into one string
    /// (a log line is built on every request's path).
    pub fn render(&self, now_ms: i64) -> String {
        let mut out = Vec::with_capacity(160 + 48 * self.fields.len());
        out.extend_from_slice(b"{\"ts\":\"");
        out.extend_from_slice(rfc3339(now_ms).as_bytes());
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"msg\":");
        // Writing JSON into a Vec cannot fail: the writer never errors and
        // every key is a string.
        let _ = serde_json::to_writer(&mut out, &self.msg);
        for (key, value) in &self.fields {
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, value);
        }
        out.push(b'}');
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-11-25T11:39:32.123Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::iso_to_ms;

    #[test]
    fn times_round_trip() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-25T11:39:32.123Z",
            "2100-03-01T00:00:00.000Z",
        ] {
            assert_eq!(rfc3339(iso_to_ms(text).unwrap()), text);
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_the_search_fields() {
        let line = LogLine::new(Level::Warn, DUPLICATE_EVENT)
            .field("call_id", "call-1")
            .field("org_id", Value::Null)
            .render(0);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["msg"], "Duplicate event detected");
        assert_eq!(value["call_id"], "call-1");
        assert_eq!(value["ts"], "1970-01-01T00:00:00.000Z");
        assert!(value.get("org_id").is_none());
    }

    #[test]
    fn fields_keep_their_order_and_a_repeated_key_its_place() {
        let line = LogLine::new(Level::Info, "a \"quoted\" msg")
            .field("outcome", "recorded")
            .field("status", 200)
            .field("outcome", "duplicate")
            .field("msg", "not this")
            .render(0);
        assert_eq!(
            line,
            r#"{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","msg":"a \"quoted\" msg","outcome":"duplicate","status":200}"#
        );
    }
}
