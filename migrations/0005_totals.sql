-- vapi-edge schema, version 0005: totals that stay cheap at volume.
--
-- `/metrics` used to aggregate all of webhook_events, and count all of
-- call_tracking, on every scrape, so a scrape cost grew with history
-- (bench/metrics_scale.sh). The all-time figures are now kept as rows are
-- written, by triggers, so that:
--   - every writer counts: this build, the previous one still running during
--     a rolling deploy or after a rollback, `psql`;
--   - a total moves in the writer's transaction, so it never counts a row that
--     rolled back, and it never misses one;
--   - `vapi-edge-host prune` deletes old webhook_events but not their totals,
--     so the counters never go down (Prometheus would read a reset).
-- Last-hour figures still read webhook_events through its received_at index:
-- their cost follows the last hour's traffic, not history.
--
-- A writer adds to the row of its shard (its backend's pid modulo 64), so
-- concurrent writers do not queue on one row lock; a scrape sums the shards.
-- The trigger on webhook_events is per statement, so a whole INSERT ... SELECT
-- adds in one upsert per group. The histogram columns are the bounds of
-- vapi_edge_core::metrics::BUCKETS_S in milliseconds (a test holds them
-- together).

CREATE TABLE webhook_event_totals (
    message_type  text NOT NULL,  -- '' when the delivery had none
    outcome       text NOT NULL,
    status_class  text NOT NULL,  -- '2xx', '4xx', '5xx'
    error_class   text NOT NULL,  -- '' when nothing failed
    shard         smallint NOT NULL,
    count         bigint NOT NULL,
    sum_ms        double precision NOT NULL,
    le_5ms        bigint NOT NULL,
    le_10ms       bigint NOT NULL,
    le_25ms       bigint NOT NULL,
    le_50ms       bigint NOT NULL,
    le_100ms      bigint NOT NULL,
    le_250ms      bigint NOT NULL,
    le_500ms      bigint NOT NULL,
    le_1000ms     bigint NOT NULL,
    le_2500ms     bigint NOT NULL,
    le_5000ms     bigint NOT NULL,
    le_10000ms    bigint NOT NULL,
    PRIMARY KEY (message_type, outcome, status_class, error_class, shard)
);

-- Inbound calls tracked (rows ever inserted into call_tracking).
CREATE TABLE call_tracking_totals (
    shard  smallint PRIMARY KEY,
    calls  bigint NOT NULL
);

CREATE FUNCTION webhook_event_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_event_totals AS t
        (message_type, outcome, status_class, error_class, shard, count, sum_ms,
         le_5ms, le_10ms, le_25ms, le_50ms, le_100ms, le_250ms, le_500ms, le_1000ms,
         le_2500ms, le_5000ms, le_10000ms)
    SELECT coalesce(message_type, ''), outcome, (status_code / 100)::text || 'xx',
           coalesce(error_class, ''), pg_backend_pid() % 64, count(*), sum(duration_ms),
           count(*) FILTER (WHERE duration_ms <= 5),
           count(*) FILTER (WHERE duration_ms <= 10),
           count(*) FILTER (WHERE duration_ms <= 25),
           count(*) FILTER (WHERE duration_ms <= 50),
           count(*) FILTER (WHERE duration_ms <= 100),
           count(*) FILTER (WHERE duration_ms <= 250),
           count(*) FILTER (WHERE duration_ms <= 500),
           count(*) FILTER (WHERE duration_ms <= 1000),
           count(*) FILTER (WHERE duration_ms <= 2500),
           count(*) FILTER (WHERE duration_ms <= 5000),
           count(*) FILTER (WHERE duration_ms <= 10000)
    FROM added GROUP BY 1, 2, 3, 4
    ON CONFLICT (message_type, outcome, status_class, error_class, shard) DO UPDATE SET
        count = t.count + EXCLUDED.count,
        sum_ms = t.sum_ms + EXCLUDED.sum_ms,
        le_5ms = t.le_5ms + EXCLUDED.le_5ms,
        le_10ms = t.le_10ms + EXCLUDED.le_10ms,
        le_25ms = t.le_25ms + EXCLUDED.le_25ms,
        le_50ms = t.le_50ms + EXCLUDED.le_50ms,
        le_100ms = t.le_100ms + EXCLUDED.le_100ms,
        le_250ms = t.le_250ms + EXCLUDED.le_250ms,
        le_500ms = t.le_500ms + EXCLUDED.le_500ms,
        le_1000ms = t.le_1000ms + EXCLUDED.le_1000ms,
        le_2500ms = t.le_2500ms + EXCLUDED.le_2500ms,
        le_5000ms = t.le_5000ms + EXCLUDED.le_5000ms,
        le_10000ms = t.le_10000ms + EXCLUDED.le_10000ms;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_event_totals_add AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_event_totals_add();

-- A row trigger: it fires only for a call inserted, not for the update of a
-- call already tracked (most events of a call), which then costs nothing (a
-- statement trigger ran for every event: bench/pg_floor.sh measured the
-- floor 0.76x the schema without totals with it, 0.86x with this). The price:
-- one INSERT of many calls updates its shard's row once per call in one
-- transaction, and each update walks the versions before it, so bulk loads
-- into call_tracking go in batches (RUNBOOK §14).
CREATE FUNCTION call_tracking_totals_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_tracking_totals AS t (shard, calls) VALUES (pg_backend_pid() % 64, 1)
    ON CONFLICT (shard) DO UPDATE SET calls = t.calls + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER call_tracking_totals_add AFTER INSERT ON call_tracking
    FOR EACH ROW EXECUTE FUNCTION call_tracking_totals_add();

-- Last-hour and dashboard figures read by time; these two were scans of the
-- whole table: inbound calls of the last hour, and calls in progress (a live
-- status, updated in the last 12 h; the list matches DASHBOARD_SUMMARY's).
CREATE INDEX call_tracking_created_idx ON call_tracking (created_at);
CREATE INDEX call_logs_live_idx ON call_logs (updated_at)
    WHERE status IN ('scheduled', 'queued', 'ringing', 'in-progress', 'forwarding');

-- What was there before this migration. `vapi-edge-host migrate` runs it in
-- one transaction; CREATE TRIGGER holds a lock that makes concurrent inserts
-- wait for its commit, so every row is counted once: here or by a trigger.
INSERT INTO webhook_event_totals
    (message_type, outcome, status_class, error_class, shard, count, sum_ms,
     le_5ms, le_10ms, le_25ms, le_50ms, le_100ms, le_250ms, le_500ms, le_1000ms,
     le_2500ms, le_5000ms, le_10000ms)
SELECT coalesce(message_type, ''), outcome, (status_code / 100)::text || 'xx',
       coalesce(error_class, ''), 0, count(*), sum(duration_ms),
       count(*) FILTER (WHERE duration_ms <= 5),
       count(*) FILTER (WHERE duration_ms <= 10),
       count(*) FILTER (WHERE duration_ms <= 25),
       count(*) FILTER (WHERE duration_ms <= 50),
       count(*) FILTER (WHERE duration_ms <= 100),
       count(*) FILTER (WHERE duration_ms <= 250),
       count(*) FILTER (WHERE duration_ms <= 500),
       count(*) FILTER (WHERE duration_ms <= 1000),
       count(*) FILTER (WHERE duration_ms <= 2500),
       count(*) FILTER (WHERE duration_ms <= 5000),
       count(*) FILTER (WHERE duration_ms <= 10000)
FROM webhook_events GROUP BY 1, 2, 3, 4;

INSERT INTO call_tracking_totals (shard, calls)
SELECT 0, count(*) FROM call_tracking HAVING count(*) > 0;
