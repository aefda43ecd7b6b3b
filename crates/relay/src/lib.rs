//! `vapi-edge-host relay`: the dashboard relay. The component POSTs each newly
//! recorded call event here (signed per Standard Webhooks with `relay_secret`);
//! the relay pushes it to the dashboards watching, each seeing only the
//! organisations its `dashboard_token` opens (`vapi_edge_core::access`). It is
//! native, not a component, because it holds connections open for as long as
//! a page is open, which a request-scoped component cannot.
//!
//! Wire format:
//! - `POST /events`: the signed notification (at most 1 MiB). 202 `{"ok":true}`
//!   once accepted; 401 unsigned, badly signed, or timestamp outside ±300 s;
//!   409 a `webhook-id` accepted in the last 10 minutes; 400 not a JSON object
//!   whose `org_id` is a string, or `null` (a call no organisation owns, shown
//!   only to tokens that open every organisation); 413 too large; 503 Redis unavailable. Errors are
//!   `{"error":"..."}`. The POST never waits for subscribers.
//! - `GET /events/stream` (SSE) and `GET /ws` (WebSocket), with
//!   `Authorization: Bearer <token>` or `?token=<token>`: 401 without a valid
//!   token, 403 when `dashboard_token` is not set. SSE sends `retry: 2000`,
//!   then per event `id: <webhook-id>`, `event: call.event`, `data: <body>`,
//!   and `: ping` every heartbeat; WebSocket sends per event a text frame
//!   `{"id":..,"org_id":..,"event":<body>}`, and Ping frames. `Last-Event-ID`
//!   (or `?last_event_id=`) resumes after that event from the ring of recent
//!   events; when it is no longer there the client gets one reset (SSE
//!   `event: reset` / `data: {}`, WebSocket `{"type":"reset"}`) and should
//!   refetch. A subscriber whose buffer fills is dropped, its connection closed.
//! - `GET /healthz`: `{"status":"ok","subscribers":N,"redis":"up"|"down"|"off"}`.
//!
//! With `--redis-url`, replicas share events and the replay guard through
//! Redis (`replicas`); without it, one process keeps both in memory (`hub`).

mod hub;
mod replicas;
mod stream;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hub::{Envelope, EnvelopeError, Hub, RecentIds};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use replicas::Replicas;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use vapi_edge_backends::listener::{self, Listener};
use vapi_edge_backends::log;
use vapi_edge_core::access::{Scope, Tokens};
use vapi_edge_core::headers::Headers;
use vapi_edge_core::standard_webhooks::{self, SigningKey, WebhookError};

/// Largest notification accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How much of a too-large body is read and discarded before answering 413.
const DRAIN_BYTES: usize = 4 << 20;
/// Longest a POST's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an accepted `webhook-id` is refused again.
const REPLAY_WINDOW: Duration = Duration::from_secs(replicas::SEEN_TTL_S);
/// How many accepted ids one process remembers without Redis.
const RECENT_IDS: usize = 100_000;
/// The kernel's send buffer per connection. Without a bound, autotuning lets
/// a subscriber that stopped reading absorb megabytes (3 MB measured on
/// loopback) before its `--subscriber-buffer` even starts to fill, for every
/// such subscriber; 64 KiB still carries far more than a dashboard needs.
const SEND_BUFFER_BYTES: usize = 64 << 10;
/// The log line of a subscriber dropped for not keeping up.
pub const SUBSCRIBER_DROPPED: &str = "Relay subscriber dropped";

type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// The command line of `vapi-edge-host relay`.
#[derive(clap::Args)]
pub struct RelayArgs {
    /// Where to serve (port 0: any free port, named in the `Relay serving` line).
    #[arg(long, default_value = "127.0.0.1:3001")]
    listen: SocketAddr,
    /// The Standard Webhooks secret the component signs with (else
    /// SPIN_VARIABLE_RELAY_SECRET).
    #[arg(long)]
    relay_secret: Option<String>,
    /// Who may subscribe, as the component reads it (else
    /// SPIN_VARIABLE_DASHBOARD_TOKEN); without one, subscribing answers 403.
    #[arg(long)]
    dashboard_token: Option<String>,
    /// Share events and the replay guard with other replicas (else
    /// SPIN_VARIABLE_RELAY_REDIS_URL).
    #[arg(long)]
    redis_url: Option<String>,
    /// The Redis channel the replicas share (also the prefix of the replay guard's keys).
    #[arg(long, default_value = "vapi-edge:relay:events")]
    redis_channel: String,
    /// Events kept for clients resuming with Last-Event-ID.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    ring: u64,
    /// Undelivered events a subscriber may fall behind before it is dropped.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    subscriber_buffer: u64,
    /// How often an idle subscriber gets an SSE `: ping` or a WebSocket Ping.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// Connections open at once (subscribers, POSTs, idle keep-alives); more
    /// wait in the listen backlog. Lowered to the open-file limit less 64.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Subscribers (SSE and WebSocket) at once, all tokens together (429 past it).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    max_subscribers: u64,
    /// Subscribers at once for one token (429 past it): one organisation's
    /// dashboards, or a leaked token, cannot take the others' room.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    max_subscribers_per_token: u64,
    /// Web pages that may subscribe (their `Origin`, e.g.
    /// https://edge.example.com, where the dashboard is served); repeat, or
    /// comma-separate (else SPIN_VARIABLE_RELAY_ALLOWED_ORIGINS). A browser's
    /// request from another origin gets 403; clients that send no Origin
    /// (not a browser) are not affected. Unset: any origin (with a warning).
    #[arg(long, value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Longest wait for a request's head, and for the next request on an idle
    /// keep-alive connection.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
}

impl std::fmt::Debug for RelayArgs {
    /// Secrets and the Redis URL (which may hold a password) are redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |set: bool| if set { "[REDACTED]" } else { "None" };
        f.debug_struct("RelayArgs")
            .field("listen", &self.listen)
            .field("relay_secret", &redacted(self.relay_secret.is_some()))
            .field("dashboard_token", &redacted(self.dashboard_token.is_some()))
            .field("redis_url", &redacted(self.redis_url.is_some()))
            .field("redis_channel", &self.redis_channel)
            .field("ring", &self.ring)
            .field("subscriber_buffer", &self.subscriber_buffer)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("max_connections", &self.max_connections)
            .field("max_subscribers", &self.max_subscribers)
            .field("max_subscribers_per_token", &self.max_subscribers_per_token)
            .field("allowed_origin", &self.allowed_origin)
            .field("header_timeout_ms", &self.header_timeout_ms)
            .finish()
    }
}

/// Where accepted ids are remembered and events fanned out.
enum Fanout {
    Local(Mutex<RecentIds>),
    Redis(Replicas),
}

struct Relay {
    key: SigningKey,
    tokens: Option<Tokens>,
    hub: Arc<Hub>,
    fanout: Fanout,
    heartbeat: Duration,
    /// Web origins that may subscribe (lowercase, no trailing `/`); empty: any.
    allowed_origins: Vec<String>,
}

/// Why a notification was not accepted; each maps to one status.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body could not be read in time")]
    Unreadable,
    #[error(transparent)]
    Signature(#[from] WebhookError),
    #[error(transparent)]
    Body(#[from] EnvelopeError),
    #[error("this webhook-id was already accepted")]
    Replayed,
    #[error(transparent)]
    Unavailable(#[from] replicas::Unavailable),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable | Refusal::Body(_) => StatusCode::BAD_REQUEST,
            Refusal::Signature(_) => StatusCode::UNAUTHORIZED,
            Refusal::Replayed => StatusCode::CONFLICT,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a subscriber was turned away.
#[derive(Debug, thiserror::Error)]
enum Denied {
    #[error("dashboard_token is not set on the relay")]
    NoTokens,
    #[error("missing or invalid token")]
    BadToken,
    #[error("this web page's origin may not subscribe here")]
    Origin,
    #[error(transparent)]
    Crowded(#[from] hub::Crowded),
}

impl Denied {
    fn status(&self) -> StatusCode {
        match self {
            Denied::NoTokens | Denied::Origin => StatusCode::FORBIDDEN,
            Denied::BadToken => StatusCode::UNAUTHORIZED,
            Denied::Crowded(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn response(&self) -> Response<ResponseBody> {
        let mut response = error(self.status(), &self.to_string());
        if matches!(self, Denied::Crowded(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A setting from its flag, else its environment variable; empty is unset.
fn setting(flag: Option<String>, variable: &str) -> Option<String> {
    flag.or_else(|| std::env::var(variable).ok())
        .filter(|value| !value.trim().is_empty())
}

/// [`setting`], else the variable's older name (`VAPI_EDGE_RELAY_*`, read
/// before every setting took the `SPIN_VARIABLE_` prefix), with a warning.
fn setting_or_older(flag: Option<String>, variable: &str, older: &str) -> Option<String> {
    setting(flag, variable).or_else(|| {
        let value = setting(None, older)?;
        log::write(
            log::warn("deprecated variable: use the new name")
                .field("variable", older)
                .field("new_name", variable),
        );
        Some(value)
    })
}

/// Runs the relay until SIGINT or SIGTERM.
pub async fn run(args: RelayArgs) -> Result<()> {
    let secret = setting(args.relay_secret, "SPIN_VARIABLE_RELAY_SECRET").context(
        "no relay secret: pass --relay-secret or set SPIN_VARIABLE_RELAY_SECRET (the component's relay_secret)",
    )?;
    let key = SigningKey::from_secret(&secret).context("invalid relay secret")?;
    let tokens = setting(args.dashboard_token, "SPIN_VARIABLE_DASHBOARD_TOKEN")
        .map(|value| Tokens::parse(&value))
        .transpose()
        .context("invalid dashboard_token")?;
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let hub = Arc::new(Hub::new(
        count(args.ring),
        count(args.subscriber_buffer),
        hub::SubscriberCaps {
            total: count(args.max_subscribers),
            per_token: count(args.max_subscribers_per_token),
        },
    ));
    let mut allowed_origins = args.allowed_origin.clone();
    if allowed_origins.is_empty() {
        if let Some(listed) = setting_or_older(
            None,
            "SPIN_VARIABLE_RELAY_ALLOWED_ORIGINS",
            "VAPI_EDGE_RELAY_ALLOWED_ORIGINS",
        ) {
            allowed_origins = listed.split(',').map(str::to_string).collect();
        }
    }
    let allowed_origins: Vec<String> = allowed_origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|origin| !origin.is_empty())
        .collect();
    if allowed_origins.is_empty() {
        log::write(log::warn(
            "no --allowed-origin: a web page of any origin may subscribe with a dashboard token",
        ));
    }
    let fanout = match setting_or_older(
        args.redis_url,
        "SPIN_VARIABLE_RELAY_REDIS_URL",
        "VAPI_EDGE_RELAY_REDIS_URL",
    ) {
        Some(url) => {
            if args.redis_channel.is_empty() {
                bail!("--redis-channel is empty");
            }
            Fanout::Redis(Replicas::connect(&url, &args.redis_channel, hub.clone()).await?)
        }
        None => Fanout::Local(Mutex::new(RecentIds::new(RECENT_IDS, REPLAY_WINDOW))),
    };
    let relay = Arc::new(Relay {
        key,
        tokens,
        hub,
        fanout,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        allowed_origins,
    });

    // Installed once, before serving: a signal that arrives while a
    // connection is being accepted is kept for the next wait, not lost.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listener = Listener::new(listener, count(args.max_connections));
    let local = listener.local_addr()?;
    let header_timeout = Duration::from_millis(args.header_timeout_ms);
    log::write(
        log::info("Relay serving")
            .field("addr", local.to_string())
            .field("redis", relay.redis_state())
            .field("max_connections", listener.limit())
            .field(
                "dashboard_token",
                if relay.tokens.is_some() {
                    "set"
                } else {
                    "unset"
                },
            ),
    );
    loop {
        tokio::select! {
            (stream, _, open) = listener.accept() => {
                let _ = stream.set_nodelay(true);
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
                let relay = relay.clone();
                tokio::spawn(async move {
                    serve_connection(relay, stream, header_timeout).await;
                    drop(open);
                });
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    log::write(log::info("Relay stopped"));
    Ok(())
}

async fn serve_connection(
    relay: Arc<Relay>,
    stream: tokio::net::TcpStream,
    header_timeout: Duration,
) {
    // Notified when the hub drops this connection's subscriber for being slow:
    // dropping the connection closes it even while the client reads nothing.
    let close = Arc::new(Notify::new());
    let service_close = close.clone();
    let service = hyper::service::service_fn(move |request| {
        let relay = relay.clone();
        let close = service_close.clone();
        async move { Ok::<_, Infallible>(relay.handle(request, close).await) }
    });
    let connection = listener::http1(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        _ = connection => {}
        _ = close.notified() => {}
    }
}

impl Relay {
    fn redis_state(&self) -> &'static str {
        match &self.fanout {
            Fanout::Local(_) => "off",
            Fanout::Redis(replicas) if replicas.is_up() => "up",
            Fanout::Redis(_) => "down",
        }
    }

    async fn handle(
        &self,
        request: Request<hyper::body::Incoming>,
        close: Arc<Notify>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let method = request.method().clone();
        // Never the query: it may hold the token.
        let path = request.uri().path().to_string();
        let (response, outcome) = match (&method, path.as_str()) {
            (&Method::POST, "/events") => self.post_event(request).await,
            (&Method::GET, "/events/stream") => self.sse(request, close),
            (&Method::OPTIONS, "/events/stream") => match self.origin_allowed(&request) {
                true => (preflight(self.allow_origin(&request)), None),
                false => (Denied::Origin.response(), None),
            },
            (&Method::GET, "/ws") => self.websocket(request, close),
            (&Method::GET, "/healthz") => (self.health(), None),
            (_, "/events" | "/events/stream" | "/ws" | "/healthz") => (
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                None,
            ),
            _ => (error(StatusCode::NOT_FOUND, "not found"), None),
        };
        let level = match response.status().is_server_error() {
            true => log::Level::Error,
            false => log::Level::Info,
        };
        log::write(
            log::LogLine::new(level, "Relay request")
                .field("method", method.as_str())
                .field("path", path)
                .field("status", response.status().as_u16())
                .field("duration_ms", started.elapsed().as_millis() as u64)
                .field("outcome", outcome),
        );
        response
    }

    /// `POST /events`; the outcome is for the log line.
    async fn post_event(
        &self,
        request: Request<hyper::body::Incoming>,
    ) -> (Response<ResponseBody>, Option<String>) {
        match self.accept(request).await {
            Ok(envelope) => (
                json(StatusCode::ACCEPTED, &serde_json::json!({"ok": true})),
                Some(format!("accepted {}", envelope.id)),
            ),
            Err(refusal) => (
                error(refusal.status(), &refusal.to_string()),
                Some(refusal.to_string()),
            ),
        }
    }

    async fn accept(&self, request: Request<hyper::body::Incoming>) -> Result<Envelope, Refusal> {
        let (parts, body) = request.into_parts();
        let body = read_body(body, &parts.headers).await?;
        let headers: Headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        standard_webhooks::verify(&self.key, &headers, &body, unix_now_s())?;
        // Present and UTF-8: the signature covered it.
        let id = match headers.one(standard_webhooks::ID_HEADER) {
            Ok(Some(id)) => id,
            _ => return Err(WebhookError::MissingHeader(standard_webhooks::ID_HEADER).into()),
        };
        let envelope = Envelope::from_notification(id, &body)?;
        match &self.fanout {
            Fanout::Local(recent) => {
                let claimed = recent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .claim(&envelope.id, Instant::now());
                if !claimed {
                    return Err(Refusal::Replayed);
                }
                log_slow_drops(&self.hub.deliver(&envelope));
            }
            Fanout::Redis(replicas) => {
                // Delivered here, as everywhere, when the message comes back.
                if !replicas.publish_once(&envelope).await? {
                    return Err(Refusal::Replayed);
                }
            }
        }
        Ok(envelope)
    }

    /// Who is asking: the scope of their token, and who holds it (a digest
    /// of the token, for the per-token cap). A browser's page must be of an
    /// allowed origin.
    fn authorize(
        &self,
        request: &Request<hyper::body::Incoming>,
    ) -> Result<(Scope, String), Denied> {
        if !self.origin_allowed(request) {
            return Err(Denied::Origin);
        }
        let tokens = self.tokens.as_ref().ok_or(Denied::NoTokens)?;
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (scope, presented) = match bearer {
            Some(value) => (
                tokens.scope_of_bearer(bearer),
                value
                    .trim()
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => {
                let token = query_value(request, "token").unwrap_or_default();
                (tokens.scope_of(&token), token)
            }
        };
        let scope = scope.ok_or(Denied::BadToken)?;
        let holder = hex_digest(presented.as_bytes());
        Ok((scope, holder))
    }

    /// No `Origin` (not a browser), no list, or an origin on the list.
    fn origin_allowed(&self, request: &Request<hyper::body::Incoming>) -> bool {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return true;
        };
        self.allowed_origins.is_empty()
            || origin.to_str().is_ok_and(|origin| {
                let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
                self.allowed_origins.contains(&origin)
            })
    }

    /// `access-control-allow-origin` for an answer to `request`: the page's
    /// origin when a list decides, else `*`.
    fn allow_origin(&self, request: &Request<hyper::body::Incoming>) -> HeaderValue {
        match request.headers().get(header::ORIGIN) {
            Some(origin) if !self.allowed_origins.is_empty() => origin.clone(),
            _ => HeaderValue::from_static("*"),
        }
    }

    /// `GET /events/stream`.
    fn sse(
        &self,
        request: Request<hyper::body::Incoming>,
        close: Arc<Notify>,
    ) -> (Response<ResponseBody>, Option<String>) {
        let (scope, holder) = match self.authorize(&request) {
            Ok(who) => who,
            Err(denied) => return (denied.response(), None),
        };
        let last = last_event_id(&request);
        let subscription = match self
            .hub
            .subscribe(scope.clone(), last.as_deref(), close, &holder)
        {
            Ok(subscription) => subscription,
            Err(crowded) => return (Denied::from(crowded).response(), Some(crowded.to_string())),
        };
        let outcome = subscribed(&scope, last.as_deref(), subscription.backlog.len());
        let allow_origin = self.allow_origin(&request);
        let body = stream::SseBody::new(subscription, self.heartbeat);
        let mut response = Response::new(body.boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        // Tells nginx-like proxies not to hold events back.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        (response, Some(outcome))
    }

    /// `GET /ws`: checks the token and the handshake, then upgrades.
    fn websocket(
        &self,
        request: Request<hyper::body::Incoming>,
        close: Arc<Notify>,
    ) -> (Response<ResponseBody>, Option<String>) {
        let (scope, holder) = match self.authorize(&request) {
            Ok(who) => who,
            Err(denied) => return (denied.response(), None),
        };
        let headers = request.headers();
        let has_token = |name: header::HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(token))
                })
            })
        };
        let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        let version_ok = headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        let Some(key) = key.filter(|_| {
            version_ok
                && has_token(header::UPGRADE, "websocket")
                && has_token(header::CONNECTION, "upgrade")
        }) else {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "expected a WebSocket upgrade (version 13)",
                ),
                None,
            );
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let last = last_event_id(&request);
        let subscription =
            match self
                .hub
                .subscribe(scope.clone(), last.as_deref(), close.clone(), &holder)
            {
                Ok(subscription) => subscription,
                Err(crowded) => {
                    return (Denied::from(crowded).response(), Some(crowded.to_string()))
                }
            };
        let outcome = subscribed(&scope, last.as_deref(), subscription.backlog.len());
        let heartbeat = self.heartbeat;
        tokio::spawn(async move {
            let id = subscription.id;
            let reason = stream::serve_websocket(request, subscription, close, heartbeat).await;
            // The hub logged its own drop; other endings are routine.
            if reason != "slow" {
                log::write(
                    log::info("Relay subscriber closed")
                        .field("kind", "websocket")
                        .field("subscriber", id)
                        .field("reason", reason),
                );
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        (response, Some(outcome))
    }

    fn health(&self) -> Response<ResponseBody> {
        json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "subscribers": self.hub.subscribers(),
                "redis": self.redis_state(),
            }),
        )
    }
}

/// A short digest of `bytes`: who holds a token, without the token.
fn hex_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One WARN line per subscriber the hub dropped for not keeping up.
fn log_slow_drops(dropped: &[u64]) {
    for id in dropped {
        log::write(
            log::warn(SUBSCRIBER_DROPPED)
                .field("subscriber", *id)
                .field("reason", "slow"),
        );
    }
}

/// The log outcome of a new subscription: its scope and what it resumed.
fn subscribed(scope: &Scope, last: Option<&str>, backlog: usize) -> String {
    let scope = match scope.orgs() {
        None => "all organisations".to_string(),
        Some(orgs) => orgs.join(" "),
    };
    match last {
        None => format!("subscribed ({scope})"),
        Some(_) => format!("resumed ({scope}) with {backlog} event(s) or reset"),
    }
}

fn last_event_id(request: &Request<hyper::body::Incoming>) -> Option<String> {
    request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .or_else(|| query_value(request, "last_event_id"))
        .filter(|v| !v.is_empty())
}

fn query_value(request: &Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The body, at most [`MAX_BODY_BYTES`]. A larger one is still read, up to
/// [`DRAIN_BYTES`] more, and thrown away: a client still sending when the
/// connection closed would see a reset instead of the 413.
async fn read_body(
    mut body: hyper::body::Incoming,
    headers: &hyper::HeaderMap,
) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut too_large = declared.is_some_and(|length| length > MAX_BODY_BYTES as u64);
    if declared.is_some_and(|length| length > (MAX_BODY_BYTES + DRAIN_BYTES) as u64) {
        return Err(Refusal::TooLarge);
    }
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Refusal::Unreadable)?.into_data() else {
                continue;
            };
            seen += data.len();
            too_large |= seen > MAX_BODY_BYTES;
            if seen > MAX_BODY_BYTES + DRAIN_BYTES {
                break;
            }
            if !too_large {
                collected.extend_from_slice(&data);
            }
        }
        Ok::<(), Refusal>(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) if too_large => Err(Refusal::TooLarge),
        Ok(Ok(())) => Ok(collected.freeze()),
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => Err(Refusal::Unreadable),
    }
}

fn unix_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn empty() -> ResponseBody {
    Full::new(Bytes::new()).boxed_unsync()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let mut response = json(status, &serde_json::json!({ "error": message }));
    // A page on another origin must be able to read why it was refused.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// CORS preflight for a page that sends the token in `Authorization`.
fn preflight(allow_origin: HeaderValue) -> Response<ResponseBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, last-event-id"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}
