"""Table rows for BENCHMARKS.md from bench/scrape_formats.py's JSON lines.
Usage: python3 bench/format_rows.py sizes|costs < lines"""
import json
import statistics
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
NAMES = {"text": "text 0.0.4", "openmetrics": "OpenMetrics 1.0.0", "protobuf": "protobuf (delimited)"}
if sys.argv[1] == "sizes":
    sizes = [r for r in rows if r["case"] == "histograms"]
    text = next(r for r in sizes if r["fmt"] == "text")
    for r in sizes:
        sent = "classic" if r["fmt"] != "protobuf" else {"both": "classic + native (`native: both`)",
                                                        "only": "native (`native: only`)"}[r["native"]]
        print("| %s | %s | %d | %d | %.3f | %.3f |" % (
            NAMES[r["fmt"]], sent, r["bytes"], r["gzip_bytes"],
            r["bytes"] / text["bytes"], r["gzip_bytes"] / text["gzip_bytes"]))
else:
    for r in (r for r in rows if r["case"] == "series"):
        ms = r["ms"]
        print("| %s | %s | %.1f ms (%.1f..%.1f) | %.1f ms | %d |" % (
            r["labels"], NAMES[r["fmt"]], statistics.median(ms), min(ms), max(ms),
            statistics.mean(r["cpu_ms"]), r["bytes"]))
