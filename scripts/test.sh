#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing
# (scripts/install-test-deps.sh), then runs the whole suite. Arguments go to
# `cargo test --all-targets`, e.g. `bash scripts/test.sh http` runs the tests
# whose names contain "http".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
echo "== cargo test --all-targets $*"
cargo test --all-targets "$@"
