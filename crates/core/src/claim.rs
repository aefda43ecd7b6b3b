//! Idempotency claims in the host key-value store: the fast path that keeps
//! concurrent deliveries of one event from racing to the database.
//!
//! `wasi:keyvalue/atomics.increment` is atomic in Spin's SQLite and Redis stores
//! (a compare-and-swap from an absent key is not, in SQLite). Neither interface
//! has expiry, so the claim key carries its lease: it names a time window, and
//! an attempt that died holding a claim blocks its event only until the window
//! ends. The database (`processed_webhook_events`) stays the judge of what
//! happened.
//!
//! A claim speaks for one database: its keys carry a [`ClaimScope`] derived
//! from where the records go (PostgreSQL's host, port and database name, or
//! the SQLite label) and the operator's `claim_scope`, so that no key-value
//! state made for one database (the zero-config SQLite run, staging on the
//! same Redis, the database before a restore) makes another skip an event.
//! A scope that differs when it need not (one database reached by two
//! addresses) only costs the fast path: the database still decides.

use crate::db::DatabaseAddress;
use crate::event_key::EventKey;
use crate::kv::{KeyValue, KvError};
use sha2::{Digest, Sha256};

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

/// The database a deployment's claims speak for, as a short hex name in
/// every claim and done key. Computed from configuration alone: no query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimScope(String);

impl ClaimScope {
    /// The scope of claims for records in `address`; `extra` is the variable
    /// `claim_scope` (any text: a new value re-scopes every claim, e.g. after
    /// restoring the database from a backup).
    pub fn new(address: &DatabaseAddress, extra: Option<&str>) -> ClaimScope {
        let digest = Sha256::new()
            .chain_update(address.identity())
            .chain_update("\n")
            .chain_update(extra.unwrap_or_default().trim())
            .finalize();
        ClaimScope(hex::encode(&digest[..6]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn done_key(scope: &ClaimScope, event: &EventKey) -> String {
    format!("vapi-edge/done/{}/{event}", scope.0)
}

/// The claim key of `event` for the lease window that holds `now_ms`.
pub fn claim_key(scope: &ClaimScope, event: &EventKey, now_ms: i64, lease_ms: i64) -> String {
    let window = now_ms.div_euclid(lease_ms.max(1));
    format!("vapi-edge/claim/{}/{window}/{event}", scope.0)
}

/// Claims `event` at `now_ms` for a lease window of `lease_ms`, for the
/// database `scope` names.
pub async fn claim(
    kv: &mut impl KeyValue,
    scope: &ClaimScope,
    event: &EventKey,
    now_ms: i64,
    lease_ms: i64,
) -> Claim {
    let done_key = done_key(scope, event);
    match kv.exists(&done_key).await {
        Ok(true) => return Claim::Done,
        Ok(false) => {}
        Err(error) => return Claim::Unavailable(error),
    }
    let claim_key = claim_key(scope, event, now_ms, lease_ms);
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

    fn scope() -> ClaimScope {
        ClaimScope::new(
            &DatabaseAddress::Postgres {
                url: "postgres://app:secret@db.example.com/vapi_edge".into(),
            },
            None,
        )
    }

    #[test]
    fn the_first_attempt_owns_the_event_and_a_second_waits() {
        let mut kv = MapStore::default();
        let held = block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000));
        assert!(matches!(held, Claim::Acquired(_)));
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 2_000, 30_000)),
            Claim::InProgress
        );
    }

    #[test]
    fn a_completed_event_is_done_for_every_later_attempt() {
        let mut kv = MapStore::default();
        let Claim::Acquired(held) = block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000))
        else {
            panic!("not acquired");
        };
        block_on(held.complete(&mut kv)).unwrap();
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 1_500, 30_000)),
            Claim::Done
        );
        // In a later window too: the done key has no window.
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 90_000, 30_000)),
            Claim::Done
        );
    }

    #[test]
    fn a_released_claim_lets_the_retry_in_at_once() {
        let mut kv = MapStore::default();
        let Claim::Acquired(held) = block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000))
        else {
            panic!("not acquired");
        };
        block_on(held.release(&mut kv)).unwrap();
        assert!(matches!(
            block_on(claim(&mut kv, &scope(), &key(), 1_100, 30_000)),
            Claim::Acquired(_)
        ));
    }

    #[test]
    fn a_claim_left_by_a_dead_attempt_blocks_only_until_its_lease_ends() {
        let mut kv = MapStore::default();
        // Acquired at 29 999 ms and never completed nor released.
        assert!(matches!(
            block_on(claim(&mut kv, &scope(), &key(), 29_999, 30_000)),
            Claim::Acquired(_)
        ));
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 29_999, 30_000)),
            Claim::InProgress
        );
        // The next window starts at 30 000 ms.
        assert!(matches!(
            block_on(claim(&mut kv, &scope(), &key(), 30_000, 30_000)),
            Claim::Acquired(_)
        ));
    }

    #[test]
    fn the_second_claimant_sees_done_when_the_first_finished_in_between() {
        let mut kv = MapStore::default();
        // The first attempt claimed and finished, and its done key is there,
        // but the second reached the counter (not the done check) first.
        block_on(kv.increment(&claim_key(&scope(), &key(), 1_000, 30_000), 1)).unwrap();
        kv.values.insert(done_key(&scope(), &key()), b"1".to_vec());
        // `exists(done)` is checked first and wins.
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000)),
            Claim::Done
        );
    }

    #[test]
    fn a_store_that_does_not_answer_leaves_the_database_to_guard() {
        let mut kv = MapStore {
            down: true,
            ..MapStore::default()
        };
        assert!(matches!(
            block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000)),
            Claim::Unavailable(_)
        ));
    }

    #[test]
    fn a_claim_made_for_one_database_is_nothing_to_another() {
        let mut kv = MapStore::default();
        let Claim::Acquired(held) = block_on(claim(&mut kv, &scope(), &key(), 1_000, 30_000))
        else {
            panic!("not acquired");
        };
        block_on(held.complete(&mut kv)).unwrap();
        let sqlite = ClaimScope::new(
            &DatabaseAddress::Sqlite {
                label: "default".into(),
            },
            None,
        );
        let staging = ClaimScope::new(
            &DatabaseAddress::Postgres {
                url: "postgres://app@db.example.com/vapi_edge_staging".into(),
            },
            None,
        );
        let restored = ClaimScope::new(
            &DatabaseAddress::Postgres {
                url: "postgres://app@db.example.com/vapi_edge".into(),
            },
            Some("restored-2026-12-07"),
        );
        for other in [sqlite, staging, restored] {
            assert_ne!(other, scope());
            assert!(matches!(
                block_on(claim(&mut kv, &other, &key(), 1_500, 30_000)),
                Claim::Acquired(_)
            ));
        }
        assert_eq!(
            block_on(claim(&mut kv, &scope(), &key(), 1_500, 30_000)),
            Claim::Done
        );
    }

    #[test]
    fn the_scope_names_the_database_not_how_it_is_reached() {
        let scope_of =
            |url: &str| ClaimScope::new(&DatabaseAddress::Postgres { url: url.into() }, None);
        let base = scope_of("postgres://app:secret@DB.example.com:5432/vapi_edge?sslmode=require");
        // The password, the TLS settings, the host's case and the default port
        // do not change which database it is.
        assert_eq!(
            base,
            scope_of("postgresql://app:other@db.example.com/vapi_edge")
        );
        assert_ne!(
            base,
            scope_of("postgres://app@db.example.com:5433/vapi_edge")
        );
        assert_ne!(
            base,
            scope_of("postgres://app@replica.example.com/vapi_edge")
        );
        assert_eq!(
            scope_of("postgres://app@[::1]/app"),
            scope_of("postgres://app@[::1]:5432")
        );
        assert_ne!(
            scope_of("postgres://app@[::1]:5432/app"),
            scope_of("postgres://app@[::1]:5433/app")
        );
        assert_eq!(base.as_str().len(), 12);
    }
}
