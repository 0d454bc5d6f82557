//! Each reconcile rule against a fake attacher and synthetic processes: no
//! kernel, no `/proc`.

use super::*;
use crate::config::ProbeKind;
use std::collections::BTreeMap;

/// A program selecting processes by comm.
#[derive(Debug)]
struct FakeProgram {
    name: &'static str,
    fingerprint: &'static str,
    comm: &'static str,
    per_binary: bool,
    named: Vec<PathBuf>,
}

impl RuledProgram for FakeProgram {
    fn name(&self) -> &str {
        self.name
    }
    fn selects(&self, process: &ProcessInfo) -> bool {
        process.comm == self.comm
    }
    fn per_binary(&self) -> bool {
        self.per_binary
    }
    fn named_executables(&self) -> Vec<PathBuf> {
        self.named.clone()
    }
    fn fingerprint(&self) -> &str {
        self.fingerprint
    }
}

#[derive(Debug)]
struct FakeInstance {
    target: AttachTarget,
    started_ns: u64,
    failures: Vec<AttachFailure>,
}

impl AttachedInstance for FakeInstance {
    fn target(&self) -> &AttachTarget {
        &self.target
    }
    fn started_ns(&self) -> u64 {
        self.started_ns
    }
    fn failures(&self) -> &[AttachFailure] {
        &self.failures
    }
}

/// Records every attach and detach; fails the targets it is told to.
#[derive(Debug, Default)]
struct FakeAttacher {
    /// Target description -> attaches that still fail (u32::MAX: always).
    failing: BTreeMap<String, u32>,
    /// Target descriptions whose process exits while being attached.
    exiting: Vec<String>,
    /// Target description -> probes that fail while the others attach.
    partial: BTreeMap<String, Vec<&'static str>>,
    /// (program, target) of every attach call, in order.
    attaches: Vec<(String, String)>,
    /// Targets of every detached instance, in order.
    detached: Vec<String>,
    /// Files on "disk".
    files: BTreeMap<PathBuf, FileId>,
    /// Each attach starts at the next tick of this clock.
    clock_ns: u64,
}

fn failure(probe: &str) -> AttachFailure {
    AttachFailure {
        kind: ProbeKind::Usdt,
        probe: probe.to_string(),
        message: format!("{probe} not found"),
        cancelled: false,
        unavailable: None,
    }
}

impl Attacher for FakeAttacher {
    type Program = FakeProgram;
    type Instance = FakeInstance;

    fn attach(
        &mut self,
        program: &FakeProgram,
        target: AttachTarget,
        _event_ns: Option<u64>,
    ) -> Result<FakeInstance, Vec<AttachFailure>> {
        let described = target.describe();
        self.attaches
            .push((program.name.to_string(), described.clone()));
        if self.exiting.contains(&described) {
            return Err(vec![AttachFailure {
                cancelled: true,
                ..failure("")
            }]);
        }
        if let Some(left) = self.failing.get_mut(&described) {
            if *left > 0 {
                *left = left.saturating_sub(1);
                return Err(vec![failure("p:whole")]);
            }
        }
        self.clock_ns += 1;
        Ok(FakeInstance {
            target,
            started_ns: self.clock_ns,
            failures: self
                .partial
                .get(&described)
                .map(|probes| probes.iter().map(|p| failure(p)).collect())
                .unwrap_or_default(),
        })
    }

    fn detach(&mut self, instance: FakeInstance) {
        self.detached.push(instance.target.describe());
    }

    fn file_id(&self, path: &Path) -> Option<FileId> {
        self.files.get(path).copied()
    }
}

fn program(name: &'static str, comm: &'static str) -> FakeProgram {
    FakeProgram {
        name,
        fingerprint: name,
        comm,
        per_binary: false,
        named: Vec::new(),
    }
}

fn per_binary(name: &'static str, comm: &'static str, named: &[&str]) -> FakeProgram {
    FakeProgram {
        name,
        fingerprint: name,
        comm,
        per_binary: true,
        named: named.iter().map(PathBuf::from).collect(),
    }
}

/// A process started at `start_time` (a reused pid gets another one).
fn process(pid: i32, start_time: u64, comm: &str, exe: &str) -> ProcessInfo {
    ProcessInfo::new(
        ProcessKey { pid, start_time },
        comm.to_string(),
        PathBuf::from(exe),
        1,
    )
    .with_exe_id(Some(file(exe)))
}

/// A stable fake identity for each path.
fn file(path: &str) -> FileId {
    FileId {
        dev: 1,
        ino: path.bytes().map(u64::from).sum::<u64>() * 1000 + path.len() as u64,
    }
}

fn rules(programs: Vec<FakeProgram>) -> Reconciler<FakeAttacher> {
    Reconciler::new(
        FakeAttacher::default(),
        programs,
        std::sync::Arc::new(Mutex::new(SelfStats::default())),
    )
}

/// A full rescan that finds exactly `processes`.
fn rescan(processes: &[&ProcessInfo]) -> ProcSnapshot {
    ProcSnapshot {
        since_ns: crate::discovery::monotonic_ns(),
        listed: processes.iter().map(|p| p.pid()).collect(),
        read: processes
            .iter()
            .map(|p| (p.pid(), Some((*p).clone())))
            .collect(),
    }
}

fn attached_pids<P>(state: &ProgramState<P, FakeInstance>) -> Vec<i32> {
    state.instances.keys().map(|k| k.pid).collect()
}

fn attach_errors(r: &Reconciler<FakeAttacher>) -> BTreeMap<(String, String), u64> {
    crate::metrics::lock_stats(&r.stats).attach_errors.clone()
}

#[test]
fn matching_processes_get_one_instance_each_and_others_none() {
    let mut r = rules(vec![program("py", "python3"), program("rb", "ruby")]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let b = process(11, 1, "python3", "/usr/bin/python3");
    let c = process(12, 1, "bash", "/bin/bash");
    r.apply_rescan(rescan(&[&a, &b, &c]));
    assert_eq!(attached_pids(&r.programs[0]), [10, 11]);
    assert!(r.programs[1].instances.is_empty());
    // A second rescan finding the same processes attaches nothing again.
    r.apply_rescan(rescan(&[&a, &b, &c]));
    assert_eq!(r.attacher.attaches.len(), 2);
    assert!(r.attacher.detached.is_empty());
}

#[test]
fn processes_that_exit_or_leave_are_detached() {
    let mut r = rules(vec![program("py", "python3")]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let b = process(11, 1, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&a, &b]));
    r.process_exited(10);
    assert_eq!(attached_pids(&r.programs[0]), [11]);
    assert_eq!(r.attacher.detached, ["pid 10 (python3)"]);
    // Gone from /proc without an exit event: the rescan drops it.
    r.apply_rescan(rescan(&[]));
    assert!(r.programs[0].instances.is_empty());
    assert_eq!(
        r.attacher.detached,
        ["pid 10 (python3)", "pid 11 (python3)"]
    );
}

#[test]
fn a_failed_attach_is_retried_on_rescans_up_to_the_limit_and_counted_once() {
    let mut r = rules(vec![program("py", "python3")]);
    r.attacher
        .failing
        .insert("pid 10 (python3)".into(), u32::MAX);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    for _ in 0..ATTACH_ATTEMPTS + 3 {
        r.apply_rescan(rescan(&[&a]));
    }
    assert_eq!(r.attacher.attaches.len() as u32, ATTACH_ATTEMPTS);
    assert_eq!(r.programs[0].failed[&a.key].attempts, ATTACH_ATTEMPTS);
    assert_eq!(
        attach_errors(&r),
        BTreeMap::from([(("py".to_string(), "p:whole".to_string()), 1)])
    );
    // An event about the same process does not try again either.
    r.process_started(&a, Some(1));
    assert_eq!(r.attacher.attaches.len() as u32, ATTACH_ATTEMPTS);
    // Once it exits, its failure is forgotten.
    r.process_exited(10);
    assert!(r.programs[0].failed.is_empty());
}

#[test]
fn a_process_that_exits_while_being_attached_is_neither_failed_nor_an_error() {
    let mut r = rules(vec![program("py", "python3")]);
    r.attacher.exiting.push("pid 10 (python3)".into());
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let b = process(11, 1, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&a, &b]));
    assert_eq!(attached_pids(&r.programs[0]), [11]);
    assert!(r.programs[0].failed.is_empty());
    assert!(attach_errors(&r).is_empty());
}

#[test]
fn stopping_takes_every_instance_per_process_and_per_binary() {
    let mut r = rules(vec![
        program("py", "python3"),
        per_binary("pg", "postgres", &[]),
    ]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let b = process(11, 1, "postgres", "/usr/bin/postgres");
    r.apply_rescan(rescan(&[&a, &b]));
    let taken: Vec<String> = r
        .take_instances()
        .iter()
        .map(|i| i.target.describe())
        .collect();
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert!(r
        .programs
        .iter()
        .all(|p| p.instances.is_empty() && p.binaries.is_empty()));
}

#[test]
fn a_retry_that_succeeds_moves_the_process_from_failed_to_attached() {
    let mut r = rules(vec![program("py", "python3")]);
    r.attacher.failing.insert("pid 10 (python3)".into(), 2);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    for _ in 0..3 {
        r.apply_rescan(rescan(&[&a]));
    }
    assert_eq!(attached_pids(&r.programs[0]), [10]);
    assert!(r.programs[0].failed.is_empty());
    assert_eq!(r.attacher.attaches.len(), 3);
    assert_eq!(attach_errors(&r).values().sum::<u64>(), 1);
}

#[test]
fn probes_that_fail_in_an_attached_instance_are_counted_once_each() {
    let mut r = rules(vec![program("py", "python3")]);
    r.attacher
        .partial
        .insert("pid 10 (python3)".into(), vec!["a:x", "b:y"]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&a]));
    r.apply_rescan(rescan(&[&a]));
    assert_eq!(attached_pids(&r.programs[0]), [10]);
    assert_eq!(
        attach_errors(&r),
        BTreeMap::from([
            (("py".to_string(), "a:x".to_string()), 1),
            (("py".to_string(), "b:y".to_string()), 1)
        ])
    );
}

#[test]
fn an_exec_rejudges_the_process_as_what_it_now_runs() {
    let mut r = rules(vec![program("py", "python3"), program("sh", "bash")]);
    let before = process(10, 1, "python3", "/usr/bin/python3");
    r.process_started(&before, Some(5));
    assert_eq!(attached_pids(&r.programs[0]), [10]);
    // The same process (same pid and start time) execs bash.
    let after = process(10, 1, "bash", "/bin/bash");
    let exec_ns = r.attacher.clock_ns;
    r.process_execed(&after, Some(exec_ns));
    assert!(r.programs[0].instances.is_empty());
    assert_eq!(attached_pids(&r.programs[1]), [10]);
    assert_eq!(r.attacher.detached, ["pid 10 (python3)"]);
    // A failure of the old image is forgotten: the new image gets its chance.
    r.attacher.failing.insert("pid 10 (bash)".into(), 1);
    let again = process(10, 1, "bash", "/bin/bash");
    r.process_execed(&again, Some(r.attacher.clock_ns));
    assert!(r.programs[1].instances.is_empty());
    assert_eq!(r.programs[1].failed[&again.key].attempts, 1);
    r.process_execed(&again, Some(r.attacher.clock_ns));
    assert_eq!(attached_pids(&r.programs[1]), [10]);
}

#[test]
fn an_instance_attached_after_the_exec_event_is_kept() {
    // A fork event read the child after it had already exec'd: its instance
    // sees the new image, and the exec event that follows must not drop it.
    let mut r = rules(vec![program("py", "python3")]);
    let child = process(20, 7, "python3", "/usr/bin/python3");
    let exec_ns = r.attacher.clock_ns; // before the attach began
    r.process_started(&child, Some(exec_ns));
    r.process_execed(&child, Some(exec_ns));
    assert_eq!(attached_pids(&r.programs[0]), [20]);
    assert!(r.attacher.detached.is_empty());
    assert_eq!(r.attacher.attaches.len(), 1);
    // An exec after the attach began replaces it.
    r.process_execed(&child, Some(r.attacher.clock_ns));
    assert_eq!(r.attacher.detached, ["pid 20 (python3)"]);
    assert_eq!(r.attacher.attaches.len(), 2);
}

#[test]
fn a_reused_pid_is_another_process() {
    let mut r = rules(vec![program("py", "python3")]);
    let old = process(10, 1, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&old]));
    let new = process(10, 2, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&new]));
    assert_eq!(
        r.programs[0].instances.keys().copied().collect::<Vec<_>>(),
        [new.key]
    );
    assert_eq!(r.attacher.detached, ["pid 10 (python3)"]);
}

#[test]
fn an_event_newer_than_a_rescan_wins() {
    // The rescan began before the process exited; its exit event came first.
    let mut r = rules(vec![program("py", "python3")]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let stale = rescan(&[&a]);
    r.process_exited(10);
    r.apply_rescan(stale);
    assert!(r.programs[0].instances.is_empty());
    assert!(r.attacher.attaches.is_empty());
}

#[test]
fn shared_programs_attach_every_process_like_per_process_ones() {
    // Sharing one object is the attacher's business: the rules give a shared
    // program one instance per process, as any other.
    let mut r = rules(vec![program("shared", "python3")]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let b = process(11, 1, "python3", "/usr/bin/python3");
    r.process_started(&a, Some(1));
    r.process_started(&b, Some(2));
    assert_eq!(attached_pids(&r.programs[0]), [10, 11]);
    r.process_exited(10);
    assert_eq!(attached_pids(&r.programs[0]), [11]);
}

#[test]
fn a_named_executable_is_attached_before_any_process_runs_it() {
    let mut r = rules(vec![per_binary("pg", "postgres", &["/usr/bin/postgres"])]);
    r.attacher
        .files
        .insert("/usr/bin/postgres".into(), file("/usr/bin/postgres"));
    r.apply_rescan(rescan(&[]));
    assert_eq!(
        r.programs[0].binaries.keys().copied().collect::<Vec<_>>(),
        [file("/usr/bin/postgres")]
    );
    assert_eq!(
        r.attacher.attaches,
        [(
            "pg".to_string(),
            "every process of /usr/bin/postgres".to_string()
        )]
    );
    // Its processes come and go: the one instance covers them all and stays.
    let a = process(30, 1, "postgres", "/usr/bin/postgres");
    let b = process(31, 1, "postgres", "/usr/bin/postgres");
    r.process_started(&a, Some(1));
    r.apply_rescan(rescan(&[&a, &b]));
    r.process_exited(30);
    r.apply_rescan(rescan(&[]));
    assert_eq!(r.attacher.attaches.len(), 1);
    assert!(r.attacher.detached.is_empty());
    assert!(r.programs[0].instances.is_empty());
}

#[test]
fn a_binary_found_through_a_process_is_dropped_once_unused_and_gone_from_disk() {
    let mut r = rules(vec![per_binary("app", "app", &[])]);
    let exe = "/opt/app/bin/app";
    r.attacher.files.insert(exe.into(), file(exe));
    let a = process(40, 1, "app", exe);
    r.process_started(&a, Some(1));
    assert_eq!(r.programs[0].binaries.len(), 1);
    // No process runs it, but the file is still there: kept for the next one.
    r.process_exited(40);
    r.apply_rescan(rescan(&[]));
    assert_eq!(r.programs[0].binaries.len(), 1);
    // Upgraded: the path now holds another file. The old instance goes; the
    // new file is attached when a process runs it.
    r.attacher.files.insert(exe.into(), file("/new/app"));
    r.apply_rescan(rescan(&[]));
    assert!(r.programs[0].binaries.is_empty());
    assert_eq!(r.attacher.detached, ["every process of /opt/app/bin/app"]);
    let upgraded = process(41, 1, "app", exe).with_exe_id(Some(file("/new/app")));
    r.process_started(&upgraded, Some(2));
    assert_eq!(
        r.programs[0].binaries.keys().copied().collect::<Vec<_>>(),
        [file("/new/app")]
    );
}

#[test]
fn a_binary_still_running_is_kept_even_when_its_file_is_gone() {
    let mut r = rules(vec![per_binary("app", "app", &[])]);
    let exe = "/opt/app/bin/app";
    let a = process(40, 1, "app", exe);
    r.apply_rescan(rescan(&[&a]));
    assert_eq!(r.programs[0].binaries.len(), 1);
    // Deleted while running (the file map is empty): a process still runs it.
    r.apply_rescan(rescan(&[&a]));
    assert_eq!(r.programs[0].binaries.len(), 1);
    assert!(r.attacher.detached.is_empty());
}

#[test]
fn a_named_executable_that_fails_is_retried_up_to_the_limit() {
    let mut r = rules(vec![per_binary("pg", "postgres", &["/usr/bin/postgres"])]);
    r.attacher
        .files
        .insert("/usr/bin/postgres".into(), file("/usr/bin/postgres"));
    r.attacher
        .failing
        .insert("every process of /usr/bin/postgres".into(), u32::MAX);
    for _ in 0..ATTACH_ATTEMPTS + 2 {
        r.apply_rescan(rescan(&[]));
    }
    assert_eq!(r.attacher.attaches.len() as u32, ATTACH_ATTEMPTS);
    let failed = &r.programs[0].failed_binaries[&file("/usr/bin/postgres")];
    assert_eq!(failed.attempts, ATTACH_ATTEMPTS);
    assert_eq!(failed.path, PathBuf::from("/usr/bin/postgres"));
    assert_eq!(attach_errors(&r).values().sum::<u64>(), 1);
    // A named executable missing from disk is not tried at all.
    let mut r = rules(vec![per_binary("pg", "postgres", &["/usr/bin/postgres"])]);
    r.apply_rescan(rescan(&[]));
    assert!(r.attacher.attaches.is_empty());
}

#[test]
fn a_per_binary_process_whose_attach_failed_is_not_retried_past_the_limit() {
    let mut r = rules(vec![per_binary("app", "app", &[])]);
    let exe = "/opt/app/bin/app";
    r.attacher
        .failing
        .insert(format!("every process of {exe}"), u32::MAX);
    let a = process(40, 1, "app", exe);
    for _ in 0..ATTACH_ATTEMPTS + 2 {
        r.apply_rescan(rescan(&[&a]));
    }
    assert_eq!(r.attacher.attaches.len() as u32, ATTACH_ATTEMPTS);
    assert!(r.programs[0].binaries.is_empty());
    assert_eq!(r.programs[0].failed[&a.key].attempts, ATTACH_ATTEMPTS);
}

#[test]
fn a_reload_keeps_unchanged_programs_replaces_changed_ones_and_drops_removed_ones() {
    let mut r = rules(vec![
        program("kept", "python3"),
        program("changed", "python3"),
        program("removed", "python3"),
        per_binary("gone-binary", "app", &[]),
    ]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    let app = process(11, 1, "app", "/opt/app");
    r.apply_rescan(rescan(&[&a, &app]));
    let kept_started = r.programs[0].instances[&a.key].started_ns;
    assert_eq!(r.attacher.attaches.len(), 4);
    let mut changed = program("changed", "python3");
    changed.fingerprint = "changed v2";
    r.reload(vec![
        Reloaded::New(program("added", "python3")),
        Reloaded::Unchanged("kept".into()),
        Reloaded::New(changed),
    ])
    .unwrap();
    let names: Vec<&str> = r.programs.iter().map(|s| s.program.name).collect();
    assert_eq!(names, ["added", "kept", "changed"]);
    // The kept program's instance is the very same one; the others' are gone.
    assert_eq!(r.programs[1].instances[&a.key].started_ns, kept_started);
    assert_eq!(
        r.attacher.detached,
        [
            "pid 10 (python3)",
            "pid 10 (python3)",
            "every process of /opt/app"
        ]
    );
    // The next rescan attaches the new and the changed program, not the kept one.
    r.apply_rescan(rescan(&[&a, &app]));
    assert_eq!(r.attacher.attaches.len(), 6);
    assert_eq!(
        r.attacher.attaches[4..]
            .iter()
            .map(|(program, _)| program.as_str())
            .collect::<Vec<_>>(),
        ["added", "changed"]
    );
}

#[test]
fn a_reload_naming_a_program_that_is_not_running_changes_nothing() {
    let mut r = rules(vec![program("kept", "python3")]);
    let a = process(10, 1, "python3", "/usr/bin/python3");
    r.apply_rescan(rescan(&[&a]));
    let result = r.reload(vec![
        Reloaded::Unchanged("kept".into()),
        Reloaded::Unchanged("never ran".into()),
    ]);
    assert!(result.is_err());
    assert_eq!(r.programs.len(), 1);
    assert_eq!(attached_pids(&r.programs[0]), [10]);
    assert!(r.attacher.detached.is_empty());
}
