#!/usr/bin/env bash
# Builds the exporter (release) and compiles examples/*.bpf.c into objects
# next to their configs, against the libbpf headers the exporter embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exporter=target/release/ebpf-userspace-exporter
include=target/bpf-include
"$exporter" headers -o "$include" >/dev/null
for src in examples/*.bpf.c; do
    clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$include" \
        -c "$src" -o "${src%.c}.o"
    echo "built ${src%.c}.o"
done
for config in examples/*.yaml; do
    "$exporter" check -c "$config"
done
