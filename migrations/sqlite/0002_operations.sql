-- vapi-edge schema for SQLite, version 0002: the twin of ../0002_operations.sql
-- (event record for metrics, dead letters for replay, phone lines).

CREATE TABLE webhook_events (
    id            INTEGER PRIMARY KEY,
    received_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    message_type  TEXT,
    vapi_call_id  TEXT,
    org_id        TEXT COLLATE NOCASE,
    direction     TEXT,
    outcome       TEXT NOT NULL,
    status_code   INTEGER NOT NULL,
    duration_ms   REAL NOT NULL,
    error_class   TEXT
);
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at);

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    event_key      TEXT NOT NULL,
    received_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    message_type   TEXT,
    vapi_call_id   TEXT,
    reason         TEXT NOT NULL,
    headers        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
    body           BLOB NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 1,
    replayed_at    TEXT,
    replay_outcome TEXT
);
CREATE UNIQUE INDEX dead_letters_pending_key ON dead_letters (event_key) WHERE replayed_at IS NULL;

CREATE TABLE phone_numbers (
    id                    TEXT PRIMARY KEY NOT NULL DEFAULT (lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))),
    org_id                TEXT NOT NULL COLLATE NOCASE,
    phone_e164            TEXT NOT NULL UNIQUE,
    vapi_phone_number_id  TEXT UNIQUE,
    inbound_role          TEXT NOT NULL DEFAULT 'receptionist',
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
