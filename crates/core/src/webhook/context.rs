//! What a webhook request is about, repeated on each of its log lines; its
//! summary line, dead letter and event record once it is answered
//! ([`finish`]); and the work that follows the response ([`After`]).

use super::outcome::{Answer, ErrorClass};
use crate::db::{Agent, DeadLetter, EventRow, Owner, OwnerVia};
use crate::effects::Effects;
use crate::http::Response;
use crate::log::{Level, LogLine};
use crate::parked;
use crate::relay::Notification;
use serde_json::Value;
use std::time::Instant;

/// What the request was about, repeated on each of its log lines, and what
/// the event record and a dead letter keep of it.
#[derive(Default)]
pub(crate) struct Context {
    fields: Vec<(&'static str, Value)>,
    /// Set once the request is verified: only those are recorded.
    pub(super) verified: bool,
    pub(super) error_class: Option<ErrorClass>,
    pub(super) dead_letter: Option<DeadLetter>,
    /// When the request arrived: the upstream's deadline counts from here.
    pub(super) started: Option<Instant>,
    /// A message reconciliation made (`crate::reconcile`): no delivery
    /// came, so none is recorded, and its summary line says so.
    reconciling: bool,
}

impl Context {
    /// A request that arrived now.
    pub(super) fn started_now() -> Context {
        Context {
            started: Some(Instant::now()),
            ..Context::default()
        }
    }

    /// A dead letter re-driven now: it was verified when it arrived.
    pub(crate) fn replay_of(letter_id: i64) -> Context {
        let mut context = Context {
            verified: true,
            ..Context::started_now()
        };
        context.set("replay_of", letter_id);
        context
    }

    /// A message reconciliation made now for call `call_id`, whose webhooks
    /// never came (so no delivery is recorded for it).
    pub(crate) fn reconciliation_of(call_id: &str) -> Context {
        let mut context = Context {
            reconciling: true,
            ..Context::started_now()
        };
        context.set("source", "reconciliation");
        context.set("call_id", call_id.to_string());
        context
    }

    pub(super) fn text(&self, key: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    }

    /// Names the request's tenant in every line, when it came in on one.
    pub(crate) fn set_tenant(&mut self, effects: &impl Effects) {
        if !effects.tenant().is_empty() {
            self.set("tenant", effects.tenant().to_string());
        }
    }

    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.fields.retain(|(k, _)| *k != key);
        self.fields.push((key, value.into()));
    }

    pub(super) fn line(&self, level: Level, msg: &str, extra: &[(&str, Value)]) -> LogLine {
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

    pub(super) fn log(
        &self,
        effects: &mut impl Effects,
        level: Level,
        msg: &str,
        extra: &[(&str, Value)],
    ) {
        effects.emit(&self.line(level, msg, extra));
    }

    pub(super) fn note_agent(&mut self, agent: &Agent) {
        self.set("org_id", agent.org_id.as_str());
        self.set("agent_id", agent.id.as_str());
        self.set("agent", agent.name.as_str());
    }

    /// The call's owner, or that it has none (`owner_via` `none`).
    pub(super) fn note_owner(&mut self, owner: Option<&Owner>) {
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

    pub(super) fn elapsed_ms(&self) -> u64 {
        self.started
            .map_or(0, |started| started.elapsed().as_millis() as u64)
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
            let answer = effects.send(&notification.post(now)).await;
            let failure_line = match answer {
                Ok(reply) if (200..300).contains(&reply.status) => return,
                Ok(reply) => failure_line.field("relay_status", reply.status),
                Err(error) => failure_line.field("error", error.to_string()),
            };
            effects.emit(&failure_line);
        }
    }
}

/// Logs the summary line, keeps the dead letter, and prepares the event record.
pub(crate) async fn finish<E: Effects>(
    effects: &mut E,
    answer: Answer,
    mut context: Context,
) -> (Response, After) {
    if let Some(letter) = context.dead_letter.take() {
        keep_dead_letter(effects, &context, letter).await;
    }
    let duration_ms = context.started.map_or(0.0, |started| {
        (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
    });
    let status = answer.response.status;
    let (level, msg) = match (status, context.reconciling) {
        (200..=299, false) => (Level::Info, "Webhook handled"),
        (400..=499, false) => (Level::Warn, "Webhook refused"),
        (_, false) => (Level::Error, "Webhook failed"),
        (200..=299, true) => (Level::Info, "Call reconciled"),
        (_, true) => (Level::Error, "Call not reconciled"),
    };
    context.log(
        effects,
        level,
        msg,
        &[
            ("outcome", answer.outcome.as_str().into()),
            ("status", status.into()),
            ("duration_ms", duration_ms.into()),
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
        duration_ms,
        error_class: context.error_class.map(|c| c.as_str().to_string()),
        tenant: context.text("tenant").unwrap_or_default(),
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
