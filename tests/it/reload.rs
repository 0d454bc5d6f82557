//! Config reload (SIGHUP, `POST /-/reload`, `--config.watch`): unchanged
//! programs keep their instances and counts across it, changed ones start
//! afresh, a broken config changes nothing, and nothing is left in the kernel.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples, Target};
use crate::kernel_objects::{host, Watch};
use std::time::Duration;

/// Two programs on processes named `comm`: `hits` counts fixture:hit by
/// argument, `calls` counts target_add calls by first argument. `help`
/// is the calls counter's HELP text (changing it changes that program).
fn two_programs(comm: &str, help: &str) -> String {
    format!(
        r#"
programs:
  - name: hits
    object: {usdt}
    metrics:
      counters:
        - name: reload_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
  - name: calls
    object: {uprobe}
    metrics:
      counters:
        - name: reload_calls_total
          help: {help}
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        usdt = fixtures().object("usdt_counts").display(),
        uprobe = fixtures().object("uprobe_counts").display(),
    )
}

fn value(s: &Samples, name: &str, pid: u32, arg: &str) -> Option<f64> {
    s.get(name, &[("arg", arg), ("pid", &pid.to_string())])
}

fn reloads(s: &Samples) -> (f64, f64) {
    (
        s.value("userspace_exporter_config_last_reload_successful", &[]),
        s.value(
            "userspace_exporter_config_last_reload_success_timestamp_seconds",
            &[],
        ),
    )
}

fn sighup(exporter: &Exporter) {
    unsafe { libc::kill(exporter.pid() as i32, libc::SIGHUP) };
}

/// Waits until the exporter logged `n` reloads (of either outcome).
fn wait_reloads(exporter: &Exporter, n: usize) {
    let done = wait_for(Duration::from_secs(30), || {
        let logs = exporter.logs();
        (logs.matches("config reloaded").count() + logs.matches("config reload failed").count()
            >= n)
            .then_some(())
    });
    assert!(done.is_some(), "no reload #{n}:\n{}", exporter.logs());
}

#[test]
fn a_target_hitting_its_probe_across_sighups_is_counted_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-reload1";
    let mut target = Target::start(comm);
    let exporter = Exporter::start(&two_programs(comm, "calls"));
    let pid = target.pid();
    let (ok, started_at) = reloads(&exporter.samples());
    assert_eq!(ok, 1.0);
    assert!(started_at > 1.6e9, "{started_at}");
    // Scrapes run all along: the counter never drops or disappears.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(value(
                    &exporter.samples(),
                    "userspace_exporter_reload_hits_total",
                    pid,
                    "3",
                ));
            }
            seen
        });
        for round in 0..5 {
            target.fire("usdt 40 3");
            sighup(&exporter);
            target.fire("usdt 40 3");
            wait_reloads(&exporter, round + 1);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    let s = exporter.samples();
    assert_eq!(
        value(&s, "userspace_exporter_reload_hits_total", pid, "3"),
        Some(400.0),
        "{}",
        exporter.logs()
    );
    let first = seen.iter().position(Option::is_some).unwrap();
    let values: Vec<f64> = seen[first..]
        .iter()
        .map(|v| v.expect("series vanished"))
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    let (ok, at) = reloads(&s);
    assert_eq!(ok, 1.0);
    assert!(at > started_at);
    // The same config: the instance was kept, never attached again.
    assert_eq!(
        exporter
            .logs()
            .matches(&format!("target=pid {pid} "))
            .count(),
        2,
        "one attach per program, none by the reloads:\n{}",
        exporter.logs()
    );
}

#[test]
fn a_reload_changing_one_program_keeps_the_other_counting() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-reload2";
    let mut target = Target::start(comm);
    let exporter = Exporter::start_with(&two_programs(comm, "calls"), &["--web.enable-lifecycle"]);
    let pid = target.pid();
    target.fire("usdt 7 1");
    target.fire("call 5 2");
    std::fs::write(
        exporter.dir.path().join("config.yaml"),
        two_programs(comm, "calls, changed"),
    )
    .unwrap();
    // GET is not a reload.
    assert!(matches!(
        ureq::get(&exporter.url("/-/reload")).call(),
        Err(ureq::Error::StatusCode(405))
    ));
    let reloaded = ureq::post(&exporter.url("/-/reload")).send_empty().unwrap();
    assert_eq!(reloaded.status().as_u16(), 200);
    target.fire("usdt 3 1");
    target.fire("call 4 2");
    let s = exporter.samples();
    // Unchanged: its counts go on. Changed: a fresh instance, only what came after.
    assert_eq!(
        value(&s, "userspace_exporter_reload_hits_total", pid, "1"),
        Some(10.0)
    );
    assert_eq!(
        value(&s, "userspace_exporter_reload_calls_total", pid, "2"),
        Some(4.0)
    );
    assert!(exporter
        .scrape()
        .contains("# HELP userspace_exporter_reload_calls_total calls, changed\n"));
    // A program removed by a reload leaves with its series.
    let only_hits = two_programs(comm, "calls");
    let only_hits = &only_hits[..only_hits.find("  - name: calls").unwrap()];
    std::fs::write(exporter.dir.path().join("config.yaml"), only_hits).unwrap();
    let reloaded = ureq::post(&exporter.url("/-/reload")).send_empty().unwrap();
    assert_eq!(reloaded.status().as_u16(), 200);
    let s = exporter.samples();
    assert!(s.series("userspace_exporter_reload_calls_total").is_empty());
    assert_eq!(
        value(&s, "userspace_exporter_reload_hits_total", pid, "1"),
        Some(10.0)
    );
}

#[test]
fn reload_over_http_needs_the_lifecycle_flag() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let exporter = Exporter::start(&common::hits_config("uexp-reload3"));
    assert!(matches!(
        ureq::post(&exporter.url("/-/reload")).send_empty(),
        Err(ureq::Error::StatusCode(403))
    ));
}

#[test]
fn a_broken_config_changes_nothing_and_says_why() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-reload4";
    let mut target = Target::start(comm);
    let exporter = Exporter::start(&two_programs(comm, "calls"));
    let pid = target.pid();
    target.fire("usdt 2 9");
    let config = exporter.dir.path().join("config.yaml");
    // A YAML error, then a program whose object does not exist.
    let broken = [
        two_programs(comm, "calls").replace("    usdt:\n", "    usdt:\n  oops: [\n"),
        two_programs(comm, "calls, changed").replace("uprobe_counts.bpf.o", "missing.bpf.o"),
    ];
    for (i, text) in broken.iter().enumerate() {
        std::fs::write(&config, text).unwrap();
        sighup(&exporter);
        wait_reloads(&exporter, i + 1);
        target.fire("usdt 1 9");
        target.fire("call 1 9");
        let s = exporter.samples();
        assert_eq!(reloads(&s).0, 0.0);
        assert_eq!(
            value(&s, "userspace_exporter_reload_hits_total", pid, "9"),
            Some(3.0 + i as f64)
        );
        assert_eq!(
            value(&s, "userspace_exporter_reload_calls_total", pid, "9"),
            Some(1.0 + i as f64)
        );
        let page = exporter.page("/");
        assert!(page.contains("The last config reload failed"), "{page}");
        assert!(page.contains(&config.display().to_string()), "{page}");
    }
    assert!(
        exporter.logs().contains("missing.bpf.o"),
        "{}",
        exporter.logs()
    );
    // Fixed: the reload goes through.
    std::fs::write(&config, two_programs(comm, "calls")).unwrap();
    sighup(&exporter);
    wait_reloads(&exporter, 3);
    let s = exporter.samples();
    assert_eq!(reloads(&s).0, 1.0);
    assert_eq!(
        value(&s, "userspace_exporter_reload_hits_total", pid, "9"),
        Some(4.0)
    );
    let page = exporter.page("/");
    assert!(!page.contains("The last config reload failed"), "{page}");
}

#[test]
fn a_configmap_update_reloads_with_config_watch() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // A ConfigMap volume: config.yaml -> ..data/config.yaml, ..data -> a
    // timestamped directory, swapped by renaming a new symlink over ..data.
    let comm = "uexp-reload5";
    let mut target = Target::start(comm);
    let volume = tempfile::tempdir().unwrap();
    let version = |n: u32, text: &str| {
        let dir = volume.path().join(format!("..2026_v{n}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("config.yaml"), text).unwrap();
        let tmp = volume.path().join("..data_tmp");
        std::os::unix::fs::symlink(dir.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, volume.path().join("..data")).unwrap();
    };
    version(1, &common::hits_config(comm));
    std::os::unix::fs::symlink("..data/config.yaml", volume.path().join("config.yaml")).unwrap();
    let path = volume.path().join("config.yaml");
    let exporter = Exporter::start_with("", &["-c", path.to_str().unwrap(), "--config.watch"]);
    target.fire("usdt 2 5");
    version(2, &two_programs(comm, "calls"));
    wait_reloads(&exporter, 1);
    target.fire("call 3 5");
    let s = exporter.samples();
    assert_eq!(reloads(&s).0, 1.0, "{}", exporter.logs());
    assert_eq!(
        value(
            &s,
            "userspace_exporter_reload_calls_total",
            target.pid(),
            "5"
        ),
        Some(3.0)
    );
}

#[test]
fn a_reload_while_a_hundred_processes_churn_leaves_no_kernel_objects_behind() {
    // Exclusive since it counted host-wide objects (it now counts the
    // exporter's own, `kernel_objects`); sharing was not tried.
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-reload6";
    fixtures().target_named(comm);
    let exporter = Exporter::start_with(
        &two_programs(comm, "calls"),
        &["--web.enable-lifecycle", "--discovery.interval", "200ms"],
    );
    let config = exporter.dir.path().join("config.yaml");
    let baseline_fds = crate::churn_leaks::fds(exporter.pid());
    let mut watch = Watch::start(exporter.pid());
    let baseline = watch.steady();
    for batch in 0..5 {
        let targets: Vec<Target> = (0..20).map(|_| Target::start(comm)).collect();
        // Each reload changes the calls program, so its instances are replaced.
        let help = format!("calls, version {batch}");
        std::fs::write(&config, two_programs(comm, &help)).unwrap();
        let reloaded = ureq::post(&exporter.url("/-/reload")).send_empty().unwrap();
        assert_eq!(reloaded.status().as_u16(), 200);
        drop(targets);
    }
    let settled = wait_for(Duration::from_secs(30), || {
        let now = (crate::churn_leaks::fds(exporter.pid()), watch.now());
        // Fewer fds is fine: the baseline may count a test client's keep-alive
        // connection that the server has since closed.
        (now.0 <= baseline_fds && now.1 == baseline).then_some(now)
    });
    assert!(
        settled.is_some(),
        "not back to baseline: fds {} vs {baseline_fds}, BPF objects held {} vs {baseline}; \
         host-wide {}\n{}",
        crate::churn_leaks::fds(exporter.pid()),
        watch.now(),
        host().counts(),
        exporter.logs()
    );
    assert_eq!(reloads(&exporter.samples()).0, 1.0);
    drop(exporter);
    watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
}
