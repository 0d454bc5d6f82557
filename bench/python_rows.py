"""The BENCHMARKS.md rows of bench/python_probe_cost.py's JSON lines (stdin):
one per probe set, the cost per hit being the cost per operation over its
two hits."""
import json
import statistics
import sys

rows = {(r["kind"], r["condition"]): r for r in map(json.loads, sys.stdin)}
PROBES = {
    "gil": "uprobe + uretprobe on `PyEval_RestoreThread` (`os.read` of /dev/zero)",
    "import": "uprobe + uretprobe on `PyImport_ImportModuleLevelObject` (`import os`, already imported)",
    "gc": "uprobe on `invoke_gc_callback*`, hit at start and stop (`gc.collect(0)`)",
}


def fmt(v):
    return "%.0f ns (%.0f..%.0f)" % (statistics.median(v), min(v), max(v))


for kind, probes in PROBES.items():
    per_hit = {c: [x / rows[(kind, c)]["hits_per_operation"] for x in rows[(kind, c)]["cost_ns_per_operation"]]
               for c in ("exporter", "bpftrace")}
    ratio = [a / b for a, b in zip(per_hit["exporter"], per_hit["bpftrace"]) if b > 0]
    print("| %s | %s | %s | %s | %s | %s | %s |" % (
        probes, fmt(rows[(kind, "none")]["ns_per_operation"]), fmt(rows[(kind, "exporter")]["ns_per_operation"]),
        fmt(rows[(kind, "bpftrace")]["ns_per_operation"]), fmt(per_hit["exporter"]), fmt(per_hit["bpftrace"]),
        "%.2f (%.2f..%.2f)" % (statistics.median(ratio), min(ratio), max(ratio)) if ratio else "n/a"))
