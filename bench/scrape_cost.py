"""Scrape cost: maps of 1k, 10k, 100k and 1M keys in one process, and 100
processes of 1k keys each. For each: scrape latency (wall, client side), the
exporter's CPU time per scrape (/proc/PID/stat), response bytes, with gzip off
and on; and the floor measured in the same run (bench/scrape_floor.rs: batch
lookups of the same maps and the same text written, nothing else).
For the 1M-key cases, also the peak RSS of two scrapes at once (two
Prometheus replicas). With BEFORE_EXPORTER set, each case runs with that
exporter too, right before this one (interleaved, each with its own floor).
Prints one JSON line per case and exporter.
Usage: python3 bench/scrape_cost.py EXPORTER TARGET BIG_OBJECT SMALL_OBJECT FLOOR
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from procinfo import attach_then_fire, cpu_seconds, free_port, status_kib, timed_get
from scrape_keys import keys_config

exporter, target, big, small, floor = sys.argv[1:6]
work = tempfile.mkdtemp()
comm = "uexp-scrape"
binary = os.path.join(work, comm)
subprocess.run(["cp", target, binary], check=True)


def get(port, gzip):
    ms, body, _ = timed_get(port, {"Accept-Encoding": "gzip"} if gzip else None)
    return ms, body


def case(exporter, processes, keys, obj, reps, labels):
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(keys_config(obj, labels, comm))
    targets = []
    for _ in range(processes):
        t = subprocess.Popen([binary, "keys", str(keys)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert t.stdout.readline().strip() == "ready"
        targets.append(t)
    port = free_port()
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", config,
                          "--discovery.interval", "0", "--log-level", "warn"])
    try:
        result = measure(e, port, targets, processes, keys, reps, labels)
        result["exporter"] = exporter
        return result
    finally:
        e.send_signal(signal.SIGTERM)
        e.wait()
        for t in targets:
            t.kill()
            t.wait()


def measure(e, port, targets, processes, keys, reps, labels):
    attach_then_fire(port, targets)
    series = get(port, False)[1].count(b"\nuserspace_exporter_bench_keys_total{")
    assert series == processes * keys, f"{series} series, expected {processes * keys}"
    result = {"processes": processes, "keys": keys, "series": series, "labels": labels}
    for gzip in (False, True):
        get(port, gzip)  # warm up
        if not gzip:
            # Peak RSS from here on: the scrapes after the first (5 resets VmHWM).
            with open(f"/proc/{e.pid}/clear_refs", "w") as f:
                f.write("5")
        cpu0 = cpu_seconds(e.pid)
        runs = [get(port, gzip) for _ in range(reps)]
        cpu = (cpu_seconds(e.pid) - cpu0) / reps * 1e3
        ms = [r[0] for r in runs]
        tag = "gzip" if gzip else "plain"
        result[f"{tag}_ms"] = ms
        result[f"{tag}_cpu_ms"] = round(cpu, 2)
        result[f"{tag}_bytes"] = len(runs[-1][1])
    # Peak RSS over the measured scrapes, plain and gzip.
    result["peak_rss_mib"] = round(status_kib(e.pid, "VmHWM") / 1024, 1)
    if keys >= 1000000:
        # Two scrapes at once (one plain, one gzip, as two replicas may ask):
        # the peak over them, and how long each took.
        with open(f"/proc/{e.pid}/clear_refs", "w") as f:
            f.write("5")
        took = {}
        def scrape(gzip):
            took[gzip] = get(port, gzip)[0]
        both = [threading.Thread(target=scrape, args=(gzip,)) for gzip in (False, True)]
        for t in both:
            t.start()
        for t in both:
            t.join()
        result["two_at_once_ms"] = [took[False], took[True]]
        result["two_at_once_peak_rss_mib"] = round(status_kib(e.pid, "VmHWM") / 1024, 1)
    if labels == "uint":
        out = subprocess.run([floor, "scrape_keys", "userspace_exporter_bench_keys_total", str(reps)],
                             check=True, capture_output=True, text=True).stdout
        result.update(json.loads(out))
    return result


cases = [(1, 1000, big, 20, "uint"), (1, 10000, big, 20, "uint"), (1, 100000, big, 10, "uint"),
         (1, 1000000, big, 5, "uint"), (100, 1000, small, 10, "uint"),
         (1, 10000, big, 20, "merged"), (1, 100000, big, 10, "merged"), (1, 1000000, big, 3, "merged")]
only = os.environ.get("CASES")
before = os.environ.get("BEFORE_EXPORTER")
for i, (processes, keys, obj, reps, labels) in enumerate(cases):
    if only and str(i) not in only.split(","):
        continue
    for e in ([before] if before else []) + [exporter]:
        print(json.dumps(case(e, processes, keys, obj, reps, labels)), flush=True)
