//! The periodic `/proc` rescan: attaches programs to processes that started
//! since the last scan and drops the instances of processes that exited, so
//! their series leave `/metrics`.

use crate::exporter::Exporter;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Scans /proc (without holding the lock) and reconciles the exporter with it.
pub fn rescan(exporter: &Mutex<Exporter>) {
    let processes = super::scan();
    crate::exporter::lock(exporter).reconcile(&processes);
}

/// Starts a thread that rescans every `interval` for as long as the process runs.
pub fn spawn_resync(exporter: Arc<Mutex<Exporter>>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("proc-resync".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            rescan(&exporter);
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the /proc rescan thread: {e}; processes are only found at startup"
        );
    }
}
