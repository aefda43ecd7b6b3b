//! `phone::normalize` and `phone::mask` on arbitrary UTF-8.
//!
//! Properties, for every default country the table knows:
//! - neither function panics;
//! - an `E164` result matches `^\+[1-9][0-9]{7,14}$` (checked by hand, no regex crate);
//! - normalising an E.164 result again gives the same E.164 number, under its own and
//!   under every other default country (a `+` number does not depend on the default);
//! - a `Fallback` has a non-empty reason and its `best_effort` is, as documented, either
//!   the trimmed input (no digits at all) or `+`? followed by digits only;
//! - `mask` only emits `+`, `*` and ASCII digits, never more than 2 digits in a row, and
//!   never 6 consecutive digits of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vapi_edge_core::phone::{mask, normalize, Country, Normalized};

/// Every country in the table (the NANP members share one rule set, so only two of them).
const ISO: &[&str] = &[
    "US", "CA", "GB", "IE", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "PL",
    "PT", "AU", "NZ", "IN", "MX", "BR", "JP", "SG", "ZA",
];

fn countries() -> Vec<Country> {
    ISO.iter()
        .map(|iso| Country::from_iso(iso).expect("country in the table"))
        .collect()
}

/// `^\+[1-9][0-9]{7,14}$`, by hand.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    let b = digits.as_bytes();
    (8..=15).contains(&b.len()) && matches!(b[0], b'1'..=b'9') && b.iter().all(u8::is_ascii_digit)
}

fn check_mask(raw: &str) {
    let masked = mask(raw);
    assert!(
        masked
            .chars()
            .all(|c| c == '+' || c == '*' || c.is_ascii_digit()),
        "mask({raw:?}) = {masked:?}: unexpected character"
    );
    let longest_run = masked
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run <= 2, "mask({raw:?}) = {masked:?}: digit run");
    // No 6 consecutive digits of the input, neither as written nor once separators are
    // removed (the masked digits, read without the stars, must not give them back).
    let masked_digits: String = masked.chars().filter(char::is_ascii_digit).collect();
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
    let raw_digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    for window in raw_digits.windows(6) {
        let run: String = window.iter().collect();
        assert!(
            !masked_digits.contains(&run),
            "mask({raw:?}) = {masked:?} leaks {run}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let all = countries();
    for default in &all {
        match normalize(raw, default) {
            Normalized::E164(number) => {
                assert!(
                    is_e164(&number),
                    "normalize({raw:?}, {}) = {number:?} is not E.164",
                    default.iso()
                );
                for other in &all {
                    assert_eq!(
                        normalize(&number, other),
                        Normalized::E164(number.clone()),
                        "normalize({raw:?}, {}) = {number:?}, but normalising that under {} differs",
                        default.iso(),
                        other.iso()
                    );
                }
            }
            Normalized::Fallback {
                best_effort,
                reason,
            } => {
                assert!(!reason.is_empty(), "{raw:?}: empty reason");
                let digits = best_effort.strip_prefix('+').unwrap_or(&best_effort);
                let digits_only = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                assert!(
                    best_effort == raw.trim() || digits_only,
                    "normalize({raw:?}, {}) fell back to {best_effort:?}",
                    default.iso()
                );
            }
        }
    }
    check_mask(raw);
});
