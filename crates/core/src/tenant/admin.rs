//! The tenants' admin route, for operators (`Authorization: Bearer
//! <admin_token>`), beside `vapi-edge-host tenant`:
//!
//! - `GET /admin/tenants`: every tenant, secrets shown only as "(sealed)" or
//!   "(N hashed)";
//! - `GET /admin/tenants/{id}`: one;
//! - `PUT /admin/tenants/{id}` with `{"variables": {NAME: VALUE, ...},
//!   "disabled": false}`: the tenant's whole configuration, secrets given in
//!   clear and kept hashed or sealed; checked as a webhook would read it;
//! - `DELETE /admin/tenants/{id}`: the tenant (its calls and mappings stay).
//!
//! A change clears the key-value store's copy, so every replica that shares
//! the store sees it at once, and every other within `tenant_cache_ms`.

use super::{cache, check, seal, valid_id, SecretsKeys, Stored};
use crate::effects::Effects;
use crate::http::{Request, Response};
use crate::log::{Level, LogLine};
use serde_json::{json, Value};

/// Answers `/admin/tenants` (`rest` is what follows it); the caller has
/// checked the operator's token.
pub async fn serve<E: Effects>(effects: &mut E, request: &Request, rest: &str) -> Response {
    let id = rest.trim_start_matches('/');
    match (id, request.method.as_str()) {
        ("", "GET") => list(effects, None).await,
        ("", _) => Response::method_not_allowed("GET"),
        (id, _) if !valid_id(id) => Response::bad_request(
            "id",
            "a tenant id is 1-63 of a-z, 0-9 and -, not starting with -",
        ),
        (id, "GET") => list(effects, Some(id)).await,
        (id, "PUT") => put(effects, request, id).await,
        (id, "DELETE") => match effects.delete_tenant(id).await {
            Ok(()) => {
                cache::forget(effects, id).await;
                changed(effects, id, "deleted");
                Response::json(200, &json!({ "deleted": id }))
            }
            Err(_) => unavailable(),
        },
        _ => Response::method_not_allowed("GET, PUT, DELETE"),
    }
}

fn unavailable() -> Response {
    Response::error(503, "the database did not answer; retry later").with_header("retry-after", "1")
}

fn changed(effects: &mut impl Effects, id: &str, action: &str) {
    effects.emit(
        &LogLine::new(Level::Info, "Tenant changed")
            .field("tenant", id)
            .field("action", action),
    );
}

fn shown(id: &str, stored: &Stored) -> serde_json::Value {
    let mut shown = stored.describe();
    shown["id"] = id.into();
    shown["url_path"] = format!("{}{id}", crate::app::TENANT_WEBHOOKS).into();
    shown
}

async fn list<E: Effects>(effects: &mut E, only: Option<&str>) -> Response {
    let rows = match effects.tenants().await {
        Ok(text) => cache::rows(&text).unwrap_or_default(),
        Err(_) => return unavailable(),
    };
    let mut tenants = rows
        .iter()
        .filter(|(id, _)| only.is_none_or(|only| id == only))
        .map(|(id, config)| match config {
            Ok(config) => shown(id, config),
            Err(error) => json!({ "id": id, "error": error.to_string() }),
        });
    match only {
        None => Response::json(200, &json!({ "tenants": tenants.collect::<Vec<_>>() })),
        Some(_) => match tenants.next() {
            Some(tenant) => Response::json(200, &tenant),
            None => Response::error(404, "no such tenant"),
        },
    }
}

async fn put<E: Effects>(effects: &mut E, request: &Request, id: &str) -> Response {
    let body = serde_json::from_slice::<Value>(&request.body).ok();
    let Some(body) = body.as_ref().and_then(Value::as_object) else {
        return Response::bad_request(
            "body",
            "expected {\"variables\": {NAME: VALUE, ...}, \"disabled\": false}",
        );
    };
    if let Some(other) = body.keys().find(|k| *k != "variables" && *k != "disabled") {
        return Response::bad_request(other, "not a field of a tenant");
    }
    let disabled = match body.get("disabled") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Response::bad_request("disabled", "expected true or false"),
    };
    let empty = serde_json::Map::new();
    let variables = match body.get("variables") {
        None => &empty,
        Some(Value::Object(variables)) => variables,
        Some(_) => return Response::bad_request("variables", "expected an object of strings"),
    };
    let keys = match effects.variable(seal::KEYS_VARIABLE) {
        Some(value) => match SecretsKeys::from_variable(&value) {
            Ok(keys) => Some(keys),
            Err(error) => return Response::error(503, &error.to_string()),
        },
        None => None,
    };
    let mut stored = Stored {
        disabled,
        ..Stored::default()
    };
    for (name, value) in variables {
        let Some(value) = value.as_str() else {
            return Response::bad_request(&format!("variables.{name}"), "expected a string");
        };
        let nonce = effects.nonce();
        if let Err(error) = stored.set(id, name, value, keys.as_ref(), nonce) {
            return Response::bad_request(&format!("variables.{name}"), &error.to_string());
        }
    }
    if let Err(problem) = check(id, &stored, keys.as_ref(), |name| effects.variable(name)) {
        return Response::bad_request("variables", &problem);
    }
    let config = stored.to_json().to_string();
    if effects.put_tenant(id, &config).await.is_err() {
        return unavailable();
    }
    cache::forget(effects, id).await;
    changed(effects, id, "put");
    Response::json(200, &shown(id, &stored))
}
