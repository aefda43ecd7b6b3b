//! Several replicas: three `vapi-edge-host up` processes running the
//! real `.wasm` on one PostgreSQL database and one Redis key-value store, as
//! SpinKube runs the app with `replicas: 3`. Concurrent duplicates spread over
//! the replicas make one effect, a thousand distinct events are each recorded
//! once, `/metrics` reads the same on every replica, and a replica killed with
//! SIGKILL in the middle of a stream loses no event and records none twice.
//!
//! Figures are printed with the prefix `[replicas]`:
//! `cargo test --release -p vapi-edge-host --test it replicas:: -- --nocapture | grep '\[replicas\]'`

use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;
const CALLER: &str = "+12125550187";
/// The `unique_id` tag of every call these tests make: the Redis keys they
/// leave are found by it and deleted after each test.
const CALL_TAG: &str = "replicas";
/// A Redis database of this suite's own, so that its thousands of claims and
/// done-marks never sit among other tests' keys.
const REDIS_DB: u8 = 12;

fn figure(text: &str) {
    println!("[replicas] {text}");
}

/// Three replicas of the app on one database and one Redis, notifying one
/// relay, with one agent to answer the calls.
struct Deployment {
    replicas: WebhookReplicas,
    relay: Relay,
    agent: Agent,
    _keys: MatchingKeysCleanup,
}

impl Deployment {
    async fn start(extra: Vec<(&str, &str)>) -> Deployment {
        let relay = Relay::start(RelayMode::Ok).await;
        let db = TestDb::migrated().await;
        let agent = db.seed_agent(ORG_ID, "receptionist", "Ava").await;
        let redis_url = format!("{REDIS_URL}/{REDIS_DB}");
        let keys = MatchingKeysCleanup {
            redis_url: redis_url.clone(),
            pattern: format!("*|{CALL_TAG}-{}-*", std::process::id()),
        };
        let options = AppOptions {
            relay_url: Some(relay.url()),
            extra: extra
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..Default::default()
        };
        let replicas = WebhookReplicas::start_with_db_and(REPLICAS, db, options, |host| {
            let dir = host.manifest.parent().unwrap().to_path_buf();
            host.redis_kv_at(&dir, &redis_url)
        });
        Deployment {
            replicas,
            relay,
            agent,
            _keys: keys,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.hosts.iter().map(|host| host.addr).collect()
    }

    /// An inbound call start for a new call: its id and its bytes.
    fn new_call(&self) -> (String, Vec<u8>) {
        let call_id = unique_id(CALL_TAG);
        let body = bytes_of(&inbound_start(&call_id, &self.agent.assistant_id, CALLER));
        (call_id, body)
    }

    /// The call ids of every notification the relay has received, in order.
    fn notified_call_ids(&self) -> Vec<String> {
        self.relay
            .hits()
            .iter()
            .map(|hit| {
                let event: Value = serde_json::from_slice(&hit.body).expect("the relay got JSON");
                event["vapi_call_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// Waits until the relay has `n` notifications or none arrives for a
    /// while, then a little longer so that an extra one would show up too.
    async fn settled_notifications(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        let mut quiet_since = Instant::now();
        while seen < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now_seen = self.relay.hits().len();
            if now_seen != seen {
                (seen, quiet_since) = (now_seen, Instant::now());
            } else if quiet_since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.notified_call_ids()
    }
}

/// A webhook POST as Vapi sends it: the bytes, signed now.
async fn deliver(addr: SocketAddr, body: &[u8]) -> Result<TestResponse, SendError> {
    let headers = vapi_headers(body);
    try_send(
        addr,
        "POST",
        "/webhooks/vapi",
        &header_refs(&headers),
        body.to_vec(),
    )
    .await
}

/// An answer in a histogram: the status and, for a 200, the outcome.
fn answer_label(response: &TestResponse) -> String {
    match response.status {
        200 => format!(
            "200 {}",
            response.json()["outcome"].as_str().unwrap_or("(none)")
        ),
        503 if response.headers.contains_key("retry-after") => "503 retry-after".to_string(),
        status => status.to_string(),
    }
}

/// 50 concurrent deliveries of one event, round-robin over three replicas:
/// one set of rows, one notification; every other answer is a duplicate or a
/// 503 with `retry-after` (another attempt holds the claim).
#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_deliveries_over_three_replicas_make_one_effect() {
    let _serial = SERIAL.lock().await;
    const DELIVERIES: usize = 50;
    let deployment = Deployment::start(Vec::new()).await;
    let addrs = deployment.addrs();
    let (call_id, body) = deployment.new_call();
    let headers = vapi_headers(&body);
    let gate = Arc::new(tokio::sync::Barrier::new(DELIVERIES));
    let deliveries: Vec<_> = (0..DELIVERIES)
        .map(|i| {
            let (addr, body, headers, gate) = (
                addrs[i % REPLICAS],
                body.clone(),
                headers.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                gate.wait().await;
                send(addr, "POST", "/webhooks/vapi", &header_refs(&headers), body).await
            })
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut recorded_by = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let response = delivery.await.unwrap();
        let label = answer_label(&response);
        assert!(
            ["200 recorded", "200 duplicate", "503 retry-after"].contains(&label.as_str()),
            "unexpected answer {label}: {}",
            response.text()
        );
        if label == "200 recorded" {
            recorded_by.push(i % REPLICAS);
        }
        *answers.entry(label).or_default() += 1;
    }
    let rows = call_rows(&deployment.replicas.db, &call_id).await;
    let notified = deployment.settled_notifications(1).await;
    figure(&format!(
        "{DELIVERIES} concurrent deliveries of one event over {REPLICAS} replicas → rows \
         (tracking, logs, events) = {rows:?}, {} notification(s); answers {answers:?}; \
         recorded by replica {recorded_by:?}",
        notified.len()
    ));
    assert_eq!(recorded_by.len(), 1, "one attempt records: {answers:?}");
    assert_eq!(answers.values().sum::<usize>(), DELIVERIES);
    assert_eq!(rows, (1, 1, 1));
    assert_eq!(notified, vec![call_id.clone()], "one notification");
    // Vapi retries the 503s, on any replica: each is now a duplicate.
    for addr in &addrs {
        let retry = deliver(*addr, &body).await.unwrap();
        assert_eq!(answer_label(&retry), "200 duplicate", "{}", retry.text());
    }
    assert_eq!(
        call_rows(&deployment.replicas.db, &call_id).await,
        (1, 1, 1)
    );
}

/// 1,000 distinct inbound call starts, round-robin over three replicas, 16 in
/// flight: each answered `recorded`, each with one set of rows and one
/// notification; then `/metrics` reads the same on all three replicas.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_distinct_events_over_three_replicas_are_each_recorded_once() {
    let _serial = SERIAL.lock().await;
    const EVENTS: usize = 1_000;
    const IN_FLIGHT: usize = 16;
    let deployment = Deployment::start(vec![("metrics_token", METRICS_TOKEN)]).await;
    let addrs = deployment.addrs();
    let calls: Arc<Vec<(String, Vec<u8>)>> =
        Arc::new((0..EVENTS).map(|_| deployment.new_call()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (calls, next, addrs) = (calls.clone(), next.clone(), addrs.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((_, body)) = calls.get(i) else {
                        return answers;
                    };
                    let replica = i % REPLICAS;
                    let response = deliver(addrs[replica], body).await.unwrap();
                    answers.push((replica, answer_label(&response)));
                }
            })
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut recorded_by_replica = [0usize; REPLICAS];
    for worker in workers {
        for (replica, label) in worker.await.unwrap() {
            if label == "200 recorded" {
                recorded_by_replica[replica] += 1;
            }
            *answers.entry(label).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let db = &deployment.replicas.db;
    let rows = all_call_rows(db).await;
    let tracked_calls = db
        .count("SELECT count(DISTINCT vapi_call_id) FROM call_tracking")
        .await;
    let notified = deployment.settled_notifications(EVENTS).await;
    let distinct: BTreeSet<&String> = notified.iter().collect();
    let missing = calls
        .iter()
        .filter(|(call_id, _)| !distinct.contains(call_id))
        .count();
    figure(&format!(
        "{EVENTS} distinct events over {REPLICAS} replicas, {IN_FLIGHT} in flight → answered in \
         {:.2} s ({:.0} events/s); recorded per replica {recorded_by_replica:?}; answers \
         {answers:?}; rows (tracking, logs, events) = {rows:?}, {tracked_calls} distinct calls; \
         {} notifications ({} distinct, {missing} missing)",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        notified.len(),
        distinct.len(),
    ));
    assert_eq!(answers.get("200 recorded"), Some(&EVENTS), "{answers:?}");
    let expected = EVENTS as i64;
    assert_eq!(rows, (expected, expected, expected));
    assert_eq!(tracked_calls, expected);
    assert_eq!(missing, 0);
    assert_eq!(notified.len(), EVENTS, "one notification each");

    // Each replica renders `/metrics` from the shared event record, which is
    // written just after each answer: once it holds every request, the three
    // expositions must be the same text.
    let deadline = Instant::now() + Duration::from_secs(20);
    while webhook_requests_total(&metrics(addrs[0]).await) < EVENTS as u64 {
        assert!(
            Instant::now() < deadline,
            "the event record never held {EVENTS} requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut expositions = Vec::new();
    for addr in &addrs {
        expositions.push(metrics(*addr).await);
    }
    figure(&format!(
        "/metrics after {EVENTS} events: {} requests counted, {} lines, identical on {} of \
         {REPLICAS} replicas",
        webhook_requests_total(&expositions[0]),
        expositions[0].lines().count(),
        expositions.iter().filter(|e| **e == expositions[0]).count()
    ));
    for (replica, exposition) in expositions.iter().enumerate().skip(1) {
        assert_eq!(
            exposition, &expositions[0],
            "replica {replica}'s /metrics differs from replica 0's"
        );
    }
}

/// What a Vapi-like client saw for one event: every attempt (which replica,
/// what answer) and whether one finally succeeded.
struct EventHistory {
    call_index: usize,
    attempts: Vec<(usize, String)>,
    succeeded: bool,
}

/// The replica an attempt goes to: round-robin from the event's own, skipping
/// replicas the load balancer knows are down.
fn live_replica(down: &[AtomicBool], start: usize) -> usize {
    (start..start + REPLICAS)
        .map(|r| r % REPLICAS)
        .find(|r| !down[*r].load(Ordering::SeqCst))
        .expect("a live replica")
}

/// A replica dies (SIGKILL) in the middle of 300 distinct events while a
/// Vapi-like client retries every failure (connection error, 5xx) on another
/// live replica: every event is recorded once, none twice, and each is
/// notified at most once. A notification can be lost by design: it is sent
/// after the answer, by the attempt that recorded, so a process that dies
/// after committing and before notifying never sends it (and the retry finds
/// a duplicate, which does not notify); the test counts those.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_stream_loses_no_event_and_records_none_twice() {
    let _serial = SERIAL.lock().await;
    const EVENTS: usize = 300;
    const IN_FLIGHT: usize = 12;
    const KILL_AFTER: usize = 100;
    const VICTIM: usize = 1;
    const MAX_ATTEMPTS: usize = 12;
    // An attempt killed after its claim blocks its event until the lease
    // window ends: short here, and the client retries for longer than that.
    const LEASE_MS: &str = "2000";
    let mut deployment = Deployment::start(vec![("claim_lease_ms", LEASE_MS)]).await;
    let addrs = deployment.addrs();
    let calls: Arc<Vec<(String, Vec<u8>)>> =
        Arc::new((0..EVENTS).map(|_| deployment.new_call()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let down: Arc<[AtomicBool; REPLICAS]> = Arc::new(Default::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (calls, next, finished, down, addrs) = (
                calls.clone(),
                next.clone(),
                finished.clone(),
                down.clone(),
                addrs.clone(),
            );
            tokio::spawn(async move {
                let mut histories = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((_, body)) = calls.get(i) else {
                        return histories;
                    };
                    let mut history = EventHistory {
                        call_index: i,
                        attempts: Vec::new(),
                        succeeded: false,
                    };
                    for attempt in 0..MAX_ATTEMPTS {
                        let replica = live_replica(&*down, i + attempt);
                        let answer = tokio::time::timeout(
                            Duration::from_secs(10),
                            deliver(addrs[replica], body),
                        )
                        .await;
                        let label = match answer {
                            Ok(Ok(response)) => answer_label(&response),
                            // Nothing listens: the load balancer drops the replica.
                            Ok(Err(SendError::Connect(_))) => {
                                down[replica].store(true, Ordering::SeqCst);
                                "connection refused".to_string()
                            }
                            Ok(Err(_)) => "connection lost".to_string(),
                            Err(_) => "timed out".to_string(),
                        };
                        let done = label.starts_with("200 ");
                        let refused = label.starts_with('4');
                        history.attempts.push((replica, label));
                        if done || refused {
                            history.succeeded = done;
                            break;
                        }
                        let backoff = (100u64 << attempt.min(4)).min(1_000);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                    }
                    histories.push(history);
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    while finished.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    deployment.replicas.hosts[VICTIM].kill_hard();
    let killed_at = started.elapsed();
    let finished_at_kill = finished.load(Ordering::SeqCst);
    // Kubernetes takes the pod's endpoint out of the Service; until then the
    // client learns it from refused connections.
    down[VICTIM].store(true, Ordering::SeqCst);

    let mut histories = Vec::new();
    for worker in workers {
        histories.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    histories.sort_by_key(|h| h.call_index);

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempts_per_replica = [0usize; REPLICAS];
    for history in &histories {
        for (replica, label) in &history.attempts {
            attempts_per_replica[*replica] += 1;
            *answers.entry(label.clone()).or_default() += 1;
        }
    }
    let attempts: usize = answers.values().sum();
    let failed: Vec<&EventHistory> = histories.iter().filter(|h| !h.succeeded).collect();
    let final_answer = |h: &EventHistory| h.attempts.last().map(|(_, l)| l.clone());
    let answered_recorded: BTreeSet<usize> = histories
        .iter()
        .filter(|h| h.attempts.iter().any(|(_, label)| label == "200 recorded"))
        .map(|h| h.call_index)
        .collect();
    let retried = histories.iter().filter(|h| h.attempts.len() > 1).count();

    let db = &deployment.replicas.db;
    let rows = all_call_rows(db).await;
    let tracked_calls = db
        .count("SELECT count(DISTINCT vapi_call_id) FROM call_tracking")
        .await;
    let notified = deployment.settled_notifications(EVENTS).await;
    let distinct: BTreeSet<&String> = notified.iter().collect();
    let index_of: BTreeMap<&String, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, (call_id, _))| (call_id, i))
        .collect();
    let lost: Vec<usize> = (0..EVENTS)
        .filter(|i| !distinct.contains(&calls[*i].0))
        .collect();
    // A lost notification whose event the client never saw answered
    // `recorded`: the replica died after its commit, before its answer.
    let lost_unanswered = lost
        .iter()
        .filter(|i| !answered_recorded.contains(i))
        .count();
    figure(&format!(
        "{EVENTS} events over {REPLICAS} replicas, {IN_FLIGHT} in flight, claim lease \
         {LEASE_MS} ms; replica {VICTIM} killed (SIGKILL) at {:.2} s after {finished_at_kill} \
         events finished → all finished in {:.2} s; {attempts} attempts ({} retries, {retried} \
         events retried, {} given up); attempts per replica {attempts_per_replica:?}; answers \
         {answers:?}",
        killed_at.as_secs_f64(),
        elapsed.as_secs_f64(),
        attempts - EVENTS,
        failed.len(),
    ));
    figure(&format!(
        "after the kill: rows (tracking, logs, events) = {rows:?}, {tracked_calls} distinct \
         calls; {} events answered `recorded`, {} only `duplicate`; notifications {} sent \
         ({} distinct, {} not in this stream), {} lost ({lost_unanswered} of them for events \
         whose recording attempt died before answering)",
        answered_recorded.len(),
        EVENTS - answered_recorded.len(),
        notified.len(),
        distinct.len(),
        notified
            .iter()
            .filter(|id| !index_of.contains_key(id))
            .count(),
        lost.len(),
    ));
    assert!(
        failed.is_empty(),
        "events the client gave up on: {:?}",
        failed
            .iter()
            .map(|h| (h.call_index, final_answer(h)))
            .collect::<Vec<_>>()
    );
    let expected = EVENTS as i64;
    assert_eq!(rows, (expected, expected, expected), "each event once");
    assert_eq!(tracked_calls, expected);
    assert_eq!(
        notified.len(),
        distinct.len(),
        "at most one notification each"
    );
    assert!(
        notified.iter().all(|id| index_of.contains_key(id)),
        "notifications only for this stream's events"
    );
    // A notification is lost only by design: its event was recorded by an
    // attempt on the killed replica, which died before notifying. So each
    // lost one had an attempt there, and no more were lost than were in
    // flight at the kill.
    let tried_on_victim = |i: &usize| {
        histories
            .iter()
            .find(|h| h.call_index == *i)
            .is_some_and(|h| h.attempts.iter().any(|(replica, _)| *replica == VICTIM))
    };
    let unexplained: Vec<&usize> = lost.iter().filter(|i| !tried_on_victim(i)).collect();
    assert!(
        unexplained.is_empty(),
        "notifications lost for events never sent to the killed replica: {unexplained:?}"
    );
    assert!(
        lost.len() <= IN_FLIGHT,
        "{} notifications lost, more than the {IN_FLIGHT} attempts in flight at the kill",
        lost.len()
    );
}
