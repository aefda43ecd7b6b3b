-- vapi-edge schema, version 0004, for the built-in SQLite store: the twin of
-- migrations/0004_dashboard.sql (see there).

CREATE INDEX call_logs_created_id_idx ON call_logs (created_at, id);
CREATE INDEX call_logs_org_created_id_idx ON call_logs (org_id, created_at, id);
CREATE INDEX webhook_events_call_idx ON webhook_events (vapi_call_id) WHERE vapi_call_id IS NOT NULL;
