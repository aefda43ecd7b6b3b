#!/usr/bin/env bash
# Two builds of the component (or one build with two environments) under the
# real Spin CLI at the same time, measured in alternating chunks, so that a
# machine that speeds up or slows down during the run moves both alike:
#
#   A=old.wasm B=new.wasm bash bench/spin_ab.sh
#   A=x.wasm B=x.wasm B_ENV="RUST_BACKTRACE=1" MODE=unique bash bench/spin_ab.sh
#
# For each of ROUNDS rounds (default 6) it sends REQUESTS (default 1000)
# signed webhooks in MODE (unique or duplicate, default duplicate) at
# CONCURRENCY (default 8) to A's Spin, then to B's, with vapi-edge-bench
# reading the CPU of each `spin trigger` process from /proc. Prints the median
# server and PostgreSQL CPU per request of each, its req/s, p50 and p99, and
# the per-round ratio B / A of server CPU with its median. Each Spin gets its
# own fresh database
# (dropped on exit) and the same Redis; A_ENV / B_ENV are extra environment
# assignments for that Spin only.
#
# Needs a built vapi-edge-host (for `migrate`) and vapi-edge-bench: BIN_DIR
# holding both, else the `release` builds in CARGO_TARGET_DIR; the Spin CLI
# as bench/run.sh finds it; PostgreSQL and Redis as bench/run.sh needs them.
set -euo pipefail

# A and B as given, relative to where the command was run.
a_wasm=$(realpath -e -- "${A:-/nonexistent}" 2>/dev/null || true)
b_wasm=$(realpath -e -- "${B:-/nonexistent}" 2>/dev/null || true)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bench_prefix=spin_ab
# shellcheck source=bench/common.sh
source bench/common.sh

[[ -f $a_wasm && -f $b_wasm ]] || die "A and B must name two .wasm files (they may be the same one)"
mode=${MODE:-duplicate}
rounds=${ROUNDS:-6}
requests=${REQUESTS:-1000}
concurrency=${CONCURRENCY:-8}
[[ $mode == unique || $mode == duplicate ]] || die "MODE must be unique or duplicate"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vapi-edge-target}"
bins=${BIN_DIR:-${CARGO_TARGET_DIR}/release}
host_bin="${bins}/vapi-edge-host"
bench_bin="${bins}/vapi-edge-bench"
[[ -x $host_bin && -x $bench_bin ]] ||
    die "no vapi-edge-host and vapi-edge-bench in ${bins} (cargo build --release -p vapi-edge-host -p vapi-edge-bench, or BIN_DIR)"
spin_bin=$(find_spin)
[[ -n $spin_bin ]] || die "no Spin CLI (SPIN_BIN, ../shared/bin/spin, spin on PATH)"

psql_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vapi-edge-spin-ab.XXXXXX")
pids=()
dbs=()
cleanup() {
    local pid db
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${dbs[@]}"; do "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

secret="ab-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
manifest_source='source = "target/wasm32-wasip2/component/vapi_edge.wasm"'
declare -A url pg trigger

# start NAME WASM ENV: a migrated database and a Spin serving WASM on a free port.
start() {
    local name=$1 wasm=$2 env_extra=$3 dir="${tmp}/$1" db="vapi_edge_ab_$$_$1" pid line i
    mkdir -p "${dir}/home"
    "${psql_admin[@]}" -c "CREATE DATABASE ${db}"
    dbs+=("$db")
    pg[$name]="postgres://postgres@127.0.0.1:5432/${db}?sslmode=disable"
    "$host_bin" migrate --pg-url "${pg[$name]}" --migrations "${root}/migrations" >/dev/null
    printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:6379"\n' >"${dir}/rc.toml"
    awk -v from="$manifest_source" -v to="source = \"${wasm}\"" \
        '$0 == from { print to; next } { print }' spin.toml >"${dir}/spin.toml"
    # shellcheck disable=SC2086 # env_extra is a list of assignments
    env -i -C "$dir" PATH="$PATH" HOME="${dir}/home" SPIN_VARIABLE_VAPI_HMAC_SECRET="$secret" \
        SPIN_VARIABLE_PG_URL="${pg[$name]}" $env_extra \
        "$spin_bin" up --from "${dir}/spin.toml" --listen 127.0.0.1:0 \
        --runtime-config-file "${dir}/rc.toml" >"${dir}/out" 2>"${dir}/err" &
    pid=$!
    pids+=("$pid")
    for ((i = 0; i < 600; i++)); do
        line=$(grep -m1 '^Serving http://' "${dir}/out" || true)
        [[ -n $line ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "${dir}/err" >&2; die "Spin for ${name} exited"; }
        sleep 0.1
    done
    [[ -n $line ]] || die "Spin for ${name} did not print its Serving line within 60 s"
    url[$name]="http://${line#Serving http://}"
    trigger[$name]=$(pgrep -P "$pid" | head -n 1 || true)
    [[ -n ${trigger[$name]} ]] || die "no 'spin trigger' process under Spin ${pid}"
    say "${name}: ${wasm}${env_extra:+ with ${env_extra}} on ${url[$name]} (trigger pid ${trigger[$name]})"
}

# run NAME REQUESTS WARMUP [--server-pid PID]: prints the driver's JSON summary line.
run() {
    local name=$1 n=$2 warmup=$3
    shift 3
    "$bench_bin" --url "${url[$name]}" --pg-url "${pg[$name]}" --hmac-secret "$secret" \
        --mode "$mode" --concurrency "$concurrency" --requests "$n" --warmup "$warmup" "$@" |
        grep -E '^\{"' | tail -n 1
}

start a "$a_wasm" "${A_ENV:-}"
start b "$b_wasm" "${B_ENV:-}"
say "$("$spin_bin" --version | head -n 1); mode ${mode}, concurrency ${concurrency}, ${rounds} rounds of ${requests} requests each; RUST_BACKTRACE of this shell is not passed on"
for name in a b; do run "$name" 300 100 >/dev/null; done # warm both: pools, caches

results="${tmp}/results"
for ((r = 1; r <= rounds; r++)); do
    for name in a b; do
        printf '%s %s\n' "$name" "$(run "$name" "$requests" 50 --server-pid "${trigger[$name]}")" >>"$results"
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = {"a": [], "b": []}
for line in open(sys.argv[1]):
    name, summary = line.split(" ", 1)
    runs[name].append(json.loads(summary))
for name, rows in runs.items():
    server = [r["cpu_us_server"] for r in rows]
    print(f"spin_ab: {name}: server CPU µs per request, median {statistics.median(server):.0f} "
          f"(range {min(server):.0f}-{max(server):.0f}); PostgreSQL "
          f"{statistics.median(r['cpu_us_postgres'] for r in rows):.0f}; req/s "
          f"{statistics.median(r['throughput_rps'] for r in rows):.0f}; p50 "
          f"{statistics.median(r['p50_ms'] for r in rows):.2f} ms, p99 "
          f"{statistics.median(r['p99_ms'] for r in rows):.2f} ms; errors "
          f"{sum(r['errors'] for r in rows)}")
ratios = [b["cpu_us_server"] / a["cpu_us_server"] for a, b in zip(runs["a"], runs["b"])]
print("spin_ab: b / a server CPU per round: " + " ".join(f"{x:.2f}" for x in ratios)
      + f"; median {statistics.median(ratios):.2f}")
if any(r["errors"] for rows in runs.values() for r in rows):
    sys.exit(1)
PY
