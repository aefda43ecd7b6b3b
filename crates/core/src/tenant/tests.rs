use super::*;
use crate::test_support::block_on;
use crate::test_support::fake::Fake;

const KEY: &str = "the-deployment-key-of-at-least-32-characters";

fn stored(pairs: &[(&str, &str)]) -> Stored {
    let keys = SecretsKeys::from_variable(KEY).unwrap();
    let mut stored = Stored::default();
    for (name, value) in pairs {
        stored
            .set("acme", name, value, Some(&keys), [9; 12])
            .unwrap();
    }
    stored
}

#[test]
fn ids_are_url_segments_of_a_safe_alphabet() {
    for good in ["acme", "a", "client-42", &"x".repeat(63)] {
        assert!(valid_id(good), "{good}");
    }
    for bad in [
        "",
        "-acme",
        "Acme",
        "a/b",
        "a.b",
        "a%2f",
        "ü",
        &"x".repeat(64),
    ] {
        assert!(!valid_id(bad), "{bad}");
    }
}

#[test]
fn no_secret_is_kept_in_clear() {
    let stored = stored(&[
        ("vapi_hmac_secret", "whsec-one,whsec-two"),
        ("vapi_server_secret", "bearer-one"),
        ("upstream_secret", "whsec_dXBzdHJlYW0="),
        ("inbound_rollout_percent", "50"),
    ]);
    let text = stored.to_json().to_string();
    assert_eq!(Stored::from_json(&stored.to_json()).unwrap(), stored);
    for secret in ["whsec-one", "whsec-two", "bearer-one", "dXBzdHJlYW0"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains(&bearer_hash("bearer-one")));
    let shown = stored.describe().to_string();
    assert!(!shown.contains(&bearer_hash("bearer-one")), "{shown}");
    assert!(
        shown.contains("(sealed)") && shown.contains("\"50\""),
        "{shown}"
    );
}

#[test]
fn a_tenants_credential_is_its_own_and_its_settings_fall_back() {
    let keys = SecretsKeys::from_variable(KEY).unwrap();
    let stored = stored(&[
        ("vapi_hmac_secret", "whsec-acme"),
        ("inbound_rollout_percent", "25"),
        ("upstream_url", "https://acme.example.com/vapi"),
    ]);
    let tenant = Tenant::open("acme", &stored, Some(&keys)).unwrap();
    let deployment = |name: &str| match name {
        "vapi_server_secret" => Some("the-deployments-bearer".to_string()),
        "vapi_signature_header" => Some("x-deployment-signature".to_string()),
        "upstream_secret" => Some("whsec_ZGVwbG95bWVudA==".to_string()),
        "default_country" => Some("GB".to_string()),
        "pg_url" => Some("postgres://db".to_string()),
        _ => None,
    };
    assert_eq!(
        tenant.variable("vapi_hmac_secret", deployment).as_deref(),
        Some("whsec-acme")
    );
    // Never the deployment's credential, in part or whole.
    assert_eq!(tenant.variable("vapi_server_secret", deployment), None);
    assert_eq!(tenant.variable("vapi_signature_header", deployment), None);
    // Its settings, else the deployment's.
    assert_eq!(
        tenant
            .variable("inbound_rollout_percent", deployment)
            .as_deref(),
        Some("25")
    );
    assert_eq!(
        tenant.variable("default_country", deployment).as_deref(),
        Some("GB")
    );
    assert_eq!(
        tenant.variable("pg_url", deployment).as_deref(),
        Some("postgres://db")
    );
    // Its own upstream is not signed with the deployment's key.
    assert_eq!(tenant.variable("upstream_secret", deployment), None);
    // Without sealing keys a sealed secret cannot be read.
    assert_eq!(
        Tenant::open("acme", &stored, None).unwrap_err(),
        TenantError::NoSecretsKey
    );
    // Nor as another tenant.
    assert_eq!(
        Tenant::open("globex", &stored, Some(&keys)).unwrap_err(),
        TenantError::Unsealable
    );
}

#[test]
fn only_tenant_variables_can_be_set() {
    let mut stored = Stored::default();
    assert_eq!(
        stored.set("acme", "pg_url", "postgres://x", None, [0; 12]),
        Err(TenantError::NotATenantVariable("pg_url".into()))
    );
    assert_eq!(
        stored.set("acme", "vapi_hmac_secret", "whsec", None, [0; 12]),
        Err(TenantError::NoSecretsKey)
    );
}

#[test]
fn rekeying_reseals_with_the_new_key_only_what_it_must() {
    let mut stored = stored(&[("vapi_hmac_secret", "whsec-acme")]);
    let new = "a-brand-new-key-of-at-least-32-characters";
    let both = SecretsKeys::from_variable(&format!("{new},{KEY}")).unwrap();
    let mut n = 0u8;
    let mut nonce = || {
        n += 1;
        [n; 12]
    };
    assert_eq!(stored.reseal("acme", &both, &mut nonce).unwrap(), 1);
    assert_eq!(stored.reseal("acme", &both, &mut nonce).unwrap(), 0);
    let only_new = SecretsKeys::from_variable(new).unwrap();
    let tenant = Tenant::open("acme", &stored, Some(&only_new)).unwrap();
    assert_eq!(
        tenant.variable("vapi_hmac_secret", |_| None).as_deref(),
        Some("whsec-acme")
    );
}

fn fake_with_tenants() -> Fake {
    let mut fake = Fake::new().var("tenant_secrets_key", KEY);
    fake.tenants = vec![
        (
            "acme".into(),
            stored(&[("vapi_server_secret", "acme-token")]),
        ),
        (
            "globex".into(),
            stored(&[("vapi_server_secret", "globex-token")]),
        ),
    ];
    fake
}

#[test]
fn a_known_tenant_costs_one_statement_per_cache_period_and_unknown_ids_none() {
    let mut fake = fake_with_tenants();
    block_on(async {
        assert!(resolve(&mut fake, "acme").await.is_ok());
        assert_eq!(fake.tenant_reads, 1);
        for _ in 0..100 {
            assert!(resolve(&mut fake, "acme").await.is_ok());
            assert!(resolve(&mut fake, "globex").await.is_ok());
        }
        for i in 0..1000 {
            let id = format!("made-up-{i}");
            assert_eq!(resolve(&mut fake, &id).await.unwrap_err(), Refusal::Unknown);
        }
        assert_eq!(
            resolve(&mut fake, "../acme").await.unwrap_err(),
            Refusal::Unknown
        );
        assert_eq!(fake.tenant_reads, 1, "one statement for all of it");
        // Nothing was written for the made-up ids.
        assert!(!fake.kv.values.keys().any(|k| k.contains("made-up-")));
        // After the cache period the next lookup reads again.
        fake.now_ms += cache::DEFAULT_CACHE_MS;
        assert!(resolve(&mut fake, "acme").await.is_ok());
        assert_eq!(fake.tenant_reads, 2);
    });
}

#[test]
fn a_change_applies_within_the_cache_period() {
    let mut fake = fake_with_tenants().var("tenant_cache_ms", "2000");
    block_on(async {
        assert!(resolve(&mut fake, "globex").await.is_ok());
        // globex is removed and acme disabled in the database.
        fake.tenants.retain(|(id, _)| id != "globex");
        fake.tenants[0].1.disabled = true;
        fake.now_ms += 1_999;
        assert!(resolve(&mut fake, "globex").await.is_ok(), "still cached");
        fake.now_ms += 1;
        assert_eq!(
            resolve(&mut fake, "globex").await.unwrap_err(),
            Refusal::Unknown
        );
        assert_eq!(
            resolve(&mut fake, "acme").await.unwrap_err(),
            Refusal::Disabled
        );
        assert!(!fake.kv.values.keys().any(|k| k.ends_with("/entry/globex")));
        assert!(fake.kv.values.keys().any(|k| k.ends_with("/entry/acme")));
    });
}

#[test]
fn a_database_outage_is_a_503_and_a_bad_key_names_the_tenant() {
    let mut fake = fake_with_tenants();
    fake.database_down = true;
    block_on(async {
        assert!(matches!(
            resolve(&mut fake, "acme").await,
            Err(Refusal::Unavailable(_))
        ));
    });
    let mut fake = fake_with_tenants();
    fake.tenants[0].1 = stored(&[("vapi_hmac_secret", "whsec")]);
    fake.vars.insert(
        "tenant_secrets_key",
        "another-key-that-did-not-seal-anything-here".into(),
    );
    block_on(async {
        match resolve(&mut fake, "acme").await {
            Err(Refusal::Misconfigured(problem)) => {
                assert!(problem.starts_with("tenant acme: "), "{problem}");
                assert!(!problem.contains("whsec"));
            }
            other => panic!("{other:?}"),
        }
    });
}

fn post(path: &str, credential: &str) -> crate::http::Request {
    crate::http::Request {
        method: "POST".into(),
        path: path.into(),
        headers: [
            ("content-type", "application/json"),
            ("x-vapi-secret", credential),
        ]
        .into_iter()
        .collect(),
        body: crate::test_support::example("03-inbound-status-update-in-progress.json"),
    }
}

/// Prechecks, then routes, as a host does; the status and the fake.
fn deliver(fake: &mut Fake, request: crate::http::Request) -> u16 {
    block_on(async {
        if let Some((response, _)) = crate::app::precheck(fake, &request).await {
            return response.status;
        }
        let (response, after) = crate::app::route(fake, &request).await;
        after.run(fake).await;
        response.status
    })
}

#[test]
fn each_tenants_url_takes_its_own_credential_only_and_records_as_itself() {
    let mut fake = fake_with_tenants();
    // The deployment's own secret (Fake's default) opens only its own route.
    assert_eq!(
        deliver(
            &mut fake,
            post("/webhooks/vapi/acme", crate::test_support::fake::SECRET)
        ),
        401
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/acme", "globex-token")),
        401
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi", "acme-token")),
        401
    );
    assert!(fake.records.is_empty());
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/acme", "acme-token")),
        200
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/globex", "globex-token")),
        200
    );
    assert_eq!(
        deliver(
            &mut fake,
            post("/webhooks/vapi", crate::test_support::fake::SECRET)
        ),
        200
    );
    // A tenant's scope ends with its request: the next one on the
    // single-tenant route is the deployment's again.
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/acme", "acme-token")),
        200
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi", "acme-token")),
        401
    );
    let tenants: Vec<&str> = fake.records.iter().map(|r| r.tenant.as_str()).collect();
    assert_eq!(tenants, ["acme", "globex", ""]);
    // The same event in three spaces: three keys, none another's.
    let keys: std::collections::BTreeSet<&str> =
        fake.records.iter().map(|r| r.event_key.as_str()).collect();
    assert_eq!(keys.len(), 3);
    // One statement for the tenants, though each was prechecked and routed.
    assert_eq!(fake.tenant_reads, 1);
    // Every line of a tenant's request names it.
    let handled: Vec<_> = fake.lines_with("Webhook handled");
    assert_eq!(
        handled[0].get("tenant").and_then(|v| v.as_str()),
        Some("acme")
    );
    assert_eq!(handled[2].get("tenant"), None);
}

#[test]
fn unknown_and_disabled_tenants_are_refused_and_unrecorded() {
    let mut fake = fake_with_tenants();
    fake.tenants[1].1.disabled = true;
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/initech", "acme-token")),
        404
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/globex", "globex-token")),
        403
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/Bad%20Id", "acme-token")),
        404
    );
    // Not an alias of the single-tenant route, whatever its credential.
    let deployments = crate::test_support::fake::SECRET;
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/", deployments)),
        404
    );
    assert!(fake.records.is_empty() && fake.event_rows.is_empty());
    let mut get = post("/webhooks/vapi/acme", "acme-token");
    get.method = "GET".into();
    assert_eq!(deliver(&mut fake, get), 405);
}

#[test]
fn a_deployment_of_tenants_only_is_ready_and_its_own_route_stays_closed() {
    // No single-tenant secret: ready when it serves tenants, not otherwise.
    let tenants_only = fake_with_tenants().var("vapi_server_secret", "");
    assert_eq!(crate::webhook::configuration_problem(&tenants_only), None);
    assert!(!crate::webhook::single_tenant_route_open(&tenants_only));
    let neither = Fake::new().var("vapi_server_secret", "");
    assert!(crate::webhook::configuration_problem(&neither).is_some());
    let mut fake = tenants_only;
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi", "acme-token")),
        503
    );
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/acme", "acme-token")),
        200
    );
    // A bad tenant variable is named, for /healthz.
    let bad = fake_with_tenants().var("tenant_cache_ms", "5");
    let problem = crate::webhook::configuration_problem(&bad).unwrap();
    assert!(problem.starts_with("tenant_cache_ms"), "{problem}");
    let short = Fake::new().var("tenant_secrets_key", "short");
    let problem = crate::webhook::configuration_problem(&short).unwrap();
    assert!(problem.starts_with("tenant_secrets_key"), "{problem}");
}

#[test]
fn a_tenants_dead_letter_replays_as_that_tenants_webhook() {
    let mut fake = fake_with_tenants();
    fake.record_answers
        .push_back(Err(crate::db::DbError::transient("deadlock detected")));
    assert_eq!(
        deliver(&mut fake, post("/webhooks/vapi/acme", "acme-token")),
        503
    );
    let letter = fake.dead_letters[0].clone();
    assert_eq!(crate::event_key::tenant_of(&letter.event_key), "acme");
    fake.pending.push(crate::db::PendingLetter {
        id: 1,
        body: letter.body.clone(),
        event_key: letter.event_key.clone(),
    });
    let report = block_on(crate::replay::replay(&mut fake, 50));
    assert_eq!(report.body_json().unwrap()["replayed"], 1);
    let replayed = fake.records.last().unwrap();
    assert_eq!(replayed.tenant, "acme");
    assert_eq!(replayed.event_key.as_str(), letter.event_key);
    assert_eq!(fake.event_rows.last().unwrap().tenant, "acme");
    // And the scope ends with the replay.
    assert_eq!(crate::effects::Effects::tenant(&fake), "");
}
