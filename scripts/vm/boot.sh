#!/usr/bin/env bash
# Boots a Debian kernel under QEMU (TCG) and runs one job in it.
#
#   scripts/vm/boot.sh ARCH KERNEL_DIR ROOT_DIR|- JOB_DIR [TIMEOUT_S]
#
# ARCH        aarch64 or x86_64 (the guest's; TCG emulates either on any host)
# KERNEL_DIR  scripts/vm/kernel.sh's output
# ROOT_DIR    scripts/vm/rootfs.sh's output, shared read-only as the guest's
#             root; `-` runs the job in the initramfs (busybox only)
# JOB_DIR     shared read-write at /job; the guest runs /job/run.sh there (as
#             scripts/vm/init describes) and writes its exit status to
#             JOB_DIR/exit-code
# TIMEOUT_S   QEMU is killed after this many seconds (default 900)
#
# The console goes to JOB_DIR/console.log. Exits with run.sh's status, 124 on
# timeout, 125 when the guest wrote no status. Environment: VM_MEM (default
# 2G), VM_SMP (default 2), VM_APPEND (added to the kernel command line).
# Prints, on stderr, the boot's wall time and the guest's own uptime marks.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

[ $# -ge 4 ] && [ $# -le 5 ] || {
    echo "usage: $0 ARCH KERNEL_DIR ROOT_DIR|- JOB_DIR [TIMEOUT_S]" >&2
    exit 2
}
vm_arch "$1"
kernel=$2 root=$3 job=$4 timeout_s=${5:-900}
command -v "$QEMU" >/dev/null || {
    echo "boot.sh: $QEMU is missing: run scripts/setup-cross.sh $1 --vm (as root)" >&2
    exit 1
}
[ -f "$job/run.sh" ] || { echo "boot.sh: $job/run.sh is missing" >&2; exit 2; }
initramfs=$(bash "$(dirname "$0")/initramfs.sh" "$1" "$kernel")

append="console=$CONSOLE panic=-1 loglevel=4 ${VM_APPEND:-}"
shares=(
    -fsdev "local,id=job,path=$job,security_model=none"
    -device "virtio-9p-$VIRTIO_BUS,fsdev=job,mount_tag=job"
)
if [ "$root" != - ]; then
    [ -e "$root/.complete" ] || { echo "boot.sh: $root is not a root from scripts/vm/rootfs.sh" >&2; exit 2; }
    append+=" vm.root=9p"
    shares+=(
        -fsdev "local,id=root,path=$root,security_model=none,readonly=on"
        -device "virtio-9p-$VIRTIO_BUS,fsdev=root,mount_tag=root"
    )
fi

rm -f "$job/exit-code"
start=$(date +%s.%N)
set +e
timeout --kill-after=10 "$timeout_s" "$QEMU" "${QEMU_MACHINE[@]}" \
    -m "${VM_MEM:-2G}" -smp "${VM_SMP:-2}" \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kernel/vmlinuz" -initrd "$initramfs" -append "$append" \
    "${shares[@]}" </dev/null >"$job/console.log" 2>&1
qemu_rc=$?
set -e
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
grep '^vm: ' "$job/console.log" | tr -d '\r' >&2 || true
echo "boot.sh: $QEMU ran $wall s (wall)" >&2
if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
    echo "boot.sh: timed out after $timeout_s s; the console's end ($job/console.log):" >&2
    tail -20 "$job/console.log" >&2
    exit 124
fi
if [ ! -s "$job/exit-code" ]; then
    echo "boot.sh: the guest wrote no exit status (qemu exited $qemu_rc); the console's end ($job/console.log):" >&2
    tail -30 "$job/console.log" >&2
    exit 125
fi
exit "$(cat "$job/exit-code")"
