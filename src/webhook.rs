//! `POST /webhooks/vapi`: verify → parse → plan → claim → record → respond,
//! with the dashboard notification handed back to run after the response.
//!
//! Every step that refuses says why in one log line, with the checklist's exact
//! search terms; the request ends with one summary line.
#![forbid(unsafe_code)]

use crate::claim::{self, Claim};
use crate::logging::emit;
use crate::relay::Notification;
use crate::services::{self, describe_pg_error, is_transient, now_ms, variable};
use crate::store::{self, Agent, Recorded};
use serde_json::{json, Value};
use std::time::Instant;
use vapi_edge_core::handling::{self, CallRecord, Plan, PlanError, DEFAULT_RETRY_MS};
use vapi_edge_core::http::{Request, Response};
use vapi_edge_core::log::{self as terms, Level, LogLine};
use vapi_edge_core::payload::{self, ServerMessage};
use vapi_edge_core::phone::Country;
use vapi_edge_core::standard_webhooks::SigningKey;
use vapi_edge_core::verify::VerifyConfig;

/// What the request was about, repeated on each of its log lines.
#[derive(Default)]
struct Context {
    fields: Vec<(&'static str, Value)>,
}

impl Context {
    fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.fields.retain(|(k, _)| *k != key);
        self.fields.push((key, value.into()));
    }

    fn line(&self, level: Level, msg: &str) -> LogLine {
        self.fields
            .iter()
            .fold(LogLine::new(level, msg), |line, (k, v)| {
                line.field(k, v.clone())
            })
    }

    fn log(&self, level: Level, msg: &str, extra: &[(&str, Value)]) {
        let line = extra.iter().fold(self.line(level, msg), |line, (k, v)| {
            line.field(k, v.clone())
        });
        emit(&line);
    }
}

/// A request answered: the response, a short outcome word for logs and
/// metrics, and the notification to send once the response is out.
struct Answer {
    response: Response,
    outcome: &'static str,
    notification: Option<Notification>,
}

impl Answer {
    fn ok(outcome: &'static str) -> Self {
        Answer {
            response: Response::json(200, &json!({ "ok": true, "outcome": outcome })),
            outcome,
            notification: None,
        }
    }

    fn refused(outcome: &'static str, response: Response) -> Self {
        Answer {
            response,
            outcome,
            notification: None,
        }
    }
}

pub fn handle(request: &Request) -> (Response, Option<Notification>) {
    let started = Instant::now();
    let mut context = Context::default();
    let answer = process(request, &mut context);
    let status = answer.response.status;
    let (level, msg) = match status {
        200..=299 => (Level::Info, "Webhook handled"),
        400..=499 => (Level::Warn, "Webhook refused"),
        _ => (Level::Error, "Webhook failed"),
    };
    context.log(
        level,
        msg,
        &[
            ("outcome", answer.outcome.into()),
            ("status", status.into()),
            ("duration_ms", duration_ms(started).into()),
        ],
    );
    (answer.response, answer.notification)
}

fn duration_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// A refusal because of how this deployment is set up: nobody but an operator
/// can fix it, so it is CRITICAL, and 503 lets Vapi's retry succeed once fixed.
fn misconfigured(context: &Context, problem: &str) -> Answer {
    context.log(
        Level::Critical,
        "Webhook misconfigured",
        &[("error", problem.into())],
    );
    Answer::refused(
        "misconfigured",
        Response::error(503, "the webhook is not configured"),
    )
}

fn process(request: &Request, context: &mut Context) -> Answer {
    // 1. Verify, over the raw bytes, before anything else.
    let verifier =
        match VerifyConfig::from_variables(variable) {
            Ok(config) if config.is_configured() => config,
            Ok(_) => return misconfigured(
                context,
                "neither vapi_hmac_secret nor vapi_server_secret is set: every request is refused",
            ),
            Err(error) => return misconfigured(context, &error.to_string()),
        };
    if let Err(error) = verifier.verify(&request.headers, &request.body, now_ms()) {
        context.log(
            Level::Warn,
            "Webhook verification failed",
            &[("error", error.public_reason().into())],
        );
        return Answer::refused("unauthorized", Response::error(401, &error.public_reason()));
    }

    // 2. Validate.
    if !is_json(request) {
        return Answer::refused("unsupported_media_type", Response::unsupported_media_type());
    }
    let message = match payload::parse(&request.body) {
        Ok(message) => message,
        Err(error) => {
            context.set("error", error.to_string());
            return Answer::refused(
                "invalid_payload",
                Response::bad_request(&error.field, &error.problem),
            );
        }
    };
    context.set("event_type", message.message_type.as_str());
    if let Some(call_id) = message.call_id() {
        context.set("call_id", call_id);
    }

    // 3. Decide, with the call type explicit.
    let country_code = variable("default_country").unwrap_or_else(|| "US".into());
    let Some(country) = Country::from_iso(&country_code) else {
        return misconfigured(
            context,
            "default_country is not a country this version knows",
        );
    };
    let record = match handling::plan(&message, &country) {
        Ok(Plan::Record(record)) => record,
        Ok(Plan::Acknowledge { reason }) => {
            context.set("reason", reason);
            return Answer::ok("ignored");
        }
        Err(PlanError::CallType(error)) => {
            context.log(
                Level::Error,
                terms::CANNOT_DETERMINE_CALL_TYPE,
                &[("error", error.to_string().into())],
            );
            return Answer::refused(
                "invalid_call_type",
                Response::bad_request(
                    "message.call.type",
                    &format!("cannot determine call type: {error}"),
                ),
            );
        }
        Err(PlanError::NoAssistant) => {
            context.log(Level::Warn, "Call has no assistant id; not recorded", &[]);
            return Answer::ok("skipped");
        }
    };
    context.set("direction", record.direction.as_str());
    for warning in &record.number_warnings {
        context.log(
            Level::Warn,
            "Phone number is not valid E.164; stored best-effort",
            &[
                ("field", warning.field.into()),
                ("number", warning.masked.clone().into()),
                ("reason", warning.reason.into()),
            ],
        );
    }
    let delays = match handling::parse_retry_delays(
        &variable("agent_lookup_retry_ms").unwrap_or_else(|| DEFAULT_RETRY_MS.into()),
    ) {
        Ok(delays) => delays,
        Err(error) => return misconfigured(context, &format!("agent_lookup_retry_ms: {error}")),
    };
    let Some(pg_url) = variable("pg_url") else {
        return misconfigured(context, "pg_url is not set");
    };

    // 4. Claim before any side effect.
    let held = match claim::claim(&record.event_key, now_ms()) {
        Claim::Acquired(held) => Some(held),
        Claim::Done => {
            context.log(
                Level::Info,
                terms::DUPLICATE_EVENT,
                &[("guard", "key_value".into())],
            );
            return Answer::ok("duplicate");
        }
        Claim::InProgress => {
            context.log(
                Level::Warn,
                "Event is being handled by another attempt",
                &[],
            );
            return Answer::refused(
                "in_progress",
                Response::error(503, "this event is being handled; retry later")
                    .with_header("retry-after", "1"),
            );
        }
        Claim::Unavailable(error) => {
            context.log(
                Level::Warn,
                "Key-value store unavailable; Postgres guards this event",
                &[("error", error.into())],
            );
            None
        }
    };

    // 5-7. Find the agent and record, in one statement per attempt.
    let answer = record_with_retry(&pg_url, &record, &delays, context, &message);
    if let Some(held) = held {
        let result = if answer.response.status < 300 {
            held.complete()
        } else {
            held.release()
        };
        if let Err(error) = result {
            context.log(
                Level::Warn,
                "Key-value claim could not be updated",
                &[("error", error.into())],
            );
        }
    }
    answer
}

fn is_json(request: &Request) -> bool {
    match request.headers.one("content-type") {
        Ok(Some(value)) => {
            let media = value.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        }
        _ => false,
    }
}

fn record_with_retry(
    pg_url: &str,
    record: &CallRecord,
    delays: &[u64],
    context: &mut Context,
    message: &ServerMessage,
) -> Answer {
    let db = match services::open_postgres(pg_url) {
        Ok(db) => db,
        Err(error) => {
            context.log(
                Level::Error,
                "Database unavailable",
                &[("error", describe_pg_error(&error).into())],
            );
            return Answer::refused(
                "database_unavailable",
                Response::error(503, "database unavailable; retry later"),
            );
        }
    };
    let mut retries = delays.iter();
    loop {
        match store::record_event(&db, record) {
            Ok(Recorded::New {
                agent,
                tracked,
                lead_id,
            }) => {
                note_agent(context, &agent);
                if let Some(lead_id) = &lead_id {
                    context.set("lead_id", lead_id.as_str());
                }
                let mut answer = Answer::ok("recorded");
                answer.notification =
                    notification(record, &agent, tracked, lead_id, message, context);
                return answer;
            }
            Ok(Recorded::Duplicate { agent }) => {
                note_agent(context, &agent);
                context.log(
                    Level::Info,
                    terms::DUPLICATE_EVENT,
                    &[("guard", "postgres".into())],
                );
                return Answer::ok("duplicate");
            }
            Ok(Recorded::AgentNotFound) => match retries.next() {
                Some(delay) => services::sleep_ms(*delay),
                None => {
                    context.log(
                        Level::Error,
                        terms::AGENT_LOOKUP_FAILED,
                        &[
                            ("assistant_id", record.assistant_id.as_str().into()),
                            ("attempts", (delays.len() + 1).into()),
                        ],
                    );
                    return Answer::refused(
                        "agent_not_found",
                        Response::error(500, "no agent has this assistant id yet; retry later"),
                    );
                }
            },
            Err(error) => {
                let msg = if record.tracks_call() {
                    terms::CALL_TRACKING_FAILED
                } else {
                    terms::CALL_LOGS_FAILED
                };
                context.log(
                    Level::Error,
                    msg,
                    &[("error", describe_pg_error(&error).into())],
                );
                let status = if is_transient(&error) { 503 } else { 500 };
                return Answer::refused(
                    "database_error",
                    Response::error(status, "the event could not be recorded; retry later"),
                );
            }
        }
    }
}

fn note_agent(context: &mut Context, agent: &Agent) {
    context.set("org_id", agent.org_id.as_str());
    context.set("agent_id", agent.id.as_str());
    context.set("agent", agent.name.as_str());
}

/// The dashboard event for a newly recorded call event, if a relay is set.
fn notification(
    record: &CallRecord,
    agent: &Agent,
    tracked: bool,
    lead_id: Option<String>,
    message: &ServerMessage,
    context: &Context,
) -> Option<Notification> {
    let url = variable("relay_url")?;
    let key = match variable("relay_secret").map(|secret| SigningKey::from_secret(&secret)) {
        Some(Ok(key)) => Some(key),
        Some(Err(_)) => {
            context.log(
                Level::Critical,
                "Webhook misconfigured",
                &[(
                    "error",
                    "relay_secret is not a valid signing key; notification not sent".into(),
                )],
            );
            return None;
        }
        None => {
            context.log(
                Level::Warn,
                "relay_secret is not set; notification is unsigned",
                &[],
            );
            None
        }
    };
    let occurred_ms = message.timestamp_ms.unwrap_or_else(now_ms);
    let body = json!({
        "type": "call.event",
        "event_type": record.message_type,
        "vapi_call_id": record.call_id,
        "org_id": agent.org_id,
        "agent_id": agent.id,
        "agent_name": agent.name,
        "direction": record.direction.as_str(),
        "channel": record.direction.channel(),
        "status": record.status,
        "tracked": tracked,
        "lead_id": lead_id,
        "occurred_at": terms::rfc3339(occurred_ms),
    });
    Some(Notification {
        url,
        key,
        message_id: record.event_key.message_id(),
        body: body.to_string().into_bytes(),
        log_fields: context.fields.clone(),
    })
}
