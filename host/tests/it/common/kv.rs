//! The key-value store in tests: an unreachable Redis, lease windows, and
//! cleaning up what a test parked in the shared Redis.

use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A runtime config whose `default` key-value store is Redis on a loopback
/// port where nothing listens: the store is down for the whole run.
pub fn unreachable_kv_config(dir: &Path) -> PathBuf {
    let path = dir.join("runtime-config.unreachable.toml");
    std::fs::write(
        &path,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n",
    )
    .unwrap();
    path
}

/// Sleeps until the current claim-lease window (`now_ms / lease_ms`, as the
/// component computes it) is at most `within_ms` old.
pub async fn wait_for_lease_window_start(lease_ms: i64, within_ms: i64) {
    for _ in 0..2 {
        let into_window = now_ms().rem_euclid(lease_ms);
        if into_window <= within_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis((lease_ms - into_window) as u64 + 5)).await;
    }
    panic!("could not reach the start of a {lease_ms} ms lease window");
}

/// Deletes, when dropped, the dead letters the component parked in the shared
/// Redis store for these calls (while Postgres was down), so that no other
/// test's `POST /admin/replay` picks them up (nor a later run of the same
/// test, after a failure).
pub struct ParkedDeadLetterCleanup {
    pub call_ids: Vec<String>,
    /// The Redis the host parks in: `REDIS_URL`, or one of its numbered databases.
    pub redis_url: String,
}

impl ParkedDeadLetterCleanup {
    pub fn new(call_ids: Vec<String>) -> Self {
        ParkedDeadLetterCleanup {
            call_ids,
            redis_url: REDIS_URL.to_string(),
        }
    }
}

impl Drop for ParkedDeadLetterCleanup {
    fn drop(&mut self) {
        let call_ids = std::mem::take(&mut self.call_ids);
        let redis_url = std::mem::take(&mut self.redis_url);
        finish_on_own_thread(async move {
            let Ok(client) = redis::Client::open(redis_url) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            for id in call_ids {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("vapi-edge/dead-letter/*{id}*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                for key in keys {
                    let _: Result<i64, _> =
                        redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
                }
            }
        });
    }
}

/// Deletes, when dropped, every key of the Redis at `redis_url` that matches
/// `pattern` (a `SCAN MATCH` glob): the claims and done-marks that a test's
/// own calls left in a store that outlives the test.
pub struct MatchingKeysCleanup {
    pub redis_url: String,
    pub pattern: String,
}

impl Drop for MatchingKeysCleanup {
    fn drop(&mut self) {
        let redis_url = std::mem::take(&mut self.redis_url);
        let pattern = std::mem::take(&mut self.pattern);
        finish_on_own_thread(async move {
            let Ok(client) = redis::Client::open(redis_url) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let mut cursor = 0u64;
            loop {
                let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(10_000)
                    .query_async(&mut conn)
                    .await
                else {
                    return;
                };
                if !keys.is_empty() {
                    let _: redis::RedisResult<i64> =
                        redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await;
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        });
    }
}
