-- vapi-edge schema, version 0003, for the built-in SQLite store: the twin of
-- migrations/0003_every_call.sql (see there).

ALTER TABLE agents ADD COLUMN vapi_squad_id TEXT;
ALTER TABLE agents ADD COLUMN vapi_workflow_id TEXT;
CREATE UNIQUE INDEX agents_vapi_squad_id_key ON agents (vapi_squad_id);
CREATE UNIQUE INDEX agents_vapi_workflow_id_key ON agents (vapi_workflow_id);

ALTER TABLE call_logs ADD COLUMN structured_data TEXT CHECK (structured_data IS NULL OR json_valid(structured_data));
ALTER TABLE call_logs ADD COLUMN success_evaluation TEXT;
ALTER TABLE call_logs ADD COLUMN costs TEXT CHECK (costs IS NULL OR json_valid(costs));
