//! Builds one scrape response from the programs' attached instances.

use super::aggregate::SetSums;
use super::encode::{Encoder, Format, LabelSet, MetricKind};
use super::label_cache::{LabelCache, Resolved};
use super::maps::{read_map, MapEntries};
use super::self_metrics::{self, SelfStats};
use super::{CounterReader, HistogramReader, ScrapeProgram};
use libbpf_rs::MapCore;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Instant;

/// Where one family's series come from: a map of a loaded object, and the labels
/// every series read from it carries.
struct Source<'a> {
    object: &'a libbpf_rs::Object,
    labels: Vec<(&'a str, &'a str)>,
    /// For logs: the process or binary, or none for a shared object.
    target: Option<String>,
    /// The process whose maps these are (for decoders such as `usym`).
    process: Option<i32>,
}

impl<'a> Source<'a> {
    /// The sources of a program: its shared object read once (its maps count
    /// for every process, no pid label), or each attached instance.
    fn of(program: &ScrapeProgram<'a>) -> Vec<Source<'a>> {
        match program.shared {
            Some(object) => vec![Source {
                object,
                labels: Vec::new(),
                target: None,
                process: None,
            }],
            None => program
                .instances
                .iter()
                .chain(program.binaries)
                .map(|i| Source {
                    object: i.object(),
                    labels: i
                        .series_labels
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect(),
                    target: Some(i.target.describe()),
                    process: i.target.pid(),
                })
                .collect(),
        }
    }
}

/// Locks a metric's label cache for one family; a panic in another scrape
/// leaves a cache that is still consistent (each entry is written whole).
fn lock_cache(cache: &Mutex<LabelCache>) -> std::sync::MutexGuard<'_, LabelCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads every map of every program's instances and encodes the whole
/// exposition, self-metrics included. Errors met on the way are added to
/// `stats`, which is locked only at the start and the end.
pub fn render(programs: &[ScrapeProgram], stats: &Mutex<SelfStats>, format: Format) -> Vec<u8> {
    let started = Instant::now();
    let last_bytes = self_metrics::lock(stats).last_response_bytes;
    // Room for the last response and a little growth.
    let mut enc = Encoder::with_capacity(format, last_bytes + last_bytes / 16);
    // This scrape's decoder and map read errors, added to `stats` at the end.
    let mut errors = SelfStats::default();
    let mut fills = TableFills::default();
    for program in programs {
        let name = program.name;
        let sources = Source::of(program);
        let scalars = (program
            .metrics
            .counters
            .iter()
            .map(|c| (c, MetricKind::Counter)))
        .chain(
            program
                .metrics
                .gauges
                .iter()
                .map(|g| (g, MetricKind::Gauge)),
        );
        for (counter, kind) in scalars {
            enc.family(&counter.name, &counter.help, kind);
            let mut cache = lock_cache(&counter.cache);
            let mut sums = SetSums::default();
            for (position, source) in sources.iter().enumerate() {
                if let Some(entries) = read_table(name, counter, source, &mut errors, &mut fills) {
                    let source = Read {
                        position,
                        labels: &source.labels,
                        entries: &entries,
                        process: source.process,
                    };
                    write_counter(
                        &mut enc,
                        name,
                        counter,
                        &mut cache,
                        &source,
                        &mut sums,
                        &mut errors,
                    );
                }
            }
            cache.end_scrape();
        }
        for histogram in &program.metrics.histograms {
            let metric = &histogram.metric;
            enc.family(&metric.name, &metric.help, MetricKind::Histogram);
            let mut cache = lock_cache(&metric.cache);
            let mut series = SetSums::default();
            for (position, source) in sources.iter().enumerate() {
                if let Some(entries) = read_table(name, metric, source, &mut errors, &mut fills) {
                    let source = Read {
                        position,
                        labels: &source.labels,
                        entries: &entries,
                        process: source.process,
                    };
                    write_histogram(
                        &mut enc,
                        name,
                        histogram,
                        &mut cache,
                        &source,
                        &mut series,
                        &mut errors,
                    );
                }
            }
            cache.end_scrape();
        }
    }
    let mut stats = self_metrics::lock(stats);
    for (key, n) in errors.decoder_errors {
        *stats.decoder_errors.entry(key).or_default() += n;
    }
    for (key, n) in errors.map_read_errors {
        *stats.map_read_errors.entry(key).or_default() += n;
    }
    self_metrics::write(&mut enc, programs, &stats, started);
    fills.write(&mut enc);
    super::bpf_stats::write(&mut enc, programs);
    let response = enc.finish();
    stats.last_response_bytes = response.len();
    response
}

/// How full each hash table a metric read is: (program, table, the source's
/// labels) -> (entries, capacity). A full hash map drops new keys in the
/// kernel, silently: these let users see and alert on it.
#[derive(Default)]
struct TableFills(std::collections::BTreeMap<TableOf, (u64, u64)>);

/// A table of one source: (program, table, the source's labels).
type TableOf = (String, String, Vec<(String, String)>);

impl TableFills {
    fn record(
        &mut self,
        program: &str,
        table: &str,
        source: &Source,
        entries: usize,
        capacity: u32,
    ) {
        let labels = source
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.insert(
            (program.to_string(), table.to_string(), labels),
            (entries as u64, u64::from(capacity)),
        );
    }

    fn write(&self, enc: &mut Encoder) {
        for (family, help, capacity) in [
            (
                "table_entries",
                "Entries in each hash map a metric reads; at table_capacity, new keys are dropped in the kernel",
                false,
            ),
            (
                "table_capacity",
                "Most entries each hash map a metric reads can hold (max_entries)",
                true,
            ),
        ] {
            enc.family(
                &format!("{}_{family}", crate::config::METRIC_NAMESPACE),
                help,
                MetricKind::Gauge,
            );
            for ((program, table, labels), (entries, max)) in &self.0 {
                let mut pairs: Vec<(&str, &str)> = vec![("name", program), ("table", table)];
                pairs.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                enc.sample_u64(
                    &super::encode::LabelSet::pairs(&pairs),
                    if capacity { *max } else { *entries },
                );
            }
        }
    }
}

/// Whether entries of this map type can run out (arrays are always full).
fn fills_up(map_type: libbpf_rs::MapType) -> bool {
    use libbpf_rs::MapType;
    matches!(
        map_type,
        MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash
    )
}

fn read_table(
    program: &str,
    metric: &super::MetricReader,
    source: &Source,
    stats: &mut SelfStats,
    fills: &mut TableFills,
) -> Option<MapEntries> {
    let table = metric.table.as_str();
    let result = match source
        .object
        .maps()
        .find(|m| m.name().to_string_lossy() == table)
    {
        Some(map) => read_map(map.as_fd(), &metric.layout, &metric.value).inspect(|entries| {
            if fills_up(metric.layout.map_type) {
                fills.record(program, table, source, entries.len(), map.max_entries());
            }
        }),
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
    /// The process whose maps these are.
    process: Option<i32>,
}

fn write_counter(
    enc: &mut Encoder,
    program: &str,
    counter: &CounterReader,
    cache: &mut LabelCache,
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
                Ok(true) => {
                    let labels = LabelSet {
                        names: &names,
                        values: &values,
                        extra,
                    };
                    if counter.value.is_plain_u64() {
                        enc.sample_u64(&labels, value)
                    } else {
                        enc.sample(&labels, counter.value.scale(value))
                    }
                }
                Ok(false) => {}
                Err(e) => count_decoder_error(stats, program, &counter.short_name, &e),
            }
        }
        return;
    }
    // Several keys may decode to one label set (static_map, string): their values
    // add up, per label set of the decoded-label cache.
    let mut uncached: HashMap<Vec<u8>, u64> = HashMap::new();
    cache.begin_source(source.position, &counter.decoders);
    for (index, (key, value)) in entries.iter().enumerate() {
        match cache.resolve_at(index, key, &counter.decoders, false, source.process) {
            Ok(Resolved::Set(id, _)) => *sums.get(id) += value,
            Ok(Resolved::Uncached(text, _)) => *uncached.entry(text).or_default() += value,
            Ok(Resolved::Dropped) => {}
            Err(e) => count_decoder_error(stats, program, &counter.short_name, &e),
        }
    }
    cache.end_source();
    let format = enc.format();
    let plain = counter.value.is_plain_u64();
    for &(id, value) in &sums.in_order {
        let rendered = cache.rendered(id, format);
        if plain {
            enc.sample_u64_rendered(rendered, extra, value);
        } else {
            enc.sample_rendered(rendered, extra, counter.value.scale(value));
        }
    }
    sums.clear();
    for (text, value) in &uncached {
        let rendered = format.labels_from_text(text);
        if plain {
            enc.sample_u64_rendered(&rendered, extra, *value);
        } else {
            enc.sample_rendered(&rendered, extra, counter.value.scale(*value));
        }
    }
}

fn write_histogram(
    enc: &mut Encoder,
    program: &str,
    histogram: &HistogramReader,
    cache: &mut LabelCache,
    source: &Read,
    series: &mut SetSums<HashMap<u64, u64>>,
    stats: &mut SelfStats,
) {
    let metric = &histogram.metric;
    let extra = source.labels;
    let mut uncached: HashMap<Vec<u8>, HashMap<u64, u64>> = HashMap::new();
    cache.begin_source(source.position, &metric.decoders);
    for (index, (key, value)) in source.entries.iter().enumerate() {
        match cache.resolve_at(index, key, &metric.decoders, true, source.process) {
            Ok(Resolved::Set(id, slot)) => *series.get(id).entry(slot).or_default() += value,
            Ok(Resolved::Uncached(text, slot)) => {
                *uncached.entry(text).or_default().entry(slot).or_default() += value
            }
            Ok(Resolved::Dropped) => {}
            Err(e) => count_decoder_error(stats, program, &metric.short_name, &e),
        }
    }
    cache.end_source();
    let format = enc.format();
    for (id, slots) in &series.in_order {
        let built = histogram.buckets.build(slots);
        enc.histogram_rendered(cache.rendered(*id, format), extra, &built);
    }
    series.clear();
    for (text, slots) in &uncached {
        let built = histogram.buckets.build(slots);
        enc.histogram_rendered(&format.labels_from_text(text), extra, &built);
    }
}
