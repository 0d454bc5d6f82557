#!/bin/sh
# A single-function uprobe as a perf-event uprobe against a uprobe_multi
# link: attach, detach (one, and several at once), attach while others
# detach, and cost per hit (bench/uprobe_links.rs). Run under the machine
# lock, as every BPF benchmark:
#   flock /tmp/eue-bpf.lock sh bench/uprobe_links.sh
# ROUNDS, HITS and PAR in the environment change its size.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet --example uprobe_links --bin ebpf-userspace-exporter
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/ebpf-userspace-exporter headers -o "$work/include" >/dev/null
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$work/include" \
    -c bench/bpf/probe_cost.bpf.c -o "$work/probe_cost.bpf.o"
echo "# $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/uprobe_links "$work/probe_cost.bpf.o"
