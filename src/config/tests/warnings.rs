//! Warnings: accepted but probably not meant.

use super::*;

#[test]
fn each_ignored_kernel_probe_key_warns_once_with_its_line() {
    let text = gunicorn_with(
        "    object: gc.bpf.o\n",
        "    object: gc.bpf.o\n    kprobes:\n      tcp_v4_connect: trace_connect\n    kretprobes: {tcp_v4_connect: trace_ret}\n    tracepoints:\n      - sched:sched_switch\n    raw_tracepoints:\n    perf_events:\n      - type: 1\n",
    );
    let config = parse(&text).unwrap();
    let warnings = config.warnings();
    let got: Vec<(u64, &str)> = warnings
        .iter()
        .map(|w| {
            let key = [
                "kretprobes",
                "kprobes",
                "raw_tracepoints",
                "tracepoints",
                "perf_events",
            ]
            .into_iter()
            .find(|k| w.message.contains(&format!("`{k}`")))
            .unwrap();
            (w.line, key)
        })
        .collect();
    assert_eq!(
        got,
        [
            (18, "kprobes"),
            (20, "kretprobes"),
            (21, "tracepoints"),
            (23, "raw_tracepoints"),
            (24, "perf_events"),
        ]
    );
    for w in &warnings {
        assert_eq!(w.column, 5);
        assert!(w.message.contains("\"gc_total\""));
        assert!(w.message.contains("ignored"));
        assert!(w.message.contains("userspace probes"));
    }
}
