//! Per-request store data, and the host side of every non-wasi:http import:
//! variables, both key-value interfaces, Postgres and SQLite.
//!
//! A fresh `RequestState` is built for each request, so nothing a guest does
//! survives it except what it wrote to a host service.

use crate::bindings::fermyon::spin::{key_value, variables};
use crate::bindings::spin::postgres::postgres as pg;
use crate::bindings::spin::sqlite::sqlite;
use crate::bindings::wasi::keyvalue::{atomics, store};
use crate::kv::KvStore;
use crate::outbound::AllowedHosts;
use crate::pg::{PgConnection, PgPools};
use crate::sqlite::{SqliteConnection, SqliteDatabase};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
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
    pub hooks: crate::server::OutboundHooks,
    pub services: Arc<ComponentServices>,
    /// The Postgres connections this request opened, for cancelling.
    pub pg_in_flight: Vec<crate::pg::InFlight>,
    /// The SQLite connections this request opened, for cancelling.
    pub sqlite_in_flight: Vec<crate::sqlite::InFlight>,
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

/// An open key-value store (both interfaces).
pub struct KvHandle {
    store: KvStore,
}

/// A compare-and-swap in progress: the value seen when it was created.
pub struct CasHandle {
    store: KvStore,
    key: String,
    seen: Option<Vec<u8>>,
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

impl RequestState {
    fn kv(&self, handle: &Resource<KvHandle>) -> wasmtime::Result<KvStore> {
        Ok(self.table.get(handle)?.store.clone())
    }
}

// ---- fermyon:spin/variables ----

impl variables::Host for RequestState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self
            .services
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name)))
    }
}

// ---- fermyon:spin/key-value ----

fn spin_kv_error(message: String) -> key_value::Error {
    key_value::Error::Other(message)
}

impl key_value::HostStore for RequestState {
    fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, key_value::Error>> {
        let Some(store) = self.services.key_value.get(&label).cloned() else {
            return Ok(Err(key_value::Error::AccessDenied));
        };
        Ok(Ok(self.table.push(KvHandle { store })?))
    }

    async fn get(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        Ok(self.kv(&this)?.get(&key).await.map_err(spin_kv_error))
    }

    async fn set(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        Ok(self
            .kv(&this)?
            .set(&key, &value)
            .await
            .map_err(spin_kv_error))
    }

    async fn delete(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        Ok(self.kv(&this)?.delete(&key).await.map_err(spin_kv_error))
    }

    async fn exists(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        Ok(self.kv(&this)?.exists(&key).await.map_err(spin_kv_error))
    }

    async fn get_keys(
        &mut self,
        this: Resource<KvHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        Ok(self.kv(&this)?.keys().await.map_err(spin_kv_error))
    }

    fn drop(&mut self, this: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl key_value::Host for RequestState {}

// ---- wasi:keyvalue/store and atomics ----

fn wasi_kv_error(message: String) -> store::Error {
    store::Error::Other(message)
}

impl store::Host for RequestState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, store::Error>> {
        let Some(store) = self.services.key_value.get(&identifier).cloned() else {
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(Ok(self.table.push(KvHandle { store })?))
    }
}

impl store::HostBucket for RequestState {
    async fn get(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(self.kv(&this)?.get(&key).await.map_err(wasi_kv_error))
    }

    async fn set(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self
            .kv(&this)?
            .set(&key, &value)
            .await
            .map_err(wasi_kv_error))
    }

    async fn delete(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.kv(&this)?.delete(&key).await.map_err(wasi_kv_error))
    }

    async fn exists(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        Ok(self.kv(&this)?.exists(&key).await.map_err(wasi_kv_error))
    }

    async fn list_keys(
        &mut self,
        this: Resource<KvHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        // One page holds every key, so a cursor only ever means "past the end".
        if cursor.is_some() {
            return Ok(Ok(store::KeyResponse {
                keys: Vec::new(),
                cursor: None,
            }));
        }
        Ok(self
            .kv(&this)?
            .keys()
            .await
            .map(|keys| store::KeyResponse { keys, cursor: None })
            .map_err(wasi_kv_error))
    }

    fn drop(&mut self, this: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for RequestState {
    async fn increment(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        Ok(self
            .kv(&bucket)?
            .increment(&key, delta)
            .await
            .map_err(wasi_kv_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        match cas
            .store
            .compare_and_swap(&cas.key, cas.seen.as_deref(), &value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Hand back a fresh handle on the latest value, as the interface asks.
                let seen = match cas.store.get(&cas.key).await {
                    Ok(seen) => seen,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(wasi_kv_error(e)))),
                };
                let fresh = self.table.push(CasHandle {
                    store: cas.store,
                    key: cas.key,
                    seen,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_kv_error(e)))),
        }
    }
}

impl atomics::HostCas for RequestState {
    async fn new(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let store = self.kv(&bucket)?;
        let seen = match store.get(&key).await {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(wasi_kv_error(e))),
        };
        Ok(Ok(self.table.push(CasHandle { store, key, seen })?))
    }

    async fn current(
        &mut self,
        this: Resource<CasHandle>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&this)?.seen.clone()))
    }

    fn drop(&mut self, this: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:postgres/postgres@4.0.0 ----

impl pg::Host for RequestState {}

impl pg::HostConnection for RequestState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, pg::Error>> {
        let services = self.services.clone();
        match services.pg.open(&address, &services.allowed_hosts).await {
            Ok(connection) => {
                self.pg_in_flight.extend(connection.in_flight());
                Ok(Ok(self.table.push(connection)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<pg::RowSet, pg::Error>> {
        let connection = self.table.get_mut(&this)?;
        Ok(connection.query(&statement, params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<pg::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, pg::Error>> {
        let connection = self.table.get_mut(&this)?;
        Ok(connection.execute(&statement, params).await)
    }

    fn drop(&mut self, this: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:sqlite/sqlite@3.0.0 ----

impl sqlite::Host for RequestState {}

impl sqlite::HostConnection for RequestState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        let Some(configured) = self.services.sqlite.get(&database) else {
            return Ok(Err(sqlite::Error::AccessDenied));
        };
        let Some(configured) = configured.clone() else {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        };
        if self.sqlite_open >= crate::sqlite::MAX_CONNECTIONS_PER_REQUEST {
            return Ok(Err(sqlite::Error::Io("too many connections opened".into())));
        }
        match configured.open().await {
            Ok(connection) => {
                self.sqlite_in_flight
                    .retain(crate::sqlite::InFlight::is_open);
                self.sqlite_in_flight.push(connection.in_flight());
                self.sqlite_open += 1;
                Ok(Ok(self.table.push(connection)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let connection = self.table.get(&this)?;
        Ok(connection.execute(statement, parameters).await)
    }

    fn last_insert_rowid(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&this)?.last_insert_rowid())
    }

    fn changes(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.changes())
    }

    fn drop(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        // Closing the connection rolls back a transaction the guest left open.
        self.table.delete(this)?;
        self.sqlite_open = self.sqlite_open.saturating_sub(1);
        Ok(())
    }
}
