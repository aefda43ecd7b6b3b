//! `VerifyConfig::verify` on fuzzed headers and body, under a fixed clock and a set of
//! fixed configurations built with `VerifyConfig::from_variables`.
//!
//! Input layout (see fuzz/README.md):
//!
//! ```text
//! byte 0   configuration index (modulo CONFIGS.len())
//! byte 1   bit0 x-signature present   bit1 x-timestamp present
//!          bit2 x-vapi-secret present bit3 authorization present
//!          bit4 repeat the first present header (same value)
//!          bit5 upper-case header names
//!          bit6 self-sign: append " <prefix><signature>" computed here to x-signature
//!          bit7 self-sign: drop the last character of that signature
//! byte 2   bit0 base64: URL-safe alphabet      bit1 base64: no padding
//!          bit2 hex and prefix in upper case   bit3 sign with the last key, not the first
//!          bit4 x-timestamp := now in seconds + the x-timestamp field as a signed offset
//!          bit5 (without bit4) the same in milliseconds
//!          bit6 sign with a wrong key          bit7 sign the body with one byte appended
//! then     x-signature \n x-timestamp \n x-vapi-secret \n authorization \n body...
//! ```
//!
//! Properties:
//! - `verify` never panics;
//! - soundness: when it returns `Ok`, the request really carries what the configuration
//!   demands, recomputed here independently with `hmac`/`sha2`/`sha1`/`base64`:
//!   exactly one signature header holding a token `<prefix><encoding of the HMAC>` of the
//!   signed message under one configured key, exactly one timestamp header that is all
//!   digits and inside the tolerance window, and/or the right shared secret in
//!   `x-vapi-secret` (or, when that is absent, `Authorization: Bearer`); and `methods`
//!   lists exactly the configured methods. No forged request is ever accepted;
//! - completeness: a correctly self-signed request (no tampering, fresh timestamp, no
//!   repeated header, right shared secret where one is required) is accepted;
//! - a refusal's public reason never contains a secret or an expected signature.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use vapi_edge_core::headers::Headers;
use vapi_edge_core::verify::{var, VerifyConfig};

/// The fixed clock: 2023-11-14T22:13:25Z.
const NOW_MS: i64 = 1_700_000_005_000;
const SECRET: &str = "vapi-test-secret";
const WRONG_KEY: &[u8] = b"not-the-secret";
/// `vapi_hmac_secret_base64 = true` with this key's standard base64.
const BINARY_KEY: &[u8] = &[0, 1, 2, 250, 251, 252, 253, 254, 255];
const BINARY_KEY_B64: &str = "AAEC+vv8/f7/";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Alg {
    Sha256,
    Sha512,
    Sha1,
}

/// What the HMAC covers, mirrored by hand.
#[derive(Clone, Copy, Debug)]
enum Format {
    /// `{timestamp}.{body}`
    TimestampDotBody,
    /// `{body}` (timestamp header `none`)
    Body,
    /// `v0:{timestamp}:{body}`
    V0,
}

/// The oracle's own description of a configuration.
#[derive(Debug)]
struct HmacSpec {
    keys: Vec<Vec<u8>>,
    alg: Alg,
    base64: bool,
    prefix: &'static str,
    format: Format,
    tolerance_s: u64,
}

impl HmacSpec {
    fn uses_timestamp(&self) -> bool {
        !matches!(self.format, Format::Body)
    }

    fn message(&self, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        match self.format {
            Format::TimestampDotBody => {
                m.extend_from_slice(timestamp.as_bytes());
                m.push(b'.');
            }
            Format::Body => {}
            Format::V0 => {
                m.extend_from_slice(b"v0:");
                m.extend_from_slice(timestamp.as_bytes());
                m.push(b':');
            }
        }
        m.extend_from_slice(body);
        m
    }
}

struct Case {
    config: VerifyConfig,
    hmac: Option<HmacSpec>,
    shared: Vec<&'static str>,
}

fn hmac_tag(alg: Alg, key: &[u8], message: &[u8]) -> Vec<u8> {
    match alg {
        Alg::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Alg::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Alg::Sha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn case(vars: &[(&str, &str)], hmac: Option<HmacSpec>, shared: &[&'static str]) -> Case {
    let config = VerifyConfig::from_variables(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|e| panic!("fixed configuration {vars:?} is invalid: {e}"));
    assert!(config.is_configured());
    Case {
        config,
        hmac,
        shared: shared.to_vec(),
    }
}

fn spec(alg: Alg, base64: bool, prefix: &'static str, format: Format) -> HmacSpec {
    HmacSpec {
        keys: vec![SECRET.as_bytes().to_vec()],
        alg,
        base64,
        prefix,
        format,
        tolerance_s: 300,
    }
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        use Alg::*;
        use Format::*;
        vec![
            // 0: Vapi's defaults.
            case(
                &[(var::HMAC_SECRET, SECRET)],
                Some(spec(Sha256, false, "", TimestampDotBody)),
                &[],
            ),
            // 1: base64 signatures.
            case(
                &[
                    (var::HMAC_SECRET, SECRET),
                    (var::SIGNATURE_ENCODING, "base64"),
                ],
                Some(spec(Sha256, true, "", TimestampDotBody)),
                &[],
            ),
            // 2: a prefix.
            case(
                &[
                    (var::HMAC_SECRET, SECRET),
                    (var::SIGNATURE_PREFIX, "sha256="),
                ],
                Some(spec(Sha256, false, "sha256=", TimestampDotBody)),
                &[],
            ),
            // 3: no timestamp: the body alone is signed.
            case(
                &[(var::HMAC_SECRET, SECRET), (var::TIMESTAMP_HEADER, "none")],
                Some(spec(Sha256, false, "", Body)),
                &[],
            ),
            // 4: a prefix containing the comma (then only whitespace separates).
            case(
                &[(var::HMAC_SECRET, SECRET), (var::SIGNATURE_PREFIX, "v1,")],
                Some(spec(Sha256, false, "v1,", TimestampDotBody)),
                &[],
            ),
            // 5: HMAC and a shared secret: both must pass.
            case(
                &[(var::HMAC_SECRET, SECRET), (var::SERVER_SECRET, "shared-1")],
                Some(spec(Sha256, false, "", TimestampDotBody)),
                &["shared-1"],
            ),
            // 6: shared secrets only (two, for rotation).
            case(
                &[(var::SERVER_SECRET, "shared-1, shared-2")],
                None,
                &["shared-1", "shared-2"],
            ),
            // 7: sha512, base64, prefix, two HMAC keys.
            case(
                &[
                    (var::HMAC_SECRET, "old-secret, vapi-test-secret"),
                    (var::HMAC_ALGORITHM, "sha512"),
                    (var::SIGNATURE_ENCODING, "base64"),
                    (var::SIGNATURE_PREFIX, "sha512="),
                ],
                Some(HmacSpec {
                    keys: vec![b"old-secret".to_vec(), SECRET.as_bytes().to_vec()],
                    ..spec(Sha512, true, "sha512=", TimestampDotBody)
                }),
                &[],
            ),
            // 8: sha1, no timestamp, prefix, base64 and shared secret.
            case(
                &[
                    (var::HMAC_SECRET, SECRET),
                    (var::HMAC_ALGORITHM, "sha1"),
                    (var::TIMESTAMP_HEADER, "none"),
                    (var::SIGNATURE_PREFIX, "sha1="),
                    (var::SIGNATURE_ENCODING, "base64"),
                    (var::SERVER_SECRET, "shared-1"),
                ],
                Some(spec(Sha1, true, "sha1=", Body)),
                &["shared-1"],
            ),
            // 9: a custom payload format and no clock skew at all.
            case(
                &[
                    (var::HMAC_SECRET, SECRET),
                    (var::SIGNATURE_PAYLOAD, "v0:{timestamp}:{body}"),
                    (var::TIMESTAMP_TOLERANCE_S, "0"),
                ],
                Some(HmacSpec {
                    tolerance_s: 0,
                    ..spec(Sha256, false, "", V0)
                }),
                &[],
            ),
            // 10: a binary key given in base64.
            case(
                &[
                    (var::HMAC_SECRET, BINARY_KEY_B64),
                    (var::HMAC_SECRET_BASE64, "true"),
                ],
                Some(HmacSpec {
                    keys: vec![BINARY_KEY.to_vec()],
                    ..spec(Sha256, false, "", TimestampDotBody)
                }),
                &[],
            ),
        ]
    })
}

/// Every value of `name` (ASCII case-insensitive) among the headers sent.
fn values<'a>(sent: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    sent.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// The one value of `name`, as UTF-8 without surrounding whitespace.
fn single<'a>(sent: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    match values(sent, name).as_slice() {
        [one] => std::str::from_utf8(one).ok().map(str::trim),
        _ => None,
    }
}

/// Digits only, and within `tolerance_s` of `NOW_MS` either way; values above 10^11
/// are milliseconds, others seconds.
fn timestamp_fresh(value: &str, tolerance_s: u64) -> bool {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(t) = value.parse::<u64>() else {
        return false;
    };
    let t_ms = if t > 100_000_000_000 {
        i128::from(t)
    } else {
        i128::from(t) * 1000
    };
    let age = i128::from(NOW_MS) - t_ms;
    let tol = i128::from(tolerance_s) * 1000;
    -tol <= age && age <= tol
}

/// The ways to write `tag` for this configuration: hex (compared case-insensitively by
/// the caller), or base64 in either alphabet without its padding (see `written_as`).
fn encodings(spec: &HmacSpec, tag: &[u8]) -> Vec<String> {
    if spec.base64 {
        vec![STANDARD_NO_PAD.encode(tag), URL_SAFE_NO_PAD.encode(tag)]
    } else {
        vec![hex(tag)]
    }
}

/// Whether `text` is `encoded` (one of `encodings`). Base64 padding is optional: the
/// verifier decodes padding-indifferently, which takes none, some or all of the canonical
/// `=` (`...w`, `...w=` and `...w==` for a 64-byte tag) and never more.
fn written_as(spec: &HmacSpec, text: &[u8], encoded: &str) -> bool {
    if spec.base64 {
        let data_len = text.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
        let canonical_padding = (4 - data_len % 4) % 4;
        text.len() - data_len <= canonical_padding && &text[..data_len] == encoded.as_bytes()
    } else {
        text.eq_ignore_ascii_case(encoded.as_bytes())
    }
}

/// Whether the signature header proves the request, recomputed from scratch.
fn hmac_proven(spec: &HmacSpec, sent: &[(String, Vec<u8>)], body: &[u8]) -> bool {
    let Some(signature) = single(sent, "x-signature") else {
        return false;
    };
    let timestamp = if spec.uses_timestamp() {
        match single(sent, "x-timestamp") {
            Some(t) if timestamp_fresh(t, spec.tolerance_s) => t,
            _ => return false,
        }
    } else {
        ""
    };
    let message = spec.message(timestamp, body);
    let valid: Vec<String> = spec
        .keys
        .iter()
        .flat_map(|key| encodings(spec, &hmac_tag(spec.alg, key, &message)))
        .collect();
    let comma_separates = !spec.prefix.contains(',');
    signature
        .split(|c: char| c.is_ascii_whitespace() || (comma_separates && c == ','))
        .filter(|token| !token.is_empty())
        .any(|token| {
            let t = token.as_bytes();
            let p = spec.prefix.as_bytes();
            if t.len() < p.len() || !t[..p.len()].eq_ignore_ascii_case(p) {
                return false;
            }
            let rest = &t[p.len()..];
            valid.iter().any(|v| written_as(spec, rest, v))
        })
}

/// Whether the shared-secret headers prove the request, by the documented rule:
/// `x-vapi-secret` decides when present, else `Authorization: Bearer <secret>`.
fn shared_proven(shared: &[&str], sent: &[(String, Vec<u8>)]) -> bool {
    // The credential's own header decides when present; else Authorization.
    let header = match values(sent, "x-vapi-secret").len() {
        0 => "authorization",
        _ => "x-vapi-secret",
    };
    let Some(value) = single(sent, header) else {
        return false;
    };
    // Either header carries the secret after `Bearer ` (any case) or alone;
    // a secret that itself starts with `Bearer ` matches as the whole value.
    let whole = value.trim();
    let token = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => whole,
    };
    !token.is_empty()
        && shared
            .iter()
            .any(|s| s.as_bytes() == token.as_bytes() || s.as_bytes() == whole.as_bytes())
}

/// `VERIFY_FUZZ_DEBUG=1` prints each input's outcome (for checking seeds and crashes).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("VERIFY_FUZZ_DEBUG").is_some())
}

/// Splits `rest` into four `\n`-terminated fields and the body.
fn fields(mut rest: &[u8]) -> ([&[u8]; 4], &[u8]) {
    let mut out: [&[u8]; 4] = [b""; 4];
    for slot in out.iter_mut() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *slot = rest;
                rest = b"";
            }
        }
    }
    (out, rest)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let all = cases();
    let case = &all[usize::from(data[0]) % all.len()];
    let (a, b) = (data[1], data[2]);
    let ([sig_field, ts_field, secret_field, auth_field], body) = fields(&data[3..]);

    // Relative timestamps let the fuzzer reach the edges of the window without guessing
    // ten digits: the field is then a signed offset from the clock.
    let mut ts_value: Vec<u8> = ts_field.to_vec();
    if b & 0x30 != 0 {
        let offset = std::str::from_utf8(ts_field)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map_or(0, i128::from);
        let value = if b & 0x10 != 0 {
            i128::from(NOW_MS / 1000) + offset
        } else {
            i128::from(NOW_MS) + offset
        };
        ts_value = value.to_string().into_bytes();
    }

    // Self-signing: what a genuine sender would append to the signature header.
    let self_sign = a & 0x40 != 0;
    let mut sig_value: Vec<u8> = sig_field.to_vec();
    let mut tampered = false;
    if let (true, Some(spec)) = (self_sign, case.hmac.as_ref()) {
        let timestamp = std::str::from_utf8(&ts_value).map(str::trim).unwrap_or("");
        let key: &[u8] = if b & 0x40 != 0 {
            tampered = true;
            WRONG_KEY
        } else if b & 0x08 != 0 {
            spec.keys.last().expect("a key")
        } else {
            &spec.keys[0]
        };
        let mut signed_body = body.to_vec();
        if b & 0x80 != 0 {
            tampered = true;
            signed_body.push(b'!');
        }
        let tag = hmac_tag(spec.alg, key, &spec.message(timestamp, &signed_body));
        let mut encoded = if spec.base64 {
            match b & 0x03 {
                0 => STANDARD.encode(&tag),
                1 => URL_SAFE.encode(&tag),
                2 => STANDARD_NO_PAD.encode(&tag),
                _ => URL_SAFE_NO_PAD.encode(&tag),
            }
        } else if b & 0x04 != 0 {
            hex(&tag).to_ascii_uppercase()
        } else {
            hex(&tag)
        };
        if a & 0x80 != 0 {
            tampered = true;
            encoded.pop();
        }
        let prefix = if b & 0x04 != 0 {
            spec.prefix.to_ascii_uppercase()
        } else {
            spec.prefix.to_owned()
        };
        if !sig_value.is_empty() {
            sig_value.push(b' ');
        }
        sig_value.extend_from_slice(prefix.as_bytes());
        sig_value.extend_from_slice(encoded.as_bytes());
    }

    let upper = a & 0x20 != 0;
    let name = |n: &str| {
        if upper {
            n.to_ascii_uppercase()
        } else {
            n.to_owned()
        }
    };
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    if a & 0x01 != 0 {
        sent.push((name("x-signature"), sig_value.clone()));
    }
    if a & 0x02 != 0 {
        sent.push((name("x-timestamp"), ts_value.clone()));
    }
    if a & 0x04 != 0 {
        sent.push((name("x-vapi-secret"), secret_field.to_vec()));
    }
    if a & 0x08 != 0 {
        sent.push((name("authorization"), auth_field.to_vec()));
    }
    let repeated = a & 0x10 != 0 && !sent.is_empty();
    if repeated {
        let first = sent[0].clone();
        sent.push((first.0.to_ascii_lowercase(), first.1));
    }
    let headers: Headers = sent
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();

    let result = case.config.verify(&headers, body, NOW_MS);

    let hmac_ok = case.hmac.as_ref().map(|s| hmac_proven(s, &sent, body));
    let shared_ok = (!case.shared.is_empty()).then(|| shared_proven(&case.shared, &sent));
    if debug() {
        eprintln!(
            "config {} -> {result:?}; oracle: hmac {hmac_ok:?}, shared {shared_ok:?}",
            usize::from(data[0]) % all.len()
        );
    }

    match &result {
        Ok(verified) => {
            // Soundness: nothing is accepted that the oracle cannot prove.
            assert_ne!(
                hmac_ok,
                Some(false),
                "accepted without a valid HMAC: {sent:?}"
            );
            assert_ne!(
                shared_ok,
                Some(false),
                "accepted without the shared secret: {sent:?}"
            );
            let mut expected = Vec::new();
            if hmac_ok.is_some() {
                expected.push("hmac");
            }
            if shared_ok.is_some() {
                expected.push("shared-secret");
            }
            assert_eq!(verified.methods, expected);
        }
        Err(err) => {
            // Completeness: a genuine request is not refused.
            let genuine = self_sign
                && !tampered
                && !repeated
                && a & 0x01 != 0
                && std::str::from_utf8(sig_field).is_ok()
                && hmac_ok == Some(true)
                && shared_ok != Some(false);
            assert!(!genuine, "genuine request refused with {err:?}: {sent:?}");
            // With both proofs present the request must pass.
            assert!(
                !(hmac_ok != Some(false) && shared_ok != Some(false)),
                "refused ({err:?}) although every configured proof holds: {sent:?}"
            );
            let reason = err.public_reason();
            assert!(!err.kind().is_empty());
            for secret in [SECRET, "old-secret", "shared-1", "shared-2", BINARY_KEY_B64] {
                assert!(!reason.contains(secret), "{reason:?} leaks a secret");
            }
            if let Some(spec) = &case.hmac {
                let timestamp = single(&sent, "x-timestamp").unwrap_or("");
                let message = spec.message(timestamp, body);
                for key in &spec.keys {
                    let tag = hmac_tag(spec.alg, key, &message);
                    for text in encodings(spec, &tag) {
                        assert!(!reason.contains(&text), "{reason:?} leaks the signature");
                    }
                }
            }
        }
    }
});
