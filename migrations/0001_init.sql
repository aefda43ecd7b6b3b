-- vapi-edge schema, version 0001.
-- Table and column names marked "contract" are relied on by tools outside this
-- repository (docs/contract.md, "Tables"); a row that gives only those
-- columns must insert, so every other column has a default or is nullable.

-- Agents answer calls for an organisation; Vapi knows them by assistant id.
CREATE TABLE agents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- contract
    org_id            uuid NOT NULL,                               -- contract
    role              text NOT NULL,                               -- contract
    name              text NOT NULL,                               -- contract
    vapi_assistant_id text UNIQUE,                                 -- contract
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agents_org_role_key UNIQUE (org_id, role)
);

-- Known people of an organisation; a call from their number links to them.
CREATE TABLE leads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),        -- contract
    org_id      uuid NOT NULL,                                     -- contract
    phone_e164  text NOT NULL,                                     -- contract
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT leads_org_phone_key UNIQUE (org_id, phone_e164)
);

-- The durable idempotency record: one row per handled event. Its primary key
-- decides which of several concurrent deliveries has the effect.
CREATE TABLE processed_webhook_events (
    event_key     text PRIMARY KEY,                                -- contract
    message_type  text NOT NULL DEFAULT '',
    vapi_call_id  text,
    org_id        uuid,
    processed_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per inbound call; later events move its status forward.
CREATE TABLE call_tracking (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),      -- contract
    vapi_call_id  text NOT NULL UNIQUE,                            -- contract
    org_id        uuid,                                            -- contract
    agent_id      uuid REFERENCES agents (id) ON DELETE SET NULL,  -- contract
    direction     text NOT NULL DEFAULT 'inbound',                 -- contract
    from_number   text,                                            -- contract
    to_number     text,                                            -- contract
    status        text,                                            -- contract
    -- How far along its life the call is (scheduled 1 .. ended 6); statuses
    -- only move forward when events arrive out of order.
    status_rank   smallint,
    vapi_org_id   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_tracking_org_created_idx ON call_tracking (org_id, created_at);

-- One row per call of any direction, upserted by every event of that call.
CREATE TABLE call_logs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- contract
    vapi_call_id      text NOT NULL UNIQUE,                        -- contract
    org_id            uuid,                                        -- contract
    agent_id          uuid REFERENCES agents (id) ON DELETE SET NULL, -- contract
    lead_id           uuid REFERENCES leads (id) ON DELETE SET NULL,  -- contract
    status            text,                                        -- contract
    status_rank       smallint,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,          -- contract: channel, is_test_call
    direction         text,
    from_number       text,
    to_number         text,
    started_at        timestamptz,
    ended_at          timestamptz,
    ended_reason      text,
    duration_seconds  double precision,
    cost              numeric,
    summary           text,
    transcript        text,
    recording_url     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_logs_org_created_idx ON call_logs (org_id, created_at);
CREATE INDEX call_logs_lead_idx ON call_logs (lead_id) WHERE lead_id IS NOT NULL;
