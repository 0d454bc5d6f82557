"""Discovery latency: exec of a matching process to its instance attached.

Starts the exporter (release build) with process events on and the /proc
rescan off, starts TARGETS fixture processes one after another (each lives
1 s), with BACKGROUND other processes running, and reads the exporter's
per-attach `event_to_attach_ms` (kernel exec/fork event timestamp to attach
done, CLOCK_MONOTONIC). Runs with the default settings and with
--attach.expedited-rcu, REPS times interleaved. Prints one JSON line per
(repetition, setting, background level).
Usage: python3 bench/discovery.py EXPORTER TARGET_BINARY OBJECT
"""
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

exporter, target, obj = sys.argv[1:4]
TARGETS = int(os.environ.get("TARGETS", "200"))
REPS = int(os.environ.get("REPS", "5"))



def run(background, flags):
    work = tempfile.mkdtemp()
    comm = "uexp-bench"
    binary = os.path.join(os.path.dirname(target), comm)
    if not os.path.exists(binary):
        subprocess.run(["cp", target, binary], check=True)
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(f"""programs:
  - name: bench
    object: {obj}
    metrics:
      counters:
        - name: bench_hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
""")
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(background)]
    log_path = os.path.join(work, "exporter.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{free_port()}", "-c", config,
                             "--discovery.interval", "0", "--log-level", os.environ.get("LOG_LEVEL", "info")] + flags,
                            stdout=log, stderr=log)
    time.sleep(1.0)
    targets = []
    for _ in range(TARGETS):
        targets.append(subprocess.Popen(["sh", "-c", f"sleep 1 | {binary} >/dev/null"]))
        time.sleep(0.02)
    for t in targets:
        t.wait()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    for s in sleepers:
        s.kill()
        s.wait()
    text = open(log_path).read()
    if os.environ.get("KEEP_LOG"):
        print(log_path, file=sys.stderr)
    values = [float(m) for m in re.findall(r"event_to_attach_ms=([0-9.]+)", open(log_path).read())]
    values.sort()
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return {"flags": " ".join(flags) or "(defaults)", "background": background, "attached": len(values), "targets": TARGETS,
            "p50_ms": round(statistics.median(values), 2), "p99_ms": round(q(0.99), 2), "max_ms": round(values[-1], 2)}


knob = "/sys/kernel/rcu_expedited"
before = open(knob).read().strip()
for rep in range(REPS):
    for flags in ([], ["--attach.expedited-rcu"]):
        for background in (0, 500):
            print(json.dumps(dict(run(background, flags), rep=rep)), flush=True)
# The exporter puts the knob back after each attach; check that it did.
assert open(knob).read().strip() == before, f"{knob} left changed"
