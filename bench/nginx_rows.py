"""The BENCHMARKS.md row of bench/nginx_probe_cost.py's JSON lines (stdin)."""
import tracer_rows

print(tracer_rows.row("uprobes on `ngx_http_create_request` and `ngx_http_free_request`",
                      "ns_per_request", "cost_ns_per_hit"))
