#!/usr/bin/env bash
# Builds the exporter's images on this machine from Debian's packages alone,
# with no container registry:
#   localhost/ebpf-userspace-exporter:latest  (full: with clang for inline code)
#   localhost/ebpf-userspace-exporter:slim    (no clang)
# With --test-app it also builds localhost/ebpf-userspace-exporter-testapp:latest
# (python3.11 and gunicorn), the application image of the container tests.
#
# Each base root filesystem is made by mmdebstrap and imported into podman under
# a tag naming a hash of its package list, so a second run reuses it. The
# Containerfile then gets it as BASE_IMAGE and installs nothing.
# Usage: sudo bash scripts/build-image.sh [--test-app]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
. scripts/podman-env.sh

test_app=false
for arg in "$@"; do
    case "$arg" in
        --test-app) test_app=true ;;
        *) echo "build-image.sh: unknown argument $arg (only --test-app)" >&2; exit 2 ;;
    esac
done

for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || {
        echo "build-image.sh: $tool is missing: run scripts/setup.sh (apt-get install podman buildah runc mmdebstrap)" >&2
        exit 1
    }
done

# A base image holding these Debian packages (minbase, no docs), made once.
base_image() {
    local name=$1 packages=$2 tag tar
    tag="localhost/ebpf-userspace-exporter-base:$name-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
    if ! podman image exists "$tag"; then
        tar=$(mktemp --suffix=.tar)
        echo "build-image.sh: mmdebstrap $name base ($packages)" >&2
        mmdebstrap --quiet --variant=minbase \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --include="$packages" bookworm "$tar" >&2
        podman import --quiet "$tar" "$tag" >/dev/null
        rm -f "$tar"
    fi
    echo "$tag"
}

binary=target/release/ebpf-userspace-exporter
if [ ! -x "$binary" ]; then
    echo "build-image.sh: $binary is missing: cargo build --release first" >&2
    exit 1
fi
version=$("$binary" --version | awk '{print $2}')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=$(git config --get remote.origin.url 2>/dev/null || true)

build() {
    local target=$1 base=$2 tag=$3 previous
    previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    podman build --quiet --pull=never --network=none \
        -f deploy/Containerfile --target "$target" \
        --build-arg BASE_IMAGE="$base" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        --build-arg SOURCE="$source_url" \
        -t "$tag" . >/dev/null
    # The image this build replaced, untagged now: drop it (unless in use).
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    echo "build-image.sh: built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B)"
}

# The packages the Containerfile would install from the network.
build slim "$(base_image slim 'libelf1,zlib1g,libcap2-bin')" localhost/ebpf-userspace-exporter:slim
build full "$(base_image full 'libelf1,zlib1g,libcap2-bin,clang')" localhost/ebpf-userspace-exporter:latest
if $test_app; then
    app=$(base_image app 'python3.11,gunicorn')
    podman tag "$app" localhost/ebpf-userspace-exporter-testapp:latest
    echo "build-image.sh: tagged localhost/ebpf-userspace-exporter-testapp:latest"
fi
