-- vapi-edge schema, version 0009: reconciliation with Vapi's API (README,
-- "Reconciliation"). One row per scope: '' for the single-tenant route, else
-- a tenant's id. `POST /admin/reconcile[/{tenant}]` takes the row's lease
-- (one run at a time per scope, across replicas), walks Vapi's `GET /call`
-- from `state`'s cursor, and saves where it stopped and what it found.
--
-- Times are Unix milliseconds, as in the component's own clock, in both
-- stores. The totals only grow (`prune` never touches this table): they are
-- /metrics' `vapi_edge_reconcile_calls_total`.
CREATE TABLE reconciliation (
    tenant          text PRIMARY KEY,
    -- A run holds the scope until then; NULL or past: free.
    lease_until_ms  bigint,
    -- JSON (reconcile::State): the cursor, the window being walked, and the
    -- last run's report.
    state           text NOT NULL DEFAULT '{}',
    last_run_ms     bigint,
    last_success_ms bigint,
    missing_total   bigint NOT NULL DEFAULT 0,
    updated_total   bigint NOT NULL DEFAULT 0,
    failed_total    bigint NOT NULL DEFAULT 0
);
