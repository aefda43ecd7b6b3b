//! `vapi-edge-host prune`: deletes what grows with every delivery and is only
//! needed for a while, in batches (short transactions, no long locks), on
//! PostgreSQL or the SQLite store:
//!
//! - `webhook_events` older than `keep_days`: the delivery log behind
//!   `/metrics` and the dashboard's figures (its totals restart lower, which
//!   Prometheus reads as a counter reset);
//! - `processed_webhook_events` older than `keep_keys_days`: the durable
//!   idempotency record. A delivery of an event whose row is gone would be
//!   recorded again, so keep it longer than Vapi can still retry and than
//!   you would replay a dead letter; the row of an event with a pending dead
//!   letter is always kept, whatever its age;
//! - dead letters replayed more than `keep_days` ago (pending ones never).
//!
//! A tenant's `retention_days` (README, "Tenants") replaces `keep_days` for
//! its own delivery records.
//!
//! The calls themselves (`call_tracking`, `call_logs`, leads, agents) are the
//! business's records and are never pruned here.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Retention {
    pub keep_days: u32,
    pub keep_keys_days: u32,
    /// Rows per statement.
    pub batch: u32,
    /// Tenants whose delivery records are kept their own number of days.
    pub tenant_days: Vec<(String, u32)>,
}

/// Rows deleted, by table (and of `webhook_events`, those of each tenant
/// with a retention of its own).
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub webhook_events: u64,
    pub processed_webhook_events: u64,
    pub dead_letters: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, u64>,
}

/// One statement per table, for each engine: `$1` / `?1` the age in days,
/// `$2` / `?2` the batch size; for `webhook_events`, `$3` / `?3` the tenants
/// with a retention of their own (left out), and for `tenant_events` the
/// one tenant whose rows go.
struct Statements {
    webhook_events: &'static str,
    tenant_events: &'static str,
    processed_webhook_events: &'static str,
    dead_letters: &'static str,
}

const POSTGRES: Statements = Statements {
    webhook_events: "DELETE FROM webhook_events WHERE id IN (
        SELECT id FROM webhook_events
        WHERE received_at < now() - make_interval(days => $1::int)
          AND NOT (tenant = ANY($3::text[]))
        ORDER BY id LIMIT $2::int)",
    tenant_events: "DELETE FROM webhook_events WHERE id IN (
        SELECT id FROM webhook_events
        WHERE tenant = $3::text AND received_at < now() - make_interval(days => $1::int)
        ORDER BY id LIMIT $2::int)",
    processed_webhook_events: "DELETE FROM processed_webhook_events WHERE event_key IN (
        SELECT p.event_key FROM processed_webhook_events p
        WHERE p.processed_at < now() - make_interval(days => $1::int)
          AND NOT EXISTS (SELECT 1 FROM dead_letters d
                          WHERE d.event_key = p.event_key AND d.replayed_at IS NULL)
        LIMIT $2::int)",
    dead_letters: "DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters
        WHERE replayed_at IS NOT NULL
          AND replayed_at < now() - make_interval(days => $1::int)
        ORDER BY id LIMIT $2::int)",
};

const SQLITE: Statements = Statements {
    webhook_events: "DELETE FROM webhook_events WHERE id IN (
        SELECT id FROM webhook_events
        WHERE received_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' days')
          AND tenant NOT IN (SELECT value FROM json_each(?3))
        ORDER BY id LIMIT ?2)",
    tenant_events: "DELETE FROM webhook_events WHERE id IN (
        SELECT id FROM webhook_events
        WHERE tenant = ?3
          AND received_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' days')
        ORDER BY id LIMIT ?2)",
    processed_webhook_events: "DELETE FROM processed_webhook_events WHERE event_key IN (
        SELECT p.event_key FROM processed_webhook_events p
        WHERE p.processed_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' days')
          AND NOT EXISTS (SELECT 1 FROM dead_letters d
                          WHERE d.event_key = p.event_key AND d.replayed_at IS NULL)
        LIMIT ?2)",
    dead_letters: "DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters
        WHERE replayed_at IS NOT NULL
          AND replayed_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' days')
        ORDER BY id LIMIT ?2)",
};

pub async fn postgres(url: &str, retention: &Retention) -> Result<Pruned> {
    let client = vapi_edge_backends::pg_tls::connect(url).await?;
    let batch = retention.batch as i32;
    let own: Vec<String> = retention
        .tenant_days
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    let run = async |sql: &str,
                     age: u32,
                     extra: Option<&(dyn tokio_postgres::types::ToSql + Sync)>|
           -> Result<u64> {
        let mut total = 0;
        let days = age as i32;
        loop {
            let deleted = match extra {
                Some(extra) => client.execute(sql, &[&days, &batch, extra]).await,
                None => client.execute(sql, &[&days, &batch]).await,
            }
            .context("prune statement failed (is the schema migrated?)")?;
            total += deleted;
            if deleted < u64::from(retention.batch) {
                return Ok(total);
            }
        }
    };
    let mut pruned = Pruned {
        webhook_events: run(POSTGRES.webhook_events, retention.keep_days, Some(&own)).await?,
        ..Pruned::default()
    };
    for (tenant, days) in &retention.tenant_days {
        let deleted = run(POSTGRES.tenant_events, *days, Some(tenant)).await?;
        pruned.webhook_events += deleted;
        pruned.tenants.insert(tenant.clone(), deleted);
    }
    pruned.processed_webhook_events = run(
        POSTGRES.processed_webhook_events,
        retention.keep_keys_days,
        None,
    )
    .await?;
    pruned.dead_letters = run(POSTGRES.dead_letters, retention.keep_days, None).await?;
    Ok(pruned)
}

pub fn sqlite(path: &Path, retention: &Retention) -> Result<Pruned> {
    let connection = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let own = serde_json::to_string(
        &retention
            .tenant_days
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
    )?;
    let run = |sql: &str, age: u32, extra: Option<&str>| -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = match extra {
                Some(extra) => {
                    connection.execute(sql, rusqlite::params![age, retention.batch, extra])
                }
                None => connection.execute(sql, rusqlite::params![age, retention.batch]),
            }
            .context("prune statement failed (is the schema migrated?)")?
                as u64;
            total += deleted;
            if deleted < u64::from(retention.batch) {
                return Ok(total);
            }
        }
    };
    let mut pruned = Pruned {
        webhook_events: run(SQLITE.webhook_events, retention.keep_days, Some(&own))?,
        ..Pruned::default()
    };
    for (tenant, days) in &retention.tenant_days {
        let deleted = run(SQLITE.tenant_events, *days, Some(tenant))?;
        pruned.webhook_events += deleted;
        pruned.tenants.insert(tenant.clone(), deleted);
    }
    pruned.processed_webhook_events = run(
        SQLITE.processed_webhook_events,
        retention.keep_keys_days,
        None,
    )?;
    pruned.dead_letters = run(SQLITE.dead_letters, retention.keep_days, None)?;
    Ok(pruned)
}
