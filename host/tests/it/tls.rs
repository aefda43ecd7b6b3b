//! TLS to every store, against real servers made for the test: a PostgreSQL
//! instance of its own (initdb, on a free port) and a Redis with `--tls-port`,
//! both with certificates from a CA made here with `openssl`. Each case
//! prints one line: the mode, the outcome and, for failures, the message the
//! operator sees. Skipped (a `skipped:` line; a failure under
//! `VAPI_EDGE_REQUIRE_TOOLS=1`) when PostgreSQL's server programs
//! (`pg_config --bindir`), openssl or a TLS-capable redis-server is missing.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use vapi_edge_backends::kv::KvStore;

/// Where PostgreSQL's server programs (initdb, pg_ctl) are, found the
/// portable way: `pg_config --bindir` (Debian's is versioned, e.g.
/// /usr/lib/postgresql/15/bin), else the folder of `initdb` on PATH.
fn pg_bin() -> Result<PathBuf, String> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file())
        })
    };
    from_pg_config.or_else(on_path).ok_or_else(|| {
        "no initdb: neither `pg_config --bindir` nor PATH has PostgreSQL's server programs".into()
    })
}
/// In every URL below; trust auth ignores it, and no output may show it.
const PASSWORD: &str = "hunter2-not-logged";

fn run(command: &mut Command) -> Output {
    let out = command.output().expect("command runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test's folder, removed when dropped (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch(temp_dir(tag))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and server certificates it issued, in `dir`.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(dir: &Path) -> Option<Certs> {
        if Command::new("openssl").arg("version").output().is_err() {
            return None;
        }
        let certs = Certs {
            dir: dir.to_path_buf(),
        };
        run(Command::new("openssl").current_dir(dir).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=vapi-edge test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
        Some(certs)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues `<name>.pem` / `<name>.key` for these subject alternative names.
    fn server(&self, name: &str, san: &str) -> (PathBuf, PathBuf) {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        run(Command::new("openssl").current_dir(&self.dir).args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]));
        run(Command::new("openssl").current_dir(&self.dir).args([
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &pem,
        ]));
        (self.dir.join(pem), self.dir.join(key))
    }
}

/// How the test server offers TLS.
enum ServerTls<'a> {
    Off,
    /// Certificate and key.
    On(&'a Path, &'a Path),
}

/// A PostgreSQL instance of the test's own, trust auth on 127.0.0.1, stopped
/// and removed when dropped. Under root, it runs as `postgres` (PostgreSQL
/// refuses root).
struct TestPostgres {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl TestPostgres {
    fn start(dir: &Path, tls: ServerTls<'_>) -> Result<TestPostgres, String> {
        let initdb = pg_bin()?.join("initdb");
        if !initdb.is_file() {
            return Err(format!("{} is not installed", initdb.display()));
        }
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let server = TestPostgres {
            dir: dir.join("pg"),
            port: dead_address().port(),
            as_postgres,
        };
        std::fs::create_dir_all(&server.dir).unwrap();
        server.chown(&server.dir);
        server.pg(
            "initdb",
            &["-D", "data", "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        server.configure(tls)?;
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn chown(&self, path: &Path) {
        if self.as_postgres {
            run(Command::new("chown").arg("-R").arg("postgres:").arg(path));
        }
    }

    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let program = pg_bin()?.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {args:?} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out)
    }

    fn pg_ctl(&self, action: &str) -> Result<Output, String> {
        self.pg(
            "pg_ctl",
            &["-D", "data", "-l", "server.log", "-w", "-t", "30", action],
        )
    }

    /// Writes the settings this test changes (port, TLS) and copies the
    /// certificate in, where the server's user may read its key.
    fn configure(&self, tls: ServerTls<'_>) -> Result<(), String> {
        let data = self.dir.join("data");
        let mut conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\n",
            self.port,
            self.dir.display()
        );
        match tls {
            ServerTls::Off => conf.push_str("ssl = off\n"),
            ServerTls::On(cert, key) => {
                std::fs::copy(cert, data.join("server.crt")).unwrap();
                std::fs::copy(key, data.join("server.key")).unwrap();
                std::fs::set_permissions(
                    data.join("server.key"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                self.chown(&data);
                conf.push_str(
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
            }
        }
        std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
        self.chown(&data);
        Ok(())
    }

    fn restart_with(&self, tls: ServerTls<'_>) {
        self.configure(tls).unwrap();
        self.pg_ctl("restart").unwrap();
    }

    fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?{params}",
            self.port
        )
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl", &["-D", "data", "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `vapi-edge-host <args>`, with only the environment given.
fn host_command(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(host_binary())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("host binary runs")
}

/// Runs `migrate` against `url`; returns Ok(stdout) or Err(stderr), and
/// checks the password never shows.
fn migrate(url: &str, env: &[(&str, &Path)]) -> Result<String, String> {
    let out = host_command(
        &[
            "migrate",
            "--pg-url",
            url,
            "--migrations",
            &migrations_dir(),
        ],
        env,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "the password leaked: {stdout}\n{stderr}"
    );
    if out.status.success() {
        Ok(stdout.replace('\n', "; "))
    } else {
        assert_eq!(
            out.status.code(),
            Some(1),
            "a clear error, not a crash: {stderr}"
        );
        Err(stderr)
    }
}

fn expect_ok(case: &str, result: Result<String, String>) {
    match result {
        Ok(out) => println!("tls pg  {case:<52} ok     {out}"),
        Err(err) => panic!("{case}: expected success, got: {err}"),
    }
}

fn expect_err(case: &str, result: Result<String, String>, needles: &[&str]) {
    match result {
        Ok(out) => panic!("{case}: expected a failure, got: {out}"),
        Err(err) => {
            println!("tls pg  {case:<52} fails  {err}");
            for needle in needles {
                assert!(err.contains(needle), "{case}: {err:?} lacks {needle:?}");
            }
        }
    }
}

/// A `skipped:` line for this file's `test` (a failure when CI requires every tool).
fn skipped(test: &str, reason: &str) {
    skip(&format!("tls::{test}"), reason);
}

/// Every `sslmode` and `sslrootcert` case through `vapi-edge-host migrate`,
/// against one server restarted with each certificate (and without TLS).
#[test]
fn postgres_sslmodes_against_a_private_ca() {
    let scratch = Scratch::new("tls-pg");
    let Some(certs) = Certs::new(&scratch.0) else {
        return skipped(
            "postgres_sslmodes_against_a_private_ca",
            "openssl is not installed",
        );
    };
    let ca = certs.ca();
    let ca_param = format!("sslrootcert={}", ca.display());
    let (good_cert, good_key) = certs.server("localhost", "DNS:localhost,IP:127.0.0.1");
    let (other_cert, other_key) = certs.server("elsewhere", "DNS:db.example.invalid");
    let server = match TestPostgres::start(&scratch.0, ServerTls::On(&good_cert, &good_key)) {
        Ok(server) => server,
        Err(reason) => return skipped("postgres_sslmodes_against_a_private_ca", &reason),
    };
    let with_ca = |mode: &str| server.url(&format!("sslmode={mode}&{ca_param}"));

    // A certificate for 127.0.0.1 from the test CA.
    expect_ok(
        "verify-full + sslrootcert=ca.pem",
        migrate(&with_ca("verify-full"), &[]),
    );
    expect_ok(
        "verify-ca + sslrootcert=ca.pem",
        migrate(&with_ca("verify-ca"), &[]),
    );
    expect_ok(
        "require + sslrootcert=ca.pem",
        migrate(&with_ca("require"), &[]),
    );
    expect_ok(
        "no sslmode (prefer) + sslrootcert=ca.pem",
        migrate(&server.url(&ca_param), &[]),
    );
    expect_ok(
        "verify-full + sslrootcert=system, SSL_CERT_FILE=ca.pem",
        migrate(
            &server.url("sslmode=verify-full&sslrootcert=system"),
            &[("SSL_CERT_FILE", &ca)],
        ),
    );
    expect_ok(
        "require, SSL_CERT_FILE=ca.pem (also a Spin URL)",
        migrate(&server.url("sslmode=require"), &[("SSL_CERT_FILE", &ca)]),
    );
    expect_err(
        "verify-full without the CA",
        migrate(&server.url("sslmode=verify-full"), &[]),
        &[
            "cannot connect to PostgreSQL at pg_url",
            "UnknownIssuer",
            "sslrootcert",
        ],
    );
    expect_err(
        "require without the CA (verified, as in Spin)",
        migrate(&server.url("sslmode=require"), &[]),
        &["UnknownIssuer"],
    );
    expect_err(
        "verify-full + unreadable sslrootcert",
        migrate(
            &server.url("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
            &[],
        ),
        &["cannot read sslrootcert /nonexistent/ca.pem"],
    );
    expect_err(
        "sslmode=allow",
        migrate(&server.url("sslmode=allow"), &[]),
        &["sslmode=allow", "verify-full"],
    );
    // The other PostgreSQL clients share the URL handling: seed-agent too.
    let seeded = host_command(
        &[
            "seed-agent",
            "--pg-url",
            &with_ca("verify-full"),
            "--org-id",
            "00000000-0000-4000-8000-000000000001",
            "--assistant-id",
            "asst-tls",
            "--name",
            "TLS agent",
        ],
        &[],
    );
    assert!(
        seeded.status.success(),
        "seed-agent: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    println!(
        "tls pg  {:<52} ok     {}",
        "seed-agent verify-full + sslrootcert=ca.pem",
        String::from_utf8_lossy(&seeded.stdout).trim()
    );

    // A certificate from the test CA for another name.
    server.restart_with(ServerTls::On(&other_cert, &other_key));
    expect_ok(
        "name mismatch: verify-ca + sslrootcert",
        migrate(&with_ca("verify-ca"), &[]),
    );
    expect_err(
        "name mismatch: verify-full + sslrootcert",
        migrate(&with_ca("verify-full"), &[]),
        &["not valid for name"],
    );
    expect_err(
        "name mismatch: require + sslrootcert (as in Spin)",
        migrate(&with_ca("require"), &[]),
        &["not valid for name"],
    );

    // No TLS at all.
    server.restart_with(ServerTls::Off);
    expect_err(
        "server without TLS: require",
        migrate(&with_ca("require"), &[]),
        &["server does not support TLS"],
    );
    expect_err(
        "server without TLS: verify-full",
        migrate(&with_ca("verify-full"), &[]),
        &["server does not support TLS"],
    );
    expect_ok(
        "server without TLS: prefer falls back",
        migrate(&with_ca("prefer"), &[]),
    );
    expect_ok(
        "server without TLS: disable",
        migrate(&server.url("sslmode=disable"), &[]),
    );
}

/// `up`: the component's own connections (pool, cancel) use the URL's TLS.
#[tokio::test(flavor = "multi_thread")]
async fn up_answers_healthz_over_verify_full() {
    let scratch = Scratch::new("tls-up");
    let Some(certs) = Certs::new(&scratch.0) else {
        return skipped(
            "up_answers_healthz_over_verify_full",
            "openssl is not installed",
        );
    };
    let (cert, key) = certs.server("localhost", "DNS:localhost,IP:127.0.0.1");
    let server = match TestPostgres::start(&scratch.0, ServerTls::On(&cert, &key)) {
        Ok(server) => server,
        Err(reason) => return skipped("up_answers_healthz_over_verify_full", &reason),
    };
    let url = server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        certs.ca().display()
    ));
    migrate(&url, &[]).expect("migrate over verify-full");
    let app = Scratch::new("tls-up-app");
    let (response, lines) = healthz_with(
        &app,
        &url,
        server.port,
        "/healthz, pg_url verify-full + sslrootcert",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["checks"]["postgres"]["ok"], true);
    assert!(!lines.contains(PASSWORD), "the password leaked: {lines}");

    // The same, trusting only the system roots: the component's connection
    // fails verification and /healthz says so without details.
    let (response, lines) = healthz_with(
        &app,
        &server.url("sslmode=verify-full"),
        server.port,
        "/healthz, pg_url verify-full without the CA",
    )
    .await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(!lines.contains(PASSWORD), "the password leaked: {lines}");
    assert!(lines.contains("UnknownIssuer"), "{lines}");
}

/// `vapi-edge-host up` on the app in `app` with this `pg_url`: its `/healthz`
/// answer (printed with `label`) and everything the host wrote.
async fn healthz_with(
    app: &Scratch,
    pg_url: &str,
    port: u16,
    label: &str,
) -> (TestResponse, String) {
    let host = Host::start(
        HostOptions {
            manifest: app_manifest(&app.0),
            ..Default::default()
        }
        .var("vapi_hmac_secret", HMAC_SECRET)
        .var("pg_url", pg_url)
        .var("pg_allowed_host", format!("postgres://127.0.0.1:{port}")),
    );
    let response = host.get("/healthz").await;
    println!(
        "tls up  {label:<52} {}    {}",
        response.status,
        response.text()
    );
    (response, host.lines().join("\n"))
}

/// A Redis with `--tls-port` only, an ACL user with a password; killed when dropped.
struct TestRedis {
    child: std::process::Child,
    port: u16,
}

impl TestRedis {
    fn start(certs: &Certs, cert: &Path, key: &Path) -> Result<TestRedis, String> {
        let port = dead_address().port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .arg("--tls-port")
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .arg("--tls-ca-cert-file")
            .arg(certs.ca())
            .args(["--tls-auth-clients", "no"])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                "app",
                "on",
                ">s3cret-not-logged",
                "~*",
                "&*",
                "+@all",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("redis-server cannot start: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                let _ = child.stdout.take().unwrap().read_to_string(&mut out);
                let reason = out
                    .lines()
                    .filter(|l| l.contains("TLS") || l.contains("FATAL") || l.contains("Bad"))
                    .collect::<Vec<_>>()
                    .join(" / ");
                return Err(format!(
                    "redis-server exited ({status}) with --tls-port: {reason}"
                ));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(TestRedis { child, port });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("redis-server did not listen on its --tls-port".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn round_trip(store: &KvStore) -> Result<String, String> {
    store
        .set("tls-probe", b"over TLS")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let value = store.get("tls-probe").await.map_err(|e| format!("{e:?}"))?;
    Ok(String::from_utf8_lossy(&value.unwrap_or_default()).into_owned())
}

/// `rediss://` with a user and password: with `ca_file`, without it (the
/// system roots, here made to hold the test CA with SSL_CERT_FILE), and in `up`.
#[tokio::test(flavor = "multi_thread")]
async fn redis_over_tls_with_credentials() {
    let scratch = Scratch::new("tls-redis");
    let Some(certs) = Certs::new(&scratch.0) else {
        return skipped(
            "redis_over_tls_with_credentials",
            "openssl is not installed",
        );
    };
    let (cert, key) = certs.server("localhost", "DNS:localhost,IP:127.0.0.1");
    let redis = match TestRedis::start(&certs, &cert, &key) {
        Ok(redis) => redis,
        Err(reason) => return skipped("redis_over_tls_with_credentials", &reason),
    };
    let url = format!("rediss://app:s3cret-not-logged@127.0.0.1:{}", redis.port);

    let store = KvStore::redis(&url, Some(&certs.ca())).unwrap();
    let value = round_trip(&store).await.expect("rediss:// with ca_file");
    assert_eq!(value, "over TLS");
    println!(
        "tls kv  {:<52} ok     read back {value:?}",
        "rediss://user:password + ca_file"
    );

    let store = KvStore::redis(&url, None).unwrap();
    let err = round_trip(&store)
        .await
        .expect_err("the test CA is not a system root");
    println!(
        "tls kv  {:<52} fails  {err}",
        "rediss:// without the CA (system roots)"
    );

    let wrong = format!("rediss://app:wrong@127.0.0.1:{}", redis.port);
    let store = KvStore::redis(&wrong, Some(&certs.ca())).unwrap();
    let err = round_trip(&store).await.expect_err("a wrong password");
    println!(
        "tls kv  {:<52} fails  {err}",
        "rediss:// + ca_file, wrong password"
    );

    // `up` with the runtime config, verified against the system roots.
    let app = Scratch::new("tls-redis-app");
    let mut options = HostOptions {
        manifest: app_manifest(&app.0),
        ..Default::default()
    }
    .redis_kv_at(&app.0, &url)
    .var("vapi_hmac_secret", HMAC_SECRET);
    options
        .vars
        .push(("SSL_CERT_FILE".into(), certs.ca().display().to_string()));
    let host = Host::start(options);
    let response = host.get("/healthz").await;
    println!(
        "tls up  {:<52} {}    {}",
        "/healthz, rediss:// key-value store, SSL_CERT_FILE",
        response.status,
        response.text()
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["checks"]["key_value"]["ok"], true);
    let lines = host.lines().join("\n");
    assert!(
        !lines.contains("s3cret-not-logged"),
        "the password leaked: {lines}"
    );
    drop(host);
    drop(redis);
}

/// What the docs promise about Spin, checked against the real Spin CLI when
/// there is one: the portable form for a private CA (`sslmode=require`, the CA
/// in `SSL_CERT_FILE`) works in `spin up` too; this host's additions
/// (`verify-full`, `sslrootcert`) are not understood there.
#[tokio::test(flavor = "multi_thread")]
async fn spin_accepts_the_portable_form_only() {
    if spin_binary().is_none() {
        return skipped(
            "spin_accepts_the_portable_form_only",
            "no Spin CLI (see spin_binary)",
        );
    }
    let scratch = Scratch::new("tls-spin");
    let Some(certs) = Certs::new(&scratch.0) else {
        return skipped(
            "spin_accepts_the_portable_form_only",
            "openssl is not installed",
        );
    };
    let (cert, key) = certs.server("localhost", "DNS:localhost,IP:127.0.0.1");
    let server = match TestPostgres::start(&scratch.0, ServerTls::On(&cert, &key)) {
        Ok(server) => server,
        Err(reason) => return skipped("spin_accepts_the_portable_form_only", &reason),
    };
    let ca = certs.ca();
    let ca_param = format!("sslrootcert={}", ca.display());
    migrate(&server.url(&format!("sslmode=verify-full&{ca_param}")), &[]).expect("migrate");
    let app = Scratch::new("tls-spin-app");
    let cases = [
        ("sslmode=require".to_string(), true),
        (format!("sslmode=verify-full&{ca_param}"), false),
    ];
    for (params, portable) in cases {
        let mut statuses = Vec::new();
        for kind in [HostKind::VapiEdgeHost, HostKind::Spin] {
            let mut options = HostOptions {
                manifest: app_manifest(&app.0),
                ..Default::default()
            }
            .on(kind)
            .var("vapi_hmac_secret", HMAC_SECRET)
            .var("pg_url", server.url(&params))
            .var(
                "pg_allowed_host",
                format!("postgres://127.0.0.1:{}", server.port),
            );
            options
                .vars
                .push(("SSL_CERT_FILE".into(), ca.display().to_string()));
            let host = Host::start(options);
            let response = host.get("/healthz").await;
            println!(
                "tls spin {:<14} {:<40} {}",
                kind.name(),
                params.replace(&ca.display().to_string(), "ca.pem"),
                response.status
            );
            statuses.push(response.status);
        }
        assert_eq!(statuses[0], 200, "{params} in vapi-edge-host");
        // README: Spin takes the portable form, and answers 503 to this
        // host's additions.
        let in_spin = if portable { 200 } else { 503 };
        assert_eq!(statuses[1], in_spin, "{params} in Spin");
    }
}
