//! Dead letters parked in the key-value store while the database, their usual
//! home, is down: how they are indexed, found again and moved out.
//!
//! The store cannot list keys by prefix: `list-keys` answers every key, which
//! on a shared Redis is every claim ever made (Spin's Redis store runs `KEYS *`).
//! A replay that listed the store read millions of keys into a 128 MiB
//! instance and trapped. So each parked letter gets a numbered slot from an
//! atomic counter, and a replay reads only the slots after the last one it
//! finished: its cost is the number of parked letters, not the size of the store.
//!
//! Keys (all under `vapi-edge/`):
//! - `dead-letter/<event key>`: the body (one per event; a repeat overwrites it);
//! - `dead-letters/tail`: the last slot handed out (`increment`, atomic);
//! - `dead-letters/slot/<n>`: the event key parked in slot n; empty once moved;
//! - `dead-letters/head`: every slot up to this one is moved;
//! - `dead-letters/hole`: `<n>:<ms>`, the first unwritten slot and when a
//!   replay first saw it (see [`HOLE_GRACE_MS`]).

use crate::kv::{KeyValue, KvError};

const LETTER_PREFIX: &str = "vapi-edge/dead-letter/";
const SLOT_PREFIX: &str = "vapi-edge/dead-letters/slot/";
const TAIL_KEY: &str = "vapi-edge/dead-letters/tail";
const HEAD_KEY: &str = "vapi-edge/dead-letters/head";
const HOLE_KEY: &str = "vapi-edge/dead-letters/hole";

/// Slots one call looks at: bounds the work of one `POST /admin/replay`.
pub const SLOTS_PER_PASS: i64 = 500;

/// A slot is handed out a moment before its event key is written. One still
/// empty this long after a replay first saw it belongs to an attempt that died
/// between the two writes (its letter is in the store, never indexed), and is
/// passed over so that it does not hold back the queue. Far longer than any
/// request may live.
pub const HOLE_GRACE_MS: i64 = 10 * 60 * 1000;

/// The key of an event's parked body.
pub fn letter_key(event_key: &str) -> String {
    format!("{LETTER_PREFIX}{event_key}")
}

fn slot_key(slot: i64) -> String {
    format!("{SLOT_PREFIX}{slot}")
}

/// Parks `body` under `event_key` and indexes it. An error after the body was
/// written leaves it unindexed: the caller must treat the letter as lost.
pub async fn park(store: &mut impl KeyValue, event_key: &str, body: &[u8]) -> Result<(), KvError> {
    store.set(&letter_key(event_key), body).await?;
    let slot = store.increment(TAIL_KEY, 1).await?;
    store.set(&slot_key(slot), event_key.as_bytes()).await
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Letters handed to `keep` and then removed from the store.
    pub moved: usize,
    /// Slots not yet finished (pending letters, at most; some may be moved
    /// already through another slot of the same event).
    pub still_parked: i64,
}

/// Moves parked letters, oldest first, out of the store: `keep(event key,
/// body)` stores one durably and says whether it did; only then is the letter
/// deleted. Looks at up to [`SLOTS_PER_PASS`] slots. Safe to run concurrently
/// with `park` and with itself: `keep` may see a letter twice, never lose one.
/// `keep` gets the store back (it is often the same object as the database)
/// with the event key and the body.
pub async fn drain<S, K>(store: &mut S, now_ms: i64, mut keep: K) -> Result<Drained, KvError>
where
    S: KeyValue,
    K: AsyncFnMut(&mut S, &str, &[u8]) -> bool,
{
    let head = counter(store, HEAD_KEY).await?;
    // The tail is only ever incremented, and each store keeps an incremented
    // value its own way (Redis: decimal text; Spin's SQLite store: 8
    // little-endian bytes), so it is read by adding 0, never with `get`.
    let tail = store.increment(TAIL_KEY, 0).await?;
    let mut finished_to = head;
    let mut moved = 0;
    for slot in head + 1..=tail.min(head + SLOTS_PER_PASS) {
        let finished = match store.get(&slot_key(slot)).await? {
            Some(event_key) if event_key.is_empty() => true,
            Some(event_key) => {
                let event_key = String::from_utf8_lossy(&event_key).into_owned();
                let letter = letter_key(&event_key);
                let out_of_store = match store.get(&letter).await? {
                    Some(body) => {
                        let kept = keep(store, &event_key, &body).await
                            && store.delete(&letter).await.is_ok();
                        moved += usize::from(kept);
                        kept
                    }
                    // Moved already, through an earlier slot of the same event.
                    None => true,
                };
                // A failed mark only means the next pass looks at this slot again.
                out_of_store && store.set(&slot_key(slot), b"").await.is_ok()
            }
            None => finished_to == slot - 1 && abandoned(store, slot, now_ms).await?,
        };
        if finished && finished_to == slot - 1 {
            finished_to = slot;
        }
    }
    if finished_to > head {
        store
            .set(HEAD_KEY, finished_to.to_string().as_bytes())
            .await?;
    }
    Ok(Drained {
        moved,
        still_parked: tail - finished_to,
    })
}

/// Whether the unwritten `slot`, the first unfinished one, has been so for
/// longer than [`HOLE_GRACE_MS`]; the first sighting starts the clock.
async fn abandoned(store: &mut impl KeyValue, slot: i64, now_ms: i64) -> Result<bool, KvError> {
    let seen = store.get(HOLE_KEY).await?.and_then(|value| {
        let text = String::from_utf8(value).ok()?;
        let (seen_slot, since) = text.split_once(':')?;
        Some((seen_slot.parse::<i64>().ok()?, since.parse::<i64>().ok()?))
    });
    match seen {
        Some((seen_slot, since)) if seen_slot == slot => Ok(now_ms - since >= HOLE_GRACE_MS),
        _ => {
            store
                .set(HOLE_KEY, format!("{slot}:{now_ms}").as_bytes())
                .await?;
            Ok(false)
        }
    }
}

/// A counter this module `set`s (as decimal text); absent is 0. A value that
/// is not a number is reported, not read as 0: that would replay slots from
/// the start, or skip them.
async fn counter(store: &mut impl KeyValue, key: &str) -> Result<i64, KvError> {
    match store.get(key).await? {
        None => Ok(0),
        Some(value) => std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .ok_or_else(|| KvError(format!("{key} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::fake::MapStore as Map;
    use crate::test_support::block_on;

    fn drain_all(store: &mut Map, now_ms: i64) -> (Drained, Vec<(String, Vec<u8>)>) {
        let mut kept = Vec::new();
        let drained = block_on(drain(
            store,
            now_ms,
            async |_: &mut Map, key: &str, body: &[u8]| {
                kept.push((key.to_string(), body.to_vec()));
                true
            },
        ))
        .unwrap();
        (drained, kept)
    }

    #[test]
    fn parked_letters_come_back_oldest_first_and_leave_the_store() {
        let mut store = Map::default();
        block_on(park(&mut store, "v1|a", b"body a")).unwrap();
        block_on(park(&mut store, "v1|b", b"body b")).unwrap();
        let (drained, kept) = drain_all(&mut store, 0);
        assert_eq!(
            kept,
            vec![
                ("v1|a".to_string(), b"body a".to_vec()),
                ("v1|b".to_string(), b"body b".to_vec())
            ]
        );
        assert_eq!(
            drained,
            Drained {
                moved: 2,
                still_parked: 0
            }
        );
        assert!(!store.values.contains_key(&letter_key("v1|a")));
        assert_eq!(drain_all(&mut store, 0).1, vec![]);
    }

    #[test]
    fn a_pass_reads_the_parked_slots_not_the_store() {
        let mut store = Map::default();
        for n in 0..10_000 {
            store
                .values
                .insert(format!("vapi-edge/done/v1|call-{n}"), b"1".to_vec());
        }
        block_on(park(&mut store, "v1|a", b"a")).unwrap();
        store.reads = 0;
        drain_all(&mut store, 0);
        // head, tail, the slot, the letter.
        assert_eq!(store.reads, 4);
        store.reads = 0;
        drain_all(&mut store, 0);
        assert_eq!(store.reads, 2, "an empty queue costs two reads");
    }

    #[test]
    fn a_letter_that_could_not_be_kept_stays_for_the_next_pass() {
        let mut store = Map::default();
        block_on(park(&mut store, "v1|a", b"a")).unwrap();
        block_on(park(&mut store, "v1|b", b"b")).unwrap();
        let drained = block_on(drain(
            &mut store,
            0,
            async |_: &mut Map, key: &str, _: &[u8]| key == "v1|b",
        ))
        .unwrap();
        assert_eq!(
            drained,
            Drained {
                moved: 1,
                still_parked: 2
            }
        );
        let (drained, kept) = drain_all(&mut store, 0);
        assert_eq!(kept, vec![("v1|a".to_string(), b"a".to_vec())]);
        assert_eq!(drained.still_parked, 0);
    }

    #[test]
    fn an_event_parked_twice_is_kept_once_with_its_latest_body() {
        let mut store = Map::default();
        block_on(park(&mut store, "v1|a", b"first")).unwrap();
        block_on(park(&mut store, "v1|a", b"second")).unwrap();
        let (drained, kept) = drain_all(&mut store, 0);
        assert_eq!(kept, vec![("v1|a".to_string(), b"second".to_vec())]);
        assert_eq!(drained.still_parked, 0);
    }

    #[test]
    fn a_slot_being_written_holds_the_head_but_not_later_letters() {
        let mut store = Map::default();
        block_on(park(&mut store, "v1|a", b"a")).unwrap();
        // An attempt took slot 2 and has not written it yet.
        block_on(store.increment(TAIL_KEY, 1)).unwrap();
        block_on(park(&mut store, "v1|c", b"c")).unwrap();
        let (drained, kept) = drain_all(&mut store, 1_000);
        assert_eq!(kept.len(), 2, "a and c move past the hole");
        assert_eq!(drained.still_parked, 2, "slots 2 and 3 are above the head");
        // The attempt finishes; the next pass finds its letter.
        block_on(store.set(&letter_key("v1|b"), b"b")).unwrap();
        block_on(store.set(&slot_key(2), b"v1|b")).unwrap();
        let (drained, kept) = drain_all(&mut store, 2_000);
        assert_eq!(kept, vec![("v1|b".to_string(), b"b".to_vec())]);
        assert_eq!(drained.still_parked, 0);
    }

    #[test]
    fn a_slot_whose_writer_died_is_passed_over_after_the_grace_time() {
        let mut store = Map::default();
        block_on(store.increment(TAIL_KEY, 1)).unwrap();
        block_on(park(&mut store, "v1|b", b"b")).unwrap();
        assert_eq!(drain_all(&mut store, 1_000).0.still_parked, 2);
        assert_eq!(
            drain_all(&mut store, 1_000 + HOLE_GRACE_MS - 1)
                .0
                .still_parked,
            2
        );
        assert_eq!(
            drain_all(&mut store, 1_000 + HOLE_GRACE_MS).0.still_parked,
            0
        );
    }

    #[test]
    fn a_long_queue_drains_over_several_passes() {
        let mut store = Map::default();
        let total = SLOTS_PER_PASS as usize * 2 + 7;
        for n in 0..total {
            block_on(park(&mut store, &format!("v1|{n}"), b"x")).unwrap();
        }
        let mut seen = 0;
        for _ in 0..3 {
            seen += drain_all(&mut store, 0).1.len();
        }
        assert_eq!(seen, total);
        assert_eq!(drain_all(&mut store, 0).0.still_parked, 0);
    }

    #[test]
    fn a_failed_index_write_is_an_error_so_the_letter_counts_as_lost() {
        let mut store = Map {
            failing: vec![slot_key(1)],
            ..Map::default()
        };
        assert!(block_on(park(&mut store, "v1|a", b"a")).is_err());
    }

    #[test]
    fn a_counter_that_is_not_a_number_stops_the_pass() {
        let mut store = Map::default();
        block_on(store.set(HEAD_KEY, b"garbage")).unwrap();
        let error = block_on(drain(
            &mut store,
            0,
            async |_: &mut Map, _: &str, _: &[u8]| true,
        ))
        .unwrap_err();
        assert!(error.0.contains("head"), "{error}");
    }
}
