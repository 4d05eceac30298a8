#!/usr/bin/env bash
# The test command (README, CI): system packages, format, lints, the whole test suite.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh -- NAME    only tests matching NAME (after the system-package check)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages the build and the tests need (scripts/prereqs.sh) ---------------------
. scripts/prereqs.sh
provgate_prereqs cmake perl make cc openssl

if [ "${1:-}" = "--" ]; then
  shift
  exec cargo test -- "$@"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
