//! Verification, case by case: the published vectors, every header missing in
//! turn, timestamps on both sides of the tolerance, rotation, encodings.

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::collections::HashMap;

const SECRET: &str = "vapi-test-secret";
const BODY: &[u8] = br#"{"message":{"type":"status-update","status":"ringing"}}"#;
const TS: &str = "1700000000";
const NOW_MS: i64 = 1_700_000_000_000 + 5_000;

fn config(vars: &[(&str, &str)]) -> Result<VerifyConfig, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    VerifyConfig::from_variables(|name| map.get(name).filter(|v| !v.is_empty()).cloned())
}

fn default_config() -> VerifyConfig {
    config(&[(var::HMAC_SECRET, SECRET)]).expect("valid config")
}

#[test]
fn sign_produces_what_verify_accepts_and_matches_an_independent_hmac() {
    let scheme = HmacScheme::new(vec![Secret::from(SECRET)]);
    let signature = scheme.sign(TS, BODY).expect("a secret is set");
    let mut message = TS.as_bytes().to_vec();
    message.push(b'.');
    message.extend_from_slice(BODY);
    let expected: String = hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), &message)
        .iter()
        .map(|b| format!("{b:02x}")) // by hand on purpose: an independent encoder
        .collect();
    assert_eq!(signature, expected);
    let headers: Headers = [("x-signature", signature.as_str()), ("x-timestamp", TS)]
        .into_iter()
        .collect();
    assert!(scheme.verify(&headers, BODY, NOW_MS).is_ok());

    let mut base64 = HmacScheme::new(vec![Secret::from(SECRET)]);
    base64.encoding = SignatureEncoding::Base64;
    base64.prefix = "sha256=".into();
    let signed = base64.sign(TS, BODY).unwrap();
    assert!(signed.starts_with("sha256="));
    let headers: Headers = [("x-signature", signed.as_str()), ("x-timestamp", TS)]
        .into_iter()
        .collect();
    assert!(base64.verify(&headers, BODY, NOW_MS).is_ok());
    assert_eq!(HmacScheme::new(Vec::new()).sign(TS, BODY), None);
}

#[test]
fn operator_bearer_tokens() {
    assert!(bearer_matches(Some("Bearer tok-1"), "tok-1"));
    assert!(bearer_matches(Some("bearer tok-1"), "tok-1"));
    assert!(!bearer_matches(Some("Bearer tok-2"), "tok-1"));
    assert!(!bearer_matches(Some("tok-1"), "tok-1"));
    assert!(!bearer_matches(None, "tok-1"));
    assert!(!bearer_matches(Some("Bearer "), ""));
}

/// Computed directly with `hmac`, independently of the code under test.
fn hmac_bytes(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn signed_message(ts: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{ts}.").into_bytes();
    message.extend_from_slice(body);
    message
}

fn default_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    hex(&hmac_bytes(
        Algorithm::Sha256,
        secret.as_bytes(),
        &signed_message(ts, body),
    ))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

fn signed_headers(signature: &str) -> Headers {
    headers(&[("X-Signature", signature), ("X-Timestamp", TS)])
}

#[test]
fn valid_default_signature_verifies() {
    let sig = default_signature(SECRET, TS, BODY);
    let verified = default_config()
        .verify(&signed_headers(&sig), BODY, NOW_MS)
        .expect("verifies");
    assert_eq!(verified.methods, vec!["hmac"]);
}

#[test]
fn upper_case_hex_is_accepted() {
    let sig = default_signature(SECRET, TS, BODY).to_ascii_uppercase();
    assert!(default_config()
        .verify(&signed_headers(&sig), BODY, NOW_MS)
        .is_ok());
}

#[test]
fn base64_signatures_in_every_alphabet_and_padding() {
    let cfg = config(&[
        (var::HMAC_SECRET, SECRET),
        (var::SIGNATURE_ENCODING, "Base64"),
    ])
    .expect("config");
    let raw = hmac_bytes(
        Algorithm::Sha256,
        SECRET.as_bytes(),
        &signed_message(TS, BODY),
    );
    for sig in [STANDARD.encode(&raw), URL_SAFE_NO_PAD.encode(&raw)] {
        assert_eq!(
            cfg.verify(&signed_headers(&sig), BODY, NOW_MS)
                .map(|v| v.methods),
            Ok(vec!["hmac"]),
            "{sig}"
        );
    }
    // Hex is not what this config expects.
    let hex_sig = hex(&raw);
    assert!(cfg.verify(&signed_headers(&hex_sig), BODY, NOW_MS).is_err());
}

#[test]
fn prefix_is_stripped_and_required() {
    let cfg = config(&[
        (var::HMAC_SECRET, SECRET),
        (var::SIGNATURE_PREFIX, "sha256="),
    ])
    .expect("config");
    let sig = default_signature(SECRET, TS, BODY);
    assert!(cfg
        .verify(&signed_headers(&format!("sha256={sig}")), BODY, NOW_MS)
        .is_ok());
    assert_eq!(
        cfg.verify(&signed_headers(&sig), BODY, NOW_MS),
        Err(VerifyError::MalformedHeader("x-signature".into()))
    );
}

#[test]
fn sha512_and_sha1() {
    for (name, algorithm) in [("SHA512", Algorithm::Sha512), ("sha1", Algorithm::Sha1)] {
        let cfg =
            config(&[(var::HMAC_SECRET, SECRET), (var::HMAC_ALGORITHM, name)]).expect("config");
        let sig = hex(&hmac_bytes(
            algorithm,
            SECRET.as_bytes(),
            &signed_message(TS, BODY),
        ));
        assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
        // A sha256 signature is not accepted in their place.
        let sha256 = default_signature(SECRET, TS, BODY);
        assert_eq!(
            cfg.verify(&signed_headers(&sha256), BODY, NOW_MS),
            Err(VerifyError::NoMatchingSignature)
        );
    }
}

#[test]
fn base64_secret_is_decoded_before_use() {
    let key = [0u8, 1, 2, 250, 251, 252, 253, 254, 255];
    let cfg = config(&[
        (var::HMAC_SECRET, &STANDARD.encode(key)),
        (var::HMAC_SECRET_BASE64, "TRUE"),
    ])
    .expect("config");
    let sig = hex(&hmac_bytes(
        Algorithm::Sha256,
        &key,
        &signed_message(TS, BODY),
    ));
    assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
    // The base64 text itself is not the key.
    let as_text = default_signature(&STANDARD.encode(key), TS, BODY);
    assert_eq!(
        cfg.verify(&signed_headers(&as_text), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn rotation_second_secret_matches() {
    let cfg = config(&[(var::HMAC_SECRET, " old-secret , ,new-secret ")]).expect("config");
    let sig = default_signature("new-secret", TS, BODY);
    assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
    let sig = default_signature("old-secret", TS, BODY);
    assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
}

#[test]
fn several_signatures_in_one_header() {
    let cfg = default_config();
    let good = default_signature(SECRET, TS, BODY);
    let bad = default_signature("other", TS, BODY);
    for value in [
        format!("{bad} {good}"),
        format!("{bad},{good}"),
        format!("{bad}, not-hex {good}"),
    ] {
        assert!(
            cfg.verify(&signed_headers(&value), BODY, NOW_MS).is_ok(),
            "{value}"
        );
    }
    let other_bad = default_signature("another", TS, BODY);
    assert_eq!(
        cfg.verify(&signed_headers(&format!("{bad} {other_bad}")), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn prefix_with_comma_still_allows_several_signatures() {
    let cfg =
        config(&[(var::HMAC_SECRET, SECRET), (var::SIGNATURE_PREFIX, "v1,")]).expect("config");
    let good = default_signature(SECRET, TS, BODY);
    let bad = default_signature("other", TS, BODY);
    let value = format!("v1,{bad} v1,{good}");
    assert!(cfg.verify(&signed_headers(&value), BODY, NOW_MS).is_ok());
}

#[test]
fn partial_signature_fails() {
    let cfg = default_config();
    let good = default_signature(SECRET, TS, BODY);
    assert_eq!(
        cfg.verify(&signed_headers(&good[..good.len() - 2]), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        cfg.verify(&signed_headers(&good[..good.len() - 1]), BODY, NOW_MS),
        Err(VerifyError::MalformedHeader("x-signature".into()))
    );
    assert_eq!(
        cfg.verify(&signed_headers(&good[..2]), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
    // Too long is as wrong as too short.
    assert_eq!(
        cfg.verify(&signed_headers(&format!("{good}00")), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn wrong_secret_fails() {
    let sig = default_signature("not-the-secret", TS, BODY);
    assert_eq!(
        default_config().verify(&signed_headers(&sig), BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn tampered_body_fails() {
    let sig = default_signature(SECRET, TS, BODY);
    let mut tampered = BODY.to_vec();
    tampered[20] ^= 0x01;
    assert_eq!(
        default_config().verify(&signed_headers(&sig), &tampered, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn signed_timestamp_cannot_be_swapped() {
    let sig = default_signature(SECRET, TS, BODY);
    let h = headers(&[("x-signature", &sig), ("x-timestamp", "1700000001")]);
    assert_eq!(
        default_config().verify(&h, BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn each_missing_header_in_turn() {
    let cfg = default_config();
    let sig = default_signature(SECRET, TS, BODY);
    assert_eq!(
        cfg.verify(&headers(&[("x-timestamp", TS)]), BODY, NOW_MS),
        Err(VerifyError::MissingHeader("x-signature".into()))
    );
    assert_eq!(
        cfg.verify(&headers(&[("x-signature", &sig)]), BODY, NOW_MS),
        Err(VerifyError::MissingHeader("x-timestamp".into()))
    );
    assert_eq!(
        cfg.verify(&Headers::new(), BODY, NOW_MS),
        Err(VerifyError::MissingHeader("x-signature".into()))
    );
}

#[test]
fn repeated_headers_are_refused() {
    let cfg = default_config();
    let good = default_signature(SECRET, TS, BODY);
    let h = headers(&[
        ("x-signature", "00"),
        ("x-timestamp", TS),
        ("X-Signature", &good),
    ]);
    assert_eq!(
        cfg.verify(&h, BODY, NOW_MS),
        Err(VerifyError::RepeatedHeader("x-signature".into()))
    );
    let h = headers(&[
        ("x-signature", &good),
        ("x-timestamp", TS),
        ("x-timestamp", "1"),
    ]);
    assert_eq!(
        cfg.verify(&h, BODY, NOW_MS),
        Err(VerifyError::RepeatedHeader("x-timestamp".into()))
    );
}

#[test]
fn non_utf8_signature_header_is_malformed() {
    let mut h = Headers::new();
    h.push("x-signature", vec![0xff, 0x00]);
    h.push("x-timestamp", TS);
    assert_eq!(
        default_config().verify(&h, BODY, NOW_MS),
        Err(VerifyError::MalformedHeader("x-signature".into()))
    );
}

#[test]
fn timestamp_tolerance_both_sides_of_the_boundary() {
    let cfg = default_config();
    let sig = default_signature(SECRET, TS, BODY);
    let h = signed_headers(&sig);
    let signed_ms = 1_700_000_000_000_i64;
    assert!(cfg.verify(&h, BODY, signed_ms + 300_000).is_ok());
    assert_eq!(
        cfg.verify(&h, BODY, signed_ms + 300_001),
        Err(VerifyError::TimestampTooOld)
    );
    assert!(cfg.verify(&h, BODY, signed_ms - 300_000).is_ok());
    assert_eq!(
        cfg.verify(&h, BODY, signed_ms - 300_001),
        Err(VerifyError::TimestampInFuture)
    );
}

#[test]
fn configured_tolerance_is_used() {
    let cfg = config(&[
        (var::HMAC_SECRET, SECRET),
        (var::TIMESTAMP_TOLERANCE_S, "10"),
    ])
    .expect("config");
    let h = signed_headers(&default_signature(SECRET, TS, BODY));
    assert!(cfg.verify(&h, BODY, 1_700_000_010_000).is_ok());
    assert_eq!(
        cfg.verify(&h, BODY, 1_700_000_011_000),
        Err(VerifyError::TimestampTooOld)
    );
    let zero = config(&[
        (var::HMAC_SECRET, SECRET),
        (var::TIMESTAMP_TOLERANCE_S, "0"),
    ])
    .expect("config");
    assert!(zero.verify(&h, BODY, 1_700_000_000_000).is_ok());
    assert_eq!(
        zero.verify(&h, BODY, 1_699_999_999_999),
        Err(VerifyError::TimestampInFuture)
    );
}

#[test]
fn timestamp_in_milliseconds_or_seconds() {
    let cfg = default_config();
    let ts_ms = "1700000000123";
    let sig = default_signature(SECRET, ts_ms, BODY);
    let h = headers(&[("x-signature", &sig), ("x-timestamp", ts_ms)]);
    assert!(cfg.verify(&h, BODY, 1_700_000_000_123 + 300_000).is_ok());
    assert_eq!(
        cfg.verify(&h, BODY, 1_700_000_000_123 + 300_001),
        Err(VerifyError::TimestampTooOld)
    );
    // The same instant in seconds verifies against the same clock.
    let sig = default_signature(SECRET, TS, BODY);
    assert!(cfg
        .verify(&signed_headers(&sig), BODY, 1_700_000_000_123)
        .is_ok());
}

#[test]
fn malformed_timestamps() {
    let cfg = default_config();
    for ts in [
        "abc",
        "-5",
        "+1700000000",
        "1700000000.5",
        "1.7e9",
        "",
        "99999999999999999999999999",
    ] {
        let sig = default_signature(SECRET, ts, BODY);
        let h = headers(&[("x-signature", &sig), ("x-timestamp", ts)]);
        assert_eq!(
            cfg.verify(&h, BODY, NOW_MS),
            Err(VerifyError::MalformedTimestamp),
            "{ts:?}"
        );
    }
}

#[test]
fn extreme_clocks_do_not_overflow() {
    let cfg = default_config();
    let ts = u64::MAX.to_string();
    let sig = default_signature(SECRET, &ts, BODY);
    let h = headers(&[("x-signature", &sig), ("x-timestamp", &ts)]);
    assert_eq!(
        cfg.verify(&h, BODY, i64::MIN),
        Err(VerifyError::TimestampInFuture)
    );
    let h = signed_headers(&default_signature(SECRET, TS, BODY));
    assert_eq!(
        cfg.verify(&h, BODY, i64::MAX),
        Err(VerifyError::TimestampTooOld)
    );
}

#[test]
fn no_timestamp_header_signs_the_body_alone() {
    let cfg =
        config(&[(var::HMAC_SECRET, SECRET), (var::TIMESTAMP_HEADER, "None")]).expect("config");
    let hmac = cfg.hmac.as_ref().expect("hmac");
    assert_eq!(hmac.timestamp_header, None);
    assert_eq!(hmac.payload_format.as_str(), "{body}");
    let sig = hex(&hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), BODY));
    let h = headers(&[("x-signature", &sig)]);
    assert!(cfg.verify(&h, BODY, NOW_MS).is_ok());
    // Any clock: nothing time-bound is signed.
    assert!(cfg.verify(&h, BODY, 0).is_ok());
}

#[test]
fn custom_payload_format_and_headers() {
    let cfg = config(&[
        (var::HMAC_SECRET, SECRET),
        (var::SIGNATURE_HEADER, "X-Vapi-Signature"),
        (var::TIMESTAMP_HEADER, "X-Vapi-Timestamp"),
        (var::SIGNATURE_PAYLOAD, "v0:{timestamp}:{body}"),
    ])
    .expect("config");
    let mut message = format!("v0:{TS}:").into_bytes();
    message.extend_from_slice(BODY);
    let sig = hex(&hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), &message));
    let h = headers(&[("x-vapi-signature", &sig), ("x-vapi-timestamp", TS)]);
    assert!(cfg.verify(&h, BODY, NOW_MS).is_ok());
}

#[test]
fn empty_or_absent_secrets_mean_not_configured() {
    let sig = default_signature(SECRET, TS, BODY);
    for cfg in [
        config(&[]).expect("config"),
        config(&[(var::HMAC_SECRET, " , ,"), (var::SERVER_SECRET, ",")]).expect("config"),
    ] {
        assert!(!cfg.is_configured());
        assert!(cfg.hmac.is_none());
        assert_eq!(
            cfg.verify(&signed_headers(&sig), BODY, NOW_MS),
            Err(VerifyError::NotConfigured)
        );
    }
    // Built by hand with empty secrets: still refused, and an empty value never matches.
    let cfg = VerifyConfig {
        hmac: Some(HmacScheme::new(vec![Secret::from("")])),
        shared_secrets: vec![Secret::from("")],
        shared_secret_hashes: Vec::new(),
        oauth: None,
        shared_secret_header: SHARED_SECRET_HEADER.to_owned(),
    };
    assert!(!cfg.is_configured());
    let empty_sig = hex(&hmac_bytes(
        Algorithm::Sha256,
        b"",
        &signed_message(TS, BODY),
    ));
    let h = headers(&[
        ("x-signature", &empty_sig),
        ("x-timestamp", TS),
        ("x-vapi-secret", ""),
    ]);
    assert_eq!(
        cfg.verify(&h, BODY, NOW_MS),
        Err(VerifyError::NotConfigured)
    );
}

#[test]
fn empty_presented_shared_secret_never_matches() {
    let cfg = config(&[(var::SERVER_SECRET, "shh")]).expect("config");
    assert_eq!(
        cfg.verify(&headers(&[("x-vapi-secret", "  ")]), BODY, NOW_MS),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        cfg.verify(&headers(&[("authorization", "Bearer ")]), BODY, NOW_MS),
        Err(VerifyError::SharedSecretMismatch)
    );
}

#[test]
fn inconsistent_hand_built_scheme_fails_closed() {
    let mut scheme = HmacScheme::new(vec![Secret::from(SECRET)]);
    scheme.timestamp_header = None;
    let cfg = VerifyConfig {
        hmac: Some(scheme),
        shared_secrets: Vec::new(),
        shared_secret_hashes: Vec::new(),
        oauth: None,
        shared_secret_header: SHARED_SECRET_HEADER.to_owned(),
    };
    let sig = default_signature(SECRET, "", BODY);
    assert_eq!(
        cfg.verify(&headers(&[("x-signature", &sig)]), BODY, NOW_MS),
        Err(VerifyError::NotConfigured)
    );
}

#[test]
fn hand_built_default_scheme_matches_from_variables() {
    let cfg = VerifyConfig {
        hmac: Some(HmacScheme::new(vec![Secret::from(SECRET)])),
        shared_secrets: Vec::new(),
        shared_secret_hashes: Vec::new(),
        oauth: None,
        shared_secret_header: SHARED_SECRET_HEADER.to_owned(),
    };
    let sig = default_signature(SECRET, TS, BODY);
    assert!(cfg.verify(&signed_headers(&sig), BODY, NOW_MS).is_ok());
    assert_eq!(
        format!("{:?}", cfg.hmac),
        format!("{:?}", default_config().hmac)
    );
}

#[test]
fn both_methods_configured_both_must_pass() {
    let cfg =
        config(&[(var::HMAC_SECRET, SECRET), (var::SERVER_SECRET, "shared")]).expect("config");
    let good = default_signature(SECRET, TS, BODY);
    let bad = default_signature("other", TS, BODY);
    let both = headers(&[
        ("x-signature", &good),
        ("x-timestamp", TS),
        ("x-vapi-secret", "shared"),
    ]);
    assert_eq!(
        cfg.verify(&both, BODY, NOW_MS).map(|v| v.methods),
        Ok(vec!["hmac", "shared-secret"])
    );
    let only_hmac = headers(&[
        ("x-signature", &good),
        ("x-timestamp", TS),
        ("x-vapi-secret", "wrong"),
    ]);
    assert_eq!(
        cfg.verify(&only_hmac, BODY, NOW_MS),
        Err(VerifyError::SharedSecretMismatch)
    );
    let hmac_no_secret = signed_headers(&good);
    assert_eq!(
        cfg.verify(&hmac_no_secret, BODY, NOW_MS),
        Err(VerifyError::MissingHeader(
            "x-vapi-secret or authorization".into()
        ))
    );
    let only_shared = headers(&[
        ("x-signature", &bad),
        ("x-timestamp", TS),
        ("x-vapi-secret", "shared"),
    ]);
    assert_eq!(
        cfg.verify(&only_shared, BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn shared_secret_by_header_or_bearer() {
    let cfg = config(&[(var::SERVER_SECRET, "first, second")]).expect("config");
    let ok = |pairs: &[(&str, &str)]| cfg.verify(&headers(pairs), BODY, NOW_MS);
    assert_eq!(
        ok(&[("X-Vapi-Secret", "first")]).map(|v| v.methods),
        Ok(vec!["shared-secret"])
    );
    assert!(ok(&[("x-vapi-secret", "second")]).is_ok());
    assert!(ok(&[("Authorization", "Bearer first")]).is_ok());
    assert!(ok(&[("authorization", "bearer   second")]).is_ok());
    assert_eq!(
        ok(&[("x-vapi-secret", "firs")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        ok(&[("x-vapi-secret", "first-and-more")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        ok(&[("authorization", "Bearer wrong")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        ok(&[("authorization", "Basic Zmlyc3Q=")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    // A Bearer credential with its prefix turned off sends the token alone;
    // with it on, in its own header too.
    assert!(ok(&[("authorization", "first")]).is_ok());
    assert!(ok(&[("x-vapi-secret", "Bearer second")]).is_ok());
    assert_eq!(
        ok(&[("x-vapi-secret", "Bearer firs")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    // x-vapi-secret decides when present.
    assert_eq!(
        ok(&[
            ("x-vapi-secret", "wrong"),
            ("authorization", "Bearer first")
        ]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        ok(&[]),
        Err(VerifyError::MissingHeader(
            "x-vapi-secret or authorization".into()
        ))
    );
    assert_eq!(
        ok(&[("x-vapi-secret", "first"), ("x-vapi-secret", "first")]),
        Err(VerifyError::RepeatedHeader("x-vapi-secret".into()))
    );
    assert_eq!(
        ok(&[
            ("authorization", "Bearer first"),
            ("authorization", "Bearer x")
        ]),
        Err(VerifyError::RepeatedHeader("authorization".into()))
    );
}

#[test]
fn a_secret_that_starts_with_bearer_matches_as_a_whole() {
    let cfg = config(&[(var::SERVER_SECRET, "Bearer abc")]).expect("config");
    let ok = |pairs: &[(&str, &str)]| cfg.verify(&headers(pairs), BODY, NOW_MS).map(|_| ());
    assert_eq!(ok(&[("x-vapi-secret", "Bearer abc")]), Ok(()));
    assert_eq!(ok(&[("x-vapi-secret", "Bearer Bearer abc")]), Ok(()));
    assert_eq!(
        ok(&[("x-vapi-secret", "abc")]),
        Err(VerifyError::SharedSecretMismatch)
    );
}

#[test]
fn github_published_vector() {
    let cfg = config(&[
        (var::HMAC_SECRET, "It's a Secret to Everybody"),
        (var::SIGNATURE_HEADER, "x-hub-signature-256"),
        (var::TIMESTAMP_HEADER, "none"),
        (var::SIGNATURE_PAYLOAD, "{body}"),
        (var::SIGNATURE_PREFIX, "sha256="),
    ])
    .expect("config");
    let h = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert_eq!(
        cfg.verify(&h, b"Hello, World!", NOW_MS).map(|v| v.methods),
        Ok(vec!["hmac"])
    );
    assert_eq!(
        cfg.verify(&h, b"Hello, World?", NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn config_errors_name_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(var::HMAC_ALGORITHM, "md5")],
            "vapi_hmac_algorithm: expected sha256, sha512 or sha1",
        ),
        (
            &[(var::SIGNATURE_ENCODING, "base32")],
            "vapi_signature_encoding: expected hex or base64",
        ),
        (
            &[(var::HMAC_SECRET_BASE64, "yes")],
            "vapi_hmac_secret_base64: expected true or false",
        ),
        (
            &[(var::TIMESTAMP_TOLERANCE_S, "-1")],
            "vapi_timestamp_tolerance_s: expected a non-negative integer",
        ),
        (
            &[(var::TIMESTAMP_TOLERANCE_S, "5m")],
            "vapi_timestamp_tolerance_s: expected a non-negative integer",
        ),
        (
            &[
                (var::TIMESTAMP_HEADER, "none"),
                (var::SIGNATURE_PAYLOAD, "{timestamp}.{body}"),
            ],
            "vapi_signature_payload: uses {timestamp} but vapi_timestamp_header is `none`",
        ),
        (
            &[(var::SIGNATURE_PAYLOAD, "{timestamp}.")],
            "vapi_signature_payload: must contain {body}",
        ),
        (
            &[(var::SIGNATURE_PAYLOAD, "{timestamp}.{url}.{body}")],
            "vapi_signature_payload: uses {url} but vapi_signature_url is not set",
        ),
        (
            &[
                (var::SIGNATURE_PAYLOAD, "{svix-id}.{body}"),
                (var::TIMESTAMP_HEADER, "none"),
            ],
            "vapi_signature_payload: uses {svix-id} but vapi_message_id_header is not set",
        ),
        (
            &[(var::SIGNATURE_PAYLOAD, "{timestamp}.{path}.{body}")],
            "vapi_signature_payload: unsupported placeholder `{path}`",
        ),
        (
            &[(var::SIGNATURE_PAYLOAD, "{body}.{timestamp")],
            "vapi_signature_payload: `{` without a closing `}`",
        ),
        (
            &[(var::SIGNATURE_HEADER, "   ")],
            "vapi_signature_header: the header name is empty",
        ),
        (
            &[(var::TIMESTAMP_HEADER, " ")],
            "vapi_timestamp_header: the header name is empty",
        ),
        (
            &[(var::SIGNATURE_HEADER, "x signature")],
            "vapi_signature_header: `x signature` is not a valid header name",
        ),
        (
            &[
                (var::HMAC_SECRET, "c2VjcmV0, not base64!"),
                (var::HMAC_SECRET_BASE64, "true"),
            ],
            "vapi_hmac_secret: secret number 2 is not valid base64",
        ),
    ];
    for (vars, expected) in cases {
        let mut vars = vars.to_vec();
        if !vars.iter().any(|(name, _)| *name == var::HMAC_SECRET) {
            vars.push((var::HMAC_SECRET, SECRET));
        }
        let err = config(&vars).expect_err(expected);
        let message = err.to_string();
        assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
        assert!(!message.contains(SECRET));
    }
}

#[test]
fn secret_not_base64_error_hides_the_secret() {
    let err = config(&[
        (var::HMAC_SECRET, "super$ecret!"),
        (var::HMAC_SECRET_BASE64, "true"),
    ])
    .expect_err("not base64");
    assert!(!err.to_string().contains("super$ecret!"));
}

#[test]
fn debug_never_shows_secrets() {
    let cfg = config(&[
        (var::HMAC_SECRET, "hmac-secret-value"),
        (var::SERVER_SECRET, "shared-secret-value"),
    ])
    .expect("config");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hmac-secret-value"), "{debug}");
    assert!(!debug.contains("shared-secret-value"), "{debug}");
    assert!(debug.contains("[REDACTED]"));
    // Byte-wise too: Debug of a Vec<u8> would print the numbers.
    let bytes = format!("{:?}", b"hmac-secret-value".to_vec());
    assert!(!debug.contains(&bytes[1..bytes.len() - 1]));
}

#[test]
fn public_reasons_never_carry_the_expected_signature() {
    let cfg = default_config();
    let expected = default_signature(SECRET, TS, BODY);
    let wrong = default_signature("other", TS, BODY);
    let err = cfg
        .verify(&signed_headers(&wrong), BODY, NOW_MS)
        .expect_err("wrong signature");
    let reason = err.public_reason();
    assert_eq!(reason, "no matching signature");
    assert!(!reason.contains(&expected) && !reason.contains(SECRET));
    assert_eq!(err.kind(), "no_matching_signature");
    assert_eq!(
        VerifyError::MissingHeader("x-signature".into()).public_reason(),
        "missing header x-signature"
    );
}

#[test]
fn a_bearer_credential_with_its_own_header_name() {
    let cfg = config(&[
        (var::SERVER_SECRET, "tok"),
        (var::SERVER_SECRET_HEADER, "X-Custom-Auth"),
    ])
    .expect("config");
    let check = |h: &[(&str, &str)]| cfg.verify(&headers(h), BODY, NOW_MS).map(|_| ());
    assert_eq!(check(&[("x-custom-auth", "tok")]), Ok(()));
    // Vapi's default for a Bearer credential with a header name: the prefix on.
    assert_eq!(check(&[("X-Custom-Auth", "Bearer tok")]), Ok(()));
    assert_eq!(check(&[("x-custom-auth", "bearer  tok ")]), Ok(()));
    assert_eq!(
        check(&[("x-custom-auth", "Bearer nope")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        check(&[("x-custom-auth", "Bearer")]),
        Err(VerifyError::SharedSecretMismatch)
    );
    assert_eq!(
        check(&[("x-custom-auth", "nope"), ("authorization", "Bearer tok")]),
        Err(VerifyError::SharedSecretMismatch),
        "the credential's own header decides"
    );
    assert_eq!(check(&[("authorization", "Bearer tok")]), Ok(()));
    assert_eq!(
        check(&[("x-vapi-secret", "tok")]),
        Err(VerifyError::MissingHeader(
            "x-custom-auth or authorization".into()
        ))
    );
    // `Authorization` as the credential's header, prefix on or off.
    let cfg = config(&[
        (var::SERVER_SECRET, "tok"),
        (var::SERVER_SECRET_HEADER, "Authorization"),
    ])
    .expect("config");
    for value in ["tok", "Bearer tok"] {
        assert!(cfg
            .verify(&headers(&[("authorization", value)]), BODY, NOW_MS)
            .is_ok());
    }
}

#[test]
fn method_url_and_message_id_placeholders_are_signed() {
    let url = "https://edge.example.com/webhooks/vapi";
    let cfg = config(&[
        (var::HMAC_SECRET, SECRET),
        (
            var::SIGNATURE_PAYLOAD,
            "{method} {url}.{svix-id}.{timestamp}.{body}",
        ),
        (var::SIGNATURE_URL, url),
        (var::MESSAGE_ID_HEADER, "Svix-Id"),
    ])
    .expect("config");
    let message = format!("POST {url}.msg_1.{TS}.");
    let mut signed = message.into_bytes();
    signed.extend_from_slice(BODY);
    let signature = hex(&hmac_bytes(Algorithm::Sha256, SECRET.as_bytes(), &signed));
    let h = headers(&[
        ("x-signature", &signature),
        ("x-timestamp", TS),
        ("svix-id", "msg_1"),
    ]);
    assert!(cfg.verify_request("POST", &h, BODY, NOW_MS).is_ok());
    assert_eq!(
        cfg.verify_request("PUT", &h, BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_id = headers(&[
        ("x-signature", &signature),
        ("x-timestamp", TS),
        ("svix-id", "msg_2"),
    ]);
    assert_eq!(
        cfg.verify_request("POST", &other_id, BODY, NOW_MS),
        Err(VerifyError::NoMatchingSignature)
    );
    let without_id = headers(&[("x-signature", &signature), ("x-timestamp", TS)]);
    assert_eq!(
        cfg.verify_request("POST", &without_id, BODY, NOW_MS),
        Err(VerifyError::MissingHeader("svix-id".into()))
    );
}

#[test]
fn a_hashed_shared_secret_matches_its_secret_only_in_any_form_vapi_sends() {
    let hash = crate::tenant::bearer_hash("tok-new");
    let cfg = config(&[(
        var::SERVER_SECRET_SHA256,
        &format!("{hash}, {}", crate::tenant::bearer_hash("tok-old")),
    )])
    .expect("config");
    assert!(cfg.is_configured());
    for presented in [
        ("x-vapi-secret", "tok-new"),
        ("x-vapi-secret", "Bearer tok-new"),
        ("authorization", "Bearer tok-old"),
    ] {
        assert!(
            cfg.verify(&headers(&[presented]), BODY, NOW_MS).is_ok(),
            "{presented:?}"
        );
    }
    assert_eq!(
        cfg.verify(&headers(&[("x-vapi-secret", "tok-other")]), BODY, NOW_MS),
        Err(VerifyError::SharedSecretMismatch)
    );
    // The hash itself is not the secret.
    assert_eq!(
        cfg.verify(&headers(&[("x-vapi-secret", &hash)]), BODY, NOW_MS),
        Err(VerifyError::SharedSecretMismatch)
    );
    let error = config(&[(var::SERVER_SECRET_SHA256, "abc123")]).unwrap_err();
    assert!(error
        .to_string()
        .starts_with("vapi_server_secret_sha256: expected SHA-256"));
}
