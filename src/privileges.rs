//! What each kernel step needs in capabilities, and the messages that say so
//! when the kernel refuses one, instead of a bare EPERM.
//!
//! Measured on Linux 6.18 by running the exporter as a non-root user with
//! exactly the capabilities listed (tests/privileges.rs, README "Privileges"):
//! - loading a tracing program: CAP_BPF and CAP_PERFMON;
//! - USDT probes: nothing more (libbpf attaches them through uprobe_multi links);
//! - uprobes and uretprobes: CAP_SYS_ADMIN (libbpf creates them through
//!   perf_event_open, which this kernel refuses with CAP_PERFMON alone);
//! - another user's processes: CAP_SYS_PTRACE (`/proc/PID/root`, `exe`, `maps`);
//! - files the exporter's user may not read: CAP_DAC_READ_SEARCH;
//! - process events (the netlink process connector): nothing.

/// Why loading a BPF program was refused.
pub const LOAD: &str = "the kernel refused to load the BPF program (EPERM): \
     loading it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); in a container, \
     podman's default seccomp profile also blocks bpf() without CAP_SYS_ADMIN";

/// Why creating a uprobe or uretprobe was refused.
pub const UPROBE: &str = "the kernel refused to create the uprobe: uprobes and uretprobes \
     are created through perf_event_open, which needs CAP_SYS_ADMIN (Linux 6.18 refuses \
     it with CAP_PERFMON alone; USDT probes need only CAP_BPF and CAP_PERFMON)";

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
