-- vapi-edge schema, version 0007: an owner for every call.
--
-- A call is owned by the first of these that resolves (README, "Who owns a
-- call"): the agent with its assistant id; the agent mapped to its squad
-- (also when the squad's active member is an assistant no agent has); the
-- agent mapped to its workflow; the organisation that owns its line; the
-- organisation mapped to Vapi's organisation id (`call.orgId`, new here:
-- `vapi_organizations`); the deployment's `default_org_id`. A call with none of
-- them and no assistant id to wait for (an inline-assistant web call of a Vapi
-- organisation nobody mapped) is recorded without an organisation instead of
-- refused: its rows keep `org_id` NULL and `vapi_org_id`, and
-- `vapi-edge-host map-org` attributes them.
--
-- Additive: a build of schema version 6 still runs on it (it calls
-- vapi_record_event_v1, which stays).

-- Vapi's organisation id -> this product's organisation.
CREATE TABLE vapi_organizations (
    vapi_org_id  text PRIMARY KEY,
    org_id       uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The Vapi organisation of each call, so an unassigned call can be attributed
-- once its organisation is mapped; the partial index is what /metrics counts
-- and what map-org updates.
ALTER TABLE call_logs ADD COLUMN vapi_org_id text;
CREATE INDEX call_logs_unassigned_idx ON call_logs (vapi_org_id) WHERE org_id IS NULL;

-- What answers an assistant-request on the line when neither its agent nor
-- the upstream does: a saved assistant, or a transfer to a number.
ALTER TABLE phone_numbers ADD COLUMN fallback_assistant_id text;
ALTER TABLE phone_numbers ADD COLUMN fallback_number text;

-- The recording statement, v2. Parameters p1-p29 as v1's (see
-- crates/core/src/pg_sql.rs RECORD_EVENT_PARAMS); p30 the default
-- organisation, p31 whether a call nobody owns is written without an owner
-- (else nothing is written and the caller retries: an unknown assistant id).
--
-- The owner is found by one small statement per handle, in order, each only
-- while none has resolved (PL/pgSQL plans each once per connection). An
-- unowned call takes call_logs' ROW EXCLUSIVE lock before it looks for its
-- Vapi organisation once more: `map-org` holds SHARE on call_logs while it
-- maps and attributes, so either this call sees the mapping or map-org sees
-- this call's row; no call is left unassigned by the race.
CREATE FUNCTION vapi_record_event_v2(
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
    p29 jsonb,
    p30 text,
    p31 bool)
RETURNS TABLE (agent_id text, org_id text, agent_name text, claimed bigint,
               tracked bigint, lead_id text, in_rollout boolean, via text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    o_agent uuid;
    o_org uuid;
    o_name text;
    o_via text;
BEGIN
    IF p1 IS NOT NULL THEN
        SELECT a.id, a.org_id, a.name, 'assistant' INTO o_agent, o_org, o_name, o_via
        FROM agents a WHERE a.vapi_assistant_id = p1;
    END IF;
    IF o_org IS NULL AND p23 IS NOT NULL THEN
        SELECT a.id, a.org_id, a.name, 'squad' INTO o_agent, o_org, o_name, o_via
        FROM agents a WHERE a.vapi_squad_id = p23;
    END IF;
    IF o_org IS NULL AND p24 IS NOT NULL THEN
        SELECT a.id, a.org_id, a.name, 'workflow' INTO o_agent, o_org, o_name, o_via
        FROM agents a WHERE a.vapi_workflow_id = p24;
    END IF;
    IF o_org IS NULL AND (p25 IS NOT NULL OR p26 IS NOT NULL) THEN
        SELECT NULL, p.org_id, NULL, 'line' INTO o_agent, o_org, o_name, o_via
        FROM phone_numbers p
        WHERE p.vapi_phone_number_id = p25 OR p.phone_e164 = p26
        ORDER BY (p.vapi_phone_number_id = p25) DESC NULLS LAST
        LIMIT 1;
    END IF;
    IF o_org IS NULL AND p11 IS NOT NULL THEN
        SELECT NULL, v.org_id, NULL, 'vapi_org' INTO o_agent, o_org, o_name, o_via
        FROM vapi_organizations v WHERE v.vapi_org_id = p11;
    END IF;
    IF o_org IS NULL AND p30 IS NOT NULL THEN
        o_agent := NULL;
        o_org := p30::uuid;
        o_name := NULL;
        o_via := 'default';
    END IF;
    IF o_org IS NULL THEN
        IF NOT p31 THEN
            -- Nobody owns the call yet, and the caller retries.
            RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, 0::bigint, 0::bigint,
                                NULL::text, NULL::boolean, NULL::text;
            RETURN;
        END IF;
        LOCK TABLE call_logs IN ROW EXCLUSIVE MODE;
        o_agent := NULL;
        o_name := NULL;
        o_via := 'none';
        IF p11 IS NOT NULL THEN
            SELECT v.org_id INTO o_org FROM vapi_organizations v WHERE v.vapi_org_id = p11;
            IF o_org IS NOT NULL THEN
                o_via := 'vapi_org';
            END IF;
        END IF;
    END IF;

    RETURN QUERY
    WITH agent AS (
        SELECT o_agent AS id, o_org AS org_id, o_name AS name, o_via AS via,
               (p5 <> 'inbound' OR o_org IS NULL OR
                (('x' || encode(substring(sha256(convert_to(lower(o_org::text), 'UTF8')) FROM 1 FOR 4), 'hex'))::bit(32)::bigint % 100)
                < p21) AS in_rollout
    ), claimed AS (
        INSERT INTO processed_webhook_events (event_key, message_type, vapi_call_id, org_id)
        SELECT p2, p3, p4, agent.org_id FROM agent WHERE agent.in_rollout
        ON CONFLICT (event_key) DO NOTHING
        RETURNING event_key
    ), lead AS (
        SELECT leads.id FROM leads JOIN agent ON leads.org_id = agent.org_id
        WHERE leads.phone_e164 = p8
    ), tracking AS (
        INSERT INTO call_tracking AS t
            (vapi_call_id, org_id, agent_id, direction, from_number, to_number,
             status, status_rank, vapi_org_id)
        SELECT p4, agent.org_id, agent.id, 'inbound', p6, p7, p9, p10, p11
        FROM agent, claimed
        WHERE p5 = 'inbound'
        ON CONFLICT (vapi_call_id) DO UPDATE SET
            status = CASE WHEN EXCLUDED.status_rank > coalesce(t.status_rank, 0)
                          THEN EXCLUDED.status ELSE t.status END,
            status_rank = greatest(t.status_rank, EXCLUDED.status_rank),
            org_id = coalesce(t.org_id, EXCLUDED.org_id),
            agent_id = coalesce(t.agent_id, EXCLUDED.agent_id),
            from_number = coalesce(t.from_number, EXCLUDED.from_number),
            to_number = coalesce(t.to_number, EXCLUDED.to_number),
            vapi_org_id = coalesce(t.vapi_org_id, EXCLUDED.vapi_org_id),
            updated_at = now()
        RETURNING t.id
    ), logged AS (
        INSERT INTO call_logs AS l
            (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
             direction, from_number, to_number, started_at, ended_at, ended_reason,
             duration_seconds, cost, summary, transcript, recording_url,
             structured_data, success_evaluation, costs, vapi_org_id)
        SELECT p4, agent.org_id, agent.id, (SELECT id FROM lead), p9, p10, p12, p5, p6, p7,
               to_timestamp(p13 / 1000.0), to_timestamp(p14 / 1000.0),
               p15, p16, p17::numeric, p18, p19, p20, p27, p28, p29, p11
        FROM agent, claimed
        ON CONFLICT (vapi_call_id) DO UPDATE SET
            status = CASE WHEN EXCLUDED.status_rank > coalesce(l.status_rank, 0)
                          THEN EXCLUDED.status ELSE l.status END,
            status_rank = greatest(l.status_rank, EXCLUDED.status_rank),
            -- A call first recorded without an owner takes the first one a
            -- later event of it finds.
            org_id = coalesce(l.org_id, EXCLUDED.org_id),
            agent_id = coalesce(l.agent_id, EXCLUDED.agent_id),
            lead_id = coalesce(l.lead_id, EXCLUDED.lead_id),
            metadata = l.metadata || EXCLUDED.metadata,
            from_number = coalesce(l.from_number, EXCLUDED.from_number),
            to_number = coalesce(l.to_number, EXCLUDED.to_number),
            -- The end-of-call report is authoritative for the call's times and
            -- reason; otherwise the first value seen stays, so the final row does
            -- not depend on the order Vapi's messages arrive in.
            started_at = CASE WHEN p22 THEN coalesce(EXCLUDED.started_at, l.started_at)
                              ELSE coalesce(l.started_at, EXCLUDED.started_at) END,
            ended_at = CASE WHEN p22 THEN coalesce(EXCLUDED.ended_at, l.ended_at)
                            ELSE coalesce(l.ended_at, EXCLUDED.ended_at) END,
            ended_reason = CASE WHEN p22 THEN coalesce(EXCLUDED.ended_reason, l.ended_reason)
                                ELSE coalesce(l.ended_reason, EXCLUDED.ended_reason) END,
            duration_seconds = coalesce(EXCLUDED.duration_seconds, l.duration_seconds),
            cost = coalesce(EXCLUDED.cost, l.cost),
            summary = coalesce(EXCLUDED.summary, l.summary),
            transcript = coalesce(EXCLUDED.transcript, l.transcript),
            recording_url = coalesce(EXCLUDED.recording_url, l.recording_url),
            structured_data = coalesce(EXCLUDED.structured_data, l.structured_data),
            success_evaluation = coalesce(EXCLUDED.success_evaluation, l.success_evaluation),
            costs = coalesce(EXCLUDED.costs, l.costs),
            vapi_org_id = coalesce(l.vapi_org_id, EXCLUDED.vapi_org_id),
            updated_at = now()
        RETURNING l.id, l.lead_id
    )
    SELECT agent.id::text, agent.org_id::text, agent.name,
           (SELECT count(*) FROM claimed) AS claimed,
           (SELECT count(*) FROM tracking) AS tracked,
           (SELECT lead_id::text FROM logged) AS lead_id,
           agent.in_rollout, agent.via
    FROM agent;
END
$fn$;
