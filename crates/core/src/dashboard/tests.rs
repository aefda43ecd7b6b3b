//! The dashboard's routes over the webhook tests' fake effects: access, the
//! parameters, paging, masking and ETags. The statements themselves run
//! against both real engines in `host/tests/it/dashboard.rs`.

use super::*;
use crate::headers::Headers;
use crate::test_support::block_on;
use crate::test_support::fake::Fake;

const ORG_A: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
const ORG_B: &str = "0b5e3c1d-2a4f-4e6b-8c7d-9e1f2a3b4c5d";
const OPERATOR: &str = "operator-token-0001";
const TOKEN_A: &str = "token-of-org-a-0001";

fn fake() -> Fake {
    Fake::new().var("dashboard_token", &format!("{OPERATOR},{ORG_A}:{TOKEN_A}"))
}

fn get(path: &str, token: Option<&str>) -> Request {
    let mut headers = Headers::default();
    if let Some(token) = token {
        headers.push("authorization", format!("Bearer {token}"));
    }
    Request {
        method: "GET".into(),
        path: path.into(),
        headers,
        body: Vec::new(),
    }
}

/// The answer of the one route table (`crate::app::route`).
fn answer(fake: &mut Fake, request: &Request) -> Response {
    block_on(crate::app::route(fake, request)).0
}

fn call_row(at: &str, id: &str, from: &str) -> Value {
    json!({"id": id, "vapi_call_id": format!("call-{id}"), "org_id": ORG_A,
           "from_number": from, "to_number": "+14155550142", "status": "ended",
           "cursor_at": at})
}

#[test]
fn other_paths_are_not_the_dashboards() {
    let mut fake = fake();
    let metrics = answer(&mut fake, &get("/metrics", None));
    assert!(String::from_utf8_lossy(&metrics.body).contains("metrics_token"));
    assert_eq!(answer(&mut fake, &get("/apis", None)).status, 404);
    assert!(fake.dashboard_reads.is_empty());
}

#[test]
fn without_dashboard_token_every_route_is_closed() {
    let mut fake = Fake::new();
    for path in [
        "/dashboard",
        "/dashboard/app.js",
        "/api/calls",
        "/api/summary",
    ] {
        assert_eq!(
            answer(&mut fake, &get(path, Some(OPERATOR))).status,
            403,
            "{path}"
        );
    }
    assert!(fake.dashboard_reads.is_empty());
}

#[test]
fn a_misconfigured_token_list_is_503_naming_the_entry() {
    let mut fake = Fake::new().var("dashboard_token", "short");
    let response = answer(&mut fake, &get("/api/calls", Some("short")));
    assert_eq!(response.status, 503);
    let error = response.body_json().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("entry 1"), "{error}");
    assert_eq!(fake.lines_with("Dashboard misconfigured").len(), 1);
}

#[test]
fn the_page_needs_no_token_but_the_api_does() {
    let mut fake = fake();
    let page = answer(&mut fake, &get("/dashboard", None));
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    let script = answer(&mut fake, &get("/dashboard/app.js", None));
    assert_eq!(script.content_type, "text/javascript; charset=utf-8");
    for token in [None, Some("wrong-token-000000000")] {
        let refused = answer(&mut fake, &get("/api/calls", token));
        assert_eq!(refused.status, 401);
    }
    assert!(fake.dashboard_reads.is_empty());
}

#[test]
fn an_organisations_token_reads_only_that_organisation() {
    let mut fake = fake();
    answer(&mut fake, &get("/api/calls", Some(TOKEN_A)));
    answer(&mut fake, &get("/api/calls", Some(OPERATOR)));
    answer(&mut fake, &get("/api/summary", Some(TOKEN_A)));
    answer(&mut fake, &get("/api/calls/call-1", Some(TOKEN_A)));
    let orgs: Vec<Option<String>> = fake
        .dashboard_reads
        .iter()
        .map(|read| match read {
            Read::Calls { orgs, .. } | Read::Call { orgs, .. } | Read::Summary { orgs } => {
                orgs.clone()
            }
            other => panic!("not a dashboard read: {other:?}"),
        })
        .collect();
    assert_eq!(
        orgs,
        vec![
            Some(ORG_A.into()),
            None,
            Some(ORG_A.into()),
            Some(ORG_A.into())
        ]
    );
    assert!(!orgs.contains(&Some(ORG_B.into())));
}

#[test]
fn bad_parameters_are_400_naming_the_parameter() {
    let mut fake = fake();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("direction=sideways", "direction"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=MjAyNnxub3QtYS11dWlk", "cursor"), // "2026|not-a-uuid"
    ]
    .into_iter()
    .map(|(q, f)| (q.to_string(), f))
    .chain(
        [
            // Well-formed, impossible: PostgreSQL would fail on it (22008).
            "2026-13-45T25:61:61.000000Z",
            "2026-02-30T00:00:00.000Z",
            // Another format than the API gives.
            "2026-12-07 18:42:54",
            "2026-12-07T18:42:54+02:00",
            "0000-00-00T00:00:00.000000Z",
        ]
        .map(|at| {
            let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{at}|0b5e3c1d-2a4f-4e6b-8c7d-9e1f2a3b4c5d"));
            (format!("cursor={cursor}"), "cursor")
        }),
    ) {
        let response = answer(
            &mut fake,
            &get(&format!("/api/calls?{query}"), Some(OPERATOR)),
        );
        assert_eq!(response.status, 400, "{query}");
        assert_eq!(response.body_json().unwrap()["field"], field, "{query}");
    }
    assert!(fake.dashboard_reads.is_empty());
}

#[test]
fn a_call_id_with_a_control_character_is_400_not_a_statement() {
    let mut fake = fake();
    for path in ["/api/calls/a%00b", "/api/calls/line%0Abreak"] {
        let response = answer(&mut fake, &get(path, Some(OPERATOR)));
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(response.body_json().unwrap()["field"], "vapi_call_id");
    }
    assert!(fake.dashboard_reads.is_empty());
}

#[test]
fn filters_and_the_page_size_reach_the_statement() {
    let mut fake = fake();
    answer(
        &mut fake,
        &get(
            "/api/calls?limit=2&status=in-progress&direction=inbound",
            Some(OPERATOR),
        ),
    );
    assert_eq!(
        fake.dashboard_reads,
        vec![Read::Calls {
            orgs: None,
            cursor: None,
            status: Some("in-progress".into()),
            direction: Some("inbound".into()),
            rows: 3,
        }]
    );
}

#[test]
fn a_page_is_sorted_newest_first_and_gives_the_cursor_of_its_last_call() {
    let mut fake = fake();
    let a = "00000000-0000-4000-8000-00000000000a";
    let b = "00000000-0000-4000-8000-00000000000b";
    let c = "00000000-0000-4000-8000-00000000000c";
    // Three rows for a page of two, in no particular order.
    let rows = json!({"calls": [
        call_row("2026-12-03T08:00:00.000Z", a, "+14155550101"),
        call_row("2026-12-03T08:00:02.000Z", c, "+14155550103"),
        call_row("2026-12-03T08:00:01.000Z", b, "+14155550102"),
    ]});
    fake.dashboard_answers.push_back(Ok(Some(rows.to_string())));
    let response = answer(&mut fake, &get("/api/calls?limit=2", Some(OPERATOR)));
    assert_eq!(response.status, 200);
    let body = response.body_json().unwrap();
    let ids: Vec<&str> = body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c, b]);
    assert!(body["calls"][0].get("cursor_at").is_none());
    let cursor = body["next_cursor"].as_str().unwrap();
    assert_eq!(
        decode_cursor(cursor).unwrap(),
        format!("2026-12-03T08:00:01.000Z|{b}")
    );

    // The cursor comes back as the statement's parameter.
    answer(
        &mut fake,
        &get(
            &format!("/api/calls?limit=2&cursor={cursor}"),
            Some(OPERATOR),
        ),
    );
    match &fake.dashboard_reads[1] {
        Read::Calls { cursor, .. } => {
            assert_eq!(
                cursor.as_deref(),
                Some(&*format!("2026-12-03T08:00:01.000Z|{b}"))
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_last_page_has_no_cursor() {
    let mut fake = fake();
    let rows = json!({"calls": [call_row(
        "2026-12-03T08:00:00.000Z", "00000000-0000-4000-8000-00000000000a", "+14155550101")]});
    fake.dashboard_answers.push_back(Ok(Some(rows.to_string())));
    let body = answer(&mut fake, &get("/api/calls", Some(OPERATOR)))
        .body_json()
        .unwrap();
    assert_eq!(body["calls"].as_array().unwrap().len(), 1);
    assert_eq!(body["next_cursor"], Value::Null);
}

#[test]
fn numbers_are_masked_unless_full_numbers_are_allowed() {
    let rows = json!({"calls": [call_row(
        "2026-12-03T08:00:00.000Z", "00000000-0000-4000-8000-00000000000a", "+14155550101")]});
    let mut masked = fake();
    masked
        .dashboard_answers
        .push_back(Ok(Some(rows.to_string())));
    let body = answer(&mut masked, &get("/api/calls", Some(OPERATOR)))
        .body_json()
        .unwrap();
    assert_eq!(body["calls"][0]["from_number"], "+14*******01");
    assert_eq!(body["calls"][0]["to_number"], "+14*******42");
    assert!(!String::from_utf8_lossy(
        &answer(&mut masked, &get("/api/calls", Some(OPERATOR))).body
    )
    .contains("4155550101"));

    let mut full = fake().var("dashboard_full_numbers", "true");
    full.dashboard_answers.push_back(Ok(Some(rows.to_string())));
    let body = answer(&mut full, &get("/api/calls", Some(OPERATOR)))
        .body_json()
        .unwrap();
    assert_eq!(body["calls"][0]["from_number"], "+14155550101");
}

#[test]
fn numbers_in_a_calls_free_text_are_masked_too() {
    let call = json!({
        "id": "00000000-0000-4000-8000-000000000415", "vapi_call_id": "call-4155550142",
        "org_id": ORG_A, "from_number": "+14155550101", "to_number": "+14155550142",
        "summary": "Caller asked to be called back on 415-555-0199.",
        "transcript": "User: my number is (415) 555 0188\nAI: Got it.",
        "structured_data": {"callback": "+1 415 555 0177", "nested": [{"alt": "415.555.0166"}]},
        "metadata": {"channel": "phone"},
        "events": [{"message_type": "status-update"}],
        "recording_url": "https://storage.example.com/4155550142/recording.wav",
        "ended_reason": "customer-ended-call",
    });
    let mut masked = fake();
    masked
        .dashboard_answers
        .push_back(Ok(Some(call.to_string())));
    let body = answer(
        &mut masked,
        &get("/api/calls/call-4155550142", Some(OPERATOR)),
    )
    .body_json()
    .unwrap();
    let text = body.to_string();
    for number in [
        "4155550199",
        "4155550188",
        "4155550177",
        "4155550166",
        "555 0188",
        "555-0199",
    ] {
        assert!(!text.contains(number), "{number} in {text}");
    }
    assert_eq!(
        body["summary"],
        "Caller asked to be called back on 41******99."
    );
    assert_eq!(body["structured_data"]["callback"], "+14*******77");
    assert_eq!(
        body["vapi_call_id"], "call-4155550142",
        "an id is not a number"
    );
    assert_eq!(
        body["recording_url"], call["recording_url"],
        "a path is not a number"
    );

    let mut full = fake().var("dashboard_full_numbers", "true");
    full.dashboard_answers.push_back(Ok(Some(call.to_string())));
    let body = answer(
        &mut full,
        &get("/api/calls/call-4155550142", Some(OPERATOR)),
    )
    .body_json()
    .unwrap();
    assert_eq!(body["transcript"], call["transcript"]);
}

#[test]
fn an_unchanged_answer_is_304_without_a_body() {
    let mut fake = fake();
    let first = answer(&mut fake, &get("/api/summary", Some(OPERATOR)));
    let etag = first
        .headers
        .iter()
        .find(|(name, _)| *name == "etag")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut again = get("/api/summary", Some(OPERATOR));
    again.headers.push("if-none-match", etag.clone());
    let second = answer(&mut fake, &again);
    assert_eq!(second.status, 304);
    assert!(second.body.is_empty());

    fake.dashboard_answers
        .push_back(Ok(Some(json!({"calls_today": 1}).to_string())));
    let changed = answer(&mut fake, &again);
    assert_eq!(changed.status, 200);
}

#[test]
fn a_missing_or_foreign_call_is_404() {
    let mut fake = fake();
    let response = answer(&mut fake, &get("/api/calls/call-of-org-b", Some(TOKEN_A)));
    assert_eq!(response.status, 404);
    let response = answer(&mut fake, &get("/api/calls/a%20b", Some(TOKEN_A)));
    assert_eq!(response.status, 404);
    assert_eq!(
        fake.dashboard_reads[1],
        Read::Call {
            orgs: Some(ORG_A.into()),
            vapi_call_id: "a b".into()
        }
    );
}

#[test]
fn the_summary_fills_24_hours_and_computes_the_ratio() {
    let mut fake = fake();
    fake.now_ms = 1_796_000_000_000; // 2026-11-30T00:53:20Z
    let figures = json!({
        "calls_today": 3, "in_progress": 1, "agent_lookup_failures_24h": 2,
        "unassigned_calls": 4,
        "last_hour": {"requests": 8, "succeeded": 6, "failed": 2, "p95_seconds": 0.012,
                      "agent_lookup_failures": 1},
        "hourly": [{"hour": "2026-11-30T00:00:00Z", "calls": 2},
                   {"hour": "2026-11-29T01:00:00Z", "calls": 1}],
    });
    fake.dashboard_answers
        .push_back(Ok(Some(figures.to_string())));
    let body = answer(&mut fake, &get("/api/summary", Some(OPERATOR)))
        .body_json()
        .unwrap();
    assert_eq!(body["calls_today"], 3);
    assert_eq!(body["last_hour"]["success_ratio"], 0.75);
    let hourly = body["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 24);
    assert_eq!(
        hourly[0],
        json!({"hour": "2026-11-29T01:00:00Z", "calls": 1})
    );
    assert_eq!(
        hourly[23],
        json!({"hour": "2026-11-30T00:00:00Z", "calls": 2})
    );
    assert_eq!(hourly[10]["calls"], 0);
    assert_eq!(body["scope"], "all");
    assert_eq!(body["unassigned_calls"], 4);
    assert_eq!(body["live"]["relay_url"], Value::Null);
}

#[test]
fn an_organisations_token_never_sees_the_unassigned_count() {
    let mut fake = fake();
    fake.dashboard_answers
        .push_back(Ok(Some(json!({"unassigned_calls": 4}).to_string())));
    let body = answer(&mut fake, &get("/api/summary", Some(TOKEN_A)))
        .body_json()
        .unwrap();
    assert_eq!(body["unassigned_calls"], 0);
}

#[test]
fn a_database_failure_is_503_and_logged() {
    let mut fake = fake();
    fake.database_down = true;
    let response = answer(&mut fake, &get("/api/calls", Some(OPERATOR)));
    assert_eq!(response.status, 503);
    assert_eq!(fake.lines_with("Dashboard read failed").len(), 1);
}

#[test]
fn only_get_and_head() {
    let mut fake = fake();
    let mut post = get("/api/calls", Some(OPERATOR));
    post.method = "POST".into();
    assert_eq!(answer(&mut fake, &post).status, 405);
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b+c"), "a b c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz%4"), "%zz%4");
    assert_eq!(percent_decode("%C3%A9"), "é");
}
