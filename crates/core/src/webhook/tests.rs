//! Each branch of the webhook flow, natively, over [`Fake`] effects: a map for
//! the key-value store, a scripted database, a clock that only moves when
//! told, and every log line kept.

use super::*;
use crate::claim::{self, ClaimScope};
use crate::db::{DbError, Owner, OwnerVia, PendingLetter, Recorded};
use crate::event_key;
use crate::handling;
use crate::log::LogLine;
use crate::log::{self as terms, Level};
use crate::outbound::{OutboundError, OutboundReply};
use crate::payload::ServerMessage;
use crate::replay::replay;
use crate::standard_webhooks::SigningKey;
use crate::test_support::block_on;
use crate::test_support::fake::{ava, Fake, ORG, SECRET};
use crate::upstream::Fallback;
use serde_json::{json, Value};

/// The claims' scope of [`Fake`]'s database.
fn fake_scope() -> ClaimScope {
    ClaimScope::new(&Fake::new().database_address(), None)
}

fn example(name: &str) -> Vec<u8> {
    crate::test_support::example(name)
}

fn signed(body: Vec<u8>) -> Request {
    Request {
        method: "POST".into(),
        path: "/webhooks/vapi".into(),
        headers: [
            ("content-type", "application/json"),
            ("x-vapi-secret", SECRET),
        ]
        .into_iter()
        .collect(),
        body,
    }
}

fn call_start() -> Request {
    signed(example("03-inbound-status-update-in-progress.json"))
}

/// Handles `request` and runs what follows the response, as a host does.
fn deliver(fake: &mut Fake, request: &Request) -> Response {
    block_on(async {
        let (response, after) = handle(fake, request).await;
        after.run(fake).await;
        response
    })
}

fn outcome(response: &Response) -> String {
    response.body_json().unwrap()["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn outcome_of_summary(fake: &Fake) -> String {
    summary(fake)
        .get("outcome")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn summary(fake: &Fake) -> &LogLine {
    fake.lines
        .iter()
        .rev()
        .find(|l| l.msg().starts_with("Webhook "))
        .expect("a summary line")
}

#[test]
fn a_new_event_is_recorded_once_claimed_and_marked_done() {
    let mut fake = Fake::new();
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 200);
    assert_eq!(outcome(&response), "recorded");
    assert_eq!(fake.record_calls, 1);
    assert!(
        fake.kv
            .values
            .keys()
            .any(|k| k.starts_with("vapi-edge/done/")),
        "the claim is completed"
    );
    assert_eq!(fake.event_rows.len(), 1);
    assert_eq!(fake.event_rows[0].outcome, "recorded");
    assert_eq!(fake.event_rows[0].org_id.as_deref(), Some(ORG));
    assert_eq!(summary(&fake).get("agent"), Some(&json!("Ava")));
    // No relay_url: nothing to notify.
    assert!(fake.posted.is_empty());
}

#[test]
fn a_second_delivery_stops_at_the_done_key_without_touching_the_database() {
    let mut fake = Fake::new();
    deliver(&mut fake, &call_start());
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "duplicate");
    assert_eq!(fake.record_calls, 1);
    let duplicate = fake.lines_with(terms::DUPLICATE_EVENT);
    assert_eq!(duplicate[0].get("guard"), Some(&json!("key_value")));
}

#[test]
fn a_duplicate_the_store_forgot_is_caught_by_the_database() {
    let mut fake = Fake::new();
    fake.record_answers
        .push_back(Ok(Recorded::Duplicate { owner: Some(ava()) }));
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "duplicate");
    let duplicate = fake.lines_with(terms::DUPLICATE_EVENT);
    assert_eq!(duplicate[0].get("guard"), Some(&json!("postgres")));
    // The database holds it: the claim is done, so later deliveries stop early.
    assert!(fake
        .kv
        .values
        .keys()
        .any(|k| k.starts_with("vapi-edge/done/")));
}

#[test]
fn a_live_claim_of_another_attempt_is_503_with_retry_after() {
    let mut fake = Fake::new();
    // Another attempt claimed this window's key and has not finished.
    let request = call_start();
    let message = payload::parse(&request.body).unwrap();
    let key = crate::event_key::for_message(&message).unwrap();
    let claim_key = claim::claim_key(&fake_scope(), &key, fake.now_ms, claim::DEFAULT_LEASE_MS);
    fake.kv
        .values
        .insert(claim_key, 1i64.to_le_bytes().to_vec());
    let response = deliver(&mut fake, &request);
    assert_eq!(response.status, 503);
    assert!(response.headers.contains(&("retry-after", "1".to_string())));
    assert_eq!(
        fake.record_calls, 0,
        "no side effect while another attempt runs"
    );
    assert!(
        fake.dead_letters.is_empty(),
        "the other attempt owns the event"
    );
}

#[test]
fn a_claim_whose_lease_ended_is_taken_over() {
    let mut fake = Fake::new().var("claim_lease_ms", "1000");
    let request = call_start();
    let message = payload::parse(&request.body).unwrap();
    let key = crate::event_key::for_message(&message).unwrap();
    // A dead attempt's claim in the previous window.
    let stale = claim::claim_key(&fake_scope(), &key, fake.now_ms - 1_000, 1_000);
    fake.kv.values.insert(stale, 1i64.to_le_bytes().to_vec());
    let response = deliver(&mut fake, &request);
    assert_eq!(outcome(&response), "recorded");
}

#[test]
fn with_the_store_down_the_database_alone_guards_the_event() {
    let mut fake = Fake::new();
    fake.kv.down = true;
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "recorded");
    assert_eq!(
        fake.lines_with("Key-value store unavailable; the database guards this event")
            .len(),
        1
    );
}

#[test]
fn an_unknown_assistant_is_retried_on_the_schedule_then_500_and_kept() {
    let mut fake = Fake::new().var("agent_lookup_retry_ms", "10,20,30");
    for _ in 0..4 {
        fake.record_answers.push_back(Ok(Recorded::OwnerNotFound));
    }
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 500);
    assert_eq!(fake.slept, [10, 20, 30]);
    assert_eq!(fake.record_calls, 4);
    let failed = fake.lines_with(terms::AGENT_LOOKUP_FAILED);
    assert_eq!(failed[0].get("attempts"), Some(&json!(4)));
    assert_eq!(fake.dead_letters.len(), 1, "a 5xx is kept for replay");
    assert_eq!(fake.dead_letters[0].reason, "agent_not_found");
    assert_eq!(
        fake.event_rows[0].error_class.as_deref(),
        Some("agent_lookup")
    );
    // The claim was given back: Vapi's retry goes through at once.
    fake.record_answers.clear();
    assert_eq!(outcome(&deliver(&mut fake, &call_start())), "recorded");
}

#[test]
fn an_agent_that_appears_during_the_retries_is_found() {
    let mut fake = Fake::new();
    fake.record_answers.push_back(Ok(Recorded::OwnerNotFound));
    fake.record_answers.push_back(Ok(Recorded::OwnerNotFound));
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "recorded");
    assert_eq!(fake.slept, [100, 250]);
    assert!(fake.dead_letters.is_empty());
}

#[test]
fn a_transient_database_error_is_503_and_a_lasting_one_500() {
    for (error, status) in [
        (
            DbError::from_sqlstate("40001", "serialization failure"),
            503,
        ),
        (DbError::from_sqlstate("23502", "null value"), 500),
    ] {
        let mut fake = Fake::new();
        fake.record_answers.push_back(Err(error));
        let response = deliver(&mut fake, &call_start());
        assert_eq!(response.status, status);
        assert_eq!(fake.lines_with(terms::CALL_TRACKING_FAILED).len(), 1);
        assert_eq!(fake.dead_letters.len(), 1);
        assert!(
            !String::from_utf8_lossy(&response.body).contains("serialization"),
            "database text stays out of the response"
        );
    }
}

#[test]
fn with_the_database_down_the_dead_letter_is_parked_in_the_store() {
    let mut fake = Fake::new();
    fake.database_down = true;
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 503);
    assert_eq!(outcome_of_summary(&fake), "database_unavailable");
    assert_eq!(fake.lines_with("Database unavailable").len(), 1);
    let kept = fake.lines_with("Dead letter kept");
    assert_eq!(kept[0].get("store"), Some(&json!("key_value")));
    assert!(fake
        .kv
        .values
        .keys()
        .any(|k| k.starts_with("vapi-edge/dead-letter/")));
}

#[test]
fn with_both_down_the_dead_letter_is_lost_and_critical() {
    let mut fake = Fake::new();
    fake.database_down = true;
    fake.kv.down = true;
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 503);
    let lost = fake.lines_with("Dead letter lost");
    assert_eq!(lost[0].level(), Level::Critical);
}

#[test]
fn outside_the_rollout_nothing_is_done_and_the_claim_is_given_back() {
    let mut fake = Fake::new();
    fake.record_answers
        .push_back(Ok(Recorded::OutsideRollout { owner: ava() }));
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "outside_rollout");
    assert!(!fake
        .kv
        .values
        .keys()
        .any(|k| k.starts_with("vapi-edge/done/")));
    assert!(fake.dead_letters.is_empty());
    // Rolled in later, the same event records.
    assert_eq!(outcome(&deliver(&mut fake, &call_start())), "recorded");
}

#[test]
fn refusals_come_before_any_effect() {
    // Not configured: 503, CRITICAL, and nothing recorded (not verified).
    let mut fake = Fake::new().var("vapi_server_secret", "");
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 503);
    assert_eq!(
        fake.lines_with("Webhook misconfigured")[0].level(),
        Level::Critical
    );
    assert!(fake.event_rows.is_empty());

    // A wrong secret: 401, not recorded.
    let mut fake = Fake::new();
    let mut request = call_start();
    request.headers = [
        ("content-type", "application/json"),
        ("x-vapi-secret", "no"),
    ]
    .into_iter()
    .collect();
    assert_eq!(deliver(&mut fake, &request).status, 401);
    assert!(fake.event_rows.is_empty());

    // Verified but not JSON: 415, recorded.
    let mut fake = Fake::new();
    let mut request = call_start();
    request.headers = [("content-type", "text/plain"), ("x-vapi-secret", SECRET)]
        .into_iter()
        .collect();
    assert_eq!(deliver(&mut fake, &request).status, 415);
    assert_eq!(fake.event_rows[0].outcome, "unsupported_media_type");

    // An invalid payload names the field.
    let mut fake = Fake::new();
    let response = deliver(&mut fake, &signed(br#"{"message": {}}"#.to_vec()));
    assert_eq!(response.status, 400);
    assert!(response.body_json().unwrap()["field"].is_string());

    // A bad setting is the operator's: 503, named.
    let mut fake = Fake::new().var("default_country", "XX");
    assert_eq!(deliver(&mut fake, &call_start()).status, 503);
    let line = fake.lines_with("Webhook misconfigured")[0];
    assert!(line
        .get("error")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("default_country"));
    assert_eq!(fake.record_calls, 0);
}

#[test]
fn an_unknown_call_type_is_400_with_the_search_term() {
    let mut fake = Fake::new();
    let mut body: Value =
        serde_json::from_slice(&example("03-inbound-status-update-in-progress.json")).unwrap();
    body["message"]["call"]["type"] = json!("pstnMystery");
    let response = deliver(&mut fake, &signed(serde_json::to_vec(&body).unwrap()));
    assert_eq!(response.status, 400);
    assert_eq!(fake.lines_with(terms::CANNOT_DETERMINE_CALL_TYPE).len(), 1);
    assert_eq!(fake.record_calls, 0);
}

#[test]
fn assistant_requests_are_answered_both_ways() {
    let mut fake = Fake::new();
    fake.line.agent = Some((ava().agent.unwrap(), "asst-1".into()));
    let request = signed(example("01-inbound-assistant-request.json"));
    let response = deliver(&mut fake, &request);
    assert_eq!(
        response.body_json().unwrap(),
        json!({ "assistantId": "asst-1" })
    );

    let mut fake = Fake::new();
    let response = deliver(&mut fake, &request);
    assert_eq!(response.status, 200);
    assert!(response.body_json().unwrap()["error"].is_string());
    assert_eq!(
        fake.event_rows[0].error_class.as_deref(),
        Some("agent_lookup")
    );

    let mut fake = Fake::new();
    fake.database_down = true;
    assert_eq!(deliver(&mut fake, &request).status, 503);
}

#[test]
fn a_recorded_event_notifies_the_relay_once_and_a_failure_is_a_warning() {
    let mut fake = Fake::new()
        .var("relay_url", "http://127.0.0.1:8787/events")
        .var("relay_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    deliver(&mut fake, &call_start());
    assert_eq!(fake.posted.len(), 1);
    let event: Value = serde_json::from_slice(&fake.posted[0].body).unwrap();
    assert_eq!(event["org_id"], ORG);
    assert_eq!(event["status"], "in-progress");
    assert!(fake.lines_with("Relay notification failed").is_empty());
    // A duplicate does not notify again.
    deliver(&mut fake, &call_start());
    assert_eq!(fake.posted.len(), 1);

    let mut fake = Fake::new().var("relay_url", "http://127.0.0.1:8787/events");
    fake.relay_status = 500;
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 200, "the relay never fails the webhook");
    let failed = fake.lines_with("Relay notification failed");
    assert_eq!(failed[0].get("relay_status"), Some(&json!(500)));
    assert_eq!(
        fake.lines_with("relay_secret is not set; notification is unsigned")
            .len(),
        1
    );
}

#[test]
fn a_replay_moves_parked_letters_and_redrives_each_once() {
    let mut fake = Fake::new();
    fake.database_down = true;
    deliver(&mut fake, &call_start());
    fake.database_down = false;
    // The parked letter moves to the table; the fake's table hands it back.
    let response = block_on(replay(&mut fake, 50));
    let report = response.body_json().unwrap();
    assert_eq!(report["moved_from_key_value"], 1);
    assert_eq!(fake.dead_letters.len(), 1);
    fake.pending.push(PendingLetter {
        id: 7,
        body: fake.dead_letters[0].body.clone(),
        event_key: fake.dead_letters[0].event_key.clone(),
    });
    let report = block_on(replay(&mut fake, 50)).body_json().unwrap();
    assert_eq!(report["replayed"], 1);
    assert_eq!(report["remaining"], 0);
    assert_eq!(fake.replayed, [(7, "recorded".to_string())]);
    // A replay waits for no agent: one attempt, no sleep.
    assert!(fake.slept.is_empty());
}

#[test]
fn every_outcome_has_its_own_word() {
    let all = [
        Outcome::Recorded,
        Outcome::Duplicate,
        Outcome::Ignored,
        Outcome::OutsideRollout,
        Outcome::Answered,
        Outcome::NoAgent,
        Outcome::Unauthorized,
        Outcome::UnsupportedMediaType,
        Outcome::InvalidPayload,
        Outcome::InvalidCallType,
        Outcome::Misconfigured,
        Outcome::InProgress,
        Outcome::DatabaseUnavailable,
        Outcome::DatabaseError,
        Outcome::AgentNotFound,
        Outcome::Replied,
        Outcome::Forwarded,
        Outcome::UpstreamFailed,
        Outcome::Fallback,
        Outcome::Unassigned,
    ];
    let words: std::collections::HashSet<_> = all.iter().map(|o| o.as_str()).collect();
    assert_eq!(words.len(), all.len());
}

fn tool_calls() -> Request {
    signed(
        serde_json::to_vec(&json!({"message": {"type": "tool-calls", "timestamp": 1,
            "call": {"id": "call-1", "type": "inboundPhoneCall"},
            "toolCallList": [
                {"id": "t1", "type": "function", "function": {"name": "book"}},
                {"id": "t2", "type": "function", "function": {"name": "cancel"}}]}}))
        .unwrap(),
    )
}

#[test]
fn without_an_upstream_tool_calls_get_a_result_each_and_nothing_is_recorded() {
    let mut fake = Fake::new();
    let response = deliver(&mut fake, &tool_calls());
    assert_eq!(response.status, 200);
    let results = response.body_json().unwrap()["results"].clone();
    assert_eq!(results.as_array().unwrap().len(), 2);
    assert_eq!(results[1]["toolCallId"], "t2");
    assert_eq!(fake.record_calls, 0);
    assert!(fake.posted.is_empty());
    assert_eq!(fake.event_rows[0].outcome, "replied");
}

#[test]
fn with_an_upstream_its_answer_goes_back_verbatim_and_the_request_is_signed() {
    let mut fake = Fake::new()
        .var("upstream_url", "http://127.0.0.1:9901/vapi")
        .var("upstream_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let answer = br#"{"results":[{"toolCallId":"t1","result":"booked"}]}"#;
    fake.upstream_reply = Some(Ok(OutboundReply {
        retry_after: None,
        status: 200,
        content_type: Some("application/json".into()),
        body: answer.to_vec(),
    }));
    let request = tool_calls();
    let response = deliver(&mut fake, &request);
    assert_eq!(response.body, answer);
    assert_eq!(fake.event_rows[0].outcome, "forwarded");
    assert!(fake.lines_with(UNSIGNED_UPSTREAM).is_empty());
    let post = &fake.posted[0];
    assert_eq!(post.url, "http://127.0.0.1:9901/vapi");
    assert_eq!(post.body, request.body, "the verified body, as it came");
    let headers: crate::headers::Headers = post.headers.iter().cloned().collect();
    assert!(
        headers.one("x-vapi-secret").unwrap().is_none(),
        "never Vapi's credential"
    );
    let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    crate::standard_webhooks::verify(&key, &headers, &post.body, fake.now_ms / 1000).unwrap();
    assert_eq!(
        headers.one("webhook-id").unwrap().unwrap(),
        event_key::for_message(&payload::parse(&request.body).unwrap())
            .unwrap()
            .message_id()
    );
}

#[test]
fn a_failing_upstream_gets_the_fallback_a_search_term_and_a_count() {
    for (reply, reason) in [
        (Err(OutboundError::Timeout(6000)), "timeout"),
        (
            Ok(OutboundReply {
                retry_after: None,
                status: 502,
                content_type: None,
                body: Vec::new(),
            }),
            "status",
        ),
        (
            Ok(OutboundReply {
                retry_after: None,
                status: 200,
                content_type: None,
                body: b"not json".to_vec(),
            }),
            "invalid_body",
        ),
    ] {
        let mut fake = Fake::new().var("upstream_url", "http://127.0.0.1:9901/vapi");
        fake.upstream_reply = Some(reply);
        let response = deliver(&mut fake, &tool_calls());
        assert_eq!(response.status, 200, "{reason}");
        assert_eq!(
            response.body_json().unwrap()["results"][0]["toolCallId"],
            "t1"
        );
        let failed = fake.lines_with(terms::UPSTREAM_FAILED);
        assert_eq!(failed[0].get("reason"), Some(&json!(reason)));
        assert_eq!(fake.event_rows[0].outcome, "upstream_failed");
        assert_eq!(fake.event_rows[0].error_class.as_deref(), Some("upstream"));
        assert_eq!(
            fake.lines_with(UNSIGNED_UPSTREAM).len(),
            1,
            "no upstream_secret"
        );
    }
}

const UNSIGNED_UPSTREAM: &str = "upstream_secret is not set; forwarded request is unsigned";

#[test]
fn an_assistant_request_goes_upstream_only_when_no_local_agent_answers() {
    let mut fake = Fake::new().var("upstream_url", "http://127.0.0.1:9901/vapi");
    fake.line.agent = Some((ava().agent.unwrap(), "asst-1".into()));
    let request = signed(example("01-inbound-assistant-request.json"));
    deliver(&mut fake, &request);
    assert!(fake.posted.is_empty(), "the local agent answered");

    let mut fake = Fake::new().var("upstream_url", "http://127.0.0.1:9901/vapi");
    fake.upstream_reply = Some(Ok(OutboundReply {
        retry_after: None,
        status: 200,
        content_type: None,
        body: br#"{"squadId":"squad-9"}"#.to_vec(),
    }));
    let response = deliver(&mut fake, &request);
    assert_eq!(response.body, br#"{"squadId":"squad-9"}"#);
    assert_eq!(fake.posted.len(), 1);
}

fn line_owner() -> Owner {
    Owner {
        org_id: ORG.into(),
        agent: None,
        via: OwnerVia::Line,
    }
}

#[test]
fn a_call_without_an_assistant_is_recorded_for_its_line_with_a_warning() {
    let mut fake = Fake::new();
    fake.record_answers.push_back(Ok(Recorded::New {
        owner: Some(line_owner()),
        tracked: true,
        lead_id: None,
    }));
    let mut body: Value =
        serde_json::from_slice(&example("03-inbound-status-update-in-progress.json")).unwrap();
    body["message"]["call"]["assistantId"] = Value::Null;
    body["message"]["assistant"] = Value::Null;
    body["message"]["phoneNumber"]["assistantId"] = Value::Null;
    body["message"]["call"]["squadId"] = json!("squad-1");
    let response = deliver(&mut fake, &signed(serde_json::to_vec(&body).unwrap()));
    assert_eq!(outcome(&response), "recorded");
    let warning = fake.lines_with("Call recorded without an agent");
    assert!(warning[0]
        .get("reason")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("squad"));
    assert_eq!(summary(&fake).get("owner_via"), Some(&json!("line")));
    assert_eq!(fake.event_rows[0].org_id.as_deref(), Some(ORG));
}

/// An inbound call-start without any assistant id (a transient assistant).
fn without_assistant() -> Value {
    let mut body: Value =
        serde_json::from_slice(&example("03-inbound-status-update-in-progress.json")).unwrap();
    body["message"]["call"]["assistantId"] = Value::Null;
    body["message"]["assistant"] = Value::Null;
    body["message"]["phoneNumber"]["assistantId"] = Value::Null;
    body
}

#[test]
fn a_call_nobody_owns_is_recorded_unassigned_at_once_with_a_warning() {
    let mut fake = Fake::new().var("agent_lookup_retry_ms", "5");
    fake.record_answers.push_back(Ok(Recorded::New {
        owner: None,
        tracked: true,
        lead_id: None,
    }));
    let body = without_assistant();
    let response = deliver(&mut fake, &signed(serde_json::to_vec(&body).unwrap()));
    assert_eq!(response.status, 200);
    assert_eq!(outcome(&response), "unassigned");
    assert_eq!(
        fake.record_calls, 1,
        "no retry: nothing else can resolve it"
    );
    assert!(fake.slept.is_empty());
    assert!(fake.records[0].keeps_unowned());
    let warning = fake.lines_with(terms::CALL_UNASSIGNED);
    assert_eq!(warning[0].level(), Level::Warn);
    assert_eq!(
        warning[0].get("vapi_org_id"),
        Some(&json!(body["message"]["call"]["orgId"]))
    );
    assert_eq!(summary(&fake).get("owner_via"), Some(&json!("none")));
    assert!(fake.dead_letters.is_empty(), "recorded, not a failure");
    assert_eq!(fake.event_rows[0].outcome, "unassigned");
    assert_eq!(fake.event_rows[0].org_id, None);
    // The database holds it: a redelivery stops at the done key.
    assert!(fake
        .kv
        .values
        .keys()
        .any(|k| k.starts_with("vapi-edge/done/")));
    assert_eq!(
        outcome(&deliver(
            &mut fake,
            &signed(serde_json::to_vec(&body).unwrap())
        )),
        "duplicate"
    );
}

#[test]
fn a_call_that_names_an_assistant_is_never_kept_unowned() {
    let message = payload::parse(&example("03-inbound-status-update-in-progress.json")).unwrap();
    let settings = Settings::from_variables(|_| None).unwrap();
    let Ok(handling::Plan::Record(record)) = handling::plan(&message, &settings) else {
        panic!("a record");
    };
    assert!(!record.keeps_unowned());
    let without: ServerMessage =
        payload::parse(&serde_json::to_vec(&without_assistant()).unwrap()).unwrap();
    let Ok(handling::Plan::Record(record)) = handling::plan(&without, &settings) else {
        panic!("a record");
    };
    assert!(record.keeps_unowned());
    assert_eq!(
        record.vapi_org_id.as_deref(),
        message.call.as_ref().unwrap().vapi_org_id.as_deref()
    );
}

#[test]
fn an_unassigned_call_notifies_with_no_organisation() {
    let mut fake = Fake::new().var("relay_url", "http://127.0.0.1:8787/events");
    fake.record_answers.push_back(Ok(Recorded::New {
        owner: None,
        tracked: false,
        lead_id: None,
    }));
    deliver(
        &mut fake,
        &signed(serde_json::to_vec(&without_assistant()).unwrap()),
    );
    let event: Value = serde_json::from_slice(&fake.posted[0].body).unwrap();
    assert_eq!(event["org_id"], Value::Null);
    assert_eq!(event["agent_id"], Value::Null);
}

#[test]
fn the_default_organisation_reaches_the_recording_statement() {
    let mut fake = Fake::new().var("default_org_id", ORG);
    deliver(&mut fake, &call_start());
    assert_eq!(fake.records[0].default_org_id.as_deref(), Some(ORG));
    let mut fake = Fake::new().var("default_org_id", "not-a-uuid");
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 503);
    assert!(fake.lines_with("Webhook misconfigured")[0]
        .get("error")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("default_org_id"));
}

#[test]
fn a_squad_call_recorded_by_its_squad_says_so() {
    let mut fake = Fake::new();
    fake.record_answers.push_back(Ok(Recorded::New {
        owner: Some(Owner {
            via: OwnerVia::Squad,
            ..ava()
        }),
        tracked: true,
        lead_id: None,
    }));
    let response = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&response), "recorded");
    assert_eq!(summary(&fake).get("owner_via"), Some(&json!("squad")));
    assert_eq!(summary(&fake).get("agent"), Some(&json!("Ava")));
}

#[test]
fn an_unknown_call_type_is_kept_and_replays_once_an_alias_names_it() {
    let mut fake = Fake::new();
    let mut body: Value =
        serde_json::from_slice(&example("03-inbound-status-update-in-progress.json")).unwrap();
    body["message"]["call"]["type"] = json!("vapi.sipCall");
    let response = deliver(&mut fake, &signed(serde_json::to_vec(&body).unwrap()));
    assert_eq!(response.status, 400);
    assert_eq!(fake.dead_letters.len(), 1);
    assert_eq!(fake.dead_letters[0].reason, "invalid_call_type");
    fake.pending.push(PendingLetter {
        id: 3,
        body: fake.dead_letters[0].body.clone(),
        event_key: fake.dead_letters[0].event_key.clone(),
    });
    // Still unknown: the replay fails and the letter stays.
    let report = block_on(replay(&mut fake, 50)).body_json().unwrap();
    assert_eq!(report["replayed"], 0);
    // The operator maps the new type; the replay records the call.
    fake.vars
        .insert("call_type_aliases", "vapi.sipCall=inbound".into());
    let report = block_on(replay(&mut fake, 50)).body_json().unwrap();
    assert_eq!(report["replayed"], 1);
    assert_eq!(fake.replayed, [(3, "recorded".to_string())]);
}

#[test]
fn an_assistant_request_falls_back_to_the_lines_assistant_when_the_upstream_fails() {
    let mut fake = Fake::new().var("upstream_url", "http://127.0.0.1:9901/vapi");
    fake.upstream_reply = Some(Err(OutboundError::Timeout(6000)));
    fake.line.fallback = Some(Fallback::Assistant("asst-fallback".into()));
    let response = deliver(
        &mut fake,
        &signed(example("01-inbound-assistant-request.json")),
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body_json().unwrap(),
        json!({ "assistantId": "asst-fallback" })
    );
    assert_eq!(fake.posted.len(), 1, "the upstream was asked first");
    assert_eq!(fake.event_rows[0].outcome, "fallback");
    assert_eq!(fake.event_rows[0].error_class.as_deref(), Some("upstream"));
    assert_eq!(
        fake.lines_with("Assistant request answered by the fallback")[0].get("fallback"),
        Some(&json!("assistant"))
    );
    // The upstream's deadline left time for the answer within Vapi's 7.5 s.
    assert!(fake.posted[0].timeout_ms <= 7_000);
}

#[test]
fn without_an_agent_or_upstream_the_deployments_fallback_answers() {
    let mut fake = Fake::new().var("assistant_request_fallback", "+14155550100");
    let response = deliver(
        &mut fake,
        &signed(example("01-inbound-assistant-request.json")),
    );
    assert_eq!(
        response.body_json().unwrap(),
        json!({ "destination": { "type": "number", "number": "+14155550100" } })
    );
    assert_eq!(fake.event_rows[0].outcome, "fallback");
    // A line's own fallback comes first.
    let mut fake = Fake::new().var("assistant_request_fallback", "+14155550100");
    fake.line.fallback = Some(Fallback::Assistant("asst-line".into()));
    let response = deliver(
        &mut fake,
        &signed(example("01-inbound-assistant-request.json")),
    );
    assert_eq!(response.body_json().unwrap()["assistantId"], "asst-line");
    // An upstream that answers is not overridden.
    let mut fake = Fake::new().var("upstream_url", "http://127.0.0.1:9901/vapi");
    fake.line.fallback = Some(Fallback::Assistant("asst-line".into()));
    fake.upstream_reply = Some(Ok(OutboundReply {
        retry_after: None,
        status: 200,
        content_type: None,
        body: br#"{"assistantId":"from-upstream"}"#.to_vec(),
    }));
    let response = deliver(
        &mut fake,
        &signed(example("01-inbound-assistant-request.json")),
    );
    assert_eq!(
        response.body_json().unwrap()["assistantId"],
        "from-upstream"
    );
    assert_eq!(fake.event_rows[0].outcome, "forwarded");
}

#[test]
fn a_reply_type_with_its_own_deadline_waits_that_long() {
    let mut fake = Fake::new()
        .var("upstream_url", "http://127.0.0.1:9901/vapi")
        .var("upstream_timeouts", "tool-calls=40000");
    deliver(&mut fake, &tool_calls());
    assert_eq!(fake.posted[0].timeout_ms, 40_000);
    let mut fake = Fake::new()
        .var("upstream_url", "http://127.0.0.1:9901/vapi")
        .var("upstream_timeout_ms", "30000");
    deliver(&mut fake, &tool_calls());
    assert_eq!(
        fake.posted[0].timeout_ms, 19_500,
        "without its own deadline, Vapi's default 20 s wait caps it"
    );
}

#[test]
fn the_head_alone_refuses_what_cannot_be_authentic() {
    let head = |headers: &[(&str, &str)]| Request {
        method: "POST".into(),
        path: "/webhooks/vapi".into(),
        headers: headers.iter().copied().collect(),
        body: Vec::new(),
    };
    let precheck = |fake: &mut Fake, request: &Request| {
        block_on(async { precheck(fake, request).await.map(|(response, _)| response) })
    };
    // The shared secret is checked whole; right, the body is read next.
    let mut fake = Fake::new();
    assert_eq!(
        precheck(&mut fake, &head(&[("x-vapi-secret", SECRET)])),
        None
    );
    let wrong = precheck(&mut fake, &head(&[("x-vapi-secret", "nope")])).unwrap();
    assert_eq!(wrong.status, 401);
    let missing = precheck(&mut fake, &head(&[])).unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(fake.lines_with("Webhook verification failed").len(), 2);
    assert_eq!(summary(&fake).get("checked"), Some(&json!("head")));
    assert_eq!(fake.record_calls, 0);

    // HMAC: a well-formed signature and a fresh timestamp pass (only the body
    // can tell); a stale or malformed timestamp, a missing signature do not.
    let mut fake = Fake::new()
        .var("vapi_server_secret", "")
        .var("vapi_hmac_secret", "hmac-secret");
    let now_s = (fake.now_ms / 1000).to_string();
    let stale_s = (fake.now_ms / 1000 - 3_600).to_string();
    let forged = "ab".repeat(32);
    assert_eq!(
        precheck(
            &mut fake,
            &head(&[("x-signature", &forged), ("x-timestamp", &now_s)])
        ),
        None
    );
    for headers in [
        vec![
            ("x-signature", forged.as_str()),
            ("x-timestamp", stale_s.as_str()),
        ],
        vec![("x-signature", forged.as_str()), ("x-timestamp", "soon")],
        vec![("x-timestamp", now_s.as_str())],
        vec![("x-signature", "not hex"), ("x-timestamp", now_s.as_str())],
    ] {
        let refused = precheck(&mut fake, &head(&headers)).unwrap();
        assert_eq!(refused.status, 401, "{headers:?}");
    }

    // Not configured: 503 before the body too; other routes are not touched.
    let mut fake = Fake::new().var("vapi_server_secret", "");
    assert_eq!(precheck(&mut fake, &head(&[])).unwrap().status, 503);
    let mut other = head(&[]);
    other.path = "/healthz".into();
    assert_eq!(
        block_on(crate::app::precheck(&mut fake, &other)).map(|(r, _)| r.status),
        None
    );
}

#[test]
fn an_event_about_another_tenants_call_is_claimed_and_nothing_else() {
    let mut fake = Fake::new().var("relay_url", "http://127.0.0.1:8787/events");
    fake.record_answers.push_back(Ok(Recorded::OtherTenant));
    let response = deliver(&mut fake, &call_start());
    assert_eq!(response.status, 200);
    assert_eq!(outcome(&response), "other_tenant");
    // No notification for a call this tenant does not own.
    assert!(fake.posted.is_empty());
    assert_eq!(
        fake.lines_with("Call belongs to another tenant; not recorded")
            .len(),
        1
    );
    // The claim is done: a redelivery is a duplicate, not another attempt.
    let again = deliver(&mut fake, &call_start());
    assert_eq!(outcome(&again), "duplicate");
    assert_eq!(fake.record_calls, 1);
}
