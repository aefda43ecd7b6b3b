//! Helpers for this crate's unit tests: the example payloads, a way to run
//! the fakes' futures, a deterministic random sequence, and [`fake::Fake`],
//! the effects every flow's tests run over.

pub(crate) mod fake;
/// A fixed xorshift sequence from `seed`: deterministic, so a failure found
/// with it is reproduced by running the test again.
/// The repository's example payloads (`examples/vapi/`).
pub(crate) const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vapi");

/// One example payload, by file name.
pub(crate) fn example(name: &str) -> Vec<u8> {
    let path = format!("{EXAMPLES}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every example payload (`examples/vapi/*.json`), as (file name, bytes),
/// in name order.
pub(crate) fn shared_examples() -> Vec<(String, Vec<u8>)> {
    let dir = EXAMPLES;
    let mut examples: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
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
