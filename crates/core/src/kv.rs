//! The key-value store as the webhook flow sees it: the five operations the
//! idempotency claims and the parked dead letters need, over any store (Spin's
//! `wasi:keyvalue` in the component, Redis in the native baseline, a map in
//! the tests).

use thiserror::Error;

/// A store failure, as a short public reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct KvError(pub String);

impl KvError {
    pub fn new(reason: impl Into<String>) -> KvError {
        KvError(reason.into())
    }
}

/// Async so that a store reached over the network (Redis, natively) can be
/// awaited; the component's calls complete at once.
#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound needed
pub trait KeyValue {
    async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError>;
    async fn delete(&mut self, key: &str) -> Result<(), KvError>;
    async fn exists(&mut self, key: &str) -> Result<bool, KvError>;
    /// Atomic: concurrent callers never see the same result. Absent counts
    /// as 0. Each store keeps the number its own way (Redis: decimal text;
    /// Spin's SQLite store: 8 little-endian bytes), so a counter is read by
    /// adding 0, never with [`KeyValue::get`].
    async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError>;
}

/// A map that behaves like Spin's default store, for unit tests: counters are
/// 8 little-endian bytes, and any key can be made to fail.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MapStore {
        pub values: BTreeMap<String, Vec<u8>>,
        /// Calls that read the store (get, exists, increment).
        pub reads: usize,
        /// Keys whose writes fail, to play a store that dies mid-way.
        pub failing: Vec<String>,
        /// Every operation fails: the store is down.
        pub down: bool,
    }

    impl MapStore {
        fn check(&self, key: &str) -> Result<(), KvError> {
            if self.down || self.failing.iter().any(|k| k == key) {
                return Err(KvError::new("store unavailable"));
            }
            Ok(())
        }
    }

    impl KeyValue for MapStore {
        async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.reads += 1;
            if self.down {
                return Err(KvError::new("store unavailable"));
            }
            Ok(self.values.get(key).cloned())
        }
        async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
            self.check(key)?;
            self.values.insert(key.into(), value.to_vec());
            Ok(())
        }
        async fn delete(&mut self, key: &str) -> Result<(), KvError> {
            self.check(key)?;
            self.values.remove(key);
            Ok(())
        }
        async fn exists(&mut self, key: &str) -> Result<bool, KvError> {
            self.reads += 1;
            if self.down {
                return Err(KvError::new("store unavailable"));
            }
            Ok(self.values.contains_key(key))
        }
        async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
            self.reads += 1;
            self.check(key)?;
            let current = match self.values.get(key) {
                None => 0,
                Some(bytes) => i64::from_le_bytes(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| KvError::new("not a counter"))?,
                ),
            };
            let next = current + delta;
            self.values.insert(key.into(), next.to_le_bytes().to_vec());
            Ok(next)
        }
    }
}
