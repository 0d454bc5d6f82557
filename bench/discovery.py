"""Discovery latency: exec of a matching process to its instance attached.

Starts the exporter (release build) with process events on and the /proc
rescan off, starts TARGETS fixture processes one after another (each lives
1 s), with BACKGROUND other processes running, and reads the exporter's
per-attach `event_to_attach_ms` (kernel exec/fork event timestamp to attach
done, CLOCK_MONOTONIC). Runs with the default settings and with
--attach.expedited-rcu, and with the program pid-keyed (`instances:
pid_keyed`, PID_KEYED_OBJECT: its probes placed once for the file, so a new
process only has its pid written into a map), REPS times interleaved; with
BEFORE_EXPORTER, that build's per-process cases too. Prints one JSON line per
(repetition, build, mode, setting, background level).
Usage: python3 bench/discovery.py EXPORTER TARGET_BINARY OBJECT PID_KEYED_OBJECT
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

exporter, target, obj, pid_keyed_obj = sys.argv[1:5]
BEFORE = os.environ.get("BEFORE_EXPORTER")
TARGETS = int(os.environ.get("TARGETS", "200"))
REPS = int(os.environ.get("REPS", "5"))



def run(build, mode, background, flags):
    work = tempfile.mkdtemp()
    comm = "uexp-bench"
    binary = os.path.join(os.path.dirname(target), comm)
    if not os.path.exists(binary):
        subprocess.run(["cp", target, binary], check=True)
    config = os.path.join(work, "config.yaml")
    pid_keyed = mode == "pid_keyed"
    labels = ("\n            - {name: pid, size: 8, decoders: [{name: pid}]}"
              "\n            - {name: arg, size: 8, decoders: [{name: uint}]}") if pid_keyed \
        else " [{name: arg, size: 8, decoders: [{name: uint}]}]"
    with open(config, "w") as f:
        f.write(f"""programs:
  - name: bench
    object: {pid_keyed_obj if pid_keyed else obj}
{"    instances: pid_keyed" if pid_keyed else ""}
    metrics:
      counters:
        - name: bench_hits_total
          help: hits
          table: hits
          labels:{labels}
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
""")
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(background)]
    log_path = os.path.join(work, "exporter.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([build, "--listen-address", f"127.0.0.1:{free_port()}", "-c", config,
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
    return {"exporter": "before" if build == BEFORE else "this", "mode": mode,
            "flags": " ".join(flags) or "(defaults)", "background": background, "attached": len(values), "targets": TARGETS,
            "p50_ms": round(statistics.median(values), 2), "p99_ms": round(q(0.99), 2), "max_ms": round(values[-1], 2)}


knob = "/sys/kernel/rcu_expedited"
before = open(knob).read().strip()
cases = [(exporter, "per_process", []), (exporter, "per_process", ["--attach.expedited-rcu"]),
         (exporter, "pid_keyed", [])]
if BEFORE:
    cases = [(BEFORE, "per_process", []), (BEFORE, "per_process", ["--attach.expedited-rcu"])] + cases
for rep in range(REPS):
    for build, mode, flags in cases:
        for background in (0, 500):
            print(json.dumps(dict(run(build, mode, background, flags), rep=rep)), flush=True)
# The exporter puts the knob back after each attach; check that it did.
assert open(knob).read().strip() == before, f"{knob} left changed"
