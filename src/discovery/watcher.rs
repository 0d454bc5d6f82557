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
use std::time::Duration;

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

/// Why process events are unavailable. Each message says what the exporter
/// loses (attaching within milliseconds of an exec) and what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The kernel refused the subscription (EPERM): this kernel wants
    /// CAP_NET_ADMIN for it, and the exporter lacks it.
    #[error("the kernel refused to subscribe the exporter to process events (EPERM at {step}): this kernel's process connector requires CAP_NET_ADMIN, which the exporter lacks: grant it{caveat}")]
    NeedsNetAdmin {
        /// Where the refusal came: `bind` or the subscription's acknowledgement.
        step: &'static str,
        /// Why granting it may not be enough here (empty if nothing is known).
        caveat: String,
    },
    /// The exporter is in a network namespace of its own: the connector
    /// serves only the host's.
    #[error("the process connector answers only in the host's network namespace, and the exporter runs in one of its own (a container without hostNetwork)")]
    OtherNetworkNamespace,
    /// The kernel took the subscription but never acknowledged it: it ignores
    /// subscriptions from outside the initial user and PID namespaces (and,
    /// on some kernels, unprivileged ones), so no events would come.
    #[error("the kernel did not acknowledge the subscription to process events within 1 s{hint}")]
    Unacknowledged {
        /// What probably caused it.
        hint: String,
    },
    /// Any other failure.
    #[error("{step}: {error}")]
    Io {
        /// The step that failed.
        step: &'static str,
        /// What the kernel said.
        error: io::Error,
    },
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

impl ConnectorError {
    /// A refusal for want of CAP_NET_ADMIN at `step`, with what else stands
    /// in the way where it can be told.
    fn needs_net_admin(step: &'static str) -> ConnectorError {
        let caveat = if in_initial_namespace("pid") {
            String::new()
        } else {
            " (though even with it, the kernel ignores subscriptions from outside the host's PID namespace: a container without hostPID, or a pod sharing its process namespace, gets no process events)".to_string()
        };
        ConnectorError::NeedsNetAdmin { step, caveat }
    }
}

/// An acknowledgement of our subscription: the kernel answers a control
/// message whose `ack` field is N with one whose `ack` is N + 1 (and whose
/// `seq` is N), carrying an errno, 0 for success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    ack: u32,
    err: u32,
}

/// The acknowledgements in one datagram (`PROC_EVENT_NONE` messages).
fn parse_acks(mut data: &[u8]) -> Vec<Ack> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let message = &data[NLMSG_HDRLEN..len];
        // cn_msg: idx, val, seq, ack, len (u16), flags (u16); then proc_event:
        // what, cpu, timestamp (u64), then the ack's err.
        if let (Some(ack), Some(0), Some(err)) = (
            u32_at(message, 12),
            u32_at(message, CN_MSG_LEN),
            u32_at(message, CN_MSG_LEN + 16),
        ) {
            out.push(Ack { ack, err });
        }
        let advance = len.div_ceil(4) * 4;
        if advance >= data.len() {
            break;
        }
        data = &data[advance..];
    }
    out
}

impl ProcConnector {
    /// Opens the connector, subscribes to process events, and waits (1 s at
    /// most) for the kernel to acknowledge the subscription: only then do
    /// events flow. The kernel may want CAP_NET_ADMIN for it (mainline checks
    /// it; some builds did not), and serves only the initial network, user
    /// and PID namespaces.
    pub fn open() -> Result<ProcConnector, ConnectorError> {
        let io = |step: &'static str| {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EPERM) {
                ConnectorError::needs_net_admin(step)
            } else {
                ConnectorError::Io { step, error }
            }
        };
        // SAFETY: plain socket creation; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(io("socket"));
        }
        // SAFETY: the kernel just returned this descriptor to us alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
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
            return Err(io("bind"));
        }
        // A token of our own, so that another listener's acknowledgement
        // (they are multicast to every listener) is not taken for ours.
        let token = std::process::id().wrapping_mul(2654435761) | 1;
        let message = listen_message(token);
        // SAFETY: message is a valid buffer of message.len() bytes.
        let sent = unsafe { libc::send(fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            return Err(if error.raw_os_error() == Some(libc::ECONNREFUSED) {
                ConnectorError::OtherNetworkNamespace
            } else if error.raw_os_error() == Some(libc::EPERM) {
                ConnectorError::needs_net_admin("send")
            } else {
                ConnectorError::Io {
                    step: "send",
                    error,
                }
            });
        }
        let connector = ProcConnector { fd };
        match connector.await_ack(token.wrapping_add(1), Duration::from_secs(1)) {
            Ok(Some(0)) => Ok(connector),
            Ok(Some(err)) if err == libc::EPERM as u32 => Err(ConnectorError::needs_net_admin(
                "the subscription's acknowledgement",
            )),
            Ok(Some(err)) => Err(ConnectorError::Io {
                step: "the subscription's acknowledgement",
                error: io::Error::from_raw_os_error(err as i32),
            }),
            Ok(None) => Err(ConnectorError::Unacknowledged {
                hint: unacknowledged_hint(),
            }),
            Err(error) => Err(ConnectorError::Io {
                step: "recv",
                error,
            }),
        }
    }

    /// Reads until the acknowledgement numbered `ack` comes (its errno), or
    /// `within` passes (`None`). Events read meanwhile are dropped: nothing is
    /// attached from them yet, and the rescans find those processes.
    fn await_ack(&self, ack: u32, within: Duration) -> io::Result<Option<u32>> {
        let deadline = std::time::Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().max(1) as i32) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: buf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    continue;
                }
                // ENOBUFS: events overflowed the socket; the ack may follow.
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    continue;
                }
                return Err(e);
            }
            if let Some(found) = parse_acks(&buf[..n as usize])
                .into_iter()
                .find(|a| a.ack == ack)
            {
                return Ok(Some(found.err));
            }
        }
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

/// Whether this process is in the kernel's initial namespace of `kind`
/// (`pid` or `user`): the inode numbers of those two are fixed
/// (`PROC_PID_INIT_INO`, `PROC_USER_INIT_INO`), whatever `/proc` is mounted.
fn in_initial_namespace(kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let initial = match kind {
        "pid" => 0xEFFF_FFFC,
        _ => 0xEFFF_FFFD,
    };
    std::fs::metadata(format!("/proc/self/ns/{kind}")).map_or(true, |m| m.ino() == initial)
}

/// What probably kept the kernel from acknowledging the subscription.
fn unacknowledged_hint() -> String {
    if !in_initial_namespace("pid") {
        "; the kernel ignores subscriptions from outside the host's PID namespace (a container without hostPID, or a pod sharing its process namespace)".to_string()
    } else if !crate::privileges::effective_has(crate::privileges::CAP_NET_ADMIN) {
        "; the exporter lacks CAP_NET_ADMIN, which kernels checking the subscription require: grant it".to_string()
    } else if !in_initial_namespace("user") {
        "; the kernel ignores subscriptions from outside the host's user namespace".to_string()
    } else {
        String::new()
    }
}

/// The netlink message subscribing to process events: nlmsghdr + cn_msg
/// (whose `ack` field carries `token`) + the LISTEN op.
fn listen_message(token: u32) -> Vec<u8> {
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
    msg.extend_from_slice(&token.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // payload len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    msg
}

/// Subscribes to process events and starts the thread handing them to
/// `sink`; or says why events are unavailable. `live` is true for as long as
/// events flow: while it is, routine rescans read only new pids.
pub fn spawn_watcher(
    sink: Arc<dyn ProcessSink>,
    live: Arc<AtomicBool>,
) -> Result<(), ConnectorError> {
    let connector = ProcConnector::open()?;
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
    spawned.map(|_| ()).map_err(|error| {
        live.store(false, Ordering::Relaxed);
        ConnectorError::Io {
            step: "starting the process event thread",
            error,
        }
    })
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

    /// An acknowledgement as the kernel sends it: cn_msg with `ack`, then a
    /// PROC_EVENT_NONE event carrying `err`.
    fn ack_message(ack: u32, err: u32) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDRLEN];
        for word in [CN_IDX_PROC, CN_VAL_PROC, ack - 1, ack] {
            msg.extend_from_slice(&word.to_ne_bytes());
        }
        msg.extend_from_slice(&24u16.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // what: PROC_EVENT_NONE
        msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // cpu
        msg.extend_from_slice(&1234u64.to_ne_bytes());
        msg.extend_from_slice(&err.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn acknowledgements_are_told_apart_from_events_and_from_each_other() {
        let mut datagram = message(PROC_EVENT_EXEC, &[30, 30]);
        datagram.extend(ack_message(8, 1));
        datagram.extend(ack_message(42, 0));
        assert_eq!(
            parse_acks(&datagram),
            [Ack { ack: 8, err: 1 }, Ack { ack: 42, err: 0 }]
        );
        // Acknowledgements are not events, and events are not acknowledgements.
        assert_eq!(parse(&ack_message(42, 0)), []);
        assert_eq!(
            parse_acks(&message(PROC_EVENT_EXIT, &[40, 40, 0, 17, 1, 1])),
            []
        );
        // Truncated: nothing, no panic.
        let ack = ack_message(42, 0);
        for cut in 0..ack.len() {
            assert_eq!(parse_acks(&ack[..cut]), [], "cut at {cut}");
        }
    }

    #[test]
    fn the_subscription_carries_its_token_where_the_kernel_reads_it() {
        let msg = listen_message(0xabcd);
        assert_eq!(u32_at(&msg, 0), Some(msg.len() as u32));
        assert_eq!(u32_at(&msg, NLMSG_HDRLEN + 12), Some(0xabcd));
        assert_eq!(
            u32_at(&msg, NLMSG_HDRLEN + CN_MSG_LEN),
            Some(PROC_CN_MCAST_LISTEN)
        );
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
