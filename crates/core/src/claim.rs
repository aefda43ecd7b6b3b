//! Idempotency claims in the host key-value store: the fast path that keeps
//! concurrent deliveries of one event from racing to the database.
//!
//! `wasi:keyvalue/atomics.increment` is atomic in Spin's SQLite and Redis stores
//! (a compare-and-swap from an absent key is not, in SQLite). Neither interface
//! has expiry, so the claim key carries its lease: it names a time window, and
//! an attempt that died holding a claim blocks its event only until the window
//! ends. The database (`processed_webhook_events`) stays the judge of what
//! happened.

use crate::event_key::EventKey;
use crate::kv::{KeyValue, KvError};

/// Default length of a claim's lease window (`claim_lease_ms`): longer than the
/// slowest attempt (agent lookup retries take 3.85 s by default) and than the
/// host's request deadline, short enough that Vapi's retries get through.
pub const DEFAULT_LEASE_MS: i64 = 30_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This attempt owns the event until it commits or releases.
    Acquired(Held),
    /// The event was already handled.
    Done,
    /// Another attempt holds a live claim: answer "retry later".
    InProgress,
    /// The store did not answer; the database alone guards the event.
    Unavailable(KvError),
}

/// A claim this attempt holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Held {
    claim_key: String,
    done_key: String,
}

fn done_key(event: &EventKey) -> String {
    format!("vapi-edge/done/{event}")
}

/// The claim key of `event` for the lease window that holds `now_ms`.
pub fn claim_key(event: &EventKey, now_ms: i64, lease_ms: i64) -> String {
    let window = now_ms.div_euclid(lease_ms.max(1));
    format!("vapi-edge/claim/{window}/{event}")
}

/// Claims `event` at `now_ms` for a lease window of `lease_ms`.
pub async fn claim(kv: &mut impl KeyValue, event: &EventKey, now_ms: i64, lease_ms: i64) -> Claim {
    let done_key = done_key(event);
    match kv.exists(&done_key).await {
        Ok(true) => return Claim::Done,
        Ok(false) => {}
        Err(error) => return Claim::Unavailable(error),
    }
    let claim_key = claim_key(event, now_ms, lease_ms);
    match kv.increment(&claim_key, 1).await {
        Ok(1) => Claim::Acquired(Held {
            claim_key,
            done_key,
        }),
        // Someone claimed first; it may have finished in the meantime.
        Ok(_) => match kv.exists(&done_key).await {
            Ok(true) => Claim::Done,
            _ => Claim::InProgress,
        },
        Err(error) => Claim::Unavailable(error),
    }
}

impl Held {
    /// Records that the event committed, so later deliveries stop at the store.
    /// A failure here only costs a later duplicate one database round trip.
    pub async fn complete(self, kv: &mut impl KeyValue) -> Result<(), KvError> {
        kv.set(&self.done_key, b"1").await
    }

    /// Gives the event back so Vapi's retry can handle it.
    pub async fn release(self, kv: &mut impl KeyValue) -> Result<(), KvError> {
        kv.delete(&self.claim_key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::fake::MapStore;
    use crate::test_support::block_on;

    fn key() -> EventKey {
        EventKey::for_tests("v1|status-update|call-1|in-progress")
    }

    #[test]
    fn the_first_attempt_owns_the_event_and_a_second_waits() {
        let mut kv = MapStore::default();
        let held = block_on(claim(&mut kv, &key(), 1_000, 30_000));
        assert!(matches!(held, Claim::Acquired(_)));
        assert_eq!(
            block_on(claim(&mut kv, &key(), 2_000, 30_000)),
            Claim::InProgress
        );
    }

    #[test]
    fn a_completed_event_is_done_for_every_later_attempt() {
        let mut kv = MapStore::default();
        let Claim::Acquired(held) = block_on(claim(&mut kv, &key(), 1_000, 30_000)) else {
            panic!("not acquired");
        };
        block_on(held.complete(&mut kv)).unwrap();
        assert_eq!(block_on(claim(&mut kv, &key(), 1_500, 30_000)), Claim::Done);
        // In a later window too: the done key has no window.
        assert_eq!(
            block_on(claim(&mut kv, &key(), 90_000, 30_000)),
            Claim::Done
        );
    }

    #[test]
    fn a_released_claim_lets_the_retry_in_at_once() {
        let mut kv = MapStore::default();
        let Claim::Acquired(held) = block_on(claim(&mut kv, &key(), 1_000, 30_000)) else {
            panic!("not acquired");
        };
        block_on(held.release(&mut kv)).unwrap();
        assert!(matches!(
            block_on(claim(&mut kv, &key(), 1_100, 30_000)),
            Claim::Acquired(_)
        ));
    }

    #[test]
    fn a_claim_left_by_a_dead_attempt_blocks_only_until_its_lease_ends() {
        let mut kv = MapStore::default();
        // Acquired at 29 999 ms and never completed nor released.
        assert!(matches!(
            block_on(claim(&mut kv, &key(), 29_999, 30_000)),
            Claim::Acquired(_)
        ));
        assert_eq!(
            block_on(claim(&mut kv, &key(), 29_999, 30_000)),
            Claim::InProgress
        );
        // The next window starts at 30 000 ms.
        assert!(matches!(
            block_on(claim(&mut kv, &key(), 30_000, 30_000)),
            Claim::Acquired(_)
        ));
    }

    #[test]
    fn the_second_claimant_sees_done_when_the_first_finished_in_between() {
        let mut kv = MapStore::default();
        // The first attempt claimed and finished, and its done key is there,
        // but the second reached the counter (not the done check) first.
        block_on(kv.increment(&claim_key(&key(), 1_000, 30_000), 1)).unwrap();
        kv.values
            .insert(format!("vapi-edge/done/{}", key()), b"1".to_vec());
        // `exists(done)` is checked first and wins.
        assert_eq!(block_on(claim(&mut kv, &key(), 1_000, 30_000)), Claim::Done);
    }

    #[test]
    fn a_store_that_does_not_answer_leaves_the_database_to_guard() {
        let mut kv = MapStore {
            down: true,
            ..MapStore::default()
        };
        assert!(matches!(
            block_on(claim(&mut kv, &key(), 1_000, 30_000)),
            Claim::Unavailable(_)
        ));
    }
}
