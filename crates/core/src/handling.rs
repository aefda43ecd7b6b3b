//! The handling decision: what a validated server message should change in the
//! call records, worked out before any I/O so every rule is tested natively.

use crate::call::{self, CallDirection, CallTypeError};
use crate::event_key::{self, EventKey};
use crate::payload::{iso_to_ms, MessageKind, ServerMessage};
use crate::phone::{self, Normalized};
use crate::settings::Settings;
use serde_json::{json, Value};

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Acknowledge with 2xx and change nothing (a type this version does not act on).
    Acknowledge { reason: &'static str },
    /// Record the event against the call.
    Record(Box<CallRecord>),
}

/// Why a message about a call cannot be handled.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// Logged as "Cannot determine call type"; answered 400.
    CallType(CallTypeError),
}

/// A number that could not be made E.164; logged masked, stored best-effort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberWarning {
    pub field: &'static str,
    pub masked: String,
    pub reason: &'static str,
}

/// Everything the single database statement needs for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The event's key, in its tenant's space ([`EventKey::in_tenant`]).
    pub event_key: EventKey,
    /// The tenant whose server URL the event came in on ('' for the
    /// single-tenant route): the owner is found among its mappings only.
    pub tenant: String,
    pub message_type: String,
    pub call_id: String,
    /// Who owns the call, in the order the database tries them (the first
    /// that resolves decides; see `db::OwnerVia`): the agent with this
    /// assistant id; the agent mapped to the squad, then to the workflow;
    /// the organisation that owns the line; the organisation mapped to
    /// Vapi's organisation id; the deployment's default organisation.
    pub assistant_id: Option<String>,
    pub squad_id: Option<String>,
    pub workflow_id: Option<String>,
    /// The line: its Vapi phone-number id, and its number when E.164.
    pub line_id: Option<String>,
    pub line_e164: Option<String>,
    /// `call.orgId`: Vapi's organisation id, not this product's `org_id`.
    pub vapi_org_id: Option<String>,
    /// `default_org_id`, when set.
    pub default_org_id: Option<String>,
    pub direction: CallDirection,
    /// Who called whom: for inbound the customer called the organisation's
    /// line; for outbound the reverse; web calls have no numbers.
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// The customer's number when it is valid E.164: the key to their lead.
    pub customer_e164: Option<String>,
    pub status: Option<String>,
    pub status_rank: Option<i16>,
    pub ended_reason: Option<String>,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub cost: Option<f64>,
    pub summary: Option<String>,
    pub transcript: Option<String>,
    pub recording_url: Option<String>,
    pub structured_data: Option<Value>,
    pub success_evaluation: Option<String>,
    pub costs: Option<Value>,
    /// `call_logs.metadata`: at least `channel` and `is_test_call`; `source`
    /// `reconciliation` and `reconciled_at` for a message reconciliation made.
    pub metadata: Value,
    pub number_warnings: Vec<NumberWarning>,
}

impl CallRecord {
    /// The end-of-call report is authoritative for the call's times and reason.
    pub fn is_final_report(&self) -> bool {
        self.message_type == "end-of-call-report"
    }

    /// Only inbound phone calls get a `call_tracking` row.
    pub fn tracks_call(&self) -> bool {
        self.direction == CallDirection::Inbound
    }

    /// Whether a call that no handle resolves is recorded without an owner
    /// (unassigned, for an operator to attribute) instead of refused. Only
    /// an assistant id can be waited for: the agent may be saved any moment
    /// (the checklist's agent lookup), so a call that names one is refused
    /// and retried; nothing else a call carries is mapped that way.
    /// Reconciliation keeps none: a call of the Vapi organisation that
    /// nothing here maps may be another application's (its assistants' server
    /// URL elsewhere), and its webhooks were never meant to come.
    pub fn keeps_unowned(&self) -> bool {
        self.assistant_id.is_none() && !self.is_reconciled()
    }

    /// Made by reconciliation from Vapi's API (`crate::reconcile`), not
    /// delivered.
    pub fn is_reconciled(&self) -> bool {
        self.metadata["source"] == "reconciliation"
    }
}

/// Decides what `message` changes. Every call is recorded, whoever ran it:
/// an assistant, a squad, a workflow, or nobody (a failed `assistant-request`).
pub fn plan(message: &ServerMessage, settings: &Settings) -> Result<Plan, PlanError> {
    let default_country = &settings.country;
    let (Some(call), Some(event_key)) = (&message.call, event_key::for_message(message)) else {
        return Ok(Plan::Acknowledge {
            reason: "message is not about a call",
        });
    };
    let (status, ended_reason) = match &message.kind {
        MessageKind::StatusUpdate => (message.status.clone(), message.ended_reason.clone()),
        // A report is only sent once the call is over, whatever arrived before it.
        MessageKind::EndOfCallReport => (Some("ended".to_string()), message.ended_reason.clone()),
        _ => {
            return Ok(Plan::Acknowledge {
                reason: "message type is not recorded by this version",
            })
        }
    };
    let direction = call::detect(call, &settings.call_type_aliases).map_err(PlanError::CallType)?;

    let mut number_warnings = Vec::new();
    let mut normalize = |field: &'static str, raw: Option<&str>| -> Option<Normalized> {
        let normalized = phone::normalize(raw?, default_country);
        if let Normalized::Fallback { reason, .. } = &normalized {
            number_warnings.push(NumberWarning {
                field,
                masked: phone::mask(raw.unwrap_or_default()),
                reason,
            });
        }
        Some(normalized)
    };
    // A SIP caller without a number is known by its SIP URI (not E.164, so
    // neither normalised nor a lead's key).
    let sip_uri = message
        .customer_number
        .is_none()
        .then(|| message.customer_sip_uri.clone())
        .flatten();
    let (from_number, to_number, customer, line) = match direction {
        CallDirection::Inbound => {
            let customer = normalize("customer.number", message.customer_number.as_deref());
            let line = normalize("phoneNumber.number", message.phone_number.as_deref());
            (customer.clone(), line.clone(), customer, line)
        }
        CallDirection::Outbound => {
            let line = normalize("phoneNumber.number", message.phone_number.as_deref());
            let customer = normalize("customer.number", message.customer_number.as_deref());
            (line.clone(), customer.clone(), customer, line)
        }
        CallDirection::Web => (None, None, None, None),
    };
    let value = |n: &Option<Normalized>| n.as_ref().map(|n| n.value().to_string());
    let (from_number, to_number) = match direction {
        CallDirection::Inbound => (value(&from_number).or(sip_uri), value(&to_number)),
        CallDirection::Outbound => (value(&from_number), value(&to_number).or(sip_uri)),
        CallDirection::Web => (None, None),
    };

    let status_rank = status.as_deref().and_then(call::status_rank);
    let report = &message.report;
    let started_at_ms = report
        .started_at
        .as_deref()
        .and_then(iso_to_ms)
        .or_else(|| (status.as_deref() == Some("in-progress")).then_some(message.timestamp_ms)?);
    let ended_at_ms = report
        .ended_at
        .as_deref()
        .and_then(iso_to_ms)
        .or_else(|| (status.as_deref() == Some("ended")).then_some(message.timestamp_ms)?);
    let mut metadata = json!({
        "channel": direction.channel(),
        "direction": direction.as_str(),
        "is_test_call": is_test_call(direction, call.marked_test),
    });
    if let Some(at) = &message.reconciled_at {
        // Merged into the row's metadata: the call says how it was completed.
        metadata["source"] = "reconciliation".into();
        metadata["reconciled_at"] = at.as_str().into();
    }

    Ok(Plan::Record(Box::new(CallRecord {
        event_key: event_key.in_tenant(&settings.tenant),
        tenant: settings.tenant.clone(),
        message_type: message.message_type.clone(),
        call_id: call.id.clone(),
        vapi_org_id: call.vapi_org_id.clone(),
        default_org_id: settings.default_org_id.clone(),
        assistant_id: message.assistant_id().map(str::to_string),
        squad_id: call.squad_id.clone(),
        workflow_id: call.workflow_id.clone(),
        line_id: message.line_id().map(str::to_string),
        line_e164: line
            .filter(Normalized::is_e164)
            .map(|n| n.value().to_string()),
        direction,
        from_number,
        to_number,
        customer_e164: customer
            .filter(Normalized::is_e164)
            .map(|n| n.value().to_string()),
        status,
        status_rank,
        ended_reason,
        started_at_ms,
        ended_at_ms,
        duration_seconds: report.duration_seconds,
        cost: report.cost,
        summary: report.summary.clone(),
        transcript: report.transcript.clone(),
        recording_url: report.recording_url.clone(),
        structured_data: report.structured_data.clone(),
        success_evaluation: report.success_evaluation.clone(),
        costs: report.costs.clone(),
        metadata,
        number_warnings,
    })))
}

/// Web calls are how the Vapi dashboard's "Talk" button and SDK demos reach an
/// assistant, so they count as tests; an API caller can also mark any call
/// with `call.metadata.isTestCall`.
fn is_test_call(direction: CallDirection, marked: bool) -> bool {
    marked || direction == CallDirection::Web
}

/// The default agent lookup schedule: 5 retries, 3.85 s in all.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse;

    fn us() -> Settings {
        Settings::from_variables(|_| None).unwrap()
    }

    fn fixture(name: &str) -> ServerMessage {
        parse(&crate::test_support::example(name)).unwrap()
    }

    fn record(message: &ServerMessage) -> CallRecord {
        match plan(message, &us()).unwrap() {
            Plan::Record(record) => *record,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn inbound_call_start() {
        let r = record(&fixture("03-inbound-status-update-in-progress.json"));
        assert_eq!(r.direction, CallDirection::Inbound);
        assert!(r.tracks_call());
        assert_eq!(r.from_number.as_deref(), Some("+12125550187"));
        assert_eq!(r.to_number.as_deref(), Some("+14155550142"));
        assert_eq!(r.customer_e164.as_deref(), Some("+12125550187"));
        assert_eq!(r.status.as_deref(), Some("in-progress"));
        assert_eq!(r.status_rank, Some(4));
        assert_eq!(r.started_at_ms, Some(1_787_241_846_992));
        assert_eq!(r.metadata["channel"], "phone");
        assert_eq!(r.metadata["is_test_call"], false);
        assert_eq!(
            r.assistant_id.as_deref(),
            Some("a7d3f2e1-9c4b-4a6d-8e5f-2b1c0d9e8f7a")
        );
        assert_eq!(r.line_e164.as_deref(), Some("+14155550142"));
        assert!(r.number_warnings.is_empty());
    }

    #[test]
    fn outbound_swaps_the_numbers_and_web_has_none() {
        let out = record(&fixture("09-outbound-status-update-ringing.json"));
        assert_eq!(out.direction, CallDirection::Outbound);
        assert!(!out.tracks_call());
        assert_eq!(out.from_number.as_deref(), Some("+14155550142"));
        assert_eq!(out.to_number.as_deref(), Some("+16175550123"));
        assert_eq!(out.customer_e164.as_deref(), Some("+16175550123"));

        let web = record(&fixture("11-webcall-status-update-in-progress.json"));
        assert_eq!(web.direction, CallDirection::Web);
        assert_eq!(web.from_number, None);
        assert_eq!(web.metadata["channel"], "web");
        assert_eq!(web.metadata["is_test_call"], true);
    }

    #[test]
    fn a_bad_number_is_a_warning_and_a_best_effort_value() {
        let mut message = fixture("03-inbound-status-update-in-progress.json");
        message.customer_number = Some("555-01".into());
        let r = record(&message);
        assert_eq!(r.number_warnings.len(), 1);
        assert_eq!(r.number_warnings[0].field, "customer.number");
        assert!(!r.number_warnings[0].masked.contains("55501"));
        assert_eq!(r.from_number.as_deref(), Some("55501"));
        assert_eq!(r.customer_e164, None, "no lead match on a non-E.164 number");
    }

    #[test]
    fn a_report_ends_the_call_and_carries_its_details() {
        let r = record(&fixture("08-inbound-end-of-call-report.json"));
        assert_eq!(r.status.as_deref(), Some("ended"));
        assert_eq!(r.status_rank, Some(6));
        assert_eq!(r.ended_reason.as_deref(), Some("customer-ended-call"));
        assert!(r.ended_at_ms.is_some() && r.started_at_ms.is_some());
        assert!(r.summary.is_some() && r.recording_url.is_some());
    }

    #[test]
    fn unhandled_types_are_acknowledged() {
        for name in [
            "04-inbound-transcript-final.json",
            "06-inbound-hang.json",
            "14-undocumented-type-assistant-started.json",
        ] {
            assert!(
                matches!(plan(&fixture(name), &us()), Ok(Plan::Acknowledge { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn refusals() {
        let mut message = fixture("03-inbound-status-update-in-progress.json");
        if let Some(call) = message.call.as_mut() {
            call.call_type = Some("pstnMystery".into());
        }
        assert!(matches!(
            plan(&message, &us()),
            Err(PlanError::CallType(CallTypeError::Unknown(_)))
        ));
    }

    #[test]
    fn a_call_without_an_assistant_is_recorded_by_its_line() {
        let failed = record(&fixture(
            "12-inbound-status-update-ended-assistant-request-failed.json",
        ));
        assert_eq!(failed.assistant_id, None);
        assert!(failed.line_id.is_some() || failed.line_e164.is_some());
        assert!(failed
            .ended_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("assistant-request")));
    }
}
