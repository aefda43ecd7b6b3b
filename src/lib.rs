//! The vapi-edge Spin component: a thin door between wasi:http and the pure logic
//! in `vapi-edge-core`. Modules other than this one forbid `unsafe`; this one holds
//! the export glue that `#[http_component]` generates.
//!
//! This file only moves bytes: it reads the request (bounded), asks the router
//! for a response, writes it back, and then runs what may follow the response
//! (the event record and the dashboard notification). It reads nothing that only Spin sets, so it
//! runs in any wasi:http 0.2 host.

mod claim;
mod http_io;
mod logging;
mod relay;
mod routes;
mod services;
mod store;
mod webhook;

use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let (response, after) = match http_io::read_request(request) {
        Ok(request) => routes::route(request),
        Err(rejection) => (rejection, webhook::After::default()),
    };
    http_io::write_response(out, response);
    // The caller has its answer; a slow relay or database can no longer delay it.
    after.run();
}
