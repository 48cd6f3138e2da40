#!/usr/bin/env bash
# Try pgfleet in one command: a throwaway local PostgreSQL, pgfleet folding
# two schemas every 2 seconds, and a writer inserting deltas so the totals
# move in the log. Ctrl-C stops everything and removes the cluster.
#
#   bash deploy/try-it.sh            # text logs
#   LOG_FORMAT=json bash deploy/try-it.sh
#
# Needs the PostgreSQL server binaries (Debian/Ubuntu: apt-get install
# postgresql), found via PG_BINDIR, `pg_config --bindir`, or
# /usr/lib/postgresql/*/bin. Run as root, the server runs as `postgres`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir; return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
bindir="$(find_bindir)"
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
    echo "No PostgreSQL server binaries found. Install them (Debian/Ubuntu:" \
         "apt-get install postgresql) or set PG_BINDIR." >&2
    exit 1
fi

as_server_user=()
if [[ "$(id -u)" -eq 0 ]]; then as_server_user=(runuser -u postgres --); fi
dir="$(mktemp -d /tmp/pgfleet-try.XXXXXX)"
if [[ "$(id -u)" -eq 0 ]]; then chown postgres "$dir"; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)"

cleanup() {
    trap - EXIT INT TERM
    if [[ -n "${service:-}" ]]; then
        kill -INT "$service" 2>/dev/null || true
        wait "$service" 2>/dev/null || true
    fi
    [[ -n "${writer:-}" ]] && kill "$writer" 2>/dev/null || true
    "${as_server_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    echo "stopped; removed $dir"
}
trap cleanup EXIT INT TERM

echo "== a throwaway PostgreSQL in $dir on port $port"
"${as_server_user[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >/dev/null
"${as_server_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
psql=("$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres)

echo "== building pgfleet"
cargo build --release --quiet

export PGFLEET__DATABASE__URL="postgres://postgres@127.0.0.1:$port/postgres"
export PGFLEET__NAPTIME=2s
export PGFLEET__WORKERS__TOTAL=2
export PGFLEET__LOG__FORMAT="${LOG_FORMAT:-text}"

# Deltas: a total row per schema once pgfleet has created it, then a few
# inserts a second, the way many writers would add to a counter.
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

./target/release/pgfleet &
service=$!
echo "== pgfleet (pid $service) folds schema1 and schema2 every 2s; Ctrl-C stops it all"
echo "   look:   psql -h 127.0.0.1 -p $port -U postgres -c 'TABLE schema1.counted'"
echo "   reload: kill -HUP $service"
wait "$service" || true
service=
