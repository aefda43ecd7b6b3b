//! `vapi-edge-relay`: the dashboard relay on its own (the same as
//! `vapi-edge-host relay`, without wasmtime in its build).

use clap::Parser;

/// Accept the component's signed event notifications on POST /events and push
/// them to dashboards over SSE (GET /events/stream) and WebSocket (GET /ws),
/// each token seeing only its organisations. With --redis-url, replicas share
/// events through Redis.
#[derive(Parser)]
#[command(name = "vapi-edge-relay", version)]
struct Cli {
    #[command(flatten)]
    relay: vapi_edge_relay::RelayArgs,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = vapi_edge_relay::run(cli.relay).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
