//! `vapi-edge-host`: runs the vapi-edge component the way `spin up` does, on
//! wasmtime, with real PostgreSQL and an in-memory or Redis key-value store.

mod bindings;
mod kv;
mod log;
mod manifest;
mod migrate;
mod outbound;
mod pg;
mod runtime_config;
mod server;
mod state;

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage:
  vapi-edge-host up [--from spin.toml] [--listen 127.0.0.1:3000] [--runtime-config-file FILE]
                    [--request-timeout-ms 30000] [--max-memory-mb 128]
  vapi-edge-host migrate [--pg-url URL] [--from spin.toml] [--migrations DIR]
  vapi-edge-host sign [--secret S] [--timestamp UNIX_S] < body.json
  vapi-edge-host replay [--url http://127.0.0.1:3000] [--token ADMIN_TOKEN]

Variables come from SPIN_VARIABLE_<NAME> environment variables, as with `spin up`.";

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
        "migrate" => migrate(rest).await,
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
        ],
    )?;
    let manifest = PathBuf::from(flags.get("--from").unwrap_or("spin.toml"));
    let listen: SocketAddr = flags
        .get("--listen")
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .context("--listen must be an address like 127.0.0.1:3000")?;
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
    let app = manifest::load(&manifest, &env_var)?;
    let runtime = runtime_config::RuntimeConfig::load(
        flags.get("--runtime-config-file").map(std::path::Path::new),
    )?;
    let server = Arc::new(server::Server::new(&app, runtime, limits)?);
    tokio::select! {
        result = server.serve(listen) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn migrate(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args, &["--pg-url", "--from", "--migrations"])?;
    let manifest = PathBuf::from(flags.get("--from").unwrap_or("spin.toml"));
    let pg_url = match flags.get("--pg-url") {
        Some(url) => url.to_string(),
        None => env_var("SPIN_VARIABLE_PG_URL")
            .filter(|v| !v.is_empty())
            .context("no database given: pass --pg-url or set SPIN_VARIABLE_PG_URL")?,
    };
    let dir = match flags.get("--migrations") {
        Some(dir) => PathBuf::from(dir),
        None => manifest
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("migrations"),
    };
    let applied = migrate::run(&pg_url, &dir).await?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(())
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
        let replayed = report["replayed"].as_i64().unwrap_or(0);
        let remaining = report["remaining"].as_i64().unwrap_or(0);
        if remaining == 0 || replayed == 0 {
            return Ok(());
        }
    }
    Ok(())
}
