//! Faults of the exporter's own end: SIGTERM while it attaches (at startup,
//! and while a burst of new processes is being attached), and SIGKILL. On
//! SIGTERM it cancels the attaches not begun and detaches everything from many
//! threads at once: it exits within a second (perf-event uprobes, on kernels
//! without uprobe_multi links, add the kernel's own serial cost, about 88 ms
//! each). Either way the kernel frees
//! every program, map, link and BTF object it was seen holding (by id, from
//! its own fd table: `kernel_objects`). These take the exclusive guard: they
//! time the exit.

use crate::common::{self, fixtures, require_bpf, wait_for, Target, EXPORTER};
use crate::kernel_objects::{Kind, Watch};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A USDT counter on processes named `comm`.
fn usdt_program(comm: &str) -> String {
    common::hits_program("hits", "stop_hits_total", comm)
}

/// A uprobe counter on processes named `comm` (a uprobe_multi link where
/// the kernel has them, else a perf-event uprobe).
fn uprobe_program(comm: &str) -> String {
    format!(
        r#"
  - name: calls
    object: {uprobe}
    metrics:
      counters:
        - name: stop_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        uprobe = fixtures().object("uprobe_counts").display(),
    )
}

/// An exporter started without waiting for it to be ready, and a watch of
/// the BPF objects it holds from its start on.
struct Started {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    watch: Watch,
}

impl Started {
    fn new(config: &str) -> Started {
        Started::with_args(config, &[])
    }

    /// Like [`Started::new`], with extra arguments.
    fn with_args(config: &str, args: &[&str]) -> Started {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("exporter.log")).unwrap();
        let port = common::free_port();
        let child = Command::new(EXPORTER)
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-c")
            .arg(&path)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let watch = Watch::start(child.id());
        Started {
            child,
            port,
            dir,
            watch,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("exporter.log")
    }

    fn ready(&self) -> bool {
        ureq::get(&format!("http://127.0.0.1:{}/-/ready", self.port))
            .call()
            .is_ok()
    }

    /// Sends `signal` and waits (at most 30 s) for the exit: the time it took.
    fn stop(&mut self, signal: i32) -> (Duration, std::process::ExitStatus) {
        let sent = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, signal) };
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (sent.elapsed(), status);
            }
            if sent.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("no exit 30 s after signal {signal}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Instances the exporter logged as attached so far.
fn attaches(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("attached: ")
        .count()
}

/// Fault: SIGTERM while the exporter attaches 100 running targets at startup
/// (a USDT program). Expected: the attaches not begun are cancelled, it exits
/// within a second, with status 0, and the kernel holds none of its programs,
/// maps or links after.
#[test]
fn sigterm_during_startup_attaches_exits_within_a_second_and_leaves_nothing() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-term";
    fixtures().target_named(comm);
    let targets: Vec<Target> = (0..100).map(|_| Target::start(comm)).collect();
    let mut exporter = Started::new(&format!("programs:{}", usdt_program(comm)));
    // Mid-startup: some instances attached, not all.
    let midway = wait_for(Duration::from_secs(60), || {
        let n = attaches(&exporter.log_path());
        (n >= 10).then_some(n)
    });
    assert!(midway.is_some(), "no attach seen:\n{}", exporter.logs());
    assert!(
        !exporter.ready(),
        "startup was over before the signal; make it longer"
    );
    // Every attached instance holds its program (and this look records them).
    let held = exporter.watch.now().counts();
    assert!(held.of(Kind::Prog) >= 10, "{held}");
    let (took, status) = exporter.stop(libc::SIGTERM);
    let attached = attaches(&exporter.log_path());
    eprintln!("{attached} instances attached: exit took {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?} ({attached} of 100 instances attached):\n{}",
        exporter.logs()
    );
    assert!(status.success(), "{status}:\n{}", exporter.logs());
    assert!(attached < 100, "{attached}");
    exporter
        .watch
        .all_freed()
        .unwrap_or_else(|e| panic!("{e}\n{}", exporter.logs()));
    drop(targets);
}

/// Fault: SIGTERM while a burst of 100 new targets is being attached (found
/// by process events, after startup; a USDT program). Expected: it exits
/// within a second, with status 0, and leaves nothing in the kernel.
#[test]
fn sigterm_while_a_burst_of_new_processes_is_attached_exits_within_a_second() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-term2";
    fixtures().target_named(comm);
    let mut exporter = Started::new(&format!("programs:{}", usdt_program(comm)));
    assert!(
        wait_for(Duration::from_secs(30), || exporter.ready().then_some(())).is_some(),
        "{}",
        exporter.logs()
    );
    let targets: Vec<Target> = (0..100).map(|_| Target::start(comm)).collect();
    wait_for(Duration::from_secs(30), || {
        (attaches(&exporter.log_path()) >= 20).then_some(())
    });
    let held = exporter.watch.now().counts();
    assert!(held.of(Kind::Prog) >= 20, "{held}");
    let (took, status) = exporter.stop(libc::SIGTERM);
    let attached = attaches(&exporter.log_path());
    eprintln!("{attached} instances attached: exit took {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?} ({attached} instances attached):\n{}",
        exporter.logs()
    );
    assert!(status.success(), "{status}");
    assert!(attached > 0, "{}", exporter.logs());
    exporter
        .watch
        .all_freed()
        .unwrap_or_else(|e| panic!("{e}\n{}", exporter.logs()));
    drop(targets);
}

/// Fault: SIGKILL of an exporter with 20 targets attached (40 instances).
/// Expected: the kernel frees every program, map, link and BTF object it was
/// seen holding (by id).
#[test]
fn sigkill_leaves_no_programs_maps_or_links_in_the_kernel() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-kill";
    let mut targets: Vec<Target> = (0..20).map(|_| Target::start(comm)).collect();
    let mut exporter = Started::new(&format!(
        "programs:{}{}",
        usdt_program(comm),
        uprobe_program(comm)
    ));
    let attached = wait_for(Duration::from_secs(30), || {
        let page = ureq::get(&format!("http://127.0.0.1:{}/metrics", exporter.port))
            .call()
            .ok()?
            .into_body()
            .read_to_string()
            .ok()?;
        let s = common::Samples::parse(&page);
        (s.get(
            "userspace_exporter_processes",
            &[("name", "calls"), ("state", "attached")],
        ) == Some(20.0))
        .then_some(s)
    });
    assert!(attached.is_some(), "{}", exporter.logs());
    for t in &mut targets {
        t.fire("usdt 1 1");
    }
    let during = exporter.watch.now().counts();
    // Each instance holds its program, its link, its BTF and at least one map.
    for kind in [Kind::Prog, Kind::Link, Kind::Btf] {
        assert_eq!(during.of(kind), 40, "{kind:?}: {during}");
    }
    assert!(during.of(Kind::Map) >= 40, "{during}");
    let (_, status) = exporter.stop(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    exporter.watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    drop(targets);
}

/// Fault: SIGTERM with 20 perf-event uprobes attached (20 targets, a uprobe
/// program, uprobe_multi links assumed missing as on kernels without them).
/// The kernel frees such a uprobe under a global lock, after RCU grace
/// periods: about 88 ms each here, one after the other whatever the exporter
/// does (bench/uprobe_links.rs: 8 at once took 754 ms). Expected: it exits
/// in at most 1 s plus 200 ms per uprobe, with status 0, and leaves nothing
/// in the kernel.
#[test]
fn sigterm_with_perf_event_uprobes_attached_detaches_them_all() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-term3";
    let targets: Vec<Target> = (0..20).map(|_| Target::start(comm)).collect();
    let mut exporter = Started::with_args(
        &format!("programs:{}", uprobe_program(comm)),
        &["--kernel.assume-missing", "uprobe_multi"],
    );
    assert!(
        wait_for(Duration::from_secs(30), || exporter.ready().then_some(())).is_some(),
        "{}",
        exporter.logs()
    );
    assert_eq!(attaches(&exporter.log_path()), 20);
    let held = exporter.watch.now().counts();
    assert_eq!(
        (held.of(Kind::Prog), held.of(Kind::Link)),
        (20, 20),
        "{held}"
    );
    let (took, status) = exporter.stop(libc::SIGTERM);
    eprintln!("20 perf-event uprobes: exit took {took:?}");
    assert!(
        took < Duration::from_millis(1000 + 20 * 200),
        "exit took {took:?}:\n{}",
        exporter.logs()
    );
    assert!(status.success(), "{status}");
    exporter
        .watch
        .all_freed()
        .unwrap_or_else(|e| panic!("{e}\n{}", exporter.logs()));
    drop(targets);
}

/// Fault: SIGTERM with 20 single-function uprobes attached through
/// uprobe_multi links (the default where the kernel has them), which the
/// kernel frees without the perf-event uprobes' global lock: the detaching
/// threads' grace periods overlap. Expected: it exits within 1 s, with
/// status 0, and leaves nothing in the kernel. Where the kernel has no such
/// links it takes the perf-event path of the test above, and its bound.
#[test]
fn sigterm_with_uprobe_multi_links_attached_exits_within_a_second() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-term4";
    let targets: Vec<Target> = (0..20).map(|_| Target::start(comm)).collect();
    let mut exporter = Started::new(&format!("programs:{}", uprobe_program(comm)));
    assert!(
        wait_for(Duration::from_secs(30), || exporter.ready().then_some(())).is_some(),
        "{}",
        exporter.logs()
    );
    assert_eq!(attaches(&exporter.log_path()), 20);
    let held = exporter.watch.now().counts();
    assert_eq!(
        (held.of(Kind::Prog), held.of(Kind::Link)),
        (20, 20),
        "{held}"
    );
    let multi = common::kernel_allows(&[])["uprobe-multi"].is_ok();
    let (took, status) = exporter.stop(libc::SIGTERM);
    eprintln!("20 uprobes (uprobe_multi links: {multi}): exit took {took:?}");
    let bound = if multi {
        Duration::from_millis(1000)
    } else {
        Duration::from_millis(1000 + 20 * 200)
    };
    assert!(
        took < bound,
        "exit took {took:?}, more than {bound:?}:\n{}",
        exporter.logs()
    );
    assert!(status.success(), "{status}");
    exporter
        .watch
        .all_freed()
        .unwrap_or_else(|e| panic!("{e}\n{}", exporter.logs()));
    drop(targets);
}
