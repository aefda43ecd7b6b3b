//! The embedded store: SQLite twins of the Postgres statements in
//! [`crate::pg_sql`], and the SQLite migrations the component applies itself.
//!
//! SQLite has no data-modifying CTEs, so the PostgreSQL recording function
//! ([`crate::pg_sql::RECORD_EVENT_CALL`]) becomes a `BEGIN IMMEDIATE`
//! transaction of the statements below on one connection (each Spin `open` is
//! its own connection, so the transaction is the request's own): the owner is
//! found, the rollout decided in Rust, the event claimed, then the call rows
//! upserted, and all of it commits or none does.
//! Parameters are positional (`?N`); ids and times are TEXT (UUIDs, and
//! ISO-8601 UTC with milliseconds, which sort as they compare).

/// The current time in the schema's timestamp format.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

// Every owner lookup is among one tenant's mappings: `?2` (`?3` for the
// line) is the tenant, '' for the single-tenant route (migration 0008).

/// The agent that owns an assistant id: `?1` assistant id → (id, org_id, name).
pub const AGENT_BY_ASSISTANT: &str =
    "SELECT id, org_id, name FROM agents WHERE vapi_assistant_id = ?1 AND tenant = ?2";

/// The agent mapped to a squad: `?1` squad id → (id, org_id, name).
pub const AGENT_BY_SQUAD: &str =
    "SELECT id, org_id, name FROM agents WHERE vapi_squad_id = ?1 AND tenant = ?2";

/// The agent mapped to a workflow: `?1` workflow id → (id, org_id, name).
pub const AGENT_BY_WORKFLOW: &str =
    "SELECT id, org_id, name FROM agents WHERE vapi_workflow_id = ?1 AND tenant = ?2";

/// The organisation that owns the line, by Vapi phone-number id (`?1`) or
/// E.164 number (`?2`) → (org_id).
pub const ORG_BY_LINE: &str = "
SELECT org_id FROM phone_numbers
WHERE (vapi_phone_number_id = ?1 OR phone_e164 = ?2) AND tenant = ?3
ORDER BY (vapi_phone_number_id = ?1) DESC NULLS LAST
LIMIT 1";

/// The organisation mapped to Vapi's organisation id: `?1` → (org_id).
pub const ORG_BY_VAPI_ORG: &str =
    "SELECT org_id FROM vapi_organizations WHERE vapi_org_id = ?1 AND tenant = ?2";

/// Claims an event in the durable record; returns a row only for the first
/// attempt that commits. `?1` event key, `?2` message type, `?3` call id, `?4` org id.
pub const CLAIM_EVENT: &str = "
INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (event_key) DO NOTHING
RETURNING event_key";

/// Upserts an inbound call's `call_tracking` row; statuses move forward only.
/// `?1` call id, `?2` org id, `?3` agent id, `?4` from, `?5` to, `?6` status,
/// `?7` status rank, `?8` Vapi org id, `?9` tenant (a row of another
/// tenant's is left as it is).
pub const TRACK_CALL: &str = concat!(
    "
INSERT INTO call_tracking AS t
    (vapi_call_id, org_id, agent_id, direction, from_number, to_number,
     status, status_rank, vapi_org_id, tenant)
VALUES (?1, ?2, ?3, 'inbound', ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (vapi_call_id) DO UPDATE SET
    status = CASE WHEN excluded.status_rank > coalesce(t.status_rank, 0)
                  THEN excluded.status ELSE t.status END,
    status_rank = CASE WHEN excluded.status_rank > coalesce(t.status_rank, 0)
                       THEN excluded.status_rank ELSE t.status_rank END,
    org_id = coalesce(t.org_id, excluded.org_id),
    agent_id = coalesce(t.agent_id, excluded.agent_id),
    vapi_org_id = coalesce(t.vapi_org_id, excluded.vapi_org_id),
    from_number = coalesce(t.from_number, excluded.from_number),
    to_number = coalesce(t.to_number, excluded.to_number),
    updated_at = ",
    now!(),
    "
WHERE t.tenant = excluded.tenant"
);

/// Upserts the call's `call_logs` row (any direction) and returns its lead id.
/// The same merge rules as the Postgres statement: forward-only status, the
/// end-of-call report authoritative for times and reason, otherwise the first
/// value seen stays. `?1` call id, `?2` org id, `?3` agent id, `?4` customer
/// E.164 (lead lookup), `?5` status, `?6` rank, `?7` metadata JSON, `?8`
/// direction, `?9` from, `?10` to, `?11` started ms, `?12` ended ms, `?13`
/// ended reason, `?14` duration s, `?15` cost, `?16` summary, `?17`
/// transcript, `?18` recording URL, `?19` is final report (0/1), `?20`
/// structured data JSON, `?21` success evaluation, `?22` costs JSON, `?23`
/// Vapi org id, `?24` tenant (a row of another tenant's is left as it is,
/// and no lead id comes back). `?2` is NULL for a call recorded without an owner; a later
/// event that finds one sets it.
pub const LOG_CALL: &str = concat!(
    "
INSERT INTO call_logs AS l
    (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
     direction, from_number, to_number, started_at, ended_at, ended_reason,
     duration_seconds, cost, summary, transcript, recording_url,
     structured_data, success_evaluation, costs, vapi_org_id, tenant)
VALUES (?1, ?2, ?3,
        (SELECT id FROM leads WHERE org_id = ?2 AND phone_e164 = ?4),
        ?5, ?6, json(?7), ?8, ?9, ?10,
        strftime('%Y-%m-%dT%H:%M:%fZ', ?11 / 1000.0, 'unixepoch'),
        strftime('%Y-%m-%dT%H:%M:%fZ', ?12 / 1000.0, 'unixepoch'),
        ?13, ?14, ?15, ?16, ?17, ?18, json(?20), ?21, json(?22), ?23, ?24)
ON CONFLICT (vapi_call_id) DO UPDATE SET
    status = CASE WHEN excluded.status_rank > coalesce(l.status_rank, 0)
                  THEN excluded.status ELSE l.status END,
    status_rank = CASE WHEN excluded.status_rank > coalesce(l.status_rank, 0)
                       THEN excluded.status_rank ELSE l.status_rank END,
    org_id = coalesce(l.org_id, excluded.org_id),
    agent_id = coalesce(l.agent_id, excluded.agent_id),
    vapi_org_id = coalesce(l.vapi_org_id, excluded.vapi_org_id),
    lead_id = coalesce(l.lead_id, excluded.lead_id),
    metadata = json_patch(l.metadata, excluded.metadata),
    from_number = coalesce(l.from_number, excluded.from_number),
    to_number = coalesce(l.to_number, excluded.to_number),
    started_at = CASE WHEN ?19 THEN coalesce(excluded.started_at, l.started_at)
                      ELSE coalesce(l.started_at, excluded.started_at) END,
    ended_at = CASE WHEN ?19 THEN coalesce(excluded.ended_at, l.ended_at)
                    ELSE coalesce(l.ended_at, excluded.ended_at) END,
    ended_reason = CASE WHEN ?19 THEN coalesce(excluded.ended_reason, l.ended_reason)
                        ELSE coalesce(l.ended_reason, excluded.ended_reason) END,
    duration_seconds = coalesce(excluded.duration_seconds, l.duration_seconds),
    cost = coalesce(excluded.cost, l.cost),
    summary = coalesce(excluded.summary, l.summary),
    transcript = coalesce(excluded.transcript, l.transcript),
    recording_url = coalesce(excluded.recording_url, l.recording_url),
    structured_data = coalesce(excluded.structured_data, l.structured_data),
    success_evaluation = coalesce(excluded.success_evaluation, l.success_evaluation),
    costs = coalesce(excluded.costs, l.costs),
    updated_at = ",
    now!(),
    "
WHERE l.tenant = excluded.tenant
RETURNING lead_id"
);

/// One row of the event record (`?1`..`?8` as in the Postgres statement).
pub const INSERT_EVENT_ROW: &str = "
INSERT INTO webhook_events
    (message_type, vapi_call_id, org_id, direction, outcome, status_code, duration_ms, error_class,
     tenant)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Keeps one pending dead letter per event; a repeated failure bumps `attempts`.
pub const UPSERT_DEAD_LETTER: &str = "
INSERT INTO dead_letters (event_key, message_type, vapi_call_id, reason, headers, body)
VALUES (?1, ?2, ?3, ?4, json(?5), ?6)
ON CONFLICT (event_key) WHERE replayed_at IS NULL DO UPDATE SET
    attempts = dead_letters.attempts + 1,
    reason = excluded.reason,
    body = excluded.body";

pub const PENDING_DEAD_LETTERS: &str =
    "SELECT id, body, event_key FROM dead_letters WHERE replayed_at IS NULL ORDER BY id LIMIT ?1";

pub const MARK_REPLAYED: &str = concat!(
    "UPDATE dead_letters SET replayed_at = ",
    now!(),
    ", replay_outcome = ?2 WHERE id = ?1"
);

pub const COUNT_PENDING_DEAD_LETTERS: &str =
    "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL";

/// What answers an `assistant-request` on a line: `?1` Vapi phone number id,
/// `?2` line E.164, `?3` tenant → (agent id, org id, name, assistant id, fallback
/// assistant id, fallback number); the agent columns NULL when the line has
/// no agent with an assistant id, no row when the line is not there.
pub const LINE_ANSWER: &str = "
SELECT a.id, a.org_id, a.name, a.vapi_assistant_id, p.fallback_assistant_id, p.fallback_number
FROM phone_numbers p
LEFT JOIN agents a ON a.org_id = p.org_id AND a.role = p.inbound_role
                  AND a.vapi_assistant_id IS NOT NULL
WHERE (p.vapi_phone_number_id = ?1 OR p.phone_e164 = ?2) AND p.tenant = ?3
ORDER BY (p.vapi_phone_number_id = ?1) DESC NULLS LAST
LIMIT 1";

/// Every tenant, as one JSON array text of `{"id", "config"}`, by id.
pub const TENANTS: &str = "
SELECT coalesce(json_group_array(json_object('id', id, 'config', json(config))), '[]')
FROM (SELECT id, config FROM tenants ORDER BY id)";

/// Writes a tenant's whole configuration (`?1` id, `?2` JSON text).
pub const PUT_TENANT: &str = concat!(
    "INSERT INTO tenants (id, config) VALUES (?1, ?2)
ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = ",
    now!()
);

/// Deletes a tenant (`?1` id); its calls and mappings stay.
pub const DELETE_TENANT: &str = "DELETE FROM tenants WHERE id = ?1";

/// The twins of `pg_sql::RECONCILE_*` (see there): plain `RETURNING`, as an
/// empty result is only a problem for Spin's PostgreSQL.
pub const RECONCILE_BEGIN: &str = "
INSERT INTO reconciliation AS r (tenant, lease_until_ms) VALUES (?1, ?2 + ?3)
ON CONFLICT (tenant) DO UPDATE SET lease_until_ms = excluded.lease_until_ms
WHERE r.lease_until_ms IS NULL OR r.lease_until_ms < ?2
RETURNING state";

pub const RECONCILE_SAVE: &str = "
UPDATE reconciliation SET lease_until_ms = NULL, state = ?3, last_run_ms = ?4,
    last_success_ms = CASE WHEN ?5 = 1 THEN ?4 ELSE last_success_ms END,
    missing_total = missing_total + ?6,
    updated_total = updated_total + ?7,
    failed_total = failed_total + ?8
WHERE tenant = ?1 AND lease_until_ms = ?2
RETURNING state";

pub const RECONCILE_STATUS: &str = "
SELECT coalesce(json_group_array(json_object(
    'tenant', tenant, 'running', json(CASE WHEN coalesce(lease_until_ms > ?2, 0) THEN 'true' ELSE 'false' END),
    'state', json(state), 'last_run_ms', last_run_ms, 'last_success_ms', last_success_ms,
    'totals', json_object('missing', missing_total, 'updated', updated_total,
                          'failed', failed_total))), '[]')
FROM (SELECT * FROM reconciliation WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant)";

pub const RECONCILE_KNOWN: &str = "
SELECT coalesce(json_group_array(json_array(
    k.id, json(CASE WHEN l.vapi_call_id IS NOT NULL THEN 'true' ELSE 'false' END),
    json(CASE WHEN p.event_key IS NOT NULL THEN 'true' ELSE 'false' END))), '[]')
FROM (SELECT json_extract(e.value, '$[0]') AS id, json_extract(e.value, '$[1]') AS key
      FROM json_each(?1) e) k
LEFT JOIN call_logs l ON l.vapi_call_id = k.id AND l.tenant = ?2
LEFT JOIN processed_webhook_events p ON p.event_key = k.key";

/// The newest applied migration (`/healthz`).
pub const SCHEMA_VERSION_APPLIED: &str = "SELECT coalesce(max(version), '') FROM schema_migrations";

/// The metrics snapshot as one JSON text, the same shape as the Postgres
/// query's (see [`crate::metrics::Snapshot`]): all-time figures from the
/// totals the migration 0005 triggers keep, last-hour ones from the rows.
/// SQLite has no `percentile_cont`, so p95 is interpolated the same way by
/// hand. A subquery's JSON comes back as text, hence `json(...)` around each.
pub fn metrics_snapshot() -> String {
    let buckets: Vec<String> = crate::metrics::BUCKETS_S
        .iter()
        .map(|s| format!("coalesce(sum(le_{}ms), 0)", (s * 1000.0).round()))
        .collect();
    format!(
        "WITH hour AS (
             SELECT * FROM webhook_events
             WHERE received_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')),
         ranked AS (
             SELECT duration_ms AS d, row_number() OVER (ORDER BY duration_ms) - 1 AS i FROM hour),
         position AS (
             SELECT 0.95 * (count(*) - 1) AS p, CAST(0.95 * (count(*) - 1) AS INTEGER) AS k
             FROM hour)
         SELECT json_object(
           'requests', json((SELECT json_group_array(json_object(
                   'message_type', message_type, 'outcome', outcome,
                   'status_class', status_class, 'count', n)) FROM (
               SELECT message_type, outcome, status_class, sum(count) AS n
               FROM webhook_event_totals GROUP BY 1, 2, 3 ORDER BY 1, 2, 3))),
           'inbound_calls_total', (SELECT coalesce(sum(calls), 0) FROM call_tracking_totals),
           'unassigned_calls', (SELECT count(*) FROM call_logs WHERE org_id IS NULL),
           'tenants', json((SELECT json_group_array(json_object(
                   'tenant', tenant, 'outcome', outcome, 'count', n)) FROM (
               SELECT tenant, outcome, sum(count) AS n
               FROM webhook_event_tenant_totals GROUP BY 1, 2 ORDER BY 1, 2))),
           'reconciliation', json((SELECT json_group_array(json_object(
                   'tenant', tenant, 'last_run_ms', last_run_ms,
                   'last_success_ms', last_success_ms, 'missing', missing_total,
                   'updated', updated_total, 'failed', failed_total)) FROM (
               SELECT * FROM reconciliation ORDER BY tenant))),
           'agent_lookup_failures_total', (SELECT coalesce(sum(count), 0)
               FROM webhook_event_totals WHERE error_class = 'agent_lookup'),
           'call_tracking_failures_total', (SELECT coalesce(sum(count), 0)
               FROM webhook_event_totals WHERE error_class = 'call_tracking'),
           'upstream_failures_total', (SELECT coalesce(sum(count), 0)
               FROM webhook_event_totals WHERE error_class = 'upstream'),
           'processing', json((SELECT json_object(
               'buckets', json_array({buckets}),
               'count', coalesce(sum(count), 0),
               'sum_seconds', coalesce(sum(sum_ms), 0) / 1000.0) FROM webhook_event_totals)),
           'last_hour', json((SELECT json_object(
               'inbound_calls', (SELECT count(*) FROM call_tracking
                                 WHERE created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')),
               'requests', count(*),
               'succeeded', count(*) FILTER (WHERE status_code < 300),
               'failed', count(*) FILTER (WHERE status_code >= 500),
               'avg_seconds', avg(duration_ms) / 1000.0,
               'p95_seconds', (SELECT (lo.d + (position.p - position.k) * (coalesce(hi.d, lo.d) - lo.d)) / 1000.0
                               FROM position JOIN ranked lo ON lo.i = position.k
                               LEFT JOIN ranked hi ON hi.i = position.k + 1),
               'agent_lookup_failures', count(*) FILTER (WHERE error_class = 'agent_lookup'),
               'call_tracking_failures', count(*) FILTER (WHERE error_class = 'call_tracking'),
               'upstream_failures', count(*) FILTER (WHERE error_class = 'upstream'))
             FROM hour))
         )",
        buckets = buckets.join(", ")
    )
}

/// The organisations a dashboard token opens (`?1`, comma-separated, NULL for
/// all), as a condition on `column`: the twin of `pg_sql`'s filter.
macro_rules! sqlite_org_filter {
    ($column:literal) => {
        concat!(
            "(?1 IS NULL OR instr(',' || lower(?1) || ',', ',' || lower(",
            $column,
            ") || ',') > 0)"
        )
    };
}

/// The columns of a call in the dashboard's list, as a JSON object.
macro_rules! call_columns {
    () => {
        "'id', c.id, 'vapi_call_id', c.vapi_call_id, 'org_id', c.org_id,
         'direction', c.direction, 'status', c.status, 'from_number', c.from_number,
         'to_number', c.to_number, 'agent_id', c.agent_id, 'agent_name', a.name,
         'lead_id', c.lead_id, 'lead_name', l.name, 'started_at', c.started_at,
         'ended_at', c.ended_at, 'ended_reason', c.ended_reason,
         'duration_seconds', c.duration_seconds, 'cost', c.cost, 'summary', c.summary,
         'recording_url', c.recording_url, 'created_at', c.created_at,
         'updated_at', c.updated_at,
         'reconciled', json(CASE WHEN json_extract(c.metadata, '$.source') = 'reconciliation'
                                 THEN 'true' ELSE 'false' END)"
    };
}

/// Twin of [`crate::pg_sql::DASHBOARD_CALLS`]: `?2` cursor `created_at|id`,
/// `?3` status, `?4` direction, `?5` rows. The page's order is restored in
/// Rust (`dashboard`), which does not rely on `json_group_array`'s order.
pub const DASHBOARD_CALLS: &str = concat!(
    "SELECT json_object('calls', json(coalesce((SELECT json_group_array(json(r)) FROM (
  SELECT json_object(",
    call_columns!(),
    ", 'cursor_at', c.created_at) AS r
  FROM call_logs c
  LEFT JOIN agents a ON a.id = c.agent_id
  LEFT JOIN leads l ON l.id = c.lead_id
  WHERE ",
    sqlite_org_filter!("c.org_id"),
    "
    AND (?2 IS NULL OR (c.created_at, c.id) <
         (substr(?2, 1, instr(?2, '|') - 1), substr(?2, instr(?2, '|') + 1)))
    AND (?3 IS NULL OR c.status = ?3)
    AND (?4 IS NULL OR c.direction = ?4)
  ORDER BY c.created_at DESC, c.id DESC
  LIMIT ?5)), '[]')))"
);

/// Twin of [`crate::pg_sql::DASHBOARD_CALL`]: `?2` the Vapi call id.
pub const DASHBOARD_CALL: &str = concat!(
    "SELECT (SELECT json_object(",
    call_columns!(),
    ", 'costs', json(c.costs), 'transcript', c.transcript,
  'structured_data', json(c.structured_data), 'success_evaluation', c.success_evaluation,
  'metadata', json(c.metadata),
  'tracking', (SELECT json_object('status', t.status, 'from_number', t.from_number,
                                  'to_number', t.to_number, 'created_at', t.created_at,
                                  'updated_at', t.updated_at)
               FROM call_tracking t WHERE t.vapi_call_id = c.vapi_call_id),
  'events', json(coalesce((SELECT json_group_array(json(x)) FROM (
                SELECT json_object('received_at', e.received_at, 'message_type', e.message_type,
                                   'outcome', e.outcome, 'status_code', e.status_code,
                                   'duration_ms', e.duration_ms) AS x
                FROM webhook_events e WHERE e.vapi_call_id = c.vapi_call_id
                ORDER BY e.received_at, e.id)), '[]')))
  FROM call_logs c
  LEFT JOIN agents a ON a.id = c.agent_id
  LEFT JOIN leads l ON l.id = c.lead_id
  WHERE c.vapi_call_id = ?2 AND ",
    sqlite_org_filter!("c.org_id"),
    ")"
);

/// Twin of [`crate::pg_sql::DASHBOARD_SUMMARY`]; p95 interpolated by hand as
/// in [`metrics_snapshot`].
pub const DASHBOARD_SUMMARY: &str = concat!(
    "WITH hour AS (
     SELECT duration_ms, status_code, error_class FROM webhook_events
     WHERE received_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') AND ",
    sqlite_org_filter!("org_id"),
    "),
 ranked AS (SELECT duration_ms AS d, row_number() OVER (ORDER BY duration_ms) - 1 AS i FROM hour),
 position AS (SELECT 0.95 * (count(*) - 1) AS p, CAST(0.95 * (count(*) - 1) AS INTEGER) AS k FROM hour)
SELECT json_object(
  'unassigned_calls', CASE WHEN ?1 IS NULL
      THEN (SELECT count(*) FROM call_logs WHERE org_id IS NULL) ELSE 0 END,
  'reconciliation', CASE WHEN ?1 IS NULL THEN json((SELECT json_group_array(json_object(
      'tenant', tenant, 'last_run_ms', last_run_ms, 'last_success_ms', last_success_ms,
      'last', json_extract(state, '$.last'), 'missing_total', missing_total))
      FROM (SELECT * FROM reconciliation ORDER BY tenant))) END,
  'calls_today', (SELECT count(*) FROM call_logs
      WHERE created_at >= strftime('%Y-%m-%dT00:00:00.000Z', 'now') AND ",
    sqlite_org_filter!("org_id"),
    "),
  'in_progress', (SELECT count(*) FROM call_logs
      WHERE status IN ('scheduled', 'queued', 'ringing', 'in-progress', 'forwarding')
        AND updated_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-12 hours') AND ",
    sqlite_org_filter!("org_id"),
    "),
  'hourly', json((SELECT json_group_array(json_object('hour', h, 'calls', n)) FROM (
      SELECT strftime('%Y-%m-%dT%H:00:00Z', created_at) AS h, count(*) AS n
      FROM call_logs WHERE created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-24 hours') AND ",
    sqlite_org_filter!("org_id"),
    "
      GROUP BY 1 ORDER BY 1))),
  'last_hour', json((SELECT json_object(
      'requests', count(*),
      'succeeded', count(*) FILTER (WHERE status_code < 300),
      'failed', count(*) FILTER (WHERE status_code >= 500),
      'p95_seconds', (SELECT (lo.d + (position.p - position.k) * (coalesce(hi.d, lo.d) - lo.d)) / 1000.0
                      FROM position JOIN ranked lo ON lo.i = position.k
                      LEFT JOIN ranked hi ON hi.i = position.k + 1),
      'agent_lookup_failures', count(*) FILTER (WHERE error_class = 'agent_lookup'))
    FROM hour)),
  'agent_lookup_failures_24h', (SELECT count(*) FROM webhook_events
      WHERE error_class = 'agent_lookup'
        AND received_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-24 hours') AND ",
    sqlite_org_filter!("org_id"),
    "))"
);

/// One migration of the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// File name without `.sql`, as recorded in `schema_migrations`.
    pub version: &'static str,
    pub sql: &'static str,
}

/// `migrations/sqlite/*.sql`, in order. The component applies what is missing
/// when it opens the store, so `spin up` needs no migrate step; a test keeps
/// this list equal to the folder.
pub const MIGRATIONS: [Migration; 9] = [
    Migration {
        version: "0001_init",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: "0002_operations",
        sql: include_str!("../../../migrations/sqlite/0002_operations.sql"),
    },
    Migration {
        version: "0003_every_call",
        sql: include_str!("../../../migrations/sqlite/0003_every_call.sql"),
    },
    Migration {
        version: "0004_dashboard",
        sql: include_str!("../../../migrations/sqlite/0004_dashboard.sql"),
    },
    Migration {
        version: "0005_totals",
        sql: include_str!("../../../migrations/sqlite/0005_totals.sql"),
    },
    Migration {
        version: "0006_record_event_function",
        sql: include_str!("../../../migrations/sqlite/0006_record_event_function.sql"),
    },
    Migration {
        version: "0007_owners",
        sql: include_str!("../../../migrations/sqlite/0007_owners.sql"),
    },
    Migration {
        version: "0008_tenants",
        sql: include_str!("../../../migrations/sqlite/0008_tenants.sql"),
    },
    Migration {
        version: "0009_reconciliation",
        sql: include_str!("../../../migrations/sqlite/0009_reconciliation.sql"),
    },
];

pub const CREATE_SCHEMA_MIGRATIONS: &str = concat!(
    "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (",
    now!(),
    "))"
);

/// The checksum `schema_migrations` keeps: lowercase hex SHA-256 of the file.
pub fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Splits a migration file into statements: each ends with `;` at the end of
/// a line (outside comments). Lines that are only `--` comments are dropped.
/// The migration files are written to this rule, so no SQL parser is needed.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let code = line.split("--").next().unwrap_or("").trim_end();
        if code.trim().is_empty() {
            continue;
        }
        current.push_str(code);
        current.push('\n');
        // A trigger's body holds statements of its own: the trigger ends at
        // its `END;`.
        let in_trigger = current.trim_start().starts_with("CREATE TRIGGER");
        let ends = if in_trigger {
            code.trim().eq_ignore_ascii_case("END;")
        } else {
            code.ends_with(';')
        };
        if ends {
            let statement = current.trim().trim_end_matches(';').trim().to_string();
            out.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_migrations_are_the_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite");
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .expect("migrations/sqlite exists")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("sql"))
            .map(|p| {
                let version = p.file_stem().unwrap().to_string_lossy().into_owned();
                (version, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        let embedded: Vec<(String, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version.to_string(), m.sql.to_string()))
            .collect();
        assert_eq!(embedded, files);
    }

    #[test]
    fn the_newest_migration_is_the_expected_schema_version() {
        let newest = MIGRATIONS.last().map(|m| m.version).unwrap();
        assert_eq!(
            crate::schema::version_number(newest),
            Some(crate::schema::SCHEMA_VERSION)
        );
    }

    #[test]
    fn statements_split_at_line_ends_and_drop_comments() {
        let sql = "-- header; not a statement\nCREATE TABLE a (\n  x TEXT -- note;\n);\n\nCREATE INDEX i ON a (x);\nSELECT 1";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (\n  x TEXT\n)".to_string(),
                "CREATE INDEX i ON a (x)".to_string(),
                "SELECT 1".to_string(),
            ]
        );
    }

    #[test]
    fn a_trigger_is_one_statement_up_to_its_end() {
        let sql = "CREATE TABLE a (x TEXT);\nCREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n    INSERT INTO b VALUES (1);\n    DELETE FROM c; -- note\nEND;\nCREATE INDEX i ON a (x);";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (x TEXT)".to_string(),
                "CREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n    INSERT INTO b VALUES (1);\n    DELETE FROM c;\nEND"
                    .to_string(),
                "CREATE INDEX i ON a (x)".to_string(),
            ]
        );
    }

    #[test]
    fn every_migration_statement_is_one_additive_statement() {
        for migration in MIGRATIONS {
            // Tables this migration creates: the only ones it may fill.
            let mut created = Vec::new();
            for statement in statements(migration.sql) {
                let words: Vec<&str> = statement.split_whitespace().collect();
                let is = |prefix: &[&str]| words.starts_with(prefix);
                if is(&["CREATE", "TABLE"]) {
                    created.push(words[2].to_string());
                }
                // Additive only: new tables, indexes and triggers, new
                // columns, and rows for a table created just above (a
                // backfill). Only a trigger's body holds a `;`.
                let additive = is(&["CREATE", "TRIGGER"])
                    || (words.first() == Some(&"CREATE") && !statement.contains(';'))
                    || (is(&["ALTER"]) && statement.contains("ADD COLUMN"))
                    || (is(&["INSERT", "INTO"]) && created.iter().any(|t| t == words[2]));
                assert!(additive, "{}: {statement}", migration.version);
            }
        }
    }

    #[test]
    fn checksum_is_hex_sha256() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
