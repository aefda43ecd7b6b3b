//! Several relay processes behind one address share their events through
//! Redis: each accepted event is PUBLISHed on one channel, and every replica
//! (the publishing one too) subscribes and hands each message to its own hub,
//! so a browser on replica A sees an event POSTed to replica B. The replay
//! guard is shared the same way, as `SET <channel>:seen:<webhook-id> NX EX 600`
//! in the same script as the PUBLISH.
//!
//! Redis' own error text stays in the log; callers get a plain "unavailable".

use super::hub::{Envelope, Hub};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vapi_edge_backends::log;

/// SET NX EX, and PUBLISH only when the key was not there.
const PUBLISH_ONCE: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// How long an accepted `webhook-id` is remembered.
pub const SEEN_TTL_S: u64 = 600;
/// Longest a command (the publish script, PING) may take before Redis counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the subscription checks that Redis still answers: a connection
/// can die without a reset (a host gone, a network partition).
const SUBSCRIPTION_PING: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("Redis is unavailable")]
pub struct Unavailable;

/// The link to the other replicas.
pub struct Replicas {
    commands: ConnectionManager,
    publish_once: redis::Script,
    channel: String,
    subscribed: Arc<AtomicBool>,
}

impl Replicas {
    /// Connects, subscribes to `channel` and starts handing its messages to
    /// `hub`. Fails (the relay does not start) when Redis cannot be reached
    /// now; later losses are retried with backoff.
    pub async fn connect(url: &str, channel: &str, hub: Arc<Hub>) -> anyhow::Result<Replicas> {
        // The URL may hold a password: never in an error or a log line.
        let client = redis::Client::open(url)
            .map_err(|_| anyhow::anyhow!("--redis-url is not a valid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_number_of_retries(2);
        let commands = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis (--redis-url): {e}"))?;
        let (sink, stream) = subscribe(&client, channel)
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to the Redis channel: {e}"))?;
        let subscribed = Arc::new(AtomicBool::new(true));
        tokio::spawn(follow(
            client,
            channel.to_string(),
            hub,
            subscribed.clone(),
            sink,
            stream,
        ));
        Ok(Replicas {
            commands,
            publish_once: redis::Script::new(PUBLISH_ONCE),
            channel: channel.to_string(),
            subscribed,
        })
    }

    /// Whether this replica currently receives the channel.
    pub fn is_up(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Publishes `envelope` to every replica unless its id was accepted
    /// within [`SEEN_TTL_S`] (false then). One script, so the claim and the
    /// publication happen together or not at all: a claim without its event
    /// would refuse the sender's retry of an event nobody received.
    pub async fn publish_once(&self, envelope: &Envelope) -> Result<bool, Unavailable> {
        let payload = serde_json::to_vec(envelope).map_err(|_| Unavailable)?;
        let mut commands = self.commands.clone();
        let published: i64 = self
            .publish_once
            .key(format!("{}:seen:{}", self.channel, envelope.id))
            .arg(SEEN_TTL_S)
            .arg(&self.channel)
            .arg(payload)
            .invoke_async(&mut commands)
            .await
            .map_err(|e| unavailable("EVALSHA", e))?;
        Ok(published == 1)
    }
}

fn unavailable(command: &str, error: redis::RedisError) -> Unavailable {
    log::write(
        log::error("Relay Redis command failed")
            .field("command", command)
            .field("error", error.to_string()),
    );
    Unavailable
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub.split())
    };
    tokio::time::timeout(COMMAND_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "timed out",
            )))
        })
}

/// Hands the channel's messages to the hub for as long as the process runs,
/// subscribing again with backoff whenever the subscription is lost.
async fn follow(
    client: redis::Client,
    channel: String,
    hub: Arc<Hub>,
    subscribed: Arc<AtomicBool>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) {
    loop {
        let reason = receive(&hub, &mut sink, &mut stream).await;
        subscribed.store(false, Ordering::Relaxed);
        log::write(
            log::warn("Relay Redis subscription lost")
                .field("channel", channel.as_str())
                .field("reason", reason),
        );
        let mut delay = BACKOFF_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            match subscribe(&client, &channel).await {
                Ok((new_sink, new_stream)) => {
                    (sink, stream) = (new_sink, new_stream);
                    break;
                }
                Err(error) => {
                    delay = (delay * 2).min(BACKOFF_MAX);
                    log::write(
                        log::warn("Relay Redis subscription retry failed")
                            .field("error", error.to_string())
                            .field("retry_in_ms", delay.as_millis() as u64),
                    );
                }
            }
        }
        subscribed.store(true, Ordering::Relaxed);
        // Whatever was published meanwhile never reached this replica: its
        // subscribers must refetch, and resuming from the ring would skip it.
        let dropped = hub.reset();
        super::log_slow_drops(&dropped);
        log::write(
            log::info("Relay Redis subscription restored").field("channel", channel.as_str()),
        );
    }
}

/// Delivers messages until the subscription ends; says why it ended.
async fn receive(hub: &Hub, sink: &mut PubSubSink, stream: &mut PubSubStream) -> &'static str {
    let mut ping = tokio::time::interval(SUBSCRIPTION_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "connection closed";
                };
                match Envelope::from_message(message.get_payload_bytes()) {
                    Ok(envelope) => super::log_slow_drops(&hub.deliver(&envelope)),
                    Err(error) => log::write(log::warn("Relay message ignored").field("reason", error.to_string())),
                }
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return "no answer to PING";
                }
            }
        }
    }
}
