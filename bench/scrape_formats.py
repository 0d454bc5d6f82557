"""Scrape size and cost by exposition format.

histograms: 100 processes, each with 4 exp2 histograms of 32 buckets (slots
0..31, bucket_multiplier 1e-9, as the examples' latency histograms), filled by
bench/bpf/scrape_histograms.bpf.c with 1000 to 4663 observations (a different
number per process, so that no two series are alike); the response bytes of a
text scrape (classic buckets), OpenMetrics, and protobuf with `native: both`
and `native: only`, plain and gzip.

series: one process with a 100k-key counter map (bench/bpf/scrape_keys.bpf.c),
`uint` and `merged` labels as in scrape_cost.py: latency and exporter CPU per
scrape, and bytes, in text and in protobuf.

Prints one JSON line per measurement.
Usage: python3 bench/scrape_formats.py EXPORTER TARGET HISTOGRAM_OBJECT KEYS_OBJECT
"""
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
from procinfo import attach_then_fire, cpu_seconds, free_port, timed_get
from scrape_keys import keys_config

exporter, target, histogram_object, keys_object = sys.argv[1:5]
REPS = int(os.environ.get("REPS", "7"))
work = tempfile.mkdtemp()
comm = "uexp-formats"
binary = os.path.join(work, comm)
subprocess.run(["cp", target, binary], check=True)

ACCEPT = {
    "text": None,
    # What Prometheus 2.42 sends without and with --enable-feature=native-histograms.
    "openmetrics": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                   "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "protobuf": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
                "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
}


def get(port, fmt, gzipped=False):
    headers = {}
    if ACCEPT[fmt]:
        headers["Accept"] = ACCEPT[fmt]
    if gzipped:
        headers["Accept-Encoding"] = "gzip"
    ms, body, received = timed_get(port, headers)
    content_type = received["Content-Type"]
    assert (fmt == "protobuf") == content_type.startswith("application/vnd.google.protobuf"), content_type
    return ms, body


def run(config, processes, keys, measure, step=0):
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(config)
    targets = []
    for p in range(processes):
        t = subprocess.Popen([binary, "keys", str(keys + p * step)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert t.stdout.readline().strip() == "ready"
        targets.append(t)
    port = free_port()
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", path,
                          "--discovery.interval", "0", "--log-level", "warn"])
    try:
        attach_then_fire(port, targets)
        return measure(e, port)
    finally:
        e.send_signal(signal.SIGTERM)
        e.wait()
        for t in targets:
            t.kill()
            t.wait()


def histogram_config(native):
    metrics = "".join(f"""        - name: bench_latency_{n}_seconds
          help: latency {n}
          table: latency_{n}
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 31
          bucket_multiplier: 0.000000001
          native: {native}
          labels: [{{name: bucket, size: 8, decoders: [{{name: uint}}]}}]
""" for n in range(4))
    return f"""programs:
  - name: bench
    object: {histogram_object}
    metrics:
      histograms:
{metrics}    usdt:
      bench:key: on_key
    attachment: {{binary_name: {comm}}}
"""


def sizes(formats):
    def measure(e, port):
        out = []
        for fmt in formats:
            plain = get(port, fmt)[1]
            # urllib does not decompress: this is the gzip body as sent.
            zipped = get(port, fmt, gzipped=True)[1]
            assert gzip.decompress(zipped)[:64] == plain[:64]
            out.append({"fmt": fmt, "bytes": len(plain), "gzip_bytes": len(zipped)})
        return out
    return measure


for native, formats in (("both", ("text", "openmetrics", "protobuf")), ("only", ("protobuf",))):
    for r in run(histogram_config(native), 100, 1000, sizes(formats), step=37):
        r.update({"case": "histograms", "native": native, "processes": 100, "histograms": 4})
        print(json.dumps(r), flush=True)


def costs(e, port):
    out = {}
    for fmt in ("text", "protobuf"):
        get(port, fmt)  # warm up: the label cache, and protobuf label bytes
        out[fmt] = {"ms": [], "cpu_ms": []}
    # Interleaved, so that machine noise hits both formats.
    for _ in range(REPS):
        for fmt in ("text", "protobuf"):
            cpu0 = cpu_seconds(e.pid)
            ms, body = get(port, fmt)
            out[fmt]["ms"].append(ms)
            out[fmt]["cpu_ms"].append((cpu_seconds(e.pid) - cpu0) * 1e3)
            out[fmt]["bytes"] = len(body)
    return out


for labels in ("uint", "merged"):
    for fmt, r in run(keys_config(keys_object, labels, comm), 1, 100000, costs).items():
        r.update({"case": "series", "labels": labels, "fmt": fmt, "series": 100000})
        print(json.dumps(r), flush=True)
