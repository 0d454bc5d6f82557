#!/usr/bin/env bash
# Makes a small Debian 12 root for the VMs with mmdebstrap, as a directory that
# scripts/vm/boot.sh shares read-only into the guest over 9p.
#
#   scripts/vm/rootfs.sh ARCH [PACKAGES]
#
# ARCH: aarch64 or x86_64 (or Debian's arm64, amd64). PACKAGES:
# comma-separated, added to minbase (default: libelf1,zlib1g,busybox: the
# exporter's libraries, and wget and the like for the guest's scripts).
#
# Output (printed as the last line): target/vm/roots/ARCH-HASH/, HASH naming
# the package list: a second run with the same list prints the same directory
# at once. The root has an empty /job for boot.sh's job share.
#
# A foreign ARCH needs its qemu-user handler in binfmt_misc for mmdebstrap's
# second stage (the packages' maintainer scripts): scripts/setup-cross.sh ARCH
# registers it. Without it, mmdebstrap stops and says so.
set -euo pipefail
# shellcheck source=scripts/vm/common.sh
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 ARCH [PACKAGES]" >&2; exit 2; }
vm_arch "$1"
packages=${2:-libelf1,zlib1g,busybox}
hash=$(printf '%s %s' "$DEB_ARCH" "$packages" | sha256sum | cut -c1-12)
dir=$VM_CACHE/roots/$ARCH-$hash
if [ ! -e "$dir/.complete" ]; then
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    echo "rootfs.sh: mmdebstrap $DEB_ARCH minbase + $packages into $dir" >&2
    mmdebstrap --quiet --arch="$DEB_ARCH" --variant=minbase \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --include="$packages" \
        --customize-hook='mkdir -p "$1/job"' \
        --customize-hook='touch "$1/.complete"' \
        bookworm "$dir" >&2
fi
echo "$dir"
