#!/usr/bin/env bash
# Builds vapi-edge and serves it with vapi-edge-host, the way `spin build --up` would.
#
#   bash scripts/up.sh            # zero config: records in .spin/sqlite_db.db, claims in
#                                 # .spin/sqlite_key_value.db (Spin's SQLite key-value store)
#   SPIN_VARIABLE_PG_URL='postgres://postgres@127.0.0.1:5432/vapi_edge?sslmode=disable' bash scripts/up.sh
#                                 # production's store: PostgreSQL (created and migrated if local;
#                                 # TLS is verified unless sslmode=disable, as in Spin)
#   bash scripts/up.sh --runtime-config-file runtime-config.redis.toml   # claims in Redis
#
# Settings come from ./.env when it exists (copy .env.example). Without a
# verification secret it makes a local HMAC secret in .spin/dev-hmac-secret
# (the service stays closed to unsigned requests). LISTEN sets the address
# (default 127.0.0.1:3000); any extra arguments are passed to `vapi-edge-host up`.
# It also starts the dashboard's relay on RELAY_LISTEN (default 127.0.0.1:3001)
# unless SPIN_VARIABLE_RELAY_URL is set or RELAY=0, and prints the dashboard's URL.
set -euo pipefail

# --help: this header, before anything is built or started.
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'up: %s\n' "$*" >&2; }
die() {
    printf 'up: error: %s\n' "$*" >&2
    exit 1
}

# 1. Toolchain: the component is built for wasm32-wasip2 (a no-op when installed).
if command -v rustup >/dev/null 2>&1; then
    rustup -q target add wasm32-wasip2 ||
        die "cannot add the wasm32-wasip2 target (rustup target add wasm32-wasip2)"
fi

# 2. Settings.
if [[ -f .env ]]; then
    say "loading .env"
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
fi
SPIN_VARIABLE_PG_URL="${SPIN_VARIABLE_PG_URL:-}"
if [[ -z $SPIN_VARIABLE_PG_URL ]]; then
    say "no SPIN_VARIABLE_PG_URL: records go to the built-in SQLite store, .spin/sqlite_db.db"
fi

# postgres://[user[:password]@]host[:port]/database[?options]
pg_re='^(postgres|postgresql)://([^@/?]*@)?([^:/?@]+)(:([0-9]+))?/([^?]*)(\?.*)?$'
pg_host='' pg_port='' pg_db='' pg_userinfo='' pg_query=''
if [[ $SPIN_VARIABLE_PG_URL =~ $pg_re ]]; then
    pg_userinfo="${BASH_REMATCH[2]}"
    pg_host="${BASH_REMATCH[3]}"
    pg_port="${BASH_REMATCH[5]:-5432}"
    pg_db="${BASH_REMATCH[6]}"
    pg_query="${BASH_REMATCH[7]}"
fi
# Spin lets the component reach only the hosts in allowed_outbound_hosts; when
# the origin is not given, take it from the URL (for the default URL this is
# .env.example's default, postgres://127.0.0.1:5432).
if [[ -n $SPIN_VARIABLE_PG_URL && -z ${SPIN_VARIABLE_PG_ALLOWED_HOST:-} ]]; then
    if [[ -n $pg_host ]]; then
        export SPIN_VARIABLE_PG_ALLOWED_HOST="postgres://${pg_host}:${pg_port}"
    else
        export SPIN_VARIABLE_PG_ALLOWED_HOST='postgres://127.0.0.1:5432'
    fi
fi

# Both hosts verify TLS for every sslmode but disable (as Spin does); a local
# server rarely has a certificate anyone trusts.
if [[ -n $pg_host && ($pg_host == 127.0.0.1 || $pg_host == localhost) && $pg_query != *sslmode=disable* ]]; then
    say "note: TLS to PostgreSQL is verified unless pg_url has ?sslmode=disable (as in Spin);"
    say "      add it if this local server has no certificate that the system trusts"
fi

# 3. The database, when it is a local one that does not exist yet.
if [[ -n $pg_host && ($pg_host == 127.0.0.1 || $pg_host == localhost) ]]; then
    if [[ ! $pg_db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        say "database name '${pg_db}' is not a plain identifier; not creating it"
    elif ! command -v psql >/dev/null 2>&1; then
        say "psql not found; not checking that database ${pg_db} exists"
    else
        admin_url="postgres://${pg_userinfo}${pg_host}:${pg_port}/postgres${pg_query}"
        exists=$(PGCONNECT_TIMEOUT=5 psql "$admin_url" -XtAq -v ON_ERROR_STOP=1 \
            -c "SELECT 1 FROM pg_database WHERE datname = '${pg_db}'") ||
            die "PostgreSQL does not answer on ${pg_host}:${pg_port} (see psql's message above)"
        if [[ $exists != 1 ]]; then
            say "creating database ${pg_db}"
            psql "$admin_url" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"${pg_db}\"" ||
                die "cannot create database ${pg_db}"
        fi
    fi
fi

# 4. Build the component and the host.
say "building the component (wasm32-wasip2, profile component)"
cargo build --target wasm32-wasip2 --profile component -p vapi-edge
say "building vapi-edge-host (release)"
cargo build --release -p vapi-edge-host

target_dir="${CARGO_TARGET_DIR:-target}"
host_bin="${target_dir}/release/vapi-edge-host"
wasm="${target_dir}/wasm32-wasip2/component/vapi_edge.wasm"
[[ -x $host_bin ]] || die "${host_bin} was not built"
[[ -f $wasm ]] || die "${wasm} was not built"
# spin.toml's `source` is target/wasm32-wasip2/component/vapi_edge.wasm; with
# another CARGO_TARGET_DIR, put the fresh build where the manifest looks.
manifest_wasm='target/wasm32-wasip2/component/vapi_edge.wasm'
if [[ ! $wasm -ef $manifest_wasm ]]; then
    mkdir -p "$(dirname "$manifest_wasm")"
    cp -f "$wasm" "$manifest_wasm"
fi

# 5. Schema: migrations/ on PostgreSQL, or migrations/sqlite/ on the built-in store.
"$host_bin" migrate

# A local secret kept in FILE (made once, 24 random bytes in hex).
local_secret() {
    local file=$1
    if [[ ! -s $file ]]; then
        mkdir -p .spin
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file")
    fi
    cat "$file"
}

# 6. Verification. The component refuses everything without a secret (fail
# closed); for a local run, make one and keep it for the next run.
if [[ -z ${SPIN_VARIABLE_VAPI_HMAC_SECRET:-} && -z ${SPIN_VARIABLE_VAPI_SERVER_SECRET:-} ]]; then
    secret_file=.spin/dev-hmac-secret
    SPIN_VARIABLE_VAPI_HMAC_SECRET="$(local_secret "$secret_file")"
    export SPIN_VARIABLE_VAPI_HMAC_SECRET
    say "no verification secret set: using ${secret_file} (sign with: ${host_bin} sign --secret \"\$(cat ${secret_file})\" < body.json)"
fi

# 7. The dashboard and its relay: unless a relay is configured (or RELAY=0),
# start `vapi-edge-host relay` beside the host with a local relay secret, and
# open the dashboard with a local operator token (all organisations); both are
# kept in .spin/ for the next run.
listen="${LISTEN:-127.0.0.1:3000}"
if [[ -z ${SPIN_VARIABLE_DASHBOARD_TOKEN:-} ]]; then
    SPIN_VARIABLE_DASHBOARD_TOKEN="$(local_secret .spin/dev-dashboard-token)"
    export SPIN_VARIABLE_DASHBOARD_TOKEN
    say "dashboard token (all organisations): .spin/dev-dashboard-token"
fi
relay_pid=''
if [[ ${RELAY:-1} != 0 && -z ${SPIN_VARIABLE_RELAY_URL:-} ]]; then
    relay_listen="${RELAY_LISTEN:-127.0.0.1:3001}"
    if [[ -z ${SPIN_VARIABLE_RELAY_SECRET:-} ]]; then
        SPIN_VARIABLE_RELAY_SECRET="$(local_secret .spin/dev-relay-secret)"
        export SPIN_VARIABLE_RELAY_SECRET
    fi
    export SPIN_VARIABLE_RELAY_URL="http://${relay_listen}/events"
    export SPIN_VARIABLE_RELAY_ALLOWED_HOST="http://${relay_listen}"
    export SPIN_VARIABLE_DASHBOARD_RELAY_URL="${SPIN_VARIABLE_DASHBOARD_RELAY_URL:-http://${relay_listen}}"
    # Only the dashboard served here may subscribe from a browser (unless
    # set, or served on every address, where its origin is not known here).
    if [[ -z ${SPIN_VARIABLE_RELAY_ALLOWED_ORIGINS:-} && $listen != 0.0.0.0:* && $listen != \[::\]:* ]]; then
        origins="http://${listen}"
        [[ $listen == 127.0.0.1:* ]] && origins+=",http://localhost:${listen#127.0.0.1:}"
        export SPIN_VARIABLE_RELAY_ALLOWED_ORIGINS="$origins"
    fi
    "$host_bin" relay --listen "$relay_listen" &
    relay_pid=$!
    trap 'kill "$relay_pid" 2>/dev/null || true' EXIT
    say "relay on http://${relay_listen} (live updates for the dashboard)"
fi
say "dashboard: http://${listen}/dashboard (sign in with the token in .spin/dev-dashboard-token, or yours)"

# 8. Serve.
if [[ -z $relay_pid ]]; then
    exec "$host_bin" up --listen "$listen" "$@"
fi
"$host_bin" up --listen "$listen" "$@"
