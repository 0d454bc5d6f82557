//! Builds one scrape response from the live instances.

use super::encode::{Encoder, Format, LabelSet, MetricKind};
use super::maps::{read_u64_map, MapEntries};
use super::self_metrics;
use super::{CounterReader, HistogramReader};
use crate::exporter::{Exporter, SelfStats};
use libbpf_rs::MapCore;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::time::Instant;

/// Where one family's series come from: a map of a loaded object, and the labels
/// every series read from it carries.
struct Source<'a> {
    object: &'a libbpf_rs::Object,
    labels: Vec<(&'a str, &'a str)>,
    /// For logs: the process or binary, or none for a shared object.
    target: Option<String>,
}

/// Reads every map of every instance and encodes the whole exposition.
pub fn render(exporter: &mut Exporter, format: Format) -> Vec<u8> {
    let started = Instant::now();
    let mut enc = Encoder::new(format);
    let Exporter {
        programs, stats, ..
    } = exporter;
    for state in programs.iter() {
        let program = state.prepared.name();
        // A shared object is read once: its maps count for every process (no pid label).
        let sources: Vec<Source> = match &state.shared {
            Some(object) => vec![Source {
                object,
                labels: Vec::new(),
                target: None,
            }],
            None => state
                .attached()
                .map(|i| Source {
                    object: i.object(),
                    labels: i
                        .series_labels
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect(),
                    target: Some(i.target.describe()),
                })
                .collect(),
        };
        for counter in &state.metrics.counters {
            enc.family(&counter.name, &counter.help, MetricKind::Counter);
            for source in &sources {
                if let Some(entries) = read_table(program, counter, source, stats) {
                    write_counter(&mut enc, program, counter, &source.labels, &entries, stats);
                }
            }
        }
        for histogram in &state.metrics.histograms {
            let metric = &histogram.metric;
            enc.family(&metric.name, &metric.help, MetricKind::Histogram);
            for source in &sources {
                if let Some(entries) = read_table(program, metric, source, stats) {
                    write_histogram(
                        &mut enc,
                        program,
                        histogram,
                        &source.labels,
                        &entries,
                        stats,
                    );
                }
            }
        }
    }
    self_metrics::write(&mut enc, exporter, started);
    enc.finish()
}

fn read_table(
    program: &str,
    metric: &super::MetricReader,
    source: &Source,
    stats: &mut SelfStats,
) -> Option<MapEntries> {
    let table = metric.table.as_str();
    let result = match source
        .object
        .maps()
        .find(|m| m.name().to_string_lossy() == table)
    {
        Some(map) => read_u64_map(map.as_fd(), &metric.layout),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "map missing from the loaded object",
        )),
    };
    match result {
        Ok(entries) => Some(entries),
        Err(e) => {
            tracing::warn!(
                program,
                table,
                target = source.target,
                "reading map failed: {e}"
            );
            *stats
                .map_read_errors
                .entry((program.to_string(), table.to_string()))
                .or_default() += 1;
            None
        }
    }
}

fn count_decoder_error(
    stats: &mut SelfStats,
    program: &str,
    metric: &str,
    e: &dyn std::fmt::Display,
) {
    tracing::debug!(program, metric, "decoder error: {e}");
    *stats
        .decoder_errors
        .entry((program.to_string(), metric.to_string()))
        .or_default() += 1;
}

fn write_counter(
    enc: &mut Encoder,
    program: &str,
    counter: &CounterReader,
    extra: &[(&str, &str)],
    entries: &MapEntries,
    stats: &mut SelfStats,
) {
    let names: Vec<&str> = counter.label_names.iter().map(String::as_str).collect();
    let mut values = Vec::with_capacity(counter.label_names.len());
    // Integer labels give every key its own series: written as read, no merging.
    if counter.decoders.is_injective(entries.key_size) {
        for (key, value) in entries.iter() {
            match counter.decoders.decode_key(key, &mut values) {
                Ok(true) => enc.sample_u64(
                    &LabelSet {
                        names: &names,
                        values: &values,
                        extra,
                    },
                    value,
                ),
                Ok(false) => {}
                Err(e) => count_decoder_error(stats, program, &counter.short_name, &e),
            }
        }
        return;
    }
    // Several keys may decode to one label set (static_map, string): their values add up.
    let mut series: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (key, value) in entries.iter() {
        match counter.decoders.decode_key(key, &mut values) {
            Ok(true) => *series.entry(values.clone()).or_default() += value,
            Ok(false) => {}
            Err(e) => count_decoder_error(stats, program, &counter.short_name, &e),
        }
    }
    for (values, value) in &series {
        enc.sample_u64(
            &LabelSet {
                names: &names,
                values,
                extra,
            },
            *value,
        );
    }
}

fn write_histogram(
    enc: &mut Encoder,
    program: &str,
    histogram: &HistogramReader,
    extra: &[(&str, &str)],
    entries: &MapEntries,
    stats: &mut SelfStats,
) {
    let mut series: BTreeMap<Vec<String>, HashMap<u64, u64>> = BTreeMap::new();
    let mut values = Vec::with_capacity(histogram.metric.label_names.len() + 1);
    for (key, value) in entries.iter() {
        match histogram.metric.decoders.decode_key(key, &mut values) {
            Ok(true) => {
                let slot_text = values.pop().unwrap_or_default();
                match slot_text.parse::<u64>() {
                    Ok(slot) => {
                        *series
                            .entry(values.clone())
                            .or_default()
                            .entry(slot)
                            .or_default() += value
                    }
                    Err(_) => count_decoder_error(
                        stats,
                        program,
                        &histogram.metric.short_name,
                        &format!("bucket slot {slot_text:?} is not an integer"),
                    ),
                }
            }
            Ok(false) => {}
            Err(e) => count_decoder_error(stats, program, &histogram.metric.short_name, &e),
        }
    }
    let names: Vec<&str> = histogram
        .metric
        .label_names
        .iter()
        .map(String::as_str)
        .collect();
    for (values, slots) in &series {
        let built = histogram.buckets.build(slots);
        enc.histogram(
            &LabelSet {
                names: &names,
                values,
                extra,
            },
            &built,
        );
    }
}
