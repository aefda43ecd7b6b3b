//! Scanning what a host wrote for secrets and full phone numbers.

use super::*;
use std::time::{Duration, Instant};

/// The forms in which a phone number could leak into a log: as sent, and
/// every run of 8 or more of its trailing digits (the E.164 digits, the
/// national number, the subscriber part).
pub fn phone_number_forms(number: &str) -> Vec<String> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let mut forms = vec![number.to_string()];
    for start in 0..digits.len() {
        if digits.len() - start >= 8 {
            forms.push(digits[start..].to_string());
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Every line `host` wrote (host and component, stdout and stderr) that
/// contains one of `needles`, with the needle it contains.
pub fn lines_containing(host: &Host, needles: &[String]) -> Vec<(String, String)> {
    host.lines()
        .into_iter()
        .flat_map(|line| {
            needles
                .iter()
                .filter(|needle| !needle.is_empty() && line.contains(needle.as_str()))
                .map(|needle| (needle.clone(), line.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fails, quoting each offending line, if anything `host` wrote holds one of
/// `secrets` or a full phone number of `phone_numbers` (any of the forms of
/// [`phone_number_forms`]). Call it at the end of a test with the secrets it
/// configured and the caller numbers it sent.
pub fn assert_logs_hide(host: &Host, secrets: &[&str], phone_numbers: &[&str]) {
    let mut needles: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    for number in phone_numbers {
        needles.extend(phone_number_forms(number));
    }
    let leaks = lines_containing(host, &needles);
    assert!(
        leaks.is_empty(),
        "{} log line(s) hold a secret or a full phone number:\n{}",
        leaks.len(),
        leaks
            .iter()
            .map(|(needle, line)| format!("  [{needle}] {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Waits until `host` has written at least `n` lines with this `msg` (lines
/// reach the test through pipes, a moment after the response), then a little
/// longer so that an extra line would show up too.
pub async fn log_lines(host: &Host, msg: &str, n: usize) -> Vec<serde_json::Value> {
    let matching = || -> Vec<serde_json::Value> {
        host.json_lines()
            .into_iter()
            .filter(|l| l["msg"] == msg)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while matching().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    matching()
}
