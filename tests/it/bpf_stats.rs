//! What the probes cost: each BPF program's run count and run time from the
//! kernel's BPF statistics. Counting costs every BPF program on the host, so
//! the exporter turns it on only when asked (`--bpf.stats`); otherwise it
//! exports the figures only while an administrator has the
//! `kernel.bpf_stats_enabled` sysctl on, and changes nothing.

use crate::common::{self, hits_config, require_bpf, Exporter, Target};

/// Descriptors of `pid` that hold the kernel's BPF statistics on
/// (`BPF_ENABLE_STATS`): the sysctl does not show them.
fn stats_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:bpf-stats")
        .count()
}

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

fn sysctl() -> String {
    std::fs::read_to_string(SYSCTL).unwrap().trim().to_string()
}

/// Sets the sysctl, and puts back what it was when dropped.
struct SysctlSet(String);

impl SysctlSet {
    fn to(value: &str) -> SysctlSet {
        let was = sysctl();
        std::fs::write(SYSCTL, value).unwrap();
        SysctlSet(was)
    }
}

impl Drop for SysctlSet {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

fn runs(s: &common::Samples, t: &Target) -> Option<f64> {
    s.get(
        "userspace_exporter_bpf_program_runs_total",
        &[
            ("name", "churn"),
            ("program", "on_hit"),
            ("pid", &t.pid().to_string()),
        ],
    )
}

#[test]
fn asked_for_the_run_count_equals_the_probe_hits_a_target_made() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-runs");
    let mut b = Target::start("uexp-runs");
    let exporter = Exporter::start_with(&hits_config("uexp-runs"), &["--bpf.stats"]);
    assert_eq!(stats_descriptors(exporter.pid()), 1, "{}", exporter.logs());
    a.fire("usdt 5 7");
    a.fire("usdt 2 1");
    b.fire("usdt 3 9");
    let s = exporter.samples();
    assert_eq!(runs(&s, &a), Some(7.0), "{}", exporter.logs());
    assert_eq!(runs(&s, &b), Some(3.0));
    let seconds = s
        .get(
            "userspace_exporter_bpf_program_run_seconds_total",
            &[
                ("name", "churn"),
                ("program", "on_hit"),
                ("pid", &a.pid().to_string()),
            ],
        )
        .unwrap();
    // Seven runs of a few hundred instructions: more than nothing, far less than a millisecond.
    assert!(seconds > 0.0 && seconds < 1e-3, "{seconds}");
    let page = exporter.page("/");
    assert!(
        page.contains("probe cost so far: 10 BPF program run(s)"),
        "{page}"
    );
}

#[test]
fn by_default_statistics_stay_off_and_no_descriptor_turns_them_on() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // The sysctl is only ever set by the exclusive test below.
    assert_eq!(sysctl(), "0", "an administrator has BPF statistics on");
    let mut a = Target::start("uexp-nostats");
    let exporter = Exporter::start(&hits_config("uexp-nostats"));
    a.fire("usdt 2 1");
    let s = exporter.samples();
    assert_eq!(stats_descriptors(exporter.pid()), 0, "{}", exporter.logs());
    assert_eq!(
        s.series("userspace_exporter_bpf_program_runs_total").len(),
        0
    );
    assert_eq!(
        s.get(
            "userspace_exporter_churn_hits_total",
            &[("arg", "1"), ("pid", &a.pid().to_string())]
        ),
        Some(2.0)
    );
    assert!(!exporter.page("/").contains("probe cost"));
    assert!(!exporter.logs().contains("BPF run statistics"));
}

#[test]
fn an_administrators_sysctl_is_read_and_left_as_it_is() {
    // The sysctl is kernel-wide: no other test may run meanwhile.
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let on = SysctlSet::to("1");
    let mut a = Target::start("uexp-sysstats");
    let exporter = Exporter::start(&hits_config("uexp-sysstats"));
    a.fire("usdt 4 2");
    let s = exporter.samples();
    assert_eq!(runs(&s, &a), Some(4.0), "{}", exporter.logs());
    assert_eq!(stats_descriptors(exporter.pid()), 0);
    // Switched off by the administrator: the figures go, nothing else does.
    std::fs::write(SYSCTL, "0").unwrap();
    a.fire("usdt 1 2");
    let s = exporter.samples();
    assert_eq!(runs(&s, &a), None);
    assert_eq!(
        s.get(
            "userspace_exporter_churn_hits_total",
            &[("arg", "2"), ("pid", &a.pid().to_string())]
        ),
        Some(5.0)
    );
    std::fs::write(SYSCTL, "1").unwrap();
    drop(exporter);
    assert_eq!(sysctl(), "1", "the exporter changed the sysctl");
    drop(on);
}
