"""Scale: N target processes, per-process instances against one shared
instance and one pid-keyed instance.

For each mode and N, starts N fixture targets, then the exporter (release
build), and measures the time from the exporter's start to all N attached
(startup scan, polled every 20 ms on /metrics); then each target fires its
probe once (so that maps hold an entry per process, as they do in use) and the
kernel memory its BPF maps and programs hold (memlock in /proc/PID/fdinfo) and
its RSS are read; last, the time from SIGTERM to its exit (every instance
detached). With BEFORE_EXPORTER, that build runs the per-process and shared
cases too (it has no pid-keyed mode), interleaved. REPS repetitions,
interleaved. Prints JSON lines.
Usage: python3 bench/scale.py EXPORTER TARGET_BINARY OBJECT SHARED_OBJECT PID_KEYED_OBJECT
(SHARED_OBJECT: the same program built with a larger BPF_USDT_MAX_SPEC_CNT, as
the exporter builds inline code for shared instances; PID_KEYED_OBJECT:
tests/fixtures/bpf/pid_counts.bpf.c, keyed by pid.)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from procinfo import free_port, status_kib

exporter, target, obj, shared_obj, pid_keyed_obj = sys.argv[1:6]
COUNTS = [int(n) for n in os.environ.get("COUNTS", "1,10,100,1000").split(",")]
REPS = int(os.environ.get("REPS", "3"))
MODES = os.environ.get("MODES", "per_process,shared,pid_keyed").split(",")
BEFORE = os.environ.get("BEFORE_EXPORTER")



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



def attached(port):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1
    for line in body.splitlines():
        if line.startswith('userspace_exporter_processes{name="scale",state="attached"}'):
            return int(float(line.split()[-1]))
    return -1


def config_text(mode, comm):
    if mode == "pid_keyed":
        return f"""programs:
  - name: scale
    object: {pid_keyed_obj}
    instances: pid_keyed
    metrics:
      counters:
        - name: scale_hits_total
          help: hits
          table: hits
          labels:
            - {{name: pid, size: 8, decoders: [{{name: pid}}]}}
            - {{name: arg, size: 8, decoders: [{{name: uint}}]}}
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"""
    shared = "    instances: shared\n" if mode == "shared" else ""
    return f"""programs:
  - name: scale
    object: {shared_obj if mode == "shared" else obj}
    metrics:
      counters:
        - name: scale_hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
{shared}    attachment: {{binary_name: {comm}}}
"""


def run(build, mode, n):
    work = tempfile.mkdtemp()
    comm = "uexp-scale"
    binary = os.path.join(os.path.dirname(target), comm)
    if not os.path.exists(binary):
        subprocess.run(["cp", target, binary], check=True)
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(config_text(mode, comm))
    targets = [subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(0.5)
    port = free_port()
    log = open(os.path.join(work, "exporter.log"), "w")
    started = time.monotonic()
    proc = subprocess.Popen([build, "--listen-address", f"127.0.0.1:{port}", "-c", config, "--discovery.interval", "0"],
                            stdout=log, stderr=log)
    while attached(port) < n:
        if proc.poll() is not None or time.monotonic() - started > 300:
            break
        time.sleep(0.02)
    seconds = time.monotonic() - started
    for t in targets:
        t.stdin.write(b"usdt 1 1\n")
        t.stdin.flush()
    time.sleep(0.5)
    result = {"exporter": "before" if build == BEFORE else "this", "mode": mode, "processes": n,
              "attached": attached(port), "attach_all_s": round(seconds, 2),
              "kernel_kib": memlock(proc.pid) // 1024, "rss_mib": round(status_kib(proc.pid, "VmRSS") / 1024, 1)}
    # Exit: from SIGTERM to the process gone, every instance detached.
    stopping = time.monotonic()
    proc.terminate()
    proc.wait()
    result["exit_s"] = round(time.monotonic() - stopping, 2)
    for t in targets:
        t.kill()
    for t in targets:
        t.wait()
    return result


for rep in range(REPS):
    for n in COUNTS:
        for mode in MODES:
            for build in ([BEFORE] if BEFORE and mode != "pid_keyed" else []) + [exporter]:
                print(json.dumps(dict(run(build, mode, n), rep=rep)), flush=True)
