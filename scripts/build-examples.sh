#!/usr/bin/env bash
# Builds the exporter (release) and compiles examples/*.bpf.c into objects
# next to their configs, against the libbpf headers the exporter embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exporter=target/release/ebpf-userspace-exporter
include=target/bpf-include
"$exporter" headers -o "$include" >/dev/null
# libbpf's name for this machine's architecture and Debian's triplet, as
# src/compile/bpf_flags.rs has them.
case "$(uname -m)" in
    x86_64) bpf_arch=x86 triplet=x86_64-linux-gnu ;;
    aarch64) bpf_arch=arm64 triplet=aarch64-linux-gnu ;;
    *) echo "build-examples.sh: $(uname -m) is not known here (src/compile/bpf_flags.rs lists more)" >&2; exit 1 ;;
esac
for src in examples/*.bpf.c; do
    clang -target bpf -O2 -g "-D__TARGET_ARCH_$bpf_arch" "-I/usr/include/$triplet" -I"$include" \
        -c "$src" -o "${src%.c}.o"
    echo "built ${src%.c}.o"
done
for config in examples/*.yaml; do
    "$exporter" check -c "$config"
done
