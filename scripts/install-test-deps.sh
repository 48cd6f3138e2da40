#!/usr/bin/env bash
# Installs what pgfleet's tests and deploy/try-it.sh need, when it is missing.
# Used by the README's commands and by CI (.ci/run), so CI checks exactly what
# a newcomer runs. When everything is there it only checks (well under a
# second) and says so.
#
#   bash scripts/install-test-deps.sh              # all the tests need
#   bash scripts/install-test-deps.sh postgres     # the PostgreSQL server only (try-it.sh)
#   bash scripts/install-test-deps.sh --pg-bindir  # print where the server binaries are, or fail
#
# What, and who needs it:
# - the PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) and
#   pgbench: the integration tests start throwaway clusters of their own
#   (tests/it/support/cluster.rs finds them in find_pg_bindir's order below),
#   try-it.sh one;
# - pgbouncer: the tests run pgfleet through a real PgBouncer;
# - Prometheus's Python client (its OpenMetrics parser reads /metrics, with
#   /usr/bin/python3 when there is one) and a headless Chromium (renders the
#   status page): tests/it/http.rs;
# - promtool (Debian: prometheus) and systemd-analyze (systemd): the checks of
#   the files in deploy/;
# - as root, a `postgres` system user: PostgreSQL refuses to run as root, so
#   the tests and try-it.sh run the server (and PgBouncer) as `postgres`.
#
# As root on Debian/Ubuntu, what is missing is installed with apt-get, and the
# packages are kept from starting servers of their own: no default cluster
# (create_main_cluster = false, as the tests and try-it.sh make their own), and
# no service started during the install (a policy-rc.d, unless one is there).
# Otherwise (not root, macOS, no apt-get) it prints one line with the command
# that installs what is missing, and exits 1.
set -euo pipefail

mode=tests
case "${1:-}" in
    "" | tests) mode=tests ;;
    postgres) mode=postgres ;;
    --pg-bindir) mode=bindir ;;
    *)
        echo "usage: bash scripts/install-test-deps.sh [tests | postgres | --pg-bindir]" >&2
        exit 2
        ;;
esac

# The directory of the PostgreSQL server binaries, or fail. Same order as the
# test harness: PG_BINDIR; `pg_config --bindir` if it holds initdb (Debian's
# pg_config may come from libpq-dev alone); the newest
# /usr/lib/postgresql/*/bin holding initdb.
find_pg_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x "$PG_BINDIR/initdb" ]] && { echo "$PG_BINDIR"; return 0; }
        return 1
    fi
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$dir" && -x "$dir/initdb" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    local candidates=()
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && candidates+=("$dir")
    done
    ((${#candidates[@]} > 0)) || return 1
    printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1
}

if [[ -n "${PG_BINDIR:-}" && ! -x "$PG_BINDIR/initdb" ]]; then
    echo "PG_BINDIR=$PG_BINDIR holds no initdb: fix or unset it" >&2
    exit 1
fi
if [[ "$mode" == bindir ]]; then
    find_pg_bindir
    exit
fi

# A complete server: initdb, pg_ctl and postgres side by side, psql there or on PATH.
pg_server_complete() {
    local dir="$1"
    [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]] &&
        { [[ -x "$dir/psql" ]] || on_path psql >/dev/null; }
}

# An executable of that name on PATH (bash's `command -v` may name a file
# that is not executable), or fail.
on_path() {
    local path
    path="$(command -v "$1" 2>/dev/null)" && [[ -x "$path" ]] && echo "$path"
}
# The program the tests would run, or fail.
find_pgbench() {
    if [[ -x "$pg_bindir/pgbench" ]]; then
        echo "$pg_bindir/pgbench"
    else
        on_path pgbench
    fi
}
find_pgbouncer() {
    local candidate
    for candidate in /usr/sbin/pgbouncer /usr/bin/pgbouncer; do
        [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
    done
    on_path pgbouncer
}
find_chromium() {
    on_path chromium || { [[ -x /usr/bin/chromium ]] && echo /usr/bin/chromium; } ||
        on_path chromium-browser
}
tests_python() {
    if [[ -f /usr/bin/python3 ]]; then echo /usr/bin/python3; else echo python3; fi
}
has_openmetrics_parser() {
    "$(tests_python)" -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1
}

os="$(uname -s)"
distro=""
if [[ -r /etc/os-release ]]; then
    # shellcheck source=/dev/null
    distro="$(. /etc/os-release && echo "${ID:-}")"
fi
chromium_package=chromium
[[ "$distro" == ubuntu ]] && chromium_package=chromium-browser

# Fills `missing` (what, for people), `apt_packages`, `brew_formulae`,
# `brew_casks` and `brew_after` (macOS commands that are no brew formula).
check() {
    missing=()
    apt_packages=()
    brew_formulae=()
    brew_casks=()
    brew_after=()
    pg_bindir="$(find_pg_bindir || true)"
    if [[ -z "$pg_bindir" ]] || ! pg_server_complete "$pg_bindir"; then
        missing+=("the PostgreSQL server (initdb, pg_ctl, postgres, psql)")
        apt_packages+=(postgresql postgresql-contrib)
        brew_formulae+=(postgresql@17)
        # shellcheck disable=SC2016 # printed for the user's shell to expand
        brew_after+=('export PG_BINDIR="$(brew --prefix postgresql@17)/bin"')
    elif [[ "$mode" == tests ]] && ! find_pgbench >/dev/null; then
        missing+=(pgbench)
        apt_packages+=(postgresql-contrib)
        brew_formulae+=(postgresql@17)
    fi
    [[ "$mode" == tests ]] || return 0
    if ! find_pgbouncer >/dev/null; then
        missing+=(pgbouncer)
        apt_packages+=(pgbouncer)
        brew_formulae+=(pgbouncer)
    fi
    if ! has_openmetrics_parser; then
        missing+=("Prometheus's Python client (for $(tests_python))")
        apt_packages+=(python3-prometheus-client)
        brew_after+=("$(tests_python) -m pip install --user prometheus-client")
    fi
    if ! find_chromium >/dev/null; then
        missing+=(chromium)
        apt_packages+=("$chromium_package")
        brew_casks+=(chromium)
    fi
    if ! on_path promtool >/dev/null; then
        missing+=(promtool)
        apt_packages+=(prometheus)
        brew_formulae+=(prometheus)
    fi
    # systemd-analyze has no macOS build; the checks that use it need Linux.
    if [[ "$os" != Darwin ]] && ! on_path systemd-analyze >/dev/null; then
        missing+=(systemd-analyze)
        apt_packages+=(systemd)
    fi
}

# As root: a `postgres` system user to run the server as.
ensure_postgres_user() {
    [[ "$os" == Linux && "$(id -u)" -eq 0 ]] || return 0
    id -u postgres >/dev/null 2>&1 && return 0
    echo "creating the postgres system user (PostgreSQL refuses to run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=3 \
        -o DPkg::Lock::Timeout=300 "$@" </dev/null
}

# Installs with apt-get, updating the package lists first when there are
# none, or when an install from stale lists fails.
apt_install() {
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        apt_get update
        apt_get install -y --no-install-recommends "$@"
    elif ! apt_get install -y --no-install-recommends "$@"; then
        echo "retrying after apt-get update"
        apt_get update
        apt_get install -y --no-install-recommends "$@"
    fi
}

install_with_apt() {
    # In a subshell, so that the trap removing our policy-rc.d is its own.
    (
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\n# scripts/install-test-deps.sh: no service starts while it installs\nexit 101\n' \
                >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        if [[ " ${apt_packages[*]} " == *" postgresql "* ]]; then
            # postgresql-common first, to keep the server package from
            # creating (and starting) a default cluster on port 5432.
            if [[ ! -f /etc/postgresql-common/createcluster.conf ]]; then
                apt_install postgresql-common
            fi
            sed -ri 's/^[#[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
                /etc/postgresql-common/createcluster.conf
        fi
        apt_install "${apt_packages[@]}"
    )
    # Where systemd runs and a service started anyway (a policy-rc.d of the
    # machine's that allows it): the tests start PgBouncers of their own.
    local service
    for service in pgbouncer prometheus; do
        if [[ -d /run/systemd/system && " ${apt_packages[*]} " == *" $service "* ]] &&
            systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl stop "$service" || true
        fi
    done
}

# One line: what is missing and the command that installs it.
say_what_to_run() {
    local what
    what="$(printf '%s, ' "${missing[@]}")"
    what="${what%, }"
    local needed_by="pgfleet's tests"
    [[ "$mode" == postgres ]] && needed_by="deploy/try-it.sh"
    local how
    if [[ "$os" == Darwin ]]; then
        local steps=()
        ((${#brew_formulae[@]} > 0)) &&
            steps+=("brew install $(printf '%s\n' "${brew_formulae[@]}" | awk '!seen[$0]++' | xargs)")
        ((${#brew_casks[@]} > 0)) && steps+=("brew install --cask ${brew_casks[*]}")
        steps+=(${brew_after[@]+"${brew_after[@]}"})
        how="$(printf '%s && ' "${steps[@]}")"
        how="${how% && }"
    elif command -v apt-get >/dev/null 2>&1; then
        how="sudo apt-get update && sudo apt-get install -y --no-install-recommends"
        how+=" $(printf '%s\n' "${apt_packages[@]}" | awk '!seen[$0]++' | xargs)"
    else
        how="your distribution's packages (or set PG_BINDIR to a directory holding initdb, pg_ctl and postgres)"
    fi
    echo "missing for $needed_by: $what; install with: $how" >&2
}

check
if ((${#missing[@]} > 0)); then
    if [[ "$os" == Linux && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing for $([[ "$mode" == postgres ]] && echo deploy/try-it.sh || echo "pgfleet's tests"):" \
            "$(printf '%s\n' "${apt_packages[@]}" | awk '!seen[$0]++' | xargs)"
        install_with_apt
        check
        if ((${#missing[@]} > 0)); then
            echo "installed with apt-get, yet still missing: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')" >&2
            exit 1
        fi
    else
        say_what_to_run
        exit 1
    fi
fi
ensure_postgres_user

pg_version="$("$pg_bindir/postgres" --version | awk '{print $3}')"
if [[ "$mode" == postgres ]]; then
    echo "PostgreSQL $pg_version server binaries: $pg_bindir"
else
    echo "test dependencies: PostgreSQL $pg_version in $pg_bindir, pgbench $(find_pgbench)," \
        "pgbouncer $(find_pgbouncer), chromium $(find_chromium), promtool $(on_path promtool)," \
        "systemd-analyze $(on_path systemd-analyze || echo 'none (macOS)'), prometheus_client for $(tests_python)"
fi
