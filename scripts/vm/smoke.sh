#!/usr/bin/env bash
# Builds the exporter for ARCH, boots one of Debian's kernels for ARCH under
# QEMU (TCG) with a Debian root, attaches USDT probes (plain, semaphore-guarded,
# in a library), uprobes and a uretprobe to two fixture targets there, and
# checks the scraped counts exactly (scripts/vm/smoke/).
#
#   scripts/vm/smoke.sh [--no-setup] ARCH [KERNEL_PACKAGE]
#
# ARCH: aarch64 or x86_64. KERNEL_PACKAGE: as scripts/vm/kernel.sh takes it
# (default: Debian 12's current kernel for ARCH). Run as root (setup, mmdebstrap).
# Each step's wall time is printed at the end; the job directory with the
# console, the scrape and the exporter's log is target/vm/jobs/smoke-ARCH-KERNEL/.
set -euo pipefail
cd "$(dirname "$0")/../.."

setup=true
if [ "${1:-}" = --no-setup ]; then
    setup=false
    shift
fi
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 [--no-setup] ARCH [KERNEL_PACKAGE]" >&2; exit 2; }
arch=$1
case "$arch" in arm64) arch=aarch64 ;; amd64) arch=x86_64 ;; esac
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
times=()

$setup && bash scripts/setup-cross.sh "$arch" --vm
t=$(now)
build=$(bash scripts/cross-build.sh --no-setup "$arch" | tail -1)
times+=("cross-build $(took "$t") s")
t=$(now)
kernel=$(bash scripts/vm/kernel.sh "$arch" ${2:+"$2"} | tail -1)
times+=("kernel $(took "$t") s")
t=$(now)
root=$(bash scripts/vm/rootfs.sh "$arch" | tail -1)
times+=("root $(took "$t") s")

job=target/vm/jobs/smoke-$arch-$(basename "$kernel")
rm -rf "$job"
mkdir -p "$job"
cp -r "$build/ebpf-userspace-exporter" "$build/fixtures" "$build/bpf" "$job/"
cp scripts/vm/smoke/config.yaml scripts/vm/smoke/run.sh "$job/"
t=$(now)
status=0
bash scripts/vm/boot.sh "$arch" "$kernel" "$root" "$job" 900 || status=$?
times+=("boot+run $(took "$t") s")
tr -d '\r' <"$job/console.log" | grep -E '^(smoke|check|exporter-ready|drive|scrape|exporter-exit) ' || true
printf 'smoke.sh: %s\n' "${times[@]}"
[ "$status" -eq 0 ] || { echo "smoke.sh: the guest's run failed ($status); see $job/console.log and $job/out/" >&2; exit 1; }
python3 scripts/vm/smoke/check.py "$job/out"
