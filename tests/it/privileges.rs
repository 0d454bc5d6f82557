//! Least privilege, measured: the exporter runs as a non-root user (65532)
//! with exactly the capabilities a feature is documented to need (README,
//! "Privileges"), and counts exactly; with one of them missing, the error names
//! the capability instead of a bare EPERM.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The exporter's user in these tests (the image's `exporter` user).
const EXPORTER_UID: &str = "65532";
/// Another user, owner of some targets.
const OTHER_UID: &str = "1000";

/// `setpriv` arguments running the exporter as [`EXPORTER_UID`] with exactly
/// `caps` (permitted, effective through the ambient set, and bounding).
fn with_caps(caps: &[&str]) -> Vec<String> {
    let set = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".into(),
        format!("--reuid={EXPORTER_UID}"),
        format!("--regid={EXPORTER_UID}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".into(),
    ]
}

fn start_exporter(config: &str, caps: &[&str], args: &[&str]) -> Exporter {
    let wrapper = with_caps(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    Exporter::start_with_command(config, args, &wrapper)
}

/// A USDT program counting `fixture:hit` and a uprobe program counting
/// `target_add` calls, both with this selector and `instances:`.
fn config(instances: &str, selector: &str) -> String {
    format!(
        r#"
programs:
  - name: usdt
    object: {usdt}
    instances: {instances}
    metrics:
      counters:
        - name: priv_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {selector}
  - name: uprobe
    object: {uprobe}
    instances: {instances}
    metrics:
      counters:
        - name: priv_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {selector}
"#,
        usdt = fixtures().object("usdt_counts").display(),
        uprobe = fixtures().object("uprobe_counts").display(),
    )
}

fn per_process(comm: &str) -> String {
    config("per_process", &format!("{{binary_name: {comm}}}"))
}

/// Starts `binary` as user `uid`.
fn start_as(uid: &str, binary: &Path) -> Target {
    Target::spawn(
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(binary),
    )
}

/// A copy of the fixture target and its library in a directory only `uid`
/// may enter, owned by `uid`, modes 0700: the exporter's user cannot read it.
fn private_copy(uid: &str, comm: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join(comm);
    std::fs::copy(&fixtures().target, &binary).unwrap();
    std::fs::copy(&fixtures().library, dir.path().join("libfixture.so")).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chown -R {uid}:{uid} {d} && chmod -R 0700 {d}",
            d = dir.path().display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    (dir, binary)
}

fn hits(s: &Samples, pid: u32, arg: &str) -> Option<f64> {
    s.get(
        "userspace_exporter_priv_hits_total",
        &[("arg", arg), ("pid", &pid.to_string())],
    )
}

fn calls(s: &Samples, pid: u32, arg: &str) -> Option<f64> {
    s.get(
        "userspace_exporter_priv_calls_total",
        &[("arg", arg), ("pid", &pid.to_string())],
    )
}

#[test]
fn usdt_needs_cap_bpf_and_cap_perfmon_and_uprobes_cap_sys_admin() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut target = start_as(EXPORTER_UID, &fixtures().target_named("uexp-priv-usdt"));
    let exporter = start_exporter(&per_process("uexp-priv-usdt"), &["bpf", "perfmon"], &[]);
    target.fire("usdt 5 7");
    target.fire("call 4 9");
    let s = exporter.samples();
    assert_eq!(
        hits(&s, target.pid(), "7"),
        Some(5.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(calls(&s, target.pid(), "9"), None);
    let logs = exporter.logs();
    assert!(
        logs.contains("attaching uprobe target_add in ")
            && logs.contains("the kernel refused to create the uprobe")
            && logs.contains("needs CAP_SYS_ADMIN"),
        "{logs}"
    );
    drop(exporter);

    // With CAP_SYS_ADMIN alone, both attach.
    let exporter = start_exporter(&per_process("uexp-priv-usdt"), &["sys_admin"], &[]);
    target.fire("usdt 3 7");
    target.fire("call 4 9");
    let s = exporter.samples();
    assert_eq!(
        hits(&s, target.pid(), "7"),
        Some(3.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(calls(&s, target.pid(), "9"), Some(4.0));
}

#[test]
fn without_cap_bpf_and_cap_perfmon_nothing_loads_and_the_error_says_why() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let _target = start_as(EXPORTER_UID, &fixtures().target_named("uexp-priv-none"));
    for caps in [&[][..], &["bpf"][..]] {
        let exporter = start_exporter(&per_process("uexp-priv-none"), caps, &[]);
        let logs = exporter.logs();
        assert!(
            logs.contains("the kernel refused to load the BPF program (EPERM): loading it needs CAP_BPF and CAP_PERFMON"),
            "{caps:?}: {logs}"
        );
        assert_eq!(
            exporter
                .samples()
                .value("userspace_exporter_attached_processes", &[("name", "usdt")]),
            0.0
        );
    }
}

#[test]
fn another_users_processes_need_cap_sys_ptrace() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut target = start_as(OTHER_UID, &fixtures().target_named("uexp-priv-other"));
    let exporter = start_exporter(&per_process("uexp-priv-other"), &["sys_admin"], &[]);
    let logs = exporter.logs();
    assert!(
        logs.contains(&format!(
            "cannot read the files of process {} (uexp-priv-other): permission denied; the exporter needs CAP_SYS_PTRACE",
            target.pid()
        )),
        "{logs}"
    );
    drop(exporter);

    let exporter = start_exporter(
        &per_process("uexp-priv-other"),
        &["sys_admin", "sys_ptrace"],
        &[],
    );
    target.fire("usdt 6 1");
    target.fire("call 2 3");
    let s = exporter.samples();
    assert_eq!(
        hits(&s, target.pid(), "1"),
        Some(6.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(calls(&s, target.pid(), "3"), Some(2.0));
}

/// The README's full list for a host (every feature, any user's processes).
const README_CAPS: [&str; 5] = [
    "sys_admin",
    "sys_ptrace",
    "dac_read_search",
    "bpf",
    "perfmon",
];

#[test]
fn files_the_exporters_user_may_not_read_need_cap_dac_read_search() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (_dir, binary) = private_copy(OTHER_UID, "uexp-priv-dac");
    let mut target = start_as(OTHER_UID, &binary);
    let exporter = start_exporter(
        &per_process("uexp-priv-dac"),
        &["sys_admin", "sys_ptrace"],
        &[],
    );
    let logs = exporter.logs();
    assert!(
        logs.contains("Permission denied (os error 13) (the exporter's user may not read it; grant CAP_DAC_READ_SEARCH"),
        "{logs}"
    );
    assert!(!logs.contains("not found in process"), "{logs}");
    drop(exporter);

    let exporter = start_exporter(&per_process("uexp-priv-dac"), &README_CAPS, &[]);
    target.fire("usdt 2 4");
    target.fire("call 5 6");
    let s = exporter.samples();
    assert_eq!(
        hits(&s, target.pid(), "4"),
        Some(2.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(calls(&s, target.pid(), "6"), Some(5.0));
}

#[test]
fn process_events_need_no_capability() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // No rescan: only a process event can make the exporter attach the target.
    let exporter = start_exporter(
        &per_process("uexp-priv-event"),
        &["bpf", "perfmon"],
        &["--discovery.interval", "0"],
    );
    let mut target = start_as(EXPORTER_UID, &fixtures().target_named("uexp-priv-event"));
    wait_for(Duration::from_secs(10), || {
        (exporter
            .samples()
            .value("userspace_exporter_attached_processes", &[("name", "usdt")])
            == 1.0)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not attached through events:\n{}", exporter.logs()));
    target.fire("usdt 3 2");
    assert_eq!(
        hits(&exporter.samples(), target.pid(), "2"),
        Some(3.0),
        "{}",
        exporter.logs()
    );
    assert!(
        !exporter.logs().contains("process events unavailable"),
        "{}",
        exporter.logs()
    );
}

#[test]
fn per_binary_instances_need_the_same_capabilities_as_per_process_ones() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // Every process of this executable, counted from its first instruction.
    let binary = fixtures().target_named("uexp-priv-bin");
    let selector = format!("{{exe_path: {}}}", binary.display());
    let config = config("per_binary", &selector);
    let exe = binary.display().to_string();
    let series = |s: &Samples, name: &str, arg: &str| {
        s.get(
            &format!("userspace_exporter_{name}"),
            &[("arg", arg), ("exe", &exe)],
        )
    };

    let exporter = start_exporter(&config, &["bpf", "perfmon"], &[]);
    let mut target = start_as(OTHER_UID, &binary);
    target.fire("usdt 4 8");
    target.fire("call 3 8");
    let s = exporter.samples();
    assert_eq!(
        series(&s, "priv_hits_total", "8"),
        Some(4.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(series(&s, "priv_calls_total", "8"), None);
    assert!(
        exporter.logs().contains("needs CAP_SYS_ADMIN"),
        "{}",
        exporter.logs()
    );
    drop(target);
    drop(exporter);

    let exporter = start_exporter(&config, &README_CAPS, &[]);
    let mut target = start_as(OTHER_UID, &binary);
    target.fire("usdt 2 8");
    target.fire("call 7 8");
    let s = exporter.samples();
    assert_eq!(
        series(&s, "priv_hits_total", "8"),
        Some(2.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(series(&s, "priv_calls_total", "8"), Some(7.0));
}

#[test]
fn wildcard_uprobes_need_only_cap_bpf_and_cap_perfmon() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-priv-wild";
    let mut target = start_as(EXPORTER_UID, &fixtures().target_named(comm));
    // A glob matching target_add: one multi-uprobe link, no perf event.
    let config = format!(
        r#"
programs:
  - name: uprobe
    object: {uprobe}
    metrics:
      counters:
        - name: priv_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_ad?: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        uprobe = fixtures().object("uprobe_counts").display()
    );
    let exporter = start_exporter(&config, &["bpf", "perfmon"], &[]);
    target.fire("call 6 9");
    // BPF statistics need CAP_SYS_ADMIN: said once, and nothing else fails.
    assert!(
        exporter
            .logs()
            .contains("turning BPF statistics on needs CAP_SYS_ADMIN"),
        "{}",
        exporter.logs()
    );
    let s = exporter.samples();
    assert_eq!(
        calls(&s, target.pid(), "9"),
        Some(6.0),
        "{}",
        exporter.logs()
    );
}
