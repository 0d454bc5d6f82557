"""The default pack on N CPython processes: this build (python, jvm, ruby and
nodejs pid-keyed) against the one before (BEFORE_EXPORTER: per-process
instances), interleaved.

Starts N `python3` processes (the machine's first python3 on PATH), each
waiting on stdin, then the exporter with no config (its embedded default
pack, rescan off) and measures the time from its start to all N attached
(`attached_processes{name="python"}`, polled every 50 ms); then each process
runs one gc.collect(), and the exporter's kernel memory (memlock of its BPF
objects, /proc/PID/fdinfo), its RSS, the number of python_gc_collections_total
series by pid, and its exit (SIGTERM to gone). Prints JSON lines.
Usage: python3 bench/default_pack_scale.py EXPORTER
"""
import glob
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from procinfo import free_port, status_kib

exporter = sys.argv[1]
BEFORE = os.environ.get("BEFORE_EXPORTER")
COUNTS = [int(n) for n in os.environ.get("COUNTS", "100,1000").split(",")]
REPS = int(os.environ.get("REPS", "1"))


def memlock(pid):
    total = 0
    for path in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            for line in open(path):
                if line.startswith("memlock:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def metrics(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    except (OSError, http.client.HTTPException):
        return ""


def attached(body):
    for line in body.splitlines():
        if line.startswith('userspace_exporter_attached_processes{name="python"}'):
            return int(float(line.split()[-1]))
    return -1


def run(build, n):
    procs = [subprocess.Popen(["python3", "-c", "import gc, sys\nfor line in sys.stdin: gc.collect()"],
                              stdin=subprocess.PIPE) for _ in range(n)]
    time.sleep(3)
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([build, "--listen-address", f"127.0.0.1:{port}", "--discovery.interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Other CPython processes on the machine are selected too: at least n.
    while attached(metrics(port)) < n and time.monotonic() - started < 900 and proc.poll() is None:
        time.sleep(0.05)
    seconds = time.monotonic() - started
    for p in procs:
        p.stdin.write(b"x\n")
        p.stdin.flush()
    time.sleep(2)
    body = metrics(port)
    pids = {str(p.pid) for p in procs}
    series = sum(1 for line in body.splitlines()
                 if line.startswith("userspace_exporter_python_gc_collections_total{")
                 and any(f'pid="{pid}"' in line for pid in pids))
    result = {"exporter": "before" if build == BEFORE else "this", "processes": n, "attached": attached(body),
              "attach_all_s": round(seconds, 2), "kernel_kib": memlock(proc.pid) // 1024,
              "rss_mib": round(status_kib(proc.pid, "VmRSS") / 1024, 1), "gc_series": series}
    stopping = time.monotonic()
    proc.terminate()
    proc.wait()
    result["exit_s"] = round(time.monotonic() - stopping, 2)
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()
    return result


for rep in range(REPS):
    for n in COUNTS:
        for build in ([BEFORE] if BEFORE else []) + [exporter]:
            print(json.dumps(dict(run(build, n), rep=rep)), flush=True)
