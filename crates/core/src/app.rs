//! Which handler answers which method and path (the contract in docs/contract.md,
//! "Routes", plus `POST /admin/replay`), and the operator routes themselves:
//! `/healthz`, `/metrics` and the replay; reconciliation's are in
//! [`crate::reconcile`], the dashboard's in
//! [`crate::dashboard`]. A host calls [`route`] with a fully
//! read request, sends the response, then runs the returned [`After`].

use crate::dashboard;
use crate::db::DbError;
use crate::effects::Effects;
use crate::health::{self, Check};
use crate::http::{Request, Response};
use crate::log::{Level, LogLine};
use crate::metrics::{self, Snapshot};
use crate::reconcile;
use crate::replay;
use crate::schema::{is_compatible, version_number, SCHEMA_VERSION};
use crate::tenant;
use crate::verify::bearer_matches;
use crate::webhook;
pub use crate::webhook::After;

/// Dead letters one `POST /admin/replay` re-drives.
pub const REPLAY_BATCH: i64 = 50;

/// For a host that reads the body after the head: the response to give
/// without reading the body at all, when the head alone decides it (see
/// [`webhook::precheck`]); `None` to read the body and [`route`] the request.
/// `request.body` is not looked at.
///
/// It starts a request: whatever tenant scope the effects held is left, and a
/// tenant's route enters its own, which [`route`] then finds.
pub async fn precheck<E: Effects>(effects: &mut E, request: &Request) -> Option<(Response, After)> {
    effects.set_tenant_scope(None);
    match (request.route(), request.method.as_str()) {
        ("/webhooks/vapi", "POST") => webhook::precheck(effects, request).await,
        (path, "POST") if path.starts_with(TENANT_WEBHOOKS) => {
            // A token request's body is its credential: read it.
            let id = path[TENANT_WEBHOOKS.len()..].to_string();
            match id.contains('/') {
                true => None,
                false => webhook::precheck_tenant(effects, request, &id).await,
            }
        }
        _ => None,
    }
}

/// Where each tenant's webhooks go: `POST /webhooks/vapi/{tenant}`.
pub const TENANT_WEBHOOKS: &str = "/webhooks/vapi/";

/// The response, and work to do once it has been sent. The one table of
/// routes: every path and method the component answers is here.
pub async fn route<E: Effects>(effects: &mut E, request: &Request) -> (Response, After) {
    let path = request.route();
    if !path.starts_with(TENANT_WEBHOOKS) {
        effects.set_tenant_scope(None);
    }
    let response = match (path, request.method.as_str()) {
        ("/webhooks/vapi", "POST") => return webhook::handle(effects, request).await,
        ("/webhooks/vapi", _) => Response::method_not_allowed("POST"),
        (path, "POST") if path.starts_with(TENANT_WEBHOOKS) => {
            match path[TENANT_WEBHOOKS.len()..].split_once('/') {
                None => {
                    let id = &path[TENANT_WEBHOOKS.len()..];
                    return webhook::handle_tenant(effects, request, id).await;
                }
                Some((id, "token")) => webhook::handle_token(effects, request, id).await,
                Some(_) => Response::not_found(),
            }
        }
        (path, _) if path.starts_with(TENANT_WEBHOOKS) => Response::method_not_allowed("POST"),
        ("/healthz", "GET" | "HEAD") => healthz(effects).await,
        ("/healthz", _) => Response::method_not_allowed("GET, HEAD"),
        ("/metrics", "GET") => match authorised(effects, request, "metrics_token") {
            Ok(()) => metrics_text(effects).await,
            Err(refusal) => refusal,
        },
        ("/metrics", _) => Response::method_not_allowed("GET"),
        ("/admin/replay", "POST") => match authorised(effects, request, "admin_token") {
            Ok(()) => replay::replay(effects, REPLAY_BATCH).await,
            Err(refusal) => refusal,
        },
        ("/admin/replay", _) => Response::method_not_allowed("POST"),
        (path, _) if path == "/admin/reconcile" || path.starts_with("/admin/reconcile/") => {
            match authorised(effects, request, "admin_token") {
                Ok(()) => {
                    let rest = &path["/admin/reconcile".len()..];
                    reconcile::serve(effects, request, rest).await
                }
                Err(refusal) => refusal,
            }
        }
        (path, _) if path == "/admin/tenants" || path.starts_with("/admin/tenants/") => {
            match authorised(effects, request, "admin_token") {
                Ok(()) => {
                    let rest = &path["/admin/tenants".len()..];
                    tenant::serve_admin(effects, request, rest).await
                }
                Err(refusal) => refusal,
            }
        }
        ("/dashboard" | "/dashboard/" | "/dashboard/app.js", _) => {
            dashboard::serve_page(effects, request)
        }
        (api, _) if api == "/api" || api.starts_with("/api/") => {
            dashboard::serve_api(effects, request).await
        }
        _ => Response::not_found(),
    };
    (response, After::none())
}

/// `Authorization: Bearer <token>` with the token in variable `token_variable`;
/// with the variable unset the route is closed (403).
fn authorised(
    effects: &impl Effects,
    request: &Request,
    token_variable: &str,
) -> Result<(), Response> {
    let Some(token) = effects.variable(token_variable) else {
        return Err(Response::error(
            403,
            &format!("{token_variable} is not set; this route is closed"),
        ));
    };
    let presented = request.headers.one("authorization").ok().flatten();
    if !bearer_matches(presented, &token) {
        return Err(Response::error(401, "a valid bearer token is required")
            .with_header("www-authenticate", "Bearer"));
    }
    Ok(())
}

async fn metrics_text(effects: &mut impl Effects) -> Response {
    let snapshot = effects.metrics_snapshot().await.and_then(|json| {
        serde_json::from_str::<Snapshot>(&json).map_err(|e| DbError::lasting(e.to_string()))
    });
    match snapshot {
        Ok(snapshot) => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&snapshot),
        ),
        Err(error) => {
            effects.emit(
                &LogLine::new(Level::Error, "Metrics unavailable").field("error", error.detail),
            );
            Response::error(503, "metrics are unavailable: the database did not answer")
        }
    }
}

async fn healthz(effects: &mut impl Effects) -> Response {
    let checks = [
        configuration_check(effects),
        database_check(effects).await,
        key_value_check(effects).await,
    ];
    let (status, body) = health::report(&checks);
    Response::json(status, &body).with_header("cache-control", "no-store")
}

/// The settings would let a webhook through (a bad one answers every webhook
/// 503: the deployment is not ready, whatever else works).
fn configuration_check(effects: &impl Effects) -> Check {
    match webhook::configuration_problem(effects) {
        None if !webhook::single_tenant_route_open(effects) => Check::pass("configuration").with(
            "single_tenant_route",
            "closed: no secret is set; tenants only",
        ),
        None => Check::pass("configuration"),
        Some(problem) => Check::fail("configuration", problem),
    }
}

/// The database answers and its schema is one this build runs on.
async fn database_check(effects: &mut impl Effects) -> Check {
    let name = effects.database().name();
    let seen = match effects.schema_version().await {
        Ok(Some(seen)) => seen,
        Ok(None) => {
            return Check::fail(name, "schema is not migrated (run vapi-edge-host migrate)")
        }
        Err(error) if error.unreachable => return Check::fail(name, "connection failed"),
        Err(_) => return Check::fail(name, "query failed"),
    };
    let check = match version_number(&seen) {
        Some(v) if is_compatible(v) => Check::pass(name),
        _ => Check::fail(
            name,
            "schema is older than this build needs (run vapi-edge-host migrate)",
        ),
    };
    check
        .with("schema_version", seen)
        .with("expected_schema_version", SCHEMA_VERSION)
}

/// The key-value store answers and keeps state across requests: each probe
/// increments a counter that lives in the host, not in an instance.
async fn key_value_check(effects: &mut impl Effects) -> Check {
    match effects.increment("vapi-edge/healthz/probes", 1).await {
        Ok(count) => Check::pass("key_value").with("probes", count),
        Err(_) => Check::fail("key_value", "store did not answer"),
    }
}
