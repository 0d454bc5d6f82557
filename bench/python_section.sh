#!/usr/bin/env bash
# Prints BENCHMARKS.md's section on the default pack's CPython probes: builds
# examples/python.bpf.c, runs bench/python_probe_cost.py and formats its rows
# (bench/python_rows.py). bench/run.sh calls it; alone, under the machine lock:
#   flock /tmp/eue-bpf.lock bash bench/python_section.sh target/release/ebpf-userspace-exporter
# Usage: python_section.sh EXPORTER [INCLUDE_DIR]  (the exporter's BPF headers;
# written to a temporary directory when not given). Env: REPS (7), PY_OPS
# (50000 operations of each kind per run), PYTHON (pyenv's 3.11.7), and
# BACKGROUND: what else ran on the machine, said in the text when set.
set -euo pipefail
cd "$(dirname "$0")/.."
exporter=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
include=${2:-}
if [ -z "$include" ]; then
    include=$work/include
    "$exporter" headers -o "$include" >/dev/null
fi
REPS=${REPS:-7}
PY_OPS=${PY_OPS:-50000}
PYTHON=${PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3.11}
[ -x "$PYTHON" ] || { echo "python_section.sh: $PYTHON not found: install pyenv's 3.11.7 (a shared build from source) or set PYTHON" >&2; exit 1; }
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$include" \
    -c examples/python.bpf.c -o "$work/python.bpf.o"
cost=$(PY_OPS=$PY_OPS REPS=$REPS PYTHON=$PYTHON python3 bench/python_probe_cost.py "$exporter" "$work/python.bpf.o")
rows=$(echo "$cost" | python3 bench/python_rows.py)
libpython=$(ldd "$PYTHON" | awk '/libpython/ {print $3}')
# A function's first instruction (awk reads to the end: no SIGPIPE under pipefail).
first() { objdump -d --no-show-raw-insn --disassemble="$1" "$libpython" | awk '/^ *[0-9a-f]+:/ && !n++ {$1 = ""; print}' | sed 's/^ *//'; }
gc_symbol=$(nm "$libpython" | awk '$3 ~ /^invoke_gc_callback/ && !n++ {print $3}')
echo "### CPython: the default pack's probes on a build from source"
echo
echo "The default pack's python program (\`src/builtin/default.yaml\`, examples/python.bpf.c) on"
echo "pyenv's CPython $("$PYTHON" -c 'import platform; print(platform.python_version())') (shared libpython, \`.symtab\` kept, no USDT: the official images'"
echo "recipe) puts a uprobe and a uretprobe on \`PyEval_RestoreThread\`, which every blocking call"
echo "goes through when it takes the GIL back, so its cost matters most; a uprobe and a uretprobe on"
echo "\`PyImport_ImportModuleLevelObject\` (every \`import\` statement); and a uprobe on"
echo "\`invoke_gc_callback*\` (here \`$gc_symbol\`), hit at the start and the stop of each"
echo "collection. bench/python_cost_target.py runs ${PY_OPS} operations of each kind per run and"
echo "reports the process's CPU time (user + system) per operation: \`os.read(fd, 1)\` of /dev/zero"
echo "(one \`PyEval_RestoreThread\`), \`import os\` of a module already imported, and"
echo "\`gc.collect(0)\` with automatic collections off. Tracers: the exporter running the pack's"
echo "program (a counter by generation, objects collected, and pause, import-time and GIL-wait"
echo "histograms from start times by thread), and bpftrace doing the same work on the same probes"
echo "(the phase string read, \`count()\` by generation, \`sum()\` of objects found, start times"
echo "by thread, \`hist()\` of the deltas). Paired in one interpreter as for Node.js above (phases"
echo "before, with and after the tracer, each the median of three runs); the cost per hit is the"
echo "middle phase minus the mean of the others, halved (two hits per operation). Tracers"
echo "interleaved, $REPS times; every run's hits are checked exactly (the exporter's through its own"
echo "series: GIL waits, imports and generation-0 collections, per pid)."
echo
echo "First instructions (a uprobe on one the kernel cannot emulate is single-stepped):"
echo "\`PyEval_RestoreThread\`: \`$(first PyEval_RestoreThread)\`; \`PyImport_ImportModuleLevelObject\`:"
echo "\`$(first PyImport_ImportModuleLevelObject)\`; \`$gc_symbol\`: \`$(first "$gc_symbol")\`."
echo
echo "| probes (per operation) | no probe (CPU ns per operation) | exporter | bpftrace $(bpftrace --version | awk '{print $2}') | cost per hit: exporter | cost per hit: bpftrace | exporter / bpftrace |"
echo "|---|---|---|---|---|---|---|"
echo "$rows"
echo
echo "The two exported functions begin with a \`push\`, which the kernel emulates instead of"
echo "single-stepping (as nginx's functions above): a blocking call or an import pays two such hits."
echo "\`invoke_gc_callback\` begins with a load from memory, which it cannot emulate: each hit is"
echo "single-stepped, as the first table's uprobe is, twice per collection. An empty generation-0"
echo "collection (the one measured) shows the probe's cost alone; a real collection pays the same"
echo "two hits on top of its own work."
echo
echo "Measured on $(date -u +%Y-%m-%d), Linux $(uname -r)${BACKGROUND:+, with $BACKGROUND}."
