//! Finding the processes a program attaches to: a `/proc` scan, the
//! process facts selectors look at, and the selectors themselves.

mod process;
mod resync;
mod selector;
mod watcher;

pub use process::{
    container_id, mapped_files, monotonic_ns, scan, FileId, MappedFile, ProcessInfo, ProcessKey,
};
pub use resync::spawn_resync;
pub use selector::Selector;
pub use watcher::{spawn_watcher, ProcConnector, ProcEvent};
