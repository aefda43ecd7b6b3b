//! One line per conformance scenario and host, written straight to the
//! terminal (past the test harness's capture, so `cargo test` shows it even
//! when the test passes) and, when `CONFORMANCE_REPORT` names a file, appended
//! there too: `.ci/run` prints that file as a table.
use super::{spin_binary, HostKind, StoreKind};
use std::future::Future;
use std::io::Write;
use std::time::Instant;

const NO_SPIN: &str = "no Spin binary (set SPIN_BIN, or put spin on PATH, to run the Spin half)";

fn report(name: &str, host: HostKind, store: &str, result: &str) {
    let line = format!(
        "conformance: {:<14} {:<8} {name}: {result}\n",
        host.name(),
        store
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("CONFORMANCE_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
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
        report(self.name, self.host, self.store, &result);
    }
}

pub async fn run<F, Fut>(name: &str, host: HostKind, store: StoreKind, body: F)
where
    F: FnOnce(StoreKind, HostKind) -> Fut,
    Fut: Future<Output = ()>,
{
    if host == HostKind::Spin && spin_binary().is_none() {
        report(name, host, store.name(), &format!("skipped: {NO_SPIN}"));
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
        report(name, host, "-", &format!("skipped: {reason}"));
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
