#!/usr/bin/env bash
# Runs the benchmarks and writes BENCHMARKS.md. Usage: sudo bash bench/run.sh
# Each figure is the median of REPS runs with its min..max spread; runs of the
# things compared are interleaved in the same loop so machine noise hits both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# bpftrace runs the probe-cost comparison; only the benchmarks need it.
if ! command -v bpftrace >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bpftrace >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bpftrace >/dev/null; }
fi
REPS=${REPS:-7}
cargo build --release --quiet
exporter=$PWD/target/release/ebpf-userspace-exporter
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now_ms() { date +%s%N | awk '{printf "%.1f", $1 / 1e6}'; }
stats() { sort -n | awk '{v[NR]=$1} END {printf "%.0f ms (%.0f..%.0f)", v[int((NR+1)/2)], v[1], v[NR]}'; }

# Compile time of the original's gunicorn example (inline bcc code):
#  cold   - empty cache: vmlinux.h from kernel BTF, headers laid out, clang run
#  clang  - headers cached, object not: the clang run alone
#  cached - everything cached: no clang
config=examples/gunicorn_gc_count.yaml
: > "$work/cold"; : > "$work/clang"; : > "$work/cached"
for i in $(seq "$REPS"); do
    cache="$work/cache-$i"
    t0=$(now_ms); "$exporter" --cache-dir "$cache" compile -c "$config" -o "$work/out" >/dev/null; t1=$(now_ms)
    rm -rf "$cache/objects"
    "$exporter" --cache-dir "$cache" compile -c "$config" -o "$work/out" >/dev/null; t2=$(now_ms)
    "$exporter" --cache-dir "$cache" compile -c "$config" -o "$work/out" >/dev/null; t3=$(now_ms)
    awk "BEGIN {print $t1 - $t0}" >> "$work/cold"
    awk "BEGIN {print $t2 - $t1}" >> "$work/clang"
    awk "BEGIN {print $t3 - $t2}" >> "$work/cached"
done
cold=$(stats < "$work/cold"); clang_only=$(stats < "$work/clang"); cached=$(stats < "$work/cached")

# Discovery latency: a fixture target built like the tests' (cc, clang against
# the exporter's own headers), then bench/discovery.py.
fixture="$work/fixture"
mkdir -p "$fixture"
cc -O1 -g -shared -fPIC -o "$fixture/libfixture.so" tests/fixtures/libfixture.c
cc -O1 -g -o "$fixture/uexp-target" tests/fixtures/target.c tests/fixtures/guarded.c -L"$fixture" -lfixture -Wl,-rpath,'$ORIGIN'
"$exporter" headers -o "$fixture/include" >/dev/null
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c tests/fixtures/bpf/usdt_counts.bpf.c -o "$fixture/usdt_counts.bpf.o"
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -DBPF_USDT_MAX_SPEC_CNT=8192 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c tests/fixtures/bpf/usdt_counts.bpf.c -o "$fixture/usdt_counts_shared.bpf.o"
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c tests/fixtures/bpf/pid_counts.bpf.c -o "$fixture/pid_counts.bpf.o"
# Cost per probe hit: bench/probe_cost.py, no probe / exporter (libbpf object) /
# exporter (bcc-dialect inline code) / bpftrace, interleaved.
cc -O1 -g -o "$fixture/probe_target" bench/probe_target.c
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c bench/bpf/probe_cost.bpf.c -o "$fixture/probe_cost.bpf.o"
probe_cost=$(HITS=${HITS:-200000} REPS=$REPS python3 bench/probe_cost.py "$exporter" "$fixture/probe_target" "$fixture/probe_cost.bpf.o")
probe_rows=$(echo "$probe_cost" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
by = {(r["kind"], r["condition"]): r["ns_per_hit"] for r in rows}
fmt = lambda v: "%.0f ns (%.0f..%.0f)" % (statistics.median(v), min(v), max(v)) if statistics.median(v) >= 10 else "%.1f ns (%.1f..%.1f)" % (statistics.median(v), min(v), max(v))
for kind in ("usdt", "uprobe", "uretprobe"):
    none = by[(kind, "none")]
    # Cost of the probe: each run minus the median no-probe run; ratios per repetition.
    cost = {c: [x - statistics.median(none) for x in by[(kind, c)]] for c in ("exporter", "exporter-stats", "exporter-bcc", "bpftrace")}
    ratio = [a / b for a, b in zip(cost["exporter"], cost["bpftrace"])]
    bcc = [a / b for a, b in zip(cost["exporter-bcc"], cost["exporter"])]
    # What the kernel statistics add per hit: stats on minus stats off, per repetition.
    stats = [a - b for a, b in zip(by[(kind, "exporter-stats")], by[(kind, "exporter")])]
    print("| %s | %s | %s | %s | %s | %s | %.3f (%.3f..%.3f) | %.3f (%.3f..%.3f) | %+.0f ns (%+.0f..%+.0f) |" % (
        kind, fmt(none), fmt(by[(kind, "exporter")]), fmt(by[(kind, "exporter-stats")]), fmt(by[(kind, "exporter-bcc")]), fmt(by[(kind, "bpftrace")]),
        statistics.median(ratio), min(ratio), max(ratio), statistics.median(bcc), min(bcc), max(bcc),
        statistics.median(stats), min(stats), max(stats)))
')

# The Node.js example's V8 probes (a uprobe and a uretprobe named by their C++
# name) against bpftrace on the same two probes: bench/node_probe_cost.py.
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c examples/nodejs.bpf.c -o "$fixture/nodejs.bpf.o"
node_cost=$(GCS=${GCS:-5000} REPS=$REPS python3 bench/node_probe_cost.py "$exporter" "$fixture/nodejs.bpf.o")
node_rows=$(echo "$node_cost" | python3 bench/node_rows.py)

# The nginx example's uprobes (exported functions, one hit each per request)
# against bpftrace on the same two probes: bench/nginx_probe_cost.py.
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c examples/nginx.bpf.c -o "$fixture/nginx.bpf.o"
nginx_cost=$(REQUESTS=${REQUESTS:-20000} REPS=$REPS python3 bench/nginx_probe_cost.py "$exporter" "$fixture/nginx.bpf.o")
nginx_rows=$(echo "$nginx_cost" | python3 bench/nginx_rows.py)

# The MariaDB example's uprobes (exported C++ functions, three hits per
# statement) against bpftrace doing the same work on the same probes:
# bench/mariadb_probe_cost.py. It prints the BENCHMARKS.md section.
mariadb_section=$(REPS=$REPS bash bench/mariadb_section.sh "$exporter" "$fixture/include")

# A count-only uprobe on a stripped Go program's function (found in
# .gopclntab) against bpftrace on the same instruction: bench/go_probe_cost.py.
# It prints the BENCHMARKS.md section.
go_section=$(REPS=$REPS bash bench/go_section.sh "$exporter")

# The default pack's CPython probes on pyenv's 3.11 (a build from source:
# shared libpython, .symtab kept) against bpftrace doing the same work on the
# same probes: bench/python_probe_cost.py. It prints the BENCHMARKS.md section.
python_section=$(REPS=$REPS bash bench/python_section.sh "$exporter" "$fixture/include")
# PHP-FPM's request probes: measured once by hand (bench/php_probe_cost.py),
# their cost lost in a request's variation; bench/php_note.md says so.

# Cost per process (issue 21): discovery latency, scale, churn, uprobe link
# types; this build against BEFORE_EXPORTER where it is given.
scale_section=$(bash bench/scale_section.sh "$exporter" "$fixture")
# Scrape cost against its floor (bench/scrape_floor.rs, built as a cargo example).
cargo build --release --quiet --example scrape_floor
for size in big:1100000 small:1024; do
    clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -DMAX_KEYS=${size#*:} -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
        -c bench/bpf/scrape_keys.bpf.c -o "$fixture/scrape_keys_${size%%:*}.bpf.o"
done
# Discovery while a 200k-series map is scraped back to back (issue 11), against
# an older exporter binary too when BEFORE_EXPORTER names one.
under_scrape=$(REPS=${UNDER_SCRAPE_REPS:-5} TARGETS=${TARGETS_UNDER_SCRAPE:-60} python3 bench/discovery_under_scrape.py "$fixture/uexp-target" \
    "$fixture/usdt_counts.bpf.o" "$fixture/probe_target" "$fixture/scrape_keys_big.bpf.o" \
    ${BEFORE_EXPORTER:+"$BEFORE_EXPORTER"} "$exporter")
under_scrape_rows=$(echo "$under_scrape" | BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 -c '
import json, os, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
fmt = lambda v: "%.1f ms (%.1f..%.1f)" % (statistics.median(v), min(v), max(v))
before = os.environ.get("BEFORE_EXPORTER")
for exporter in dict.fromkeys(r["exporter"] for r in rows):
    name = "before (%s)" % os.path.basename(exporter) if exporter == before else "this build"
    idle = [r for r in rows if r["exporter"] == exporter and r["phase"] == "idle"]
    for phase in ("idle", "scraping"):
        runs = [r for r in rows if r["exporter"] == exporter and r["phase"] == phase]
        ratio = [r["p99_ms"] / i["p99_ms"] for r, i in zip(runs, idle)]
        scrape = [r["scrape_ms"] for r in runs if r["scrape_ms"]]
        print("| %s | %s | %d | %d of %d | %d of %d | %s | %s | %s | %s |" % (
            name, phase, len(runs), min(r["attached"] for r in runs), runs[0]["targets"],
            min(r["hits"] for r in runs), runs[0]["hits_expected"],
            fmt([r["p50_ms"] for r in runs]), fmt([r["p99_ms"] for r in runs]),
            "%.2f (%.2f..%.2f)" % (statistics.median(ratio), min(ratio), max(ratio)),
            fmt(scrape) if scrape else "-"))
')
scrape=$(BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 bench/scrape_cost.py "$exporter" "$fixture/probe_target" "$fixture/scrape_keys_big.bpf.o" \
    "$fixture/scrape_keys_small.bpf.o" target/release/examples/scrape_floor)
scrape_rows=$(echo "$scrape" | BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 bench/scrape_rows.py cost)
scrape_two_rows=$(echo "$scrape" | BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 bench/scrape_rows.py two)
scrape_before_rows=$(echo "$scrape" | BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 bench/scrape_rows.py before)
echo "$scrape" | BEFORE_EXPORTER=${BEFORE_EXPORTER:-} python3 -c '
import json, os, statistics, sys
before = os.environ.get("BEFORE_EXPORTER")
rows = [json.loads(l) for l in sys.stdin]
rows = [r for r in rows if r["processes"] == 1 and r["labels"] == "uint" and (not before or r["exporter"] != before)]
series = {"exporter": [[r["keys"], statistics.median(r["plain_ms"])] for r in rows],
          "exporter, gzip": [[r["keys"], statistics.median(r["gzip_ms"])] for r in rows],
          "floor": [[r["keys"], r["floor_ms"]] for r in rows]}
print(json.dumps(series))' | python3 bench/plot.py bench/scrape_cost.svg "Scrape latency by map size" "keys in the map" "ms per scrape"
# Classic against native histograms: response size by format (100 processes x 4
# exp2 histograms), and text against protobuf for 100k series (bench/scrape_formats.py).
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -I"$fixture/include" \
    -c bench/bpf/scrape_histograms.bpf.c -o "$fixture/scrape_histograms.bpf.o"
formats=$(REPS=$REPS python3 bench/scrape_formats.py "$exporter" "$fixture/probe_target" \
    "$fixture/scrape_histograms.bpf.o" "$fixture/scrape_keys_big.bpf.o")
format_size_rows=$(echo "$formats" | python3 bench/format_rows.py sizes)
format_cost_rows=$(echo "$formats" | python3 bench/format_rows.py costs)

# Idle CPU and startup.
idle=$(python3 bench/idle.py "$exporter" "$fixture/uexp-target" "$fixture/usdt_counts.bpf.o")
idle_rows=$(echo "$idle" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("| %s | %s s | %s s | %s %% |" % (r["interval"], r["seconds"], r["cpu_s"], r["cpu_percent"]))
')
startup=$(REPS=$REPS python3 bench/startup.py "$exporter")
startup_rows=$(echo "$startup" | python3 -c '
import json, statistics, sys
for line in sys.stdin:
    r = json.loads(line)
    print("| %s | %.0f ms (%.0f..%.0f) |" % (r["case"], statistics.median(r["ms"]), min(r["ms"]), max(r["ms"])))
')

{
    echo "# Benchmarks"
    echo
    echo "Written by \`sudo bash bench/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB,"
    echo "Linux $(uname -r), $(clang --version | head -1). Median of $REPS runs, (min..max)."
    [ -z "${BACKGROUND:-}" ] || echo "Also running on the machine throughout: $BACKGROUND."
    echo
    echo "## Compiling inline code"
    echo
    echo "The original's gunicorn example (\`$config\`), \`ebpf-userspace-exporter compile\`, whole command:"
    echo
    echo "| cache | time |"
    echo "|---|---|"
    echo "| cold (generate vmlinux.h from kernel BTF, lay out headers, run clang) | $cold |"
    echo "| headers cached, object not (clang runs) | $clang_only |"
    echo "| object cached (no clang) | $cached |"
    echo
    echo "## Cost per probe hit"
    echo
    echo "bench/probe_target.c hits one probe ${HITS:-200000} times in a loop and reports ns per hit;"
    echo "each probe's BPF program adds one to a per-CPU counter (bench/bpf/probe_cost.bpf.c), the"
    echo "same work as bpftrace's \`@ = count()\`. Conditions run interleaved, in a shuffled order,"
    echo "$REPS times; every run's count is checked against the number of hits. The ratio columns"
    echo "compare the probe's cost (a run's ns per hit minus the median no-probe run) per repetition."
    echo
    echo "| probe | no probe | exporter (libbpf object, defaults) | exporter, --bpf.stats | exporter (bcc-style inline code) | bpftrace $(bpftrace --version | awk '{print $2}') | exporter / bpftrace | bcc-style / libbpf | BPF statistics: on - off |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "$probe_rows"
    echo
    echo "Goal (issue 6): the exporter's cost at most 1.05 times bpftrace's. The kernel's trap"
    echo "dominates: a uprobe on a function's first instruction is trapped and single-stepped,"
    echo "while a USDT probe sits on a nop, which this kernel can turn into a cheaper call."
    echo
    echo "### Node.js: V8's garbage collection probes"
    echo
    echo "\`examples/nodejs.yaml\` puts a uprobe and a uretprobe on V8's"
    echo "\`v8::internal::Heap::PerformGarbageCollection\` (named by its C++ name), hit once each per"
    echo "collection. bench/node_gc_target.js runs ${GCS:-5000} young-generation collections"
    echo "(\`gc({type: 'minor'})\`, \`--single-threaded-gc\`) in the machine's node ($(node --version)) and"
    echo "reports the process's CPU time (user + system: a uprobe's trap is system time) per collection:"
    echo "with no probe, with the exporter running the example (a counter and a pause histogram"
    echo "per kind), and with bpftrace counting (\`@ = count()\`) on the same two probes. A collection"
    echo "varies with the machine's load more than the probes cost, so each measurement is paired in"
    echo "one node process, after a warm-up, each phase the median of three runs: collections before"
    echo "the tracer attaches, with it,"
    echo "and after it detached; the probes' cost is the middle run minus the mean of the other two."
    echo "Tracers interleaved, $REPS times; each run's count is checked; the ratio is per repetition."
    echo
    echo "| probes | no probe (CPU ns per collection) | exporter | bpftrace $(bpftrace --version | awk '{print $2}') | probes' cost: exporter | probes' cost: bpftrace | exporter / bpftrace |"
    echo "|---|---|---|---|---|---|---|"
    echo "$node_rows"
    echo
    echo "### nginx: request probes on exported functions"
    echo
    echo "\`examples/nginx.yaml\` puts uprobes on \`ngx_http_create_request\` and \`ngx_http_free_request\`"
    echo "(exported by Debian's nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///'); both begin with a \`push\`, which the kernel emulates"
    echo "instead of single-stepping), hit once each per request. bench/nginx_probe_cost.py serves"
    echo "${REQUESTS:-20000} keep-alive requests per run (\`return 200\`, pipelined 100 at a time) from one"
    echo "worker and reads the worker's on-CPU time (\`/proc/PID/schedstat\`: the trap and the BPF"
    echo "program run on it) per request: with no probe, with the exporter running the example (a"
    echo "counter, a start time per connection, a duration histogram), and with bpftrace counting"
    echo "(\`@ = count()\`) on the same two uprobes. Paired in one nginx as for Node.js above (phases"
    echo "before, with and after the tracer, each the median of three runs); the cost per hit is the"
    echo "middle phase minus the mean of the others, halved. Tracers interleaved, $REPS times; each run's"
    echo "count is checked."
    echo
    echo "| probes | no probe (worker CPU ns per request) | exporter | bpftrace $(bpftrace --version | awk '{print $2}') | cost per hit: exporter | cost per hit: bpftrace | exporter / bpftrace |"
    echo "|---|---|---|---|---|---|---|"
    echo "$nginx_rows"
    echo
    echo "$mariadb_section"
    echo
    echo "$go_section"
    echo
    echo "$python_section"
    echo
    cat bench/php_note.md
    echo
    echo "$scale_section"
    echo
    echo "## Discovery while a 200k-series map is scraped"
    echo
    echo "One exporter runs a program on a target whose map holds 200,000 keys (200,000 series)"
    echo "and the fixture program; ${TARGETS_UNDER_SCRAPE:-60} fixture targets start 50 ms apart with no scrape"
    echo "running (idle), then as many more while a client scrapes /metrics back to back (scraping)."
    echo "Each target fires fixture:hit 5 times 50 ms after it starts, as a program's first calls"
    echo "would, and lives on, so \"hits\" counts how many of those calls were counted: all of them"
    echo "only if every target was attached within 50 ms. p99 / idle p99 compares each run's two"
    echo "phases. ${UNDER_SCRAPE_REPS:-5} runs per exporter, interleaved; \"attaches\" and \"hits\" are the fewest of any run."
    echo
    echo "| exporter | phase | runs | attaches | hits | p50 | p99 | p99 / idle p99 | scrape |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "$under_scrape_rows"
    echo
    echo "Goal (issue 11): p99 while scraping within 1.2x of the idle p99. Before, one lock"
    echo "serialised scrapes and attaches: a process started during a scrape waited for it, so its"
    echo "first calls were lost. Now scrapes read a snapshot of the attached instances and never"
    echo "hold what an attach needs."
    echo
    echo "## Scrape cost"
    echo
    echo "A target fires USDT \`bench:key(i)\` for i in 0..N into a hash map (bench/bpf/scrape_keys.bpf.c;"
    echo "1.1M entries, or 1024 for the 100-process case), one series per key. Latency is a client's"
    echo "GET of /metrics (median of 20, 10 or 5 scrapes, min..max); CPU is the exporter's utime + stime"
    echo "per scrape; peak RSS is the exporter's VmHWM over the case's scrapes after the first. The floor"
    echo "(bench/scrape_floor.rs) reads the same maps with \`bpf_map_lookup_batch\` and writes the same"
    echo "text, nothing else, in the same run. Labels: \`uint\` is one integer label (every key its"
    echo "own series); \`merged\` splits the key into a \`uint\` label and a \`static_map\` one, so the"
    echo "exporter must sum keys by decoded label set (the path of \`string\`, \`static_map\` and"
    echo "\`regexp\` labels and of every histogram); the floor has no such step, so it has no row there."
    echo
    echo "| processes x keys | labels | series | latency | CPU | latency, gzip | CPU, gzip | bytes plain / gzip | peak RSS | floor | latency / floor |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    echo "$scrape_rows"
    echo
    echo "![scrape latency](bench/scrape_cost.svg)"
    echo
    echo "Responses are streamed (128 KiB chunks, gzip chunk by chunk) and maps read a batch at a"
    echo "time, so a scrape's memory does not grow with the response; keys past the label cache are"
    echo "summed as (hash, key, value) records and their text is decoded again when written. Two"
    echo "scrapes at once (a plain and a gzip one, as two Prometheus replicas), peak RSS over both"
    echo "against the case's peak above, and each one's latency:"
    echo
    echo "| processes x keys | labels | peak RSS, one at a time | peak RSS, two at once | latency, two at once (plain / gzip) |"
    echo "|---|---|---|---|---|"
    echo "$scrape_two_rows"
    if [ -n "${BEFORE_EXPORTER:-}" ]; then
        echo
        echo "The same cases with the exporter before (\`$(basename "$BEFORE_EXPORTER")\`), case by case in the same"
        echo "run, each with its own floor:"
        echo
        echo "| processes x keys | labels | exporter | latency | peak RSS | peak RSS, two at once | floor | latency / floor |"
        echo "|---|---|---|---|---|---|---|---|"
        echo "$scrape_before_rows"
    fi
    echo
    echo "Absolute times move with the host's load from one run to the next: three runs of this code on"
    echo "one day measured the 100k-key floor at 38.6, 54.6 and 39.8 ms, the exporter at 1.14 to 1.15 times"
    echo "it each time. Compare the ratio to the floor, measured side by side."
    echo
    echo "Goal (issue 6): 100k series in under 50 ms, within 2x the floor. Before and after the first"
    echo "optimization it took: keys whose labels are all integers (uint, int, hex, no padding) map to"
    echo "distinct series, so they are now encoded as read instead of being merged through a"
    echo "\`BTreeMap<Vec<String>, u64>\` (perf showed 30% of a scrape in that merge and 15% in"
    echo "malloc/free and memcmp). Before, on this machine on the same day (one run of 10 scrapes):"
    echo "100k keys 120 ms (109..137), 117 ms CPU per scrape, against a 36 ms floor (3.3x); 1k keys"
    echo "2.9 ms."
    echo
    echo "The merging path then got a decoded-label cache per metric: raw key -> label set id, the"
    echo "set's text rendered once, and for each source (process) its keys of the last scrape in read"
    echo "order, since a hash map's batch order stays put while keys are only added: an unchanged key"
    echo "takes its answer without a hash lookup (perf had \`HashMap::get_mut\` at 26% of a scrape,"
    echo "about 150 ns a key in cache misses). Bounded by \`--scrape.label-cache-keys\` (default 131072"
    echo "keys, about 40 bytes each since its keys and texts are laid end to end); past it, keys are"
    echo "decoded on every scrape (twice: to find their set, and for its text when written), which is"
    echo "why the 1M merged row is slower per series. Before the cache, the same day, one run each:"
    echo "10k keys 9.9 ms, 100k keys 122 ms (118 ms CPU), 1M keys 3044 ms (2994 ms CPU)."
    echo "The kernel's batch lookup walks every bucket of a hash map, so a large, mostly empty map"
    echo "costs the exporter and the floor alike (the 1k-key rows)."
    echo
    echo "## Classic vs native histograms"
    echo
    echo "### Classic vs native scrape size"
    echo
    echo "100 processes, each with 4 exp2 histograms of 32 buckets (slots 0..31, \`bucket_multiplier: 1e-9\`,"
    echo "as the examples' latency histograms) filled by bench/bpf/scrape_histograms.bpf.c with 1000 to"
    echo "4663 observations of 256 ns to 16 ms (a different number per process): 400 histogram series."
    echo "Bytes of one /metrics response, as sent and with \`Accept-Encoding: gzip\`. Text and OpenMetrics"
    echo "carry the classic buckets whatever \`native\` says; protobuf is what Prometheus gets with"
    echo "\`--enable-feature=native-histograms\` (bench/scrape_formats.py)."
    echo
    echo "| format | histograms as | bytes | gzip bytes | bytes / text | gzip / text gzip |"
    echo "|---|---|---|---|---|---|"
    echo "$format_size_rows"
    echo
    echo "A classic series repeats the metric name and every label on each of its 35 lines; protobuf"
    echo "writes them once per series, and a native histogram is one zero bucket and the deltas"
    echo "of the populated buckets (13 to 17 of the 32 here, between slots 8 and 24)."
    echo
    echo "### Text vs protobuf, 100k series"
    echo
    echo "One process, a 100k-key counter map (as in Scrape cost, \`uint\` and \`merged\` labels);"
    echo "$REPS scrapes per format, interleaved, after one warm-up each (which fills the label cache,"
    echo "and the protobuf label bytes derived from it). Latency median (min..max); CPU is the"
    echo "exporter's utime + stime per scrape, averaged (10 ms clock ticks)."
    echo
    echo "| labels | format | latency | CPU | bytes |"
    echo "|---|---|---|---|---|"
    echo "$format_cost_rows"
    echo
    echo "## Idle"
    echo
    echo "10 programs attached to one target, no scrapes; the exporter's CPU time over the period"
    echo "(clock ticks of 10 ms: 0 means under 10 ms). While process events flow, a routine rescan"
    echo "lists /proc and reads only pids it has not seen, and every 30 s (\`--discovery.full-interval\`)"
    echo "a full one reads every process again. Before (every rescan read every process, about ten"
    echo "syscalls each, most of them for kernel threads): 0.18% CPU with the 1 s rescan, 6660"
    echo "syscalls in 10 s (strace -c); after: 65 syscalls in 10 s."
    echo
    echo "| /proc rescan | period | CPU time | CPU |"
    echo "|---|---|---|---|"
    echo "$idle_rows"
    echo
    echo "## Startup"
    echo
    echo "From exec to the first answered GET of /, median of $REPS (min..max)."
    echo
    echo "| case | time |"
    echo "|---|---|"
    echo "$startup_rows"
} > BENCHMARKS.md
cat BENCHMARKS.md
