//! The live state: prepared programs, their instances per process, and the
//! self-metric counters. Instances are created and dropped by [`Exporter::reconcile`]
//! at any time; metrics are read from them at scrape time.

use crate::attach::{AttachFailure, AttachTarget, Instance, PreparedProgram};
use crate::config::{Config, ConfigError};
use crate::discovery::{monotonic_ns, FileId, ProcSnapshot, ProcessInfo, ProcessKey, ProcessTable};
use crate::elf::ElfCache;
use crate::metrics::ProgramMetrics;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// How often a matching process whose attach failed is tried again on rescans:
/// a library with the probe may be loaded after exec (dlopen, or the dynamic
/// loader still running when the exec event came).
const ATTACH_ATTEMPTS: u32 = 5;

/// ELF files parsed and kept (per device + inode + mtime).
const ELF_CACHE_ENTRIES: usize = 512;

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

/// One program and everything attached for it.
#[derive(Debug)]
pub struct ProgramState {
    /// The checked program.
    pub prepared: PreparedProgram,
    /// Decoders and layouts for its metrics.
    pub metrics: ProgramMetrics,
    /// The one loaded object of an `instances: shared` program.
    pub shared: Option<std::sync::Arc<libbpf_rs::Object>>,
    /// Attached instances, by process.
    pub instances: BTreeMap<ProcessKey, Instance>,
    /// Matching processes where nothing attached (not retried until they change).
    pub failed: BTreeMap<ProcessKey, FailedProcess>,
    /// `instances: per_binary`: one instance per executable, for every process of it.
    pub binaries: BTreeMap<FileId, Instance>,
    /// Executables named in the selector whose attach failed, with the attempts so far.
    pub failed_binaries: BTreeMap<FileId, FailedBinary>,
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

/// A program that could not be prepared (unreadable object, bad layout).
#[derive(Debug, Clone)]
pub struct BrokenProgram {
    /// Program name.
    pub name: String,
    /// Every problem, located in the config.
    pub errors: Vec<String>,
}

/// Counters the exporter keeps about itself.
#[derive(Debug, Default)]
pub struct SelfStats {
    /// (program, probe) -> attach failures.
    pub attach_errors: BTreeMap<(String, String), u64>,
    /// (program, metric) -> keys a decoder rejected.
    pub decoder_errors: BTreeMap<(String, String), u64>,
    /// (program, table) -> failed map reads.
    pub map_read_errors: BTreeMap<(String, String), u64>,
    /// Time to load and attach one instance.
    pub attach_duration: LatencyHistogram,
    /// Time from a process's exec/fork event to its instance being attached.
    pub event_to_attach: LatencyHistogram,
    /// Bytes of the last scrape's response: the next one's buffer starts this
    /// big, instead of doubling its way there (a 1M-series response is 60 MB).
    pub last_response_bytes: usize,
}

/// Everything the exporter runs.
#[derive(Debug)]
pub struct Exporter {
    /// Programs that are live.
    pub programs: Vec<ProgramState>,
    /// Programs that failed preparation, for the landing page.
    pub broken: Vec<BrokenProgram>,
    /// Self-metric counters.
    pub stats: SelfStats,
    /// When the exporter started.
    pub started: SystemTime,
    elf_cache: ElfCache,
    reaper: Reaper,
    /// Expedite RCU grace periods during each attach (`--attach.expedited-rcu`).
    expedited_rcu: bool,
    /// Every process as last seen by a rescan or an event.
    processes: ProcessTable,
}

/// Drops detached instances on a thread of its own: detaching uprobes waits for
/// the kernel (RCU grace periods), and that must not hold up attaching the next
/// process or a scrape.
#[derive(Debug)]
struct Reaper {
    sender: Option<std::sync::mpsc::Sender<Instance>>,
}

impl Reaper {
    fn new() -> Reaper {
        let (sender, receiver) = std::sync::mpsc::channel::<Instance>();
        let spawned = std::thread::Builder::new()
            .name("detach".into())
            .spawn(move || {
                for instance in receiver {
                    let started = Instant::now();
                    let target = instance.target.describe();
                    drop(instance);
                    tracing::debug!(
                        target,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        "instance detached"
                    );
                }
            });
        Reaper {
            sender: spawned.ok().map(|_| sender),
        }
    }

    /// Detaches and frees `instance` off the caller's thread (inline if the thread is gone).
    fn drop_later(&self, instance: Instance) {
        if let Some(sender) = &self.sender {
            if let Err(returned) = sender.send(instance) {
                drop(returned.0);
            }
        }
    }
}

impl ProgramState {
    /// Every attached instance: per process (or shared) and per binary.
    pub fn attached(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().chain(self.binaries.values())
    }

    /// Removes the instances `detach` selects and hands them to the reaper.
    fn detach_where(&mut self, reaper: &Reaper, detach: impl Fn(&ProcessKey, &Instance) -> bool) {
        let keys: Vec<ProcessKey> = self
            .instances
            .iter()
            .filter(|(k, i)| detach(k, i))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(instance) = self.instances.remove(&key) {
                tracing::info!(program = self.prepared.name(), pid = key.pid, "detached");
                reaper.drop_later(instance);
            }
        }
    }
}

/// Locks the exporter; a panic elsewhere while it was held leaves state that is
/// still consistent enough to serve, so poisoning is ignored.
pub fn lock(exporter: &std::sync::Mutex<Exporter>) -> std::sync::MutexGuard<'_, Exporter> {
    exporter
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Exporter {
    /// Prepares every program of the config. A program that fails is kept in
    /// `broken` and logged; the others run.
    pub fn new(config: &Config, compiler: &crate::compile::clang::Compiler) -> Exporter {
        let mut programs = Vec::new();
        let mut broken = Vec::new();
        for program in &config.programs {
            let name = program.value.name.clone();
            match prepare(config, program, compiler) {
                Ok(state) => programs.push(state),
                Err(errors) => {
                    for e in &errors {
                        tracing::error!(program = %name, "{e}");
                    }
                    broken.push(BrokenProgram { name, errors });
                }
            }
        }
        Exporter {
            programs,
            broken,
            stats: SelfStats::default(),
            started: SystemTime::now(),
            elf_cache: ElfCache::new(ELF_CACHE_ENTRIES),
            reaper: Reaper::new(),
            expedited_rcu: false,
            processes: ProcessTable::new(),
        }
    }

    /// Expedites the kernel's RCU grace periods while each probe is attached
    /// (see [`crate::attach::ExpeditedRcu`]): exec-to-attach p99 drops from about
    /// 20 ms to about 3 ms on a 2-core VM.
    pub fn set_expedited_rcu(&mut self, on: bool) {
        self.expedited_rcu = on;
    }

    /// The pids the exporter knows, from rescans and events: a routine rescan
    /// reads only the others.
    pub fn known_pids(&self) -> BTreeSet<i32> {
        self.processes.known_pids()
    }

    /// Takes in what a rescan of `/proc` found and reconciles every program with
    /// the processes now known.
    pub fn apply_rescan(&mut self, snapshot: ProcSnapshot) {
        self.processes
            .merge(snapshot.read, &snapshot.listed, snapshot.since_ns);
        // Out of `self` while programs are reconciled against it (nothing there
        // touches the table); put back right after.
        let table = std::mem::take(&mut self.processes);
        let live: Vec<&ProcessInfo> = table.processes().collect();
        self.reconcile(&live);
        self.processes = table;
    }

    /// Bounds each metric's decoded-label cache to `keys` raw keys (0: no cache;
    /// see [`crate::metrics::label_cache`]).
    pub fn set_label_cache_keys(&mut self, keys: usize) {
        for state in &mut self.programs {
            let metrics = &mut state.metrics;
            let readers = metrics
                .counters
                .iter_mut()
                .chain(metrics.histograms.iter_mut().map(|h| &mut h.metric));
            for reader in readers {
                *reader.cache.get_mut() = crate::metrics::label_cache::LabelCache::new(keys);
            }
        }
    }

    /// Brings instances in line with the running processes: attaches programs to
    /// newly matching processes, drops instances of processes that are gone, and
    /// retries processes that failed (a library may have been loaded since).
    fn reconcile(&mut self, processes: &[&ProcessInfo]) {
        for index in 0..self.programs.len() {
            let state = &mut self.programs[index];
            let wanted: BTreeMap<ProcessKey, &ProcessInfo> = processes
                .iter()
                .filter(|p| state.prepared.selector.matches(p))
                .map(|p| (p.key, *p))
                .collect();
            if state.prepared.is_per_binary() {
                self.reconcile_binaries(index, &wanted);
                continue;
            }
            state.detach_where(&self.reaper, |key, _| !wanted.contains_key(key));
            state.failed.retain(|key, _| wanted.contains_key(key));
            for (key, process) in wanted {
                let state = &self.programs[index];
                let retry = state
                    .failed
                    .get(&key)
                    .is_some_and(|f| f.attempts < ATTACH_ATTEMPTS);
                if !state.instances.contains_key(&key)
                    && (retry || !state.failed.contains_key(&key))
                {
                    self.attach(index, process, None);
                }
            }
        }
    }

    /// Per-binary programs: attaches executables named in the selector and those
    /// of matching processes not yet covered; drops the instance of an executable
    /// that no matching process runs and that is no longer on disk (an upgrade
    /// replaced it), keeping the rest so the next process is counted from its
    /// first instruction.
    fn reconcile_binaries(&mut self, index: usize, wanted: &BTreeMap<ProcessKey, &ProcessInfo>) {
        let state = &mut self.programs[index];
        let named: Vec<(PathBuf, FileId)> = state
            .prepared
            .selector
            .named_executables()
            .into_iter()
            .filter_map(|path| FileId::of(&path).map(|id| (path, id)))
            .collect();
        let running: BTreeSet<FileId> = wanted.values().filter_map(|p| p.exe_id()).collect();
        let stale: Vec<FileId> = state
            .binaries
            .iter()
            .filter(|(id, instance)| {
                let exe = match &instance.target {
                    AttachTarget::Binary { exe, .. } => exe,
                    AttachTarget::Process(process) => &process.exe,
                };
                !running.contains(id)
                    && !named.iter().any(|(_, named)| named == *id)
                    && FileId::of(exe) != Some(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(instance) = state.binaries.remove(&id) {
                tracing::info!(program = state.prepared.name(), target = %instance.target.describe(), "detached: no process runs it and the file is gone");
                self.reaper.drop_later(instance);
            }
        }
        state.failed.retain(|key, _| wanted.contains_key(key));
        for (path, id) in named {
            let state = &self.programs[index];
            let retry = state
                .failed_binaries
                .get(&id)
                .is_none_or(|f| f.attempts < ATTACH_ATTEMPTS);
            if !state.binaries.contains_key(&id) && retry {
                self.attach_named_binary(index, path, id);
            }
        }
        for process in wanted.values() {
            self.attach_binary_of(index, process, None);
        }
    }

    /// Attaches a per-binary program to the executable `process` runs, unless
    /// an instance already covers it.
    fn attach_binary_of(&mut self, index: usize, process: &ProcessInfo, event_ns: Option<u64>) {
        let state = &self.programs[index];
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
        if let Some(instance) = self.attach_target(index, target, process.key, event_ns) {
            self.programs[index].binaries.insert(id, instance);
        }
    }

    /// Attaches a per-binary program to an executable named in its selector,
    /// before any process runs it (probes are looked up in that file only).
    fn attach_named_binary(&mut self, index: usize, path: PathBuf, id: FileId) {
        let state = &mut self.programs[index];
        let name = state.prepared.name().to_string();
        let first_attempt = !state.failed_binaries.contains_key(&id);
        let target = AttachTarget::Binary {
            exe: path.clone(),
            found_in: None,
        };
        let described = target.describe();
        let result = state
            .prepared
            .instantiate(target, &mut self.elf_cache, None);
        match result {
            Ok(instance) => {
                self.record_failures(index, &described, &instance.failures, first_attempt);
                tracing::info!(program = %name, binary = %path.display(), "attached for every process: {}", instance.attached.join(", "));
                let state = &mut self.programs[index];
                state.failed_binaries.remove(&id);
                state.binaries.insert(id, instance);
            }
            Err(e) => {
                let failures = e.failures();
                self.record_failures(index, &described, &failures, first_attempt);
                let state = &mut self.programs[index];
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

    /// Logs and counts attach failures (once: a retry that fails the same way
    /// is not a new error).
    fn record_failures(
        &mut self,
        index: usize,
        target: &str,
        failures: &[AttachFailure],
        first_attempt: bool,
    ) {
        if !first_attempt {
            return;
        }
        let name = self.programs[index].prepared.name().to_string();
        for f in failures {
            tracing::warn!(program = %name, target, "{}", f.message);
            *self
                .stats
                .attach_errors
                .entry((name.clone(), f.probe.clone()))
                .or_default() += 1;
        }
    }

    /// A process replaced its image (exec): whatever was attached to its old
    /// image is dropped and it is judged again as the program it now runs.
    pub fn process_execed(&mut self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.processes.record(process.clone(), monotonic_ns());
        for state in &mut self.programs {
            // An instance whose attach began after the exec already sees the new image
            // (a fork event read the process after it exec'd): keep it.
            let current = |i: &crate::attach::Instance| event_ns.is_some_and(|t| i.started_ns > t);
            state.detach_where(&self.reaper, |key, i| {
                key.pid == process.pid() && !current(i)
            });
            state.failed.retain(|key, _| key.pid != process.pid());
        }
        self.process_started(process, event_ns);
    }

    /// A new process (a fork, or one found otherwise): attach where selected.
    pub fn process_started(&mut self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.processes.record(process.clone(), monotonic_ns());
        for index in 0..self.programs.len() {
            let state = &self.programs[index];
            if state.prepared.is_per_binary() {
                if state.prepared.selector.matches(process) {
                    self.attach_binary_of(index, process, event_ns);
                }
                continue;
            }
            if state.prepared.selector.matches(process)
                && !state.instances.contains_key(&process.key)
                && !state.failed.contains_key(&process.key)
            {
                self.attach(index, process, event_ns);
            }
        }
    }

    /// A process exited: its instances are dropped, so its series leave /metrics.
    pub fn process_exited(&mut self, pid: i32) {
        self.processes.exited(pid, monotonic_ns());
        for state in &mut self.programs {
            state.detach_where(&self.reaper, |key, _| key.pid == pid);
            state.failed.retain(|key, _| key.pid != pid);
        }
    }

    /// Loads and attaches program `index` to `process`, recording the outcome.
    /// `event_ns` is the CLOCK_MONOTONIC time of the exec/fork event that led here.
    fn attach(&mut self, index: usize, process: &ProcessInfo, event_ns: Option<u64>) {
        let target = AttachTarget::Process(process.clone());
        if let Some(instance) = self.attach_target(index, target, process.key, event_ns) {
            self.programs[index].instances.insert(process.key, instance);
        }
    }

    /// Loads and attaches program `index` to `target`, found through process
    /// `key`: logs and counts the outcome, and on failure records the process
    /// in `failed` to be retried on rescans.
    fn attach_target(
        &mut self,
        index: usize,
        target: AttachTarget,
        key: ProcessKey,
        event_ns: Option<u64>,
    ) -> Option<Instance> {
        let state = &mut self.programs[index];
        let name = state.prepared.name().to_string();
        let first_attempt = !state.failed.contains_key(&key);
        let process = target.process().cloned();
        let described = target.describe();
        let started = Instant::now();
        let expedited = self.expedited_rcu.then(crate::attach::ExpeditedRcu::begin);
        let result = state
            .prepared
            .instantiate(target, &mut self.elf_cache, state.shared.as_ref());
        drop(expedited);
        self.stats
            .attach_duration
            .observe(started.elapsed().as_secs_f64());
        let failures = match &result {
            Ok(instance) => instance.failures.clone(),
            Err(e) => e.failures(),
        };
        self.record_failures(index, &described, &failures, first_attempt);
        let state = &mut self.programs[index];
        match result {
            Ok(instance) => {
                // From the kernel's fork/exec event to attached (-1 when found by a rescan).
                let event_to_attach_ms = event_ns.map_or(-1.0, |event_ns| {
                    let latency =
                        crate::discovery::monotonic_ns().saturating_sub(event_ns) as f64 / 1e9;
                    self.stats.event_to_attach.observe(latency);
                    latency * 1e3
                });
                tracing::info!(
                    program = %name, target = %described,
                    links = instance.link_count(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    event_to_attach_ms,
                    "attached: {}", instance.attached.join(", ")
                );
                state.failed.remove(&key);
                Some(instance)
            }
            Err(_) => {
                let attempts = state.failed.get(&key).map_or(0, |f| f.attempts) + 1;
                if !first_attempt {
                    tracing::debug!(program = %name, pid = key.pid, attempts, "attach retry failed");
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
}

/// A small fixed-bucket histogram for the exporter's own latencies, in seconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Upper bounds.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more for +Inf.
    pub counts: Vec<u64>,
    /// Sum of observations.
    pub sum: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        const BOUNDS: &[f64] = &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        LatencyHistogram {
            bounds: BOUNDS,
            counts: vec![0; BOUNDS.len() + 1],
            sum: 0.0,
        }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += seconds;
    }

    /// As cumulative buckets for the encoder.
    pub fn built(&self) -> crate::metrics::histogram::BuiltHistogram {
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, &c)| {
                total += c;
                (b, total)
            })
            .collect();
        crate::metrics::histogram::BuiltHistogram {
            buckets,
            count: total + self.counts[self.bounds.len()],
            sum: self.sum,
        }
    }
}

/// Produces a program's object (reading or compiling it), checks it against the
/// config and compiles its metric readers: everything short of loading it.
/// Errors are located in the config file.
pub fn prepare(
    config: &Config,
    program: &serde_saphyr::Spanned<crate::config::Program>,
    compiler: &crate::compile::clang::Compiler,
) -> Result<ProgramState, Vec<String>> {
    let p = &program.value;
    let (object, cached) = crate::compile::object_bytes(config, p, compiler).map_err(|e| {
        vec![ConfigError::new(
            &config.path,
            program.referenced.line(),
            program.referenced.column(),
            e.to_string(),
        )
        .to_string()]
    })?;
    if p.code.is_some() {
        tracing::info!(program = %p.name, cached, "compiled inline code");
    }
    let prepared = PreparedProgram::prepare(config, program, object)
        .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let metrics = ProgramMetrics::new(&prepared).map_err(|e| vec![e])?;
    let shared = if prepared.is_shared() {
        let object = prepared.load().map_err(|e| {
            vec![format!(
                "{}:{}: program {:?}: {e}",
                config.path.display(),
                program.referenced.line(),
                p.name
            )]
        })?;
        Some(std::sync::Arc::new(object))
    } else {
        None
    };
    Ok(ProgramState {
        prepared,
        metrics,
        shared,
        instances: BTreeMap::new(),
        failed: BTreeMap::new(),
        binaries: BTreeMap::new(),
        failed_binaries: BTreeMap::new(),
    })
}
