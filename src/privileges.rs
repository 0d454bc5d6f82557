//! What each kernel step needs in capabilities, and the messages that say so
//! when the kernel refuses one, instead of a bare EPERM.
//!
//! What a kernel allows differs between kernels, even between two builds of
//! one version, so the tests (tests/it/privileges.rs) ask the running kernel
//! first and expect the exporter to do what it allows; the README's table
//! lists what each kernel measured needs. On the 6.18 builds measured so far:
//! - loading a tracing program: CAP_BPF and CAP_PERFMON;
//! - USDT probes, uprobes and uretprobes: nothing more (they attach through
//!   uprobe_multi links; on kernels without those links, see crate::kernel,
//!   they are perf-event uprobes and need what the next line says);
//! - perf-event uprobes (kernels without uprobe_multi links, or with them
//!   assumed missing): CAP_SYS_ADMIN (perf_event_open refuses CAP_PERFMON
//!   alone);
//! - another user's processes: CAP_SYS_PTRACE (`/proc/PID/root`, `exe`, `maps`);
//! - files the exporter's user may not read: CAP_DAC_READ_SEARCH;
//! - process events (the netlink process connector): CAP_NET_ADMIN on kernels
//!   that check it (6.18.44-fc-v1272 and -v1300 do; -v595 did not): measured
//!   by the connector's answer at startup, not assumed (discovery/watcher.rs).

/// Why loading a BPF program was refused.
pub const LOAD: &str = "the kernel refused to load the BPF program (EPERM): \
     loading it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); in a container, \
     podman's default seccomp profile also blocks bpf() without CAP_SYS_ADMIN";

/// Why creating a perf-event uprobe or uretprobe was refused (kernels
/// without uprobe_multi links).
pub const UPROBE: &str = "the kernel refused to create the uprobe through perf_event_open: \
     grant CAP_SYS_ADMIN, which kernels such as 6.18 require for it (on kernels with \
     uprobe_multi links the exporter attaches uprobes without perf_event_open, and needs \
     only CAP_BPF and CAP_PERFMON)";

/// Why attaching a uprobe or uretprobe through a uprobe_multi link was refused.
pub const UPROBE_MULTI: &str = "the kernel refused to attach the uprobe through a \
     uprobe_multi link: it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)";

/// Why attaching a USDT probe was refused.
pub const USDT: &str = "the kernel refused to attach the USDT probe: it needs CAP_BPF and \
     CAP_PERFMON, and CAP_SYS_ADMIN on kernels without uprobe_multi links";

/// Why a file of a process could not be read.
pub const READ_FILE: &str = "the exporter's user may not read it; \
     grant CAP_DAC_READ_SEARCH (and CAP_SYS_PTRACE to probe another user's processes)";

/// The explanation to append to an I/O error on a file of a process.
pub fn read_hint(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        format!(" ({READ_FILE})")
    } else {
        String::new()
    }
}

/// Whether a libbpf error is the kernel's EPERM or EACCES.
pub fn denied(error: &libbpf_rs::Error) -> bool {
    error.kind() == libbpf_rs::ErrorKind::PermissionDenied
}

/// `error`, followed by `why` when the kernel refused the step for lack of a capability.
pub fn explain(error: &libbpf_rs::Error, why: &str) -> String {
    if denied(error) {
        format!("{error}: {why}")
    } else {
        error.to_string()
    }
}

/// A capability the exporter may use, with what needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Its name (`CAP_BPF`).
    pub name: &'static str,
    /// Its number in the kernel's sets.
    pub number: u32,
    /// What needs it.
    pub needed_for: &'static str,
}

/// `CAP_NET_ADMIN`: turning the process connector's events on, on kernels
/// that check it. Not in [`CAPABILITIES`]: whether it is needed is learnt from
/// the kernel's answer, so its absence is reported only where it matters.
pub const CAP_NET_ADMIN: u32 = 12;

/// `CAP_SYS_ADMIN`, which implies `CAP_BPF` and `CAP_PERFMON`.
pub const CAP_SYS_ADMIN: u32 = 21;

/// Whether this thread's effective set holds capability `number` (false when
/// the sets cannot be read).
pub fn effective_has(number: u32) -> bool {
    capability_sets().is_ok_and(|(effective, _)| effective & (1 << number) != 0)
}

/// The capabilities the exporter uses, as the README lists them.
pub const CAPABILITIES: [Capability; 5] = [
    Capability {
        name: "CAP_BPF",
        number: 39,
        needed_for: "loading BPF programs (or CAP_SYS_ADMIN)",
    },
    Capability {
        name: "CAP_PERFMON",
        number: 38,
        needed_for: "loading tracing programs and attaching USDT probes and uprobes (or CAP_SYS_ADMIN)",
    },
    Capability {
        name: "CAP_SYS_ADMIN",
        number: CAP_SYS_ADMIN,
        needed_for: "uprobes and uretprobes on kernels without uprobe_multi links (perf_event_open), and bpf() under podman's default seccomp profile",
    },
    Capability {
        name: "CAP_SYS_PTRACE",
        number: 19,
        needed_for: "the files and memory maps of another user's processes",
    },
    Capability {
        name: "CAP_DAC_READ_SEARCH",
        number: 2,
        needed_for: "executables and libraries the exporter's user may not read",
    },
];

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread's capability sets, in capget's version 3 layout.
fn capget() -> std::io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are the version 3 layout capget expects.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(data)
}

/// This thread's (effective, permitted) capability sets, as bit masks.
fn capability_sets() -> std::io::Result<(u64, u64)> {
    let data = capget()?;
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// Makes every permitted capability effective, and returns the effective set.
///
/// The image gives the binary its capabilities as permitted-only file
/// capabilities, not effective ones: the kernel refuses to exec a binary with
/// effective file capabilities that the container's bounding set lacks, so a
/// container granting fewer would not even start it. Raising them here instead
/// lets it start with what it was granted and say what is missing.
pub fn raise_permitted() -> std::io::Result<u64> {
    // The inheritable sets are read back too, so that capset keeps them.
    let mut data = capget()?;
    if data.iter().all(|d| d.effective == d.permitted) {
        return Ok(capability_sets()?.0);
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: the version 3 layout, filled by capget.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(capability_sets()?.0)
}

/// The capabilities of [`CAPABILITIES`] missing from `effective`.
pub fn missing(effective: u64) -> Vec<Capability> {
    CAPABILITIES
        .iter()
        .filter(|c| effective & (1 << c.number) == 0)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_numbers_are_the_kernels() {
        let number = |name: &str| CAPABILITIES.iter().find(|c| c.name == name).unwrap().number;
        assert_eq!(number("CAP_DAC_READ_SEARCH"), 2);
        assert_eq!(number("CAP_SYS_PTRACE"), 19);
        assert_eq!(number("CAP_SYS_ADMIN"), 21);
        assert_eq!(number("CAP_PERFMON"), 38);
        assert_eq!(number("CAP_BPF"), 39);
    }

    #[test]
    fn missing_lists_what_the_set_lacks() {
        let all = CAPABILITIES.iter().fold(0u64, |set, c| set | 1 << c.number);
        assert!(missing(all).is_empty());
        let names: Vec<_> = missing(all & !(1 << 21)).iter().map(|c| c.name).collect();
        assert_eq!(names, ["CAP_SYS_ADMIN"]);
        assert_eq!(missing(0).len(), CAPABILITIES.len());
    }

    #[test]
    fn raising_keeps_this_process_effective_set() {
        let (effective, _) = capability_sets().unwrap();
        assert_eq!(raise_permitted().unwrap(), effective);
    }
}
