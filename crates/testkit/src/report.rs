//! Lines a test run must show even when its tests pass: the conformance
//! table and every skip. Written past the test harness's capture (so `cargo
//! test` shows them) and, when `VAPI_EDGE_TEST_REPORT` names a file, appended
//! there too: `.ci/run` counts them per host and prints them.

use std::io::Write;

/// The variable that turns every [`skip`] into a failure: `.ci/run` sets it
/// when it has Spin, the browser and the TLS tools.
pub const REQUIRE_TOOLS: &str = "VAPI_EDGE_REQUIRE_TOOLS";

/// Writes one line to the terminal and the run's report file.
pub fn report(line: &str) {
    let line = format!("{}\n", line.trim_end());
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("VAPI_EDGE_TEST_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Whether this run must have every tool: `VAPI_EDGE_REQUIRE_TOOLS=1`.
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS).is_ok_and(|value| value == "1")
}

/// `test` cannot run here because of `why` (a missing tool, say): a
/// `skipped:` line, or a panic when [`tools_required`]. The caller returns
/// right after, so a skip is never a silent `ok`.
pub fn skip(test: &str, why: &str) {
    assert!(
        !tools_required(),
        "{test}: {why}; {REQUIRE_TOOLS}=1 makes a missing tool a failure"
    );
    report(&format!("skipped: {test}: {why}"));
}
