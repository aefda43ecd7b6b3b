//! What an operator's platform does to `vapi-edge-host up`: SIGTERM (Kubernetes,
//! systemd, Docker) while webhooks are in flight, and clients that send a whole
//! oversized body before reading the answer.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CALLER: &str = "+12125550187";

/// SIGTERM with 50 webhooks held mid-request (their recording statement waits
/// on a table lock): the host stops accepting, every held webhook is answered
/// `recorded` once the lock goes, each one's relay notification (after the
/// response, to a relay that takes 300 ms) is sent, and the host exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_webhooks_and_their_notifications_then_exits_0() {
    let relay = Relay::start(RelayMode::Slow(Duration::from_millis(300))).await;
    let mut app = WebhookApp::start(AppOptions {
        relay_url: Some(relay.url()),
        ..Default::default()
    })
    .await;
    let agent = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let locker = app.db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE processed_webhook_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let addr = app.host.addr;
    let deliveries: Vec<_> = (0..50)
        .map(|_| {
            let body = serde_json::to_vec(&inbound_start(
                &unique_id("call"),
                &agent.assistant_id,
                CALLER,
            ))
            .unwrap();
            tokio::spawn(async move {
                let headers = vapi_headers(&body);
                send(addr, "POST", "/webhooks/vapi", &header_refs(&headers), body).await
            })
        })
        .collect();
    // Every delivery is inside the host: waiting on the lock or for a
    // connection of the pool.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let signalled = Instant::now();
    app.host.signal("TERM");
    let stopping = app
        .host
        .wait_for_log(Duration::from_secs(5), |l| l["msg"] == "Shutting down")
        .await;
    assert_eq!(stopping["signal"], "SIGTERM");
    // The claim below is about a shutdown with every delivery inside the
    // host: `in_flight` counts each one twice, its connection and its
    // guest's task (which outlives the response).
    assert_eq!(stopping["in_flight"], 2 * 50, "{stopping}");
    // No new connection is taken once it is shutting down.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.batch_execute("COMMIT").await.unwrap();

    let mut recorded = 0;
    for delivery in deliveries {
        // `send` panics on a reset or a closed connection.
        let response = delivery
            .await
            .expect("the client saw its answer, not a reset");
        assert_eq!(response.status, 200, "{}", response.text());
        if response.json()["outcome"] == "recorded" {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 50);
    let status = app
        .host
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the host exits within its grace period");
    let exited_ms = signalled.elapsed().as_millis();
    assert!(status.success(), "exit status {status:?}");
    let notifications = relay.hits().len();
    assert_eq!(notifications, 50, "one notification per recorded event");
    assert_eq!(all_call_rows(&app.db).await, (50, 50, 50));
    println!(
        "[shutdown] SIGTERM with 50 webhooks in flight (in_flight at the signal: {}): \
         50 answered 200 recorded, {notifications} notifications sent, exit 0 {exited_ms} ms \
         after the signal (lock held 300 ms of it; relay 300 ms per notification)",
        stopping["in_flight"]
    );
}

/// A client that sends a whole 64 MiB body without `Expect: 100-continue`
/// before reading still gets the 413: the host drains what it sends (a
/// lingering close) instead of resetting the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_sent_whole_before_reading_gets_its_413() {
    let app = WebhookApp::start(AppOptions {
        store: StoreKind::Sqlite,
        ..Default::default()
    })
    .await;
    const SIZE: usize = 64 << 20;
    let mut stream = tokio::net::TcpStream::connect(app.host.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/vapi HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {SIZE}\r\n\r\n",
        app.host.addr
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1 << 20];
    for sent in 0..SIZE / chunk.len() {
        if let Err(error) = stream.write_all(&chunk).await {
            panic!("writing the body failed after {sent} MiB: {error}");
        }
    }
    let written = started.elapsed();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    println!(
        "[shutdown] 64 MiB POST without Expect, body sent whole before reading: all sent in {} ms, \
         then read the 413 ({} ms in all)",
        written.as_millis(),
        started.elapsed().as_millis()
    );
}
