//! `payload::parse` on arbitrary bytes, then everything the component does with an
//! accepted message before any I/O.
//!
//! Properties:
//! - `parse` never panics;
//! - on `Err`, `field` is non-empty and is `body` or a path under `message`;
//! - on `Ok`, `event_key::for_message`, `handling::plan` (default country US) and
//!   `phone::mask` of every number never panic;
//! - an event key exists exactly when the message has a call, starts with `v1|` and is at
//!   most 200 bytes (longer keys become `v1|sha256|<64 hex>`); `plan` records under that key;
//! - a mask never contains 6 consecutive digits of the number it masks (and never more
//!   than 2 digits in a row), including the masks `plan` puts in its number warnings;
//! - a recorded `customer_e164` is E.164.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vapi_edge_core::event_key;
use vapi_edge_core::handling::{self, Plan};
use vapi_edge_core::payload::{self, MessageKind};
use vapi_edge_core::phone;
use vapi_edge_core::settings::Settings;

fn check_mask(raw: &str, masked: &str) {
    assert!(
        masked
            .chars()
            .all(|c| c == '+' || c == '*' || c.is_ascii_digit()),
        "mask({raw:?}) = {masked:?}"
    );
    let longest_run = masked
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run <= 2, "mask({raw:?}) = {masked:?}");
    let masked_digits: String = masked.chars().filter(char::is_ascii_digit).collect();
    let raw_digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    for window in raw_digits.windows(6) {
        let run: String = window.iter().collect();
        assert!(
            !masked_digits.contains(&run),
            "mask({raw:?}) = {masked:?} leaks {run}"
        );
    }
    let raw_chars: Vec<char> = raw.chars().collect();
    for window in raw_chars.windows(6) {
        if window.iter().all(char::is_ascii_digit) {
            let run: String = window.iter().collect();
            assert!(
                !masked.contains(&run),
                "mask({raw:?}) = {masked:?} leaks {run}"
            );
        }
    }
}

/// `^\+[1-9][0-9]{7,14}$`, by hand.
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    let b = digits.as_bytes();
    (8..=15).contains(&b.len()) && matches!(b[0], b'1'..=b'9') && b.iter().all(u8::is_ascii_digit)
}

fuzz_target!(|data: &[u8]| {
    let message = match payload::parse(data) {
        Ok(message) => message,
        Err(err) => {
            let field = err.field.as_str();
            assert!(!field.is_empty(), "empty field for {err:?}");
            assert!(
                field == "body" || field == "message" || field.starts_with("message."),
                "field {field:?} is neither body nor under message ({err:?})"
            );
            assert!(!err.problem.is_empty(), "empty problem for {err:?}");
            return;
        }
    };

    assert!(!message.message_type.trim().is_empty());
    if message.kind.needs_call() {
        assert!(message.call.is_some(), "{:?} without a call", message.kind);
    }
    if message.kind == MessageKind::StatusUpdate {
        assert!(message.status.is_some(), "status-update without a status");
    }
    if let Some(call) = &message.call {
        assert!(!call.id.trim().is_empty(), "empty call id");
    }

    let key = event_key::for_message(&message);
    assert_eq!(key.is_some(), message.call.is_some());
    if let Some(key) = &key {
        let text = key.as_str();
        assert!(text.starts_with("v1|"), "{text:?}");
        assert!(text.len() <= 200, "key of {} bytes", text.len());
        if let Some(hex) = text.strip_prefix("v1|sha256|") {
            assert!(
                hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{text:?}"
            );
        }
        let id = key.message_id();
        assert!(id.starts_with("msg_") && id.len() == 28, "{id:?}");
    }

    let mut numbers: Vec<&str> = Vec::new();
    numbers.extend(message.customer_number.as_deref());
    numbers.extend(message.phone_number.as_deref());
    numbers.extend(message.destination.as_deref());
    if let Some(call) = &message.call {
        numbers.extend(call.customer_number.as_deref());
    }
    for raw in &numbers {
        check_mask(raw, &phone::mask(raw));
    }

    // The defaults: United States numbers, no aliases, no upstream.
    let us = Settings::from_variables(|_| None).expect("the defaults are valid");
    if let Ok(Plan::Record(record)) = handling::plan(&message, &us) {
        assert_eq!(Some(&record.event_key), key.as_ref());
        assert_eq!(Some(record.call_id.as_str()), message.call_id());
        if let Some(e164) = &record.customer_e164 {
            assert!(is_e164(e164), "customer_e164 {e164:?}");
        }
        for warning in &record.number_warnings {
            let raw = match warning.field {
                "customer.number" => message.customer_number.as_deref(),
                "phoneNumber.number" => message.phone_number.as_deref(),
                other => panic!("warning for unexpected field {other:?}"),
            }
            .expect("a warning names a number that was sent");
            check_mask(raw, &warning.masked);
        }
    }
});
