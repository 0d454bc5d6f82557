"""The BENCHMARKS.md row of bench/go_probe_cost.py's JSON lines (stdin)."""
import tracer_rows

print(tracer_rows.row("uprobe on `main.work` (stripped: found in `.gopclntab`)", "ns_per_call", "cost_ns"))
