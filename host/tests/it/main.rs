//! The end-to-end tests of `vapi-edge-host`, in one test binary (one link of
//! wasmtime's dependents instead of one per file), grouped by theme: the real
//! `.wasm` in `vapi-edge-host` and, for the conformance scenarios, in the real
//! Spin CLI too, with real PostgreSQL and Redis. `common/` is the harness.

#[macro_use]
mod common;

mod browser;
mod concurrency;
mod dashboard;
mod foundation;
mod hostile;
mod kv_expiry;
mod layering;
mod logging;
mod operations;
mod outages;
mod owners;
mod reconcile;
mod refusals;
mod replicas;
mod replies;
mod retention;
mod schema_twins;
mod shutdown;
mod statements;
mod tenants;
mod tls;
mod totals;
mod webhooks;
mod wit_contract;
