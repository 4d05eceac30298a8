#!/usr/bin/env bash
# Handshake-storm benchmark: provgate vs HAProxy vs nginx (distribution packages), side by side.
#
#   ./bench/run.sh            full run (10 s per throughput row, 10,000 idle conns, 20,000- and 3,000-client storms)
#   ./bench/run.sh --quick    3 s rows, 2,000 idle conns, 5,000- and 1,000-client storms
#
# Other options are passed to the harness (benches/storm/; --help lists them), e.g.
# --only provgate,haproxy, --duration 5, --concurrency 64, --idle 10000, --storm 20000,
# --slow-storm 3000, --download-clients 4.
# The proxies' configurations are bench/templates/. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in haproxy:haproxy nginx:nginx; do
    bin=${pair%%:*} pkg=${pair##*:}
    command -v "$bin" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1 \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench: installing ${missing[*]} with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
            || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                 --no-install-recommends "${missing[@]}" >&2; } \
            || echo "bench: apt-get could not install ${missing[*]}; those columns are skipped" >&2
    else
        echo "bench: not installed: ${missing[*]} (run as root with apt-get, or: apt-get install ${missing[*]});" \
             "those columns are skipped" >&2
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

command -v taskset >/dev/null 2>&1 || {
    echo "bench: taskset (util-linux) is required to pin the proxies to one core" >&2; exit 1; }

# One socket per connection, 20,000+ at once: raise the descriptor limit (children inherit it).
want=200000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || want=$hard
fi
ulimit -n "$want" || echo "bench: could not raise ulimit -n to $want (now $(ulimit -n))" >&2

# `cargo bench` does not build the binary target; the harness runs target/release/provgate.
cargo build --release --bin provgate
exec cargo bench --bench storm -- "$@"
