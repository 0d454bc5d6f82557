#!/usr/bin/env bash
# Long fuzzing run: each target of tests/fuzz/ (the config parser, the bcc
# rewriter, the ELF readers on four real binaries (one a stripped Go binary),
# Go's function table reader, the label decoders, Accept and Accept-Encoding
# negotiation, the Basic auth header, client certificates, the process
# connector's datagrams) for SECONDS_PER_TARGET seconds, one after
# another, niced, from a random seed (set FUZZ_SEED to repeat a run). Writes
# the "## Fuzzing" section of RELIABILITY.md to target/reliability/fuzz.md;
# shrunk failures go to target/reliability/fuzz-crashes/. Exits 1 when a
# target failed.
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

seconds="${1:-300}"
seed="${FUZZ_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
out=target/reliability
results="$out/fuzz-results.tsv"
mkdir -p "$out"
: > "$results"

cargo test --test fuzz --no-run --quiet 2>/dev/null
targets=$(cargo test --test fuzz --quiet -- --list 2>/dev/null | sed -n 's/: test$//p')
started=$(date -u +%Y-%m-%d)
status=0
for target in $targets; do
    log="$out/fuzz-$target.log"
    echo "fuzz.sh: $target for ${seconds}s ..." >&2
    rc=0
    FUZZ_SECONDS="$seconds" FUZZ_SEED="$seed" FUZZ_REPORT="$results" \
        nice -n 10 cargo test --quiet --test fuzz -- --exact "$target" --nocapture \
        >"$log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || status=1
    if ! grep -q "^$target	" "$results"; then
        # No result line: the target was skipped (binary not installed), or the
        # process died (an abort: stack overflow, the allocation cap).
        if [ "$rc" -eq 0 ]; then
            printf '%s\t0\t0\tskipped: %s\t\t\t\n' "$target" \
                "$(grep -m1 'skipped' "$log" | sed 's/.*skipped, //')" >>"$results"
        else
            printf '%s\t?\t?\tthe process died (exit %s; input in %s)\t\t\t\n' "$target" "$rc" \
                "$out/fuzz-crashes/$target.current" >>"$results"
        fi
    fi
    grep "^fuzz $target:" "$log" | tail -1 >&2 || true
done

{
    echo "## Fuzzing"
    echo
    echo "\`bash scripts/fuzz.sh $seconds\` ran each fuzz target of \`tests/fuzz/\` for ${seconds} s on $started, one after another under \`nice -n 10\` on a debug build (overflow checks on), from seed $seed; each target's stream of inputs follows from the seed and its name, so \`FUZZ_SEED=$seed FUZZ_EXECUTIONS=N cargo test --test fuzz -- --exact TARGET\` replays a target's first N inputs. Inputs are generated from a grammar or mutated from real ones (the example configs and default pack, the configs and C in the tests, the examples' BPF C; \`/usr/bin/python3.11\`, \`libjvm.so\` and \`postgres\` with header fields, bits and bytes changed and the file truncated); an input fails on a panic, a broken property (config errors inside the text at file:line:column, the bcc rewrite keeping every line break, the ELF readers agreeing, injective decoders staying injective, Accept and Accept-Encoding choosing as the documented rule and RFC 9110 say, the Basic auth header read as Go's \`Request.BasicAuth\` reads it, client certificates' SANs in Go's forms and never accepted against the CA with changed signed bytes), more than its time bound or its allocation bound. A failure is shrunk and saved under \`target/reliability/fuzz-crashes/\`; every one found so far is a regression input in \`tests/fuzz_corpus/\`, replayed by \`cargo test\` with a short fixed-seed run of every target."
    echo
    echo "| target | executions | seconds | crashes |"
    echo "|---|---|---|---|"
    while IFS=$'\t' read -r name execs secs crashes _; do
        echo "| $name | $execs | $secs | ${crashes//|/\\|} |"
    done <"$results"
} >"$out/fuzz.md"
echo "fuzz.sh: wrote $out/fuzz.md" >&2
exit "$status"
