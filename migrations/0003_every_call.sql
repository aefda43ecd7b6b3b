-- vapi-edge schema, version 0003: every call is tracked, whoever ran it.
--
-- A call that no single assistant ran (a squad, a workflow, a transient
-- assistant, an inbound call whose assistant-request failed) is owned by the
-- agent mapped to its squad or workflow, or else by the organisation that owns
-- its line, with no agent. And the report's analysis and costs are kept.
-- Additive only: a build of schema version 2 still runs on it.

-- The agent that owns a squad's or a workflow's calls (optional).
ALTER TABLE agents ADD COLUMN vapi_squad_id text;
ALTER TABLE agents ADD COLUMN vapi_workflow_id text;
CREATE UNIQUE INDEX agents_vapi_squad_id_key ON agents (vapi_squad_id);
CREATE UNIQUE INDEX agents_vapi_workflow_id_key ON agents (vapi_workflow_id);

-- What the end-of-call report says of the call, for dashboards.
ALTER TABLE call_logs ADD COLUMN structured_data jsonb;     -- analysis.structuredData
ALTER TABLE call_logs ADD COLUMN success_evaluation text;   -- analysis.successEvaluation
ALTER TABLE call_logs ADD COLUMN costs jsonb;               -- {"breakdown": ..., "items": [...]}
