//! The processes the exporter knows of, kept between rescans.
//!
//! A periodic rescan that re-read every `/proc/PID` would cost about ten
//! syscalls per process (most of them kernel threads) every second, for
//! nothing when the process events already said what changed. With the table,
//! a routine rescan lists `/proc` and reads only the pids it has never seen;
//! forks, execs, renames and exits from the event stream update the entries
//! they name; a full rescan (periodically, or after lost events) reads them all.

use super::ProcessInfo;
use std::collections::{BTreeMap, BTreeSet};

/// What is known of one pid.
#[derive(Debug, Clone)]
struct Entry {
    /// The process, or `None` for a pid there is nothing to attach to: a kernel
    /// thread, a zombie, or a process an exit event reported gone.
    process: Option<ProcessInfo>,
    /// CLOCK_MONOTONIC ns when this entry was last written.
    updated_ns: u64,
}

/// Every pid of `/proc` as last seen, updated by rescans and process events.
#[derive(Debug, Default)]
pub struct ProcessTable {
    entries: BTreeMap<i32, Entry>,
}

impl ProcessTable {
    /// An empty table: the first rescan reads every process.
    pub fn new() -> ProcessTable {
        ProcessTable::default()
    }

    /// The pids with an entry (live, kernel thread or exited), so that a
    /// routine rescan reads only the others.
    pub fn known_pids(&self) -> BTreeSet<i32> {
        self.entries.keys().copied().collect()
    }

    /// An event read `process` (fork, exec or rename) at `now_ns`: it replaces
    /// whatever was known of its pid, and a rescan that began earlier keeps it.
    pub fn record(&mut self, process: ProcessInfo, now_ns: u64) {
        self.entries.insert(
            process.pid(),
            Entry {
                process: Some(process),
                updated_ns: now_ns,
            },
        );
    }

    /// An exit event for `pid` at `now_ns`. The entry stays, empty, until a
    /// listing of `/proc` no longer holds the pid, so that a rescan that listed
    /// it just before the exit does not bring the dead process back.
    pub fn exited(&mut self, pid: i32, now_ns: u64) {
        self.entries.insert(
            pid,
            Entry {
                process: None,
                updated_ns: now_ns,
            },
        );
    }

    /// Merges a rescan that began at `since_ns`, listed `listed` in `/proc` and
    /// read `read` (every listed pid for a full rescan, the unknown ones for a
    /// routine one). What an event wrote after `since_ns` is newer and wins; a
    /// pid no longer listed is forgotten unless an event wrote it meanwhile.
    pub fn merge(
        &mut self,
        read: BTreeMap<i32, Option<ProcessInfo>>,
        listed: &BTreeSet<i32>,
        since_ns: u64,
    ) {
        self.entries
            .retain(|pid, entry| listed.contains(pid) || entry.updated_ns > since_ns);
        for (pid, process) in read {
            let newer = self
                .entries
                .get(&pid)
                .is_some_and(|entry| entry.updated_ns > since_ns);
            if !newer {
                self.entries.insert(
                    pid,
                    Entry {
                        process,
                        updated_ns: since_ns,
                    },
                );
            }
        }
    }

    /// The live processes, in pid order. Borrowed, so that what a selector reads
    /// lazily (command line, cgroup, executable id) stays with the entry.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.entries
            .values()
            .filter_map(|entry| entry.process.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ProcessKey;
    use std::path::PathBuf;

    fn process(pid: i32, comm: &str) -> ProcessInfo {
        ProcessInfo::new(
            ProcessKey { pid, start_time: 1 },
            comm.into(),
            PathBuf::from(format!("/usr/bin/{comm}")),
            1,
        )
    }

    fn comms(table: &ProcessTable) -> Vec<(i32, String)> {
        table
            .processes()
            .map(|p| (p.pid(), p.comm.clone()))
            .collect()
    }

    fn set(pids: &[i32]) -> BTreeSet<i32> {
        pids.iter().copied().collect()
    }

    #[test]
    fn a_rescan_adds_what_it_read_and_forgets_pids_no_longer_listed() {
        let mut table = ProcessTable::new();
        let read = BTreeMap::from([(10, Some(process(10, "a"))), (11, None)]);
        table.merge(read, &set(&[10, 11]), 100);
        assert_eq!(comms(&table), [(10, "a".into())]);
        assert_eq!(table.known_pids(), set(&[10, 11]));
        // A routine rescan: 12 is new, 11 is gone, 10 is known and not re-read.
        table.merge(
            BTreeMap::from([(12, Some(process(12, "b")))]),
            &set(&[10, 12]),
            200,
        );
        assert_eq!(comms(&table), [(10, "a".into()), (12, "b".into())]);
        assert_eq!(table.known_pids(), set(&[10, 12]));
    }

    #[test]
    fn an_event_newer_than_the_rescan_wins() {
        let mut table = ProcessTable::new();
        table.merge(
            BTreeMap::from([(10, Some(process(10, "bash")))]),
            &set(&[10]),
            100,
        );
        // pid 10 execs python after a rescan began (at 300) and read it as bash.
        table.record(process(10, "python"), 350);
        table.merge(
            BTreeMap::from([(10, Some(process(10, "bash")))]),
            &set(&[10]),
            300,
        );
        assert_eq!(comms(&table), [(10, "python".into())]);
        // A later full rescan reads it again and replaces the entry.
        table.merge(
            BTreeMap::from([(10, Some(process(10, "python3")))]),
            &set(&[10]),
            400,
        );
        assert_eq!(comms(&table), [(10, "python3".into())]);
    }

    #[test]
    fn an_exit_is_not_undone_by_a_rescan_that_listed_the_pid_before_it() {
        let mut table = ProcessTable::new();
        table.record(process(20, "worker"), 100);
        table.exited(20, 250);
        table.merge(
            BTreeMap::from([(20, Some(process(20, "worker")))]),
            &set(&[20]),
            200,
        );
        assert!(comms(&table).is_empty());
        // Once /proc no longer lists it, the pid is forgotten, and a new
        // process with that pid is read afresh.
        table.merge(BTreeMap::new(), &set(&[]), 300);
        assert!(table.known_pids().is_empty());
        table.merge(
            BTreeMap::from([(20, Some(process(20, "reused")))]),
            &set(&[20]),
            400,
        );
        assert_eq!(comms(&table), [(20, "reused".into())]);
    }
}
