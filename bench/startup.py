"""Startup: time from exec to serving (a GET on / answers), REPS times each,
for the original's gunicorn example (inline code) with a cold compile cache
(vmlinux.h, headers and clang) and with a warm one, and for the embedded
default pack (no compilation). Prints one JSON line per case with every sample.
Usage: python3 bench/startup.py EXPORTER
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from procinfo import free_port

exporter = sys.argv[1]
REPS = int(os.environ.get("REPS", "5"))
work = tempfile.mkdtemp()


def start_to_serving(args, cache):
    port = free_port()
    started = time.perf_counter()
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "--cache-dir", cache,
                          "--log-level", "warn"] + args, stderr=subprocess.DEVNULL)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            break
        except OSError:
            assert e.poll() is None, "exporter exited"
            time.sleep(0.002)
    elapsed = (time.perf_counter() - started) * 1e3
    e.send_signal(signal.SIGTERM)
    e.wait()
    return elapsed


cases = {"gunicorn example, cold cache": [], "gunicorn example, warm cache": [], "default pack": []}
for i in range(REPS):
    cache = os.path.join(work, f"cache{i}")
    cfg = ["-c", "examples/gunicorn_gc_count.yaml"]
    cases["gunicorn example, cold cache"].append(start_to_serving(cfg, cache))
    cases["gunicorn example, warm cache"].append(start_to_serving(cfg, cache))
    cases["default pack"].append(start_to_serving([], cache))
    shutil.rmtree(cache)
for name, samples in cases.items():
    print(json.dumps({"case": name, "ms": [round(x, 1) for x in samples]}), flush=True)
