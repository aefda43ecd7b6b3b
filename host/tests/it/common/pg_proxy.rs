//! A TCP proxy in front of PostgreSQL that reads the wire protocol as it
//! passes and can play an outage.

use super::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A TCP proxy in front of PostgreSQL that the test can take down and bring
/// back: while down it drops every open connection and refuses new ones, as a
/// database outage looks from the host.
pub struct PgProxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    executed: Arc<Mutex<Vec<String>>>,
}

/// Reads the client's side of the PostgreSQL wire protocol as it passes and
/// notes the SQL of every statement the server is asked to run: one entry per
/// simple `Query`, and per `Bind` of a prepared statement (whose text came in
/// its `Parse`). A statement bound and executed in one `Bind`/`Execute`/`Sync`
/// exchange is one round trip.
struct FrontendReader {
    buffer: Vec<u8>,
    /// Before the startup message, messages have no type byte.
    started: bool,
    /// Prepared statement name -> its SQL, on this connection.
    prepared: HashMap<String, String>,
    executed: Arc<Mutex<Vec<String>>>,
}

impl FrontendReader {
    fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.buffer.len() < header {
                return;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(self.buffer[at..at + 4].try_into().unwrap()) as usize;
            let total = at + length;
            if self.buffer.len() < total {
                return;
            }
            let message: Vec<u8> = self.buffer.drain(..total).collect();
            if !self.started {
                // SSLRequest and GSSENCRequest come before the startup message.
                let code = u32::from_be_bytes(message[4..8].try_into().unwrap());
                self.started = !matches!(code, 80_877_103 | 80_877_104);
                continue;
            }
            let body = &message[5..];
            let cstrings: Vec<String> = body
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            match message[0] {
                b'P' => {
                    self.prepared
                        .insert(cstrings[0].clone(), cstrings[1].clone());
                }
                b'B' => {
                    let sql = self.prepared.get(&cstrings[1]).cloned().unwrap_or_default();
                    self.executed.lock().unwrap().push(sql);
                }
                b'Q' => self.executed.lock().unwrap().push(cstrings[0].clone()),
                _ => {}
            }
        }
    }
}

impl PgProxy {
    pub async fn start() -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let executed: Arc<Mutex<Vec<String>>> = Arc::default();
        let (flag, tasks, log) = (up.clone(), connections.clone(), executed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut reader = FrontendReader {
                    buffer: Vec::new(),
                    started: false,
                    prepared: HashMap::new(),
                    executed: log.clone(),
                };
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    let (mut from_server, mut to_server) = server.into_split();
                    let (mut from_client, mut to_client) = client.split();
                    let upstream = async {
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_client.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            reader.feed(&chunk[..n]);
                            if to_server.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        PgProxy {
            addr,
            up,
            connections,
            executed,
        }
    }

    /// The SQL of every statement run through the proxy so far, in order.
    pub fn executed(&self) -> Vec<String> {
        self.executed.lock().unwrap().clone()
    }

    /// A connection string for `db` through the proxy.
    pub fn url(&self, db: &TestDb) -> String {
        format!(
            "postgres://postgres@{}/{}?sslmode=disable",
            self.addr, db.name
        )
    }

    pub fn allowed_host(&self) -> String {
        format!("postgres://{}", self.addr)
    }

    /// The variables that send a component's database traffic for `db`
    /// through the proxy (`AppOptions::extra`).
    pub fn variables(&self, db: &TestDb) -> Vec<(String, String)> {
        vec![
            ("pg_url".into(), self.url(db)),
            ("pg_allowed_host".into(), self.allowed_host()),
        ]
    }

    /// The statements sent since `from` (an index into [`PgProxy::executed`]),
    /// once `count` of them have arrived (or after 5 s), plus 200 ms for any
    /// that should not come.
    pub async fn statements_since(&self, from: usize, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.executed().len() < from + count && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.executed()[from..].to_vec()
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
