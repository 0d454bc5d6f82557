"""Cost per hit of the default pack's CPython probes on a build from source
(src/builtin/default.yaml's python program, examples/python.bpf.c), against
bpftrace doing the same work on the same probes.

pyenv's CPython 3.11 (shared libpython, .symtab kept) runs
bench/python_cost_target.py, which does N operations of each kind and reports
the process's CPU time (user + system: a uprobe's trap is system time of the
traced thread) per operation:
  gil     os.read of /dev/zero, one PyEval_RestoreThread: uprobe + uretprobe;
  import  `import os` (already imported), one PyImport_ImportModuleLevelObject:
          uprobe + uretprobe;
  gc      gc.collect(0), the uprobe on invoke_gc_callback* hit twice (start
          and stop).
As bench/node_probe_cost.py: each measurement is paired within one process,
after a warm-up, each phase the median of three runs: operations before the
tracer attaches, with it, and after it detached; the probes' cost is the
middle phase minus the mean of the other two, per operation (two hits each).
The tracers: the exporter running the default pack's python program (a
counter per generation, objects collected, and a pause, import and GIL-wait
histogram, start times by thread), and bpftrace doing the same work on the
same probes (a count per generation, a sum of objects found, start times by
thread, nsecs deltas into hist()). Tracers are interleaved in every
repetition; every run's hits are checked exactly, the exporter's through its
own series. Prints one JSON line per (kind, condition) with every sample.
Usage: python3 bench/python_probe_cost.py EXPORTER PYTHON_OBJECT
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import procinfo
from procinfo import hist_total, scrape

exporter, obj = sys.argv[1:3]
N = int(os.environ.get("PY_OPS", "50000"))
REPS = int(os.environ.get("REPS", "5"))
python = os.environ.get("PYTHON", "/root/.pyenv/versions/3.11.7/bin/python3.11")
here = os.path.dirname(os.path.abspath(__file__))
target = os.path.join(here, "python_cost_target.py")
example = os.path.join(here, "..", "examples", "python.yaml")
work = tempfile.mkdtemp()
atexit.register(shutil.rmtree, work, True)
marker = f"uexp-pycost-{os.getpid()}"
KINDS = ["gil", "import", "gc"]
# Blocking calls of each command outside its loop: the read of the command
# line and the write of the answer (python_cost_target.py).
EXTRA_BLOCKING = 2


def start_target():
    p = subprocess.Popen([python, target, str(N), marker],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def libpython(pid):
    """The libpython the target maps (bpftrace needs its path)."""
    for line in open(f"/proc/{pid}/maps"):
        path = line.split()[-1]
        if re.search(r"/libpython3\.\d+\.so", path):
            return path
    sys.exit(f"{python} maps no libpython: a shared build (--enable-shared) is needed")


def gc_symbol(lib):
    """The copy of invoke_gc_callback the pack's glob finds (3.11: .isra.0)."""
    out = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
    names = sorted({l.split()[-1] for l in out.splitlines() if l.split()[-1].startswith("invoke_gc_callback")})
    assert len(names) == 1, f"{lib}: invoke_gc_callback copies {names}"
    return names[0]


def measure(p, kind):
    """CPU ns per operation: the median of three runs, so that one run slowed
    by the machine's other load does not decide."""
    runs = []
    for _ in range(3):
        p.stdin.write(kind + "\n")
        p.stdin.flush()
        runs.append(float(p.stdout.readline().split()[0]))
    return sorted(runs)[1]


def phase(p):
    """Each kind measured; returns once the target waits for its next command."""
    result = {kind: measure(p, kind) for kind in KINDS}
    # The answer's write takes the GIL back after the answer is out: wait
    # until the target is blocked reading stdin again (syscall 0, read), so
    # that this phase's last PyEval_RestoreThread is done before a tracer
    # attaches or its counts are read.
    deadline = time.time() + 10
    while not open(f"/proc/{p.pid}/syscall").read().startswith("0 0x0 "):
        assert time.time() < deadline, "the target did not go back to reading stdin"
        time.sleep(0.001)
    return result


def start_bpftrace(pid, lib, gc):
    # The same work as python.bpf.c: invoke_gc_callback's phase string (its
    # second argument in 3.11's .isra.0 copy), a count per generation and a
    # start time on "start", the objects found and the pause on "stop";
    # entry times by thread and their deltas into a histogram for the others.
    program = f"""
uprobe:{lib}:{gc} /pid == {pid}/ {{
  $phase = str(arg1, 6);
  if ($phase == "start") {{ @collections[arg2] = count(); @gc_start[tid] = nsecs; }}
  if ($phase == "stop") {{ @collected[arg2] = sum(arg3 + arg4); @pause = hist(nsecs - @gc_start[tid]); delete(@gc_start[tid]); }}
}}
uprobe:{lib}:PyImport_ImportModuleLevelObject /pid == {pid}/ {{ @import_start[tid] = nsecs; }}
uretprobe:{lib}:PyImport_ImportModuleLevelObject /pid == {pid} && @import_start[tid]/ {{
  @import = hist(nsecs - @import_start[tid]); delete(@import_start[tid]);
}}
uprobe:{lib}:PyEval_RestoreThread /pid == {pid}/ {{ @gil_start[tid] = nsecs; }}
uretprobe:{lib}:PyEval_RestoreThread /pid == {pid} && @gil_start[tid]/ {{
  @gil = hist(nsecs - @gil_start[tid]); delete(@gil_start[tid]);
}}
"""
    return procinfo.start_bpftrace(program)


def stop_bpftrace(bt):
    out = procinfo.stop_bpftrace(bt)
    collections = re.search(r"^@collections\[0\]: (\d+)", out, re.M)
    return {"gil": hist_total(out, "gil"), "import": hist_total(out, "import"),
            "gc": int(collections.group(1)) if collections else 0}


def start_exporter():
    return procinfo.start_example(
        exporter, example, work,
        [("object: python.bpf.o", f"object: {obj}"),
         ('    attachment:\n      - exe_path: "**/python3*"\n      - maps: "**/libpython3.*.so*"\n',
          f'    attachment:\n      - cmdline: "{marker}"\n')],
        'userspace_exporter_attached_processes{name="python"} 1')


def series(text, name, pid, extra=None):
    return int(procinfo.sample(text, f"userspace_exporter_{name}", dict(extra or {}, pid=str(pid))))


def exporter_counts(text, pid):
    return {"gil": series(text, "python_gil_wait_seconds_count", pid),
            "import": series(text, "python_import_duration_seconds_count", pid),
            "gc": series(text, "python_gc_collections_total", pid, {"generation": "0"})}


def run(tracer):
    """Per kind: (ns per operation before, with the tracer, after); the hits it counted."""
    p = start_target()
    try:
        lib = libpython(p.pid)
        phase(p)  # warm-up
        before = phase(p)
        if tracer == "bpftrace":
            bt = start_bpftrace(p.pid, lib, gc_symbol(lib))
            probed = phase(p)
            counted = stop_bpftrace(bt)
        else:
            e, port = start_exporter()
            first = exporter_counts(scrape(port), p.pid)
            probed = phase(p)
            last = exporter_counts(scrape(port), p.pid)
            counted = {k: last[k] - first[k] for k in KINDS}
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = phase(p)
        p.stdin.write("exit\n")
        p.stdin.flush()
        p.wait()
        return before, probed, after, counted
    finally:
        p.kill()


# Per phase three runs of each kind: every run's blocking calls, plus the
# read and write of each of the phase's 3 x 3 commands.
expected = {"gil": 3 * N + 9 * EXTRA_BLOCKING, "import": 3 * N, "gc": 3 * N}
tracers = ["exporter", "bpftrace"]
samples = {(k, c): [] for k in KINDS for c in ["none"] + tracers}
costs = {(k, c): [] for k in KINDS for c in tracers}
for rep in range(REPS):
    order = tracers[:]
    random.shuffle(order)
    for tracer in order:
        before, probed, after, counted = run(tracer)
        assert counted == expected, f"{tracer}: counted {counted}, expected {expected}"
        for k in KINDS:
            samples[(k, "none")] += [before[k], after[k]]
            samples[(k, tracer)].append(probed[k])
            costs[(k, tracer)].append(probed[k] - (before[k] + after[k]) / 2)
for (kind, condition), values in samples.items():
    print(json.dumps({"kind": kind, "condition": condition, "operations": N, "hits_per_operation": 2,
                      "ns_per_operation": values, "cost_ns_per_operation": costs.get((kind, condition))}),
          flush=True)
