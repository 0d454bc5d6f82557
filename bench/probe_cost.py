"""Cost per probe hit on the traced process, side by side in one run.

For each probe kind (USDT, uprobe, uretprobe) a target hits the probe N times
and reports ns per hit, with: no probe; the exporter's instance of a libbpf
program (bench/bpf/probe_cost.bpf.c); the exporter running the same program in
bcc's dialect (inline code through the compatibility layer); and bpftrace
running `@ = count()` on the same probe; and the exporter with the kernel's BPF
statistics on (`--bpf.stats`; off by default). Conditions are interleaved in every
repetition. Prints one JSON line per (kind, condition) with every sample.
Usage: python3 bench/probe_cost.py EXPORTER TARGET OBJECT
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from procinfo import free_port

exporter, target, obj = sys.argv[1:4]
N = int(os.environ.get("HITS", "1000000"))
REPS = int(os.environ.get("REPS", "5"))
work = tempfile.mkdtemp()
comm = "uexp-probecost"
binary = os.path.join(work, comm)
subprocess.run(["cp", target, binary], check=True)

SPECS = {"usdt": ("usdt", "bench:hit"), "uprobe": ("uprobes", "bench_call"), "uretprobe": ("uretprobes", "bench_call")}
BPFTRACE = {"usdt": f"usdt:{binary}:bench:hit", "uprobe": f"uprobe:{binary}:bench_call",
            "uretprobe": f"uretprobe:{binary}:bench_call"}
FUNCTION = {"usdt": "on_usdt", "uprobe": "on_uprobe", "uretprobe": "on_uretprobe"}



def config(kind, bcc):
    section, spec = SPECS[kind]
    source = (f"    code: |\n      BPF_PERCPU_ARRAY(hits, u64, 1);\n"
              f"      int {FUNCTION[kind]}(struct pt_regs *ctx) {{ hits.increment(0); return 0; }}\n"
              if bcc else f"    object: {obj}\n")
    return f"""programs:
  - name: cost
{source}    metrics:
      counters:
        - name: cost_hits_total
          help: probe hits
          table: hits
          labels: []
    {section}:
      {spec}: {FUNCTION[kind]}
    attachment: {{binary_name: {comm}}}
"""


def start_target(kind):
    p = subprocess.Popen([binary, kind, str(N)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def measure(p):
    p.stdin.write("go\n")
    p.stdin.flush()
    return float(p.stdout.readline().split()[0])


def end(p):
    p.stdin.write("exit\n")
    p.stdin.flush()
    p.wait()


def finish_target(p):
    ns = measure(p)
    end(p)
    return ns


def scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def run(kind, condition):
    if condition == "none":
        return finish_target(start_target(kind)), None
    if condition == "bpftrace":
        bt = subprocess.Popen(["bpftrace", "-e", f"{BPFTRACE[kind]} {{ @ = count(); }}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while "Attaching" not in bt.stdout.readline():
            pass
        time.sleep(0.5)
        ns = finish_target(start_target(kind))
        bt.send_signal(signal.SIGINT)
        out = bt.communicate()[0]
        counted = int(out.split("@:")[1].split()[0]) if "@:" in out else -1
        return ns, counted
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config(kind, condition == "exporter-bcc"))
    t = start_target(kind)
    port = free_port()
    stats = ["--bpf.stats"] if condition == "exporter-stats" else []
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", path,
                          "--cache-dir", os.path.join(work, "cache"), "--log-level", "warn"] + stats)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if f'pid="{t.pid}"' in scrape(port):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "exporter never attached"
            time.sleep(0.05)
        ns = measure(t)
        text = scrape(port)
        end(t)
        counted = int(float(next(l.split()[-1] for l in text.splitlines()
                                 if l.startswith("userspace_exporter_cost_hits_total"))))
        return ns, counted
    finally:
        e.send_signal(signal.SIGTERM)
        e.wait()
        t.kill()


# exporter-stats: the exporter with the kernel's BPF statistics on (--bpf.stats),
# to measure what timing every program run costs.
conditions = ["none", "exporter", "exporter-stats", "exporter-bcc", "bpftrace"]
only = os.environ.get("CONDITIONS")
if only:
    conditions = only.split(",")
samples = {(k, c): [] for k in SPECS for c in conditions}
for rep in range(REPS):
    for kind in SPECS:
        order = conditions[:]
        random.shuffle(order)
        for condition in order:
            ns, counted = run(kind, condition)
            assert counted in (None, N), f"{kind} {condition}: counted {counted} of {N}"
            samples[(kind, condition)].append(ns)
for (kind, condition), values in samples.items():
    print(json.dumps({"kind": kind, "condition": condition, "hits": N, "ns_per_hit": values}), flush=True)
