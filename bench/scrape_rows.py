"""Table rows for BENCHMARKS.md from bench/scrape_cost.py's JSON lines.
  cost    - the Scrape cost table: this build's rows (not BEFORE_EXPORTER's)
  two     - two scrapes at once against one, for the 1M-key cases
  before  - BEFORE_EXPORTER and this build side by side, case by case
Usage: BEFORE_EXPORTER=... python3 bench/scrape_rows.py cost|two|before < lines"""
import json
import os
import statistics
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
before = os.environ.get("BEFORE_EXPORTER")
ours = [r for r in rows if not before or r.get("exporter") != before]
fmt = lambda v: "%.1f ms (%.1f..%.1f)" % (statistics.median(v), min(v), max(v))
ratio = lambda r: statistics.median(r["plain_ms"]) / r["floor_ms"]
mode = sys.argv[1]
if mode == "cost":
    for r in ours:
        floor = ("%.1f ms | %.2f" % (r["floor_ms"], ratio(r))) if "floor_ms" in r else "- | -"
        print("| %d x %d | %s | %d | %s | %.1f ms | %s | %.1f ms | %d / %d | %s MiB | %s |" % (
            r["processes"], r["keys"], r["labels"], r["series"], fmt(r["plain_ms"]), r["plain_cpu_ms"],
            fmt(r["gzip_ms"]), r["gzip_cpu_ms"], r["plain_bytes"], r["gzip_bytes"], r["peak_rss_mib"], floor))
elif mode == "two":
    for r in (r for r in ours if "two_at_once_peak_rss_mib" in r):
        plain, gzip = r["two_at_once_ms"]
        print("| %d x %d | %s | %s MiB | %s MiB | %.1f ms / %.1f ms |" % (
            r["processes"], r["keys"], r["labels"], r["peak_rss_mib"], r["two_at_once_peak_rss_mib"], plain, gzip))
elif mode == "before":
    for r in rows:
        name = "before (%s)" % os.path.basename(before) if r.get("exporter") == before else "this build"
        floor = ("%.1f ms | %.2f" % (r["floor_ms"], ratio(r))) if "floor_ms" in r else "- | -"
        two = ("%s MiB" % r["two_at_once_peak_rss_mib"]) if "two_at_once_peak_rss_mib" in r else "-"
        print("| %d x %d | %s | %s | %s | %s MiB | %s | %s |" % (
            r["processes"], r["keys"], r["labels"], name, fmt(r["plain_ms"]), r["peak_rss_mib"], two, floor))
