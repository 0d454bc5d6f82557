"""One BENCHMARKS.md row of a probe-cost script that compares the exporter
with bpftrace through procinfo.compare_tracers (its JSON lines on stdin, one
per condition: none, exporter, bpftrace). Each figure is the median
(min..max) over the repetitions; the ratio is the exporter's cost over
bpftrace's, per repetition."""
import json
import statistics
import sys


def fmt(v):
    return "%.0f ns (%.0f..%.0f)" % (statistics.median(v), min(v), max(v))


def row(probes, per, cost):
    """The row for `probes` (its first cell), with the samples under the key
    `per` (ns per operation) and the costs under `cost`."""
    rows = {r["condition"]: r for r in map(json.loads, sys.stdin)}
    costs = {c: rows[c][cost] for c in ("exporter", "bpftrace")}
    ratio = [a / b for a, b in zip(costs["exporter"], costs["bpftrace"]) if b > 0]
    return "| %s | %s | %s | %s | %s | %s | %s |" % (
        probes, fmt(rows["none"][per]), fmt(rows["exporter"][per]), fmt(rows["bpftrace"][per]),
        fmt(costs["exporter"]), fmt(costs["bpftrace"]),
        "%.2f (%.2f..%.2f)" % (statistics.median(ratio), min(ratio), max(ratio)) if ratio else "n/a")
