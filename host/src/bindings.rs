//! Host-side bindings generated from `wit/world.wit` (world `host-services`).
//! The resources are the backends' own types; `interfaces` converts the rest.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "vapi:edge/host-services",
    // Async only where the host waits on I/O. A synchronous host call skips
    // the boxed future and its poll on the guest's fiber: per request the
    // component makes ~16 variable lookups, and opens and drops a handle or two.
    imports: {
        "fermyon:spin/variables.get": trappable,
        "fermyon:spin/key-value.[static]store.open": trappable,
        "fermyon:spin/key-value.[drop]store": trappable,
        "wasi:keyvalue/store.open": trappable,
        "wasi:keyvalue/store.[drop]bucket": trappable,
        "wasi:keyvalue/atomics.[drop]cas": trappable,
        "spin:postgres/postgres.[drop]connection": trappable,
        "spin:sqlite/sqlite.[method]connection.last-insert-rowid": trappable,
        "spin:sqlite/sqlite.[method]connection.changes": trappable,
        "spin:sqlite/sqlite.[drop]connection": trappable,
        default: async | trappable,
    },
    with: {
        "fermyon:spin/key-value.store": vapi_edge_backends::kv::Bucket,
        "wasi:keyvalue/store.bucket": vapi_edge_backends::kv::Bucket,
        "wasi:keyvalue/atomics.cas": vapi_edge_backends::kv::Cas,
        "spin:postgres/postgres.connection": vapi_edge_backends::pg::PgConnection,
        "spin:sqlite/sqlite.connection": vapi_edge_backends::sqlite::SqliteConnection,
    },
});
