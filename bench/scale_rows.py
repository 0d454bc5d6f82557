"""Tables of the cost-per-process benchmarks (bench/scale_section.sh), from
the JSON lines of bench/discovery.py, bench/scale.py and bench/churn.py.
Usage: python3 bench/scale_rows.py discovery|scale|churn|default-pack|goals|plot-attach|plot-memory < LINES
(goals reads the files named in DISCOVERY, SCALE and DEFAULT_PACK.)
Each case's runs: median (min..max). Ratios compare this build with the
build before (BEFORE_EXPORTER, run interleaved in the same run), case by
case; "-" where the before-build has no such case.
"""
import json
import os
import statistics
import sys


def fmt(values, unit, digits=1):
    return f"%.{digits}f {unit} (%.{digits}f..%.{digits}f)" % (statistics.median(values), min(values), max(values))


def build_name(r):
    return "before" if r.get("exporter") == "before" else "this build"


def ratio(this, before):
    if not before or not this:
        return "-"
    b = statistics.median(before)
    return "%.2f" % (statistics.median(this) / b) if b else "-"


def groups(rows, keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def discovery(rows):
    for (exporter, mode, flags, background), runs in groups(rows, ("exporter", "mode", "flags", "background")).items():
        before = [r for r in rows if r.get("exporter") == "before" and r["mode"] == "per_process"
                  and r["flags"] == "(defaults)" and r["background"] == background]
        p99 = [r["p99_ms"] for r in runs]
        print("| %s | %s | %s | %s | %d | %d of %d | %s | %s | %s | %s |" % (
            build_name(runs[0]), mode, flags, background, len(runs), min(r["attached"] for r in runs),
            runs[0]["targets"], fmt([r["p50_ms"] for r in runs], "ms"), fmt(p99, "ms"),
            fmt([r["max_ms"] for r in runs], "ms"), ratio(p99, [r["p99_ms"] for r in before])))


def scale(rows):
    for (n, mode, exporter), runs in sorted(groups(rows, ("processes", "mode", "exporter")).items(),
                                            key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "before")):
        before = [r for r in rows if r.get("exporter") == "before" and r["processes"] == n
                  and r["mode"] == ("per_process" if mode == "pid_keyed" else mode)]
        field = lambda rs, f: [r[f] for r in rs]
        print("| %d | %s | %s | %d | %d | %s | %s | %s | %s | %s |" % (
            n, mode, build_name(runs[0]), len(runs), min(r["attached"] for r in runs),
            fmt(field(runs, "attach_all_s"), "s", 2), fmt(field(runs, "kernel_kib"), "KiB", 0),
            fmt(field(runs, "rss_mib"), "MiB"), fmt(field(runs, "exit_s"), "s", 2),
            " / ".join(ratio(field(runs, f), field(before, f)) for f in ("attach_all_s", "kernel_kib", "exit_s"))
            if runs[0].get("exporter") != "before" else "-"))


def churn(rows):
    for (exporter, mode), runs in groups(rows, ("exporter", "mode")).items():
        r = runs[0]
        objects = lambda d: "%d progs, %d maps, %d links" % (d["progs"], d["maps"], d["links"])
        print("| %s | %s | %d | %d of %d | %.1f / %.1f / %.1f ms | %s / %s ms | %s | %s | %s |" % (
            build_name(r), mode, len(runs), min(x["attached"] for x in runs), r["processes"],
            r["attach_p50_ms"], r["attach_p99_ms"], r["attach_max_ms"],
            r["free_p50_ms"], r["free_p99_ms"], objects(r["baseline"]), objects(r["after"]),
            objects(r["after_linger"]) if r.get("after_linger") else "-"))


def default_pack(rows):
    for (n, exporter), runs in sorted(groups(rows, ("processes", "exporter")).items(),
                                      key=lambda kv: (kv[0][0], kv[0][1] != "before")):
        before = [r for r in rows if r.get("exporter") == "before" and r["processes"] == n]
        field = lambda rs, f: [r[f] for r in rs]
        print("| %d | %s | %d | %d | %d | %s | %s | %s | %s | %s |" % (
            n, build_name(runs[0]), len(runs), min(r["attached"] for r in runs), min(r["gc_series"] for r in runs),
            fmt(field(runs, "attach_all_s"), "s", 2), fmt([v / 1024 for v in field(runs, "kernel_kib")], "MiB"),
            fmt(field(runs, "rss_mib"), "MiB"), fmt(field(runs, "exit_s"), "s", 2),
            " / ".join(ratio(field(runs, f), field(before, f)) for f in ("attach_all_s", "kernel_kib", "exit_s"))
            if runs[0].get("exporter") != "before" else "-"))


def plot(rows, field, scale_by):
    series = {}
    for r in rows:
        if r.get("exporter") == "before":
            continue
        series.setdefault(r["mode"], {}).setdefault(r["processes"], []).append(r[field])
    print(json.dumps({m: [[n, max(statistics.median(v) * scale_by, 0.001)] for n, v in sorted(points.items())]
                      for m, points in series.items()}))


def goals():
    load = lambda name: [json.loads(l) for l in open(os.environ[name]) if l.strip()]
    disc, scl, pack = load("DISCOVERY"), load("SCALE"), load("DEFAULT_PACK")
    this = lambda r: r.get("exporter") != "before"
    p99 = lambda mode: [r["p99_ms"] for r in disc if this(r) and r["mode"] == mode and r["flags"] == "(defaults)"]
    at = lambda mode, n, f: [r[f] for r in scl if this(r) and r["mode"] == mode and r["processes"] == n]
    met = lambda values, limit: "not measured" if not values else "met" if statistics.median(values) <= limit else "not met"
    packed = lambda n, f, who: [r[f] for r in pack if (this(r) if who == "this" else not this(r)) and r["processes"] == n]
    show = lambda v, unit, digits: fmt(v, unit, digits) if v else "-"
    print("| goal (issue 21) | fixture, pid-keyed | fixture, per-process | default pack, 1000 CPython processes (before: per-process) | goal met (pid-keyed / default pack) |")
    print("|---|---|---|---|---|")
    print("| exec to attached p99, defaults, at most 10 ms | %s | %s | - | %s / - |" % (
        fmt(p99("pid_keyed"), "ms"), fmt(p99("per_process"), "ms"), met(p99("pid_keyed"), 10)))
    for label, field, limit, unit, digits, scale_by in (
            ("attach 1000 running processes, at most 1 s", "attach_all_s", 1, "s", 2, 1),
            ("kernel memory, 1000 processes, at most 64 MiB", "kernel_kib", 64, "MiB", 1, 1 / 1024),
            ("exit with 1000 processes attached, at most 1 s", "exit_s", 1, "s", 2, 1)):
        keyed = [v * scale_by for v in at("pid_keyed", 1000, field)]
        per = [v * scale_by for v in at("per_process", 1000, field)]
        mine = [v * scale_by for v in packed(1000, field, "this")]
        theirs = [v * scale_by for v in packed(1000, field, "before")]
        print("| %s | %s | %s | %s%s | %s / %s |" % (
            label, show(keyed, unit, digits), show(per, unit, digits), show(mine, unit, digits),
            " (before: %s)" % show(theirs, unit, digits) if theirs else "", met(keyed, limit), met(mine, limit)))


what = sys.argv[1]
if what == "goals":
    goals()
else:
    lines = [json.loads(l) for l in sys.stdin if l.strip()]
    {"discovery": discovery, "scale": scale, "churn": churn, "default-pack": default_pack,
     "plot-attach": lambda rows: plot(rows, "attach_all_s", 1),
     "plot-memory": lambda rows: plot(rows, "kernel_kib", 1 / 1024)}[what](lines)
