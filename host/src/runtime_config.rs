//! The runtime config file (`--runtime-config-file`), in Spin's format, for the
//! parts this host supports: key-value stores in Spin's SQLite store (a file or
//! memory), in Redis or in a plain in-memory map (`type = "memory"`, this
//! host's addition), and SQLite databases in a file or in memory.
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"  # rediss://user:password@host:6380 for TLS
//! # ca_file = "certs/redis-ca.pem"  # rediss:// only: trust this CA instead of the system's
//! # This host only (Spin ignores it): keys under a prefix expire (seconds).
//! expire = { "vapi-edge/claim/" = 7200, "vapi-edge/done/" = 604800 }
//!
//! [key_value_store.cache]
//! type = "spin"
//! path = "data/cache.db"       # relative to this file; no path: in memory
//!
//! [sqlite_database.default]
//! type = "spin"
//! path = "data/vapi-edge.db"   # relative to this file; no path: in memory
//! ```

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vapi_edge_backends::kv::KvStore;
use vapi_edge_backends::sqlite::SqliteLocation;

#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawSqliteDatabase>,
}

#[derive(Debug, Deserialize)]
struct RawSqliteDatabase {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    path: Option<PathBuf>,
    /// This host's addition for Redis (Spin ignores it): key prefix → time
    /// to live in seconds.
    #[serde(default)]
    expire: BTreeMap<String, u64>,
    /// For a `rediss://` url: trust only the CA certificates in this PEM
    /// file (relative to the config file) instead of the system's roots.
    /// This host's addition: Spin's Redis store has no such option.
    ca_file: Option<PathBuf>,
}

/// Where each key-value label and SQLite database lives. Without an entry,
/// `default` lives where Spin keeps it (see [`RuntimeConfig::store_for`]); see
/// [`RuntimeConfig::sqlite_location`] for SQLite.
#[derive(Clone, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, KvStore>,
    pub sqlite_databases: HashMap<String, SqliteLocation>,
}

impl RuntimeConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// `base` is the runtime config file's folder: relative paths start there.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let raw: RawRuntimeConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let mut key_value_stores = HashMap::new();
        for (label, store) in raw.key_value_store {
            if !store.expire.is_empty() && store.kind != "redis" {
                bail!("key_value_store.{label}: expire is supported by redis stores only");
            }
            let backend = match store.kind.as_str() {
                "redis" => {
                    let Some(url) = store.url else {
                        bail!("key_value_store.{label}: type \"redis\" needs a url");
                    };
                    let ca_file = store.ca_file.map(|path| base.join(path));
                    KvStore::redis(&url, ca_file.as_deref())
                        .and_then(|redis| {
                            redis.expire_under(store.expire.clone().into_iter().collect())
                        })
                        .with_context(|| format!("key_value_store.{label}"))?
                }
                "spin" => {
                    let path = store.path.map(|path| base.join(path));
                    KvStore::sqlite(&label, path.as_deref())
                        .with_context(|| format!("key_value_store.{label}"))?
                }
                "memory" => KvStore::memory(),
                other => bail!(
                    "key_value_store.{label}: type \"{other}\" is not supported by this host (use \"spin\", \"redis\" or \"memory\")"
                ),
            };
            key_value_stores.insert(label, backend);
        }
        let mut sqlite_databases = HashMap::new();
        for (label, database) in raw.sqlite_database {
            let location = match database.kind.as_str() {
                "spin" => match database.path {
                    Some(path) => SqliteLocation::File(base.join(path)),
                    None => SqliteLocation::Memory,
                },
                other => bail!(
                    "sqlite_database.{label}: type \"{other}\" is not supported by this host (use \"spin\")"
                ),
            };
            sqlite_databases.insert(label, location);
        }
        Ok(RuntimeConfig {
            key_value_stores,
            sqlite_databases,
        })
    }

    /// Where the SQLite database `label` lives, for an app whose `spin.toml` is
    /// in `app_dir`: as configured, else (for `default` only) Spin's default
    /// file `.spin/sqlite_db.db` beside `spin.toml`. `None`: not configured.
    pub fn sqlite_location(&self, label: &str, app_dir: &Path) -> Option<SqliteLocation> {
        match self.sqlite_databases.get(label) {
            Some(location) => Some(location.clone()),
            None if label == "default" => Some(SqliteLocation::File(
                app_dir.join(".spin").join("sqlite_db.db"),
            )),
            None => None,
        }
    }

    /// The store for a label that `spin.toml` grants, for an app whose
    /// `spin.toml` is in `app_dir`: as configured, else (for `default`) Spin's
    /// default file `.spin/sqlite_key_value.db` beside `spin.toml`, so state
    /// outlives a restart as under `spin up`. Other labels without an entry
    /// (which Spin refuses) get a store in memory.
    pub fn store_for(&mut self, label: &str, app_dir: &Path) -> Result<KvStore> {
        if let Some(store) = self.key_value_stores.get(label) {
            return Ok(store.clone());
        }
        let store = if label == "default" {
            let path = app_dir.join(".spin").join("sqlite_key_value.db");
            KvStore::sqlite(label, Some(&path))
                .with_context(|| format!("key-value store `default` in {}", path.display()))?
        } else {
            KvStore::memory()
        };
        self.key_value_stores
            .insert(label.to_string(), store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_store_needs_a_url_and_unknown_types_are_named() {
        let err = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\n",
            Path::new("."),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("needs a url"));
        let err = RuntimeConfig::parse(
            "[key_value_store.x]\ntype = \"azure_cosmos\"\n",
            Path::new("."),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("azure_cosmos"));
    }

    #[test]
    fn expire_rules_are_for_redis_stores_and_need_a_time() {
        let base = Path::new(".");
        let redis = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             expire = { \"vapi-edge/done/\" = 60 }\n",
            base,
        );
        let redis = redis.unwrap();
        let KvStore::Redis(store) = &redis.key_value_stores["default"] else {
            panic!("not a redis store");
        };
        assert_eq!(store.ttl_of("vapi-edge/done/scope/key"), Some(60));
        assert_eq!(store.ttl_of("vapi-edge/claim/scope/1/key"), None);
        let zero = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             expire = { \"vapi-edge/done/\" = 0 }\n",
            base,
        );
        assert!(format!("{:#}", zero.err().unwrap()).contains("at least 1 s"));
        let memory = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"memory\"\nexpire = { \"a/\" = 5 }\n",
            base,
        );
        assert!(format!("{:#}", memory.err().unwrap()).contains("redis stores only"));
    }

    #[test]
    fn redis_entry_parses() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n",
            Path::new("."),
        )
        .unwrap();
        assert!(matches!(
            config.key_value_stores["default"],
            KvStore::Redis(_)
        ));
    }

    #[test]
    fn rediss_with_credentials_parses_and_a_bad_ca_file_is_named_without_the_url() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://app:s3cret@cache.example.com:6380\"\n",
            Path::new("."),
        )
        .unwrap();
        assert!(matches!(
            config.key_value_stores["default"],
            KvStore::Redis(_)
        ));
        let err = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://app:s3cret@h:6380\"\n\
             ca_file = \"certs/missing-ca.pem\"\n",
            Path::new("/etc/vapi"),
        )
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(text.contains("/etc/vapi/certs/missing-ca.pem"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let err = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://h:6379\"\nca_file = \"ca.pem\"\n",
            Path::new("."),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("needs a rediss://"), "{err:#}");
    }

    #[test]
    fn sqlite_paths_are_relative_to_the_config_file_and_no_path_is_memory() {
        let config = RuntimeConfig::parse(
            "[sqlite_database.default]\ntype = \"spin\"\npath = \"data/app.db\"\n\
             [sqlite_database.fixed]\ntype = \"spin\"\npath = \"/var/lib/x.db\"\n\
             [sqlite_database.scratch]\ntype = \"spin\"\n",
            Path::new("/etc/vapi"),
        )
        .unwrap();
        let app = Path::new("/app");
        assert_eq!(
            config.sqlite_location("default", app),
            Some(SqliteLocation::File("/etc/vapi/data/app.db".into()))
        );
        assert_eq!(
            config.sqlite_location("fixed", app),
            Some(SqliteLocation::File("/var/lib/x.db".into()))
        );
        assert_eq!(
            config.sqlite_location("scratch", app),
            Some(SqliteLocation::Memory)
        );
        assert_eq!(config.sqlite_location("other", app), None);
    }

    #[test]
    fn without_configuration_only_default_exists_in_dot_spin() {
        let config = RuntimeConfig::default();
        assert_eq!(
            config.sqlite_location("default", Path::new("/app")),
            Some(SqliteLocation::File("/app/.spin/sqlite_db.db".into()))
        );
        assert_eq!(config.sqlite_location("analytics", Path::new("/app")), None);
    }

    #[test]
    fn unknown_sqlite_types_are_named() {
        let err = RuntimeConfig::parse(
            "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"https://x\"\n",
            Path::new("."),
        )
        .err()
        .unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains("sqlite_database.default") && message.contains("\"libsql\""),
            "{message}"
        );
    }
}
