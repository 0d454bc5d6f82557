//! The reconcile rules: which processes get an instance of which program,
//! when a failed attach is tried again, what an exec or an exit does, the
//! per-binary lifecycle and shared instances. Pure decisions over a process
//! table, behind the narrow [`Attacher`] interface, so that each rule is tested
//! with a fake attacher and synthetic processes (see the tests below).

use crate::attach::{AttachFailure, AttachTarget};
use crate::discovery::{FileId, ProcSnapshot, ProcessInfo, ProcessKey, ProcessTable};
use crate::metrics::SelfStats;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How often a matching process whose attach failed is tried again on rescans:
/// a library with the probe may be loaded after exec (dlopen, or the dynamic
/// loader still running when the exec event came).
pub const ATTACH_ATTEMPTS: u32 = 5;

/// What the rules need to know of a program.
pub trait RuledProgram {
    /// Its name, for logs and the self-metrics.
    fn name(&self) -> &str;
    /// Whether its selector selects `process`.
    fn selects(&self, process: &ProcessInfo) -> bool;
    /// `instances: per_binary`: one instance per executable, for every process of it.
    fn per_binary(&self) -> bool;
    /// Executables its selector names exactly: a per-binary program attaches
    /// them before any process runs them.
    fn named_executables(&self) -> Vec<PathBuf>;
    /// What it does: a reload keeps a program whose fingerprint it finds again.
    fn fingerprint(&self) -> &str;
}

/// One program of the config a reload brings, in its new place.
#[derive(Debug)]
pub enum Reloaded<P> {
    /// A program already running with this fingerprint: it keeps everything
    /// attached for it, so its counts go on.
    Unchanged(String),
    /// A new or changed program: it starts with nothing attached.
    New(P),
}

/// What the rules need to know of an attached instance.
pub trait AttachedInstance {
    /// What its probes are attached to.
    fn target(&self) -> &AttachTarget;
    /// CLOCK_MONOTONIC ns when its attach began.
    fn started_ns(&self) -> u64;
    /// Probes that did not attach (the others count).
    fn failures(&self) -> &[AttachFailure];
}

/// The narrow interface between the rules and the kernel.
pub trait Attacher {
    /// A program, as the attacher loads it.
    type Program: RuledProgram;
    /// An attached instance; dropping it (through [`Attacher::detach`]) detaches.
    type Instance: AttachedInstance;
    /// Loads `program` and attaches its probes to `target`. `event_ns` is the
    /// CLOCK_MONOTONIC time of the exec or fork event that led here, if any.
    fn attach(
        &mut self,
        program: &Self::Program,
        target: AttachTarget,
        event_ns: Option<u64>,
    ) -> Result<Self::Instance, Vec<AttachFailure>>;
    /// Detaches `instance` (the kernel side may take its time).
    fn detach(&mut self, instance: Self::Instance);
    /// The identity of the file at `path`, if it exists.
    fn file_id(&self, path: &Path) -> Option<FileId>;
}

/// A process where a program could not attach at all.
#[derive(Debug, Clone)]
pub struct FailedProcess {
    /// The process.
    pub process: ProcessInfo,
    /// Why, per probe.
    pub failures: Vec<AttachFailure>,
    /// Attach attempts so far (retried on rescans up to a limit).
    pub attempts: u32,
}

impl FailedProcess {
    /// Whether nothing attached only because the process's build offers none
    /// of the program's sources: not a fault.
    pub fn unobservable(&self) -> bool {
        !self.failures.is_empty() && self.failures.iter().all(|f| f.unavailable.is_some())
    }
}

/// An executable named in the config where a per-binary program attached nothing.
#[derive(Debug, Clone)]
pub struct FailedBinary {
    /// The path named in `exe_path`.
    pub path: PathBuf,
    /// Why, per probe.
    pub failures: Vec<AttachFailure>,
    /// Attach attempts so far.
    pub attempts: u32,
}

/// One program and everything attached for it.
#[derive(Debug)]
pub struct ProgramState<P, I> {
    /// The program.
    pub program: P,
    /// Attached instances, by process.
    pub instances: BTreeMap<ProcessKey, I>,
    /// Matching processes where nothing attached (retried on rescans up to
    /// [`ATTACH_ATTEMPTS`] times, not otherwise until they change).
    pub failed: BTreeMap<ProcessKey, FailedProcess>,
    /// `instances: per_binary`: one instance per executable.
    pub binaries: BTreeMap<FileId, I>,
    /// Executables named in the selector whose attach failed.
    pub failed_binaries: BTreeMap<FileId, FailedBinary>,
}

impl<P, I> ProgramState<P, I> {
    /// A program with nothing attached yet.
    pub fn new(program: P) -> Self {
        ProgramState {
            program,
            instances: BTreeMap::new(),
            failed: BTreeMap::new(),
            binaries: BTreeMap::new(),
            failed_binaries: BTreeMap::new(),
        }
    }
}

/// The programs, the processes as last seen, and the attacher: everything the
/// rules decide over. Events and rescans come in one at a time.
#[derive(Debug)]
pub struct Reconciler<A: Attacher> {
    /// Loads and attaches.
    pub attacher: A,
    /// The programs in config order, with what is attached for each.
    pub programs: Vec<ProgramState<A::Program, A::Instance>>,
    /// Every process as last seen by a rescan or an event.
    processes: ProcessTable,
    /// Where attach failures are counted.
    stats: std::sync::Arc<Mutex<SelfStats>>,
}

impl<A: Attacher> Reconciler<A> {
    /// Rules over `programs`, attaching through `attacher`, counting failures in `stats`.
    pub fn new(
        attacher: A,
        programs: Vec<A::Program>,
        stats: std::sync::Arc<Mutex<SelfStats>>,
    ) -> Self {
        Reconciler {
            attacher,
            programs: programs.into_iter().map(ProgramState::new).collect(),
            processes: ProcessTable::new(),
            stats,
        }
    }

    /// Takes every attached instance out, per process and per binary (the
    /// exporter is stopping): the caller detaches them.
    pub fn take_instances(&mut self) -> Vec<A::Instance> {
        let mut taken = Vec::new();
        for state in &mut self.programs {
            taken.extend(std::mem::take(&mut state.instances).into_values());
            taken.extend(std::mem::take(&mut state.binaries).into_values());
        }
        taken
    }

    /// The pids known from rescans and events: a routine rescan reads only the others.
    pub fn known_pids(&self) -> BTreeSet<i32> {
        self.processes.known_pids()
    }

    /// Takes in what a rescan of `/proc` found and reconciles every program with
    /// the processes now known: attaches programs to newly matching processes,
    /// drops instances of processes that are gone or no longer match, and
    /// retries processes that failed (a library may have been loaded since).
    pub fn apply_rescan(&mut self, snapshot: ProcSnapshot) {
        self.processes
            .merge(snapshot.read, &snapshot.listed, snapshot.since_ns);
        let Reconciler {
            attacher,
            programs,
            processes,
            stats,
        } = self;
        let live: Vec<&ProcessInfo> = processes.processes().collect();
        for state in programs {
            let mut step = Step {
                attacher: &mut *attacher,
                stats,
            };
            let wanted: BTreeMap<ProcessKey, &ProcessInfo> = live
                .iter()
                .filter(|p| state.program.selects(p))
                .map(|p| (p.key, *p))
                .collect();
            if state.program.per_binary() {
                step.reconcile_binaries(state, &wanted);
            } else {
                step.reconcile_processes(state, &wanted);
            }
        }
    }

    /// The fingerprints of the programs running now.
    pub fn fingerprints(&self) -> Vec<String> {
        self.programs
            .iter()
            .map(|state| state.program.fingerprint().to_string())
            .collect()
    }

    /// Replaces the programs with `next`, in its order: unchanged programs keep
    /// their instances and counts, new and changed ones start empty (the next
    /// rescan attaches them), and programs no longer there are detached. Nothing
    /// changes if `next` names a fingerprint that is not running.
    pub fn reload(&mut self, next: Vec<Reloaded<A::Program>>) -> Result<(), String> {
        let running = self.fingerprints();
        if let Some(missing) = next.iter().find_map(|item| match item {
            Reloaded::Unchanged(fingerprint) if !running.contains(fingerprint) => Some(fingerprint),
            _ => None,
        }) {
            return Err(format!("no running program has fingerprint {missing:?}"));
        }
        let mut old: Vec<Option<ProgramState<A::Program, A::Instance>>> =
            std::mem::take(&mut self.programs)
                .into_iter()
                .map(Some)
                .collect();
        for item in next {
            let state = match item {
                Reloaded::Unchanged(fingerprint) => old
                    .iter_mut()
                    .find(|s| {
                        s.as_ref()
                            .is_some_and(|s| s.program.fingerprint() == fingerprint)
                    })
                    .and_then(Option::take)
                    .expect("checked above"),
                Reloaded::New(program) => ProgramState::new(program),
            };
            self.programs.push(state);
        }
        for mut state in old.into_iter().flatten() {
            tracing::info!(
                program = state.program.name(),
                "removed or changed by the reload: detaching"
            );
            detach_where(&mut self.attacher, &mut state, |_, _| true);
            for (_, instance) in std::mem::take(&mut state.binaries) {
                self.attacher.detach(instance);
            }
        }
        Ok(())
    }

    /// A process replaced its image (exec): whatever was attached to its old
    /// image is dropped and it is judged again as the program it now runs.
    pub fn process_execed(&mut self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.processes
            .record(process.clone(), crate::discovery::monotonic_ns());
        let pid = process.pid();
        for state in &mut self.programs {
            // An instance whose attach began after the exec already sees the new
            // image (a fork event read the process after it exec'd): keep it.
            let current = |i: &A::Instance| event_ns.is_some_and(|t| i.started_ns() > t);
            detach_where(&mut self.attacher, state, |key, i| {
                key.pid == pid && !current(i)
            });
            state.failed.retain(|key, _| key.pid != pid);
        }
        self.process_started(process, event_ns);
    }

    /// A new process (a fork, or one found otherwise): attach where selected.
    pub fn process_started(&mut self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.processes
            .record(process.clone(), crate::discovery::monotonic_ns());
        let Reconciler {
            attacher,
            programs,
            stats,
            ..
        } = self;
        for state in programs {
            if !state.program.selects(process) {
                continue;
            }
            let mut step = Step {
                attacher: &mut *attacher,
                stats,
            };
            if state.program.per_binary() {
                step.attach_binary_of(state, process, event_ns);
            } else if !state.instances.contains_key(&process.key)
                && !state.failed.contains_key(&process.key)
            {
                step.attach_process(state, process, event_ns);
            }
        }
    }

    /// A process exited: its instances are dropped, so its series leave /metrics.
    pub fn process_exited(&mut self, pid: i32) {
        self.processes.exited(pid, crate::discovery::monotonic_ns());
        for state in &mut self.programs {
            detach_where(&mut self.attacher, state, |key, _| key.pid == pid);
            state.failed.retain(|key, _| key.pid != pid);
        }
    }
}

/// Removes the per-process instances `detach` selects and hands them to the attacher.
fn detach_where<A: Attacher>(
    attacher: &mut A,
    state: &mut ProgramState<A::Program, A::Instance>,
    detach: impl Fn(&ProcessKey, &A::Instance) -> bool,
) {
    let keys: Vec<ProcessKey> = state
        .instances
        .iter()
        .filter(|(k, i)| detach(k, i))
        .map(|(k, _)| *k)
        .collect();
    for key in keys {
        if let Some(instance) = state.instances.remove(&key) {
            tracing::info!(program = state.program.name(), pid = key.pid, "detached");
            attacher.detach(instance);
        }
    }
}

/// One program's reconcile step: the attacher and the counters it reports to.
struct Step<'a, A: Attacher> {
    attacher: &'a mut A,
    stats: &'a Mutex<SelfStats>,
}

impl<A: Attacher> Step<'_, A> {
    /// Per-process (and shared) programs: one instance per matching process.
    fn reconcile_processes(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        wanted: &BTreeMap<ProcessKey, &ProcessInfo>,
    ) {
        detach_where(self.attacher, state, |key, _| !wanted.contains_key(key));
        state.failed.retain(|key, _| wanted.contains_key(key));
        for (key, process) in wanted {
            let retry = state
                .failed
                .get(key)
                .is_some_and(|f| f.attempts < ATTACH_ATTEMPTS);
            if !state.instances.contains_key(key) && (retry || !state.failed.contains_key(key)) {
                self.attach_process(state, process, None);
            }
        }
    }

    /// Per-binary programs: attaches executables named in the selector and those
    /// of matching processes not yet covered; drops the instance of an executable
    /// that no matching process runs and that is no longer on disk (an upgrade
    /// replaced it), keeping the rest so the next process is counted from its
    /// first instruction.
    fn reconcile_binaries(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        wanted: &BTreeMap<ProcessKey, &ProcessInfo>,
    ) {
        let named: Vec<(PathBuf, FileId)> = state
            .program
            .named_executables()
            .into_iter()
            .filter_map(|path| self.attacher.file_id(&path).map(|id| (path, id)))
            .collect();
        let running: BTreeSet<FileId> = wanted.values().filter_map(|p| p.exe_id()).collect();
        let stale: Vec<FileId> = state
            .binaries
            .iter()
            .filter(|(id, instance)| {
                let exe = match instance.target() {
                    AttachTarget::Binary { exe, .. } => exe,
                    AttachTarget::Process(process) => &process.exe,
                };
                !running.contains(id)
                    && !named.iter().any(|(_, named)| named == *id)
                    && self.attacher.file_id(exe) != Some(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(instance) = state.binaries.remove(&id) {
                tracing::info!(program = state.program.name(), target = %instance.target().describe(), "detached: no process runs it and the file is gone");
                self.attacher.detach(instance);
            }
        }
        state.failed.retain(|key, _| wanted.contains_key(key));
        for (path, id) in named {
            let retry = state
                .failed_binaries
                .get(&id)
                .is_none_or(|f| f.attempts < ATTACH_ATTEMPTS);
            if !state.binaries.contains_key(&id) && retry {
                self.attach_named_binary(state, path, id);
            }
        }
        for process in wanted.values() {
            self.attach_binary_of(state, process, None);
        }
    }

    /// Attaches a per-binary program to the executable `process` runs, unless
    /// an instance already covers it or its attempts are used up.
    fn attach_binary_of(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        process: &ProcessInfo,
        event_ns: Option<u64>,
    ) {
        let Some(id) = process.exe_id() else { return };
        let retry = state
            .failed
            .get(&process.key)
            .is_none_or(|f| f.attempts < ATTACH_ATTEMPTS);
        if state.binaries.contains_key(&id) || !retry {
            return;
        }
        let target = AttachTarget::Binary {
            exe: process.exe.clone(),
            found_in: Some(process.clone()),
        };
        if let Some(instance) = self.attach_target(state, target, process.key, event_ns) {
            state.binaries.insert(id, instance);
        }
    }

    /// Attaches a per-binary program to an executable named in its selector,
    /// before any process runs it (probes are looked up in that file only).
    fn attach_named_binary(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        path: PathBuf,
        id: FileId,
    ) {
        let first_attempt = !state.failed_binaries.contains_key(&id);
        let target = AttachTarget::Binary {
            exe: path.clone(),
            found_in: None,
        };
        let described = target.describe();
        match self.attacher.attach(&state.program, target, None) {
            Ok(instance) => {
                self.record_failures(state, &described, instance.failures(), first_attempt);
                state.failed_binaries.remove(&id);
                state.binaries.insert(id, instance);
            }
            Err(failures) => {
                self.record_failures(state, &described, &failures, first_attempt);
                let attempts = state.failed_binaries.get(&id).map_or(0, |f| f.attempts) + 1;
                state.failed_binaries.insert(
                    id,
                    FailedBinary {
                        path,
                        failures,
                        attempts,
                    },
                );
            }
        }
    }

    /// Attaches a per-process (or shared) program to `process`.
    fn attach_process(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        process: &ProcessInfo,
        event_ns: Option<u64>,
    ) {
        let target = AttachTarget::Process(process.clone());
        if let Some(instance) = self.attach_target(state, target, process.key, event_ns) {
            state.instances.insert(process.key, instance);
        }
    }

    /// Attaches to `target`, found through process `key`; on failure the
    /// process is kept in `failed`, to be retried on rescans.
    fn attach_target(
        &mut self,
        state: &mut ProgramState<A::Program, A::Instance>,
        target: AttachTarget,
        key: ProcessKey,
        event_ns: Option<u64>,
    ) -> Option<A::Instance> {
        let first_attempt = !state.failed.contains_key(&key);
        let process = target.process().cloned();
        let described = target.describe();
        match self.attacher.attach(&state.program, target, event_ns) {
            Ok(instance) => {
                self.record_failures(state, &described, instance.failures(), first_attempt);
                state.failed.remove(&key);
                Some(instance)
            }
            Err(failures) if failures.iter().all(|f| f.cancelled) => {
                // Gone before its attach was done: nothing to retry or report
                // (short-lived processes do this all the time).
                for f in &failures {
                    tracing::debug!(
                        program = state.program.name(),
                        target = described,
                        "{}",
                        f.message
                    );
                }
                state.failed.remove(&key);
                None
            }
            Err(failures) => {
                self.record_failures(state, &described, &failures, first_attempt);
                let attempts = state.failed.get(&key).map_or(0, |f| f.attempts) + 1;
                if !first_attempt {
                    tracing::debug!(
                        program = state.program.name(),
                        pid = key.pid,
                        attempts,
                        "attach retry failed"
                    );
                }
                if let Some(process) = process {
                    state.failed.insert(
                        key,
                        FailedProcess {
                            process,
                            failures,
                            attempts,
                        },
                    );
                }
                None
            }
        }
    }

    /// Logs and counts attach failures, once: a retry that fails the same way
    /// is not a new error.
    fn record_failures(
        &self,
        state: &ProgramState<A::Program, A::Instance>,
        target: &str,
        failures: &[AttachFailure],
        first_attempt: bool,
    ) {
        if !first_attempt || failures.is_empty() {
            return;
        }
        let name = state.program.name();
        let mut stats = crate::metrics::lock_stats(self.stats);
        for f in failures {
            if f.unavailable.is_some() {
                // The build offers no way to observe this source: a fact about
                // the process, not an error. The landing page says it, the
                // sources gauge counts it; a node of such processes must not
                // fill the log.
                tracing::debug!(program = %name, target, "{}", f.message);
                continue;
            }
            tracing::warn!(program = %name, target, "{}", f.message);
            stats.count_attach_error(name, &f.probe);
        }
    }
}

#[cfg(test)]
mod tests;
