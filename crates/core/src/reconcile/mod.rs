//! Reconciliation with Vapi's REST API: the calls whose webhooks never came
//! (Vapi retries none unless the server has a `backoffPlan`), recorded from
//! Vapi's own record of them.
//!
//! - `POST /admin/reconcile` (the single-tenant route's organisation) and
//!   `POST /admin/reconcile/{tenant}`: one bounded run (pages, deadline) that
//!   resumes where the last stopped (module `state`). For every call over in
//!   Vapi that the records lack, or hold without its end-of-call report, the
//!   report Vapi would have sent (module `synth`) goes through the webhook's
//!   own path after verification: same validation, owner resolution, claim,
//!   rows and relay notification (marked `source: reconciliation`), under the
//!   same event key, so a late webhook or a second run changes nothing twice.
//!   No delivery is invented in `webhook_events`.
//! - `GET /admin/reconcile[/{tenant}]`: when it last ran, what it found, where
//!   it stands.
//!
//! Both under `admin_token`. The Vapi private API key is `vapi_api_key` (a
//! tenant's own for a tenant); without it the routes say reconciliation is
//! off.

mod state;
mod synth;
pub mod vapi_api;

pub use state::{State, Window, MAX_CALL_MS};

use crate::dashboard::Read;
use crate::effects::Effects;
use crate::event_key;
use crate::http::{Query, Request, Response};
use crate::json::iso_to_ms;
use crate::log::{rfc3339, Level, LogLine};
use crate::tenant;
use crate::webhook::{self, Context, Mode, Outcome};
use serde_json::{json, Value};
use state::Advance;
use std::collections::{BTreeMap, BTreeSet};
use vapi_api::{Api, ApiError, ListedCall};

/// The Vapi private API key (a secret; a tenant's own on a tenant's route).
pub const API_KEY: &str = "vapi_api_key";
/// Vapi's API base URL.
pub const API_URL: &str = "vapi_api_url";
pub const DEFAULT_API_URL: &str = "https://api.vapi.ai";
/// The lease a run takes beyond its deadline, so that a run that died
/// holding it blocks the scope no longer than this after its deadline.
const LEASE_SLACK_MS: i64 = 30_000;
/// Ids of calls found missing kept in a run's report.
const REPORTED_IDS: usize = 20;

/// Reconciliation's settings, from the variables (README, "Reconciliation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub api_key: String,
    pub api_url: String,
    /// Calls asked for per page (`limit`, 1-1000). A call with its artifact
    /// (messages, transcript) can weigh 100 KB, and an answer is read up to
    /// `outbound::MAX_REPLY_BYTES`: 50 keeps a page well under it.
    pub page_size: u32,
    /// Pages read per run at most.
    pub max_pages: u32,
    /// A run stops starting work after this (ms), and answers.
    pub deadline_ms: i64,
    /// How far back the first run looks (ms).
    pub lookback_ms: i64,
    /// How long a call must have been over before it is reconciled (its
    /// webhooks had their chance).
    pub settle_ms: i64,
}

impl Settings {
    /// `Ok(None)`: no API key, reconciliation is off. The error names the
    /// variable.
    pub fn from_variables(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let Some(api_key) = get(API_KEY) else {
            return Ok(None);
        };
        let number = |name: &str, default: i64, min: i64, max: i64| -> Result<i64, String> {
            match get(name) {
                None => Ok(default),
                Some(text) => match text.trim().parse::<i64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(format!("{name} must be a whole number from {min} to {max}")),
                },
            }
        };
        let api_url = get(API_URL).unwrap_or_else(|| DEFAULT_API_URL.into());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(format!("{API_URL} must be an http(s) URL"));
        }
        Ok(Some(Settings {
            api_key,
            api_url,
            page_size: number("reconcile_page_size", 50, 1, 1000)? as u32,
            max_pages: number("reconcile_max_pages", 20, 1, 1000)? as u32,
            // Under `vapi-edge-host`'s longest request deadline (305 s).
            deadline_ms: number("reconcile_deadline_ms", 20_000, 1_000, 290_000)?,
            lookback_ms: number("reconcile_lookback_hours", 24, 1, 24 * 90)? * 3_600_000,
            settle_ms: number("reconcile_settle_ms", 120_000, 0, 3_600_000)?,
        }))
    }
}

/// `/admin/reconcile` and `/admin/reconcile/{tenant}` (`rest` is what follows
/// `/admin/reconcile`), once the admin token is checked.
pub async fn serve<E: Effects>(effects: &mut E, request: &Request, rest: &str) -> Response {
    let tenant = match rest {
        "" => None,
        rest => match rest.strip_prefix('/') {
            Some(id) if tenant::valid_id(id) => Some(id),
            _ => return Response::not_found(),
        },
    };
    if request.method != "GET" && request.method != "POST" {
        return Response::method_not_allowed("GET, POST");
    }
    effects.set_tenant_scope(None);
    if let Some(id) = tenant {
        match tenant::resolve(effects, id).await {
            Ok(found) => effects.set_tenant_scope(Some(found)),
            Err(tenant::Refusal::Unknown) => return Response::error(404, "no such tenant"),
            Err(tenant::Refusal::Disabled) => {
                return Response::error(403, "the tenant is disabled")
            }
            Err(tenant::Refusal::Unavailable(_)) => {
                return Response::error(503, "database unavailable")
            }
            Err(tenant::Refusal::Misconfigured(problem)) => return Response::error(503, &problem),
        }
    }
    let response = match request.method.as_str() {
        "GET" => status(effects).await,
        _ => run(effects, request).await,
    };
    effects.set_tenant_scope(None);
    response
}

/// `GET`: the scope's reconciliation, as saved.
async fn status<E: Effects>(effects: &mut E) -> Response {
    let enabled = Settings::from_variables(|name| effects.variable(name));
    let read = Read::ReconcileStatus {
        tenant: Some(effects.tenant().to_string()),
        now_ms: effects.now_ms(),
    };
    let rows = match effects.read_json(&read).await {
        Ok(text) => text
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .unwrap_or(Value::Null),
        Err(_) => return Response::error(503, "database unavailable"),
    };
    let row = rows.get(0).cloned().unwrap_or(Value::Null);
    let at = |key: &str| row[key].as_i64().map(rfc3339);
    let state = State::from_value(&row["state"]);
    Response::json(
        200,
        &json!({
            "tenant": effects.tenant(),
            "enabled": matches!(enabled, Ok(Some(_))),
            "problem": match enabled {
                Ok(Some(_)) => None,
                Ok(None) => Some(format!("{API_KEY} is not set")),
                Err(problem) => Some(problem),
            },
            "running": row["running"].as_bool().unwrap_or(false),
            "last_run_at": at("last_run_ms"),
            "last_success_at": at("last_success_ms"),
            "cursor": state.cursor_ms.map(rfc3339),
            "window": state.window.as_ref().map(window_json),
            "last_run": state.last,
            "totals": row.get("totals").cloned().unwrap_or(json!({"missing": 0, "updated": 0, "failed": 0})),
        }),
    )
    .with_header("cache-control", "no-store")
}

fn window_json(window: &Window) -> Value {
    json!({
        "from": rfc3339(window.from_ms),
        "to": rfc3339(window.to_ms),
        "next_page_to": rfc3339(window.upper_ms),
    })
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// Every window up to the run's start is done.
    Complete,
    /// The run's page or time budget is spent: call again.
    Budget,
    Api(ApiError),
    /// A call could not be recorded now (the database, a claim held by a
    /// delivery in flight): its page is read again next run.
    Retry(Outcome),
}

impl Stop {
    /// A run that stopped where the next one takes over without anyone
    /// doing anything: its page or time budget spent, or a delivery in flight
    /// holding a call's claim.
    fn is_progress(&self) -> bool {
        matches!(
            self,
            Stop::Complete | Stop::Budget | Stop::Retry(Outcome::InProgress)
        )
    }

    fn outcome(&self) -> &'static str {
        match self {
            Stop::Complete => "complete",
            Stop::Budget => "more",
            Stop::Api(error) => error.outcome(),
            Stop::Retry(outcome) => outcome.as_str(),
        }
    }

    /// Whether calling again soon would go on: not once caught up, and not
    /// after an error that only a change of settings clears.
    fn more(&self) -> bool {
        match self {
            Stop::Complete => false,
            Stop::Budget | Stop::Retry(_) => true,
            Stop::Api(error) => matches!(error, ApiError::RateLimited | ApiError::Unavailable(_)),
        }
    }
}

/// What one run found, counted.
#[derive(Debug, Default)]
struct Tally {
    pages: u32,
    /// Calls read from Vapi (each once, however many pages showed it).
    seen: u64,
    /// Over in Vapi, and no row here: recorded now.
    missing: u64,
    /// Over in Vapi, a row here without the end-of-call report: completed now.
    updated: u64,
    /// Already recorded whole here.
    up_to_date: u64,
    /// Not over yet (or not for long enough): left for a later run.
    unfinished: u64,
    /// Outside the rollout, another tenant's, owned by nothing here (another
    /// application's), or not a call this version records.
    skipped: u64,
    failed: u64,
    /// Calls Vapi listed that could not be read.
    unreadable: u64,
    missing_ids: Vec<String>,
    ids: BTreeSet<String>,
    lines: BTreeMap<String, Option<String>>,
}

/// `POST`: one run, from where the last stopped.
async fn run<E: Effects>(effects: &mut E, request: &Request) -> Response {
    let settings = match Settings::from_variables(|name| effects.variable(name)) {
        Ok(Some(settings)) => settings,
        Ok(None) => {
            return Response::json(
                503,
                &json!({"error": "reconciliation is off: vapi_api_key is not set", "reconciliation": "off"}),
            )
        }
        Err(problem) => return Response::error(503, &problem),
    };
    let query = Query::parse(request.path.split_once('?').map_or("", |(_, q)| q));
    let restart = match query.get("from") {
        None => None,
        // A `+` of the offset arrives as a space when not sent as `%2B`.
        Some(text) => match iso_to_ms(&text.replace(' ', "+")) {
            Some(ms) => Some(ms),
            None => {
                return Response::bad_request(
                    "from",
                    "is not an RFC 3339 time such as 2026-12-01T00:00:00Z",
                )
            }
        },
    };
    let started_ms = effects.now_ms();
    let scope = effects.tenant().to_string();
    let lease_ms = settings.deadline_ms + LEASE_SLACK_MS;
    let begin = Read::ReconcileBegin {
        tenant: scope.clone(),
        now_ms: started_ms,
        lease_ms,
    };
    let mut state = match effects.read_json(&begin).await {
        Ok(Some(text)) => State::from_json(&text),
        Ok(None) => {
            return Response::error(
                409,
                "a reconciliation of this scope is running; try again when it ends",
            )
        }
        Err(_) => return Response::error(503, "database unavailable"),
    };
    if let Some(from_ms) = restart {
        state.restart_at(from_ms);
    }
    let mut tally = Tally::default();
    let stop = walk(effects, &settings, &mut state, &mut tally, started_ms).await;
    let finished_ms = effects.now_ms();
    let report = report(&stop, &tally, &state, started_ms, finished_ms);
    state.last = Some(report.clone());
    let save = Read::ReconcileSave {
        tenant: scope.clone(),
        lease_until_ms: started_ms + lease_ms,
        state: state.to_json(),
        now_ms: finished_ms,
        succeeded: stop.is_progress(),
        missing: tally.missing as i64,
        updated: tally.updated as i64,
        failed: tally.failed as i64,
    };
    let saved = effects.read_json(&save).await;
    log_run(effects, &stop, &tally, &report, &saved);
    let status = match (&stop, &saved) {
        (_, Err(_)) => 503,
        (stop, _) if stop.is_progress() => 200,
        (Stop::Retry(_) | Stop::Api(ApiError::RateLimited), _) => 503,
        (_, _) => 502,
    };
    let mut body = report;
    if let Ok(None) = saved {
        body["warning"] = "the run outlasted its lease; another run may have taken over".into();
    }
    Response::json(status, &body).with_header("cache-control", "no-store")
}

/// Reads pages and records what is missing until the windows up to now are
/// done or the run's budget is spent.
async fn walk<E: Effects>(
    effects: &mut E,
    settings: &Settings,
    state: &mut State,
    tally: &mut Tally,
    started_ms: i64,
) -> Stop {
    let deadline_ms = started_ms + settings.deadline_ms;
    let api = Api {
        base_url: &settings.api_url,
        key: &settings.api_key,
        deadline_ms,
    };
    loop {
        if tally.pages >= settings.max_pages || effects.now_ms() >= deadline_ms {
            return Stop::Budget;
        }
        let window = state.window(started_ms, settings.lookback_ms);
        let (from_ms, upper_ms) = (window.from_ms, window.upper_ms);
        let page = match api
            .list_calls(effects, from_ms, upper_ms, settings.page_size)
            .await
        {
            Ok(page) => page,
            Err(ApiError::OutOfTime) => return Stop::Budget,
            Err(error) => return Stop::Api(error),
        };
        tally.pages += 1;
        let listed = page.len();
        let created: Vec<i64> = page.iter().flatten().map(|call| call.created_ms).collect();
        if let Err(stop) = reconcile_page(effects, settings, &api, state, tally, page).await {
            return stop;
        }
        let window = state.window(started_ms, settings.lookback_ms);
        match window.advance(&created, listed, settings.page_size as usize) {
            // A window an earlier run opened ends before this run began: the
            // calls created since are the next window's, in this run.
            Advance::Done if window.to_ms < started_ms => state.finish_window(),
            Advance::Done => {
                state.finish_window();
                return Stop::Complete;
            }
            Advance::More => {}
            Advance::SteppedPast { created_ms } => effects.emit(
                &LogLine::new(
                    Level::Warn,
                    "More calls share one creation time than a page holds; some may be passed over",
                )
                .field("created_at", rfc3339(created_ms))
                .field("page_size", settings.page_size)
                .field("fix", "raise reconcile_page_size"),
            ),
        }
    }
}

/// One page: each call over in Vapi for long enough, and not recorded whole
/// here, is recorded through the webhook's path.
async fn reconcile_page<E: Effects>(
    effects: &mut E,
    settings: &Settings,
    api: &Api<'_>,
    state: &mut State,
    tally: &mut Tally,
    page: Vec<Result<ListedCall, String>>,
) -> Result<(), Stop> {
    let now_ms = effects.now_ms();
    let scope = effects.tenant().to_string();
    let mut settled = Vec::new();
    for call in page {
        let call = match call {
            Ok(call) => call,
            Err(problem) => {
                tally.unreadable += 1;
                effects.emit(
                    &LogLine::new(
                        Level::Warn,
                        "A call Vapi listed cannot be read; passed over",
                    )
                    .field("problem", problem),
                );
                continue;
            }
        };
        if !tally.ids.insert(call.id.clone()) {
            continue; // read on the page before (pages overlap)
        }
        tally.seen += 1;
        if call.is_settled(now_ms, settings.settle_ms) {
            settled.push(call);
        } else {
            tally.unfinished += 1;
            if let Some(window) = state.window.as_mut() {
                window.hold(call.created_ms, now_ms);
            }
        }
    }
    if settled.is_empty() {
        return Ok(());
    }
    let keys: Vec<Value> = settled
        .iter()
        .map(|call| {
            json!([
                call.id,
                event_key::report_key(&call.id).in_tenant(&scope).as_str()
            ])
        })
        .collect();
    let known = Read::ReconcileKnown {
        calls: Value::Array(keys).to_string(),
        tenant: scope,
    };
    // `[[id, logged, reported], ...]`
    let known: BTreeMap<String, (bool, bool)> = match effects.read_json(&known).await {
        Ok(text) => text
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|rows| rows.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|row| {
                let id = row[0].as_str()?.to_string();
                Some((id, (row[1] == true, row[2] == true)))
            })
            .collect(),
        Err(_) => return Err(Stop::Retry(Outcome::DatabaseUnavailable)),
    };
    for call in settled {
        let (logged, reported) = known.get(&call.id).copied().unwrap_or((false, false));
        if reported {
            tally.up_to_date += 1;
            continue;
        }
        // Out of time: the page is read again by the next run (what this one
        // recorded is then up to date).
        if effects.now_ms() >= api.deadline_ms {
            return Err(Stop::Budget);
        }
        let line = match call.line_to_look_up() {
            None => None,
            Some(id) => match tally.lines.get(id) {
                Some(number) => number.clone(),
                None => {
                    let number =
                        api.line_number(effects, id)
                            .await
                            .map_err(|error| match error {
                                ApiError::OutOfTime => Stop::Budget,
                                error => Stop::Api(error),
                            })?;
                    tally.lines.insert(id.to_string(), number.clone());
                    number
                }
            },
        };
        let body = synth::report_body(&call.value, line.as_deref(), effects.now_ms());
        let mut context = Context::reconciliation_of(&call.id);
        context.set_tenant(effects);
        let answer = webhook::process_verified(effects, &body, &mut context, Mode::Reconcile).await;
        let outcome = answer.outcome;
        let (_, after) = webhook::finish(effects, answer, context).await;
        after.run(effects).await;
        match outcome {
            Outcome::Recorded | Outcome::Unassigned if logged => tally.updated += 1,
            Outcome::Recorded | Outcome::Unassigned => {
                tally.missing += 1;
                if tally.missing_ids.len() < REPORTED_IDS {
                    tally.missing_ids.push(call.id.clone());
                }
            }
            // A webhook came first, just now.
            Outcome::Duplicate => tally.up_to_date += 1,
            Outcome::OutsideRollout | Outcome::OtherTenant | Outcome::Ignored => tally.skipped += 1,
            // A delivery of this report is being handled right now: it
            // records the call; the next run reads the page again and finds it.
            Outcome::InProgress => return Err(Stop::Retry(outcome)),
            // Nothing lasting: the page is read again by the next run.
            Outcome::DatabaseUnavailable | Outcome::Misconfigured => {
                tally.failed += 1;
                return Err(Stop::Retry(outcome));
            }
            // A dead letter keeps it where the flow keeps one (POST /admin/replay).
            _ => tally.failed += 1,
        }
    }
    Ok(())
}

fn report(stop: &Stop, tally: &Tally, state: &State, started_ms: i64, finished_ms: i64) -> Value {
    let mut report = json!({
        "outcome": stop.outcome(),
        "more": stop.more(),
        "started_at": rfc3339(started_ms),
        "duration_ms": finished_ms - started_ms,
        "pages": tally.pages,
        "calls_seen": tally.seen,
        "missing": tally.missing,
        "updated": tally.updated,
        "up_to_date": tally.up_to_date,
        "unfinished": tally.unfinished,
        "skipped": tally.skipped,
        "failed": tally.failed,
        "unreadable": tally.unreadable,
        "missing_calls": tally.missing_ids,
        "cursor": state.cursor_ms.map(rfc3339),
        "window": state.window.as_ref().map(window_json),
    });
    if let Stop::Api(error) = stop {
        report["error"] = error.detail().into();
    }
    report
}

fn log_run(
    effects: &mut impl Effects,
    stop: &Stop,
    tally: &Tally,
    report: &Value,
    saved: &Result<Option<String>, crate::db::DbError>,
) {
    let (level, msg) = match (stop, saved) {
        (_, Err(_)) => (Level::Error, "Reconciliation not saved"),
        (stop, _) if stop.is_progress() && tally.missing > 0 => (
            Level::Warn,
            "Reconciliation found calls whose webhooks never came",
        ),
        (stop, _) if stop.is_progress() => (Level::Info, "Reconciliation ran"),
        (Stop::Api(ApiError::Unauthorized(_) | ApiError::NotAllowed(_)), _) => {
            (Level::Critical, "Reconciliation misconfigured")
        }
        _ => (Level::Error, "Reconciliation stopped"),
    };
    let mut line = LogLine::new(level, msg);
    if !effects.tenant().is_empty() {
        line = line.field("tenant", effects.tenant().to_string());
    }
    for key in [
        "outcome",
        "pages",
        "calls_seen",
        "missing",
        "updated",
        "up_to_date",
        "unfinished",
        "skipped",
        "failed",
        "cursor",
        "duration_ms",
        "error",
    ] {
        if !report[key].is_null() {
            line = line.field(key, report[key].clone());
        }
    }
    effects.emit(&line);
}

#[cfg(test)]
mod tests;
