#!/usr/bin/env bash
# The test command (README, CI): system packages, format, lints, the whole test suite.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh -- NAME    only tests matching NAME (after the system-package check)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages the build and the tests need (scripts/prereqs.sh) ---------------------
. scripts/prereqs.sh
provgate_prereqs cmake perl make cc openssl prlimit
provgate_browser

if [ "${1:-}" = "--" ]; then
  shift
  exec cargo test -- "$@"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Unused dependencies (offline, a fraction of a second) when cargo-machete is installed
# (`cargo install cargo-machete`); the test machines do not carry it, so it is not required.
if command -v cargo-machete >/dev/null 2>&1; then
  cargo machete
else
  echo "test.sh: cargo-machete not installed; skipping the unused-dependency check"
fi
cargo test
