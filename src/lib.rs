//! The vapi-edge Spin component: a thin door between wasi:http and the pure logic
//! in `vapi-edge-core`. Modules other than this one forbid `unsafe`; this one holds
//! the export glue that `#[http_component]` generates.
//!
//! This file only moves bytes: it reads the request (bounded), asks the router
//! for a response and writes it back. It reads nothing that only Spin sets, so
//! it runs in any wasi:http 0.2 host.

mod http_io;
mod routes;
mod services;

use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let response = match http_io::read_request(request) {
        Ok(request) => routes::route(request),
        Err(rejection) => rejection,
    };
    http_io::write_response(out, response);
}
