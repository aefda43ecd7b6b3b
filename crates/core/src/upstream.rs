//! The messages whose reply Vapi uses (FACTS §1.3): each is answered in
//! Vapi's shape, by the upstream when one is configured for its type (the
//! verified body forwarded, signed, and the upstream's answer returned as it
//! is), and otherwise, or when the upstream fails, by a fallback that lets the
//! call go on sensibly.

use crate::event_key::EventKey;
use crate::http::Response;
use crate::outbound::{OutboundError, OutboundReply, OutboundRequest};
use crate::payload::{MessageKind, ServerMessage};
use crate::relay::signed_headers;
use crate::standard_webhooks::SigningKey;
use serde_json::{json, Value};

/// Vapi's wait for an `assistant-request`, end to end, fixed (FACTS §1.3).
pub const ASSISTANT_REQUEST_LIMIT_MS: u64 = 7_500;
/// `server.timeoutSeconds` when not set: every other message's wait.
pub const SERVER_TIMEOUT_MS: u64 = 20_000;
/// The longest `server.timeoutSeconds` (or a tool's) Vapi accepts.
pub const MAX_SERVER_TIMEOUT_MS: u64 = 300_000;
/// Kept back from Vapi's limit for the network between Vapi and here.
pub const NETWORK_MARGIN_MS: u64 = 500;
/// The least an upstream is given; below it the fallback answers at once.
const MIN_UPSTREAM_MS: u64 = 100;

/// The upstream's deadline for one message type, and whether the operator
/// set it for that type (`upstream_timeouts`), which says Vapi was told to
/// wait that long for it (the server's or the tool's `timeoutSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeTimeout {
    pub ms: u64,
    pub set_for_type: bool,
}

/// How long Vapi waits for the reply to `kind`: 7.5 s for an
/// `assistant-request` whatever is set; up to 300 s for a type whose deadline
/// the operator set; else Vapi's default 20 s.
pub fn vapi_wait_ms(kind: &MessageKind, timeout: TypeTimeout) -> u64 {
    match kind {
        MessageKind::AssistantRequest => ASSISTANT_REQUEST_LIMIT_MS,
        _ if timeout.set_for_type => MAX_SERVER_TIMEOUT_MS,
        _ => SERVER_TIMEOUT_MS,
    }
}

/// How long the upstream may take for `kind`, `elapsed_ms` into the request:
/// its timeout, within Vapi's own wait for the type less the network margin.
/// `None` when too little is left to try.
pub fn deadline_ms(kind: &MessageKind, timeout: TypeTimeout, elapsed_ms: u64) -> Option<u64> {
    let left = vapi_wait_ms(kind, timeout).saturating_sub(NETWORK_MARGIN_MS + elapsed_ms);
    let deadline = timeout.ms.min(left);
    (deadline >= MIN_UPSTREAM_MS).then_some(deadline)
}

/// What answers an `assistant-request` when neither a local agent nor the
/// upstream does (down, slow, wrong answer): a saved assistant, or a transfer
/// to a number. Set per line (`phone_numbers.fallback_assistant_id`,
/// `fallback_number`) or for every line (`assistant_request_fallback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    Assistant(String),
    Transfer(String),
}

impl Fallback {
    /// `assistant_request_fallback`: an E.164 number (`+` and 8 to 15
    /// digits) is a transfer; anything else is an assistant id. `None` for a
    /// value that is neither (empty, or a `+` that is not a number).
    pub fn parse(text: &str) -> Option<Fallback> {
        let text = text.trim();
        if text.starts_with('+') {
            return is_e164(text).then(|| Fallback::Transfer(text.to_string()));
        }
        let id_like = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        id_like.then(|| Fallback::Assistant(text.to_string()))
    }

    /// A line's columns: its assistant first, else its number.
    pub fn from_columns(assistant_id: Option<String>, number: Option<String>) -> Option<Fallback> {
        let present = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        present(assistant_id)
            .map(Fallback::Assistant)
            .or_else(|| present(number).map(Fallback::Transfer))
    }

    /// Vapi's `assistant-request` reply for it.
    pub fn response(&self) -> Response {
        match self {
            Fallback::Assistant(id) => Response::json(200, &json!({ "assistantId": id })),
            Fallback::Transfer(number) => Response::json(
                200,
                &json!({ "destination": { "type": "number", "number": number } }),
            ),
        }
    }

    /// For the log line: the assistant id, or `transfer` (no number).
    pub fn kind(&self) -> &'static str {
        match self {
            Fallback::Assistant(_) => "assistant",
            Fallback::Transfer(_) => "transfer",
        }
    }
}

fn is_e164(text: &str) -> bool {
    let digits = &text[1..];
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The forwarded request: the verified body as it came (never Vapi's own
/// credential headers), signed with `upstream_secret` (Standard Webhooks),
/// its `webhook-id` derived from the event key so the upstream can drop a
/// repeat.
pub fn forward(
    url: &str,
    signing_key: Option<&SigningKey>,
    key: &EventKey,
    body: &[u8],
    now_ms: i64,
    timeout_ms: u64,
) -> OutboundRequest {
    OutboundRequest {
        get: false,
        url: url.to_string(),
        headers: signed_headers(signing_key, &key.message_id(), now_ms, body),
        body: body.to_vec(),
        timeout_ms,
    }
}

/// Why an upstream's answer was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No answer in time, refused, unreachable.
    Unanswered(OutboundError),
    /// It answered with a status that is not 2xx.
    Status(u16),
    /// A 2xx whose body is not the JSON object Vapi needs (or, for
    /// `voice-request`, no audio at all).
    InvalidBody(&'static str),
    /// Too little of Vapi's wait was left to ask.
    NoTime,
}

impl UpstreamFailure {
    /// A short word for logs and the `reason` field.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamFailure::Unanswered(OutboundError::Timeout(_)) => "timeout",
            UpstreamFailure::Unanswered(_) => "unreachable",
            UpstreamFailure::Status(_) => "status",
            UpstreamFailure::InvalidBody(_) => "invalid_body",
            UpstreamFailure::NoTime => "no_time",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            UpstreamFailure::Unanswered(error) => error.to_string(),
            UpstreamFailure::Status(status) => format!("answered {status}"),
            UpstreamFailure::InvalidBody(why) => (*why).to_string(),
            UpstreamFailure::NoTime => "too little of Vapi's wait was left".to_string(),
        }
    }
}

/// The upstream's answer as Vapi gets it: the same body, JSON (or, for a
/// `voice-request`, the audio with its content type).
pub fn relay_reply(
    kind: &MessageKind,
    reply: Result<OutboundReply, OutboundError>,
) -> Result<Response, UpstreamFailure> {
    let reply = reply.map_err(UpstreamFailure::Unanswered)?;
    if !(200..300).contains(&reply.status) {
        return Err(UpstreamFailure::Status(reply.status));
    }
    if *kind == MessageKind::VoiceRequest {
        if reply.body.is_empty() {
            return Err(UpstreamFailure::InvalidBody("no audio"));
        }
        return Ok(Response::text(200, "application/octet-stream", reply.body));
    }
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Object(_)) => Ok(Response::text(200, "application/json", reply.body)),
        Ok(_) => Err(UpstreamFailure::InvalidBody("not a JSON object")),
        Err(_) => Err(UpstreamFailure::InvalidBody("not JSON")),
    }
}

/// Spoken when an `assistant-request` finds no agent for the line.
pub const NO_AGENT_MESSAGE: &str =
    "Sorry, this line cannot take calls right now. Please try again later.";

/// The answer when nobody else gives one, in Vapi's shape for the type, so
/// the call goes on: every tool call gets an error result (the model can say
/// so), a transfer or handoff is declined, the knowledge base is empty,
/// endpointing keeps a default, a campaign contact is dialled or not as
/// `campaign_predial_eligible` says, and a `voice-request` gets no audio.
pub fn fallback(message: &ServerMessage, predial_eligible: bool) -> Response {
    let error = |text: &str| Response::json(200, &json!({ "error": text }));
    match message.kind {
        MessageKind::ToolCalls => {
            let results: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "toolCallId": call.id,
                        "name": call.name,
                        "error": "This tool is not available right now.",
                    })
                })
                .collect();
            Response::json(200, &json!({ "results": results }))
        }
        MessageKind::FunctionCall => Response::json(
            200,
            &json!({ "result": "This function is not available right now." }),
        ),
        MessageKind::TransferDestinationRequest => {
            error("No transfer destination is available right now.")
        }
        // The schema requires a destination: the assistant speaking now,
        // with the `error` that tells Vapi not to hand off.
        MessageKind::HandoffDestinationRequest => {
            let mut destination = json!({ "type": "assistant" });
            match (&message.assistant_id, &message.assistant_name) {
                (Some(id), _) => destination["assistantId"] = id.as_str().into(),
                (None, Some(name)) => destination["assistantName"] = name.as_str().into(),
                (None, None) => {}
            }
            Response::json(
                200,
                &json!({
                    "destination": destination,
                    "error": "No handoff destination is available right now.",
                }),
            )
        }
        MessageKind::KnowledgeBaseRequest => Response::json(200, &json!({ "documents": [] })),
        MessageKind::EndpointingRequest => {
            Response::json(200, &json!({ "timeoutSeconds": DEFAULT_ENDPOINTING_S }))
        }
        MessageKind::CampaignPredial => {
            Response::json(200, &json!({ "eligible": predial_eligible }))
        }
        MessageKind::VoiceRequest => Response::text(200, "application/octet-stream", Vec::new()),
        MessageKind::AssistantRequest => error(NO_AGENT_MESSAGE),
        MessageKind::StatusUpdate | MessageKind::EndOfCallReport | MessageKind::Other(_) => {
            Response::json(200, &json!({ "ok": true }))
        }
    }
}

/// Seconds of silence that end the user's turn when no endpointing server
/// answers: Vapi's own default wait after the user stops (its
/// `smartEndpointingPlan` off), a middle ground between cutting callers off
/// and long pauses.
pub const DEFAULT_ENDPOINTING_S: f64 = 1.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse;

    fn message(value: Value) -> ServerMessage {
        parse(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn every_tool_call_gets_a_result_with_its_id() {
        let tools = message(
            json!({"message": {"type": "tool-calls", "call": {"id": "c"},
            "toolCallList": [
                {"id": "t1", "type": "function", "function": {"name": "book", "arguments": {}}},
                {"id": "t2", "type": "function", "function": {"name": "cancel"}},
                {"id": "t3", "type": "function", "function": {"name": "lookup"}}]}}),
        );
        let body = fallback(&tools, true).body_json().unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        for (result, (id, name)) in
            results
                .iter()
                .zip([("t1", "book"), ("t2", "cancel"), ("t3", "lookup")])
        {
            assert_eq!(result["toolCallId"], id);
            assert_eq!(result["name"], name);
            assert!(result["error"].is_string());
            assert!(result.get("result").is_none());
        }
    }

    #[test]
    fn each_reply_type_has_vapis_shape() {
        let of = |kind: &str| {
            fallback(&message(json!({"message": {"type": kind}})), true)
                .body_json()
                .unwrap()
        };
        assert!(of("transfer-destination-request")["error"].is_string());
        let handoff = of("handoff-destination-request");
        assert!(handoff["error"].is_string());
        assert_eq!(handoff["destination"], json!({ "type": "assistant" }));
        let handoff = fallback(
            &message(json!({"message": {"type": "handoff-destination-request",
                "assistant": {"id": "asst-7", "name": "Front desk"}}})),
            true,
        )
        .body_json()
        .unwrap();
        assert_eq!(
            handoff["destination"],
            json!({ "type": "assistant", "assistantId": "asst-7" })
        );
        let handoff = fallback(
            &message(json!({"message": {"type": "handoff-destination-request",
                "assistant": {"name": "Front desk"}}})),
            true,
        )
        .body_json()
        .unwrap();
        assert_eq!(handoff["destination"]["assistantName"], "Front desk");
        assert_eq!(of("knowledge-base-request"), json!({ "documents": [] }));
        assert_eq!(of("call.endpointing.request")["timeoutSeconds"], 1.0);
        assert_eq!(of("campaign.predial"), json!({ "eligible": true }));
        let no = fallback(
            &message(json!({"message": {"type": "campaign.predial"}})),
            false,
        );
        assert_eq!(no.body_json().unwrap(), json!({ "eligible": false }));
        let voice = fallback(
            &message(json!({"message": {"type": "voice-request"}})),
            true,
        );
        assert_eq!(voice.content_type, "application/octet-stream");
    }

    #[test]
    fn an_upstreams_answer_is_used_only_when_it_is_vapis_kind() {
        let reply = |status: u16, body: &[u8]| {
            Ok(OutboundReply {
                retry_after: None,
                status,
                content_type: Some("application/json".into()),
                body: body.to_vec(),
            })
        };
        let kind = MessageKind::ToolCalls;
        let ok = relay_reply(&kind, reply(200, br#"{"results":[]}"#)).unwrap();
        assert_eq!(ok.body, br#"{"results":[]}"#, "verbatim");
        assert_eq!(
            relay_reply(&kind, reply(502, b"{}")),
            Err(UpstreamFailure::Status(502))
        );
        assert_eq!(
            relay_reply(&kind, reply(200, b"<html>")),
            Err(UpstreamFailure::InvalidBody("not JSON"))
        );
        assert_eq!(
            relay_reply(&kind, reply(200, b"[1]")),
            Err(UpstreamFailure::InvalidBody("not a JSON object"))
        );
        let timeout = relay_reply(&kind, Err(OutboundError::Timeout(5)));
        assert_eq!(timeout.unwrap_err().reason(), "timeout");
        let audio = relay_reply(&MessageKind::VoiceRequest, reply(200, &[1, 2, 3])).unwrap();
        assert_eq!(audio.content_type, "application/octet-stream");
    }

    #[test]
    fn the_deadline_stays_inside_vapis_wait() {
        let default = |ms| TypeTimeout {
            ms,
            set_for_type: false,
        };
        let set = |ms| TypeTimeout {
            ms,
            set_for_type: true,
        };
        let request = MessageKind::AssistantRequest;
        assert_eq!(deadline_ms(&request, default(6_000), 0), Some(6_000));
        assert_eq!(deadline_ms(&request, default(10_000), 0), Some(7_000));
        assert_eq!(deadline_ms(&request, default(10_000), 2_000), Some(5_000));
        assert_eq!(deadline_ms(&request, default(10_000), 7_000), None);
        // Set for the type, assistant-request's 7.5 s still holds.
        assert_eq!(deadline_ms(&request, set(60_000), 0), Some(7_000));
        let tools = MessageKind::ToolCalls;
        assert_eq!(deadline_ms(&tools, default(30_000), 0), Some(19_500));
        assert_eq!(deadline_ms(&tools, set(40_000), 0), Some(40_000));
        assert_eq!(deadline_ms(&tools, set(300_000), 0), Some(299_500));
        assert_eq!(deadline_ms(&tools, set(300_000), 1_000), Some(298_500));
    }

    #[test]
    fn a_fallback_is_an_assistant_or_a_transfer_in_vapis_shape() {
        assert_eq!(
            Fallback::parse("a7d3f2e1-9c4b-4a6d-8e5f-2b1c0d9e8f7a"),
            Some(Fallback::Assistant(
                "a7d3f2e1-9c4b-4a6d-8e5f-2b1c0d9e8f7a".into()
            ))
        );
        assert_eq!(
            Fallback::parse(" +14155550100 "),
            Some(Fallback::Transfer("+14155550100".into()))
        );
        for bad in ["", "+1415", "+1415555x100", "two words", "+"] {
            assert_eq!(Fallback::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Fallback::Assistant("a1".into())
                .response()
                .body_json()
                .unwrap(),
            json!({ "assistantId": "a1" })
        );
        assert_eq!(
            Fallback::Transfer("+14155550100".into())
                .response()
                .body_json()
                .unwrap(),
            json!({ "destination": { "type": "number", "number": "+14155550100" } })
        );
        assert_eq!(
            Fallback::from_columns(Some("a1".into()), Some("+14155550100".into())),
            Some(Fallback::Assistant("a1".into()))
        );
        assert_eq!(
            Fallback::from_columns(Some(" ".into()), Some("+14155550100".into())),
            Some(Fallback::Transfer("+14155550100".into()))
        );
        assert_eq!(Fallback::from_columns(None, None), None);
    }
}
