"""Cost per hit of the Node.js example's probes (examples/nodejs.yaml: a
uprobe and a uretprobe on V8's v8::internal::Heap::PerformGarbageCollection,
named by its C++ name), against bpftrace counting on the same two probes.

The machine's node runs N young-generation collections (gc({type:
'minor'})), each one hit of each probe, with --single-threaded-gc (no helper
threads to vary), and reports the CPU time (user + system: a uprobe's trap is
system time of the traced thread) per collection in ns. Each measurement is
paired within one node process, after a warm-up, each the median of three
runs: N collections without a probe, N with the tracer attached, N after
it detached; the probes' cost is the middle run minus the mean of the other
two. The tracers: the exporter running the example (a counter and a pause
histogram per kind), and bpftrace running `@ = count()` on the uprobe and the
uretprobe of the same function (its quoted demangled name). Tracers are
interleaved in every repetition; every run's collections are checked against
the count. Prints one JSON line per condition with every sample.
Usage: python3 bench/node_probe_cost.py EXPORTER NODEJS_OBJECT
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import procinfo
from procinfo import scrape

exporter, obj = sys.argv[1:3]
N = int(os.environ.get("GCS", "5000"))
REPS = int(os.environ.get("REPS", "5"))
node = os.path.realpath(shutil.which("node"))
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_gc_target.js")
work = tempfile.mkdtemp()
marker = f"uexp-nodecost-{os.getpid()}"
FUNCTION = "v8::internal::Heap::PerformGarbageCollection"
example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "nodejs.yaml")


def start_target():
    p = subprocess.Popen([node, "--expose-gc", "--single-threaded-gc", target, str(N), marker],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def measure(p):
    """CPU ns per collection (the process's, all threads): the median of
    three runs, so that one run slowed by the machine's other load (runs of
    twice the usual time are seen here) does not decide."""
    runs = []
    for _ in range(3):
        p.stdin.write("go\n")
        p.stdin.flush()
        runs.append(float(p.stdout.readline().split()[0]))
    return sorted(runs)[1]


def end(p):
    p.stdin.write("exit\n")
    p.stdin.flush()
    p.wait()


def start_bpftrace(pid):
    program = (f'uprobe:{node}:"{FUNCTION}" /pid == {pid}/ {{ @calls = count(); }} '
               f'uretprobe:{node}:"{FUNCTION}" /pid == {pid}/ {{ @returns = count(); }}')
    return procinfo.start_bpftrace(program)


def stop_bpftrace(bt):
    out = procinfo.stop_bpftrace(bt)
    return min(int(out.split(f"@{k}:")[1].split()[0]) for k in ("calls", "returns"))


def start_exporter():
    return procinfo.start_example(
        exporter, example, work,
        [("object: nodejs.bpf.o", f"object: {obj}"), ('exe_path: "**/bin/node"', f'cmdline: "{marker}"')],
        'userspace_exporter_attached_processes{name="nodejs"} 1')


def run(tracer):
    """(ns per collection before, with the tracer, after; collections it counted)."""
    p = start_target()
    try:
        measure(p)  # warm-up: the first run also grows the heap and compiles the loop
        before = measure(p)
        if tracer == "bpftrace":
            bt = start_bpftrace(p.pid)
            probed = measure(p)
            counted = stop_bpftrace(bt)
        else:
            e, port = start_exporter()
            first = scavenges(scrape(port), p.pid)
            probed = measure(p)
            counted = scavenges(scrape(port), p.pid) - first
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = measure(p)
        end(p)
        return before, probed, after, counted
    finally:
        p.kill()


def scavenges(text, pid):
    return int(procinfo.sample(text, "userspace_exporter_nodejs_gc_collections_total",
                               {"kind": "scavenge", "pid": str(pid)}))


def check(tracer, counted):
    # The tracer sees every scavenge of the run: ours, and any V8 adds.
    assert counted >= N, f"{tracer}: counted {counted} of {N}"


samples, costs = procinfo.compare_tracers(run, REPS, check)
for condition, values in samples.items():
    print(json.dumps({"condition": condition, "collections": N, "ns_per_collection": values,
                      "cost_ns": costs.get(condition)}), flush=True)
