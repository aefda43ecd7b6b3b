//! The reconciliation routes over the fake effects: settings, the lease, Vapi's
//! errors, and one page walked. The statements and the whole path, with a
//! fake of Vapi's API, run in both hosts in `host/tests/it/reconcile.rs`.

use crate::dashboard::Read;
use crate::headers::Headers;
use crate::http::{Request, Response};
use crate::log::rfc3339;
use crate::outbound::OutboundReply;
use crate::test_support::block_on;
use crate::test_support::fake::Fake;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0001";
const KEY: &str = "vapi-private-key-0001";

fn fake() -> Fake {
    Fake::new()
        .var("admin_token", ADMIN)
        .var("vapi_api_key", KEY)
        .var("vapi_api_url", "http://vapi.test")
}

fn request(method: &str, path: &str) -> Request {
    let mut headers = Headers::default();
    headers.push("authorization", format!("Bearer {ADMIN}"));
    Request {
        method: method.into(),
        path: path.into(),
        headers,
        body: Vec::new(),
    }
}

fn answer(fake: &mut Fake, request: &Request) -> (Response, Value) {
    let response = block_on(crate::app::route(fake, request)).0;
    let body = response.body_json().unwrap_or(Value::Null);
    (response, body)
}

fn reply(status: u16, body: &Value) -> Result<OutboundReply, crate::outbound::OutboundError> {
    Ok(OutboundReply {
        retry_after: None,
        status,
        content_type: Some("application/json".into()),
        body: body.to_string().into_bytes(),
    })
}

/// A call as `GET /call` lists it.
fn call(id: &str, created_ms: i64, status: &str, ended_ms: Option<i64>) -> Value {
    let mut call = json!({
        "id": id, "orgId": "vapi-org-1", "type": "webCall", "status": status,
        "createdAt": rfc3339(created_ms), "updatedAt": rfc3339(created_ms),
        "assistantId": "asst-1",
    });
    if let Some(ended) = ended_ms {
        call["startedAt"] = rfc3339(created_ms + 1_000).into();
        call["endedAt"] = rfc3339(ended).into();
        call["endedReason"] = "customer-ended-call".into();
        call["cost"] = 0.12.into();
    }
    call
}

#[test]
fn without_an_api_key_reconciliation_is_off() {
    let mut fake = Fake::new().var("admin_token", ADMIN);
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 503);
    assert_eq!(body["reconciliation"], "off");
    assert!(body["error"].as_str().unwrap().contains("vapi_api_key"));
    assert!(fake.posted.is_empty() && fake.dashboard_reads.is_empty());
    let (response, body) = answer(&mut fake, &request("GET", "/admin/reconcile"));
    assert_eq!((response.status, &body["enabled"]), (200, &json!(false)));
    assert_eq!(body["problem"], "vapi_api_key is not set");
}

#[test]
fn the_routes_need_the_admin_token_and_a_valid_setting() {
    let mut fake = fake();
    let mut anonymous = request("POST", "/admin/reconcile");
    anonymous.headers = Headers::default();
    assert_eq!(answer(&mut fake, &anonymous).0.status, 401);
    assert_eq!(
        answer(&mut fake, &request("PUT", "/admin/reconcile"))
            .0
            .status,
        405
    );
    assert_eq!(
        answer(&mut fake, &request("POST", "/admin/reconcile/Bad_Id"))
            .0
            .status,
        404
    );
    let (response, body) = answer(
        &mut fake,
        &request("POST", "/admin/reconcile?from=yesterday"),
    );
    assert_eq!(response.status, 400);
    assert_eq!(body["field"], "from");
    let mut fake = fake.var("reconcile_page_size", "5000");
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 503);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("reconcile_page_size"));
}

#[test]
fn a_second_run_while_one_holds_the_lease_is_refused() {
    let mut fake = fake();
    fake.dashboard_answers.push_back(Ok(None)); // the lease is held
    let (response, _) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 409);
    assert!(fake.posted.is_empty(), "no read of Vapi's API");
}

#[test]
fn a_wrong_api_key_is_a_clear_error_and_the_run_is_saved() {
    let mut fake = fake();
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers
        .push_back(reply(401, &json!({"message": "Invalid Key"})));
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 502);
    assert_eq!(body["outcome"], "unauthorized");
    assert!(
        body["error"].as_str().unwrap().contains("vapi_api_key"),
        "{body}"
    );
    let sent = &fake.posted[0];
    assert!(sent.get && sent.url.starts_with("http://vapi.test/call?createdAtGe="));
    assert!(sent
        .headers
        .contains(&("authorization".into(), format!("Bearer {KEY}").into_bytes())));
    match fake.dashboard_reads.last().unwrap() {
        Read::ReconcileSave { succeeded, .. } => assert!(!succeeded),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.lines_with("Reconciliation misconfigured").len(), 1);
    // The key never appears in a log line.
    assert!(fake.lines.iter().all(|l| !l.render(0).contains(KEY)));
}

#[test]
fn rate_limits_are_waited_out_then_reported() {
    let mut fake = fake();
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    for _ in 0..4 {
        let mut limited = reply(429, &json!({})).unwrap();
        limited.retry_after = Some("2".into());
        fake.get_answers.push_back(Ok(limited));
    }
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(
        (response.status, body["outcome"].as_str()),
        (503, Some("rate_limited"))
    );
    assert_eq!(body["more"], true);
    assert_eq!(
        fake.slept,
        vec![2_000, 2_000, 2_000],
        "Retry-After honoured"
    );

    // A 429 then an answer: the run goes on.
    let mut fake = self::fake();
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers.push_back(reply(429, &json!({})));
    fake.get_answers.push_back(reply(200, &json!([])));
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(
        (response.status, body["outcome"].as_str()),
        (200, Some("complete"))
    );
    assert_eq!(fake.slept, vec![500]);
}

#[test]
fn a_page_records_only_the_calls_the_records_lack() {
    let mut fake = fake();
    let now = fake.now_ms;
    let page = json!([
        call("c-live", now - 60_000, "in-progress", None),
        call("c-lost", now - 600_000, "ended", Some(now - 500_000)),
        call("c-done", now - 900_000, "ended", Some(now - 800_000)),
        // Ended a moment ago: its webhooks may still be on the way.
        call("c-fresh", now - 100_000, "ended", Some(now - 10_000)),
    ]);
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers.push_back(reply(200, &page));
    fake.dashboard_answers.push_back(Ok(Some(
        json!([["c-lost", false, false], ["c-done", true, true]]).to_string(),
    )));
    fake.vars
        .insert("relay_url", "http://relay.test/events".into());
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 200, "{body}");
    assert_eq!(body["outcome"], "complete");
    assert_eq!(
        (
            &body["missing"],
            &body["up_to_date"],
            &body["unfinished"],
            &body["calls_seen"]
        ),
        (&json!(1), &json!(1), &json!(2), &json!(4))
    );
    assert_eq!(body["missing_calls"], json!(["c-lost"]));
    // Only the lost call went through the recording path, as a report.
    assert_eq!(fake.records.len(), 1);
    let record = &fake.records[0];
    assert_eq!(record.call_id, "c-lost");
    assert_eq!(record.message_type, "end-of-call-report");
    assert_eq!(record.metadata["source"], "reconciliation");
    assert!(fake.event_rows.is_empty(), "no delivery invented");
    // The relay hears of it, marked.
    let notified: Value = serde_json::from_slice(&fake.posted.last().unwrap().body).unwrap();
    assert_eq!(notified["source"], "reconciliation");
    // The cursor waits for the oldest call not settled yet.
    assert_eq!(body["cursor"], rfc3339(now - 100_000));
    // The lookup asked about the settled calls, in their scope's keys.
    match &fake.dashboard_reads[1] {
        Read::ReconcileKnown { calls, tenant } => {
            assert_eq!(tenant, "");
            assert!(calls.contains("v1|end-of-call-report|c-lost"), "{calls}");
            assert!(!calls.contains("c-live"));
        }
        other => panic!("{other:?}"),
    }
    match fake.dashboard_reads.last().unwrap() {
        Read::ReconcileSave {
            succeeded, missing, ..
        } => assert!(*succeeded && *missing == 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.lines_with("Reconciliation found calls whose webhooks never came")
            .len(),
        1
    );
}

#[test]
fn a_full_page_asks_for_the_next_with_an_overlapping_bound() {
    let mut fake = fake().var("reconcile_page_size", "2");
    let now = fake.now_ms;
    let (a, b) = (now - 900_000, now - 800_000);
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers.push_back(reply(
        200,
        &json!([
            call("c-2", b, "in-progress", None),
            call("c-1", a, "in-progress", None)
        ]),
    ));
    fake.get_answers
        .push_back(reply(200, &json!([call("c-1", a, "in-progress", None)])));
    let (_, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(
        (body["pages"].as_i64(), body["calls_seen"].as_i64()),
        (Some(2), Some(2))
    );
    let second = &fake.posted[1].url;
    assert!(
        second.contains(&format!("createdAtLe={}", rfc3339(a))),
        "{second}"
    );
}

#[test]
fn a_call_nothing_here_owns_is_passed_over_not_failed() {
    // The Vapi organisation's key lists every call it has, also those of an
    // application whose assistants' server URL is elsewhere.
    let mut fake = fake();
    let now = fake.now_ms;
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers.push_back(reply(
        200,
        &json!([call(
            "c-foreign",
            now - 600_000,
            "ended",
            Some(now - 500_000)
        )]),
    ));
    fake.dashboard_answers
        .push_back(Ok(Some(json!([["c-foreign", false, false]]).to_string())));
    fake.record_answers
        .push_back(Ok(crate::db::Recorded::OwnerNotFound));
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 200, "{body}");
    assert_eq!(
        (&body["skipped"], &body["failed"], &body["missing"]),
        (&json!(1), &json!(0), &json!(0))
    );
    assert_eq!(fake.record_calls, 1, "no wait for an agent");
    assert!(fake.dead_letters.is_empty(), "nothing to replay");
    assert!(fake.slept.is_empty());
    // Recorded without an owner? Never: reconciliation keeps no unowned call.
    assert!(!fake.records[0].keeps_unowned());
}

#[test]
fn a_run_that_finishes_an_older_window_goes_on_to_the_run_start() {
    let mut fake = fake();
    let now = fake.now_ms;
    // An earlier run stopped inside a window that ended an hour ago.
    let state = crate::reconcile::State {
        cursor_ms: None,
        window: Some(crate::reconcile::Window {
            from_ms: now - 7_200_000,
            to_ms: now - 3_600_000,
            upper_ms: now - 3_600_000,
            pending_ms: None,
        }),
        last: None,
    };
    fake.dashboard_answers.push_back(Ok(Some(state.to_json())));
    fake.get_answers.push_back(reply(200, &json!([])));
    fake.get_answers.push_back(reply(200, &json!([])));
    let (_, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(
        (body["outcome"].as_str(), body["pages"].as_i64()),
        (Some("complete"), Some(2))
    );
    assert!(fake.posted[1]
        .url
        .contains(&format!("createdAtGe={}", rfc3339(now - 3_600_000))));
    assert_eq!(body["cursor"], rfc3339(now));
}

#[test]
fn a_page_too_large_names_the_setting_and_errors_say_whether_to_call_again() {
    let mut fake = fake();
    fake.dashboard_answers.push_back(Ok(Some("{}".into())));
    fake.get_answers
        .push_back(Err(crate::outbound::OutboundError::TooLarge));
    let (response, body) = answer(&mut fake, &request("POST", "/admin/reconcile"));
    assert_eq!(response.status, 502);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("reconcile_page_size"),
        "{body}"
    );
    assert_eq!(body["more"], false, "a setting must change first");
    assert_eq!(fake.posted.len(), 1, "not retried");
}
