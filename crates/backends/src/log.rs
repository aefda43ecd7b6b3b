//! The host's own log lines, in the component's format: one JSON object per
//! line, written by the same [`LogLine`] (`ts` to the millisecond, `level`,
//! `msg`, then typed fields in the order they were added), marked
//! `"source": "host"` and written to stderr.

pub use vapi_edge_core::log::{Level, LogLine};

/// Writes `line` to stderr, marked as the host's.
pub fn write(line: LogLine) {
    let text = text(line, chrono::Utc::now().timestamp_millis());
    // One write per line, so guest and host lines never interleave on stderr.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// `line` as written at `now_ms`: marked as the host's, one line.
fn text(line: LogLine, now_ms: i64) -> String {
    let mut text = line.field("source", "host").render(now_ms);
    text.push('\n');
    text
}

/// An INFO line to fill in and [`write`].
pub fn info(msg: &str) -> LogLine {
    LogLine::new(Level::Info, msg)
}

/// A WARN line to fill in and [`write`].
pub fn warn(msg: &str) -> LogLine {
    LogLine::new(Level::Warn, msg)
}

/// An ERROR line to fill in and [`write`].
pub fn error(msg: &str) -> LogLine {
    LogLine::new(Level::Error, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lines_have_the_component_format_and_typed_fields() {
        let line = warn("request body refused")
            .field("limit_bytes", 5_242_880)
            .field("path", "/webhooks/vapi");
        assert_eq!(
            text(line, 1_764_070_772_123),
            "{\"ts\":\"2025-11-25T11:39:32.123Z\",\"level\":\"WARN\",\"msg\":\"request body refused\",\
             \"limit_bytes\":5242880,\"path\":\"/webhooks/vapi\",\"source\":\"host\"}\n"
        );
    }
}
