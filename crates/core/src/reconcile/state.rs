//! Where reconciliation stands in one scope, kept between runs in
//! `reconciliation.state` (JSON), and how a page of Vapi's list moves it.
//!
//! `GET /call` has no cursor. A run walks a *window* of creation times
//! `[from, to]`: it asks for the calls created between `from` and `upper`
//! (first `to`), and Vapi answers the newest first, at most `limit`. A page
//! shorter than the limit ends the window; a full one moves `upper` down to
//! its oldest call's creation time, *inclusive*, so calls that share that
//! instant across the page boundary are read again (and skipped by id), never
//! missed. Should the API answer oldest first, `from` moves up instead.
//!
//! When a window ends, the *cursor* (every call created before it is done)
//! moves to the window's end, or to the creation time of the oldest call
//! that was not over yet, so that call is read again by a later run. A call
//! that stays unfinished longer than [`MAX_CALL_MS`] no longer holds it.

use serde_json::{json, Value};

/// The longest a call stays unfinished and still holds the cursor (Vapi's
/// longest call is 12 hours, `maxDurationSeconds` 43200; a call scheduled for
/// later waits no longer than this either).
pub const MAX_CALL_MS: i64 = 24 * 3_600_000;

/// One scope's state between runs, kept as JSON (`{"cursor_ms", "window":
/// {"from_ms", "to_ms", "upper_ms", "pending_ms"}, "last"}`; read and
/// written by hand, as serde's derives would add to the `.wasm`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Every call created before this (Unix ms) is reconciled; `None`
    /// before the first window ends.
    pub cursor_ms: Option<i64>,
    /// The window being walked, when a run stopped inside one.
    pub window: Option<Window>,
    /// The last run's report (what `GET /admin/reconcile` shows).
    pub last: Option<Value>,
}

impl State {
    /// The state as saved; an unreadable one starts over (from the lookback).
    pub fn from_json(text: &str) -> State {
        serde_json::from_str::<Value>(text)
            .map_or_else(|_| State::default(), |v| Self::from_value(&v))
    }

    /// The state from its JSON value (as a status statement returns it).
    pub fn from_value(value: &Value) -> State {
        let w = &value["window"];
        let window = match (
            w["from_ms"].as_i64(),
            w["to_ms"].as_i64(),
            w["upper_ms"].as_i64(),
        ) {
            (Some(from_ms), Some(to_ms), Some(upper_ms)) => Some(Window {
                from_ms,
                to_ms,
                upper_ms,
                pending_ms: w["pending_ms"].as_i64(),
            }),
            _ => None,
        };
        State {
            cursor_ms: value["cursor_ms"].as_i64(),
            window,
            last: Some(value["last"].clone()).filter(|last| !last.is_null()),
        }
    }

    pub fn to_json(&self) -> String {
        let window = self.window.as_ref().map(|w| {
            json!({"from_ms": w.from_ms, "to_ms": w.to_ms, "upper_ms": w.upper_ms,
                   "pending_ms": w.pending_ms})
        });
        json!({"cursor_ms": self.cursor_ms, "window": window, "last": self.last}).to_string()
    }

    /// Starts over at `from_ms` (an operator's backfill): the window being
    /// walked is dropped, and the next one begins there.
    pub fn restart_at(&mut self, from_ms: i64) {
        self.cursor_ms = Some(from_ms);
        self.window = None;
    }

    /// The window to walk now: the open one, else a new one from the cursor
    /// (or `lookback_ms` before `now_ms` the first time) to `now_ms`.
    pub fn window(&mut self, now_ms: i64, lookback_ms: i64) -> &mut Window {
        let from_ms = self.cursor_ms.unwrap_or(now_ms - lookback_ms);
        self.window.get_or_insert(Window {
            from_ms,
            to_ms: now_ms,
            upper_ms: now_ms,
            pending_ms: None,
        })
    }

    /// The open window is walked to its end: the cursor moves past it.
    pub fn finish_window(&mut self) {
        if let Some(window) = self.window.take() {
            self.cursor_ms = Some(window.pending_ms.unwrap_or(window.to_ms));
        }
    }
}

/// A window of creation times being walked, page by page.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The next page's newest creation time (inclusive).
    pub upper_ms: i64,
    /// The oldest creation time of a call seen not yet over.
    pub pending_ms: Option<i64>,
}

/// What a page did to its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The page was the window's last.
    Done,
    /// More pages to read.
    More,
    /// A full page of calls created at one instant: the bound steps past it,
    /// and calls of that instant beyond the page may be missed.
    SteppedPast { created_ms: i64 },
}

impl Window {
    /// A call created at `created_ms` is not over yet at `now_ms`.
    pub fn hold(&mut self, created_ms: i64, now_ms: i64) {
        if created_ms > now_ms - MAX_CALL_MS {
            self.pending_ms = Some(self.pending_ms.map_or(created_ms, |p| p.min(created_ms)));
        }
    }

    /// Moves the window past a page of `listed` calls: `created` are the
    /// creation times of those that could be read, in the order Vapi listed
    /// them, `limit` what was asked for.
    pub fn advance(&mut self, created: &[i64], listed: usize, limit: usize) -> Advance {
        if listed < limit || created.is_empty() {
            return Advance::Done;
        }
        let (first, last) = (created[0], created[created.len() - 1]);
        let oldest = created.iter().copied().min().unwrap_or(first);
        let newest = created.iter().copied().max().unwrap_or(first);
        let oldest_first = first < last;
        if oldest == newest {
            // One instant fills the page: step past it, or the same page
            // comes back forever.
            match newest >= self.upper_ms {
                true => self.upper_ms = newest - 1,
                false => self.from_ms = newest + 1,
            }
            return self.check(Advance::SteppedPast { created_ms: newest });
        }
        match oldest_first {
            false => self.upper_ms = oldest,
            true => self.from_ms = newest,
        }
        self.check(Advance::More)
    }

    fn check(&self, advance: Advance) -> Advance {
        match self.from_ms > self.upper_ms {
            true => Advance::Done,
            false => advance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from_ms: i64, to_ms: i64) -> Window {
        Window {
            from_ms,
            to_ms,
            upper_ms: to_ms,
            pending_ms: None,
        }
    }

    /// Walks `calls` (creation times) the way the API serves them (newest
    /// first, or oldest first) and returns every call read, in pages of
    /// `limit`.
    fn walk(calls: &[i64], limit: usize, newest_first: bool) -> (Vec<i64>, usize) {
        let mut w = window(0, 1_000);
        let (mut read, mut pages) = (Vec::new(), 0);
        loop {
            let mut page: Vec<i64> = calls
                .iter()
                .copied()
                .filter(|c| *c >= w.from_ms && *c <= w.upper_ms)
                .collect();
            page.sort();
            if newest_first {
                page.reverse();
            }
            page.truncate(limit);
            pages += 1;
            read.extend(&page);
            match w.advance(&page, page.len(), limit) {
                Advance::Done => return (read, pages),
                _ => assert!(pages < 100, "the walk ends"),
            }
        }
    }

    #[test]
    fn calls_sharing_an_instant_across_a_page_boundary_are_all_read() {
        // Five calls at 500, with pages of 3: the boundary falls among them.
        let calls = [100, 200, 500, 500, 500, 500, 500, 700, 800];
        for newest_first in [true, false] {
            let (read, _) = walk(&calls, 3, newest_first);
            let mut unique = read.clone();
            unique.sort();
            unique.dedup();
            // Every call read (by creation time, as a set); some twice.
            let mut expected = calls.to_vec();
            expected.dedup();
            assert_eq!(unique, expected, "newest_first {newest_first}");
            for instant in [100, 200, 700, 800] {
                assert!(read.contains(&instant));
            }
            assert!(read.iter().filter(|c| **c == 500).count() >= 3);
        }
    }

    #[test]
    fn a_short_page_ends_the_window_and_an_empty_one_too() {
        let mut w = window(0, 1_000);
        assert_eq!(w.advance(&[900, 800], 2, 3), Advance::Done);
        assert_eq!(w.advance(&[], 0, 3), Advance::Done);
        assert_eq!(walk(&[], 3, true).1, 1);
    }

    #[test]
    fn an_unreadable_call_on_a_full_page_does_not_end_the_window() {
        let mut w = window(0, 1_000);
        // Four listed, one unreadable: the page was full.
        assert_eq!(w.advance(&[900, 800, 700], 4, 4), Advance::More);
        assert_eq!(w.upper_ms, 700);
    }

    #[test]
    fn a_full_page_of_one_instant_steps_past_it() {
        let mut w = window(0, 1_000);
        assert_eq!(
            w.advance(&[1_000, 1_000, 1_000], 3, 3),
            Advance::SteppedPast { created_ms: 1_000 }
        );
        assert_eq!(w.upper_ms, 999);
        // Down to the window's start: done.
        let mut w = window(500, 500);
        assert_eq!(w.advance(&[500, 500], 2, 2), Advance::Done);
    }

    #[test]
    fn the_cursor_waits_for_the_oldest_unfinished_call() {
        let mut state = State::default();
        let now = 10 * MAX_CALL_MS;
        let w = state.window(now, 3_600_000);
        assert_eq!(w.from_ms, now - 3_600_000);
        w.hold(now - 60_000, now);
        w.hold(now - 120_000, now);
        // Unfinished for longer than a call can last: does not hold it.
        w.hold(now - MAX_CALL_MS - 1, now);
        state.finish_window();
        assert_eq!(state.cursor_ms, Some(now - 120_000));
        assert_eq!(state.window, None);
        // The next window starts there.
        assert_eq!(state.window(now + 1, 3_600_000).from_ms, now - 120_000);
    }

    #[test]
    fn the_state_survives_its_json_and_a_bad_one_starts_over() {
        let mut state = State::default();
        state.window(5_000, 1_000).upper_ms = 4_500;
        let text = state.to_json();
        assert_eq!(State::from_json(&text), state);
        state.window.as_mut().unwrap().pending_ms = Some(4_200);
        state.cursor_ms = Some(3_000);
        state.last = Some(serde_json::json!({"outcome": "more"}));
        assert_eq!(State::from_json(&state.to_json()), state);
        assert_eq!(State::from_json("not json"), State::default());
        state.restart_at(42);
        assert_eq!((state.cursor_ms, state.window.is_none()), (Some(42), true));
    }
}
