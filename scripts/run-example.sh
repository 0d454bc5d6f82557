#!/usr/bin/env bash
# Sets up a Debian 12 machine, builds the exporter and the examples, starts a
# CPython 3.11 workload and serves its metrics on http://localhost:8080/metrics.
# Usage: sudo bash scripts/run-example.sh [extra exporter flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/build-examples.sh
/usr/bin/python3.11 examples/workloads/python_busy.py &
workload=$!
trap 'kill $workload 2>/dev/null || true' EXIT
echo "workload: python3.11 pid $workload; open http://localhost:8080/ (Ctrl-C stops both)"
target/release/ebpf-userspace-exporter --listen-address 0.0.0.0:8080 -c examples/python.yaml "$@"
