//! Which handler answers which method and path (the contract in DESIGN.md, "Routes").
#![forbid(unsafe_code)]

use crate::relay::Notification;
use crate::{services, webhook};
use vapi_edge_core::health;
use vapi_edge_core::http::{Request, Response};

/// The response, and work to do once it has been sent.
pub fn route(request: Request) -> (Response, Option<Notification>) {
    match (request.route(), request.method.as_str()) {
        ("/webhooks/vapi", "POST") => webhook::handle(&request),
        (path, method) => (route_other(path, method), None),
    }
}

fn route_other(path: &str, method: &str) -> Response {
    match (path, method) {
        ("/healthz", "GET" | "HEAD") => healthz(),
        ("/healthz", _) => Response::method_not_allowed("GET, HEAD"),
        ("/webhooks/vapi", _) => Response::method_not_allowed("POST"),
        ("/metrics", "GET") => Response::error(501, "metrics are not implemented yet"),
        ("/metrics", _) => Response::method_not_allowed("GET"),
        _ => Response::not_found(),
    }
}

fn healthz() -> Response {
    let checks = [services::postgres_check(), services::key_value_check()];
    let (status, body) = health::report(&checks);
    Response::json(status, &body).with_header("cache-control", "no-store")
}
