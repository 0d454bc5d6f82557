//! Builds one scrape response from the programs' attached instances.

use super::aggregate::{SetSums, Spill, SpilledKey};
use super::encode::{Encoder, LabelSet, MetricKind};
use super::label_cache::{decode_set, LabelCache, Resolved};
use super::maps::{read_map_batches, MapEntries};
use super::self_metrics::{self, SelfStats};
use super::{HistogramReader, MetricReader, ScrapeProgram};
use libbpf_rs::MapCore;
use std::collections::HashMap;
use std::ops::ControlFlow;
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
    /// Metrics (by their config names) whose source this process's build does
    /// not offer: their maps hold nothing it counted (an array's zeros), so
    /// the process has no series of them rather than a false zero.
    withheld: Vec<&'a str>,
    /// For a pid-keyed program: the pid whose entries of the shared maps
    /// are this source's (the maps are read once, see [`Partition`]).
    of_pid: Option<u32>,
}

/// A pid-keyed program's map, read once and split by the pid in each key.
type Partition = HashMap<u32, MapEntries>;

impl<'a> Source<'a> {
    /// A shared object's maps, read whole: no labels of a process.
    fn whole(object: &'a libbpf_rs::Object) -> Source<'a> {
        Source {
            object,
            labels: Vec::new(),
            target: None,
            process: None,
            withheld: Vec::new(),
            of_pid: None,
        }
    }

    /// The sources of a program: its shared object read once (its maps count
    /// for every process, no pid label), or each attached instance.
    fn of(program: &ScrapeProgram<'a>) -> Vec<Source<'a>> {
        match program.shared {
            Some(object) if !program.pid_keyed => vec![Source::whole(object)],
            _ => program
                .instances
                .iter()
                .chain(program.binaries)
                .map(|i| Source {
                    object: i.object(),
                    of_pid: program
                        .pid_keyed
                        .then(|| i.target.pid().map(|p| p as u32))
                        .flatten(),
                    labels: i
                        .series_labels
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect(),
                    target: Some(i.target.describe()),
                    process: i.target.pid(),
                    withheld: i
                        .sources
                        .iter()
                        .filter(|s| s.chosen.is_none())
                        .flat_map(|s| s.metrics.iter().map(String::as_str))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Locks a metric's label cache for one source; a panic in another scrape
/// leaves a cache that is still consistent (each entry is written whole).
fn lock_cache(cache: &Mutex<LabelCache>) -> std::sync::MutexGuard<'_, LabelCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Buffers one scrape reuses from family to family.
#[derive(Default)]
struct Scratch {
    sums: SetSums<u64>,
    series: SetSums<HashMap<u64, u64>>,
    spill: Spill,
    values: Vec<String>,
    text: Vec<u8>,
}

/// Reads every map of every program's instances and encodes the whole
/// exposition, self-metrics included, into `enc` (streamed to its sink as it
/// goes, for a streaming encoder; the bytes are returned otherwise). Errors
/// met on the way are added to `stats`, which is locked only at the end.
///
/// Memory: a map is read a batch at a time; keys whose labels are all
/// integers are encoded as read, the others summed per label set (a set the
/// label cache holds by its id, the rest [`Spill`]ed). A streaming encoder
/// never waits for its reader while a lock is held here (a label cache, the
/// counters), so a slow reader holds up no other scrape. When the reader has
/// gone, the render stops at the next batch.
pub fn render(programs: &[ScrapeProgram], stats: &Mutex<SelfStats>, mut enc: Encoder) -> Vec<u8> {
    let started = Instant::now();
    // This scrape's decoder and map read errors, added to `stats` at the end.
    let mut errors = SelfStats::default();
    let mut fills = TableFills::default();
    let mut scratch = Scratch::default();
    'programs: for program in programs {
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
            let partition = partition(program, counter, &mut errors, &mut fills);
            let family = Family {
                program: name,
                metric: counter,
                histogram: None,
                partition: partition.as_ref(),
            };
            family.write(&mut enc, &sources, &mut scratch, &mut errors, &mut fills);
            if enc.closed() {
                break 'programs;
            }
        }
        for histogram in &program.metrics.histograms {
            let metric = &histogram.metric;
            enc.family(&metric.name, &metric.help, MetricKind::Histogram);
            let partition = partition(program, metric, &mut errors, &mut fills);
            let family = Family {
                program: name,
                metric,
                histogram: Some(histogram),
                partition: partition.as_ref(),
            };
            family.write(&mut enc, &sources, &mut scratch, &mut errors, &mut fills);
            if enc.closed() {
                break 'programs;
            }
        }
    }
    // Not blocked on the reader while the counters are locked.
    enc.set_wait(false);
    let mut stats = self_metrics::lock(stats);
    for (key, n) in errors.decoder_errors {
        *stats.decoder_errors.entry(key).or_default() += n;
    }
    for (key, n) in errors.map_read_errors {
        *stats.map_read_errors.entry(key).or_default() += n;
    }
    if enc.closed() {
        drop(stats);
        tracing::debug!(
            "scrape stopped after {} bytes: the client went away",
            enc.written()
        );
        return Vec::new();
    }
    // The scrape's duration leaves out the time spent waiting for the reader.
    let waited = enc.waited();
    self_metrics::write(&mut enc, programs, &stats, started + waited);
    drop(stats);
    enc.set_wait(true);
    fills.write(&mut enc);
    super::bpf_stats::write(&mut enc, programs);
    enc.finish()
}

/// A pid-keyed program's map of `metric`, read whole and split by pid; none
/// for other programs, or when the read failed (logged and counted: the
/// family then has no series).
fn partition(
    program: &ScrapeProgram,
    metric: &MetricReader,
    errors: &mut SelfStats,
    fills: &mut TableFills,
) -> Option<Partition> {
    let (Some(object), true, Some(pid_key)) = (program.shared, program.pid_keyed, metric.pid_key)
    else {
        return None;
    };
    let whole = Source::whole(object);
    let family = Family {
        program: program.name,
        metric,
        histogram: None,
        partition: None,
    };
    let mut split = Partition::new();
    let key_size = metric.layout.key_size as usize;
    let read = family.read(&whole, errors, fills, |batch| {
        for (key, value) in batch.iter() {
            // A key without a pid (0: a process the exporter's PID namespace
            // does not see) belongs to no process.
            let Some(pid) = pid_key.read(key).filter(|&p| p != 0) else {
                continue;
            };
            let entries = split.entry(pid).or_insert_with(|| MapEntries {
                key_size,
                ..MapEntries::default()
            });
            entries.keys.extend_from_slice(key);
            entries.values.push(value);
        }
        ControlFlow::Continue(())
    });
    read.then_some(split)
}

/// One metric family being written: a counter or gauge, or a histogram.
struct Family<'a> {
    program: &'a str,
    metric: &'a MetricReader,
    histogram: Option<&'a HistogramReader>,
    /// For a pid-keyed program: its map, read once, by pid.
    partition: Option<&'a Partition>,
}

impl Family<'_> {
    /// Writes the family's series from every source.
    fn write(
        &self,
        enc: &mut Encoder,
        sources: &[Source],
        scratch: &mut Scratch,
        errors: &mut SelfStats,
        fills: &mut TableFills,
    ) {
        let metric = self.metric;
        // Integer labels give every key its own series: written as read, no merging.
        let injective = self.histogram.is_none()
            && metric
                .decoders
                .is_injective(metric.layout.key_size as usize);
        for (position, source) in sources.iter().enumerate() {
            if source.withheld.contains(&metric.short_name.as_str()) {
                continue;
            }
            if injective {
                self.write_as_read(enc, source, &mut scratch.values, errors, fills);
            } else {
                self.write_merged(enc, position, source, scratch, errors, fills);
            }
            if enc.closed() {
                // Stopped midway: the cache is left as it is (no eviction of
                // keys this scrape did not reach).
                return;
            }
        }
        if !injective {
            lock_cache(&metric.cache).end_scrape();
        }
    }

    /// Reads the source's table batch by batch into `each` (which may stop
    /// early), counting its entries for the table fill; a failed read is
    /// logged and counted, and returns false.
    fn read(
        &self,
        source: &Source,
        errors: &mut SelfStats,
        fills: &mut TableFills,
        mut each: impl FnMut(&MapEntries) -> ControlFlow<()>,
    ) -> bool {
        let (program, metric) = (self.program, self.metric);
        let table = metric.table.as_str();
        if let Some(pid) = source.of_pid {
            // Read once for every pid; a failed read was counted then.
            let Some(partition) = self.partition else {
                return false;
            };
            if let Some(entries) = partition.get(&pid) {
                let _ = each(entries);
            }
            return true;
        }
        let result = match source
            .object
            .maps()
            .find(|m| m.name().to_string_lossy() == table)
        {
            Some(map) => read_map_batches(map.as_fd(), &metric.layout, &metric.value, each)
                .inspect(|&entries| {
                    if fills_up(metric.layout.map_type) {
                        fills.record(program, table, source, entries, map.max_entries());
                    }
                }),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "map missing from the loaded object",
            )),
        };
        match result {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    program,
                    table,
                    target = source.target,
                    "reading map failed: {e}"
                );
                *errors
                    .map_read_errors
                    .entry((program.to_string(), table.to_string()))
                    .or_default() += 1;
                false
            }
        }
    }

    /// A counter whose labels are all integers: each key is its own series,
    /// encoded as it is read.
    fn write_as_read(
        &self,
        enc: &mut Encoder,
        source: &Source,
        values: &mut Vec<String>,
        errors: &mut SelfStats,
        fills: &mut TableFills,
    ) {
        let counter = self.metric;
        let names: Vec<&str> = counter.label_names.iter().map(String::as_str).collect();
        let plain = counter.value.is_plain_u64();
        let extra = &source.labels;
        let mut decode_errors = 0u64;
        let mut first_error = None;
        // A read failing midway keeps the series already sent.
        self.read(source, errors, fills, |batch| {
            for (key, value) in batch.iter() {
                match counter.decoders.decode_key(key, values) {
                    Ok(true) => {
                        let labels = LabelSet {
                            names: &names,
                            values,
                            extra,
                        };
                        if plain {
                            enc.sample_u64(&labels, value)
                        } else {
                            enc.sample(&labels, counter.value.scale(value))
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        decode_errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            if enc.closed() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Some(e) = first_error {
            count_decoder_errors(errors, self.program, &counter.short_name, &e, decode_errors);
        }
    }

    /// Labels that are not all integers (or a histogram): values are summed
    /// per label set, then written. The label cache is held while the table
    /// is read and the cached sets are written (without waiting for the
    /// reader); the spilled sets are written after it is let go.
    fn write_merged(
        &self,
        enc: &mut Encoder,
        position: usize,
        source: &Source,
        scratch: &mut Scratch,
        errors: &mut SelfStats,
        fills: &mut TableFills,
    ) {
        let metric = self.metric;
        let histogram = self.histogram.is_some();
        let Scratch {
            sums,
            series,
            spill,
            values,
            text,
        } = scratch;
        enc.set_wait(false);
        let mut cache = lock_cache(&metric.cache);
        cache.begin_source(position, &metric.decoders);
        let mut index = 0;
        let mut decode_errors = 0u64;
        let mut first_error = None;
        let read = self.read(source, errors, fills, |batch| {
            for (key, value) in batch.iter() {
                match cache.resolve_at(index, key, &metric.decoders, histogram, source.process) {
                    Ok(Resolved::Set(id, slot)) => {
                        if histogram {
                            *series.get(id).entry(slot).or_default() += value;
                        } else {
                            *sums.get(id) += value;
                        }
                    }
                    Ok(Resolved::Uncached(hash, slot)) => {
                        let key = key.get(..metric.decoders.key_size()).unwrap_or(key);
                        spill.push(hash, key, value, histogram.then_some(slot));
                    }
                    Ok(Resolved::Dropped) => {}
                    Err(e) => {
                        decode_errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                index += 1;
            }
            if enc.closed() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        cache.end_source();
        if let Some(e) = first_error {
            count_decoder_errors(errors, self.program, &metric.short_name, &e, decode_errors);
        }
        if !read || enc.closed() {
            // As before streaming, a source whose read failed writes nothing.
            sums.clear();
            series.clear();
            spill.clear();
            drop(cache);
            enc.set_wait(true);
            return;
        }
        let format = enc.format();
        let extra = &source.labels;
        if let Some(h) = self.histogram {
            for (id, slots) in &series.in_order {
                let built = h.buckets.build(slots);
                enc.histogram_rendered(cache.rendered(*id, format), extra, &built);
            }
        } else {
            for &(id, value) in &sums.in_order {
                self.write_sum(enc, cache.rendered(id, format), extra, value);
            }
        }
        sums.clear();
        series.clear();
        drop(cache);
        enc.set_wait(true);
        if spill.is_empty() {
            return;
        }
        // The sets past the cache's bound: their text decoded again from one
        // of their keys; keys of colliding hashes are told apart by it.
        let mut slots = HashMap::new();
        spill.groups(|members| {
            spilled_sets(
                members,
                &metric.decoders,
                histogram,
                source.process,
                values,
                text,
                |text, keys| {
                    let rendered = format.labels_from_text(text);
                    if let Some(h) = self.histogram {
                        slots.clear();
                        for k in keys {
                            *slots.entry(k.slot).or_default() += k.value;
                        }
                        enc.histogram_rendered(&rendered, extra, &h.buckets.build(&slots));
                    } else {
                        let sum = keys.iter().fold(0u64, |sum, k| sum.wrapping_add(k.value));
                        self.write_sum(enc, &rendered, extra, sum);
                    }
                },
            );
        });
    }

    /// Writes one counter or gauge series of rendered labels.
    fn write_sum(&self, enc: &mut Encoder, rendered: &[u8], extra: &[(&str, &str)], value: u64) {
        if self.metric.value.is_plain_u64() {
            enc.sample_u64_rendered(rendered, extra, value);
        } else {
            enc.sample_rendered(rendered, extra, self.metric.value.scale(value));
        }
    }
}

/// The label sets of one [`Spill`] group (keys of one hash): calls `set` with
/// each distinct text and its keys. A group is nearly always one set (of
/// one key, for a counter); when it holds several, each key's text tells
/// them apart. Keys whose decoding fails now are left out (they were counted
/// as they were read).
fn spilled_sets(
    members: &[SpilledKey<'_>],
    decoders: &super::decoders::LabelDecoders,
    histogram: bool,
    process: Option<i32>,
    values: &mut Vec<String>,
    text: &mut Vec<u8>,
    mut set: impl FnMut(&[u8], &[SpilledKey<'_>]),
) {
    if let [only] = members {
        text.clear();
        if let Ok(Some(_)) = decode_set(only.key, decoders, histogram, process, values, text) {
            set(text, members);
        }
        return;
    }
    let mut texts: Vec<(Vec<u8>, usize)> = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let mut text = Vec::new();
        if let Ok(Some(_)) = decode_set(member.key, decoders, histogram, process, values, &mut text)
        {
            texts.push((text, i));
        }
    }
    // Stable: each set's keys stay in read order.
    texts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys = Vec::new();
    let mut i = 0;
    while i < texts.len() {
        keys.clear();
        let mut j = i;
        while j < texts.len() && texts[j].0 == texts[i].0 {
            keys.push(members[texts[j].1]);
            j += 1;
        }
        set(&texts[i].0, &keys);
        i = j;
    }
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

fn count_decoder_errors(
    stats: &mut SelfStats,
    program: &str,
    metric: &str,
    e: &dyn std::fmt::Display,
    n: u64,
) {
    tracing::debug!(program, metric, "decoder errors: {n}, the first: {e}");
    *stats
        .decoder_errors
        .entry((program.to_string(), metric.to_string()))
        .or_default() += n;
}
