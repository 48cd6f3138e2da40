#!/usr/bin/env bash
# Try pgfleet in one command: a throwaway local PostgreSQL, pgfleet folding
# two schemas every 2 seconds, and a writer inserting deltas so the totals
# move in the log. Ctrl-C stops everything and removes the cluster.
#
#   bash deploy/try-it.sh            # text logs
#   LOG_FORMAT=json bash deploy/try-it.sh
#   PGFLEET_BIN=path/to/pgfleet bash deploy/try-it.sh   # that binary, no build
#
# PostgreSQL gets a free port; pgfleet's HTTP endpoints 127.0.0.1:8187, or a
# free port when that one is taken (another pgfleet): the status line says
# which. Needs a Rust toolchain and the PostgreSQL server binaries, found via
# PG_BINDIR, `pg_config --bindir`, or /usr/lib/postgresql/*/bin. When they are
# missing, scripts/install-test-deps.sh installs them (as root on
# Debian/Ubuntu) or prints the one command that does. Run as root, the server
# runs as `postgres`. The script exits with pgfleet's exit code: 0 after a
# clean shutdown, non-zero when pgfleet failed, at start or later.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== PostgreSQL server binaries"
bash scripts/install-test-deps.sh postgres
bindir="$(bash scripts/install-test-deps.sh --pg-bindir)"
psql_bin="$bindir/psql"
[[ -x "$psql_bin" ]] || psql_bin="$(command -v psql)"

# PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
as_server() {
    if [[ "$(id -u)" -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
dir="$(mktemp -d "${TMPDIR:-/tmp}/pgfleet-try.XXXXXX")"
if [[ "$(id -u)" -eq 0 ]]; then chown postgres "$dir"; fi

service=""
writer=""
cluster=false
# Stops whatever runs and removes the cluster. When pgfleet was still
# running, sets service_rc to its exit code.
service_rc=""
# shellcheck disable=SC2317 # called by the traps below
stop_all() {
    trap - EXIT INT TERM
    if [[ -n "$service" ]]; then
        kill -INT "$service" 2>/dev/null || true
        service_rc=0
        wait "$service" 2>/dev/null || service_rc=$?
        service=""
    fi
    if [[ -n "$writer" ]]; then
        kill "$writer" 2>/dev/null || true
        wait "$writer" 2>/dev/null || true
    fi
    if [[ "$cluster" == true ]]; then
        as_server "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    echo "stopped; removed $dir"
}
# Ctrl-C (or SIGTERM): stop everything; exit with pgfleet's code (0 when it
# shut down cleanly), or 130 when it was not running yet.
trap 'stop_all; exit "${service_rc:-130}"' INT TERM
trap 'rc=$?; stop_all; exit "$rc"' EXIT

exe="${PGFLEET_BIN:-}"
if [[ -z "$exe" ]]; then
    # Cargo's own progress; the JSON on stdout names the binary it built,
    # wherever CARGO_TARGET_DIR or .cargo/config.toml put it.
    echo "== building pgfleet (release; the first build takes 3 to 4 minutes on 2 cores)"
    cargo build --release --bin pgfleet --message-format=json-render-diagnostics >"$dir/build.json"
    while IFS= read -r line; do
        [[ "$line" == *'"reason":"compiler-artifact"'* && "$line" == *'"executable":"'* ]] || continue
        path="${line##*\"executable\":\"}"
        path="${path%%\"*}"
        [[ "${path##*/}" == pgfleet ]] && exe="$path"
    done <"$dir/build.json"
fi
if [[ -n "${PGFLEET_BIN:-}" && ! -x "$exe" ]]; then
    echo "PGFLEET_BIN=$exe is not an executable" >&2
    exit 1
elif [[ -z "$exe" || ! -x "$exe" ]]; then
    echo "cargo built no pgfleet executable (see $dir/build.json)" >&2
    exit 1
fi

# A free port on 127.0.0.1: $1 when it is free, else one the kernel picks
# (a random one without python3).
free_port() {
    python3 - "$1" 2>/dev/null <<'EOF' || echo $((20000 + RANDOM % 30000))
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

port="$(free_port 0)"
echo "== a throwaway PostgreSQL in $dir on port $port"
cluster=true
as_server "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >/dev/null
as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
psql=("$psql_bin" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres)

export PGFLEET__DATABASE__URL="postgres://postgres@127.0.0.1:$port/postgres"
export PGFLEET__NAPTIME=2s
export PGFLEET__WORKERS__TOTAL=2
export PGFLEET__LOG__FORMAT="${LOG_FORMAT:-text}"
# HTTP on pgfleet's own port, 8187, unless another pgfleet (or anything
# else) has it: then on a free one. The status line below prints it.
if [[ -z "${PGFLEET__HTTP__LISTEN:-}" ]]; then
    export PGFLEET__HTTP__LISTEN="127.0.0.1:$(free_port 8187)"
fi

# PGFLEET_BIN is this script's, not a pgfleet key: pgfleet would warn that
# it matches none.
unset PGFLEET_BIN

# pgfleet in a session of its own, so that Ctrl-C reaches only this script,
# which then asks pgfleet once to shut down gracefully (a second SIGINT would
# cut its shutdown short).
if command -v setsid >/dev/null 2>&1; then
    setsid "$exe" &
else
    "$exe" &
fi
service=$!

# Deltas: the one total row per schema, once pgfleet has created the tables,
# then a few inserts a second, the way many writers add to a counter.
(
    until "${psql[@]}" -c 'SELECT 1 FROM schema2.counted LIMIT 0' >/dev/null 2>&1; do sleep 0.5; done
    "${psql[@]}" -c "INSERT INTO schema1.counted VALUES ('total', 0); INSERT INTO schema2.counted VALUES ('total', 0);"
    while true; do
        "${psql[@]}" -c "INSERT INTO schema1.counted SELECT 'delta', 1 FROM generate_series(1, 3);
                         INSERT INTO schema2.counted VALUES ('delta', 10);" 2>/dev/null || exit 0
        sleep 1
    done
) &
writer=$!

sleep 1
if ! kill -0 "$service" 2>/dev/null; then
    rc=0
    wait "$service" || rc=$?
    service=""
    echo "pgfleet failed to start (exit code $rc)" >&2
    exit $((rc == 0 ? 1 : rc))
fi
echo "== pgfleet (pid $service) folds schema1 and schema2 every 2s; Ctrl-C stops it all"
echo "   look:   $psql_bin -h 127.0.0.1 -p $port -U postgres -c 'TABLE schema1.counted'"
echo "   reload: kill -HUP $service"
echo "   status: http://$PGFLEET__HTTP__LISTEN/"
rc=0
wait "$service" || rc=$?
service=""
echo "pgfleet exited (exit code $rc)" >&2
exit "$rc"
