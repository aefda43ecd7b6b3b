//! The rollout flag `inbound_rollout_percent`: which organisations' inbound calls
//! this deployment handles, decided deterministically per organisation so a
//! call's events never split between "handled" and "not handled".
//!
//! The bucket is computed inside the recording statement (the organisation is
//! only known once the agent is found, and one round trip is the budget), so
//! the recording function (`pg_sql::RECORD_EVENT_CALL`) holds the same
//! function in SQL; an end-to-end test at a split rollout keeps the two in
//! step.

use sha2::{Digest, Sha256};

/// The organisation's bucket, 0..100: the first four bytes of the SHA-256 of
/// its lower-case id, big-endian, modulo 100.
pub fn bucket(org_id: &str) -> u32 {
    let digest = Sha256::digest(org_id.to_ascii_lowercase().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 100
}

/// Whether `org_id` is inside a rollout of `percent` (0 none, 100 all).
pub fn includes(org_id: &str, percent: u32) -> bool {
    bucket(org_id) < percent
}

/// A rollout share that is not a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a whole number from 0 to 100")]
pub struct PercentError(pub String);

/// Reads `inbound_rollout_percent`: a whole number from 0 to 100.
pub fn parse_percent(text: &str) -> Result<u32, PercentError> {
    match text.trim().parse::<u32>() {
        Ok(percent) if percent <= 100 => Ok(percent),
        _ => Err(PercentError(text.trim().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Computed independently: sha256("6f1c...3c40") starts 1b753c1a = 460667930.
        assert_eq!(
            bucket("6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40"),
            460_667_930 % 100
        );
        assert_eq!(
            bucket("6F1C2A4E-8B3D-4F7A-9C2E-1D5B7E9A3C40"),
            bucket("6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40")
        );
        let inside = (0..1000)
            .filter(|i| includes(&format!("00000000-0000-0000-0000-{i:012}"), 50))
            .count();
        assert!((400..600).contains(&inside), "50% took {inside} of 1000");
    }

    #[test]
    fn zero_and_hundred_are_absolute() {
        for i in 0..200 {
            let org = format!("org-{i}");
            assert!(!includes(&org, 0));
            assert!(includes(&org, 100));
        }
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(parse_percent(" 25 "), Ok(25));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("half").is_err());
    }
}
