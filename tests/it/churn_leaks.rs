//! 200 short-lived processes started and ended in churn leave nothing behind:
//! the exporter's file descriptors, the kernel's BPF programs, maps and links,
//! and the exported series all return to their baseline. (It takes the
//! exclusive guard: the kernel-wide counts must not see other tests'
//! exporters.)

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use std::time::{Duration, Instant};

type NextId = unsafe extern "C" fn(u32, *mut u32) -> i32;

/// How many BPF objects of one kind the kernel holds.
fn kernel_count(next: NextId) -> usize {
    let (mut id, mut n) = (0u32, 0);
    while unsafe { next(id, &mut id) } == 0 {
        n += 1;
    }
    n
}

pub fn kernel_objects() -> [usize; 3] {
    [
        kernel_count(libbpf_sys::bpf_prog_get_next_id),
        kernel_count(libbpf_sys::bpf_map_get_next_id),
        kernel_count(libbpf_sys::bpf_link_get_next_id),
    ]
}

/// The kernel's counts once they have held still for half a second (at most
/// 30 s of waiting). The kernel frees a BPF object some RCU grace periods after
/// its last holder exits: the objects of a test that just ended must be gone
/// before the baseline is taken.
pub fn steady_kernel_objects() -> [usize; 3] {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut since) = (kernel_objects(), Instant::now());
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = kernel_objects();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

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
    let baseline = steady_kernel_objects();

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
        // While attached, every instance holds its program, maps and links.
        if batch == 0 {
            let during = kernel_objects();
            assert!(
                during[0] > baseline[0] && during[1] > baseline[1],
                "{during:?} vs {baseline:?}"
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
            kernel_objects(),
            s.series("userspace_exporter_churn_hits_total").len(),
        );
        // Fewer fds than at the start is fine: the baseline may hold a test
        // client's keep-alive connection that the server has since closed.
        (attached == 0.0 && now.0 <= baseline_fds && (now.1, now.2) == (baseline, 0)).then_some(now)
    });
    assert!(
        settled.is_some(),
        "not back to baseline: fds {} vs {baseline_fds}, kernel {:?} vs {baseline:?}\n{}",
        fds(exporter.pid()),
        kernel_objects(),
        exporter.scrape()
    );
}
