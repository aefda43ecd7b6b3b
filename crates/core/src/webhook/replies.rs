//! The messages whose reply Vapi uses: an `assistant-request` answered from
//! the line (its agent, the upstream, its fallback), and every other type by
//! the upstream when one takes it, else by a fallback in Vapi's shape
//! (`crate::upstream`). Nothing here writes call rows.

use super::context::Context;
use super::outcome::{Answer, ErrorClass, Failure, Outcome};
use crate::effects::Effects;
use crate::event_key;
use crate::http::Response;
use crate::log::{self as terms, Level};
use crate::payload::ServerMessage;
use crate::phone;
use crate::settings::Settings;
use crate::upstream::{self, Fallback, UpstreamFailure};
use serde_json::json;

/// `assistant-request`: Vapi asks which assistant answers an inbound call on a
/// line without a fixed one, and waits at most 7.5 s. Read-only: the call's
/// rows come with its status updates. The line's agent answers; else the
/// upstream, when one takes this type; else (or when the upstream fails) the
/// line's fallback assistant or transfer, then the deployment's
/// (`assistant_request_fallback`); with none, Vapi's `error` shape (spoken,
/// then the call ends). A database failure is a 5xx so Vapi falls back to the
/// number's `fallbackDestination`.
pub(super) async fn answer_assistant_request<E: Effects>(
    effects: &mut E,
    message: &ServerMessage,
    body: &[u8],
    settings: &Settings,
    context: &mut Context,
) -> Result<Answer, Failure> {
    context.set("direction", "inbound");
    let line_e164 = message
        .phone_number
        .as_deref()
        .map(|raw| phone::normalize(raw, &settings.country).value().to_string());
    let line = effects
        .line_answer(&settings.tenant, message.line_id(), line_e164.as_deref())
        .await
        .map_err(Failure::DatabaseUnavailable)?;
    if let Some((agent, assistant_id)) = &line.agent {
        context.note_agent(agent);
        return Ok(Answer::with(
            Outcome::Answered,
            Response::json(200, &json!({ "assistantId": assistant_id })),
        ));
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
        return Ok(match (answer.outcome, fallback) {
            (Outcome::UpstreamFailed, Some(fallback)) => {
                answer_with_fallback(effects, context, &fallback)
            }
            _ => answer,
        });
    }
    if let Some(fallback) = fallback {
        return Ok(answer_with_fallback(effects, context, &fallback));
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
    Ok(Answer::with(
        Outcome::NoAgent,
        upstream::fallback(message, settings.predial_eligible),
    ))
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
pub(super) async fn answer_reply<E: Effects>(
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
            upstream::relay_reply(&message.kind, effects.send(&post).await)
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
