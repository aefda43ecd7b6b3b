-- vapi-edge schema, version 0004: what the dashboard reads.
--
-- `GET /api/calls` pages through call_logs newest first by (created_at, id),
-- for every organisation (an operator's token) or for one; `GET
-- /api/calls/{id}` lists the call's deliveries from webhook_events. Indexes
-- only: a build of version 0003 runs unchanged on this schema. Migrations are
-- additive, so call_logs_org_created_idx stays, though the wider
-- (org_id, created_at, id) index covers what it served.

CREATE INDEX call_logs_created_id_idx ON call_logs (created_at, id);
CREATE INDEX call_logs_org_created_id_idx ON call_logs (org_id, created_at, id);
CREATE INDEX webhook_events_call_idx ON webhook_events (vapi_call_id) WHERE vapi_call_id IS NOT NULL;
