//! One line per conformance scenario and host (`conformance: <host> <store>
//! <name>: pass in 1.2 s`), written with [`report`]: `cargo test` shows it
//! even when the test passes, and `.ci/run` counts the lines per host.
use super::{report, spin_binary, tools_required, HostKind, StoreKind, REQUIRE_TOOLS};
use std::future::Future;
use std::time::Instant;

const NO_SPIN: &str = "no Spin binary (set SPIN_BIN, or put spin on PATH, to run the Spin half)";

fn line(name: &str, host: HostKind, store: &str, result: &str) {
    report(&format!(
        "conformance: {:<14} {:<8} {name}: {result}",
        host.name(),
        store
    ));
}

/// Reports FAIL when dropped during a panic (an assertion failed).
struct Running<'a> {
    name: &'a str,
    host: HostKind,
    store: &'a str,
    started: Instant,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let result = if std::thread::panicking() {
            format!("FAIL after {elapsed:.1} s")
        } else {
            format!("pass in {elapsed:.1} s")
        };
        line(self.name, self.host, self.store, &result);
    }
}

pub async fn run<F, Fut>(name: &str, host: HostKind, store: StoreKind, body: F)
where
    F: FnOnce(StoreKind, HostKind) -> Fut,
    Fut: Future<Output = ()>,
{
    if host == HostKind::Spin && spin_binary().is_none() {
        assert!(
            !tools_required(),
            "{NO_SPIN}; {REQUIRE_TOOLS}=1 makes a missing tool a failure"
        );
        line(name, host, store.name(), &format!("skipped: {NO_SPIN}"));
        return;
    }
    let _running = Running {
        name,
        host,
        store: store.name(),
        started: Instant::now(),
    };
    body(store, host).await;
}

pub async fn run_host_only<F, Fut>(name: &str, host: HostKind, reason: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if host == HostKind::Spin {
        line(name, host, "-", &format!("not applicable: {reason}"));
        return;
    }
    let _running = Running {
        name,
        host,
        store: "-",
        started: Instant::now(),
    };
    body().await;
}
