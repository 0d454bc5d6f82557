#!/usr/bin/env bash
# Soak: the exporter (release build) under Prometheus, process churn and a
# config reload every minute for MINUTES (default 30), then its failed scrapes,
# RSS and fd slopes, leftover kernel objects and count accuracy (scripts/soak.py).
# Writes target/reliability/soak.md ("## Soak") and soak.json; exits non-zero
# when a check judged failed. Usage: sudo bash scripts/soak.sh [MINUTES] [soak.py
# options] (or MINUTES=N in the environment; python3 scripts/soak.py --help
# lists the options: churn rate, sampling, slope window and limits, the
# exporter's environment). Memory is judged on runs of 2 hours or more:
# sudo MINUTES=240 bash scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-30}
# The first argument is the length unless it is an option for soak.py.
if [ $# -gt 0 ] && [[ $1 != -* ]]; then MINUTES=$1; shift; fi
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
