//! An owner for every call, end to end through the real `.wasm`, on both
//! stores and under both hosts (`conformance!`): calls built the way Vapi's
//! OpenAPI `Call` and `ServerMessage*` schemas shape them, for every setup a
//! Vapi organisation runs (an assistant on a phone number, outbound calls,
//! the web widget's inline assistant, squads whose active member nobody
//! registered, workflows), each call's webhooks in Vapi's order.
//!
//! A call is owned by the first handle that resolves (README, "Who owns a
//! call"); a call with none and no assistant id to wait for is recorded
//! without an organisation, shown to operators, counted, and attributed by
//! `vapi-edge-host map-org`.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLER: &str = "+12125550187";
const LINE: &str = "+14155550142";
const OPERATOR_TOKEN: &str = "operator-token-owners-1";
const ORG_TOKEN: &str = "org-token-owners-0001";

/// The setups a Vapi organisation runs, as Vapi's schemas shape each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// An inbound phone call answered by a saved assistant (an agent has it).
    InboundAssistant,
    /// An outbound call placed with a saved assistant.
    OutboundAssistant,
    /// The web widget's `vapi.start({...})`: an inline assistant, no id, no
    /// line; only `call.orgId` names the Vapi organisation (mapped).
    WebInline,
    /// A squad call, its active member an assistant nobody registered; the
    /// squad is mapped to an agent.
    SquadMember,
    /// A workflow call; the workflow is mapped to an agent.
    Workflow,
    /// The web widget of a Vapi organisation nobody mapped: unassigned.
    WebUnmapped,
}

const SETUPS: [Setup; 6] = [
    Setup::InboundAssistant,
    Setup::OutboundAssistant,
    Setup::WebInline,
    Setup::SquadMember,
    Setup::Workflow,
    Setup::WebUnmapped,
];

/// What the deployment knows: the agents, the mapped ids.
struct Known {
    assistant: Agent,
    squad_agent: Agent,
    workflow_agent: Agent,
    squad_id: String,
    workflow_id: String,
    vapi_org: String,
}

impl Known {
    /// Seeds the agents and maps the squad, the workflow and (with the real
    /// `vapi-edge-host map-org`) the Vapi organisation, all of [`ORG_ID`].
    async fn seed(db: &TestDb) -> Known {
        let assistant = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
        let squad_agent = db.seed_agent(ORG_ID, "squad-lead", "Squad").await;
        let workflow_agent = db.seed_agent(ORG_ID, "flow", "Flow").await;
        let squad_id = unique_id("squad");
        let workflow_id = unique_id("workflow");
        db.rows(
            "UPDATE agents SET vapi_squad_id = $1 WHERE id = $2",
            &[&squad_id, &squad_agent.id],
        )
        .await;
        db.rows(
            "UPDATE agents SET vapi_workflow_id = $1 WHERE id = $2",
            &[&workflow_id, &workflow_agent.id],
        )
        .await;
        let vapi_org = unique_id("vapi-org");
        let mapped = db.map_org(&vapi_org, ORG_ID);
        assert_eq!(mapped["attributed"]["calls"], 0, "{mapped}");
        Known {
            assistant,
            squad_agent,
            workflow_agent,
            squad_id,
            workflow_id,
            vapi_org,
        }
    }

    /// The organisation and agent a call of `setup` must end with.
    fn owner(&self, setup: Setup) -> (Option<&str>, Option<&str>) {
        match setup {
            Setup::InboundAssistant | Setup::OutboundAssistant => {
                (Some(ORG_ID), Some(&self.assistant.id))
            }
            Setup::SquadMember => (Some(ORG_ID), Some(&self.squad_agent.id)),
            Setup::Workflow => (Some(ORG_ID), Some(&self.workflow_agent.id)),
            Setup::WebInline => (Some(ORG_ID), None),
            Setup::WebUnmapped => (None, None),
        }
    }
}

/// One call of `setup`, and the webhooks Vapi sends for it, in its order.
struct TestCall {
    id: String,
    setup: Setup,
    events: Vec<Value>,
    ended_reason: &'static str,
    cost: f64,
}

fn iso(ms: i64) -> String {
    vapi_edge_core::log::rfc3339(ms)
}

impl TestCall {
    fn new(setup: Setup, known: &Known, n: usize) -> TestCall {
        let id = unique_id("call");
        let started = now_ms() - 60_000;
        let ended = started + 30_000 + n as i64;
        let cost = 0.05 + n as f64 / 100.0;
        let ended_reason = match n % 3 {
            0 => "customer-ended-call",
            1 => "assistant-ended-call",
            _ => "silence-timed-out",
        };
        let vapi_org = match setup {
            Setup::WebUnmapped => format!("vapi-org-unmapped-{id}"),
            _ => known.vapi_org.clone(),
        };
        let mut call = json!({
            "id": id, "orgId": vapi_org,
            "createdAt": iso(started - 2_000), "updatedAt": iso(started - 2_000),
        });
        let mut common = json!({});
        let inline = json!({"name": "Widget helper",
            "model": {"provider": "openai", "model": "gpt-4o-mini"},
            "voice": {"provider": "vapi", "voiceId": "Elliot"}});
        match setup {
            Setup::InboundAssistant => {
                call["type"] = "inboundPhoneCall".into();
                call["assistantId"] = known.assistant.assistant_id.as_str().into();
                call["phoneNumberId"] = "pn-owners-line".into();
                call["customer"] = json!({ "number": CALLER });
                common["phoneNumber"] = json!({"id": "pn-owners-line", "number": LINE,
                    "assistantId": known.assistant.assistant_id});
                common["customer"] = json!({ "number": CALLER });
                common["assistant"] = json!({"id": known.assistant.assistant_id, "name": "Ava"});
            }
            Setup::OutboundAssistant => {
                call["type"] = "outboundPhoneCall".into();
                call["assistantId"] = known.assistant.assistant_id.as_str().into();
                call["customer"] = json!({ "number": "+16175550123" });
                common["phoneNumber"] = json!({"id": "pn-owners-line", "number": LINE});
                common["customer"] = json!({ "number": "+16175550123" });
            }
            Setup::WebInline | Setup::WebUnmapped => {
                call["type"] = "webCall".into();
                call["assistant"] = inline.clone();
                call["transport"] =
                    json!({"provider": "daily", "callUrl": "https://vapi.daily.co/x"});
                common["assistant"] = inline.clone();
            }
            Setup::SquadMember => {
                call["type"] = "inboundPhoneCall".into();
                call["squadId"] = known.squad_id.as_str().into();
                call["phoneNumberId"] = "pn-owners-squad".into();
                call["customer"] = json!({ "number": CALLER });
                common["phoneNumber"] = json!({"id": "pn-owners-squad", "number": "+14155550177",
                    "squadId": known.squad_id});
                common["customer"] = json!({ "number": CALLER });
                // The member speaking now: a saved assistant no agent has.
                common["assistant"] = json!({"id": unique_id("member"), "name": "Billing"});
            }
            Setup::Workflow => {
                call["type"] = "webCall".into();
                call["workflowId"] = known.workflow_id.as_str().into();
            }
        }
        common["call"] = call;
        let message = |fields: Value| {
            let mut message = common.clone();
            for (key, value) in fields.as_object().unwrap() {
                message[key] = value.clone();
            }
            json!({ "message": message })
        };
        let status = |status: &str, at: i64| {
            message(json!({"type": "status-update", "status": status, "timestamp": at}))
        };
        let mut events = Vec::new();
        if setup == Setup::OutboundAssistant {
            events.push(status("queued", started - 1_500));
            events.push(status("ringing", started - 1_000));
        }
        events.push(status("in-progress", started));
        events.push(message(json!({"type": "status-update", "status": "ended",
            "endedReason": ended_reason, "timestamp": ended})));
        events.push(message(json!({
            "type": "end-of-call-report", "timestamp": ended + 5_000,
            "endedReason": ended_reason, "startedAt": iso(started), "endedAt": iso(ended),
            "cost": cost,
            "costs": [{"type": "model", "cost": cost / 2.0}, {"type": "vapi", "cost": cost / 2.0}],
            "artifact": {"transcript": "AI: Hello.\nUser: Hi.", "messages": []},
            "analysis": {"summary": "A short call.", "successEvaluation": "true"},
        })));
        TestCall {
            id,
            setup,
            events,
            ended_reason,
            cost,
        }
    }

    fn direction(&self) -> &'static str {
        match self.setup {
            Setup::InboundAssistant | Setup::SquadMember => "inbound",
            Setup::OutboundAssistant => "outbound",
            Setup::WebInline | Setup::WebUnmapped | Setup::Workflow => "web",
        }
    }

    /// The call's rows as the database has them, checked against what was sent.
    async fn check(&self, db: &TestDb, known: &Known) {
        let what = format!("{:?} call {}", self.setup, self.id);
        let row = db
            .row(
                "SELECT org_id, agent_id, status, ended_reason, cost, direction, vapi_org_id,
                        summary, started_at, ended_at
                 FROM call_logs WHERE vapi_call_id = $1",
                &[&self.id],
            )
            .await
            .unwrap_or_else(|| panic!("{what}: no call_logs row"));
        let (org, agent) = known.owner(self.setup);
        assert_eq!(row.opt(0).as_deref(), org, "{what}: organisation");
        assert_eq!(row.opt(1).as_deref(), agent, "{what}: agent");
        assert_eq!(row.text(2), "ended", "{what}: status");
        assert_eq!(row.text(3), self.ended_reason, "{what}: ended reason");
        let cost: f64 = row.text(4).parse().unwrap();
        assert!((cost - self.cost).abs() < 1e-9, "{what}: cost {cost}");
        assert_eq!(row.text(5), self.direction(), "{what}: direction");
        assert!(row.opt(6).is_some(), "{what}: Vapi organisation kept");
        assert_eq!(row.text(7), "A short call.", "{what}: summary");
        assert!(
            row.opt(8).is_some() && row.opt(9).is_some(),
            "{what}: times"
        );
        let tracked = i64::from(self.direction() == "inbound");
        assert_eq!(
            call_rows(db, &self.id).await,
            (tracked, 1, self.events.len() as i64),
            "{what}: (call_tracking, call_logs, processed events)"
        );
    }
}

fn options(store: StoreKind, host: HostKind) -> AppOptions {
    AppOptions {
        host,
        store,
        extra: vec![
            ("metrics_token".into(), METRICS_TOKEN.into()),
            (
                "dashboard_token".into(),
                format!("{ORG_ID}:{ORG_TOKEN},{OPERATOR_TOKEN}"),
            ),
        ],
        ..Default::default()
    }
}

/// The web widget's call, known only by `call.orgId`: owned by the mapped
/// organisation at once (no agent-lookup wait), with every report field.
async fn an_inline_assistant_web_call_is_owned_by_its_vapi_organisation(
    store: StoreKind,
    host: HostKind,
) {
    let app = WebhookApp::start(options(store, host)).await;
    let known = Known::seed(&app.db).await;
    let call = TestCall::new(Setup::WebInline, &known, 0);
    for event in &call.events {
        let started = Instant::now();
        let response = app.deliver(event).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["outcome"], "recorded");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no agent-lookup retry: {:?}",
            started.elapsed()
        );
    }
    call.check(&app.db, &known).await;
    let metadata = app
        .db
        .row(
            "SELECT metadata FROM call_logs WHERE vapi_call_id = $1",
            &[&call.id],
        )
        .await
        .unwrap()
        .json(0);
    assert_eq!(metadata["channel"], "web");
    // The organisation's token sees it.
    let listed = send_bearer(app.host.addr, "GET", "/api/calls", ORG_TOKEN).await;
    assert!(listed.text().contains(&call.id), "{}", listed.text());
}

/// A squad call whose active member is an assistant nobody registered: owned
/// by the squad's agent at once, not refused after the lookup's retries.
async fn a_squad_call_whose_member_is_unregistered_is_owned_by_its_squad(
    store: StoreKind,
    host: HostKind,
) {
    let app = WebhookApp::start(options(store, host)).await;
    let known = Known::seed(&app.db).await;
    let call = TestCall::new(Setup::SquadMember, &known, 1);
    let started = Instant::now();
    for event in &call.events {
        let response = app.deliver(event).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["outcome"], "recorded");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "three events, no 3.85 s lookup: {:?}",
        started.elapsed()
    );
    call.check(&app.db, &known).await;
    // A redelivery is still one row.
    let again = app.deliver(&call.events[0]).await;
    assert_eq!(again.json()["outcome"], "duplicate");
}

/// A call no handle resolves, with no assistant id to wait for: recorded at
/// once without an organisation; visible to operators (API, summary) and
/// not to an organisation's token; counted in /metrics; attributed, with its
/// tracking row and deliveries, by `vapi-edge-host map-org`; and a later
/// event of it then finds the organisation itself.
async fn an_unresolvable_call_is_recorded_visible_assignable_and_counted(
    store: StoreKind,
    host: HostKind,
) {
    let app = WebhookApp::start(options(store, host)).await;
    let known = Known::seed(&app.db).await;
    let web = TestCall::new(Setup::WebUnmapped, &known, 2);
    let unmapped = web.events[0]["message"]["call"]["orgId"]
        .as_str()
        .unwrap()
        .to_string();
    // An inbound call of the same Vapi organisation on a line nobody
    // mapped, its assistant inline.
    let inbound_id = unique_id("call");
    let inbound = json!({"message": {
        "type": "status-update", "status": "in-progress", "timestamp": now_ms(),
        "call": {"id": inbound_id, "orgId": unmapped, "type": "inboundPhoneCall",
                 "assistant": {"name": "inline"}, "phoneNumberId": "pn-nobody",
                 "customer": {"number": CALLER}},
        "phoneNumber": {"id": "pn-nobody", "number": "+14155550199"},
        "customer": {"number": CALLER}}});
    let lead = app.db.seed_lead(ORG_ID, CALLER).await;
    for event in web.events.iter().chain([&inbound]) {
        let started = Instant::now();
        let response = app.deliver(event).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["outcome"], "unassigned");
        assert!(started.elapsed() < Duration::from_secs(2), "no retry wait");
    }
    assert_eq!(
        app.deliver(&web.events[2]).await.json()["outcome"],
        "duplicate"
    );
    assert_eq!(call_rows(&app.db, &inbound_id).await, (1, 1, 1));
    let unassigned = app
        .db
        .count("SELECT count(*) FROM call_logs WHERE org_id IS NULL")
        .await;
    assert_eq!(unassigned, 2);

    // Visible: the operator lists both and the summary counts them; an
    // organisation's token sees neither.
    let listed = send_bearer(app.host.addr, "GET", "/api/calls", OPERATOR_TOKEN).await;
    let calls = listed.json()["calls"].as_array().unwrap().clone();
    let nobodys: Vec<&Value> = calls.iter().filter(|c| c["org_id"].is_null()).collect();
    assert_eq!(nobodys.len(), 2, "{}", listed.text());
    let summary = send_bearer(app.host.addr, "GET", "/api/summary", OPERATOR_TOKEN).await;
    assert_eq!(summary.json()["unassigned_calls"], 2, "{}", summary.text());
    let theirs = send_bearer(app.host.addr, "GET", "/api/calls", ORG_TOKEN).await;
    assert!(!theirs.text().contains(&web.id) && !theirs.text().contains(&inbound_id));
    let summary = send_bearer(app.host.addr, "GET", "/api/summary", ORG_TOKEN).await;
    assert_eq!(summary.json()["unassigned_calls"], 0);
    // Counted.
    let exposition = metrics(app.host.addr).await;
    assert!(
        exposition.contains("vapi_edge_unassigned_calls 2"),
        "{exposition}"
    );
    assert!(
        exposition.contains(r#"outcome="unassigned",status_class="2xx"} "#),
        "{exposition}"
    );

    // Assigned: the operator maps the Vapi organisation. (Each delivery's
    // row is written after its answer: wait for the five.)
    for _ in 0..100 {
        if app.db.count("SELECT count(*) FROM webhook_events").await == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mapped = app.db.map_org(&unmapped, ORG_ID);
    assert_eq!(
        mapped["attributed"],
        json!({"calls": 2, "tracked_calls": 1, "deliveries": 5}),
        "{mapped}"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM call_logs WHERE org_id IS NULL")
            .await,
        0
    );
    let tracking = app
        .db
        .row(
            "SELECT org_id FROM call_tracking WHERE vapi_call_id = $1",
            &[&inbound_id],
        )
        .await
        .unwrap();
    assert_eq!(tracking.text(0), ORG_ID);
    let linked = app
        .db
        .row(
            "SELECT lead_id FROM call_logs WHERE vapi_call_id = $1",
            &[&inbound_id],
        )
        .await
        .unwrap();
    assert_eq!(
        linked.opt(0),
        Some(lead),
        "the lead is linked on attribution"
    );
    let known = Known {
        vapi_org: unmapped.clone(),
        ..known
    };
    let web = TestCall {
        setup: Setup::WebInline,
        ..web
    };
    web.check(&app.db, &known).await;
    let theirs = send_bearer(app.host.addr, "GET", "/api/calls", ORG_TOKEN).await;
    assert!(theirs.text().contains(&web.id), "{}", theirs.text());
    let exposition = metrics(app.host.addr).await;
    assert!(
        exposition.contains("vapi_edge_unassigned_calls 0"),
        "{exposition}"
    );
    // The call's next event finds the mapping itself.
    let mut ended = inbound.clone();
    ended["message"]["status"] = "ended".into();
    ended["message"]["endedReason"] = "customer-ended-call".into();
    let response = app.deliver(&ended).await;
    assert_eq!(
        response.json()["outcome"],
        "recorded",
        "{}",
        response.text()
    );
}

/// Every kind of call at once: 24 senders deliver each call's webhooks in
/// Vapi's order, calls interleaved; every call ends with exactly the rows
/// it should, and nothing waited for an agent lookup. `OWNERS_CALLS_PER_SETUP`
/// sets the size (8 per setup by default; 50 makes the 300-call storm).
async fn a_burst_of_every_kind_of_call_is_recorded_exactly(store: StoreKind, host: HostKind) {
    const SENDERS: usize = 24;
    let calls_per_setup: usize = std::env::var("OWNERS_CALLS_PER_SETUP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let app = Arc::new(WebhookApp::start(options(store, host)).await);
    let known = Arc::new(Known::seed(&app.db).await);
    let calls: Vec<Arc<TestCall>> = (0..calls_per_setup)
        .flat_map(|n| SETUPS.iter().map(move |setup| (n, *setup)))
        .map(|(n, setup)| Arc::new(TestCall::new(setup, &known, n)))
        .collect();
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let app = app.clone();
            let mine: Vec<Arc<TestCall>> = calls
                .iter()
                .skip(sender)
                .step_by(SENDERS)
                .cloned()
                .collect();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for call in mine {
                    for event in &call.events {
                        let sent = Instant::now();
                        let response = app.deliver(event).await;
                        slowest = slowest.max(sent.elapsed());
                        let expected = match call.setup {
                            Setup::WebUnmapped => "unassigned",
                            _ => "recorded",
                        };
                        assert_eq!(
                            (response.status, response.json()["outcome"].clone()),
                            (200, json!(expected)),
                            "{:?} {}: {}",
                            call.setup,
                            call.id,
                            response.text()
                        );
                    }
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for sender in senders {
        slowest = slowest.max(sender.await.unwrap());
    }
    let elapsed = started.elapsed();
    let requests: usize = calls.iter().map(|c| c.events.len()).sum();
    for call in &calls {
        call.check(&app.db, &known).await;
    }
    let (tracking, logs, events) = all_call_rows(&app.db).await;
    assert_eq!(logs, calls.len() as i64);
    assert_eq!(tracking, (2 * calls_per_setup) as i64);
    assert_eq!(events, requests as i64);
    // A lookup that waited out its retries takes 3.85 s at least.
    assert!(
        slowest < Duration::from_millis(3_850),
        "a request waited {slowest:?}: an agent-lookup retry?"
    );
    println!(
        "[owners] {} {}: {} calls of {} setups, {requests} webhooks from {SENDERS} senders in {} ms \
         (slowest {} ms); every call's final row as sent",
        host.name(),
        store.name(),
        calls.len(),
        SETUPS.len(),
        elapsed.as_millis(),
        slowest.as_millis()
    );
}

/// The checklist's case is unchanged: an assistant id no agent has, with no
/// other handle that resolves, is retried within the bound, then 500 and a
/// dead letter; once the agent exists, the replay records it.
async fn an_unknown_assistant_with_nothing_else_is_still_retried_then_500(
    store: StoreKind,
    host: HostKind,
) {
    let mut options = options(store, host);
    options.retry_ms = Some("20,20".into());
    options
        .extra
        .push(("admin_token".into(), ADMIN_TOKEN.into()));
    let app = WebhookApp::start(options).await;
    let call_id = unique_id("call");
    let assistant_id = unique_id("asst");
    let mut body = inbound_start(&call_id, &assistant_id, CALLER);
    body["message"]["call"]["orgId"] = unique_id("vapi-org-unmapped").into();
    let response = app.deliver(&body).await;
    assert_eq!(response.status, 500, "{}", response.text());
    assert_eq!(call_rows(&app.db, &call_id).await, (0, 0, 0));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM dead_letters WHERE reason = 'agent_not_found'")
            .await,
        1
    );
    app.db
        .rows(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ($1, 'late', 'Late', $2)",
            &[ORG_ID, &assistant_id],
        )
        .await;
    let report = app.replay().await;
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
}

/// With `default_org_id`, a call nothing else resolves belongs to it; an
/// unknown assistant id then resolves too (no wait, no 500).
async fn the_default_organisation_owns_what_nothing_else_does(store: StoreKind, host: HostKind) {
    let mut options = options(store, host);
    options
        .extra
        .push(("default_org_id".into(), OTHER_ORG_ID.into()));
    let app = WebhookApp::start(options).await;
    let known = Known::seed(&app.db).await;
    let web = TestCall::new(Setup::WebUnmapped, &known, 3);
    let response = app.deliver(&web.events[0]).await;
    assert_eq!(
        response.json()["outcome"],
        "recorded",
        "{}",
        response.text()
    );
    let call_id = unique_id("call");
    let response = app
        .deliver(&inbound_start(&call_id, &unique_id("asst"), CALLER))
        .await;
    assert_eq!(
        response.json()["outcome"],
        "recorded",
        "{}",
        response.text()
    );
    for id in [&web.id, &call_id] {
        let row = app
            .db
            .row(
                "SELECT org_id, agent_id FROM call_logs WHERE vapi_call_id = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(row.text(0), OTHER_ORG_ID);
        assert_eq!(row.opt(1), None);
    }
}

conformance! {
    every_store: [
        an_inline_assistant_web_call_is_owned_by_its_vapi_organisation,
        a_squad_call_whose_member_is_unregistered_is_owned_by_its_squad,
        an_unresolvable_call_is_recorded_visible_assignable_and_counted,
        a_burst_of_every_kind_of_call_is_recorded_exactly,
        an_unknown_assistant_with_nothing_else_is_still_retried_then_500,
        the_default_organisation_owns_what_nothing_else_does,
    ],
    postgres: [],
    sqlite: [],
    host_only: [],
}
