//! What every verified webhook needs from the variables, read and checked
//! once per request: a bad value is an operator's mistake, reported by name
//! (the webhook answers 503 and logs CRITICAL) and never quoted if secret.

use crate::claim::DEFAULT_LEASE_MS;
use crate::phone::Country;
use crate::rollout;
use thiserror::Error;

/// `agent_lookup_retry_ms` when unset: 5 retries, 3.85 s in all.
pub const DEFAULT_RETRY_MS: &str = "100,250,500,1000,2000";

/// A variable with a value this version cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("default_country is not a country this version knows")]
    Country,
    #[error("agent_lookup_retry_ms: {0}")]
    RetryDelays(#[from] RetryDelaysError),
    #[error("inbound_rollout_percent: {0}")]
    RolloutPercent(#[from] rollout::PercentError),
    #[error("claim_lease_ms: expected milliseconds from 1000 to 3600000")]
    LeaseMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetryDelaysError {
    #[error("`{0}` is not a number of milliseconds")]
    NotANumber(String),
    #[error("at most 10 retries")]
    TooMany,
    #[error("the delays add up to more than 10000 ms")]
    TooLong,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub country: Country,
    /// Delays between retries of the agent lookup (live deliveries only).
    pub retry_delays: Vec<u64>,
    pub rollout_percent: u32,
    pub lease_ms: i64,
}

impl Settings {
    /// Reads the variables by name; `get` returns `None` for unset or empty.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let country_code = get("default_country").unwrap_or_else(|| "US".into());
        let country = Country::from_iso(&country_code).ok_or(SettingsError::Country)?;
        let retry_delays = parse_retry_delays(
            &get("agent_lookup_retry_ms").unwrap_or_else(|| DEFAULT_RETRY_MS.into()),
        )?;
        let rollout_percent = rollout::parse_percent(
            &get("inbound_rollout_percent").unwrap_or_else(|| "100".into()),
        )?;
        let lease_ms = match get("claim_lease_ms") {
            None => DEFAULT_LEASE_MS,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(ms) if (1_000..=3_600_000).contains(&ms) => ms,
                _ => return Err(SettingsError::LeaseMs),
            },
        };
        Ok(Settings {
            country,
            retry_delays,
            rollout_percent,
            lease_ms,
        })
    }
}

/// Reads `agent_lookup_retry_ms`: comma-separated milliseconds, at most 10
/// delays adding up to at most 10 s. Empty means no retry.
pub fn parse_retry_delays(text: &str) -> Result<Vec<u64>, RetryDelaysError> {
    let delays = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<u64>()
                .map_err(|_| RetryDelaysError::NotANumber(part.to_string()))
        })
        .collect::<Result<Vec<u64>, _>>()?;
    if delays.len() > 10 {
        return Err(RetryDelaysError::TooMany);
    }
    if delays.iter().sum::<u64>() > 10_000 {
        return Err(RetryDelaysError::TooLong);
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_variables(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_are_the_checklists() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.retry_delays, [100, 250, 500, 1000, 2000]);
        assert_eq!(s.retry_delays.iter().sum::<u64>(), 3850);
        assert_eq!(s.rollout_percent, 100);
        assert_eq!(s.lease_ms, 30_000);
        assert_eq!(s.country, Country::from_iso("US").unwrap());
    }

    #[test]
    fn each_bad_value_is_named() {
        for (vars, expected) in [
            (
                vec![("default_country", "XX")],
                "default_country is not a country this version knows",
            ),
            (
                vec![("agent_lookup_retry_ms", "100,abc")],
                "agent_lookup_retry_ms: `abc` is not a number of milliseconds",
            ),
            (
                vec![("agent_lookup_retry_ms", "1,1,1,1,1,1,1,1,1,1,1")],
                "agent_lookup_retry_ms: at most 10 retries",
            ),
            (
                vec![("agent_lookup_retry_ms", "6000,5000")],
                "agent_lookup_retry_ms: the delays add up to more than 10000 ms",
            ),
            (
                vec![("inbound_rollout_percent", "101")],
                "inbound_rollout_percent: `101` is not a whole number from 0 to 100",
            ),
            (
                vec![("claim_lease_ms", "999")],
                "claim_lease_ms: expected milliseconds from 1000 to 3600000",
            ),
        ] {
            assert_eq!(settings(&vars).unwrap_err().to_string(), expected);
        }
    }

    #[test]
    fn retry_delays_may_be_empty_or_spaced() {
        assert_eq!(parse_retry_delays(""), Ok(vec![]));
        assert_eq!(parse_retry_delays(" 0 , 10 "), Ok(vec![0, 10]));
        assert_eq!(parse_retry_delays("0"), Ok(vec![0]));
    }
}
