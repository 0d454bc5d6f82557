//! The process connector's datagrams (`parse_datagram`, the parser of the
//! netlink messages the kernel sends on every fork, exec, comm change and
//! exit): valid messages of every kind, one or several to a datagram, with
//! their fields set to values that break length arithmetic, bits flipped,
//! cut short and spliced together, and random bytes. It never panics, gives
//! at most one event per 52 bytes (the smallest message that holds one),
//! and gives exactly the events that a reference decoder, written here from
//! the kernel's layout (`<linux/netlink.h>`, `<linux/connector.h>`,
//! `<linux/cn_proc.h>`), finds in the well-formed messages: none from a
//! message of another type or address, or whose declared lengths do not
//! hold its fields.

use crate::engine::{self, Behaviour, Rng, Target};
use userspace_exporter::discovery::{parse_datagram, ProcEvent};

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// Where the `proc_event` starts in a message.
const PAYLOAD: usize = NLMSG_HDRLEN + CN_MSG_LEN;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;

const FORK: u32 = 0x1;
const EXEC: u32 = 0x2;
const UID: u32 = 0x4;
const SID: u32 = 0x80;
const PTRACE: u32 = 0x100;
const COMM: u32 = 0x200;
const COREDUMP: u32 = 0x4000_0000;
const EXIT: u32 = 0x8000_0000;
const WHATS: &[u32] = &[0, FORK, EXEC, UID, SID, PTRACE, COMM, COREDUMP, EXIT];

/// The size of the kernel's `struct proc_event` (16 bytes of header, the
/// largest event is the exit event's 24 bytes).
const PROC_EVENT_LEN: usize = 40;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The reference: the messages of a datagram as `NLMSG_OK`/`NLMSG_NEXT`
/// walk them, each with its event when it is a well-formed process
/// connector message about a whole process.
fn reference(datagram: &[u8]) -> (usize, usize, Vec<ProcEvent>) {
    let (mut messages, mut well_formed, mut events) = (0, 0, Vec::new());
    let mut rest = datagram;
    // NLMSG_OK: room for a header, and a length from the header to the end.
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0).unwrap() as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        messages += 1;
        let message = &rest[..len];
        let addressed = u16_at(message, 4) == Some(NLMSG_DONE)
            && u32_at(message, 16) == Some(CN_IDX_PROC)
            && u32_at(message, 20) == Some(CN_VAL_PROC);
        // cn_msg.len: the payload's length, inside the message.
        let payload = u16_at(message, 32)
            .map(usize::from)
            .and_then(|n| message.get(PAYLOAD..PAYLOAD + n));
        if let (true, Some(event)) = (addressed, payload) {
            // what, cpu, timestamp, then the event's own fields.
            let what = u32_at(event, 0);
            let at_ns = u64_at(event, 8);
            let field = |i: usize| u32_at(event, 16 + 4 * i).map(|v| v as i32);
            // How many fields each event the exporter follows must hold.
            let needs = match what {
                Some(FORK) => Some(4),
                Some(EXEC | COMM | EXIT) => Some(2),
                // Not followed.
                _ => None,
            };
            let holds = needs.is_some_and(|n| field(n - 1).is_some());
            if let (Some(at_ns), true) = (at_ns, holds) {
                well_formed += 1;
                let f = |i| field(i).unwrap();
                match what.unwrap() {
                    FORK if f(2) == f(3) => events.push(ProcEvent::Fork {
                        pid: f(3),
                        parent: f(1),
                        at_ns,
                    }),
                    EXEC => events.push(ProcEvent::Exec { pid: f(1), at_ns }),
                    COMM if f(0) == f(1) => events.push(ProcEvent::Comm { pid: f(1) }),
                    EXIT if f(0) == f(1) => events.push(ProcEvent::Exit { pid: f(1) }),
                    _ => {}
                }
            }
        }
        // NLMSG_NEXT: on to the next 4-byte boundary.
        let next = len.div_ceil(4) * 4;
        if next >= rest.len() {
            break;
        }
        rest = &rest[next..];
    }
    (messages, well_formed, events)
}

/// One message as the kernel builds it: `what` with `fields`.
fn message(what: u32, fields: &[u32], at_ns: u64) -> Vec<u8> {
    let mut event = Vec::with_capacity(PROC_EVENT_LEN);
    event.extend_from_slice(&what.to_ne_bytes());
    event.extend_from_slice(&1u32.to_ne_bytes()); // cpu
    event.extend_from_slice(&at_ns.to_ne_bytes());
    for f in fields {
        event.extend_from_slice(&f.to_ne_bytes());
    }
    event.resize(PROC_EVENT_LEN, 0);
    let mut m = Vec::with_capacity(PAYLOAD + event.len());
    m.extend_from_slice(&((PAYLOAD + event.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&7u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&7u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&(event.len() as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&event);
    m
}

/// A pid: small, of a thread, or odd.
fn pid(rng: &mut Rng, near: u32) -> u32 {
    match rng.below(6) {
        0 => near,
        1 => near.wrapping_add(1),
        2 => 0,
        3 => u32::MAX,
        4 => 1 << 31,
        _ => rng.range(1, 4_194_304) as u32,
    }
}

/// A valid message of a random kind, as the kernel would send it.
fn valid_message(rng: &mut Rng) -> Vec<u8> {
    let what = *rng.pick(WHATS);
    let a = rng.range(1, 100_000) as u32;
    let b = pid(rng, a);
    let c = pid(rng, b);
    let d = pid(rng, c);
    let fields = [a, b, c, d, pid(rng, a), pid(rng, a)];
    message(what, &fields, rng.next_u64())
}

/// The offsets of the fields that decide a message's fate.
const FIELDS: &[(usize, usize)] = &[
    (0, 4),  // nlmsg_len
    (4, 2),  // nlmsg_type
    (16, 4), // cn_msg idx
    (20, 4), // cn_msg val
    (32, 2), // cn_msg len
    (36, 4), // what
    (52, 4), // first field
    (56, 4),
    (60, 4),
    (64, 4),
];

/// A value for a field of `width` bytes in a datagram of `len` bytes.
fn interesting(rng: &mut Rng, len: usize, width: usize) -> u64 {
    let v: u64 = match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => *rng.pick(&[15u64, 16, 17, 35, 36, 37, 51, 52, 53, 60, 76]),
        3 => (len as u64)
            .wrapping_add(rng.below(9) as u64)
            .wrapping_sub(4),
        4 => u64::from(*rng.pick(&[NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, 0x10])),
        5 => u64::from(*rng.pick(WHATS)),
        6 => u64::MAX,
        7 => 0x8000,
        8 => (PROC_EVENT_LEN as u64)
            .wrapping_add(rng.below(9) as u64)
            .wrapping_sub(4),
        _ => rng.next_u64(),
    };
    if width == 8 {
        v
    } else {
        v & ((1u64 << (8 * width)) - 1)
    }
}

/// The starts of the messages of a datagram (where the walk finds them, and
/// every 4-byte boundary a broken length would miss).
fn message_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= data.len() {
        starts.push(at);
        let len = u32_at(data, at).unwrap() as usize;
        if len < NLMSG_HDRLEN {
            break;
        }
        at += len.div_ceil(4) * 4;
    }
    if starts.is_empty() {
        starts.push(0);
    }
    starts
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    match rng.below(8) {
        // One field of one message set to an odd value.
        0..=2 => {
            let starts = message_starts(data);
            let start = *rng.pick(&starts);
            let (offset, width) = *rng.pick(FIELDS);
            let value = interesting(rng, data.len(), width);
            let at = start + offset;
            for (i, b) in value.to_ne_bytes().iter().take(width).enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        3 => {
            if !data.is_empty() {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
        }
        // Cut short, or grown with junk.
        4 => {
            let keep = rng.below(data.len() + 1);
            data.truncate(keep);
        }
        5 => {
            let extra = rng.small(64);
            data.extend(rng.bytes(extra));
        }
        // Another datagram's messages after, or in the middle of, this one.
        6 => {
            let at = if rng.one_in(2) {
                data.len()
            } else {
                *rng.pick(&message_starts(data))
            };
            let at = at.min(data.len());
            let tail = data.split_off(at);
            data.extend_from_slice(other);
            data.extend(tail);
        }
        _ => {
            let m = valid_message(rng);
            data.extend(m);
        }
    }
    // The kernel's datagrams are small; a few messages are enough.
    data.truncate(2048);
}

pub struct NetlinkTarget;

impl NetlinkTarget {
    pub fn new() -> NetlinkTarget {
        // The reference decodes what it should on messages of known meaning.
        let (m, wf, events) = reference(&message(EXEC, &[30, 30], 5));
        assert_eq!(
            (m, wf, events),
            (1, 1, vec![ProcEvent::Exec { pid: 30, at_ns: 5 }])
        );
        let mut two = message(FORK, &[10, 10, 21, 20], 1);
        two.extend(message(EXIT, &[20, 20, 0, 9, 10, 10], 2));
        assert_eq!(reference(&two), (2, 2, vec![ProcEvent::Exit { pid: 20 }]));
        NetlinkTarget
    }
}

impl Target for NetlinkTarget {
    type Input = Vec<u8>;

    fn name(&self) -> &'static str {
        "proc_connector"
    }

    fn ci_executions(&self) -> u64 {
        100_000
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = vec![
            message(FORK, &[10, 10, 20, 20], 1),
            message(FORK, &[10, 10, 21, 20], 2),
            message(EXEC, &[30, 31], 3),
            message(COMM, &[40, 40], 4),
            message(EXIT, &[50, 50, 0, 17, 1, 1], 5),
            message(EXIT, &[51, 50, 0, 17, 1, 1], 6),
            // The kernel's answer to PROC_CN_MCAST_LISTEN.
            message(0, &[0], 7),
            Vec::new(),
        ];
        let mut several = message(EXEC, &[60, 60], 8);
        several.extend(message(COMM, &[60, 60], 9));
        several.extend(message(EXIT, &[60, 60, 0, 0, 1, 1], 10));
        seeds.push(several);
        for (_, bytes) in engine::regression_files(self.name()) {
            seeds.push(bytes);
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        if rng.one_in(20) {
            let len = rng.small(256);
            return rng.bytes(len);
        }
        let mut data = if rng.one_in(4) {
            (0..rng.small(4)).flat_map(|_| valid_message(rng)).collect()
        } else {
            rng.pick(corpus).clone()
        };
        let other = rng.pick(corpus).clone();
        for _ in 0..rng.small(4) {
            mutate(rng, &mut data, &other);
        }
        data
    }

    fn run(&self, data: &Vec<u8>) -> Result<Behaviour, String> {
        let events = parse_datagram(data);
        if events.len() > data.len() / (PAYLOAD + 16) {
            return Err(format!(
                "too many events: {} from {} bytes",
                events.len(),
                data.len()
            ));
        }
        let (messages, well_formed, expected) = reference(data);
        if events != expected {
            return Err(format!(
                "not the reference's events: {events:?}, the reference finds {expected:?} in {messages} messages"
            ));
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                ProcEvent::Fork { .. } => "fork",
                ProcEvent::Exec { .. } => "exec",
                ProcEvent::Comm { .. } => "comm",
                ProcEvent::Exit { .. } => "exit",
            })
            .collect();
        Ok(format!(
            "messages={} well_formed={} events={}",
            messages.min(4),
            well_formed.min(4),
            kinds.join(",")
        ))
    }

    fn shrink(&self, data: &Vec<u8>) -> Box<dyn Iterator<Item = Vec<u8>>> {
        let data = data.clone();
        let mut cuts = Vec::new();
        let mut size = data.len() / 2;
        while size >= 1 {
            let mut at = 0;
            while at + size <= data.len() {
                cuts.push((at, size));
                at += size;
            }
            size /= 2;
        }
        Box::new(cuts.into_iter().map(move |(at, size)| {
            let mut smaller = data.clone();
            smaller.drain(at..at + size);
            smaller
        }))
    }

    fn save(&self, data: &Vec<u8>) -> Vec<u8> {
        data.clone()
    }

    fn extension(&self) -> &'static str {
        "bin"
    }

    fn allocation_bound(&self, data: &Vec<u8>) -> usize {
        // The events, the reference's events and the kinds, each grown by doubling.
        8192 + (data.len() / (PAYLOAD + 16) + 1) * 8 * std::mem::size_of::<ProcEvent>()
    }
}
