//! Attaching programs to processes: one loaded instance per (program, process),
//! one shared instance attached to each process, or one instance per binary
//! attached for every process that runs it.
//!
//! [`PreparedProgram`] checks a program's object once against its config;
//! [`PreparedProgram::instantiate`] loads a fresh copy for one target,
//! resolves each probe among the files the target maps, and attaches.
//! Dropping an [`Instance`] detaches its links and frees its maps.

mod cpp_functions;
mod instance;
mod ld_so_cache;
mod libbpf_log;
mod library_search;
pub mod pid_keyed;
mod program;
mod rcu;
mod reaper;
mod resolution;
mod resolve;
pub mod sources;
mod value_layout;

pub use instance::{AttachFailure, AttachTarget, BpfProgramInfo, Instance, InstanceError};
pub use libbpf_log::install as install_libbpf_logger;
pub use program::{PreparedProgram, TableLayout};
pub use rcu::{expedited_rcu_available, ExpeditedRcu};
pub use reaper::Reaper;
pub use resolution::{resolve_probes, ProbeResolution};
pub use resolve::{Origin, ResolveError, Target};
pub use value_layout::{ValueLayout, ValueType};
