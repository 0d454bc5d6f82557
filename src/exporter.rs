//! The live state: prepared programs, their instances per process, and the
//! self-metric counters. Instances are created and dropped by [`Exporter::reconcile`]
//! at any time; metrics are read from them at scrape time.

use crate::attach::{AttachFailure, Instance, PreparedProgram};
use crate::config::{Config, ConfigError};
use crate::discovery::{ProcessInfo, ProcessKey};
use crate::elf::ElfCache;
use crate::metrics::ProgramMetrics;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// ELF files parsed and kept (per device + inode + mtime).
const ELF_CACHE_ENTRIES: usize = 512;

/// A process where a program could not attach at all.
#[derive(Debug, Clone)]
pub struct FailedProcess {
    /// The process.
    pub process: ProcessInfo,
    /// Why, per probe.
    pub failures: Vec<AttachFailure>,
}

/// One program and everything attached for it.
#[derive(Debug)]
pub struct ProgramState {
    /// The checked program.
    pub prepared: PreparedProgram,
    /// Decoders and layouts for its metrics.
    pub metrics: ProgramMetrics,
    /// Attached instances, by process.
    pub instances: BTreeMap<ProcessKey, Instance>,
    /// Matching processes where nothing attached (not retried until they change).
    pub failed: BTreeMap<ProcessKey, FailedProcess>,
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
        }
    }

    /// Brings instances in line with the running processes: attaches programs to
    /// newly matching processes and drops instances of processes that are gone.
    pub fn reconcile(&mut self, processes: &[ProcessInfo]) {
        for state in &mut self.programs {
            let wanted: BTreeMap<ProcessKey, &ProcessInfo> = processes
                .iter()
                .filter(|p| state.prepared.selector.matches(p))
                .map(|p| (p.key, p))
                .collect();
            state.instances.retain(|key, instance| {
                let keep = wanted.contains_key(key);
                if !keep {
                    tracing::info!(
                        program = state.prepared.name(),
                        pid = instance.process.pid(),
                        "process gone; detached"
                    );
                }
                keep
            });
            state.failed.retain(|key, _| wanted.contains_key(key));
            for (key, process) in wanted {
                if state.instances.contains_key(&key) || state.failed.contains_key(&key) {
                    continue;
                }
                let name = state.prepared.name().to_string();
                let started = Instant::now();
                match state.prepared.instantiate(process, &mut self.elf_cache) {
                    Ok(instance) => {
                        for f in &instance.failures {
                            tracing::warn!(program = %name, pid = key.pid, comm = %process.comm, "{}", f.message);
                            *self
                                .stats
                                .attach_errors
                                .entry((name.clone(), f.probe.clone()))
                                .or_default() += 1;
                        }
                        tracing::info!(
                            program = %name, pid = key.pid, comm = %process.comm,
                            links = instance.link_count(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                            "attached: {}", instance.attached.join(", ")
                        );
                        state.instances.insert(key, instance);
                    }
                    Err(e) => {
                        let failures = e.failures();
                        for f in &failures {
                            tracing::warn!(program = %name, pid = key.pid, comm = %process.comm, "{}", f.message);
                            *self
                                .stats
                                .attach_errors
                                .entry((name.clone(), f.probe.clone()))
                                .or_default() += 1;
                        }
                        state.failed.insert(
                            key,
                            FailedProcess {
                                process: process.clone(),
                                failures,
                            },
                        );
                    }
                }
            }
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
    let (object, cached) = crate::compile::object_bytes(p, &config.path, &config.dir(), compiler)
        .map_err(|e| {
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
    Ok(ProgramState {
        prepared,
        metrics,
        instances: BTreeMap::new(),
        failed: BTreeMap::new(),
    })
}
