#!/usr/bin/env bash
# Installs what building and running the exporter for another architecture
# needs on Debian 12, on top of scripts/setup.sh. Idempotent; run as root.
#
#   scripts/setup-cross.sh ARCH [--vm]
#
# ARCH is Rust's name (Debian's arm64 and amd64 are taken too): aarch64 (the only foreign one so far) or x86_64 (the
# host's own: only --vm does anything).
#   always: Debian's cross C compiler, the target's libelf/zlib/<sys/sdt.h>
#           through multiarch (dpkg --add-architecture), the Rust target,
#           qemu-user-static (runs the binary's --version/check here),
#           arch-test (mmdebstrap's check of it, for build-image.sh --arch),
#           and binfmt_misc registered for ARCH when it is not the host's.
#   --vm:   what scripts/kernel-matrix.sh needs to boot ARCH's kernels:
#           qemu-system for ARCH, cpio (it runs this itself for a foreign ARCH).
#
# binfmt_misc: Debian registers qemu's handlers through systemd-binfmt or
# binfmt-support at boot; a machine without systemd (these VMs) has neither
# running, and /proc/sys/fs/binfmt_misc is not even mounted. It is mounted and
# the handler from /usr/lib/binfmt.d/qemu-ARCH.conf registered here (with its
# F flag, so that chroots such as mmdebstrap's second stage find qemu). The
# registration is machine-wide and lasts until reboot: it only makes ARCH's
# ELF files run under qemu.
set -euo pipefail

usage() { echo "usage: $0 ARCH [--vm]   (ARCH: aarch64 or x86_64)" >&2; exit 2; }
[ $# -ge 1 ] || usage
arch=$1
case "$arch" in arm64) arch=aarch64 ;; amd64) arch=x86_64 ;; esac
shift
vm=false
for a in "$@"; do
    case "$a" in
        --vm) vm=true ;;
        *) usage ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-cross.sh: run as root (apt-get, binfmt_misc): sudo bash $0 $arch" >&2
    exit 1
fi

host=$(uname -m)
case "$arch" in
    aarch64) deb_arch=arm64 triplet=aarch64-linux-gnu qemu_system=qemu-system-arm ;;
    x86_64) deb_arch=amd64 triplet=x86_64-linux-gnu qemu_system=qemu-system-x86 ;;
    *) echo "setup-cross.sh: unknown architecture $arch (aarch64 or x86_64)" >&2; exit 2 ;;
esac

packages=()
if [ "$arch" != "$host" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
        dpkg --add-architecture "$deb_arch"
    fi
    packages+=(
        "gcc-${triplet//_/-}"         # cross C compiler (Debian writes x86_64 as x86-64 here)
        "libelf-dev:$deb_arch" "zlib1g-dev:$deb_arch"  # libbpf links them
        "systemtap-sdt-dev:$deb_arch" # <sys/sdt.h> in /usr/include/TRIPLET for the cross compiler
        "linux-libc-dev:$deb_arch"    # asm/ headers for BPF objects (-I/usr/include/TRIPLET)
        qemu-user-static              # runs the binary here
        # mmdebstrap's second stage (build-image.sh --arch) runs the foreign
        # root's maintainer scripts under qemu-user, checking first with arch-test.
        arch-test
        clang make pkg-config
    )
fi
if $vm; then
    packages+=("$qemu_system" cpio)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-cross.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$arch" != "$host" ]; then
    if command -v rustup >/dev/null 2>&1; then
        rustup target list --installed | grep -qx "$arch-unknown-linux-gnu" ||
            rustup target add "$arch-unknown-linux-gnu"
    else
        echo "setup-cross.sh: rustup is missing (scripts/setup.sh installs it); the Rust target $arch-unknown-linux-gnu needs it" >&2
        exit 1
    fi

    misc=/proc/sys/fs/binfmt_misc
    mountpoint -q "$misc" || mount -t binfmt_misc binfmt_misc "$misc"
    if [ ! -e "$misc/qemu-$arch" ]; then
        conf=/usr/lib/binfmt.d/qemu-$arch.conf
        [ -r "$conf" ] || { echo "setup-cross.sh: $conf is missing (qemu-user-static)" >&2; exit 1; }
        cat "$conf" >"$misc/register"
    fi
    grep -qx enabled "$misc/qemu-$arch" || echo 1 >"$misc/qemu-$arch"
    grep -qx enabled "$misc/status" || echo 1 >"$misc/status"
fi
echo "setup-cross.sh: ready for $arch"
