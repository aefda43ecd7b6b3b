//! The foundation, end to end: the real `.wasm` in `vapi-edge-host` with real
//! PostgreSQL and Redis. Readiness, state in the host, the outbound allow-list,
//! the deadline and memory limit, migrations, and start-up errors.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_200_when_postgres_schema_and_redis_are_up() {
    let dir = temp_dir("health-ok");
    let db = TestDb::migrated().await;
    let host = Host::start(
        HostOptions {
            manifest: app_manifest(&dir),
            ..Default::default()
        }
        .var("pg_url", &db.url)
        .redis_kv(&dir),
    );
    let response = host.get("/healthz").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    assert_eq!(
        body["checks"]["postgres"]["schema_version"],
        "0002_operations"
    );
    assert_eq!(body["checks"]["key_value"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_503_naming_postgres_when_it_is_unreachable() {
    let dir = temp_dir("health-pg-down");
    // Port 1 on loopback: nothing listens, the connection is refused.
    let host = Host::start(
        HostOptions {
            manifest: app_manifest(&dir),
            ..Default::default()
        }
        .var("pg_url", "postgres://postgres@127.0.0.1:1/postgres")
        .var("pg_allowed_host", "postgres://127.0.0.1:1"),
    );
    let response = host.get("/healthz").await;
    assert_eq!(response.status, 503);
    let body = response.json();
    assert_eq!(body["failing"], serde_json::json!(["postgres"]));
    assert_eq!(body["checks"]["postgres"]["ok"], false);
    assert_eq!(body["checks"]["key_value"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_503_when_the_schema_is_not_migrated() {
    let dir = temp_dir("health-unmigrated");
    let db = TestDb::create().await;
    let host = Host::start(
        HostOptions {
            manifest: app_manifest(&dir),
            ..Default::default()
        }
        .var("pg_url", &db.url),
    );
    let response = host.get("/healthz").await;
    assert_eq!(response.status, 503);
    let error = response.json()["checks"]["postgres"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("not migrated"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_503_naming_the_key_value_store_when_redis_is_unreachable() {
    let dir = temp_dir("health-kv-down");
    let db = TestDb::migrated().await;
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n",
    )
    .unwrap();
    let host = Host::start(
        HostOptions {
            manifest: app_manifest(&dir),
            runtime_config: Some(config),
            ..Default::default()
        }
        .var("pg_url", &db.url),
    );
    let response = host.get("/healthz").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["failing"], serde_json::json!(["key_value"]));
}

/// Each probe increments a counter in the key-value store: a later request
/// (a new instance) sees what an earlier one wrote, in memory and in Redis.
#[tokio::test(flavor = "multi_thread")]
async fn key_value_state_lives_in_the_host_not_the_instance() {
    let dir = temp_dir("kv-state");
    for options in [
        HostOptions {
            manifest: app_manifest(&dir),
            ..Default::default()
        },
        HostOptions {
            manifest: app_manifest(&dir),
            ..Default::default()
        }
        .redis_kv(&dir),
    ] {
        let host = Host::start(options);
        let first = host.get("/healthz").await.json()["checks"]["key_value"]["probes"]
            .as_i64()
            .unwrap();
        let second = host.get("/healthz").await.json()["checks"]["key_value"]["probes"]
            .as_i64()
            .unwrap();
        assert!(
            second > first,
            "second probe {second} did not see the first {first}"
        );
    }
}

/// A tiny upstream HTTP server that counts the requests it answers.
async fn counting_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"hi")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

fn test_guest_manifest(dir: &std::path::Path, allowed: &[String]) -> std::path::PathBuf {
    let wasm = build_component("vapi-edge-test-guest");
    let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "host-limits"
[[trigger.http]]
route = "/..."
component = "guest"
[component.guest]
source = {:?}
allowed_outbound_hosts = [{}]
"#,
        wasm.display().to_string(),
        allowed.join(", ")
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_reach_only_allowed_hosts() {
    use std::sync::atomic::Ordering;
    let (allowed_addr, allowed_hits) = counting_upstream().await;
    let (denied_addr, denied_hits) = counting_upstream().await;
    let dir = temp_dir("outbound");
    let host = Host::start(HostOptions {
        manifest: test_guest_manifest(&dir, &[format!("http://{allowed_addr}")]),
        ..Default::default()
    });

    let allowed_url = format!("http://{allowed_addr}/");
    let ok = send(
        host.addr,
        "GET",
        "/fetch",
        &[("x-target", &allowed_url)],
        Vec::new(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    let denied_url = format!("http://{denied_addr}/");
    let refused = send(
        host.addr,
        "GET",
        "/fetch",
        &[("x-target", &denied_url)],
        Vec::new(),
    )
    .await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(
        refused.text().to_lowercase().contains("denied"),
        "{}",
        refused.text()
    );
    assert_eq!(
        denied_hits.load(Ordering::SeqCst),
        0,
        "the denied upstream was contacted"
    );
    host.wait_for_log(Duration::from_secs(5), |l| {
        l["msg"] == "outbound request denied"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_loops_forever_is_cut_off_while_others_are_served() {
    let dir = temp_dir("deadline");
    let host = Host::start(
        HostOptions {
            manifest: test_guest_manifest(&dir, &[]),
            ..Default::default()
        }
        .arg("--request-timeout-ms")
        .arg("8000"),
    );
    let addr = host.addr;
    let started = std::time::Instant::now();
    let looping = tokio::spawn(async move {
        let response = send(addr, "GET", "/loop", &[], Vec::new()).await;
        (response, started.elapsed())
    });
    // While the loop burns its instance, other requests are answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut served_by = Vec::new();
    for _ in 0..3 {
        let ok = host.get("/ok").await;
        assert_eq!(ok.status, 200);
        served_by.push(started.elapsed());
    }
    let (cut_off, loop_ended) = tokio::time::timeout(Duration::from_secs(30), looping)
        .await
        .expect("the looping request was never cut off")
        .unwrap();
    // It ran until the 8 s deadline, and the others were served meanwhile.
    assert!(
        loop_ended >= Duration::from_millis(7500),
        "the looping request ended after {loop_ended:?} with {} {}",
        cut_off.status,
        cut_off.text()
    );
    assert!(
        served_by.iter().all(|t| *t < loop_ended),
        "served at {served_by:?}, loop ended at {loop_ended:?}"
    );
    assert_eq!(cut_off.status, 500);
    assert_eq!(
        cut_off.text(),
        "internal server error\n",
        "internal error text leaked"
    );
    let line = host
        .wait_for_log(Duration::from_secs(5), |l| {
            l["msg"] == "request failed in the component"
        })
        .await;
    assert!(
        line["error"].as_str().unwrap().contains("deadline"),
        "{line}"
    );
    assert_eq!(host.get("/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_grows_without_bound_hits_the_memory_limit() {
    let dir = temp_dir("memory");
    let host = Host::start(
        HostOptions {
            manifest: test_guest_manifest(&dir, &[]),
            ..Default::default()
        }
        .arg("--max-memory-mb")
        .arg("32"),
    );
    let grown = host.get("/grow").await;
    assert_eq!(grown.status, 500);
    assert_eq!(host.get("/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_twice_is_harmless_and_the_contract_columns_suffice() {
    let db = TestDb::migrated().await;
    let again = run_host(&[
        "migrate",
        "--pg-url",
        &db.url,
        "--migrations",
        &migrations_dir(),
    ]);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "schema is up to date"
    );

    let client = db.client().await;
    let org = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
    // Outside tools seed agents and leads with only the contract's columns.
    client
        .batch_execute(&format!(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ('{org}', 'receptionist', 'Ava', 'asst-1');
             INSERT INTO leads (org_id, phone_e164) VALUES ('{org}', '+14155550142');"
        ))
        .await
        .unwrap();
    let duplicate_role = client
        .batch_execute(&format!(
            "INSERT INTO agents (org_id, role, name, vapi_assistant_id) VALUES ('{org}', 'receptionist', 'Bob', 'asst-2')"
        ))
        .await
        .unwrap_err();
    assert_eq!(
        duplicate_role.code().unwrap().code(),
        "23505",
        "unique (org_id, role) is missing"
    );
    for table in ["processed_webhook_events", "call_tracking", "call_logs"] {
        let rows = client
            .query(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 0);
    }
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let dir = temp_dir("startup");
    let missing_wasm = dir.join("spin.toml");
    std::fs::write(
        &missing_wasm,
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"nope.wasm\"\n",
    )
    .unwrap();
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "spin_manifest_version = [\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "up".into(),
                "--from".into(),
                missing_wasm.display().to_string(),
            ],
            "does not exist",
        ),
        (
            vec!["up".into(), "--from".into(), bad_toml.display().to_string()],
            "invalid manifest",
        ),
        (
            vec![
                "up".into(),
                "--from".into(),
                dir.join("absent.toml").display().to_string(),
            ],
            "cannot read manifest",
        ),
        (
            vec![
                "migrate".into(),
                "--pg-url".into(),
                "postgres://postgres@127.0.0.1:1/x".into(),
                "--migrations".into(),
                migrations_dir(),
            ],
            "cannot connect to PostgreSQL",
        ),
        (vec!["serve".into()], "unknown command"),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_host(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: ") && first.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("Stack backtrace") && !stderr.contains("panicked"),
            "{stderr}"
        );
        if expected != "unknown command" {
            assert_eq!(
                stderr.trim().lines().count(),
                1,
                "{args:?}: not one line: {stderr}"
            );
        }
    }
}
