//! Vapi server messages as typed Rust (the role Zod plays in the TypeScript origin):
//! the envelope, the message type and the call, read leniently but checked.
//!
//! Vapi adds fields and message types without notice (docs/vapi-facts.md §7, §8), so
//! unknown keys are ignored and open enums stay strings; what the product relies
//! on is required, and every rejection names the field path that failed.

pub use crate::json::iso_to_ms;
use crate::json::{self, FieldError, Json, Node, Shape, LEAF};

/// Why a body is not a usable server message; `field` is a JSON path such as
/// `message.call.id`, or `body` for the document itself.
pub type PayloadError = FieldError;

/// The message types this version acts on: the two that are recorded, and
/// every type whose reply Vapi uses (FACTS §1.3). Everything else is
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    StatusUpdate,
    EndOfCallReport,
    AssistantRequest,
    ToolCalls,
    TransferDestinationRequest,
    HandoffDestinationRequest,
    KnowledgeBaseRequest,
    /// `call.endpointing.request`: custom endpointing.
    EndpointingRequest,
    /// Custom TTS: the reply is raw PCM, not JSON.
    VoiceRequest,
    /// `campaign.predial`: whether to dial a campaign contact.
    CampaignPredial,
    /// The legacy `function-call` (before `tool-calls`).
    FunctionCall,
    /// Any other type, known to Vapi or not (kept as sent).
    Other(String),
}

impl MessageKind {
    pub fn from_type(kind: &str) -> Self {
        match kind {
            "status-update" => MessageKind::StatusUpdate,
            "end-of-call-report" => MessageKind::EndOfCallReport,
            "assistant-request" => MessageKind::AssistantRequest,
            "tool-calls" => MessageKind::ToolCalls,
            "transfer-destination-request" => MessageKind::TransferDestinationRequest,
            "handoff-destination-request" => MessageKind::HandoffDestinationRequest,
            "knowledge-base-request" => MessageKind::KnowledgeBaseRequest,
            "call.endpointing.request" => MessageKind::EndpointingRequest,
            "voice-request" => MessageKind::VoiceRequest,
            "campaign.predial" => MessageKind::CampaignPredial,
            "function-call" => MessageKind::FunctionCall,
            other => MessageKind::Other(other.to_string()),
        }
    }

    /// Whether the message is about one call and needs `message.call`.
    pub fn needs_call(&self) -> bool {
        matches!(
            self,
            MessageKind::StatusUpdate
                | MessageKind::EndOfCallReport
                | MessageKind::AssistantRequest
        )
    }

    /// Whether Vapi uses the reply's body (FACTS §1.3).
    pub fn expects_reply(&self) -> bool {
        !matches!(
            self,
            MessageKind::StatusUpdate | MessageKind::EndOfCallReport | MessageKind::Other(_)
        )
    }
}

/// One entry of a `tool-calls` message's `toolCallList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
}

/// The parts of `message.call` the product uses. `call` is a snapshot taken when
/// the call was created (FACTS §2.2): its status is not the call's status now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    pub id: String,
    /// Vapi's organisation id, not this product's `org_id`.
    pub vapi_org_id: Option<String>,
    /// `inboundPhoneCall`, `outboundPhoneCall`, `webCall`, `vapi.websocketCall`, ...
    pub call_type: Option<String>,
    pub assistant_id: Option<String>,
    /// The squad or workflow that ran the call instead of one assistant.
    pub squad_id: Option<String>,
    pub workflow_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub customer_number: Option<String>,
    /// `call.customer.sipUri`: a SIP caller without a number.
    pub customer_sip_uri: Option<String>,
    pub phone_call_provider: Option<String>,
    /// `call.transport.provider`, e.g. `twilio` or `daily`.
    pub transport_provider: Option<String>,
    pub web_call_url: Option<String>,
    /// `call.metadata.isTestCall` when the caller of the API marked the call.
    pub marked_test: bool,
}

/// What an end-of-call report adds to the call's log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub cost: Option<f64>,
    pub summary: Option<String>,
    pub transcript: Option<String>,
    /// The current fields first (`artifact.recording.mono.combinedUrl`, then
    /// `.stereoUrl`), the deprecated ones as fallback.
    pub recording_url: Option<String>,
    /// `analysis.structuredData`, as sent.
    pub structured_data: Option<serde_json::Value>,
    /// `analysis.successEvaluation`, as text (Vapi sends a string, a number or
    /// a boolean, depending on the rubric).
    pub success_evaluation: Option<String>,
    /// `{"breakdown": call.costBreakdown, "items": message.costs}`, with what
    /// was sent.
    pub costs: Option<serde_json::Value>,
}

/// One server message, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerMessage {
    /// `message.type` as sent.
    pub message_type: String,
    pub kind: MessageKind,
    /// `message.timestamp` in Unix milliseconds (sent as a number, or in 2024 as
    /// an ISO-8601 string).
    pub timestamp_ms: Option<i64>,
    /// `message.status` (status-update); an open set.
    pub status: Option<String>,
    pub ended_reason: Option<String>,
    /// The transfer target of a `forwarding` status-update.
    pub destination: Option<String>,
    pub call: Option<Call>,
    /// `message.customer.number` (falls back to `call.customer.number`).
    pub customer_number: Option<String>,
    /// `message.phoneNumber.number`: the organisation's line.
    pub phone_number: Option<String>,
    /// `message.phoneNumber.assistantId`.
    pub phone_number_assistant_id: Option<String>,
    /// `message.phoneNumber.id` (the same as `call.phoneNumberId`).
    pub phone_number_id: Option<String>,
    /// `message.customer.sipUri` (falls back to `call.customer.sipUri`).
    pub customer_sip_uri: Option<String>,
    /// How many messages the conversation had (`message.messages`, else
    /// `artifact.messages`): tells two forwardings of one call apart.
    pub messages_count: Option<usize>,
    /// `toolCallList` of a `tool-calls` message (`function-call`: one entry
    /// named from `functionCall.name`).
    pub tool_calls: Vec<ToolCall>,
    /// `message.assistant.id`: in a squad, the member speaking now.
    pub assistant_id: Option<String>,
    /// `message.assistant.name` (a transient assistant has no id).
    pub assistant_name: Option<String>,
    pub report: Report,
    /// vapi-edge's own member [`RECONCILED_AT`]: the message was made by
    /// reconciliation from Vapi's API (`crate::reconcile`), at this time.
    pub reconciled_at: Option<String>,
}

/// The member (of `message`) that marks a message vapi-edge made from Vapi's
/// `GET /call` when its webhooks never came: RFC 3339 time of reconciliation.
/// Vapi sends no such member; a webhook is verified before it is read, so only
/// Vapi or vapi-edge can set it.
pub const RECONCILED_AT: &str = "vapiEdgeReconciledAt";

impl ServerMessage {
    /// The assistant that handled the call: the call's own, then the message's,
    /// then the phone number's fixed assistant.
    pub fn assistant_id(&self) -> Option<&str> {
        self.call
            .as_ref()
            .and_then(|c| c.assistant_id.as_deref())
            .or(self.assistant_id.as_deref())
            .or(self.phone_number_assistant_id.as_deref())
    }

    pub fn call_id(&self) -> Option<&str> {
        self.call.as_ref().map(|c| c.id.as_str())
    }

    /// The Vapi phone-number id of the line: the message's, else the call's.
    pub fn line_id(&self) -> Option<&str> {
        self.phone_number_id.as_deref().or_else(|| {
            self.call
                .as_ref()
                .and_then(|c| c.phone_number_id.as_deref())
        })
    }
}

/// Every member of a server message that a rule below reads; the rest of the
/// body is checked (it must be valid JSON) and dropped. A rule that reads a
/// member missing here fails the unit tests (`Node::optional`).
static ROOT: Shape = Shape {
    members: &[("message", &MESSAGE)],
};
static MESSAGE: Shape = Shape {
    members: &[
        ("type", &LEAF),
        ("call", &CALL),
        ("status", &LEAF),
        ("customer", &NUMBER),
        ("phoneNumber", &PHONE_NUMBER),
        ("assistant", &ASSISTANT),
        ("destination", &DESTINATION),
        ("timestamp", &LEAF),
        ("endedReason", &LEAF),
        ("startedAt", &LEAF),
        ("endedAt", &LEAF),
        ("durationSeconds", &LEAF),
        ("cost", &LEAF),
        ("summary", &LEAF),
        ("transcript", &LEAF),
        ("recordingUrl", &LEAF),
        ("artifact", &ARTIFACT),
        ("analysis", &ANALYSIS),
        ("messages", &LEAF),
        (RECONCILED_AT, &LEAF),
    ],
};
static CALL: Shape = Shape {
    members: &[
        ("id", &LEAF),
        ("orgId", &LEAF),
        ("type", &LEAF),
        ("assistantId", &LEAF),
        ("squadId", &LEAF),
        ("workflowId", &LEAF),
        ("phoneNumberId", &LEAF),
        ("phoneCallProvider", &LEAF),
        ("webCallUrl", &LEAF),
        ("customer", &NUMBER),
        ("transport", &TRANSPORT),
        ("metadata", &METADATA),
    ],
};
static NUMBER: Shape = Shape {
    members: &[("number", &LEAF), ("sipUri", &LEAF)],
};
static PHONE_NUMBER: Shape = Shape {
    members: &[("id", &LEAF), ("number", &LEAF), ("assistantId", &LEAF)],
};
static ASSISTANT: Shape = Shape {
    members: &[("id", &LEAF), ("name", &LEAF)],
};
static DESTINATION: Shape = Shape {
    members: &[("number", &LEAF), ("sipUri", &LEAF)],
};
static TRANSPORT: Shape = Shape {
    members: &[("provider", &LEAF)],
};
static METADATA: Shape = Shape {
    members: &[("isTestCall", &LEAF)],
};
static ARTIFACT: Shape = Shape {
    members: &[
        ("transcript", &LEAF),
        ("recording", &RECORDING),
        ("recordingUrl", &LEAF),
        ("stereoRecordingUrl", &LEAF),
        ("messages", &LEAF),
    ],
};
static RECORDING: Shape = Shape {
    members: &[("stereoUrl", &LEAF), ("mono", &MONO)],
};
static MONO: Shape = Shape {
    members: &[("combinedUrl", &LEAF)],
};
static ANALYSIS: Shape = Shape {
    members: &[("summary", &LEAF)],
};

/// Parses and validates a request body.
pub fn parse(body: &[u8]) -> Result<ServerMessage, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error("body", "is empty; expected a JSON object"));
    }
    let document = json::read(body, &ROOT).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => {
                format!(
                    "is not complete JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            }
            _ => format!(
                "is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        };
        error("body", &problem)
    })?;
    let mut message = parse_document(&document)?;
    if needs_whole_read(&message.kind) {
        // Once per call, or once per tool call: what the shaped read does not
        // keep (objects and lists kept whole) comes from a second, full read.
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| error("body", "is not valid JSON"))?;
        read_whole_parts(&mut message, &value["message"])?;
    }
    Ok(message)
}

/// Types with parts the shaped read does not keep (see [`read_whole_parts`]).
fn needs_whole_read(kind: &MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::EndOfCallReport | MessageKind::ToolCalls | MessageKind::FunctionCall
    )
}

/// The parts of a message kept whole: a report's analysis and costs, the
/// tool calls of a `tool-calls` or `function-call` message.
fn read_whole_parts(
    message: &mut ServerMessage,
    value: &serde_json::Value,
) -> Result<(), PayloadError> {
    use serde_json::Value;
    let present = |v: &Value| (!v.is_null()).then(|| v.clone());
    match message.kind {
        MessageKind::EndOfCallReport => {
            let analysis = &value["analysis"];
            message.report.structured_data = present(&analysis["structuredData"]);
            message.report.success_evaluation = match &analysis["successEvaluation"] {
                Value::Null => None,
                Value::String(text) if text.trim().is_empty() => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            };
            let breakdown = present(&value["costBreakdown"])
                .or_else(|| present(&value["call"]["costBreakdown"]));
            let items = present(&value["costs"]);
            if breakdown.is_some() || items.is_some() {
                let mut costs = serde_json::Map::new();
                if let Some(breakdown) = breakdown {
                    costs.insert("breakdown".into(), breakdown);
                }
                if let Some(items) = items {
                    costs.insert("items".into(), items);
                }
                message.report.costs = Some(Value::Object(costs));
            }
        }
        MessageKind::ToolCalls => {
            message.tool_calls = read_tool_calls(value)?;
        }
        MessageKind::FunctionCall => {
            let Some(name) = value["functionCall"]["name"].as_str() else {
                return Err(error("message.functionCall.name", "is required"));
            };
            message.tool_calls = vec![ToolCall {
                id: String::new(),
                name: name.to_string(),
            }];
        }
        _ => {}
    }
    Ok(())
}

/// `toolCallList`, or in its absence the `toolCall` of each
/// `toolWithToolCallList` entry. An entry comes in the schema's shape
/// (`{id, function: {name, arguments}}`) or the flat one of Vapi's docs
/// example (`{id, name, arguments}`). Every entry needs an id and a name: the
/// reply names both (`ToolCallResult.name` is required).
fn read_tool_calls(value: &serde_json::Value) -> Result<Vec<ToolCall>, PayloadError> {
    let (list, field, nested) = match (
        value["toolCallList"].as_array(),
        value["toolWithToolCallList"].as_array(),
    ) {
        (Some(list), _) => (list, "message.toolCallList", false),
        (None, Some(list)) => (list, "message.toolWithToolCallList", true),
        (None, None) => return Err(error("message.toolCallList", "is required")),
    };
    fn text(value: &serde_json::Value) -> Option<&str> {
        value.as_str().filter(|s| !s.trim().is_empty())
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let call = if nested { &entry["toolCall"] } else { entry };
            let at = if nested { "].toolCall" } else { "]" };
            let Some(id) = text(&call["id"]) else {
                return Err(error(&format!("{field}[{i}{at}.id"), "is required"));
            };
            let name = text(&call["function"]["name"])
                .or_else(|| text(&call["name"]))
                .or_else(|| text(&entry["function"]["name"]))
                .or_else(|| text(&entry["name"]));
            let Some(name) = name else {
                return Err(error(
                    &format!("{field}[{i}{at}.function.name"),
                    "is required (or `name` beside `id`)",
                ));
            };
            Ok(ToolCall {
                id: id.to_string(),
                name: name.to_string(),
            })
        })
        .collect()
}

fn parse_document(document: &Json<'_>) -> Result<ServerMessage, PayloadError> {
    let root = Node::root(document, &ROOT);
    root.object()?;
    let message = root.required("message")?;
    message.object()?;
    let message_type = message.required("type")?.non_empty_str()?.to_string();
    let kind = MessageKind::from_type(&message_type);

    let call = match message.optional("call") {
        Some(node) => Some(parse_call(&node)?),
        None if kind.needs_call() => return Err(error("message.call", "is required")),
        None => None,
    };
    let status = match kind {
        MessageKind::StatusUpdate => Some(message.required("status")?.non_empty_str()?.to_string()),
        _ => message.opt_str("status")?,
    };
    let (customer_number, customer_sip_uri) = match message.optional("customer") {
        Some(customer) => {
            customer.object()?;
            (customer.opt_str("number")?, customer.opt_str("sipUri")?)
        }
        None => (None, None),
    };
    let customer_number =
        customer_number.or_else(|| call.as_ref().and_then(|c| c.customer_number.clone()));
    let customer_sip_uri =
        customer_sip_uri.or_else(|| call.as_ref().and_then(|c| c.customer_sip_uri.clone()));
    let (phone_number, phone_number_assistant_id, phone_number_id) =
        match message.optional("phoneNumber") {
            Some(number) => {
                number.object()?;
                (
                    number.opt_str("number")?,
                    number.opt_str("assistantId")?,
                    number.opt_str("id")?,
                )
            }
            None => (None, None, None),
        };
    let count = |node: Option<Node<'_, '_>>| match node.map(|n| n.value) {
        Some(Json::Array(n)) => Some(*n),
        _ => None,
    };
    let messages_count = count(message.optional("messages")).or_else(|| {
        message
            .optional("artifact")
            .and_then(|artifact| count(artifact.optional("messages")))
    });
    let (assistant_id, assistant_name) = match message.optional("assistant") {
        Some(assistant) => {
            assistant.object()?;
            (assistant.opt_str("id")?, assistant.opt_str("name")?)
        }
        None => (None, None),
    };
    let destination = match message.optional("destination") {
        Some(destination) => {
            destination.object()?;
            destination
                .opt_str("number")?
                .or(destination.opt_str("sipUri")?)
        }
        None => None,
    };

    Ok(ServerMessage {
        timestamp_ms: message.opt_timestamp_ms("timestamp")?,
        ended_reason: message.opt_str("endedReason")?,
        report: parse_report(&message)?,
        message_type,
        kind,
        status,
        destination,
        call,
        customer_number,
        phone_number,
        phone_number_assistant_id,
        phone_number_id,
        customer_sip_uri,
        messages_count,
        tool_calls: Vec::new(),
        assistant_id,
        assistant_name,
        reconciled_at: message.opt_str(RECONCILED_AT)?,
    })
}

fn parse_call(call: &Node<'_, '_>) -> Result<Call, PayloadError> {
    call.object()?;
    let (customer_number, customer_sip_uri) = match call.optional("customer") {
        Some(customer) => {
            customer.object()?;
            (customer.opt_str("number")?, customer.opt_str("sipUri")?)
        }
        None => (None, None),
    };
    let transport_provider = match call.optional("transport") {
        Some(transport) => {
            transport.object()?;
            transport.opt_str("provider")?
        }
        None => None,
    };
    let marked_test = match call.optional("metadata") {
        Some(metadata) => metadata
            .optional("isTestCall")
            .and_then(|flag| flag.value.as_bool())
            .unwrap_or(false),
        None => false,
    };
    Ok(Call {
        id: call.required("id")?.non_empty_str()?.to_string(),
        vapi_org_id: call.opt_str("orgId")?,
        call_type: call.opt_str("type")?,
        assistant_id: call.opt_str("assistantId")?,
        squad_id: call.opt_str("squadId")?,
        workflow_id: call.opt_str("workflowId")?,
        phone_number_id: call.opt_str("phoneNumberId")?,
        customer_sip_uri,
        phone_call_provider: call.opt_str("phoneCallProvider")?,
        web_call_url: call.opt_str("webCallUrl")?,
        customer_number,
        transport_provider,
        marked_test,
    })
}

/// Report fields live under `artifact` and `analysis` in the current schema and
/// at the top level in 2024 payloads (FACTS §3.2); the current place wins.
fn parse_report(message: &Node<'_, '_>) -> Result<Report, PayloadError> {
    let artifact = message.optional("artifact");
    let analysis = message.optional("analysis");
    for part in [&artifact, &analysis].into_iter().flatten() {
        part.object()?;
    }
    let nested =
        |node: &Option<Node<'_, '_>>, key: &'static str| -> Result<Option<String>, PayloadError> {
            match node {
                Some(node) => node.opt_str(key),
                None => Ok(None),
            }
        };
    let started_at = message.opt_str("startedAt")?;
    let ended_at = message.opt_str("endedAt")?;
    let duration_seconds = match message.opt_f64("durationSeconds")? {
        Some(seconds) => Some(seconds),
        None => match (&started_at, &ended_at) {
            (Some(start), Some(end)) => match (iso_to_ms(start), iso_to_ms(end)) {
                (Some(start), Some(end)) if end >= start => Some((end - start) as f64 / 1000.0),
                _ => None,
            },
            _ => None,
        },
    };
    Ok(Report {
        duration_seconds,
        cost: message.opt_f64("cost")?,
        summary: nested(&analysis, "summary")?.or(message.opt_str("summary")?),
        transcript: nested(&artifact, "transcript")?.or(message.opt_str("transcript")?),
        recording_url: recording_url(&artifact)?.or(message.opt_str("recordingUrl")?),
        started_at,
        ended_at,
        structured_data: None,
        success_evaluation: None,
        costs: None,
    })
}

/// The recording's URL: the current fields first (`recording.mono.combinedUrl`,
/// then `recording.stereoUrl`), then the deprecated `recordingUrl` and
/// `stereoRecordingUrl`.
fn recording_url(artifact: &Option<Node<'_, '_>>) -> Result<Option<String>, PayloadError> {
    let Some(artifact) = artifact else {
        return Ok(None);
    };
    if let Some(recording) = artifact.optional("recording") {
        recording.object()?;
        if let Some(mono) = recording.optional("mono") {
            mono.object()?;
            if let Some(url) = mono.opt_str("combinedUrl")? {
                return Ok(Some(url));
            }
        }
        if let Some(url) = recording.opt_str("stereoUrl")? {
            return Ok(Some(url));
        }
    }
    Ok(artifact
        .opt_str("recordingUrl")?
        .or(artifact.opt_str("stereoRecordingUrl")?))
}

fn error(field: &str, problem: &str) -> PayloadError {
    FieldError::new(field, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn fixture(name: &str) -> Vec<u8> {
        crate::test_support::example(name)
    }

    fn parse_json(value: Value) -> Result<ServerMessage, PayloadError> {
        parse(value.to_string().as_bytes())
    }

    #[test]
    fn every_shared_example_parses() {
        let mut seen = 0;
        for entry in std::fs::read_dir(crate::test_support::EXAMPLES).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                let parsed = parse(&fixture(&name));
                assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
                seen += 1;
            }
        }
        assert_eq!(seen, 15);
    }

    #[test]
    fn inbound_status_update_has_what_tracking_needs() {
        let message = parse(&fixture("03-inbound-status-update-in-progress.json")).unwrap();
        assert_eq!(message.kind, MessageKind::StatusUpdate);
        assert_eq!(message.status.as_deref(), Some("in-progress"));
        assert_eq!(message.timestamp_ms, Some(1_787_241_846_992));
        assert_eq!(message.customer_number.as_deref(), Some("+12125550187"));
        assert_eq!(message.phone_number.as_deref(), Some("+14155550142"));
        assert_eq!(
            message.assistant_id(),
            Some("a7d3f2e1-9c4b-4a6d-8e5f-2b1c0d9e8f7a")
        );
        let call = message.call.unwrap();
        assert_eq!(call.id, "01a01fea-517e-7c41-89a2-e7d3f06b58a1");
        assert_eq!(call.call_type.as_deref(), Some("inboundPhoneCall"));
        assert_eq!(call.transport_provider.as_deref(), Some("twilio"));
    }

    #[test]
    fn end_of_call_report_fields_from_artifact_and_legacy_top_level() {
        let current = parse(&fixture("08-inbound-end-of-call-report.json")).unwrap();
        assert_eq!(current.kind, MessageKind::EndOfCallReport);
        assert_eq!(current.ended_reason.as_deref(), Some("customer-ended-call"));
        assert!(current.report.summary.is_some());
        assert!(current.report.transcript.is_some());
        assert!(current.report.recording_url.is_some());
        assert!(current.report.duration_seconds.unwrap() > 0.0);
        assert!(current.report.cost.is_some());

        let legacy = parse(&fixture("15-legacy-2024-end-of-call-report.json")).unwrap();
        assert_eq!(
            legacy.timestamp_ms,
            iso_to_ms("2024-07-15T05:45:29.814Z"),
            "ISO-string timestamp"
        );
        assert!(legacy.report.summary.is_some());
        assert!(legacy.report.transcript.is_some());
    }

    #[test]
    fn unknown_fields_and_types_are_accepted() {
        let extra = parse(&fixture("13-status-update-with-unknown-extra-fields.json")).unwrap();
        assert_eq!(extra.status.as_deref(), Some("in-progress"));
        let started = parse(&fixture("14-undocumented-type-assistant-started.json")).unwrap();
        assert_eq!(started.kind, MessageKind::Other("assistant.started".into()));
        // Messages without a call (chat, session) are fine for types we do not act on.
        let chat = parse_json(json!({"message": {"type": "chat.created", "chat": {}}})).unwrap();
        assert!(chat.call.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!([]), "body"),
            (json!({}), "message"),
            (json!({"message": 3}), "message"),
            (json!({"message": {}}), "message.type"),
            (json!({"message": {"type": 7}}), "message.type"),
            (json!({"message": {"type": " "}}), "message.type"),
            (
                json!({"message": {"type": "status-update", "status": "ringing"}}),
                "message.call",
            ),
            (
                json!({"message": {"type": "status-update", "status": "ringing", "call": {}}}),
                "message.call.id",
            ),
            (
                json!({"message": {"type": "status-update", "status": "ringing", "call": {"id": 5}}}),
                "message.call.id",
            ),
            (
                json!({"message": {"type": "status-update", "call": {"id": "c"}}}),
                "message.status",
            ),
            (
                json!({"message": {"type": "status-update", "status": "ringing", "call": {"id": "c", "customer": {"number": 14155550142_i64}}}}),
                "message.call.customer.number",
            ),
            (
                json!({"message": {"type": "status-update", "status": "ringing", "timestamp": true, "call": {"id": "c"}}}),
                "message.timestamp",
            ),
            (
                json!({"message": {"type": "end-of-call-report", "cost": "3", "call": {"id": "c"}}}),
                "message.cost",
            ),
            (
                json!({"message": {"type": "end-of-call-report", "artifact": [], "call": {"id": "c"}}}),
                "message.artifact",
            ),
        ];
        for (body, field) in cases {
            let err = parse_json(body.clone()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn a_tool_call_is_named_in_either_shape() {
        let names = |list: Value| -> Result<Vec<(String, String)>, PayloadError> {
            let message = parse_json(json!({"message": {"type": "tool-calls",
                "call": {"id": "c"}, "toolCallList": list}}))?;
            Ok(message
                .tool_calls
                .into_iter()
                .map(|t| (t.id, t.name))
                .collect())
        };
        // The schema's shape, and the flat one of Vapi's docs example.
        assert_eq!(
            names(json!([
                {"id": "t1", "type": "function", "function": {"name": "book", "arguments": {}}},
                {"id": "t2", "name": "get_weather", "arguments": {"location": "SF"}}
            ]))
            .unwrap(),
            [
                ("t1".to_string(), "book".to_string()),
                ("t2".to_string(), "get_weather".to_string())
            ]
        );
        let nameless = names(json!([{"id": "t1"}, {"id": "t2", "arguments": {}}])).unwrap_err();
        assert_eq!(nameless.field, "message.toolCallList[0].function.name");
        let nested = parse_json(
            json!({"message": {"type": "tool-calls", "call": {"id": "c"},
            "toolWithToolCallList": [{"type": "function", "function": {"name": "book"},
                                      "toolCall": {"id": "t9"}}]}}),
        )
        .unwrap();
        assert_eq!(nested.tool_calls[0].name, "book");
        let no_id = parse_json(
            json!({"message": {"type": "tool-calls", "call": {"id": "c"},
            "toolWithToolCallList": [{"function": {"name": "book"}, "toolCall": {}}]}}),
        )
        .unwrap_err();
        assert_eq!(no_id.field, "message.toolWithToolCallList[0].toolCall.id");
    }

    #[test]
    fn bodies_that_are_not_json_are_named_body() {
        for body in [
            &b""[..],
            b"   ",
            b"not json",
            b"{\"message\":",
            b"\xff\xfe{}",
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.field, "body", "{body:?}: {err}");
        }
        // serde_json's recursion limit turns deep nesting into an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(deep.as_bytes()).unwrap_err().field, "body");
        // Numbers beyond f64 are rejected by the parser, huge integers become floats.
        assert_eq!(parse(b"{\"message\": 1e999}").unwrap_err().field, "body");
    }

    /// `parse` gives what the same rules give on the whole `serde_json::Value`
    /// of the body, for every shared example and thousands of mutations of them.
    #[test]
    fn parses_as_the_whole_document_would() {
        let reference = |body: &[u8]| -> Result<ServerMessage, PayloadError> {
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => parse_document(&json::from_value(&value, &ROOT)).and_then(|mut m| {
                    if needs_whole_read(&m.kind) {
                        read_whole_parts(&mut m, &value["message"])?;
                    }
                    Ok(m)
                }),
                // The text differs (line and column); that both refuse is the point.
                Err(_) => Err(error("body", "")),
            }
        };
        let same = |body: &[u8]| {
            let (ours, theirs) = (parse(body), reference(body));
            match (&ours, &theirs) {
                (Err(a), Err(b)) if a.field == "body" && b.field == "body" => {}
                _ => assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body)),
            }
        };
        let mut next = crate::test_support::xorshift(0x2545_f491_4f6c_dd1d);
        let swaps: &[&[u8]] = &[
            b"\"\"",
            b"null",
            b"7",
            b"[]",
            b"{}",
            b"\" \"",
            b"true",
            b"\"2024-07-15T05:45:29Z\"",
        ];
        let mut checked = 0;
        for (_, body) in crate::test_support::shared_examples() {
            same(&body);
            // Replace the value after a random `":` with another JSON value,
            // so the rules meet wrong types, empties and nulls everywhere.
            let colons: Vec<usize> = body
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b"\":")
                .map(|(i, _)| i + 2)
                .collect();
            for _ in 0..400 {
                let at = colons[(next() as usize) % colons.len()];
                let rest = &body[at..];
                let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let end = match rest.get(skip) {
                    Some(b'"') => rest[skip + 1..]
                        .iter()
                        .position(|b| *b == b'"')
                        .map(|p| skip + p + 2),
                    Some(b'{' | b'[') => None,
                    _ => rest.iter().position(|b| matches!(b, b',' | b'}' | b']')),
                };
                let Some(end) = end else { continue };
                let swap = swaps[(next() as usize) % swaps.len()];
                let mut mutated = body[..at].to_vec();
                mutated.extend_from_slice(swap);
                mutated.extend_from_slice(&rest[end..]);
                same(&mutated);
                checked += 1;
            }
        }
        assert!(checked > 3000, "{checked}");
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso_to_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            iso_to_ms("2024-07-15T05:45:29.814Z"),
            Some(1_721_022_329_814)
        );
        assert_eq!(
            iso_to_ms("2024-07-15T07:45:29.814+02:00"),
            Some(1_721_022_329_814)
        );
        assert_eq!(iso_to_ms("2024-07-15"), None);
        assert_eq!(iso_to_ms("2024-13-15T05:45:29Z"), None);
        assert_eq!(iso_to_ms("2024-07-15T05:45:29.Z"), None);
        assert_eq!(iso_to_ms("2024-07-15T05:45:29é"), None);
        // Found by fuzzing (fuzz/ payload target, read-through): impossible dates,
        // signed offset parts and times before 1970 are refused.
        assert_eq!(iso_to_ms("2024-02-31T00:00:00Z"), None);
        assert_eq!(iso_to_ms("2023-02-29T00:00:00Z"), None);
        assert!(iso_to_ms("2024-02-29T00:00:00Z").is_some());
        assert_eq!(iso_to_ms("2024-07-15T05:45:29-+5:00"), None);
        assert_eq!(iso_to_ms("2024-07-15T05:45:29+00:99"), None);
        assert_eq!(iso_to_ms("0000-01-01T00:00:00Z"), None);
    }
}
