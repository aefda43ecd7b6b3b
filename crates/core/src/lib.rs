//! Pure logic of vapi-edge: everything that decides, nothing that does I/O.
//!
//! The Spin component (the crate at the repository root) and the native bench
//! both drive these modules through thin adapters, so every rule here is
//! tested natively with `cargo test -p vapi-edge-core`.
#![forbid(unsafe_code)]

pub mod call;
pub mod event_key;
pub mod handling;
pub mod headers;
pub mod health;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod parked;
pub mod payload;
pub mod phone;
pub mod rollout;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod standard_webhooks;
pub mod verify;
