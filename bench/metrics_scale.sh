#!/usr/bin/env bash
# What a /metrics scrape and the dashboard's summary cost as history grows.
# Runs the statements the component sends (printed by vapi-edge-sql from
# crates/core/src/pg_sql.rs, so they cannot drift) against two fresh migrated
# databases, one holding SMALL delivery rows and one LARGE, in BATCHES
# alternated sessions on each (one warm-up, then ROUNDS runs of each statement
# per session), and prints the median per statement and size. The traffic is RATE deliveries an
# hour at both sizes, so the larger database has a longer history, not a
# busier hour. At the default 400 an hour, 10,000 rows are 25 h, just more
# than the longest window a figure reads (the dashboard's 24 h), and
# 2,000,000 rows are 208 days. A figure over a window costs what the window's
# traffic costs (RATE=2778: 10,000 rows are 3.6 h, and the 24 h figures read
# more at 2,000,000 rows because their window is full). A third of the
# deliveries are agent lookup failures, and for every 10 there is one tracked
# inbound call and one call_logs row (1 in 50 of them still live). Timings are
# psql's \timing in one session (the round trip from psql, with the result's
# transfer; no psql start-up). Then what migrating the LARGE database to 0005
# costs.
#
#   bash bench/metrics_scale.sh   # SMALL=10000 LARGE=2000000 RATE=400 BATCHES=5 ROUNDS=5
#   EXPLAIN=1 bash bench/metrics_scale.sh   # and both plans at LARGE rows
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), psql and cargo.
# The databases vapi_edge_metrics_<pid>_{small,large} are dropped on exit
# (KEEP=1: kept).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

small=${SMALL:-10000}
large=${LARGE:-2000000}
rate=${RATE:-400}
batches=${BATCHES:-5}
rounds=${ROUNDS:-5}
prefix="vapi_edge_metrics_$$"
psql_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
# on SIZE: psql on that size's database.
on() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d "${prefix}_$1" "${@:2}"; }

cargo build -q --release -p vapi-edge-bench --bin vapi-edge-sql
sql_bin="${CARGO_TARGET_DIR:-target}/release/vapi-edge-sql"
# METRICS_SQL=FILE and MIGRATIONS=DIR measure another build's statement and
# schema (e.g. a worktree of an older commit) with this script.
if [[ -n ${METRICS_SQL:-} ]]; then
    metrics_sql=$(cat "$METRICS_SQL")
else
    metrics_sql=$("$sql_bin" metrics_snapshot)
fi
migrations=${MIGRATIONS:-migrations}
# An operator's token: every organisation.
summary_sql=$("$sql_bin" dashboard_summary NULL)

drop() {
    for size in small large; do
        "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS ${prefix}_${size}"
    done
}
if [[ ${KEEP:-0} == 1 ]]; then
    echo "metrics_scale: keeping the databases ${prefix}_small and ${prefix}_large"
else
    trap drop EXIT
fi

# add SIZE N: N deliveries with their calls. Delivery g was received
# g * 3600 / RATE seconds ago.
add() {
    local step="interval '$((3600000000 / rate)) microseconds'"
    on "$1" -c "INSERT INTO webhook_events
        (received_at, message_type, vapi_call_id, org_id, direction, outcome, status_code,
         duration_ms, error_class)
      SELECT now() - g * ${step},
             (ARRAY['status-update', 'end-of-call-report', 'tool-calls'])[1 + g % 3],
             'call-' || g / 10, '6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40', 'inbound',
             (ARRAY['recorded', 'duplicate', 'agent_not_found'])[1 + g % 3],
             (ARRAY[200, 200, 500])[1 + g % 3], random() * 50,
             CASE WHEN g % 3 = 2 THEN 'agent_lookup' END
      FROM generate_series(1, $2) g" \
        -c "INSERT INTO call_logs (vapi_call_id, org_id, direction, status, created_at, updated_at)
      SELECT 'call-' || c, '6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40', 'inbound',
             CASE WHEN c % 50 = 0 THEN 'in-progress' ELSE 'ended' END,
             now() - c * 10 * ${step}, now() - c * 10 * ${step}
      FROM generate_series(1, $2 / 10) c"
    # call_tracking in transactions of 1,000 calls, as a bulk load should go
    # (migration 0005's row trigger).
    local from
    for ((from = 1; from <= $2 / 10; from += 1000)); do
        echo "INSERT INTO call_tracking (vapi_call_id, org_id, status, created_at, updated_at)
      SELECT 'call-' || c, '6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40', 'ended',
             now() - c * 10 * ${step}, now() - c * 10 * ${step}
      FROM generate_series(${from}, least(${from} + 999, $2 / 10)) c;"
    done | on "$1"
    # A bulk load updates each totals row many times per transaction, and the
    # versions fill pages that plain VACUUM cannot give back while the live
    # row sits on the last one. In a running database each update is its own
    # short transaction, and page pruning and autovacuum (a minute apart)
    # keep these tables to the pages of about a minute's updates: compact
    # them, as that steady state has them.
    if [[ -f $migrations/0005_totals.sql ]]; then
        on "$1" -c "VACUUM FULL webhook_event_totals, call_tracking_totals"
    fi
    on "$1" -c "VACUUM ANALYZE"
}

for size in small large; do
    "${psql_admin[@]}" -c "CREATE DATABASE ${prefix}_${size}"
    for migration in "$migrations"/*.sql; do
        on "$size" -1 -f "$migration" >/dev/null
    done
done
add small "$small"
add large "$large"

# session SIZE: "metrics_ms summary_ms" lines, one per round, after a warm-up.
session() {
    {
        echo '\timing on'
        for ((i = 0; i <= rounds; i++)); do
            echo "$metrics_sql"
            echo "$summary_sql"
        done
    } | on "$1" -At -o /dev/null | awk '/^Time: / { print $2 }' | tail -n +3 | paste - -
}
times_small=$(mktemp)
times_large=$(mktemp)
for ((b = 0; b < batches; b++)); do
    session small >>"$times_small"
    session large >>"$times_large"
done

# median FILE COLUMN
median() { cut -f "$2" "$1" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
for column in 1 2; do
    name=$([[ $column == 1 ]] && echo /metrics || echo /api/summary)
    a=$(median "$times_small" "$column")
    b=$(median "$times_large" "$column")
    echo "metrics_scale: ${name}: ${small} rows: ${a} ms; ${large} rows: ${b} ms (x$(ratio "$a" "$b"))"
done
echo "metrics_scale: medians of ${batches} alternated sessions x ${rounds} runs, psql \\timing; ${rate} deliveries an hour"

if [[ ${EXPLAIN:-0} == 1 ]]; then
    # Each statement's plan at LARGE rows, with its row counts and timings.
    for statement in "$metrics_sql" "$summary_sql"; do
        on large -At -c "EXPLAIN (ANALYZE, COSTS OFF) ${statement%;}"
    done
fi

# What migrating a database holding LARGE rows to 0005 costs: one session
# drops what 0005 made, runs the file again (its backfill counts every row)
# and rolls back, summing psql's timings of its statements.
[[ -f $migrations/0005_totals.sql ]] || exit 0
migration_ms=$({
    echo 'BEGIN;'
    echo 'DROP TABLE webhook_event_totals, call_tracking_totals;'
    echo 'DROP FUNCTION webhook_event_totals_add() CASCADE;'
    echo 'DROP FUNCTION call_tracking_totals_add() CASCADE;'
    echo 'DROP INDEX call_tracking_created_idx, call_logs_live_idx;'
    echo '\timing on'
    echo "\\i ${migrations}/0005_totals.sql"
    echo 'ROLLBACK;'
} | on large -At -o /dev/null 2>/dev/null | awk '/^Time: / { sum += $2 } END { printf "%.0f", sum }')
echo "metrics_scale: migrating ${large} rows to 0005 (tables, triggers, indexes, backfill): ${migration_ms} ms"
