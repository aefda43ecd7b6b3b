//! Per-request store data: what one component may use (`ComponentServices`,
//! shared by its requests) and what one request holds (`RequestState`). The
//! host side of each import is in `interfaces`.
//!
//! A fresh `RequestState` is built for each request, so nothing a guest does
//! survives it except what it wrote to a host service.

use crate::outbound::OutboundHooks;
use std::collections::HashMap;
use std::sync::Arc;
use vapi_edge_backends::allowed_hosts::AllowedHosts;
use vapi_edge_backends::kv::KvStore;
use vapi_edge_backends::pg::{self as pg, PgPools};
use vapi_edge_backends::sqlite::{self as sqlite, SqliteDatabase};
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What one component may use, shared by all its requests.
pub struct ComponentServices {
    pub variables: HashMap<String, String>,
    /// Granted labels only; a label absent here is access-denied.
    pub key_value: HashMap<String, KvStore>,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub pg: PgPools,
    /// Granted SQLite labels only (absent: access-denied); `None` for a label
    /// granted but not configured (no-such-database).
    pub sqlite: HashMap<String, Option<SqliteDatabase>>,
}

pub struct RequestState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub hooks: OutboundHooks,
    pub services: Arc<ComponentServices>,
    /// The Postgres connections this request opened, for cancelling.
    pub pg_in_flight: Vec<pg::InFlight>,
    /// The SQLite connections this request opened, for cancelling.
    pub sqlite_in_flight: Vec<sqlite::InFlight>,
    /// SQLite connections open now (at most `MAX_CONNECTIONS_PER_REQUEST`).
    pub sqlite_open: usize,
}

impl RequestState {
    /// Cancels every statement still running: called when the host cuts the
    /// request off, before it answers, so nothing commits behind the answer.
    pub async fn cancel_postgres_statements(&mut self) {
        for statement in self.pg_in_flight.drain(..) {
            statement.cancel().await;
        }
    }

    /// The same for SQLite: a statement still running is interrupted and its
    /// transaction rolled back before the host answers.
    pub async fn cancel_sqlite_statements(&mut self) {
        for statement in self.sqlite_in_flight.drain(..) {
            statement.cancel().await;
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
