#!/usr/bin/env bash
# Runs the benchmarks and writes BENCHMARKS.md. Usage: sudo bash bench/run.sh
# Each figure is the median of REPS runs with its min..max spread; runs of the
# things compared are interleaved in the same loop so machine noise hits both.
set -euo pipefail
cd "$(dirname "$0")/.."
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

{
    echo "# Benchmarks"
    echo
    echo "Written by \`sudo bash bench/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB,"
    echo "Linux $(uname -r), $(clang --version | head -1). Median of $REPS runs, (min..max)."
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
    echo "Not measured yet: probe overhead, scrape cost, discovery latency, scale, idle CPU, startup (issue 6)."
} > BENCHMARKS.md
cat BENCHMARKS.md
