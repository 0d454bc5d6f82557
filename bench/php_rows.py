"""The BENCHMARKS.md row of bench/php_probe_cost.py's JSON lines (stdin)."""
import json
import statistics
import sys

rows = {r["condition"]: r for r in map(json.loads, sys.stdin)}
cost = {c: rows[c]["cost_ns_per_hit"] for c in ("exporter", "bpftrace")}
ratio = [a / b for a, b in zip(cost["exporter"], cost["bpftrace"]) if b > 0]


def fmt(v):
    return "%.0f ns (%.0f..%.0f)" % (statistics.median(v), min(v), max(v))


print("| USDT `php:request__startup` and `php:request__shutdown` (semaphore-guarded) | %s | %s | %s | %s | %s | %s |" % (
    fmt(rows["none"]["ns_per_request"]), fmt(rows["exporter"]["ns_per_request"]),
    fmt(rows["bpftrace"]["ns_per_request"]), fmt(cost["exporter"]), fmt(cost["bpftrace"]),
    "%.2f (%.2f..%.2f)" % (statistics.median(ratio), min(ratio), max(ratio)) if ratio else "n/a"))
