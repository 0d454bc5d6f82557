//! A real runtime: Debian's python3.11 carries `python:gc__start(generation)`.
//! The exported collections per generation equal what the interpreter itself
//! reports through `gc.get_stats()` over the same interval.

mod common;

use common::{fixtures, require_bpf, Exporter};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const PYTHON: &str = "/usr/bin/python3.11";

#[test]
fn gc_collections_per_generation_match_gc_get_stats() {
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
    assert_eq!(ask("stats").chars().next(), Some('['));

    let config = format!(
        r#"
programs:
  - name: python_gc
    object: {object}
    metrics:
      counters:
        - name: python_gc_collections_total
          help: Garbage collections by generation
          table: gc_counts
          labels:
            - name: generation
              size: 8
              decoders: [{{name: uint}}]
    usdt:
      python:gc__start: on_gc_start
    attachment:
      binary_name: uexp-py-gc
"#,
        object = fixtures().object("python_gc").display()
    );
    let exporter = Exporter::start(&config);
    let pid = child.id().to_string();
    let exported = |e: &Exporter| -> [f64; 3] {
        let s = e.samples();
        [0, 1, 2].map(|g| {
            s.get(
                "userspace_exporter_python_gc_collections_total",
                &[("generation", &g.to_string()), ("pid", &pid)],
            )
            .unwrap_or(0.0)
        })
    };
    let parse = |line: String| -> [f64; 3] {
        let v: Vec<f64> = line
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        [v[0], v[1], v[2]]
    };

    let before_exported = exported(&exporter);
    let before = parse(ask("stats"));
    assert_eq!(ask("work 30"), "ok");
    let after = parse(ask("stats"));
    let after_exported = exported(&exporter);

    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let counted: Vec<f64> = (0..3)
        .map(|g| after_exported[g] - before_exported[g])
        .collect();
    // 30 explicit collections (10 per generation) plus the automatic ones the allocations trigger.
    assert!(reported.iter().all(|&n| n >= 10.0), "{reported:?}");
    assert_eq!(
        counted, reported,
        "exported deltas vs gc.get_stats() deltas per generation"
    );
    ask("exit");
    let _ = child.wait();
}
