//! The dashboard: `GET /dashboard` (one HTML page and its script, embedded in
//! the `.wasm`) and the JSON API it reads, each request authorised by
//! `dashboard_token` (see [`crate::access`]) and limited to the organisations
//! the token opens:
//!
//! - `GET /api/calls?cursor=&limit=&status=&direction=`: calls, newest first,
//!   `limit` 1-100 (default 25), `{"calls": [...], "next_cursor": ...}`;
//! - `GET /api/calls/{vapi_call_id}`: one call with its tracking row and the
//!   deliveries of its events; 404 when it is not there or not the token's;
//! - `GET /api/summary`: calls today, in progress, the last hour's success
//!   ratio and p95, agent lookup failures, calls per hour of the last 24 h,
//!   calls recorded without an organisation (all-organisation tokens only),
//!   and where the page subscribes for live updates (`dashboard_relay_url`).
//!
//! Phone numbers are masked as in the logs unless `dashboard_full_numbers` is
//! `true`: the call's numbers, and numbers inside its free text. Every API answer carries an `ETag`; a request whose
//! `If-None-Match` matches gets 304 and no body, so the page's polling costs
//! a query but no transfer or redraw when nothing changed.

use crate::access::{Scope, Tokens};
use crate::db::DbError;
use crate::effects::Effects;
use crate::http::{percent_decode, Query, Request, Response};
use crate::log::{Level, LogLine};
use crate::pg_sql::{self, RowQuery};
use crate::phone;
use crate::sqlite_sql;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Calls per page when the request names no `limit`.
pub const DEFAULT_LIMIT: i64 = 25;
/// Most calls per page.
pub const MAX_LIMIT: i64 = 100;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");

const DIRECTIONS: [&str; 3] = ["inbound", "outbound", "web"];

/// A statement answered by one row of JSON text (see `pg_sql` and
/// `sqlite_sql`, `DASHBOARD_*` and `RECONCILE_*`): what the dashboard reads,
/// and reconciliation's state and look-ups ([`crate::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Calls {
        orgs: Option<String>,
        cursor: Option<String>,
        status: Option<String>,
        direction: Option<String>,
        /// The page's size plus one.
        rows: i64,
    },
    Call {
        orgs: Option<String>,
        vapi_call_id: String,
    },
    Summary {
        orgs: Option<String>,
    },
    /// Reconciliation's statements (`crate::reconcile`; `pg_sql::RECONCILE_*`).
    ReconcileBegin {
        tenant: String,
        now_ms: i64,
        lease_ms: i64,
    },
    ReconcileSave {
        tenant: String,
        lease_until_ms: i64,
        state: String,
        now_ms: i64,
        succeeded: bool,
        missing: i64,
        updated: i64,
        failed: i64,
    },
    ReconcileStatus {
        tenant: Option<String>,
        now_ms: i64,
    },
    ReconcileKnown {
        /// JSON array of `[call id, report's event key]`.
        calls: String,
        tenant: String,
    },
}

/// A statement parameter of a [`Read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(Option<String>),
    Int(i64),
}

impl Read {
    /// The PostgreSQL statement (one of `pg_sql::ROW_QUERIES`).
    pub fn pg_query(&self) -> RowQuery {
        match self {
            Read::Calls { .. } => pg_sql::DASHBOARD_CALLS_QUERY,
            Read::Call { .. } => pg_sql::DASHBOARD_CALL_QUERY,
            Read::Summary { .. } => pg_sql::DASHBOARD_SUMMARY_QUERY,
            Read::ReconcileBegin { .. } => pg_sql::RECONCILE_BEGIN_QUERY,
            Read::ReconcileSave { .. } => pg_sql::RECONCILE_SAVE_QUERY,
            Read::ReconcileStatus { .. } => pg_sql::RECONCILE_STATUS_QUERY,
            Read::ReconcileKnown { .. } => pg_sql::RECONCILE_KNOWN_QUERY,
        }
    }

    /// The SQLite twin of [`Read::pg_query`].
    pub fn sqlite_statement(&self) -> &'static str {
        match self {
            Read::Calls { .. } => sqlite_sql::DASHBOARD_CALLS,
            Read::Call { .. } => sqlite_sql::DASHBOARD_CALL,
            Read::Summary { .. } => sqlite_sql::DASHBOARD_SUMMARY,
            Read::ReconcileBegin { .. } => sqlite_sql::RECONCILE_BEGIN,
            Read::ReconcileSave { .. } => sqlite_sql::RECONCILE_SAVE,
            Read::ReconcileStatus { .. } => sqlite_sql::RECONCILE_STATUS,
            Read::ReconcileKnown { .. } => sqlite_sql::RECONCILE_KNOWN,
        }
    }

    /// The parameters, in `$n` / `?n` order, for either engine.
    pub fn params(&self) -> Vec<Param> {
        match self {
            Read::Calls {
                orgs,
                cursor,
                status,
                direction,
                rows,
            } => vec![
                Param::Text(orgs.clone()),
                Param::Text(cursor.clone()),
                Param::Text(status.clone()),
                Param::Text(direction.clone()),
                Param::Int(*rows),
            ],
            Read::Call { orgs, vapi_call_id } => vec![
                Param::Text(orgs.clone()),
                Param::Text(Some(vapi_call_id.clone())),
            ],
            Read::Summary { orgs } => vec![Param::Text(orgs.clone())],
            Read::ReconcileBegin {
                tenant,
                now_ms,
                lease_ms,
            } => vec![
                Param::Text(Some(tenant.clone())),
                Param::Int(*now_ms),
                Param::Int(*lease_ms),
            ],
            Read::ReconcileSave {
                tenant,
                lease_until_ms,
                state,
                now_ms,
                succeeded,
                missing,
                updated,
                failed,
            } => vec![
                Param::Text(Some(tenant.clone())),
                Param::Int(*lease_until_ms),
                Param::Text(Some(state.clone())),
                Param::Int(*now_ms),
                Param::Int(i64::from(*succeeded)),
                Param::Int(*missing),
                Param::Int(*updated),
                Param::Int(*failed),
            ],
            Read::ReconcileStatus { tenant, now_ms } => {
                vec![Param::Text(tenant.clone()), Param::Int(*now_ms)]
            }
            Read::ReconcileKnown { calls, tenant } => vec![
                Param::Text(Some(calls.clone())),
                Param::Text(Some(tenant.clone())),
            ],
        }
    }
}

/// `GET /dashboard`, `/dashboard/` and `/dashboard/app.js`: the page and its
/// script (`crate::app::route` sends them here).
pub fn serve_page<E: Effects>(effects: &mut E, request: &Request) -> Response {
    match open(effects, request) {
        // The page holds no data: it asks for the token and reads the API.
        Ok(_) => page(request.route()),
        Err(refusal) => refusal,
    }
}

/// The dashboard is readable: GET or HEAD, and `dashboard_token` set and
/// well-formed (its tokens).
fn open<E: Effects>(effects: &mut E, request: &Request) -> Result<Tokens, Response> {
    if request.method != "GET" && request.method != "HEAD" {
        return Err(Response::method_not_allowed("GET, HEAD"));
    }
    match effects
        .variable("dashboard_token")
        .map(|v| Tokens::parse(&v))
    {
        None => Err(Response::error(
            403,
            "dashboard_token is not set; the dashboard is closed",
        )),
        Some(Err(error)) => {
            effects.emit(
                &LogLine::new(Level::Critical, "Dashboard misconfigured")
                    .field("error", error.to_string()),
            );
            Err(Response::error(503, &error.to_string()))
        }
        Some(Ok(tokens)) => Ok(tokens),
    }
}

/// `/api` and everything under it: the dashboard's JSON API (`crate::app::route`
/// sends them here).
pub async fn serve_api<E: Effects>(effects: &mut E, request: &Request) -> Response {
    let tokens = match open(effects, request) {
        Ok(tokens) => tokens,
        Err(refusal) => return refusal,
    };
    let path = request.route();
    let presented = request.headers.one("authorization").ok().flatten();
    let Some(scope) = tokens.scope_of_bearer(presented) else {
        return Response::error(401, "a valid dashboard token is required")
            .with_header("www-authenticate", "Bearer");
    };
    let query = Query::parse(request.path.split_once('?').map_or("", |(_, q)| q));
    let orgs = scope.orgs().map(|orgs| orgs.join(","));
    let full_numbers = effects
        .variable("dashboard_full_numbers")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // National numbers in free text are read as the webhook reads them.
    let country = effects
        .variable("default_country")
        .and_then(|code| phone::Country::from_iso(&code))
        .or_else(|| phone::Country::from_iso("US"))
        .expect("US is a known country");
    let answer = match path.strip_prefix("/api/") {
        Some("calls") => calls(effects, &query, orgs).await,
        Some("summary") => summary(effects, &scope, orgs).await,
        Some(rest) if rest.starts_with("calls/") && rest.len() > "calls/".len() => {
            let id = percent_decode(&rest["calls/".len()..]);
            call(effects, id, orgs).await
        }
        _ => return Response::not_found(),
    };
    match answer {
        Ok(mut body) => {
            if !full_numbers {
                mask_numbers(&mut body, &country);
            }
            with_etag(request, Response::json(200, &body))
        }
        Err(response) => response,
    }
}

fn page(path: &str) -> Response {
    let response = if path.ends_with(".js") {
        Response::text(200, "text/javascript; charset=utf-8", SCRIPT)
    } else {
        Response::text(200, "text/html; charset=utf-8", PAGE)
    };
    response
        .with_header(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
             connect-src 'self' http: https:; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer")
        .with_header("cache-control", "no-cache")
}

async fn calls(
    effects: &mut impl Effects,
    query: &Query,
    orgs: Option<String>,
) -> Result<Value, Response> {
    let limit = match query.get("limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(Response::bad_request(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let cursor = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(
            decode_cursor(raw)
                .ok_or_else(|| Response::bad_request("cursor", "is not a cursor this API gave"))?,
        ),
    };
    let status = one_of(query, "status", &crate::call::STATUSES)?;
    let direction = one_of(query, "direction", &DIRECTIONS)?;
    let read = Read::Calls {
        orgs,
        cursor,
        status,
        direction,
        rows: limit + 1,
    };
    let mut body = read_json(effects, &read).await?.unwrap_or(Value::Null);
    let mut calls = match body.get_mut("calls").map(Value::take) {
        Some(Value::Array(calls)) => calls,
        _ => Vec::new(),
    };
    // Newest first, whatever order the engine aggregated in.
    calls.sort_by_key(|call| std::cmp::Reverse(sort_key(call)));
    let more = calls.len() as i64 > limit;
    calls.truncate(limit as usize);
    let next_cursor = more
        .then(|| calls.last().map(encode_cursor))
        .flatten()
        .flatten();
    for call in &mut calls {
        if let Some(object) = call.as_object_mut() {
            object.remove("cursor_at");
        }
    }
    Ok(json!({ "calls": calls, "next_cursor": next_cursor, "limit": limit }))
}

async fn call(
    effects: &mut impl Effects,
    vapi_call_id: String,
    orgs: Option<String>,
) -> Result<Value, Response> {
    // A NUL or another control character is no call id, and PostgreSQL
    // refuses a NUL in text outright: the client's mistake, not an outage.
    if vapi_call_id.is_empty()
        || vapi_call_id.len() > 200
        || vapi_call_id.chars().any(char::is_control)
    {
        return Err(Response::bad_request(
            "vapi_call_id",
            "must be 1 to 200 characters, none of them control characters",
        ));
    }
    match read_json(effects, &Read::Call { orgs, vapi_call_id }).await? {
        Some(call) if call.is_object() => Ok(call),
        // Another organisation's call is as absent as a call never seen.
        _ => Err(Response::error(404, "no such call")),
    }
}

async fn summary(
    effects: &mut impl Effects,
    scope: &Scope,
    orgs: Option<String>,
) -> Result<Value, Response> {
    let figures = read_json(effects, &Read::Summary { orgs })
        .await?
        .unwrap_or(Value::Null);
    let now_ms = effects.now_ms();
    let last_hour = &figures["last_hour"];
    let requests = last_hour["requests"].as_i64().unwrap_or(0);
    let succeeded = last_hour["succeeded"].as_i64().unwrap_or(0);
    let success_ratio = (requests > 0).then(|| succeeded as f64 / requests as f64);
    Ok(json!({
        "calls_today": figures["calls_today"],
        "in_progress": figures["in_progress"],
        "last_hour": {
            "requests": requests,
            "succeeded": succeeded,
            "failed": last_hour["failed"],
            "success_ratio": success_ratio,
            "p95_seconds": last_hour["p95_seconds"],
            "agent_lookup_failures": last_hour["agent_lookup_failures"],
        },
        "agent_lookup_failures_24h": figures["agent_lookup_failures_24h"],
        // Calls no organisation owns yet: shown to all-organisation tokens.
        "unassigned_calls": match scope {
            Scope::All => figures["unassigned_calls"].clone(),
            Scope::Orgs(_) => json!(0),
        },
        // Reconciliation with Vapi's API, per scope: figures across
        // organisations, so for all-organisation tokens only.
        "reconciliation": match scope {
            Scope::All => reconciliation(&figures["reconciliation"]),
            Scope::Orgs(_) => json!([]),
        },
        "hourly": hourly(&figures["hourly"], now_ms),
        "scope": match scope {
            Scope::All => json!("all"),
            Scope::Orgs(orgs) => json!(orgs),
        },
        "live": {
            "relay_url": effects.variable("dashboard_relay_url"),
            "poll_ms": POLL_MS,
        },
        "generated_at": crate::log::rfc3339(now_ms),
    }))
}

/// Each scope's reconciliation as the page shows it: when it last ran and
/// last succeeded, what the last run found, and calls found missing in all.
fn reconciliation(rows: &Value) -> Value {
    let at = |row: &Value, key: &str| row[key].as_i64().map(crate::log::rfc3339);
    let rows = rows.as_array().into_iter().flatten().map(|row| {
        // SQLite's `json_extract` of an object is its text.
        let last = match &row["last"] {
            Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            other => other.clone(),
        };
        json!({
            "tenant": row["tenant"],
            "last_run_at": at(row, "last_run_ms"),
            "last_success_at": at(row, "last_success_ms"),
            "outcome": last["outcome"],
            "missing": last["missing"],
            "updated": last["updated"],
            "failed": last["failed"],
            "missing_total": row["missing_total"],
        })
    });
    Value::Array(rows.collect())
}

/// How often the page polls when it has no relay to subscribe to.
pub const POLL_MS: u64 = 1_000;

/// The last 24 hours, oldest first, each with its count (0 when the database
/// returned none for it).
fn hourly(rows: &Value, now_ms: i64) -> Value {
    let counts: Map<String, Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| Some((row["hour"].as_str()?.to_string(), row["calls"].clone())))
        .collect();
    let this_hour = now_ms - now_ms.rem_euclid(3_600_000);
    (0..24)
        .rev()
        .map(|back| {
            let start = this_hour - back * 3_600_000;
            // `2026-11-30T00:00:00.000Z` → `2026-11-30T00:00:00Z`, the
            // statements' format (chrono's `format` would add its strftime
            // machinery to the .wasm).
            let hour = format!("{}:00:00Z", &crate::log::rfc3339(start)[..13]);
            let calls = counts.get(&hour).cloned().unwrap_or(json!(0));
            json!({ "hour": hour, "calls": calls })
        })
        .collect()
}

async fn read_json(effects: &mut impl Effects, read: &Read) -> Result<Option<Value>, Response> {
    match effects.read_json(read).await {
        Ok(None) => Ok(None),
        Ok(Some(text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| unavailable(effects, &DbError::lasting(format!("not JSON: {e}")))),
        Err(error) => Err(unavailable(effects, &error)),
    }
}

fn unavailable(effects: &mut impl Effects, error: &DbError) -> Response {
    effects.emit(
        &LogLine::new(Level::Error, "Dashboard read failed").field("error", error.detail.clone()),
    );
    Response::error(503, "the database did not answer")
}

fn one_of(query: &Query, name: &str, allowed: &[&str]) -> Result<Option<String>, Response> {
    match query.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_string())),
        Some(_) => Err(Response::bad_request(
            name,
            &format!("must be one of {}", allowed.join(", ")),
        )),
    }
}

fn sort_key(call: &Value) -> (String, String) {
    (
        call["cursor_at"].as_str().unwrap_or_default().to_string(),
        call["id"].as_str().unwrap_or_default().to_string(),
    )
}

/// The opaque cursor after `call`: its `created_at|id`, base64url.
fn encode_cursor(call: &Value) -> Option<String> {
    let (at, id) = sort_key(call);
    (!at.is_empty() && !id.is_empty()).then(|| URL_SAFE_NO_PAD.encode(format!("{at}|{id}")))
}

/// A cursor this API gave: base64url of a UTC time as the statements write
/// it (`2026-12-07T18:42:54.123456Z`, with 3 or 6 decimals), `|`, and a UUID.
/// Anything else, however close (an impossible date, another format), is the
/// client's mistake: a 400, never a statement that fails in the database.
fn decode_cursor(raw: &str) -> Option<String> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (at, id) = text.split_once('|')?;
    let shaped = matches!(at.len(), 24 | 27)
        && at.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            _ if i == at.len() - 1 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let real = shaped && chrono::DateTime::parse_from_rfc3339(at).is_ok();
    (real && crate::access::looks_like_uuid(id)).then_some(text)
}

/// Masks every phone number in the answer, as the logs do: `from_number` and
/// `to_number` whole (SIP URIs to their number), and in every other string
/// at any depth (the transcript, the summary, `structured_data`, messages)
/// each number `phone::mask_in_text` finds. Ids (`id`, `*_id`) are left as
/// they are: they are not numbers, and the page links by them.
fn mask_numbers(value: &mut Value, country: &phone::Country) {
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                match field {
                    Value::String(number) if key == "from_number" || key == "to_number" => {
                        *number = phone::mask(number);
                    }
                    Value::String(_) if key == "id" || key.ends_with("_id") => {}
                    _ => mask_numbers(field, country),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| mask_numbers(item, country)),
        Value::String(text) => {
            if let Some(masked) = phone::mask_in_text(text, country) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// A strong ETag of the body; 304 without a body when the client has it.
fn with_etag(request: &Request, response: Response) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&response.body)[..16]));
    let matches = request
        .headers
        .one("if-none-match")
        .ok()
        .flatten()
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let response = if matches {
        Response {
            status: 304,
            body: Vec::new(),
            ..response
        }
    } else {
        response
    };
    response
        .with_header("etag", etag)
        .with_header("cache-control", "private, no-cache")
        .with_header("vary", "authorization")
}

#[cfg(test)]
mod tests;
