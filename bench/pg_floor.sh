#!/usr/bin/env bash
# The PostgreSQL floor: what PostgreSQL on this machine can commit of exactly
# the component's work for one unique inbound call-start event, with no HTTP,
# no verification and no JSON. Each pgbench transaction is the component's
# two statements, printed by vapi-edge-sql from crates/core/src/pg_sql.rs (so
# they cannot drift): RECORD_EVENT for a new call of a seeded agent, then
# INSERT_EVENT_ROW. Prints one line per concurrency: `floor: C tps`.
#
#   bash bench/pg_floor.sh                     # CONCURRENCY="8 32" DURATION=10
#   DB=name bash bench/pg_floor.sh             # an existing migrated database
#   SQL_BIN=path bash bench/pg_floor.sh        # a built vapi-edge-sql: no cargo build
#
# Without DB it creates vapi_edge_floor_<pid>, migrates it with migrations/
# (MIGRATIONS=DIR: another folder) and drops it on exit. Needs PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust), psql, pgbench and cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

concurrencies=${CONCURRENCY:-8 32}
duration=${DURATION:-10}
migrations=${MIGRATIONS:-migrations}
psql_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)

if [[ -n ${SQL_BIN:-} ]]; then
    sql_bin=$SQL_BIN # a saved build (bench/run.sh with BIN_DIR)
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vapi-edge-target}"
    cargo build -q --release -p vapi-edge-bench --bin vapi-edge-sql
    sql_bin="${CARGO_TARGET_DIR}/release/vapi-edge-sql"
fi

if [[ -z ${DB:-} ]]; then
    DB="vapi_edge_floor_$$"
    "${psql_admin[@]}" -c "CREATE DATABASE ${DB}"
    trap '"${psql_admin[@]}" -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)"' EXIT
    for migration in "$migrations"/*.sql; do
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" -1 -f "$migration" >/dev/null
    done
fi
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" -c \
    "INSERT INTO agents (org_id, role, name, vapi_assistant_id)
     VALUES ('6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40', 'floor', 'Floor', 'asst-floor')
     ON CONFLICT (vapi_assistant_id) DO NOTHING"

script=$(mktemp)
{
    # A new call per transaction (a repeat is a duplicate and writes nothing:
    # 1 in ~10^9 here). chr(58) is ':', which pgbench would read as the start
    # of a variable even inside a string.
    echo '\set id random(1, 1000000000000)'
    "$sql_bin" record_event "'asst-floor'" "concat_ws(chr(58), 'status-update', 'call-' || :id::text, 'in-progress')" \
        "'status-update'" "('call-' || :id::text)"
    "$sql_bin" insert_event_row "'status-update'" "('call-' || :id::text)"
} >"$script"

calls() {
    psql -X -At -h 127.0.0.1 -U postgres -d "$DB" -c "SELECT count(*) FROM call_tracking"
}
for c in $concurrencies; do
    before=$(calls)
    if ! pgbench -n -M prepared -c "$c" -j 2 -T "$duration" -f "$script" \
        -h 127.0.0.1 -U postgres "$DB" >"${script}.out" 2>&1; then
        cat "${script}.out" >&2
        rm -f "$script" "${script}.out"
        exit 1
    fi
    # Each transaction must have recorded a call, or this is not the floor.
    done_n=$(awk '/^number of transactions actually processed: / { print $6 }' "${script}.out")
    recorded=$(($(calls) - before))
    if ((recorded != done_n)); then
        echo "floor: error: ${done_n} transactions recorded ${recorded} calls" >&2
        exit 1
    fi
    echo "floor: ${c} $(awk '/^tps = / { printf "%.0f", $3 }' "${script}.out")"
done
rm -f "$script" "${script}.out"
