//! Which handler answers which method and path (the contract in DESIGN.md, "Routes").
#![forbid(unsafe_code)]

use crate::services;
use vapi_edge_core::health;
use vapi_edge_core::http::{Request, Response};

pub fn route(request: Request) -> Response {
    match (request.route(), request.method.as_str()) {
        ("/healthz", "GET" | "HEAD") => healthz(),
        ("/healthz", _) => Response::method_not_allowed("GET, HEAD"),
        ("/webhooks/vapi", "POST") => {
            Response::error(501, "webhook handling is not implemented yet")
        }
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
