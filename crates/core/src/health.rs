//! The readiness report behind `GET /healthz`: which dependency is broken, as JSON.
//!
//! The component gathers one [`Check`] per dependency; this module decides the
//! status code and the body, so the rule is tested without any host.

use serde_json::{json, Map, Value};

/// The outcome of probing one dependency.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Short, public description of the failure; never a secret or a raw driver error.
    pub error: Option<String>,
    /// Extra public facts, e.g. the schema version seen.
    pub details: Vec<(&'static str, Value)>,
}

impl Check {
    pub fn pass(name: &'static str) -> Self {
        Check {
            name,
            ok: true,
            error: None,
            details: Vec::new(),
        }
    }

    pub fn fail(name: &'static str, error: impl Into<String>) -> Self {
        Check {
            name,
            ok: false,
            error: Some(error.into()),
            details: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.details.push((key, value.into()));
        self
    }
}

/// Status code and JSON body for a set of checks: 200 when all pass, else 503
/// with `failing` naming each broken dependency.
pub fn report(checks: &[Check]) -> (u16, Value) {
    let failing: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let mut by_name = Map::new();
    for check in checks {
        let mut entry = Map::new();
        entry.insert("ok".into(), check.ok.into());
        if let Some(error) = &check.error {
            entry.insert("error".into(), error.clone().into());
        }
        for (key, value) in &check.details {
            entry.insert((*key).into(), value.clone());
        }
        by_name.insert(check.name.into(), Value::Object(entry));
    }
    let (status, word) = if failing.is_empty() {
        (200, "ok")
    } else {
        (503, "unavailable")
    };
    (
        status,
        json!({ "status": word, "failing": failing, "checks": by_name }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_passing_is_200() {
        let (status, body) = report(&[Check::pass("postgres"), Check::pass("key_value")]);
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["failing"], json!([]));
    }

    #[test]
    fn a_failure_is_503_and_named() {
        let (status, body) = report(&[
            Check::fail("postgres", "connection failed"),
            Check::pass("key_value").with("probe", 3),
        ]);
        assert_eq!(status, 503);
        assert_eq!(body["failing"], json!(["postgres"]));
        assert_eq!(body["checks"]["postgres"]["error"], "connection failed");
        assert_eq!(body["checks"]["key_value"]["probe"], 3);
    }
}
