//! Finding the processes a program attaches to: a `/proc` scan, the
//! process facts selectors look at, and the selectors themselves.

mod process;
mod resync;
mod selector;
mod table;
mod watcher;

pub use process::{
    container_id, mapped_files, monotonic_ns, FileId, MappedFile, ProcessInfo, ProcessKey,
};
pub use resync::{spawn_resync, ProcSnapshot};
pub use selector::Selector;
pub use table::ProcessTable;
pub use watcher::{spawn_watcher, ProcConnector, ProcEvent};
