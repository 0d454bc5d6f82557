#!/usr/bin/env bash
# The cost-per-process sections of BENCHMARKS.md (issue 21): discovery
# latency, scale, churn and the uprobe link types, this build against the one
# before (BEFORE_EXPORTER, interleaved) where it is given. Prints Markdown.
# Usage: bash bench/scale_section.sh EXPORTER FIXTURE_DIR
# (FIXTURE_DIR as bench/run.sh makes it: uexp-target, usdt_counts.bpf.o,
# usdt_counts_shared.bpf.o, pid_counts.bpf.o.)
set -euo pipefail
cd "$(dirname "$0")/.."
exporter=$1
fixture=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
before=${BEFORE_EXPORTER:-}
export BEFORE_EXPORTER=$before

TARGETS=${TARGETS:-200} REPS=${DISCOVERY_REPS:-5} python3 bench/discovery.py "$exporter" "$fixture/uexp-target" \
    "$fixture/usdt_counts.bpf.o" "$fixture/pid_counts.bpf.o" >"$work/discovery"
COUNTS=${COUNTS:-1,10,100,1000} REPS=${SCALE_REPS:-3} python3 bench/scale.py "$exporter" "$fixture/uexp-target" \
    "$fixture/usdt_counts.bpf.o" "$fixture/usdt_counts_shared.bpf.o" "$fixture/pid_counts.bpf.o" >"$work/scale"
RATE=${CHURN_RATE:-10} SECONDS=${CHURN_SECONDS:-60} REPS=1 python3 bench/churn.py "$exporter" "$fixture/uexp-target" \
    "$fixture/usdt_counts.bpf.o" "$fixture/pid_counts.bpf.o" >"$work/churn"
COUNTS=${PACK_COUNTS:-100,1000} REPS=${PACK_REPS:-1} python3 bench/default_pack_scale.py "$exporter" >"$work/pack"
links=$(sh bench/uprobe_links.sh | sed -n '/^| measure/,$p')
python3 bench/scale_rows.py plot-attach <"$work/scale" |
    python3 bench/plot.py bench/scale_attach.svg "Time to attach all processes" "processes" "seconds"
python3 bench/scale_rows.py plot-memory <"$work/scale" |
    python3 bench/plot.py bench/scale_memory.svg "Kernel memory of maps and programs" "processes" "MiB"
before_note=""
[ -z "$before" ] || before_note=" The build before (${BEFORE_LABEL:-\`$before\`}) ran the per-process and shared cases interleaved with this one (it has no pid-keyed mode); ratios are this build's median over the before-build's, pid-keyed rows against the before-build's per-process ones."

cat <<MD
## Cost per process (issue 21)

Per-process instances (one loaded copy and set of maps per process, the original's
model), one shared instance (no pid label), and \`instances: pid_keyed\` (one loaded copy,
probes placed once per file, maps keyed by pid: series by pid, as per process; the
default pack's python, jvm, ruby and nodejs programs).$before_note

$(DISCOVERY="$work/discovery" SCALE="$work/scale" DEFAULT_PACK="$work/pack" python3 bench/scale_rows.py goals)

### Discovery latency

From a matching process's exec (the kernel's process-connector event timestamp) to its
instance attached, as the exporter logs it per process. ${TARGETS:-200} fixture targets started
20 ms apart, each living 1 s; the /proc rescan off, so only events find them. "Attaches" counts
attaches logged with an event time (a fork event attaches only a child still running its
parent's image, so a process is not attached twice around its exec). Each setting ran
${DISCOVERY_REPS:-5} times, interleaved; p50, p99 and max are each run's, given as the median over the
runs (min..max); "attaches" is the fewest of any run. The ratio is p99 against the
before-build's per-process p99 with the same background.

| exporter | instances | flags | other processes | runs | attaches | p50 | p99 | max | p99 / before |
|---|---|---|---|---|---|---|---|---|---|
$(python3 bench/scale_rows.py discovery <"$work/discovery")

Per-process instances: the median attach is about 1.5 ms of loading the object through the
verifier and 0.3 ms of attaching; the slowest 5% spend 10 to 20 ms in one syscall,
\`BPF_LINK_CREATE\` of the uprobe-multi link, waiting for an RCU grace period (the
registration takes the kernel's \`dup_mmap_sem\`). \`--attach.expedited-rcu\` expedites grace
periods for the moment of each attach (a kernel-wide setting, so opt-in). Pid-keyed
instances need neither a load nor a link for a process of a file already probed: its pid
goes into a map; the max is the first process, whose file had no links yet.

### Scale

N fixture targets running, then the exporter started: time from its start to all N
attached (startup scan, polled every 20 ms); then each target fires its probe once, so that
maps hold an entry per process as they do in use; kernel memory of the exporter's BPF maps and
programs (memlock in /proc/PID/fdinfo: for maps allocated as used, what they hold), its RSS,
and its exit, from SIGTERM to the process gone, every instance detached. The per-process and
shared program (tests/fixtures/bpf/usdt_counts.bpf.c) has 7 preallocated maps of up to 1024
entries, built with -DBPF_USDT_MAX_SPEC_CNT=8192 for the shared runs (as the exporter builds
inline code for shared instances); the pid-keyed one (tests/fixtures/bpf/pid_counts.bpf.c)
4 hash maps of up to 4096 entries allocated as used. ${SCALE_REPS:-3} runs per case, interleaved;
"attached" is the fewest of any run. Ratios: time to attach / kernel memory / exit.

| processes | instances | exporter | runs | attached | time to attach all | kernel memory | exporter RSS | exit (SIGTERM to gone) | ratio to before |
|---|---|---|---|---|---|---|---|---|---|
$(python3 bench/scale_rows.py scale <"$work/scale")

Exit with per-process and shared instances grows faster than the number of instances (the
rows above). The probable cause, not measured here: the kernel keeps one consumer per link on
the file's uprobe, and unregistering one walks the processes mapping the file and the
consumers left. A pid-keyed program has one link per probe and file, whatever the number of
processes.

![time to attach](bench/scale_attach.svg) ![kernel memory](bench/scale_memory.svg)

### The default pack on CPython processes

N \`python3\` processes ($(python3 --version 2>&1), the first on PATH), each waiting on stdin, then
the exporter with no config (its default pack; rescan off): time from its start to all N
attached (startup included; "attached" counts the bench's own Python driver too), then one \`gc.collect()\` in each; the exporter's kernel memory
(memlock of its BPF objects: every program of the pack, postgresql's per-binary instances
included), its RSS, the \`python_gc_collections_total\` series carrying the processes' pids,
and its exit. This build runs python, jvm, ruby and nodejs pid-keyed; the build before ran
them per process. ${PACK_REPS:-1} run per case. Ratios: time to attach / kernel memory / exit.

| processes | exporter | runs | attached | series by pid | time to attach all | kernel memory | exporter RSS | exit | ratio to before |
|---|---|---|---|---|---|---|---|---|---|
$(python3 bench/scale_rows.py default-pack <"$work/pack")

### Churn

${CHURN_RATE:-10} fixture processes a second for ${CHURN_SECONDS:-60} s, each living 1 s (about 10 alive at a
time) and firing its probe once, under one exporter (events on, rescan off). Exec to
attached p50 / p99 / max; the time to free each detached instance (its links closed and
the kernel done with them, on the reaper's threads) p50 / p99; the BPF objects the
exporter holds before the churn, 3 s after the last process exited and, for pid-keyed
instances, past \`--attach.linger\` (30 s: a file's links stay that long after its last
process, so a process started meanwhile needs none).

| exporter | instances | runs | attaches | exec to attached | freeing an instance | before | 3 s after | 34 s after |
|---|---|---|---|---|---|---|---|---|
$(python3 bench/scale_rows.py churn <"$work/churn")

### Uprobe link types

A single-function uprobe as a perf-event uprobe against a uprobe_multi link
(bench/uprobe_links.rs, the same BPF program on one function of the bench's own process,
conditions interleaved; medians, p90 in brackets):

$links
MD
