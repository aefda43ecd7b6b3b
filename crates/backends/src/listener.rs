//! Serving HTTP/1.1 to the open internet, for both of vapi-edge's servers
//! (`vapi-edge-host up` and the dashboard relay): what a client without a
//! credential can make the server hold is bounded.
//!
//! - Connections: at most [`Listener`]'s cap are open at once (and never more
//!   than the process's file limit allows, less a reserve for the databases);
//!   past it the server stops accepting and the kernel's backlog waits. An
//!   accept error (out of descriptors, say) is logged at most once a second
//!   and retried after 50 ms: never fatal.
//! - Headers: [`http1`] gives hyper a timer and a header deadline, which is
//!   also how long an idle keep-alive connection may wait for its next request.
//! - Bodies: [`BodyBudget::read`] admits a body by its declared length against
//!   one budget for the process, keeping a reserve that only small bodies may
//!   use, and reads it whole within a deadline, before anything else is spent
//!   on the request (no instance, no database). A client that trickles its
//!   body, or announces megabytes it never sends, holds a few bytes of budget
//!   for the deadline, and nothing else.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept back from the connection cap for everything else the
/// process opens: database and Redis connections, SQLite files, the relay's
/// outbound requests, the listener itself.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Lets a repeated log line through at most once a second: a flood of
/// refusals is one line a second, not one per request.
#[derive(Debug, Default)]
pub struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    /// Whether to log now.
    pub fn allow(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let allow = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if allow {
            *last = Some(Instant::now());
        }
        allow
    }
}

/// A listening socket that accepts at most `limit` open connections.
pub struct Listener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    limit: usize,
    accept_errors: Throttle,
}

impl Listener {
    /// `max_connections`, lowered to what the file limit leaves (see
    /// [`RESERVED_DESCRIPTORS`]).
    pub fn new(inner: TcpListener, max_connections: usize) -> Listener {
        let by_files = open_file_limit()
            .map(|files| files.saturating_sub(RESERVED_DESCRIPTORS).max(1))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        let limit = max_connections.min(by_files).max(1);
        Listener {
            inner,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            accept_errors: Throttle::default(),
        }
    }

    /// How many connections may be open at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection, and its place among the open ones (hold it for as
    /// long as the connection is open). Waits while the cap is reached;
    /// retries failed accepts after a pause. Cancel-safe.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        // The semaphore is never closed.
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, client)) => return (stream, client, permit),
                Err(error) => {
                    self.log_accept_error(&error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn log_accept_error(&self, error: &std::io::Error) {
        if self.accept_errors.allow() {
            crate::log::write(
                crate::log::warn("accept failed; retrying")
                    .field("error", error.to_string())
                    .field("open_connections_limit", self.limit),
            );
        }
    }
}

/// The soft limit on open files of this process (`RLIMIT_NOFILE`), where the
/// platform has one.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given and nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        // `rlim_t` is u64 on Linux, not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        let current = limit.rlim_cur as u64;
        (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(current)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// hyper's HTTP/1 server with a timer and `header_timeout` on request heads:
/// a client that opens a connection and sends nothing (or stops mid-head, or
/// idles between keep-alive requests) is dropped after it.
pub fn http1(header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
}

/// Why a body was not read: each is the client's, and has its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Declared or sent more than the largest body taken (413).
    TooLarge,
    /// The budget for bodies in flight has no room for it now (503, retry).
    Busy,
    /// Not all of it arrived within the deadline (408).
    TimedOut,
    /// The connection broke or the framing was wrong (400).
    Broken,
}

/// The memory for request bodies in flight, shared by every connection.
#[derive(Debug)]
pub struct BodyBudget {
    total: u64,
    /// Only bodies of at most `small` bytes may dip into the last `reserve`
    /// bytes: large ones cannot crowd out Vapi's messages (a few KiB each).
    reserve: u64,
    small: u64,
    in_use: Mutex<u64>,
}

/// Budget taken by one body; given back when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use = in_use.saturating_sub(self.bytes);
    }
}

impl BodyBudget {
    /// `total` bytes of bodies in flight, the last `reserve` of them only for
    /// bodies of at most `small` bytes.
    pub fn new(total: u64, reserve: u64, small: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            total,
            reserve: reserve.min(total),
            small,
            in_use: Mutex::new(0),
        })
    }

    /// Bytes taken by bodies now.
    pub fn in_use(&self) -> u64 {
        *self.in_use.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `bytes` more for `permit` (whose body is `small` or not), if
    /// the budget has room.
    fn take(&self, permit: &mut BodyPermit, bytes: u64, small: bool) -> bool {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        let ceiling = if small {
            self.total
        } else {
            self.total - self.reserve
        };
        if in_use.saturating_add(bytes) > ceiling {
            return false;
        }
        *in_use += bytes;
        permit.bytes += bytes;
        true
    }

    /// Reads `body` whole: at most `max` bytes, all of it within `deadline`
    /// (counted from now), taking its room in the budget first (a declared
    /// length at once; a chunked body as it arrives). The permit holds the
    /// room until the caller is done with the bytes.
    pub async fn read(
        self: &Arc<Self>,
        mut body: Incoming,
        declared: Option<u64>,
        max: u64,
        deadline: Duration,
    ) -> Result<(Bytes, BodyPermit), BodyRefusal> {
        if declared.is_some_and(|n| n > max) {
            return Err(BodyRefusal::TooLarge);
        }
        let small = declared.is_some_and(|n| n <= self.small);
        let mut permit = BodyPermit {
            budget: self.clone(),
            bytes: 0,
        };
        if let Some(declared) = declared {
            if !self.take(&mut permit, declared, small) {
                return Err(BodyRefusal::Busy);
            }
        }
        let read = async {
            let mut bytes = BytesMut::with_capacity(
                usize::try_from(declared.unwrap_or(0).min(64 * 1024)).unwrap_or(0),
            );
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| BodyRefusal::Broken)?;
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                let total = bytes.len() as u64 + data.len() as u64;
                if total > max {
                    return Err(BodyRefusal::TooLarge);
                }
                if declared.is_none() && !self.take(&mut permit, data.len() as u64, false) {
                    return Err(BodyRefusal::Busy);
                }
                bytes.extend_from_slice(&data);
            }
            Ok(bytes.freeze())
        };
        match tokio::time::timeout(deadline, read).await {
            Ok(Ok(bytes)) => Ok((bytes, permit)),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err(BodyRefusal::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit(budget: &Arc<BodyBudget>) -> BodyPermit {
        BodyPermit {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    #[test]
    fn large_bodies_leave_the_reserve_to_small_ones() {
        let budget = BodyBudget::new(100, 20, 5);
        let mut large = permit(&budget);
        assert!(budget.take(&mut large, 80, false));
        let mut another = permit(&budget);
        assert!(!budget.take(&mut another, 1, false), "past total - reserve");
        let mut small = permit(&budget);
        assert!(budget.take(&mut small, 5, true));
        assert!(budget.take(&mut small, 5, true));
        assert_eq!(budget.in_use(), 90);
        drop(large);
        assert_eq!(budget.in_use(), 10);
        assert!(budget.take(&mut another, 70, false));
        drop((small, another));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_connection_cap_stays_under_the_file_limit() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async {
            let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let listener = Listener::new(inner, usize::MAX);
            match open_file_limit() {
                Some(files) => {
                    assert_eq!(listener.limit() as u64, files - RESERVED_DESCRIPTORS)
                }
                None => assert_eq!(listener.limit(), usize::MAX),
            }
            let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
            assert_eq!(Listener::new(inner, 10).limit(), 10);
        });
    }
}
