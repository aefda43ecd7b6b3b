-- vapi-edge schema, version 0008: tenants (README, "Tenants").
--
-- A tenant is one Vapi organisation's server URL (`POST /webhooks/vapi/{id}`)
-- and credentials, with its own overrides of the settings; its configuration
-- is one JSON document (crates/core/src/tenant.rs, `Stored`), with no secret
-- in clear: Bearer secrets as SHA-256 hashes, HMAC and upstream secrets
-- sealed with a key from the secret variable `tenant_secrets_key`.
--
-- The owner mappings (agents, lines, Vapi organisations) and the calls belong
-- to a tenant: '' is the single-tenant route's, so every row from before this
-- version stays where it was. A call is owned only through its own tenant's
-- mappings, and a call row is changed only by events of the tenant that wrote
-- it: one tenant's credential cannot record into another's organisations, even
-- with the other's ids in its payload.
--
-- Additive: a build of schema version 7 still runs on it (it calls
-- vapi_record_event_v2, which stays, and its rows get tenant '').

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE agents ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE phone_numbers ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE vapi_organizations ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE call_tracking ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE call_logs ADD COLUMN tenant text NOT NULL DEFAULT '';

-- The recording statement, v3: v2's (migration 0007) with p32, the tenant
-- whose server URL the event came in on. The owner is looked up among that
-- tenant's mappings only, the rows carry the tenant, and an existing call
-- row of another tenant is left as it is: the event is still claimed (a
-- forged delivery changes nothing and is not retried), and `via` says
-- `other_tenant`, so that no notification goes out for it.
CREATE FUNCTION vapi_record_event_v3(
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
    p31 bool,
    p32 text)
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
        FROM agents a WHERE a.vapi_assistant_id = p1 AND a.tenant = p32;
    END IF;
    IF o_org IS NULL AND p23 IS NOT NULL THEN
        SELECT a.id, a.org_id, a.name, 'squad' INTO o_agent, o_org, o_name, o_via
        FROM agents a WHERE a.vapi_squad_id = p23 AND a.tenant = p32;
    END IF;
    IF o_org IS NULL AND p24 IS NOT NULL THEN
        SELECT a.id, a.org_id, a.name, 'workflow' INTO o_agent, o_org, o_name, o_via
        FROM agents a WHERE a.vapi_workflow_id = p24 AND a.tenant = p32;
    END IF;
    IF o_org IS NULL AND (p25 IS NOT NULL OR p26 IS NOT NULL) THEN
        SELECT NULL, p.org_id, NULL, 'line' INTO o_agent, o_org, o_name, o_via
        FROM phone_numbers p
        WHERE (p.vapi_phone_number_id = p25 OR p.phone_e164 = p26) AND p.tenant = p32
        ORDER BY (p.vapi_phone_number_id = p25) DESC NULLS LAST
        LIMIT 1;
    END IF;
    IF o_org IS NULL AND p11 IS NOT NULL THEN
        SELECT NULL, v.org_id, NULL, 'vapi_org' INTO o_agent, o_org, o_name, o_via
        FROM vapi_organizations v WHERE v.vapi_org_id = p11 AND v.tenant = p32;
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
            SELECT v.org_id INTO o_org FROM vapi_organizations v WHERE v.vapi_org_id = p11 AND v.tenant = p32;
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
             status, status_rank, vapi_org_id, tenant)
        SELECT p4, agent.org_id, agent.id, 'inbound', p6, p7, p9, p10, p11, p32
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
        WHERE t.tenant = EXCLUDED.tenant
        RETURNING t.id
    ), logged AS (
        INSERT INTO call_logs AS l
            (vapi_call_id, org_id, agent_id, lead_id, status, status_rank, metadata,
             direction, from_number, to_number, started_at, ended_at, ended_reason,
             duration_seconds, cost, summary, transcript, recording_url,
             structured_data, success_evaluation, costs, vapi_org_id, tenant)
        SELECT p4, agent.org_id, agent.id, (SELECT id FROM lead), p9, p10, p12, p5, p6, p7,
               to_timestamp(p13 / 1000.0), to_timestamp(p14 / 1000.0),
               p15, p16, p17::numeric, p18, p19, p20, p27, p28, p29, p11, p32
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
        WHERE l.tenant = EXCLUDED.tenant
        RETURNING l.id, l.lead_id
    )
    SELECT agent.id::text, agent.org_id::text, agent.name,
           (SELECT count(*) FROM claimed) AS claimed,
           (SELECT count(*) FROM tracking) AS tracked,
           (SELECT lead_id::text FROM logged) AS lead_id,
           agent.in_rollout,
           CASE WHEN (SELECT count(*) FROM claimed) > 0 AND (SELECT count(*) FROM logged) = 0
                THEN 'other_tenant' ELSE agent.via END
    FROM agent;
END
$fn$;

-- Each delivery's tenant, and the deliveries of each tenant by outcome for
-- /metrics (`vapi_edge_tenant_webhook_requests_total`): a bounded label, as
-- only verified deliveries are recorded and tenants are an operator's list.
-- Sharded as webhook_event_totals; only tenants' rows pay for the trigger.
ALTER TABLE webhook_events ADD COLUMN tenant text NOT NULL DEFAULT '';

CREATE TABLE webhook_event_tenant_totals (
    tenant   text NOT NULL,
    outcome  text NOT NULL,
    shard    smallint NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (tenant, outcome, shard)
);

CREATE FUNCTION webhook_event_tenant_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_event_tenant_totals AS t (tenant, outcome, shard, count)
    VALUES (NEW.tenant, NEW.outcome, pg_backend_pid() % 64, 1)
    ON CONFLICT (tenant, outcome, shard) DO UPDATE SET count = t.count + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_events_tenant_totals AFTER INSERT ON webhook_events
    FOR EACH ROW WHEN (NEW.tenant <> '') EXECUTE FUNCTION webhook_event_tenant_totals_add();
