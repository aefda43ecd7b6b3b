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

/// The store operations the queue needs; the component implements it over
/// `wasi:keyvalue`, the tests over a map.
pub trait KeyValue {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
    /// Atomic: concurrent callers never see the same result.
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String>;
}

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
pub fn park(store: &mut impl KeyValue, event_key: &str, body: &[u8]) -> Result<(), String> {
    store.set(&letter_key(event_key), body)?;
    let slot = store.increment(TAIL_KEY, 1)?;
    store.set(&slot_key(slot), event_key.as_bytes())
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
pub fn drain(
    store: &mut impl KeyValue,
    now_ms: i64,
    mut keep: impl FnMut(&str, &[u8]) -> bool,
) -> Result<Drained, String> {
    let head = counter(store, HEAD_KEY)?;
    // The tail is only ever incremented, and each store keeps an incremented
    // value its own way (Redis: decimal text; Spin's SQLite store: 8
    // little-endian bytes), so it is read by adding 0, never with `get`.
    let tail = store.increment(TAIL_KEY, 0)?;
    let mut finished_to = head;
    let mut moved = 0;
    for slot in head + 1..=tail.min(head + SLOTS_PER_PASS) {
        let finished = match store.get(&slot_key(slot))? {
            Some(event_key) if event_key.is_empty() => true,
            Some(event_key) => {
                let event_key = String::from_utf8_lossy(&event_key).into_owned();
                let letter = letter_key(&event_key);
                let out_of_store = match store.get(&letter)? {
                    Some(body) => {
                        let kept = keep(&event_key, &body) && store.delete(&letter).is_ok();
                        moved += usize::from(kept);
                        kept
                    }
                    // Moved already, through an earlier slot of the same event.
                    None => true,
                };
                // A failed mark only means the next pass looks at this slot again.
                out_of_store && store.set(&slot_key(slot), b"").is_ok()
            }
            None => finished_to == slot - 1 && abandoned(store, slot, now_ms)?,
        };
        if finished && finished_to == slot - 1 {
            finished_to = slot;
        }
    }
    if finished_to > head {
        store.set(HEAD_KEY, finished_to.to_string().as_bytes())?;
    }
    Ok(Drained {
        moved,
        still_parked: tail - finished_to,
    })
}

/// Whether the unwritten `slot`, the first unfinished one, has been so for
/// longer than [`HOLE_GRACE_MS`]; the first sighting starts the clock.
fn abandoned(store: &mut impl KeyValue, slot: i64, now_ms: i64) -> Result<bool, String> {
    let seen = store.get(HOLE_KEY)?.and_then(|value| {
        let text = String::from_utf8(value).ok()?;
        let (seen_slot, since) = text.split_once(':')?;
        Some((seen_slot.parse::<i64>().ok()?, since.parse::<i64>().ok()?))
    });
    match seen {
        Some((seen_slot, since)) if seen_slot == slot => Ok(now_ms - since >= HOLE_GRACE_MS),
        _ => {
            store.set(HOLE_KEY, format!("{slot}:{now_ms}").as_bytes())?;
            Ok(false)
        }
    }
}

/// A counter this module `set`s (as decimal text); absent is 0. A value that
/// is not a number is reported, not read as 0: that would replay slots from
/// the start, or skip them.
fn counter(store: &mut impl KeyValue, key: &str) -> Result<i64, String> {
    match store.get(key)? {
        None => Ok(0),
        Some(value) => std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .ok_or_else(|| format!("{key} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Map {
        values: BTreeMap<String, Vec<u8>>,
        reads: usize,
        /// Keys whose `set` fails, to play a store that dies mid-way.
        failing: Vec<String>,
    }

    impl KeyValue for Map {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.reads += 1;
            Ok(self.values.get(key).cloned())
        }
        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
            if self.failing.iter().any(|k| k == key) {
                return Err("store unavailable".into());
            }
            self.values.insert(key.into(), value.to_vec());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<(), String> {
            self.values.remove(key);
            Ok(())
        }
        /// Keeps counters as Spin's default (SQLite) store does: 8
        /// little-endian bytes, which `get` callers cannot read as text.
        fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String> {
            self.reads += 1;
            let current = match self.values.get(key) {
                None => 0,
                Some(bytes) => i64::from_le_bytes(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| "not a counter".to_string())?,
                ),
            };
            let next = current + delta;
            self.set(key, &next.to_le_bytes())?;
            Ok(next)
        }
    }

    fn drain_all(store: &mut Map, now_ms: i64) -> (Drained, Vec<(String, Vec<u8>)>) {
        let mut kept = Vec::new();
        let drained = drain(store, now_ms, |key, body| {
            kept.push((key.to_string(), body.to_vec()));
            true
        })
        .unwrap();
        (drained, kept)
    }

    #[test]
    fn parked_letters_come_back_oldest_first_and_leave_the_store() {
        let mut store = Map::default();
        park(&mut store, "v1|a", b"body a").unwrap();
        park(&mut store, "v1|b", b"body b").unwrap();
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
        park(&mut store, "v1|a", b"a").unwrap();
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
        park(&mut store, "v1|a", b"a").unwrap();
        park(&mut store, "v1|b", b"b").unwrap();
        let drained = drain(&mut store, 0, |key, _| key == "v1|b").unwrap();
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
        park(&mut store, "v1|a", b"first").unwrap();
        park(&mut store, "v1|a", b"second").unwrap();
        let (drained, kept) = drain_all(&mut store, 0);
        assert_eq!(kept, vec![("v1|a".to_string(), b"second".to_vec())]);
        assert_eq!(drained.still_parked, 0);
    }

    #[test]
    fn a_slot_being_written_holds_the_head_but_not_later_letters() {
        let mut store = Map::default();
        park(&mut store, "v1|a", b"a").unwrap();
        // An attempt took slot 2 and has not written it yet.
        store.increment(TAIL_KEY, 1).unwrap();
        park(&mut store, "v1|c", b"c").unwrap();
        let (drained, kept) = drain_all(&mut store, 1_000);
        assert_eq!(kept.len(), 2, "a and c move past the hole");
        assert_eq!(drained.still_parked, 2, "slots 2 and 3 are above the head");
        // The attempt finishes; the next pass finds its letter.
        store.set(&letter_key("v1|b"), b"b").unwrap();
        store.set(&slot_key(2), b"v1|b").unwrap();
        let (drained, kept) = drain_all(&mut store, 2_000);
        assert_eq!(kept, vec![("v1|b".to_string(), b"b".to_vec())]);
        assert_eq!(drained.still_parked, 0);
    }

    #[test]
    fn a_slot_whose_writer_died_is_passed_over_after_the_grace_time() {
        let mut store = Map::default();
        store.increment(TAIL_KEY, 1).unwrap();
        park(&mut store, "v1|b", b"b").unwrap();
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
            park(&mut store, &format!("v1|{n}"), b"x").unwrap();
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
        assert!(park(&mut store, "v1|a", b"a").is_err());
    }

    #[test]
    fn a_counter_that_is_not_a_number_stops_the_pass() {
        let mut store = Map::default();
        store.set(HEAD_KEY, b"garbage").unwrap();
        let error = drain(&mut store, 0, |_, _| true).unwrap_err();
        assert!(error.contains("head"), "{error}");
    }
}
