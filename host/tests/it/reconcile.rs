//! Reconciliation with Vapi's API (README, "Reconciliation"): calls whose
//! webhooks were lost on the way are recorded from Vapi's `GET /call`, through
//! the real `.wasm` under both hosts on both stores (`conformance!`), against
//! a local fake of Vapi's API (`common::VapiApi`) that pages, rate-limits and
//! answers one page slowly.
//!
//! Two deployments see the same calls: one receives every webhook (the
//! control), the other loses a share of them and is then reconciled. Their
//! `call_tracking` and `call_logs` rows must then be the same, once each,
//! and stay so when the lost webhooks arrive late and when reconciliation
//! runs again.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const API_KEY: &str = "vapi-private-key-reconcile-1";
const CALLER: &str = "+12125550187";
const LINE_ID: &str = "pn-reconcile-line";
const LINE: &str = "+14155550142";
const SQUAD_LINE_ID: &str = "pn-reconcile-squad";
const SQUAD_LINE: &str = "+14155550177";
const ASSISTANT_ID: &str = "asst-reconcile-ava";
const SQUAD_ID: &str = "squad-reconcile-1";
const VAPI_ORG: &str = "vapi-org-reconcile-1";
const DASHBOARD_OPERATOR: &str = "operator-token-reconcile-1";

fn iso(ms: i64) -> String {
    vapi_edge_core::log::rfc3339(ms)
}

/// The same agents and mappings in each deployment's database.
async fn seed(db: &TestDb) {
    for (role, name, assistant, squad) in [
        ("receptionist", "Ava", Some(ASSISTANT_ID), None),
        ("squad-lead", "Squad", None, Some(SQUAD_ID)),
    ] {
        db.rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id, vapi_squad_id)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                ORG_ID,
                role,
                name,
                assistant.unwrap_or(""),
                squad.unwrap_or(""),
            ],
        )
        .await;
    }
    // An empty id maps nothing (the columns are looked up by equality).
    db.rows(
        "UPDATE agents SET vapi_assistant_id = NULL WHERE vapi_assistant_id = ''",
        &[],
    )
    .await;
    db.rows(
        "UPDATE agents SET vapi_squad_id = NULL WHERE vapi_squad_id = ''",
        &[],
    )
    .await;
    db.seed_lead(ORG_ID, CALLER).await;
    let mapped = db.map_org(VAPI_ORG, ORG_ID);
    assert_eq!(mapped["attributed"]["calls"], 0, "{mapped}");
}

/// The setups a Vapi organisation runs (as in `owners.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Inbound,
    Outbound,
    WebInline,
    Squad,
}

/// Which of a call's webhooks reach the reconciled deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    /// Every one: the call is missing.
    All,
    /// The end-of-call report only: the call is behind.
    Report,
    /// All but the first status update.
    AllButStart,
    /// None.
    Nothing,
}

struct TestCall {
    id: String,
    /// Vapi's `Call`, as `GET /call` lists it.
    listed: Value,
    /// The webhooks, in Vapi's order, and whether each is lost.
    events: Vec<(Value, bool)>,
    lost: Lost,
}

impl TestCall {
    /// A call created at `created`, over (`ended`) or still in progress.
    fn new(setup: Setup, n: usize, created: i64, ended: bool, lost: Lost) -> TestCall {
        let id = unique_id("call-rec");
        let started = created + 2_000;
        let end = started + 30_000 + n as i64 * 1_000;
        let cost = 0.05 + n as f64 / 100.0;
        let ended_reason = [
            "customer-ended-call",
            "assistant-ended-call",
            "silence-timed-out",
        ][n % 3];
        let mut call = json!({
            "id": id, "orgId": VAPI_ORG,
            "createdAt": iso(created), "updatedAt": iso(if ended { end + 4_000 } else { started }),
        });
        let mut common = json!({});
        match setup {
            Setup::Inbound => {
                call["type"] = "inboundPhoneCall".into();
                call["assistantId"] = ASSISTANT_ID.into();
                call["phoneNumberId"] = LINE_ID.into();
                call["customer"] = json!({ "number": CALLER });
                common["phoneNumber"] =
                    json!({"id": LINE_ID, "number": LINE, "assistantId": ASSISTANT_ID});
                common["customer"] = json!({ "number": CALLER });
                common["assistant"] = json!({"id": ASSISTANT_ID, "name": "Ava"});
            }
            Setup::Outbound => {
                call["type"] = "outboundPhoneCall".into();
                call["assistantId"] = ASSISTANT_ID.into();
                call["phoneNumberId"] = LINE_ID.into();
                call["customer"] = json!({ "number": "+16175550123" });
                common["phoneNumber"] = json!({"id": LINE_ID, "number": LINE});
                common["customer"] = json!({ "number": "+16175550123" });
            }
            Setup::WebInline => {
                let inline = json!({"name": "Widget helper",
                    "model": {"provider": "openai", "model": "gpt-4o-mini"}});
                call["type"] = "webCall".into();
                call["assistant"] = inline.clone();
                call["transport"] = json!({"provider": "daily"});
                common["assistant"] = inline;
            }
            Setup::Squad => {
                call["type"] = "inboundPhoneCall".into();
                call["squadId"] = SQUAD_ID.into();
                call["phoneNumberId"] = SQUAD_LINE_ID.into();
                call["customer"] = json!({ "number": CALLER });
                common["phoneNumber"] =
                    json!({"id": SQUAD_LINE_ID, "number": SQUAD_LINE, "squadId": SQUAD_ID});
                common["customer"] = json!({ "number": CALLER });
                // The member speaking: an assistant no agent has.
                common["assistant"] = json!({"id": format!("member-{n}"), "name": "Billing"});
            }
        }
        // Vapi's webhooks carry the call as it was created.
        common["call"] = call.clone();
        let message = |fields: Value| {
            let mut message = common.clone();
            for (key, value) in fields.as_object().unwrap() {
                message[key] = value.clone();
            }
            json!({ "message": message })
        };
        let report = json!({
            "endedReason": ended_reason, "startedAt": iso(started), "endedAt": iso(end),
            "cost": cost,
            "costs": [{"type": "model", "cost": cost / 2.0}, {"type": "vapi", "cost": cost / 2.0}],
            "costBreakdown": {"llm": cost / 2.0, "vapi": cost / 2.0, "total": cost},
            "artifact": {"transcript": format!("AI: Hello, call {n}.\nUser: Hi."), "messages": [],
                         "recording": {"mono": {"combinedUrl": format!("https://storage.vapi.ai/{id}-mono.wav")}}},
            "analysis": {"summary": format!("Call {n} went well."), "successEvaluation": "true"},
        });
        let mut events = vec![message(
            json!({"type": "status-update", "status": "in-progress",
            "timestamp": started}),
        )];
        call["status"] = "in-progress".into();
        if ended {
            events.push(message(json!({"type": "status-update", "status": "ended",
                "endedReason": ended_reason, "timestamp": end})));
            let mut eocr = json!({"type": "end-of-call-report", "timestamp": end + 3_000,
                "durationSeconds": (end - started) as f64 / 1000.0});
            for (key, value) in report.as_object().unwrap() {
                eocr[key] = value.clone();
                call[key] = value.clone();
            }
            events.push(message(eocr));
            call["status"] = "ended".into();
        }
        let count = events.len();
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let lost_here = match lost {
                    Lost::All => true,
                    Lost::Report => i == count - 1 && ended,
                    Lost::AllButStart => i > 0,
                    Lost::Nothing => false,
                };
                (event, lost_here)
            })
            .collect();
        TestCall {
            id,
            listed: call,
            events,
            lost,
        }
    }
}

fn options(store: StoreKind, host: HostKind, api: Option<&VapiApi>, relay: &Relay) -> AppOptions {
    let mut extra = vec![
        ("admin_token".into(), ADMIN_TOKEN.into()),
        ("metrics_token".into(), METRICS_TOKEN.into()),
        ("agent_lookup_retry_ms".into(), "20".into()),
        ("dashboard_token".into(), DASHBOARD_OPERATOR.into()),
        // Two deployments' SQLite stores share a label ("default") and this
        // one Redis: their claims must not meet (RUNBOOK §7, claim_scope).
        ("claim_scope".into(), unique_id("reconcile-scope")),
    ];
    if let Some(api) = api {
        extra.extend([
            ("vapi_api_key".into(), API_KEY.into()),
            ("vapi_api_url".into(), api.origin()),
            ("vapi_api_allowed_host".into(), api.origin()),
            // Small pages and runs, so paging and resuming are exercised.
            ("reconcile_page_size".into(), "4".into()),
            ("reconcile_max_pages".into(), "3".into()),
            ("reconcile_lookback_hours".into(), "2".into()),
        ]);
    }
    AppOptions {
        host,
        store,
        relay_url: Some(relay.url()),
        extra,
        ..Default::default()
    }
}

/// Every call's rows as a user compares them: `call_logs` (its metadata
/// without reconciliation's marks) and `call_tracking`, by call id, with the
/// agent by role (ids differ between databases).
async fn rows(
    db: &TestDb,
    ids: &[String],
) -> BTreeMap<String, (Vec<Option<String>>, Value, Value, Vec<Option<String>>)> {
    let mut rows = BTreeMap::new();
    for id in ids {
        let Some(log) = db
            .row(
                "SELECT l.org_id, a.role, l.status, l.status_rank, l.direction, l.from_number,
                        l.to_number, l.started_at, l.ended_at, l.ended_reason, l.duration_seconds,
                        l.cost, l.summary, l.transcript, l.recording_url, l.success_evaluation,
                        l.vapi_org_id, l.tenant, l.lead_id IS NOT NULL, l.metadata, l.costs
                 FROM call_logs l LEFT JOIN agents a ON a.id = l.agent_id
                 WHERE l.vapi_call_id = $1",
                &[id],
            )
            .await
        else {
            continue;
        };
        let mut metadata = log.json(19);
        if let Some(object) = metadata.as_object_mut() {
            object.remove("source");
            object.remove("reconciled_at");
        }
        let costs = log.opt(20).map_or(Value::Null, |_| log.json(20));
        let tracking = db
            .row(
                "SELECT t.org_id, a.role, t.direction, t.from_number, t.to_number, t.status,
                        t.status_rank, t.vapi_org_id, t.tenant
                 FROM call_tracking t LEFT JOIN agents a ON a.id = t.agent_id
                 WHERE t.vapi_call_id = $1",
                &[id],
            )
            .await
            .map(|row| row.0)
            .unwrap_or_default();
        rows.insert(
            id.clone(),
            (log.0[..19].to_vec(), metadata, costs, tracking),
        );
    }
    rows
}

async fn deliver(app: &WebhookApp, event: &Value) -> String {
    let response = app.deliver(event).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn reconcile(app: &WebhookApp, query: &str) -> TestResponse {
    send_bearer(
        app.host.addr,
        "POST",
        &format!("/admin/reconcile{query}"),
        ADMIN_TOKEN,
    )
    .await
}

/// POSTs until a run says it has caught up; every run's report.
async fn reconcile_until_done(app: &WebhookApp, query: &str) -> Vec<Value> {
    let mut reports = Vec::new();
    let mut query = query.to_string();
    for _ in 0..20 {
        let response = reconcile(app, &query).await;
        assert_eq!(response.status, 200, "{}", response.text());
        let report = response.json();
        reports.push(report.clone());
        if report["more"] == false {
            return reports;
        }
        query.clear();
    }
    panic!("reconciliation never caught up: {reports:?}");
}

fn total(reports: &[Value], key: &str) -> i64 {
    reports.iter().map(|r| r[key].as_i64().unwrap_or(0)).sum()
}

/// A run of calls where a share of their webhooks is lost ends, after
/// reconciliation, with every call recorded exactly once and the same rows as
/// a deployment that received every webhook; late webhooks and a second run
/// change nothing. Vapi's API rate-limits at first and answers one page slowly.
async fn lost_webhooks_are_recovered_exactly_once(store: StoreKind, host: HostKind) {
    let api = VapiApi::start(API_KEY).await;
    let relay = Relay::start(RelayMode::Ok).await;
    let control_relay = Relay::start(RelayMode::Ok).await;
    let control = WebhookApp::start(options(store, host, None, &control_relay)).await;
    let subject = WebhookApp::start(options(store, host, Some(&api), &relay)).await;
    seed(&control.db).await;
    seed(&subject.db).await;

    // 24 calls over the last hour, four setups, four ways of losing their
    // webhooks; 2 calls still in progress. Pages are 4 long and each after
    // the first starts with the last one's oldest call again, so page
    // boundaries fall on calls 22, 19, 16, 13, 10, 7, 4: calls 9 and 10, and
    // 3 and 4, share a creation time across a boundary.
    let base = now_ms() - 3_600_000;
    let setups = [
        Setup::Inbound,
        Setup::Outbound,
        Setup::WebInline,
        Setup::Squad,
    ];
    let losses = [Lost::All, Lost::Report, Lost::AllButStart, Lost::Nothing];
    let mut calls = Vec::new();
    for n in 0..24 {
        let created = match n {
            3 | 4 => base + 4 * 60_000,
            9 | 10 => base + 10 * 60_000,
            n => base + n as i64 * 60_000,
        };
        calls.push(TestCall::new(
            setups[n % 4],
            n,
            created,
            true,
            losses[(n / 4) % 4],
        ));
    }
    let unfinished: Vec<TestCall> = (0..2)
        .map(|n| {
            TestCall::new(
                Setup::Inbound,
                30 + n,
                now_ms() - 20_000 - n as i64,
                false,
                Lost::AllButStart,
            )
        })
        .collect();
    {
        let mut state = api.state();
        state.calls = calls
            .iter()
            .chain(&unfinished)
            .map(|c| c.listed.clone())
            .collect();
        state.lines.insert(LINE_ID.into(), LINE.into());
        state.lines.insert(SQUAD_LINE_ID.into(), SQUAD_LINE.into());
        state.rate_limit_next = 2;
        state.slow_page = Some((1, Duration::from_millis(1_500)));
    }
    let (mut dropped, mut sent) = (0, 0);
    for call in calls.iter().chain(&unfinished) {
        for (event, lost) in &call.events {
            deliver(&control, event).await;
            if *lost {
                dropped += 1;
            } else {
                deliver(&subject, event).await;
                sent += 1;
            }
        }
    }
    let ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
    let expected = rows(&control.db, &ids).await;
    assert_eq!(
        expected.len(),
        24,
        "the control has every call: {} rows",
        control.db.count("SELECT count(*) FROM call_logs").await
    );
    let missing_before = ids.len() - rows(&subject.db, &ids).await.len();

    // Reconcile, run after run, as a scheduler does.
    let started = Instant::now();
    let reports = reconcile_until_done(&subject, "").await;
    let took = started.elapsed();
    let (missing, updated, failed) = (
        total(&reports, "missing"),
        total(&reports, "updated"),
        total(&reports, "failed"),
    );
    let lost = |kinds: &[Lost]| calls.iter().filter(|c| kinds.contains(&c.lost)).count() as i64;
    let behind = lost(&[Lost::Report, Lost::AllButStart]);
    assert_eq!(missing as usize, missing_before, "{reports:#?}");
    assert_eq!(
        missing,
        lost(&[Lost::All]),
        "every call whose webhooks were all lost"
    );
    assert_eq!(
        updated, behind,
        "every call whose report was lost: {reports:#?}"
    );
    assert_eq!(failed, 0, "{reports:#?}");
    assert!(
        reports.len() >= 2,
        "runs of 3 pages resume where the last stopped"
    );
    let last = reports.last().unwrap();
    assert_eq!(last["outcome"], "complete");
    // The unfinished calls were left for a later run, and hold the cursor.
    assert!(total(&reports, "unfinished") >= 2);
    let oldest_unfinished = unfinished
        .iter()
        .map(|c| c.listed["createdAt"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    assert_eq!(last["cursor"].as_str(), Some(oldest_unfinished.as_str()));
    assert_eq!(
        rows(&subject.db, &ids).await,
        expected,
        "the same rows as if every webhook had come"
    );
    let lists = api.list_requests();
    for shared in [base + 10 * 60_000, base + 4 * 60_000] {
        assert!(
            lists
                .iter()
                .any(|p| p.contains(&format!("createdAtLe={}", iso(shared)))),
            "a page bound fell on a shared instant, read again from there: {lists:#?}"
        );
    }
    assert_eq!(
        api.state()
            .requests
            .iter()
            .filter(|(_, authorised)| !authorised)
            .count(),
        0
    );

    // Every recorded report was notified once, the reconciled ones marked.
    let reconciled_events = relay
        .wait_for(sent + (missing + updated) as usize, Duration::from_secs(10))
        .await;
    let marked = reconciled_events
        .iter()
        .filter_map(|hit| serde_json::from_slice::<Value>(&hit.body).ok())
        .filter(|event| event["source"] == "reconciliation")
        .count();
    assert_eq!(marked as i64, missing + updated);
    let (tracking, logs, _) = all_call_rows(&subject.db).await;

    // The lost webhooks arrive late: nothing changes twice.
    let mut late = BTreeMap::<String, usize>::new();
    for call in &calls {
        for (event, lost) in &call.events {
            if *lost {
                *late.entry(deliver(&subject, event).await).or_default() += 1;
            }
        }
    }
    assert_eq!(
        late.get("duplicate").copied().unwrap_or(0) as i64,
        missing + behind,
        "every late report is a duplicate: {late:?}"
    );
    let after_late = rows(&subject.db, &ids).await;
    assert_eq!(
        after_late, expected,
        "late webhooks leave the rows as they were"
    );
    let counts = all_call_rows(&subject.db).await;
    assert_eq!((counts.0, counts.1), (tracking, logs), "no row added");

    // A second reconciliation over the same hour finds nothing to do.
    let again = reconcile_until_done(&subject, &format!("?from={}", iso(base - 60_000))).await;
    assert_eq!(
        (
            total(&again, "missing"),
            total(&again, "updated"),
            total(&again, "failed")
        ),
        (0, 0, 0),
        "{again:#?}"
    );
    assert_eq!(rows(&subject.db, &ids).await, expected);

    // One request says when it ran and what it found; /metrics counts it.
    let status = send_bearer(subject.host.addr, "GET", "/admin/reconcile", ADMIN_TOKEN).await;
    assert_eq!(status.status, 200, "{}", status.text());
    let status = status.json();
    assert_eq!(status["enabled"], true);
    assert!(status["last_success_at"].is_string(), "{status}");
    assert_eq!(status["totals"]["missing"], missing);
    assert_eq!(status["last_run"]["outcome"], "complete");
    // The dashboard marks the calls reconciliation recorded, and its summary
    // says when it ran and what it found.
    let listed = send_bearer(
        subject.host.addr,
        "GET",
        "/api/calls?limit=100",
        DASHBOARD_OPERATOR,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let marked: usize = listed.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reconciled"] == true)
        .count();
    assert_eq!(marked as i64, missing + behind);
    let summary = send_bearer(subject.host.addr, "GET", "/api/summary", DASHBOARD_OPERATOR)
        .await
        .json();
    let scope = &summary["reconciliation"][0];
    assert_eq!(
        (scope["tenant"].as_str(), scope["outcome"].as_str()),
        (Some(""), Some("complete")),
        "{summary}"
    );
    assert_eq!(scope["missing_total"], missing);
    assert!(scope["last_run_at"].is_string());
    let exposition = metrics(subject.host.addr).await;
    assert!(
        exposition.contains(&format!(
            "vapi_edge_reconcile_calls_total{{tenant=\"\",result=\"missing\"}} {missing}"
        )),
        "{exposition}"
    );
    // No delivery was invented for the calls whose webhooks never came (each
    // delivery's row is written just after its answer).
    let delivered = (sent + late.values().sum::<usize>()) as i64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut deliveries = 0;
    while Instant::now() < deadline {
        deliveries = subject
            .db
            .count("SELECT count(*) FROM webhook_events")
            .await;
        if deliveries >= delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries, delivered);
    figure(&format!(
        "reconcile {} {}: calls 24 (+2 in progress), webhooks dropped {dropped} of {}, calls missing {missing_before}, found {missing}, brought up to date {updated}, doubled 0; {} runs, {} list requests, {:.2} s (two 429s, one 1.5 s page)",
        host.name(),
        store.name(),
        dropped + sent,
        reports.len(),
        lists.len(),
        took.as_secs_f64(),
    ));
}

/// Without a key the route says reconciliation is off; a wrong key is a clear
/// error naming the setting, kept in the status; the API's host must be allowed.
async fn a_wrong_or_missing_api_key_is_a_clear_answer(store: StoreKind, host: HostKind) {
    let api = VapiApi::start("the-real-key").await;
    let relay = Relay::start(RelayMode::Ok).await;
    let off = WebhookApp::start(options(store, host, None, &relay)).await;
    let response = reconcile(&off, "").await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json()["reconciliation"], "off");
    let subject = WebhookApp::start(options(store, host, Some(&api), &relay)).await;
    let response = reconcile(&subject, "").await;
    assert_eq!(response.status, 502, "{}", response.text());
    let body = response.json();
    assert_eq!(body["outcome"], "unauthorized");
    assert!(
        body["error"].as_str().unwrap().contains("vapi_api_key"),
        "{body}"
    );
    let status = send_bearer(subject.host.addr, "GET", "/admin/reconcile", ADMIN_TOKEN)
        .await
        .json();
    assert_eq!(status["last_run"]["outcome"], "unauthorized", "{status}");
    assert!(status["last_success_at"].is_null());
    let line = subject
        .host
        .wait_for_log(Duration::from_secs(5), |l| {
            l["msg"] == "Reconciliation misconfigured"
        })
        .await;
    assert!(!line.to_string().contains(API_KEY));
    // Not the admin token: refused before anything is read.
    let refused = send_bearer(subject.host.addr, "POST", "/admin/reconcile", "wrong").await;
    assert_eq!(refused.status, 401);
}

/// Each tenant reconciles its own Vapi organisation with its own key, into its
/// own scope; the deployment's key is not a tenant's.
async fn each_tenant_reconciles_with_its_own_key(store: StoreKind, host: HostKind) {
    const SECRETS_KEY: &str = "tenant-secrets-key-for-the-tests-0123456789";
    let api = VapiApi::start("acme-private-key").await;
    let relay = Relay::start(RelayMode::Ok).await;
    let mut options = options(store, host, Some(&api), &relay);
    options
        .extra
        .push(("tenant_secrets_key".into(), SECRETS_KEY.into()));
    for (name, value) in options.extra.iter_mut() {
        if name == "vapi_api_key" {
            *value = "the-deployments-own-key".into();
        }
    }
    let app = WebhookApp::start(options).await;
    app.db.tenant(
        "set",
        SECRETS_KEY,
        &[
            "acme",
            "vapi_server_secret=acme-webhook-secret",
            "vapi_api_key=acme-private-key",
        ],
    );
    let created = now_ms() - 600_000;
    let call = TestCall::new(Setup::WebInline, 1, created, true, Lost::All);
    api.state().calls = vec![call.listed.clone()];
    // The tenant maps its Vapi organisation itself.
    run_host_ok(
        &[
            "map-org",
            "--tenant",
            "acme",
            "--vapi-org-id",
            VAPI_ORG,
            "--org-id",
            ORG_ID,
        ],
        &app.db,
    );

    let response = reconcile(&app, "/acme").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["missing"], 1);
    let row = app
        .db
        .row(
            "SELECT tenant, org_id FROM call_logs WHERE vapi_call_id = $1",
            &[&call.id],
        )
        .await
        .expect("recorded");
    assert_eq!(
        (row.text(0), row.opt(1)),
        ("acme".to_string(), Some(ORG_ID.to_string()))
    );
    // The deployment's own key is not acme's: Vapi refuses it.
    assert_eq!(reconcile(&app, "").await.status, 502);
    assert_eq!(reconcile(&app, "/nobody").await.status, 404);
    let status = send_bearer(app.host.addr, "GET", "/admin/reconcile/acme", ADMIN_TOKEN)
        .await
        .json();
    assert_eq!(status["tenant"], "acme");
    assert_eq!(status["totals"]["missing"], 1);
}

/// Two runs at once (two replicas' schedules) and the lost reports arriving
/// while reconciliation records them: one run at a time, and one effect per
/// event (one row each, one notification per report).
async fn concurrent_runs_and_late_webhooks_make_one_effect(store: StoreKind, host: HostKind) {
    let api = VapiApi::start(API_KEY).await;
    let relay = Relay::start(RelayMode::Ok).await;
    let subject = WebhookApp::start(options(store, host, Some(&api), &relay)).await;
    seed(&subject.db).await;
    let base = now_ms() - 1_800_000;
    let calls: Vec<TestCall> = (0..12)
        .map(|n| TestCall::new(Setup::Inbound, n, base + n as i64 * 60_000, true, Lost::All))
        .collect();
    {
        let mut state = api.state();
        state.calls = calls.iter().map(|c| c.listed.clone()).collect();
        state.lines.insert(LINE_ID.into(), LINE.into());
        // The first page waits, so the second run and the webhooks meet it.
        state.slow_page = Some((0, Duration::from_millis(800)));
    }
    let started = Instant::now();
    let first = {
        let addr = subject.host.addr;
        tokio::spawn(
            async move { send_bearer(addr, "POST", "/admin/reconcile", ADMIN_TOKEN).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = reconcile(&subject, "").await;
    assert_eq!(second.status, 409, "{}", second.text());
    // The reports come in just as the slow page is answered: they meet the
    // first run recording the same calls.
    tokio::time::sleep(Duration::from_millis(790).saturating_sub(started.elapsed())).await;
    let reports: Vec<Value> = calls
        .iter()
        .map(|c| c.events.last().unwrap().0.clone())
        .collect();
    let deliveries: Vec<_> = reports
        .iter()
        .enumerate()
        .map(|(i, report)| {
            let (addr, bytes) = (subject.host.addr, bytes_of(report));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i as u64 * 4)).await;
                let headers = vapi_headers(&bytes);
                send(
                    addr,
                    "POST",
                    "/webhooks/vapi",
                    &header_refs(&headers),
                    bytes,
                )
                .await
            })
        })
        .collect();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for delivery in deliveries {
        let response = delivery.await.unwrap();
        // A report whose claim the run holds is answered as a concurrent
        // duplicate is (Vapi retries it, and the retry is a duplicate).
        let outcome = match response.status {
            200 => response.json()["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            _ if response.text().contains("being handled") => "in_progress".to_string(),
            _ => panic!("{} {}", response.status, response.text()),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let first = first.await.unwrap();
    assert_eq!(
        first.status,
        200,
        "a run that met a delivery in flight: {}",
        first.text()
    );
    let run = first.json();
    // Whatever each side met, a later run completes the rest.
    reconcile_until_done(&subject, "").await;
    for report in &reports {
        assert_eq!(deliver(&subject, report).await, "duplicate");
    }
    for call in &calls {
        assert_eq!(
            call_rows(&subject.db, &call.id).await,
            (1, 1, 1),
            "call {}",
            call.id
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut notified = BTreeMap::<String, usize>::new();
    for event in relay.events() {
        if event["event_type"] == "end-of-call-report" {
            *notified
                .entry(event["vapi_call_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(notified.len(), calls.len());
    assert!(
        notified.values().all(|n| *n == 1),
        "one notification per report: {notified:?}"
    );
    figure(&format!(
        "reconcile race {} {}: 12 reports delivered as a run recorded them (webhooks {outcomes:?}; the run {} missing {} up to date {} failed {}), second run 409, rows 12/12 once, notifications 12",
        host.name(),
        store.name(),
        run["outcome"],
        run["missing"],
        run["up_to_date"],
        run["failed"],
    ));
}

/// `vapi-edge-host map-org` (or any command taking `--pg-url`/`--sqlite`) on `db`.
fn run_host_ok(args: &[&str], db: &TestDb) {
    let [flag, target] = db.database_args();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([flag.as_str(), target.as_str()]);
    let out = run_host(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `vapi-edge-host reconcile` drives the route run after run until it has
/// caught up, and fails loudly when the service refuses.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_command_reconciles_until_caught_up() {
    let api = VapiApi::start(API_KEY).await;
    let relay = Relay::start(RelayMode::Ok).await;
    let app = WebhookApp::start(options(
        StoreKind::Postgres,
        HostKind::VapiEdgeHost,
        Some(&api),
        &relay,
    ))
    .await;
    seed(&app.db).await;
    let base = now_ms() - 1_800_000;
    let calls: Vec<TestCall> = (0..14)
        .map(|n| {
            TestCall::new(
                Setup::WebInline,
                n,
                base + n as i64 * 60_000,
                true,
                Lost::All,
            )
        })
        .collect();
    api.state().calls = calls.iter().map(|c| c.listed.clone()).collect();
    let url = format!("http://{}", app.host.addr);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(host_binary())
            .args(["reconcile", "--url", &url, "--token", ADMIN_TOKEN])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rounds: Vec<Value> = stdout
        .lines()
        .filter_map(|line| {
            line.split_once(": ")
                .map(|(_, json)| serde_json::from_str(json).unwrap())
        })
        .collect();
    assert!(rounds.len() >= 2, "{stdout}");
    assert_eq!(rounds.last().unwrap()["more"], false);
    assert_eq!(total(&rounds, "missing"), 14, "{stdout}");
    assert_eq!(app.db.count("SELECT count(*) FROM call_logs").await, 14);
    // A refusal is an error with the service's answer.
    let url = format!("http://{}", app.host.addr);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(host_binary())
            .args(["reconcile", "--url", &url, "--token", "wrong"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
}

conformance! {
    every_store: [
        lost_webhooks_are_recovered_exactly_once,
        a_wrong_or_missing_api_key_is_a_clear_answer,
        each_tenant_reconciles_with_its_own_key,
        concurrent_runs_and_late_webhooks_make_one_effect,
    ],
    postgres: [],
    sqlite: [],
    host_only: [],
}
