//! The decoders for userspace probes on real hits: `errno` on a function's
//! negative return values, `cgroup` on `bpf_get_current_cgroup_id()`, and
//! `inet_ip` on the addresses a real CPython process connects to.

use crate::common::{self, fixtures, named_copy, require_bpf, Exporter, Target, PYTHON};
use std::path::Path;
use std::process::Command;

fn config(target: &str, python: &str) -> String {
    format!(
        r#"
programs:
  - name: returns
    object: {object}
    metrics:
      counters:
        - name: add_results_total
          help: target_add return values, errors by name
          table: returns
          labels: [{{name: result, size: 8, decoders: [{{name: errno}}]}}]
        - name: add_calls_by_cgroup_total
          help: target_add calls by the caller's cgroup
          table: cgroups
          labels: [{{name: cgroup, size: 8, decoders: [{{name: cgroup}}]}}]
    uprobes:
      target_add: on_add_entry
    uretprobes:
      target_add: on_add_return
    attachment: {{binary_name: {target}}}
  - name: peers
    object: {object}
    metrics:
      counters:
        - name: connects_v4_total
          help: connect() calls by IPv4 peer
          table: peers4
          labels: [{{name: peer, size: 4, decoders: [{{name: inet_ip}}]}}]
        - name: connects_v6_total
          help: connect() calls by IPv6 peer
          table: peers6
          labels: [{{name: peer, size: 16, decoders: [{{name: inet_ip}}]}}]
    uprobes:
      c:connect: on_connect
    attachment: {{binary_name: {python}}}
"#,
        object = fixtures().object("decoder_inputs").display()
    )
}

/// Connects UDP sockets (no packet is sent) on command: `v4 ADDR N`, `v6 ADDR N`.
const CONNECTOR: &str = r#"
import socket, sys
print("ready", flush=True)
for line in sys.stdin:
    family, addr, n = line.split()
    kind = socket.AF_INET if family == "v4" else socket.AF_INET6
    for _ in range(int(n)):
        with socket.socket(kind, socket.SOCK_DGRAM) as s:
            s.connect((addr, 9))
    print("ok", flush=True)
"#;

#[test]
fn errno_cgroup_and_inet_ip_decode_real_hits() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_python() {
        return;
    }
    let mut target = Target::start("uexp-decoders");
    let mut python = Target::spawn(
        Command::new(named_copy(Path::new(PYTHON), "uexp-dec-py"))
            .arg("-c")
            .arg(CONNECTOR),
    );
    let exporter = Exporter::start(&config("uexp-decoders", "uexp-dec-py"));
    // target_add(-5, i) for i in 0..3 returns -5, -4, -3: EIO, EINTR, ESRCH.
    target.fire("call 3 -5");
    target.fire("call 2 0"); // returns 0 and 1
    python.cmd("v4 127.0.0.3 4");
    python.cmd("v4 10.9.8.7 1");
    python.cmd("v6 ::1 2");
    python.cmd("v6 2001:db8::5 3");
    let s = exporter.samples();
    let pid = target.pid().to_string();
    let result = |r: &str| {
        s.get(
            "userspace_exporter_add_results_total",
            &[("pid", &pid), ("result", r)],
        )
    };
    for name in ["EIO", "EINTR", "ESRCH", "0", "1"] {
        assert_eq!(result(name), Some(1.0), "{name}\n{}", exporter.logs());
    }
    assert_eq!(
        s.series("userspace_exporter_add_results_total").len(),
        5,
        "{}",
        exporter.logs()
    );
    // The caller's cgroup, as /proc/PID/cgroup shows it.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert_eq!(
        s.get(
            "userspace_exporter_add_calls_by_cgroup_total",
            &[("pid", &pid), ("cgroup", path)]
        ),
        Some(5.0),
        "{}",
        exporter.logs()
    );
    let pid = python.pid().to_string();
    let peer = |name: &str, addr: &str| s.get(name, &[("pid", &pid), ("peer", addr)]);
    assert_eq!(
        peer("userspace_exporter_connects_v4_total", "127.0.0.3"),
        Some(4.0)
    );
    assert_eq!(
        peer("userspace_exporter_connects_v4_total", "10.9.8.7"),
        Some(1.0)
    );
    assert_eq!(
        peer("userspace_exporter_connects_v6_total", "::1"),
        Some(2.0)
    );
    assert_eq!(
        peer("userspace_exporter_connects_v6_total", "2001:db8::5"),
        Some(3.0)
    );
}
