//! How a webhook request ends, decided in one place: the outcome's word (the
//! summary line's `outcome`, `webhook_events.outcome`, the metrics' label),
//! and for every way a request can fail, [`Failure::answer`]: its status, its
//! public message, its log line and level, and the failure counter it feeds.
//! The flow only says which failure happened.

use super::context::Context;
use crate::db::DbError;
use crate::effects::Effects;
use crate::http::Response;
use crate::log::{self as terms, Level};
use crate::payload::PayloadError;
use crate::relay::Notification;
use crate::verify::VerifyError;
use serde_json::json;

/// How a request ended.
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
    /// An event about a call whose rows are another tenant's: claimed,
    /// nothing else written, nothing notified.
    OtherTenant,
    /// `/webhooks/vapi/{tenant}` for a tenant that is not there.
    UnknownTenant,
    /// `/webhooks/vapi/{tenant}` for a disabled tenant.
    TenantDisabled,
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
            Outcome::OtherTenant => "other_tenant",
            Outcome::UnknownTenant => "unknown_tenant",
            Outcome::TenantDisabled => "tenant_disabled",
        }
    }

    /// The database holds the event: its claim is done, not given back.
    pub(super) fn is_held_by_database(self) -> bool {
        matches!(
            self,
            Outcome::Recorded | Outcome::Duplicate | Outcome::Unassigned | Outcome::OtherTenant
        )
    }
}

/// Which failure a request met, for the metrics' failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorClass {
    AgentLookup,
    CallTracking,
    CallLogs,
    Database,
    Upstream,
}

impl ErrorClass {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ErrorClass::AgentLookup => "agent_lookup",
            ErrorClass::CallTracking => "call_tracking",
            ErrorClass::CallLogs => "call_logs",
            ErrorClass::Database => "database",
            ErrorClass::Upstream => "upstream",
        }
    }
}

/// A request answered: the response, its outcome, and the notification to
/// send once the response is out.
pub(crate) struct Answer {
    pub(crate) response: Response,
    pub(crate) outcome: Outcome,
    pub(super) notification: Option<Notification>,
}

impl Answer {
    /// 200 `{"ok": true, "outcome": ...}`.
    pub(super) fn ok(outcome: Outcome) -> Self {
        Answer {
            response: Response::json(200, &json!({ "ok": true, "outcome": outcome.as_str() })),
            outcome,
            notification: None,
        }
    }

    /// A reply in the shape its message type asks for.
    pub(super) fn with(outcome: Outcome, response: Response) -> Self {
        Answer {
            response,
            outcome,
            notification: None,
        }
    }
}

/// Every way a webhook request fails.
#[derive(Debug)]
pub(super) enum Failure {
    /// The deployment's settings refuse every webhook (a variable named).
    Misconfigured(String),
    Unverified(VerifyError),
    NotJson,
    InvalidPayload(PayloadError),
    /// `call.type` missing or unknown (the message is kept as a dead letter).
    CallType(String),
    /// Another attempt holds the event's claim.
    InProgress,
    /// The database could not be reached.
    DatabaseUnavailable(DbError),
    /// The recording statement failed (an inbound call's, or another's).
    RecordFailed {
        error: DbError,
        tracks_call: bool,
    },
    /// No agent has the call's assistant id after every attempt.
    AgentNotFound {
        assistant_id: Option<String>,
        attempts: usize,
    },
    /// A tenant's URL for a tenant that is not there.
    UnknownTenant,
    /// A tenant's URL for a disabled tenant.
    TenantDisabled,
}

impl Failure {
    /// Whether a retry by Vapi could succeed without anyone changing
    /// anything but time (the database, an agent being saved), so the message
    /// is kept as a dead letter for a replay too.
    pub(super) fn keeps_dead_letter(&self) -> bool {
        matches!(
            self,
            Failure::DatabaseUnavailable(_)
                | Failure::RecordFailed { .. }
                | Failure::AgentNotFound { .. }
        )
    }

    /// The outcome this failure ends its request with.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Failure::Misconfigured(_) => Outcome::Misconfigured,
            Failure::Unverified(_) => Outcome::Unauthorized,
            Failure::NotJson => Outcome::UnsupportedMediaType,
            Failure::InvalidPayload(_) => Outcome::InvalidPayload,
            Failure::CallType(_) => Outcome::InvalidCallType,
            Failure::InProgress => Outcome::InProgress,
            Failure::DatabaseUnavailable(_) => Outcome::DatabaseUnavailable,
            Failure::RecordFailed { .. } => Outcome::DatabaseError,
            Failure::AgentNotFound { .. } => Outcome::AgentNotFound,
            Failure::UnknownTenant => Outcome::UnknownTenant,
            Failure::TenantDisabled => Outcome::TenantDisabled,
        }
    }

    /// The table: each failure's answer, log line and counter.
    pub(super) fn answer(self, effects: &mut impl Effects, context: &mut Context) -> Answer {
        let outcome = self.outcome();
        let response = match self {
            // Nobody but an operator can fix it: CRITICAL, and 503 lets
            // Vapi's retry succeed once fixed.
            Failure::Misconfigured(problem) => {
                context.log(
                    effects,
                    Level::Critical,
                    "Webhook misconfigured",
                    &[("error", problem.into())],
                );
                Response::error(503, "the webhook is not configured")
            }
            Failure::Unverified(error) => {
                let reason = error.public_reason();
                context.log(
                    effects,
                    Level::Warn,
                    "Webhook verification failed",
                    &[("error", reason.clone().into())],
                );
                Response::error(401, &reason)
            }
            Failure::NotJson => Response::unsupported_media_type(),
            Failure::InvalidPayload(error) => {
                context.set("error", error.to_string());
                Response::bad_request(&error.field, &error.problem)
            }
            Failure::CallType(error) => {
                context.log(
                    effects,
                    Level::Error,
                    terms::CANNOT_DETERMINE_CALL_TYPE,
                    &[("error", error.clone().into())],
                );
                Response::bad_request(
                    "message.call.type",
                    &format!("cannot determine call type: {error}"),
                )
            }
            Failure::InProgress => {
                context.log(
                    effects,
                    Level::Warn,
                    "Event is being handled by another attempt",
                    &[],
                );
                Response::error(503, "this event is being handled; retry later")
                    .with_header("retry-after", "1")
            }
            // 503, so Vapi's retry (or its fallback destination, for an
            // assistant-request) takes over.
            Failure::DatabaseUnavailable(error) => {
                context.error_class = Some(ErrorClass::Database);
                context.log(
                    effects,
                    Level::Error,
                    "Database unavailable",
                    &[("error", error.detail.into())],
                );
                Response::error(503, "database unavailable; retry later")
            }
            // A failure a retry could get past (SQLSTATE 08, 40, 53, 57) is 503.
            Failure::RecordFailed { error, tracks_call } => {
                let (msg, class) = if tracks_call {
                    (terms::CALL_TRACKING_FAILED, ErrorClass::CallTracking)
                } else {
                    (terms::CALL_LOGS_FAILED, ErrorClass::CallLogs)
                };
                context.error_class = Some(class);
                let status = if error.transient { 503 } else { 500 };
                context.log(
                    effects,
                    Level::Error,
                    msg,
                    &[("error", error.detail.into())],
                );
                Response::error(status, "the event could not be recorded; retry later")
            }
            Failure::AgentNotFound {
                assistant_id,
                attempts,
            } => {
                context.error_class = Some(ErrorClass::AgentLookup);
                context.log(
                    effects,
                    Level::Error,
                    terms::AGENT_LOOKUP_FAILED,
                    &[
                        ("assistant_id", assistant_id.into()),
                        ("attempts", attempts.into()),
                    ],
                );
                Response::error(500, "no agent has this assistant id yet; retry later")
            }
            // Anyone can send these: the summary line is all they get.
            Failure::UnknownTenant => Response::error(404, "no such tenant"),
            Failure::TenantDisabled => Response::error(403, "this tenant is disabled"),
        };
        Answer::with(outcome, response)
    }
}
