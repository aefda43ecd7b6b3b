//! `POST /webhooks/vapi`, decided once: verify → validate → plan → claim →
//! record → respond, with the event record and the dashboard notification
//! handed back to run after the response. Every effect goes through
//! [`Effects`], so each branch is unit-tested natively, and the component and
//! the native baseline run this same flow.
//!
//! This file is the flow: each step returns `Result<_, Failure>`, and how
//! every failure is answered, logged and counted is `outcome.rs`. The rest:
//! `steps.rs` (planning and claiming), `context.rs` (log fields, the summary
//! line, dead letters, what follows the response), `replies.rs` (messages
//! whose reply Vapi uses), `recording.rs` (owners, rows, notifications).

mod context;
mod outcome;
mod recording;
mod replies;
mod steps;

pub use context::After;
pub(crate) use context::{finish, Context};
pub(crate) use outcome::Answer;
pub use outcome::Outcome;

use crate::effects::Effects;
use crate::handling::Plan;
use crate::http::{Request, Response};
use crate::log::Level;
use crate::payload::{self, MessageKind};
use crate::settings::Settings;
use crate::tenant::{self, oauth};
use crate::verify::VerifyConfig;
use outcome::Failure;
use steps::Claimed;

/// Live deliveries wait for a slow agent; replays of dead letters and
/// reconciliation's messages do not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Live,
    Replay,
    Reconcile,
}

/// Answers one `POST /webhooks/vapi`; the [`After`] runs once the response is out.
pub async fn handle<E: Effects>(effects: &mut E, request: &Request) -> (Response, After) {
    let mut context = Context::started_now();
    context.set_tenant(effects);
    let answer = match process(effects, request, &mut context).await {
        Ok(answer) => answer,
        Err(failure) => failure.answer(effects, &mut context),
    };
    finish(effects, answer, context).await
}

/// Refuses a `POST /webhooks/vapi` from its head alone, before its body is
/// read, when the head proves it cannot be authentic (no credential header, a
/// stale or malformed timestamp, a wrong shared secret) or the deployment
/// refuses every webhook (503): answered as [`handle`] would answer, with the
/// same log lines. `None`: read the body and [`handle`] it. A stranger's
/// half-sent body then costs no memory and no wait, under any host.
pub async fn precheck<E: Effects>(effects: &mut E, request: &Request) -> Option<(Response, After)> {
    let mut context = Context::started_now();
    context.set_tenant(effects);
    let failure = match verifier(effects) {
        Ok(config) => Failure::Unverified(
            config
                .verify_head(&request.headers, effects.now_ms())
                .err()?,
        ),
        Err(failure) => failure,
    };
    context.set("checked", "head");
    let answer = failure.answer(effects, &mut context);
    Some(finish(effects, answer, context).await)
}

/// Answers one `POST /webhooks/vapi/{tenant}`: the flow of [`handle`] in the
/// tenant's scope (its variables: [`Effects::variable`]), or its refusal when
/// the tenant cannot take it (unknown: 404; disabled: 403; unreadable: 503).
pub async fn handle_tenant<E: Effects>(
    effects: &mut E,
    request: &Request,
    id: &str,
) -> (Response, After) {
    if let Err(refusal) = enter_tenant(effects, id).await {
        return refuse_tenant(effects, id, refusal).await;
    }
    handle(effects, request).await
}

/// [`precheck`] for a tenant's URL. The scope it enters stays for the body's
/// turn ([`handle_tenant`]), so the tenant is looked up once per request.
pub async fn precheck_tenant<E: Effects>(
    effects: &mut E,
    request: &Request,
    id: &str,
) -> Option<(Response, After)> {
    match enter_tenant(effects, id).await {
        Ok(()) => precheck(effects, request).await,
        Err(refusal) => Some(refuse_tenant(effects, id, refusal).await),
    }
}

/// Puts the request in tenant `id`'s scope, unless it is there already. An
/// empty id (`/webhooks/vapi/`) is no tenant, not the single-tenant route.
async fn enter_tenant<E: Effects>(effects: &mut E, id: &str) -> Result<(), tenant::Refusal> {
    if id.is_empty() || effects.tenant() != id {
        let tenant = tenant::resolve(effects, id).await?;
        effects.set_tenant_scope(Some(tenant));
    }
    Ok(())
}

async fn refuse_tenant<E: Effects>(
    effects: &mut E,
    id: &str,
    refusal: tenant::Refusal,
) -> (Response, After) {
    let mut context = Context::started_now();
    // Only an id that can be a tenant is logged (it is the caller's text).
    if tenant::valid_id(id) {
        context.set("tenant", id.to_string());
    }
    let failure = match refusal {
        tenant::Refusal::Unknown => Failure::UnknownTenant,
        tenant::Refusal::Disabled => Failure::TenantDisabled,
        tenant::Refusal::Unavailable(error) => Failure::DatabaseUnavailable(error),
        tenant::Refusal::Misconfigured(problem) => Failure::Misconfigured(problem),
    };
    let answer = failure.answer(effects, &mut context);
    finish(effects, answer, context).await
}

/// The refusal of a webhook that no secret is set for (fail closed).
const NOT_CONFIGURED: &str =
    "neither vapi_hmac_secret nor vapi_server_secret is set: every request is refused";

/// Why this deployment's settings make every webhook answer 503, naming the
/// variable (never quoting a secret); `None` when they do not. `/healthz`
/// reports it, so a readiness probe keeps traffic off a broken deployment.
///
/// A deployment that serves tenants (`tenant_secrets_key` set) may leave the
/// single-tenant route without a secret: that route then refuses every
/// webhook (fail closed) and the deployment is still ready; its tenants'
/// variables must be valid.
pub fn configuration_problem(effects: &impl Effects) -> Option<String> {
    if let Err(problem) = tenant::check_deployment(|name| effects.variable(name)) {
        return Some(problem);
    }
    match verifier(effects).and_then(|_| settings(effects)) {
        Err(Failure::Misconfigured(problem))
            if problem == NOT_CONFIGURED && serves_tenants(effects) =>
        {
            None
        }
        Err(Failure::Misconfigured(problem)) => Some(problem),
        _ => None,
    }
}

/// Whether `/webhooks/vapi` takes webhooks (a secret is set for it).
pub fn single_tenant_route_open(effects: &impl Effects) -> bool {
    verifier(effects).is_ok()
}

/// Whether this deployment serves tenants: its sealing key is set.
fn serves_tenants(effects: &impl Effects) -> bool {
    effects.variable(tenant::seal::KEYS_VARIABLE).is_some()
}

/// The verification settings, when they let a webhook through: the
/// variables' credential and, for a tenant, its OAuth2 credential.
fn verifier(effects: &impl Effects) -> Result<VerifyConfig, Failure> {
    let mut config = VerifyConfig::from_variables(|name| effects.variable(name))
        .map_err(|error| Failure::Misconfigured(error.to_string()))?;
    config.oauth = oauth_tokens(effects)?;
    match config.is_configured() {
        true => Ok(config),
        false => Err(Failure::Misconfigured(NOT_CONFIGURED.to_string())),
    }
}

/// A tenant's OAuth2 credential and the keys of its tokens; `None` on the
/// single-tenant route and for a tenant without one.
fn oauth_tokens(effects: &impl Effects) -> Result<Option<oauth::Tokens>, Failure> {
    if effects.tenant().is_empty() {
        return Ok(None);
    }
    let Some(client) = oauth::Client::from_variables(effects.tenant(), |n| effects.variable(n))
    else {
        return Ok(None);
    };
    let keys = effects
        .variable(tenant::seal::KEYS_VARIABLE)
        .and_then(|value| oauth::TokenKeys::from_variable(&value))
        .ok_or_else(|| {
            Failure::Misconfigured(
                "tenant_secrets_key is not set: a tenant's OAuth2 tokens are signed with it".into(),
            )
        })?;
    Ok(Some(oauth::Tokens { client, keys }))
}

/// Answers `POST /webhooks/vapi/{tenant}/token`: the tenant's OAuth2 token
/// endpoint (see [`oauth`]), the URL given to Vapi's OAuth2 credential.
pub async fn handle_token<E: Effects>(effects: &mut E, request: &Request, id: &str) -> Response {
    if let Err(refusal) = enter_tenant(effects, id).await {
        return refuse_tenant(effects, id, refusal).await.0;
    }
    let tokens = oauth_tokens(effects);
    let response = match &tokens {
        Ok(tokens) => oauth::token_response(
            tokens.as_ref().map(|t| &t.client),
            tokens.as_ref().map(|t| &t.keys),
            request,
            effects.now_ms(),
        ),
        Err(_) => Response::error(503, "the webhook is not configured"),
    };
    let (level, msg) = match response.status {
        200 => (Level::Info, "OAuth2 token issued"),
        400..=499 => (Level::Warn, "OAuth2 token refused"),
        _ => (Level::Critical, "OAuth2 token endpoint misconfigured"),
    };
    let mut line = crate::log::LogLine::new(level, msg)
        .field("tenant", id)
        .field("status", response.status);
    if let Some(error) = response
        .body_json()
        .and_then(|b| b["error"].as_str().map(String::from))
    {
        line = line.field("error", error);
    }
    effects.emit(&line);
    response
}

fn settings(effects: &impl Effects) -> Result<Settings, Failure> {
    let mut settings = Settings::from_variables(|name| effects.variable(name))
        .map_err(|problem| Failure::Misconfigured(problem.to_string()))?;
    settings.tenant = effects.tenant().to_string();
    Ok(settings)
}

async fn process<E: Effects>(
    effects: &mut E,
    request: &Request,
    context: &mut Context,
) -> Result<Answer, Failure> {
    // 1. Verify, over the raw bytes, before anything else.
    verifier(effects)?
        .verify_request(
            &request.method,
            &request.headers,
            &request.body,
            effects.now_ms(),
        )
        .map_err(Failure::Unverified)?;
    context.verified = true;
    if !is_json(request) {
        return Err(Failure::NotJson);
    }
    after_verification(effects, &request.body, context, Mode::Live).await
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
pub(crate) async fn process_verified<E: Effects>(
    effects: &mut E,
    body: &[u8],
    context: &mut Context,
    mode: Mode,
) -> Answer {
    match after_verification(effects, body, context, mode).await {
        Ok(answer) => answer,
        Err(failure) => failure.answer(effects, context),
    }
}

async fn after_verification<E: Effects>(
    effects: &mut E,
    body: &[u8],
    context: &mut Context,
    mode: Mode,
) -> Result<Answer, Failure> {
    // 2. Validate.
    let message = payload::parse(body).map_err(Failure::InvalidPayload)?;
    context.set("event_type", message.message_type.as_str());
    if let Some(call_id) = message.call_id() {
        context.set("call_id", call_id);
    }
    let settings = settings(effects)?;
    if message.kind == MessageKind::AssistantRequest {
        return replies::answer_assistant_request(effects, &message, body, &settings, context)
            .await;
    }
    if message.kind.expects_reply() {
        return Ok(replies::answer_reply(effects, &message, body, &settings, context).await);
    }

    // 3. Decide, with the call type explicit.
    let record = match steps::plan(effects, &message, body, &settings, context)? {
        Plan::Record(record) => record,
        Plan::Acknowledge { reason } => {
            context.set("reason", reason);
            return Ok(Answer::ok(Outcome::Ignored));
        }
    };

    // 4. Claim before any side effect.
    let held = match steps::claim(effects, &record, &settings, context).await? {
        Claimed::Done => return Ok(Answer::ok(Outcome::Duplicate)),
        Claimed::Held(held) => Some(held),
        Claimed::Unguarded => None,
    };

    // 5-7. Find the owner and record, in one statement per attempt.
    let delays: &[u64] = match mode {
        Mode::Live => &settings.retry_delays,
        Mode::Replay | Mode::Reconcile => &[],
    };
    let recorded = recording::record(effects, &settings, &record, delays, context, &message).await;
    if let Some(held) = held {
        // Only an event the database holds is done; anything else (a failure,
        // an organisation outside the rollout) gives the claim back.
        let done = matches!(&recorded, Ok(answer) if answer.outcome.is_held_by_database());
        let result = match done {
            true => held.complete(effects).await,
            false => held.release(effects).await,
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
    if let Err(failure) = &recorded {
        if failure.keeps_dead_letter() {
            context.dead_letter = Some(steps::dead_letter(&record, body, failure.outcome()));
        }
    }
    recorded
}

#[cfg(test)]
mod tests;
