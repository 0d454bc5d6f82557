//! Finding the processes a program attaches to: a `/proc` scan, the
//! process facts selectors look at, and the selectors themselves.

mod process;
mod resync;
mod selector;

pub use process::{mapped_files, scan, ProcessInfo, ProcessKey};
pub use resync::spawn_resync;
pub use selector::Selector;
