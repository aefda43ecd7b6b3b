-- vapi-edge schema, version 0006: the recording statement as a function.
--
-- Spin sends each `spin:postgres` statement unprepared, so PostgreSQL parsed
-- and planned RECORD_EVENT, a 29-parameter statement of nine CTEs, on every
-- webhook: PostgreSQL spent 2.7x the CPU per event under Spin that it spends
-- under vapi-edge-host, which prepares each statement once per connection. PL/pgSQL caches a
-- function's plans per session, so the component now sends
-- `SELECT * FROM vapi_record_event_v1($1, ..., $29)`, which is cheap to plan,
-- and the plan of the body below is made once per connection
-- (bench/pg_floor.sh with pgbench -M extended: 680-694 tx/s as a statement,
-- 1,235-1,356 as this function; BENCHMARKS.md).
--
-- The body is crates/core/src/pg_sql.rs RECORD_EVENT with `$n` as `pn` (a test
-- holds them equal). A change to it is a new function, vapi_record_event_v2,
-- in a new migration: the previous build keeps calling v1, so a rollback
-- stays safe.

CREATE FUNCTION vapi_record_event_v1(
    p1 text,
    p2 text,
    p3 text,
    p4 text,
    p5 text,
    p6 text,
    p7 text,
    p8 text,
    p9 text,
    p10 int2,
    p11 text,
    p12 jsonb,
    p13 int8,
    p14 int8,
    p15 text,
    p16 float8,
    p17 float8,
    p18 text,
    p19 text,
    p20 text,
    p21 int8,
    p22 bool,
    p23 text,
    p24 text,
    p25 text,
    p26 text,
    p27 jsonb,
    p28 text,
    p29 jsonb)
RETURNS TABLE (agent_id text, org_id text, agent_name text, claimed bigint,
               tracked bigint, lead_id text, in_rollout boolean, via text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH by_assistant AS (
        SELECT id, org_id, name, 'assistant'::text AS via
        FROM agents WHERE vapi_assistant_id = p1::text
    ), by_route AS (
        SELECT id, org_id, name,
               CASE WHEN vapi_squad_id = p23::text THEN 'squad' ELSE 'workflow' END AS via
        FROM agents
        WHERE p1::text IS NULL AND (vapi_squad_id = p23::text OR vapi_workflow_id = p24::text)
        ORDER BY (vapi_squad_id = p23::text) DESC NULLS LAST
        LIMIT 1
    ), by_line AS (
        SELECT NULL::uuid AS id, p.org_id, NULL::text AS name, 'line'::text AS via
        FROM phone_numbers p
        WHERE p1::text IS NULL AND NOT EXISTS (SELECT 1 FROM by_route)
          AND (p.vapi_phone_number_id = p25::text OR p.phone_e164 = p26::text)
        ORDER BY (p.vapi_phone_number_id = p25::text) DESC NULLS LAST
        LIMIT 1
    ), agent AS (
        SELECT id, org_id, name, via,
               (p5::text <> 'inbound' OR
                (('x' || encode(substring(sha256(convert_to(lower(org_id::text), 'UTF8')) FROM 1 FOR 4), 'hex'))::bit(32)::bigint % 100)
                < p21::int8) AS in_rollout
        FROM (SELECT * FROM by_assistant UNION ALL SELECT * FROM by_route
              UNION ALL SELECT * FROM by_line) AS owner
        LIMIT 1
    ), claimed AS (
        INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
        SELECT p2::text, p3::text, p4::text, agent.org_id FROM agent WHERE agent.in_rollout
        ON CONFLICT (event_key) DO NOTHING
        RETURNING event_key
    ), lead AS (
        SELECT leads.id FROM leads JOIN agent ON leads.org_id = agent.org_id
        WHERE leads.phone_e164 = p8::text
    ), tracking AS (
        INSERT INTO call_tracking AS t
            (vapi_call_id, org_id, agent_id, direction, from_number, to_number,
             status, status_rank, vapi_org_id)
        SELECT p4::text, agent.org_id, agent.id, 'inbound', p6::text, p7::text,
               p9::text, p10::int2, p11::text
        FROM agent, claimed
        WHERE p5::text = 'inbound'
        ON CONFLICT (vapi_call_id) DO UPDATE SET
            status = CASE WHEN EXCLUDED.status_rank > coalesce(t.status_rank, 0)
                          THEN EXCLUDED.status ELSE t.status END,
            status_rank = greatest(t.status_rank, EXCLUDED.status_rank),
            agent_id = coalesce(t.agent_id, EXCLUDED.agent_id),
            from_number = coalesce(t.from_number, EXCLUDED.from_number),
            to_number = coalesce(t.to_number, EXCLUDED.to_number),
            updated_at = now()
        RETURNING t.id
    ), logged AS (
        INSERT INTO call_logs AS l
            (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
             direction, from_number, to_number, started_at, ended_at, ended_reason,
             duration_seconds, cost, summary, transcript, recording_url,
             structured_data, success_evaluation, costs)
        SELECT p4::text, agent.org_id, agent.id, (SELECT id FROM lead), p9::text,
               p10::int2, p12::jsonb, p5::text, p6::text, p7::text,
               to_timestamp(p13::int8 / 1000.0), to_timestamp(p14::int8 / 1000.0),
               p15::text, p16::float8, p17::float8::numeric, p18::text, p19::text,
               p20::text, p27::jsonb, p28::text, p29::jsonb
        FROM agent, claimed
        ON CONFLICT (vapi_call_id) DO UPDATE SET
            status = CASE WHEN EXCLUDED.status_rank > coalesce(l.status_rank, 0)
                          THEN EXCLUDED.status ELSE l.status END,
            status_rank = greatest(l.status_rank, EXCLUDED.status_rank),
            agent_id = coalesce(l.agent_id, EXCLUDED.agent_id),
            lead_id = coalesce(l.lead_id, EXCLUDED.lead_id),
            metadata = l.metadata || EXCLUDED.metadata,
            from_number = coalesce(l.from_number, EXCLUDED.from_number),
            to_number = coalesce(l.to_number, EXCLUDED.to_number),
            -- The end-of-call report is authoritative for the call's times and
            -- reason; otherwise the first value seen stays, so the final row does
            -- not depend on the order Vapi's messages arrive in.
            started_at = CASE WHEN p22::bool THEN coalesce(EXCLUDED.started_at, l.started_at)
                              ELSE coalesce(l.started_at, EXCLUDED.started_at) END,
            ended_at = CASE WHEN p22::bool THEN coalesce(EXCLUDED.ended_at, l.ended_at)
                            ELSE coalesce(l.ended_at, EXCLUDED.ended_at) END,
            ended_reason = CASE WHEN p22::bool THEN coalesce(EXCLUDED.ended_reason, l.ended_reason)
                                ELSE coalesce(l.ended_reason, EXCLUDED.ended_reason) END,
            duration_seconds = coalesce(EXCLUDED.duration_seconds, l.duration_seconds),
            cost = coalesce(EXCLUDED.cost, l.cost),
            summary = coalesce(EXCLUDED.summary, l.summary),
            transcript = coalesce(EXCLUDED.transcript, l.transcript),
            recording_url = coalesce(EXCLUDED.recording_url, l.recording_url),
            structured_data = coalesce(EXCLUDED.structured_data, l.structured_data),
            success_evaluation = coalesce(EXCLUDED.success_evaluation, l.success_evaluation),
            costs = coalesce(EXCLUDED.costs, l.costs),
            updated_at = now()
        RETURNING l.id, l.lead_id
    )
    SELECT agent.id::text, agent.org_id::text, agent.name,
           (SELECT count(*) FROM claimed) AS claimed,
           (SELECT count(*) FROM tracking) AS tracked,
           (SELECT lead_id::text FROM logged) AS lead_id,
           agent.in_rollout, agent.via
    FROM (SELECT 1) AS one LEFT JOIN agent ON true;
END
$fn$;
