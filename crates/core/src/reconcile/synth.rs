//! The end-of-call report Vapi would have sent, made from its `Call` object
//! (what `GET /call` lists): the same members the webhook carries, so the
//! same validation, owner resolution and upserts take it, and the same
//! event key (`event_key::report_key`) guards it.

use crate::log::rfc3339;
use crate::payload::RECONCILED_AT;
use serde_json::{json, Map, Value};

/// Members of `Call` that move to the message, as the report carries them.
const REPORT_MEMBERS: [&str; 8] = [
    "endedReason",
    "startedAt",
    "endedAt",
    "cost",
    "costs",
    "costBreakdown",
    "artifact",
    "analysis",
];

/// The report's body for `call` (Vapi's `Call`), its line's number when
/// looked up (`line_number`), made at `now_ms`.
pub fn report_body(call: &Value, line_number: Option<&str>, now_ms: i64) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("type".into(), "end-of-call-report".into());
    let at = ["endedAt", "updatedAt"]
        .iter()
        .find_map(|key| call[*key].as_str().and_then(crate::json::iso_to_ms))
        .unwrap_or(now_ms);
    message.insert("timestamp".into(), at.into());
    for key in REPORT_MEMBERS {
        if let Some(value) = call.get(key).filter(|v| !v.is_null()) {
            message.insert(key.into(), value.clone());
        }
    }
    if let Some(customer) = call.get("customer").filter(|v| v.is_object()) {
        message.insert("customer".into(), customer.clone());
    }
    // A saved line comes as its id alone; an inline (transient) one whole.
    let mut line = match call.get("phoneNumber") {
        Some(Value::Object(line)) => Value::Object(line.clone()),
        _ => json!({}),
    };
    if let Some(id) = call["phoneNumberId"].as_str() {
        line["id"] = id.into();
    }
    if let Some(number) = line_number {
        line["number"] = number.into();
    }
    if line.as_object().is_some_and(|line| !line.is_empty()) {
        message.insert("phoneNumber".into(), line);
    }
    if let Some(assistant) = call.get("assistant").filter(|v| v.is_object()) {
        message.insert("assistant".into(), assistant.clone());
    }
    // The call itself, without what the message now carries.
    let mut snapshot = call.clone();
    if let Some(object) = snapshot.as_object_mut() {
        for key in ["artifact", "analysis", "messages", "costs"] {
            object.remove(key);
        }
    }
    message.insert("call".into(), snapshot);
    message.insert(RECONCILED_AT.into(), rfc3339(now_ms).into());
    serde_json::to_vec(&json!({ "message": message })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handling::{plan, Plan};
    use crate::payload::parse;
    use crate::settings::Settings;

    /// Vapi's `Call` for the inbound call of example 08, as `GET /call` lists it.
    fn listed_call() -> Value {
        let report: Value = serde_json::from_slice(&crate::test_support::example(
            "08-inbound-end-of-call-report.json",
        ))
        .unwrap();
        let message = &report["message"];
        let mut call = message["call"].clone();
        call["status"] = "ended".into();
        for key in REPORT_MEMBERS {
            if !message[key].is_null() {
                call[key] = message[key].clone();
            }
        }
        call
    }

    fn record_of(body: &[u8]) -> crate::handling::CallRecord {
        let message = parse(body).unwrap();
        match plan(&message, &Settings::from_variables(|_| None).unwrap()).unwrap() {
            Plan::Record(record) => *record,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_report_made_from_a_call_records_what_the_webhook_does() {
        let webhook = record_of(&crate::test_support::example(
            "08-inbound-end-of-call-report.json",
        ));
        let made = record_of(&report_body(
            &listed_call(),
            Some("+14155550142"),
            1_800_000_000_000,
        ));
        assert_eq!(
            made.event_key, webhook.event_key,
            "the same idempotency key"
        );
        assert_eq!(made.direction, webhook.direction);
        assert_eq!(
            (&made.from_number, &made.to_number),
            (&webhook.from_number, &webhook.to_number)
        );
        assert_eq!(made.line_id, webhook.line_id);
        assert_eq!(made.line_e164, webhook.line_e164);
        assert_eq!(made.assistant_id, webhook.assistant_id);
        assert_eq!(made.vapi_org_id, webhook.vapi_org_id);
        assert_eq!(made.status, webhook.status);
        assert_eq!(made.ended_reason, webhook.ended_reason);
        assert_eq!(
            (made.started_at_ms, made.ended_at_ms),
            (webhook.started_at_ms, webhook.ended_at_ms)
        );
        assert_eq!(made.duration_seconds, webhook.duration_seconds);
        assert_eq!(made.cost, webhook.cost);
        assert_eq!(made.summary, webhook.summary);
        assert_eq!(made.transcript, webhook.transcript);
        assert_eq!(made.recording_url, webhook.recording_url);
        assert_eq!(made.success_evaluation, webhook.success_evaluation);
        assert_eq!(made.costs, webhook.costs);
        // Marked as reconciled, in the row's metadata.
        assert_eq!(made.metadata["source"], "reconciliation");
        assert_eq!(made.metadata["channel"], webhook.metadata["channel"]);
        assert!(webhook.metadata.get("source").is_none());
    }

    #[test]
    fn without_its_line_number_the_call_still_records_with_its_customer() {
        let made = record_of(&report_body(&listed_call(), None, 1_800_000_000_000));
        assert_eq!(made.from_number.as_deref(), Some("+12125550187"));
        assert_eq!(made.to_number, None);
        assert!(
            made.line_id.is_some(),
            "the owner can still be found by the line's id"
        );
    }
}
