//! `POST /webhooks/vapi`, decided once: verify → validate → plan → claim →
//! record → respond, with the event record and the dashboard notification
//! handed back to run after the response. Every effect goes through
//! [`Effects`], so each branch is unit-tested natively, and the component and
//! the native baseline run this same flow.
//!
//! Every step that refuses says why in one log line, with the checklist's exact
//! search terms; the request ends with one summary line.

use crate::claim::{self, Claim, ClaimScope};
use crate::db::{Agent, DbError, DeadLetter, EventRow, Owner, OwnerVia, Recorded};
use crate::effects::Effects;
use crate::event_key;
use crate::handling::{self, CallRecord, Plan, PlanError};
use crate::http::{Request, Response};
use crate::kv::KeyValue;
use crate::log::{self as terms, Level, LogLine};
use crate::parked;
use crate::payload::{self, MessageKind, ServerMessage};
use crate::phone;
use crate::relay::Notification;
use crate::settings::Settings;
use crate::standard_webhooks::SigningKey;
use crate::upstream::{self, Fallback, UpstreamFailure};
use crate::verify::{VerifyConfig, VerifyError};
use serde_json::{json, Value};
use std::time::Instant;

/// How a request ended: the `outcome` of its summary line, of `webhook_events`
/// and of the metrics' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Recorded,
    Duplicate,
    /// A message type or a message this version does not act on.
    Ignored,
    OutsideRollout,
    /// An `assistant-request` answered with the line's assistant.
    Answered,
    /// An `assistant-request` for a line without an agent (Vapi's `error` shape).
    NoAgent,
    Unauthorized,
    UnsupportedMediaType,
    InvalidPayload,
    InvalidCallType,
    Misconfigured,
    /// Another attempt holds the event's claim.
    InProgress,
    DatabaseUnavailable,
    DatabaseError,
    AgentNotFound,
    /// A reply-expecting message answered here, in Vapi's shape.
    Replied,
    /// A reply-expecting message answered by the upstream.
    Forwarded,
    /// The upstream failed; the fallback answered.
    UpstreamFailed,
    /// An `assistant-request` answered by the line's (or the deployment's)
    /// fallback assistant or transfer: no agent, and no upstream answer.
    Fallback,
    /// A call recorded without an organisation: no handle it carries
    /// resolves, and it has no assistant id to wait for.
    Unassigned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::OutsideRollout => "outside_rollout",
            Outcome::Answered => "answered",
            Outcome::NoAgent => "no_agent",
            Outcome::Unauthorized => "unauthorized",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::InvalidPayload => "invalid_payload",
            Outcome::InvalidCallType => "invalid_call_type",
            Outcome::Misconfigured => "misconfigured",
            Outcome::InProgress => "in_progress",
            Outcome::DatabaseUnavailable => "database_unavailable",
            Outcome::DatabaseError => "database_error",
            Outcome::AgentNotFound => "agent_not_found",
            Outcome::Replied => "replied",
            Outcome::Forwarded => "forwarded",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::Fallback => "fallback",
            Outcome::Unassigned => "unassigned",
        }
    }

    /// The database holds the event: its claim is done, not given back.
    fn is_held_by_database(self) -> bool {
        matches!(
            self,
            Outcome::Recorded | Outcome::Duplicate | Outcome::Unassigned
        )
    }
}

/// Which failure a request met, for the metrics' failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    AgentLookup,
    CallTracking,
    CallLogs,
    Database,
    Upstream,
}

impl ErrorClass {
    fn as_str(self) -> &'static str {
        match self {
            ErrorClass::AgentLookup => "agent_lookup",
            ErrorClass::CallTracking => "call_tracking",
            ErrorClass::CallLogs => "call_logs",
            ErrorClass::Database => "database",
            ErrorClass::Upstream => "upstream",
        }
    }
}

/// What the request was about, repeated on each of its log lines, and what
/// the event record and a dead letter keep of it.
#[derive(Default)]
struct Context {
    fields: Vec<(&'static str, Value)>,
    /// Set once the request is verified: only those are recorded.
    verified: bool,
    error_class: Option<ErrorClass>,
    dead_letter: Option<DeadLetter>,
    /// When the request arrived: the upstream's deadline counts from here.
    started: Option<Instant>,
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

    fn line(&self, level: Level, msg: &str, extra: &[(&str, Value)]) -> LogLine {
        let line = self
            .fields
            .iter()
            .fold(LogLine::new(level, msg), |line, (k, v)| {
                line.field(k, v.clone())
            });
        extra
            .iter()
            .fold(line, |line, (k, v)| line.field(k, v.clone()))
    }

    fn log(&self, effects: &mut impl Effects, level: Level, msg: &str, extra: &[(&str, Value)]) {
        effects.emit(&self.line(level, msg, extra));
    }

    fn note_agent(&mut self, agent: &Agent) {
        self.set("org_id", agent.org_id.as_str());
        self.set("agent_id", agent.id.as_str());
        self.set("agent", agent.name.as_str());
    }

    /// The call's owner, or that it has none (`owner_via` `none`).
    fn note_owner(&mut self, owner: Option<&Owner>) {
        let Some(owner) = owner else {
            self.set("owner_via", crate::db::UNASSIGNED_VIA);
            return;
        };
        match &owner.agent {
            Some(agent) => self.note_agent(agent),
            None => self.set("org_id", owner.org_id.as_str()),
        }
        if owner.via != OwnerVia::Assistant {
            self.set("owner_via", owner.via.as_str());
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started
            .map_or(0, |started| started.elapsed().as_millis() as u64)
    }
}

/// A request answered: the response, its outcome, and the notification to
/// send once the response is out.
struct Answer {
    response: Response,
    outcome: Outcome,
    notification: Option<Notification>,
}

impl Answer {
    fn ok(outcome: Outcome) -> Self {
        Answer {
            response: Response::json(200, &json!({ "ok": true, "outcome": outcome.as_str() })),
            outcome,
            notification: None,
        }
    }

    fn with(outcome: Outcome, response: Response) -> Self {
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
    event: Option<EventRow>,
    notification: Option<(Notification, LogLine)>,
}

impl After {
    /// Nothing to do (a request that was not a verified webhook).
    pub fn none() -> After {
        After::default()
    }

    /// Writes the event record and sends the notification. Neither can fail
    /// the request any more: a failure is a WARN line.
    pub async fn run(self, effects: &mut impl Effects) {
        if let Some(row) = self.event {
            if let Err(error) = effects.insert_event_row(&row).await {
                effects.emit(
                    &LogLine::new(Level::Warn, "Event record not written")
                        .field("outcome", row.outcome.as_str())
                        .field("error", error.detail),
                );
            }
        }
        if let Some((notification, failure_line)) = self.notification {
            let now = effects.now_ms();
            let answer = effects.post(&notification.post(now)).await;
            let failure_line = match answer {
                Ok(reply) if (200..300).contains(&reply.status) => return,
                Ok(reply) => failure_line.field("relay_status", reply.status),
                Err(error) => failure_line.field("error", error.to_string()),
            };
            effects.emit(&failure_line);
        }
    }
}

/// Live deliveries wait for a slow agent; replays of dead letters do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Replay,
}

/// Answers one `POST /webhooks/vapi`; the [`After`] runs once the response is out.
pub async fn handle<E: Effects>(effects: &mut E, request: &Request) -> (Response, After) {
    let started = Instant::now();
    let mut context = Context {
        started: Some(started),
        ..Context::default()
    };
    let answer = process(effects, request, &mut context).await;
    finish(effects, answer, context, started).await
}

/// Refuses a `POST /webhooks/vapi` from its head alone, before its body is
/// read, when the head proves it cannot be authentic (no credential header, a
/// stale or malformed timestamp, a wrong shared secret) or the deployment
/// refuses every webhook (503): answered as [`handle`] would answer, with the
/// same log lines. `None`: read the body and [`handle`] it. A stranger's
/// half-sent body then costs no memory and no wait, under any host.
pub async fn precheck<E: Effects>(effects: &mut E, request: &Request) -> Option<(Response, After)> {
    let started = Instant::now();
    let mut context = Context {
        started: Some(started),
        ..Context::default()
    };
    let answer = match VerifyConfig::from_variables(|name| effects.variable(name)) {
        Ok(config) if config.is_configured() => {
            let error = config
                .verify_head(&request.headers, effects.now_ms())
                .err()?;
            refuse_unverified(effects, &context, &error)
        }
        Ok(_) => misconfigured(effects, &context, NOT_CONFIGURED),
        Err(error) => misconfigured(effects, &context, &error.to_string()),
    };
    context.set("checked", "head");
    Some(finish(effects, answer, context, started).await)
}

/// 401 for a request that failed verification, with its one log line.
fn refuse_unverified(effects: &mut impl Effects, context: &Context, error: &VerifyError) -> Answer {
    let reason = error.public_reason();
    context.log(
        effects,
        Level::Warn,
        "Webhook verification failed",
        &[("error", reason.clone().into())],
    );
    Answer::with(Outcome::Unauthorized, Response::error(401, &reason))
}

/// Logs the summary line, keeps the dead letter, and prepares the event record.
async fn finish<E: Effects>(
    effects: &mut E,
    answer: Answer,
    mut context: Context,
    started: Instant,
) -> (Response, After) {
    if let Some(letter) = context.dead_letter.take() {
        keep_dead_letter(effects, &context, letter).await;
    }
    let status = answer.response.status;
    let (level, msg) = match status {
        200..=299 => (Level::Info, "Webhook handled"),
        400..=499 => (Level::Warn, "Webhook refused"),
        _ => (Level::Error, "Webhook failed"),
    };
    context.log(
        effects,
        level,
        msg,
        &[
            ("outcome", answer.outcome.as_str().into()),
            ("status", status.into()),
            ("duration_ms", duration_ms(started).into()),
        ],
    );
    // Only verified requests are recorded (anyone can send the others).
    let event = context.verified.then(|| EventRow {
        message_type: context.text("event_type"),
        call_id: context.text("call_id"),
        org_id: context.text("org_id"),
        direction: context.text("direction"),
        outcome: answer.outcome.as_str().to_string(),
        status,
        duration_ms: duration_ms(started),
        error_class: context.error_class.map(|c| c.as_str().to_string()),
    });
    let notification = answer.notification.map(|notification| {
        let line = context
            .line(Level::Warn, "Relay notification failed", &[])
            .field("webhook_id", notification.message_id.as_str());
        (notification, line)
    });
    (
        answer.response,
        After {
            event,
            notification,
        },
    )
}

/// Stores a failed request for replay: in the database, or when the database
/// is what failed, in the key-value store until `POST /admin/replay` moves it.
async fn keep_dead_letter<E: Effects>(effects: &mut E, context: &Context, letter: DeadLetter) {
    let database = effects.database().name();
    let db_error = match effects.upsert_dead_letter(&letter).await {
        Ok(()) => {
            context.log(
                effects,
                Level::Warn,
                "Dead letter kept",
                &[("store", database.into())],
            );
            return;
        }
        Err(error) => error,
    };
    match parked::park(effects, &letter.event_key, &letter.body).await {
        Ok(()) => context.log(
            effects,
            Level::Warn,
            "Dead letter kept",
            &[
                ("store", "key_value".into()),
                ("database_error", db_error.detail.into()),
            ],
        ),
        Err(kv_error) => context.log(
            effects,
            Level::Critical,
            "Dead letter lost",
            &[
                ("database_error", db_error.detail.into()),
                ("key_value_error", kv_error.0.into()),
            ],
        ),
    }
}

fn duration_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// The refusal of a webhook that no secret is set for (fail closed).
const NOT_CONFIGURED: &str =
    "neither vapi_hmac_secret nor vapi_server_secret is set: every request is refused";

/// Why this deployment's settings make every webhook answer 503, naming the
/// variable (never quoting a secret); `None` when they do not. `/healthz`
/// reports it, so a readiness probe keeps traffic off a broken deployment.
pub fn configuration_problem(effects: &impl Effects) -> Option<String> {
    match VerifyConfig::from_variables(|name| effects.variable(name)) {
        Ok(config) if config.is_configured() => {}
        Ok(_) => return Some(NOT_CONFIGURED.to_string()),
        Err(error) => return Some(error.to_string()),
    }
    Settings::from_variables(|name| effects.variable(name))
        .err()
        .map(|error| error.to_string())
}

/// A refusal because of how this deployment is set up: nobody but an operator
/// can fix it, so it is CRITICAL, and 503 lets Vapi's retry succeed once fixed.
fn misconfigured(effects: &mut impl Effects, context: &Context, problem: &str) -> Answer {
    context.log(
        effects,
        Level::Critical,
        "Webhook misconfigured",
        &[("error", problem.into())],
    );
    Answer::with(
        Outcome::Misconfigured,
        Response::error(503, "the webhook is not configured"),
    )
}

async fn process<E: Effects>(effects: &mut E, request: &Request, context: &mut Context) -> Answer {
    // 1. Verify, over the raw bytes, before anything else.
    let verifier = match VerifyConfig::from_variables(|name| effects.variable(name)) {
        Ok(config) if config.is_configured() => config,
        Ok(_) => return misconfigured(effects, context, NOT_CONFIGURED),
        Err(error) => return misconfigured(effects, context, &error.to_string()),
    };
    if let Err(error) = verifier.verify_request(
        &request.method,
        &request.headers,
        &request.body,
        effects.now_ms(),
    ) {
        return refuse_unverified(effects, context, &error);
    }
    context.verified = true;
    if !is_json(request) {
        return Answer::with(
            Outcome::UnsupportedMediaType,
            Response::unsupported_media_type(),
        );
    }
    process_verified(effects, &request.body, context, Mode::Live).await
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

/// Everything after verification, shared by live deliveries and replays.
async fn process_verified<E: Effects>(
    effects: &mut E,
    body: &[u8],
    context: &mut Context,
    mode: Mode,
) -> Answer {
    // 2. Validate.
    let message = match payload::parse(body) {
        Ok(message) => message,
        Err(error) => {
            context.set("error", error.to_string());
            return Answer::with(
                Outcome::InvalidPayload,
                Response::bad_request(&error.field, &error.problem),
            );
        }
    };
    context.set("event_type", message.message_type.as_str());
    if let Some(call_id) = message.call_id() {
        context.set("call_id", call_id);
    }
    let settings = match Settings::from_variables(|name| effects.variable(name)) {
        Ok(settings) => settings,
        Err(problem) => return misconfigured(effects, context, &problem.to_string()),
    };
    if message.kind == MessageKind::AssistantRequest {
        return answer_assistant_request(effects, &message, body, &settings, context).await;
    }
    if message.kind.expects_reply() {
        return answer_reply(effects, &message, body, &settings, context).await;
    }

    // 3. Decide, with the call type explicit.
    let record = match handling::plan(&message, &settings) {
        Ok(Plan::Record(record)) => record,
        Ok(Plan::Acknowledge { reason }) => {
            context.set("reason", reason);
            return Answer::ok(Outcome::Ignored);
        }
        Err(PlanError::CallType(error)) => {
            context.log(
                effects,
                Level::Error,
                terms::CANNOT_DETERMINE_CALL_TYPE,
                &[("error", error.to_string().into())],
            );
            // Kept, so that once the type is known (a new version, or
            // `call_type_aliases`) a replay records the call's events.
            if let Some(key) = event_key::for_message(&message) {
                context.dead_letter = Some(DeadLetter {
                    event_key: key.to_string(),
                    message_type: Some(message.message_type.clone()),
                    call_id: message.call_id().map(str::to_string),
                    reason: Outcome::InvalidCallType.as_str().to_string(),
                    headers: json!({ "content-type": "application/json" }),
                    body: body.to_vec(),
                });
            }
            return Answer::with(
                Outcome::InvalidCallType,
                Response::bad_request(
                    "message.call.type",
                    &format!("cannot determine call type: {error}"),
                ),
            );
        }
    };
    context.set("direction", record.direction.as_str());
    for warning in &record.number_warnings {
        context.log(
            effects,
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
    let now = effects.now_ms();
    let scope = ClaimScope::new(
        &effects.database_address(),
        effects.variable("claim_scope").as_deref(),
    );
    let held = match claim::claim(effects, &scope, &record.event_key, now, settings.lease_ms).await
    {
        Claim::Acquired(held) => Some(held),
        Claim::Done => {
            context.log(
                effects,
                Level::Info,
                terms::DUPLICATE_EVENT,
                &[("guard", "key_value".into())],
            );
            return Answer::ok(Outcome::Duplicate);
        }
        Claim::InProgress => {
            context.log(
                effects,
                Level::Warn,
                "Event is being handled by another attempt",
                &[],
            );
            return Answer::with(
                Outcome::InProgress,
                Response::error(503, "this event is being handled; retry later")
                    .with_header("retry-after", "1"),
            );
        }
        Claim::Unavailable(error) => {
            context.log(
                effects,
                Level::Warn,
                "Key-value store unavailable; the database guards this event",
                &[("error", error.0.into())],
            );
            None
        }
    };

    // 5-7. Find the agent and record, in one statement per attempt.
    let delays: &[u64] = match mode {
        Mode::Live => &settings.retry_delays,
        Mode::Replay => &[],
    };
    let answer = record_with_retry(effects, &settings, &record, delays, context, &message).await;
    if let Some(held) = held {
        // Only an event the database holds is done; anything else (a failure, an
        // organisation outside the rollout) gives the claim back.
        let result = if answer.outcome.is_held_by_database() {
            held.complete(effects).await
        } else {
            held.release(effects).await
        };
        if let Err(error) = result {
            context.log(
                effects,
                Level::Warn,
                "Key-value claim could not be updated",
                &[("error", error.0.into())],
            );
        }
    }
    if answer.response.status >= 500 {
        context.dead_letter = Some(DeadLetter {
            event_key: record.event_key.to_string(),
            message_type: Some(record.message_type.clone()),
            call_id: Some(record.call_id.clone()),
            reason: answer.outcome.as_str().to_string(),
            headers: json!({ "content-type": "application/json" }),
            body: body.to_vec(),
        });
    }
    answer
}

/// `assistant-request`: Vapi asks which assistant answers an inbound call on a
/// line without a fixed one, and waits at most 7.5 s. Read-only: the call's
/// rows come with its status updates. The line's agent answers; else the
/// upstream, when one takes this type; else (or when the upstream fails) the
/// line's fallback assistant or transfer, then the deployment's
/// (`assistant_request_fallback`); with none, Vapi's `error` shape (spoken,
/// then the call ends). A database failure is a 5xx so Vapi falls back to the
/// number's `fallbackDestination`.
async fn answer_assistant_request<E: Effects>(
    effects: &mut E,
    message: &ServerMessage,
    body: &[u8],
    settings: &Settings,
    context: &mut Context,
) -> Answer {
    context.set("direction", "inbound");
    let line_e164 = message
        .phone_number
        .as_deref()
        .map(|raw| phone::normalize(raw, &settings.country).value().to_string());
    let line = match effects
        .line_answer(message.line_id(), line_e164.as_deref())
        .await
    {
        Ok(line) => line,
        Err(error) => return database_unavailable(effects, context, &error),
    };
    if let Some((agent, assistant_id)) = &line.agent {
        context.note_agent(agent);
        return Answer::with(
            Outcome::Answered,
            Response::json(200, &json!({ "assistantId": assistant_id })),
        );
    }
    let fallback = line
        .fallback
        .clone()
        .or_else(|| settings.assistant_request_fallback.clone());
    let upstream_takes_it = settings
        .upstream
        .as_ref()
        .is_some_and(|u| u.handles(&message.message_type));
    if upstream_takes_it {
        let answer = answer_reply(effects, message, body, settings, context).await;
        return match (answer.outcome, fallback) {
            (Outcome::UpstreamFailed, Some(fallback)) => {
                answer_with_fallback(effects, context, &fallback)
            }
            _ => answer,
        };
    }
    if let Some(fallback) = fallback {
        return answer_with_fallback(effects, context, &fallback);
    }
    context.error_class = Some(ErrorClass::AgentLookup);
    context.log(
        effects,
        Level::Error,
        terms::AGENT_LOOKUP_FAILED,
        &[(
            "line",
            phone::mask(message.phone_number.as_deref().unwrap_or_default()).into(),
        )],
    );
    Answer::with(
        Outcome::NoAgent,
        upstream::fallback(message, settings.predial_eligible),
    )
}

/// The line's (or the deployment's) fallback answers an `assistant-request`.
fn answer_with_fallback(
    effects: &mut impl Effects,
    context: &mut Context,
    fallback: &Fallback,
) -> Answer {
    context.log(
        effects,
        Level::Warn,
        "Assistant request answered by the fallback",
        &[("fallback", fallback.kind().into())],
    );
    Answer::with(Outcome::Fallback, fallback.response())
}

/// A message whose reply Vapi uses: the upstream's answer when one is
/// configured for its type and answers in time, else the fallback in Vapi's
/// shape. Nothing is recorded but the event row; the upstream gets a
/// `webhook-id` from the event key and drops repeats itself.
async fn answer_reply<E: Effects>(
    effects: &mut E,
    message: &ServerMessage,
    body: &[u8],
    settings: &Settings,
    context: &mut Context,
) -> Answer {
    let fallback = || upstream::fallback(message, settings.predial_eligible);
    let Some(upstream) = settings
        .upstream
        .as_ref()
        .filter(|u| u.handles(&message.message_type))
    else {
        return Answer::with(Outcome::Replied, fallback());
    };
    let key = event_key::reply_key(message);
    let timeout = upstream.timeout_for(&message.message_type);
    let reply = match upstream::deadline_ms(&message.kind, timeout, context.elapsed_ms()) {
        Some(timeout_ms) => {
            if upstream.key.is_none() {
                context.log(
                    effects,
                    Level::Warn,
                    "upstream_secret is not set; forwarded request is unsigned",
                    &[],
                );
            }
            let post = upstream::forward(
                &upstream.url,
                upstream.key.as_ref(),
                &key,
                body,
                effects.now_ms(),
                timeout_ms,
            );
            upstream::relay_reply(&message.kind, effects.post(&post).await)
        }
        None => Err(UpstreamFailure::NoTime),
    };
    match reply {
        Ok(response) => Answer::with(Outcome::Forwarded, response),
        Err(failure) => {
            context.error_class = Some(ErrorClass::Upstream);
            let level = match failure {
                UpstreamFailure::Status(_) | UpstreamFailure::InvalidBody(_) => Level::Error,
                _ => Level::Warn,
            };
            context.log(
                effects,
                level,
                terms::UPSTREAM_FAILED,
                &[
                    ("reason", failure.reason().into()),
                    ("error", failure.detail().into()),
                    ("webhook_id", key.message_id().into()),
                ],
            );
            Answer::with(Outcome::UpstreamFailed, fallback())
        }
    }
}

/// The database could not be reached: 503, so Vapi's retry (or its fallback
/// destination, for an assistant-request) takes over.
fn database_unavailable(
    effects: &mut impl Effects,
    context: &mut Context,
    error: &DbError,
) -> Answer {
    context.error_class = Some(ErrorClass::Database);
    context.log(
        effects,
        Level::Error,
        "Database unavailable",
        &[("error", error.detail.clone().into())],
    );
    Answer::with(
        Outcome::DatabaseUnavailable,
        Response::error(503, "database unavailable; retry later"),
    )
}

async fn record_with_retry<E: Effects>(
    effects: &mut E,
    settings: &Settings,
    record: &CallRecord,
    delays: &[u64],
    context: &mut Context,
    message: &ServerMessage,
) -> Answer {
    let mut retries = delays.iter();
    loop {
        match effects.record_event(record, settings.rollout_percent).await {
            Ok(Recorded::New {
                owner,
                tracked,
                lead_id,
            }) => {
                context.note_owner(owner.as_ref());
                if let Some(lead_id) = &lead_id {
                    context.set("lead_id", lead_id.as_str());
                }
                let outcome = match &owner {
                    Some(owner) if owner.agent.is_none() => {
                        warn_no_agent(effects, context, record, owner.via);
                        Outcome::Recorded
                    }
                    Some(_) => Outcome::Recorded,
                    None => {
                        warn_unassigned(effects, context, record);
                        Outcome::Unassigned
                    }
                };
                let mut answer = Answer::ok(outcome);
                answer.notification = notification(
                    effects,
                    record,
                    owner.as_ref(),
                    tracked,
                    lead_id,
                    message,
                    context,
                );
                return answer;
            }
            Ok(Recorded::Duplicate { owner }) => {
                context.note_owner(owner.as_ref());
                let guard = effects.database().name();
                context.log(
                    effects,
                    Level::Info,
                    terms::DUPLICATE_EVENT,
                    &[("guard", guard.into())],
                );
                return Answer::ok(Outcome::Duplicate);
            }
            Ok(Recorded::OutsideRollout { owner }) => {
                context.note_owner(Some(&owner));
                context.log(
                    effects,
                    Level::Info,
                    "Organisation is outside the inbound rollout; not recorded",
                    &[("rollout_percent", settings.rollout_percent.into())],
                );
                return Answer::ok(Outcome::OutsideRollout);
            }
            // Only a call that names an assistant is refused for want of an
            // owner (`CallRecord::keeps_unowned`): its agent may appear.
            Ok(Recorded::OwnerNotFound) => match retries.next() {
                Some(delay) => effects.sleep_ms(*delay).await,
                None => {
                    context.error_class = Some(ErrorClass::AgentLookup);
                    context.log(
                        effects,
                        Level::Error,
                        terms::AGENT_LOOKUP_FAILED,
                        &[
                            ("assistant_id", record.assistant_id.clone().into()),
                            ("attempts", (delays.len() + 1).into()),
                        ],
                    );
                    return Answer::with(
                        Outcome::AgentNotFound,
                        Response::error(500, "no agent has this assistant id yet; retry later"),
                    );
                }
            },
            Err(error) if error.unreachable => {
                return database_unavailable(effects, context, &error);
            }
            Err(error) => {
                let (msg, class) = if record.tracks_call() {
                    (terms::CALL_TRACKING_FAILED, ErrorClass::CallTracking)
                } else {
                    (terms::CALL_LOGS_FAILED, ErrorClass::CallLogs)
                };
                context.error_class = Some(class);
                context.log(
                    effects,
                    Level::Error,
                    msg,
                    &[("error", error.detail.into())],
                );
                let status = if error.transient { 503 } else { 500 };
                return Answer::with(
                    Outcome::DatabaseError,
                    Response::error(status, "the event could not be recorded; retry later"),
                );
            }
        }
    }
}

/// A call recorded for its organisation alone: say why it has no agent, so
/// an operator can map its squad or workflow, or see the failed call.
fn warn_no_agent(
    effects: &mut impl Effects,
    context: &Context,
    record: &CallRecord,
    via: OwnerVia,
) {
    let reason = match (&record.assistant_id, &record.squad_id, &record.workflow_id) {
        (Some(_), _, _) => "no agent has the call's assistant id (agents.vapi_assistant_id)",
        (None, Some(_), _) => "no agent is mapped to the call's squad (agents.vapi_squad_id)",
        (None, None, Some(_)) => {
            "no agent is mapped to the call's workflow (agents.vapi_workflow_id)"
        }
        (None, None, None) => "the call has no assistant id, squad or workflow",
    };
    context.log(
        effects,
        Level::Warn,
        "Call recorded without an agent",
        &[
            ("reason", reason.into()),
            ("owner_via", via.as_str().into()),
        ],
    );
}

/// A call recorded without an organisation: say what it carried, so an
/// operator can map it (`vapi-edge-host map-org`), which attributes its rows.
fn warn_unassigned(effects: &mut impl Effects, context: &Context, record: &CallRecord) {
    context.log(
        effects,
        Level::Warn,
        terms::CALL_UNASSIGNED,
        &[
            ("vapi_org_id", record.vapi_org_id.clone().into()),
            ("squad_id", record.squad_id.clone().into()),
            ("workflow_id", record.workflow_id.clone().into()),
            ("line_id", record.line_id.clone().into()),
            ("line", record.line_e164.as_deref().map(phone::mask).into()),
        ],
    );
}

/// The dashboard event for a newly recorded call event, if a relay is set.
fn notification(
    effects: &mut impl Effects,
    record: &CallRecord,
    owner: Option<&Owner>,
    tracked: bool,
    lead_id: Option<String>,
    message: &ServerMessage,
    context: &Context,
) -> Option<Notification> {
    let url = effects.variable("relay_url")?;
    let key = match effects
        .variable("relay_secret")
        .map(|secret| SigningKey::from_secret(&secret))
    {
        Some(Ok(key)) => Some(key),
        Some(Err(_)) => {
            context.log(
                effects,
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
                effects,
                Level::Warn,
                "relay_secret is not set; notification is unsigned",
                &[],
            );
            None
        }
    };
    let occurred_ms = message.timestamp_ms.unwrap_or_else(|| effects.now_ms());
    let body = json!({
        "type": "call.event",
        "event_type": record.message_type,
        "vapi_call_id": record.call_id,
        // `null` for an unassigned call: the relay shows it to operators only.
        "org_id": owner.map(|o| o.org_id.as_str()),
        "agent_id": owner.and_then(|o| o.agent.as_ref()).map(|a| a.id.as_str()),
        "agent_name": owner.and_then(|o| o.agent.as_ref()).map(|a| a.name.as_str()),
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
    })
}

/// `POST /admin/replay`: re-drives up to `limit` pending dead letters through
/// the same path as a live delivery (verification aside: they were verified on
/// arrival). Idempotent: an event that already succeeded is a duplicate and
/// changes nothing.
pub async fn replay<E: Effects>(effects: &mut E, limit: i64) -> Response {
    // Dead letters parked in the key-value store while the database was down
    // move into the table first, so there is one queue to drain.
    let now = effects.now_ms();
    let parked = parked::drain(effects, now, async |effects: &mut E, event_key, body| {
        let letter = DeadLetter {
            event_key: event_key.to_string(),
            message_type: None,
            call_id: None,
            reason: Outcome::DatabaseUnavailable.as_str().into(),
            headers: json!({ "content-type": "application/json" }),
            body: body.to_vec(),
        };
        effects.upsert_dead_letter(&letter).await.is_ok()
    })
    .await;
    let (moved, still_parked) = match parked {
        Ok(drained) => (drained.moved, drained.still_parked),
        Err(error) => {
            effects.emit(
                &LogLine::new(Level::Warn, "Parked dead letters not read")
                    .field("store", "key_value")
                    .field("error", error.0),
            );
            (0, -1)
        }
    };
    let pending = match effects.pending_dead_letters(limit).await {
        Ok(pending) => pending,
        Err(_) => return Response::error(503, "database unavailable"),
    };
    let (mut succeeded, mut failed) = (0, 0);
    for letter in pending {
        let started = Instant::now();
        let mut context = Context {
            verified: true,
            ..Context::default()
        };
        context.set("replay_of", letter.id);
        let answer = process_verified(effects, &letter.body, &mut context, Mode::Replay).await;
        let ok = answer.response.status < 300;
        let outcome = answer.outcome;
        let (_, after) = finish(effects, answer, context, started).await;
        after.run(effects).await;
        if ok
            && effects
                .mark_replayed(letter.id, outcome.as_str())
                .await
                .is_ok()
        {
            succeeded += 1;
        } else {
            failed += 1;
        }
    }
    let remaining = effects.count_pending_dead_letters().await.unwrap_or(-1);
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

/// Whether the key-value store answers and keeps state across requests: each
/// probe increments a counter that lives in the host, not in an instance.
pub async fn key_value_probe(kv: &mut impl KeyValue) -> Result<i64, crate::kv::KvError> {
    kv.increment("vapi-edge/healthz/probes", 1).await
}

#[cfg(test)]
pub(crate) mod tests;
