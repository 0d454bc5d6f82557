"""The BENCHMARKS.md row of bench/mariadb_probe_cost.py's JSON lines (stdin)."""
import tracer_rows

print(tracer_rows.row("uprobe on `dispatch_command`, uprobe + uretprobe on `mysql_execute_command`",
                      "ns_per_statement", "cost_ns_per_hit"))
