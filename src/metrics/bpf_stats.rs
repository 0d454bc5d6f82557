//! What the probes cost the processes they watch: each BPF program's run
//! count and run time, as the kernel counts them while BPF statistics are on.
//!
//! The kernel counts only while someone holds a `BPF_ENABLE_STATS` file
//! descriptor or the `kernel.bpf_stats_enabled` sysctl is 1. Counting costs
//! two clock reads per program run for every BPF program on the host, not only
//! the exporter's: so the exporter turns it on ([`enable`], holding the
//! descriptor until it exits) only when asked (`--bpf.stats`), and otherwise
//! exports the figures only while an administrator has the sysctl on.

use super::encode::{Encoder, LabelSet, MetricKind};
use super::ScrapeProgram;
use crate::attach::BpfProgramInfo;
use crate::config::METRIC_NAMESPACE;
use libbpf_rs::Object;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// The statistics descriptor, held until the process exits.
static HELD: OnceLock<OwnedFd> = OnceLock::new();

/// Turns the kernel's BPF run statistics on until this process exits. Needs
/// `CAP_SYS_ADMIN` on the kernels measured (refused with `CAP_BPF` and
/// `CAP_PERFMON`).
pub fn enable() -> Result<(), String> {
    if HELD.get().is_some() {
        return Ok(());
    }
    let kernel = crate::kernel::features();
    let feature = crate::kernel::Feature::BpfStats;
    if *kernel.detection(feature) == crate::kernel::Detection::AssumedMissing {
        return Err(kernel.needs(feature));
    }
    // SAFETY: a plain bpf() command with no pointers.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        let e = std::io::Error::from_raw_os_error(-fd);
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) => {
                "the kernel refused to turn BPF statistics on (EPERM): grant CAP_SYS_ADMIN"
                    .to_string()
            }
            // Kernels before 5.8 do not know the command.
            Some(libc::EINVAL) if !kernel.usable(feature) => {
                format!("{e}: {}", kernel.needs(feature))
            }
            _ => e.to_string(),
        });
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let _ = HELD.set(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// Whether [`enable`] succeeded in this process.
pub fn enabled() -> bool {
    HELD.get().is_some()
}

/// Whether the kernel is counting: this process turned statistics on, or the
/// `kernel.bpf_stats_enabled` sysctl is 1 (read each time: an administrator
/// may switch it). Descriptors other processes hold do not show in the
/// sysctl; while only those count, the figures are not exported, since the
/// exporter cannot tell since when they counted.
pub fn counting() -> bool {
    enabled()
        || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1")
}

/// One BPF program's runs so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The BPF function's name.
    pub function: String,
    /// Times it ran.
    pub runs: u64,
    /// Nanoseconds it ran in total.
    pub run_ns: u64,
}

/// The runs of each of `programs` (the instance's own functions) in `object`.
pub fn of_object(object: &Object, programs: &[BpfProgramInfo]) -> Vec<ProgramRuns> {
    object
        .progs()
        .filter_map(|prog| {
            let name = prog.name().to_string_lossy();
            programs.iter().find(|p| p.name == name)?;
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
            // SAFETY: info is a zeroed bpf_prog_info of the size len says.
            let rc = unsafe {
                libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
            };
            (rc == 0).then(|| ProgramRuns {
                function: name.into_owned(),
                runs: info.run_cnt,
                run_ns: info.run_time_ns,
            })
        })
        .collect()
}

/// Sums of `runs`: (runs, nanoseconds).
pub fn total(runs: &[ProgramRuns]) -> (u64, u64) {
    runs.iter()
        .fold((0, 0), |(n, ns), r| (n + r.runs, ns + r.run_ns))
}

/// Writes the run count and run time of every BPF program, per program and
/// process (a shared program's object once, with an empty `pid`); nothing
/// when the kernel is not counting ([`counting`]).
pub fn write(enc: &mut Encoder, programs: &[ScrapeProgram]) {
    if !counting() {
        return;
    }
    // (program name, pid, runs of its functions)
    let mut rows: Vec<(&str, String, Vec<ProgramRuns>)> = Vec::new();
    for program in programs {
        if let Some(shared) = program.shared {
            let functions = program
                .instances
                .first()
                .map(|i| i.programs.as_slice())
                .unwrap_or_default();
            rows.push((program.name, String::new(), of_object(shared, functions)));
            continue;
        }
        for instance in program.instances.iter().chain(program.binaries) {
            let pid = instance
                .target
                .pid()
                .map(|p| p.to_string())
                .unwrap_or_default();
            rows.push((
                program.name,
                pid,
                of_object(instance.object(), &instance.programs),
            ));
        }
    }
    let names = ["name", "program", "pid"];
    enc.family(
        &format!("{METRIC_NAMESPACE}_bpf_program_runs_total"),
        "Times each BPF program ran (the kernel's BPF statistics: --bpf.stats, or the kernel.bpf_stats_enabled sysctl)",
        MetricKind::Counter,
    );
    for (program, pid, runs) in &rows {
        for r in runs {
            let values = [program.to_string(), r.function.clone(), pid.clone()];
            enc.sample_u64(
                &LabelSet {
                    names: &names,
                    values: &values,
                    extra: &[],
                },
                r.runs,
            );
        }
    }
    enc.family(
        &format!("{METRIC_NAMESPACE}_bpf_program_run_seconds_total"),
        "Time each BPF program ran, in the probed processes' threads",
        MetricKind::Counter,
    );
    for (program, pid, runs) in &rows {
        for r in runs {
            let values = [program.to_string(), r.function.clone(), pid.clone()];
            enc.sample(
                &LabelSet {
                    names: &names,
                    values: &values,
                    extra: &[],
                },
                r.run_ns as f64 / 1e9,
            );
        }
    }
}
