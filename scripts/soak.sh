#!/usr/bin/env bash
# Soak: the exporter (release build) under Prometheus, process churn and a
# config reload every minute for MINUTES (default 30), then its failed scrapes,
# RSS and fd slopes, leftover kernel objects and count accuracy (scripts/soak.py).
# Writes target/reliability/soak.md ("## Soak") and soak.json; exits non-zero
# when a check failed. Usage: sudo bash scripts/soak.sh [MINUTES [soak.py options]]
# (python3 scripts/soak.py --help lists them: churn rate, sampling, the
# exporter's environment, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-${MINUTES:-30}}
[ $# -gt 0 ] && shift
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v prometheus >/dev/null || { echo "soak.sh: prometheus missing (sudo bash scripts/setup.sh)" >&2; exit 1; }
cargo build --release --quiet
exporter=$PWD/target/release/ebpf-userspace-exporter
out=target/reliability
fixture=$out/fixtures
mkdir -p "$fixture"
# The fixture target and its BPF objects, built as the tests build them.
cc -O1 -g -shared -fPIC -o "$fixture/libfixture.so" tests/fixtures/libfixture.c
cc -O1 -g -o "$fixture/uexp-target" tests/fixtures/target.c tests/fixtures/guarded.c -L"$fixture" -lfixture -Wl,-rpath,'$ORIGIN'
"$exporter" headers -o "$fixture/include" >/dev/null
for object in usdt_counts uprobe_counts; do
    clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
        -c "tests/fixtures/bpf/$object.bpf.c" -o "$fixture/$object.bpf.o"
done
python3 scripts/soak.py --exporter "$exporter" --target "$fixture/uexp-target" \
    --usdt-object "$PWD/$fixture/usdt_counts.bpf.o" --uprobe-object "$PWD/$fixture/uprobe_counts.bpf.o" \
    --minutes "$MINUTES" --reload-every "${RELOAD_EVERY:-60}" --out "$out" "$@"
