//! The periodic `/proc` rescan: attaches programs to processes that started
//! since the last scan and drops the instances of processes that exited, so
//! their series leave `/metrics`.
//!
//! While process events flow, a routine rescan only lists `/proc` and reads the
//! pids the exporter has never seen (see [`super::ProcessTable`]); a full one,
//! every `full_interval` or whenever events were lost or are unavailable,
//! reads every process again.

use super::process::list_pids;
use super::{monotonic_ns, ProcessInfo, ProcessSink};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which processes a rescan reads from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescan {
    /// Every process: the safety net for changes no event reported.
    Full,
    /// Only pids the exporter has not seen yet.
    NewPids,
}

/// What one pass over `/proc` found, read before it is handed to the state.
#[derive(Debug)]
pub struct ProcSnapshot {
    /// CLOCK_MONOTONIC ns before the listing: events applied later are newer.
    pub since_ns: u64,
    /// Every pid listed.
    pub listed: BTreeSet<i32>,
    /// The pids read (all for a full rescan), `None` for those with nothing to attach to.
    pub read: BTreeMap<i32, Option<ProcessInfo>>,
}

impl ProcSnapshot {
    /// Lists `/proc` and reads every pid not in `known`.
    pub fn take(known: &BTreeSet<i32>) -> ProcSnapshot {
        let since_ns = monotonic_ns();
        let listed = list_pids();
        let read = listed
            .iter()
            .filter(|pid| !known.contains(pid))
            .map(|&pid| (pid, ProcessInfo::read(pid)))
            .collect();
        ProcSnapshot {
            since_ns,
            listed,
            read,
        }
    }
}

/// Scans /proc and hands what it found to `sink`.
pub fn rescan(sink: &dyn ProcessSink, scope: Rescan) {
    let known = match scope {
        Rescan::Full => BTreeSet::new(),
        Rescan::NewPids => sink.known_pids(),
    };
    sink.rescanned(ProcSnapshot::take(&known));
}

/// Starts a thread that rescans every `interval` for as long as the process
/// runs: a full rescan every `full_interval`, and every time while
/// `events_live` is false (no process events to say what changed).
pub fn spawn_resync(
    sink: Arc<dyn ProcessSink>,
    interval: Duration,
    full_interval: Duration,
    events_live: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("proc-resync".into())
        .spawn(move || {
            let mut last_full = Instant::now();
            loop {
                std::thread::sleep(interval);
                let full =
                    !events_live.load(Ordering::Relaxed) || last_full.elapsed() >= full_interval;
                if full {
                    last_full = Instant::now();
                    rescan(sink.as_ref(), Rescan::Full);
                } else {
                    rescan(sink.as_ref(), Rescan::NewPids);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the /proc rescan thread: {e}; processes are only found at startup"
        );
    }
}
