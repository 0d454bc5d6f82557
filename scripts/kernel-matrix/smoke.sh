#!/usr/bin/env bash
# The kernel matrix's smoke suite (scripts/kernel-matrix.sh runs it in each
# guest, and on the host for the host's own kernel). It drives the fixture
# targets (tests/fixtures/) against the prebuilt exporter and BPF objects, one
# exporter per feature so that one feature's failure cannot hide another's,
# and prints one line per feature:
#
#   RESULT <TAB> feature <TAB> state <TAB> detail
#
# state is one of
#   ok           every count exact, no fallback reported
#   degraded     every count exact through a fallback the exporter named for
#                the feature's program (`check` or its log says "degraded" or
#                "fall(ing) back" about it): the detail is that line
#   unsupported  counts missing or wrong, and the exporter warned or failed
#                about that program: the detail is the first such line a user
#                sees, then the first check that failed
#   wrong        counts missing or wrong and nothing said so about the program
#                (a silent wrong number: the worst outcome; a warning about
#                something else does not count), or a target misbehaved
#
# Usage: smoke.sh DIR [FEATURE...], DIR holding bin/ebpf-userspace-exporter,
# fixtures/ (uexp-target, libfixture.so, uexp-loader, plugins/) and bpf/
# (usdt_counts, uprobe_counts, plugin_counts, pid_counts .bpf.o). Needs bash, and wget,
# awk, grep, sed, sort, timeout from busybox or coreutils. Run as root.
# No clang: every object is built beforehand.
set -u

dir=$1
shift
exporter=$dir/bin/ebpf-userspace-exporter
bpf=$dir/bpf
work=$(mktemp -d "${TMPDIR:-/tmp}/uexp-km.XXXXXX")
# How long a guest may take to serve, attach or see a process (TCG is slow).
WAIT_SECONDS=${SMOKE_WAIT_SECONDS:-120}
# Every feature, in order: the "# feature: NAME: what it checks" lines below.
if [ "$#" -gt 0 ]; then
    features=("$@")
else
    mapfile -t features < <(sed -n 's/^# feature: \([a-z_]*\): .*/\1/p' "$0")
fi

declare -A target_pid target_in target_out
exporter_pid=
exporter_port=
exporter_log=
mismatches=()

cleanup() {
    local name
    stop_exporter
    for name in "${!target_pid[@]}"; do stop_target "$name"; done
    # SMOKE_KEEP=1 keeps the configs, logs and scrapes for a look.
    if [ -n "${SMOKE_KEEP:-}" ]; then echo "smoke.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- targets: the fixture protocol (a command line in, a reply line out) ---

# start_target NAME BINARY [COMM]: runs a copy of BINARY named COMM (its comm;
# NAME by default) beside the original, so that $ORIGIN finds the same
# libraries; waits for "ready". Targets given one COMM run one file (one
# inode: the same probes).
start_target() {
    local name=$1 binary=$2 copy ready
    copy=$(dirname "$binary")/${3:-$1}
    # A running copy cannot be written again (ETXTBSY), nor need it be.
    [ -e "$copy" ] || cp "$binary" "$copy"
    mkfifo "$work/$name.in" "$work/$name.out"
    "$copy" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
    target_pid[$name]=$!
    exec {fd}>"$work/$name.in"
    target_in[$name]=$fd
    exec {fd}<"$work/$name.out"
    target_out[$name]=$fd
    if ! read -r -t "$WAIT_SECONDS" -u "${target_out[$name]}" ready || [ "$ready" != ready ]; then
        mismatches+=("target $name did not start: $(head -c 300 "$work/$name.err")")
        return 1
    fi
}

# cmd NAME COMMAND: sends one command, sets $reply to the target's answer.
cmd() {
    local name=$1
    reply=
    [ -n "${target_pid[$name]:-}" ] || return 1
    printf '%s\n' "$2" >&"${target_in[$name]}"
    read -r -t "$WAIT_SECONDS" -u "${target_out[$name]}" reply || reply="(no reply)"
}

# run NAME COMMAND WANT: cmd, and a mismatch unless the reply is WANT.
run() {
    cmd "$1" "$2"
    [ "$reply" = "$3" ] || mismatches+=("target $1: \"$2\" answered \"$reply\", not \"$3\"")
}

stop_target() {
    local name=$1
    [ -n "${target_pid[$name]:-}" ] || return 0
    kill "${target_pid[$name]}" 2>/dev/null
    wait "${target_pid[$name]}" 2>/dev/null
    eval "exec ${target_in[$name]}>&- ${target_out[$name]}<&-"
    unset "target_pid[$name]" "target_in[$name]" "target_out[$name]"
}

# --- the exporter ---

# start_exporter NAME CONFIG [ARGS...]: writes the config, starts the exporter
# on a free loopback port and waits for /-/ready. Returns 1 if it exited.
start_exporter() {
    local name=$1 config=$2 deadline
    shift 2
    printf '%s' "$config" >"$work/$name.yaml"
    exporter_log=$work/$name.log
    exporter_port=$(free_port)
    "$exporter" --listen-address "127.0.0.1:$exporter_port" --cache-dir "$work/cache" \
        -c "$work/$name.yaml" "$@" >"$exporter_log" 2>&1 &
    exporter_pid=$!
    deadline=$((SECONDS + WAIT_SECONDS))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$exporter_pid" 2>/dev/null; then
            wait "$exporter_pid"
            mismatches+=("the exporter exited with status $? at startup; its last line: $(tail -1 "$exporter_log")")
            exporter_pid=
            return 1
        fi
        http GET /-/ready >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    mismatches+=("the exporter was not ready within ${WAIT_SECONDS}s; its last line: $(tail -1 "$exporter_log")")
    return 1
}

stop_exporter() {
    [ -n "$exporter_pid" ] || return 0
    kill "$exporter_pid" 2>/dev/null
    wait "$exporter_pid" 2>/dev/null
    exporter_pid=
}

# A port nothing listens on (bash's /dev/tcp connect fails), from a range the
# tests' ephemeral ports (127.0.0.1:0) rarely use.
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo 29999
}

# http METHOD PATH: the response body on stdout; fails on a non-2xx status.
http() {
    # busybox's wget has no timeout option of its own.
    if [ "$1" = POST ]; then
        timeout 60 wget -q -O - --post-data= "http://127.0.0.1:$exporter_port$2"
    else
        timeout 60 wget -q -O - "http://127.0.0.1:$exporter_port$2"
    fi
}

scrape() {
    http GET /metrics >"$work/scrape" 2>"$work/scrape.err" ||
        mismatches+=("scrape failed: $(head -c 200 "$work/scrape.err")")
}

# value METRIC [LABEL=VALUE...]: the value of the one series of METRIC (in the
# last scrape) carrying every label given; empty when there is none.
value() {
    local metric=$1
    shift
    awk -v metric="$metric" -v want="$*" '
        BEGIN { n = split(want, w, " ") }
        $0 !~ /^#/ {
            name = $1; sub(/\{.*/, "", name)
            if (name != metric) next
            labels = $1; if (labels !~ /\{/) labels = ""
            ok = 1
            for (i = 1; i <= n; i++) {
                split(w[i], kv, "=")
                if (index(labels, kv[1] "=\"" kv[2] "\"") == 0) ok = 0
            }
            if (ok) { print $2; exit }
        }' "$work/scrape"
}

# expect METRIC WANT [LABEL=VALUE...]: a mismatch unless the series is WANT.
expect() {
    local metric=$1 want=$2 got
    shift 2
    got=$(value "$metric" "$@")
    [ "$got" = "$want" ] || mismatches+=("$metric{$*} is ${got:-absent}, not $want")
}

# wait_value METRIC WANT [LABEL=VALUE...]: scrapes until the series is WANT
# (a process found, a program attached); the last scrape stays for expect.
wait_value() {
    local metric=$1 want=$2 deadline
    shift 2
    deadline=$((SECONDS + WAIT_SECONDS))
    while :; do
        scrape
        [ "$(value "$metric" "$@")" = "$want" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.3
    done
    mismatches+=("$metric{$*} did not reach $want within ${WAIT_SECONDS}s (is $(value "$metric" "$@"))")
    return 1
}

# --- verdicts ---

# judge FEATURE PROGRAM...: prints the feature's RESULT line from the
# mismatches collected since the last verdict and from what the exporter and
# `check` said about its PROGRAMs. Only lines naming one count (the log's program=NAME,
# check's lines under its `program "NAME"`): a warning about something else
# (a kernel feature the program does not use, process events) neither makes
# a cell degraded nor explains wrong counts.
judge() {
    local feature=$1 program line
    shift
    # What `check` says about the programs on this kernel (it loads them
    # through the verifier: the word a fallback would be named with shows there).
    "$exporter" --cache-dir "$work/cache" check -c "$work/$feature.yaml" >"$work/$feature.check" 2>&1
    for program in "$@"; do
        about "$program" "$work/$feature.check" "$exporter_log"
    done >"$work/$feature.about"
    if [ "${#mismatches[@]}" -eq 0 ]; then
        line=$(grep -m1 -E "$FALLBACK" "$work/$feature.about")
        if [ -n "$line" ]; then
            verdict "$feature" degraded "$(clean "$line")"
        else
            verdict "$feature" ok ""
        fi
        return
    fi
    # Every warning and error of the exporter and check, kept in the console log.
    grep -h -E "$ALARM" "$exporter_log" "$work/$feature.check" 2>/dev/null |
        sed -n '1,20p' | while IFS= read -r line; do printf 'LOG\t%s\t%s\n' "$feature" "$(clean "$line")"; done
    # The first warning or error naming a program: what a user sees about it.
    # A fallback's notice only when nothing else was said: it names what
    # runs instead, seldom why counts are off.
    line=$(grep -v -E "$FALLBACK" "$work/$feature.about" | grep -m1 -E "$ALARM")
    [ -n "$line" ] || line=$(grep -m1 -E "$FALLBACK" "$work/$feature.about")
    if [ -n "$line" ]; then
        verdict "$feature" unsupported "$(clean "$line") [${mismatches[0]}]"
    else
        verdict "$feature" wrong "$(printf '%s; ' "${mismatches[@]}" | sed 's/; $//')"
    fi
}

# A warning or an error: the log's levels, check's prefixes, file:line:col.
ALARM='(WARN|ERROR)|^(error|warning)|^[^ ]+:[0-9]+:[0-9]+: '
# A fallback named: the exporter's "degraded on this kernel: ...", check's
# "on this kernel: degraded: ...", or "fall(s/ing) back", "fallback".
FALLBACK='[Dd]egraded|[Ff]all(ing|s)? ?back'

# about PROGRAM CHECK_OUTPUT LOG: the lines of both that are about PROGRAM:
# the log's saying program=PROGRAM or `program "PROGRAM"`, then check's naming
# it and the indented lines under such a one (prefixed with that name).
about() {
    grep -E "program(=\"?$1\"?( |$)| \"$1\")" "$3" 2>/dev/null
    awk -v p="program \"$1\"" '
        /^[^ ]/ { mine = index($0, p) > 0; if (mine) print; next }
        mine { sub(/^ */, ""); print p ": " $0 }' "$2" 2>/dev/null
}

# A log line without its timestamp and colours, on one line, at most 400
# characters (then "...").
clean() {
    local line
    line=$(printf '%s' "$1" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[0-9T:.Z-]* *//' | tr '\t\n' '  ')
    # Cut where it was cut.
    if [ "${#line}" -gt 400 ]; then printf '%s...' "${line:0:400}"; else printf '%s' "$line"; fi
}

verdict() {
    printf 'RESULT\t%s\t%s\t%s\n' "$1" "$2" "$3"
    mismatches=()
    stop_exporter
    local name
    for name in "${!target_pid[@]}"; do stop_target "$name"; done
}

# --- configs ---

counter() { # NAME TABLE HELP LABEL [DECODER]
    printf '        - name: %s\n          help: %s\n          table: %s\n          labels:\n            - name: %s\n              size: 8\n              decoders: [{name: %s}]\n' \
        "$1" "$3" "$2" "$4" "${5:-uint}"
}

program() { # NAME OBJECT COMM METRICS PROBES
    printf '  - name: %s\n    object: %s\n    metrics:\n%s\n%s\n    attachment:\n      binary_name: %s\n' "$1" "$2" "$4" "$5" "$3"
}

# --- the features ---
# Each is one "# feature: NAME: what it does and asserts" line (the list of
# features, and KERNELS.md's description of them) and its function.

# feature: usdt: a USDT probe (fixture:hit) in a running target: 5 and 2 firings by argument, counted exactly
feature_usdt() {
    local metrics
    metrics="      counters:
$(counter usdt_hits_total hits "fixture:hit firings by argument" arg)"
    start_target uexp-km-usdt "$dir/fixtures/uexp-target" &&
        start_exporter usdt "programs:
$(program usdt "$bpf/usdt_counts.bpf.o" uexp-km-usdt "$metrics" "    usdt: {fixture:hit: on_hit}")" &&
        {
            run uexp-km-usdt "usdt 5 3" "ok 0"
            run uexp-km-usdt "usdt 2 7" "ok 0"
            scrape
            local pid=${target_pid[uexp-km-usdt]}
            expect userspace_exporter_usdt_hits_total 5 arg=3 pid="$pid"
            expect userspace_exporter_usdt_hits_total 2 arg=7 pid="$pid"
        }
    judge usdt usdt
}

# feature: usdt_semaphore: a semaphore-guarded USDT probe: the kernel raises the semaphore on attach (the target reads 1), 4 firings counted
feature_usdt_semaphore() {
    local metrics
    metrics="      counters:
$(counter guarded_hits_total guarded_hits "fixture:guarded firings by argument" arg)"
    start_target uexp-km-sem "$dir/fixtures/uexp-target" &&
        start_exporter usdt_semaphore "programs:
$(program guarded "$bpf/usdt_counts.bpf.o" uexp-km-sem "$metrics" "    usdt: {fixture:guarded: on_guarded}")" &&
        {
            # The kernel raised the semaphore when the probe was attached.
            run uexp-km-sem sem "sem 1"
            run uexp-km-sem "guarded 4 6" "ok 0"
            scrape
            expect userspace_exporter_guarded_hits_total 4 arg=6 pid="${target_pid[uexp-km-sem]}"
        }
    judge usdt_semaphore guarded
}

# feature: uprobe: a uprobe on target_add by function name: 6 and 1 calls by first argument
feature_uprobe() {
    local metrics
    metrics="      counters:
$(counter add_calls_total calls "target_add calls by first argument" arg)"
    start_target uexp-km-upr "$dir/fixtures/uexp-target" &&
        start_exporter uprobe "programs:
$(program calls "$bpf/uprobe_counts.bpf.o" uexp-km-upr "$metrics" "    uprobes: {target_add: on_add_entry}")" &&
        {
            # target_add(5, i) for i in 0..6: 5 + ... + 10 = 45
            run uexp-km-upr "call 6 5" "ok 45"
            run uexp-km-upr "call 1 8" "ok 53"
            scrape
            local pid=${target_pid[uexp-km-upr]}
            expect userspace_exporter_add_calls_total 6 arg=5 pid="$pid"
            expect userspace_exporter_add_calls_total 1 arg=8 pid="$pid"
        }
    judge uprobe calls
}

# The return values of target_add as an exp2 histogram (uretprobe): the
# uretprobe feature checks its count and sum, the histogram feature its buckets.
returns_config() {
    program returns "$bpf/uprobe_counts.bpf.o" "$1" "      histograms:
        - name: add_returns
          help: target_add return values (uretprobe)
          table: return_values
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
          labels:
            - name: bucket
              size: 8
              decoders: [{name: uint}]" "    uretprobes: {target_add: on_add_return}"
}

run_returns() { # FEATURE COMM
    start_target "$2" "$dir/fixtures/uexp-target" &&
        start_exporter "$1" "programs:
$(returns_config "$2")" &&
        {
            # Returns 1, 2, 3, 4 (slots 0, 1, 2, 2), then 10, 11, 12 (slot 4).
            run "$2" "call 4 1" "ok 10"
            run "$2" "call 3 10" "ok 43"
            scrape
        }
}

# feature: uretprobe: a uretprobe on target_add: 7 returns, their count and sum (43) as a histogram's _count and _sum
feature_uretprobe() {
    run_returns uretprobe uexp-km-uret && {
        local pid=${target_pid[uexp-km-uret]}
        expect userspace_exporter_add_returns_count 7 pid="$pid"
        expect userspace_exporter_add_returns_sum 43 pid="$pid"
    }
    judge uretprobe returns
}

# feature: uretprobe_two_processes: the uretprobe's program on two processes of one binary (one instance each): each histogram holds its own process's returns only, 7 (sum 43) and 3 (sum 303)
feature_uretprobe_two_processes() {
    local a=uexp-km-two-a b=uexp-km-two-b comm=uexp-km-two
    start_target "$a" "$dir/fixtures/uexp-target" "$comm" &&
        start_target "$b" "$dir/fixtures/uexp-target" "$comm" &&
        start_exporter uretprobe_two_processes "programs:
$(returns_config "$comm")" &&
        wait_value userspace_exporter_attached_processes 2 name=returns &&
        {
            # a: returns 1..4 and 10..12 (7, sum 43); b: 100, 101, 102 (3, sum 303).
            run "$a" "call 4 1" "ok 10"
            run "$a" "call 3 10" "ok 43"
            run "$b" "call 3 100" "ok 303"
            scrape
            local pa=${target_pid[$a]} pb=${target_pid[$b]}
            expect userspace_exporter_add_returns_count 7 pid="$pa"
            expect userspace_exporter_add_returns_sum 43 pid="$pa"
            expect userspace_exporter_add_returns_count 3 pid="$pb"
            expect userspace_exporter_add_returns_sum 303 pid="$pb"
            # The way it goes wrong on kernels that run every process's
            # uretprobe on each return of the file: say so first.
            if [ "$(value userspace_exporter_add_returns_sum pid="$pa")" = 346 ] &&
                [ "$(value userspace_exporter_add_returns_sum pid="$pb")" = 346 ]; then
                mismatches=("each process's histogram holds both processes' returns (count 10 = 7 + 3, sum 346 = 43 + 303): the kernel ran each per-process uretprobe on the other process's returns" "${mismatches[@]}")
            fi
        }
    judge uretprobe_two_processes returns
}

# feature: pid_keyed: an `instances: pid_keyed` program (one object, probes placed once for the file, maps keyed by pid) on two processes of one binary: fixture:hit 5 and 3 times, target_add's calls and returns 4 and 3, each under its own pid
feature_pid_keyed() {
    local a=uexp-km-pk-a b=uexp-km-pk-b comm=uexp-km-pk pid_label
    pid_label='            - name: pid
              size: 8
              decoders: [{name: pid}]'
    start_target "$a" "$dir/fixtures/uexp-target" "$comm" &&
        start_target "$b" "$dir/fixtures/uexp-target" "$comm" &&
        start_exporter pid_keyed "programs:
  - name: keyed
    object: $bpf/pid_counts.bpf.o
    instances: pid_keyed
    metrics:
      counters:
        - name: keyed_hits_total
          help: fixture:hit by pid and argument
          table: hits
          labels:
$pid_label
            - name: arg
              size: 8
              decoders: [{name: uint}]
        - name: keyed_calls_total
          help: target_add calls by pid
          table: calls
          labels:
$pid_label
        - name: keyed_returns_total
          help: target_add returns by pid
          table: returns
          labels:
$pid_label
    usdt: {fixture:hit: on_hit}
    uprobes: {target_add: on_call}
    uretprobes: {target_add: on_return}
    attachment:
      binary_name: $comm" &&
        wait_value userspace_exporter_attached_processes 2 name=keyed &&
        {
            run "$a" "usdt 5 7" "ok 0"
            run "$b" "usdt 3 7" "ok 0"
            run "$a" "call 4 1" "ok 10"
            run "$b" "call 3 100" "ok 303"
            scrape
            local pa=${target_pid[$a]} pb=${target_pid[$b]}
            expect userspace_exporter_keyed_hits_total 5 pid="$pa" arg=7
            expect userspace_exporter_keyed_hits_total 3 pid="$pb" arg=7
            expect userspace_exporter_keyed_calls_total 4 pid="$pa"
            expect userspace_exporter_keyed_calls_total 3 pid="$pb"
            expect userspace_exporter_keyed_returns_total 4 pid="$pa"
            expect userspace_exporter_keyed_returns_total 3 pid="$pb"
        }
    judge pid_keyed keyed
}

# feature: histogram: the same returns as an exp2 histogram: all 17 cumulative buckets exact
feature_histogram() {
    run_returns histogram uexp-km-hist && {
        local pid=${target_pid[uexp-km-hist]} k le want
        # Cumulative: <=1: 1, <=2: 2, <=4: 4, <=8: 4, <=16 and above: 7.
        for k in $(seq 0 15); do
            le=$((1 << k))
            want=7
            case $k in 0) want=1 ;; 1) want=2 ;; 2 | 3) want=4 ;; esac
            expect userspace_exporter_add_returns_bucket "$want" le="$le" pid="$pid"
        done
        expect userspace_exporter_add_returns_bucket 7 le=+Inf pid="$pid"
        local buckets
        buckets=$(grep -c "^userspace_exporter_add_returns_bucket{" "$work/scrape")
        [ "$buckets" = 17 ] || mismatches+=("$buckets bucket series, not 17")
    }
    judge histogram returns
}

# feature: wildcard: one wildcard uprobe, libuexp_plugin.so:plugin_op_* (3 functions, one multi-uprobe link; the library loaded before the exporter starts), calls by function name (usym): 3, 5, 7 and no other series
feature_wildcard() {
    local metrics
    metrics="      counters:
$(counter op_calls_total op_calls "plugin_op_* calls by function (PT_REGS_IP at entry)" function usym)"
    start_target uexp-km-wild "$dir/fixtures/uexp-loader" &&
        run uexp-km-wild open "ok 0" &&
        start_exporter wildcard "programs:
$(program ops "$bpf/plugin_counts.bpf.o" uexp-km-wild "$metrics" "    uprobes: {\"libuexp_plugin.so:plugin_op_*\": on_op}")" &&
        {
            # plugin_op_X(i) for i in 0..N: alpha i+1, beta i+2, gamma i+3.
            run uexp-km-wild "op alpha 3" "ok 6"
            run uexp-km-wild "op beta 5" "ok 26"
            run uexp-km-wild "op gamma 7" "ok 68"
            scrape
            local pid=${target_pid[uexp-km-wild]} series
            expect userspace_exporter_op_calls_total 3 function=plugin_op_alpha pid="$pid"
            expect userspace_exporter_op_calls_total 5 function=plugin_op_beta pid="$pid"
            expect userspace_exporter_op_calls_total 7 function=plugin_op_gamma pid="$pid"
            series=$(grep -c "^userspace_exporter_op_calls_total{" "$work/scrape")
            [ "$series" = 3 ] || mismatches+=("$series op_calls series, not 3")
        }
    judge wildcard ops
}

# feature: wildcard_return: the wildcard as a uretprobe keyed by bpf_get_func_ip (the probed function's address, a helper uprobes got later than kprobes): 2 and 4 returns by function name
feature_wildcard_return() {
    local metrics
    metrics="      counters:
$(counter op_returns_total op_returns "plugin_op_* returns by function (bpf_get_func_ip)" function usym)"
    start_target uexp-km-wret "$dir/fixtures/uexp-loader" &&
        run uexp-km-wret open "ok 0" &&
        start_exporter wildcard_return "programs:
$(program op_returns "$bpf/plugin_counts.bpf.o" uexp-km-wret "$metrics" "    uretprobes: {\"libuexp_plugin.so:plugin_op_*\": on_op_return}")" &&
        {
            run uexp-km-wret "op alpha 2" "ok 3"
            run uexp-km-wret "op gamma 4" "ok 21"
            scrape
            local pid=${target_pid[uexp-km-wret]} series
            expect userspace_exporter_op_returns_total 2 function=plugin_op_alpha pid="$pid"
            expect userspace_exporter_op_returns_total 4 function=plugin_op_gamma pid="$pid"
            series=$(grep -c "^userspace_exporter_op_returns_total{" "$work/scrape")
            [ "$series" = 2 ] || mismatches+=("$series op_returns series, not 2")
        }
    judge wildcard_return op_returns
}

# feature: library: a library the target links (libfixture.so, mapped at exec): a USDT probe found among the process's files by its provider (fixturelib:event) and a uprobe by the library's short name (fixture:lib_event), 6 firings and calls
feature_library() {
    local metrics calls
    metrics="      counters:
$(counter lib_events_total lib_hits "fixturelib:event firings by argument (USDT in libfixture.so)" arg)"
    calls="      counters:
$(counter lib_calls_total lib_calls "lib_event calls by argument (uprobe in libfixture.so)" arg)"
    start_target uexp-km-lib "$dir/fixtures/uexp-target" &&
        start_exporter library "programs:
$(program lib_usdt "$bpf/usdt_counts.bpf.o" uexp-km-lib "$metrics" "    usdt: {fixturelib:event: on_lib_event}")
$(program lib_uprobe "$bpf/uprobe_counts.bpf.o" uexp-km-lib "$calls" "    uprobes: {fixture:lib_event: on_lib_entry}")" &&
        {
            run uexp-km-lib "lib 6 11" "ok 0"
            scrape
            local pid=${target_pid[uexp-km-lib]}
            expect userspace_exporter_lib_events_total 6 arg=11 pid="$pid"
            expect userspace_exporter_lib_calls_total 6 arg=11 pid="$pid"
        }
    judge library lib_usdt lib_uprobe
}

# feature: dlopen: a library dlopened after the exporter attached: a uprobe and a semaphore-guarded USDT probe in it, armed by the kernel when it is mapped (the target reads the semaphore as 1); 7 calls each
feature_dlopen() {
    local metrics
    metrics="      counters:
$(counter work_calls_total work_calls "plugin_work calls by argument (uprobe)" arg)
$(counter work_probes_total work_probes "plugin:work firings by argument (guarded USDT)" arg)"
    start_target uexp-km-late "$dir/fixtures/uexp-loader" &&
        start_exporter dlopen "programs:
$(program late "$bpf/plugin_counts.bpf.o" uexp-km-late "$metrics" "    uprobes: {libuexp_plugin.so:plugin_work: on_work}
    usdt: {libuexp_plugin.so:plugin:work: on_work_probe}")" &&
        {
            run uexp-km-late open "ok 0"
            run uexp-km-late sem "sem 1"
            # plugin_work(3) returns 4: 7 calls, 28.
            run uexp-km-late "work 7 3" "ok 28"
            scrape
            local pid=${target_pid[uexp-km-late]}
            expect userspace_exporter_work_calls_total 7 arg=3 pid="$pid"
            expect userspace_exporter_work_probes_total 7 arg=3 pid="$pid"
        }
    judge dlopen late
}

# feature: process_events: rescans off (--discovery.interval 0): a target started after the exporter is attached through a process event (the proc connector); 3 firings counted, process_events_live 1
feature_process_events() {
    local metrics
    metrics="      counters:
$(counter event_hits_total hits "fixture:hit firings by argument" arg)"
    start_exporter process_events "programs:
$(program events "$bpf/usdt_counts.bpf.o" uexp-km-event "$metrics" "    usdt: {fixture:hit: on_hit}")" --discovery.interval 0 &&
        start_target uexp-km-event "$dir/fixtures/uexp-target" &&
        wait_value userspace_exporter_attached_processes 1 name=events &&
        {
            run uexp-km-event "usdt 3 2" "ok 0"
            scrape
            expect userspace_exporter_event_hits_total 3 arg=2 pid="${target_pid[uexp-km-event]}"
            expect userspace_exporter_process_events_live 1
        }
    judge process_events events
}

# feature: reload: POST /-/reload adding a program: the unchanged program keeps its count (4 + 3 = 7), the new one counts 2 calls, last reload successful
feature_reload() {
    local hits calls first
    hits="      counters:
$(counter reload_hits_total hits "fixture:hit firings by argument" arg)"
    calls="      counters:
$(counter reload_calls_total calls "target_add calls by first argument" arg)"
    first=$(program kept "$bpf/usdt_counts.bpf.o" uexp-km-reload "$hits" "    usdt: {fixture:hit: on_hit}")
    start_target uexp-km-reload "$dir/fixtures/uexp-target" &&
        start_exporter reload "programs:
$first" --web.enable-lifecycle &&
        {
            run uexp-km-reload "usdt 4 1" "ok 0"
            printf 'programs:\n%s\n%s\n' "$first" \
                "$(program added "$bpf/uprobe_counts.bpf.o" uexp-km-reload "$calls" "    uprobes: {target_add: on_add_entry}")" \
                >"$work/reload.yaml"
            http POST /-/reload >"$work/reload.answer" 2>&1 ||
                mismatches+=("POST /-/reload failed: $(head -c 300 "$work/reload.answer")")
            wait_value userspace_exporter_attached_processes 1 name=added
            run uexp-km-reload "usdt 3 1" "ok 0"
            run uexp-km-reload "call 2 9" "ok 19"
            scrape
            local pid=${target_pid[uexp-km-reload]}
            expect userspace_exporter_reload_hits_total 7 arg=1 pid="$pid"
            expect userspace_exporter_reload_calls_total 2 arg=9 pid="$pid"
            expect userspace_exporter_config_last_reload_successful 1
        }
    judge reload kept added
}

# feature: scrape: one scrape's every user series, exactly: a hash, a per-CPU hash, an array and a per-CPU array fed by one probe (14 series)
feature_scrape() {
    local metrics
    metrics="      counters:
$(counter exact_hits_total hits "fixture:hit firings by argument" arg)
$(counter exact_hits_percpu_total hits_percpu "the same, per-CPU hash" arg)
        - name: exact_mod4_total
          help: the same by argument mod 4, array
          table: hits_mod4
          labels: [{name: slot, size: 4, decoders: [{name: uint}]}]
        - name: exact_mod4_percpu_total
          help: the same by argument mod 4, per-CPU array
          table: hits_mod4_percpu
          labels: [{name: slot, size: 4, decoders: [{name: uint}]}]"
    start_target uexp-km-scrape "$dir/fixtures/uexp-target" &&
        start_exporter scrape "programs:
$(program scrape "$bpf/usdt_counts.bpf.o" uexp-km-scrape "$metrics" "    usdt: {fixture:hit: on_hit}")" &&
        {
            run uexp-km-scrape "usdt 3 1" "ok 0"
            run uexp-km-scrape "usdt 5 2" "ok 0"
            run uexp-km-scrape "usdt 2 6" "ok 0"
            scrape
            local pid=${target_pid[uexp-km-scrape]} want got
            want=$(printf '%s\n' \
                "userspace_exporter_exact_hits_total{arg=\"1\",pid=\"$pid\"} 3" \
                "userspace_exporter_exact_hits_total{arg=\"2\",pid=\"$pid\"} 5" \
                "userspace_exporter_exact_hits_total{arg=\"6\",pid=\"$pid\"} 2" \
                "userspace_exporter_exact_hits_percpu_total{arg=\"1\",pid=\"$pid\"} 3" \
                "userspace_exporter_exact_hits_percpu_total{arg=\"2\",pid=\"$pid\"} 5" \
                "userspace_exporter_exact_hits_percpu_total{arg=\"6\",pid=\"$pid\"} 2" \
                "userspace_exporter_exact_mod4_total{slot=\"0\",pid=\"$pid\"} 0" \
                "userspace_exporter_exact_mod4_total{slot=\"1\",pid=\"$pid\"} 3" \
                "userspace_exporter_exact_mod4_total{slot=\"2\",pid=\"$pid\"} 7" \
                "userspace_exporter_exact_mod4_total{slot=\"3\",pid=\"$pid\"} 0" \
                "userspace_exporter_exact_mod4_percpu_total{slot=\"0\",pid=\"$pid\"} 0" \
                "userspace_exporter_exact_mod4_percpu_total{slot=\"1\",pid=\"$pid\"} 3" \
                "userspace_exporter_exact_mod4_percpu_total{slot=\"2\",pid=\"$pid\"} 7" \
                "userspace_exporter_exact_mod4_percpu_total{slot=\"3\",pid=\"$pid\"} 0" | sort)
            got=$(grep '^userspace_exporter_exact_' "$work/scrape" | sort)
            if [ "$got" != "$want" ]; then
                mismatches+=("the scrape differs from the 14 series expected: missing $(grep -Fxv -f <(echo "$got") <(echo "$want") | head -3 | tr '\n' ' '); unexpected $(grep -Fxv -f <(echo "$want") <(echo "$got") | head -3 | tr '\n' ' ')")
            fi
        }
    judge scrape scrape
}

mount_point() { grep -q " $1 " /proc/mounts; }
mount_point /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount_point /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null

printf 'STARTED\t%s\n' "${features[*]}"
for feature in "${features[@]}"; do
    start=$SECONDS
    "feature_$feature"
    printf 'TIME\t%s\t%s\n' "$feature" "$((SECONDS - start))"
done
