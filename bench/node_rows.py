"""The BENCHMARKS.md row of bench/node_probe_cost.py's JSON lines (stdin)."""
import tracer_rows

print(tracer_rows.row("uprobe + uretprobe on `v8::internal::Heap::PerformGarbageCollection`",
                      "ns_per_collection", "cost_ns"))
