//! The host's own log lines: one JSON object per line on stderr, like the component's.

use serde_json::{Map, Value};

fn emit(level: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut line = Map::new();
    line.insert("ts".into(), chrono::Utc::now().to_rfc3339().into());
    line.insert("level".into(), level.into());
    line.insert("msg".into(), msg.into());
    line.insert("source".into(), "host".into());
    for (key, value) in fields {
        line.insert((*key).into(), Value::from(*value));
    }
    // One write per line, so guest and host lines never interleave on stderr.
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

pub fn info(msg: &str, fields: &[(&str, &str)]) {
    emit("INFO", msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    emit("WARN", msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &str)]) {
    emit("ERROR", msg, fields);
}
