//! `vapi-edge-host`: runs the vapi-edge component the way `spin up` does, on
//! wasmtime, with real PostgreSQL or Spin's built-in SQLite, and Spin's
//! SQLite, Redis or an in-memory key-value store.
//!
//! Layers, each using only those before it: the services themselves
//! (`vapi_edge_backends`, plain Rust types) ← `bindings` (generated from WIT)
//! ← `outbound`, `state` ← `interfaces` (one module per WIT interface, which
//! converts) ← `server` ← the commands (`main`, `migrate`, `seed`, ...).
//! `vapi-edge-host relay` is the relay crate's (`crates/relay`), which knows
//! nothing of wasmtime.
//! `host/tests/it/layering.rs` checks that no module imports a later one.

mod bindings;
mod instantiate_bench;
mod interfaces;
mod manifest;
mod mapping;
mod migrate;
mod outbound;
mod prune;
mod runtime_config;
mod seed;
mod server;
mod state;
mod tenants;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// jemalloc rather than glibc's malloc: a request allocates and frees many
/// small objects across the runtime's threads (hyper, wasmtime's store and
/// resource tables, the database clients), where glibc's allocator was ~11%
/// of the server's CPU. jemalloc took 10-17% off the server's CPU per request
/// (BENCHMARKS.md, "The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): one arena per CPU, not jemalloc's
/// default of four per CPU, which kept 94-128 MiB resident at peak over a
/// benchmark run where this keeps 77-82 (glibc: 88-90), for the same CPU per
/// request.
#[cfg(all(not(target_env = "msvc"), target_os = "linux"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"percpu_arena:percpu\0";

/// Runs the vapi-edge component the way `spin up` does. Variables come from
/// SPIN_VARIABLE_<NAME> environment variables, as with `spin up`.
#[derive(Parser, Debug)]
#[command(name = "vapi-edge-host", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the app of spin.toml over HTTP.
    Up {
        #[command(flatten)]
        app: AppArgs,
        /// Where to serve (port 0: any free port, named in the `listening` line).
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        #[command(flatten)]
        limits: LimitArgs,
        /// On SIGTERM or SIGINT: stop accepting, then give in-flight requests
        /// (and their event rows and relay notifications) this long to finish.
        #[arg(long, default_value_t = 10_000)]
        shutdown_grace_ms: u64,
    },
    /// Time what `up` does per request before the guest runs (a fresh store,
    /// WASI and HTTP contexts, instantiation) and the drop of the store, COUNT
    /// times in a row on the real component; print mean, p50, p99 and max.
    BenchInstantiate {
        #[command(flatten)]
        app: AppArgs,
        #[command(flatten)]
        limits: LimitArgs,
        /// How many instantiations to time.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// The request path each instance is prepared for (it picks the route).
        #[arg(long, default_value = "/webhooks/vapi")]
        path: String,
    },
    /// Apply migrations/*.sql to PostgreSQL (--pg-url, else SPIN_VARIABLE_PG_URL);
    /// without one, or with --sqlite, apply migrations/sqlite/*.sql to the
    /// SQLite database `default` where `up` would find it (the runtime
    /// config's [sqlite_database.default] path, else .spin/sqlite_db.db
    /// beside spin.toml). Running it twice is harmless.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Another folder of migrations.
        #[arg(long)]
        migrations: Option<PathBuf>,
    },
    /// Add an organisation's agent (or update the one with that role) to the
    /// database `migrate` would choose; --line also makes it answer
    /// assistant-requests for that number.
    SeedAgent {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The organisation the agent belongs to (a UUID).
        #[arg(long)]
        org_id: String,
        /// The Vapi assistant the agent is (call.assistantId).
        #[arg(long)]
        assistant_id: String,
        /// The agent's name, as the dashboard shows it.
        #[arg(long, default_value = "Receptionist")]
        name: String,
        /// The agent's role in its organisation: one agent per role.
        #[arg(long, default_value = "receptionist")]
        role: String,
        /// The E.164 number the agent answers.
        #[arg(long)]
        line: Option<String>,
        /// The tenant whose webhooks it answers (`vapi-edge-host tenant`);
        /// omitted: the single-tenant route's.
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Map Vapi's organisation id (call.orgId) to an organisation, in the
    /// database `migrate` would choose: that Vapi organisation's calls are
    /// then owned by it (when no assistant, squad, workflow or line says
    /// otherwise), and its calls recorded without an organisation are
    /// attributed to it now. Prints the counts as JSON.
    MapOrg {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Vapi's organisation id, as in call.orgId.
        #[arg(long)]
        vapi_org_id: String,
        /// This product's organisation (a UUID).
        #[arg(long)]
        org_id: String,
        /// The tenant whose calls it maps; omitted: the single-tenant route's.
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// The tenants of this deployment (README, "Tenants"): each a Vapi
    /// organisation's server URL, /webhooks/vapi/{id}, with its own
    /// credential and settings, in the database `migrate` would choose. A
    /// change applies on every replica within tenant_cache_ms.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Say which organisation owns a phone line, which agent role answers its
    /// assistant-requests, and what answers them when neither that agent nor
    /// the upstream does.
    MapLine {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The line's number (E.164, or national in --country).
        #[arg(long)]
        number: String,
        /// This product's organisation (a UUID).
        #[arg(long)]
        org_id: String,
        /// Vapi's id of the phone number (call.phoneNumberId), kept as it is
        /// when omitted.
        #[arg(long)]
        vapi_phone_number_id: Option<String>,
        /// The role of the organisation's agent that answers the line
        /// (receptionist for a new line; kept as it is when omitted).
        #[arg(long)]
        role: Option<String>,
        /// A saved Vapi assistant that answers when the agent and the
        /// upstream do not (e.g. the upstream is down or slow).
        #[arg(long, conflicts_with_all = ["fallback_number", "no_fallback"])]
        fallback_assistant_id: Option<String>,
        /// A number the call is transferred to instead.
        #[arg(long, conflicts_with = "no_fallback")]
        fallback_number: Option<String>,
        /// Remove the line's fallback.
        #[arg(long)]
        no_fallback: bool,
        /// The country of a number written without its country code.
        #[arg(long, default_value = "US")]
        country: String,
        /// The tenant whose calls the line's are; omitted: the single-tenant
        /// route's.
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Print the headers Vapi's HMAC credential would send for the body on
    /// stdin, as the SPIN_VARIABLE_VAPI_* variables configure it.
    Sign {
        /// The HMAC secret (else SPIN_VARIABLE_VAPI_HMAC_SECRET).
        #[arg(long)]
        secret: Option<String>,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<String>,
    },
    /// Run the dashboard relay: accept the component's signed event
    /// notifications on POST /events and push them to dashboards over SSE
    /// (GET /events/stream) and WebSocket (GET /ws), each token seeing only
    /// its organisations. With --redis-url, replicas share events through Redis.
    /// The same as the `vapi-edge-relay` binary.
    Relay(vapi_edge_relay::RelayArgs),
    /// Delete what only grows: delivery records (webhook_events) and replayed
    /// dead letters older than --keep-days, idempotency records older than
    /// --keep-keys-days (never one with a pending dead letter), in batches.
    /// Calls, leads and agents are never deleted. Prints the counts as JSON.
    Prune {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Delete delivery records and replayed dead letters older than this.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
        keep_days: u32,
        /// Keep idempotency records longer than Vapi may retry and than you
        /// would replay a dead letter: an event whose record is gone is
        /// recorded again if it is delivered again.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
        keep_keys_days: u32,
        /// Rows deleted per statement, so that no statement holds locks long.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
    },
    /// Drain dead letters through a running service's POST /admin/replay.
    Replay {
        /// The running service (its POST /admin/replay).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The admin token (else SPIN_VARIABLE_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Reconcile with Vapi's API through a running service's POST
    /// /admin/reconcile: run after run until it has caught up (README,
    /// "Reconciliation").
    Reconcile {
        /// The running service (its POST /admin/reconcile).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The admin token (else SPIN_VARIABLE_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// A tenant's id: reconcile that tenant's Vapi organisation.
        #[arg(long)]
        tenant: Option<String>,
        /// Start over at this time (RFC 3339): a backfill.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum TenantAction {
    /// Create or change a tenant: each NAME=VALUE sets one of the variables a
    /// tenant has (an empty VALUE unsets it; NAME=- reads the value from
    /// stdin). Bearer secrets are kept hashed, HMAC and upstream secrets
    /// sealed with SPIN_VARIABLE_TENANT_SECRETS_KEY.
    Set {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The tenant's id: its server URL is /webhooks/vapi/{id}.
        id: String,
        #[arg(value_name = "NAME=VALUE")]
        variables: Vec<String>,
        /// Refuse the tenant's webhooks (403) until --enable.
        #[arg(long)]
        disable: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
    },
    /// Print a tenant (secrets only as "(sealed)" or "(N hashed)").
    Show {
        #[command(flatten)]
        database: DatabaseArgs,
        id: String,
    },
    /// Print every tenant, one JSON line each.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Delete a tenant; its calls and mappings stay.
    Remove {
        #[command(flatten)]
        database: DatabaseArgs,
        id: String,
    },
    /// Reseal every tenant's secrets with the first key of
    /// SPIN_VARIABLE_TENANT_SECRETS_KEY (after putting a new key first).
    Rekey {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Which app, and where its services are configured.
#[derive(Args, Debug)]
struct AppArgs {
    /// The app's manifest, as `spin up --from`: a spin.toml, or the folder
    /// that holds one.
    #[arg(long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// The services' configuration (key-value stores, SQLite databases), as
    /// `spin up --runtime-config-file`; relative paths in it are relative to it.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
}

/// The limits of each request and of the instance pool.
#[derive(Args, Debug)]
struct LimitArgs {
    /// Longest a request may run, guest and host calls together. Default:
    /// what the component's manifest sets
    /// ([component.<id>.tool.vapi-edge-host] request_timeout_ms), else 30000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: Option<u64>,
    /// Largest linear memory a guest may grow to.
    #[arg(long, default_value_t = 128)]
    max_memory_mb: usize,
    /// Instances wasmtime's pooling allocator reserves: at most N requests run
    /// in the component at once, the others wait for a slot; 0 allocates each
    /// instance on demand instead (no limit, more work per request).
    #[arg(long, default_value_t = 256)]
    instance_pool: u32,
    /// Connections open at once; more wait in the listen backlog. Lowered to
    /// the open-file limit less 64.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Longest wait for a request's head, and for the next request on an idle
    /// keep-alive connection (then the connection is closed).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Longest wait for a request's whole body, from its head (408 after).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// Largest request body read (413 beyond, before it is read). Default:
    /// what the component's manifest sets ([component.<id>.tool.vapi-edge-host]
    /// max_body_bytes), else 16.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_body_mb: Option<u64>,
    /// Memory for request bodies being read, all connections together: a
    /// body that does not fit gets 503 with retry-after before it is read. A
    /// quarter is kept for bodies of up to 64 KiB (Vapi's messages).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    body_budget_mb: u64,
}

/// The database a command works on.
#[derive(Args, Debug)]
struct DatabaseArgs {
    /// PostgreSQL (else SPIN_VARIABLE_PG_URL).
    #[arg(long, conflicts_with = "sqlite")]
    pg_url: Option<String>,
    /// A SQLite file.
    #[arg(long)]
    sqlite: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
}

fn main() {
    let cli = Cli::parse();
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
    if let Err(error) = runtime.block_on(run(cli.command)) {
        // One clear line, not a backtrace: the chain of contexts, outermost first.
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// Resolves with the signal's name on the first SIGTERM (Kubernetes, systemd,
/// Docker) or SIGINT (Ctrl-C).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Up {
            app,
            listen,
            limits,
            shutdown_grace_ms,
        } => {
            let server = Arc::new(load_server(&app, &limits)?);
            let grace = Duration::from_millis(shutdown_grace_ms);
            server.serve(listen, stop_signal(), grace).await
        }
        Command::BenchInstantiate {
            app,
            limits,
            count,
            path,
        } => {
            let server = load_server(&app, &limits)?;
            instantiate_bench::run(&server, &path, count as usize).await
        }
        Command::Migrate {
            database,
            migrations,
        } => migrate(database, migrations).await,
        Command::SeedAgent {
            database,
            org_id,
            assistant_id,
            name,
            role,
            line,
            tenant,
        } => {
            let agent = seed::Agent {
                org_id,
                assistant_id,
                name,
                role,
                line,
                tenant: mapping::tenant_of(&tenant)?,
            };
            seed_agent(database, agent).await
        }
        Command::MapOrg {
            database,
            vapi_org_id,
            org_id,
            tenant,
        } => {
            let mapping = mapping::OrgMapping::new(&vapi_org_id, &org_id, &tenant)?;
            let (store, attributed) = match database.database()? {
                Database::Postgres { url } => {
                    ("postgres", mapping::map_org_postgres(&url, &mapping).await?)
                }
                Database::Sqlite { path } => ("sqlite", mapping::map_org_sqlite(&path, &mapping)?),
            };
            println!(
                "{}",
                serde_json::json!({
                    "database": store,
                    "vapi_org_id": mapping.vapi_org_id,
                    "org_id": mapping.org_id,
                    "attributed": attributed,
                })
            );
            Ok(())
        }
        Command::MapLine {
            database,
            number,
            org_id,
            vapi_phone_number_id,
            role,
            fallback_assistant_id,
            fallback_number,
            no_fallback,
            country,
            tenant,
        } => {
            let line = mapping::LineMapping::new(mapping::LineArgs {
                tenant: &tenant,
                number: &number,
                org_id: &org_id,
                vapi_phone_number_id: vapi_phone_number_id.as_deref(),
                role: role.as_deref(),
                fallback_assistant_id: fallback_assistant_id.as_deref(),
                fallback_number: fallback_number.as_deref(),
                no_fallback,
                country: &country,
            })?;
            let store = match database.database()? {
                Database::Postgres { url } => {
                    mapping::map_line_postgres(&url, &line).await?;
                    "postgres"
                }
                Database::Sqlite { path } => {
                    mapping::map_line_sqlite(&path, &line)?;
                    "sqlite"
                }
            };
            println!(
                "line {} of organisation {} written to {store}",
                vapi_edge_core::phone::mask(&line.number),
                line.org_id
            );
            Ok(())
        }
        Command::Tenant { action } => tenant_command(action).await,
        Command::Sign { secret, timestamp } => sign(secret, timestamp),
        Command::Replay { url, token } => replay(&url, token).await,
        Command::Reconcile {
            url,
            token,
            tenant,
            from,
        } => reconcile(&url, token, tenant.as_deref(), from.as_deref()).await,
        Command::Relay(args) => vapi_edge_relay::run(args).await,
        Command::Prune {
            database,
            keep_days,
            keep_keys_days,
            batch,
        } => {
            let database = database.database()?;
            let tenants = match &database {
                Database::Postgres { url } => tenants::list_postgres(url).await?,
                Database::Sqlite { path } => tenants::list_sqlite(path)?,
            };
            let tenant_days = tenants
                .into_iter()
                .filter_map(|(id, stored)| {
                    let days = stored
                        .variables
                        .get(vapi_edge_core::tenant::RETENTION_DAYS)?;
                    Some((id, vapi_edge_core::tenant::retention_days(days)?))
                })
                .collect();
            let retention = prune::Retention {
                keep_days,
                keep_keys_days,
                batch,
                tenant_days,
            };
            let pruned = match database {
                Database::Postgres { url } => prune::postgres(&url, &retention).await?,
                Database::Sqlite { path } => prune::sqlite(&path, &retention)?,
            };
            println!("{}", serde_json::to_string(&pruned)?);
            Ok(())
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The app of `--from`, compiled and linked with these limits.
fn load_server(app: &AppArgs, limits: &LimitArgs) -> Result<server::Server> {
    let limits = server::Limits {
        request_timeout: limits.request_timeout_ms.map(Duration::from_millis),
        max_memory_bytes: limits.max_memory_mb << 20,
        instance_pool: limits.instance_pool,
        max_connections: usize::try_from(limits.max_connections).unwrap_or(usize::MAX),
        header_timeout: Duration::from_millis(limits.header_timeout_ms),
        body_timeout: Duration::from_millis(limits.body_timeout_ms),
        max_body_bytes: limits.max_body_mb.map(|mb| mb << 20),
        body_budget_bytes: limits.body_budget_mb << 20,
    };
    let manifest = manifest::load(&app.manifest, &env_var)?;
    let runtime = runtime_config::RuntimeConfig::load(app.runtime_config_file.as_deref())?;
    server::Server::new(&manifest, runtime, limits)
}

/// The database a command works on: PostgreSQL when a URL is given
/// (`--pg-url`, else `SPIN_VARIABLE_PG_URL`), otherwise the SQLite database
/// `default` where `up` would find it, or the file `--sqlite` names.
enum Database {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl Database {
    /// Which database, for a message: the engine, and PostgreSQL's host,
    /// port and database name (never the user or password) or SQLite's file.
    fn describe(&self) -> String {
        match self {
            Database::Postgres { url } => match url.parse::<tokio_postgres::Config>() {
                Ok(config) => {
                    let host = match config.get_hosts().first() {
                        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                        Some(tokio_postgres::config::Host::Unix(path)) => {
                            path.display().to_string()
                        }
                        None => "localhost".into(),
                    };
                    let port = config.get_ports().first().copied().unwrap_or(5432);
                    let name = config.get_dbname().unwrap_or("postgres");
                    format!("PostgreSQL {host}:{port}/{name}")
                }
                Err(_) => "PostgreSQL".into(),
            },
            Database::Sqlite { path } => format!("SQLite {}", path.display()),
        }
    }
}

impl DatabaseArgs {
    /// The app's folder: `--from` when it names one, else its manifest's.
    fn app_dir(&self) -> PathBuf {
        let manifest = &self.app.manifest;
        if manifest.is_dir() {
            return manifest.clone();
        }
        manifest.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    fn database(&self) -> Result<Database> {
        let pg_url = self
            .pg_url
            .clone()
            .or_else(|| env_var("SPIN_VARIABLE_PG_URL"))
            .filter(|url| !url.is_empty());
        Ok(match (&self.sqlite, pg_url) {
            (Some(path), _) => Database::Sqlite { path: path.clone() },
            (None, Some(url)) => Database::Postgres { url },
            (None, None) => Database::Sqlite {
                path: default_sqlite_file(
                    &self.app_dir(),
                    self.app.runtime_config_file.as_deref(),
                )?,
            },
        })
    }
}

async fn migrate(database: DatabaseArgs, migrations: Option<PathBuf>) -> Result<()> {
    let app_dir = database.app_dir();
    let folder = |default: PathBuf| migrations.clone().unwrap_or(default);
    let applied = match database.database()? {
        Database::Postgres { url } => {
            migrate::run(&url, &folder(app_dir.join("migrations"))).await?
        }
        Database::Sqlite { path } => {
            migrate::run_sqlite(&path, &folder(app_dir.join("migrations").join("sqlite")))?
        }
    };
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(())
}

async fn tenant_command(action: TenantAction) -> Result<()> {
    use tenants::Change;
    let show = |id: &str, stored: &vapi_edge_core::tenant::Stored| {
        let mut shown = stored.describe();
        shown["id"] = id.into();
        shown["url_path"] = format!("{}{id}", vapi_edge_core::app::TENANT_WEBHOOKS).into();
        println!("{shown}");
    };
    async fn change(
        database: &DatabaseArgs,
        id: &str,
        change: &Change,
    ) -> Result<Option<vapi_edge_core::tenant::Stored>> {
        match database.database()? {
            Database::Postgres { url } => tenants::change_postgres(&url, id, change).await,
            Database::Sqlite { path } => tenants::change_sqlite(&path, id, change),
        }
    }
    async fn list(
        database: &DatabaseArgs,
    ) -> Result<Vec<(String, vapi_edge_core::tenant::Stored)>> {
        match database.database()? {
            Database::Postgres { url } => tenants::list_postgres(&url).await,
            Database::Sqlite { path } => tenants::list_sqlite(&path),
        }
    }
    match action {
        TenantAction::Set {
            database,
            id,
            variables,
            disable,
            enable,
        } => {
            let set = Change::Set {
                assignments: tenants::assignments(&variables)?,
                disabled: (disable || enable).then_some(disable),
            };
            if let Some(stored) = change(&database, &id, &set).await? {
                show(&id, &stored);
            }
        }
        TenantAction::Show { database, id } => {
            match list(&database).await?.into_iter().find(|(i, _)| *i == id) {
                Some((id, stored)) => show(&id, &stored),
                None => bail!("no tenant {id}"),
            }
        }
        TenantAction::List { database } => {
            for (id, stored) in list(&database).await? {
                show(&id, &stored);
            }
        }
        TenantAction::Remove { database, id } => {
            change(&database, &id, &Change::Remove).await?;
            println!("tenant {id} removed; its calls and mappings stay");
        }
        TenantAction::Rekey { database } => {
            let ids: Vec<String> = list(&database)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            for id in &ids {
                change(&database, id, &Change::Rekey).await?;
            }
            println!("{} tenants resealed with the first key", ids.len());
        }
    }
    Ok(())
}

/// Adds (or updates) an organisation's agent, and optionally the line it
/// answers, so a newcomer can send a signed test webhook to a local run.
async fn seed_agent(database: DatabaseArgs, agent: seed::Agent) -> Result<()> {
    let database = database.database()?;
    let id = match &database {
        Database::Postgres { url } => seed::postgres(url, &agent).await?,
        Database::Sqlite { path } => seed::sqlite(path, &agent)?,
    };
    // Which database: a terminal without SPIN_VARIABLE_PG_URL seeds SQLite,
    // and a service on PostgreSQL would then not know the agent.
    println!("written to {}", database.describe());
    println!(
        "agent {id} ({}, role {}) of organisation {} answers assistant {}{}",
        agent.name,
        agent.role,
        agent.org_id,
        agent.assistant_id,
        agent
            .line
            .as_deref()
            .map(|line| format!(" and inbound calls to {line}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The file of the SQLite database `default`, as `up` would resolve it.
fn default_sqlite_file(app_dir: &Path, runtime_config: Option<&Path>) -> Result<PathBuf> {
    let runtime = runtime_config::RuntimeConfig::load(runtime_config)?;
    match runtime.sqlite_location("default", app_dir) {
        Some(vapi_edge_backends::sqlite::SqliteLocation::File(path)) => Ok(path),
        _ => bail!(
            "the SQLite database `default` is in memory (no `path` in [sqlite_database.default]): nothing to migrate"
        ),
    }
}

/// Prints the headers Vapi's HMAC credential would send for the body on stdin,
/// as configured by the same `SPIN_VARIABLE_VAPI_*` variables the component reads.
fn sign(secret: Option<String>, timestamp: Option<String>) -> Result<()> {
    use std::io::Read;
    use vapi_edge_core::verify::VerifyConfig;
    let lookup = |name: &str| -> Option<String> {
        if name == "vapi_hmac_secret" {
            if let Some(secret) = &secret {
                return Some(secret.clone());
            }
        }
        env_var(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())).filter(|v| !v.is_empty())
    };
    let config = VerifyConfig::from_variables(lookup).context("invalid verification settings")?;
    let scheme = config
        .hmac
        .context("no HMAC secret: pass --secret or set SPIN_VARIABLE_VAPI_HMAC_SECRET")?;
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("cannot read the body from stdin")?;
    let timestamp = match timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            .to_string(),
    };
    let signature = scheme
        .sign(&timestamp, &body)
        .context("no usable HMAC secret")?;
    println!("content-type: application/json");
    println!("{}: {signature}", scheme.signature_header);
    if let Some(header) = &scheme.timestamp_header {
        println!("{header}: {timestamp}");
    }
    Ok(())
}

/// Drains dead letters through a running service's `POST /admin/replay`.
async fn replay(base: &str, token: Option<String>) -> Result<()> {
    drive(base, "/admin/replay", token, |report| {
        let count = |name: &str| report[name].as_i64().unwrap_or(0);
        let left = count("remaining") > 0 || count("parked_in_key_value") > 0;
        let progress = count("replayed") > 0 || count("moved_from_key_value") > 0;
        left && progress
    })
    .await
}

/// Reconciles through a running service's `POST /admin/reconcile[/{tenant}]`
/// until a run says it has caught up (`"more": false`).
async fn reconcile(
    base: &str,
    token: Option<String>,
    tenant: Option<&str>,
    from: Option<&str>,
) -> Result<()> {
    let mut path = match tenant {
        Some(id) => format!("/admin/reconcile/{id}"),
        None => "/admin/reconcile".to_string(),
    };
    if let Some(from) = from {
        if vapi_edge_core::json::iso_to_ms(from).is_none() {
            bail!("--from must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
        }
        path.push_str(&format!(
            "?from={}",
            vapi_edge_core::http::percent_encode(from)
        ));
    }
    // `from` restarts the walk once ([`drive`] sends it with the first
    // round only); the runs after it go on from there.
    drive(base, &path, token, |report| {
        report["more"].as_bool() == Some(true)
    })
    .await
}

/// Calls a running service's admin route `path` (POST, the admin token) round
/// after round, printing each answer, while `again` says so (at most 1000
/// rounds). A refusal is an error with the service's answer.
async fn drive(
    base: &str,
    path: &str,
    token: Option<String>,
    mut again: impl FnMut(&serde_json::Value) -> bool,
) -> Result<()> {
    let token = match token {
        Some(token) => token,
        None => env_var("SPIN_VARIABLE_ADMIN_TOKEN")
            .filter(|v| !v.is_empty())
            .context("no admin token: pass --token or set SPIN_VARIABLE_ADMIN_TOKEN")?,
    };
    let route = path.split('?').next().unwrap_or(path);
    let mut uri: hyper::Uri = format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .context("--url must look like http://host:port")?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http:// (for https, call POST {route} with curl)");
    }
    let authority = uri.authority().context("--url needs a host")?.to_string();
    for round in 1..=1000 {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::post(uri.clone())
            .header(hyper::header::HOST, &authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        if !status.is_success() {
            bail!(
                "{route} refused: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&body)?;
        println!("round {round}: {report}");
        if !again(&report) {
            return Ok(());
        }
        // A query (a restart) applies to the first round only.
        uri = format!("{}{route}", base.trim_end_matches('/')).parse()?;
    }
    Ok(())
}
