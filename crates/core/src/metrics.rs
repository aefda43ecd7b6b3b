//! `GET /metrics`: the checklist's figures in Prometheus' text exposition.
//!
//! A WASIp2 instance lives for one request and an edge app runs as many
//! replicas, so nothing is counted in memory: the component reads a
//! [`Snapshot`] from the durable event record in Postgres and this module
//! renders it. Names follow Prometheus conventions: one `vapi_edge_` prefix,
//! seconds, `_total` counters, and no call ids in labels.

use serde::Deserialize;
use std::fmt::Write;

/// Upper bounds (seconds) of the processing-time histogram's buckets.
pub const BUCKETS_S: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests on a tenant's URL, by outcome.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TenantCount {
    pub tenant: String,
    pub outcome: String,
    pub count: u64,
}

/// One scope's reconciliation with Vapi's API (`crate::reconcile`): its
/// totals, and when it last ran and last ran without an error (Unix ms).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Reconciliation {
    pub tenant: String,
    pub last_run_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub missing: u64,
    pub updated: u64,
    pub failed: u64,
}

/// Requests by message type, outcome and status class.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RequestCount {
    pub message_type: String,
    pub outcome: String,
    pub status_class: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Histogram {
    /// Cumulative counts, one per entry of [`BUCKETS_S`].
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// The checklist's hourly figures as the database sees them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LastHour {
    pub inbound_calls: u64,
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub avg_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub agent_lookup_failures: u64,
    pub call_tracking_failures: u64,
    /// Absent from a database not yet at schema 3's code: 0.
    #[serde(default)]
    pub upstream_failures: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Snapshot {
    pub requests: Vec<RequestCount>,
    pub inbound_calls_total: u64,
    pub agent_lookup_failures_total: u64,
    pub call_tracking_failures_total: u64,
    #[serde(default)]
    pub upstream_failures_total: u64,
    /// Calls recorded without an organisation, now (`call_logs.org_id` NULL).
    #[serde(default)]
    pub unassigned_calls: u64,
    /// Verified deliveries on tenants' URLs, by tenant and outcome.
    #[serde(default)]
    pub tenants: Vec<TenantCount>,
    /// Reconciliation, per scope that ever ran one.
    #[serde(default)]
    pub reconciliation: Vec<Reconciliation>,
    pub processing: Histogram,
    pub last_hour: LastHour,
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        // No traffic is not a failure: report full success and no errors.
        return if part == whole { 1.0 } else { 0.0 };
    }
    part as f64 / whole as f64
}

/// Reconciliation's figures, labelled by scope (`tenant`, '' for the
/// single-tenant route): a bounded set, as scopes are an operator's list.
fn render_reconciliation(out: &mut String, scopes: &[Reconciliation]) {
    header(
        out,
        "vapi_edge_reconcile_calls_total",
        "counter",
        "Calls reconciliation with Vapi's API found missing (no webhook recorded), brought up to date (no end-of-call report recorded) or failed to record.",
    );
    for scope in scopes {
        for (result, count) in [
            ("missing", scope.missing),
            ("updated", scope.updated),
            ("failed", scope.failed),
        ] {
            let _ = writeln!(
                out,
                "vapi_edge_reconcile_calls_total{{tenant=\"{}\",result=\"{result}\"}} {count}",
                label(&scope.tenant)
            );
        }
    }
    for (name, help, read) in [
        (
            "vapi_edge_reconcile_last_run_timestamp_seconds",
            "When reconciliation last finished a run (Unix seconds).",
            (|s: &Reconciliation| s.last_run_ms) as fn(&Reconciliation) -> Option<i64>,
        ),
        (
            "vapi_edge_reconcile_last_success_timestamp_seconds",
            "When reconciliation last finished a run without an error (Unix seconds).",
            |s: &Reconciliation| s.last_success_ms,
        ),
    ] {
        header(out, name, "gauge", help);
        for scope in scopes {
            if let Some(ms) = read(scope) {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\"}} {}",
                    label(&scope.tenant),
                    ms as f64 / 1000.0
                );
            }
        }
    }
}

/// The exposition text for `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "vapi_edge_webhook_requests_total",
        "counter",
        "Verified webhook requests by message type, outcome and status class.",
    );
    for r in &snapshot.requests {
        let _ = writeln!(
            out,
            "vapi_edge_webhook_requests_total{{message_type=\"{}\",outcome=\"{}\",status_class=\"{}\"}} {}",
            label(&r.message_type),
            label(&r.outcome),
            label(&r.status_class),
            r.count
        );
    }
    header(
        &mut out,
        "vapi_edge_tenant_webhook_requests_total",
        "counter",
        "Verified webhook requests on each tenant's URL (/webhooks/vapi/{tenant}), by outcome.",
    );
    for t in &snapshot.tenants {
        let _ = writeln!(
            out,
            "vapi_edge_tenant_webhook_requests_total{{tenant=\"{}\",outcome=\"{}\"}} {}",
            label(&t.tenant),
            label(&t.outcome),
            t.count
        );
    }
    render_reconciliation(&mut out, &snapshot.reconciliation);
    for (name, help, value) in [
        (
            "vapi_edge_inbound_calls_total",
            "Distinct inbound calls tracked.",
            snapshot.inbound_calls_total,
        ),
        (
            "vapi_edge_agent_lookup_failures_total",
            "Webhooks answered 500 because no agent had the assistant id after every retry.",
            snapshot.agent_lookup_failures_total,
        ),
        (
            "vapi_edge_call_tracking_failures_total",
            "Inbound call events whose call_tracking write failed.",
            snapshot.call_tracking_failures_total,
        ),
        (
            "vapi_edge_upstream_failures_total",
            "Reply-expecting messages the upstream did not answer in time or in Vapi's shape (the fallback answered).",
            snapshot.upstream_failures_total,
        ),
    ] {
        header(&mut out, name, "counter", help);
        sample(&mut out, name, value);
    }

    let histogram = &snapshot.processing;
    header(
        &mut out,
        "vapi_edge_webhook_processing_seconds",
        "histogram",
        "Time from request to response, per verified webhook.",
    );
    for (bound, count) in BUCKETS_S.iter().zip(&histogram.buckets) {
        let _ = writeln!(
            out,
            "vapi_edge_webhook_processing_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "vapi_edge_webhook_processing_seconds_bucket{{le=\"+Inf\"}} {}",
        histogram.count
    );
    sample(
        &mut out,
        "vapi_edge_webhook_processing_seconds_sum",
        histogram.sum_seconds,
    );
    sample(
        &mut out,
        "vapi_edge_webhook_processing_seconds_count",
        histogram.count,
    );

    let hour = &snapshot.last_hour;
    let gauges: [(&str, &str, Option<f64>); 9] = [
        (
            "vapi_edge_unassigned_calls",
            "Calls recorded without an organisation, waiting for `vapi-edge-host map-org`.",
            Some(snapshot.unassigned_calls as f64),
        ),
        (
            "vapi_edge_inbound_calls_last_hour",
            "Inbound calls first seen in the last hour.",
            Some(hour.inbound_calls as f64),
        ),
        (
            "vapi_edge_webhook_success_ratio_last_hour",
            "Share of verified webhooks answered 2xx in the last hour.",
            Some(ratio(hour.succeeded, hour.requests)),
        ),
        (
            "vapi_edge_webhook_error_ratio_last_hour",
            "Share of verified webhooks answered 5xx in the last hour.",
            Some(if hour.requests == 0 {
                0.0
            } else {
                ratio(hour.failed, hour.requests)
            }),
        ),
        (
            "vapi_edge_webhook_processing_seconds_avg_last_hour",
            "Average processing time in the last hour.",
            hour.avg_seconds,
        ),
        (
            "vapi_edge_webhook_processing_seconds_p95_last_hour",
            "95th percentile of processing time in the last hour.",
            hour.p95_seconds,
        ),
        (
            "vapi_edge_agent_lookup_failures_last_hour",
            "Agent lookup failures in the last hour.",
            Some(hour.agent_lookup_failures as f64),
        ),
        (
            "vapi_edge_call_tracking_failures_last_hour",
            "call_tracking write failures in the last hour.",
            Some(hour.call_tracking_failures as f64),
        ),
        (
            "vapi_edge_upstream_failures_last_hour",
            "Upstream failures in the last hour.",
            Some(hour.upstream_failures as f64),
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, "gauge", help);
        if let Some(value) = value {
            sample(&mut out, name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A minimal reader of the exposition format: `name{labels}` → value,
    /// checking that every sample has HELP and TYPE lines before it.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut typed = std::collections::HashSet::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split_whitespace().next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let family = series.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| family.strip_suffix(s))
                .filter(|b| typed.contains(*b))
                .unwrap_or(family);
            assert!(typed.contains(base), "{family} has no TYPE line");
            samples.insert(series.to_string(), value.parse::<f64>().unwrap());
        }
        samples
    }

    #[test]
    fn renders_parseable_conventional_metrics() {
        let snapshot = Snapshot {
            requests: vec![RequestCount {
                message_type: "status-update".into(),
                outcome: "recorded".into(),
                status_class: "2xx".into(),
                count: 9,
            }],
            inbound_calls_total: 7,
            agent_lookup_failures_total: 1,
            call_tracking_failures_total: 0,
            upstream_failures_total: 2,
            unassigned_calls: 3,
            tenants: vec![TenantCount {
                tenant: "acme".into(),
                outcome: "recorded".into(),
                count: 4,
            }],
            reconciliation: vec![Reconciliation {
                tenant: "".into(),
                last_run_ms: Some(1_796_000_000_500),
                last_success_ms: None,
                missing: 6,
                updated: 2,
                failed: 1,
            }],
            processing: Histogram {
                buckets: vec![1, 5, 9, 10, 10, 10, 10, 10, 10, 10, 10],
                count: 10,
                sum_seconds: 0.1,
            },
            last_hour: LastHour {
                inbound_calls: 7,
                requests: 10,
                succeeded: 9,
                failed: 1,
                avg_seconds: Some(0.01),
                p95_seconds: Some(0.02),
                agent_lookup_failures: 1,
                call_tracking_failures: 0,
                upstream_failures: 2,
            },
        };
        let samples = parse(&render(&snapshot));
        assert_eq!(samples["vapi_edge_upstream_failures_total"], 2.0);
        assert_eq!(samples["vapi_edge_upstream_failures_last_hour"], 2.0);
        assert_eq!(
            samples
                ["vapi_edge_tenant_webhook_requests_total{tenant=\"acme\",outcome=\"recorded\"}"],
            4.0
        );
        assert_eq!(samples["vapi_edge_webhook_requests_total{message_type=\"status-update\",outcome=\"recorded\",status_class=\"2xx\"}"], 9.0);
        assert_eq!(
            samples["vapi_edge_reconcile_calls_total{tenant=\"\",result=\"missing\"}"],
            6.0
        );
        assert_eq!(
            samples["vapi_edge_reconcile_last_run_timestamp_seconds{tenant=\"\"}"],
            1_796_000_000.5
        );
        assert!(!render(&snapshot).contains("vapi_edge_reconcile_last_success_timestamp_seconds{"));
        assert_eq!(
            samples["vapi_edge_webhook_processing_seconds_bucket{le=\"0.01\"}"],
            5.0
        );
        assert_eq!(
            samples["vapi_edge_webhook_processing_seconds_bucket{le=\"+Inf\"}"],
            10.0
        );
        assert_eq!(samples["vapi_edge_webhook_success_ratio_last_hour"], 0.9);
        assert_eq!(samples["vapi_edge_webhook_error_ratio_last_hour"], 0.1);
        assert_eq!(samples["vapi_edge_inbound_calls_total"], 7.0);
        assert_eq!(samples["vapi_edge_unassigned_calls"], 3.0);
        for name in samples.keys() {
            assert!(name.starts_with("vapi_edge_"), "{name}");
            assert!(!name.contains("call_id"), "{name}");
        }
    }

    #[test]
    fn no_traffic_is_full_success_and_labels_are_escaped() {
        let snapshot = Snapshot {
            requests: vec![RequestCount {
                message_type: "a\"b\\c\nd".into(),
                outcome: "ignored".into(),
                status_class: "2xx".into(),
                count: 1,
            }],
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        assert!(text.contains("message_type=\"a\\\"b\\\\c\\nd\""));
        let samples = parse(&text);
        assert_eq!(samples["vapi_edge_webhook_success_ratio_last_hour"], 1.0);
        assert_eq!(samples["vapi_edge_webhook_error_ratio_last_hour"], 0.0);
        assert!(!samples.contains_key("vapi_edge_webhook_processing_seconds_p95_last_hour"));
    }
}
