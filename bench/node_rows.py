"""The BENCHMARKS.md row of bench/node_probe_cost.py's JSON lines (stdin)."""
import json
import statistics
import sys

rows = {r["condition"]: r for r in map(json.loads, sys.stdin)}
cost = {c: rows[c]["cost_ns"] for c in ("exporter", "bpftrace")}
ratio = [a / b for a, b in zip(cost["exporter"], cost["bpftrace"]) if b > 0]


def fmt(v):
    return "%.0f ns (%.0f..%.0f)" % (statistics.median(v), min(v), max(v))


print("| uprobe + uretprobe on `v8::internal::Heap::PerformGarbageCollection` | %s | %s | %s | %s | %s | %s |" % (
    fmt(rows["none"]["ns_per_collection"]), fmt(rows["exporter"]["ns_per_collection"]),
    fmt(rows["bpftrace"]["ns_per_collection"]), fmt(cost["exporter"]), fmt(cost["bpftrace"]),
    "%.2f (%.2f..%.2f)" % (statistics.median(ratio), min(ratio), max(ratio)) if ratio else "n/a"))
