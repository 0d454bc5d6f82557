//! Program setup: everything between a config entry and a program ready to be
//! attached (its object read or compiled, checked against the config, its
//! metric readers built, and the one object of a shared program loaded).

use crate::attach::pid_keyed::PidKeyedSlot;
use crate::attach::PreparedProgram;
use crate::compile::clang::Compiler;
use crate::config::{Config, ConfigError, Program};
use crate::metrics::ProgramMetrics;
use serde_saphyr::Spanned;
use std::sync::Arc;

/// A program ready to attach, and the readers of its metrics.
#[derive(Debug)]
pub struct SetUpProgram {
    /// What it does, and its object's bytes: equal for a program a reload
    /// leaves unchanged (see [`crate::config::Program::fingerprint`]).
    pub fingerprint: String,
    /// The checked program.
    pub prepared: Arc<PreparedProgram>,
    /// Decoders and layouts of its metrics.
    pub metrics: Arc<ProgramMetrics>,
    /// The one loaded object of an `instances: shared` program.
    pub shared: Option<Arc<libbpf_rs::Object>>,
    /// A `pid_keyed` program's object, loaded at its first attach.
    pub pid_keyed: Option<Arc<PidKeyedSlot>>,
}

/// A program that could not be set up (unreadable object, bad layout).
#[derive(Debug, Clone)]
pub struct BrokenProgram {
    /// Program name.
    pub name: String,
    /// Every problem, located in the config.
    pub errors: Vec<String>,
}

/// A program's object, read or compiled, and its fingerprint. Errors are
/// located at the program in the config file.
pub fn object_and_fingerprint(
    config: &Config,
    program: &Spanned<Program>,
    compiler: &Compiler,
) -> Result<(Vec<u8>, String), Vec<String>> {
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
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&object));
    let fingerprint = format!("{}|object sha256 {digest:x}", p.fingerprint());
    Ok((object, fingerprint))
}

/// Produces a program's object (reading or compiling it), checks it against the
/// config and builds its metric readers (each keeping decoded labels of at most
/// `cache_keys` keys): everything short of attaching it. Errors are located in
/// the config file.
pub fn set_up(
    config: &Config,
    program: &Spanned<Program>,
    compiler: &Compiler,
    cache_keys: usize,
) -> Result<SetUpProgram, Vec<String>> {
    let (object, fingerprint) = object_and_fingerprint(config, program, compiler)?;
    set_up_object(config, program, object, fingerprint, cache_keys)
}

/// [`set_up`] with the object in hand.
pub fn set_up_object(
    config: &Config,
    program: &Spanned<Program>,
    object: Vec<u8>,
    fingerprint: String,
    cache_keys: usize,
) -> Result<SetUpProgram, Vec<String>> {
    let prepared = PreparedProgram::prepare(config, program, object)
        .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    finish_set_up(config, program, prepared, fingerprint, cache_keys)
}

/// The rest of [`set_up_object`] once the object is checked against the
/// config: the program is refused if this kernel lacks a feature it cannot
/// run without, its metric readers are built, and the one object of a
/// shared program loaded.
pub fn finish_set_up(
    config: &Config,
    program: &Spanned<Program>,
    prepared: PreparedProgram,
    fingerprint: String,
    cache_keys: usize,
) -> Result<SetUpProgram, Vec<String>> {
    let p = &program.value;
    let refusals = prepared.refusals(config, program);
    if !refusals.is_empty() {
        return Err(refusals.iter().map(ToString::to_string).collect());
    }
    let metrics = ProgramMetrics::new(&prepared, cache_keys).map_err(|e| vec![e])?;
    let located = |e: &dyn std::fmt::Display| {
        vec![format!(
            "{}:{}: program {:?}: {e}",
            config.path.display(),
            program.referenced.line(),
            p.name
        )]
    };
    let shared = if prepared.is_shared() {
        let object = prepared.load().map_err(|e| located(&e))?;
        Some(Arc::new(object))
    } else {
        None
    };
    let pid_keyed = if prepared.is_pid_keyed() {
        let tables = metrics
            .readers()
            .filter_map(|m| Some((m.table.clone(), m.pid_key?)))
            .collect();
        Some(Arc::new(
            PidKeyedSlot::new(&prepared, tables).map_err(|e| located(&e))?,
        ))
    } else {
        None
    };
    Ok(SetUpProgram {
        fingerprint,
        prepared: Arc::new(prepared),
        metrics: Arc::new(metrics),
        shared,
        pid_keyed,
    })
}

/// Sets up every program of `config`. A program that fails is returned among
/// the broken ones, with its errors logged; the others run.
pub fn set_up_all(
    config: &Config,
    compiler: &Compiler,
    cache_keys: usize,
) -> (Vec<SetUpProgram>, Vec<BrokenProgram>) {
    let mut programs = Vec::new();
    let mut broken = Vec::new();
    for program in &config.programs {
        let name = program.value.name.clone();
        match set_up(config, program, compiler, cache_keys) {
            Ok(set_up) => {
                log_fallbacks(&set_up.prepared);
                programs.push(set_up)
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(program = %name, "{e}");
                }
                broken.push(BrokenProgram { name, errors });
            }
        }
    }
    (programs, broken)
}

/// Says, once per program set up to run, which fallbacks it runs with on
/// this kernel.
pub fn log_fallbacks(prepared: &PreparedProgram) {
    if !prepared.support.fallbacks.is_empty() {
        tracing::warn!(
            program = %prepared.name(),
            "degraded on this kernel: {}",
            prepared.support.fallbacks_text(crate::kernel::features())
        );
    }
}
