//! Key-value store backends behind both `fermyon:spin/key-value` and
//! `wasi:keyvalue`: Spin's own store (SQLite, in a file or in memory; the
//! `default` label lives in `.spin/sqlite_key_value.db`, as under `spin up`),
//! Redis, or a plain in-memory map (`type = "memory"`, this host's addition).
//!
//! `increment` and compare-and-swap are atomic in all of them: the component's
//! idempotency claims depend on it. Each backend keeps counters the way its
//! Spin counterpart does (SQLite: 8 little-endian bytes; Redis: decimal text),
//! so a component sees the same bytes here as under Spin.

use anyhow::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use rusqlite::OptionalExtension;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One configured store (a label in the runtime config).
#[derive(Clone)]
pub enum KvStore {
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
    Sqlite(Arc<SqliteStore>),
    Redis(Arc<RedisStore>),
}

/// An open store: the resource behind both `fermyon:spin/key-value` `store`
/// and `wasi:keyvalue` `bucket`.
pub struct Bucket {
    pub store: KvStore,
}

/// A compare-and-swap in progress (`wasi:keyvalue` `cas`): the value seen
/// when it was created.
pub struct Cas {
    pub store: KvStore,
    pub key: String,
    pub seen: Option<Vec<u8>>,
}

/// Spin's SQLite key-value store: its table, its encodings, one connection.
pub struct SqliteStore {
    connection: Mutex<rusqlite::Connection>,
    /// The label: Spin keeps every store of a file in one table, by name.
    name: String,
}

pub struct RedisStore {
    client: redis::Client,
    /// Key prefixes whose keys expire, with their time to live in seconds
    /// (the runtime config's `expire`): `set` and `increment` of such a key
    /// (re)start its clock. Longest prefix wins.
    expire: Vec<(String, u64)>,
    // Connected lazily so the host starts while Redis is down, and each
    // request reports the store's state instead of the process dying.
    connection: tokio::sync::Mutex<Link>,
}

/// The shared connection, or when the last attempt to make one failed.
#[derive(Default)]
struct Link {
    connection: Option<ConnectionManager>,
    failed_at: Option<std::time::Instant>,
}

/// After a failed attempt to connect, requests are told "store unavailable"
/// at once for this long instead of each trying again in turn: attempts are
/// serialised (one connection is shared), so with Redis down and many
/// requests in flight they would queue behind each other's attempts and hit
/// the request deadline (a test with 90 concurrent requests did, before this).
/// The component then goes on with the database as the guard.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// A short public reason; Redis' own error text stays in the host log.
pub type KvError = String;

/// Atomic compare-and-swap in one round trip: ARGV[1] is 1 when a current value
/// is expected (ARGV[2]), 0 when the key is expected to be absent.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
else
  if current then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

impl KvStore {
    pub fn memory() -> Self {
        KvStore::Memory(Arc::default())
    }

    /// Spin's store for `label`, in the file at `path` (created with its
    /// folder when missing), or in memory.
    pub fn sqlite(label: &str, path: Option<&Path>) -> Result<Self> {
        let connection = match path {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                rusqlite::Connection::open(path)?
            }
            None => rusqlite::Connection::open_in_memory()?,
        };
        // Another process (a second host on the same app) may hold the lock.
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                 store TEXT NOT NULL,
                 key   TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (store, key)
             )",
            [],
        )?;
        Ok(KvStore::Sqlite(Arc::new(SqliteStore {
            connection: Mutex::new(connection),
            name: label.to_string(),
        })))
    }

    /// A store in Redis. A `rediss://` url is TLS, verified against the
    /// system's roots, or with `ca_file` against the certificates in that PEM
    /// file only (the redis crate replaces the roots rather than adding).
    /// The url may hold a password: errors never include it.
    pub fn redis(url: &str, ca_file: Option<&Path>) -> Result<Self> {
        let client = match ca_file {
            None => redis::Client::open(url)
                .map_err(|e| anyhow::anyhow!("invalid Redis url for key-value store: {e}"))?,
            Some(path) => {
                if !url.starts_with("rediss://") {
                    anyhow::bail!("ca_file needs a rediss:// url (TLS)");
                }
                let root_cert = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read Redis ca_file {}: {e}", path.display())
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url, certificates).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid Redis url or ca_file {} for key-value store: {e}",
                        path.display()
                    )
                })?
            }
        };
        Ok(KvStore::Redis(Arc::new(RedisStore {
            client,
            expire: Vec::new(),
            connection: tokio::sync::Mutex::new(Link::default()),
        })))
    }

    /// Gives keys under each prefix a time to live in seconds (Redis only: the
    /// other stores have no expiry, like Spin's).
    pub fn expire_under(self, rules: Vec<(String, u64)>) -> Result<Self> {
        match self {
            KvStore::Redis(store) => {
                let store = Arc::try_unwrap(store)
                    .map_err(|_| anyhow::anyhow!("the store is already in use"))?;
                if let Some((prefix, _)) = rules.iter().find(|(_, seconds)| *seconds == 0) {
                    anyhow::bail!("expire: \"{prefix}\" needs a time to live of at least 1 s");
                }
                Ok(KvStore::Redis(Arc::new(RedisStore {
                    expire: rules,
                    ..store
                })))
            }
            _ if rules.is_empty() => Ok(self),
            _ => anyhow::bail!("expire is supported by redis stores only"),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            KvStore::Memory(map) => Ok(lock(map).get(key).cloned()),
            KvStore::Sqlite(store) => store.get(key),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        match self {
            KvStore::Memory(map) => {
                lock(map).insert(key.to_string(), value.to_vec());
                Ok(())
            }
            KvStore::Sqlite(store) => store.run(|db, name| {
                db.execute(SQLITE_SET, rusqlite::params![name, key, value])
                    .map(drop)
            }),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                let mut set = redis::cmd("SET");
                set.arg(key).arg(value);
                if let Some(seconds) = store.ttl_of(key) {
                    set.arg("EX").arg(seconds);
                }
                set.query_async(&mut conn).await.map_err(redis_error)
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            KvStore::Memory(map) => {
                lock(map).remove(key);
                Ok(())
            }
            KvStore::Sqlite(store) => store.run(|db, name| {
                db.execute(
                    "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    rusqlite::params![name, key],
                )
                .map(drop)
            }),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        match self {
            KvStore::Memory(map) => Ok(lock(map).contains_key(key)),
            KvStore::Sqlite(store) => store.get(key).map(|value| value.is_some()),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    pub async fn keys(&self) -> Result<Vec<String>, KvError> {
        match self {
            KvStore::Memory(map) => Ok(lock(map).keys().cloned().collect()),
            KvStore::Sqlite(store) => store.run(|db, name| {
                let mut statement =
                    db.prepare("SELECT key FROM spin_key_value WHERE store = ?1")?;
                let keys = statement.query_map([name], |row| row.get(0))?;
                keys.collect()
            }),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                redis::cmd("KEYS")
                    .arg("*")
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    /// Adds `delta` to the integer at `key` (absent counts as 0) and returns the sum.
    /// Stored as decimal text in memory and in Redis (INCRBY), as 8
    /// little-endian bytes in SQLite (Spin's encoding there).
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        match self {
            KvStore::Memory(map) => {
                let mut map = lock(map);
                let current = match map.get(key) {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(|| "value is not an integer".to_string())?,
                };
                let next = current.checked_add(delta).ok_or("increment overflows")?;
                map.insert(key.to_string(), next.to_string().into_bytes());
                Ok(next)
            }
            KvStore::Sqlite(store) => store.increment(key, delta),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                match store.ttl_of(key) {
                    None => redis::cmd("INCRBY")
                        .arg(key)
                        .arg(delta)
                        .query_async(&mut conn)
                        .await
                        .map_err(redis_error),
                    // Both or neither, in one round trip.
                    Some(seconds) => {
                        let (sum,): (i64,) = redis::pipe()
                            .atomic()
                            .cmd("INCRBY")
                            .arg(key)
                            .arg(delta)
                            .cmd("EXPIRE")
                            .arg(key)
                            .arg(seconds)
                            .ignore()
                            .query_async(&mut conn)
                            .await
                            .map_err(redis_error)?;
                        Ok(sum)
                    }
                }
            }
        }
    }

    /// Sets `key` to `new` only if it still holds `expected` (`None`: absent).
    /// Returns whether the swap happened.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        match self {
            KvStore::Memory(map) => {
                let mut map = lock(map);
                if map.get(key).map(Vec::as_slice) != expected {
                    return Ok(false);
                }
                map.insert(key.to_string(), new.to_vec());
                Ok(true)
            }
            KvStore::Sqlite(store) => store.compare_and_swap(key, expected, new),
            KvStore::Redis(store) => {
                let mut conn = store.connection().await?;
                let swapped: i64 = redis::Script::new(CAS_SCRIPT)
                    .key(key)
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or_default())
                    .arg(new)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(redis_error)?;
                Ok(swapped == 1)
            }
        }
    }
}

const SQLITE_SET: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";

impl SqliteStore {
    /// Runs `work` on the connection. SQLite calls are short and local, so
    /// they run on the calling task, as Spin's store does.
    fn run<T>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection, &str) -> rusqlite::Result<T>,
    ) -> Result<T, KvError> {
        let mut connection = lock(&self.connection);
        work(&mut connection, &self.name).map_err(sqlite_error)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.run(|db, name| {
            db.prepare("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row([name, key], |row| row.get(0))
                .optional()
        })
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut outcome = Ok(0);
        self.run(|db, name| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    [name, key],
                    |row| row.get(0),
                )
                .optional()?;
            let current = match current {
                None => Some(0),
                Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                    .ok()
                    .map(i64::from_le_bytes),
            };
            let Some(next) = current.and_then(|n| n.checked_add(delta)) else {
                outcome = Err("value is not an integer".to_string());
                return Ok(());
            };
            tx.execute(SQLITE_SET, rusqlite::params![name, key, next.to_le_bytes()])?;
            tx.commit()?;
            outcome = Ok(next);
            Ok(())
        })?;
        outcome
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        self.run(|db, name| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    [name, key],
                    |row| row.get(0),
                )
                .optional()?;
            if current.as_deref() != expected {
                return Ok(false);
            }
            tx.execute(SQLITE_SET, rusqlite::params![name, key, new])?;
            tx.commit()?;
            Ok(true)
        })
    }
}

fn sqlite_error(error: rusqlite::Error) -> KvError {
    crate::log::write(crate::log::warn("key-value store error").field("error", error.to_string()));
    "store error".to_string()
}

impl RedisStore {
    /// The time to live of `key`, from the longest matching `expire` prefix.
    pub fn ttl_of(&self, key: &str) -> Option<u64> {
        self.expire
            .iter()
            .filter(|(prefix, _)| key.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, seconds)| *seconds)
    }

    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let mut link = self.connection.lock().await;
        if let Some(conn) = link.connection.as_ref() {
            return Ok(conn.clone());
        }
        if link
            .failed_at
            .is_some_and(|at| at.elapsed() < RECONNECT_AFTER)
        {
            return Err("store unavailable".to_string());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(2))
            // One attempt: a refused connection fails at once (later requests
            // try again after RECONNECT_AFTER); once connected, the manager
            // reconnects by itself.
            .set_number_of_retries(1);
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(conn) => {
                *link = Link {
                    connection: Some(conn.clone()),
                    failed_at: None,
                };
                Ok(conn)
            }
            Err(error) => {
                link.failed_at = Some(std::time::Instant::now());
                Err(redis_error(error))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map half-written
    // (every critical section is a single map operation), so poisoning is moot.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn redis_error(error: redis::RedisError) -> KvError {
    crate::log::write(crate::log::warn("key-value store error").field("error", error.to_string()));
    if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
        "store unavailable".to_string()
    } else {
        "store error".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_keeps_spins_encoding_and_state_across_opens() {
        let dir = std::env::temp_dir().join(format!("vapi-edge-kv-{}", std::process::id()));
        let path = dir.join(".spin/sqlite_key_value.db");
        let _ = std::fs::remove_dir_all(&dir);
        let store = KvStore::sqlite("default", Some(&path)).unwrap();
        assert_eq!(store.increment("n", 1).await, Ok(1));
        assert_eq!(store.increment("n", 41).await, Ok(42));
        // What Spin's store keeps for a counter: 8 little-endian bytes.
        assert_eq!(store.get("n").await, Ok(Some(42i64.to_le_bytes().to_vec())));
        assert_eq!(store.compare_and_swap("c", None, b"a").await, Ok(true));
        assert_eq!(store.compare_and_swap("c", None, b"b").await, Ok(false));
        assert_eq!(
            store.compare_and_swap("c", Some(b"a"), b"b").await,
            Ok(true)
        );
        store.set("t", b"text").await.unwrap();
        assert!(store.increment("t", 1).await.is_err());
        assert_eq!(store.exists("t").await, Ok(true));
        store.delete("t").await.unwrap();
        assert_eq!(store.exists("t").await, Ok(false));
        drop(store);

        // Another label shares the file, not the keys; the same label sees them.
        let other = KvStore::sqlite("other", Some(&path)).unwrap();
        assert_eq!(other.get("n").await, Ok(None));
        let again = KvStore::sqlite("default", Some(&path)).unwrap();
        assert_eq!(again.increment("n", 0).await, Ok(42));
        let mut keys = again.keys().await.unwrap();
        keys.sort();
        assert_eq!(keys, ["c", "n"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn memory_increment_starts_at_delta_and_is_decimal_text() {
        let store = KvStore::memory();
        assert_eq!(store.increment("k", 1).await, Ok(1));
        assert_eq!(store.increment("k", 5).await, Ok(6));
        assert_eq!(store.get("k").await, Ok(Some(b"6".to_vec())));
        store.set("s", b"text").await.unwrap();
        assert!(store.increment("s", 1).await.is_err());
    }

    #[tokio::test]
    async fn memory_compare_and_swap() {
        let store = KvStore::memory();
        assert_eq!(store.compare_and_swap("k", None, b"a").await, Ok(true));
        assert_eq!(store.compare_and_swap("k", None, b"b").await, Ok(false));
        assert_eq!(
            store.compare_and_swap("k", Some(b"x"), b"b").await,
            Ok(false)
        );
        assert_eq!(
            store.compare_and_swap("k", Some(b"a"), b"b").await,
            Ok(true)
        );
        assert_eq!(store.get("k").await, Ok(Some(b"b".to_vec())));
    }

    /// Against the Redis every machine of this kind runs (127.0.0.1:6379):
    /// keys under an `expire` prefix get its time to live, on `set` and on
    /// `increment`; other keys none; the longest prefix wins.
    #[tokio::test]
    async fn redis_keys_under_an_expire_prefix_get_its_ttl() {
        let store = KvStore::redis("redis://127.0.0.1:6379", None)
            .unwrap()
            .expire_under(vec![
                ("kv-ttl-test/".into(), 60),
                ("kv-ttl-test/short/".into(), 5),
            ])
            .unwrap();
        let unique = format!("{}-{:?}", std::process::id(), std::time::Instant::now());
        let (long, short, plain) = (
            format!("kv-ttl-test/{unique}"),
            format!("kv-ttl-test/short/{unique}"),
            format!("kv-ttl-plain/{unique}"),
        );
        store.set(&long, b"1").await.unwrap();
        store.increment(&short, 1).await.unwrap();
        store.set(&plain, b"1").await.unwrap();
        let KvStore::Redis(redis_store) = &store else {
            unreachable!()
        };
        let mut conn = redis_store.connection().await.unwrap();
        let ttl = |key: String| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("TTL")
                    .arg(&key)
                    .query_async::<i64>(&mut conn)
                    .await
                    .unwrap()
            }
        };
        assert!((55..=60).contains(&ttl(long.clone()).await));
        assert!((1..=5).contains(&ttl(short.clone()).await));
        assert_eq!(ttl(plain.clone()).await, -1);
        let _: () = redis::cmd("DEL")
            .arg(&long)
            .arg(&short)
            .arg(&plain)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
