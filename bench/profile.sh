#!/usr/bin/env bash
# Profiles vapi-edge-host serving one kind of request, and says where the cost goes:
#
#   TOOL=callgrind bash bench/profile.sh duplicate 500   # instructions per request (exact)
#   TOOL=perf bash bench/profile.sh unique 1500          # CPU µs per request, kernel included
#   HOST_ARGS="--instance-pool 0" TOOL=perf bash bench/profile.sh duplicate 1500
#   OPT_LEVEL=s HOST_ARGS="--instance-pool 0" bash bench/profile.sh duplicate 500
#                                  # issue 6's starting point: opt-level "s", no pool
#   CONCURRENCY=8 TOOL=perf bash bench/profile.sh duplicate 8000   # under load
#   WASM=/saved/vapi_edge.wasm bash bench/profile.sh duplicate 500 # another component
#   TOP=30 bash bench/profile.sh unique 300   # also the component's 30 costliest functions
#
# It builds the host and the component with symbols (cargo profile `profiling`:
# dist (as deployed) plus strip=false and line tables, in the shared target dir; the first
# build takes as long as a dist build; OPT_LEVEL overrides the
# profile's opt-level, in its own profile `profiling-<level>`), creates a fresh database (dropped on
# exit), starts `vapi-edge-host up` with VAPI_EDGE_PERF_MAP=1 (wasmtime writes
# /tmp/perf-PID.map, naming the component's compiled functions) and a Redis
# key-value store, sends 200 warm-up requests with vapi-edge-bench, then MODE
# (unique or duplicate) requests, N of them at concurrency CONCURRENCY (default 1):
#
# - callgrind: the host runs under valgrind; counters are zeroed after the
#   warm-up and dumped after the N requests (start-up excluded);
# - perf: `perf record -e cpu-clock -F 4000 --call-graph dwarf` on the host
#   for the N requests.
#
# bench/profile_report.py then prints the breakdown. Needs PostgreSQL and Redis
# as bench/run.sh does, and valgrind or perf.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
mode=${1:-duplicate}
requests=${2:-500}
tool=${TOOL:-callgrind}
concurrency=${CONCURRENCY:-1}
[[ $concurrency =~ ^[1-9][0-9]*$ ]] || { echo "CONCURRENCY must be a positive integer" >&2; exit 2; }
[[ $mode == unique || $mode == duplicate ]] || { echo "MODE must be unique or duplicate" >&2; exit 2; }
[[ $requests =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer" >&2; exit 2; }
[[ $tool == callgrind || $tool == perf ]] || { echo "TOOL must be callgrind or perf" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vapi-edge-target}"
name=profiling${OPT_LEVEL:+-${OPT_LEVEL}}
profile=(--profile "$name" --config "profile.${name}.inherits=\"dist\""
    --config "profile.${name}.strip=false")
# The component's own profile, unstripped: `component` (LTO) as shipped.
wasm_profile=(--profile "${name}-wasm" --config "profile.${name}-wasm.inherits=\"component\""
    --config "profile.${name}-wasm.strip=false")
if [[ -n ${OPT_LEVEL:-} ]]; then
    [[ $OPT_LEVEL =~ ^[0-3sz]$ ]] || { echo "OPT_LEVEL must be 0-3, s or z" >&2; exit 2; }
    level=$OPT_LEVEL
    [[ $level =~ ^[0-3]$ ]] || level="\"${level}\""
    profile+=(--config "profile.${name}.opt-level=${level}")
    wasm_profile+=(--config "profile.${name}-wasm.opt-level=${level}")
fi
cargo build "${profile[@]}" --config "profile.${name}.debug=\"line-tables-only\"" \
    -p vapi-edge-host -p vapi-edge-bench --bin vapi-edge-host --bin vapi-edge-bench
cargo build "${wasm_profile[@]}" --target wasm32-wasip2 -p vapi-edge
host_bin="${CARGO_TARGET_DIR}/${name}/vapi-edge-host"
bench_bin="${CARGO_TARGET_DIR}/${name}/vapi-edge-bench"
wasm="${WASM:-${CARGO_TARGET_DIR}/wasm32-wasip2/${name}-wasm/vapi_edge.wasm}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vapi-edge-profile.XXXXXX")
db="vapi_edge_profile_$$"
pg_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
host_pid=''
cleanup() {
    local rc=$?
    [[ -n $host_pid ]] && kill -TERM "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null
    "${pg_admin[@]}" -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" </dev/null || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
"${pg_admin[@]}" -c "CREATE DATABASE ${db}" </dev/null
pg_url="postgres://postgres@127.0.0.1:5432/${db}?sslmode=disable"
"$host_bin" migrate --pg-url "$pg_url" --migrations "${root}/migrations" >/dev/null
printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:6379"\n' >"${tmp}/runtime-config.toml"
awk -v to="source = \"${wasm}\"" '/^source = "target\/wasm32-wasip2\/component\/vapi_edge.wasm"$/ { print to; next } { print }' \
    spin.toml >"${tmp}/spin.toml"
secret="profile-$$"

runner=()
if [[ $tool == callgrind ]]; then
    runner=(valgrind --tool=callgrind --callgrind-out-file="${tmp}/callgrind.out")
fi
# shellcheck disable=SC2086 # HOST_ARGS is a list of flags
env -i PATH="$PATH" HOME="${HOME:-/root}" VAPI_EDGE_PERF_MAP=1 \
    SPIN_VARIABLE_VAPI_HMAC_SECRET="$secret" SPIN_VARIABLE_PG_URL="$pg_url" \
    "${runner[@]}" "$host_bin" up --from "${tmp}/spin.toml" --listen 127.0.0.1:0 \
    --runtime-config-file "${tmp}/runtime-config.toml" ${HOST_ARGS:-} >"${tmp}/out" 2>"${tmp}/err" &
host_pid=$!
for _ in $(seq 1 1200); do
    grep -q '^Serving' "${tmp}/out" 2>/dev/null && break
    sleep 0.25
done
addr=$(sed -n 's/^Serving http:\/\///p' "${tmp}/out")
[[ -n $addr ]] || { cat "${tmp}/err" >&2; exit 1; }
drive() {
    "$bench_bin" --url "http://${addr}" --pg-url "$pg_url" --hmac-secret "$secret" \
        --mode "$mode" --concurrency "$concurrency" --requests "$1" --warmup 0 --timeout-ms 60000
}
drive 200 >/dev/null

if [[ $tool == callgrind ]]; then
    callgrind_control -z "$host_pid" >/dev/null 2>&1
    drive "$requests" | tail -n 1
    callgrind_control -d "$host_pid" >/dev/null 2>&1
    sleep 1
    python3 bench/profile_report.py callgrind "${tmp}/callgrind.out.1" "$requests" "/tmp/perf-${host_pid}.map"
    # KEEP=FILE keeps the profile (callgrind_annotate --inclusive=yes FILE).
    # The component's function names are in KEEP.map (wasmtime's perf map).
    [[ -z ${KEEP:-} ]] || cp "${tmp}/callgrind.out.1" "$KEEP"
    [[ -z ${KEEP:-} ]] || cp "/tmp/perf-${host_pid}.map" "${KEEP}.map"
else
    perf record -q -e cpu-clock -F 4000 --call-graph dwarf,16384 -p "$host_pid" -o "${tmp}/perf.data" &
    perf_pid=$!
    sleep 0.5
    drive "$requests" | tail -n 1
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf script -i "${tmp}/perf.data" -F tid,ip,sym,dso 2>/dev/null >"${tmp}/perf.txt"
    python3 bench/profile_report.py perf "${tmp}/perf.txt" "$requests" 4000
    # KEEP=FILE keeps the samples (`perf script` text).
    [[ -z ${KEEP:-} ]] || cp "${tmp}/perf.txt" "$KEEP"
fi
rm -f "/tmp/perf-${host_pid}.map"
