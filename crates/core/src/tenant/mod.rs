//! Tenants: several Vapi organisations on one deployment (README, "Tenants").
//!
//! A tenant is one Vapi organisation's server URL, `POST /webhooks/vapi/{id}`,
//! with its own credential and its own overrides of the settings. Its
//! configuration is a set of the deployment's own variables (every option the
//! single-tenant `vapi_*` variables have, and the settings that differ between
//! clients), kept in the database (`tenants.config`, [`Stored`]) and read
//! through the key-value store ([`cache`]). A webhook on a tenant's URL runs
//! the same flow as one on `/webhooks/vapi`, in the tenant's scope: the
//! tenant's variables in place of the deployment's
//! ([`crate::effects::Effects::variable`]); its owner is found among the
//! tenant's mappings only and its rows carry the tenant (migration 0008).
//!
//! No secret is kept in clear: a Bearer secret as its SHA-256, an HMAC or
//! upstream secret sealed with `tenant_secrets_key` ([`seal`]).

mod admin;
pub mod cache;
pub mod oauth;
pub mod seal;

pub use admin::serve as serve_admin;
pub use seal::SecretsKeys;

use crate::db::DbError;
use crate::effects::Effects;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use thiserror::Error;

/// The longest tenant id: a DNS label's length, so an id fits a host name.
pub const MAX_ID_LEN: usize = 63;

/// Whether `id` can name a tenant: 1-63 of `a-z`, `0-9` and `-`, not starting
/// with `-`. Anything else on a tenant URL is 404 before any lookup.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How a variable a tenant may set is kept and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Part of its credential: the tenant's value only, never the
    /// deployment's (a tenant without a secret refuses every webhook).
    Credential,
    /// An HMAC secret: sealed at rest; the tenant's only.
    SealedCredential,
    /// A secret Vapi presents (a Bearer secret, an OAuth2 client secret): kept
    /// as its SHA-256 ([`hashed_as`]); the tenant's only.
    HashedCredential,
    /// A setting: the tenant's value, else the deployment's.
    Setting,
    /// The upstream's signing key: sealed at rest; the tenant's, else the
    /// deployment's while the tenant keeps the deployment's `upstream_url`.
    SealedSetting,
}

/// Where the hashes of a tenant's Bearer secrets are kept: the variable
/// `vapi_server_secret_sha256`, which the verifier reads as the deployment's
/// own would be.
pub const BEARER_HASHES: &str = crate::verify::var::SERVER_SECRET_SHA256;

/// Every variable a tenant may set.
pub const VARIABLES: &[(&str, Kind)] = {
    use crate::verify::var;
    &[
        (var::HMAC_SECRET, Kind::SealedCredential),
        (var::SERVER_SECRET, Kind::HashedCredential),
        (var::SERVER_SECRET_SHA256, Kind::Credential),
        (var::SIGNATURE_HEADER, Kind::Credential),
        (var::TIMESTAMP_HEADER, Kind::Credential),
        (var::SIGNATURE_PAYLOAD, Kind::Credential),
        (var::SIGNATURE_ENCODING, Kind::Credential),
        (var::SIGNATURE_PREFIX, Kind::Credential),
        (var::HMAC_ALGORITHM, Kind::Credential),
        (var::HMAC_SECRET_BASE64, Kind::Credential),
        (var::TIMESTAMP_TOLERANCE_S, Kind::Credential),
        (var::SERVER_SECRET_HEADER, Kind::Credential),
        (var::SIGNATURE_URL, Kind::Credential),
        (var::MESSAGE_ID_HEADER, Kind::Credential),
        (oauth::CLIENT_ID, Kind::Credential),
        (oauth::CLIENT_SECRET, Kind::HashedCredential),
        (oauth::CLIENT_SECRET_SHA256, Kind::Credential),
        (oauth::TOKEN_TTL_S, Kind::Credential),
        ("default_country", Kind::Setting),
        ("agent_lookup_retry_ms", Kind::Setting),
        ("inbound_rollout_percent", Kind::Setting),
        ("call_type_aliases", Kind::Setting),
        ("upstream_url", Kind::Setting),
        ("upstream_secret", Kind::SealedSetting),
        ("upstream_types", Kind::Setting),
        ("upstream_timeout_ms", Kind::Setting),
        ("upstream_timeouts", Kind::Setting),
        ("campaign_predial_eligible", Kind::Setting),
        ("default_org_id", Kind::Setting),
        ("assistant_request_fallback", Kind::Setting),
        (RETENTION_DAYS, Kind::Setting),
        // Reconciliation with Vapi's API: the tenant's own key, never the
        // deployment's (another Vapi organisation's).
        (crate::reconcile::API_KEY, Kind::SealedCredential),
        (crate::reconcile::API_URL, Kind::Setting),
    ]
};

/// How long `vapi-edge-host prune` keeps the tenant's delivery records
/// (`webhook_events`), in days, instead of its `--keep-days`.
pub const RETENTION_DAYS: &str = "retention_days";

/// A tenant's `retention_days`, checked: 1 to 3650.
pub fn retention_days(value: &str) -> Option<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=3650).contains(d))
}

/// Where the hashes of a [`Kind::HashedCredential`] are kept.
pub fn hashed_as(name: &str) -> &'static str {
    match name {
        oauth::CLIENT_SECRET => oauth::CLIENT_SECRET_SHA256,
        _ => BEARER_HASHES,
    }
}

/// How `name` is kept and read when a tenant sets it; `None` for a variable
/// only the deployment sets (the database, the key-value store, tokens, ...).
pub fn kind_of(name: &str) -> Option<Kind> {
    VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// A tenant's configuration as the database keeps it (`tenants.config`):
/// `{"variables": {...}, "sealed": {...}, "disabled": true}`, each part
/// left out when empty. Read and written through `serde_json::Value` (as the
/// component's other JSON is), not a derived deserializer of its own: the
/// component's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Values kept as they are (settings, credential options, Bearer hashes).
    pub variables: BTreeMap<String, String>,
    /// Values kept sealed ([`SecretsKeys::seal`]).
    pub sealed: BTreeMap<String, String>,
    /// A disabled tenant's webhooks are refused (403); its data stays.
    pub disabled: bool,
}

/// What is wrong with a tenant or the keys of its secrets. Never quotes a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TenantError {
    #[error("`{0}` is not a tenant id (1-63 of a-z, 0-9 and -, not starting with -)")]
    InvalidId(String),
    #[error("`{0}` is not a variable a tenant sets")]
    NotATenantVariable(String),
    #[error(
        "tenant_secrets_key is not set: a tenant's HMAC and upstream secrets are sealed with it"
    )]
    NoSecretsKey,
    #[error("tenant_secrets_key: key number {item} is shorter than 32 characters")]
    ShortSecretsKey { item: usize },
    #[error("a sealed secret was sealed with a key tenant_secrets_key no longer has")]
    UnknownSecretsKey,
    #[error("a sealed secret is damaged or belongs to another tenant")]
    Unsealable,
    #[error("tenant_cache_ms: expected milliseconds from 100 to 300000")]
    CacheMs,
    #[error("the stored configuration is not valid: {0}")]
    Stored(String),
}

impl Stored {
    /// The configuration in `value`; an error names what is wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Stored, TenantError> {
        let invalid = |what: &str| TenantError::Stored(what.to_string());
        let object = value.as_object().ok_or_else(|| invalid("not an object"))?;
        let strings = |key: &str| -> Result<BTreeMap<String, String>, TenantError> {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
                Some(serde_json::Value::Object(map)) => map
                    .iter()
                    .map(|(name, value)| match value.as_str() {
                        Some(text) => Ok((name.clone(), text.to_string())),
                        None => Err(invalid(&format!("{key}.{name} is not a string"))),
                    })
                    .collect(),
                Some(_) => Err(invalid(&format!("{key} is not an object"))),
            }
        };
        let disabled = match object.get("disabled") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(flag)) => *flag,
            Some(_) => return Err(invalid("disabled is not true or false")),
        };
        Ok(Stored {
            variables: strings("variables")?,
            sealed: strings("sealed")?,
            disabled,
        })
    }

    /// The configuration as the database keeps it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        if !self.variables.is_empty() {
            object.insert("variables".into(), serde_json::json!(self.variables));
        }
        if !self.sealed.is_empty() {
            object.insert("sealed".into(), serde_json::json!(self.sealed));
        }
        if self.disabled {
            object.insert("disabled".into(), true.into());
        }
        serde_json::Value::Object(object)
    }

    /// Sets `name` for tenant `id` the way its kind is kept: a Bearer secret
    /// hashed, an HMAC or upstream secret sealed with `keys` (`nonce`: 12
    /// random bytes), anything else as it is. An empty value unsets it.
    pub fn set(
        &mut self,
        id: &str,
        name: &str,
        value: &str,
        keys: Option<&SecretsKeys>,
        nonce: [u8; 12],
    ) -> Result<(), TenantError> {
        let kind = kind_of(name).ok_or_else(|| TenantError::NotATenantVariable(name.into()))?;
        if value.trim().is_empty() {
            self.unset(name);
            return Ok(());
        }
        match kind {
            Kind::HashedCredential => {
                let hashes: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(bearer_hash)
                    .collect();
                self.variables
                    .insert(hashed_as(name).to_string(), hashes.join(","));
            }
            Kind::SealedCredential | Kind::SealedSetting => {
                let keys = keys.ok_or(TenantError::NoSecretsKey)?;
                self.sealed
                    .insert(name.to_string(), keys.seal(&slot(id, name), value, nonce));
            }
            Kind::Credential | Kind::Setting => {
                self.variables.insert(name.to_string(), value.to_string());
            }
        }
        Ok(())
    }

    /// Removes `name` (for a Bearer secret, its hashes).
    pub fn unset(&mut self, name: &str) {
        let stored_as = match kind_of(name) {
            Some(Kind::HashedCredential) => hashed_as(name),
            _ => name,
        };
        self.variables.remove(stored_as);
        self.sealed.remove(stored_as);
    }

    /// The names set, with the values that are not secret: what `tenant
    /// show` and the admin route print.
    pub fn describe(&self) -> serde_json::Value {
        let mut variables = serde_json::Map::new();
        for (name, value) in &self.variables {
            let shown = match name.as_str() {
                BEARER_HASHES | oauth::CLIENT_SECRET_SHA256 => {
                    format!("({} hashed)", value.split(',').count())
                }
                _ => value.clone(),
            };
            variables.insert(name.clone(), shown.into());
        }
        for name in self.sealed.keys() {
            variables.insert(name.clone(), "(sealed)".into());
        }
        serde_json::json!({ "variables": variables, "disabled": self.disabled })
    }

    /// Reseals every sealed value with the first of `keys`; the number resealed.
    pub fn reseal(
        &mut self,
        id: &str,
        keys: &SecretsKeys,
        mut nonce: impl FnMut() -> [u8; 12],
    ) -> Result<usize, TenantError> {
        let mut resealed = 0;
        for (name, sealed) in self.sealed.iter_mut() {
            if keys.is_current(sealed) {
                continue;
            }
            let plain = keys.open(&slot(id, name), sealed)?;
            *sealed = keys.seal(&slot(id, name), &plain, nonce());
            resealed += 1;
        }
        Ok(resealed)
    }
}

/// What binds a sealed value to its tenant and variable.
fn slot(id: &str, name: &str) -> String {
    format!("{id}/{name}")
}

/// How a secret Vapi presents is kept: lowercase hex SHA-256 of its text.
pub fn bearer_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A tenant ready to answer a webhook: its variables with sealed values
/// opened, in memory only.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub disabled: bool,
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: some values are secrets.
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("disabled", &self.disabled)
            .field("variables", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tenant {
    /// Opens `stored` for tenant `id`; `keys` are needed only when something
    /// is sealed.
    pub fn open(
        id: &str,
        stored: &Stored,
        keys: Option<&SecretsKeys>,
    ) -> Result<Tenant, TenantError> {
        let mut values = stored.variables.clone();
        if !stored.sealed.is_empty() {
            let keys = keys.ok_or(TenantError::NoSecretsKey)?;
            for (name, sealed) in &stored.sealed {
                values.insert(name.clone(), keys.open(&slot(id, name), sealed)?);
            }
        }
        Ok(Tenant {
            id: id.to_string(),
            disabled: stored.disabled,
            values,
        })
    }

    /// The value of variable `name` for this tenant's webhooks: its own for
    /// what it may set (a credential only ever its own), else `deployment`'s.
    pub fn variable(
        &self,
        name: &str,
        deployment: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let own = || {
            self.values
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        };
        match kind_of(name) {
            Some(Kind::Credential | Kind::SealedCredential | Kind::HashedCredential) => own(),
            Some(Kind::Setting) => own().or_else(|| deployment(name)),
            Some(Kind::SealedSetting) => match own() {
                Some(value) => Some(value),
                // The deployment's key signs for the deployment's URL only.
                None if self.values.contains_key("upstream_url") => None,
                None => deployment(name),
            },
            None => deployment(name),
        }
    }
}

/// Whether `stored` makes a tenant whose webhooks can be verified and
/// handled: opened, its credential and settings read as a webhook reads them
/// (over `deployment`'s variables). The problem names the variable.
pub fn check(
    id: &str,
    stored: &Stored,
    keys: Option<&SecretsKeys>,
    deployment: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let opened = Tenant::open(id, stored, keys).map_err(|e| e.to_string())?;
    let get = |name: &str| opened.variable(name, &deployment);
    crate::verify::VerifyConfig::from_variables(get).map_err(|e| e.to_string())?;
    crate::settings::Settings::from_variables(get).map_err(|e| e.to_string())?;
    if let Some(days) = get(RETENTION_DAYS) {
        retention_days(&days).ok_or("retention_days: expected days from 1 to 3650")?;
    }
    let has_oauth_secret = get(oauth::CLIENT_SECRET_SHA256).is_some();
    if get(oauth::CLIENT_ID).is_some() != has_oauth_secret {
        return Err("oauth_client_id and oauth_client_secret go together".into());
    }
    Ok(())
}

/// Whether the deployment's own tenant variables (`tenant_secrets_key`,
/// `tenant_cache_ms`) are valid; the problem names the variable.
pub fn check_deployment(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    cache::cache_ms(get(CACHE_MS_VARIABLE)).map_err(|e| e.to_string())?;
    match get(seal::KEYS_VARIABLE) {
        Some(value) => SecretsKeys::from_variable(&value)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Why a tenant's URL cannot take a webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No such tenant (or an id that cannot be one): 404.
    Unknown,
    /// The tenant is disabled: 403.
    Disabled,
    /// The database did not answer the tenant's lookup: 503.
    Unavailable(DbError),
    /// The tenant's configuration cannot be used (its secrets do not open,
    /// a setting of the lookup is wrong): 503 and CRITICAL, for an operator.
    Misconfigured(String),
}

/// The variable that bounds how stale a tenant's cached configuration may be.
pub const CACHE_MS_VARIABLE: &str = "tenant_cache_ms";

/// Tenant `id`, ready for its webhook: found through the cache, enabled, its
/// secrets opened.
pub async fn resolve<E: Effects>(effects: &mut E, id: &str) -> Result<Tenant, Refusal> {
    if !valid_id(id) {
        return Err(Refusal::Unknown);
    }
    let cache_ms = cache::cache_ms(effects.variable(CACHE_MS_VARIABLE))
        .map_err(|e| Refusal::Misconfigured(e.to_string()))?;
    let stored = match cache::find(effects, id, cache_ms).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Err(Refusal::Unknown),
        Err(cache::LookupError::Database(error)) => return Err(Refusal::Unavailable(error)),
        Err(cache::LookupError::Config(error)) => {
            return Err(Refusal::Misconfigured(format!("tenant {id}: {error}")))
        }
    };
    if stored.disabled {
        return Err(Refusal::Disabled);
    }
    let keys = match stored.sealed.is_empty() {
        true => None,
        false => Some(
            SecretsKeys::from_variable(&effects.variable(seal::KEYS_VARIABLE).unwrap_or_default())
                .map_err(|e| Refusal::Misconfigured(format!("tenant {id}: {e}")))?,
        ),
    };
    Tenant::open(id, &stored, keys.as_ref())
        .map_err(|e| Refusal::Misconfigured(format!("tenant {id}: {e}")))
}

#[cfg(test)]
mod tests;
