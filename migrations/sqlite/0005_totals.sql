-- vapi-edge schema for SQLite, version 0005: the twin of ../0005_totals.sql
-- (see there). SQLite has one writer at a time and row triggers only: every
-- row adds to shard 0. A trigger's body is one statement for the migrators
-- (crates/core/src/sqlite_sql.rs `statements`): it ends at a line `END;`.

CREATE TABLE webhook_event_totals (
    message_type  TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    status_class  TEXT NOT NULL,
    error_class   TEXT NOT NULL,
    shard         INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    sum_ms        REAL NOT NULL,
    le_5ms        INTEGER NOT NULL,
    le_10ms       INTEGER NOT NULL,
    le_25ms       INTEGER NOT NULL,
    le_50ms       INTEGER NOT NULL,
    le_100ms      INTEGER NOT NULL,
    le_250ms      INTEGER NOT NULL,
    le_500ms      INTEGER NOT NULL,
    le_1000ms     INTEGER NOT NULL,
    le_2500ms     INTEGER NOT NULL,
    le_5000ms     INTEGER NOT NULL,
    le_10000ms    INTEGER NOT NULL,
    PRIMARY KEY (message_type, outcome, status_class, error_class, shard)
);

CREATE TABLE call_tracking_totals (
    shard  SMALLINT PRIMARY KEY NOT NULL,  -- not INTEGER: no rowid alias, as in PostgreSQL
    calls  INTEGER NOT NULL
);

CREATE TRIGGER webhook_event_totals_add AFTER INSERT ON webhook_events
BEGIN
    INSERT INTO webhook_event_totals
        (message_type, outcome, status_class, error_class, shard, count, sum_ms,
         le_5ms, le_10ms, le_25ms, le_50ms, le_100ms, le_250ms, le_500ms, le_1000ms,
         le_2500ms, le_5000ms, le_10000ms)
    VALUES (coalesce(NEW.message_type, ''), NEW.outcome, (NEW.status_code / 100) || 'xx',
            coalesce(NEW.error_class, ''), 0, 1, NEW.duration_ms,
            NEW.duration_ms <= 5, NEW.duration_ms <= 10, NEW.duration_ms <= 25,
            NEW.duration_ms <= 50, NEW.duration_ms <= 100, NEW.duration_ms <= 250,
            NEW.duration_ms <= 500, NEW.duration_ms <= 1000, NEW.duration_ms <= 2500,
            NEW.duration_ms <= 5000, NEW.duration_ms <= 10000)
    ON CONFLICT (message_type, outcome, status_class, error_class, shard) DO UPDATE SET
        count = count + excluded.count,
        sum_ms = sum_ms + excluded.sum_ms,
        le_5ms = le_5ms + excluded.le_5ms,
        le_10ms = le_10ms + excluded.le_10ms,
        le_25ms = le_25ms + excluded.le_25ms,
        le_50ms = le_50ms + excluded.le_50ms,
        le_100ms = le_100ms + excluded.le_100ms,
        le_250ms = le_250ms + excluded.le_250ms,
        le_500ms = le_500ms + excluded.le_500ms,
        le_1000ms = le_1000ms + excluded.le_1000ms,
        le_2500ms = le_2500ms + excluded.le_2500ms,
        le_5000ms = le_5000ms + excluded.le_5000ms,
        le_10000ms = le_10000ms + excluded.le_10000ms;
END;

CREATE TRIGGER call_tracking_totals_add AFTER INSERT ON call_tracking
BEGIN
    INSERT INTO call_tracking_totals (shard, calls) VALUES (0, 1)
    ON CONFLICT (shard) DO UPDATE SET calls = calls + 1;
END;

CREATE INDEX call_tracking_created_idx ON call_tracking (created_at);
CREATE INDEX call_logs_live_idx ON call_logs (updated_at)
    WHERE status IN ('scheduled', 'queued', 'ringing', 'in-progress', 'forwarding');

INSERT INTO webhook_event_totals
    (message_type, outcome, status_class, error_class, shard, count, sum_ms,
     le_5ms, le_10ms, le_25ms, le_50ms, le_100ms, le_250ms, le_500ms, le_1000ms,
     le_2500ms, le_5000ms, le_10000ms)
SELECT coalesce(message_type, ''), outcome, (status_code / 100) || 'xx',
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
SELECT 0, count(*) FROM call_tracking GROUP BY NULL HAVING count(*) > 0;
