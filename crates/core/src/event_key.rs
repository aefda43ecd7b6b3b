//! The idempotency key of a server message: what identifies the event, so a
//! re-delivery maps to the same key.
//!
//! Not a hash of the body: Vapi regenerates presigned URLs per delivery, so a
//! retry is not byte-identical (docs/vapi-facts.md §5). The fields used follow the
//! keys suggested there.

use crate::payload::{MessageKind, ServerMessage};
use sha2::{Digest, Sha256};
use std::fmt;

/// Keys longer than this are replaced by a digest, so they fit every key-value
/// store (Spin's allow 255 bytes) and stay cheap to index.
const MAX_READABLE_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey(String);

impl EventKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as written, for tests of what keys feed.
    #[cfg(test)]
    pub(crate) fn for_tests(key: &str) -> EventKey {
        EventKey(key.to_string())
    }

    fn from_parts(parts: &[&str]) -> EventKey {
        // `|` cannot be confused with the separator because parts are escaped.
        let joined = parts
            .iter()
            .map(|p| p.replace('%', "%25").replace('|', "%7C"))
            .collect::<Vec<_>>()
            .join("|");
        let key = format!("v1|{joined}");
        if key.len() <= MAX_READABLE_LEN {
            return EventKey(key);
        }
        let digest = Sha256::digest(key.as_bytes());
        EventKey(format!("v1|sha256|{}", hex::encode(digest)))
    }

    /// The key of this event for a tenant's server URL: the tenant's events
    /// never meet another's or the single-tenant route's, in the claims or
    /// in the durable record, even with the same call id. The tenant stays
    /// readable (a dead letter is replayed for its tenant: [`tenant_of`]);
    /// the rest becomes a digest when the whole would be too long.
    pub fn in_tenant(&self, tenant: &str) -> EventKey {
        if tenant.is_empty() {
            return self.clone();
        }
        let rest = self.0.strip_prefix("v1|").unwrap_or(&self.0);
        let key = format!("v1|t|{tenant}|{rest}");
        if key.len() <= MAX_READABLE_LEN {
            return EventKey(key);
        }
        let digest = Sha256::digest(key.as_bytes());
        EventKey(format!("v1|t|{tenant}|sha256|{}", hex::encode(digest)))
    }

    /// A short id for outbound notifications (`webhook-id`): stable per event.
    pub fn message_id(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("msg_{}", hex::encode(&digest[..12]))
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant an event key was made for ([`EventKey::in_tenant`]); '' for
/// the single-tenant route.
pub fn tenant_of(key: &str) -> &str {
    key.strip_prefix("v1|t|")
        .and_then(|rest| rest.split_once('|'))
        .map_or("", |(tenant, _)| tenant)
}

/// The key of call `call_id`'s end-of-call report (before [`EventKey::in_tenant`]).
pub fn report_key(call_id: &str) -> EventKey {
    EventKey::from_parts(&["end-of-call-report", call_id])
}

/// The key of a message about a call; `None` for messages without a call.
pub fn for_message(message: &ServerMessage) -> Option<EventKey> {
    let call_id = message.call_id()?;
    let timestamp = message
        .timestamp_ms
        .map(|ms| ms.to_string())
        .unwrap_or_default();
    Some(match &message.kind {
        MessageKind::StatusUpdate => {
            let status = message.status.as_deref().unwrap_or_default();
            if status == "forwarding" {
                // A call can be forwarded more than once, even to the same
                // destination, but Vapi's retry of one forwarding carries a new
                // delivery timestamp. What tells two forwardings apart is the
                // conversation: each carries the messages so far, and a second
                // forwarding comes after more of them. Without the messages,
                // the timestamp is all there is.
                let destination = message.destination.as_deref().unwrap_or_default();
                let point = match message.messages_count {
                    Some(count) => format!("after-{count}"),
                    None => timestamp,
                };
                EventKey::from_parts(&["status-update", call_id, status, destination, &point])
            } else {
                EventKey::from_parts(&["status-update", call_id, status])
            }
        }
        MessageKind::EndOfCallReport => report_key(call_id),
        MessageKind::AssistantRequest => EventKey::from_parts(&["assistant-request", call_id]),
        _ => reply_key(message),
    })
}

/// The key of a message whose reply Vapi uses, with or without a call: what
/// an upstream receives as `webhook-id`, to drop a repeat. A `tool-calls`
/// message is its tool calls (their ids are unique); any other, its type, call
/// and timestamp.
pub fn reply_key(message: &ServerMessage) -> EventKey {
    let call_id = message.call_id().unwrap_or_default();
    if message.kind == MessageKind::ToolCalls && !message.tool_calls.is_empty() {
        let mut parts = vec!["tool-calls", call_id];
        parts.extend(message.tool_calls.iter().map(|call| call.id.as_str()));
        return EventKey::from_parts(&parts);
    }
    let timestamp = message
        .timestamp_ms
        .map(|ms| ms.to_string())
        .unwrap_or_default();
    EventKey::from_parts(&[&message.message_type, call_id, &timestamp])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse;
    use serde_json::json;

    fn key(value: serde_json::Value) -> Option<EventKey> {
        for_message(&parse(value.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn the_same_event_redelivered_has_the_same_key() {
        let first = json!({"message": {"type": "status-update", "status": "in-progress",
            "timestamp": 1, "call": {"id": "call-1"},
            "artifact": {"recordingUrl": "https://x/presigned?sig=a"}}});
        let retry = json!({"message": {"type": "status-update", "status": "in-progress",
            "timestamp": 2, "call": {"id": "call-1"},
            "artifact": {"recordingUrl": "https://x/presigned?sig=b"}}});
        assert_eq!(key(first), key(retry));
    }

    #[test]
    fn different_events_have_different_keys() {
        let status = |s: &str, call: &str| {
            key(json!({"message": {"type": "status-update", "status": s, "call": {"id": call}}}))
        };
        assert_ne!(status("ringing", "call-1"), status("in-progress", "call-1"));
        assert_ne!(status("ringing", "call-1"), status("ringing", "call-2"));
        let report =
            key(json!({"message": {"type": "end-of-call-report", "call": {"id": "call-1"}}}));
        assert_ne!(report, status("ended", "call-1"));
        assert_eq!(report.unwrap().as_str(), "v1|end-of-call-report|call-1");
    }

    #[test]
    fn each_forwarding_is_its_own_event() {
        let forward = |number: &str, ts: i64| {
            key(
                json!({"message": {"type": "status-update", "status": "forwarding",
                "timestamp": ts, "destination": {"type": "number", "number": number},
                "call": {"id": "call-1"}}}),
            )
        };
        assert_ne!(forward("+14155550100", 1), forward("+14155550101", 1));
        // Without the conversation, the timestamp is all there is.
        assert_ne!(forward("+14155550100", 1), forward("+14155550100", 2));
    }

    #[test]
    fn a_retried_forwarding_is_one_event_and_a_second_forwarding_another() {
        let forward = |number: &str, ts: i64, messages: usize| {
            key(
                json!({"message": {"type": "status-update", "status": "forwarding",
                "timestamp": ts, "destination": {"type": "number", "number": number},
                "messages": vec![json!({"role": "bot"}); messages],
                "call": {"id": "call-1"}}}),
            )
        };
        // Vapi's retry: the same forwarding, a new delivery timestamp.
        assert_eq!(forward("+14155550100", 1, 6), forward("+14155550100", 9, 6));
        // A second forwarding to the same number, later in the conversation.
        assert_ne!(
            forward("+14155550100", 1, 6),
            forward("+14155550100", 50, 9)
        );
        assert_ne!(forward("+14155550100", 1, 6), forward("+14155550101", 1, 6));
    }

    #[test]
    fn reply_keys_name_the_tool_calls_or_the_moment() {
        let tools = parse(
            json!({"message": {"type": "tool-calls", "timestamp": 5, "call": {"id": "c"},
                "toolCallList": [{"id": "t1", "function": {"name": "a"}},
                                 {"id": "t2", "function": {"name": "b"}}]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(reply_key(&tools).as_str(), "v1|tool-calls|c|t1|t2");
        let predial = parse(
            json!({"message": {"type": "campaign.predial", "timestamp": 7}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(reply_key(&predial).as_str(), "v1|campaign.predial||7");
    }

    #[test]
    fn separators_in_ids_cannot_collide_and_long_keys_are_hashed() {
        let a = EventKey::from_parts(&["x|y", "z"]);
        let b = EventKey::from_parts(&["x", "y|z"]);
        assert_ne!(a, b);
        let long = EventKey::from_parts(&["status-update", &"c".repeat(500), "ended"]);
        assert!(long.as_str().starts_with("v1|sha256|"));
        assert!(long.as_str().len() <= MAX_READABLE_LEN);
        assert!(long.message_id().starts_with("msg_"));
    }

    #[test]
    fn messages_without_a_call_have_no_key() {
        assert_eq!(key(json!({"message": {"type": "chat.created"}})), None);
    }

    #[test]
    fn a_tenants_key_is_its_own_and_names_the_tenant_within_the_length() {
        let plain = EventKey::from_parts(&["end-of-call-report", "call-1"]);
        assert_eq!(plain.in_tenant(""), plain);
        let acme = plain.in_tenant("acme");
        assert_ne!(acme, plain);
        assert_ne!(acme, plain.in_tenant("globex"));
        assert_eq!(tenant_of(acme.as_str()), "acme");
        assert_eq!(tenant_of(plain.as_str()), "");
        let long_tenant = "t".repeat(63);
        let long = EventKey::from_parts(&["status-update", &"c".repeat(150), "ended"]);
        let keyed = long.in_tenant(&long_tenant);
        assert!(
            keyed.as_str().len() <= MAX_READABLE_LEN,
            "{}",
            keyed.as_str().len()
        );
        assert_eq!(tenant_of(keyed.as_str()), long_tenant);
        assert_ne!(keyed, long.in_tenant("other"));
    }
}
