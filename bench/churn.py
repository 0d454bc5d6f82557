"""Churn: RATE fixture processes a second for SECONDS seconds, each living 1 s
and firing its probe once, under one exporter (release build, process events
on, rescan off, debug log).

Measures, per (build, mode): exec to attached (the exporter's
`event_to_attach_ms`) and the time to free each detached instance (`instance
detached` `elapsed_ms`: links closed and the kernel done with them), p50 and
p99; and the BPF objects the exporter holds (fdinfo) before the churn, 3 s after the
last process exited and, for pid-keyed instances, 34 s after (past
--attach.linger). Modes: per-process instances (`per_process`) and
`instances: pid_keyed`; with BEFORE_EXPORTER, that build's per-process case
too. REPS repetitions, interleaved. Prints JSON lines.
Usage: python3 bench/churn.py EXPORTER TARGET_BINARY OBJECT PID_KEYED_OBJECT
"""
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from procinfo import free_port

exporter, target, obj, pid_keyed_obj = sys.argv[1:5]
BEFORE = os.environ.get("BEFORE_EXPORTER")
RATE = int(os.environ.get("RATE", "10"))
SECONDS = int(os.environ.get("SECONDS", "60"))
REPS = int(os.environ.get("REPS", "1"))


def held(pid):
    """BPF programs, maps and links the process holds, by fdinfo."""
    counts = {"prog_id": set(), "map_id": set(), "link_id": set()}
    for path in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            for line in open(path):
                key, _, value = line.partition(":")
                if key in counts:
                    counts[key].add(int(value))
        except (OSError, ValueError):
            pass
    return {k.split("_")[0] + "s": len(v) for k, v in counts.items()}


def config(mode, comm):
    if mode == "pid_keyed":
        return f"""programs:
  - name: churn
    object: {pid_keyed_obj}
    instances: pid_keyed
    metrics:
      counters:
        - name: churn_hits_total
          help: hits
          table: hits
          labels:
            - {{name: pid, size: 8, decoders: [{{name: pid}}]}}
            - {{name: arg, size: 8, decoders: [{{name: uint}}]}}
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"""
    return f"""programs:
  - name: churn
    object: {obj}
    metrics:
      counters:
        - name: churn_hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def run(build, mode):
    work = tempfile.mkdtemp()
    comm = "uexp-churn"
    binary = os.path.join(os.path.dirname(target), comm)
    if not os.path.exists(binary):
        subprocess.run(["cp", target, binary], check=True)
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config(mode, comm))
    log_path = os.path.join(work, "exporter.log")
    log = open(log_path, "w")
    port = free_port()
    proc = subprocess.Popen([build, "--listen-address", f"127.0.0.1:{port}", "-c", path,
                             "--discovery.interval", "0", "--log-level", "debug"], stdout=log, stderr=log)
    time.sleep(1.5)
    baseline = held(proc.pid)
    # Each process: one hit 0.2 s after its start, alive for 1 s.
    script = f"sleep 0.2; echo 'usdt 1 1'; sleep 0.8; echo exit"
    children = []
    started = time.monotonic()
    for i in range(RATE * SECONDS):
        due = started + i / RATE
        time.sleep(max(0.0, due - time.monotonic()))
        children.append(subprocess.Popen(["sh", "-c", f"({script}) | {binary} >/dev/null"]))
    for c in children:
        c.wait()
    time.sleep(3)
    after = held(proc.pid)
    # A pid-keyed program's links stay --attach.linger (30 s) after their last process.
    after_linger = None
    if mode == "pid_keyed":
        time.sleep(31)
        after_linger = held(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    text = open(log_path).read()
    attach = [float(m) for m in re.findall(r"event_to_attach_ms=([0-9.]+)", text)]
    free = [float(m.group(1)) for line in text.splitlines() if "instance detached" in line
            for m in [re.search(r"elapsed_ms=([0-9.]+)", line)] if m]
    return {"exporter": "before" if build == BEFORE else "this", "mode": mode, "processes": len(children),
            "attached": len(attach), "attach_p50_ms": round(statistics.median(attach), 2) if attach else None,
            "attach_p99_ms": round(pct(attach, 0.99), 2), "attach_max_ms": round(max(attach), 2) if attach else None,
            "free_p50_ms": round(statistics.median(free), 2) if free else None,
            "free_p99_ms": round(pct(free, 0.99), 2), "freed": len(free), "baseline": baseline, "after": after,
            "after_linger": after_linger}


cases = ([(BEFORE, "per_process")] if BEFORE else []) + [(exporter, "per_process"), (exporter, "pid_keyed")]
for rep in range(REPS):
    for build, mode in cases:
        print(json.dumps(dict(run(build, mode), rep=rep)), flush=True)
