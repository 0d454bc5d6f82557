#!/usr/bin/env bash
# Makes the initramfs scripts/vm/boot.sh boots a Debian kernel with: a static
# busybox for ARCH, the kernel's modules for virtio-pci and 9p (Debian builds
# them as modules), and scripts/vm/init as /init.
#
#   scripts/vm/initramfs.sh ARCH KERNEL_DIR
#
# KERNEL_DIR is scripts/vm/kernel.sh's output. Output (printed as the last
# line): KERNEL_DIR/initramfs.cpio.gz, remade when scripts/vm/init changes.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

[ $# -eq 2 ] || { echo "usage: $0 ARCH KERNEL_DIR" >&2; exit 2; }
vm_arch "$1"
kernel=$2
release=$(cat "$kernel/release")
init=$VM_REPO/scripts/vm/init
out=$kernel/initramfs.cpio.gz
if [ -s "$out" ] && [ "$out" -nt "$init" ] && [ "$out" -nt "$0" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
busybox_deb=$(vm_download "busybox-static:$DEB_ARCH")
dpkg-deb -x "$busybox_deb" "$work/pkg"
mkdir -p "$work/root/bin" "$work/root/modules"
cp "$work/pkg/bin/busybox" "$work/root/bin/busybox"
cp "$init" "$work/root/init"
chmod 755 "$work/root/init"

# The modules in load order (dependencies first), each once; those built into
# this kernel print as "builtin" and need nothing.
: >"$work/root/modules/order"
for module in virtio_pci 9pnet_virtio 9p; do
    modprobe -d "$kernel" -S "$release" --show-depends "$module" |
        awk '$1 == "insmod" {print $2}' |
        while read -r path; do
            name=$(basename "$path")
            grep -qx "$name" "$work/root/modules/order" && continue
            cp "$path" "$work/root/modules/$name"
            echo "$name" >>"$work/root/modules/order"
        done
done
(cd "$work/root" && find . | cpio --quiet -o -H newc | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
