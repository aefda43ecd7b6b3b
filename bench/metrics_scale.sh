#!/usr/bin/env bash
# What one /metrics scrape costs as webhook_events grows: runs the statement
# the component sends for /metrics (pg_sql::METRICS_SNAPSHOT, read from
# crates/core/src/pg_sql.rs so it cannot drift) against a fresh database
# holding SMALL rows, then LARGE rows (spread over the last 30 days, a third
# of them agent lookup failures), and prints the median of ROUNDS timings of
# each (psql's own start-up included, ~40 ms here).
#
#   bash bench/metrics_scale.sh                 # SMALL=10000 LARGE=2000000 ROUNDS=5
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and psql. The
# database vapi_edge_metrics_<pid> is dropped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

small=${SMALL:-10000}
large=${LARGE:-2000000}
rounds=${ROUNDS:-5}
db="vapi_edge_metrics_$$"
psql_db=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d "$db")
psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "CREATE DATABASE ${db}"
trap 'psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "DROP DATABASE IF EXISTS ${db}"' EXIT
for migration in migrations/*.sql; do
    "${psql_db[@]}" -f "$migration" >/dev/null
done

statement=$(mktemp)
python3 - "$statement" <<'PY'
import sys
src = open("crates/core/src/pg_sql.rs").read()
start = src.index('pub const METRICS_SNAPSHOT: &str = "') + len('pub const METRICS_SNAPSHOT: &str = "')
end = src.index('";', start)
open(sys.argv[1], "w").write(src[start:end].replace('\\"', '"') + ";\n")
PY

# add N: N more delivery rows.
add() {
    "${psql_db[@]}" -c "INSERT INTO webhook_events
        (received_at, message_type, vapi_call_id, org_id, direction, outcome, status_code,
         duration_ms, error_class)
      SELECT now() - (g % 86400) * interval '30 seconds',
             (ARRAY['status-update', 'end-of-call-report', 'tool-calls'])[1 + g % 3],
             'call-' || g, '6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40', 'inbound',
             (ARRAY['recorded', 'duplicate', 'agent_not_found'])[1 + g % 3],
             (ARRAY[200, 200, 500])[1 + g % 3], random() * 50,
             CASE WHEN g % 3 = 2 THEN 'agent_lookup' END
      FROM generate_series(1, $1) g" -c "ANALYZE webhook_events"
}

# median: the median of ROUNDS scrapes, in ms.
median() {
    local i start end
    for ((i = 0; i < rounds; i++)); do
        start=$(date +%s%N)
        "${psql_db[@]}" -At -f "$statement" >/dev/null
        end=$(date +%s%N)
        echo $(((end - start) / 1000000))
    done | sort -n | sed -n "$(((rounds + 1) / 2))p"
}

add "$small"
small_ms=$(median)
add $((large - small))
large_ms=$(median)
echo "metrics_scale: ${small} rows: ${small_ms} ms; ${large} rows: ${large_ms} ms (median of ${rounds} scrapes each)"
