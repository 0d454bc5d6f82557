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

    /// Blocks for the next datagram and returns its process events. A
    /// datagram that is not from the kernel (another netlink socket, which
    /// needs CAP_NET_ADMIN to send to us) has none.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Vec<ProcEvent>> {
        let (sender, n) = self.receive(buf)?;
        Ok(events_from(sender, &buf[..n]))
    }

    /// Blocks for the next datagram: its sender's port id and its length.
    fn receive(&self, buf: &mut [u8]) -> io::Result<(u32, usize)> {
        // SAFETY: zeroed sockaddr_nl is a valid value.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: buf is writable for its length, from for from_len bytes.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((from.nl_pid, n as usize))
    }

    /// The socket's netlink port id (where a unicast to it goes).
    #[cfg(test)]
    fn port_id(&self) -> u32 {
        // SAFETY: zeroed sockaddr_nl is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: addr is writable for len bytes.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockname: {}", io::Error::last_os_error());
        addr.nl_pid
    }
}

/// The events of a datagram from `sender`: none unless the kernel (port 0) sent it.
fn events_from(sender: u32, data: &[u8]) -> Vec<ProcEvent> {
    if sender != 0 {
        return Vec::new();
    }
    parse_datagram(data)
}

/// The process events of one datagram from the process connector.
///
/// A datagram holds netlink messages (4-byte aligned); the kernel sends each
/// event as one `NLMSG_DONE` message holding a `cn_msg` addressed to
/// `CN_IDX_PROC`/`CN_VAL_PROC` whose payload is a `proc_event`. Only such
/// messages count, and only with the event's fields inside both the message
/// and the payload length the `cn_msg` declares; anything else (another
/// type or address, a length past the datagram's end) is skipped, and a
/// message header that cannot be right ends the datagram. Thread-level
/// events are dropped: each event is one process's. At most one event per
/// message, so at most one per 52 bytes.
pub fn parse_datagram(mut data: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        if let Some(event) = proc_event(&data[..len]) {
            out.extend(event);
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

/// The `proc_event` payload of one process connector message, if it is one.
fn proc_payload(message: &[u8]) -> Option<&[u8]> {
    // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32.
    let kind = u16::from_ne_bytes(message.get(4..6)?.try_into().ok()?);
    if i32::from(kind) != libc::NLMSG_DONE {
        return None;
    }
    // cn_msg: id.idx u32, id.val u32, seq u32, ack u32, len u16, flags u16.
    let cn = message.get(NLMSG_HDRLEN..NLMSG_HDRLEN + CN_MSG_LEN)?;
    if u32_at(cn, 0)? != CN_IDX_PROC || u32_at(cn, 4)? != CN_VAL_PROC {
        return None;
    }
    let payload_len = usize::from(u16::from_ne_bytes(cn.get(16..18)?.try_into().ok()?));
    let start = NLMSG_HDRLEN + CN_MSG_LEN;
    message.get(start..start + payload_len)
}

/// The process event of one message: `None` when it is no process
/// connector event, `Some(None)` for one that is not about a whole process
/// (a thread's, or a kind the exporter does not follow).
fn proc_event(message: &[u8]) -> Option<Option<ProcEvent>> {
    let event = proc_payload(message)?;
    // proc_event: what u32, cpu u32, timestamp_ns u64, then the event data.
    let what = u32_at(event, 0)?;
    let at_ns = u64_at(event, 8)?;
    let field = |i: usize| u32_at(event, 16 + 4 * i).map(|v| v as i32);
    Some(match what {
        // fork: parent_pid, parent_tgid, child_pid, child_tgid
        PROC_EVENT_FORK => {
            let (parent, child, tgid) = (field(1)?, field(2)?, field(3)?);
            (child == tgid).then_some(ProcEvent::Fork {
                pid: tgid,
                parent,
                at_ns,
            })
        }
        // exec: process_pid, process_tgid
        PROC_EVENT_EXEC => Some(ProcEvent::Exec {
            pid: field(1)?,
            at_ns,
        }),
        // comm: process_pid, process_tgid, comm[16]
        PROC_EVENT_COMM => {
            let (pid, tgid) = (field(0)?, field(1)?);
            (pid == tgid).then_some(ProcEvent::Comm { pid: tgid })
        }
        // exit: process_pid, process_tgid, ...: only the whole process
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (field(0)?, field(1)?);
            (pid == tgid).then_some(ProcEvent::Exit { pid: tgid })
        }
        _ => None,
    })
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
        let mut msg = Vec::new();
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&(event.len() as u16).to_ne_bytes());
        msg.extend_from_slice(&[0; 2]);
        msg.extend_from_slice(&event);
        msg
    }

    fn parse(data: &[u8]) -> Vec<ProcEvent> {
        parse_datagram(data)
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
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
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
    fn only_process_connector_messages_count() {
        let exec = || message(PROC_EVENT_EXEC, &[30, 30]);
        let event = ProcEvent::Exec {
            pid: 30,
            at_ns: 1234,
        };
        assert_eq!(parse(&exec()), [event]);
        let changed = |at: usize, bytes: &[u8]| {
            let mut m = exec();
            m[at..at + bytes.len()].copy_from_slice(bytes);
            parse(&m)
        };
        // Another message type (NLMSG_NOOP), another connector address.
        assert_eq!(changed(4, &1u16.to_ne_bytes()), []);
        assert_eq!(changed(16, &2u32.to_ne_bytes()), []);
        assert_eq!(changed(20, &0u32.to_ne_bytes()), []);
        // A payload declared longer than the message, or too short for the
        // event's fields.
        assert_eq!(changed(32, &25u16.to_ne_bytes()), []);
        assert_eq!(changed(32, &20u16.to_ne_bytes()), []);
        assert_eq!(changed(32, &24u16.to_ne_bytes()), [event]);
        // A skipped message does not hide the next one.
        let mut two = exec();
        two[16..20].copy_from_slice(&7u32.to_ne_bytes());
        two.extend(exec());
        assert_eq!(parse(&two), [event]);
        // A length past the datagram's end ends it.
        let mut cut = exec();
        cut.truncate(cut.len() - 1);
        assert_eq!(parse(&cut), []);
    }

    /// A well-formed event that another socket sent (root may send to any
    /// netlink socket) is not taken for the kernel's.
    #[test]
    fn events_come_from_the_kernel_only() {
        let connector = match ProcConnector::open() {
            Ok(connector) => connector,
            Err(e) => {
                crate::testing::require("the process connector", Err(e.to_string()));
                return;
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
        assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
        let forger = unsafe { OwnedFd::from_raw_fd(raw) };
        let forged_pid = 0x7fff_fff0;
        let forged = message(PROC_EVENT_EXEC, &[forged_pid, forged_pid]);
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        to.nl_pid = connector.port_id();
        // SAFETY: forged and to are valid for their lengths.
        let sent = unsafe {
            libc::sendto(
                forger.as_raw_fd(),
                forged.as_ptr().cast(),
                forged.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        assert!(sent >= 0, "sendto: {}", io::Error::last_os_error());
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the forged datagram never arrived"
            );
            let (sender, n) = connector.receive(&mut buf).unwrap();
            if sender == 0 {
                continue;
            }
            let data = &buf[..n];
            assert_eq!(data, forged.as_slice());
            assert_eq!(
                parse(data),
                [ProcEvent::Exec {
                    pid: forged_pid,
                    at_ns: 1234
                }]
            );
            assert_eq!(events_from(sender, data), []);
            break;
        }
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
