//! bcc's dialect beyond the original's examples: every supported table, method
//! and helper compiles and passes the verifier; libbpf-style inline code
//! compiles; bpf_log2 and bpf_log2l compute what bcc's do, on real probe hits.

use crate::common::{self, require_bpf, Exporter, Target, EXPORTER};
use std::process::Command;

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(EXPORTER)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn indent(code: &str) -> String {
    code.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("      {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_supported_table_method_and_helper_compiles_and_verifies() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let code = r#"#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

struct key_t { u32 pid; char comm[16]; };
struct event_t { u64 ts; s64 value; };

BPF_HASH(counts);
BPF_HASH(by_key, struct key_t);
BPF_HASH(starts, u64, u64, 4096);
BPF_ARRAY(slots);
BPF_ARRAY(small, u32, 8);
BPF_HISTOGRAM(hist);
BPF_HISTOGRAM(hist_by_key, u64, 33);
BPF_PERCPU_HASH(percpu_counts, u32);
BPF_PERCPU_ARRAY(percpu_slots, u64, 4);
BPF_PERF_OUTPUT(events);
BPF_TABLE("lru_hash", u32, u64, lru, 128);
BPF_TABLE("percpu_array", int, u64, table_array, 2);

int on_usdt(struct pt_regs *ctx) {
    long a = 0; s16 b = 0; char buf[8] = {};
    bpf_usdt_readarg(1, ctx, &a);
    bpf_usdt_readarg(2, ctx, &b);
    bpf_usdt_readarg_p(2, ctx, buf, sizeof(buf));
    counts.increment(a);
    counts.increment(a, 5);
    counts.atomic_increment(a);
    struct key_t k = {};
    k.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    by_key.increment(k);
    hist.increment(bpf_log2l(a));
    hist_by_key.increment(bpf_log2(b), 2);
    percpu_counts.increment(k.pid);
    percpu_slots.increment(1);
    lru.increment(3);
    table_array.increment(0);
    slots.increment(2);
    small.increment(1);
    return 0;
}

int on_entry(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    u64 zero = 0;
    starts.update(&id, &ts);
    starts.insert(&id, &ts);
    u64 *found = starts.lookup_or_try_init(&id, &zero);
    u64 *again = starts.lookup_or_init(&id, &zero);
    if (found && again)
        counts.increment(PT_REGS_PARM1(ctx) + PT_REGS_PARM2(ctx) + PT_REGS_PARM3(ctx) + PT_REGS_PARM4(ctx) + PT_REGS_PARM5(ctx) + PT_REGS_PARM6(ctx));
    char text[16];
    bpf_probe_read_user(text, sizeof(text), (void *)PT_REGS_PARM1(ctx));
    bpf_probe_read_user_str(text, sizeof(text), (void *)PT_REGS_PARM1(ctx));
    return 0;
}

int on_return(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u64 *ts = starts.lookup(&id);
    if (ts == 0)
        return 0;
    struct event_t e = {};
    e.ts = bpf_ktime_get_ns() - *ts;
    e.value = PT_REGS_RC(ctx);
    events.perf_submit(ctx, &e, sizeof(e));
    starts.delete(&id);
    return 0;
}
"#;
    let config = format!(
        "programs:\n  - name: everything\n    metrics:\n      counters:\n        - name: counts_total\n          help: h\n          table: counts\n          labels: [{{name: v, size: 8, decoders: [{{name: uint}}]}}]\n    usdt:\n      fixture:hit: on_usdt\n    uprobes:\n      target_add: on_entry\n    uretprobes:\n      target_add: on_return\n    attachment: {{binary_name: uexp-bcc}}\n    code: |\n{}\n",
        indent(code)
    );
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok: program \"everything\": 3 probe(s)"),
        "{out}"
    );
}

#[test]
fn libbpf_style_inline_code_compiles_as_written() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let code = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u64);
    __type(value, u64);
} hits SEC(".maps");

SEC("usdt")
int BPF_USDT(on_hit, long arg, long i) {
    u64 key = arg, one = 1;
    u64 *v = bpf_map_lookup_elem(&hits, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&hits, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;
    let config = format!(
        "programs:\n  - name: libbpf_style\n    metrics:\n      counters:\n        - name: hits_total\n          help: h\n          table: hits\n          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]\n    usdt:\n      fixture:hit: on_hit\n    attachment: {{binary_name: uexp-libbpf}}\n    code: |\n{}\n",
        indent(code)
    );
    let (ok, out) = check(&config);
    assert!(ok, "{out}");

    // And it counts: BPF_USDT's typed arguments read the probe's real values.
    let mut target = Target::start("uexp-libbpf");
    let exporter = Exporter::start(&config);
    target.cmd("usdt 6 42");
    let pid = target.pid().to_string();
    assert_eq!(
        exporter.samples().value(
            "userspace_exporter_hits_total",
            &[("arg", "42"), ("pid", &pid)]
        ),
        6.0
    );
}

#[test]
fn bpf_log2_and_bpf_log2l_match_bcc_on_real_hits() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let code = r#"BPF_HASH(log2l_slots, u64);
BPF_HASH(log2_slots, u64);

int on_entry(struct pt_regs *ctx) {
    u64 value = PT_REGS_PARM1(ctx);
    log2l_slots.increment(bpf_log2l(value));
    log2_slots.increment(bpf_log2(value));
    return 0;
}
"#;
    let label = "labels: [{name: slot, size: 8, decoders: [{name: uint}]}]";
    let config = format!(
        "programs:\n  - name: log2\n    metrics:\n      counters:\n        - name: log2l_total\n          help: h\n          table: log2l_slots\n          {label}\n        - name: log2_total\n          help: h\n          table: log2_slots\n          {label}\n    uprobes:\n      target_add: on_entry\n    attachment: {{binary_name: uexp-log2}}\n    code: |\n{}\n",
        indent(code)
    );
    let mut target = Target::start("uexp-log2");
    let exporter = Exporter::start(&config);
    for value in [0u64, 1, 2, 3, 4, 7, 8, 1 << 33] {
        target.cmd(&format!("call 1 {value}"));
    }
    let s = exporter.samples();
    let pid = target.pid().to_string();
    // bcc: bpf_log2l(v) = floor(log2(v)) + 1, and 1 for 0; bpf_log2(v) on the low 32 bits = floor(log2(v)), 0 for 0.
    for (slot, count) in [(1, 2.0), (2, 2.0), (3, 2.0), (4, 1.0), (34, 1.0)] {
        assert_eq!(
            s.value(
                "userspace_exporter_log2l_total",
                &[("slot", &slot.to_string()), ("pid", &pid)]
            ),
            count,
            "log2l slot {slot}"
        );
    }
    assert_eq!(s.series("userspace_exporter_log2l_total").len(), 5);
    for (slot, count) in [(0, 3.0), (1, 2.0), (2, 2.0), (3, 1.0)] {
        assert_eq!(
            s.value(
                "userspace_exporter_log2_total",
                &[("slot", &slot.to_string()), ("pid", &pid)]
            ),
            count,
            "log2 slot {slot}"
        );
    }
    assert_eq!(s.series("userspace_exporter_log2_total").len(), 4);
}
