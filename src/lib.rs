//! The vapi-edge Spin component: a thin door between wasi:http and
//! `vapi-edge-core`, where every route and every decision lives. Modules other
//! than this one forbid `unsafe`; this one holds the export glue that
//! `#[http_component]` generates.
//!
//! It reads the request's head, lets `app::precheck` refuse a webhook that
//! cannot be authentic before its body is read, reads the body (bounded),
//! asks `app::route` for a response over
//! Spin's services (`effects`), writes it back, and then runs what follows the
//! response (the event record and the dashboard notification). It reads
//! nothing that only Spin sets, so it runs in any wasi:http 0.2 host.

mod db;
mod effects;
mod http_io;
mod outbound;

use effects::SpinEffects;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use vapi_edge_core::app;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let mut effects = SpinEffects::default();
    let (response, after) = match http_io::read_head(request) {
        // The head alone may decide (a webhook that cannot be authentic): its
        // body is then never read.
        Ok((head, incoming)) => match app::precheck(&mut effects, &head).await {
            Some(answer) => answer,
            None => match http_io::read_body_into(head, incoming) {
                Ok(request) => app::route(&mut effects, &request).await,
                Err(rejection) => (rejection, app::After::none()),
            },
        },
        Err(rejection) => (rejection, app::After::none()),
    };
    http_io::write_response(out, response);
    // The caller has its answer; a slow relay or database can no longer delay it.
    after.run(&mut effects).await;
}
