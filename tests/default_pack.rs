//! The embedded default pack: run with no --probe-config, the exporter loads
//! the programs compiled into it (no clang needed) and attaches to the
//! runtimes' processes on the machine as they come and go.

mod common;

use common::{require_bpf, wait_for, Exporter, Python, Samples};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::PYTHON;

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
fn with_no_config_the_default_pack_follows_python_processes_started_later() {
    if !require_bpf() {
        return;
    }
    if !Path::new(PYTHON).exists() {
        assert!(!common::in_ci(), "{PYTHON} missing");
        return;
    }
    // No clang on PATH: the default pack was compiled when the exporter was built.
    let exporter = Exporter::start_default(&[
        "--discovery.interval",
        "100ms",
        "--clang",
        "/nonexistent/clang",
    ]);
    assert!(
        exporter.logs().contains("embedded default pack"),
        "{}",
        exporter.logs()
    );
    // Started after the exporter, under Debian's own path.
    let mut python = Python::start_binary(Path::new(PYTHON));
    let pid = python.pid().to_string();
    wait_for(Duration::from_secs(10), || {
        exporter.samples().get(
            "userspace_exporter_enabled_programs",
            &[("name", "python"), ("pid", &pid)],
        )
    })
    .unwrap_or_else(|| panic!("python not attached:\n{}", exporter.logs()));
    let s0 = exporter.samples();
    let before = python.gc_collections();
    assert_eq!(python.ask("work 12"), "ok");
    let after = python.gc_collections();
    let s1 = exporter.samples();
    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let (e0, e1) = (generations(&s0, &pid), generations(&s1, &pid));
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    assert!(reported.iter().all(|&n| n >= 4.0), "{reported:?}");
    assert_eq!(
        counted, reported,
        "exported deltas vs gc.get_stats() deltas"
    );
}

#[test]
fn the_default_pack_can_be_written_out_and_checked() {
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::EXPORTER)
        .args(["defaults", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = dir.path().join("default.yaml");
    assert!(config.exists());
    assert!(dir.path().join("python.bpf.o").exists());
    let out = Command::new(common::EXPORTER)
        .args(["--clang", "/nonexistent/clang", "check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok: program \"python\": 4 probe(s)"),
        "{text}"
    );
    // The same as checking the embedded pack itself.
    let out = Command::new(common::EXPORTER)
        .arg("check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
