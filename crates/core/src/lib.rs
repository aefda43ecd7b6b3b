//! Pure logic of vapi-edge: everything that decides, nothing that does I/O.
//!
//! The Spin component (the crate at the repository root) and the native bench
//! both drive these modules through thin adapters, so every rule here is
//! tested natively with `cargo test -p vapi-edge-core`.
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod call;
pub mod claim;
pub mod dashboard;
pub mod db;
pub mod effects;
pub mod event_key;
pub mod handling;
pub mod headers;
pub mod health;
pub mod http;
pub mod json;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod outbound;
pub mod parked;
pub mod payload;
pub mod pg_sql;
pub mod phone;
pub mod reconcile;
pub mod relay;
pub mod replay;
pub mod rollout;
pub mod schema;
pub mod settings;
pub mod sqlite_sql;
pub mod standard_webhooks;
pub mod tenant;
pub mod upstream;
pub mod verify;
pub mod webhook;

/// Helpers for this crate's unit tests.
#[cfg(test)]
mod test_support;
