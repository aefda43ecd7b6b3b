-- vapi-edge schema, version 0008, for the built-in SQLite store: the twin of
-- ../0008_tenants.sql (see there). The owner lookups and call upserts that
-- take the tenant are in crates/core/src/sqlite_sql.rs.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY NOT NULL,
    config      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

ALTER TABLE agents ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE phone_numbers ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE vapi_organizations ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE call_tracking ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE call_logs ADD COLUMN tenant TEXT NOT NULL DEFAULT '';

ALTER TABLE webhook_events ADD COLUMN tenant TEXT NOT NULL DEFAULT '';

CREATE TABLE webhook_event_tenant_totals (
    tenant   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    shard    SMALLINT NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (tenant, outcome, shard)
);

CREATE TRIGGER webhook_events_tenant_totals AFTER INSERT ON webhook_events
WHEN NEW.tenant <> ''
BEGIN
    INSERT INTO webhook_event_tenant_totals (tenant, outcome, shard, count)
    VALUES (NEW.tenant, NEW.outcome, 0, 1)
    ON CONFLICT (tenant, outcome, shard) DO UPDATE SET count = count + 1;
END;
