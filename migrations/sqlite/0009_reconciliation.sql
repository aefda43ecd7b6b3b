-- vapi-edge schema, version 0009, for the built-in SQLite store: the twin of
-- ../0009_reconciliation.sql (see there).
CREATE TABLE reconciliation (
    tenant          TEXT PRIMARY KEY NOT NULL,
    lease_until_ms  INTEGER,
    state           TEXT NOT NULL DEFAULT '{}',
    last_run_ms     INTEGER,
    last_success_ms INTEGER,
    missing_total   INTEGER NOT NULL DEFAULT 0,
    updated_total   INTEGER NOT NULL DEFAULT 0,
    failed_total    INTEGER NOT NULL DEFAULT 0
);
