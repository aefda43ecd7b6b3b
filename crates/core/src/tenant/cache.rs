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
use crate::db::DbError;
use crate::effects::Effects;
use serde::{Deserialize, Serialize};

/// `tenant_cache_ms` when unset.
pub const DEFAULT_CACHE_MS: i64 = 10_000;

/// The key of the directory of tenant ids.
pub const DIRECTORY_KEY: &str = "vapi-edge/tenants/directory";

/// The key of one tenant's cached configuration.
pub fn entry_key(id: &str) -> String {
    format!("vapi-edge/tenants/entry/{id}")
}

#[derive(Serialize, Deserialize)]
struct Entry {
    loaded_ms: i64,
    config: Stored,
}

#[derive(Serialize, Deserialize)]
struct Directory {
    loaded_ms: i64,
    ids: Vec<String>,
}

/// One row of [`Effects::tenants`].
#[derive(Deserialize)]
struct Row {
    id: String,
    config: serde_json::Value,
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

fn fresh(loaded_ms: i64, now_ms: i64, cache_ms: i64) -> bool {
    // Replicas' clocks differ a little: an entry stamped slightly ahead is
    // as fresh as one slightly behind.
    (now_ms - loaded_ms).abs() < cache_ms
}

/// The configuration of tenant `id`, `None` when there is no such tenant.
pub async fn find<E: Effects>(
    effects: &mut E,
    id: &str,
    cache_ms: i64,
) -> Result<Option<Stored>, LookupError> {
    let now = effects.now_ms();
    let entry = read::<Entry>(effects, &entry_key(id)).await;
    if let Some(entry) = &entry {
        if fresh(entry.loaded_ms, now, cache_ms) {
            return Ok(Some(entry.config.clone()));
        }
    }
    let directory = read::<Directory>(effects, DIRECTORY_KEY).await;
    if let Some(directory) = &directory {
        if fresh(directory.loaded_ms, now, cache_ms) && !directory.ids.iter().any(|i| i == id) {
            return Ok(None);
        }
    }
    let rows = load(effects).await?;
    let mut found = None;
    let mut ids = Vec::with_capacity(rows.len());
    for (row_id, config) in rows {
        let config = config.map_err(LookupError::Config);
        if let Ok(config) = &config {
            let entry = Entry {
                loaded_ms: now,
                config: config.clone(),
            };
            write(effects, &entry_key(&row_id), &entry).await;
        }
        if row_id == id {
            found = Some(config);
        }
        ids.push(row_id);
    }
    // A tenant removed since the last read loses its entry.
    for gone in directory
        .map(|d| d.ids)
        .unwrap_or_default()
        .iter()
        .filter(|old| !ids.contains(old))
    {
        let _ = effects.delete(&entry_key(gone)).await;
    }
    write(
        effects,
        DIRECTORY_KEY,
        &Directory {
            loaded_ms: now,
            ids,
        },
    )
    .await;
    found.transpose()
}

/// Forgets what the store holds of tenant `id` and the directory, so the
/// next lookup anywhere reads the database (after a change by the admin
/// route).
pub async fn forget<E: Effects>(effects: &mut E, id: &str) {
    let _ = effects.delete(&entry_key(id)).await;
    let _ = effects.delete(DIRECTORY_KEY).await;
}

/// Every tenant from the database, each configuration read on its own so a
/// damaged one fails only its own tenant.
async fn load<E: Effects>(
    effects: &mut E,
) -> Result<Vec<(String, Result<Stored, TenantError>)>, LookupError> {
    let text = effects.tenants().await.map_err(LookupError::Database)?;
    let rows: Vec<Row> = serde_json::from_str(&text)
        .map_err(|e| LookupError::Database(DbError::lasting(format!("tenants: {e}"))))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let config = serde_json::from_value::<Stored>(row.config)
                .map_err(|e| TenantError::Stored(e.to_string()));
            (row.id, config)
        })
        .collect())
}

async fn read<T: for<'de> Deserialize<'de>>(effects: &mut impl Effects, key: &str) -> Option<T> {
    let bytes = effects.get(key).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

async fn write(effects: &mut impl Effects, key: &str, value: &impl Serialize) {
    if let Ok(bytes) = serde_json::to_vec(value) {
        let _ = effects.set(key, &bytes).await;
    }
}
