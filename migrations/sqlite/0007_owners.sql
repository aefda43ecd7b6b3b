-- vapi-edge schema, version 0007, for the built-in SQLite store: the twin of
-- ../0007_owners.sql (see there). The owner is found in Rust here
-- (src/db/sqlite.rs), inside the event's BEGIN IMMEDIATE transaction, which
-- map-org's own BEGIN IMMEDIATE serialises with.

CREATE TABLE vapi_organizations (
    vapi_org_id  TEXT PRIMARY KEY NOT NULL,
    org_id       TEXT NOT NULL COLLATE NOCASE,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

ALTER TABLE call_logs ADD COLUMN vapi_org_id TEXT;
CREATE INDEX call_logs_unassigned_idx ON call_logs (vapi_org_id) WHERE org_id IS NULL;

ALTER TABLE phone_numbers ADD COLUMN fallback_assistant_id TEXT;
ALTER TABLE phone_numbers ADD COLUMN fallback_number TEXT;
