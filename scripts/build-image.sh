#!/usr/bin/env bash
# Builds the exporter's images on this machine from Debian's packages alone,
# with no container registry:
#   localhost/ebpf-userspace-exporter:latest  (full: with clang for inline code)
#   localhost/ebpf-userspace-exporter:slim    (no clang)
# With --test-app it also builds localhost/ebpf-userspace-exporter-testapp:latest
# (python3.11 and gunicorn), the application image of the container tests.
#
# With --arch aarch64 it builds the slim image for arm64 instead, as
#   localhost/ebpf-userspace-exporter:slim-arm64
# from the binary scripts/cross-build.sh aarch64 made, on an arm64 Debian base
# (mmdebstrap and the Containerfile's RUN steps run arm64 programs through
# qemu-user: scripts/setup-cross.sh aarch64 registers it in binfmt_misc).
#
# Each base root filesystem is made by mmdebstrap and imported into podman under
# a tag naming a hash of its package list, so a second run reuses it. The
# Containerfile then gets it as BASE_IMAGE and installs nothing.
# Usage: sudo bash scripts/build-image.sh [--test-app] [--arch aarch64]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
. scripts/podman-env.sh

test_app=false
arch=$(uname -m)
while [ $# -gt 0 ]; do
    case "$1" in
        --test-app) test_app=true ;;
        --arch) arch=${2:?--arch takes aarch64 or x86_64}; shift ;;
        *) echo "build-image.sh: unknown argument $1 (--test-app, --arch ARCH)" >&2; exit 2 ;;
    esac
    shift
done
# The host's own architecture builds what it always did; another one gets
# its own base and image tags (suffix -DEBARCH) and runs its binary through qemu.
foreign=false
case "$arch" in
    "$(uname -m)") ;;
    aarch64) foreign=true deb_arch=arm64 ;;
    *) echo "build-image.sh: --arch $arch: only aarch64 (or this machine's $(uname -m))" >&2; exit 2 ;;
esac
if $foreign && $test_app; then
    echo "build-image.sh: --test-app is for the host's architecture only" >&2
    exit 2
fi

for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || {
        echo "build-image.sh: $tool is missing: run scripts/setup.sh (apt-get install podman buildah runc mmdebstrap)" >&2
        exit 1
    }
done

# A base image holding these Debian packages (minbase, no docs), made once.
base_image() {
    local name=$1 packages=$2 tag tar
    local arch_args=() import_args=()
    if $foreign; then
        name=$name-$deb_arch
        arch_args=(--arch="$deb_arch")
        import_args=(--arch "$deb_arch")
    fi
    tag="localhost/ebpf-userspace-exporter-base:$name-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
    if ! podman image exists "$tag"; then
        tar=$(mktemp --suffix=.tar)
        echo "build-image.sh: mmdebstrap $name base ($packages)" >&2
        mmdebstrap --quiet --variant=minbase "${arch_args[@]}" \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --include="$packages" bookworm "$tar" >&2
        podman import --quiet "${import_args[@]}" "$tar" "$tag" >/dev/null
        rm -f "$tar"
    fi
    echo "$tag"
}

binary=target/release/ebpf-userspace-exporter
run=()
build_args=()
if $foreign; then
    binary=target/$arch-unknown-linux-gnu/release/ebpf-userspace-exporter
    run=("qemu-$arch-static")
    build_args=(--platform "linux/$deb_arch" --build-arg "BINARY=$binary")
fi
if [ ! -x "$binary" ]; then
    if $foreign; then
        echo "build-image.sh: $binary is missing: scripts/cross-build.sh $arch first" >&2
    else
        echo "build-image.sh: $binary is missing: cargo build --release first" >&2
    fi
    exit 1
fi
version=$("${run[@]}" "$binary" --version | awk '{print $2}')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=$(git config --get remote.origin.url 2>/dev/null || true)

build() {
    local target=$1 base=$2 tag=$3 previous
    previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    podman build --quiet --pull=never --network=none \
        -f deploy/Containerfile --target "$target" \
        --build-arg BASE_IMAGE="$base" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        --build-arg SOURCE="$source_url" "${build_args[@]}" \
        -t "$tag" . >/dev/null
    # The image this build replaced, untagged now: drop it (unless in use).
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    echo "build-image.sh: built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B)"
}

# The packages the Containerfile would install from the network.
if $foreign; then
    # Only slim: the full image's clang base would be made under emulation.
    build slim "$(base_image slim 'libelf1,zlib1g,libcap2-bin')" "localhost/ebpf-userspace-exporter:slim-$deb_arch"
    exit 0
fi
build slim "$(base_image slim 'libelf1,zlib1g,libcap2-bin')" localhost/ebpf-userspace-exporter:slim
build full "$(base_image full 'libelf1,zlib1g,libcap2-bin,clang')" localhost/ebpf-userspace-exporter:latest
if $test_app; then
    app=$(base_image app 'python3.11,gunicorn')
    podman tag "$app" localhost/ebpf-userspace-exporter-testapp:latest
    echo "build-image.sh: tagged localhost/ebpf-userspace-exporter-testapp:latest"
fi
