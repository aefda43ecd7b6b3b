//! Serving HTTP with the component: one Engine, one Linker and one
//! pre-instantiated component for the process; a fresh Store per request,
//! bounded by an epoch deadline, a wall-clock timeout and a memory limit.
//! Instances come from wasmtime's pooling allocator unless it is turned off.
//!
//! The open internet's part (`vapi_edge_backends::listener`): a cap on open
//! connections, a deadline on request heads and idle keep-alives, and each
//! body read whole, within its own deadline and a process-wide budget,
//! before the request may take an instance slot: a slow or silent client
//! holds a connection and a few bytes, never an instance.

use crate::manifest::{App, Route};
use crate::outbound::OutboundHooks;
use crate::runtime_config::RuntimeConfig;
use crate::state::{ComponentServices, RequestState};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use vapi_edge_backends::allowed_hosts::AllowedHosts;
use vapi_edge_backends::listener::{self, BodyBudget, BodyRefusal, Listener, Throttle};
use vapi_edge_backends::log;
use vapi_edge_backends::sqlite::SqliteDatabase;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimitsBuilder,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Lingering close (see [`linger`]): the longest wait for more of a body, and
/// the longest drain in all.
const LINGER_IDLE: Duration = Duration::from_millis(1_000);
const LINGER_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a request may run, guest and host calls together, for every
    /// component; `None` lets each component's manifest say
    /// (`[component.<id>.tool.vapi-edge-host] request_timeout_ms`), else
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
    /// Largest linear memory a guest may grow to.
    pub max_memory_bytes: usize,
    /// Instances the pooling allocator reserves up front; 0 allocates each
    /// instance on demand instead. Requests beyond it wait for a free slot.
    pub instance_pool: u32,
    /// Connections open at once (lowered to what the file limit allows).
    pub max_connections: usize,
    /// Longest wait for a request's head, and for the next request on an
    /// idle keep-alive connection.
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body, from its head.
    pub body_timeout: Duration,
    /// Largest request body taken (413 beyond) for every component; `None`
    /// lets each component's manifest say (`max_body_bytes`), else
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: Option<u64>,
    /// Bodies in flight, all requests together; a quarter of it is kept for
    /// bodies of up to [`SMALL_BODY_BYTES`].
    pub body_budget_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: None,
            max_memory_bytes: 128 << 20,
            instance_pool: 256,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: None,
            body_budget_bytes: 64 << 20,
        }
    }
}

/// A body this small may use the budget's reserve: Vapi's status updates and
/// tool calls are a few KiB.
pub const SMALL_BODY_BYTES: u64 = 64 << 10;

/// What one pool slot holds, for any component this host runs: a Rust
/// `wasm32-wasip2` component instantiates three core modules (the program, a
/// shim and its fix-up) with one linear memory and two tables. The headroom
/// is cheap (address space only); a component that needs more is refused at
/// start-up, when it is loaded.
const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const POOL_MEMORIES_PER_COMPONENT: u32 = 2;
const POOL_TABLES_PER_COMPONENT: u32 = 4;
/// Bytes of a slot's linear memory reset in place (and so kept resident); a
/// duplicate request dirties ~60 KiB, a full one a little more.
const POOL_MEMORY_KEEP_RESIDENT: usize = 1 << 20;
const POOL_TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// A request's deadline when neither `--request-timeout-ms` nor the
/// component's manifest sets one.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest body read when neither `--max-body-mb` nor the component's
/// manifest sets one.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;

struct LoadedComponent {
    pre: ProxyPre<RequestState>,
    services: Arc<ComponentServices>,
    /// Longest one of its requests may run.
    request_timeout: Duration,
    /// The largest body one of its requests may have.
    max_body_bytes: u64,
}

pub struct Server {
    engine: Engine,
    routes: Vec<Route>,
    components: HashMap<String, LoadedComponent>,
    limits: Limits,
    /// One permit per pool slot (`None` without the pool): a request holds
    /// one from before its store exists until the store is dropped, so the
    /// pool is never exhausted and excess requests queue instead of failing.
    instance_slots: Option<Arc<Semaphore>>,
    /// Connections and request tasks still running: what a shutdown waits for.
    in_flight: InFlight,
    /// The memory for request bodies being read.
    bodies: Arc<BodyBudget>,
    /// One log line a second for refused bodies, however many there are.
    body_refusals: Throttle,
}

/// Counts the work in flight: each connection and each request task holds a
/// token from [`InFlight::enter`] until it ends (a request task runs on after
/// its response, to write the event row and notify the relay).
#[derive(Default)]
struct InFlight(Arc<()>);

impl InFlight {
    fn enter(&self) -> Arc<()> {
        self.0.clone()
    }

    fn count(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }

    async fn idle(&self) {
        while self.count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// After a connection ends, reads and discards what the client still sends
/// for a while before closing, as nginx's lingering close does: a client that
/// sends a whole oversized body before reading then gets its 413 instead of a
/// connection reset (closing a socket with unread data sends RST, and the
/// client's unread response is lost with it). Stops at end of stream, after
/// `LINGER_IDLE` without data, or after `LINGER_MAX` in all.
async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_MAX;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        let idle = tokio::time::sleep(LINGER_IDLE);
        let read = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                read = stream.read(&mut sink) => read.ok(),
                _ = idle => None,
            }
        });
        match read.await {
            Ok(Some(n)) if n > 0 => continue,
            _ => return,
        }
    }
}

/// The engine, and the number of pooled instances (`None`: on demand). If the
/// pool cannot be reserved (address space limits), it warns and allocates on
/// demand rather than not starting.
pub fn engine(limits: &Limits) -> Result<(Engine, Option<u32>)> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // For profiling (BENCHMARKS.md): /tmp/perf-<pid>.map names the guest's
    // compiled functions in `perf report`.
    if std::env::var_os("VAPI_EDGE_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if limits.instance_pool > 0 {
        let slots = limits.instance_pool;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(POOL_CORE_INSTANCES_PER_COMPONENT))
            .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots.saturating_mul(POOL_MEMORIES_PER_COMPONENT))
            .max_memories_per_component(POOL_MEMORIES_PER_COMPONENT)
            .total_tables(slots.saturating_mul(POOL_TABLES_PER_COMPONENT))
            .max_tables_per_component(POOL_TABLES_PER_COMPONENT)
            .total_stacks(slots)
            // The same cap as the store limiter: growing past it fails the
            // `memory.grow`, exactly as the limiter makes it fail.
            .max_memory_size(limits.max_memory_bytes)
            // A slot's memory and tables are reset in place when its store
            // is dropped: the pages the request dirtied (found with Linux's
            // PAGEMAP_SCAN where available) are copied back from the image
            // instead of being madvise'd away, which cost a TLB shootdown
            // across the process's threads on every request and ~15 page
            // faults on the next one (BENCHMARKS.md, "Per-request instantiate cost").
            .linear_memory_keep_resident(POOL_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(POOL_TABLE_KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, Some(slots))),
            Err(error) => log::write(
                log::warn("instance pool unavailable, allocating on demand")
                    .field("slots", slots)
                    .field("error", format!("{error:#}")),
            ),
        }
    }
    let engine = Engine::new(&config)
        .map_err(wasm_error)
        .context("cannot create the wasm engine")?;
    Ok((engine, None))
}

/// A request made ready for the guest: its store (limits, epoch deadline, the
/// WASI and HTTP contexts), the request and response handles in its table.
pub struct PreparedRequest {
    pub store: Store<RequestState>,
    pub incoming: Resource<HostIncomingRequest>,
    pub outparam: Resource<HostResponseOutparam>,
    pub response: oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
}

impl Server {
    /// Compiles and links every component of the app; any missing import,
    /// bad allow-list or unreadable `.wasm` is an error here, not at request time.
    pub fn new(app: &App, mut runtime: RuntimeConfig, limits: Limits) -> Result<Self> {
        let (engine, pooled) = engine(&limits)?;
        let mut linker: Linker<RequestState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::bindings::HostServices::add_to_linker::<_, HasSelf<RequestState>>(
            &mut linker,
            |state| state,
        )?;
        let pg = vapi_edge_backends::pg::PgPools::default();
        // One database per label, whichever components are granted it.
        let mut sqlite: HashMap<String, Option<SqliteDatabase>> = HashMap::new();
        let mut components = HashMap::new();
        for (id, spec) in &app.components {
            if !spec.source.exists() {
                let how = match &spec.build_command {
                    Some(command) => format!("build it with `spin build` or `{command}`"),
                    None => "build it first: its manifest has no build command".into(),
                };
                bail!(
                    "component `{id}`: {} does not exist ({how})",
                    spec.source.display()
                );
            }
            let started = Instant::now();
            let component = Component::from_file(&engine, &spec.source)
                .map_err(wasm_error)
                .with_context(|| {
                    let hint = match pooled {
                        // The pool's per-slot limits are checked here.
                        Some(_) => " (if it outgrows the instance pool's slots, --instance-pool 0 allocates on demand)",
                        None => "",
                    };
                    format!(
                        "component `{id}`: cannot load {}{hint}",
                        spec.source.display()
                    )
                })?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(wasm_error)
                .with_context(|| {
                    format!("component `{id}` needs an import this host does not provide")
                })?;
            let pre = ProxyPre::new(pre).map_err(wasm_error).with_context(|| {
                format!("component `{id}` does not export wasi:http/incoming-handler")
            })?;
            let request_timeout = limits
                .request_timeout
                .or(spec.request_timeout)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
            log::write(
                log::info("component ready")
                    .field("app", app.name.as_str())
                    .field("component", id.as_str())
                    .field("compile_ms", started.elapsed().as_millis() as u64)
                    .field("request_timeout_ms", request_timeout.as_millis() as u64)
                    .field(
                        "instances",
                        pooled.map_or("on demand".to_string(), |n| format!("pool of {n}")),
                    ),
            );
            let allowed = AllowedHosts::parse(&spec.allowed_outbound_hosts)
                .with_context(|| format!("component `{id}`"))?;
            let key_value = spec
                .key_value_stores
                .iter()
                .map(|label| Ok((label.clone(), runtime.store_for(label, &app.dir)?)))
                .collect::<Result<_>>()?;
            let mut granted_sqlite = HashMap::new();
            for label in &spec.sqlite_databases {
                if !sqlite.contains_key(label) {
                    let database = prepare_sqlite(&runtime, &app.dir, id, label)?;
                    sqlite.insert(label.clone(), database);
                }
                granted_sqlite.insert(label.clone(), sqlite[label].clone());
            }
            let services = Arc::new(ComponentServices {
                variables: spec.variables.clone(),
                key_value,
                allowed_hosts: Arc::new(allowed),
                pg: pg.clone(),
                sqlite: granted_sqlite,
            });
            components.insert(
                id.clone(),
                LoadedComponent {
                    pre,
                    services,
                    request_timeout,
                    max_body_bytes: limits
                        .max_body_bytes
                        .or(spec.max_body_bytes)
                        .unwrap_or(DEFAULT_MAX_BODY_BYTES),
                },
            );
        }
        Ok(Server {
            engine,
            routes: app.routes.clone(),
            components,
            instance_slots: pooled.map(|n| Arc::new(Semaphore::new(n as usize))),
            in_flight: InFlight::default(),
            bodies: BodyBudget::new(
                limits.body_budget_bytes,
                limits.body_budget_bytes / 4,
                SMALL_BODY_BYTES,
            ),
            body_refusals: Throttle::default(),
            limits,
        })
    }

    /// The route that serves `path`, as `handle` finds it.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }

    /// What one instance of a component needs (memories, tables and their
    /// initial sizes), for sizing the pool; and the pool's slot count.
    pub fn footprint(
        &self,
        component_id: &str,
    ) -> Option<(wasmtime::ResourcesRequired, Option<usize>)> {
        let component = self.components.get(component_id)?;
        let required = component
            .pre
            .instance_pre()
            .component()
            .resources_required()?;
        let slots = self
            .instance_slots
            .as_ref()
            .map(|_| self.limits.instance_pool as usize);
        Some((required, slots))
    }

    /// Waits for a pool slot (immediately `None` without the pool).
    pub async fn instance_slot(&self) -> Option<OwnedSemaphorePermit> {
        match &self.instance_slots {
            // The semaphore is never closed.
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The per-request set-up `run` does before entering the guest, shared with
    /// `bench-instantiate` so it measures the real thing.
    pub fn prepare<B>(
        &self,
        component_id: &str,
        route: &Route,
        mut request: hyper::Request<B>,
        client: SocketAddr,
    ) -> Result<PreparedRequest>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let component = self
            .components
            .get(component_id)
            .context("route names an unknown component")?;
        add_spin_headers(&mut request, route, client);
        let state = RequestState {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .instances(64)
                .build(),
            hooks: OutboundHooks {
                allowed: component.services.allowed_hosts.clone(),
            },
            services: component.services.clone(),
            pg_in_flight: Vec::new(),
            sqlite_in_flight: Vec::new(),
            sqlite_open: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // A guest that computes without end yields to the runtime at every
        // epoch tick instead of holding a worker thread (which would starve
        // the other requests queued on that thread); the request timeout
        // then cuts it off.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let (sender, response) = oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        Ok(PreparedRequest {
            store,
            incoming,
            outparam,
            response,
        })
    }

    /// Instantiates the component into a prepared store (the last step before
    /// the guest's handler is entered).
    pub async fn instantiate(
        &self,
        component_id: &str,
        store: &mut Store<RequestState>,
    ) -> Result<wasmtime_wasi_http::p2::bindings::Proxy> {
        let component = self
            .components
            .get(component_id)
            .context("route names an unknown component")?;
        component
            .pre
            .instantiate_async(store)
            .await
            .map_err(wasm_error)
    }

    /// Accepts connections until `shutdown` resolves, then stops accepting,
    /// lets every in-flight request finish, with its after-response work (the
    /// event row, the relay notification), for at most `grace`, and returns.
    /// Prints the address actually bound (useful with port 0) the way `spin up`
    /// does.
    pub async fn serve(
        self: Arc<Self>,
        listen: SocketAddr,
        shutdown: impl std::future::Future<Output = &'static str>,
        grace: Duration,
    ) -> Result<()> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let listener = Listener::new(listener, self.limits.max_connections);
        let local = listener.local_addr()?;
        log::write(
            log::info("listening")
                .field("addr", local.to_string())
                .field("max_connections", listener.limit())
                .field(
                    "header_timeout_ms",
                    self.limits.header_timeout.as_millis() as u64,
                )
                .field(
                    "body_timeout_ms",
                    self.limits.body_timeout.as_millis() as u64,
                )
                .field("body_budget_bytes", self.limits.body_budget_bytes),
        );
        let ticker = self.engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
        println!("Serving http://{local}");
        println!("Available Routes:");
        for route in &self.routes {
            println!("  {}: http://{local}{}", route.component, route.pattern);
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();

        let (stopping, _) = watch::channel(false);
        tokio::pin!(shutdown);
        let signal = loop {
            let (stream, client, open) = tokio::select! {
                accepted = listener.accept() => accepted,
                signal = &mut shutdown => break signal,
            };
            // A response's head can go out before the guest has written its
            // body; with Nagle's algorithm the body then waits for the
            // client's delayed ACK (~40 ms on Linux).
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let mut stop = stopping.subscribe();
            let busy = self.in_flight.enter();
            let header_timeout = self.limits.header_timeout;
            tokio::spawn(async move {
                let _busy = busy;
                // The connection's place among the open ones, until it closes.
                let _open = open;
                // Boxed: `poll_without_shutdown` needs an `Unpin` service.
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    Box::pin(async move {
                        Ok::<_, std::convert::Infallible>(server.handle(request, client).await)
                    })
                });
                let mut connection = listener::http1(header_timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let mut stopping = false;
                let served = loop {
                    tokio::select! {
                        served = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                            break served;
                        }
                        _ = stop.wait_for(|stop| *stop), if !stopping => {
                            // Finish the request in progress, then close.
                            stopping = true;
                            std::pin::Pin::new(&mut connection).graceful_shutdown();
                        }
                    }
                };
                if served.is_ok() {
                    linger(connection.into_parts().io.into_inner()).await;
                }
            });
        };
        drop(listener);
        let in_flight = self.in_flight.count();
        log::write(
            log::info("Shutting down")
                .field("signal", signal)
                .field("in_flight", in_flight)
                .field("grace_ms", grace.as_millis() as u64),
        );
        let _ = stopping.send(true);
        let started = Instant::now();
        let drained = tokio::time::timeout(grace, self.in_flight.idle())
            .await
            .is_ok();
        if drained {
            log::write(
                log::info("Stopped").field("waited_ms", started.elapsed().as_millis() as u64),
            );
        } else {
            log::write(
                log::warn("Stopped with work still running at the end of the grace period")
                    .field("running", self.in_flight.count()),
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> hyper::Response<ResponseBody> {
        let path = request.uri().path().to_string();
        let Some(route) = self.route_for(&path) else {
            return plain(404, "no route matches this path\n");
        };
        let Some(component) = self.components.get(&route.component) else {
            return plain(500, "route names an unknown component\n");
        };
        let started = Instant::now();
        let method = request.method().to_string();
        // The whole body first, within its deadline and the budget: only a
        // request that can be served takes an instance slot.
        let (parts, body) = request.into_parts();
        let (body, permit) = match self.read_body(&parts, body, component.max_body_bytes).await {
            Ok(read) => read,
            Err(refusal) => return self.refuse_body(refusal, &path),
        };
        let request = hyper::Request::from_parts(
            parts,
            Full::new(body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        );
        match self.run(component, route, request, client, permit).await {
            Ok(response) => response,
            Err(error) => {
                log::write(
                    log::error("request failed in the component")
                        .field("component", route.component.as_str())
                        .field("method", method.as_str())
                        .field("path", path.as_str())
                        .field("duration_ms", started.elapsed().as_millis() as u64)
                        .field("error", format!("{error:#}")),
                );
                plain(500, "internal server error\n")
            }
        }
    }

    /// The request's body, read whole (see [`BodyBudget::read`]), and its
    /// room in the budget; nothing to read for a request without one.
    async fn read_body(
        &self,
        parts: &http::request::Parts,
        body: hyper::body::Incoming,
        max_body_bytes: u64,
    ) -> Result<(Bytes, Option<listener::BodyPermit>), BodyRefusal> {
        use hyper::body::Body;
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if body.is_end_stream() || declared == Some(0) {
            return Ok((Bytes::new(), None));
        }
        let (bytes, permit) = self
            .bodies
            .read(body, declared, max_body_bytes, self.limits.body_timeout)
            .await?;
        Ok((bytes, Some(permit)))
    }

    /// The answer to a body that was not read, and the connection closed
    /// after it (the rest of the body is never read).
    fn refuse_body(&self, refusal: BodyRefusal, path: &str) -> hyper::Response<ResponseBody> {
        let (status, text, reason) = match refusal {
            BodyRefusal::TooLarge => (413, "request body too large\n", "too_large"),
            BodyRefusal::Busy => (
                503,
                "too many request bodies in flight; retry\n",
                "budget_full",
            ),
            BodyRefusal::TimedOut => (408, "request body not received in time\n", "timeout"),
            BodyRefusal::Broken => (400, "request body could not be read\n", "broken"),
        };
        if self.body_refusals.allow() {
            log::write(
                log::warn("request body refused")
                    .field("reason", reason)
                    .field("path", path)
                    .field("bodies_in_flight_bytes", self.bodies.in_use()),
            );
        }
        let mut response = plain(status, text);
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        if refusal == BodyRefusal::Busy {
            headers.insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
        }
        response
    }

    async fn run<B>(
        &self,
        component: &LoadedComponent,
        route: &Route,
        request: hyper::Request<B>,
        client: SocketAddr,
        body_permit: Option<listener::BodyPermit>,
    ) -> Result<hyper::Response<ResponseBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Held until the store is gone: the slot is busy until then.
        let slot = self.instance_slot().await;
        let PreparedRequest {
            mut store,
            incoming,
            outparam,
            response,
        } = self.prepare(&route.component, route, request, client)?;
        let pre = component.pre.clone();
        let timeout = component.request_timeout;
        // The task outlives the response (the guest's after-response work):
        // a shutdown waits for it.
        let busy = self.in_flight.enter();
        let task = tokio::spawn(async move {
            let _busy = busy;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let outcome = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => {
                    // The guest may be waiting on a statement: cancel it before
                    // the store (and with it the response channel) goes, so it
                    // cannot commit after the caller was answered 500.
                    store.data_mut().cancel_postgres_statements().await;
                    store.data_mut().cancel_sqlite_statements().await;
                    Err(wasmtime::Error::msg(format!(
                        "request exceeded the {} ms deadline",
                        timeout.as_millis()
                    )))
                }
            };
            drop(store);
            drop(slot);
            drop(body_permit);
            outcome
        });
        match response.await {
            Ok(Ok(response)) => Ok(response.map(|body| body.map_err(|e| e.into()).boxed_unsync())),
            Ok(Err(code)) => bail!("component answered with an error code: {code:?}"),
            Err(_) => {
                let outcome = task.await.context("request task panicked")?;
                match outcome {
                    Ok(()) => bail!("component returned without setting a response"),
                    Err(e) => Err(anyhow::anyhow!("{e:?}")),
                }
            }
        }
    }
}

/// Opens the SQLite database `label` for the first component granted it, or
/// says (once) that it is not configured: Spin refuses to start then, this host
/// answers `open` with `no-such-database`.
fn prepare_sqlite(
    runtime: &RuntimeConfig,
    app_dir: &std::path::Path,
    component: &str,
    label: &str,
) -> Result<Option<SqliteDatabase>> {
    let Some(location) = runtime.sqlite_location(label, app_dir) else {
        log::write(
            log::warn("sqlite database not configured")
                .field("component", component)
                .field("database", label)
                .field(
                    "hint",
                    "define it in the runtime config: [sqlite_database.<label>]",
                ),
        );
        return Ok(None);
    };
    let database =
        SqliteDatabase::prepare(&location).with_context(|| format!("sqlite database `{label}`"))?;
    log::write(
        log::info("sqlite database ready")
            .field("database", label)
            .field("location", database.describe()),
    );
    Ok(Some(database))
}

/// wasmtime 48 has its own error type; keep its whole chain in the message.
fn wasm_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}

pub type ResponseBody = UnsyncBoxBody<Bytes, anyhow::Error>;

fn plain(status: u16, text: &'static str) -> hyper::Response<ResponseBody> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The informational headers Spin adds, for components that read them. The
/// vapi-edge component itself reads none of them.
fn add_spin_headers<B>(request: &mut hyper::Request<B>, route: &Route, client: SocketAddr) {
    let path = request.uri().path().to_string();
    let base = route
        .pattern
        .strip_suffix("/...")
        .unwrap_or(&route.pattern)
        .to_string();
    let path_info = path.strip_prefix(&base).unwrap_or("").to_string();
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let full_url = format!(
        "http://{host}{}",
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let headers = request.headers_mut();
    for (name, value) in [
        ("spin-full-url", full_url),
        ("spin-path-info", path_info),
        ("spin-matched-route", route.pattern.clone()),
        ("spin-component-route", base.clone()),
        ("spin-raw-component-route", route.pattern.clone()),
        ("spin-base-path", "/".to_string()),
        ("spin-client-addr", client.to_string()),
    ] {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
