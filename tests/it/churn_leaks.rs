//! 200 short-lived processes started and ended in churn leave nothing behind:
//! the exporter's file descriptors, the BPF programs, maps, links and BTF it
//! holds (`kernel_objects`: its own, not the host's), and the exported series
//! all return to their baseline, and after it exits the kernel has freed
//! every object it was seen holding. (It still takes the exclusive guard it
//! took when it counted host-wide objects; whether it could now share the
//! machine, with 200 processes to attach, was not tried.)

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use crate::kernel_objects::{host, Kind, Watch};
use std::time::Duration;

/// How many fds process `pid` has open.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn two_hundred_short_lived_processes_leave_no_links_fds_maps_or_series() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let config = common::hits_config("uexp-churn");
    let exporter = Exporter::start_with(&config, &["--discovery.interval", "200ms"]);
    fixtures().target_named("uexp-churn");
    let baseline_fds = fds(exporter.pid());
    let mut watch = Watch::start(exporter.pid());
    let baseline = watch.steady();

    let mut counted = 0.0;
    for batch in 0..10 {
        let mut targets: Vec<Target> = (0..20).map(|_| Target::start("uexp-churn")).collect();
        // This test is about leaks, not speed: wait until all are attached, then hit.
        wait_for(Duration::from_secs(60), || {
            let s = exporter.samples();
            targets
                .iter()
                .all(|t| {
                    s.get(
                        "userspace_exporter_enabled_programs",
                        &[("name", "churn"), ("pid", &t.pid().to_string())],
                    )
                    .is_some()
                })
                .then_some(())
        })
        .unwrap_or_else(|| panic!("batch {batch} never fully attached:\n{}", exporter.logs()));
        for t in &mut targets {
            t.cmd("usdt 3 1");
        }
        let s = exporter.samples();
        for t in &targets {
            counted += s
                .get(
                    "userspace_exporter_churn_hits_total",
                    &[("arg", "1"), ("pid", &t.pid().to_string())],
                )
                .unwrap_or(0.0);
        }
        // While attached, every instance holds its program, maps, link and
        // BTF (and this look adds them to what the exporter was seen holding).
        let (during, quiet) = (watch.now().counts(), baseline.counts());
        for kind in Kind::ALL {
            assert!(
                during.of(kind) >= quiet.of(kind) + 20,
                "batch {batch}, {kind:?}: {during} vs {quiet}"
            );
        }
        drop(targets);
    }
    assert_eq!(
        counted,
        200.0 * 3.0,
        "every process attached in time and counted exactly"
    );

    let settled = wait_for(Duration::from_secs(20), || {
        let s = exporter.samples();
        let attached = s.value(
            "userspace_exporter_processes",
            &[("name", "churn"), ("state", "attached")],
        );
        let now = (
            fds(exporter.pid()),
            watch.now(),
            s.series("userspace_exporter_churn_hits_total").len(),
        );
        // Fewer fds than at the start is fine: the baseline may hold a test
        // client's keep-alive connection that the server has since closed.
        (attached == 0.0 && now.0 <= baseline_fds && now.1 == baseline && now.2 == 0).then_some(now)
    });
    assert!(
        settled.is_some(),
        "not back to baseline: fds {} vs {baseline_fds}, BPF objects {} ({}) vs {baseline} ({}); \
         host-wide {}\n{}",
        fds(exporter.pid()),
        watch.now(),
        watch.now().counts(),
        baseline.counts(),
        host().counts(),
        exporter.scrape()
    );
    drop(exporter);
    let freed = watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        freed.counts().of(Kind::Prog) >= 200,
        "every instance's program was seen: {}",
        freed.counts()
    );
}
