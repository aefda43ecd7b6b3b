//! `vapi-edge-native`: THE BENCHMARK'S NATIVE BASELINE. NOT A PRODUCT SERVER.
//!
//! It exists only so `bench/run.sh` can measure what running the component as
//! WebAssembly costs. It serves the component's own routes with the
//! component's own flow (`vapi_edge_core::app::route`, the same code the
//! `.wasm` runs), compiled natively into a plain hyper server, over
//! natively-reached services with the host's settings: PostgreSQL through the
//! pool of `vapi_edge_backends::pg` (32 connections, statements prepared once
//! per connection, the same `pg_sql` statements the component sends) and the
//! key-value store in Redis through `vapi_edge_backends::kv`. The wasm overhead
//! is (vapi-edge-host running the .wasm) / (this binary), with the same
//! PostgreSQL, the same Redis and the same load driver.
//!
//! Variables are spin.toml's defaults, with `vapi_hmac_secret` from
//! `--hmac-secret` and `pg_url` from `--pg-url`; only PostgreSQL is supported
//! (the zero-config SQLite store is the component's, through the host).
//! Loopback only.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::ToSql;
use vapi_edge_backends::allowed_hosts::AllowedHosts;
use vapi_edge_backends::kv::KvStore;
use vapi_edge_backends::pg::PgPools;
use vapi_edge_core::app;
use vapi_edge_core::dashboard::{Param, Read};
use vapi_edge_core::db::{
    Database, DatabaseAddress, DbError, DeadLetter, EventRow, LineAnswer, Owner, PendingLetter,
    Recorded,
};
use vapi_edge_core::effects::Effects;
use vapi_edge_core::handling::CallRecord;
use vapi_edge_core::headers::Headers;
use vapi_edge_core::http::{Request, Response, MAX_BODY_BYTES};
use vapi_edge_core::kv::{KeyValue, KvError};
use vapi_edge_core::log::{Level, LogLine};
use vapi_edge_core::outbound::{OutboundError, OutboundReply, OutboundRequest, MAX_REPLY_BYTES};
use vapi_edge_core::pg_sql;

/// The same allocator as vapi-edge-host, with the same options (see its `main.rs`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(not(target_env = "msvc"), target_os = "linux"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"percpu_arena:percpu\0";

/// The benchmark's native baseline (not a product server): serves the
/// component's routes with its flow compiled natively, and prints
/// `Serving http://ADDR` once listening. Loopback addresses only.
#[derive(Parser, Debug)]
#[command(name = "vapi-edge-native", version)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long)]
    pg_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long)]
    hmac_secret: String,
}

fn main() {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        eprintln!("error: --listen must be a loopback address");
        std::process::exit(2);
    }
    // The same runtime as vapi-edge-host: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        });
    if let Err(error) = runtime.block_on(serve(cli)) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

/// What every request shares: the variables, the pool and the store.
struct Services {
    variables: HashMap<&'static str, String>,
    pg_url: String,
    allowed: AllowedHosts,
    pools: PgPools,
    kv: KvStore,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// spin.toml's variables with their defaults, as the component sees them.
fn variables(cli: &Cli) -> anyhow::Result<HashMap<&'static str, String>> {
    let manifest = format!("{}/../spin.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&manifest)?;
    let table: toml::Table = text.parse()?;
    let mut variables = HashMap::new();
    if let Some(declared) = table.get("variables").and_then(|v| v.as_table()) {
        for (name, spec) in declared {
            let default = spec
                .get("default")
                .and_then(|d| d.as_str())
                .unwrap_or_default();
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            variables.insert(name, default.to_string());
        }
    }
    variables.insert("vapi_hmac_secret", cli.hmac_secret.clone());
    variables.insert("pg_url", cli.pg_url.clone());
    Ok(variables)
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let origin = {
        let config = vapi_edge_backends::pg_tls::PgTarget::parse(&cli.pg_url)?.config;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => anyhow::bail!("--pg-url must name a TCP host"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{host}:{port}")
    };
    let services = Arc::new(Services {
        variables: variables(&cli)?,
        pg_url: cli.pg_url.clone(),
        allowed: AllowedHosts::parse(&[origin])?,
        pools: PgPools::default(),
        kv: KvStore::redis(&cli.redis_url, None)?,
        http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    });

    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!("Serving http://{}", listener.local_addr()?);
    println!("(vapi-edge-native: the benchmark's native baseline, not a product server)");
    let _ = std::io::stdout().flush();

    // Connections are served as the host serves them: HTTP/1.1, keep-alive.
    loop {
        let (stream, _) = listener.accept().await?;
        let services = services.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let services = services.clone();
                async move { Ok::<_, Infallible>(handle(services, request).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `http_io::read_request` and `lib.rs` of the component: read (bounded),
/// route, answer, then run what follows the response in a task of its own.
async fn handle(
    services: Arc<Services>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
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
    let body = if too_long {
        Err(Response::payload_too_large())
    } else {
        match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => Ok(collected.to_bytes().to_vec()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(Response::payload_too_large())
            }
            Err(_) => Err(Response::bad_request(
                "body",
                "could not read the request body",
            )),
        }
    };
    let response = match body {
        Err(rejection) => rejection,
        Ok(body) => {
            let request = Request {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.to_string()),
                headers,
                body,
            };
            let mut effects = NativeEffects::new(services);
            let (response, after) = app::route(&mut effects, &request).await;
            tokio::spawn(async move { after.run(&mut effects).await });
            response
        }
    };
    to_hyper(response)
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(response.status)
        .header("content-type", response.content_type);
    for (name, value) in &response.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// `vapi_edge_core::effects::Effects` over tokio-postgres and Redis: what the
/// component's `SpinEffects` is over Spin's interfaces. One per request; the
/// connection is checked out on first use and kept for what follows.
struct NativeEffects {
    services: Arc<Services>,
    db: Option<deadpool_postgres::Object>,
    tenant: Option<vapi_edge_core::tenant::Tenant>,
}

impl NativeEffects {
    fn new(services: Arc<Services>) -> NativeEffects {
        NativeEffects {
            services,
            db: None,
            tenant: None,
        }
    }

    async fn client(&mut self) -> Result<&deadpool_postgres::Object, DbError> {
        if self.db.is_none() {
            let pool = self
                .services
                .pools
                .pool(&self.services.pg_url, &self.services.allowed)
                .map_err(|e| DbError::transient(format!("{e:?}")).unreachable())?;
            let connection = pool
                .get()
                .await
                .map_err(|e| DbError::transient(format!("connection failed: {e}")).unreachable())?;
            self.db = Some(connection);
        }
        Ok(self.db.as_ref().expect("checked out above"))
    }

    async fn rows(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        client.query(&statement, params).await.map_err(db_error)
    }

    async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), DbError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        client
            .execute(&statement, params)
            .await
            .map(drop)
            .map_err(db_error)
    }
}

/// SQLSTATE and message, never parameter values (`db_error` in the component).
fn db_error(error: tokio_postgres::Error) -> DbError {
    match error.as_db_error() {
        Some(db) => DbError::from_sqlstate(db.code().code(), db.message()),
        None if error.is_closed() => DbError::transient("connection closed"),
        None => DbError::lasting(error.to_string()),
    }
}

fn text(row: &tokio_postgres::Row, i: usize) -> Option<String> {
    row.try_get::<_, Option<String>>(i).ok().flatten()
}

fn kv_error(error: String) -> KvError {
    KvError(error)
}

impl KeyValue for NativeEffects {
    async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.services.kv.get(key).await.map_err(kv_error)
    }
    async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.services.kv.set(key, value).await.map_err(kv_error)
    }
    async fn delete(&mut self, key: &str) -> Result<(), KvError> {
        self.services.kv.delete(key).await.map_err(kv_error)
    }
    async fn exists(&mut self, key: &str) -> Result<bool, KvError> {
        self.services.kv.exists(key).await.map_err(kv_error)
    }
    async fn increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.services
            .kv
            .increment(key, delta)
            .await
            .map_err(kv_error)
    }
}

impl Effects for NativeEffects {
    fn tenant_scope(&self) -> Option<&vapi_edge_core::tenant::Tenant> {
        self.tenant.as_ref()
    }

    fn set_tenant_scope(&mut self, tenant: Option<vapi_edge_core::tenant::Tenant>) {
        self.tenant = tenant;
    }

    fn deployment_variable(&self, name: &str) -> Option<String> {
        self.services
            .variables
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    async fn sleep_ms(&mut self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn emit(&mut self, line: &LogLine) {
        let mut text = line.render(self.now_ms());
        text.push('\n');
        let _ = match line.level() {
            Level::Debug => return,
            Level::Info => std::io::stdout().lock().write_all(text.as_bytes()),
            _ => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }

    fn database(&mut self) -> Database {
        Database::Postgres
    }

    fn database_address(&mut self) -> DatabaseAddress {
        DatabaseAddress::Postgres {
            url: self.services.pg_url.clone(),
        }
    }

    async fn record_event(
        &mut self,
        record: &CallRecord,
        rollout: u32,
    ) -> Result<Recorded, DbError> {
        let event_key = record.event_key.to_string();
        let direction = record.direction.as_str();
        let metadata = &record.metadata;
        let rollout = i64::from(rollout);
        let is_final_report = record.is_final_report();
        let keeps_unowned = record.keeps_unowned();
        let params: [&(dyn ToSql + Sync); pg_sql::RECORD_EVENT_PARAMS.len()] = [
            &record.assistant_id,       // $1 assistant_id
            &event_key,                 // $2 event_key
            &record.message_type,       // $3 message_type
            &record.call_id,            // $4 call_id
            &direction,                 // $5 direction
            &record.from_number,        // $6 from_number
            &record.to_number,          // $7 to_number
            &record.customer_e164,      // $8 customer_e164
            &record.status,             // $9 status
            &record.status_rank,        // $10 status_rank (int2)
            &record.vapi_org_id,        // $11 vapi_org_id
            metadata,                   // $12 metadata (jsonb)
            &record.started_at_ms,      // $13 started_at_ms (int8)
            &record.ended_at_ms,        // $14 ended_at_ms (int8)
            &record.ended_reason,       // $15 ended_reason
            &record.duration_seconds,   // $16 duration_seconds (float8)
            &record.cost,               // $17 cost (float8)
            &record.summary,            // $18 summary
            &record.transcript,         // $19 transcript
            &record.recording_url,      // $20 recording_url
            &rollout,                   // $21 rollout_percent (int8)
            &is_final_report,           // $22 is_final_report (bool)
            &record.squad_id,           // $23 squad_id
            &record.workflow_id,        // $24 workflow_id
            &record.line_id,            // $25 line_id
            &record.line_e164,          // $26 line_e164
            &record.structured_data,    // $27 structured_data (jsonb)
            &record.success_evaluation, // $28 success_evaluation
            &record.costs,              // $29 costs (jsonb)
            &record.default_org_id,     // $30 default_org_id
            &keeps_unowned,             // $31 keeps_unowned (bool)
            &record.tenant,             // $32 tenant
        ];
        let rows = self.rows(pg_sql::RECORD_EVENT_CALL, &params).await?;
        let Some(row) = rows.first() else {
            return Ok(Recorded::OwnerNotFound);
        };
        let integer = |i: usize| row.try_get::<_, Option<i64>>(i).ok().flatten();
        let via = text(row, 7);
        Ok(Recorded::from_record_event_row(
            Owner::from_columns(text(row, 0), text(row, 1), text(row, 2), via.clone()),
            via.as_deref(),
            integer(3),
            integer(4),
            text(row, 5),
            row.try_get::<_, Option<bool>>(6).ok().flatten(),
        ))
    }

    async fn line_answer(
        &mut self,
        tenant: &str,
        vapi_phone_number_id: Option<&str>,
        phone_e164: Option<&str>,
    ) -> Result<LineAnswer, DbError> {
        let rows = self
            .rows(
                pg_sql::LINE_ANSWER,
                &[&vapi_phone_number_id, &phone_e164, &tenant],
            )
            .await?;
        Ok(rows.first().map_or_else(LineAnswer::default, |row| {
            LineAnswer::from_columns(std::array::from_fn(|i| text(row, i)))
        }))
    }

    async fn upsert_dead_letter(&mut self, letter: &DeadLetter) -> Result<(), DbError> {
        self.execute(
            pg_sql::UPSERT_DEAD_LETTER,
            &[
                &letter.event_key,
                &letter.message_type,
                &letter.call_id,
                &letter.reason,
                &letter.headers,
                &letter.body,
            ],
        )
        .await
    }

    async fn insert_event_row(&mut self, row: &EventRow) -> Result<(), DbError> {
        let status = row.status as i16;
        self.execute(
            pg_sql::INSERT_EVENT_ROW,
            &[
                &row.message_type,
                &row.call_id,
                &row.org_id,
                &row.direction,
                &row.outcome,
                &status,
                &row.duration_ms,
                &row.error_class,
                &row.tenant,
            ],
        )
        .await
    }

    async fn pending_dead_letters(&mut self, limit: i64) -> Result<Vec<PendingLetter>, DbError> {
        let rows = self.rows(pg_sql::PENDING_DEAD_LETTERS, &[&limit]).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(PendingLetter {
                    id: row.try_get::<_, Option<i64>>(0).ok().flatten()?,
                    body: row.try_get::<_, Option<Vec<u8>>>(1).ok().flatten()?,
                    event_key: row
                        .try_get::<_, Option<String>>(2)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn mark_replayed(&mut self, id: i64, outcome: &str) -> Result<(), DbError> {
        self.execute(pg_sql::MARK_REPLAYED, &[&id, &outcome]).await
    }

    async fn count_pending_dead_letters(&mut self) -> Result<i64, DbError> {
        let rows = self.rows(pg_sql::COUNT_PENDING_DEAD_LETTERS, &[]).await?;
        Ok(rows.first().and_then(|r| r.try_get(0).ok()).unwrap_or(0))
    }

    async fn schema_version(&mut self) -> Result<Option<String>, DbError> {
        match self.rows(pg_sql::SCHEMA_VERSION, &[]).await {
            Ok(rows) => Ok(rows.first().and_then(|row| text(row, 0))),
            Err(error) if error.detail.starts_with("42P01") => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn put_tenant(&mut self, id: &str, config: &str) -> Result<(), DbError> {
        self.execute(pg_sql::PUT_TENANT, &[&id, &config]).await
    }

    async fn delete_tenant(&mut self, id: &str) -> Result<(), DbError> {
        self.execute(pg_sql::DELETE_TENANT, &[&id]).await
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the system's random source");
        nonce
    }

    async fn tenants(&mut self) -> Result<String, DbError> {
        let rows = self.rows(pg_sql::TENANTS, &[]).await?;
        Ok(rows
            .first()
            .and_then(|row| text(row, 0))
            .unwrap_or_else(|| "[]".into()))
    }

    async fn metrics_snapshot(&mut self) -> Result<String, DbError> {
        let rows = self.rows(pg_sql::METRICS_SNAPSHOT, &[]).await?;
        rows.first()
            .and_then(|row| text(row, 0))
            .ok_or_else(|| DbError::lasting("metrics query returned nothing"))
    }

    async fn read_json(&mut self, read: &Read) -> Result<Option<String>, DbError> {
        let params: Vec<Box<dyn ToSql + Sync + Send>> = read
            .params()
            .into_iter()
            .map(|param| -> Box<dyn ToSql + Sync + Send> {
                match param {
                    Param::Text(value) => Box::new(value),
                    Param::Int(n) => Box::new(n),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.rows(read.pg_query().sql, &refs).await?;
        Ok(rows.first().and_then(|row| text(row, 0)))
    }

    async fn send(&mut self, post: &OutboundRequest) -> Result<OutboundReply, OutboundError> {
        let mut request = match post.get {
            true => hyper::Request::get(&post.url),
            false => hyper::Request::post(&post.url),
        };
        for (name, value) in &post.headers {
            request = request.header(name.as_str(), value.as_slice());
        }
        let request = request
            .body(Full::new(Bytes::from(post.body.clone())))
            .map_err(|_| OutboundError::InvalidUrl("not a valid request target"))?;
        let exchange = async {
            let response = self
                .services
                .http
                .request(request)
                .await
                .map_err(|e| OutboundError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map_err(|_| OutboundError::TooLarge)?
                .to_bytes()
                .to_vec();
            Ok(OutboundReply {
                retry_after: None,
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(Duration::from_millis(post.timeout_ms), exchange)
            .await
            .map_err(|_| OutboundError::Timeout(post.timeout_ms))?
    }
}
