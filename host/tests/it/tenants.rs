//! Tenants (README, "Tenants"): several Vapi organisations on one deployment,
//! each on its own server URL (`POST /webhooks/vapi/{tenant}`) with its own
//! credential and settings, kept in the database by `vapi-edge-host tenant`,
//! through the real `.wasm` under both hosts on both stores (`conformance!`).

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY: &str = "tenant-secrets-key-for-the-tests-0123456789";
const CALLER: &str = "+12125550187";
const TOKEN_A: &str = "org-token-tenant-a-0001";
const TOKEN_B: &str = "org-token-tenant-b-0002";
/// How stale a replica's view of a tenant may be, in these tests.
const CACHE_MS: u64 = 400;

/// Vapi's HMAC credential (default settings) with `secret`.
fn hmac_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let timestamp = (now_ms() / 1000).to_string();
    let scheme = vapi_edge_core::verify::HmacScheme::new(vec![secret.into()]);
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature".into(), scheme.sign(&timestamp, body).unwrap()),
        ("x-timestamp".into(), timestamp),
    ]
}

/// Vapi's Bearer credential with a header name of its own, prefix on (its
/// default then).
fn bearer_headers(header: &str, token: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (header.into(), format!("Bearer {token}")),
    ]
}

async fn post(host: &Host, path: &str, headers: &[(String, String)], body: &Value) -> TestResponse {
    host.post(path, &header_refs(headers), bytes_of(body)).await
}

fn start(db: &TestDb, kind: HostKind) -> Host {
    start_with(db, kind, &[])
}

fn start_with(db: &TestDb, kind: HostKind, extra: &[(&str, String)]) -> Host {
    let options = extra
        .iter()
        .fold(db.host_options().on(kind), |options, (name, value)| {
            options.var(name, value.clone())
        });
    Host::start(
        options
            .var("vapi_server_secret", SERVER_SECRET)
            .var("tenant_secrets_key", KEY)
            .var("tenant_cache_ms", CACHE_MS.to_string())
            .var("agent_lookup_retry_ms", "20")
            .var("metrics_token", METRICS_TOKEN)
            .var(
                "dashboard_token",
                format!("{ORG_ID}:{TOKEN_A},{OTHER_ORG_ID}:{TOKEN_B}"),
            ),
    )
}

/// The `outcome` of a webhook's answer.
fn outcome(response: &TestResponse) -> String {
    response.json()["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// (org_id, tenant, status) of a call's `call_logs` row.
async fn call_row(db: &TestDb, call_id: &str) -> Option<(Option<String>, String, Option<String>)> {
    db.row(
        "SELECT org_id, tenant, status FROM call_logs WHERE vapi_call_id = $1",
        &[call_id],
    )
    .await
    .map(|row| (row.opt(0), row.text(1), row.opt(2)))
}

/// Two tenants with different credential types on one deployment: each URL
/// takes its own credential only, each records into its own organisations
/// only (even with the other's ids in its payload), each dashboard token sees
/// its own calls, and no secret is kept in clear.
async fn two_tenants_are_kept_apart_both_ways(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    db.tenant("set", KEY, &["acme", "vapi_hmac_secret=whsec-acme-1"]);
    db.tenant(
        "set",
        KEY,
        &[
            "globex",
            "vapi_server_secret=globex-bearer-1",
            "vapi_server_secret_header=x-globex-secret",
        ],
    );
    // Secrets at rest: a hash and a sealed value, never the text.
    let stored = db.rows("SELECT config FROM tenants ORDER BY id", &[]).await;
    let stored: String = stored.iter().map(|row| row.text(0)).collect();
    assert!(
        !stored.contains("whsec-acme-1") && !stored.contains("globex-bearer-1"),
        "{stored}"
    );
    assert!(stored.contains(&vapi_edge_core::tenant::bearer_hash("globex-bearer-1")));

    let ava = db
        .seed_tenant_agent("acme", ORG_ID, "acme-receptionist")
        .await;
    let bea = db
        .seed_tenant_agent("globex", OTHER_ORG_ID, "globex-receptionist")
        .await;
    // A relay receiving the dashboards' notifications (the real relay sends
    // each to the tokens of its organisation: crates/relay/tests).
    let relay = Relay::start(RelayMode::Ok).await;
    let host = start_with(
        &db,
        kind,
        &[
            ("relay_url", relay.url()),
            ("relay_allowed_host", relay.origin()),
        ],
    );
    let acme = |body: &Value| hmac_headers("whsec-acme-1", &bytes_of(body));
    let globex = bearer_headers("x-globex-secret", "globex-bearer-1");

    let call_a = unique_id("call");
    let body_a = inbound_start(&call_a, &ava.assistant_id, CALLER);
    // Each URL refuses every credential but its own, and the single-tenant
    // URL refuses the tenants'.
    for (path, headers) in [
        ("/webhooks/vapi/acme", globex.clone()),
        ("/webhooks/vapi/globex", acme(&body_a)),
        ("/webhooks/vapi", acme(&body_a)),
        ("/webhooks/vapi", globex.clone()),
        (
            "/webhooks/vapi/acme",
            bearer_headers("x-vapi-secret", SERVER_SECRET),
        ),
    ] {
        let response = post(&host, path, &headers, &body_a).await;
        assert_eq!(response.status, 401, "{path}: {}", response.text());
    }
    assert_eq!(call_row(&db, &call_a).await, None);
    let response = post(&host, "/webhooks/vapi/acme", &acme(&body_a), &body_a).await;
    assert_eq!(outcome(&response), "recorded", "{}", response.text());
    // acme's call, as acme recorded it.
    let acme_row = Some((
        Some(ORG_ID.into()),
        "acme".into(),
        Some("in-progress".into()),
    ));
    assert_eq!(call_row(&db, &call_a).await, acme_row);

    // globex, with its own credential, names acme's assistant: acme's
    // mappings are not globex's, so nothing reaches acme's organisation.
    let forged = unique_id("call");
    let body = inbound_start(&forged, &ava.assistant_id, CALLER);
    let response = post(&host, "/webhooks/vapi/globex", &globex, &body).await;
    assert_eq!(response.status, 500, "{}", response.text());
    assert_eq!(
        response.json()["error"],
        "no agent has this assistant id yet; retry later"
    );
    assert_eq!(call_row(&db, &forged).await, None);
    // globex names acme's call: acme's row stays acme's, unchanged.
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &call_a, &bea.assistant_id);
    let response = post(&host, "/webhooks/vapi/globex", &globex, &report).await;
    assert_eq!(outcome(&response), "other_tenant", "{}", response.text());
    assert_eq!(call_row(&db, &call_a).await, acme_row);
    // globex's own call is globex's.
    let call_b = unique_id("call");
    let body_b = inbound_start(&call_b, &bea.assistant_id, CALLER);
    let response = post(&host, "/webhooks/vapi/globex", &globex, &body_b).await;
    assert_eq!(outcome(&response), "recorded", "{}", response.text());
    assert_eq!(
        call_row(&db, &call_b).await,
        Some((
            Some(OTHER_ORG_ID.into()),
            "globex".into(),
            Some("in-progress".into())
        ))
    );
    // Each dashboard token sees its tenant's calls only.
    for (token, own, other) in [(TOKEN_A, &call_a, &call_b), (TOKEN_B, &call_b, &call_a)] {
        let calls = send_bearer(host.addr, "GET", "/api/calls", token).await;
        let listed: Vec<String> = calls.json()["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["vapi_call_id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(listed, [own.to_string()], "{token}");
        let detail = send_bearer(host.addr, "GET", &format!("/api/calls/{other}"), token).await;
        assert_eq!(detail.status, 404);
    }
    // Unknown and malformed tenants are 404, a disabled one 403.
    for path in [
        "/webhooks/vapi/initech",
        "/webhooks/vapi/ACME",
        "/webhooks/vapi/acme/x",
    ] {
        assert_eq!(
            post(&host, path, &acme(&body_a), &body_a).await.status,
            404,
            "{path}"
        );
    }
    // A line mapped for acme answers acme's assistant-requests only.
    db.map_line(&[
        "--number",
        "+14155550142",
        "--org-id",
        ORG_ID,
        "--vapi-phone-number-id",
        "pn-acme-line",
        "--role",
        "acme-receptionist",
        "--tenant",
        "acme",
    ]);
    let request = serde_json::json!({"message": {"type": "assistant-request",
        "timestamp": now_ms(), "phoneNumber": {"id": "pn-acme-line"},
        "call": {"id": unique_id("call"), "type": "inboundPhoneCall"},
        "customer": {"number": CALLER}}});
    let answered = post(&host, "/webhooks/vapi/acme", &acme(&request), &request).await;
    assert_eq!(
        answered.json(),
        serde_json::json!({"assistantId": ava.assistant_id})
    );
    let elsewhere = post(&host, "/webhooks/vapi/globex", &globex, &request).await;
    assert_ne!(
        elsewhere.json(),
        serde_json::json!({"assistantId": ava.assistant_id})
    );
    // The relay heard of acme's call for acme's organisation, of globex's
    // for globex's, and nothing of globex's event about acme's call.
    relay.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut notified: Vec<(String, String)> = relay
        .events()
        .iter()
        .map(|e| {
            let id = e["vapi_call_id"].as_str().unwrap_or_default();
            let org = e["org_id"].as_str().unwrap_or_default();
            (id.to_string(), org.to_string())
        })
        .collect();
    notified.sort();
    let mut expected_notified = vec![
        (call_a.clone(), ORG_ID.to_string()),
        (call_b.clone(), OTHER_ORG_ID.to_string()),
    ];
    expected_notified.sort();
    assert_eq!(notified, expected_notified);
    // /metrics: each tenant's deliveries under its own label; the made-up
    // ids above were never verified, so they are not a label.
    let expected = [
        ("acme", "answered", 1),
        ("acme", "recorded", 1),
        ("globex", "agent_not_found", 1),
        ("globex", "no_agent", 1),
        ("globex", "other_tenant", 1),
        ("globex", "recorded", 1),
    ];
    let started = Instant::now();
    let tenants_seen = loop {
        let exposition = metrics(host.addr).await;
        let seen: Vec<(String, String, u64)> = exposition
            .lines()
            .filter_map(|line| line.strip_prefix("vapi_edge_tenant_webhook_requests_total{"))
            .filter_map(|rest| {
                let (labels, count) = rest.rsplit_once("} ")?;
                let tenant = labels.split("tenant=\"").nth(1)?.split('"').next()?;
                let outcome = labels.split("outcome=\"").nth(1)?.split('"').next()?;
                Some((tenant.to_string(), outcome.to_string(), count.parse().ok()?))
            })
            .collect();
        let want: Vec<(String, String, u64)> = expected
            .iter()
            .map(|(t, o, n)| (t.to_string(), o.to_string(), *n))
            .collect();
        if seen == want || started.elapsed() > Duration::from_secs(5) {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        tenants_seen,
        expected.map(|(t, o, n)| (t.to_string(), o.to_string(), n))
    );
    db.tenant("set", KEY, &["globex", "--disable"]);
    let refused = wait_for_status(&host, "/webhooks/vapi/globex", &globex, &body_b, 403).await;
    figure(&format!(
        "tenants: {} {}: a disabled tenant refused {refused} ms after `tenant set --disable`",
        kind.name(),
        store.name()
    ));
}

/// Sends `body` until the answer is `status`; the milliseconds it took.
async fn wait_for_status(
    host: &Host,
    path: &str,
    headers: &[(String, String)],
    body: &Value,
    status: u16,
) -> u128 {
    let started = Instant::now();
    loop {
        if post(host, path, headers, body).await.status == status {
            return started.elapsed().as_millis();
        }
        assert!(
            started.elapsed() < Duration::from_millis(CACHE_MS) + Duration::from_secs(10),
            "{path} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tenant's HMAC secret rotated the way Vapi's dashboard rotates it (both
/// valid, then the new one only): no webhook is refused while both are
/// valid, and the old one is refused once it is dropped.
async fn a_tenants_secret_is_rotated_with_no_webhook_refused(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    db.tenant("set", KEY, &["acme", "vapi_hmac_secret=whsec-old"]);
    let ava = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let host = start(&db, kind);
    let mut answers = Vec::new();
    let deliver = async |secret: &str| {
        let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
        let response = post(
            &host,
            "/webhooks/vapi/acme",
            &hmac_headers(secret, &bytes_of(&body)),
            &body,
        )
        .await;
        response.status
    };
    answers.push(deliver("whsec-old").await);
    // Both valid: the old secret keeps working while replicas catch up...
    db.tenant(
        "set",
        KEY,
        &["acme", "vapi_hmac_secret=whsec-new,whsec-old"],
    );
    let until = Instant::now() + Duration::from_millis(2 * CACHE_MS);
    while Instant::now() < until {
        answers.push(deliver("whsec-old").await);
    }
    // ...and Vapi moves to the new one.
    for _ in 0..5 {
        answers.push(deliver("whsec-new").await);
    }
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    // The old one dropped: refused once the change has applied.
    db.tenant("set", KEY, &["acme", "vapi_hmac_secret=whsec-new"]);
    tokio::time::sleep(Duration::from_millis(2 * CACHE_MS)).await;
    assert_eq!(deliver("whsec-old").await, 401);
    assert_eq!(deliver("whsec-new").await, 200);
    figure(&format!(
        "tenants: {} {}: rotation: {} webhooks during the change, none refused",
        kind.name(),
        store.name(),
        answers.len()
    ));
}

/// A tenant's setting changed with `vapi-edge-host tenant set` applies on two
/// replicas (each with its own key-value store, so each reads the database
/// itself) within `tenant_cache_ms`, with no redeploy.
async fn a_tenant_setting_change_applies_on_two_replicas(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    db.tenant("set", KEY, &["acme", "vapi_server_secret=acme-bearer"]);
    let ava = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let replicas = [start(&db, kind), start(&db, kind)];
    let headers = bearer_headers("x-vapi-secret", "acme-bearer");
    let outcome_on = async |host: &Host| {
        let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
        outcome(&post(host, "/webhooks/vapi/acme", &headers, &body).await)
    };
    for host in &replicas {
        assert_eq!(outcome_on(host).await, "recorded");
    }
    // The tenant's inbound calls leave the rollout.
    db.tenant("set", KEY, &["acme", "inbound_rollout_percent=0"]);
    let changed = Instant::now();
    let mut applied = Vec::new();
    for host in &replicas {
        loop {
            if outcome_on(host).await == "outside_rollout" {
                applied.push(changed.elapsed().as_millis());
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_millis(CACHE_MS) + Duration::from_secs(10),
                "the change never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // And the deployment's own route keeps its own setting.
    figure(&format!(
        "tenants: {} {}: a setting applied on 2 replicas after {applied:?} ms (tenant_cache_ms {CACHE_MS})",
        kind.name(),
        store.name()
    ));
}

/// Vapi's OAuth2 credential as its docs describe it: Vapi asks the tenant's
/// token URL for a token with the client id and secret, sends the token as
/// `Authorization: Bearer` on each webhook, and asks again once it expires;
/// an expired token, another tenant's URL and a rotated client secret are
/// refused.
async fn the_oauth2_credential_works_as_vapi_uses_it(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    db.tenant(
        "set",
        KEY,
        &[
            "acme",
            "oauth_client_id=vapi-acme",
            "oauth_client_secret=client-secret-1",
            "oauth_token_ttl_s=2",
        ],
    );
    db.tenant(
        "set",
        KEY,
        &["globex", "vapi_server_secret=globex-bearer-1"],
    );
    let ava = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let host = start(&db, kind);
    let token_request = async |secret: &str| {
        let form =
            format!("grant_type=client_credentials&client_id=vapi-acme&client_secret={secret}");
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        host.post("/webhooks/vapi/acme/token", &headers, form.into_bytes())
            .await
    };
    let webhook = async |path: &str, token: &str| {
        let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
        let headers = bearer_headers("authorization", token);
        post(&host, path, &headers, &body).await
    };
    // A wrong secret gets RFC 6749's error.
    let refused = token_request("not-the-secret").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "invalid_client");
    let issued = token_request("client-secret-1").await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    assert_eq!(issued.json()["token_type"], "Bearer");
    assert_eq!(issued.json()["expires_in"], 2);
    let token = issued.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        webhook("/webhooks/vapi/acme", &token).await.json()["outcome"],
        "recorded"
    );
    // Not another tenant's, not the single-tenant route's.
    assert_eq!(webhook("/webhooks/vapi/globex", &token).await.status, 401);
    assert_eq!(webhook("/webhooks/vapi", &token).await.status, 401);
    // Expired: refused; Vapi asks again and goes on.
    tokio::time::sleep(Duration::from_millis(2_050)).await;
    assert_eq!(webhook("/webhooks/vapi/acme", &token).await.status, 401);
    let token = token_request("client-secret-1").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(webhook("/webhooks/vapi/acme", &token).await.status, 200);
    // A new client secret ends the old one's tokens.
    db.tenant("set", KEY, &["acme", "oauth_client_secret=client-secret-2"]);
    tokio::time::sleep(Duration::from_millis(2 * CACHE_MS)).await;
    assert_eq!(webhook("/webhooks/vapi/acme", &token).await.status, 401);
    assert_eq!(token_request("client-secret-1").await.status, 401);
    let token = token_request("client-secret-2").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(webhook("/webhooks/vapi/acme", &token).await.status, 200);
}

/// The admin route (operator token) manages tenants as the command does: a
/// tenant put, shown without its secrets, taking webhooks at once, refused a
/// setting it cannot use (named), and deleted.
async fn tenants_are_managed_through_the_admin_route(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    let ava = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let host = Host::start(
        db.host_options()
            .on(kind)
            .var("vapi_server_secret", SERVER_SECRET)
            .var("tenant_secrets_key", KEY)
            .var("admin_token", ADMIN_TOKEN),
    );
    let admin = async |method: &str, path: &str, body: &str| {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        send(host.addr, method, path, &headers, body.as_bytes().to_vec()).await
    };
    let put = r#"{"variables": {"vapi_hmac_secret": "whsec-admin-1", "vapi_server_secret": "bearer-admin-1",
        "inbound_rollout_percent": "100"}}"#;
    // Not without the operator's token.
    let anonymous = send(
        host.addr,
        "PUT",
        "/admin/tenants/acme",
        &[],
        put.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let created = admin("PUT", "/admin/tenants/acme", put).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let shown = admin("GET", "/admin/tenants/acme", "").await;
    assert_eq!(shown.json()["url_path"], "/webhooks/vapi/acme");
    assert_eq!(shown.json()["variables"]["vapi_hmac_secret"], "(sealed)");
    assert_eq!(
        shown.json()["variables"]["vapi_server_secret_sha256"],
        "(1 hashed)"
    );
    for text in [
        shown.text(),
        admin("GET", "/admin/tenants", "").await.text(),
    ] {
        assert!(
            !text.contains("whsec-admin-1") && !text.contains("bearer-admin-1"),
            "{text}"
        );
    }
    // Both credentials of the tenant at once, as configured.
    let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
    let mut headers = hmac_headers("whsec-admin-1", &bytes_of(&body));
    headers.push(("x-vapi-secret".into(), "bearer-admin-1".into()));
    let response = post(&host, "/webhooks/vapi/acme", &headers, &body).await;
    assert_eq!(outcome(&response), "recorded", "{}", response.text());
    // A setting it cannot use is refused, named, and nothing changes.
    for (bad, named) in [
        (
            r#"{"variables": {"vapi_hmac_algorithm": "md5", "vapi_hmac_secret": "x"}}"#,
            "vapi_hmac_algorithm",
        ),
        (
            r#"{"variables": {"pg_url": "postgres://elsewhere"}}"#,
            "variables.pg_url",
        ),
        (
            r#"{"variables": {"default_country": "XX", "vapi_server_secret": "x"}}"#,
            "default_country",
        ),
    ] {
        let refused = admin("PUT", "/admin/tenants/acme", bad).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert!(refused.text().contains(named), "{}", refused.text());
    }
    let response = post(&host, "/webhooks/vapi/acme", &headers, &body).await;
    assert_eq!(outcome(&response), "duplicate", "{}", response.text());
    // Deleted: gone at once from this replica.
    assert_eq!(admin("DELETE", "/admin/tenants/acme", "").await.status, 200);
    assert_eq!(
        post(&host, "/webhooks/vapi/acme", &headers, &body)
            .await
            .status,
        404
    );
    assert_eq!(admin("GET", "/admin/tenants/acme", "").await.status, 404);
}

/// Two deployments (two databases) sharing one Redis, each with a tenant
/// `acme` of its own: each reads its own tenant, never the other's cached
/// one (the cache is scoped by database, as the claims are).
async fn deployments_sharing_one_redis_keep_their_own_tenants(store: StoreKind, kind: HostKind) {
    assert_eq!(store, StoreKind::Postgres);
    let (one, two) = (TestDb::migrated().await, TestDb::migrated().await);
    one.tenant("set", KEY, &["acme", "vapi_server_secret=token-of-one"]);
    two.tenant("set", KEY, &["acme", "vapi_server_secret=token-of-two"]);
    let mut agents = Vec::new();
    let mut hosts = Vec::new();
    for db in [&one, &two] {
        agents.push(db.seed_tenant_agent("acme", ORG_ID, "receptionist").await);
        hosts.push(Host::start(
            db.host_options()
                .on(kind)
                .var("tenant_secrets_key", KEY)
                .var("vapi_server_secret", SERVER_SECRET)
                .redis_kv(&temp_dir("shared-redis")),
        ));
    }
    for (i, token) in ["token-of-one", "token-of-two"].into_iter().enumerate() {
        for (j, host) in hosts.iter().enumerate() {
            let body = inbound_start(&unique_id("call"), &agents[j].assistant_id, CALLER);
            let headers = bearer_headers("x-vapi-secret", token);
            let status = post(host, "/webhooks/vapi/acme", &headers, &body)
                .await
                .status;
            assert_eq!(
                status,
                if i == j { 200 } else { 401 },
                "{token} on deployment {j}"
            );
        }
    }
}

/// A deployment that serves tenants only leaves `/webhooks/vapi` without a
/// secret: that route refuses every webhook (fail closed), and the
/// deployment is still ready, saying so.
async fn a_deployment_of_tenants_only_is_ready(store: StoreKind, kind: HostKind) {
    let db = TestDb::migrated_on(store).await;
    db.tenant("set", KEY, &["acme", "vapi_server_secret=acme-bearer"]);
    let ava = db.seed_tenant_agent("acme", ORG_ID, "receptionist").await;
    let host = Host::start(db.host_options().on(kind).var("tenant_secrets_key", KEY));
    let health = host.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(
        health.json()["checks"]["configuration"]["single_tenant_route"],
        "closed: no secret is set; tenants only"
    );
    let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
    let headers = bearer_headers("x-vapi-secret", "acme-bearer");
    assert_eq!(
        post(&host, "/webhooks/vapi", &headers, &body).await.status,
        503
    );
    let response = post(&host, "/webhooks/vapi/acme", &headers, &body).await;
    assert_eq!(outcome(&response), "recorded", "{}", response.text());
}

conformance! {
    every_store: [
        two_tenants_are_kept_apart_both_ways,
        a_tenants_secret_is_rotated_with_no_webhook_refused,
        a_tenant_setting_change_applies_on_two_replicas,
        the_oauth2_credential_works_as_vapi_uses_it,
        tenants_are_managed_through_the_admin_route,
        a_deployment_of_tenants_only_is_ready,
    ],
    postgres: [deployments_sharing_one_redis_keep_their_own_tenants],
    sqlite: [],
    host_only: [],
}
