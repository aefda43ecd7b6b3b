//! The two ways a dashboard follows events: Server-Sent Events (what a page's
//! `EventSource` speaks) and WebSocket. Both send the subscription's backlog
//! first, then live events, with a heartbeat in between so proxies keep the
//! connection and the client notices a dead one.

use super::hub::{Frames, Subscription};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a client has to reconnect after a lost connection (SSE `retry:`).
const SSE_RETRY: &[u8] = b"retry: 2000\n\n";
const SSE_PING: &[u8] = b": ping\n\n";

fn heartbeat(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// An SSE response body: `retry:`, the backlog, then live events and `: ping`
/// comments. It ends when the hub drops the subscriber; the subscriber is
/// removed when the body is dropped (the client went away).
pub struct SseBody {
    first: VecDeque<Bytes>,
    subscription: Subscription,
    heartbeat: Interval,
}

impl SseBody {
    pub fn new(mut subscription: Subscription, heartbeat_every: Duration) -> SseBody {
        let mut first = VecDeque::with_capacity(1 + subscription.backlog.len());
        first.push_back(Bytes::from_static(SSE_RETRY));
        first.extend(subscription.backlog.drain(..).map(|f| f.sse.clone()));
        SseBody {
            first,
            subscription,
            heartbeat: heartbeat(heartbeat_every),
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(bytes) = this.first.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match this.subscription.receiver.poll_recv(cx) {
            Poll::Ready(Some(frames)) => {
                return Poll::Ready(Some(Ok(Frame::data(frames.sse.clone()))))
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match this.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(SSE_PING))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Serves one WebSocket subscriber on an upgraded connection until the client
/// leaves, the connection fails, or the hub drops it (`close` is notified).
pub async fn serve_websocket(
    request: hyper::Request<hyper::body::Incoming>,
    mut subscription: Subscription,
    close: Arc<Notify>,
    heartbeat_every: Duration,
) -> &'static str {
    let upgraded = match hyper::upgrade::on(request).await {
        Ok(upgraded) => upgraded,
        Err(_) => return "upgrade failed",
    };
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let mut heartbeat = heartbeat(heartbeat_every);
    let backlog: Vec<Arc<Frames>> = subscription.backlog.drain(..).collect();
    for frames in backlog {
        if let Err(reason) = send(&mut socket, Message::Text(frames.ws.clone()), &close).await {
            return reason;
        }
    }
    loop {
        let outgoing = tokio::select! {
            _ = close.notified() => return "slow",
            frames = subscription.receiver.recv() => match frames {
                Some(frames) => Message::Text(frames.ws.clone()),
                None => return "slow",
            },
            _ = heartbeat.tick() => Message::Ping(Bytes::new()),
            // Reading also answers the client's pings and sees its close.
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Close(_))) | None => return "client closed",
                Some(Err(_)) => return "connection failed",
                Some(Ok(_)) => continue,
            },
        };
        if let Err(reason) = send(&mut socket, outgoing, &close).await {
            return reason;
        }
    }
}

/// One message, unless the hub drops the subscriber while the client is not reading.
async fn send(
    socket: &mut WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    message: Message,
    close: &Notify,
) -> Result<(), &'static str> {
    tokio::select! {
        sent = socket.send(message) => sent.map_err(|_| "connection failed"),
        _ = close.notified() => Err("slow"),
    }
}
