//! The whole path in a real browser: Vapi's signed webhook → the component
//! (`vapi-edge-host up`, the real `.wasm`) → its signed notification → the
//! relay (`vapi-edge-host relay`) → Server-Sent Events → the dashboard page in
//! Debian's headless Chromium, driven over WebDriver (`chromedriver`, plain
//! HTTP and JSON, nothing downloaded).
//!
//! Without chromium or chromedriver the test is skipped with a `skipped:`
//! line, or fails when `VAPI_EDGE_REQUIRE_TOOLS=1` (which `.ci/run` sets after
//! installing them).
//! It writes `dashboard.png` into its output folder, and with
//! `VAPI_EDGE_UPDATE_SCREENSHOT=1` also into `docs/dashboard.png` (README's
//! picture). It prints the time from sending a webhook to the call's row in
//! the page (median of 20).

use crate::common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR_TOKEN: &str = "operator-token-7d41c0a2";
const TOKEN_A: &str = "token-of-org-a-51e9b7";
const TOKEN_B: &str = "token-of-org-b-0c3d88";
const CALLER: &str = "+12125550187";

fn dashboard_token() -> String {
    format!("{OPERATOR_TOKEN},{ORG_ID}:{TOKEN_A},{OTHER_ORG_ID}:{TOKEN_B}")
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_answers(addr: SocketAddr, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            drop(stream);
            if send(addr, "GET", path, &[], Vec::new()).await.status < 500 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr}{path} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebDriver session in headless Chromium.
struct Browser {
    driver: SocketAddr,
    session: String,
    _chromedriver: Process,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let driver = dead_address();
        let child = Command::new(chromedriver)
            .arg(format!("--port={}", driver.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let process = Process(child);
        wait_until_answers(driver, "/status").await;
        let profile = temp_dir("chromium-profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let response = webdriver(driver, "POST", "/session", Some(capabilities)).await;
        let session = response["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_string();
        Browser {
            driver,
            session,
            _chromedriver: process,
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        webdriver(self.driver, method, &path, body).await
    }

    async fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something truthy, or fails after `timeout`.
    async fn wait_for(&self, what: &str, script: &str, args: Value, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(script, args.clone()).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self.command("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    async fn quit(&self) {
        webdriver(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

/// One WebDriver call: its `value`.
async fn webdriver(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let response = send(
        driver,
        method,
        path,
        &[("content-type", "application/json")],
        bytes,
    )
    .await;
    let value: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    assert!(
        response.status < 300,
        "WebDriver {method} {path}: {} {value}",
        response.status
    );
    value["value"].clone()
}

/// Signs in with `token` and waits for the first render and the relay's stream.
async fn sign_in(browser: &Browser, dashboard: &str, token: &str) {
    browser.go(dashboard).await;
    browser
        .script(
            "sessionStorage.clear();
             document.getElementById('token').value = arguments[0];
             document.getElementById('signin-form').requestSubmit();",
            json!([token]),
        )
        .await;
    browser
        .wait_for(
            "the live stream",
            "return document.getElementById('live').textContent === 'live (relay)' \
             && window.vapiEdgeRenderedAt !== undefined",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    // Records the wall-clock time at which each (call, status) first shows: at
    // the first animation frame after the row entered the page (the frame
    // that paints it).
    browser
        .script(
            "window.seenAt = {};
             const mark = () => {
               for (const row of document.querySelectorAll('#calls tr')) {
                 const key = row.dataset.callId + '|' + row.dataset.status;
                 if (!(key in window.seenAt)) window.seenAt[key] = Date.now();
               }
             };
             mark();
             new MutationObserver(() => requestAnimationFrame(mark))
               .observe(document.getElementById('calls'), {childList: true, subtree: true});",
            json!([]),
        )
        .await;
}

/// Sends `body` and returns how long, in ms, until the page showed the call
/// with `status`: from just before the POST to the animation frame that
/// paints the row (wall clock of this machine, read by the page's `Date.now()`).
async fn webhook_to_row(app: &WebhookApp, browser: &Browser, body: &Value, status: &str) -> f64 {
    let call_id = body["message"]["call"]["id"].as_str().unwrap().to_string();
    let sent_ms = now_ms();
    let response = app.deliver(body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = browser
        .wait_for(
            &format!("{call_id} as {status}"),
            "return window.seenAt[arguments[0]] || null;",
            json!([format!("{call_id}|{status}")]),
            Duration::from_secs(2),
        )
        .await;
    seen.as_f64().unwrap() - sent_ms as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_appear_live_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) else {
        return skip(
            "browser::calls_appear_live_in_a_real_browser",
            "no chromium and chromedriver on PATH (Debian: apt install chromium chromium-driver)",
        );
    };

    let relay = RelayProcess::start(host_relay().tokens(&dashboard_token()));
    let relay_addr = relay.addr;
    let app = WebhookApp::start(AppOptions {
        relay_url: Some(format!("http://{relay_addr}/events")),
        extra: vec![
            ("dashboard_token".into(), dashboard_token()),
            ("dashboard_relay_url".into(), format!("http://{relay_addr}")),
        ],
        ..Default::default()
    })
    .await;
    let ava = app.db.seed_agent(ORG_ID, "receptionist", "Ava").await;
    let otto = app.db.seed_agent(ORG_ID, "outbound", "Otto").await;
    let browser = Browser::start(&chromium, &chromedriver).await;
    let dashboard = format!("http://{}/dashboard", app.host.addr);
    sign_in(&browser, &dashboard, TOKEN_A).await;

    // Three calls: inbound in progress, inbound ended with its report, outbound.
    let in_progress = unique_id("call");
    let ended = unique_id("call");
    let outbound = unique_id("call");
    let mut report = fixture("08-inbound-end-of-call-report.json");
    retarget(&mut report, &ended, &ava.assistant_id);
    let mut ringing = fixture("09-outbound-status-update-ringing.json");
    retarget(&mut ringing, &outbound, &otto.assistant_id);
    for (body, status) in [
        (
            inbound_start(&in_progress, &ava.assistant_id, CALLER),
            "in-progress",
        ),
        (report, "ended"),
        (ringing, "ringing"),
    ] {
        let ms = webhook_to_row(&app, &browser, &body, status).await;
        println!("[browser] {status}: on the page {ms:.0} ms after the webhook was sent");
    }
    // No reload happened: the marks set after sign-in are still there.
    let marks = browser
        .script("return Object.keys(window.seenAt || {}).length;", json!([]))
        .await;
    assert!(marks.as_u64().unwrap() >= 3, "{marks}");

    // The picture README shows: the three calls.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(out.join("dashboard.png"), &png).unwrap();
    println!(
        "[browser] screenshot: {}",
        out.join("dashboard.png").display()
    );
    if std::env::var("VAPI_EDGE_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
        println!("[browser] README's screenshot updated: {}", docs.display());
    }

    // Twenty more, for the figure.
    let mut times = Vec::new();
    for _ in 0..20 {
        let body = inbound_start(&unique_id("call"), &ava.assistant_id, CALLER);
        times.push(webhook_to_row(&app, &browser, &body, "in-progress").await);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "[browser] webhook to row on the page, 20 calls: median {:.0} ms, min {:.0}, max {:.0} \
         (relay stream; wall clock of this machine)",
        (times[9] + times[10]) / 2.0,
        times[0],
        times[19]
    );

    // Another organisation's token sees none of these calls, live or not.
    sign_in(&browser, &dashboard, TOKEN_B).await;
    let later = unique_id("call");
    let delivered = app
        .deliver(&inbound_start(&later, &ava.assistant_id, CALLER))
        .await;
    // The isolation below means something only if org A's call was recorded
    // and went out to the relay.
    assert_eq!(delivered.status, 200, "{}", delivered.text());
    assert_eq!(delivered.json()["outcome"], "recorded");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = browser
        .script(
            "return Array.from(document.querySelectorAll('#calls tr')).map(r => r.dataset.callId);",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!([]), "org B's page shows org A's calls");
    let scope = browser
        .script(
            "return document.getElementById('scope').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(scope, json!(format!("organisation {OTHER_ORG_ID}")));
    let empty = browser
        .script(
            "return !document.getElementById('empty').hidden;",
            json!([]),
        )
        .await;
    assert_eq!(empty, json!(true));
    // ... and its own calls arrive live, through its own stream.
    let bea = app.db.seed_agent(OTHER_ORG_ID, "receptionist", "Bea").await;
    let of_b = inbound_start(&unique_id("call"), &bea.assistant_id, CALLER);
    let ms = webhook_to_row(&app, &browser, &of_b, "in-progress").await;
    println!("[browser] organisation B's own call: on its page {ms:.0} ms after the webhook");

    // A call reconciliation recorded from Vapi's API is marked, and the
    // operator's summary says when reconciliation ran and what it found (the
    // rows as reconciliation writes them; its whole path: reconcile.rs).
    let reconciled = unique_id("call");
    app.db
        .rows(
            "INSERT INTO call_logs (vapi_call_id, org_id, status, status_rank, direction, metadata)
             VALUES ($1, $2, 'ended', 6, 'web',
                     '{\"channel\": \"web\", \"source\": \"reconciliation\"}')",
            &[&reconciled, ORG_ID],
        )
        .await;
    let ran = now_ms().to_string();
    app.db
        .rows(
            "INSERT INTO reconciliation (tenant, state, last_run_ms, last_success_ms, missing_total)
             VALUES ('', '{\"last\": {\"outcome\": \"complete\", \"missing\": 1}}', $1, $1, 1)",
            &[&ran],
        )
        .await;
    sign_in(&browser, &dashboard, OPERATOR_TOKEN).await;
    let shown = browser
        .wait_for(
            "the reconciled mark and card",
            "const row = document.querySelector(`#calls tr[data-call-id=\"${arguments[0]}\"]`);
             const card = document.getElementById('reconcile-card');
             if (!row || card.hidden) return null;
             return [row.querySelector('.mark')?.textContent ?? '',
                     document.getElementById('reconcile').textContent];",
            json!([reconciled]),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(shown, json!(["reconciled", "1 missing found"]));
    browser.quit().await;
}
