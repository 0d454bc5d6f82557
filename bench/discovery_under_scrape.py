"""Discovery while scraping: exec-to-attach latency of new processes, with no
scrape running and while a 200k-series map is scraped in a loop, in the same
exporter run.

One exporter runs two programs: `big` on a probe_target that filled a map with
KEYS keys (KEYS series), and `bench` on fixture targets. Phase `idle` starts
TARGETS targets 50 ms apart; phase `scraping` does the same while a client
scrapes /metrics back to back. Each target fires fixture:hit 5 times 50 ms
after it starts (as a program's first calls would) and stays alive until the
end, so its hits can be counted: all of them are counted only if the target
was attached within those 50 ms. Takes one or more exporter binaries (e.g.
before and after a change), interleaved REPS times. Prints one JSON line per
(repetition, exporter, phase).
Usage: python3 bench/discovery_under_scrape.py TARGET USDT_OBJECT KEYS_TARGET KEYS_OBJECT EXPORTER...
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from procinfo import free_port

target, usdt_obj, keys_target, keys_obj = sys.argv[1:5]
exporters = sys.argv[5:]
TARGETS = int(os.environ.get("TARGETS", "60"))
KEYS = int(os.environ.get("KEYS", "200000"))
REPS = int(os.environ.get("REPS", "3"))
HITS = 5


def copy(binary, comm, work):
    path = os.path.join(work, comm)
    subprocess.run(["cp", binary, path], check=True)
    lib = os.path.join(os.path.dirname(binary), "libfixture.so")
    if os.path.exists(lib) and not os.path.exists(os.path.join(work, "libfixture.so")):
        subprocess.run(["cp", lib, work], check=True)
    return path


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as r:
        return r.read().decode()


def start_targets(binary, arg):
    """TARGETS targets, 50 ms apart; each fires HITS hits 50 ms after it starts."""
    started = []
    for _ in range(TARGETS):
        script = f"(sleep 0.05; echo 'usdt {HITS} {arg}'; sleep 600) | {binary} >/dev/null"
        started.append(subprocess.Popen(["sh", "-c", script], start_new_session=True))
        time.sleep(0.05)
    time.sleep(0.5)
    return started


def hits_counted(text, arg):
    return sum(float(v) for v in re.findall(
        r'^userspace_exporter_bench_hits_total\{arg="%s",pid="\d+"\} (\S+)$' % arg, text, re.M))


def quantiles(values):
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return round(statistics.median(values), 2), round(q(0.99), 2)


def run(exporter):
    work = tempfile.mkdtemp()
    bench = copy(target, "uexp-bench", work)
    scraped = copy(keys_target, "uexp-scrape", work)
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(f"""programs:
  - name: big
    object: {keys_obj}
    metrics:
      counters:
        - name: bench_keys_total
          help: keys
          table: scrape_keys
          labels: [{{name: key, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      bench:key: on_key
    attachment: {{binary_name: uexp-scrape}}
  - name: bench
    object: {usdt_obj}
    metrics:
      counters:
        - name: bench_hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: uexp-bench}}
""")
    keys = subprocess.Popen([scraped, "keys", str(KEYS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert keys.stdout.readline().strip() == "ready"
    port = free_port()
    log_path = os.path.join(work, "exporter.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", config,
                             "--discovery.interval", "0"], stdout=log, stderr=log)
    targets = []
    try:
        deadline = time.time() + 60
        while True:
            try:
                if 'userspace_exporter_attached_processes{name="big"} 1' in get(port):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "keys target not attached"
            time.sleep(0.1)
        keys.stdin.write("go\n")
        keys.stdin.flush()
        keys.stdout.readline()
        series = get(port).count("\nuserspace_exporter_bench_keys_total{")
        assert series == KEYS, f"{series} series, expected {KEYS}"
        results = []
        for phase, arg in (("idle", 1), ("scraping", 2)):
            stop = threading.Event()
            scrapes = []

            def scrape_loop():
                while not stop.is_set():
                    t0 = time.perf_counter()
                    get(port)
                    scrapes.append((time.perf_counter() - t0) * 1e3)

            loop = threading.Thread(target=scrape_loop)
            if phase == "scraping":
                loop.start()
            before = len(re.findall(r"event_to_attach_ms=([0-9.]+)", open(log_path).read()))
            targets += start_targets(bench, arg)
            stop.set()
            if phase == "scraping":
                loop.join()
            values = [float(m) for m in re.findall(r"event_to_attach_ms=([0-9.]+)", open(log_path).read())][before:]
            p50, p99 = quantiles(values)
            results.append({"exporter": exporter, "phase": phase, "targets": TARGETS, "attached": len(values),
                            "hits": hits_counted(get(port), arg), "hits_expected": TARGETS * HITS,
                            "p50_ms": p50, "p99_ms": p99, "max_ms": round(max(values), 2),
                            "scrapes": len(scrapes),
                            "scrape_ms": round(statistics.median(scrapes), 1) if scrapes else None})
        return results
    finally:
        for t in targets:
            os.killpg(t.pid, signal.SIGKILL)
            t.wait()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        keys.kill()
        keys.wait()


for rep in range(REPS):
    for exporter in exporters:
        for result in run(exporter):
            print(json.dumps(dict(result, rep=rep)), flush=True)
