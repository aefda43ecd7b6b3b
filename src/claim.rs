//! Idempotency claims in the host key-value store: the fast path that keeps
//! concurrent deliveries of one event from racing to Postgres.
//!
//! `wasi:keyvalue/atomics.increment` is atomic in Spin's SQLite and Redis stores
//! (a compare-and-swap from an absent key is not, in SQLite). Neither interface
//! has expiry, so the claim key carries its lease: it names a time window, and
//! an attempt that died holding a claim blocks its event only until the window
//! ends. Postgres (`processed_webhook_events`) stays the judge of what happened.
#![forbid(unsafe_code)]

use crate::services::KV_STORE;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use vapi_edge_core::event_key::EventKey;
use vapi_edge_core::parked::{self, Drained};

/// Default length of a claim's lease window (`claim_lease_ms`): longer than the
/// slowest attempt (agent lookup retries take 3.85 s by default) and than the
/// host's request deadline, short enough that Vapi's retries get through.
pub const DEFAULT_LEASE_MS: i64 = 30_000;

pub enum Claim {
    /// This attempt owns the event until it commits or releases.
    Acquired(Held),
    /// The event was already handled.
    Done,
    /// Another attempt holds a live claim: answer "retry later".
    InProgress,
    /// The store did not answer; Postgres alone guards the event.
    Unavailable(String),
}

pub struct Held {
    bucket: store::Bucket,
    claim_key: String,
    done_key: String,
}

fn done_key(event: &EventKey) -> String {
    format!("vapi-edge/done/{event}")
}

/// Claims `event` at `now_ms` for a lease window of `lease_ms`.
pub fn claim(event: &EventKey, now_ms: i64, lease_ms: i64) -> Claim {
    let bucket = match store::open(KV_STORE) {
        Ok(bucket) => bucket,
        Err(error) => return Claim::Unavailable(format!("open: {error:?}")),
    };
    let done_key = done_key(event);
    match bucket.exists(&done_key) {
        Ok(true) => return Claim::Done,
        Ok(false) => {}
        Err(error) => return Claim::Unavailable(format!("exists: {error:?}")),
    }
    let window = now_ms.div_euclid(lease_ms.max(1));
    let claim_key = format!("vapi-edge/claim/{window}/{event}");
    match atomics::increment(&bucket, &claim_key, 1) {
        Ok(1) => Claim::Acquired(Held {
            bucket,
            claim_key,
            done_key,
        }),
        // Someone claimed first; it may have finished in the meantime.
        Ok(_) => match bucket.exists(&done_key) {
            Ok(true) => Claim::Done,
            _ => Claim::InProgress,
        },
        Err(error) => Claim::Unavailable(format!("increment: {error:?}")),
    }
}

impl Held {
    /// Records that the event committed, so later deliveries stop at the store.
    /// A failure here only costs a later duplicate one Postgres round trip.
    pub fn complete(self) -> Result<(), String> {
        self.bucket
            .set(&self.done_key, b"1")
            .map_err(|e| format!("{e:?}"))
    }

    /// Gives the event back so Vapi's retry can handle it.
    pub fn release(self) -> Result<(), String> {
        self.bucket
            .delete(&self.claim_key)
            .map_err(|e| format!("{e:?}"))
    }
}

/// The parked-letter queue's view of the host store (`vapi_edge_core::parked`).
struct Parking(store::Bucket);

impl parked::KeyValue for Parking {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key).map_err(|e| format!("{e:?}"))
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.0.set(key, value).map_err(|e| format!("{e:?}"))
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.0.delete(key).map_err(|e| format!("{e:?}"))
    }
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String> {
        atomics::increment(&self.0, key, delta).map_err(|e| format!("{e:?}"))
    }
}

fn parking() -> Result<Parking, String> {
    store::open(KV_STORE)
        .map(Parking)
        .map_err(|e| format!("open: {e:?}"))
}

/// Parks a dead letter in the store when Postgres, its usual home, is down.
pub fn keep_dead_letter(event_key: &str, body: &[u8]) -> Result<(), String> {
    parked::park(&mut parking()?, event_key, body)
}

/// Moves dead letters parked in the store, oldest first, with `keep` (which
/// stores one durably and says whether it did).
pub fn move_parked_dead_letters(
    now_ms: i64,
    keep: impl FnMut(&str, &[u8]) -> bool,
) -> Result<Drained, String> {
    parked::drain(&mut parking()?, now_ms, keep)
}
