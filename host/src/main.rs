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
