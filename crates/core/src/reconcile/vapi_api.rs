//! Vapi's REST API, the two reads reconciliation needs: `GET /call` (a page
//! of calls between two `createdAt` bounds) and `GET /phone-number/{id}` (a
//! line's number, which a listed call does not carry). Bearer private API
//! key; a 429 or a 5xx is retried after a back-off within the run's deadline.

use crate::effects::Effects;
use crate::json::iso_to_ms;
use crate::log::rfc3339;
use crate::outbound::{OutboundError, OutboundRequest};
use serde_json::Value;

/// Longest wait for one answer of Vapi's API.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Attempts of one read (the first and its retries).
const ATTEMPTS: u32 = 4;
/// The first back-off; each retry waits twice the previous (unless the
/// answer said `Retry-After`), and never past the run's deadline.
const FIRST_BACKOFF_MS: u64 = 500;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

/// Why a read of Vapi's API gave no answer to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401 or 403: the key is wrong, revoked or a public key.
    Unauthorized(u16),
    /// Still 429 after the back-offs.
    RateLimited,
    /// 5xx, no answer or a timeout, after the back-offs.
    Unavailable(String),
    /// The host would not send the request (`allowed_outbound_hosts`).
    NotAllowed(String),
    /// Any other answer: a 4xx, or a body that is not what the API documents.
    Unexpected(String),
    /// The run's deadline came before the read could start.
    OutOfTime,
}

impl ApiError {
    /// The run's outcome word.
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::RateLimited => "rate_limited",
            ApiError::Unavailable(_) => "vapi_unavailable",
            ApiError::NotAllowed(_) => "not_allowed",
            ApiError::Unexpected(_) => "vapi_unexpected",
            ApiError::OutOfTime => "more",
        }
    }

    /// What an operator reads: what failed and the setting to look at.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Unauthorized(status) => format!(
                "Vapi refused vapi_api_key ({status}): set a private API key of the Vapi organisation (Dashboard > Organization > API Keys)"
            ),
            ApiError::RateLimited => {
                "Vapi's API kept answering 429 (rate limited); the run stopped and resumes from here"
                    .into()
            }
            ApiError::Unavailable(why) => format!("Vapi's API did not answer: {why}"),
            ApiError::NotAllowed(why) => format!(
                "the host refused to reach vapi_api_url ({why}): add its origin to vapi_api_allowed_host"
            ),
            ApiError::Unexpected(why) => format!("Vapi's API answered unexpectedly: {why}"),
            ApiError::OutOfTime => "the run's deadline came (reconcile_deadline_ms)".into(),
        }
    }
}

/// One call of a `GET /call` page: what paging and the settle rule read, and
/// the whole object (Vapi's `Call`), which becomes the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedCall {
    pub id: String,
    pub created_ms: i64,
    pub status: Option<String>,
    /// `endedAt`, else `updatedAt` for an ended call without one.
    pub ended_ms: Option<i64>,
    pub value: Value,
}

impl ListedCall {
    /// Reads one item of the list; the error names the field.
    pub fn read(value: Value) -> Result<ListedCall, String> {
        let text = |key: &str| value[key].as_str().map(str::to_string);
        let id = text("id")
            .filter(|id| !id.trim().is_empty())
            .ok_or("call.id is missing")?;
        let created_ms = text("createdAt")
            .as_deref()
            .and_then(iso_to_ms)
            .ok_or_else(|| format!("call {id}: createdAt is missing or not RFC 3339"))?;
        let status = text("status");
        let ended_ms = text("endedAt")
            .or_else(|| (status.as_deref() == Some("ended")).then(|| text("updatedAt"))?)
            .as_deref()
            .and_then(iso_to_ms);
        Ok(ListedCall {
            id,
            created_ms,
            status,
            ended_ms,
            value,
        })
    }

    /// Over in Vapi for at least `settle_ms` at `now_ms`: its webhooks had
    /// their chance, and Vapi's record of it is final.
    pub fn is_settled(&self, now_ms: i64, settle_ms: i64) -> bool {
        self.status.as_deref() == Some("ended")
            && self
                .ended_ms
                .is_some_and(|ended| ended <= now_ms - settle_ms)
    }

    /// The line's Vapi phone-number id, when the call has one whose number it
    /// does not carry itself.
    pub fn line_to_look_up(&self) -> Option<&str> {
        let carried = self.value["phoneNumber"]["number"].as_str().is_some();
        match carried {
            true => None,
            false => self.value["phoneNumberId"].as_str(),
        }
    }
}

/// Vapi's API as configured for the request's scope.
pub struct Api<'a> {
    pub base_url: &'a str,
    pub key: &'a str,
    /// No read is started, or waited for, past this time (Unix ms).
    pub deadline_ms: i64,
}

impl Api<'_> {
    /// `GET /call?createdAtGe=..&createdAtLe=..&limit=..`: the calls created
    /// in `[from_ms, upper_ms]`, at most `limit` (Vapi's order: newest
    /// first). Items that cannot be read come back as errors naming why.
    pub async fn list_calls(
        &self,
        effects: &mut impl Effects,
        from_ms: i64,
        upper_ms: i64,
        limit: u32,
    ) -> Result<Vec<Result<ListedCall, String>>, ApiError> {
        let url = format!(
            "{}/call?createdAtGe={}&createdAtLe={}&limit={limit}",
            self.base_url.trim_end_matches('/'),
            rfc3339(from_ms),
            rfc3339(upper_ms)
        );
        let items = match self.get(effects, &url).await? {
            Some(Value::Array(items)) => items,
            // A paginated shape, should the API answer with one.
            Some(Value::Object(mut object)) => match object.remove("results") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(ApiError::Unexpected(
                        "GET /call: not a list of calls".into(),
                    ))
                }
            },
            _ => {
                return Err(ApiError::Unexpected(
                    "GET /call: not a list of calls".into(),
                ))
            }
        };
        Ok(items.into_iter().map(ListedCall::read).collect())
    }

    /// `GET /phone-number/{id}`: the line's number (`None` for a line
    /// without one, such as a SIP line, or one Vapi no longer has).
    pub async fn line_number(
        &self,
        effects: &mut impl Effects,
        id: &str,
    ) -> Result<Option<String>, ApiError> {
        let url = format!(
            "{}/phone-number/{}",
            self.base_url.trim_end_matches('/'),
            crate::http::percent_encode(id)
        );
        Ok(self
            .get(effects, &url)
            .await?
            .and_then(|line| line["number"].as_str().map(str::to_string)))
    }

    /// One read, retried after a back-off on 429, 5xx and no answer. `None`
    /// for a 404.
    async fn get(&self, effects: &mut impl Effects, url: &str) -> Result<Option<Value>, ApiError> {
        let mut backoff_ms = FIRST_BACKOFF_MS;
        let mut last = ApiError::OutOfTime;
        for attempt in 1..=ATTEMPTS {
            let left_ms = self.deadline_ms - effects.now_ms();
            if left_ms <= 0 {
                return Err(last);
            }
            let request = OutboundRequest {
                get: true,
                url: url.to_string(),
                headers: vec![
                    (
                        "authorization".into(),
                        format!("Bearer {}", self.key).into_bytes(),
                    ),
                    ("accept".into(), b"application/json".to_vec()),
                    ("user-agent".into(), b"vapi-edge".to_vec()),
                ],
                body: Vec::new(),
                timeout_ms: REQUEST_TIMEOUT_MS.min(left_ms as u64),
            };
            let mut wait_ms = backoff_ms;
            last = match effects.send(&request).await {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    return serde_json::from_slice(&reply.body).map(Some).map_err(|_| {
                        ApiError::Unexpected(format!("{}: the answer is not JSON", path(url)))
                    });
                }
                Ok(reply) if reply.status == 404 => return Ok(None),
                Ok(reply) if matches!(reply.status, 401 | 403) => {
                    return Err(ApiError::Unauthorized(reply.status))
                }
                Ok(reply) if reply.status == 429 || reply.status >= 500 => {
                    if let Some(after_ms) = reply.retry_after.as_deref().and_then(retry_after_ms) {
                        wait_ms = after_ms;
                    }
                    match reply.status {
                        429 => ApiError::RateLimited,
                        status => ApiError::Unavailable(format!("{}: {status}", path(url))),
                    }
                }
                Ok(reply) => {
                    return Err(ApiError::Unexpected(format!(
                        "{}: {}",
                        path(url),
                        reply.status
                    )))
                }
                Err(OutboundError::Refused(why)) => return Err(ApiError::NotAllowed(why)),
                Err(OutboundError::InvalidUrl(why)) => {
                    return Err(ApiError::NotAllowed(format!("vapi_api_url: {why}")))
                }
                Err(OutboundError::TooLarge) => {
                    return Err(ApiError::Unexpected(format!(
                        "{}: the answer is larger than {} MB: lower reconcile_page_size",
                        path(url),
                        crate::outbound::MAX_REPLY_BYTES / (1024 * 1024)
                    )))
                }
                Err(error) => ApiError::Unavailable(format!("{}: {error}", path(url))),
            };
            let left_ms = self.deadline_ms - effects.now_ms();
            if attempt == ATTEMPTS || wait_ms as i64 >= left_ms {
                break;
            }
            effects.sleep_ms(wait_ms).await;
            backoff_ms *= 2;
        }
        Err(last)
    }
}

/// The path of a URL, for messages (the query carries nothing secret, but
/// the base URL is configuration).
fn path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |at| &rest[at..]);
    path.split('?').next().unwrap_or(path)
}

/// `Retry-After` in seconds (the form Vapi's API and most proxies send), up
/// to [`MAX_RETRY_AFTER_MS`].
fn retry_after_ms(value: &str) -> Option<u64> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some((seconds * 1000).min(MAX_RETRY_AFTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_call_needs_an_id_and_a_creation_time() {
        let call = ListedCall::read(json!({"id": "c1", "createdAt": "2026-12-08T00:00:00.000Z",
            "status": "ended", "endedAt": "2026-12-08T00:01:00.000Z"}))
        .unwrap();
        assert_eq!(call.created_ms, 1_796_688_000_000);
        assert_eq!(call.ended_ms, Some(1_796_688_060_000));
        assert!(
            ListedCall::read(json!({"createdAt": "2026-12-08T00:00:00Z"}))
                .unwrap_err()
                .contains("call.id")
        );
        assert!(
            ListedCall::read(json!({"id": "c2", "createdAt": "yesterday"}))
                .unwrap_err()
                .contains("createdAt")
        );
    }

    #[test]
    fn only_a_call_ended_long_enough_ago_is_settled() {
        let at = |status: &str, ended: Option<&str>| {
            let mut value =
                json!({"id": "c", "createdAt": "2026-12-08T00:00:00Z", "status": status});
            if let Some(ended) = ended {
                value["endedAt"] = ended.into();
            }
            ListedCall::read(value).unwrap()
        };
        let now = iso_to_ms("2026-12-08T00:10:00Z").unwrap();
        assert!(at("ended", Some("2026-12-08T00:05:00Z")).is_settled(now, 120_000));
        assert!(!at("ended", Some("2026-12-08T00:09:00Z")).is_settled(now, 120_000));
        assert!(!at("in-progress", None).is_settled(now, 120_000));
        // Ended without an end time: its last update stands in.
        let mut value = json!({"id": "c", "createdAt": "2026-12-08T00:00:00Z", "status": "ended",
            "updatedAt": "2026-12-08T00:01:00Z"});
        assert!(ListedCall::read(value.clone())
            .unwrap()
            .is_settled(now, 120_000));
        value["updatedAt"] = Value::Null;
        assert!(!ListedCall::read(value).unwrap().is_settled(now, 120_000));
    }

    #[test]
    fn a_line_is_looked_up_only_when_the_call_lacks_its_number() {
        let call = |value: Value| ListedCall::read(value).unwrap();
        let base = json!({"id": "c", "createdAt": "2026-12-08T00:00:00Z"});
        assert_eq!(call(base.clone()).line_to_look_up(), None);
        let mut with_id = base.clone();
        with_id["phoneNumberId"] = "pn-1".into();
        assert_eq!(call(with_id.clone()).line_to_look_up(), Some("pn-1"));
        with_id["phoneNumber"] = json!({"number": "+14155550142"});
        assert_eq!(call(with_id).line_to_look_up(), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(retry_after_ms("2"), Some(2_000));
        assert_eq!(retry_after_ms("3600"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(path("https://api.vapi.ai/call?limit=1"), "/call");
    }
}
