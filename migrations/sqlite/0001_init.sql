-- vapi-edge schema for SQLite (Spin's built-in `default` database), version
-- 0001. The twin of ../0001_init.sql: same tables, columns, keys and defaults,
-- in SQLite's terms (uuid and timestamptz are TEXT, jsonb is JSON TEXT).
-- host/tests/schema_twins.rs fails when the two sets drift apart.
-- Statements end with `;` at the end of a line: the component applies this
-- file itself, one statement at a time, when no Postgres URL is configured.
-- Ids default to a random (version 4) UUID in its text form, like
-- gen_random_uuid(), so a row that gives only the contract's columns inserts.

CREATE TABLE agents (
    id                TEXT PRIMARY KEY NOT NULL DEFAULT (lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))),
    org_id            TEXT NOT NULL COLLATE NOCASE,
    role              TEXT NOT NULL,
    name              TEXT NOT NULL,
    vapi_assistant_id TEXT UNIQUE,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT agents_org_role_key UNIQUE (org_id, role)
);

CREATE TABLE leads (
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))),
    org_id      TEXT NOT NULL COLLATE NOCASE,
    phone_e164  TEXT NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT leads_org_phone_key UNIQUE (org_id, phone_e164)
);

CREATE TABLE processed_webhook_events (
    event_key     TEXT PRIMARY KEY NOT NULL,
    message_type  TEXT NOT NULL DEFAULT '',
    vapi_call_id  TEXT,
    org_id        TEXT COLLATE NOCASE,
    processed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE call_tracking (
    id            TEXT PRIMARY KEY NOT NULL DEFAULT (lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))),
    vapi_call_id  TEXT NOT NULL UNIQUE,
    org_id        TEXT COLLATE NOCASE,
    agent_id      TEXT REFERENCES agents (id) ON DELETE SET NULL,
    direction     TEXT NOT NULL DEFAULT 'inbound',
    from_number   TEXT,
    to_number     TEXT,
    status        TEXT,
    status_rank   INTEGER,
    vapi_org_id   TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX call_tracking_org_created_idx ON call_tracking (org_id, created_at);

CREATE TABLE call_logs (
    id                TEXT PRIMARY KEY NOT NULL DEFAULT (lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))),
    vapi_call_id      TEXT NOT NULL UNIQUE,
    org_id            TEXT COLLATE NOCASE,
    agent_id          TEXT REFERENCES agents (id) ON DELETE SET NULL,
    lead_id           TEXT REFERENCES leads (id) ON DELETE SET NULL,
    status            TEXT,
    status_rank       INTEGER,
    metadata          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    direction         TEXT,
    from_number       TEXT,
    to_number         TEXT,
    started_at        TEXT,
    ended_at          TEXT,
    ended_reason      TEXT,
    duration_seconds  REAL,
    cost              REAL,
    summary           TEXT,
    transcript        TEXT,
    recording_url     TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX call_logs_org_created_idx ON call_logs (org_id, created_at);
CREATE INDEX call_logs_lead_idx ON call_logs (lead_id) WHERE lead_id IS NOT NULL;
