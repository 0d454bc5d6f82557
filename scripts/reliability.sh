#!/usr/bin/env bash
# Runs the reliability checks and writes RELIABILITY.md, as bench/run.sh writes
# BENCHMARKS.md: fuzzing (scripts/fuzz.sh when present, else its last report),
# the soak (scripts/soak.sh, SOAK_MINUTES, default 30; memory is judged only
# on soaks of 120 minutes or more, SOAK_MINUTES=240 for the memory verdict) and the fault tests
# (`cargo test --test it faults`), each fault with its test and outcome.
# Usage: sudo bash scripts/reliability.sh
# On a machine where other BPF work runs, BPF_LOCK=FILE holds flock(1) on FILE
# around the soak and the fault tests (they load many BPF programs and time
# the exporter; their leak checks count only the exporter's own objects).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
SOAK_MINUTES=${SOAK_MINUTES:-30}
out=target/reliability
mkdir -p "$out"
locked() { if [ -n "${BPF_LOCK:-}" ]; then flock "$BPF_LOCK" "$@"; else "$@"; fi; }

# Fuzzing: its own script writes target/reliability/fuzz.md ("## Fuzzing").
fuzz_status=0
# FUZZ_SECONDS: per target (fuzz.sh's default when unset); FUZZ_SECONDS=report
# takes the last report as it is (a long fuzz run separately, say beside the soak).
if [ "${FUZZ_SECONDS:-}" != report ] && [ -f scripts/fuzz.sh ]; then
    bash scripts/fuzz.sh ${FUZZ_SECONDS:+"$FUZZ_SECONDS"} || fuzz_status=$?
fi

# The soak.
rm -f "$out/soak.md" "$out/soak.json"
soak_status=0
locked bash scripts/soak.sh "$SOAK_MINUTES" > "$out/soak.out" 2>&1 || soak_status=$?
if [ -f "$out/soak.md" ]; then
    soak=$(cat "$out/soak.md")
else
    soak=$'## Soak\n\nThe soak did not finish (status '"$soak_status"$'); the end of its output:\n\n```\n'"$(tail -n 30 "$out/soak.out")"$'\n```'
fi

# The fault tests, one line each.
locked cargo test --test it faults -- --test-threads=1 > "$out/faults.out" 2>&1
faults_status=$?
faults=$(python3 - "$out/faults.out" <<'EOF'
import glob, re, sys
results = dict(re.findall(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", open(sys.argv[1]).read(), re.M))
rows = []
for path in sorted(glob.glob("tests/it/faults*.rs")):
    module = path.split("/")[-1][:-3]
    text = open(path).read()
    # Each test's doc comment: "Fault: ... Expected: ...".
    for doc, name in re.findall(r"((?:^///.*\n)+)#\[test\]\nfn (\w+)", text, re.M):
        doc = " ".join(l[3:].strip() for l in doc.splitlines())
        fault, _, expected = doc.partition("Expected:")
        fault = fault.strip().removeprefix("Fault:").strip()
        fault, expected = (t[:1].upper() + t[1:] for t in (fault, expected.strip()))
        outcome = results.get(f"{module}::{name}", "not run")
        outcome = {"ok": "pass", "FAILED": "**FAIL**"}.get(outcome, outcome)
        rows.append(f"| {fault} | {expected} | `{module}::{name}` | {outcome} |")
print("\n".join(rows))
EOF
)
faults_summary=$(grep -E "^test result" "$out/faults.out" | tail -1)

# The fuzz report, read now: a long fuzz may have run beside the soak.
if [ -f "$out/fuzz.md" ]; then
    fuzz=$(cat "$out/fuzz.md")
    [ "$fuzz_status" -ne 0 ] && fuzz="$fuzz"$'\n\n'"scripts/fuzz.sh exited with status $fuzz_status."
else
    fuzz=$'## Fuzzing\n\nFuzzing was not run (no scripts/fuzz.sh and no target/reliability/fuzz.md).'
fi

commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no | grep -q . && echo " (with uncommitted changes)" || true)
{
    echo "# Reliability"
    echo
    echo "Written by \`sudo bash scripts/reliability.sh\` on $(date -u +%Y-%m-%d) at commit $commit$dirty;"
    echo "$(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(prometheus --version 2>&1 | head -1 | awk '{print "Prometheus", $3}')."
    echo "Soak length: $SOAK_MINUTES minutes (SOAK_MINUTES)."
    echo
    echo "$fuzz"
    echo
    echo "$soak"
    echo
    echo "## Faults"
    echo
    echo "Each fault is injected for real (real processes, real kernel, real clang) by one test of"
    echo "\`cargo test --test it faults\` (tests/it/faults*.rs); the outcome is that test's, in this run."
    echo "The behaviour expected of the exporter is what the test asserts, exactly."
    echo
    echo "| fault | expected (asserted) | test | outcome |"
    echo "|---|---|---|---|"
    echo "$faults"
    echo
    echo "cargo test: ${faults_summary:-no result (see target/reliability/faults.out)}"
} > RELIABILITY.md
cat RELIABILITY.md
[ "$soak_status" -eq 0 ] && [ "$faults_status" -eq 0 ] && [ "$fuzz_status" -eq 0 ]
