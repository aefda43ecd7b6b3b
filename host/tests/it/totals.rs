//! The all-time figures of `/metrics` come from totals that triggers keep
//! (migration 0005), not from a scan of history. These tests hold the totals
//! to the rows they count, on both stores: written by concurrent connections,
//! several rows per statement, with a transaction that rolls back and calls
//! that are tracked twice; and on a database that already had rows when it
//! was migrated to 0005.

use crate::common::*;
use std::collections::BTreeMap;
use vapi_edge_core::metrics::Snapshot;
use vapi_edge_core::{pg_sql, sqlite_sql};

/// The all-time figures as a scan of every row computes them (what `/metrics`
/// did before 0005): the oracle. SQL both engines accept.
#[derive(Debug, PartialEq)]
struct Figures {
    requests: BTreeMap<(String, String, String), u64>,
    errors: BTreeMap<String, u64>,
    buckets: Vec<u64>,
    count: u64,
    sum_ms: f64,
    inbound_calls: u64,
}

async fn scanned(db: &TestDb) -> Figures {
    let mut requests = BTreeMap::new();
    for row in db
        .rows(
            "SELECT coalesce(message_type, ''), outcome, (status_code / 100) || 'xx', count(*)
             FROM webhook_events GROUP BY 1, 2, 3",
            &[],
        )
        .await
    {
        requests.insert((row.text(0), row.text(1), row.text(2)), row.int(3) as u64);
    }
    let mut errors = BTreeMap::new();
    for class in ["agent_lookup", "call_tracking", "upstream"] {
        let n = db
            .row(
                "SELECT count(*) FROM webhook_events WHERE error_class = $1",
                &[class],
            )
            .await
            .unwrap()
            .int(0);
        errors.insert(class.to_string(), n as u64);
    }
    let filters: Vec<String> = vapi_edge_core::metrics::BUCKETS_S
        .iter()
        .map(|s| format!("count(*) FILTER (WHERE duration_ms <= {})", s * 1000.0))
        .collect();
    let row = db
        .row(
            &format!(
                "SELECT count(*), coalesce(sum(duration_ms), 0), {} FROM webhook_events",
                filters.join(", ")
            ),
            &[],
        )
        .await
        .unwrap();
    Figures {
        requests,
        errors,
        buckets: (2..2 + filters.len()).map(|i| row.int(i) as u64).collect(),
        count: row.int(0) as u64,
        sum_ms: row.text(1).parse().unwrap(),
        inbound_calls: db.count("SELECT count(*) FROM call_tracking").await as u64,
    }
}

/// The same figures as the component's `/metrics` statement reads them.
async fn reported(db: &TestDb) -> Figures {
    let statement = match db.kind {
        StoreKind::Postgres => pg_sql::METRICS_SNAPSHOT.to_string(),
        StoreKind::Sqlite => sqlite_sql::metrics_snapshot(),
    };
    let json = db.row(&statement, &[]).await.unwrap().text(0);
    let snapshot: Snapshot = serde_json::from_str(&json).unwrap();
    Figures {
        requests: snapshot
            .requests
            .iter()
            .map(|r| {
                (
                    (
                        r.message_type.clone(),
                        r.outcome.clone(),
                        r.status_class.clone(),
                    ),
                    r.count,
                )
            })
            .collect(),
        errors: BTreeMap::from([
            (
                "agent_lookup".to_string(),
                snapshot.agent_lookup_failures_total,
            ),
            (
                "call_tracking".to_string(),
                snapshot.call_tracking_failures_total,
            ),
            ("upstream".to_string(), snapshot.upstream_failures_total),
        ]),
        buckets: snapshot.processing.buckets.clone(),
        count: snapshot.processing.count,
        sum_ms: snapshot.processing.sum_seconds * 1000.0,
        inbound_calls: snapshot.inbound_calls_total,
    }
}

/// Asserts the reported figures are the scanned ones (sums to a rounding
/// error), and that they count something.
async fn assert_totals_match(db: &TestDb, expected_rows: u64, expected_calls: u64) {
    let (mut scanned, mut reported) = (scanned(db).await, reported(db).await);
    assert_eq!(scanned.count, expected_rows, "rows written");
    assert_eq!(scanned.inbound_calls, expected_calls, "calls tracked");
    assert!(
        (scanned.sum_ms - reported.sum_ms).abs() < 1e-6 * scanned.sum_ms.max(1.0),
        "sum: scanned {} ms, reported {} ms",
        scanned.sum_ms,
        reported.sum_ms
    );
    (scanned.sum_ms, reported.sum_ms) = (0.0, 0.0);
    assert_eq!(reported, scanned);
}

/// Row `i` of a deterministic mix: types (one missing), outcomes, status
/// codes, error classes and durations in every histogram bucket.
fn event_values(i: usize) -> String {
    let types = [
        "'status-update'",
        "'end-of-call-report'",
        "'tool-calls'",
        "NULL",
    ];
    let (outcome, status, error) = [
        ("'recorded'", 200, "NULL"),
        ("'duplicate'", 200, "NULL"),
        ("'agent_not_found'", 500, "'agent_lookup'"),
        ("'invalid_payload'", 400, "NULL"),
        ("'recorded'", 200, "'call_tracking'"),
        ("'fallback'", 200, "'upstream'"),
    ][i % 6];
    let duration = [
        0.4, 5.0, 7.5, 24.9, 50.0, 99.0, 240.0, 800.0, 2400.0, 9000.0, 12000.0,
    ][i % 11];
    format!(
        "({}, {outcome}, {status}, {duration}, {error})",
        types[i % types.len()]
    )
}

fn insert_events(values: impl Iterator<Item = String>) -> String {
    format!(
        "INSERT INTO webhook_events (message_type, outcome, status_code, duration_ms, error_class) VALUES {}",
        values.collect::<Vec<_>>().join(", ")
    )
}

fn track_call(call: &str) -> String {
    format!("INSERT INTO call_tracking (vapi_call_id) VALUES ('{call}') ON CONFLICT (vapi_call_id) DO NOTHING")
}

const WRITERS: usize = 8;
const ROWS_PER_WRITER: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_totals_equal_the_rows_under_concurrent_writers() {
    let db = TestDb::migrated().await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = db.client().await;
        writers.push(tokio::spawn(async move {
            // One row per statement, as the component writes them.
            for i in 0..ROWS_PER_WRITER {
                client
                    .batch_execute(&insert_events(std::iter::once(event_values(w * 1000 + i))))
                    .await
                    .unwrap();
            }
            // Several rows in one statement, in a transaction that commits,
            // then in one that rolls back: it must count nothing.
            client
                .batch_execute(&format!(
                    "BEGIN; {}; COMMIT",
                    insert_events((0..20).map(|i| event_values(w * 1000 + 500 + i)))
                ))
                .await
                .unwrap();
            client
                .batch_execute(&format!(
                    "BEGIN; {}; {}; ROLLBACK",
                    insert_events((0..7).map(event_values)),
                    track_call(&format!("rolled-back-{w}"))
                ))
                .await
                .unwrap();
            // Ten calls each, half of them also tracked by the next writer:
            // the second insert of a call adds nothing.
            for c in 0..10 {
                client
                    .batch_execute(&track_call(&format!("call-{w}-{c}")))
                    .await
                    .unwrap();
                if c % 2 == 0 {
                    let theirs = format!("call-{}-{c}", (w + 1) % WRITERS);
                    client.batch_execute(&track_call(&theirs)).await.unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let rows = (WRITERS * (ROWS_PER_WRITER + 20)) as u64;
    assert_totals_match(&db, rows, (WRITERS * 10) as u64).await;
    let shards = db
        .count("SELECT count(DISTINCT shard) FROM webhook_event_totals")
        .await;
    println!(
        "[totals] postgres: {WRITERS} concurrent writers, {rows} rows, {} calls: totals equal the scan ({shards} shards in use)",
        WRITERS * 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_totals_equal_the_rows() {
    let db = TestDb::migrated_on(StoreKind::Sqlite).await;
    let connection = rusqlite::Connection::open(db.sqlite_path()).unwrap();
    for i in 0..ROWS_PER_WRITER {
        connection
            .execute_batch(&insert_events(std::iter::once(event_values(i))))
            .unwrap();
    }
    connection
        .execute_batch(&insert_events((0..20).map(event_values)))
        .unwrap();
    connection
        .execute_batch(&format!(
            "BEGIN; {}; {}; ROLLBACK",
            insert_events((0..7).map(event_values)),
            track_call("rolled-back")
        ))
        .unwrap();
    for c in 0..10 {
        connection
            .execute_batch(&track_call(&format!("call-{c}")))
            .unwrap();
        connection
            .execute_batch(&track_call(&format!("call-{}", c / 2)))
            .unwrap();
    }
    drop(connection);
    assert_totals_match(&db, (ROWS_PER_WRITER + 20) as u64, 10).await;
}

/// A database with rows, migrated to 0004 by an earlier build, then to 0005:
/// the migration counts what was there, and a row written after it counts once.
async fn migrating_counts_what_was_there(store: StoreKind) {
    let db = TestDb::create_on(store).await;
    let folder = store.migrations();
    let before = temp_dir("migrations-0004");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".sql") && name.as_str() < "0005" {
            std::fs::copy(&path, before.join(&name)).unwrap();
        }
    }
    db.migrate_from(&before);
    assert!(db
        .rows(
            "SELECT 1 FROM schema_migrations WHERE version LIKE '0005%'",
            &[]
        )
        .await
        .is_empty());
    db.rows(&insert_events((0..40).map(event_values)), &[])
        .await;
    for c in 0..3 {
        db.rows(&track_call(&format!("call-{c}")), &[]).await;
    }

    db.migrate_from(&folder);
    assert_totals_match(&db, 40, 3).await;
    db.rows(&insert_events((40..41).map(event_values)), &[])
        .await;
    db.rows(&track_call("call-after"), &[]).await;
    assert_totals_match(&db, 41, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrating_counts_what_was_there() {
    migrating_counts_what_was_there(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrating_counts_what_was_there() {
    migrating_counts_what_was_there(StoreKind::Sqlite).await;
}
