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
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
}

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
    #[derive(Deserialize)]
    struct Row {
        id: String,
        config: Stored,
    }
    let rows = match effects.tenants().await {
        Ok(text) => serde_json::from_str::<Vec<Row>>(&text).unwrap_or_default(),
        Err(_) => return unavailable(),
    };
    let mut tenants = rows
        .iter()
        .filter(|row| only.is_none_or(|id| row.id == id))
        .map(|row| shown(&row.id, &row.config));
    match only {
        None => Response::json(200, &json!({ "tenants": tenants.collect::<Vec<_>>() })),
        Some(_) => match tenants.next() {
            Some(tenant) => Response::json(200, &tenant),
            None => Response::error(404, "no such tenant"),
        },
    }
}

async fn put<E: Effects>(effects: &mut E, request: &Request, id: &str) -> Response {
    let body: Put = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(error) => {
            return Response::bad_request(
                "body",
                &format!("expected {{\"variables\": {{...}}, \"disabled\": false}}: {error}"),
            )
        }
    };
    let keys = match effects.variable(seal::KEYS_VARIABLE) {
        Some(value) => match SecretsKeys::from_variable(&value) {
            Ok(keys) => Some(keys),
            Err(error) => return Response::error(503, &error.to_string()),
        },
        None => None,
    };
    let mut stored = Stored {
        disabled: body.disabled,
        ..Stored::default()
    };
    for (name, value) in &body.variables {
        let nonce = effects.nonce();
        if let Err(error) = stored.set(id, name, value, keys.as_ref(), nonce) {
            return Response::bad_request(&format!("variables.{name}"), &error.to_string());
        }
    }
    if let Err(problem) = check(id, &stored, keys.as_ref(), |name| effects.variable(name)) {
        return Response::bad_request("variables", &problem);
    }
    let Ok(config) = serde_json::to_string(&stored) else {
        return Response::error(500, "the configuration could not be written");
    };
    if effects.put_tenant(id, &config).await.is_err() {
        return unavailable();
    }
    cache::forget(effects, id).await;
    changed(effects, id, "put");
    Response::json(200, &shown(id, &stored))
}
