//! What the end-to-end tests of vapi-edge's binaries (`vapi-edge-host`,
//! `vapi-edge-relay`) share: an HTTP client whose every request has a
//! deadline ([`send`]), the relay as a child process ([`RelayProcess`]), the
//! tests' ids and secrets, and [`skip`], which CI turns into a failure.

mod client;
mod relay_process;
mod report;

pub use client::*;
pub use relay_process::*;
pub use report::*;

use std::sync::atomic::{AtomicUsize, Ordering};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The Standard Webhooks secret the component and the relay share in tests.
pub const RELAY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ORG_ID: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
pub const OTHER_ORG_ID: &str = "0b7d9c1e-2f3a-4b5c-8d6e-7f8091a2b3c4";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An id no other test or earlier run has used: the Redis store is shared by
/// every run on this machine and remembers handled events.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
