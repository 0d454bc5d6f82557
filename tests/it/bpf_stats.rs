//! What the probes cost: each BPF program's run count and run time from the
//! kernel's BPF statistics, which the exporter turns on while it runs.

use crate::common::{self, hits_config, require_bpf, Exporter, Target};

#[test]
fn the_run_count_equals_the_probe_hits_a_target_made() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-runs");
    let mut b = Target::start("uexp-runs");
    let exporter = Exporter::start(&hits_config("uexp-runs"));
    a.fire("usdt 5 7");
    a.fire("usdt 2 1");
    b.fire("usdt 3 9");
    let s = exporter.samples();
    let runs = |t: &Target| {
        s.get(
            "userspace_exporter_bpf_program_runs_total",
            &[
                ("name", "churn"),
                ("program", "on_hit"),
                ("pid", &t.pid().to_string()),
            ],
        )
    };
    assert_eq!(runs(&a), Some(7.0), "{}", exporter.logs());
    assert_eq!(runs(&b), Some(3.0));
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
fn statistics_can_be_left_off() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-nostats");
    let exporter = Exporter::start_with(&hits_config("uexp-nostats"), &["--bpf.stats=false"]);
    a.fire("usdt 2 1");
    let s = exporter.samples();
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
}
