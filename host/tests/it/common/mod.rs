//! Shared harness for the end-to-end tests: builds the real `.wasm`, creates a
//! fresh database per test (PostgreSQL, or a SQLite file for the zero-config
//! store), starts a host as a child process on an ephemeral port, and talks
//! HTTP to it. The host is `vapi-edge-host`, or for the conformance scenarios
//! (see [`conformance`]) the real Spin CLI as well.
mod build;
pub mod conformance;
mod database;
mod host;
mod kv;
mod logs;
mod pg_proxy;
mod relay;
mod vapi;
mod vapi_api;

pub use vapi_edge_testkit::*;
pub use {
    build::*, database::*, host::*, kv::*, logs::*, pg_proxy::*, relay::*, vapi::*, vapi_api::*,
};

/// Tests that measure deadlines, lease windows, concurrency or several hosts
/// at once on a small machine take this, so that they do not skew each other.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Prints a figure a row of RELIABILITY.md rests on, tagged `[reliability]`.
pub fn figure(text: &str) {
    println!("[reliability] {text}");
}

/// Runs each named test body (`async fn name(store: StoreKind)`) once per
/// store, as `postgres::<name>` and `sqlite::<name>`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::StoreKind::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::StoreKind::Sqlite).await
                }
            )*
        }
    };
}

/// The conformance scenarios: test bodies `async fn name(store: StoreKind,
/// host: HostKind)` that must behave the same in `vapi-edge-host` and in the
/// real Spin CLI, each run under both as `vapi_edge_host::<store>::<name>` and
/// `spin::<store>::<name>`. `host_only` scenarios (`async fn name()`) need a
/// feature Spin does not have; under Spin they are skipped with the reason
/// given. Without a Spin binary ([`spin_binary`]) the Spin half is skipped
/// with a line that says so. Each run prints one line (see [`conformance`]).
/// One invocation per test module.
macro_rules! conformance {
    (
        every_store: [$($all:ident),* $(,)?],
        postgres: [$($pg:ident),* $(,)?],
        sqlite: [$($lite:ident),* $(,)?],
        host_only: [$($only:ident => $why:literal),* $(,)?] $(,)?
    ) => {
        conformance!(@host vapi_edge_host, VapiEdgeHost, [$($all),*], [$($pg),*], [$($lite),*]);
        conformance!(@host spin, Spin, [$($all),*], [$($pg),*], [$($lite),*]);
        mod vapi_edge_host_only {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $only() {
                    crate::common::conformance::run_host_only(
                        stringify!($only), crate::common::HostKind::VapiEdgeHost, $why, super::$only,
                    ).await
                }
            )*
        }
        // Spin has no such feature: listed by `cargo test` as ignored, with why.
        mod spin_host_only {
            $(
                #[tokio::test(flavor = "multi_thread")]
                #[ignore = $why]
                async fn $only() {
                    crate::common::conformance::run_host_only(
                        stringify!($only), crate::common::HostKind::Spin, $why, super::$only,
                    ).await
                }
            )*
        }
    };
    (@host $module:ident, $kind:ident, [$($all:ident),*], [$($pg:ident),*], [$($lite:ident),*]) => {
        mod $module {
            mod postgres {
                $( conformance!(@test $all, $kind, Postgres); )*
                $( conformance!(@test $pg, $kind, Postgres); )*
            }
            mod sqlite {
                $( conformance!(@test $all, $kind, Sqlite); )*
                $( conformance!(@test $lite, $kind, Sqlite); )*
            }
        }
    };
    (@test $name:ident, $kind:ident, $store:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            crate::common::conformance::run(
                stringify!($name),
                crate::common::HostKind::$kind,
                crate::common::StoreKind::$store,
                super::super::$name,
            )
            .await
        }
    };
}
