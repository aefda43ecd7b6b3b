//! Which handler answers which method and path (the contract in DESIGN.md,
//! "Routes", plus `POST /admin/replay`).
#![forbid(unsafe_code)]

use crate::logging::emit;
use crate::services::{self, variable};
use crate::store;
use crate::webhook::{self, After};
use vapi_edge_core::health;
use vapi_edge_core::http::{Request, Response};
use vapi_edge_core::log::{Level, LogLine};
use vapi_edge_core::metrics::{self, Snapshot};
use vapi_edge_core::verify::bearer_matches;

/// The response, and work to do once it has been sent.
pub fn route(request: Request) -> (Response, After) {
    match (request.route(), request.method.as_str()) {
        ("/webhooks/vapi", "POST") => webhook::handle(&request),
        (path, method) => (route_other(&request, path, method), After::default()),
    }
}

fn route_other(request: &Request, path: &str, method: &str) -> Response {
    match (path, method) {
        ("/healthz", "GET" | "HEAD") => healthz(),
        ("/healthz", _) => Response::method_not_allowed("GET, HEAD"),
        ("/webhooks/vapi", _) => Response::method_not_allowed("POST"),
        ("/metrics", "GET") => guarded(request, "metrics_token", metrics_text),
        ("/metrics", _) => Response::method_not_allowed("GET"),
        ("/admin/replay", "POST") => guarded(request, "admin_token", || webhook::replay(50)),
        ("/admin/replay", _) => Response::method_not_allowed("POST"),
        _ => Response::not_found(),
    }
}

/// Runs `answer` only for `Authorization: Bearer <token>` with the token in
/// variable `token_variable`; with the variable unset the route is closed.
fn guarded(request: &Request, token_variable: &str, answer: impl FnOnce() -> Response) -> Response {
    let Some(token) = variable(token_variable) else {
        return Response::error(
            403,
            &format!("{token_variable} is not set; this route is closed"),
        );
    };
    let presented = request.headers.one("authorization").ok().flatten();
    if !bearer_matches(presented, &token) {
        return Response::error(401, "a valid bearer token is required")
            .with_header("www-authenticate", "Bearer");
    }
    answer()
}

fn metrics_text() -> Response {
    let snapshot = store::Target::configured()
        .open()
        .and_then(|db| db.metrics_snapshot())
        .map(|json| serde_json::from_str::<Snapshot>(&json).map_err(|e| e.to_string()));
    match snapshot {
        Ok(Ok(snapshot)) => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&snapshot),
        ),
        Ok(Err(error)) => metrics_unavailable(&error),
        Err(error) => metrics_unavailable(&error.detail),
    }
}

fn metrics_unavailable(error: &str) -> Response {
    emit(&LogLine::new(Level::Error, "Metrics unavailable").field("error", error));
    Response::error(503, "metrics are unavailable: the database did not answer")
}

fn healthz() -> Response {
    let checks = [store::health_check(), services::key_value_check()];
    let (status, body) = health::report(&checks);
    Response::json(status, &body).with_header("cache-control", "no-store")
}
