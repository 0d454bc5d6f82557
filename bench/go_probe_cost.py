"""Cost per hit of a count-only uprobe on a stripped Go program's function
(examples/go_stripped.yaml: `main.work`, found by name in Go's function table,
.gopclntab, as the binary has no .symtab), against bpftrace counting on the
same instruction.

tests/fixtures/go, built stripped (`-ldflags=-s -w`) by GO, calls its
`//go:noinline` main.work N times per run (`work N 1` on its stdin) and the
CPU time of all its threads (ns, the sum of /proc/PID/task/*/schedstat: a
uprobe's trap and its BPF program run on the calling thread, which Go's
scheduler may change) per call is measured. As bench/node_probe_cost.py:
paired within one process, after a warm-up, each phase the median of three
runs: calls before the tracer attaches, with it, and after it detached; the
probe's cost is the middle phase minus the mean of the other two. The
tracers: the exporter running the example (an array counter), and bpftrace
running `@ = count()` on the same function. bpftrace cannot name a function
of a stripped Go binary, so it is given the function's file offset (the
address `probes --functions` prints, translated through the program
headers), with --unsafe (it cannot check the instruction boundary without
symbols); every run's count must equal the calls, which shows both probes
sit on the function. Tracers are interleaved in every repetition. Prints
one JSON line per condition with every sample.
Usage: python3 bench/go_probe_cost.py EXPORTER GO
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

exporter, go = sys.argv[1:3]
N = int(os.environ.get("GO_CALLS", "50000"))
REPS = int(os.environ.get("REPS", "5"))
here = os.path.dirname(os.path.abspath(__file__))
example = os.path.join(here, "..", "examples", "go_stripped.yaml")
work = tempfile.mkdtemp()
comm = "uexp-gocost"
binary = os.path.join(work, comm)
subprocess.run([go, "build", "-ldflags=-s -w", "-o", binary, "."], check=True,
               cwd=os.path.join(here, "..", "tests", "fixtures", "go"),
               env=dict(os.environ, GOCACHE=os.path.join(work, "cache"), GOPATH=os.path.join(work, "gopath"),
                        GO111MODULE="on", GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local"))


def work_address():
    """main.work's address, as the exporter finds it in .gopclntab."""
    out = subprocess.run([exporter, "probes", "--binary", binary, "--functions", "main.work"],
                         check=True, capture_output=True, text=True).stdout
    return next(int(line.split()[1], 16) for line in out.splitlines() if line.split()[:1] == ["main.work"])


def file_offset(address):
    """The file offset of a virtual address, through the LOAD program headers."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f[:1] == ["LOAD"]:
            offset, vaddr, filesz = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
    raise SystemExit(f"{address:#x} is in no LOAD segment of {binary}")


OFFSET = file_offset(work_address())


def process_cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += procinfo.cpu_ns(f"{pid}/task/{tid}")
        except OSError:
            pass  # a thread that exited meanwhile
    return total


def start_target():
    p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def measure(p):
    """CPU ns per call: the median of three runs of N calls."""
    runs = []
    for _ in range(3):
        start = process_cpu_ns(p.pid)
        p.stdin.write(f"work {N} 1\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith("ok ")
        runs.append((process_cpu_ns(p.pid) - start) / N)
    return sorted(runs)[1]


def calls(port):
    text = scrape(port)
    line = next((l for l in text.splitlines() if l.startswith("userspace_exporter_go_work_calls_total")), None)
    return int(float(line.split()[-1])) if line else 0


def run(tracer):
    """(ns per call before, with the tracer, after; calls it counted)."""
    p = start_target()
    try:
        measure(p)  # warm-up
        before = measure(p)
        if tracer == "bpftrace":
            bt = procinfo.start_bpftrace(f"uprobe:{binary}:{OFFSET:#x} /pid == {p.pid}/ {{ @calls = count(); }}",
                                         ["--unsafe"])
            probed = measure(p)
            out = procinfo.stop_bpftrace(bt)
            counted = int(out.split("@calls:")[1].split()[0]) if "@calls:" in out else 0
        else:
            e, port = procinfo.start_example(
                exporter, example, work, [('binary_name: "goapp"', f'binary_name: "{comm}"')],
                'userspace_exporter_attached_processes{name="go_calls"} 1')
            first = calls(port)
            probed = measure(p)
            counted = calls(port) - first
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = measure(p)
        p.stdin.write("exit\n")
        p.stdin.flush()
        p.wait()
        return before, probed, after, counted
    finally:
        p.kill()


def check(tracer, counted):
    assert counted == 3 * N, f"{tracer}: counted {counted} calls of {3 * N}"


try:
    samples, costs = procinfo.compare_tracers(run, REPS, check)
finally:
    shutil.rmtree(work, True)
for condition, values in samples.items():
    print(json.dumps({"condition": condition, "calls": N, "ns_per_call": values, "cost_ns": costs.get(condition),
                      "offset": OFFSET}), flush=True)
