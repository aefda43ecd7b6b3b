//! Recording a call event: its owner found and its rows written in one
//! statement (retried on the agent lookup's schedule), the warnings about
//! calls without an agent or an organisation, and the dashboard's
//! notification of what was recorded.

use super::context::Context;
use super::outcome::{Answer, Failure, Outcome};
use crate::db::{Owner, OwnerVia, Recorded};
use crate::effects::Effects;
use crate::handling::CallRecord;
use crate::log::{self as terms, Level};
use crate::payload::ServerMessage;
use crate::phone;
use crate::relay::Notification;
use crate::settings::Settings;
use crate::standard_webhooks::SigningKey;
use serde_json::json;

/// Finds the call's owner and records the event in one statement, again after
/// each of `delays` while no agent has the call's assistant id (the
/// checklist's agent lookup; replays wait for nobody).
pub(super) async fn record<E: Effects>(
    effects: &mut E,
    settings: &Settings,
    record: &CallRecord,
    delays: &[u64],
    context: &mut Context,
    message: &ServerMessage,
) -> Result<Answer, Failure> {
    let mut retries = delays.iter();
    loop {
        let recorded = effects
            .record_event(record, settings.rollout_percent)
            .await
            .map_err(|error| match error.unreachable {
                true => Failure::DatabaseUnavailable(error),
                false => Failure::RecordFailed {
                    error,
                    tracks_call: record.tracks_call(),
                },
            })?;
        match recorded {
            Recorded::New {
                owner,
                tracked,
                lead_id,
            } => {
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
                return Ok(answer);
            }
            Recorded::Duplicate { owner } => {
                context.note_owner(owner.as_ref());
                let guard = effects.database().name();
                context.log(
                    effects,
                    Level::Info,
                    terms::DUPLICATE_EVENT,
                    &[("guard", guard.into())],
                );
                return Ok(Answer::ok(Outcome::Duplicate));
            }
            Recorded::OutsideRollout { owner } => {
                context.note_owner(Some(&owner));
                context.log(
                    effects,
                    Level::Info,
                    "Organisation is outside the inbound rollout; not recorded",
                    &[("rollout_percent", settings.rollout_percent.into())],
                );
                return Ok(Answer::ok(Outcome::OutsideRollout));
            }
            Recorded::OtherTenant => {
                context.log(
                    effects,
                    Level::Warn,
                    "Call belongs to another tenant; not recorded",
                    &[],
                );
                return Ok(Answer::ok(Outcome::OtherTenant));
            }
            // Only a call that names an assistant is refused for want of an
            // owner (`CallRecord::keeps_unowned`): its agent may appear.
            Recorded::OwnerNotFound => match retries.next() {
                Some(delay) => effects.sleep_ms(*delay).await,
                None if record.is_reconciled() => {
                    // Not this deployment's call: see `CallRecord::keeps_unowned`.
                    context.set("reason", "nothing here owns the call");
                    return Ok(Answer::ok(Outcome::Ignored));
                }
                None => {
                    return Err(Failure::AgentNotFound {
                        assistant_id: record.assistant_id.clone(),
                        attempts: delays.len() + 1,
                    })
                }
            },
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
    let mut body = json!({
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
    if message.reconciled_at.is_some() {
        // Its webhooks never came: recorded from Vapi's API (`crate::reconcile`).
        body["source"] = "reconciliation".into();
    }
    Some(Notification {
        url,
        key,
        message_id: record.event_key.message_id(),
        body: body.to_string().into_bytes(),
    })
}
