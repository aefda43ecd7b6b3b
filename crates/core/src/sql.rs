//! SQL statements shared by the component and the native benchmark baseline,
//! so both run exactly the same database work.

/// Records one call event. Runs as one statement, hence one transaction. When no agent has the
/// assistant id every CTE selects from an empty `agent` and nothing is
/// written; when the event key is already recorded `claimed` is empty and the
/// upserts select nothing either. Statuses move forward only (`status_rank`).
/// Inbound calls of organisations outside `inbound_rollout_percent` (`$21`)
/// write nothing; the bucket is `vapi_edge_core::rollout::bucket` in SQL.
pub const RECORD_EVENT: &str = "
WITH agent AS (
    SELECT id, org_id, name,
           ($5::text <> 'inbound' OR
            (('x' || encode(substring(sha256(convert_to(lower(org_id::text), 'UTF8')) FROM 1 FOR 4), 'hex'))::bit(32)::bigint % 100)
            < $21::int8) AS in_rollout
    FROM agents WHERE vapi_assistant_id = $1::text
), claimed AS (
    INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
    SELECT $2::text, $3::text, $4::text, agent.org_id FROM agent WHERE agent.in_rollout
    ON CONFLICT (event_key) DO NOTHING
    RETURNING event_key
), lead AS (
    SELECT leads.id FROM leads JOIN agent ON leads.org_id = agent.org_id
    WHERE leads.phone_e164 = $8::text
), tracking AS (
    INSERT INTO call_tracking AS t
        (vapi_call_id, org_id, agent_id, direction, from_number, to_number,
         status, status_rank, vapi_org_id)
    SELECT $4::text, agent.org_id, agent.id, 'inbound', $6::text, $7::text,
           $9::text, $10::int2, $11::text
    FROM agent, claimed
    WHERE $5::text = 'inbound'
    ON CONFLICT (vapi_call_id) DO UPDATE SET
        status = CASE WHEN EXCLUDED.status_rank > coalesce(t.status_rank, 0)
                      THEN EXCLUDED.status ELSE t.status END,
        status_rank = greatest(t.status_rank, EXCLUDED.status_rank),
        from_number = coalesce(t.from_number, EXCLUDED.from_number),
        to_number = coalesce(t.to_number, EXCLUDED.to_number),
        updated_at = now()
    RETURNING t.id
), logged AS (
    INSERT INTO call_logs AS l
        (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
         direction, from_number, to_number, started_at, ended_at, ended_reason,
         duration_seconds, cost, summary, transcript, recording_url)
    SELECT $4::text, agent.org_id, agent.id, (SELECT id FROM lead), $9::text,
           $10::int2, $12::jsonb, $5::text, $6::text, $7::text,
           to_timestamp($13::int8 / 1000.0), to_timestamp($14::int8 / 1000.0),
           $15::text, $16::float8, $17::float8::numeric, $18::text, $19::text,
           $20::text
    FROM agent, claimed
    ON CONFLICT (vapi_call_id) DO UPDATE SET
        status = CASE WHEN EXCLUDED.status_rank > coalesce(l.status_rank, 0)
                      THEN EXCLUDED.status ELSE l.status END,
        status_rank = greatest(l.status_rank, EXCLUDED.status_rank),
        lead_id = coalesce(l.lead_id, EXCLUDED.lead_id),
        metadata = l.metadata || EXCLUDED.metadata,
        from_number = coalesce(l.from_number, EXCLUDED.from_number),
        to_number = coalesce(l.to_number, EXCLUDED.to_number),
        -- The end-of-call report is authoritative for the call's times and
        -- reason; otherwise the first value seen stays, so the final row does
        -- not depend on the order Vapi's messages arrive in.
        started_at = CASE WHEN $22::bool THEN coalesce(EXCLUDED.started_at, l.started_at)
                          ELSE coalesce(l.started_at, EXCLUDED.started_at) END,
        ended_at = CASE WHEN $22::bool THEN coalesce(EXCLUDED.ended_at, l.ended_at)
                        ELSE coalesce(l.ended_at, EXCLUDED.ended_at) END,
        ended_reason = CASE WHEN $22::bool THEN coalesce(EXCLUDED.ended_reason, l.ended_reason)
                            ELSE coalesce(l.ended_reason, EXCLUDED.ended_reason) END,
        duration_seconds = coalesce(EXCLUDED.duration_seconds, l.duration_seconds),
        cost = coalesce(EXCLUDED.cost, l.cost),
        summary = coalesce(EXCLUDED.summary, l.summary),
        transcript = coalesce(EXCLUDED.transcript, l.transcript),
        recording_url = coalesce(EXCLUDED.recording_url, l.recording_url),
        updated_at = now()
    RETURNING l.id, l.lead_id
)
SELECT agent.id::text, agent.org_id::text, agent.name,
       (SELECT count(*) FROM claimed) AS claimed,
       (SELECT count(*) FROM tracking) AS tracked,
       (SELECT lead_id::text FROM logged) AS lead_id,
       agent.in_rollout
FROM agent";

/// Adds one row to `webhook_events`, the durable record `/metrics` is
/// computed from (written after the response).
pub const INSERT_EVENT_ROW: &str = "INSERT INTO webhook_events
    (message_type, vapi_call_id, org_id, direction, outcome, status_code, duration_ms, error_class)
VALUES ($1::text, $2::text, $3::text::uuid, $4::text, $5::text, $6::int2, $7::float8, $8::text)";

/// The parameters of [`RECORD_EVENT`], in order (`$1`..`$22`).
pub const RECORD_EVENT_PARAMS: [&str; 22] = [
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
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_used_and_named() {
        for n in 1..=RECORD_EVENT_PARAMS.len() {
            assert!(RECORD_EVENT.contains(&format!("${n}::")), "${n} unused");
        }
        assert!(!RECORD_EVENT.contains(&format!("${}::", RECORD_EVENT_PARAMS.len() + 1)));
    }
}
