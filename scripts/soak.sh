#!/usr/bin/env bash
# The chaos soak: `bash scripts/soak.sh [--seconds N] [--seed S]`.
#
# Starts a throwaway PostgreSQL cluster and a PgBouncer, two pgfleet
# instances (one direct, one through PgBouncer in transaction mode) folding
# 20 schemas under pgbench writers, and for N seconds (default 60) injects
# faults drawn at random from the seed (default: the clock, printed):
# server restarts and crashes, terminated backends, SIGSTOP of the server,
# a migration's table locks, VACUUM storms, reloads that add and remove
# schemas, pgfleet SIGKILL and restart, PgBouncer restart, ALTER TYPE of a
# counter. One line per fault, then one with the figures; exits 1 on any
# lost or doubled delta, a fleet left stuck, or pgfleet's memory or open
# files grown past the bound it prints.
#
# It installs what it needs when missing (scripts/install-test-deps.sh) and
# builds pgfleet in release mode first. The code is tests/soak/main.rs;
# `cargo test --all-targets` runs a one-minute soak of it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
exec cargo test --release --test soak -- "$@"
