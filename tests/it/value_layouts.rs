//! Gauges and struct values: several counters and gauges read from the
//! members of one map value (by name through the map's BTF, or by offset),
//! signed values, scaled values, and per-CPU signed values summed.

use crate::common::{self, fixtures, require_bpf, Exporter, Target, EXPORTER};
use std::process::Command;

fn config(stats_comm: &str, pending_comm: &str) -> String {
    format!(
        r#"
programs:
  - name: stats
    object: {object}
    metrics:
      counters:
        - name: add_calls_total
          help: target_add calls by first argument (member calls)
          table: stats
          labels: [{{name: a, size: 8, decoders: [{{name: int}}]}}]
          value: {{field: calls}}
        - name: add_b_halves_total
          help: half the sum of target_add's second arguments (member sum_b x 0.5)
          table: stats
          labels: [{{name: a, size: 8, decoders: [{{name: int}}]}}]
          value: {{field: sum_b, multiplier: 0.5}}
      gauges:
        - name: add_last_diff
          help: a - b of the last call (signed member last_diff)
          table: stats
          labels: [{{name: a, size: 8, decoders: [{{name: int}}]}}]
          value: {{field: last_diff}}
        - name: add_max_b
          help: the largest second argument (4-byte member at offset 24)
          table: stats
          labels: [{{name: a, size: 8, decoders: [{{name: int}}]}}]
          value: {{offset: 24, size: 4}}
        - name: add_inflight
          help: calls entered and not returned (per-CPU, signed, summed)
          table: inflight
        - name: add_calls_by_b
          help: calls by second argument, in a map of 4 entries
          table: small
          labels: [{{name: b, size: 8, decoders: [{{name: uint}}]}}]
      histograms:
        - name: add_b_hash
          help: target_add's second argument (per-CPU hash, summed)
          table: b_hash_slots
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 4
          labels: [{{name: slot, size: 8, decoders: [{{name: uint}}]}}]
        - name: add_b_array
          help: target_add's second argument (per-CPU array, summed)
          table: b_array_slots
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 4
          labels: [{{name: slot, size: 4, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    uretprobes:
      target_add: on_add_return
    attachment: {{binary_name: {stats_comm}}}
  - name: pending
    object: {object}
    metrics:
      gauges:
        - name: add_pending
          help: calls entered (no returns seen)
          table: inflight
    uprobes:
      target_add: on_add_entry_only
    attachment: {{binary_name: {pending_comm}}}
"#,
        object = fixtures().object("struct_values").display()
    )
}

#[test]
fn counters_and_gauges_read_members_of_one_struct_value() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-structs");
    let mut b = Target::start("uexp-pending");
    let exporter = Exporter::start(&config("uexp-structs", "uexp-pending"));
    a.fire("call 5 7"); // target_add(7, 0..4)
    a.fire("call 3 -2"); // target_add(-2, 0..2)
    b.fire("call 6 1");
    let s = exporter.samples();
    let pid = a.pid().to_string();
    let get = |name: &str, arg: &str| {
        s.get(
            &format!("userspace_exporter_{name}"),
            &[("pid", &pid), ("a", arg)],
        )
    };
    assert_eq!(
        get("add_calls_total", "7"),
        Some(5.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(get("add_calls_total", "-2"), Some(3.0));
    assert_eq!(get("add_b_halves_total", "7"), Some(5.0));
    assert_eq!(get("add_b_halves_total", "-2"), Some(1.5));
    assert_eq!(get("add_last_diff", "7"), Some(3.0));
    assert_eq!(get("add_last_diff", "-2"), Some(-4.0));
    assert_eq!(get("add_max_b", "7"), Some(4.0));
    assert_eq!(get("add_max_b", "-2"), Some(2.0));
    assert_eq!(
        s.get("userspace_exporter_add_inflight", &[("pid", &pid)]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "userspace_exporter_add_pending",
            &[("pid", &b.pid().to_string())]
        ),
        Some(6.0)
    );
    let text = exporter.page("/metrics");
    assert!(
        text.contains("# TYPE userspace_exporter_add_last_diff gauge")
            && text.contains("# TYPE userspace_exporter_add_calls_total counter"),
        "{text}"
    );
}

#[test]
fn check_names_the_members_of_a_value_struct_a_config_misses() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let bad = config("uexp-structs", "uexp-pending")
        .replace("value: {field: calls}", "value: {field: max_ns}")
        .replace(
            "value: {offset: 24, size: 4}",
            "value: {offset: 20, size: 4}",
        );
    std::fs::write(&path, bad).unwrap();
    let out = Command::new(EXPORTER)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let members = "its members: calls (offset 0, 8 bytes), sum_b (offset 8, 8 bytes), last_diff (offset 16, 8 bytes), max_b (offset 24, 4 bytes), unused (offset 28, 4 bytes)";
    assert!(
        stdout.contains(&format!(
            "counter \"add_calls_total\": table \"stats\" has no value member \"max_ns\"; {members}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "gauge \"add_max_b\": table \"stats\" has no 4-byte integer member at offset 20 of its value; {members}"
        )),
        "{stdout}"
    );
}

#[test]
fn per_cpu_histograms_are_summed_across_cpus() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require(
        "a second CPU",
        common::found(
            common::cpus() >= 2,
            "run on a machine with two CPUs or more",
        ),
    ) {
        return;
    }
    let mut a = Target::start("uexp-percpu-h");
    let exporter = Exporter::start(&config("uexp-percpu-h", "uexp-percpu-n"));
    let pid = a.pid().to_string();
    let pin = |cpu: &str| {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpu, &pid])
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    };
    // Hits on both CPUs: each CPU's copy holds part of every bucket.
    pin("0");
    a.fire("call 5 7"); // b = 0, 1, 2, 3, 4
    pin("1");
    a.fire("call 3 7"); // b = 0, 1, 2
    let s = exporter.samples();
    for name in ["add_b_hash", "add_b_array"] {
        let bucket = |le: &str| {
            s.get(
                &format!("userspace_exporter_{name}_bucket"),
                &[("pid", &pid), ("le", le)],
            )
        };
        // exp2: slot k counts values up to 2^k.
        assert_eq!(bucket("1"), Some(4.0), "{name}\n{}", exporter.logs());
        assert_eq!(bucket("2"), Some(6.0), "{name}");
        assert_eq!(bucket("4"), Some(8.0), "{name}");
        assert_eq!(bucket("+Inf"), Some(8.0), "{name}");
        let sum = s.get(&format!("userspace_exporter_{name}_sum"), &[("pid", &pid)]);
        assert_eq!(sum, Some(13.0), "{name}");
    }
}

#[test]
fn a_full_hash_map_shows_in_table_entries_and_capacity() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-fill");
    let exporter = Exporter::start(&config("uexp-fill", "uexp-fill-none"));
    a.fire("call 10 7"); // b = 0..9: ten keys for a map of four
    let s = exporter.samples();
    let pid = a.pid().to_string();
    let fill = |family: &str, table: &str| {
        s.get(
            &format!("userspace_exporter_table_{family}"),
            &[("name", "stats"), ("table", table), ("pid", &pid)],
        )
    };
    assert_eq!(fill("entries", "small"), Some(4.0), "{}", exporter.logs());
    assert_eq!(fill("capacity", "small"), Some(4.0));
    assert_eq!(fill("entries", "stats"), Some(1.0));
    assert_eq!(fill("capacity", "stats"), Some(1024.0));
    // The four keys that fit, counted; the six others were dropped in the kernel.
    assert_eq!(
        s.series("userspace_exporter_add_calls_by_b").len(),
        4,
        "{:?}",
        s.series("userspace_exporter_add_calls_by_b")
    );
    // Arrays are always full: no fill figures for them.
    assert_eq!(fill("entries", "inflight"), None);
}

/// Integer members of a value struct: (offset, size, step added per hit).
pub type Members = &'static [(usize, usize, u64)];

/// The value structs of tests/fixtures/bpf/value_sizes.bpf.c: for each value
/// size, its integer members.
pub const VALUE_SIZES: [(u32, Members); 7] = [
    (1, &[(0, 1, 1)]),
    (2, &[(0, 2, 1)]),
    (4, &[(0, 4, 1)]),
    (8, &[(0, 8, 1)]),
    (12, &[(0, 4, 1), (4, 4, 2), (8, 4, 3)]),
    (
        16,
        &[(0, 8, 1), (8, 4, 2), (12, 2, 3), (14, 1, 4), (15, 1, 1)],
    ),
    (
        24,
        &[(0, 1, 1), (2, 2, 2), (4, 4, 3), (8, 8, 4), (16, 8, 5)],
    ),
];

/// The map kinds of value_sizes.bpf.c (each the prefix of its maps and of
/// its BPF function `on_hit_KIND`), and whether they are arrays (every key
/// present from the start).
pub const MAP_KINDS: [(&str, bool); 6] = [
    ("hash", false),
    ("lru_hash", false),
    ("array", true),
    ("percpu_hash", false),
    ("lru_percpu_hash", false),
    ("percpu_array", true),
];

#[test]
fn values_of_every_size_in_every_map_kind_count_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-valsizes";
    let mut config = String::from("programs:\n");
    for (kind, _) in MAP_KINDS {
        config.push_str(&format!(
            "  - name: sizes_{kind}\n    object: {}\n    metrics:\n      counters:\n",
            fixtures().object("value_sizes").display()
        ));
        for (size, members) in VALUE_SIZES {
            for (offset, bytes, _) in members {
                config.push_str(&format!(
                    "        - {{name: vs_{kind}_{size}_at{offset}_total, help: member at {offset} of {size}-byte values, table: {kind}_v{size}, labels: [{{name: key, size: 4, decoders: [{{name: uint}}]}}], value: {{offset: {offset}, size: {bytes}}}}}\n"
                ));
            }
        }
        config.push_str(&format!(
            "    usdt:\n      fixture:hit: on_hit_{kind}\n    attachment: {{binary_name: {comm}}}\n"
        ));
    }
    let mut target = Target::start(comm);
    let exporter = Exporter::start(&config);
    // Key k is hit 10·k times (the issue's example: u32 values read at an
    // 8-byte stride came out 10, 0, 60, 0, 0, 20).
    for k in 1..=6u64 {
        target.fire(&format!("usdt {} {k}", 10 * k));
    }
    let s = exporter.samples();
    let pid = target.pid().to_string();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (kind, array) in MAP_KINDS {
        for (size, members) in VALUE_SIZES {
            for &(offset, _, step) in members {
                let name = format!("userspace_exporter_vs_{kind}_{size}_at{offset}_total");
                let keys = if array { 0..=7 } else { 1..=6 };
                for k in keys {
                    let want = if (1..=6).contains(&k) {
                        Some((10 * k * step) as f64)
                    } else {
                        Some(0.0)
                    };
                    let got = s.get(&name, &[("key", &k.to_string()), ("pid", &pid)]);
                    checked += 1;
                    if got != want {
                        wrong.push(format!("{name}{{key={k}}}: {got:?}, not {want:?}"));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} series wrong:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        exporter.logs()
    );
    // 4 hash kinds x 17 members x 6 keys + 2 array kinds x 17 x 8 keys.
    assert_eq!(checked, 4 * 17 * 6 + 2 * 17 * 8);
}
