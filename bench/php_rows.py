"""The BENCHMARKS.md row of bench/php_probe_cost.py's JSON lines (stdin)."""
import tracer_rows

print(tracer_rows.row("USDT `php:request__startup` and `php:request__shutdown` (semaphore-guarded)",
                      "ns_per_request", "cost_ns_per_hit"))
