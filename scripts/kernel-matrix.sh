#!/usr/bin/env bash
# The kernel matrix: boots Debian's kernels under QEMU (TCG: software
# emulation, no KVM), runs the smoke suite (scripts/kernel-matrix/smoke.sh) in
# each against the exporter built here, and prints one table, feature x
# kernel: ok, degraded (a named fallback, counts exact), unsupported (the
# error the user sees) or wrong (counts off and nothing said). With no KERNEL
# argument (the whole matrix) or with --write it also writes KERNELS.md
# (KERNELS-aarch64.md for arm64), whole.
#
# Usage: sudo bash scripts/kernel-matrix.sh [--write] [KERNEL...]
#   6.1    Debian 12's kernel (bookworm, its security updates: the machine's apt)
#   6.12   Debian 13's kernel (trixie, from deb.debian.org through a private apt list)
#   5.10   Debian 11's kernel (bullseye, likewise)
#   host   this machine's own kernel, natively (the suite runs on the host,
#          under flock $BPF_LOCK): it is measured even where it cannot be booted
#   FILE.deb  any linux-image package
# Default: 6.1 6.12 5.10 host; for another architecture than the machine's,
# 6.1 (emulating another instruction set is slower, and x86_64 covers the
# kernel versions: that column is about the architecture).
#
# Exits 1 if any cell is worse than scripts/kernel-matrix/expected allows (ok
# is expected unless that file says otherwise), or if any part is missing: a
# tool, a kernel that cannot be downloaded, a guest that does not finish. It
# never skips.
#
# Everything downloaded is kept under $KERNEL_MATRIX_CACHE (target/kernel-matrix):
# the kernels' boot/ directories, the root's cpio, the private
# apt lists; a rerun downloads nothing.
#
# Environment: ARCH (the machine's; aarch64 for arm64, see "Architectures"
# below), QEMU_MEMORY (1G), QEMU_SMP (2), KERNEL_MATRIX_TIMEOUT (seconds per
# guest, 900), BPF_LOCK (/tmp/eue-bpf.lock), BACKGROUND (what else ran, said
# in KERNELS.md), SMOKE_FEATURES (a,b: only these features of the suite).
#
# To add a kernel: a case in kernel_fetch (the apt suites holding its
# linux-image metapackage) and in the argument list below. To add an
# architecture: a case under "Architectures" (Debian's arch name, the QEMU
# binary, machine and console) and one in scripts/cross-build.sh and
# scripts/setup-cross.sh (the cross compiler, the Rust target, libbpf's
# __TARGET_ARCH_ name); nothing else in the script, the guest's init or the
# suite depends on the architecture. The exporter, the fixtures and the BPF
# objects are scripts/cross-build.sh's, for every architecture. Outputs
# per run: the table on stdout, each guest's console in
# $KERNEL_MATRIX_CACHE/logs/KERNEL.console (with the exporter's warnings for
# every cell not ok, as LOG lines).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

write=false
kernels=()
for arg in "$@"; do
    case $arg in
        --write) write=true ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        6.1 | 6.12 | 5.10 | host | *.deb) kernels+=("$arg") ;;
        *) echo "kernel-matrix.sh: unknown kernel $arg (6.1, 6.12, 5.10, host or a linux-image .deb)" >&2; exit 2 ;;
    esac
done
ARCH=${ARCH:-$(uname -m)}
[ "$ARCH" = arm64 ] && ARCH=aarch64
[ "$ARCH" = amd64 ] && ARCH=x86_64
if [ "${#kernels[@]}" -eq 0 ]; then
    if [ "$ARCH" = "$(uname -m)" ]; then kernels=(6.1 6.12 5.10 host); else kernels=(6.1); fi
    write=true
fi

cache=${KERNEL_MATRIX_CACHE:-$repo/target/kernel-matrix}
QEMU_MEMORY=${QEMU_MEMORY:-1G}
QEMU_SMP=${QEMU_SMP:-2}
timeout_s=${KERNEL_MATRIX_TIMEOUT:-900}
BPF_LOCK=${BPF_LOCK:-/tmp/eue-bpf.lock}
SMOKE_FEATURES=${SMOKE_FEATURES:-}

fail() {
    echo "kernel-matrix.sh: $*" >&2
    exit 1
}

# --- Architectures --------------------------------------------------------
# Everything that depends on the guest's architecture is set here; the rest of
# the script reads only these variables. Another architecture than the
# machine's (aarch64 on x86_64) runs scripts/setup-cross.sh ARCH --vm first:
# multiarch for apt (the kernel and the root's packages), the cross
# toolchain, qemu-user for cross-build.sh's `headers` run, and the guest's
# qemu-system.
case $ARCH in
    x86_64)
        DEB_ARCH=amd64           # Debian's name: packages, linux-image-$KERNEL_FLAVOUR
        KERNEL_FLAVOUR=amd64
        QEMU=qemu-system-x86_64
        QEMU_MACHINE=(-M pc)     # qemu64 CPU: -cpu max made TCG no faster here
        CONSOLE=ttyS0
        MULTIARCH=x86_64-linux-gnu
        ;;
    aarch64)
        DEB_ARCH=arm64
        KERNEL_FLAVOUR=arm64
        QEMU=qemu-system-aarch64
        QEMU_MACHINE=(-M virt -cpu max)
        CONSOLE=ttyAMA0
        MULTIARCH=aarch64-linux-gnu
        ;;
    *) fail "ARCH=$ARCH: x86_64 or aarch64" ;;
esac
native=false
[ "$(uname -m)" = "$ARCH" ] && native=true

# --- Tools: a missing one is a failure, never a skip ------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root (BPF, and the host kernel's column): sudo bash $0"
$native || bash scripts/setup-cross.sh "$ARCH" --vm >&2 || fail "scripts/setup-cross.sh $ARCH --vm failed"
for tool in "$QEMU" cpio dpkg-deb apt-get apt-cache flock timeout; do
    command -v "$tool" >/dev/null ||
        fail "$tool is missing: run scripts/setup.sh (apt-get install qemu-system-x86 cpio flock)"
done
# shellcheck disable=SC1091 # rustup's, where setup.sh installed it
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/kernel-matrix.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- apt: the machine's lists for Debian 12, private ones for other suites ---
# apt_for SUITES...: sets apt_opts to use a private apt state holding only
# those suites (kept in the cache; updated when empty or when a download
# fails), or the machine's apt with no suite given.
apt_opts=()
apt_for() {
    apt_opts=(-o "APT::Sandbox::User=root" -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures=$DEB_ARCH")
    [ "$#" -gt 0 ] || { apt_opts=(-o "APT::Sandbox::User=root"); return; }
    local state suite
    state=$cache/apt/$(printf '%s-' "$@")$DEB_ARCH
    mkdir -p "$state/lists/partial" "$state/archives/partial"
    : >"$state/sources.list"
    for suite in "$@"; do
        case $suite in
            *-security) echo "deb http://deb.debian.org/debian-security $suite main" ;;
            *) echo "deb http://deb.debian.org/debian $suite main" ;;
        esac >>"$state/sources.list"
    done
    apt_opts+=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state" -o "Debug::NoLocking=1")
    if ! ls "$state/lists/"*Packages* >/dev/null 2>&1; then
        apt-get "${apt_opts[@]}" update -qq || fail "apt-get update of $* failed"
    fi
}

# download DIR PACKAGE...: apt-get download into DIR; on a failure (lists
# older than the mirror) the lists are updated and it is tried once more.
download() {
    local into=$1
    shift
    (cd "$into" && apt-get "${apt_opts[@]}" download -qq "$@" 2>"$work/download.err") && return 0
    if ! apt-get "${apt_opts[@]}" update -qq ||
        ! (cd "$into" && apt-get "${apt_opts[@]}" download -qq "$@" 2>"$work/download.err"); then
        fail "apt-get download $* failed: $(cat "$work/download.err")"
    fi
}

# --- Kernels ----------------------------------------------------------------
# kernel_fetch ID: sets kernel_image, kernel_config, kernel_package and
# kernel_download (seconds spent downloading and unpacking; 0 when cached).
kernel_fetch() {
    local id=$1 meta package version dir deb t0
    t0=$(now)
    case $id in
        6.1) apt_for ;;
        6.12) apt_for trixie trixie-security ;;
        5.10) apt_for bullseye bullseye-security ;;
    esac
    if [[ $id == *.deb ]]; then
        deb=$(realpath "$id")
        package=$(dpkg-deb -f "$deb" Package)
        version=$(dpkg-deb -f "$deb" Version)
    else
        meta=linux-image-$KERNEL_FLAVOUR
        # The metapackage names the suite's current ABI (linux-image-6.1.0-57-amd64).
        # (Named with its architecture, linux-image-6.1.0-57-arm64:arm64, when foreign.)
        package=$(apt-cache "${apt_opts[@]}" depends "$meta:$DEB_ARCH" 2>/dev/null | awk '/Depends: linux-image-/ && !n++ { print $2 }')
        package=${package%%:*}
        [ -n "$package" ] || fail "kernel $id: apt-cache finds no $meta:$DEB_ARCH (is the machine's apt Debian 12's, with $DEB_ARCH among its architectures?)"
        version=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$package:$DEB_ARCH" | awk '/^Version:/ && !n++ { print $2 }')
    fi
    dir=$cache/kernels/${package}_$version
    if [ ! -s "$dir/vmlinuz" ]; then
        mkdir -p "$cache/kernels/debs" "$dir.tmp"
        if [ -z "${deb:-}" ]; then
            rm -f "$cache/kernels/debs/${package}_"*.deb
            download "$cache/kernels/debs" "$package:$DEB_ARCH=$version"
            deb=$(ls "$cache/kernels/debs/${package}_"*.deb)
        fi
        # Only boot/: no module is needed (see guest-init.sh).
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" ./boot/
        mv "$dir.tmp/boot/vmlinuz-"* "$dir.tmp/vmlinuz"
        mv "$dir.tmp/boot/config-"* "$dir.tmp/config"
        rm -rf "$dir.tmp/boot" "$dir"
        mv "$dir.tmp" "$dir"
        [[ $id == *.deb ]] || rm -f "$deb"
        kernel_download=$(since "$t0")
    else
        kernel_download=0
    fi
    kernel_image=$dir/vmlinuz
    kernel_config=$dir/config
    kernel_package="$package $version"
}

# --- The root: an initramfs of Debian packages, no package manager ----------
# The exporter's shared libraries (libc6, libelf1, zlib1g, libgcc-s1), bash
# for the suite and busybox for the rest, unpacked with dpkg-deb: no
# maintainer script runs, so a foreign architecture's root needs no emulation.
ROOT_PACKAGES=(libc6 libelf1 zlib1g libgcc-s1 bash libtinfo6 busybox-static)
root_build() {
    local t0 key dir packages=()
    t0=$(now)
    apt_for
    for p in "${ROOT_PACKAGES[@]}"; do packages+=("$p:$DEB_ARCH"); done
    key=$(apt-cache "${apt_opts[@]}" show --no-all-versions "${packages[@]}" 2>/dev/null |
        awk '/^(Package|Version):/ { print $2 }' | sha256sum | cut -c1-12)
    root_cpio=$cache/root-$DEB_ARCH-$key.cpio
    root_time=0
    [ -s "$root_cpio" ] && return
    echo "kernel-matrix.sh: building the guest root ($DEB_ARCH: ${ROOT_PACKAGES[*]})" >&2
    dir=$work/root
    mkdir -p "$dir" "$work/debs"
    download "$work/debs" "${packages[@]}"
    for deb in "$work/debs/"*.deb; do dpkg-deb -x "$deb" "$dir"; done
    rm -rf "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/share/locale" "$dir/usr/share/info" \
        "$dir/usr/share/lintian" "$dir/usr/lib/$MULTIARCH/gconv" "$dir/usr/share/i18n"
    mkdir -p "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/run" "$dir/root" "$dir/sbin" "$dir/usr/sbin"
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$root_cpio.tmp"
    mv "$root_cpio.tmp" "$root_cpio"
    rm -f "$cache"/root-"$DEB_ARCH"-*.cpio.old
    root_time=$(since "$t0")
}

# --- The payload: the exporter, the fixtures, the BPF objects, the suite ----
# All of them scripts/cross-build.sh's, for ARCH (the machine's own too).
payload_build() {
    local t0 built
    t0=$(now)
    payload=$work/payload/smoke
    mkdir -p "$payload/bin" "$payload/fixtures/plugins" "$payload/bpf"
    built=$(bash scripts/cross-build.sh --no-setup "$ARCH" | tail -1)
    [ -x "$built/ebpf-userspace-exporter" ] || fail "scripts/cross-build.sh $ARCH made no $built/ebpf-userspace-exporter"
    cp "$built/ebpf-userspace-exporter" "$payload/bin/"
    cp "$built/fixtures/libfixture.so" "$built/fixtures/uexp-target" "$built/fixtures/uexp-loader" "$payload/fixtures/"
    cp "$built/fixtures/plugins/libuexp_plugin.so" "$payload/fixtures/plugins/"
    for object in usdt_counts uprobe_counts plugin_counts pid_counts; do
        cp "$built/bpf/$object.bpf.o" "$payload/bpf/"
    done
    build_times=$(paste -s -d, "$built/build-times" | sed 's/,/, /g')
    cp scripts/kernel-matrix/smoke.sh "$payload/smoke.sh"
    cp scripts/kernel-matrix/guest-init.sh "$work/payload/init"
    chmod 755 "$work/payload/init"
    (cd "$work/payload" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$work/payload.cpio"
    payload_time=$(since "$t0")
}

# --- Runs -------------------------------------------------------------------
# Per kernel: results[kernel,feature]="state<TAB>detail", and facts.
declare -A results facts
# The suite's features (its "# feature: NAME: ..." lines), or SMOKE_FEATURES=a,b.
if [ -n "$SMOKE_FEATURES" ]; then
    IFS=, read -r -a FEATURES <<<"$SMOKE_FEATURES"
else
    mapfile -t FEATURES < <(sed -n 's/^# feature: \([a-z_]*\): .*/\1/p' scripts/kernel-matrix/smoke.sh)
fi

# record KERNEL LOG: reads the suite's RESULT and TIME lines from LOG
# (timestamp<TAB>line, as the console reader writes them).
record() {
    local kernel=$1 log=$2 feature state detail
    while IFS=$'\t' read -r _ tag feature state detail; do
        case $tag in
            RESULT) results[$kernel,$feature]="$state"$'\t'"$detail" ;;
        esac
    done <"$log"
}

# stamp KERNEL: each line of the suite's output (a guest's console) stamped
# with the host's time as it arrives; the suite's lines (BOOTED, RESULT, TIME,
# DONE) rid of what the console put before them (the firmware's escape codes),
# and each RESULT shown as it comes.
stamp() {
    local line tag
    while IFS= read -r line; do
        line=${line%$'\r'}
        for tag in BOOTED STARTED RESULT TIME DONE; do
            case $line in *"$tag"$'\t'*) line=$tag${line#*"$tag"} ;; esac
        done
        printf '%s\t%s\n' "$EPOCHREALTIME" "$line"
        case $line in RESULT*) printf '  %s: %s\n' "$1" "${line#RESULT$'\t'}" | cut -c1-200 >&2 ;; esac
    done
}

# A guest kernel that oopses before the suite is done (seen once in 6.12
# under TCG: an int3 in __schedule while perf_event_open patched a static
# key, emulated cross-modifying code) is booted once more; the first oops is
# kept in NAME.console.oops and said in the kernel's line and in KERNELS.md.
# A second oops is the result.
run_guest() {
    local kernel=$1 log=$cache/logs/$1.console start booted finished attempt oops
    mkdir -p "$cache/logs"
    cat "$root_cpio" "$work/payload.cpio" >"$work/initrd"
    for attempt in 1 2; do
        echo "kernel-matrix.sh: $kernel: booting $kernel_package under $QEMU (TCG)" >&2
        start=$(now)
        # The console, each line stamped with the host's time as it arrives.
        timeout "$timeout_s" "$QEMU" -accel tcg "${QEMU_MACHINE[@]}" -smp "$QEMU_SMP" -m "$QEMU_MEMORY" \
            -kernel "$kernel_image" -initrd "$work/initrd" \
            -append "console=$CONSOLE panic=-1 quiet ${SMOKE_FEATURES:+smoke=$SMOKE_FEATURES}" \
            -nic none -nographic -no-reboot </dev/null 2>&1 | stamp "$kernel" >"$log"
        oops=$(grep -a -m1 -E 'Oops:|Kernel panic|BUG:' "$log" | cut -f2- | cut -c1-160 || true)
        if [ "$attempt" = 1 ] && [ -n "$oops" ] && ! grep -a -q -P '^[^\t]*\tDONE' "$log"; then
            cp "$log" "$log.oops"
            facts[$kernel,retried]="booted twice: the first guest kernel oopsed before the suite was done ($oops; $log.oops)"
            echo "kernel-matrix.sh: $kernel: ${facts[$kernel,retried]}" >&2
            continue
        fi
        break
    done
    facts[$kernel,wall]=$(since "$start")
    booted=$(awk -F'\t' '$2 == "BOOTED" { print $1; exit }' "$log")
    finished=$(awk -F'\t' '$2 == "DONE" { print $1; exit }' "$log")
    facts[$kernel,uname]=$(awk -F'\t' '$2 == "BOOTED" { print $4; exit }' "$log")
    if [ -n "$booted" ]; then
        facts[$kernel,boot]=$(awk -v a="$start" -v b="$booted" 'BEGIN { printf "%.1f", b - a }')
    fi
    if [ -n "$booted" ] && [ -n "$finished" ]; then
        facts[$kernel,suite]=$(awk -v a="$booted" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
    else
        facts[$kernel,problem]="the guest did not finish (see $log): $(grep -a -v -E '^[^	]*	(RESULT|TIME)' "$log" | tail -3 | cut -f2- | tr '\n' ' ' | cut -c1-300)"
    fi
    record "$kernel" "$log"
}

# The host's own kernel, natively: the same suite, with busybox's applets first
# on PATH (the guest's tools), under the machine's BPF lock.
run_host() {
    local kernel=$1 log=$cache/logs/host.console start bb dir=$work/host
    $native || fail "the host kernel's column needs ARCH=$(uname -m)"
    mkdir -p "$cache/logs" "$dir/bin"
    (cd "$dir" && cpio -i -d --quiet <"$root_cpio" bin/busybox && cpio -i -d --quiet <"$work/payload.cpio")
    bb=$dir/bin/busybox
    for applet in $("$bb" --list); do
        [ "$applet" = busybox ] || ln -sf "$bb" "$dir/bin/$applet"
    done
    echo "kernel-matrix.sh: host: running the suite on $(uname -r) (natively, under flock $BPF_LOCK)" >&2
    start=$(now)
    # shellcheck disable=SC2086 # one word per feature
    PATH=$dir/bin:$PATH flock "$BPF_LOCK" bash "$dir/smoke/smoke.sh" "$dir/smoke" ${SMOKE_FEATURES//,/ } 2>&1 |
        stamp "$kernel" >"$log"
    # The suite's time, without the wait for the lock.
    facts[$kernel,suite]=$(awk -F'\t' -v end="$(now)" '$2 == "STARTED" { printf "%.1f", end - $1 }' "$log")
    facts[$kernel,uname]=$(uname -r)
    facts[$kernel,boot]=-
    facts[$kernel,wall]=${facts[$kernel,suite]}
    # Why it is measured natively rather than booted.
    local why=()
    ls /boot/vmlinu[xz]-"$(uname -r)" >/dev/null 2>&1 || why+=("no /boot/vmlinuz-$(uname -r)")
    [ -d "/lib/modules/$(uname -r)" ] || why+=("no /lib/modules/$(uname -r)")
    if [ "${#why[@]}" -gt 0 ]; then
        local reasons
        reasons=$(printf '%s, ' "${why[@]}")
        facts[$kernel,how]="natively: it cannot be booted under QEMU here (${reasons%, }; the hypervisor supplies this VM's kernel)"
    else
        facts[$kernel,how]="natively"
    fi
    record "$kernel" "$log"
}

echo "kernel-matrix.sh: $ARCH, kernels: ${kernels[*]}" >&2
root_build
payload_build
for kernel in "${kernels[@]}"; do
    if [ "$kernel" = host ]; then
        facts[$kernel,package]="this machine's"
        facts[$kernel,download]=-
        run_host "$kernel"
    else
        kernel_fetch "$kernel"
        facts[$kernel,package]=$kernel_package
        facts[$kernel,download]=$kernel_download
        facts[$kernel,how]="$QEMU -accel tcg ${QEMU_MACHINE[*]} -smp $QEMU_SMP -m $QEMU_MEMORY -nic none"
        facts[$kernel,config]=$kernel_config
        run_guest "$kernel"
    fi
done

# --- Verdicts ---------------------------------------------------------------
# Worse states rank lower; a cell passes when it ranks at least as high as
# its expected state (scripts/kernel-matrix/expected; ok when not listed).
# A cell never measured (missing) fails even where wrong is expected.
rank() {
    case $1 in ok) echo 3 ;; degraded) echo 2 ;; unsupported) echo 1 ;; wrong) echo 0 ;; *) echo -1 ;; esac
}
# A kernel written ARCH/KERNEL (aarch64/6.1) is that architecture's only.
declare -A expected
while read -r k f s _; do
    [[ -z ${k:-} || $k == \#* ]] && continue
    case $k in
        "$ARCH"/*) k=${k#*/} ;;
        */*) continue ;;
    esac
    expected[$k,$f]=$s
done <scripts/kernel-matrix/expected

regressions=()
improvements=()
notes=()
for kernel in "${kernels[@]}"; do
    [ -z "${facts[$kernel,problem]:-}" ] || regressions+=("$kernel: ${facts[$kernel,problem]}")
    for feature in "${FEATURES[@]}"; do
        cell=${results[$kernel,$feature]:-}
        state=${cell%%$'\t'*}
        detail=${cell#*$'\t'}
        if [ -z "$cell" ]; then
            state=missing
            detail="no result: the suite did not get to it"
            results[$kernel,$feature]=$state$'\t'$detail
        fi
        want=${expected[$kernel,$feature]:-ok}
        if [ "$(rank "$state")" -lt "$(rank "$want")" ]; then
            regressions+=("$kernel $feature: $state (expected $want): $detail")
        elif [ "$(rank "$state")" -gt "$(rank "$want")" ]; then
            improvements+=("$kernel $feature: $state, better than the expected $want: update scripts/kernel-matrix/expected")
        fi
        [ "$state" = ok ] || notes+=("$kernel|$feature|$state|$detail")
    done
done

# The table: a row per feature, a column per kernel; each cell not ok gets a
# numbered note with its detail.
table() {
    local md=$1 header="| feature |" rule="|---|" row n=0 kernel feature state
    for kernel in "${kernels[@]}"; do
        header+=" $kernel (${facts[$kernel,uname]:-?}) |"
        rule+="---|"
    done
    echo "$header"
    echo "$rule"
    declare -A number
    for note in "${notes[@]}"; do
        n=$((n + 1))
        number[${note%%|*}|$(echo "$note" | cut -d'|' -f2)]=$n
    done
    for feature in "${FEATURES[@]}"; do
        row="| $feature |"
        for kernel in "${kernels[@]}"; do
            state=${results[$kernel,$feature]%%$'\t'*}
            if [ "$state" = ok ]; then
                row+=" ok |"
            elif [ "$state" = degraded ]; then
                row+=" degraded [${number[$kernel|$feature]}] |"
            else
                row+=" **$state** [${number[$kernel|$feature]}] |"
            fi
        done
        echo "$row"
    done
    echo
    n=0
    for note in "${notes[@]}"; do
        n=$((n + 1))
        IFS='|' read -r kernel feature state detail <<<"$note"
        if $md; then
            echo "$n. $kernel, $feature: $state: \`${detail//\`/\'}\`"
        else
            echo "[$n] $kernel $feature: $state: $detail"
        fi
    done
}

# A duration in seconds with its unit; "-" (not applicable) or "?" as is.
secs() { case $1 in [0-9]*) echo "${1}s" ;; *) echo "$1" ;; esac; }

echo
table false
echo
for kernel in "${kernels[@]}"; do
    printf '%s: %s (%s), download %s, boot %s, suite %s, wall %s\n' "$kernel" "${facts[$kernel,package]}" \
        "${facts[$kernel,uname]:-?}" "$(secs "${facts[$kernel,download]:-?}")" "$(secs "${facts[$kernel,boot]:-?}")" \
        "$(secs "${facts[$kernel,suite]:-?}")" "$(secs "${facts[$kernel,wall]:-?}")"
    [ -z "${facts[$kernel,retried]:-}" ] || echo "$kernel: ${facts[$kernel,retried]}"
done
printf 'root: %ss (0: cached), payload: %ss (cross-build.sh %s: %s)\n' "$root_time" "$payload_time" "$ARCH" "$build_times"

if $write; then
    # KERNELS.md for x86_64, KERNELS-aarch64.md for arm64.
    kernels_md=KERNELS.md
    [ "$ARCH" = x86_64 ] || kernels_md=KERNELS-$ARCH.md
    qemu_version=$("$QEMU" --version | sed -n 1p)
    # Changes to anything but the matrix's own outputs (this one's redirection
    # truncates it first; another architecture's may be waiting for its commit).
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    git diff --quiet HEAD -- . ":(exclude)KERNELS*.md" 2>/dev/null || commit+=" (with local changes)"
    {
        echo "# Kernels"
        echo
        echo "Written whole by \`sudo bash scripts/kernel-matrix.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'),"
        echo "commit $commit, $ARCH. Do not edit: rerun the script."
        echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end${BACKGROUND:+; beside it: $BACKGROUND}."
        echo "Guests: $qemu_version, TCG (software emulation: a nested KVM guest hangs on these machines), $QEMU_SMP vCPUs, $QEMU_MEMORY."
        echo
        echo "Each cell is the smoke suite ([scripts/kernel-matrix/smoke.sh](scripts/kernel-matrix/smoke.sh))"
        echo "run against the exporter's release build on that kernel; every check asserts exact"
        echo "counts against what the fixture target did. **ok**: exact, no fallback; **degraded**:"
        echo "exact through a fallback the exporter named for the feature's program; **unsupported**:"
        echo "counts off or absent, and the exporter warned or failed about that program (the note"
        echo "quotes the first such line a user sees, then the first check that failed); **wrong**:"
        echo "counts off with nothing said about the program (the worst: a warning about something"
        echo "else does not count), or a target misbehaved; **missing**: the suite never got to it."
        echo
        table true
        echo
        echo "## The kernels"
        echo
        echo "| kernel | package | uname -r | how | download | boot | suite | wall |"
        echo "|---|---|---|---|---|---|---|---|"
        for kernel in "${kernels[@]}"; do
            echo "| $kernel | ${facts[$kernel,package]} | ${facts[$kernel,uname]:-?} | ${facts[$kernel,how]} | $(secs "${facts[$kernel,download]}") | $(secs "${facts[$kernel,boot]:-?}") | $(secs "${facts[$kernel,suite]:-?}") | $(secs "${facts[$kernel,wall]:-?}") |"
        done
        for kernel in "${kernels[@]}"; do
            [ -z "${facts[$kernel,retried]:-}" ] || { echo; echo "$kernel was ${facts[$kernel,retried]}."; }
        done
        echo
        echo "Download: fetching and unpacking the package's boot/ (0: cached). Boot: from QEMU's"
        echo "start to the guest's init (firmware, decompression, kernel, initramfs). Suite: every"
        echo "feature, one exporter each, in the guest. The guests' root is an initramfs of"
        echo "Debian 12 packages (${ROOT_PACKAGES[*]}) unpacked with dpkg-deb, with the exporter,"
        echo "the fixtures and the BPF objects built on the host by \`scripts/cross-build.sh $ARCH\`;"
        echo "no clang runs in a guest. Building the root took ${root_time}s (0: cached), the payload"
        echo "${payload_time}s (cross-build.sh's steps in seconds: ${build_times}; the exporter's near 0 when"
        echo "cargo had it built already)."
        echo
        echo "## Features"
        echo
        echo "| feature | what the suite does and asserts |"
        echo "|---|---|"
        sed -n 's/^# feature: \([a-z_]*\): \(.*\)$/| \1 | \2 |/p' scripts/kernel-matrix/smoke.sh
        echo
        echo "## Kernels not in the matrix"
        echo
        sed -n '/^# not-measured: /s/^# not-measured: /- /p' scripts/kernel-matrix/expected
        for kernel in 6.1 6.12 5.10; do
            [[ " ${kernels[*]} " == *" $kernel "* ]] ||
                echo "- $kernel for $ARCH: not in this run (\`ARCH=$ARCH sudo bash scripts/kernel-matrix.sh --write 6.1 6.12 5.10\` measures it)."
        done
        echo
        echo "## Expected states"
        echo
        echo "A cell fails the run when it is worse than expected (ok > degraded >"
        echo "unsupported > wrong; one never measured always fails). Expected here (ok"
        echo "when not listed) for this run's kernels, each group with the reason"
        echo "[scripts/kernel-matrix/expected](scripts/kernel-matrix/expected) gives:"
        echo
        # A comment block followed by entries is their reason; only entries
        # for this run's kernels (and for this architecture's, ARCH/KERNEL).
        awk -v run=" ${kernels[*]} " -v arch="$ARCH" '
            /^# not-measured: / { next }
            /^#/ { if (entries) flush(); sub(/^# ?/, ""); why = why (why == "" ? "" : " ") $0; next }
            /^$/ { flush(); next }
            {
                entries = 1
                k = $1
                if (k ~ /\//) { if (substr(k, 1, length(arch) + 1) != arch "/") next; k = substr(k, length(arch) + 2) }
                if (index(run, " " k " ") == 0) next
                cells = cells (n++ ? ", " : "") "`" $0 "`"
            }
            function flush() { if (n) print "- " cells ": " why; cells = ""; n = 0; why = ""; entries = 0 }
            END { flush() }' scripts/kernel-matrix/expected
    } >"$kernels_md"
    echo "kernel-matrix.sh: wrote $kernels_md" >&2
fi

for line in "${improvements[@]}"; do echo "kernel-matrix.sh: $line" >&2; done
if [ "${#regressions[@]}" -gt 0 ]; then
    for line in "${regressions[@]}"; do echo "kernel-matrix.sh: REGRESSED: $line" >&2; done
    exit 1
fi
echo "kernel-matrix.sh: every cell as expected or better" >&2
