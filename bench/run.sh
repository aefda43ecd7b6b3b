#!/usr/bin/env bash
# Measures vapi-edge on this machine, in one command:
#
#   bash bench/run.sh
#   CONCURRENCY="1 8" REQUESTS=300 WARMUP=50 bash bench/run.sh
#
# It builds the component (wasm32-wasip2, release) and vapi-edge-host plus
# vapi-edge-bench (release), prints the size of the .wasm, creates a fresh
# database vapi_edge_bench_<pid> (dropped on exit), migrates it, and starts
# `vapi-edge-host up` on 127.0.0.1:<free port> with the key-value store in
# Redis. It reports the host's start-up time (process start to its `Serving`
# line), then, for each concurrency in CONCURRENCY (default "1 8 32"), runs
# vapi-edge-bench in `unique` mode (every request a new call: verify, parse,
# claim, record in PostgreSQL) and in `duplicate` mode (the same event again:
# the key-value fast path), REQUESTS requests each (default 2000) after WARMUP
# warm-up requests (default 200). Ends with a summary table; exits non-zero
# when any run had an error or a failed database check.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth, psql
# installed) and Redis on 127.0.0.1:6379. Traffic goes to loopback only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

say() { printf 'bench: %s\n' "$*"; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vapi-edge-target}"
concurrencies=${CONCURRENCY:-1 8 32}
requests=${REQUESTS:-2000}
warmup=${WARMUP:-200}
pg_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
redis_url='redis://127.0.0.1:6379'

[[ $requests =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive integer, not '${requests}'"
[[ $warmup =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, not '${warmup}'"
read -r -a concurrency_list <<<"$concurrencies"
((${#concurrency_list[@]} > 0)) || die "CONCURRENCY is empty"
for c in "${concurrency_list[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must list positive integers, not '${c}'"
done
command -v psql >/dev/null 2>&1 || die "psql is not installed"

# Microseconds since the epoch, without forking (any locale's decimal mark).
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    echo "$((10#$t))"
}

# --- build ------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    rustup -q target add wasm32-wasip2
fi
say "building the component: cargo build --target wasm32-wasip2 --release -p vapi-edge"
cargo build --target wasm32-wasip2 --release -p vapi-edge
say "building the host and the bench: cargo build --release -p vapi-edge-host --bins"
cargo build --release -p vapi-edge-host --bins

wasm="${CARGO_TARGET_DIR}/wasm32-wasip2/release/vapi_edge.wasm"
host_bin="${CARGO_TARGET_DIR}/release/vapi-edge-host"
bench_bin="${CARGO_TARGET_DIR}/release/vapi-edge-bench"
[[ -f $wasm ]] || die "${wasm} was not built"
[[ -x $host_bin ]] || die "${host_bin} was not built"
[[ -x $bench_bin ]] || die "${bench_bin} was not built"
wasm_bytes=$(stat -c %s "$wasm")
wasm_kib=$(awk -v b="$wasm_bytes" 'BEGIN { printf "%.1f", b / 1024 }')
say "vapi_edge.wasm (release): ${wasm_bytes} bytes = ${wasm_kib} KiB (${wasm})"

# --- database, configuration, clean-up ---------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vapi-edge-bench.XXXXXX")
db="vapi_edge_bench_$$"
db_created=0
host_pid=''
drain_pid=''

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $host_pid ]] && kill -0 "$host_pid" 2>/dev/null; then
        kill -TERM "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    if [[ -n $drain_pid ]]; then
        wait "$drain_pid" 2>/dev/null || true
    fi
    if ((db_created)); then
        "${pg_admin[@]}" -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" </dev/null ||
            printf 'bench: warning: could not drop database %s\n' "$db" >&2
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${pg_admin[@]}" -c "CREATE DATABASE ${db}" </dev/null ||
    die "cannot create database ${db} (is PostgreSQL on 127.0.0.1:5432 with trust auth?)"
db_created=1
pg_url="postgres://postgres@127.0.0.1:5432/${db}"
say "database ${db} created"
"$host_bin" migrate --pg-url "$pg_url" --migrations "${root}/migrations"

printf '[key_value_store.default]\ntype = "redis"\nurl = "%s"\n' "$redis_url" \
    >"${tmp}/runtime-config.toml"
# The repository's manifest, with `source` pointed at the fresh build.
manifest_source='source = "target/wasm32-wasip2/release/vapi_edge.wasm"'
grep -qxF "$manifest_source" spin.toml || die "spin.toml has no line: ${manifest_source}"
awk -v from="$manifest_source" -v to="source = \"${wasm}\"" \
    '$0 == from { print to; next } { print }' spin.toml >"${tmp}/spin.toml"
hmac_secret="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"

# --- start the host -----------------------------------------------------------
mkfifo "${tmp}/host.out"
host_log="${tmp}/host.log"
: >"$host_log"
started_us=$(now_us)
env -i PATH="$PATH" HOME="${HOME:-/root}" \
    SPIN_VARIABLE_VAPI_HMAC_SECRET="$hmac_secret" \
    SPIN_VARIABLE_PG_URL="$pg_url" \
    "$host_bin" up --from "${tmp}/spin.toml" --listen 127.0.0.1:0 \
    --runtime-config-file "${tmp}/runtime-config.toml" \
    >"${tmp}/host.out" 2>"${tmp}/host.err" &
host_pid=$!
exec {host_fd}<"${tmp}/host.out"
addr=''
read_deadline=$((SECONDS + 60))
for ((line_no = 0; line_no < 1000 && SECONDS < read_deadline; line_no++)); do
    IFS= read -r -t 60 -u "$host_fd" line || break
    printf '%s\n' "$line" >>"$host_log"
    if [[ $line == 'Serving http://'* ]]; then
        addr=${line#Serving http://}
        break
    fi
done
ready_us=$(now_us)
# Keep reading the host's output (its request logs) so it never blocks.
cat <&"$host_fd" >>"$host_log" &
drain_pid=$!
exec {host_fd}<&-
if [[ -z $addr ]]; then
    cat "$host_log" "${tmp}/host.err" >&2 || true
    die "the host did not print its Serving line within 60 s"
fi
startup_ms=$(awk -v us="$((ready_us - started_us))" 'BEGIN { printf "%.1f", us / 1000 }')
compile_ms=$(sed -n 's/.*"compile_ms":"\{0,1\}\([0-9][0-9]*\).*/\1/p;T;q' "$host_log" "${tmp}/host.err")
say "host serving on http://${addr} (pid ${host_pid})"
say "host start-up: ${startup_ms} ms from process start to the Serving line (component compile ${compile_ms:-?} ms)"

# --- runs ----------------------------------------------------------------------
json_field() { # json_field JSON NAME: a number or string value of a flat object
    if [[ $1 =~ \"$2\":\"?([^,\"}]*) ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    else
        printf '?'
    fi
}

rows=()
failures=0
run_index=0
for c in "${concurrency_list[@]}"; do
    for mode in unique duplicate; do
        run_index=$((run_index + 1))
        out="${tmp}/run-${run_index}.txt"
        echo
        say "run ${run_index}: mode ${mode}, concurrency ${c}, ${requests} requests after ${warmup} warm-up"
        kill -0 "$host_pid" 2>/dev/null || {
            tail -n 20 "$host_log" "${tmp}/host.err" || true
            die "the host has exited"
        }
        status=ok
        if ! "$bench_bin" --url "http://${addr}" --pg-url "$pg_url" \
            --hmac-secret "$hmac_secret" --mode "$mode" --concurrency "$c" \
            --requests "$requests" --warmup "$warmup" 2>&1 | tee "$out"; then
            status=FAIL
            failures=$((failures + 1))
            say "last host log lines:"
            tail -n 20 "$host_log" "${tmp}/host.err" || true
        fi
        json=$(grep -E '^\{"' "$out" | tail -n 1 || true)
        rows+=("$(printf '%-9s %5s %9s %7s %10s %9s %9s %9s %9s  %s' "$mode" "$c" \
            "$(json_field "$json" requests)" "$(json_field "$json" errors)" \
            "$(json_field "$json" throughput_rps)" "$(json_field "$json" p50_ms)" \
            "$(json_field "$json" p90_ms)" "$(json_field "$json" p99_ms)" \
            "$(json_field "$json" max_ms)" "$status")")
    done
done

# --- summary -------------------------------------------------------------------
echo
say "summary ($(nproc) cores; $(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo))"
say "  vapi_edge.wasm: ${wasm_bytes} bytes = ${wasm_kib} KiB"
say "  host start-up: ${startup_ms} ms (component compile ${compile_ms:-?} ms)"
say "  key-value store: Redis (${redis_url}); database ${db}; ${requests} requests per run after ${warmup} warm-up"
printf '%-9s %5s %9s %7s %10s %9s %9s %9s %9s  %s\n' mode conc requests errors 'req/s' \
    'p50 ms' 'p90 ms' 'p99 ms' 'max ms' status
for row in "${rows[@]}"; do
    printf '%s\n' "$row"
done
if ((failures > 0)); then
    die "${failures} run(s) failed"
fi
