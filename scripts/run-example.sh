#!/usr/bin/env bash
# Sets up a Debian 12 machine, builds the exporter and the examples, starts a
# CPython 3.11 workload and serves metrics on http://localhost:8080/metrics.
# With no arguments the exporter runs its embedded default pack (Python, JVM,
# Ruby, PostgreSQL, Node.js and PHP-FPM programs, attached to every such process
# on the machine);
# pass flags to run something else, e.g. `-c examples/redis_alloc_latency_debian.yaml`.
# Usage: sudo bash scripts/run-example.sh [exporter flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/build-examples.sh
/usr/bin/python3.11 examples/workloads/python_busy.py &
workload=$!
trap 'kill $workload 2>/dev/null || true' EXIT
# Port 8080 unless the flags choose another address.
listen=(--listen-address 0.0.0.0:8080)
for arg in "$@"; do
    case "$arg" in --listen-address* | --web.listen-address*) listen=() ;; esac
done
echo "workload: python3.11 pid $workload; metrics on ${listen[1]:-the address given} (Ctrl-C stops both)"
target/release/ebpf-userspace-exporter "${listen[@]}" "$@"
