//! Builds one scrape response from the live instances.

use super::encode::{Encoder, Format, LabelSet, MetricKind};
use super::label_cache::Resolved;
use super::maps::{read_u64_map, MapEntries};
use super::self_metrics;
use super::{CounterReader, HistogramReader};
use crate::exporter::{Exporter, SelfStats};
use libbpf_rs::MapCore;
use std::collections::HashMap;
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
    let Exporter {
        programs, stats, ..
    } = exporter;
    // Room for the last response and a little growth.
    let capacity = stats.last_response_bytes + stats.last_response_bytes / 16;
    let mut enc = Encoder::with_capacity(format, capacity);
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
            let mut sums = SetSums::default();
            for (position, source) in sources.iter().enumerate() {
                if let Some(entries) = read_table(program, counter, source, stats) {
                    let source = Read {
                        position,
                        labels: &source.labels,
                        entries: &entries,
                    };
                    write_counter(&mut enc, program, counter, &source, &mut sums, stats);
                }
            }
            counter.cache.borrow_mut().end_scrape();
        }
        for histogram in &state.metrics.histograms {
            let metric = &histogram.metric;
            enc.family(&metric.name, &metric.help, MetricKind::Histogram);
            let mut series = SetSums::default();
            for (position, source) in sources.iter().enumerate() {
                if let Some(entries) = read_table(program, metric, source, stats) {
                    let source = Read {
                        position,
                        labels: &source.labels,
                        entries: &entries,
                    };
                    write_histogram(&mut enc, program, histogram, &source, &mut series, stats);
                }
            }
            metric.cache.borrow_mut().end_scrape();
        }
    }
    self_metrics::write(&mut enc, exporter, started);
    let response = enc.finish();
    exporter.stats.last_response_bytes = response.len();
    response
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

/// One source's table as read this scrape.
struct Read<'a> {
    /// The source's place among the program's sources (stable between scrapes
    /// while the same processes run).
    position: usize,
    /// Labels every series of the source carries.
    labels: &'a [(&'a str, &'a str)],
    entries: &'a MapEntries,
}

fn write_counter(
    enc: &mut Encoder,
    program: &str,
    counter: &CounterReader,
    source: &Read,
    sums: &mut SetSums<u64>,
    stats: &mut SelfStats,
) {
    let (extra, entries) = (source.labels, source.entries);
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
    // Several keys may decode to one label set (static_map, string): their values
    // add up, per label set of the decoded-label cache.
    let mut cache = counter.cache.borrow_mut();
    let mut uncached: HashMap<Vec<u8>, u64> = HashMap::new();
    cache.begin_source(source.position, &counter.decoders);
    for (index, (key, value)) in entries.iter().enumerate() {
        match cache.resolve_at(index, key, &counter.decoders, false) {
            Ok(Resolved::Set(id, _)) => *sums.get(id) += value,
            Ok(Resolved::Uncached(text, _)) => *uncached.entry(text).or_default() += value,
            Ok(Resolved::Dropped) => {}
            Err(e) => count_decoder_error(stats, program, &counter.short_name, &e),
        }
    }
    cache.end_source();
    for &(id, value) in &sums.in_order {
        enc.sample_u64_rendered(cache.text(id), extra, value);
    }
    sums.clear();
    for (text, value) in &uncached {
        enc.sample_u64_rendered(text, extra, *value);
    }
}

/// Values summed per label set of one source, in the order the sets were first
/// seen; one per metric and scrape, cleared between its sources.
#[derive(Debug)]
struct SetSums<T> {
    /// Label set id -> index in `in_order` plus one (0: not seen yet); ids are dense.
    index: Vec<u32>,
    in_order: Vec<(u32, T)>,
}

impl<T> Default for SetSums<T> {
    fn default() -> Self {
        SetSums {
            index: Vec::new(),
            in_order: Vec::new(),
        }
    }
}

impl<T: Default> SetSums<T> {
    /// Forgets the sums, touching only the sets that had one.
    fn clear(&mut self) {
        for (id, _) in self.in_order.drain(..) {
            self.index[id as usize] = 0;
        }
    }

    /// The sum of label set `id`, started at its default the first time.
    fn get(&mut self, id: u32) -> &mut T {
        let id_at = id as usize;
        if id_at >= self.index.len() {
            self.index.resize(id_at + 1, 0);
        }
        if self.index[id_at] == 0 {
            self.in_order.push((id, T::default()));
            self.index[id_at] = self.in_order.len() as u32;
        }
        &mut self.in_order[self.index[id_at] as usize - 1].1
    }
}

fn write_histogram(
    enc: &mut Encoder,
    program: &str,
    histogram: &HistogramReader,
    source: &Read,
    series: &mut SetSums<HashMap<u64, u64>>,
    stats: &mut SelfStats,
) {
    let metric = &histogram.metric;
    let extra = source.labels;
    let mut cache = metric.cache.borrow_mut();
    let mut uncached: HashMap<Vec<u8>, HashMap<u64, u64>> = HashMap::new();
    cache.begin_source(source.position, &metric.decoders);
    for (index, (key, value)) in source.entries.iter().enumerate() {
        match cache.resolve_at(index, key, &metric.decoders, true) {
            Ok(Resolved::Set(id, slot)) => *series.get(id).entry(slot).or_default() += value,
            Ok(Resolved::Uncached(text, slot)) => {
                *uncached.entry(text).or_default().entry(slot).or_default() += value
            }
            Ok(Resolved::Dropped) => {}
            Err(e) => count_decoder_error(stats, program, &metric.short_name, &e),
        }
    }
    cache.end_source();
    for (id, slots) in &series.in_order {
        let built = histogram.buckets.build(slots);
        enc.histogram_rendered(cache.text(*id), extra, &built);
    }
    series.clear();
    for (text, slots) in &uncached {
        let built = histogram.buckets.build(slots);
        enc.histogram_rendered(text, extra, &built);
    }
}
