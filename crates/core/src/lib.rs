//! Pure logic of vapi-edge: everything that decides, nothing that does I/O.
//!
//! The Spin component (the crate at the repository root) and the native bench
//! both drive these modules through thin adapters, so every rule here is
//! tested natively with `cargo test -p vapi-edge-core`.
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod call;
pub mod claim;
pub mod dashboard;
pub mod db;
pub mod effects;
pub mod event_key;
pub mod handling;
pub mod headers;
pub mod health;
pub mod http;
pub mod json;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod outbound;
pub mod parked;
pub mod payload;
pub mod pg_sql;
pub mod phone;
pub mod relay;
pub mod rollout;
pub mod schema;
pub mod settings;
pub mod sqlite_sql;
pub mod standard_webhooks;
pub mod upstream;
pub mod verify;
pub mod webhook;

/// Helpers for this crate's unit tests.
#[cfg(test)]
mod test_support {
    /// A fixed xorshift sequence from `seed`: deterministic, so a failure found
    /// with it is reproduced by running the test again.
    /// The shared example payloads (`../shared/vapi/examples/*.json`), as
    /// (file name, bytes), in name order.
    pub(crate) fn shared_examples() -> Vec<(String, Vec<u8>)> {
        let dir = format!(
            "{}/../../../shared/vapi/examples",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut examples: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        examples.sort();
        examples
    }

    /// Runs a future whose every await is ready at once (the fakes' effects).
    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("a fake effect waited"),
        }
    }

    pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
