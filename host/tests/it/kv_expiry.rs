//! Keys with an end: the Redis store's `expire` rules (runtime config) give the
//! idempotency keys a time to live, and an event whose done key has expired is
//! still a duplicate, judged by PostgreSQL in the one recording statement, with
//! no second effect.

use crate::common::*;
use std::time::Duration;
use vapi_edge_core::pg_sql::{INSERT_EVENT_ROW, RECORD_EVENT_CALL};

const CALLER: &str = "+12125550187";

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The time to live (seconds) of the one key matching `pattern`; `None` when
/// there is no such key.
async fn ttl_of(pattern: &str) -> Option<i64> {
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let key = keys.first()?;
    Some(
        redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_done_key_costs_one_round_trip_and_no_second_effect() {
    let proxy = PgProxy::start().await;
    let db = TestDb::migrated().await;
    let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let dir = temp_dir("kv-expiry");
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\n\
             expire = {{ \"vapi-edge/claim/\" = 120, \"vapi-edge/done/\" = 2 }}\n"
        ),
    )
    .unwrap();
    let mut extra = proxy.variables(&db);
    // A claim names its lease window and stays after a success, so a
    // redelivery in the same window, with the done key gone, would be told
    // to retry later: a short lease lets the window pass while the done key
    // expires.
    extra.push(("claim_lease_ms".into(), "1000".into()));
    let app = WebhookApp::start_with_db_and(
        db,
        AppOptions {
            extra,
            redis: false,
            ..Default::default()
        },
        |mut options| {
            options.runtime_config = Some(config.clone());
            options
        },
    );
    let call_id = unique_id("call");
    let body = inbound_start(&call_id, &agent.assistant_id, CALLER);
    let from = proxy.executed().len();
    assert_eq!(app.deliver(&body).await.json()["outcome"], "recorded");
    // Its event row goes after the answer: wait for it, so the counts below
    // are the redeliveries' own.
    assert_eq!(
        proxy.statements_since(from, 2).await,
        [RECORD_EVENT_CALL, INSERT_EVENT_ROW]
    );
    let done_ttl = ttl_of(&format!("vapi-edge/done/*{call_id}*")).await;
    assert!(
        matches!(done_ttl, Some(1..=2)),
        "done key's TTL: {done_ttl:?}"
    );
    // The claim key stays after a success (the done key answers first); it
    // ends with its own rule.
    let claim_ttl = ttl_of(&format!("vapi-edge/claim/*{call_id}*")).await;
    assert!(
        matches!(claim_ttl, Some(100..=120)),
        "claim key's TTL: {claim_ttl:?}"
    );

    // While the done key lives, a duplicate costs no recording statement.
    let from = proxy.executed().len();
    assert_eq!(app.deliver(&body).await.json()["outcome"], "duplicate");
    assert_eq!(proxy.statements_since(from, 1).await, [INSERT_EVENT_ROW]);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ttl_of(&format!("vapi-edge/done/*{call_id}*")).await, None);
    let from = proxy.executed().len();
    assert_eq!(app.deliver(&body).await.json()["outcome"], "duplicate");
    assert_eq!(
        proxy.statements_since(from, 2).await,
        [RECORD_EVENT_CALL, INSERT_EVENT_ROW],
        "an expired done key: one recording statement, which finds the event recorded"
    );
    assert_eq!(call_rows(&app.db, &call_id).await, (1, 1, 1));
    println!(
        "[kv_expiry] done key TTL {done_ttl:?} s, claim key TTL {claim_ttl:?} s; after it expired the redelivery was a duplicate \
         by PostgreSQL: 1 recording statement, rows (1, 1, 1)"
    );
}
