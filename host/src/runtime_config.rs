//! The runtime config file (`--runtime-config-file`), in Spin's format, for the
//! parts this host supports: key-value stores in memory or in Redis.
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! ```

use crate::kv::KvStore;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
}

#[derive(Debug, Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
}

/// Where each key-value label lives. Labels without an entry get an in-memory
/// store when `spin.toml` grants them, as Spin gives `default` a local store.
#[derive(Clone, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, KvStore>,
}

impl RuntimeConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid runtime config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let raw: RawRuntimeConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let mut key_value_stores = HashMap::new();
        for (label, store) in raw.key_value_store {
            let backend = match store.kind.as_str() {
                "redis" => {
                    let Some(url) = store.url else {
                        bail!("key_value_store.{label}: type \"redis\" needs a url");
                    };
                    KvStore::redis(&url)?
                }
                "memory" | "spin" => KvStore::memory(),
                other => bail!(
                    "key_value_store.{label}: type \"{other}\" is not supported by this host (use \"redis\" or \"memory\")"
                ),
            };
            key_value_stores.insert(label, backend);
        }
        Ok(RuntimeConfig { key_value_stores })
    }

    /// The store for a label that `spin.toml` grants.
    pub fn store_for(&mut self, label: &str) -> KvStore {
        self.key_value_stores
            .entry(label.to_string())
            .or_insert_with(KvStore::memory)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_store_needs_a_url_and_unknown_types_are_named() {
        let err = RuntimeConfig::parse("[key_value_store.default]\ntype = \"redis\"\n")
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("needs a url"));
        let err = RuntimeConfig::parse("[key_value_store.x]\ntype = \"azure_cosmos\"\n")
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("azure_cosmos"));
    }

    #[test]
    fn redis_entry_parses() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n",
        )
        .unwrap();
        assert!(matches!(
            config.key_value_stores["default"],
            KvStore::Redis(_)
        ));
    }
}
