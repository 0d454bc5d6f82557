//! The exporter's metrics about itself, appended to every scrape.

use super::encode::{Encoder, LabelSet, MetricKind};
use crate::config::METRIC_NAMESPACE;
use crate::exporter::Exporter;
use std::time::Instant;

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

/// Writes the self-metrics; `started` is when this scrape began.
pub fn write(enc: &mut Encoder, exporter: &Exporter, started: Instant) {
    enc.family(
        &name("enabled_programs"),
        "The set of enabled programs",
        MetricKind::Gauge,
    );
    for state in &exporter.programs {
        for instance in state.instances.values() {
            let values = [
                state.prepared.name().to_string(),
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
    for state in &exporter.programs {
        for instance in state.attached() {
            for prog in &instance.programs {
                let values = [
                    state.prepared.name().to_string(),
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
    for state in &exporter.programs {
        let values = [state.prepared.name().to_string()];
        enc.sample_u64(&labels(&["name"], &values), state.instances.len() as u64);
    }

    enc.family(
        &name("attached_binaries"),
        "Executables an `instances: per_binary` program is attached to, for every process that runs them",
        MetricKind::Gauge,
    );
    for state in exporter
        .programs
        .iter()
        .filter(|s| s.prepared.is_per_binary())
    {
        let values = [state.prepared.name().to_string()];
        enc.sample_u64(&labels(&["name"], &values), state.binaries.len() as u64);
    }

    enc.family(
        &name("processes"),
        "Matching processes per program: attached, or failed (nothing attached)",
        MetricKind::Gauge,
    );
    for state in &exporter.programs {
        for (status, count) in [
            ("attached", state.instances.len()),
            ("failed", state.failed.len()),
        ] {
            let values = [state.prepared.name().to_string(), status.to_string()];
            enc.sample_u64(&labels(&["name", "state"], &values), count as u64);
        }
    }

    for (suffix, help, histogram) in [
        (
            "attach_duration_seconds",
            "Time to load a program and attach its probes to one process",
            &exporter.stats.attach_duration,
        ),
        (
            "exec_to_attach_seconds",
            "Time from a process's exec or fork event to its instance being attached",
            &exporter.stats.event_to_attach,
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
            &exporter.stats.attach_errors,
        ),
        (
            "decoder_errors_total",
            "Map keys a decoder could not decode, by program and metric",
            "metric",
            &exporter.stats.decoder_errors,
        ),
        (
            "map_read_errors_total",
            "Failed reads of a BPF map at scrape time, by program and table",
            "table",
            &exporter.stats.map_read_errors,
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
