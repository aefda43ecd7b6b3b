//! `vapi-edge-host bench-instantiate`: what a request costs before the guest
//! runs, on the real component with the real per-request set-up (`up`'s own
//! `Server::prepare` and pre-instance), and what dropping its store costs.

use crate::server::Server;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Unmeasured rounds first (slot reuse, allocator and caches settle); a fixed
/// number, so two runs under callgrind differ by exactly their `count`s.
const WARMUP_ROUNDS: usize = 100;

/// Instantiates `count` times one after another, after the warm-up, and
/// prints mean / p50 / p99 / max of each phase.
pub async fn run(server: &Server, path: &str, count: usize) -> Result<()> {
    let route = server
        .route_for(path)
        .with_context(|| format!("no route serves {path}"))?
        .clone();
    if let Some((needs, slots)) = server.footprint(&route.component) {
        println!(
            "component `{}`: {} linear memory(ies), largest initial {} x 64 KiB; {} table(s), largest initial {} elements; instances: {}",
            route.component,
            needs.num_memories,
            needs.max_initial_memory_size.unwrap_or(0),
            needs.num_tables,
            needs.max_initial_table_size.unwrap_or(0),
            slots.map_or("on demand".to_string(), |n| format!("pool of {n}")),
        );
    }
    let client: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let mut entered = Vec::with_capacity(count);
    let mut dropped = Vec::with_capacity(count);
    for round in 0..WARMUP_ROUNDS + count {
        let request = hyper::Request::post(format!("http://127.0.0.1:3000{path}"))
            .header(hyper::header::HOST, "127.0.0.1:3000")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
            )?;
        // "The request has arrived": from here on is what `run` does per request.
        let arrived = Instant::now();
        let slot = server.instance_slot().await;
        let mut prepared = server.prepare(&route.component, &route, request, client)?;
        server
            .instantiate(&route.component, &mut prepared.store)
            .await
            .context("cannot instantiate the component")?;
        let ready = Instant::now();
        drop(prepared);
        drop(slot);
        let done = Instant::now();
        if round >= WARMUP_ROUNDS {
            entered.push(ready - arrived);
            dropped.push(done - ready);
        }
    }
    let total: Vec<Duration> = entered.iter().zip(&dropped).map(|(a, b)| *a + *b).collect();
    println!("instantiations: {count} (after {WARMUP_ROUNDS} warm-up)");
    println!("phase                       mean µs    p50 µs    p99 µs    max µs");
    for (name, samples) in [
        ("arrived -> guest ready", entered),
        ("store drop", dropped),
        ("total", total),
    ] {
        let s = Summary::of(samples);
        println!(
            "{name:<24} {:>10.1} {:>9.1} {:>9.1} {:>9.1}",
            s.mean, s.p50, s.p99, s.max
        );
    }
    Ok(())
}

/// Microseconds.
struct Summary {
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| {
            us(samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1])
        };
        Summary {
            mean: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
            p50: at(0.50),
            p99: at(0.99),
            max: us(samples[samples.len() - 1]),
        }
    }
}
