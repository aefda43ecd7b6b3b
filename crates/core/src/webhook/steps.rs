//! The steps of the flow before recording: what a message changes
//! ([`plan`]), its claim in the key-value store ([`claim`]), and the dead
//! letter a failed event leaves for a replay.

use super::context::Context;
use super::outcome::{Failure, Outcome};
use crate::claim::{self as claims, Claim, ClaimScope, Held};
use crate::db::DeadLetter;
use crate::effects::Effects;
use crate::event_key;
use crate::handling::{self, CallRecord, Plan, PlanError};
use crate::log::{self as terms, Level};
use crate::payload::ServerMessage;
use crate::settings::Settings;
use serde_json::json;

/// What the message changes ([`handling::plan`]), with the warnings about its
/// numbers logged. An unknown call type is kept as a dead letter, so that
/// once the type is known (a new version, or `call_type_aliases`) a replay
/// records the call's events.
pub(super) fn plan(
    effects: &mut impl Effects,
    message: &ServerMessage,
    body: &[u8],
    settings: &Settings,
    context: &mut Context,
) -> Result<Plan, Failure> {
    let plan = match handling::plan(message, settings) {
        Ok(plan) => plan,
        Err(PlanError::CallType(error)) => {
            if let Some(key) = event_key::for_message(message) {
                context.dead_letter = Some(DeadLetter {
                    event_key: key.in_tenant(&settings.tenant).to_string(),
                    message_type: Some(message.message_type.clone()),
                    call_id: message.call_id().map(str::to_string),
                    reason: Outcome::InvalidCallType.as_str().to_string(),
                    headers: json!({ "content-type": "application/json" }),
                    body: body.to_vec(),
                });
            }
            return Err(Failure::CallType(error.to_string()));
        }
    };
    if let Plan::Record(record) = &plan {
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
    }
    Ok(plan)
}

/// Where the event's claim stands.
pub(super) enum Claimed {
    /// This attempt holds it.
    Held(Held),
    /// The event was handled before.
    Done,
    /// The key-value store did not answer: the database alone guards it.
    Unguarded,
}

pub(super) async fn claim(
    effects: &mut impl Effects,
    record: &CallRecord,
    settings: &Settings,
    context: &mut Context,
) -> Result<Claimed, Failure> {
    let now = effects.now_ms();
    let scope = ClaimScope::new(
        &effects.database_address(),
        effects.variable("claim_scope").as_deref(),
    );
    match claims::claim(effects, &scope, &record.event_key, now, settings.lease_ms).await {
        Claim::Acquired(held) => Ok(Claimed::Held(held)),
        Claim::Done => {
            context.log(
                effects,
                Level::Info,
                terms::DUPLICATE_EVENT,
                &[("guard", "key_value".into())],
            );
            Ok(Claimed::Done)
        }
        Claim::InProgress => Err(Failure::InProgress),
        Claim::Unavailable(error) => {
            context.log(
                effects,
                Level::Warn,
                "Key-value store unavailable; the database guards this event",
                &[("error", error.0.into())],
            );
            Ok(Claimed::Unguarded)
        }
    }
}

/// The event kept for a replay: its raw body (no credentials) and why.
pub(super) fn dead_letter(record: &CallRecord, body: &[u8], outcome: Outcome) -> DeadLetter {
    DeadLetter {
        event_key: record.event_key.to_string(),
        message_type: Some(record.message_type.clone()),
        call_id: Some(record.call_id.clone()),
        reason: outcome.as_str().to_string(),
        headers: json!({ "content-type": "application/json" }),
        body: body.to_vec(),
    }
}
