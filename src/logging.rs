//! Writes structured log lines: one JSON object per line, info on stdout and
//! warnings and worse on stderr (Spin collects both).
#![forbid(unsafe_code)]

use crate::services::now_ms;
use vapi_edge_core::log::{Level, LogLine};

pub fn emit(line: &LogLine) {
    let text = line.render(now_ms());
    match line.level {
        Level::Debug => {}
        Level::Info => println!("{text}"),
        Level::Warn | Level::Error | Level::Critical => eprintln!("{text}"),
    }
}
