//! What every verified webhook needs from the variables, read and checked
//! once per request: a bad value is an operator's mistake, reported by name
//! (the webhook answers 503 and logs CRITICAL) and never quoted if secret.

use crate::call::CallDirection;
use crate::claim::DEFAULT_LEASE_MS;
use crate::payload::MessageKind;
use crate::phone::Country;
use crate::rollout;
use crate::standard_webhooks::SigningKey;
use crate::upstream::{Fallback, TypeTimeout};
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
    #[error("call_type_aliases: `{0}` is not `<call type>=inbound|outbound|web`")]
    CallTypeAlias(String),
    #[error("upstream_url: expected an http:// or https:// URL")]
    UpstreamUrl,
    #[error("upstream_secret is not a valid signing key")]
    UpstreamSecret,
    #[error("upstream_types: `{0}` is not a message type whose reply Vapi uses")]
    UpstreamType(String),
    #[error("upstream_timeout_ms: expected milliseconds from 100 to 300000")]
    UpstreamTimeout,
    #[error("campaign_predial_eligible: expected true or false")]
    PredialEligible,
    #[error("upstream_timeouts: `{0}` is not `<reply type>=<milliseconds from 100 to 300000>`")]
    UpstreamTimeouts(String),
    #[error("default_org_id: expected an organisation id (a UUID)")]
    DefaultOrgId,
    #[error("assistant_request_fallback: expected an assistant id or an E.164 number (+ and 8 to 15 digits)")]
    AssistantRequestFallback,
}

/// `upstream_types` when unset: every type whose reply Vapi uses. An
/// `assistant-request` goes upstream only when no local agent answers it.
pub const DEFAULT_UPSTREAM_TYPES: &str = "tool-calls,transfer-destination-request,\
handoff-destination-request,knowledge-base-request,call.endpointing.request,voice-request,\
campaign.predial,assistant-request,function-call";

/// `upstream_timeout_ms` when unset: Vapi advises answering an
/// `assistant-request` within about 6 s (its limit is 7.5 s end to end).
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 6_000;

/// Where the messages that this edge cannot answer itself go.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    /// Signs forwarded requests (Standard Webhooks); `None` sends them unsigned.
    pub key: Option<SigningKey>,
    /// The message types forwarded, as Vapi names them.
    pub types: Vec<String>,
    /// The deadline of every type without one of its own.
    pub timeout_ms: u64,
    /// `upstream_timeouts`: deadlines set per type, up to Vapi's 300 s.
    pub type_timeouts: Vec<(String, u64)>,
}

impl Upstream {
    pub fn handles(&self, message_type: &str) -> bool {
        self.types.iter().any(|t| t == message_type)
    }

    /// The deadline for `message_type`: its own when `upstream_timeouts`
    /// sets one, else `upstream_timeout_ms`.
    pub fn timeout_for(&self, message_type: &str) -> TypeTimeout {
        match self.type_timeouts.iter().find(|(t, _)| t == message_type) {
            Some((_, ms)) => TypeTimeout {
                ms: *ms,
                set_for_type: true,
            },
            None => TypeTimeout {
                ms: self.timeout_ms,
                set_for_type: false,
            },
        }
    }
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

#[derive(Debug, Clone)]
pub struct Settings {
    /// The tenant whose server URL the request came in on; '' for the
    /// single-tenant route. Not a variable: the flow sets it.
    pub tenant: String,
    pub country: Country,
    /// Delays between retries of the agent lookup (live deliveries only).
    pub retry_delays: Vec<u64>,
    pub rollout_percent: u32,
    pub lease_ms: i64,
    /// Call types Vapi added after this version, mapped by the operator.
    pub call_type_aliases: Vec<(String, CallDirection)>,
    pub upstream: Option<Upstream>,
    /// The answer to a `campaign.predial` when no upstream gives one.
    pub predial_eligible: bool,
    /// The organisation of a call that no handle Vapi sends resolves
    /// (`default_org_id`); `None` keeps such calls unassigned.
    pub default_org_id: Option<String>,
    /// What answers an `assistant-request` on a line without a fallback of
    /// its own when no agent or upstream does (`assistant_request_fallback`).
    pub assistant_request_fallback: Option<Fallback>,
}

impl Settings {
    /// Reads the variables by name; `get` returns `None` for unset or empty.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        // One body for every caller's closure: the component's size.
        Self::read(&get)
    }

    fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
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
        let call_type_aliases = parse_call_type_aliases(get("call_type_aliases").as_deref())?;
        let predial_eligible = match get("campaign_predial_eligible").as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(SettingsError::PredialEligible),
        };
        let default_org_id = match get("default_org_id") {
            None => None,
            Some(id) if crate::access::looks_like_uuid(id.trim()) => {
                Some(id.trim().to_ascii_lowercase())
            }
            Some(_) => return Err(SettingsError::DefaultOrgId),
        };
        let assistant_request_fallback = match get("assistant_request_fallback") {
            None => None,
            Some(text) => {
                Some(Fallback::parse(&text).ok_or(SettingsError::AssistantRequestFallback)?)
            }
        };
        Ok(Settings {
            tenant: String::new(),
            country,
            retry_delays,
            rollout_percent,
            lease_ms,
            call_type_aliases,
            upstream: upstream(get)?,
            predial_eligible,
            default_org_id,
            assistant_request_fallback,
        })
    }
}

/// `call_type_aliases`: `vapi.sipCall=inbound,...`.
fn parse_call_type_aliases(
    text: Option<&str>,
) -> Result<Vec<(String, CallDirection)>, SettingsError> {
    parse_pairs(text, |entry, kind, direction| {
        let direction = CallDirection::from_name(direction)
            .ok_or_else(|| SettingsError::CallTypeAlias(entry.to_string()))?;
        Ok((kind.to_string(), direction))
    })
    .map_err(|entry| entry.unwrap_or_else(SettingsError::CallTypeAlias))
}

/// The entries of a comma-separated `<name>=<value>` list, each read by
/// `read(entry, name, value)` (both sides trimmed). An entry that is not a
/// pair fails with `Err(Err(entry))`, for the caller to name its variable.
fn parse_pairs<T>(
    text: Option<&str>,
    read: impl Fn(&str, &str, &str) -> Result<T, SettingsError>,
) -> Result<Vec<T>, Result<SettingsError, String>> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, value) = entry
                .split_once('=')
                .map(|(n, v)| (n.trim(), v.trim()))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| Err(entry.to_string()))?;
            read(entry, name, value).map_err(Ok)
        })
        .collect()
}

fn upstream(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Upstream>, SettingsError> {
    let Some(url) = get("upstream_url") else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    if crate::http::split_url(&url).is_err() {
        return Err(SettingsError::UpstreamUrl);
    }
    let key = match get("upstream_secret") {
        None => None,
        Some(secret) => {
            Some(SigningKey::from_secret(&secret).map_err(|_| SettingsError::UpstreamSecret)?)
        }
    };
    let types = get("upstream_types").unwrap_or_else(|| DEFAULT_UPSTREAM_TYPES.to_string());
    let types = types
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if MessageKind::from_type(t).expects_reply() {
                Ok(t.to_string())
            } else {
                Err(SettingsError::UpstreamType(t.to_string()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timeout_ms = match get("upstream_timeout_ms") {
        None => DEFAULT_UPSTREAM_TIMEOUT_MS,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ms) if (100..=300_000).contains(&ms) => ms,
            _ => return Err(SettingsError::UpstreamTimeout),
        },
    };
    let type_timeouts = parse_type_timeouts(get("upstream_timeouts").as_deref())?;
    Ok(Some(Upstream {
        url,
        key,
        types,
        timeout_ms,
        type_timeouts,
    }))
}

/// `upstream_timeouts`: `tool-calls=40000,knowledge-base-request=3000`.
fn parse_type_timeouts(text: Option<&str>) -> Result<Vec<(String, u64)>, SettingsError> {
    parse_pairs(text, |entry, kind, ms| {
        let bad = || SettingsError::UpstreamTimeouts(entry.to_string());
        let ms = ms.parse::<u64>().map_err(|_| bad())?;
        if !MessageKind::from_type(kind).expects_reply() || !(100..=300_000).contains(&ms) {
            return Err(bad());
        }
        Ok((kind.to_string(), ms))
    })
    .map_err(|entry| entry.unwrap_or_else(SettingsError::UpstreamTimeouts))
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
    fn call_type_aliases_and_the_upstream_are_read_and_checked() {
        let s = settings(&[
            ("call_type_aliases", "vapi.sipCall=inbound, x=web"),
            ("upstream_url", "https://tools.example.com/vapi"),
            ("upstream_types", "tool-calls, campaign.predial"),
            ("campaign_predial_eligible", "false"),
        ])
        .unwrap();
        assert_eq!(
            s.call_type_aliases,
            [
                ("vapi.sipCall".to_string(), CallDirection::Inbound),
                ("x".to_string(), CallDirection::Web)
            ]
        );
        let upstream = s.upstream.unwrap();
        assert!(upstream.handles("tool-calls"));
        assert!(!upstream.handles("knowledge-base-request"));
        assert_eq!(upstream.timeout_ms, DEFAULT_UPSTREAM_TIMEOUT_MS);
        assert!(!s.predial_eligible);
        let defaults = settings(&[("upstream_url", "http://127.0.0.1:9/x")]).unwrap();
        assert!(defaults.upstream.unwrap().handles("assistant-request"));
        for (vars, expected) in [
            (
                vec![("call_type_aliases", "vapi.sipCall=sideways")],
                "call_type_aliases: `vapi.sipCall=sideways` is not `<call type>=inbound|outbound|web`",
            ),
            (
                vec![("upstream_url", "ftp://x")],
                "upstream_url: expected an http:// or https:// URL",
            ),
            (
                vec![("upstream_url", "http://x/"), ("upstream_types", "status-update")],
                "upstream_types: `status-update` is not a message type whose reply Vapi uses",
            ),
            (
                vec![("upstream_url", "http://x/"), ("upstream_timeout_ms", "50")],
                "upstream_timeout_ms: expected milliseconds from 100 to 300000",
            ),
            (
                vec![("upstream_url", "http://x/"), ("upstream_timeouts", "tool-calls=400000")],
                "upstream_timeouts: `tool-calls=400000` is not `<reply type>=<milliseconds from 100 to 300000>`",
            ),
            (
                vec![("upstream_url", "http://x/"), ("upstream_timeouts", "status-update=1000")],
                "upstream_timeouts: `status-update=1000` is not `<reply type>=<milliseconds from 100 to 300000>`",
            ),
            (
                vec![("default_org_id", "acme")],
                "default_org_id: expected an organisation id (a UUID)",
            ),
            (
                vec![("assistant_request_fallback", "+1 415")],
                "assistant_request_fallback: expected an assistant id or an E.164 number (+ and 8 to 15 digits)",
            ),
        ] {
            assert_eq!(settings(&vars).unwrap_err().to_string(), expected);
        }
        assert!(settings(&[]).unwrap().upstream.is_none());
    }

    #[test]
    fn a_type_may_have_its_own_deadline() {
        let s = settings(&[
            ("upstream_url", "http://x/"),
            (
                "upstream_timeouts",
                " tool-calls=40000 ,knowledge-base-request=3000",
            ),
        ])
        .unwrap();
        let upstream = s.upstream.unwrap();
        assert_eq!(
            upstream.timeout_for("tool-calls"),
            TypeTimeout {
                ms: 40_000,
                set_for_type: true
            }
        );
        assert_eq!(
            upstream.timeout_for("transfer-destination-request"),
            TypeTimeout {
                ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
                set_for_type: false
            }
        );
    }

    #[test]
    fn the_default_organisation_and_the_fallback_are_read() {
        let s = settings(&[
            ("default_org_id", " 6F1C2A4E-8B3D-4F7A-9C2E-1D5B7E9A3C40 "),
            ("assistant_request_fallback", "+14155550100"),
        ])
        .unwrap();
        assert_eq!(
            s.default_org_id.as_deref(),
            Some("6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40")
        );
        assert_eq!(
            s.assistant_request_fallback,
            Some(Fallback::Transfer("+14155550100".into()))
        );
        let none = settings(&[]).unwrap();
        assert_eq!(none.default_org_id, None);
        assert_eq!(none.assistant_request_fallback, None);
    }

    #[test]
    fn retry_delays_may_be_empty_or_spaced() {
        assert_eq!(parse_retry_delays(""), Ok(vec![]));
        assert_eq!(parse_retry_delays(" 0 , 10 "), Ok(vec![0, 10]));
        assert_eq!(parse_retry_delays("0"), Ok(vec![0]));
    }
}
