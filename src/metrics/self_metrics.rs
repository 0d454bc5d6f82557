//! The exporter's metrics about itself, appended to every scrape, and the
//! counters behind them: attach outcomes (kept by the attach side) and scrape
//! errors (kept by the scrapes).

use super::encode::{Encoder, LabelSet, MetricKind};
use super::ScrapeProgram;
use crate::config::METRIC_NAMESPACE;
use std::collections::BTreeMap;
use std::time::Instant;

/// Counters the exporter keeps about itself.
#[derive(Debug, Default, Clone)]
pub struct SelfStats {
    /// (program, probe) -> attach failures.
    pub attach_errors: BTreeMap<(String, String), u64>,
    /// (program, metric) -> keys a decoder rejected.
    pub decoder_errors: BTreeMap<(String, String), u64>,
    /// (program, table) -> failed map reads.
    pub map_read_errors: BTreeMap<(String, String), u64>,
    /// Time to load and attach one instance.
    pub attach_duration: LatencyHistogram,
    /// Time from a process's exec/fork event to its instance being attached.
    pub event_to_attach: LatencyHistogram,
    /// How the last config reload went.
    pub reload: ReloadStatus,
    /// Whether process events flow: set by the event watcher, read by the
    /// rescans (which read only new pids while it is true) and the scrapes.
    pub process_events: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Instances detached and not yet freed (the kernel releases their
    /// links after RCU grace periods): kept by the reaper.
    pub detaching: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// How the last config reload went (the config loaded at startup counts as one).
#[derive(Debug, Default, Clone)]
pub struct ReloadStatus {
    /// Whether it succeeded.
    pub successful: bool,
    /// When the last successful one happened, in seconds since the Unix epoch.
    pub success_timestamp: f64,
    /// Why the last one failed, while it is the last one.
    pub error: Option<String>,
}

impl ReloadStatus {
    /// A reload that succeeded at `unix_seconds`.
    pub fn success(&mut self, unix_seconds: f64) {
        self.successful = true;
        self.success_timestamp = unix_seconds;
        self.error = None;
    }

    /// A reload that failed: nothing changed.
    pub fn failure(&mut self, error: String) {
        self.successful = false;
        self.error = Some(error);
    }
}

impl SelfStats {
    /// Counts one attach failure of `program`'s `probe` (empty: the whole instance).
    pub fn count_attach_error(&mut self, program: &str, probe: &str) {
        *self
            .attach_errors
            .entry((program.to_string(), probe.to_string()))
            .or_default() += 1;
    }
}

/// Locks the counters; a panic elsewhere while they were held leaves numbers
/// that are still worth serving, so poisoning is ignored.
pub fn lock(stats: &std::sync::Mutex<SelfStats>) -> std::sync::MutexGuard<'_, SelfStats> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small fixed-bucket histogram for the exporter's own latencies, in seconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Upper bounds.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more for +Inf.
    pub counts: Vec<u64>,
    /// Sum of observations.
    pub sum: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        const BOUNDS: &[f64] = &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        LatencyHistogram {
            bounds: BOUNDS,
            counts: vec![0; BOUNDS.len() + 1],
            sum: 0.0,
        }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += seconds;
    }

    /// As cumulative buckets for the encoder.
    pub fn built(&self) -> super::histogram::BuiltHistogram {
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, &c)| {
                total += c;
                (b, total)
            })
            .collect();
        super::histogram::BuiltHistogram {
            buckets,
            count: total + self.counts[self.bounds.len()],
            sum: self.sum,
            native: None,
        }
    }
}

fn name(suffix: &str) -> String {
    format!("{METRIC_NAMESPACE}_{suffix}")
}

fn labels<'a>(names: &'a [&'a str], values: &'a [String]) -> LabelSet<'a> {
    LabelSet {
        names,
        values,
        extra: &[],
    }
}

/// Writes the self-metrics of `programs` and `stats`; `started` is when this
/// scrape began.
pub fn write(enc: &mut Encoder, programs: &[ScrapeProgram], stats: &SelfStats, started: Instant) {
    enc.family(
        &name("enabled_programs"),
        "The set of enabled programs",
        MetricKind::Gauge,
    );
    for program in programs {
        for instance in program.instances {
            let values = [
                program.name.to_string(),
                instance.target.pid().unwrap_or_default().to_string(),
            ];
            enc.sample_u64(&labels(&["name", "pid"], &values), 1);
        }
    }

    enc.family(
        &name("ebpf_programs"),
        "BPF programs loaded per program and process, with the kernel's tag and id",
        MetricKind::Gauge,
    );
    for program in programs {
        for instance in program.instances.iter().chain(program.binaries) {
            for prog in &instance.programs {
                let values = [
                    program.name.to_string(),
                    prog.name.clone(),
                    prog.tag.clone(),
                    prog.id.to_string(),
                    // A per-binary instance belongs to no one process.
                    instance
                        .target
                        .pid()
                        .map(|pid| pid.to_string())
                        .unwrap_or_default(),
                ];
                enc.sample_u64(
                    &labels(&["name", "program", "tag", "id", "pid"], &values),
                    1,
                );
            }
        }
    }

    enc.family(
        &name("attached_processes"),
        "Processes a program is attached to",
        MetricKind::Gauge,
    );
    for program in programs {
        let values = [program.name.to_string()];
        enc.sample_u64(&labels(&["name"], &values), program.instances.len() as u64);
    }

    enc.family(
        &name("attached_binaries"),
        "Executables an `instances: per_binary` program is attached to, for every process that runs them",
        MetricKind::Gauge,
    );
    for program in programs.iter().filter(|p| p.per_binary) {
        let values = [program.name.to_string()];
        enc.sample_u64(&labels(&["name"], &values), program.binaries.len() as u64);
    }

    enc.family(
        &name("processes"),
        "Matching processes per program: attached, failed (nothing attached, for a fault), or no_source (the build offers none of the program's sources)",
        MetricKind::Gauge,
    );
    for program in programs {
        for (status, count) in [
            ("attached", program.instances.len()),
            ("failed", program.failed),
            ("no_source", program.no_source.processes),
        ] {
            let values = [program.name.to_string(), status.to_string()];
            enc.sample_u64(&labels(&["name", "state"], &values), count as u64);
        }
    }

    // Per source: which probe set feeds it in how many attached processes,
    // and in how many none can, by reason.
    let mut feeding: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    let mut lacking: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for program in programs {
        for instance in program.instances.iter().chain(program.binaries) {
            for outcome in &instance.sources {
                match (&outcome.chosen, outcome.reason()) {
                    (Some((_, set)), _) => {
                        *feeding
                            .entry((program.name, &outcome.source, set))
                            .or_default() += 1
                    }
                    (None, Some(reason)) => {
                        *lacking
                            .entry((program.name, &outcome.source, reason))
                            .or_default() += 1
                    }
                    (None, None) => {}
                }
            }
        }
        for ((source, reason), count) in &program.no_source.by_reason {
            *lacking.entry((program.name, source, reason)).or_default() += *count as u64;
        }
    }
    for (suffix, help, third, counts) in [
        (
            "source_processes",
            "Attached processes where a program's source is observed, by the probe set that feeds it (`sources:` in the config)",
            "set",
            &feeding,
        ),
        (
            "source_unavailable_processes",
            "Matching processes whose build offers no probe set of a program's source, by reason (no_usdt, no_symbol, ...): its metrics are absent for them",
            "reason",
            &lacking,
        ),
    ] {
        enc.family(&name(suffix), help, MetricKind::Gauge);
        for ((program, source, what), count) in counts {
            let values = [program.to_string(), source.to_string(), what.to_string()];
            enc.sample_u64(&labels(&["name", "source", third], &values), *count);
        }
    }

    for (suffix, help, histogram) in [
        (
            "attach_duration_seconds",
            "Time to load a program and attach its probes to one process",
            &stats.attach_duration,
        ),
        (
            "exec_to_attach_seconds",
            "Time from a process's exec or fork event to its instance being attached",
            &stats.event_to_attach,
        ),
    ] {
        enc.family(&name(suffix), help, MetricKind::Histogram);
        enc.histogram(&labels(&[], &[]), &histogram.built());
    }

    let counters = [
        (
            "attach_errors_total",
            "Probes that failed to attach, by program and probe (empty probe: the whole instance)",
            "probe",
            &stats.attach_errors,
        ),
        (
            "decoder_errors_total",
            "Map keys a decoder could not decode, by program and metric",
            "metric",
            &stats.decoder_errors,
        ),
        (
            "map_read_errors_total",
            "Failed reads of a BPF map at scrape time, by program and table",
            "table",
            &stats.map_read_errors,
        ),
    ];
    for (suffix, help, second, map) in counters {
        enc.family(&name(suffix), help, MetricKind::Counter);
        for ((program, what), count) in map {
            let values = [program.clone(), what.clone()];
            enc.sample_u64(&labels(&["name", second], &values), *count);
        }
    }

    enc.family(
        &name("process_events_live"),
        "Whether the kernel's process events reach the exporter (1): new processes are attached within milliseconds of their exec; 0: at the next /proc rescan (the log says why)",
        MetricKind::Gauge,
    );
    enc.sample_u64(
        &labels(&[], &[]),
        u64::from(
            stats
                .process_events
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    );

    // Written once the kernel was probed (at startup), so always in a
    // running exporter.
    if let Some(kernel) = crate::kernel::detected() {
        enc.family(
            &name("kernel_feature"),
            "Whether the running kernel has a BPF feature the exporter uses (1), or the exporter runs with the fallback the README lists for it (0; also under --kernel.assume-missing). Absent: it could not be probed (the log says why), and it is used as if present",
            MetricKind::Gauge,
        );
        for (feature, detection) in &kernel.detected {
            let value = match detection {
                crate::kernel::Detection::Present => 1,
                crate::kernel::Detection::Missing(_) | crate::kernel::Detection::AssumedMissing => {
                    0
                }
                crate::kernel::Detection::Unknown(_) => continue,
            };
            let values = [feature.name().to_string(), feature.min_kernel().to_string()];
            enc.sample_u64(&labels(&["feature", "min_kernel"], &values), value);
        }
        enc.family(
            &name("kernel_info"),
            "The running kernel: its release (uname -r) and machine (uname -m)",
            MetricKind::Gauge,
        );
        let values = [kernel.release.clone(), kernel.machine.clone()];
        enc.sample_u64(&labels(&["release", "machine"], &values), 1);
    }

    enc.family(
        &name("detaching_instances"),
        "Instances detached (their process exited, or a reload replaced their program) that the kernel has not released yet",
        MetricKind::Gauge,
    );
    enc.sample_u64(
        &labels(&[], &[]),
        stats.detaching.load(std::sync::atomic::Ordering::Relaxed) as u64,
    );

    enc.family(
        &name("config_last_reload_successful"),
        "Whether the last configuration reload attempt was successful",
        MetricKind::Gauge,
    );
    enc.sample_u64(&labels(&[], &[]), u64::from(stats.reload.successful));
    enc.family(
        &name("config_last_reload_success_timestamp_seconds"),
        "Timestamp of the last successful configuration reload",
        MetricKind::Gauge,
    );
    enc.sample(&labels(&[], &[]), stats.reload.success_timestamp);

    enc.family(
        &name("build_info"),
        "Build information: exporter version and the libbpf it links",
        MetricKind::Gauge,
    );
    let libbpf = unsafe {
        (
            libbpf_sys::libbpf_major_version(),
            libbpf_sys::libbpf_minor_version(),
        )
    };
    let values = [
        env!("CARGO_PKG_VERSION").to_string(),
        format!("{}.{}", libbpf.0, libbpf.1),
    ];
    enc.sample_u64(&labels(&["version", "libbpf_version"], &values), 1);

    enc.family(
        &name("scrape_duration_seconds"),
        "Time spent reading maps and encoding this scrape",
        MetricKind::Gauge,
    );
    enc.sample(&labels(&[], &[]), started.elapsed().as_secs_f64());
}
