//! Finding the processes a program attaches to: a `/proc` scan, the
//! process facts selectors look at, and the selectors themselves.

mod process;
mod resync;
mod selector;
mod table;
mod watcher;

pub use process::{
    container_id, environment_variable, mapped_files, monotonic_ns, FileId, MappedFile,
    ProcessInfo, ProcessKey,
};
pub use resync::{spawn_resync, ProcSnapshot};
pub use selector::{
    AlternativeVerdict, CommandLines, ExclusionVerdict, Explanation, FieldVerdict, Line,
    ProcessFacts, Selector,
};
pub use table::ProcessTable;
pub use watcher::{parse_datagram, spawn_watcher, ProcConnector, ProcEvent};

/// Whoever owns the state discovery feeds: process events as they come, and
/// what each `/proc` rescan found.
pub trait ProcessSink: Send + Sync {
    /// A process replaced its image (exec), or renamed itself (`event_ns: None`).
    fn process_execed(&self, process: &ProcessInfo, event_ns: Option<u64>);
    /// A new process (a fork that still runs its parent's image).
    fn process_started(&self, process: &ProcessInfo, event_ns: Option<u64>);
    /// A process exited.
    fn process_exited(&self, pid: i32);
    /// What a rescan of `/proc` found.
    fn rescanned(&self, snapshot: ProcSnapshot);
    /// The pids known so far: a routine rescan reads only the others.
    fn known_pids(&self) -> std::collections::BTreeSet<i32>;
}
