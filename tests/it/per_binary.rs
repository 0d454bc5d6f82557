//! `instances: per_binary`: one instance attached to an executable for every
//! process that runs it (libbpf's pid -1), so a process is counted from its
//! first instruction, before any event about it reaches the exporter.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `hits_config` attached per binary through `attachment`.
fn per_binary_config(comm: &str, attachment: &str) -> String {
    common::hits_config(comm)
        .replace(
            &format!("attachment: {{binary_name: {comm}}}"),
            &format!("attachment: {attachment}"),
        )
        .replace("    usdt:\n", "    instances: per_binary\n    usdt:\n")
}

/// Runs `binary` with its whole stdin written before it starts, so it fires
/// its probes the moment `main` runs and exits right after.
fn run_at_once(binary: &Path, commands: &str, dir: &Path) {
    let input = dir.join("commands");
    std::fs::File::create(&input)
        .and_then(|mut f| f.write_all(commands.as_bytes()))
        .unwrap();
    let status = common::spawn(
        Command::new(binary)
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(Stdio::null()),
    )
    .wait()
    .unwrap();
    assert!(status.success());
}

fn attached_binaries(exporter: &Exporter) -> Option<f64> {
    binaries_in(&exporter.samples())
}

/// The attached-binaries gauge of one scrape, to judge other series of that same scrape.
fn binaries_in(samples: &common::Samples) -> Option<f64> {
    samples.get("userspace_exporter_attached_binaries", &[("name", "churn")])
}

#[test]
fn a_named_executable_counts_every_process_from_its_first_instruction() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let binary = fixtures().target_named("uexp-perbin");
    let path = binary.display().to_string();
    // Startup scan only: no process event or rescan can help it here.
    let exporter = Exporter::start_with(
        &per_binary_config("uexp-perbin", &format!("{{exe_path: {path}}}")),
        &["--discovery.interval", "0"],
    );
    wait_for(Duration::from_secs(10), || {
        (attached_binaries(&exporter)? == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("binary not attached:\n{}", exporter.logs()));

    for _ in 0..20 {
        run_at_once(&binary, "usdt 5 7\nexit\n", exporter.dir.path());
    }
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_churn_hits_total",
            &[("arg", "7"), ("exe", &path)]
        ),
        100.0,
        "{}",
        exporter.scrape()
    );
    assert_eq!(s.series("userspace_exporter_churn_hits_total").len(), 1);
    // Per-binary instances are no process's: no enabled_programs{pid} series.
    assert!(s.series("userspace_exporter_enabled_programs").is_empty());
    assert!(
        exporter.logs().contains("attached for every process"),
        "{}",
        exporter.logs()
    );
}

#[test]
fn an_executable_found_through_a_process_covers_later_ones_until_it_is_replaced() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let binary = fixtures().target_named("uexp-perbin2");
    let path = binary.display().to_string();
    let exporter = Exporter::start_with(
        &per_binary_config("uexp-perbin2", "{binary_name: uexp-perbin2}"),
        &["--discovery.interval", "100ms"],
    );
    let mut first = common::Target::start_binary(&binary);
    wait_for(Duration::from_secs(10), || {
        (attached_binaries(&exporter)? == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("binary not attached:\n{}", exporter.logs()));
    first.cmd("usdt 3 1");
    for _ in 0..10 {
        run_at_once(&binary, "usdt 4 2\nexit\n", exporter.dir.path());
    }
    let s = exporter.samples();
    let hits = |s: &common::Samples, arg: &str| {
        s.value(
            "userspace_exporter_churn_hits_total",
            &[("arg", arg), ("exe", &path)],
        )
    };
    assert_eq!(hits(&s, "1"), 3.0);
    assert_eq!(hits(&s, "2"), 40.0, "{}", exporter.scrape());

    // The executables' processes exit: counts stay, ready for the next one.
    drop(first);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(hits(&exporter.samples(), "2"), 40.0);

    // An upgrade replaces the file: the old binary's instance and series go.
    let fresh = binary.with_extension("new");
    std::fs::copy(&binary, &fresh).unwrap();
    std::fs::rename(&fresh, &binary).unwrap();
    let s = wait_for(Duration::from_secs(10), || {
        // One scrape for both: the instance may go between two scrapes.
        let s = exporter.samples();
        (binaries_in(&s)? == 0.0).then_some(s)
    })
    .unwrap_or_else(|| panic!("replaced binary kept:\n{}", exporter.logs()));
    assert!(
        s.series("userspace_exporter_churn_hits_total").is_empty(),
        "{}",
        exporter.scrape()
    );

    // The new file is attached through its first process and counts afresh.
    let mut second = common::Target::start_binary(&binary);
    wait_for(Duration::from_secs(10), || {
        (attached_binaries(&exporter)? == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("new binary not attached:\n{}", exporter.logs()));
    second.cmd("usdt 6 1");
    let s = exporter.samples();
    assert_eq!(hits(&s, "1"), 6.0);
    assert_eq!(s.series("userspace_exporter_churn_hits_total").len(), 1);
}
