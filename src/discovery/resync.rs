//! The periodic `/proc` rescan: attaches programs to processes that started
//! since the last scan and drops the instances of processes that exited, so
//! their series leave `/metrics`.

use crate::exporter::Exporter;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts a thread that rescans every `interval` for as long as the process runs.
pub fn spawn_resync(exporter: Arc<Mutex<Exporter>>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("proc-resync".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            // Scan without the lock: scrapes wait only for the attach work itself.
            let processes = super::scan();
            let mut exporter = exporter
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            exporter.reconcile(&processes);
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the /proc rescan thread: {e}; processes are only found at startup"
        );
    }
}
