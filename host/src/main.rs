//! `vapi-edge-host`: runs the vapi-edge component the way `spin up` does, on
//! wasmtime, with real PostgreSQL or Spin's built-in SQLite, and Spin's
//! SQLite, Redis or an in-memory key-value store.
//!
//! Layers, each using only those before it: the services themselves
//! (`vapi_edge_backends`, plain Rust types) ← `bindings` (generated from WIT)
//! ← `outbound`, `state` ← `interfaces` (one module per WIT interface, which
//! converts) ← `server` ← the commands (`main`, `migrate`, `seed`, ...).
//! `host/tests/layering.rs` checks that no module imports a later one.

mod bindings;
mod instantiate_bench;
mod interfaces;
mod manifest;
mod migrate;
mod outbound;
mod runtime_config;
mod seed;
mod server;
mod state;

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage:
  vapi-edge-host up [--from spin.toml] [--listen 127.0.0.1:3000] [--runtime-config-file FILE]
                    [--request-timeout-ms 30000] [--max-memory-mb 128] [--instance-pool 256]
  vapi-edge-host bench-instantiate [--from spin.toml] [--runtime-config-file FILE]
                    [--count 1000] [--path /webhooks/vapi] [--max-memory-mb 128]
                    [--instance-pool 256]
  vapi-edge-host migrate [--pg-url URL] [--from spin.toml] [--migrations DIR]
  vapi-edge-host migrate [--from spin.toml] [--runtime-config-file FILE | --sqlite PATH]
                         [--migrations DIR]
  vapi-edge-host seed-agent --org-id UUID --assistant-id ID [--name NAME] [--role receptionist]
                            [--line +E164] [--pg-url URL | --sqlite PATH] [--from spin.toml]
  vapi-edge-host sign [--secret S] [--timestamp UNIX_S] < body.json
  vapi-edge-host replay [--url http://127.0.0.1:3000] [--token ADMIN_TOKEN]

Variables come from SPIN_VARIABLE_<NAME> environment variables, as with `spin up`.

migrate applies migrations/*.sql to PostgreSQL (--pg-url, else SPIN_VARIABLE_PG_URL).
Without a PostgreSQL URL, or with --sqlite, it applies migrations/sqlite/*.sql to the
SQLite database `default` where `up` would find it: the runtime config's
[sqlite_database.default] path, else .spin/sqlite_db.db beside spin.toml; --sqlite
names the file itself. --migrations replaces the folder in either case.

seed-agent adds an organisation's agent (or updates the one with that role) to the same
database migrate would choose; --line also makes it answer assistant-requests for that number.

--instance-pool N reserves N instances in wasmtime's pooling allocator: at most N requests
run in the component at once, the others wait for a free slot. 0 allocates each instance
on demand instead (no limit, more work per request).

bench-instantiate times what `up` does per request before the guest runs (a fresh store,
WASI and HTTP contexts, instantiation) and the drop of the store, COUNT times in a row on
the real component, and prints mean, p50, p99 and max.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    if let Err(error) = runtime.block_on(run(args)) {
        // One clear line, not a backtrace: the chain of contexts, outermost first.
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// Flags of the form `--name value`; every flag takes a value.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Self> {
        let mut flags = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "-h" || arg == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if !known.contains(&name.as_str()) {
                bail!("unknown argument `{arg}`\n{USAGE}");
            }
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .with_context(|| format!("{name} needs a value"))?
                    .clone(),
            };
            flags.push((name, value));
        }
        Ok(Flags(flags))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn run(args: Vec<String>) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("no command given\n{USAGE}");
    };
    match command.as_str() {
        "up" => up(rest).await,
        "bench-instantiate" => bench_instantiate(rest).await,
        "migrate" => migrate(rest).await,
        "seed-agent" => seed_agent(rest).await,
        "sign" => sign(rest),
        "replay" => replay(rest).await,
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn up(args: &[String]) -> Result<()> {
    let flags = Flags::parse(
        args,
        &[
            "--from",
            "--listen",
            "--runtime-config-file",
            "--request-timeout-ms",
            "--max-memory-mb",
            "--instance-pool",
        ],
    )?;
    let listen: SocketAddr = flags
        .get("--listen")
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .context("--listen must be an address like 127.0.0.1:3000")?;
    let server = Arc::new(load_server(&flags)?);
    tokio::select! {
        result = server.serve(listen) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn bench_instantiate(args: &[String]) -> Result<()> {
    let flags = Flags::parse(
        args,
        &[
            "--from",
            "--runtime-config-file",
            "--max-memory-mb",
            "--instance-pool",
            "--count",
            "--path",
        ],
    )?;
    let count: usize = flags
        .get("--count")
        .unwrap_or("1000")
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .context("--count must be a positive number")?;
    let server = load_server(&flags)?;
    let path = flags.get("--path").unwrap_or("/webhooks/vapi");
    instantiate_bench::run(&server, path, count).await
}

/// The app of `--from`, compiled and linked with the limits of the flags.
fn load_server(flags: &Flags) -> Result<server::Server> {
    let manifest = PathBuf::from(flags.get("--from").unwrap_or("spin.toml"));
    let mut limits = server::Limits::default();
    if let Some(ms) = flags.get("--request-timeout-ms") {
        let ms: u64 = ms
            .parse()
            .context("--request-timeout-ms must be a number")?;
        limits.request_timeout = Duration::from_millis(ms);
    }
    if let Some(mb) = flags.get("--max-memory-mb") {
        let mb: usize = mb.parse().context("--max-memory-mb must be a number")?;
        limits.max_memory_bytes = mb << 20;
    }
    if let Some(n) = flags.get("--instance-pool") {
        limits.instance_pool = n
            .parse()
            .context("--instance-pool must be a number (0: no pool)")?;
    }
    let app = manifest::load(&manifest, &env_var)?;
    let runtime = runtime_config::RuntimeConfig::load(
        flags.get("--runtime-config-file").map(std::path::Path::new),
    )?;
    server::Server::new(&app, runtime, limits)
}

/// The flags that name a database, shared by `migrate` and `seed-agent`.
const DATABASE_FLAGS: [&str; 4] = ["--pg-url", "--from", "--runtime-config-file", "--sqlite"];

/// The database a command works on: PostgreSQL when a URL is given
/// (`--pg-url`, else `SPIN_VARIABLE_PG_URL`), otherwise the SQLite database
/// `default` where `up` would find it, or the file `--sqlite` names.
enum Database {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl Database {
    fn from_flags(flags: &Flags, app_dir: &Path) -> Result<Database> {
        let sqlite_file = flags.get("--sqlite").map(PathBuf::from);
        if sqlite_file.is_some() && flags.get("--pg-url").is_some() {
            bail!("pass --pg-url or --sqlite, not both");
        }
        let pg_url = flags
            .get("--pg-url")
            .map(str::to_string)
            .or_else(|| env_var("SPIN_VARIABLE_PG_URL"))
            .filter(|url| !url.is_empty());
        Ok(match (sqlite_file, pg_url) {
            (Some(path), _) => Database::Sqlite { path },
            (None, Some(url)) => Database::Postgres { url },
            (None, None) => Database::Sqlite {
                path: default_sqlite_file(app_dir, flags.get("--runtime-config-file"))?,
            },
        })
    }
}

fn app_dir(flags: &Flags) -> PathBuf {
    let manifest = PathBuf::from(flags.get("--from").unwrap_or("spin.toml"));
    manifest.parent().unwrap_or(Path::new(".")).to_path_buf()
}

async fn migrate(args: &[String]) -> Result<()> {
    let known: Vec<&str> = DATABASE_FLAGS
        .iter()
        .copied()
        .chain(["--migrations"])
        .collect();
    let flags = Flags::parse(args, &known)?;
    let app_dir = app_dir(&flags);
    let folder = |default: PathBuf| match flags.get("--migrations") {
        Some(dir) => PathBuf::from(dir),
        None => default,
    };
    let applied = match Database::from_flags(&flags, &app_dir)? {
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

/// Adds (or updates) an organisation's agent, and optionally the line it
/// answers, so a newcomer can send a signed test webhook to a local run.
async fn seed_agent(args: &[String]) -> Result<()> {
    let known: Vec<&str> = DATABASE_FLAGS
        .iter()
        .copied()
        .chain(["--org-id", "--assistant-id", "--name", "--role", "--line"])
        .collect();
    let flags = Flags::parse(args, &known)?;
    let agent = seed::Agent {
        org_id: flags
            .get("--org-id")
            .context("--org-id is required")?
            .to_string(),
        assistant_id: flags
            .get("--assistant-id")
            .context("--assistant-id is required")?
            .to_string(),
        name: flags.get("--name").unwrap_or("Receptionist").to_string(),
        role: flags.get("--role").unwrap_or("receptionist").to_string(),
        line: flags.get("--line").map(str::to_string),
    };
    let id = match Database::from_flags(&flags, &app_dir(&flags))? {
        Database::Postgres { url } => seed::postgres(&url, &agent).await?,
        Database::Sqlite { path } => seed::sqlite(&path, &agent)?,
    };
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
fn default_sqlite_file(app_dir: &Path, runtime_config: Option<&str>) -> Result<PathBuf> {
    let runtime = runtime_config::RuntimeConfig::load(runtime_config.map(Path::new))?;
    match runtime.sqlite_location("default", app_dir) {
        Some(vapi_edge_backends::sqlite::SqliteLocation::File(path)) => Ok(path),
        _ => bail!(
            "the SQLite database `default` is in memory (no `path` in [sqlite_database.default]): nothing to migrate"
        ),
    }
}

/// Prints the headers Vapi's HMAC credential would send for the body on stdin,
/// as configured by the same `SPIN_VARIABLE_VAPI_*` variables the component reads.
fn sign(args: &[String]) -> Result<()> {
    use std::io::Read;
    use vapi_edge_core::verify::VerifyConfig;
    let flags = Flags::parse(args, &["--secret", "--timestamp"])?;
    let secret = flags.get("--secret").map(str::to_string);
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
    let timestamp = match flags.get("--timestamp") {
        Some(t) => t.to_string(),
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
async fn replay(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args, &["--url", "--token"])?;
    let base = flags.get("--url").unwrap_or("http://127.0.0.1:3000");
    let token = match flags.get("--token") {
        Some(token) => token.to_string(),
        None => env_var("SPIN_VARIABLE_ADMIN_TOKEN")
            .filter(|v| !v.is_empty())
            .context("no admin token: pass --token or set SPIN_VARIABLE_ADMIN_TOKEN")?,
    };
    let uri: hyper::Uri = format!("{}/admin/replay", base.trim_end_matches('/'))
        .parse()
        .context("--url must look like http://host:port")?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http:// (for https, call POST /admin/replay with curl)");
    }
    let authority = uri.authority().context("--url needs a host")?.to_string();
    // Each call replays a batch; stop when nothing is left or a round makes no progress.
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
                "replay refused: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&body)?;
        println!("round {round}: {report}");
        let count = |name: &str| report[name].as_i64().unwrap_or(0);
        let left = count("remaining") > 0 || count("parked_in_key_value") > 0;
        let progress = count("replayed") > 0 || count("moved_from_key_value") > 0;
        if !left || !progress {
            return Ok(());
        }
    }
    Ok(())
}
