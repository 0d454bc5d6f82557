#!/usr/bin/env bash
# Fetches one of Debian's kernel packages and unpacks it for QEMU.
#
#   scripts/vm/kernel.sh ARCH [PACKAGE]
#
# ARCH: aarch64 or x86_64. PACKAGE: a Debian kernel image package, e.g.
# linux-image-6.1.0-57-arm64 (default: the one Debian 12's metapackage
# linux-image-DEBARCH depends on now), or linux-image-6.12.*-DEBARCH from
# bookworm-backports when that suite is in apt's sources.
#
# Output (printed as the last line): target/vm/kernels/PACKAGE/, holding
#   vmlinuz     the kernel (arm64: a gzip'd Image; QEMU -kernel takes both)
#   config      its .config
#   release     its uname -r
#   lib/modules/RELEASE/  the modules with modules.dep (depmod, run here)
# Cached: a second run with the same package prints the same directory.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 ARCH [PACKAGE]" >&2; exit 2; }
vm_arch "$1"
package=${2:-}
if [ -z "$package" ]; then
    package=$(apt-cache depends "linux-image-$DEB_ARCH:$DEB_ARCH" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {sub(/:.*/, "", $2); print $2; exit}')
    [ -n "$package" ] || {
        echo "kernel.sh: apt does not know linux-image-$DEB_ARCH:$DEB_ARCH: run apt-get update (foreign architectures: scripts/setup-cross.sh $1)" >&2
        exit 1
    }
fi
dir=$VM_CACHE/kernels/$package
if [ ! -s "$dir/vmlinuz" ] || [ ! -s "$dir/release" ]; then
    deb=$(vm_download "$package:$DEB_ARCH")
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp"
    release=$(basename "$(ls -d "$dir.tmp"/lib/modules/*)")
    depmod -b "$dir.tmp" "$release"
    mv "$dir.tmp/boot/vmlinuz-$release" "$dir.tmp/vmlinuz"
    mv "$dir.tmp/boot/config-$release" "$dir.tmp/config"
    rm -rf "$dir.tmp/boot" "$dir.tmp/usr"
    echo "$release" >"$dir.tmp/release"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
fi
echo "$dir"
