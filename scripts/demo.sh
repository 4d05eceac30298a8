#!/usr/bin/env bash
# `provgate demo` on a fresh machine: the build tools first (scripts/prereqs.sh), then
# `cargo run -- demo` with any extra arguments (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
provgate_prereqs cmake perl make cc
exec cargo run --quiet -- demo "$@"
