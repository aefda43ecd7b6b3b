//! `POST /webhooks/vapi`: verify → parse → plan → claim → record → respond,
//! with the dashboard notification handed back to run after the response.
//!
//! Every step that refuses says why in one log line, with the checklist's exact
//! search terms; the request ends with one summary line.
#![forbid(unsafe_code)]

use crate::claim::{self, Claim};
use crate::logging::emit;
use crate::relay::Notification;
use crate::services::{self, now_ms, variable};
use crate::store::{Agent, DbError, DeadLetter, EventRow, Recorded, Store, Target};
use serde_json::{json, Value};
use std::time::Instant;
use vapi_edge_core::handling::{self, CallRecord, Plan, PlanError, DEFAULT_RETRY_MS};
use vapi_edge_core::http::{Request, Response};
use vapi_edge_core::log::{self as terms, Level, LogLine};
use vapi_edge_core::payload::{self, MessageKind, ServerMessage};
use vapi_edge_core::phone::{self, Country};
use vapi_edge_core::rollout;
use vapi_edge_core::standard_webhooks::SigningKey;
use vapi_edge_core::verify::VerifyConfig;

/// What the request was about, repeated on each of its log lines, and what
/// the event record and a dead letter keep of it.
#[derive(Default)]
struct Context {
    fields: Vec<(&'static str, Value)>,
    /// Set once the request is verified: only those are recorded.
    verified: bool,
    error_class: Option<&'static str>,
    dead_letter: Option<DeadLetter>,
    /// The store as configured, once the settings are read.
    target: Option<Target>,
    /// The connection the event was recorded on, reused for what follows.
    store: Option<Store>,
}

impl Context {
    fn text(&self, key: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    }

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

/// Work that follows the response: the event record and the notification.
#[derive(Default)]
pub struct After {
    pub event: Option<EventRecord>,
    pub notification: Option<Notification>,
}

/// The row for `webhook_events`, and where to write it: on the request's own
/// connection when it has one (one pool checkout per request, not two).
pub struct EventRecord {
    target: Target,
    store: Option<Store>,
    row: EventRow,
}

impl After {
    pub fn run(self) {
        if let Some(EventRecord { target, store, row }) = self.event {
            let written = match store {
                Some(db) => db.insert_event_row(&row),
                None => target.open().and_then(|db| db.insert_event_row(&row)),
            };
            if let Err(error) = written {
                emit(
                    &LogLine::new(Level::Warn, "Event record not written")
                        .field("outcome", row.outcome.as_str())
                        .field("error", error.detail),
                );
            }
        }
        if let Some(notification) = self.notification {
            notification.send(now_ms());
        }
    }
}

pub fn handle(request: &Request) -> (Response, After) {
    let started = Instant::now();
    let mut context = Context::default();
    let answer = process(request, &mut context);
    finish(answer, context, started)
}

/// Logs the summary line, keeps the dead letter, and prepares the event record.
fn finish(answer: Answer, mut context: Context, started: Instant) -> (Response, After) {
    if let Some(letter) = context.dead_letter.take() {
        keep_dead_letter(&context, letter);
    }
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
    // Only verified requests are recorded (anyone can send the others).
    let event = if context.verified {
        let target = context.target.take().unwrap_or_else(Target::configured);
        let store = context.store.take();
        Some(EventRecord {
            target,
            store,
            row: EventRow {
                message_type: context.text("event_type"),
                call_id: context.text("call_id"),
                org_id: context.text("org_id"),
                direction: context.text("direction"),
                outcome: answer.outcome.to_string(),
                status,
                duration_ms: duration_ms(started),
                error_class: context.error_class.map(str::to_string),
            },
        })
    } else {
        None
    };
    let after = After {
        event,
        notification: answer.notification,
    };
    (answer.response, after)
}

/// Stores a failed request for replay: in the database, or when the database
/// is what failed, in the key-value store until `POST /admin/replay` moves it.
fn keep_dead_letter(context: &Context, letter: DeadLetter) {
    let target = context.target.clone().unwrap_or_else(Target::configured);
    let in_database = match &context.store {
        Some(db) => db.upsert_dead_letter(&letter),
        None => target.open().and_then(|db| db.upsert_dead_letter(&letter)),
    };
    let Err(db_error) = in_database else {
        context.log(
            Level::Warn,
            "Dead letter kept",
            &[("store", target.name().into())],
        );
        return;
    };
    match claim::keep_dead_letter(&letter.event_key, &letter.body) {
        Ok(()) => context.log(
            Level::Warn,
            "Dead letter kept",
            &[
                ("store", "key_value".into()),
                ("database_error", db_error.detail.clone().into()),
            ],
        ),
        Err(kv_error) => context.log(
            Level::Critical,
            "Dead letter lost",
            &[
                ("database_error", db_error.detail.clone().into()),
                ("key_value_error", kv_error.into()),
            ],
        ),
    }
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

/// Live deliveries wait for a slow agent; replays of dead letters do not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
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
    context.verified = true;
    if !is_json(request) {
        return Answer::refused("unsupported_media_type", Response::unsupported_media_type());
    }
    process_verified(&request.body, context, Mode::Live)
}

/// Everything after verification, shared by live deliveries and replays.
fn process_verified(body: &[u8], context: &mut Context, mode: Mode) -> Answer {
    // 2. Validate.
    let message = match payload::parse(body) {
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
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(problem) => return misconfigured(context, &problem),
    };
    context.target = Some(settings.target.clone());
    if message.kind == MessageKind::AssistantRequest {
        return answer_assistant_request(&message, &settings, context);
    }

    // 3. Decide, with the call type explicit.
    let record = match handling::plan(&message, &settings.country) {
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

    // 4. Claim before any side effect.
    let held = match claim::claim(&record.event_key, now_ms(), settings.lease_ms) {
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
                "Key-value store unavailable; the database guards this event",
                &[("error", error.into())],
            );
            None
        }
    };

    // 5-7. Find the agent and record, in one statement per attempt.
    let delays: &[u64] = match mode {
        Mode::Live => &settings.retry_delays,
        Mode::Replay => &[],
    };
    // The connection stays open for what follows the response.
    let answer = match settings.target.open() {
        Ok(db) => {
            let answer = record_with_retry(&db, &settings, &record, delays, context, &message);
            context.store = Some(db);
            answer
        }
        Err(error) => database_unavailable(context, &error),
    };
    if let Some(held) = held {
        // Only an event the database holds is done; anything else (a failure, an
        // organisation outside the rollout) gives the claim back.
        let result = if matches!(answer.outcome, "recorded" | "duplicate") {
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
    if answer.response.status >= 500 {
        context.dead_letter = Some(DeadLetter {
            event_key: record.event_key.to_string(),
            message_type: Some(record.message_type.clone()),
            call_id: Some(record.call_id.clone()),
            reason: answer.outcome.to_string(),
            headers: json!({ "content-type": "application/json" }),
            body: body.to_vec(),
        });
    }
    answer
}

/// What every verified request needs from the variables, read once.
struct Settings {
    target: Target,
    country: Country,
    retry_delays: Vec<u64>,
    rollout_percent: u32,
    lease_ms: i64,
}

impl Settings {
    fn load() -> Result<Settings, String> {
        let country_code = variable("default_country").unwrap_or_else(|| "US".into());
        let country = Country::from_iso(&country_code)
            .ok_or("default_country is not a country this version knows")?;
        let retry_delays = handling::parse_retry_delays(
            &variable("agent_lookup_retry_ms").unwrap_or_else(|| DEFAULT_RETRY_MS.into()),
        )
        .map_err(|e| format!("agent_lookup_retry_ms: {e}"))?;
        let rollout_percent = rollout::parse_percent(
            &variable("inbound_rollout_percent").unwrap_or_else(|| "100".into()),
        )
        .map_err(|e| format!("inbound_rollout_percent: {e}"))?;
        let lease_ms = match variable("claim_lease_ms") {
            None => claim::DEFAULT_LEASE_MS,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(ms) if (1_000..=3_600_000).contains(&ms) => ms,
                _ => {
                    return Err("claim_lease_ms: expected milliseconds from 1000 to 3600000".into())
                }
            },
        };
        Ok(Settings {
            target: Target::configured(),
            country,
            retry_delays,
            rollout_percent,
            lease_ms,
        })
    }
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

/// `assistant-request`: Vapi asks which assistant answers an inbound call on a
/// line without a fixed one, and waits at most 7.5 s. Read-only: the call's
/// rows come with its status updates. With no agent for the line the answer is
/// Vapi's `error` shape (spoken, then the call ends); a database failure is a
/// 5xx so Vapi falls back to the number's `fallbackDestination`.
fn answer_assistant_request(
    message: &ServerMessage,
    settings: &Settings,
    context: &mut Context,
) -> Answer {
    context.set("direction", "inbound");
    let line = message
        .phone_number
        .as_deref()
        .map(|raw| phone::normalize(raw, &settings.country));
    let line_e164 = line.as_ref().map(|n| n.value().to_string());
    let phone_number_id = message
        .call
        .as_ref()
        .and_then(|c| c.phone_number_id.as_deref());
    let found = settings
        .target
        .open()
        .and_then(|db| db.inbound_agent_for_line(phone_number_id, line_e164.as_deref()));
    match found {
        Ok(Some((agent, assistant_id))) => {
            note_agent(context, &agent);
            let mut answer = Answer::ok("answered");
            answer.response = Response::json(200, &json!({ "assistantId": assistant_id }));
            answer
        }
        Ok(None) => {
            context.error_class = Some("agent_lookup");
            context.log(
                Level::Error,
                terms::AGENT_LOOKUP_FAILED,
                &[(
                    "line",
                    phone::mask(message.phone_number.as_deref().unwrap_or_default()).into(),
                )],
            );
            let mut answer = Answer::ok("no_agent");
            answer.response = Response::json(
                200,
                &json!({ "error": "Sorry, this line cannot take calls right now. Please try again later." }),
            );
            answer
        }
        Err(error) => database_unavailable(context, &error),
    }
}

/// The database could not be reached: 503, so Vapi's retry (or its fallback
/// destination, for an assistant-request) takes over.
fn database_unavailable(context: &mut Context, error: &DbError) -> Answer {
    context.error_class = Some("database");
    context.log(
        Level::Error,
        "Database unavailable",
        &[("error", error.detail.clone().into())],
    );
    Answer::refused(
        "database_unavailable",
        Response::error(503, "database unavailable; retry later"),
    )
}

fn record_with_retry(
    db: &Store,
    settings: &Settings,
    record: &CallRecord,
    delays: &[u64],
    context: &mut Context,
    message: &ServerMessage,
) -> Answer {
    let mut retries = delays.iter();
    loop {
        match db.record_event(record, settings.rollout_percent) {
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
                    &[("guard", settings.target.name().into())],
                );
                return Answer::ok("duplicate");
            }
            Ok(Recorded::OutsideRollout { agent }) => {
                note_agent(context, &agent);
                context.log(
                    Level::Info,
                    "Organisation is outside the inbound rollout; not recorded",
                    &[("rollout_percent", settings.rollout_percent.into())],
                );
                return Answer::ok("outside_rollout");
            }
            Ok(Recorded::AgentNotFound) => match retries.next() {
                Some(delay) => services::sleep_ms(*delay),
                None => {
                    context.error_class = Some("agent_lookup");
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
                let (msg, class) = if record.tracks_call() {
                    (terms::CALL_TRACKING_FAILED, "call_tracking")
                } else {
                    (terms::CALL_LOGS_FAILED, "call_logs")
                };
                context.error_class = Some(class);
                context.log(Level::Error, msg, &[("error", error.detail.into())]);
                let status = if error.transient { 503 } else { 500 };
                return Answer::refused(
                    "database_error",
                    Response::error(status, "the event could not be recorded; retry later"),
                );
            }
        }
    }
}

/// `POST /admin/replay`: re-drives pending dead letters through the same path
/// as a live delivery (verification aside: they were verified on arrival).
/// Idempotent: an event that already succeeded is a duplicate and changes nothing.
pub fn replay(limit: i64) -> Response {
    let db = match Target::configured().open() {
        Ok(db) => db,
        Err(_) => return Response::error(503, "database unavailable"),
    };
    // Dead letters parked in the key-value store while the database was down
    // move into the table first, so there is one queue to drain.
    let parked = claim::move_parked_dead_letters(now_ms(), |event_key, body| {
        let letter = DeadLetter {
            event_key: event_key.to_string(),
            message_type: None,
            call_id: None,
            reason: "database_unavailable".into(),
            headers: json!({ "content-type": "application/json" }),
            body: body.to_vec(),
        };
        db.upsert_dead_letter(&letter).is_ok()
    });
    let (moved, still_parked) = match parked {
        Ok(drained) => (drained.moved, drained.still_parked),
        Err(error) => {
            emit(
                &LogLine::new(Level::Warn, "Parked dead letters not read")
                    .field("store", "key_value")
                    .field("error", error),
            );
            (0, -1)
        }
    };
    let pending = match db.pending_dead_letters(limit) {
        Ok(pending) => pending,
        Err(_) => return Response::error(503, "database unavailable"),
    };
    let (mut succeeded, mut failed) = (0, 0);
    for (id, body) in pending {
        let started = Instant::now();
        let mut context = Context {
            verified: true,
            ..Context::default()
        };
        context.set("replay_of", id);
        let answer = process_verified(&body, &mut context, Mode::Replay);
        let ok = answer.response.status < 300;
        let outcome = answer.outcome;
        let (_, after) = finish(answer, context, started);
        after.run();
        if ok && db.mark_replayed(id, outcome).is_ok() {
            succeeded += 1;
        } else {
            failed += 1;
        }
    }
    let remaining = db.count_pending_dead_letters().unwrap_or(-1);
    Response::json(
        200,
        &json!({
            "moved_from_key_value": moved,
            "parked_in_key_value": still_parked,
            "replayed": succeeded,
            "failed": failed,
            "remaining": remaining,
        }),
    )
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
