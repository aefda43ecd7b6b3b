//! Every PostgreSQL statement the component sends with `query` returns at
//! least one row when it finds nothing. Spin 4.0.0 to 4.0.2 never answers a
//! `spin:postgres` query whose result is empty (spinframework/spin#3671), so
//! one such statement hangs its request there.
//!
//! The statements are `vapi_edge_core::pg_sql::ROW_QUERIES`; the component's
//! Postgres adapter (`src/store/postgres.rs`) sends nothing else with `query`,
//! and this file checks that too. (`vapi-edge-host` also logs a WARN for any
//! empty result, and the harness fails every end-to-end test that sees one.)

use crate::common::*;
use vapi_edge_core::pg_sql::{self, ROW_QUERIES};

/// On a freshly migrated, empty database, with parameters that match nothing.
#[tokio::test(flavor = "multi_thread")]
async fn every_row_query_returns_a_row_when_nothing_is_found() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    for query in ROW_QUERIES {
        let messages = client
            .simple_query(&query.with_not_found_literals())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", query.name));
        let rows: Vec<_> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect();
        assert!(
            !rows.is_empty(),
            "{} returned no rows: it would hang under Spin 4.0.0-4.0.2",
            query.name
        );
        println!(
            "{}: {} row(s) when nothing is found",
            query.name,
            rows.len()
        );
    }
    // Not found reads as not found: no agent, no line, no dead letter.
    let first_column = |sql: &str| {
        let client = &client;
        let sql = sql.to_string();
        async move {
            let messages = client.simple_query(&sql).await.unwrap();
            messages.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).map(str::to_string))
                }
                _ => None,
            })
        }
    };
    for query in [
        pg_sql::RECORD_EVENT_QUERY,
        pg_sql::PENDING_DEAD_LETTERS_QUERY,
        pg_sql::LINE_ANSWER_QUERY,
    ] {
        assert_eq!(
            first_column(&query.with_not_found_literals()).await,
            Some(None),
            "{}: the not-found row starts with NULL",
            query.name
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM processed_webhook_events")
            .await,
        0,
        "record_event wrote nothing for an unknown assistant"
    );
}

/// The adapter's one `query` call takes a `RowQuery`, and no other code in
/// the component calls `query` on a connection.
#[test]
fn the_component_sends_queries_only_through_the_adapter() {
    let src = workspace_root().join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains(".query(") && !line.contains("db.query(statement.sql, params)") {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "send row-returning statements through `query(db, &sql::…_QUERY, …)`:\n{}",
        offenders.join("\n")
    );
}
