//! Adapters from the pure logic to the host's services: variables, clocks and
//! key-value (the databases are in `store`).
//!
//! Everything here is a few lines of translation; decisions live in `vapi-edge-core`.
#![forbid(unsafe_code)]

use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use vapi_edge_core::health::Check;

/// The key-value store label granted in spin.toml.
pub const KV_STORE: &str = "default";

/// A variable's value; unset and empty are the same (Spin defaults are strings).
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Wall-clock time in Unix milliseconds (for signatures' timestamps and logs).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Blocks this instance for `ms` milliseconds on the host's monotonic clock.
pub fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}

/// Proves the store answers and keeps state across requests: each probe
/// increments a counter that lives in the host, not in this instance.
pub fn key_value_check() -> Check {
    let bucket = match store::open(KV_STORE) {
        Ok(bucket) => bucket,
        Err(_) => return Check::fail("key_value", "store could not be opened"),
    };
    match atomics::increment(&bucket, "vapi-edge/healthz/probes", 1) {
        Ok(count) => Check::pass("key_value").with("probes", count),
        Err(_) => Check::fail("key_value", "store did not answer"),
    }
}
