//! The services behind vapi-edge's hosts, with plain Rust types for their
//! interfaces: PostgreSQL connection pools (TLS the way Spin does it), Spin's
//! built-in SQLite databases, key-value stores (Spin's SQLite store, Redis,
//! memory), the outbound allow-list, and the limits of an HTTP server on the
//! open internet (`listener`). Nothing here knows WIT: the wasmtime
//! host (`vapi-edge-host`) converts its interfaces' types to these, and the
//! benchmark's native baseline uses them directly.

pub mod allowed_hosts;
pub mod kv;
pub mod listener;
pub mod log;
pub mod pg;
pub mod pg_tls;
pub mod sqlite;
