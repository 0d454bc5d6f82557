//! Faults a running exporter meets in its targets: an executable deleted,
//! replaced or rebuilt on disk, a target it has no right to read, a target
//! stopped (SIGSTOP) while it is attached, targets exiting in the middle of
//! their attach, and `/proc` entries vanishing under a rescan storm. Each is
//! handled without stopping anything else: all but the unreadable one are
//! counted exactly (that one is logged once and counted as an attach error),
//! and processes that exit while being attached are no error: logged at
//! debug level, not counted, leaving nothing behind.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use crate::kernel_objects::{host, Watch};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn hits(exporter: &Exporter, pid: u32, arg: &str) -> Option<f64> {
    exporter.samples().get(
        "userspace_exporter_churn_hits_total",
        &[("arg", arg), ("pid", &pid.to_string())],
    )
}

fn attached(exporter: &Exporter, pid: u32) -> bool {
    exporter
        .samples()
        .get(
            "userspace_exporter_enabled_programs",
            &[("name", "churn"), ("pid", &pid.to_string())],
        )
        .is_some()
}

/// Fault: a target's executable is deleted, and another's replaced (renamed
/// over by a copy), while they run, before the exporter starts. Expected: both
/// are attached to the files they run and counted exactly; no attach error.
#[test]
fn targets_whose_executable_was_deleted_or_replaced_are_still_counted() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // Private copies (with the fixture library beside them), removed or replaced
    // while their process runs.
    let deleted_path = common::named_copy(&fixtures().target, "uexp-deleted");
    let replaced_path = common::named_copy(&fixtures().target, "uexp-replaced");
    let mut deleted = Target::start_binary(&deleted_path);
    let mut replaced = Target::start_binary(&replaced_path);
    std::fs::remove_file(&deleted_path).unwrap();
    let fresh = replaced_path.with_extension("new");
    std::fs::copy(&fixtures().target, &fresh).unwrap();
    std::fs::rename(&fresh, &replaced_path).unwrap();

    let config = common::hits_config("uexp-deleted").replace(
        "attachment: {binary_name: uexp-deleted}",
        "attachment: [{binary_name: uexp-deleted}, {binary_name: uexp-replaced}]",
    );
    let exporter = Exporter::start_with(&config, &["--discovery.interval", "100ms"]);
    for target in [&deleted, &replaced] {
        let pid = target.pid();
        wait_for(Duration::from_secs(10), || {
            attached(&exporter, pid).then_some(())
        })
        .unwrap_or_else(|| panic!("pid {pid} not attached:\n{}", exporter.logs()));
    }
    deleted.cmd("usdt 4 1");
    replaced.cmd("usdt 7 2");
    assert_eq!(
        hits(&exporter, deleted.pid(), "1"),
        Some(4.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        hits(&exporter, replaced.pid(), "2"),
        Some(7.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        exporter
            .samples()
            .series("userspace_exporter_attach_errors_total")
            .len(),
        0,
        "{}",
        exporter.scrape()
    );
}

/// Fault: a target the exporter may not read (another user's process, its
/// executable only in its own mount namespace; the exporter without
/// CAP_SYS_PTRACE and CAP_SYS_ADMIN). Expected: reported once ("cannot read
/// the files of process N (comm): permission denied") across rescans, counted
/// once in attach_errors_total and as one failed process; the exporter's own
/// target counts exactly.
#[test]
fn a_target_the_exporter_may_not_read_is_reported_once_and_the_others_still_count() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // A target of another user (nobody) whose executable exists only in its own
    // mount namespace, and an exporter without CAP_SYS_PTRACE and CAP_SYS_ADMIN:
    // it cannot open that process's files, as with a container it may not enter.
    let root = tempfile::tempdir().unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs {root} && cp {bin} {root}/uexp-noaccess && cp {lib} {root}/ && chmod 755 {root} && exec setpriv --reuid=65534 --regid=65534 --clear-groups {root}/uexp-noaccess",
        root = root.path().display(),
        bin = fixtures().target.display(),
        lib = fixtures().library.display(),
    );
    let mut other_user = common::spawn(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(other_user.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let mine = Target::start("uexp-noaccess2");
    let config = common::hits_config("uexp-noaccess").replace(
        "attachment: {binary_name: uexp-noaccess}",
        "attachment: [{binary_name: uexp-noaccess}, {binary_name: uexp-noaccess2}]",
    );
    let exporter = Exporter::start_with_command(
        &config,
        &["--discovery.interval", "100ms"],
        &[
            "setpriv",
            "--bounding-set=-sys_ptrace,-dac_read_search,-dac_override,-sys_admin",
        ],
    );
    let mut mine = mine;
    wait_for(Duration::from_secs(10), || {
        attached(&exporter, mine.pid()).then_some(())
    })
    .unwrap_or_else(|| panic!("own target not attached:\n{}", exporter.logs()));
    // Several rescans pass: the failure is logged and counted once.
    std::thread::sleep(Duration::from_millis(600));
    mine.cmd("usdt 3 5");
    let s = exporter.samples();
    assert_eq!(hits(&exporter, mine.pid(), "5"), Some(3.0));
    assert_eq!(
        s.value(
            "userspace_exporter_processes",
            &[("name", "churn"), ("state", "failed")]
        ),
        1.0,
        "{}",
        exporter.scrape()
    );
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[("name", "churn"), ("probe", "fixture:hit")]
        ),
        1.0,
        "{}",
        exporter.scrape()
    );
    let logs = exporter.logs();
    let reported = format!("process {} (uexp-noaccess)", other_user.id());
    assert_eq!(
        logs.matches(&format!(
            "cannot read the files of {reported}: permission denied"
        ))
        .count(),
        1,
        "{logs}"
    );
    let _ = other_user.kill();
    let _ = other_user.wait();
}

/// The state letter of `/proc/PID/stat` (`T` when stopped).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .trim_start()
        .chars()
        .next()
        .unwrap()
}

/// Stops a process with SIGSTOP and waits until the kernel says so.
fn sigstop(pid: u32) {
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    wait_for(Duration::from_secs(5), || (state(pid) == 'T').then_some(()))
        .unwrap_or_else(|| panic!("pid {pid} never stopped"));
}

/// fixture:hit and the semaphore-guarded fixture:guarded on processes named
/// `comm`, counted in `userspace_exporter_stopped_hits_total` and
/// `userspace_exporter_stopped_guarded_total`.
fn stopped_config(comm: &str) -> String {
    format!(
        r#"
programs:
  - name: stopped
    object: {usdt}
    metrics:
      counters:
        - name: stopped_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
        - name: stopped_guarded_total
          help: fixture:guarded by argument
          table: guarded_hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
      fixture:guarded: on_guarded
    attachment: {{binary_name: {comm}}}
"#,
        usdt = fixtures().object("usdt_counts").display()
    )
}

/// Fault: the target is stopped (SIGSTOP) while it is attached: at the
/// exporter's startup, and by a config reload that selects it. Expected: both
/// are attached while stopped (and stay stopped), the guarded probe's
/// semaphore is switched on, and after SIGCONT every hit is counted exactly;
/// no attach error.
#[test]
fn a_target_stopped_during_its_attach_is_counted_exactly_after_sigcont() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut at_start = Target::start("uexp-stopped");
    let mut at_reload = Target::start("uexp-stopped2");
    sigstop(at_start.pid());
    sigstop(at_reload.pid());
    let exporter =
        Exporter::start_with(&stopped_config("uexp-stopped"), &["--web.enable-lifecycle"]);
    let enabled = |pid: u32| {
        exporter
            .samples()
            .get(
                "userspace_exporter_enabled_programs",
                &[("name", "stopped"), ("pid", &pid.to_string())],
            )
            .is_some()
    };
    assert!(enabled(at_start.pid()), "{}", exporter.logs());
    std::fs::write(
        exporter.dir.path().join("config.yaml"),
        stopped_config("uexp-stopped").replace(
            "attachment: {binary_name: uexp-stopped}",
            "attachment: [{binary_name: uexp-stopped}, {binary_name: uexp-stopped2}]",
        ),
    )
    .unwrap();
    let reloaded = ureq::post(&exporter.url("/-/reload")).send_empty().unwrap();
    assert_eq!(reloaded.status().as_u16(), 200);
    assert!(enabled(at_reload.pid()), "{}", exporter.logs());
    for target in [&mut at_start, &mut at_reload] {
        assert_eq!(state(target.pid()), 'T', "the attach resumed the target");
        unsafe { libc::kill(target.pid() as i32, libc::SIGCONT) };
        let sem = target.cmd("sem");
        assert_ne!(sem, "sem 0", "semaphore not switched on");
        target.fire("usdt 6 1");
        target.fire("guarded 4 2");
    }
    let s = exporter.samples();
    for target in [&at_start, &at_reload] {
        let pid = target.pid().to_string();
        assert_eq!(
            s.get(
                "userspace_exporter_stopped_hits_total",
                &[("arg", "1"), ("pid", &pid)]
            ),
            Some(6.0),
            "{}",
            exporter.logs()
        );
        assert_eq!(
            s.get(
                "userspace_exporter_stopped_guarded_total",
                &[("arg", "2"), ("pid", &pid)]
            ),
            Some(4.0)
        );
    }
    assert!(s
        .series("userspace_exporter_attach_errors_total")
        .is_empty());
}

/// Fault: the executable is replaced on disk by a different build (other
/// probe addresses) while a process still runs the old one, and a new process
/// starts from the replacement. Expected: each process is attached to the file
/// it runs (not to what the path names now), and both are counted exactly.
#[test]
fn a_replaced_executable_counts_the_old_and_the_new_build_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let path = common::named_copy(&fixtures().target, "uexp-rebuilt");
    let mut old = Target::start_binary(&path);
    // The same source built without optimisation: its probes sit elsewhere.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rebuilt = path.with_extension("new");
    let status = Command::new("cc")
        .args(["-O0", "-g", "-o"])
        .arg(&rebuilt)
        .arg(src.join("target.c"))
        .arg(src.join("guarded.c"))
        .arg(format!("-L{}", fixtures().dir.display()))
        .args(["-lfixture", "-Wl,-rpath,$ORIGIN"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_ne!(
        std::fs::read(&rebuilt).unwrap(),
        std::fs::read(&path).unwrap()
    );
    std::fs::rename(&rebuilt, &path).unwrap();
    let exporter = Exporter::start_with(
        &common::hits_config("uexp-rebuilt"),
        &["--discovery.interval", "100ms"],
    );
    let mut new = Target::start_binary(&path);
    for target in [&old, &new] {
        let pid = target.pid();
        wait_for(Duration::from_secs(10), || {
            attached(&exporter, pid).then_some(())
        })
        .unwrap_or_else(|| panic!("pid {pid} not attached:\n{}", exporter.logs()));
    }
    old.fire("usdt 5 1");
    new.fire("usdt 8 1");
    assert_eq!(
        hits(&exporter, old.pid(), "1"),
        Some(5.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        hits(&exporter, new.pid(), "1"),
        Some(8.0),
        "{}",
        exporter.logs()
    );
    assert!(exporter
        .samples()
        .series("userspace_exporter_attach_errors_total")
        .is_empty());
}

/// Lines of the exporter's log at WARN or ERROR level.
fn warnings(exporter: &Exporter) -> Vec<String> {
    exporter
        .logs()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// Fault: 500 matching processes that exit at once (each reads an empty
/// stdin and ends), in waves of 50, while the exporter rescans `/proc` fully
/// every 10 ms: entries vanish between being listed, read and attached.
/// Expected: no panic, nothing logged above debug, no attach error counted; a
/// long-lived target hitting its probe meanwhile is counted exactly; after,
/// only it is attached, nothing failed, the exporter's fds are back to their
/// baseline and the BPF objects it holds are the same as before (by id); after
/// it exits, the kernel has freed every object it was seen holding.
#[test]
fn a_rescan_storm_of_exiting_processes_logs_nothing_and_leaks_nothing() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-storm";
    let binary = fixtures().target_named(comm);
    // Started first: a startup with nothing to attach would warn about it.
    let mut steady = Target::start(comm);
    let exporter = Exporter::start_with(
        &common::hits_config(comm),
        &[
            "--discovery.interval",
            "10ms",
            "--discovery.full-interval",
            "10ms",
        ],
    );
    assert!(attached(&exporter, steady.pid()), "{}", exporter.logs());
    let baseline_fds = crate::churn_leaks::fds(exporter.pid());
    let mut watch = Watch::start(exporter.pid());
    let baseline = watch.steady();
    for _wave in 0..10 {
        let children: Vec<std::process::Child> = (0..50)
            .map(|_| {
                common::spawn(
                    Command::new(&binary)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null()),
                )
            })
            .collect();
        steady.fire("usdt 10 7");
        for mut child in children {
            child.wait().unwrap();
        }
    }
    assert_eq!(hits(&exporter, steady.pid(), "7"), Some(100.0));
    let settled = wait_for(Duration::from_secs(30), || {
        let s = exporter.samples();
        let done = s.value(
            "userspace_exporter_processes",
            &[("name", "churn"), ("state", "attached")],
        ) == 1.0
            && s.value(
                "userspace_exporter_processes",
                &[("name", "churn"), ("state", "failed")],
            ) == 0.0
            && s.series("userspace_exporter_churn_hits_total").len() == 1
            && crate::churn_leaks::fds(exporter.pid()) <= baseline_fds
            && watch.now() == baseline;
        done.then_some(())
    });
    assert!(
        settled.is_some(),
        "not back to baseline: fds {} vs {baseline_fds}, BPF objects {} vs {baseline}; \
         host-wide {}\n{}",
        crate::churn_leaks::fds(exporter.pid()),
        watch.now(),
        host().counts(),
        exporter.scrape()
    );
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let warned = warnings(&exporter);
    assert!(
        warned.is_empty(),
        "{} lines, first: {:#?}",
        warned.len(),
        &warned[..warned.len().min(5)]
    );
    assert!(exporter
        .samples()
        .series("userspace_exporter_attach_errors_total")
        .is_empty());
    drop(exporter);
    watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
}

/// Fault: 100 running targets are killed one after the other while the
/// exporter attaches them at startup, so some exit in the middle of their
/// attach. Expected: each such one is reported (at debug level) as having
/// exited while being attached, none as an error or warning, no attach error
/// is counted, no panic; once all are gone nothing is attached or failed and
/// the exporter holds no BPF object; after it exits, the kernel has freed
/// every object it was seen holding.
#[test]
fn targets_exiting_mid_attach_are_reported_as_exited_and_leave_nothing() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-midexit";
    fixtures().target_named(comm);
    let mut targets: Vec<Target> = (0..100).map(|_| Target::start(comm)).collect();
    let pids: Vec<u32> = targets.iter().map(Target::pid).collect();
    // Killed from the last one backwards while the startup attaches go forwards.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        while let Some(target) = targets.pop() {
            drop(target);
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let (exporter, mut watch) = Exporter::start_watched_with(
        &common::hits_config(comm),
        &["--log-level", "info,userspace_exporter=debug"],
    );
    killer.join().unwrap();
    let settled = wait_for(Duration::from_secs(30), || {
        let s = exporter.samples();
        let done = s.value(
            "userspace_exporter_processes",
            &[("name", "churn"), ("state", "attached")],
        ) == 0.0
            && s.value(
                "userspace_exporter_processes",
                &[("name", "churn"), ("state", "failed")],
            ) == 0.0
            && watch.now().is_empty();
        done.then_some(())
    });
    assert!(
        settled.is_some(),
        "the exporter still holds BPF objects: {}; host-wide {}\n{}",
        watch.now(),
        host().counts(),
        exporter.scrape()
    );
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let warned = warnings(&exporter);
    assert!(warned.is_empty(), "{warned:#?}");
    assert!(exporter
        .samples()
        .series("userspace_exporter_attach_errors_total")
        .is_empty());
    let exited: Vec<&u32> = pids
        .iter()
        .filter(|pid| {
            logs.contains(&format!(
                "process {pid} (uexp-midexit) exited while being attached"
            ))
        })
        .collect();
    let attached: Vec<&u32> = pids
        .iter()
        .filter(|pid| logs.contains(&format!("target=pid {pid} ")))
        .collect();
    drop(exporter);
    let freed = watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "of 100 targets: {} attached before they exited, {} exited mid-attach; \
         BPF objects seen held and freed: {}",
        attached.len(),
        exited.len(),
        freed.counts()
    );
}
