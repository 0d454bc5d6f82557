//! Scrape time: read each instance's maps, decode keys into labels, and
//! encode families straight into the response buffer.

pub mod decoders;
pub mod encode;
pub mod histogram;
pub mod maps;
mod render;
mod self_metrics;

pub use render::render;

use crate::attach::{PreparedProgram, TableLayout};
use crate::config::METRIC_NAMESPACE;
use decoders::LabelDecoders;
use histogram::HistogramLayout;

/// A counter of one program, ready to read.
#[derive(Debug)]
pub struct CounterReader {
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
    /// Label names, in key order.
    pub label_names: Vec<String>,
    /// Key decoders.
    pub decoders: LabelDecoders,
}

/// A histogram of one program, ready to read.
#[derive(Debug)]
pub struct HistogramReader {
    /// Full exported name.
    pub name: String,
    /// HELP text.
    pub help: String,
    /// Config name.
    pub short_name: String,
    /// Map name.
    pub table: String,
    /// Map layout.
    pub layout: TableLayout,
    /// Label names without the bucket slot label.
    pub label_names: Vec<String>,
    /// Key decoders (the last decodes the slot).
    pub decoders: LabelDecoders,
    /// Slot -> bound math.
    pub buckets: HistogramLayout,
}

/// All metric readers of a program.
#[derive(Debug, Default)]
pub struct ProgramMetrics {
    /// Counters in config order.
    pub counters: Vec<CounterReader>,
    /// Histograms in config order.
    pub histograms: Vec<HistogramReader>,
}

impl ProgramMetrics {
    /// Compiles decoders and bucket math for a prepared program.
    pub fn new(program: &PreparedProgram) -> Result<ProgramMetrics, String> {
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
        for c in &program.config.metrics.counters {
            let c = &c.value;
            out.counters.push(CounterReader {
                name: format!("{METRIC_NAMESPACE}_{}", c.name),
                help: c.help.clone(),
                short_name: c.name.clone(),
                table: c.table.clone(),
                layout: layout(&c.table)?,
                label_names: c.labels.iter().map(|l| l.name.clone()).collect(),
                decoders: decoders(&c.name, &c.labels)?,
            });
        }
        for h in &program.config.metrics.histograms {
            let h = &h.value;
            let n = h.labels.len().saturating_sub(1);
            out.histograms.push(HistogramReader {
                name: format!("{METRIC_NAMESPACE}_{}", h.name),
                help: h.help.clone(),
                short_name: h.name.clone(),
                table: h.table.clone(),
                layout: layout(&h.table)?,
                label_names: h.labels[..n].iter().map(|l| l.name.clone()).collect(),
                decoders: decoders(&h.name, &h.labels)?,
                buckets: HistogramLayout::new(h),
            });
        }
        Ok(out)
    }
}
