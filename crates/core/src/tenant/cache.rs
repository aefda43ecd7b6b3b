//! Finding a tenant without a database statement per request: each tenant's
//! configuration is kept in the key-value store under its own key, beside a
//! directory of every tenant id, both stamped with when they were read from
//! the database. A webhook for a known tenant costs one key-value read; one
//! for an id that is not a tenant costs two and no statement while the
//! directory is fresh; nothing is ever written for an unknown id, so a flood
//! of made-up ids neither reaches the database nor fills the store.
//!
//! What is older than `tenant_cache_ms` (default 10 s) is read again, all
//! tenants in one statement, so a change made with `vapi-edge-host tenant`
//! applies on every replica within that time (sooner where the store is
//! shared and the admin route cleared it). When the store does not answer,
//! the database is read instead: slower, never wrong.

use super::{Stored, TenantError};
use crate::claim::ClaimScope;
use crate::db::DbError;
use crate::effects::Effects;
use serde_json::{json, Value};

/// `tenant_cache_ms` when unset.
pub const DEFAULT_CACHE_MS: i64 = 10_000;

/// Whose tenants a key-value store holds: the database's, scoped as claims
/// are ([`ClaimScope`]), so deployments sharing one store never read each
/// other's tenants, and a database restored in place is read again.
fn scope(effects: &mut impl Effects) -> ClaimScope {
    ClaimScope::new(
        &effects.database_address(),
        effects.variable("claim_scope").as_deref(),
    )
}

/// The key of the directory of tenant ids: `{"loaded_ms", "ids": [...]}`.
fn directory_key(scope: &ClaimScope) -> String {
    format!("vapi-edge/tenants/{}/directory", scope.as_str())
}

/// The key of one tenant's cached configuration: `{"loaded_ms", "config"}`.
pub fn entry_key(scope: &ClaimScope, id: &str) -> String {
    format!("vapi-edge/tenants/{}/entry/{id}", scope.as_str())
}

/// Why a tenant could not be looked up.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupError {
    /// The database did not answer the refresh.
    Database(DbError),
    /// The tenant's stored configuration cannot be read, or a setting of the
    /// lookup is wrong (an operator's mistake).
    Config(TenantError),
}

/// `tenant_cache_ms`, checked.
pub fn cache_ms(value: Option<String>) -> Result<i64, TenantError> {
    match value {
        None => Ok(DEFAULT_CACHE_MS),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(ms) if (100..=300_000).contains(&ms) => Ok(ms),
            _ => Err(TenantError::CacheMs),
        },
    }
}

/// Whether a stored entry or directory was read from the database less
/// than `cache_ms` ago.
fn fresh(stamped: &Value, now_ms: i64, cache_ms: i64) -> bool {
    // Replicas' clocks differ a little: an entry stamped slightly ahead is
    // as fresh as one slightly behind.
    stamped["loaded_ms"]
        .as_i64()
        .is_some_and(|loaded_ms| (now_ms - loaded_ms).abs() < cache_ms)
}

/// The configuration of tenant `id`, `None` when there is no such tenant.
pub async fn find<E: Effects>(
    effects: &mut E,
    id: &str,
    cache_ms: i64,
) -> Result<Option<Stored>, LookupError> {
    let now = effects.now_ms();
    let scope = scope(effects);
    if let Some(entry) = read(effects, &entry_key(&scope, id)).await {
        if fresh(&entry, now, cache_ms) {
            if let Ok(config) = Stored::from_json(&entry["config"]) {
                return Ok(Some(config));
            }
        }
    }
    let directory = read(effects, &directory_key(&scope)).await;
    let listed: Vec<String> = directory
        .as_ref()
        .and_then(|d| d["ids"].as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(directory) = &directory {
        if fresh(directory, now, cache_ms) && !listed.iter().any(|i| i == id) {
            return Ok(None);
        }
    }
    let rows = load(effects).await?;
    let mut found = None;
    let mut ids = Vec::with_capacity(rows.len());
    for (row_id, config) in rows {
        let config = config.map_err(LookupError::Config);
        if let Ok(config) = &config {
            let entry = json!({ "loaded_ms": now, "config": config.to_json() });
            write(effects, &entry_key(&scope, &row_id), &entry).await;
        }
        if row_id == id {
            found = Some(config);
        }
        ids.push(row_id);
    }
    // A tenant removed since the last read loses its entry.
    for gone in listed.iter().filter(|old| !ids.contains(old)) {
        let _ = effects.delete(&entry_key(&scope, gone)).await;
    }
    let directory = json!({ "loaded_ms": now, "ids": ids });
    write(effects, &directory_key(&scope), &directory).await;
    found.transpose()
}

/// Forgets what the store holds of tenant `id` and the directory, so the
/// next lookup anywhere reads the database (after a change by the admin
/// route).
pub async fn forget<E: Effects>(effects: &mut E, id: &str) {
    let scope = scope(effects);
    let _ = effects.delete(&entry_key(&scope, id)).await;
    let _ = effects.delete(&directory_key(&scope)).await;
}

/// Every tenant from the database, each configuration read on its own so a
/// damaged one fails only its own tenant.
async fn load<E: Effects>(effects: &mut E) -> Result<Vec<Row>, LookupError> {
    let text = effects.tenants().await.map_err(LookupError::Database)?;
    rows(&text).map_err(|e| LookupError::Database(DbError::lasting(format!("tenants: {e}"))))
}

/// One tenant as the database holds it: its id, and its configuration or why
/// that cannot be read.
pub(super) type Row = (String, Result<Stored, TenantError>);

/// The rows of [`Effects::tenants`]' JSON text: `[{"id", "config"}, ...]`.
pub(super) fn rows(text: &str) -> Result<Vec<Row>, String> {
    let value: Value = serde_json::from_slice(text.as_bytes()).map_err(|e| e.to_string())?;
    let rows = value.as_array().ok_or("not an array")?;
    rows.iter()
        .map(|row| {
            let id = row["id"].as_str().ok_or("a row without an id")?;
            Ok((id.to_string(), Stored::from_json(&row["config"])))
        })
        .collect()
}

async fn read(effects: &mut impl Effects, key: &str) -> Option<Value> {
    let bytes = effects.get(key).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

async fn write(effects: &mut impl Effects, key: &str, value: &Value) {
    let _ = effects.set(key, value.to_string().as_bytes()).await;
}
