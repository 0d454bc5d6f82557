#!/usr/bin/env bash
# Prints BENCHMARKS.md's section on a uprobe in a stripped Go program: runs
# bench/go_probe_cost.py (examples/go_stripped.yaml against bpftrace) and
# formats its row (bench/go_rows.py). bench/run.sh calls it; alone, under the
# machine lock:
#   flock /tmp/eue-bpf.lock bash bench/go_section.sh target/release/ebpf-userspace-exporter
# Env: REPS (7), GO_CALLS (50000 calls per run), GO (Debian 12's Go 1.19), and
# BACKGROUND: what else ran on the machine, said in the text when set.
set -euo pipefail
cd "$(dirname "$0")/.."
exporter=$1
REPS=${REPS:-7}
GO_CALLS=${GO_CALLS:-50000}
GO=${GO:-/usr/lib/go-1.19/bin/go}
[ -x "$GO" ] || { echo "go_section.sh: $GO not found: scripts/setup.sh installs golang-1.19-go" >&2; exit 1; }
cost=$(GO_CALLS=$GO_CALLS REPS=$REPS python3 bench/go_probe_cost.py "$exporter" "$GO")
rows=$(echo "$cost" | python3 bench/go_rows.py)
echo "### Go: a uprobe in a stripped program"
echo
echo "\`examples/go_stripped.yaml\` counts calls of \`main.work\` in tests/fixtures/go built by Go"
echo "$("$GO" version | awk '{print $3}' | sed 's/^go//') with \`-ldflags='-s -w'\` (no \`.symtab\`: the exporter finds the function in Go's own table,"
echo "\`.gopclntab\`). The function is \`//go:noinline\` and tiny (\`shl %rax; ret\`); its first instruction"
echo "is not one the kernel emulates, so every hit is trapped and single-stepped, which costs far more"
echo "than the BPF program on this VM (compare CPython's \`invoke_gc_callback\` above). bench/go_probe_cost.py"
echo "calls it ${GO_CALLS} times per run and reads the CPU time of all the program's threads"
echo "(\`/proc/PID/task/*/schedstat\`) per call: with no probe, with the exporter running the example"
echo "(an array counter), and with bpftrace counting (\`@ = count()\`) on the same instruction. bpftrace"
echo "cannot name a function of a stripped Go binary: it is given the function's file offset (from"
echo "\`probes --functions\` and the program headers) with \`--unsafe\`. Every run's count is checked equal"
echo "to the calls made, for both tracers. Paired in one process as for Node.js above (phases before,"
echo "with and after the tracer, each the median of three runs); tracers interleaved, $REPS times."
echo
echo "| probe | no probe (CPU ns per call) | exporter | bpftrace $(bpftrace --version | awk '{print $2}') | cost per hit: exporter | cost per hit: bpftrace | exporter / bpftrace |"
echo "|---|---|---|---|---|---|---|"
echo "$rows"
echo
echo "Measured on $(date -u +%Y-%m-%d), Linux $(uname -r)${BACKGROUND:+, with $BACKGROUND}."
