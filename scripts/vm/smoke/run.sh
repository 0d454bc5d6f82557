#!/bin/sh
# The guest side of scripts/vm/smoke.sh, run by scripts/vm/init as /job/run.sh
# in the Debian root (POSIX sh; busybox for wget).
#
# Runs `check` on config.yaml, starts two fixture targets named uexp-smoke
# (a and b), starts the exporter on config.yaml, waits until it is ready and
# the guarded probe's semaphore is raised, drives the targets as
# tests/it/probes.rs does, and scrapes once. Writes out/metrics.txt, out/pids
# ("a PID", "b PID"), out/check.log, out/exporter.log and out/times;
# scripts/vm/smoke/check.py compares the counts on the host.
set -u
job=$(pwd)
work=/tmp/smoke
port=9435
out=$job/out
rm -rf "$out"
mkdir -p "$out" "$work"
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
fail() {
    echo "smoke: $*"
    [ -f "$work/exporter.log" ] && cp "$work/exporter.log" "$out/exporter.log" && tail -20 "$out/exporter.log"
    exit 1
}
if command -v wget >/dev/null 2>&1; then wget=wget; else wget="busybox wget"; fi

# Off the 9p share: the probed files live in the guest's own page cache.
cp -r "$job/fixtures" "$job/bpf" "$job/config.yaml" "$job/ebpf-userspace-exporter" "$work/"
cp "$work/fixtures/uexp-target" "$work/fixtures/uexp-smoke"

# A target driven through two FIFOs: file descriptors $2 (its stdin) and $3
# (its stdout) stay open in this shell.
start_target() {
    mkfifo "$work/$1.in" "$work/$1.out"
    "$work/fixtures/uexp-smoke" <"$work/$1.in" >"$work/$1.out" &
    echo "$1 $!" >>"$out/pids"
    eval "exec $2>\"$work/$1.in\" $3<\"$work/$1.out\""
    eval "read -r reply <&$3"
    [ "$reply" = ready ] || fail "target $1 said '$reply', not ready"
}
# cmd FD_IN FD_OUT COMMAND: sends it, waits for the target's answer in $reply.
cmd() {
    eval "echo \"\$3\" >&$1"
    eval "read -r reply <&$2" || fail "no answer to '$3'"
}

# check loads every program through this kernel's verifier.
t=$(now)
"$work/ebpf-userspace-exporter" check -c "$work/config.yaml" >"$out/check.log" 2>&1 ||
    { cat "$out/check.log"; fail "check failed"; }
echo "check $(elapsed "$t")" >>"$out/times"

start_target a 3 4
start_target b 5 6

t=$(now)
"$work/ebpf-userspace-exporter" --listen-address "127.0.0.1:$port" -c "$work/config.yaml" \
    >"$work/exporter.log" 2>&1 &
exporter=$!
ready=
for _ in $(seq 1 600); do
    kill -0 "$exporter" 2>/dev/null || fail "the exporter exited"
    if $wget -q -O /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.2
done
[ -n "$ready" ] || fail "the exporter was not ready within 120 s"
echo "exporter-ready $(elapsed "$t")" >>"$out/times"

# The kernel raises the guarded probe's semaphore when the probe is attached.
cmd 3 4 sem
[ "$reply" != "sem 0" ] || fail "the guarded probe's semaphore is 0: not attached"

t=$(now)
for c in "usdt 5 7" "usdt 3 9" "guarded 4 2" "lib 6 11" "call 10 0"; do
    cmd 3 4 "$c"
done
for c in "usdt 2 7" "call 3 100"; do
    cmd 5 6 "$c"
done
echo "drive $(elapsed "$t")" >>"$out/times"

t=$(now)
$wget -q -O "$out/metrics.txt" "http://127.0.0.1:$port/metrics" || fail "the scrape failed"
echo "scrape $(elapsed "$t")" >>"$out/times"

kill "$exporter"
wait "$exporter"
echo "exporter-exit $?" >>"$out/times"
# exit has no answer: the targets just end.
echo exit >&3
echo exit >&5
wait
cp "$work/exporter.log" "$out/exporter.log"
echo "smoke: $(wc -l <"$out/metrics.txt") lines scraped"
cat "$out/times"
