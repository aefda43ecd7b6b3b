//! The relay's in-process state: the ring of recent events kept for resume,
//! the live subscribers and the fan-out to them, and the in-memory memory of
//! accepted `webhook-id`s used when there is no Redis.
//!
//! One lock covers the ring and the subscribers, so an event is appended and
//! offered to every subscriber in one step: every subscriber sees events in
//! ring order, and a subscriber that resumes gets the ring's tail and then
//! the live events with neither a gap nor a repeat between them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use vapi_edge_core::access::Scope;

/// Longest `webhook-id` accepted: it becomes a Redis key and an SSE `id:` line.
pub const MAX_ID_LEN: usize = 256;

/// One accepted event as the replicas pass it on (the Redis message, and the
/// WebSocket text frame): its `webhook-id`, its organisation, the body. A call
/// recorded without an organisation has `org_id` `null`: only subscribers
/// whose token opens every organisation (operators) get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub org_id: Option<String>,
    pub event: serde_json::Value,
}

/// Whether a subscriber of `scope` may see an event of `org_id`.
fn sees(scope: &Scope, org_id: Option<&str>) -> bool {
    match org_id {
        Some(org_id) => scope.allows(org_id),
        None => scope.orgs().is_none(),
    }
}

/// Why a body or a Redis message is not an event the relay can pass on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not a JSON object with an org_id that is a string or null")]
    NotAnEvent,
    #[error("webhook-id is empty, longer than {MAX_ID_LEN} bytes or holds control characters")]
    BadId,
}

impl Envelope {
    /// The envelope of a verified notification: `body` must be a JSON object
    /// whose `org_id` is a string, or `null` for a call no organisation owns.
    pub fn from_notification(id: &str, body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let event: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| EnvelopeError::NotAnEvent)?;
        let org_id = match event.get("org_id") {
            Some(serde_json::Value::String(org_id)) => Some(org_id.clone()),
            Some(serde_json::Value::Null) => None,
            _ => return Err(EnvelopeError::NotAnEvent),
        };
        let envelope = Envelope {
            id: id.to_string(),
            org_id,
            event,
        };
        envelope.check()?;
        Ok(envelope)
    }

    /// An envelope received from another replica, checked like a body.
    pub fn from_message(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|_| EnvelopeError::NotAnEvent)?;
        envelope.check()?;
        Ok(envelope)
    }

    fn check(&self) -> Result<(), EnvelopeError> {
        if !self.event.is_object() {
            return Err(EnvelopeError::NotAnEvent);
        }
        // A newline would end the SSE `id:` field early and start another.
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN || self.id.chars().any(char::is_control)
        {
            return Err(EnvelopeError::BadId);
        }
        Ok(())
    }

    /// The bytes every subscriber gets, rendered once per event.
    fn frames(&self) -> Frames {
        // serde_json escapes control characters inside strings, so the event
        // is one line, as an SSE `data:` field must be.
        let data = self.event.to_string();
        let sse = format!("id: {}\nevent: call.event\ndata: {data}\n\n", self.id);
        let ws = serde_json::to_string(self).unwrap_or_default();
        Frames {
            sse: Bytes::from(sse),
            ws: Utf8Bytes::from(ws),
        }
    }
}

/// One message for a subscriber, in both wire forms.
#[derive(Debug)]
pub struct Frames {
    /// An SSE event, blank line included.
    pub sse: Bytes,
    /// A WebSocket text frame.
    pub ws: Utf8Bytes,
}

impl Frames {
    /// "Your position is lost: fetch the current state again."
    pub fn reset() -> Frames {
        Frames {
            sse: Bytes::from_static(b"event: reset\ndata: {}\n\n"),
            ws: Utf8Bytes::from_static(r#"{"type":"reset"}"#),
        }
    }
}

struct RingEntry {
    id: String,
    org_id: Option<String>,
    frames: Arc<Frames>,
}

struct Subscriber {
    scope: Scope,
    /// Who subscribed: a digest of the token presented (never the token).
    holder: String,
    sender: mpsc::Sender<Arc<Frames>>,
    /// Closes the subscriber's connection when it is dropped for being slow.
    close: Arc<Notify>,
}

#[derive(Default)]
struct State {
    ring: VecDeque<RingEntry>,
    subscribers: HashMap<u64, Subscriber>,
    next_subscriber: u64,
}

/// The ring and the subscribers of one relay process.
pub struct Hub {
    state: Mutex<State>,
    ring_capacity: usize,
    buffer: usize,
    caps: SubscriberCaps,
}

/// A live subscription: what to send first, then what arrives. Dropping it
/// (the connection ended) removes the subscriber.
pub struct Subscription {
    pub id: u64,
    /// The missed events (or one reset), to send before anything else.
    pub backlog: Vec<Arc<Frames>>,
    pub receiver: mpsc::Receiver<Arc<Frames>>,
    hub: Arc<Hub>,
}

/// Puts `frames` in the subscriber's buffer without waiting: `false` (remove
/// it) when the buffer is full, after telling its connection to close and
/// noting it in `dropped`, or when its connection has already ended.
fn offer(id: u64, subscriber: &Subscriber, frames: &Arc<Frames>, dropped: &mut Vec<u64>) -> bool {
    match subscriber.sender.try_send(frames.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            subscriber.close.notify_one();
            dropped.push(id);
            false
        }
        // Its connection has ended; the subscription's drop is on its way.
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.state().subscribers.remove(&self.id);
    }
}

/// How many subscribers the relay keeps at once: in all, and per token (one
/// tenant's dashboards, or one leaked token, cannot take every descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberCaps {
    pub total: usize,
    pub per_token: usize,
}

/// Why a subscription was refused: a cap was reached (429, retry later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Crowded {
    #[error("the relay has as many subscribers as it takes; retry later")]
    Relay,
    #[error("this token has as many subscribers as it may; close one or retry later")]
    Token,
}

impl Hub {
    /// A hub keeping `ring_capacity` events for resume, with room for
    /// `buffer` undelivered messages per subscriber.
    pub fn new(ring_capacity: usize, buffer: usize, caps: SubscriberCaps) -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            ring_capacity: ring_capacity.max(1),
            buffer: buffer.max(1),
            caps,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the
        // ring and the map are still whole, so carry on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribers(&self) -> usize {
        self.state().subscribers.len()
    }

    /// Appends an event to the ring and offers it to every subscriber whose
    /// scope allows its organisation. Never waits: a subscriber whose buffer
    /// is full is dropped (its connection closed) and returned, for the log.
    pub fn deliver(&self, envelope: &Envelope) -> Vec<u64> {
        let frames = Arc::new(envelope.frames());
        let mut state = self.state();
        if state.ring.len() == self.ring_capacity {
            state.ring.pop_front();
        }
        state.ring.push_back(RingEntry {
            id: envelope.id.clone(),
            org_id: envelope.org_id.clone(),
            frames: frames.clone(),
        });
        let mut dropped = Vec::new();
        state.subscribers.retain(|id, subscriber| {
            if !sees(&subscriber.scope, envelope.org_id.as_deref()) {
                return true;
            }
            offer(*id, subscriber, &frames, &mut dropped)
        });
        dropped
    }

    /// Forgets the ring and tells every subscriber to refetch: events may
    /// have been missed (the Redis subscription was down). Returns the
    /// subscribers dropped because even the reset did not fit.
    pub fn reset(&self) -> Vec<u64> {
        let frames = Arc::new(Frames::reset());
        let mut state = self.state();
        state.ring.clear();
        let mut dropped = Vec::new();
        state
            .subscribers
            .retain(|id, subscriber| offer(*id, subscriber, &frames, &mut dropped));
        dropped
    }

    /// Adds a subscriber. With `last_event_id`, the backlog holds the ring's
    /// events after it that `scope` allows, or one reset when the id is no
    /// longer (or never was) in the ring.
    ///
    /// `holder` names who subscribes (a digest of their token): refused with
    /// [`Crowded`] when the relay, or that holder, has as many subscribers as
    /// the caps allow.
    pub fn subscribe(
        self: &Arc<Self>,
        scope: Scope,
        last_event_id: Option<&str>,
        close: Arc<Notify>,
        holder: &str,
    ) -> Result<Subscription, Crowded> {
        let (sender, receiver) = mpsc::channel(self.buffer);
        let mut state = self.state();
        if state.subscribers.len() >= self.caps.total {
            return Err(Crowded::Relay);
        }
        let held = state
            .subscribers
            .values()
            .filter(|subscriber| subscriber.holder == holder)
            .count();
        if held >= self.caps.per_token {
            return Err(Crowded::Token);
        }
        let backlog = match last_event_id {
            None => Vec::new(),
            Some(last) => match state.ring.iter().rposition(|entry| entry.id == last) {
                Some(at) => state
                    .ring
                    .iter()
                    .skip(at + 1)
                    .filter(|entry| sees(&scope, entry.org_id.as_deref()))
                    .map(|entry| entry.frames.clone())
                    .collect(),
                None => vec![Arc::new(Frames::reset())],
            },
        };
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        state.subscribers.insert(
            id,
            Subscriber {
                scope,
                holder: holder.to_string(),
                sender,
                close,
            },
        );
        Ok(Subscription {
            id,
            backlog,
            receiver,
            hub: self.clone(),
        })
    }
}

/// The `webhook-id`s accepted in the last `ttl`, at most `capacity` of them
/// (the oldest are forgotten first): the replay guard without Redis.
pub struct RecentIds {
    claimed: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
    capacity: usize,
    ttl: Duration,
}

impl RecentIds {
    pub fn new(capacity: usize, ttl: Duration) -> RecentIds {
        RecentIds {
            claimed: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Claims `id` at `now`: false when it was already claimed within the ttl.
    pub fn claim(&mut self, id: &str, now: Instant) -> bool {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.ttl)
        {
            self.forget_oldest();
        }
        if self.claimed.contains_key(id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.forget_oldest();
        }
        self.claimed.insert(id.to_string(), now);
        self.order.push_back((now, id.to_string()));
        true
    }

    fn forget_oldest(&mut self) {
        // Each claimed id has exactly one entry in `order`.
        if let Some((_, old)) = self.order.pop_front() {
            self.claimed.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG_A: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
    const ORG_B: &str = "0b5e3c1d-2a4f-4e6b-8c7d-9e1f2a3b4c5d";
    const CAPS: SubscriberCaps = SubscriberCaps {
        total: 100,
        per_token: 100,
    };

    fn event(id: &str, org: &str) -> Envelope {
        Envelope::from_notification(
            id,
            format!(r#"{{"type":"call.event","org_id":"{org}","n":"{id}"}}"#).as_bytes(),
        )
        .unwrap()
    }

    fn ids(frames: &[Arc<Frames>]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(&f.sse).unwrap();
                text.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("id: ")
                    .to_string()
            })
            .collect()
    }

    fn drain(subscription: &mut Subscription) -> Vec<Arc<Frames>> {
        let mut got = Vec::new();
        while let Ok(frames) = subscription.receiver.try_recv() {
            got.push(frames);
        }
        got
    }

    #[test]
    fn bodies_must_be_objects_with_a_string_org() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"org_id":7}"#,
            br#""org_id""#,
        ] {
            assert_eq!(
                Envelope::from_notification("msg_1", body),
                Err(EnvelopeError::NotAnEvent),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for id in ["", "a\nb", &"x".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(
                Envelope::from_notification(id, br#"{"org_id":"o"}"#),
                Err(EnvelopeError::BadId)
            );
        }
    }

    #[test]
    fn frames_are_one_sse_event_and_the_envelope() {
        let envelope = Envelope::from_notification(
            "msg_1",
            b"{\n  \"org_id\": \"o\",\n  \"note\": \"two\\nlines\"\n}",
        )
        .unwrap();
        let frames = envelope.frames();
        let sse = std::str::from_utf8(&frames.sse).unwrap();
        assert_eq!(
            sse,
            "id: msg_1\nevent: call.event\ndata: {\"note\":\"two\\nlines\",\"org_id\":\"o\"}\n\n"
        );
        assert_eq!(
            Envelope::from_message(frames.ws.as_bytes()).unwrap(),
            envelope
        );
    }

    #[test]
    fn resume_sends_the_missed_events_of_the_scope_or_a_reset() {
        let hub = Arc::new(Hub::new(3, 16, CAPS));
        for (id, org) in [("e1", ORG_A), ("e2", ORG_B), ("e3", ORG_A), ("e4", ORG_A)] {
            hub.deliver(&event(id, org));
        }
        let a = Scope::Orgs(vec![ORG_A.into()]);
        let resumed = hub
            .subscribe(a.clone(), Some("e2"), Arc::default(), "holder")
            .unwrap();
        assert_eq!(ids(&resumed.backlog), ["e3", "e4"]);
        let all = hub
            .subscribe(Scope::All, Some("e2"), Arc::default(), "holder")
            .unwrap();
        assert_eq!(ids(&all.backlog), ["e3", "e4"]);
        let at_end = hub
            .subscribe(a.clone(), Some("e4"), Arc::default(), "holder")
            .unwrap();
        assert!(at_end.backlog.is_empty());
        // e1 fell out of the ring of 3.
        let lost = hub
            .subscribe(a, Some("e1"), Arc::default(), "holder")
            .unwrap();
        assert_eq!(lost.backlog.len(), 1);
        assert_eq!(&lost.backlog[0].sse[..], b"event: reset\ndata: {}\n\n");
        assert_eq!(hub.subscribers(), 4);
        drop((resumed, all, at_end, lost));
        assert_eq!(hub.subscribers(), 0);
    }

    #[test]
    fn live_events_follow_the_scope() {
        let hub = Arc::new(Hub::new(10, 16, CAPS));
        let mut b = hub
            .subscribe(
                Scope::Orgs(vec![ORG_B.into()]),
                None,
                Arc::default(),
                "holder",
            )
            .unwrap();
        let mut all = hub
            .subscribe(Scope::All, None, Arc::default(), "holder")
            .unwrap();
        hub.deliver(&event("e1", ORG_A));
        hub.deliver(&event("e2", ORG_B));
        assert_eq!(ids(&drain(&mut b)), ["e2"]);
        assert_eq!(ids(&drain(&mut all)), ["e1", "e2"]);
    }

    #[test]
    fn an_event_of_no_organisation_reaches_operators_only() {
        let hub = Arc::new(Hub::new(10, 16, CAPS));
        let unassigned =
            Envelope::from_notification("e0", br#"{"type":"call.event","org_id":null,"n":"e0"}"#)
                .unwrap();
        assert_eq!(unassigned.org_id, None);
        let mut a = hub
            .subscribe(
                Scope::Orgs(vec![ORG_A.into()]),
                None,
                Arc::default(),
                "holder",
            )
            .unwrap();
        let mut all = hub
            .subscribe(Scope::All, None, Arc::default(), "holder")
            .unwrap();
        hub.deliver(&unassigned);
        hub.deliver(&event("e1", ORG_A));
        assert_eq!(ids(&drain(&mut a)), ["e1"]);
        assert_eq!(ids(&drain(&mut all)), ["e0", "e1"]);
        // Resuming from the ring keeps the same rule.
        let resumed = hub
            .subscribe(
                Scope::Orgs(vec![ORG_A.into()]),
                Some("e0"),
                Arc::default(),
                "holder",
            )
            .unwrap();
        assert_eq!(ids(&resumed.backlog), ["e1"]);
        let frames = unassigned.frames();
        assert_eq!(
            Envelope::from_message(frames.ws.as_bytes()).unwrap(),
            unassigned
        );
    }

    #[test]
    fn a_full_subscriber_is_dropped_and_closed_without_slowing_the_others() {
        let hub = Arc::new(Hub::new(10, 2, CAPS));
        let close = Arc::new(Notify::new());
        let slow = hub
            .subscribe(Scope::All, None, close.clone(), "holder")
            .unwrap();
        let mut fast = hub
            .subscribe(Scope::All, None, Arc::default(), "holder")
            .unwrap();
        let mut dropped = Vec::new();
        for n in 0..3 {
            dropped.extend(hub.deliver(&event(&format!("e{n}"), ORG_A)));
            assert_eq!(drain(&mut fast).len(), 1);
        }
        assert_eq!(dropped, [slow.id]);
        assert_eq!(hub.subscribers(), 1);
        // The stored permit wakes the connection's next wait at once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), close.notified())
                .await
                .expect("the slow subscriber's connection is told to close");
        });
    }

    #[test]
    fn reset_clears_the_ring_and_tells_everyone() {
        let hub = Arc::new(Hub::new(10, 4, CAPS));
        hub.deliver(&event("e1", ORG_A));
        let mut sub = hub
            .subscribe(
                Scope::Orgs(vec![ORG_B.into()]),
                None,
                Arc::default(),
                "holder",
            )
            .unwrap();
        hub.reset();
        assert_eq!(&drain(&mut sub)[0].sse[..], b"event: reset\ndata: {}\n\n");
        let late = hub
            .subscribe(Scope::All, Some("e1"), Arc::default(), "holder")
            .unwrap();
        assert_eq!(late.backlog.len(), 1, "e1 is gone: reset");
    }

    #[test]
    fn recent_ids_refuse_a_repeat_until_it_expires() {
        let ttl = Duration::from_secs(600);
        let mut recent = RecentIds::new(100, ttl);
        let t0 = Instant::now();
        assert!(recent.claim("a", t0));
        assert!(!recent.claim("a", t0 + Duration::from_secs(599)));
        assert!(recent.claim("a", t0 + ttl));
        assert!(!recent.claim("a", t0 + ttl));
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut recent = RecentIds::new(2, Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(recent.claim("a", t0));
        assert!(recent.claim("b", t0));
        assert!(recent.claim("c", t0));
        assert_eq!(recent.claimed.len(), 2);
        assert!(recent.claim("a", t0), "the oldest was forgotten");
        assert!(!recent.claim("c", t0));
    }

    #[test]
    fn subscribers_are_capped_in_all_and_per_token() {
        let hub = Arc::new(Hub::new(
            10,
            4,
            SubscriberCaps {
                total: 3,
                per_token: 2,
            },
        ));
        let a1 = hub
            .subscribe(Scope::All, None, Arc::default(), "a")
            .unwrap();
        let a2 = hub
            .subscribe(Scope::All, None, Arc::default(), "a")
            .unwrap();
        assert_eq!(
            hub.subscribe(Scope::All, None, Arc::default(), "a").err(),
            Some(Crowded::Token)
        );
        let b1 = hub
            .subscribe(Scope::All, None, Arc::default(), "b")
            .unwrap();
        assert_eq!(
            hub.subscribe(Scope::All, None, Arc::default(), "c").err(),
            Some(Crowded::Relay)
        );
        // A subscriber that leaves makes room again.
        drop(a1);
        let a3 = hub
            .subscribe(Scope::All, None, Arc::default(), "a")
            .unwrap();
        assert_eq!(hub.subscribers(), 3);
        drop((a2, a3, b1));
        assert_eq!(hub.subscribers(), 0);
    }
}
