# Sourced by scripts/vm/*.sh: what differs between the architectures the VMs
# run, and where downloads and builds are cached.
#
# The pieces, each a script whose last line of output is what it made:
#   kernel.sh ARCH [PACKAGE]            -> KERNEL_DIR (Debian's kernel, unpacked)
#   rootfs.sh ARCH [PACKAGES]           -> ROOT_DIR (mmdebstrap root)
#   initramfs.sh ARCH KERNEL_DIR        -> the initramfs (boot.sh calls it)
#   boot.sh ARCH KERNEL_DIR ROOT_DIR|- JOB_DIR [TIMEOUT_S]
#                                       -> runs JOB_DIR/run.sh in the guest,
#                                          exits with its status
#   smoke.sh ARCH [PACKAGE]             -> all of the above with
#                                          scripts/cross-build.sh and smoke/
#
# vm_arch ARCH sets, for Rust's name of an architecture (aarch64, x86_64) or
# Debian's (arm64, amd64):
#   ARCH          Rust's name
#   DEB_ARCH      Debian's name (arm64, amd64)
#   QEMU          the qemu-system binary
#   QEMU_MACHINE  its machine and CPU arguments (TCG: a nested KVM guest hangs
#                 on this project's machines)
#   CONSOLE       the kernel's serial console
#   VIRTIO_BUS    the virtio transport of QEMU's -device names (pci)
# VM_CACHE is target/vm (git-ignored): downloaded .debs, unpacked kernels,
# roots, initramfs images.

# depmod, mount and the like live in sbin, which a non-login root shell may lack.
PATH=$PATH:/usr/sbin:/sbin
VM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_CACHE=${VM_CACHE:-$VM_REPO/target/vm}

vm_arch() {
    case "$1" in
        aarch64 | arm64)
            ARCH=aarch64
            DEB_ARCH=arm64
            QEMU=qemu-system-aarch64
            # virt with a CPU that has every feature TCG emulates; gic v3 for
            # more than 8 CPUs is not needed.
            QEMU_MACHINE=(-M virt -cpu max -accel tcg)
            CONSOLE=ttyAMA0
            ;;
        x86_64 | amd64)
            ARCH=x86_64
            DEB_ARCH=amd64
            QEMU=qemu-system-x86_64
            QEMU_MACHINE=(-M q35 -cpu max -accel tcg)
            CONSOLE=ttyS0
            ;;
        *)
            echo "scripts/vm: unknown architecture $1 (aarch64 or x86_64)" >&2
            return 2
            ;;
    esac
    VIRTIO_BUS=pci
}

# vm_download PACKAGE[:DEBARCH] prints the path of its .deb in $VM_CACHE/debs,
# fetching it with apt-get download the first time (apt's candidate version; run apt-get update first on a fresh machine).
vm_download() {
    local pkg=$1 dir=$VM_CACHE/debs name arch version file
    mkdir -p "$dir"
    name=${pkg%%:*}
    arch=${pkg#*:}
    [ "$arch" = "$pkg" ] && arch=$(dpkg --print-architecture)
    version=$(apt-cache policy "$name:$arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        echo "scripts/vm: apt knows no $name for $arch: run apt-get update (and dpkg --add-architecture $arch: scripts/setup-cross.sh)" >&2
        return 1
    fi
    # apt-get download writes the epoch's colon as %3a.
    file=$dir/${name}_${version/:/%3a}_$arch.deb
    if [ ! -s "$file" ]; then
        (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "$name:$arch=$version") >&2
    fi
    [ -s "$file" ] || { echo "scripts/vm: apt-get download $name:$arch did not make $file" >&2; return 1; }
    echo "$file"
}
