//! A real runtime: Debian's python3.11, with the shipped example
//! (examples/python.yaml). Collections per generation equal what the
//! interpreter reports through `gc.get_stats()` over the same interval; every
//! collection has one pause observation; import calls are counted exactly.

mod common;

use common::{fixtures, require_bpf, Exporter, Samples};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const PYTHON: &str = "/usr/bin/python3.11";

fn generations(s: &Samples, pid: &str) -> [f64; 3] {
    [0, 1, 2].map(|g| {
        s.get(
            "userspace_exporter_python_gc_collections_total",
            &[("generation", &g.to_string()), ("pid", pid)],
        )
        .unwrap_or(0.0)
    })
}

#[test]
fn python_example_matches_gc_get_stats_and_counts_imports() {
    if !require_bpf() {
        return;
    }
    if !std::path::Path::new(PYTHON).exists() {
        assert!(
            !common::in_ci(),
            "{PYTHON} missing: .ci/run installs Debian's python3.11"
        );
        eprintln!("SKIPPED: {PYTHON} missing");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python_gc.py");
    // A copy named so that only this test's exporter selects it.
    let python = fixtures().dir.join("uexp-py-gc");
    if !python.exists() {
        std::fs::copy(PYTHON, &python).unwrap();
    }
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let mut ask = |cmd: &str| {
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let parse = |line: String| -> [f64; 3] {
        let v: Vec<f64> = line
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        [v[0], v[1], v[2]]
    };

    let exporter =
        Exporter::start(&fixtures().example_config("python", "python3.11", "uexp-py-gc"));
    let pid = child.id().to_string();
    let pauses = |s: &Samples| {
        s.get(
            "userspace_exporter_python_gc_pause_seconds_count",
            &[("pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let imports = |s: &Samples| {
        s.get(
            "userspace_exporter_python_import_duration_seconds_count",
            &[("pid", &pid)],
        )
        .unwrap_or(0.0)
    };

    let s0 = exporter.samples();
    let before = parse(ask("stats"));
    assert_eq!(ask("work 30"), "ok");
    assert_eq!(ask("import 25"), "ok");
    let after = parse(ask("stats"));
    let s1 = exporter.samples();

    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let (e0, e1) = (generations(&s0, &pid), generations(&s1, &pid));
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    // 30 explicit collections (10 per generation) plus the automatic ones the allocations trigger.
    assert!(reported.iter().all(|&n| n >= 10.0), "{reported:?}");
    assert_eq!(
        counted, reported,
        "exported deltas vs gc.get_stats() deltas per generation"
    );
    // Every gc__start is followed by a gc__done: one pause observation per collection.
    assert_eq!(pauses(&s1) - pauses(&s0), reported.iter().sum::<f64>());
    let pause_sum = s1.value(
        "userspace_exporter_python_gc_pause_seconds_sum",
        &[("pid", &pid)],
    );
    assert!(
        pause_sum > 0.0 && pause_sum < 10.0,
        "pause sum {pause_sum} s"
    );
    // json is loaded already: each __import__ is exactly one PyImport_ImportModuleLevelObject call.
    assert_eq!(imports(&s1) - imports(&s0), 25.0);
    let inf = s1.value(
        "userspace_exporter_python_import_duration_seconds_bucket",
        &[("le", "+Inf"), ("pid", &pid)],
    );
    assert_eq!(inf, imports(&s1));
    ask("exit");
    let _ = child.wait();
}
