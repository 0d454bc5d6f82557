//! Least privilege, measured: the exporter runs as a non-root user (65532)
//! with exactly a set of capabilities, and does what the running kernel
//! allows that set, counting exactly; where the kernel refuses, the error
//! names the capability instead of a bare EPERM. What the kernel allows is
//! asked first, with the same credentials, through the raw system calls
//! (common::kernel_allows): two builds of one kernel version have differed
//! (process events and CAP_NET_ADMIN), so no test assumes what another
//! machine's kernel did.

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

/// What the running kernel allows a process with exactly `caps`, as uid
/// [`EXPORTER_UID`].
fn allowed(caps: &[&str]) -> std::collections::BTreeMap<String, Result<(), String>> {
    let wrapper = with_caps(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    common::kernel_allows(&wrapper)
}

/// Whether libbpf can attach a USDT probe with these answers: through a
/// uprobe_multi link where the kernel has them, else a perf-event uprobe.
fn usdt_allowed(kernel: &std::collections::BTreeMap<String, Result<(), String>>) -> bool {
    kernel["prog-load"].is_ok() && (kernel["uprobe-multi"].is_ok() || kernel["perf-uprobe"].is_ok())
}

/// Whether a single-function uprobe can be attached: through a uprobe_multi
/// link where the kernel has them, else (the kernel answered that it lacks
/// them, not that these capabilities may not make one) a perf-event uprobe.
/// The exporter decides by its own trial at startup, by the same rule
/// (crate::kernel::classify).
fn uprobe_allowed(kernel: &std::collections::BTreeMap<String, Result<(), String>>) -> bool {
    if uprobe_multi_missing(kernel) {
        perf_uprobe_allowed(kernel)
    } else {
        kernel["prog-load"].is_ok() && kernel["uprobe-multi"].is_ok()
    }
}

/// Whether the kernel answered that it has no uprobe_multi links (an
/// answer other than a refusal for privileges), which sends the exporter
/// to perf-event uprobes.
fn uprobe_multi_missing(kernel: &std::collections::BTreeMap<String, Result<(), String>>) -> bool {
    kernel["uprobe-multi"]
        .as_ref()
        .is_err_and(|why| !why.starts_with("EPERM") && !why.starts_with("EACCES"))
}

/// Whether a perf-event uprobe can be attached (the exporter's path with
/// uprobe_multi links missing or assumed missing).
fn perf_uprobe_allowed(kernel: &std::collections::BTreeMap<String, Result<(), String>>) -> bool {
    kernel["prog-load"].is_ok() && kernel["perf-uprobe"].is_ok()
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
fn usdt_and_uprobes_attach_exactly_where_the_kernel_allows_these_capabilities() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut target = start_as(EXPORTER_UID, &fixtures().target_named("uexp-priv-usdt"));
    // (capabilities, uprobe_multi links assumed missing, USDT hits)
    for (caps, assumed, hits_now) in [
        (&["bpf", "perfmon"][..], false, 5),
        (&["bpf", "perfmon"][..], true, 2),
        (&["sys_admin"][..], false, 3),
    ] {
        let kernel = allowed(caps);
        let args: &[&str] = if assumed {
            &["--kernel.assume-missing", "uprobe_multi"]
        } else {
            &[]
        };
        let exporter = start_exporter(&per_process("uexp-priv-usdt"), caps, args);
        target.fire(&format!("usdt {hits_now} 7"));
        target.fire("call 4 9");
        let s = exporter.samples();
        let logs = exporter.logs();
        let case = format!("{caps:?}, uprobe_multi assumed missing: {assumed}, kernel {kernel:?}");
        // libbpf decides for USDT by itself, whatever is assumed.
        assert_eq!(
            hits(&s, target.pid(), "7"),
            usdt_allowed(&kernel).then_some(hits_now as f64),
            "{case}: {logs}"
        );
        let perf = assumed || uprobe_multi_missing(&kernel);
        let uprobe = if assumed {
            perf_uprobe_allowed(&kernel)
        } else {
            uprobe_allowed(&kernel)
        };
        assert_eq!(
            calls(&s, target.pid(), "9"),
            uprobe.then_some(4.0),
            "{case}: {logs}"
        );
        if kernel["prog-load"].is_ok() && !uprobe {
            let why = if perf {
                "the kernel refused to create the uprobe through perf_event_open: grant CAP_SYS_ADMIN"
            } else {
                "the kernel refused to attach the uprobe through a uprobe_multi link: it needs CAP_BPF and CAP_PERFMON"
            };
            assert!(
                logs.contains("attaching uprobe target_add in ") && logs.contains(why),
                "{case}: {logs}"
            );
        }
    }
}

#[test]
fn where_the_kernel_refuses_to_load_nothing_loads_and_the_error_says_why() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let _target = start_as(EXPORTER_UID, &fixtures().target_named("uexp-priv-none"));
    for caps in [&[][..], &["bpf"][..], &["perfmon"][..]] {
        let kernel = allowed(caps);
        let exporter = start_exporter(&per_process("uexp-priv-none"), caps, &[]);
        let logs = exporter.logs();
        let attached = exporter
            .samples()
            .value("userspace_exporter_attached_processes", &[("name", "usdt")]);
        if kernel["prog-load"].is_ok() {
            assert_eq!(attached, 1.0, "{caps:?}, kernel {kernel:?}: {logs}");
        } else {
            assert!(
                logs.contains("the kernel refused to load the BPF program (EPERM): loading it needs CAP_BPF and CAP_PERFMON"),
                "{caps:?}: {logs}"
            );
            assert_eq!(attached, 0.0, "{caps:?}: {logs}");
        }
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
fn process_events_are_live_exactly_where_the_kernel_takes_the_subscription() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // CAP_NET_ADMIN is what the README and the deployments grant for events:
    // with it, the kernel must take the subscription.
    let with_net_admin = ["bpf", "perfmon", "net_admin"];
    assert_eq!(
        allowed(&with_net_admin)["proc-events"],
        Ok(()),
        "the README says CAP_NET_ADMIN is enough for process events"
    );
    for (caps, comm) in [
        (&["bpf", "perfmon"][..], "uexp-priv-ev1"),
        (&with_net_admin[..], "uexp-priv-ev2"),
    ] {
        let kernel = allowed(caps);
        let live = kernel["proc-events"].is_ok();
        // Where events are live, no rescan: only an event can attach the
        // target. Where they are not, the rescan must.
        let interval = if live { "0" } else { "200ms" };
        let exporter = start_exporter(
            &per_process(comm),
            caps,
            &["--discovery.interval", interval],
        );
        let mut target = start_as(EXPORTER_UID, &fixtures().target_named(comm));
        wait_for(Duration::from_secs(10), || {
            (exporter
                .samples()
                .value("userspace_exporter_attached_processes", &[("name", "usdt")])
                == 1.0)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{caps:?}: not attached:\n{}", exporter.logs()));
        target.fire("usdt 3 2");
        let s = exporter.samples();
        let logs = exporter.logs();
        assert_eq!(hits(&s, target.pid(), "2"), Some(3.0), "{logs}");
        assert_eq!(
            s.value("userspace_exporter_process_events_live", &[]),
            if live { 1.0 } else { 0.0 },
            "{caps:?}, kernel {kernel:?}: {logs}"
        );
        assert_eq!(
            logs.contains("process events unavailable"),
            !live,
            "{caps:?}, kernel {kernel:?}: {logs}"
        );
        if kernel["proc-events"]
            .as_ref()
            .is_err_and(|why| why.starts_with("EPERM"))
        {
            assert!(
                logs.contains("requires CAP_NET_ADMIN, which the exporter lacks: grant it")
                    && logs.contains(
                        "attached by the /proc rescan, within --discovery.interval (200ms)"
                    )
                    && !logs.contains("(Operation not permitted (os error 1))"),
                "{logs}"
            );
        }
    }
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

    for (caps, usdt_hits, add_calls) in [(&["bpf", "perfmon"][..], 4, 3), (&README_CAPS[..], 2, 7)]
    {
        let kernel = allowed(caps);
        let exporter = start_exporter(&config, caps, &[]);
        let mut target = start_as(OTHER_UID, &binary);
        target.fire(&format!("usdt {usdt_hits} 8"));
        target.fire(&format!("call {add_calls} 8"));
        let s = exporter.samples();
        let logs = exporter.logs();
        assert_eq!(
            series(&s, "priv_hits_total", "8"),
            usdt_allowed(&kernel).then_some(f64::from(usdt_hits)),
            "{caps:?}, kernel {kernel:?}: {logs}"
        );
        assert_eq!(
            series(&s, "priv_calls_total", "8"),
            uprobe_allowed(&kernel).then_some(f64::from(add_calls)),
            "{caps:?}, kernel {kernel:?}: {logs}"
        );
        if kernel["prog-load"].is_ok() && !uprobe_allowed(&kernel) {
            let why = if uprobe_multi_missing(&kernel) {
                "grant CAP_SYS_ADMIN"
            } else {
                "through a uprobe_multi link: it needs CAP_BPF and CAP_PERFMON"
            };
            assert!(logs.contains(why), "{logs}");
        }
    }
}

#[test]
fn wildcard_uprobes_attach_where_the_kernel_allows_uprobe_multi_links() {
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
    let caps = ["bpf", "perfmon"];
    let kernel = allowed(&caps);
    let exporter = start_exporter(&config, &caps, &["--bpf.stats=true"]);
    target.fire("call 6 9");
    let logs = exporter.logs();
    // BPF statistics asked for: refused where the kernel refuses them to
    // these capabilities, said once, and nothing else fails.
    assert_eq!(
        logs.contains("BPF run statistics unavailable"),
        kernel["enable-stats"].is_err(),
        "kernel {kernel:?}: {logs}"
    );
    if kernel["enable-stats"]
        .as_ref()
        .is_err_and(|why| why.starts_with("EPERM"))
    {
        assert!(
            logs.contains(
                "the kernel refused to turn BPF statistics on (EPERM): grant CAP_SYS_ADMIN"
            ),
            "{logs}"
        );
    }
    let s = exporter.samples();
    assert_eq!(
        calls(&s, target.pid(), "9"),
        (kernel["prog-load"].is_ok() && kernel["uprobe-multi"].is_ok()).then_some(6.0),
        "kernel {kernel:?}: {}",
        exporter.logs()
    );
}
