-- vapi-edge schema, version 0002: the operations side (event record for
-- metrics, dead letters for replay, which organisation owns which line).
-- Additive only, so the previous build runs on this schema (rollback safe).

-- One row per verified webhook request; /metrics is computed from it.
CREATE TABLE webhook_events (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    message_type  text,
    vapi_call_id  text,
    org_id        uuid,
    direction     text,
    outcome       text NOT NULL,
    status_code   smallint NOT NULL,
    duration_ms   double precision NOT NULL,
    -- What failed, for failures: agent_lookup, call_tracking, call_logs, database.
    error_class   text
);
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at);

-- Verified requests that failed (database down, agent never found), kept with
-- their raw body so `POST /admin/replay` can re-drive them. Credentials are
-- never stored: the headers kept are the non-secret ones.
CREATE TABLE dead_letters (
    id             bigserial PRIMARY KEY,
    event_key      text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    message_type   text,
    vapi_call_id   text,
    reason         text NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}'::jsonb,
    body           bytea NOT NULL,
    attempts       integer NOT NULL DEFAULT 1,
    replayed_at    timestamptz,
    replay_outcome text
);
-- One pending dead letter per event; a repeated failure bumps `attempts`.
CREATE UNIQUE INDEX dead_letters_pending_key ON dead_letters (event_key) WHERE replayed_at IS NULL;

-- The organisation's phone lines, and which agent role answers an inbound
-- call on a line that has no fixed assistant (assistant-request).
CREATE TABLE phone_numbers (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                uuid NOT NULL,
    phone_e164            text NOT NULL UNIQUE,
    vapi_phone_number_id  text UNIQUE,
    inbound_role          text NOT NULL DEFAULT 'receptionist',
    created_at            timestamptz NOT NULL DEFAULT now()
);
