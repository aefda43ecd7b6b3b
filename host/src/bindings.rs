//! Host-side bindings generated from `wit/world.wit` (world `host-services`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "vapi:edge/host-services",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::state::KvHandle,
        "wasi:keyvalue/store.bucket": crate::state::KvHandle,
        "wasi:keyvalue/atomics.cas": crate::state::CasHandle,
        "spin:postgres/postgres.connection": crate::pg::PgConnection,
        "spin:sqlite/sqlite.connection": crate::sqlite::SqliteConnection,
    },
});
