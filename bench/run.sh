#!/usr/bin/env bash
# Measures vapi-edge on this machine, in one command:
#
#   bash bench/run.sh
#   CONCURRENCY="1 8" REQUESTS=300 WARMUP=50 bash bench/run.sh
#   NATIVE=0 bash bench/run.sh      # the .wasm only, without the native baseline
#   SPIN=0 FLOOR=0 bash bench/run.sh   # without the Spin runs and the PostgreSQL floor
#   BIN_DIR=/saved/build bash bench/run.sh   # compare saved builds: no build step
#   HOST_ARGS="--instance-pool 0" bash bench/run.sh   # extra flags for `vapi-edge-host up`
#   TENANT=acme NATIVE=0 PEER=0 bash bench/run.sh   # to a tenant's URL, /webhooks/vapi/acme
#   PEER=0 bash bench/run.sh        # without the Node peer
#
# With TENANT, the run creates that tenant (`vapi-edge-host tenant set`, its
# HMAC secret sealed with a fresh tenant_secrets_key), seeds the agent in its
# mappings and sends every webhook to its URL: the tenant's hot path, to
# compare with a run without TENANT (README, "Tenants"). The native baseline
# has no tenants (NATIVE=0).
#
# BIN_DIR names a folder holding vapi-edge-host, vapi-edge-bench,
# vapi-edge-native, vapi-edge-sql and vapi_edge.wasm (WASM=path overrides the
# last), so two builds can be measured alternately on the same .wasm, or two
# .wasm files on the same build.
#
# It builds the component (wasm32-wasip2, profile component) and vapi-edge-host plus
# vapi-edge-bench (profile dist: as deployed), prints the size of the .wasm, creates a fresh
# database vapi_edge_bench_<pid> (dropped on exit), migrates it, and starts
# `vapi-edge-host up` on 127.0.0.1:<free port> with the key-value store in
# Redis. It reports the host's start-up time (process start to its `Serving`
# line), then, for each concurrency in CONCURRENCY (default "1 8 32"), runs
# vapi-edge-bench in `unique` mode (every request a new call: verify, parse,
# claim, record in PostgreSQL) and in `duplicate` mode (the same event again:
# the key-value fast path), REQUESTS requests each (default 2000) after WARMUP
# warm-up requests (default 200).
#
# Then (unless NATIVE=0) it stops the host and starts vapi-edge-native, the
# benchmark's native baseline (bench/src/bin/vapi-edge-native.rs: the same
# handling logic and SQL compiled natively into a plain HTTP server), against
# the same database and Redis, and runs the same modes at the same
# concurrencies. Ends with each server's peak resident memory (VmHWM), a
# summary table of every run and, with the baseline, the ratio wasm / native
# for throughput, p50 and p99; exits non-zero when any run had an error or a
# failed database check.
#
# Then (unless PEER=0) the Node peer (bench/node-peer/server.js: the seed's
# TypeScript webhook handler as a Node 20 / Express / Zod / pg / redis service,
# one process, a pool of 16; its packages installed with `npm ci` on first
# use), against the same database and Redis, the same runs. Every run prints
# the machine's CPU per request (every core's busy time from /proc/stat over
# the run, divided by requests: server, PostgreSQL, Redis, the driver and the
# rest together), and the summary sets each server beside the peer.
#
# Then (unless SPIN=0) the same .wasm under the real Spin CLI, when one is
# found: SPIN_BIN, else ../shared/bin/spin beside the repository, else spin on
# PATH; same manifest, variables, Redis and database, the same runs, and the
# ratio Spin / vapi-edge-host. Then (unless FLOOR=0) the PostgreSQL floor on
# the same database (bench/pg_floor.sh: pgbench running the component's own
# two statements per unique event, FLOOR_S seconds per concurrency, default
# 10), and the ratio of each server's unique-event throughput to it.
#
# It prints the RUST_BACKTRACE it ran with: it is set in this environment, and
# an error value created with it set captures a backtrace, so measure both ways
# (BENCHMARKS.md: no difference in vapi-edge-host's request path so far).
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth, psql and
# pgbench installed) and Redis on 127.0.0.1:6379. Traffic goes to loopback only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bench_prefix=bench
# shellcheck source=bench/common.sh
source bench/common.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vapi-edge-target}"
concurrencies=${CONCURRENCY:-1 8 32}
requests=${REQUESTS:-2000}
warmup=${WARMUP:-200}
native=${NATIVE:-1}
use_spin=${SPIN:-1}
floor=${FLOOR:-1}
peer=${PEER:-1}
floor_s=${FLOOR_S:-10}
tenant=${TENANT:-}
pg_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres)
redis_url='redis://127.0.0.1:6379'

[[ $requests =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive integer, not '${requests}'"
[[ $warmup =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, not '${warmup}'"
[[ $native == 0 || $native == 1 ]] || die "NATIVE must be 0 or 1, not '${native}'"
[[ $use_spin == 0 || $use_spin == 1 ]] || die "SPIN must be 0 or 1, not '${use_spin}'"
[[ $floor == 0 || $floor == 1 ]] || die "FLOOR must be 0 or 1, not '${floor}'"
[[ $peer == 0 || $peer == 1 ]] || die "PEER must be 0 or 1, not '${peer}'"
[[ -z $tenant || $peer == 0 ]] || die "TENANT needs PEER=0: the Node peer has no tenants"
[[ -z $tenant || $tenant =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "TENANT must be a tenant id, not '${tenant}'"
[[ -z $tenant || $native == 0 ]] || die "TENANT needs NATIVE=0: the native baseline has no tenants"
spin_bin=''
if ((use_spin)); then
    spin_bin=$(find_spin)
fi
read -r -a concurrency_list <<<"$concurrencies"
((${#concurrency_list[@]} > 0)) || die "CONCURRENCY is empty"
for c in "${concurrency_list[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must list positive integers, not '${c}'"
done
command -v psql >/dev/null 2>&1 || die "psql is not installed"
if ((peer)); then
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
        die "the Node peer needs node and npm (Node.js 20+); PEER=0 leaves it out"
    if [[ ! -d bench/node-peer/node_modules ]]; then
        say "installing the Node peer's packages: npm ci (bench/node-peer)"
        (cd bench/node-peer && npm ci --no-audit --no-fund --loglevel=error) ||
            die "npm ci failed in bench/node-peer"
    fi
fi

# Microseconds since the epoch, without forking (any locale's decimal mark).
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    echo "$((10#$t))"
}

# --- build ------------------------------------------------------------------
if [[ -n ${BIN_DIR:-} ]]; then
    say "using the saved build in ${BIN_DIR} (no build step)"
    wasm="${WASM:-${BIN_DIR}/vapi_edge.wasm}"
    host_bin="${BIN_DIR}/vapi-edge-host"
    bench_bin="${BIN_DIR}/vapi-edge-bench"
    native_bin="${BIN_DIR}/vapi-edge-native"
    sql_bin="${BIN_DIR}/vapi-edge-sql"
else
    if command -v rustup >/dev/null 2>&1; then
        rustup -q target add wasm32-wasip2
    fi
    say "building the component: cargo build --target wasm32-wasip2 --profile component -p vapi-edge"
    cargo build --target wasm32-wasip2 --profile component -p vapi-edge
    say "building the host, the bench and the native baseline: cargo build --profile dist -p vapi-edge-host -p vapi-edge-bench"
    cargo build --profile dist -p vapi-edge-host -p vapi-edge-bench
    wasm="${WASM:-${CARGO_TARGET_DIR}/wasm32-wasip2/component/vapi_edge.wasm}"
    host_bin="${CARGO_TARGET_DIR}/dist/vapi-edge-host"
    bench_bin="${CARGO_TARGET_DIR}/dist/vapi-edge-bench"
    native_bin="${CARGO_TARGET_DIR}/dist/vapi-edge-native"
    sql_bin="${CARGO_TARGET_DIR}/dist/vapi-edge-sql"
fi
[[ -f $wasm ]] || die "${wasm} was not built"
[[ -x $host_bin ]] || die "${host_bin} was not built"
[[ -x $bench_bin ]] || die "${bench_bin} was not built"
((native == 0)) || [[ -x $native_bin ]] || die "${native_bin} was not built"
((floor == 0)) || [[ -x $sql_bin ]] || die "${sql_bin} was not built"
wasm_bytes=$(stat -L -c %s "$wasm")
wasm_kib=$(awk -v b="$wasm_bytes" 'BEGIN { printf "%.1f", b / 1024 }')
say "vapi_edge.wasm (component): ${wasm_bytes} bytes = ${wasm_kib} KiB (${wasm})"

# --- database, configuration, clean-up ---------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vapi-edge-bench.XXXXXX")
db="vapi_edge_bench_$$"
db_created=0
server_pids=()
drain_pids=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${server_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${drain_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
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
pg_url="postgres://postgres@127.0.0.1:5432/${db}?sslmode=disable"
say "database ${db} created"
"$host_bin" migrate --pg-url "$pg_url" --migrations "${root}/migrations"

printf '[key_value_store.default]\ntype = "redis"\nurl = "%s"\n' "$redis_url" \
    >"${tmp}/runtime-config.toml"
# The repository's manifest, with `source` pointed at the fresh build.
manifest_source='source = "target/wasm32-wasip2/component/vapi_edge.wasm"'
grep -qxF "$manifest_source" spin.toml || die "spin.toml has no line: ${manifest_source}"
awk -v from="$manifest_source" -v to="source = \"${wasm}\"" \
    '$0 == from { print to; next } { print }' spin.toml >"${tmp}/spin.toml"
hmac_secret="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
tenant_key="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
bench_path=/webhooks/vapi
if [[ -n $tenant ]]; then
    printf '%s\n' "$hmac_secret" | env -i PATH="$PATH" SPIN_VARIABLE_TENANT_SECRETS_KEY="$tenant_key" \
        "$host_bin" tenant set --pg-url "$pg_url" "$tenant" vapi_hmac_secret=- >/dev/null
    bench_path="/webhooks/vapi/${tenant}"
    say "tenant ${tenant} created: every webhook goes to ${bench_path}"
fi

# --- servers -------------------------------------------------------------------
# start_server NAME COMMAND...: runs COMMAND with its stdout drained into
# ${tmp}/NAME.log and its stderr in ${tmp}/NAME.err, and waits up to 60 s for
# its `Serving http://ADDR` line. Sets server_pid, server_drain_pid,
# server_addr and server_startup_ms; registers both pids for clean-up.
start_server() {
    local name=$1
    shift
    local out="${tmp}/${name}.out" log="${tmp}/${name}.log" err="${tmp}/${name}.err"
    local fd line line_no started_us ready_us read_deadline
    mkfifo "$out"
    : >"$log"
    started_us=$(now_us)
    "$@" >"$out" 2>"$err" &
    server_pid=$!
    server_pids+=("$server_pid")
    exec {fd}<"$out"
    server_addr=''
    read_deadline=$((SECONDS + 60))
    for ((line_no = 0; line_no < 1000 && SECONDS < read_deadline; line_no++)); do
        IFS= read -r -t 60 -u "$fd" line || break
        printf '%s\n' "$line" >>"$log"
        if [[ $line == 'Serving http://'* ]]; then
            server_addr=${line#Serving http://}
            break
        fi
    done
    ready_us=$(now_us)
    # Keep reading the server's output (its request logs) so it never blocks.
    cat <&"$fd" >>"$log" &
    server_drain_pid=$!
    drain_pids+=("$server_drain_pid")
    exec {fd}<&-
    if [[ -z $server_addr ]]; then
        cat "$log" "$err" >&2 || true
        die "${name} did not print its Serving line within 60 s"
    fi
    server_startup_ms=$(awk -v us="$((ready_us - started_us))" 'BEGIN { printf "%.1f", us / 1000 }')
}

# stop_server PID DRAIN_PID: stops a server started by start_server.
stop_server() {
    if kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
}

# peak_rss PID: the process's peak resident memory so far (VmHWM), in MiB.
peak_rss() {
    awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024; found = 1 } END { if (!found) printf "?" }' \
        "/proc/$1/status" 2>/dev/null || true
}

# --- runs ----------------------------------------------------------------------
json_field() { # json_field JSON NAME: a number or string value of a flat object
    if [[ $1 =~ \"$2\":\"?([^,\"}]*) ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    else
        printf '?'
    fi
}

row_format='%-7s %-9s %5s %9s %7s %10s %9s %9s %9s %9s  %s'
rows=()
declare -A results=() # "server mode concurrency" -> the driver's JSON summary
failures=0
run_index=0

declare -A sessions=() # "server mode concurrency" -> PostgreSQL sessions opened meanwhile
# pg_sessions: sessions ever opened on the run's database (pg_stat_database;
# the statistics are flushed when a session ends, or within a second).
pg_sessions() {
    sleep 1.1
    "${pg_admin[@]}" -At -c "SELECT sessions FROM pg_stat_database WHERE datname = '${db}'" </dev/null
}

# run_all SERVER ADDR PID NAME: both modes at every concurrency against one server.
run_all() {
    local server=$1 addr=$2 pid=$3 name=$4 c mode out status json
    for c in "${concurrency_list[@]}"; do
        for mode in unique duplicate; do
            run_index=$((run_index + 1))
            out="${tmp}/run-${run_index}.txt"
            echo
            say "run ${run_index}: ${server}, mode ${mode}, concurrency ${c}, ${requests} requests after ${warmup} warm-up"
            kill -0 "$pid" 2>/dev/null || {
                tail -n 20 "${tmp}/${name}.log" "${tmp}/${name}.err" || true
                die "${name} has exited"
            }
            sessions_before=$(pg_sessions)
            status=ok
            if ! "$bench_bin" --url "http://${addr}" --pg-url "$pg_url" \
                --hmac-secret "$hmac_secret" --mode "$mode" --concurrency "$c" \
                --path "$bench_path" --tenant "$tenant" \
                --requests "$requests" --warmup "$warmup" --server-pid "$pid" 2>&1 | tee "$out"; then
                status=FAIL
                failures=$((failures + 1))
                say "last ${name} log lines:"
                tail -n 20 "${tmp}/${name}.log" "${tmp}/${name}.err" || true
            fi
            json=$(grep -E '^\{"' "$out" | tail -n 1 || true)
            results["${server} ${mode} ${c}"]=$json
            sessions["${server} ${mode} ${c}"]=$(($(pg_sessions) - sessions_before))
            # shellcheck disable=SC2059 # the format is a variable on purpose
            rows+=("$(printf "$row_format" "$server" "$mode" "$c" \
                "$(json_field "$json" requests)" "$(json_field "$json" errors)" \
                "$(json_field "$json" throughput_rps)" "$(json_field "$json" p50_ms)" \
                "$(json_field "$json" p90_ms)" "$(json_field "$json" p99_ms)" \
                "$(json_field "$json" max_ms)" "$status")")
        done
    done
}

# The servers start from an empty environment (`env -i`), so RUST_BACKTRACE is
# handed to them explicitly: it changes what their errors capture.
server_env=(PATH="$PATH")
[[ -n ${RUST_BACKTRACE+set} ]] && server_env+=(RUST_BACKTRACE="$RUST_BACKTRACE")

# --- (a) the .wasm in vapi-edge-host ---------------------------------------------
# shellcheck disable=SC2086 # HOST_ARGS is a list of flags
start_server host env -i "${server_env[@]}" HOME="${HOME:-/root}" \
    SPIN_VARIABLE_VAPI_HMAC_SECRET="$hmac_secret" \
    SPIN_VARIABLE_PG_URL="$pg_url" \
    SPIN_VARIABLE_TENANT_SECRETS_KEY="$tenant_key" \
    "$host_bin" up --from "${tmp}/spin.toml" --listen 127.0.0.1:0 \
    --runtime-config-file "${tmp}/runtime-config.toml" ${HOST_ARGS:-}
host_pid=$server_pid
host_drain_pid=$server_drain_pid
host_addr=$server_addr
startup_ms=$server_startup_ms
compile_ms=$(sed -n 's/.*"compile_ms":"\{0,1\}\([0-9][0-9]*\).*/\1/p;T;q' "${tmp}/host.log" "${tmp}/host.err")
say "host serving on http://${host_addr} (pid ${host_pid})"
say "host start-up: ${startup_ms} ms from process start to the Serving line (component compile ${compile_ms:-?} ms)"
run_all wasm "$host_addr" "$host_pid" host
host_rss=$(peak_rss "$host_pid")
# The host is stopped before the baseline starts, so the two never share the cores.
stop_server "$host_pid" "$host_drain_pid"

# --- (b) the same logic compiled natively (the baseline) -------------------------
if ((native)); then
    echo
    start_server native env -i "${server_env[@]}" HOME="${HOME:-/root}" \
        "$native_bin" --listen 127.0.0.1:0 --pg-url "$pg_url" \
        --redis-url "$redis_url" --hmac-secret "$hmac_secret"
    native_pid=$server_pid
    native_drain_pid=$server_drain_pid
    native_addr=$server_addr
    native_startup_ms=$server_startup_ms
    say "native baseline serving on http://${native_addr} (pid ${native_pid})"
    say "native baseline start-up: ${native_startup_ms} ms from process start to the Serving line"
    run_all native "$native_addr" "$native_pid" native
    native_rss=$(peak_rss "$native_pid")
    stop_server "$native_pid" "$native_drain_pid"
fi

# --- (b2) the Node peer: the seed's handler in Node ------------------------------
if ((peer)); then
    echo
    start_server node env -i "${server_env[@]}" HOME="${HOME:-/root}" \
        PG_URL="$pg_url" REDIS_URL="$redis_url" HMAC_SECRET="$hmac_secret" \
        LISTEN=127.0.0.1:0 NODE_ENV=production \
        node "${root}/bench/node-peer/server.js"
    node_pid=$server_pid
    node_drain_pid=$server_drain_pid
    node_addr=$server_addr
    node_startup_ms=$server_startup_ms
    say "Node peer ($(node --version)) serving on http://${node_addr} (pid ${node_pid}), ${node_startup_ms} ms after its start"
    run_all node "$node_addr" "$node_pid" node
    node_rss=$(peak_rss "$node_pid")
    stop_server "$node_pid" "$node_drain_pid"
fi

# --- (c) the same .wasm under the real Spin CLI -----------------------------------
if [[ -n $spin_bin ]]; then
    echo
    # Spin reads .env from its working directory and keeps its compilation
    # cache under HOME: both in the run's own folder.
    mkdir -p "${tmp}/spin-home"
    start_server spin env -i -C "$tmp" "${server_env[@]}" HOME="${tmp}/spin-home" \
        SPIN_VARIABLE_VAPI_HMAC_SECRET="$hmac_secret" \
        SPIN_VARIABLE_PG_URL="$pg_url" \
        SPIN_VARIABLE_TENANT_SECRETS_KEY="$tenant_key" \
        "$spin_bin" up --from "${tmp}/spin.toml" --listen 127.0.0.1:0 \
        --runtime-config-file "${tmp}/runtime-config.toml"
    spin_pid=$server_pid
    spin_drain_pid=$server_drain_pid
    spin_addr=$server_addr
    # `spin up` runs the app in a child process (`spin trigger http`): that
    # one's CPU is the server's.
    spin_trigger_pid=$(pgrep -P "$spin_pid" | head -n 1 || true)
    say "Spin ($("$spin_bin" --version | head -n 1)) serving on http://${spin_addr} (pid ${spin_pid}, trigger ${spin_trigger_pid:-?}), ${server_startup_ms} ms after its start"
    run_all spin "$spin_addr" "${spin_trigger_pid:-$spin_pid}" spin
    spin_rss=$(peak_rss "${spin_trigger_pid:-$spin_pid}")
    stop_server "$spin_pid" "$spin_drain_pid"
elif ((use_spin)); then
    say "no Spin CLI (SPIN_BIN, ../shared/bin/spin, spin on PATH): Spin runs skipped"
fi

# --- (d) the PostgreSQL floor on the same database ---------------------------------
declare -A floors=()
if ((floor)); then
    echo
    say "PostgreSQL floor: bench/pg_floor.sh, ${floor_s} s per concurrency"
    while read -r _ c tps; do
        floors[$c]=$tps
    done < <(DB="$db" CONCURRENCY="$concurrencies" DURATION="$floor_s" SQL_BIN="$sql_bin" bash bench/pg_floor.sh)
fi

# --- summary -------------------------------------------------------------------
echo
say "summary ($(nproc) cores; $(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo))"
say "  vapi_edge.wasm: ${wasm_bytes} bytes = ${wasm_kib} KiB"
say "  host start-up: ${startup_ms} ms (component compile ${compile_ms:-?} ms); peak RSS ${host_rss:-?}"
if ((native)); then
    say "  native baseline start-up: ${native_startup_ms} ms; peak RSS ${native_rss:-?}"
fi
if [[ -n ${node_rss:-} ]]; then
    say "  Node peer start-up: ${node_startup_ms} ms; peak RSS ${node_rss}"
fi
if [[ -n ${spin_rss:-} ]]; then
    say "  Spin (\`spin trigger http\`): peak RSS ${spin_rss}"
fi
say "  key-value store: Redis (${redis_url}); database ${db}; ${requests} requests per run after ${warmup} warm-up"
say "  RUST_BACKTRACE=${RUST_BACKTRACE-<unset>} (inherited by vapi-edge-host, vapi-edge-native and Spin)"
say "  wasm: the .wasm in vapi-edge-host; native: vapi-edge-native, the same logic and SQL compiled natively"
# shellcheck disable=SC2059 # the format is a variable on purpose
printf "${row_format}\n" server mode conc requests errors 'req/s' \
    'p50 ms' 'p90 ms' 'p99 ms' 'max ms' status
for row in "${rows[@]}"; do
    printf '%s\n' "$row"
done

echo
say "CPU per request, µs, over the measured requests (user + system, from /proc; 10 ms ticks;"
say "machine: every core's busy time from /proc/stat, which also holds what the split misses):"
cpu_format='%-7s %-9s %5s %9s %9s %9s %9s %9s %9s\n'
# shellcheck disable=SC2059 # the format is a variable on purpose
printf "$cpu_format" server mode conc server postgres redis driver total machine
for key in "${!results[@]}"; do
    printf '%s\n' "$key"
done | sort -k1,1r -k3,3n -k2,2r | while read -r server mode c; do
    json=${results["${server} ${mode} ${c}"]}
    cells=()
    for part in server postgres redis driver; do
        cells+=("$(json_field "$json" "cpu_us_${part}")")
    done
    total=$(awk -v a="${cells[0]}" -v b="${cells[1]}" -v c="${cells[2]}" -v d="${cells[3]}" \
        'BEGIN { if (a b c d ~ /\?/) print "?"; else printf "%.1f", a + b + c + d }')
    # shellcheck disable=SC2059 # the format is a variable on purpose
    printf "$cpu_format" "$server" "$mode" "$c" "${cells[@]}" "$total" "$(json_field "$json" cpu_us_machine)"
done

echo
say "PostgreSQL sessions opened during each run (warm-up included; a pooled server opens few):"
for key in "${!sessions[@]}"; do
    printf '%s\n' "$key"
done | sort -k1,1r -k3,3n -k2,2r | while read -r server mode c; do
    printf '%-7s %-9s %5s %9s\n' "$server" "$mode" "$c" "${sessions["${server} ${mode} ${c}"]}"
done

# ratio A B: A / B to three decimals, or ? when either is missing or B is 0.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) { print "?"; exit }
        printf "%.3f", a / b
    }'
}

if ((native)); then
    echo
    say "wasm overhead: ratio wasm / native (req/s below 1, latency above 1: the wasm is slower)"
    ratio_format='%-9s %5s %10s %10s %7s %9s %9s %7s %9s %9s %7s\n'
    # shellcheck disable=SC2059 # the format is a variable on purpose
    printf "$ratio_format" mode conc 'wasm r/s' 'nat. r/s' 'r/s x' \
        'wasm p50' 'nat. p50' 'p50 x' 'wasm p99' 'nat. p99' 'p99 x'
    for c in "${concurrency_list[@]}"; do
        for mode in unique duplicate; do
            wasm_json=${results["wasm ${mode} ${c}"]:-}
            native_json=${results["native ${mode} ${c}"]:-}
            line=("$mode" "$c")
            for field in throughput_rps p50_ms p99_ms; do
                w=$(json_field "$wasm_json" "$field")
                n=$(json_field "$native_json" "$field")
                line+=("$w" "$n" "$(ratio "$w" "$n")")
            done
            # shellcheck disable=SC2059 # the format is a variable on purpose
            printf "$ratio_format" "${line[@]}"
        done
    done
fi
if ((peer)); then
    echo
    say "beside the Node peer: each server's req/s and machine CPU per request / the peer's"
    say "(req/s above 1 and CPU below 1: the server does better than the peer)"
    peer_format='%-9s %5s %9s %9s %11s %11s %11s %11s\n'
    # shellcheck disable=SC2059 # the format is a variable on purpose
    printf "$peer_format" mode conc 'node r/s' 'node cpu' 'wasm r/s x' 'wasm cpu x' 'nat. r/s x' 'nat. cpu x'
    for c in "${concurrency_list[@]}"; do
        for mode in unique duplicate; do
            node_json=${results["node ${mode} ${c}"]:-}
            line=("$mode" "$c" "$(json_field "$node_json" throughput_rps)" "$(json_field "$node_json" cpu_us_machine)")
            for server in wasm native; do
                json=${results["${server} ${mode} ${c}"]:-}
                line+=("$(ratio "$(json_field "$json" throughput_rps)" "$(json_field "$node_json" throughput_rps)")")
                line+=("$(ratio "$(json_field "$json" cpu_us_machine)" "$(json_field "$node_json" cpu_us_machine)")")
            done
            # shellcheck disable=SC2059 # the format is a variable on purpose
            printf "$peer_format" "${line[@]}"
        done
    done
fi
if [[ -n $spin_bin ]]; then
    echo
    say "Spin: ratio Spin / vapi-edge-host, same .wasm (req/s below 1: Spin is slower)"
    ratio_format='%-9s %5s %10s %10s %7s %9s %9s %7s\n'
    # shellcheck disable=SC2059 # the format is a variable on purpose
    printf "$ratio_format" mode conc 'spin r/s' 'host r/s' 'r/s x' 'spin p99' 'host p99' 'p99 x'
    for c in "${concurrency_list[@]}"; do
        for mode in unique duplicate; do
            spin_json=${results["spin ${mode} ${c}"]:-}
            wasm_json=${results["wasm ${mode} ${c}"]:-}
            line=("$mode" "$c")
            for field in throughput_rps p99_ms; do
                a=$(json_field "$spin_json" "$field")
                b=$(json_field "$wasm_json" "$field")
                line+=("$a" "$b" "$(ratio "$a" "$b")")
            done
            # shellcheck disable=SC2059 # the format is a variable on purpose
            printf "$ratio_format" "${line[@]}"
        done
    done
fi

if ((floor)); then
    echo
    say "PostgreSQL floor: unique-event req/s of each server / the floor's tx/s"
    # shellcheck disable=SC2059 # the format is a variable on purpose
    printf '%5s %9s %9s %9s %9s %9s\n' conc 'floor/s' wasm native node spin
    for c in "${concurrency_list[@]}"; do
        cells=()
        for server in wasm native node spin; do
            cells+=("$(ratio "$(json_field "${results["${server} unique ${c}"]:-}" throughput_rps)" "${floors[$c]:-?}")")
        done
        printf '%5s %9s %9s %9s %9s %9s\n' "$c" "${floors[$c]:-?}" "${cells[@]}"
    done
fi

if ((failures > 0)); then
    die "${failures} run(s) failed"
fi
