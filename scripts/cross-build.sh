#!/usr/bin/env bash
# Builds the exporter, the C test fixtures and the BPF objects for one
# architecture, into one directory that the kernel matrix's guests
# (scripts/kernel-matrix.sh, which runs this for every architecture) or an
# image can take whole.
#
#   scripts/cross-build.sh [--no-setup] ARCH
#
# ARCH is Rust's name (Debian's arm64 and amd64 are taken too): aarch64 (cross, with Debian's gcc-aarch64-linux-gnu and
# libelf/zlib for arm64 through multiarch) or x86_64 (the host's own build).
# scripts/setup-cross.sh ARCH is run first (root) unless --no-setup.
#
# Output (printed as the last line): target/arch/ARCH/, holding
#   ebpf-userspace-exporter   the release binary (built in target/ARCH-unknown-linux-gnu/release,
#                             or target/release for the host's own ARCH)
#   fixtures/                 tests/fixtures' C programs, built as tests/it/common.rs builds them:
#                             uexp-target (+ libfixture.so beside it, found through $ORIGIN),
#                             uexp-resolver, uexp-loader (+ plugins/libuexp_plugin.so),
#                             uexp-kernel-features, uexp-bpf-holder
#   bpf/                      tests/fixtures/bpf/*.bpf.c and examples/*.bpf.c as NAME.bpf.o
#                             (examples as example-NAME.bpf.o), with -D__TARGET_ARCH_* for ARCH
#   include/                  the libbpf headers the binary embeds (`headers -o`)
#   build-times               seconds each step took
# Nothing here is committed (target/ is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

setup=true
if [ "${1:-}" = --no-setup ]; then
    setup=false
    shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--no-setup] ARCH   (aarch64 or x86_64)" >&2; exit 2; }
arch=$1
case "$arch" in arm64) arch=aarch64 ;; amd64) arch=x86_64 ;; esac
host=$(uname -m)
# libbpf's __TARGET_ARCH_* and Debian's triplet, as src/compile/bpf_flags.rs
# names them (the exporter's own build.rs and its runtime compiler use that).
case "$arch" in
    aarch64) bpf_arch=arm64 triplet=aarch64-linux-gnu ;;
    x86_64) bpf_arch=x86 triplet=x86_64-linux-gnu ;;
    *) echo "cross-build.sh: unknown architecture $arch (aarch64 or x86_64)" >&2; exit 2 ;;
esac
rust_target=$arch-unknown-linux-gnu
out=target/arch/$arch
times=()
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

if $setup; then
    bash scripts/setup-cross.sh "$arch"
fi

if [ "$arch" = "$host" ]; then
    cc=cc
    run=()
else
    cc=$triplet-gcc
    command -v "$cc" >/dev/null || {
        echo "cross-build.sh: $cc is missing: run scripts/setup-cross.sh $arch (as root)" >&2
        exit 1
    }
    # Runs the built binary here, with or without binfmt_misc.
    run=("qemu-$arch-static")
    command -v "${run[0]}" >/dev/null || {
        echo "cross-build.sh: ${run[0]} is missing: run scripts/setup-cross.sh $arch (as root)" >&2
        exit 1
    }
    # Per-target variables, so that build scripts compiling for the host
    # (proc macros, the build scripts themselves) keep the host's tools.
    up=${rust_target^^}
    up=${up//-/_}
    low=${rust_target//-/_}
    export "CARGO_TARGET_${up}_LINKER=$cc"
    # libbpf-sys builds libbpf with this CC; libbpf's Makefile also asks the
    # host's pkg-config for libelf's and zlib's --cflags, which name no
    # directory on Debian (the headers are in /usr/include for every
    # architecture), so nothing needs pointing at the target's .pc files.
    # The cross compiler searches /usr/include/TRIPLET, and its linker
    # /usr/lib/TRIPLET, where multiarch puts the target's libelf and zlib.
    export "CC_${low}=$cc" "AR_${low}=$triplet-ar"
fi

start=$(now)
if [ "$arch" = "$host" ]; then
    # The usual target/release: no second build of the same thing.
    cargo build --release --quiet --bin ebpf-userspace-exporter
    built=target/release/ebpf-userspace-exporter
else
    cargo build --release --quiet --target "$rust_target" --bin ebpf-userspace-exporter
    built=target/$rust_target/release/ebpf-userspace-exporter
fi
times+=("exporter $(took "$start")")
mkdir -p "$out/fixtures/plugins" "$out/bpf"
cp "$built" "$out/"
exporter=$out/ebpf-userspace-exporter

# The fixtures, with the flags tests/it/common.rs builds them with.
start=$(now)
src=tests/fixtures
f=$out/fixtures
# $ORIGIN is the dynamic loader's, not the shell's.
origin=\$ORIGIN
"$cc" -O1 -g -shared -fPIC -o "$f/libfixture.so" "$src/libfixture.c"
"$cc" -O1 -g -o "$f/uexp-target" "$src/target.c" "$src/guarded.c" \
    -L"$f" -lfixture "-Wl,-rpath,$origin"
"$cc" -O1 -g -o "$f/uexp-resolver" "$src/resolver.c"
"$cc" -O1 -g -shared -fPIC -o "$f/plugins/libuexp_plugin.so" "$src/plugin.c"
"$cc" -O1 -g -o "$f/uexp-loader" "$src/loader.c" "-Wl,-rpath,$origin/plugins"
"$cc" -O1 -g -o "$f/uexp-kernel-features" "$src/kernel_features.c"
"$cc" -O1 -g -o "$f/uexp-bpf-holder" "$src/bpf_holder.c"
times+=("fixtures $(took "$start")")

# The BPF objects, against the headers the binary embeds (the ones matching
# its libbpf; see build.rs), for ARCH's registers.
start=$(now)
rm -rf "$out/include"
"${run[@]}" "$exporter" headers -o "$out/include" >/dev/null
[ -d "/usr/include/$triplet/asm" ] || {
    echo "cross-build.sh: /usr/include/$triplet/asm is missing: run scripts/setup-cross.sh $arch (linux-libc-dev:$arch)" >&2
    exit 1
}
for source in "$src"/bpf/*.bpf.c examples/*.bpf.c; do
    name=$(basename "$source" .bpf.c)
    case "$source" in examples/*) name=example-$name ;; esac
    clang -target bpf -O2 -g "-D__TARGET_ARCH_$bpf_arch" "-I/usr/include/$triplet" \
        -I"$out/include" -c "$source" -o "$out/bpf/$name.bpf.o"
done
times+=("bpf-objects $(took "$start")")

printf '%s\n' "${times[@]}" >"$out/build-times"
echo "cross-build.sh: $(tr '\n' ' ' <"$out/build-times")(seconds)" >&2
echo "$out"
