//! `vapi-edge-native`: THE BENCHMARK'S NATIVE BASELINE. NOT A PRODUCT SERVER.
//!
//! It exists only so `bench/run.sh` can measure what running the component as
//! WebAssembly costs: the same handling logic as the component's live path for
//! a call event (`src/webhook.rs`: `process` -> `process_verified` ->
//! `claim::claim` -> `record_with_retry`, then the `webhook_events` record
//! after the response), compiled natively into a plain hyper server. The wasm
//! overhead is (vapi-edge-host running the .wasm) / (this binary), with the
//! same PostgreSQL, the same Redis and the same load driver.
//!
//! Per `POST /webhooks/vapi` it does what the component does:
//!
//! - reads the variables the component reads, per request, with spin.toml's
//!   defaults (only the HMAC secret is given, by `--hmac-secret`), and builds
//!   `VerifyConfig` from them; verifies the HMAC over the raw body;
//! - checks the content type, `payload::parse`, `handling::plan` (US);
//! - claims the event in Redis with the component's key formats and commands
//!   (`EXISTS vapi-edge/done/{key}`, `INCRBY vapi-edge/claim/{window}/{key} 1`
//!   for the 30 s lease window; `SET` the done key on success, `DEL` the claim
//!   key on failure), over one multiplexed connection as the host has;
//! - runs `sql::RECORD_EVENT` with the 22 parameters of `store::record_event`,
//!   in the same order, prepared once per pooled connection (deadpool-postgres,
//!   the host's pool settings), retrying a missing agent on the
//!   `agent_lookup_retry_ms` schedule;
//! - answers with the same bodies (`{"ok":true,"outcome":"recorded"}`, ...),
//!   writes the component's log lines (JSON on stdout / stderr), and after the
//!   response inserts the `webhook_events` row in a spawned task.
//!
//! Left out, because the benchmark never reaches them: `assistant-request`
//! (answered 501 here), dead letters for 5xx answers, relay notifications, and
//! every other route (`/healthz`, `/metrics`, `/admin/replay`). Loopback only.

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use vapi_edge_core::event_key::EventKey;
use vapi_edge_core::handling::{self, CallRecord, Plan, PlanError, DEFAULT_RETRY_MS};
use vapi_edge_core::headers::Headers;
use vapi_edge_core::http::{Response, MAX_BODY_BYTES};
use vapi_edge_core::log::{self as terms, Level, LogLine};
use vapi_edge_core::payload::{self, MessageKind};
use vapi_edge_core::phone::Country;
use vapi_edge_core::rollout;
use vapi_edge_core::sql::{INSERT_EVENT_ROW, RECORD_EVENT, RECORD_EVENT_PARAMS};
use vapi_edge_core::verify::VerifyConfig;

const USAGE: &str = "usage:
  vapi-edge-native --listen 127.0.0.1:0 --pg-url URL --redis-url redis://127.0.0.1:6379 \\
                   --hmac-secret SECRET

The benchmark's native baseline (not a product server): serves POST
/webhooks/vapi with the component's handling logic compiled natively, and
prints `Serving http://ADDR` once listening. Loopback addresses only.";

/// `claim::DEFAULT_LEASE_MS` in the component.
const DEFAULT_LEASE_MS: i64 = 30_000;

/// The variables the component reads, with the defaults spin.toml gives them
/// (`vapi_hmac_secret` comes from `--hmac-secret`; `pg_url` from `--pg-url`).
const VARIABLE_DEFAULTS: &[(&str, &str)] = &[
    ("vapi_signature_header", "x-signature"),
    ("vapi_timestamp_header", "x-timestamp"),
    ("vapi_signature_payload", ""),
    ("vapi_signature_encoding", "hex"),
    ("vapi_signature_prefix", ""),
    ("vapi_hmac_algorithm", "sha256"),
    ("vapi_hmac_secret_base64", "false"),
    ("vapi_timestamp_tolerance_s", "300"),
    ("vapi_server_secret", ""),
    ("relay_url", ""),
    ("inbound_rollout_percent", "100"),
    ("agent_lookup_retry_ms", DEFAULT_RETRY_MS),
    ("default_country", "US"),
    ("claim_lease_ms", "30000"),
];

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // The same runtime as vapi-edge-host: multi-threaded, one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(serve(options)) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

// ---- options -------------------------------------------------------------------

struct Options {
    listen: SocketAddr,
    pg_url: String,
    redis_url: String,
    hmac_secret: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, Error> {
        let mut listen = None;
        let mut pg_url = None;
        let mut redis_url = None;
        let mut hmac_secret = None;
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "-h" || arg == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let slot = match name {
                "--listen" => &mut listen,
                "--pg-url" => &mut pg_url,
                "--redis-url" => &mut redis_url,
                "--hmac-secret" => &mut hmac_secret,
                _ => return Err(format!("unknown argument `{arg}`").into()),
            };
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .ok_or_else(|| format!("{name} needs a value"))?
                    .clone(),
            };
            *slot = Some(value);
        }
        let required = |value: Option<String>, name: &str| -> Result<String, Error> {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("{name} is required").into())
        };
        let listen: SocketAddr = required(listen, "--listen")?
            .parse()
            .map_err(|e| format!("--listen: {e}"))?;
        if !listen.ip().is_loopback() {
            return Err(
                "--listen must be a loopback address (this is a benchmark baseline)".into(),
            );
        }
        Ok(Options {
            listen,
            pg_url: required(pg_url, "--pg-url")?,
            redis_url: required(redis_url, "--redis-url")?,
            hmac_secret: required(hmac_secret, "--hmac-secret")?,
        })
    }
}

// ---- the server -----------------------------------------------------------------

struct App {
    hmac_secret: String,
    pool: Pool,
    redis: ConnectionManager,
}

impl App {
    /// `services::variable` in the component: unset and blank are the same.
    fn variable(&self, name: &str) -> Option<String> {
        let value = match name {
            "vapi_hmac_secret" => Some(self.hmac_secret.as_str()),
            _ => VARIABLE_DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v),
        };
        value.filter(|v| !v.trim().is_empty()).map(str::to_string)
    }
}

async fn serve(options: Options) -> Result<(), Error> {
    // The host's pool for `spin:postgres`: at most 32 connections, fast
    // recycling, 5 s to connect or to wait for a free connection.
    let mut config =
        tokio_postgres::Config::from_str(&options.pg_url).map_err(|e| format!("--pg-url: {e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(32)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| format!("cannot build the PostgreSQL pool: {e}"))?;
    // The host's Redis connection for the key-value store.
    let client =
        redis::Client::open(options.redis_url.as_str()).map_err(|e| format!("--redis-url: {e}"))?;
    let redis_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(1);
    let redis = tokio::time::timeout(
        Duration::from_secs(10),
        ConnectionManager::new_with_config(client, redis_config),
    )
    .await
    .map_err(|_| "Redis did not answer within 10 s")?
    .map_err(|e| format!("Redis: {e}"))?;
    let app = Arc::new(App {
        hmac_secret: options.hmac_secret,
        pool,
        redis,
    });

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let local = listener.local_addr()?;
    println!("Serving http://{local}");
    println!("(vapi-edge-native: the benchmark's native baseline, not a product server)");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    // Connections are served as the host serves them: HTTP/1.1, keep-alive.
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(request).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl App {
    async fn handle(
        self: Arc<Self>,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let response = match (parts.uri.path(), parts.method.as_str()) {
            ("/webhooks/vapi", "POST") => {
                // `http_io::read_request`: headers as sent (repeats kept), the
                // body bounded by MAX_BODY_BYTES.
                let mut headers = Headers::new();
                for (name, value) in &parts.headers {
                    headers.push(name.as_str(), value.as_bytes());
                }
                let too_long = headers
                    .one("content-length")
                    .ok()
                    .flatten()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > MAX_BODY_BYTES as u64);
                if too_long {
                    Response::payload_too_large()
                } else {
                    match Limited::new(body, MAX_BODY_BYTES).collect().await {
                        Ok(collected) => {
                            let body = collected.to_bytes();
                            let (response, after) = self.webhook(&headers, &body).await;
                            if let Some(row) = after {
                                // Work after the response, as the component's `After::run`.
                                let app = self.clone();
                                tokio::spawn(async move { app.insert_event_row(row).await });
                            }
                            response
                        }
                        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                            Response::payload_too_large()
                        }
                        Err(_) => Response::bad_request("body", "could not read the request body"),
                    }
                }
            }
            ("/webhooks/vapi", _) => Response::method_not_allowed("POST"),
            _ => Response::not_found(),
        };
        to_hyper(response)
    }

    /// `webhook::handle`: process, then the summary line and the event row.
    async fn webhook(&self, headers: &Headers, body: &[u8]) -> (Response, Option<EventRow>) {
        let started = Instant::now();
        let mut context = Context::default();
        let answer = self.process(headers, body, &mut context).await;
        let status = answer.response.status;
        let (level, msg) = match status {
            200..=299 => (Level::Info, "Webhook handled"),
            400..=499 => (Level::Warn, "Webhook refused"),
            _ => (Level::Error, "Webhook failed"),
        };
        context.log(
            level,
            msg,
            &[
                ("outcome", answer.outcome.into()),
                ("status", status.into()),
                ("duration_ms", duration_ms(started).into()),
            ],
        );
        let row = context.verified.then(|| EventRow {
            message_type: context.text("event_type"),
            call_id: context.text("call_id"),
            org_id: context.text("org_id"),
            direction: context.text("direction"),
            outcome: answer.outcome,
            status,
            duration_ms: duration_ms(started),
            error_class: context.error_class,
        });
        (answer.response, row)
    }

    /// `webhook::process`: verify, check the media type, go on.
    async fn process(&self, headers: &Headers, body: &[u8], context: &mut Context) -> Answer {
        let verifier = match VerifyConfig::from_variables(|name| self.variable(name)) {
            Ok(config) if config.is_configured() => config,
            Ok(_) => return misconfigured(
                context,
                "neither vapi_hmac_secret nor vapi_server_secret is set: every request is refused",
            ),
            Err(error) => return misconfigured(context, &error.to_string()),
        };
        if let Err(error) = verifier.verify(headers, body, now_ms()) {
            context.log(
                Level::Warn,
                "Webhook verification failed",
                &[("error", error.public_reason().into())],
            );
            return Answer::refused("unauthorized", Response::error(401, &error.public_reason()));
        }
        context.verified = true;
        if !is_json(headers) {
            return Answer::refused("unsupported_media_type", Response::unsupported_media_type());
        }
        self.process_verified(body, context).await
    }

    /// `webhook::process_verified` for a live delivery.
    async fn process_verified(&self, body: &[u8], context: &mut Context) -> Answer {
        let message = match payload::parse(body) {
            Ok(message) => message,
            Err(error) => {
                context.set("error", error.to_string());
                return Answer::refused(
                    "invalid_payload",
                    Response::bad_request(&error.field, &error.problem),
                );
            }
        };
        context.set("event_type", message.message_type.as_str());
        if let Some(call_id) = message.call_id() {
            context.set("call_id", call_id);
        }
        let settings = match Settings::load(self) {
            Ok(settings) => settings,
            Err(problem) => return misconfigured(context, &problem),
        };
        if message.kind == MessageKind::AssistantRequest {
            return Answer::refused(
                "not_implemented",
                Response::error(501, "assistant-request is not in the native baseline"),
            );
        }

        let record = match handling::plan(&message, &settings.country) {
            Ok(Plan::Record(record)) => record,
            Ok(Plan::Acknowledge { reason }) => {
                context.set("reason", reason);
                return Answer::ok("ignored");
            }
            Err(PlanError::CallType(error)) => {
                context.log(
                    Level::Error,
                    terms::CANNOT_DETERMINE_CALL_TYPE,
                    &[("error", error.to_string().into())],
                );
                return Answer::refused(
                    "invalid_call_type",
                    Response::bad_request(
                        "message.call.type",
                        &format!("cannot determine call type: {error}"),
                    ),
                );
            }
            Err(PlanError::NoAssistant) => {
                context.log(Level::Warn, "Call has no assistant id; not recorded", &[]);
                return Answer::ok("skipped");
            }
        };
        context.set("direction", record.direction.as_str());
        for warning in &record.number_warnings {
            context.log(
                Level::Warn,
                "Phone number is not valid E.164; stored best-effort",
                &[
                    ("field", warning.field.into()),
                    ("number", warning.masked.clone().into()),
                    ("reason", warning.reason.into()),
                ],
            );
        }

        // Claim before any side effect.
        let held = match self
            .claim(&record.event_key, now_ms(), settings.lease_ms)
            .await
        {
            Claim::Acquired(held) => Some(held),
            Claim::Done => {
                context.log(
                    Level::Info,
                    terms::DUPLICATE_EVENT,
                    &[("guard", "key_value".into())],
                );
                return Answer::ok("duplicate");
            }
            Claim::InProgress => {
                context.log(
                    Level::Warn,
                    "Event is being handled by another attempt",
                    &[],
                );
                return Answer::refused(
                    "in_progress",
                    Response::error(503, "this event is being handled; retry later")
                        .with_header("retry-after", "1"),
                );
            }
            Claim::Unavailable(error) => {
                context.log(
                    Level::Warn,
                    "Key-value store unavailable; Postgres guards this event",
                    &[("error", error.into())],
                );
                None
            }
        };

        let answer = self
            .record_with_retry(&settings, &record, &settings.retry_delays, context)
            .await;
        if let Some(held) = held {
            let result = if answer.response.status < 300 {
                self.complete(held).await
            } else {
                self.release(held).await
            };
            if let Err(error) = result {
                context.log(
                    Level::Warn,
                    "Key-value claim could not be updated",
                    &[("error", error.into())],
                );
            }
        }
        // (The component keeps a dead letter for a 5xx here: not in the baseline.)
        answer
    }

    // ---- the claim (claim.rs) -------------------------------------------------------

    async fn claim(&self, event: &EventKey, now_ms: i64, lease_ms: i64) -> Claim {
        let mut conn = self.redis.clone();
        let done_key = format!("vapi-edge/done/{event}");
        match redis::cmd("EXISTS")
            .arg(&done_key)
            .query_async::<bool>(&mut conn)
            .await
        {
            Ok(true) => return Claim::Done,
            Ok(false) => {}
            Err(error) => return Claim::Unavailable(format!("exists: {}", redis_error(&error))),
        }
        let window = now_ms.div_euclid(lease_ms.max(1));
        let claim_key = format!("vapi-edge/claim/{window}/{event}");
        // `atomics::increment(bucket, key, 1)`: the host sends INCRBY key 1.
        match redis::cmd("INCRBY")
            .arg(&claim_key)
            .arg(1)
            .query_async::<i64>(&mut conn)
            .await
        {
            Ok(1) => Claim::Acquired(Held {
                claim_key,
                done_key,
            }),
            // Someone claimed first; it may have finished in the meantime.
            Ok(_) => match redis::cmd("EXISTS")
                .arg(&done_key)
                .query_async::<bool>(&mut conn)
                .await
            {
                Ok(true) => Claim::Done,
                _ => Claim::InProgress,
            },
            Err(error) => Claim::Unavailable(format!("increment: {}", redis_error(&error))),
        }
    }

    /// `Held::complete`: later deliveries stop at the store.
    async fn complete(&self, held: Held) -> Result<(), String> {
        let mut conn = self.redis.clone();
        redis::cmd("SET")
            .arg(&held.done_key)
            .arg("1")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_error(&e))
    }

    /// `Held::release`: gives the event back so Vapi's retry can handle it.
    async fn release(&self, held: Held) -> Result<(), String> {
        let mut conn = self.redis.clone();
        redis::cmd("DEL")
            .arg(&held.claim_key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| redis_error(&e))
    }

    // ---- recording (webhook::record_with_retry, store::record_event) -----------------

    async fn record_with_retry(
        &self,
        settings: &Settings,
        record: &CallRecord,
        delays: &[u64],
        context: &mut Context,
    ) -> Answer {
        let db = match self.pool.get().await {
            Ok(db) => db,
            Err(error) => return database_unavailable(context, &error.to_string()),
        };
        let mut retries = delays.iter();
        loop {
            match record_event(&db, record, settings.rollout_percent).await {
                Ok(Recorded::New { agent, lead_id, .. }) => {
                    note_agent(context, &agent);
                    if let Some(lead_id) = &lead_id {
                        context.set("lead_id", lead_id.as_str());
                    }
                    // relay_url is unset (spin.toml's default): no notification.
                    return Answer::ok("recorded");
                }
                Ok(Recorded::Duplicate { agent }) => {
                    note_agent(context, &agent);
                    context.log(
                        Level::Info,
                        terms::DUPLICATE_EVENT,
                        &[("guard", "postgres".into())],
                    );
                    return Answer::ok("duplicate");
                }
                Ok(Recorded::OutsideRollout { agent }) => {
                    note_agent(context, &agent);
                    context.log(
                        Level::Info,
                        "Organisation is outside the inbound rollout; not recorded",
                        &[("rollout_percent", settings.rollout_percent.into())],
                    );
                    return Answer::ok("outside_rollout");
                }
                Ok(Recorded::AgentNotFound) => match retries.next() {
                    Some(delay) => tokio::time::sleep(Duration::from_millis(*delay)).await,
                    None => {
                        context.error_class = Some("agent_lookup");
                        context.log(
                            Level::Error,
                            terms::AGENT_LOOKUP_FAILED,
                            &[
                                ("assistant_id", record.assistant_id.as_str().into()),
                                ("attempts", (delays.len() + 1).into()),
                            ],
                        );
                        return Answer::refused(
                            "agent_not_found",
                            Response::error(500, "no agent has this assistant id yet; retry later"),
                        );
                    }
                },
                Err(error) => {
                    let (msg, class) = if record.tracks_call() {
                        (terms::CALL_TRACKING_FAILED, "call_tracking")
                    } else {
                        (terms::CALL_LOGS_FAILED, "call_logs")
                    };
                    context.error_class = Some(class);
                    context.log(
                        Level::Error,
                        msg,
                        &[("error", describe_pg_error(&error).into())],
                    );
                    let status = if is_transient(&error) { 503 } else { 500 };
                    return Answer::refused(
                        "database_error",
                        Response::error(status, "the event could not be recorded; retry later"),
                    );
                }
            }
        }
    }

    /// `store::insert_event_row`, after the response; a failure is one log line.
    async fn insert_event_row(&self, row: EventRow) {
        let written = async {
            let db = self.pool.get().await.map_err(|e| e.to_string())?;
            let statement = db
                .prepare_cached(INSERT_EVENT_ROW)
                .await
                .map_err(|e| describe_pg_error(&e))?;
            let status = row.status as i16;
            db.execute(
                &statement,
                &[
                    &row.message_type,
                    &row.call_id,
                    &row.org_id,
                    &row.direction,
                    &row.outcome,
                    &status,
                    &row.duration_ms,
                    &row.error_class,
                ],
            )
            .await
            .map_err(|e| describe_pg_error(&e))
        };
        if let Err(error) = written.await {
            emit(
                &LogLine::new(Level::Warn, "Event record not written")
                    .field("outcome", row.outcome)
                    .field("error", error),
            );
        }
    }
}

// ---- the recording statement ------------------------------------------------------

struct Agent {
    id: String,
    org_id: String,
    name: String,
}

enum Recorded {
    New {
        agent: Agent,
        #[allow(dead_code)] // used by the component's notification only
        tracked: bool,
        lead_id: Option<String>,
    },
    Duplicate {
        agent: Agent,
    },
    AgentNotFound,
    OutsideRollout {
        agent: Agent,
    },
}

/// `store::record_event`: `RECORD_EVENT` with its 22 parameters in the order of
/// `RECORD_EVENT_PARAMS`.
async fn record_event(
    db: &deadpool_postgres::Object,
    record: &CallRecord,
    rollout_percent: u32,
) -> Result<Recorded, tokio_postgres::Error> {
    let event_key = record.event_key.to_string();
    let direction = record.direction.as_str();
    let metadata: &Value = &record.metadata;
    let rollout_percent = i64::from(rollout_percent);
    let is_final_report = record.is_final_report();
    let params: [&(dyn ToSql + Sync); RECORD_EVENT_PARAMS.len()] = [
        &record.assistant_id,     // $1 assistant_id
        &event_key,               // $2 event_key
        &record.message_type,     // $3 message_type
        &record.call_id,          // $4 call_id
        &direction,               // $5 direction
        &record.from_number,      // $6 from_number
        &record.to_number,        // $7 to_number
        &record.customer_e164,    // $8 customer_e164
        &record.status,           // $9 status
        &record.status_rank,      // $10 status_rank (int2)
        &record.vapi_org_id,      // $11 vapi_org_id
        metadata,                 // $12 metadata (jsonb)
        &record.started_at_ms,    // $13 started_at_ms (int8)
        &record.ended_at_ms,      // $14 ended_at_ms (int8)
        &record.ended_reason,     // $15 ended_reason
        &record.duration_seconds, // $16 duration_seconds (float8)
        &record.cost,             // $17 cost (float8)
        &record.summary,          // $18 summary
        &record.transcript,       // $19 transcript
        &record.recording_url,    // $20 recording_url
        &rollout_percent,         // $21 rollout_percent (int8)
        &is_final_report,         // $22 is_final_report (bool)
    ];
    let statement = db.prepare_cached(RECORD_EVENT).await?;
    let rows = db.query(&statement, &params).await?;
    let Some(row) = rows.first() else {
        return Ok(Recorded::AgentNotFound);
    };
    let text = |i: usize| row.try_get::<_, Option<String>>(i).ok().flatten();
    let integer = |i: usize| row.try_get::<_, Option<i64>>(i).ok().flatten();
    // Not found is one row with a NULL agent id (see `sql::ROW_QUERIES`).
    let (Some(id), Some(org_id)) = (text(0), text(1)) else {
        return Ok(Recorded::AgentNotFound);
    };
    let agent = Agent {
        id,
        org_id,
        name: text(2).unwrap_or_default(),
    };
    if row.try_get::<_, Option<bool>>(6).ok().flatten() == Some(false) {
        return Ok(Recorded::OutsideRollout { agent });
    }
    if integer(3) != Some(1) {
        return Ok(Recorded::Duplicate { agent });
    }
    Ok(Recorded::New {
        agent,
        tracked: integer(4) == Some(1),
        lead_id: text(5),
    })
}

/// `services::describe_pg_error`: SQLSTATE and message, never parameter values.
fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// `services::is_transient`: whether a retry by Vapi could succeed unchanged.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => ["08", "40", "53", "57"]
            .iter()
            .any(|class| db.code().code().starts_with(class)),
        None => error.is_closed(),
    }
}

fn redis_error(error: &redis::RedisError) -> String {
    if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
        "store unavailable".to_string()
    } else {
        "store error".to_string()
    }
}

// ---- what the component's webhook.rs keeps per request ----------------------------

enum Claim {
    Acquired(Held),
    Done,
    InProgress,
    Unavailable(String),
}

struct Held {
    claim_key: String,
    done_key: String,
}

/// `webhook::Settings`: read from the variables on every request.
struct Settings {
    country: Country,
    retry_delays: Vec<u64>,
    rollout_percent: u32,
    lease_ms: i64,
}

impl Settings {
    fn load(app: &App) -> Result<Settings, String> {
        let variable = |name: &str| app.variable(name);
        let country_code = variable("default_country").unwrap_or_else(|| "US".into());
        let country = Country::from_iso(&country_code)
            .ok_or("default_country is not a country this version knows")?;
        let retry_delays = handling::parse_retry_delays(
            &variable("agent_lookup_retry_ms").unwrap_or_else(|| DEFAULT_RETRY_MS.into()),
        )
        .map_err(|e| format!("agent_lookup_retry_ms: {e}"))?;
        let rollout_percent = rollout::parse_percent(
            &variable("inbound_rollout_percent").unwrap_or_else(|| "100".into()),
        )
        .map_err(|e| format!("inbound_rollout_percent: {e}"))?;
        let lease_ms = match variable("claim_lease_ms") {
            None => DEFAULT_LEASE_MS,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(ms) if (1_000..=3_600_000).contains(&ms) => ms,
                _ => {
                    return Err("claim_lease_ms: expected milliseconds from 1000 to 3600000".into())
                }
            },
        };
        Ok(Settings {
            country,
            retry_delays,
            rollout_percent,
            lease_ms,
        })
    }
}

#[derive(Default)]
struct Context {
    fields: Vec<(&'static str, Value)>,
    verified: bool,
    error_class: Option<&'static str>,
}

impl Context {
    fn text(&self, key: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    }

    fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.fields.retain(|(k, _)| *k != key);
        self.fields.push((key, value.into()));
    }

    fn log(&self, level: Level, msg: &str, extra: &[(&str, Value)]) {
        let line = self
            .fields
            .iter()
            .fold(LogLine::new(level, msg), |line, (k, v)| {
                line.field(k, v.clone())
            });
        let line = extra
            .iter()
            .fold(line, |line, (k, v)| line.field(k, v.clone()));
        emit(&line);
    }
}

struct Answer {
    response: Response,
    outcome: &'static str,
}

impl Answer {
    fn ok(outcome: &'static str) -> Self {
        Answer {
            response: Response::json(200, &json!({ "ok": true, "outcome": outcome })),
            outcome,
        }
    }

    fn refused(outcome: &'static str, response: Response) -> Self {
        Answer { response, outcome }
    }
}

/// `store::EventRow`.
struct EventRow {
    message_type: Option<String>,
    call_id: Option<String>,
    org_id: Option<String>,
    direction: Option<String>,
    outcome: &'static str,
    status: u16,
    duration_ms: f64,
    error_class: Option<&'static str>,
}

fn misconfigured(context: &Context, problem: &str) -> Answer {
    context.log(
        Level::Critical,
        "Webhook misconfigured",
        &[("error", problem.into())],
    );
    Answer::refused(
        "misconfigured",
        Response::error(503, "the webhook is not configured"),
    )
}

fn database_unavailable(context: &mut Context, error: &str) -> Answer {
    context.error_class = Some("database");
    context.log(
        Level::Error,
        "Database unavailable",
        &[("error", error.into())],
    );
    Answer::refused(
        "database_unavailable",
        Response::error(503, "database unavailable; retry later"),
    )
}

fn note_agent(context: &mut Context, agent: &Agent) {
    context.set("org_id", agent.org_id.as_str());
    context.set("agent_id", agent.id.as_str());
    context.set("agent", agent.name.as_str());
}

fn is_json(headers: &Headers) -> bool {
    match headers.one("content-type") {
        Ok(Some(value)) => {
            let media = value.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        }
        _ => false,
    }
}

/// `logging::emit`: info on stdout, warnings and worse on stderr.
fn emit(line: &LogLine) {
    let text = line.render(now_ms());
    match line.level {
        Level::Debug => {}
        Level::Info => println!("{text}"),
        Level::Warn | Level::Error | Level::Critical => eprintln!("{text}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn duration_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// `http_io::write_response`: status, content type, extra headers, body.
fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(response.status)
        .header("content-type", response.content_type);
    for (name, value) in &response.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| {
            let mut fallback = hyper::Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"internal error\"}",
            )));
            *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
}
