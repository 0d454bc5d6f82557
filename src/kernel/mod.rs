//! What the running kernel offers of the BPF features the exporter stands
//! on, learnt once per process by trying each one (never by comparing
//! version numbers: distributions backport features, and two builds of one
//! version differ), and what the exporter does without each.
//!
//! [`features`] probes the kernel on first use ([`probe`] makes the system
//! calls, [`classify`] reads their answers); [`needs`] says what a program
//! asks of the kernel and whether it runs in full, degraded (with a named
//! fallback) or not at all on this one. `--kernel.assume-missing` makes the
//! exporter behave as if features were missing, for tests and diagnostics
//! ([`assume_missing`]).
//!
//! Not here: the process connector's permission check, which the event
//! watcher learns from the connector's own answer (discovery/watcher.rs,
//! `userspace_exporter_process_events_live`).

pub mod classify;
pub mod needs;
mod probe;
pub mod return_probes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// A kernel feature the exporter uses, with the first mainline release that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// BPF uprobe_multi links that filter by process: one link attaches a
    /// program to one function or many (every uprobe and uretprobe;
    /// libbpf's USDT path).
    UprobeMulti,
    /// `bpf_get_func_ip` returning the probed address in uprobes and uretprobes.
    FuncIpInUprobes,
    /// `BPF_MAP_LOOKUP_BATCH`: a map read a few thousand entries per syscall.
    BatchLookup,
    /// `BPF_ENABLE_STATS`: per-program run counts and times (`--bpf.stats`).
    BpfStats,
    /// The kernel's own BTF, which CO-RE relocations are resolved against.
    KernelBtf,
    /// BPF cookies (`bpf_get_attach_cookie`), which libbpf's USDT support
    /// uses to find a probe site's argument specs.
    BpfCookie,
    /// Uprobes that raise a USDT semaphore (`ref_ctr_offset`).
    UsdtSemaphores,
    /// Perf-event uretprobes that run only for the processes they were
    /// attached to: before 6.13 a uretprobe attached for one process also
    /// runs when another process returns from the same function, if that
    /// process has the function probed by anyone else.
    UretprobePidFilter,
}

impl Feature {
    /// Every feature, in the order they are reported.
    pub const ALL: [Feature; 8] = [
        Feature::UprobeMulti,
        Feature::FuncIpInUprobes,
        Feature::BatchLookup,
        Feature::BpfStats,
        Feature::KernelBtf,
        Feature::BpfCookie,
        Feature::UsdtSemaphores,
        Feature::UretprobePidFilter,
    ];

    /// The name used by `--kernel.assume-missing` and the `feature` label.
    pub fn name(self) -> &'static str {
        match self {
            Feature::UprobeMulti => "uprobe_multi",
            Feature::FuncIpInUprobes => "bpf_get_func_ip_uprobe",
            Feature::BatchLookup => "batch_lookup",
            Feature::BpfStats => "bpf_stats",
            Feature::KernelBtf => "kernel_btf",
            Feature::BpfCookie => "bpf_cookie",
            Feature::UsdtSemaphores => "usdt_semaphores",
            Feature::UretprobePidFilter => "uretprobe_pid_filter",
        }
    }

    /// The feature by [`Feature::name`].
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// What it is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Feature::UprobeMulti => "uprobe_multi links filtering by process",
            Feature::FuncIpInUprobes => "bpf_get_func_ip in uprobes",
            Feature::BatchLookup => "batched map lookups (BPF_MAP_LOOKUP_BATCH)",
            Feature::BpfStats => "BPF run statistics (BPF_ENABLE_STATS)",
            Feature::KernelBtf => "kernel BTF (CONFIG_DEBUG_INFO_BTF)",
            Feature::BpfCookie => "BPF cookies (bpf_get_attach_cookie)",
            Feature::UsdtSemaphores => "USDT semaphores (uprobe ref_ctr_offset)",
            Feature::UretprobePidFilter => "uretprobes filtered by process",
        }
    }

    /// The first mainline release with it (README, "Kernel features", has
    /// the commits). Only said in messages: support is always tried.
    pub fn min_kernel(self) -> &'static str {
        match self {
            // The links came in 6.6, filtering by thread; by process since
            // 6.10 (and the 6.6.y and 6.9.y stable releases with the fix),
            // which is what libbpf and the exporter require.
            Feature::UprobeMulti => "6.10",
            Feature::FuncIpInUprobes => "6.6",
            Feature::BatchLookup => "5.6",
            Feature::BpfStats => "5.8",
            Feature::KernelBtf => "5.4",
            Feature::BpfCookie => "5.15",
            Feature::UsdtSemaphores => "4.20",
            // The uprobe session rework ("uprobe: Add support for session
            // consumer") runs a perf-event uretprobe only where its entry
            // handler accepted the process; before it, every consumer's
            // return handler ran.
            Feature::UretprobePidFilter => "6.13",
        }
    }

    /// What the exporter does on a kernel without it.
    pub fn without(self) -> &'static str {
        match self {
            Feature::UprobeMulti => "a wildcard uprobe becomes one uprobe per matched function, every uprobe and uretprobe a perf-event uprobe (which needs CAP_SYS_ADMIN, and whose detach holds a kernel-wide lock), and libbpf attaches each USDT site by a uprobe of its own",
            Feature::FuncIpInUprobes => "programs calling bpf_get_func_ip are refused (the helper returns 0 in uprobes before 6.6)",
            Feature::BatchLookup => "maps are read key by key (two syscalls a key)",
            Feature::BpfStats => "bpf_program_runs_total is exported only while the kernel.bpf_stats_enabled sysctl is on",
            Feature::KernelBtf => "programs with CO-RE relocations (BPF_CORE_READ, kernel structs from a generated vmlinux.h) are refused",
            Feature::BpfCookie => "libbpf finds a USDT site's arguments by its address: `instances: per_binary` cannot attach USDT probes in position-independent files (shared libraries, PIE executables)",
            Feature::UsdtSemaphores => "semaphore-guarded USDT probes cannot be attached",
            Feature::UretprobePidFilter => "a uretprobe attached for one process also runs when another process returns from the same function while something else (another instance, program or tool) probes it there: programs that count returns without state saved at entry (`check` names them) count those returns too; programs that pair each return with their entry stay exact",
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What probing the kernel for one feature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// The kernel did what the feature promises.
    Present,
    /// The kernel lacks it: why, as its answer showed.
    Missing(String),
    /// The exporter behaves as if it were missing (`--kernel.assume-missing`);
    /// the kernel was not asked.
    AssumedMissing,
    /// The probe could not tell (refused for privileges, an unexpected
    /// answer): why. The exporter then uses the feature and lets the attach
    /// say what fails.
    Unknown(String),
}

impl Detection {
    /// Whether the exporter uses the feature (present, or unknown).
    pub fn usable(&self) -> bool {
        matches!(self, Detection::Present | Detection::Unknown(_))
    }

    /// For logs and `check`: `yes`, `no (why)`, ...
    pub fn describe(&self) -> String {
        match self {
            Detection::Present => "yes".to_string(),
            Detection::Missing(why) => format!("no ({why})"),
            Detection::AssumedMissing => {
                "no (assumed missing: --kernel.assume-missing)".to_string()
            }
            Detection::Unknown(why) => format!("unknown ({why}); used as if present"),
        }
    }
}

/// The running kernel and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFeatures {
    /// `uname -r`.
    pub release: String,
    /// `uname -m`.
    pub machine: String,
    /// Each feature's detection.
    pub detected: BTreeMap<Feature, Detection>,
}

impl KernelFeatures {
    /// A kernel whose features are as given (the others present): for tests
    /// of decisions that depend on them.
    pub fn with(release: &str, detected: &[(Feature, Detection)]) -> KernelFeatures {
        let mut all: BTreeMap<Feature, Detection> = Feature::ALL
            .into_iter()
            .map(|f| (f, Detection::Present))
            .collect();
        all.extend(detected.iter().cloned());
        KernelFeatures {
            release: release.to_string(),
            machine: std::env::consts::ARCH.to_string(),
            detected: all,
        }
    }

    /// How `feature` was detected.
    pub fn detection(&self, feature: Feature) -> &Detection {
        self.detected.get(&feature).unwrap_or(&Detection::Present)
    }

    /// Whether the exporter uses `feature` here.
    pub fn usable(&self, feature: Feature) -> bool {
        self.detection(feature).usable()
    }

    /// `FEATURE needs Linux X+; this kernel is R (why)`: the sentence every
    /// message about a missing feature starts with.
    pub fn needs(&self, feature: Feature) -> String {
        let why = match self.detection(feature) {
            Detection::Missing(why) => format!(": {why}"),
            Detection::AssumedMissing => ", assumed missing by --kernel.assume-missing".to_string(),
            _ => String::new(),
        };
        format!(
            "{} needs Linux {}+; this kernel is {}{why}",
            feature.what(),
            feature.min_kernel(),
            self.release
        )
    }
}

/// Features the exporter behaves as if the kernel lacked.
static ASSUMED: OnceLock<BTreeSet<Feature>> = OnceLock::new();

/// What [`features`] found, once.
static DETECTED: OnceLock<KernelFeatures> = OnceLock::new();

/// Makes the exporter behave as if the kernel lacked each named feature
/// (`--kernel.assume-missing`): for tests of the fallbacks and for
/// diagnosing a feature suspected of misbehaving. Must come before the
/// first [`features`]; an unknown name is an error listing the known ones.
pub fn assume_missing(names: &[String]) -> Result<(), String> {
    let mut assumed = BTreeSet::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let feature = Feature::from_name(name).ok_or_else(|| {
            format!(
                "--kernel.assume-missing: unknown feature {name:?}; known: {}",
                Feature::ALL.map(Feature::name).join(", ")
            )
        })?;
        assumed.insert(feature);
    }
    if DETECTED.get().is_some() {
        return Err("--kernel.assume-missing given after the kernel was probed".to_string());
    }
    ASSUMED
        .set(assumed)
        .map_err(|_| "--kernel.assume-missing given twice".to_string())
}

/// The running kernel's features, probed on the first call (a few
/// milliseconds: small programs loaded, uprobes on the exporter's own code
/// fired once, in the exporter and in a child it forks).
pub fn features() -> &'static KernelFeatures {
    DETECTED.get_or_init(|| {
        let assumed = ASSUMED.get_or_init(BTreeSet::new);
        probe::detect(assumed)
    })
}

/// The features if they were probed already: for code that must not be
/// the one to probe (a scrape), and that then acts as before probing.
pub fn detected() -> Option<&'static KernelFeatures> {
    DETECTED.get()
}

/// Logs, once at startup, what the kernel offers: one line per feature,
/// a warning naming the fallback for each one missing.
pub fn log_summary(kernel: &KernelFeatures) {
    tracing::info!(
        release = %kernel.release,
        machine = %kernel.machine,
        "kernel features probed"
    );
    for (feature, detection) in &kernel.detected {
        match detection {
            Detection::Present => {
                tracing::info!(feature = feature.name(), "kernel feature present")
            }
            Detection::Unknown(why) => tracing::warn!(
                feature = feature.name(),
                "kernel feature unknown ({why}): used as if present"
            ),
            Detection::Missing(_) | Detection::AssumedMissing => tracing::warn!(
                feature = feature.name(),
                "degraded: {}; without it {}",
                kernel.needs(*feature),
                feature.without()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_a_distinct_name_that_reads_back() {
        let names: BTreeSet<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Feature::ALL.len());
        for feature in Feature::ALL {
            assert_eq!(Feature::from_name(feature.name()), Some(feature));
        }
        assert_eq!(Feature::from_name("uprobe-multi"), None);
    }

    #[test]
    fn the_missing_sentence_names_feature_version_and_kernel() {
        let kernel = KernelFeatures::with(
            "5.10.0-28-amd64",
            &[(
                Feature::FuncIpInUprobes,
                Detection::Missing("the helper returned 0 in a uprobe".into()),
            )],
        );
        assert_eq!(
            kernel.needs(Feature::FuncIpInUprobes),
            "bpf_get_func_ip in uprobes needs Linux 6.6+; this kernel is 5.10.0-28-amd64: the helper returned 0 in a uprobe"
        );
        assert!(!kernel.usable(Feature::FuncIpInUprobes));
        assert!(kernel.usable(Feature::UprobeMulti));
        let assumed = KernelFeatures::with(
            "6.18.44",
            &[(Feature::UprobeMulti, Detection::AssumedMissing)],
        );
        assert_eq!(
            assumed.needs(Feature::UprobeMulti),
            "uprobe_multi links filtering by process needs Linux 6.10+; this kernel is 6.18.44, assumed missing by --kernel.assume-missing"
        );
        // An unknown answer does not switch a feature off.
        let unknown = KernelFeatures::with(
            "6.1.0",
            &[(Feature::UprobeMulti, Detection::Unknown("EPERM".into()))],
        );
        assert!(unknown.usable(Feature::UprobeMulti));
    }
}
