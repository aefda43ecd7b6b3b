//! Writes structured log lines: one JSON object per line, info on stdout and
//! warnings and worse on stderr (Spin collects both).
#![forbid(unsafe_code)]

use crate::services::now_ms;
use std::io::Write;
use vapi_edge_core::log::{Level, LogLine};

pub fn emit(line: &LogLine) {
    let mut text = line.render(now_ms());
    text.push('\n');
    // One write per line: instances of the component share the host's stdout
    // and stderr, and `println!`/`eprintln!` may split a line into several
    // writes that interleave with another instance's (a pipe keeps a single
    // write of up to 4 KiB whole).
    let _ = match line.level {
        Level::Debug => return,
        Level::Info => std::io::stdout().lock().write_all(text.as_bytes()),
        Level::Warn | Level::Error | Level::Critical => {
            std::io::stderr().lock().write_all(text.as_bytes())
        }
    };
}
