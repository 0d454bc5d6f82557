//! Program setup: everything between a config entry and a program ready to be
//! attached (its object read or compiled, checked against the config, its
//! metric readers built, and the one object of a shared program loaded).

use crate::attach::PreparedProgram;
use crate::compile::clang::Compiler;
use crate::config::{Config, ConfigError, Program};
use crate::metrics::ProgramMetrics;
use serde_saphyr::Spanned;
use std::sync::Arc;

/// A program ready to attach, and the readers of its metrics.
#[derive(Debug)]
pub struct SetUpProgram {
    /// The checked program.
    pub prepared: Arc<PreparedProgram>,
    /// Decoders and layouts of its metrics.
    pub metrics: Arc<ProgramMetrics>,
    /// The one loaded object of an `instances: shared` program.
    pub shared: Option<Arc<libbpf_rs::Object>>,
}

/// A program that could not be set up (unreadable object, bad layout).
#[derive(Debug, Clone)]
pub struct BrokenProgram {
    /// Program name.
    pub name: String,
    /// Every problem, located in the config.
    pub errors: Vec<String>,
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
    let p = &program.value;
    let located = |message: String| {
        ConfigError::new(
            &config.path,
            program.referenced.line(),
            program.referenced.column(),
            message,
        )
        .to_string()
    };
    let (object, cached) = crate::compile::object_bytes(config, p, compiler)
        .map_err(|e| vec![located(e.to_string())])?;
    if p.code.is_some() {
        tracing::info!(program = %p.name, cached, "compiled inline code");
    }
    let prepared = PreparedProgram::prepare(config, program, object)
        .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let metrics = ProgramMetrics::new(&prepared, cache_keys).map_err(|e| vec![e])?;
    let shared = if prepared.is_shared() {
        let object = prepared.load().map_err(|e| {
            vec![format!(
                "{}:{}: program {:?}: {e}",
                config.path.display(),
                program.referenced.line(),
                p.name
            )]
        })?;
        Some(Arc::new(object))
    } else {
        None
    };
    Ok(SetUpProgram {
        prepared: Arc::new(prepared),
        metrics: Arc::new(metrics),
        shared,
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
            Ok(set_up) => programs.push(set_up),
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
