//! A test-only component for `vapi-edge-host`'s own tests. It does what the real
//! component must never do, so the host's limits can be shown to hold:
//! `/loop` spins forever (epoch deadline), `/fetch` requests the URL in the
//! `x-target` header (outbound allow-list), `/grow` allocates without bound
//! (memory limit), anything else answers 200 `ok`.

use spin_sdk::http::{send, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> anyhow::Result<Response> {
    match request.path() {
        "/loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "/grow" => {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            loop {
                chunks.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&chunks);
            }
        }
        "/fetch" => {
            let target = request
                .header("x-target")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            match send::<_, Response>(Request::get(target)).await {
                Ok(upstream) => Ok(Response::new(
                    200,
                    format!("upstream {}", upstream.status()),
                )),
                Err(error) => Ok(Response::new(502, format!("refused: {error}"))),
            }
        }
        _ => Ok(Response::new(200, "ok")),
    }
}
