//! The PostgreSQL statements of the component, shared with the native benchmark
//! baseline so both run exactly the same database work.
//!
//! Every statement that returns rows is written to return **at least one row**,
//! whatever it finds: "not found" is a row of NULLs, never an empty result. Spin
//! 4.0.0 to 4.0.2 never answers a `spin:postgres` `query` whose result is empty
//! (spinframework/spin#3671, fixed upstream after 4.0.2), and a component cannot
//! abandon a host call, so an empty result would hang the request. Each such
//! statement is listed in [`ROW_QUERIES`] with parameters that find nothing;
//! `host/tests/it/statements.rs` runs them on an empty database and checks for a row.

/// Records one call event: `vapi_record_event_v3` (migration 0008) finds
/// the call's owner and, in the one transaction of this one statement,
/// claims the event in `processed_webhook_events` and upserts `call_tracking`
/// (inbound) and `call_logs`. Its body lives only in the migration (a change
/// is a new function, `_v4`, in a new migration, so the previous build keeps
/// calling its own during a rolling deploy or after a rollback).
///
/// The owner is the first that resolves of: the agent with the assistant id
/// (`$1`); the agent mapped to the squad (`$23`), then to the workflow
/// (`$24`); the organisation that owns the line (`$25` phone-number id, `$26`
/// E.164); the organisation mapped to Vapi's organisation id (`$11`); the
/// default organisation (`$30`); each among the mappings of the tenant `$32`
/// only ('' for the single-tenant route), whose rows alone it changes. When none does, `$31` decides: true writes
/// the call without an owner (`via` = `none`), false writes nothing and
/// returns a row with a NULL organisation and `via` (the caller retries: an
/// assistant id no agent has yet). When the event key is already recorded
/// `claimed` is 0 and nothing is written. Statuses move forward only
/// (`status_rank`). Inbound calls of organisations outside
/// `inbound_rollout_percent` (`$21`) write nothing; the bucket is
/// `vapi_edge_core::rollout::bucket` in SQL.
///
/// Spin sends statements unprepared, and PostgreSQL would plan a statement of
/// this size each time; a PL/pgSQL function's plans are made once per
/// connection. `vapi-edge-host` and the native baseline prepare it, as any
/// statement. One row: (agent id, org id, agent name, claimed, tracked, lead
/// id, in rollout, via).
pub const RECORD_EVENT_CALL: &str = "SELECT * FROM vapi_record_event_v3(
    $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,
    $9::text, $10::int2, $11::text, $12::jsonb, $13::int8, $14::int8, $15::text,
    $16::float8, $17::float8, $18::text, $19::text, $20::text, $21::int8, $22::bool,
    $23::text, $24::text, $25::text, $26::text, $27::jsonb, $28::text, $29::jsonb,
    $30::text, $31::bool, $32::text)";

/// The migration that defines the function [`RECORD_EVENT_CALL`] calls.
pub const RECORD_EVENT_MIGRATION: &str = include_str!("../../../migrations/0008_tenants.sql");

/// Adds one row to `webhook_events`, the durable record `/metrics` is
/// computed from (written after the response).
pub const INSERT_EVENT_ROW: &str = "INSERT INTO webhook_events
    (message_type, vapi_call_id, org_id, direction, outcome, status_code, duration_ms, error_class,
     tenant)
VALUES ($1::text, $2::text, $3::text::uuid, $4::text, $5::text, $6::int2, $7::float8, $8::text,
        $9::text)";

/// The newest applied migration (`''` when none is); fails with SQLSTATE 42P01
/// when the schema was never migrated.
pub const SCHEMA_VERSION: &str =
    "SELECT coalesce(max(version), '') AS version FROM schema_migrations";

/// Keeps one pending dead letter per event; a repeated failure bumps `attempts`.
pub const UPSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters
    (event_key, message_type, vapi_call_id, reason, headers, body)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::bytea)
ON CONFLICT (event_key) WHERE replayed_at IS NULL DO UPDATE SET
    attempts = dead_letters.attempts + 1,
    reason = EXCLUDED.reason,
    body = EXCLUDED.body";

/// Up to `$1` pending dead letters, oldest first, as (id, body); with none
/// pending, one row of NULLs.
pub const PENDING_DEAD_LETTERS: &str = "SELECT d.id, d.body, d.event_key
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
    SELECT id, body, event_key FROM dead_letters WHERE replayed_at IS NULL ORDER BY id LIMIT $1::int8
) AS d ON true
ORDER BY d.id";

pub const MARK_REPLAYED: &str =
    "UPDATE dead_letters SET replayed_at = now(), replay_outcome = $2::text WHERE id = $1::int8";

pub const COUNT_PENDING_DEAD_LETTERS: &str =
    "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL";

/// What answers an `assistant-request` on a line of the tenant `$3` (by Vapi
/// phone-number id `$1`, else by E.164 number `$2`), as (agent id, org_id, name,
/// vapi_assistant_id, fallback assistant id, fallback number): the agent of
/// the line's inbound role, if it has an assistant id, and the line's
/// fallback; a row of NULLs when the line is not there.
pub const LINE_ANSWER: &str = "SELECT f.id, f.org_id, f.name, f.vapi_assistant_id,
       f.fallback_assistant_id, f.fallback_number
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
    SELECT a.id::text AS id, a.org_id::text AS org_id, a.name, a.vapi_assistant_id,
           p.fallback_assistant_id, p.fallback_number
    FROM phone_numbers p
    LEFT JOIN agents a ON a.org_id = p.org_id AND a.role = p.inbound_role
                      AND a.vapi_assistant_id IS NOT NULL
    WHERE (p.vapi_phone_number_id = $1::text OR p.phone_e164 = $2::text)
      AND p.tenant = $3::text
    ORDER BY (p.vapi_phone_number_id = $1::text) DESC NULLS LAST
    LIMIT 1
) AS f ON true";

/// Everything `/metrics` shows, as one JSON text (`vapi_edge_core::metrics::Snapshot`).
/// All-time figures come from the totals the migration 0005 triggers keep
/// (a few rows per label set, whatever the history); last-hour figures read
/// webhook_events and call_tracking through their time indexes. The
/// histogram's `le_*ms` columns are [`crate::metrics::BUCKETS_S`] in
/// milliseconds.
pub const METRICS_SNAPSHOT: &str = "WITH hour AS (
    SELECT * FROM webhook_events WHERE received_at > now() - interval '1 hour'
)
SELECT json_build_object(
  'requests', (SELECT coalesce(json_agg(r), '[]'::json) FROM (
      SELECT message_type, outcome, status_class, sum(count) AS count
      FROM webhook_event_totals GROUP BY 1, 2, 3 ORDER BY 1, 2, 3) r),
  'inbound_calls_total', (SELECT coalesce(sum(calls), 0) FROM call_tracking_totals),
  'unassigned_calls', (SELECT count(*) FROM call_logs WHERE org_id IS NULL),
  'tenants', (SELECT coalesce(json_agg(r), '[]'::json) FROM (
      SELECT tenant, outcome, sum(count) AS count
      FROM webhook_event_tenant_totals GROUP BY 1, 2 ORDER BY 1, 2) r),
  'reconciliation', (SELECT coalesce(json_agg(r ORDER BY r.tenant), '[]'::json) FROM (
      SELECT tenant, last_run_ms, last_success_ms, missing_total AS missing,
             updated_total AS updated, failed_total AS failed
      FROM reconciliation) r),
  'agent_lookup_failures_total',
      (SELECT coalesce(sum(count), 0) FROM webhook_event_totals WHERE error_class = 'agent_lookup'),
  'call_tracking_failures_total',
      (SELECT coalesce(sum(count), 0) FROM webhook_event_totals WHERE error_class = 'call_tracking'),
  'upstream_failures_total',
      (SELECT coalesce(sum(count), 0) FROM webhook_event_totals WHERE error_class = 'upstream'),
  'processing', (SELECT json_build_object(
      'buckets', json_build_array(
          coalesce(sum(le_5ms), 0),
          coalesce(sum(le_10ms), 0),
          coalesce(sum(le_25ms), 0),
          coalesce(sum(le_50ms), 0),
          coalesce(sum(le_100ms), 0),
          coalesce(sum(le_250ms), 0),
          coalesce(sum(le_500ms), 0),
          coalesce(sum(le_1000ms), 0),
          coalesce(sum(le_2500ms), 0),
          coalesce(sum(le_5000ms), 0),
          coalesce(sum(le_10000ms), 0)),
      'count', coalesce(sum(count), 0),
      'sum_seconds', coalesce(sum(sum_ms), 0) / 1000.0) FROM webhook_event_totals),
  'last_hour', (SELECT json_build_object(
      'inbound_calls', (SELECT count(*) FROM call_tracking
                        WHERE created_at > now() - interval '1 hour'),
      'requests', count(*),
      'succeeded', count(*) FILTER (WHERE status_code < 300),
      'failed', count(*) FILTER (WHERE status_code >= 500),
      'avg_seconds', avg(duration_ms) / 1000.0,
      'p95_seconds', percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) / 1000.0,
      'agent_lookup_failures', count(*) FILTER (WHERE error_class = 'agent_lookup'),
      'call_tracking_failures', count(*) FILTER (WHERE error_class = 'call_tracking'),
      'upstream_failures', count(*) FILTER (WHERE error_class = 'upstream'))
    FROM hour)
)::text";

/// The dashboard's statements share their parameters' meaning: `$1` the
/// organisations a token opens, comma-separated, or NULL for all of them.
macro_rules! pg_org_filter {
    ($column:literal) => {
        concat!(
            "($1::text IS NULL OR ",
            $column,
            "::text = ANY (string_to_array($1::text, ',')))"
        )
    };
}

/// `GET /api/calls`: one page of calls, newest first, as one JSON text
/// `{"calls": [...]}`. `$2` the cursor `created_at|id` of the last call of the
/// previous page (or NULL), `$3` a status, `$4` a direction (NULL: any), `$5`
/// how many rows (the page's size plus one, to tell whether another follows).
/// Keyset pagination on (created_at, id): calls recorded meanwhile come before
/// the first page, so the following pages neither repeat nor skip a call.
pub const DASHBOARD_CALLS: &str = concat!(
    "SELECT json_build_object('calls', coalesce((SELECT json_agg(r) FROM (
  SELECT c.id, c.vapi_call_id, c.org_id, c.direction, c.status, c.from_number, c.to_number,
         c.agent_id, a.name AS agent_name, c.lead_id, l.name AS lead_name,
         c.started_at, c.ended_at, c.ended_reason, c.duration_seconds, c.cost, c.summary,
         c.recording_url, c.created_at, c.updated_at,
         coalesce(c.metadata->>'source' = 'reconciliation', false) AS reconciled,
         to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS cursor_at
  FROM call_logs c
  LEFT JOIN agents a ON a.id = c.agent_id
  LEFT JOIN leads l ON l.id = c.lead_id
  WHERE ",
    pg_org_filter!("c.org_id"),
    "
    AND ($2::text IS NULL OR (c.created_at, c.id) <
         (split_part($2::text, '|', 1)::timestamptz, split_part($2::text, '|', 2)::uuid))
    AND ($3::text IS NULL OR c.status = $3::text)
    AND ($4::text IS NULL OR c.direction = $4::text)
  ORDER BY c.created_at DESC, c.id DESC
  LIMIT $5::bigint) r), '[]'::json))::text"
);

/// `GET /api/calls/{id}`: the call with its tracking row and every delivery of
/// its events (`webhook_events`), as one JSON text, or one NULL when the call
/// is not there or not the token's. `$2` the Vapi call id.
pub const DASHBOARD_CALL: &str = concat!(
    "SELECT (SELECT json_build_object(
  'id', c.id, 'vapi_call_id', c.vapi_call_id, 'org_id', c.org_id, 'direction', c.direction,
  'status', c.status, 'from_number', c.from_number, 'to_number', c.to_number,
  'agent_id', c.agent_id, 'agent_name', a.name, 'lead_id', c.lead_id, 'lead_name', l.name,
  'started_at', c.started_at, 'ended_at', c.ended_at, 'ended_reason', c.ended_reason,
  'duration_seconds', c.duration_seconds, 'cost', c.cost, 'costs', c.costs,
  'summary', c.summary, 'transcript', c.transcript, 'recording_url', c.recording_url,
  'structured_data', c.structured_data, 'success_evaluation', c.success_evaluation,
  'metadata', c.metadata, 'created_at', c.created_at, 'updated_at', c.updated_at,
  'reconciled', coalesce(c.metadata->>'source' = 'reconciliation', false),
  'tracking', (SELECT json_build_object('status', t.status, 'from_number', t.from_number,
                                        'to_number', t.to_number, 'created_at', t.created_at,
                                        'updated_at', t.updated_at)
               FROM call_tracking t WHERE t.vapi_call_id = c.vapi_call_id),
  'events', coalesce((SELECT json_agg(json_build_object(
                'received_at', e.received_at, 'message_type', e.message_type,
                'outcome', e.outcome, 'status_code', e.status_code,
                'duration_ms', e.duration_ms) ORDER BY e.received_at, e.id)
              FROM webhook_events e WHERE e.vapi_call_id = c.vapi_call_id), '[]'::json))
  FROM call_logs c
  LEFT JOIN agents a ON a.id = c.agent_id
  LEFT JOIN leads l ON l.id = c.lead_id
  WHERE c.vapi_call_id = $2::text AND ",
    pg_org_filter!("c.org_id"),
    ")::text"
);

/// `GET /api/summary`: the figures at the top of the dashboard, as one JSON
/// text: calls today (UTC), calls in progress (a live status, updated within
/// 12 h: a call whose end was never reported does not count forever), the
/// last hour's deliveries (the `/metrics` figures, for these organisations),
/// agent lookup failures, calls per hour of the last 24 h, and the calls
/// recorded without an organisation (`unassigned_calls`, for
/// all-organisation tokens; 0 for the others), and each scope's
/// reconciliation with Vapi's API (`reconciliation`, all-organisation tokens
/// only: its figures span organisations). Deliveries and calls that no
/// organisation owns count for all-organisation tokens only.
pub const DASHBOARD_SUMMARY: &str = concat!(
    "SELECT json_build_object(
  'unassigned_calls', CASE WHEN $1::text IS NULL
      THEN (SELECT count(*) FROM call_logs WHERE org_id IS NULL) ELSE 0 END,
  'reconciliation', CASE WHEN $1::text IS NULL THEN (SELECT json_agg(json_build_object(
      'tenant', tenant, 'last_run_ms', last_run_ms, 'last_success_ms', last_success_ms,
      'last', state::json->'last', 'missing_total', missing_total) ORDER BY tenant)
      FROM reconciliation) END,
  'calls_today', (SELECT count(*) FROM call_logs
      WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        AND ",
    pg_org_filter!("org_id"),
    "),
  'in_progress', (SELECT count(*) FROM call_logs
      WHERE status IN ('scheduled', 'queued', 'ringing', 'in-progress', 'forwarding')
        AND updated_at > now() - interval '12 hours' AND ",
    pg_org_filter!("org_id"),
    "),
  'hourly', (SELECT coalesce(json_agg(json_build_object('hour', h, 'calls', n) ORDER BY h), '[]'::json)
      FROM (SELECT to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'),
                           'YYYY-MM-DD\"T\"HH24:00:00\"Z\"') AS h, count(*) AS n
            FROM call_logs WHERE created_at > now() - interval '24 hours' AND ",
    pg_org_filter!("org_id"),
    "
            GROUP BY 1) x),
  'last_hour', (SELECT json_build_object(
      'requests', count(*),
      'succeeded', count(*) FILTER (WHERE status_code < 300),
      'failed', count(*) FILTER (WHERE status_code >= 500),
      'p95_seconds', percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) / 1000.0,
      'agent_lookup_failures', count(*) FILTER (WHERE error_class = 'agent_lookup'))
    FROM webhook_events WHERE received_at > now() - interval '1 hour' AND ",
    pg_org_filter!("org_id"),
    "),
  'agent_lookup_failures_24h', (SELECT count(*) FROM webhook_events
      WHERE error_class = 'agent_lookup' AND received_at > now() - interval '24 hours' AND ",
    pg_org_filter!("org_id"),
    ")
)::text"
);

/// Reconciliation (`crate::reconcile`), statements on table `reconciliation`
/// (migration 0009). Takes scope `$1`'s lease until `$2` + `$3` ms unless
/// another run holds it: one row, the scope's state (JSON text), or NULL when
/// the lease is held.
pub const RECONCILE_BEGIN: &str = "WITH taken AS (
    INSERT INTO reconciliation AS r (tenant, lease_until_ms)
    VALUES ($1::text, $2::int8 + $3::int8)
    ON CONFLICT (tenant) DO UPDATE SET lease_until_ms = EXCLUDED.lease_until_ms
    WHERE r.lease_until_ms IS NULL OR r.lease_until_ms < $2::int8
    RETURNING r.state)
SELECT (SELECT state FROM taken)";

/// Saves a run of scope `$1` that holds the lease ending at `$2`: its state
/// `$3`, finished at `$4`, `$5` 1 when it met no error, and the calls it
/// found missing, brought up to date and failed (`$6`..`$8`, added to the
/// totals); the lease is given back. One row: the state saved, NULL when the
/// lease was no longer this run's.
pub const RECONCILE_SAVE: &str = "WITH saved AS (
    UPDATE reconciliation SET lease_until_ms = NULL, state = $3::text, last_run_ms = $4::int8,
        last_success_ms = CASE WHEN $5::int8 = 1 THEN $4::int8 ELSE last_success_ms END,
        missing_total = missing_total + $6::int8,
        updated_total = updated_total + $7::int8,
        failed_total = failed_total + $8::int8
    WHERE tenant = $1::text AND lease_until_ms = $2::int8
    RETURNING state)
SELECT (SELECT state FROM saved)";

/// Every scope's reconciliation (`$1` NULL) or one's, as a JSON array text
/// of `{tenant, running, state, last_run_ms, last_success_ms, totals}`; `$2`
/// is now (a lease still running).
pub const RECONCILE_STATUS: &str = "SELECT coalesce(json_agg(json_build_object(
    'tenant', tenant, 'running', coalesce(lease_until_ms > $2::int8, false),
    'state', state::json, 'last_run_ms', last_run_ms, 'last_success_ms', last_success_ms,
    'totals', json_build_object('missing', missing_total, 'updated', updated_total,
                                'failed', failed_total)) ORDER BY tenant), '[]'::json)::text
FROM reconciliation WHERE $1::text IS NULL OR tenant = $1::text";

/// Which of Vapi's calls the records have, in scope `$2`: `$1` is a JSON
/// array of `[call id, end-of-call report's event key]`; one row, a JSON
/// array of `[call id, has a call_logs row, report recorded]`.
pub const RECONCILE_KNOWN: &str = "SELECT coalesce(json_agg(json_build_array(
    k.id, l.vapi_call_id IS NOT NULL, p.event_key IS NOT NULL)), '[]'::json)::text
FROM (SELECT e->>0 AS id, e->>1 AS key FROM json_array_elements($1::text::json) e) k
LEFT JOIN call_logs l ON l.vapi_call_id = k.id AND l.tenant = $2::text
LEFT JOIN processed_webhook_events p ON p.event_key = k.key";

/// A statement the component sends with `query`, and parameters (as SQL
/// literals, in `$n` order) with which it finds nothing in an empty schema.
#[derive(Debug, Clone, Copy)]
pub struct RowQuery {
    pub name: &'static str,
    pub sql: &'static str,
    pub not_found: &'static [&'static str],
}

pub const RECORD_EVENT_QUERY: RowQuery = RowQuery {
    name: "record_event",
    sql: RECORD_EVENT_CALL,
    not_found: &[
        "NULL",
        "'status-update:no-such-call:in-progress'",
        "'status-update'",
        "'no-such-call'",
        "'inbound'",
        "'+14155550100'",
        "'+14155550101'",
        "'+14155550100'",
        "'in-progress'",
        "3",
        "NULL",
        "'{}'",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "100",
        "false",
        "NULL",
        "NULL",
        "'PN-no-such-line'",
        "'+14155550199'",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "false",
        "''",
    ],
};

pub const SCHEMA_VERSION_QUERY: RowQuery = RowQuery {
    name: "schema_version",
    sql: SCHEMA_VERSION,
    not_found: &[],
};

pub const PENDING_DEAD_LETTERS_QUERY: RowQuery = RowQuery {
    name: "pending_dead_letters",
    sql: PENDING_DEAD_LETTERS,
    not_found: &["50"],
};

pub const COUNT_PENDING_DEAD_LETTERS_QUERY: RowQuery = RowQuery {
    name: "count_pending_dead_letters",
    sql: COUNT_PENDING_DEAD_LETTERS,
    not_found: &[],
};

/// Every tenant, as one JSON array text of `{"id", "config"}`, by id (one
/// row also when there is none).
pub const TENANTS: &str = "SELECT coalesce(
    json_agg(json_build_object('id', id, 'config', config) ORDER BY id)::text, '[]')
FROM tenants";

/// Writes a tenant's whole configuration (`$1` id, `$2` JSON text).
pub const PUT_TENANT: &str = "INSERT INTO tenants (id, config) VALUES ($1::text, $2::text::jsonb)
ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()";

/// Deletes a tenant (`$1` id); its calls and mappings stay.
pub const DELETE_TENANT: &str = "DELETE FROM tenants WHERE id = $1::text";

pub const TENANTS_QUERY: RowQuery = RowQuery {
    name: "tenants",
    sql: TENANTS,
    not_found: &[],
};

pub const LINE_ANSWER_QUERY: RowQuery = RowQuery {
    name: "line_answer",
    sql: LINE_ANSWER,
    not_found: &["'PN-no-such-line'", "'+14155550199'", "''"],
};

pub const DASHBOARD_CALLS_QUERY: RowQuery = RowQuery {
    name: "dashboard_calls",
    sql: DASHBOARD_CALLS,
    not_found: &["NULL", "NULL", "NULL", "NULL", "26"],
};

pub const DASHBOARD_CALL_QUERY: RowQuery = RowQuery {
    name: "dashboard_call",
    sql: DASHBOARD_CALL,
    not_found: &["'6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40'", "'no-such-call'"],
};

pub const DASHBOARD_SUMMARY_QUERY: RowQuery = RowQuery {
    name: "dashboard_summary",
    sql: DASHBOARD_SUMMARY,
    not_found: &["'6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40'"],
};

pub const METRICS_SNAPSHOT_QUERY: RowQuery = RowQuery {
    name: "metrics_snapshot",
    sql: METRICS_SNAPSHOT,
    not_found: &[],
};

pub const RECONCILE_BEGIN_QUERY: RowQuery = RowQuery {
    name: "reconcile_begin",
    sql: RECONCILE_BEGIN,
    not_found: &["'statement-check'", "0", "1"],
};

pub const RECONCILE_SAVE_QUERY: RowQuery = RowQuery {
    name: "reconcile_save",
    sql: RECONCILE_SAVE,
    not_found: &["'no-such-scope'", "0", "'{}'", "0", "0", "0", "0", "0"],
};

pub const RECONCILE_STATUS_QUERY: RowQuery = RowQuery {
    name: "reconcile_status",
    sql: RECONCILE_STATUS,
    not_found: &["'no-such-scope'", "0"],
};

pub const RECONCILE_KNOWN_QUERY: RowQuery = RowQuery {
    name: "reconcile_known",
    sql: RECONCILE_KNOWN,
    not_found: &[
        "'[[\"no-such-call\", \"v1|end-of-call-report|no-such-call\"]]'",
        "''",
    ],
};

/// Every statement the component sends with `query`. Each must return at least
/// one row with the `not_found` parameters (see the module comment).
pub const ROW_QUERIES: &[RowQuery] = &[
    RECORD_EVENT_QUERY,
    SCHEMA_VERSION_QUERY,
    PENDING_DEAD_LETTERS_QUERY,
    COUNT_PENDING_DEAD_LETTERS_QUERY,
    LINE_ANSWER_QUERY,
    TENANTS_QUERY,
    METRICS_SNAPSHOT_QUERY,
    DASHBOARD_CALLS_QUERY,
    DASHBOARD_CALL_QUERY,
    DASHBOARD_SUMMARY_QUERY,
    RECONCILE_BEGIN_QUERY,
    RECONCILE_SAVE_QUERY,
    RECONCILE_STATUS_QUERY,
    RECONCILE_KNOWN_QUERY,
];

impl RowQuery {
    /// The statement with its `not_found` literals in place of `$1`, `$2`, ...
    /// (highest first, so `$1` never eats the start of `$12`), for the
    /// simple query protocol in tests.
    pub fn with_not_found_literals(&self) -> String {
        self.with_literals(self.not_found)
    }

    /// The statement with `literals` in place of `$1`, `$2`, ... (for the
    /// benchmark scripts, which run the component's own statements).
    pub fn with_literals(&self, literals: &[&str]) -> String {
        let mut sql = self.sql.to_string();
        for (i, literal) in literals.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}::", i + 1), &format!("{literal}::"));
        }
        sql
    }
}

/// The parameters of [`RECORD_EVENT_CALL`], in order (`$1`..`$32`).
pub const RECORD_EVENT_PARAMS: [&str; 32] = [
    "assistant_id",
    "event_key",
    "message_type",
    "call_id",
    "direction",
    "from_number",
    "to_number",
    "customer_e164",
    "status",
    "status_rank (int2)",
    "vapi_org_id",
    "metadata (jsonb)",
    "started_at_ms (int8)",
    "ended_at_ms (int8)",
    "ended_reason",
    "duration_seconds (float8)",
    "cost (float8)",
    "summary",
    "transcript",
    "recording_url",
    "rollout_percent (int8)",
    "is_final_report (bool)",
    "squad_id",
    "workflow_id",
    "line_id",
    "line_e164",
    "structured_data (jsonb)",
    "success_evaluation",
    "costs (jsonb)",
    "default_org_id",
    "keeps_unowned (bool)",
    "tenant",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The function's body, between `$fn$` quotes.
    fn record_event_body() -> &'static str {
        RECORD_EVENT_MIGRATION
            .split("$fn$")
            .nth(1)
            .expect("the function's body")
    }

    #[test]
    fn the_call_passes_every_parameter_the_function_declares_and_uses() {
        let declaration = RECORD_EVENT_MIGRATION
            .split("CREATE FUNCTION vapi_record_event_v3(")
            .nth(1)
            .and_then(|rest| rest.split(")\nRETURNS").next())
            .expect("the function's parameters");
        let declared: Vec<(String, String)> = declaration
            .split(',')
            .map(|p| {
                let mut words = p.split_whitespace();
                let name = words.next().unwrap().to_string();
                let kind = words.next().unwrap().to_string();
                (name, kind)
            })
            .collect();
        assert_eq!(declared.len(), RECORD_EVENT_PARAMS.len());
        let body = record_event_body();
        for (i, (name, kind)) in declared.iter().enumerate() {
            let n = i + 1;
            assert_eq!(name, &format!("p{n}"));
            assert!(
                RECORD_EVENT_CALL.contains(&format!("${n}::{kind}")),
                "${n} is passed as {kind}"
            );
            // Used: as a word of its own, not the start of p1x or p3x.
            let used = body
                .match_indices(name.as_str())
                .any(|(at, _)| !body[at + name.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(used, "{name} unused");
        }
        assert!(!RECORD_EVENT_CALL.contains(&format!("${}::", declared.len() + 1)));
    }

    #[test]
    fn every_row_query_has_a_literal_for_each_parameter() {
        for query in ROW_QUERIES {
            let n = query.not_found.len();
            for i in 1..=n {
                assert!(
                    query.sql.contains(&format!("${i}::")),
                    "{}: ${i}",
                    query.name
                );
            }
            assert!(
                !query.sql.contains(&format!("${}::", n + 1)),
                "{}: a parameter has no not-found literal",
                query.name
            );
            assert!(
                !query.with_not_found_literals().contains('$'),
                "{}",
                query.name
            );
        }
        let names: std::collections::HashSet<_> = ROW_QUERIES.iter().map(|q| q.name).collect();
        assert_eq!(names.len(), ROW_QUERIES.len(), "names are unique");
    }

    /// The numbers that follow each `before` in `text`, up to a character
    /// that cannot be in one.
    fn numbers_after(text: &str, before: &str) -> Vec<u64> {
        text.split(before)
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn the_totals_histogram_is_the_metrics_bounds_in_milliseconds() {
        let bounds: Vec<u64> = crate::metrics::BUCKETS_S
            .iter()
            .map(|s| (s * 1000.0_f64).round() as u64)
            .collect();
        assert_eq!(numbers_after(METRICS_SNAPSHOT, "sum(le_"), bounds);
        let migrations = [
            include_str!("../../../migrations/0005_totals.sql"),
            include_str!("../../../migrations/sqlite/0005_totals.sql"),
        ];
        for migration in migrations {
            // The table's columns are the bounds, in order.
            let table = migration
                .split("CREATE TABLE webhook_event_totals (")
                .nth(1)
                .and_then(|rest| rest.split(");").next())
                .expect("the totals table");
            assert_eq!(numbers_after(table, "le_"), bounds);
            // Every statement names every column: each as often as the others.
            let mentions = numbers_after(migration, "le_");
            for bound in &bounds {
                let n = |b: &u64| mentions.iter().filter(|m| *m == b).count();
                assert_eq!(n(bound), n(&bounds[0]), "le_{bound}ms");
            }
            assert!(mentions.iter().all(|m| bounds.contains(m)), "{mentions:?}");
            // Each trigger's and backfill's filters are the whole list, in order.
            let filters = numbers_after(migration, "duration_ms <= ");
            assert!(!filters.is_empty() && filters.len().is_multiple_of(bounds.len()));
            for list in filters.chunks(bounds.len()) {
                assert_eq!(list, bounds);
            }
        }
    }
}
