//! Scrape time: read each instance's maps a batch at a time, decode keys
//! into labels, and encode families straight into the response, which is
//! streamed to the client a chunk at a time.

mod aggregate;
pub mod bpf_stats;
pub mod decoders;
pub mod encode;
pub mod histogram;
pub mod label_cache;
pub mod maps;
pub mod protobuf;
mod render;
mod self_metrics;

pub use render::render;
pub use self_metrics::{lock as lock_stats, LatencyHistogram, ReloadStatus, SelfStats};

use crate::attach::{Instance, PreparedProgram, TableLayout, ValueLayout};
use crate::config::METRIC_NAMESPACE;
use decoders::LabelDecoders;
use histogram::HistogramLayout;

/// Arenas glibc's allocator may keep when `MALLOC_ARENA_MAX` does not say.
pub const MALLOC_ARENAS: i32 = 2;

/// Sets the allocator up for a process that runs for weeks; before any
/// thread starts.
///
/// Large buffers: each buffer of 1 MiB or more is mapped apart and given back
/// to the kernel when it is freed. glibc otherwise raises that threshold each
/// time it frees such a buffer (up to 32 MiB), after which a scrape's large
/// buffers (the spill of a 1M-key map, the label cache's tables) come from
/// heaps that keep their pages: measured, 61.8 MiB of peak RSS for a
/// 1M-series merged scrape, 51.2 MiB with the threshold fixed. Buffers below
/// it (a response chunk) are reused from the heap as before.
///
/// Arenas: at most [`MALLOC_ARENAS`] (glibc's default is 8 per core). Every
/// thread that allocates or frees is given an arena, and each arena keeps the
/// pages of its busiest moment: with the 17 threads of the exporter (8 of
/// them freeing detached instances), arenas came into use one after another
/// up to glibc's 16 on 2 cores (one more after 7 minutes of the soak's churn,
/// 0.8 MiB at once), and RSS kept climbing while the heap in use stayed flat
/// (heaptrack: 2.06 MiB on average in every 2 minutes from the first to the
/// fifteenth, under 6 times the soak's churn and 12 times its reloads). Side
/// by side under the same churn for 20 minutes, twice, 2 arenas held 0.6 to
/// 0.9 MiB less; over the last 10 minutes they were flat in one run (-0.14
/// MiB an hour, against +0.65 with the default) and still rising in the
/// other (+1.73, against +1.45): fewer arenas bound where pages can be kept,
/// they do not stop fragmentation. Trimming the heap every minute gave back
/// 0.2 to 0.3 MiB more and was not kept. `MALLOC_ARENA_MAX` in the
/// environment still decides.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets parameters of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// One metric family of a program: where to read it and how to label it.
#[derive(Debug)]
pub struct MetricReader {
    /// Full exported name (`userspace_exporter_<name>`).
    pub name: String,
    /// HELP text.
    pub help: String,
    /// Config name (for self-metric labels).
    pub short_name: String,
    /// Map name.
    pub table: String,
    /// Map layout.
    pub layout: TableLayout,
    /// Label names of the series, in key order (for histograms, without the slot).
    pub label_names: Vec<String>,
    /// Key decoders, one per key label (for histograms, the last decodes the slot).
    pub decoders: LabelDecoders,
    /// Label sets decoded in earlier scrapes, by raw key; a scrape holds it
    /// while it reads one source's table and writes the sets it holds (never
    /// waiting for its client meanwhile), so concurrent scrapes take turns per
    /// metric and source.
    pub cache: std::sync::Mutex<label_cache::LabelCache>,
    /// Where the value lies in each map value, and its scale (the whole
    /// unsigned 8-byte value for histograms).
    pub value: ValueLayout,
    /// For an `instances: pid_keyed` program: where each key holds the pid.
    pub pid_key: Option<crate::config::PidKey>,
}

/// A counter: every map entry is a series.
pub type CounterReader = MetricReader;

/// A histogram: entries are grouped by labels, the slot label becoming buckets.
#[derive(Debug)]
pub struct HistogramReader {
    /// Map, names and decoders.
    pub metric: MetricReader,
    /// Slot -> bound math.
    pub buckets: HistogramLayout,
}

/// One program as a scrape reads it: its metric readers and what it is attached to.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeProgram<'a> {
    /// Program name (the `name` label of the self-metrics).
    pub name: &'a str,
    /// Its metric readers.
    pub metrics: &'a ProgramMetrics,
    /// The one object of an `instances: shared` program, read once.
    pub shared: Option<&'a libbpf_rs::Object>,
    /// Instances per process (for a shared program: one per process, sharing `shared`).
    pub instances: &'a [std::sync::Arc<Instance>],
    /// Instances per binary (`instances: per_binary`).
    pub binaries: &'a [std::sync::Arc<Instance>],
    /// Whether `shared`'s maps are keyed by pid (`instances: pid_keyed`):
    /// read once, their entries go to the instances of their pids.
    pub pid_keyed: bool,
    /// Matching processes where nothing attached, for a fault.
    pub failed: usize,
    /// Matching processes whose build offers none of the program's sources
    /// (nothing loaded): how many, and per (source, reason) how many.
    pub no_source: &'a NoSourceCounts,
    /// Whether the program is `instances: per_binary`.
    pub per_binary: bool,
}

/// Matching processes whose build offers none of a program's sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoSourceCounts {
    /// How many processes.
    pub processes: usize,
    /// Per (source, reason): how many processes lack it.
    pub by_reason: std::collections::BTreeMap<(String, &'static str), usize>,
}

/// All metric readers of a program.
#[derive(Debug, Default)]
pub struct ProgramMetrics {
    /// Counters in config order.
    pub counters: Vec<CounterReader>,
    /// Gauges in config order.
    pub gauges: Vec<CounterReader>,
    /// Histograms in config order.
    pub histograms: Vec<HistogramReader>,
}

impl ProgramMetrics {
    /// Every metric's reader: counters, gauges, then histograms.
    pub fn readers(&self) -> impl Iterator<Item = &MetricReader> {
        self.counters
            .iter()
            .chain(&self.gauges)
            .chain(self.histograms.iter().map(|h| &h.metric))
    }

    /// Compiles decoders and bucket math for a prepared program; each metric
    /// keeps the decoded labels of at most `cache_keys` raw keys between scrapes.
    pub fn new(program: &PreparedProgram, cache_keys: usize) -> Result<ProgramMetrics, String> {
        let mut out = ProgramMetrics::default();
        let layout = |table: &str| {
            program
                .tables
                .get(table)
                .copied()
                .ok_or_else(|| format!("table {table:?} missing"))
        };
        let decoders = |metric: &str, labels: &[crate::config::Label]| {
            LabelDecoders::new(labels)
                .map_err(|e| format!("program {:?}: metric {metric:?}: {e}", program.name()))
        };
        let reader = |name: &str,
                      help: &str,
                      table: &str,
                      labels: &[crate::config::Label],
                      series_labels: usize| {
            Ok::<_, String>(MetricReader {
                name: format!("{METRIC_NAMESPACE}_{name}"),
                help: help.to_string(),
                short_name: name.to_string(),
                table: table.to_string(),
                layout: layout(table)?,
                label_names: labels[..series_labels]
                    .iter()
                    .map(|l| l.name.clone())
                    .collect(),
                decoders: decoders(name, labels)?,
                cache: std::sync::Mutex::new(label_cache::LabelCache::new(cache_keys)),
                value: program
                    .values
                    .get(name)
                    .copied()
                    .unwrap_or(ValueLayout::WHOLE_U64),
                pid_key: crate::config::PidKey::of(labels),
            })
        };
        for (kind, c) in program.config.metrics.scalars() {
            let c = &c.value;
            let metric = reader(&c.name, &c.help, &c.table, &c.labels, c.labels.len())?;
            match kind {
                "gauge" => out.gauges.push(metric),
                _ => out.counters.push(metric),
            }
        }
        for h in &program.config.metrics.histograms {
            let h = &h.value;
            let series_labels = h.labels.len().saturating_sub(1);
            out.histograms.push(HistogramReader {
                metric: reader(&h.name, &h.help, &h.table, &h.labels, series_labels)?,
                buckets: HistogramLayout::new(h),
            });
        }
        Ok(out)
    }
}
