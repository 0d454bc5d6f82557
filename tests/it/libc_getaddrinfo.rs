//! The libc example (examples/libc_getaddrinfo.yaml) on a C program: every
//! getaddrinfo() call it makes is counted by result, and timed.

use crate::common::{self, fixtures, require_bpf, Exporter, Samples, Target};

#[test]
fn getaddrinfo_calls_are_counted_by_result_and_timed() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let binary = common::named_copy(&fixtures().resolver, "uexp-resolver1");
    // The resolver speaks the fixture target's protocol ("ready", a reply per line).
    let mut resolver = Target::start_binary(&binary);
    let exporter =
        Exporter::start(&fixtures().example_config("libc_getaddrinfo", "myapp", "uexp-resolver1"));
    let pid = resolver.pid().to_string();
    let calls = |s: &Samples, result: &str| {
        s.get(
            "userspace_exporter_getaddrinfo_calls_total",
            &[("pid", &pid), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    // The program's own count of failures (EAI_NONAME for a non-numeric name).
    assert_eq!(resolver.cmd("ok 25"), "ok 0");
    assert_eq!(resolver.cmd("bad 7"), "ok 7");
    let s = exporter.samples();
    assert_eq!(calls(&s, "0"), 25.0, "{}", exporter.scrape());
    assert_eq!(calls(&s, "-2"), 7.0, "EAI_NONAME is -2");
    assert_eq!(
        s.series("userspace_exporter_getaddrinfo_calls_total").len(),
        2
    );
    let h = "userspace_exporter_getaddrinfo_duration_seconds";
    assert_eq!(s.value(&format!("{h}_count"), &[("pid", &pid)]), 32.0);
    assert!(s.value(&format!("{h}_sum"), &[("pid", &pid)]) > 0.0);
}
