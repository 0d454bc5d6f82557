//! Process events as they happen, from the kernel's netlink process connector:
//! forks and execs attach within milliseconds, exits drop instances at once.
//! The periodic `/proc` rescan stays as the safety net (lost events, or a PID
//! namespace where the connector's global pids mean nothing to us).

use super::resync::Rescan;
use crate::discovery::{ProcessInfo, ProcessSink};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process-level event (thread events are filtered out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread); its image is a copy of the parent's.
    Fork {
        /// The child's tgid.
        pid: i32,
        /// The parent's tgid.
        parent: i32,
        /// CLOCK_MONOTONIC ns of the event.
        at_ns: u64,
    },
    /// A process replaced its image.
    Exec {
        /// tgid.
        pid: i32,
        /// CLOCK_MONOTONIC ns of the event.
        at_ns: u64,
    },
    /// A process renamed itself (comm changed): judged again.
    Comm {
        /// tgid.
        pid: i32,
    },
    /// A process exited.
    Exit {
        /// tgid.
        pid: i32,
    },
}

/// A subscribed process connector socket.
pub struct ProcConnector {
    fd: OwnedFd,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

impl ProcConnector {
    /// Opens the connector and subscribes to process events (needs CAP_NET_ADMIN
    /// and the initial network namespace).
    pub fn open() -> io::Result<ProcConnector> {
        // SAFETY: plain socket creation; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: addr is a valid sockaddr_nl of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // nlmsghdr + cn_msg + the LISTEN op.
        let len = NLMSG_HDRLEN + CN_MSG_LEN + 4;
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // payload len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // SAFETY: msg is a valid buffer of msg.len() bytes.
        let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ProcConnector { fd })
    }

    /// Blocks for the next datagram and returns its process events.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Vec<ProcEvent>> {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(parse(&buf[..n as usize]))
    }
}

/// Parses the netlink messages of one datagram.
fn parse(mut data: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let event = &data[NLMSG_HDRLEN + CN_MSG_LEN.min(len - NLMSG_HDRLEN)..len];
        // proc_event: what u32, cpu u32, timestamp_ns u64, then the event data.
        if let (Some(what), Some(at_ns)) = (u32_at(event, 0), u64_at(event, 8)) {
            let d = 16;
            let field = |i: usize| u32_at(event, d + 4 * i).map(|v| v as i32);
            match what {
                // fork: parent_pid, parent_tgid, child_pid, child_tgid
                PROC_EVENT_FORK => {
                    if let (Some(child), Some(tgid)) = (field(2), field(3)) {
                        if child == tgid {
                            out.push(ProcEvent::Fork {
                                pid: tgid,
                                parent: field(1).unwrap_or(0),
                                at_ns,
                            });
                        }
                    }
                }
                // exec: process_pid, process_tgid
                PROC_EVENT_EXEC => {
                    if let Some(tgid) = field(1) {
                        out.push(ProcEvent::Exec { pid: tgid, at_ns });
                    }
                }
                PROC_EVENT_COMM => {
                    if let (Some(pid), Some(tgid)) = (field(0), field(1)) {
                        if pid == tgid {
                            out.push(ProcEvent::Comm { pid: tgid });
                        }
                    }
                }
                // exit: process_pid, process_tgid, ...: only the whole process
                PROC_EVENT_EXIT => {
                    if let (Some(pid), Some(tgid)) = (field(0), field(1)) {
                        if pid == tgid {
                            out.push(ProcEvent::Exit { pid: tgid });
                        }
                    }
                }
                _ => {}
            }
        }
        // Messages are 4-byte aligned.
        let advance = len.div_ceil(4) * 4;
        if advance >= data.len() {
            break;
        }
        data = &data[advance..];
    }
    out
}

/// Whether pids from the kernel (initial PID namespace) are our pids.
fn in_initial_pid_namespace() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .map(|l| l.split_whitespace().count() == 2)
        })
        .unwrap_or(true)
}

/// Starts the event thread; returns false (and logs why) when the connector is
/// unavailable. `live` is true for as long as events flow: while it is, routine
/// rescans read only new pids.
pub fn spawn_watcher(sink: Arc<dyn ProcessSink>, live: Arc<AtomicBool>) -> bool {
    let connector = match ProcConnector::open() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("process events unavailable ({e}): new processes are found by the periodic /proc rescan only");
            return false;
        }
    };
    let direct = in_initial_pid_namespace();
    if !direct {
        tracing::info!("in a child PID namespace: process events trigger a /proc rescan instead of naming pids");
    }
    live.store(true, Ordering::Relaxed);
    let thread_live = live.clone();
    let spawned = std::thread::Builder::new()
        .name("proc-events".into())
        .spawn(move || {
            let live = thread_live;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let events = match connector.recv(&mut buf) {
                    Ok(events) => events,
                    // ENOBUFS: events were dropped; the rescan below catches up.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        super::resync::rescan(sink.as_ref(), Rescan::Full);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!("process events stopped: {e}; relying on the /proc rescan");
                        live.store(false, Ordering::Relaxed);
                        return;
                    }
                };
                if events.is_empty() {
                    continue;
                }
                if !direct {
                    super::resync::rescan(sink.as_ref(), Rescan::Full);
                    continue;
                }
                let me = super::process::own_pid();
                for event in events {
                    match event {
                        ProcEvent::Exec { pid, at_ns } if pid != me => {
                            if let Some(process) = ProcessInfo::read(pid) {
                                sink.process_execed(&process, Some(at_ns));
                            }
                        }
                        ProcEvent::Fork { pid, parent, at_ns } if pid != me => {
                            // A child that no longer runs its parent's image is exec'ing
                            // (or did): its exec event attaches it. Attaching here too
                            // could catch it mid-exec, and the exec would replace that
                            // instance, losing what it counted meanwhile.
                            let parent_exe = std::fs::read_link(format!("/proc/{parent}/exe")).ok();
                            if let Some(process) = ProcessInfo::read(pid)
                                .filter(|p| Some(&p.exe) == parent_exe.as_ref())
                            {
                                sink.process_started(&process, Some(at_ns));
                            }
                        }
                        ProcEvent::Comm { pid } if pid != me => {
                            if let Some(process) = ProcessInfo::read(pid) {
                                sink.process_execed(&process, None);
                            }
                        }
                        ProcEvent::Exit { pid } => sink.process_exited(pid),
                        _ => {}
                    }
                }
            }
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            live.store(false, Ordering::Relaxed);
            tracing::error!("cannot start the process event thread: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, fields: &[i32]) -> Vec<u8> {
        let mut event = Vec::new();
        event.extend_from_slice(&what.to_ne_bytes());
        event.extend_from_slice(&0u32.to_ne_bytes());
        event.extend_from_slice(&1234u64.to_ne_bytes());
        for f in fields {
            event.extend_from_slice(&f.to_ne_bytes());
        }
        let len = NLMSG_HDRLEN + CN_MSG_LEN + event.len();
        let mut msg = vec![0u8; NLMSG_HDRLEN + CN_MSG_LEN];
        msg[..4].copy_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&event);
        msg
    }

    #[test]
    fn parses_process_events_and_skips_threads() {
        assert_eq!(
            parse(&message(PROC_EVENT_FORK, &[10, 10, 20, 20])),
            [ProcEvent::Fork {
                pid: 20,
                parent: 10,
                at_ns: 1234
            }]
        );
        assert_eq!(parse(&message(PROC_EVENT_FORK, &[10, 10, 21, 20])), []);
        assert_eq!(
            parse(&message(PROC_EVENT_EXEC, &[30, 30])),
            [ProcEvent::Exec {
                pid: 30,
                at_ns: 1234
            }]
        );
        assert_eq!(
            parse(&message(PROC_EVENT_EXIT, &[40, 40, 0, 17, 1, 1])),
            [ProcEvent::Exit { pid: 40 }]
        );
        assert_eq!(parse(&message(PROC_EVENT_EXIT, &[41, 40, 0, 17, 1, 1])), []);
        assert_eq!(parse(&message(0x4, &[1, 1, 0, 0])), []);
        let mut two = message(PROC_EVENT_EXEC, &[30, 30]);
        two.extend(message(PROC_EVENT_EXIT, &[30, 30, 0, 0, 1, 1]));
        assert_eq!(
            parse(&two),
            [
                ProcEvent::Exec {
                    pid: 30,
                    at_ns: 1234
                },
                ProcEvent::Exit { pid: 30 }
            ]
        );
        assert_eq!(parse(&[1, 2, 3]), []);
    }

    #[test]
    fn the_connector_reports_a_child_we_start() {
        let connector = match ProcConnector::open() {
            Ok(connector) => connector,
            Err(e) => {
                crate::testing::require("the process connector", Err(e.to_string()));
                return;
            }
        };
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut forked, mut execed, mut exited) = (false, false, false);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut child = child;
        child.wait().unwrap();
        while !(forked && execed && exited) && std::time::Instant::now() < deadline {
            for event in connector.recv(&mut buf).unwrap() {
                match event {
                    ProcEvent::Fork { pid: p, .. } if p == pid => forked = true,
                    ProcEvent::Exec { pid: p, .. } if p == pid => execed = true,
                    ProcEvent::Exit { pid: p } if p == pid => exited = true,
                    _ => {}
                }
            }
        }
        assert!(
            forked && execed && exited,
            "fork {forked} exec {execed} exit {exited}"
        );
    }
}
