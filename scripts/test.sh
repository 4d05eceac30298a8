#!/usr/bin/env bash
# The test command (README, CI): system packages, format, lints, the whole test suite.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh -- NAME    only tests matching NAME (after the system-package check)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages the build needs -----------------------------------------------------
# cmake: pingora's zlib-ng (libz-ng-sys); perl + make + a C compiler: the vendored OpenSSL;
# openssl: the standard client the HTTP tests drive (s_client, s_time), as operators do.
need=()
for tool in cmake perl make cc openssl; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  declare -A pkg=([cmake]=cmake [perl]=perl [make]=make [cc]=gcc [openssl]=openssl)
  pkgs=()
  for t in "${need[@]}"; do pkgs+=("${pkg[$t]}"); done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing missing build tools: ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "test.sh: missing build tools: ${need[*]} (Debian packages: ${pkgs[*]}); install them and rerun" >&2
    exit 1
  fi
fi

if [ "${1:-}" = "--" ]; then
  shift
  exec cargo test -- "$@"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
