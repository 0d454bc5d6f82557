//! The YAML configuration: the seed's `programs:` format, parsed with source
//! locations so that every error names `file:line:column`.
//!
//! Parsing (this file) only checks shape; [`validate`] checks meaning
//! (names, sizes, decoders, regexps) without looking at any BPF object.

mod error;
mod validate;

pub use error::{ConfigError, ConfigErrors};

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prefix of every exported metric name, as in the seed.
pub const METRIC_NAMESPACE: &str = "userspace_exporter";

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The programs to load, each attached to the processes it selects.
    pub programs: Vec<Spanned<Program>>,
    /// Where the file was read from; relative `object:` paths resolve against its directory.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One BPF program: its code, probes, metrics and the processes it attaches to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Program name: the `name` label of the self-metrics.
    pub name: String,
    /// Metrics read from the program's maps.
    #[serde(default)]
    pub metrics: Metrics,
    /// USDT probe spec -> BPF function name.
    #[serde(default)]
    pub usdt: Option<Spanned<BTreeMap<String, String>>>,
    /// uprobe spec -> BPF function name.
    #[serde(default)]
    pub uprobes: Option<Spanned<BTreeMap<String, String>>>,
    /// uretprobe spec -> BPF function name.
    #[serde(default)]
    pub uretprobes: Option<Spanned<BTreeMap<String, String>>>,
    /// Which processes get an instance (the seed's README spells it both ways).
    #[serde(default)]
    pub attachment: Option<Spanned<Attachment>>,
    /// Alias of `attachment`.
    #[serde(default)]
    pub attachments: Option<Spanned<Attachment>>,
    /// A clang-built BPF object, relative to the config file.
    #[serde(default)]
    pub object: Option<Spanned<String>>,
    /// Inline BPF C (bcc dialect).
    #[serde(default)]
    pub code: Option<Spanned<String>>,
    /// Extra flags for compiling `code`.
    #[serde(default)]
    pub cflags: Option<Spanned<Vec<String>>>,
    /// Kernel-side probe kinds the seed also ignores: accepted, warned about, unused.
    #[serde(default)]
    pub kprobes: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub kretprobes: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub tracepoints: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub raw_tracepoints: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    #[allow(missing_docs)]
    pub perf_events: Option<Spanned<serde::de::IgnoredAny>>,
}

/// The metric families a program exports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Counters: one series per map key.
    #[serde(default)]
    pub counters: Vec<Spanned<Counter>>,
    /// Histograms: the last label of the key is the bucket slot.
    #[serde(default)]
    pub histograms: Vec<Spanned<Histogram>>,
}

/// A counter read from a map whose values are 8-byte integers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// Name without the `userspace_exporter_` prefix.
    pub name: String,
    /// HELP text.
    pub help: String,
    /// The map to read.
    pub table: String,
    /// How the map key splits into labels, in key order.
    #[serde(default)]
    pub labels: Vec<Label>,
}

/// A histogram read from a map keyed by (labels..., bucket slot).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// Name without the `userspace_exporter_` prefix.
    pub name: String,
    /// HELP text.
    pub help: String,
    /// The map to read.
    pub table: String,
    /// How slot keys map to `le` bounds.
    pub bucket_type: BucketType,
    /// First slot (exp2, exp2zero, linear).
    #[serde(default)]
    pub bucket_min: u64,
    /// Last slot (exp2, exp2zero, linear); slot `bucket_max + 1` holds the sum.
    #[serde(default)]
    pub bucket_max: u64,
    /// Factor applied to every bound and to the sum.
    #[serde(default)]
    pub bucket_multiplier: Option<f64>,
    /// Slots of a `fixed` histogram; slot `last + 1` holds the sum.
    #[serde(default)]
    pub bucket_keys: Vec<u64>,
    /// How the map key splits into labels; the last one is the bucket slot.
    #[serde(default)]
    pub labels: Vec<Label>,
}

/// How histogram slot keys become `le` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketType {
    /// Slot k holds values up to 2^k.
    Exp2,
    /// Slot 0 holds zero, slot k > 0 holds values up to 2^(k-1).
    Exp2zero,
    /// Slot k holds values up to k.
    Linear,
    /// Slots are listed in `bucket_keys`; slot k holds values up to k.
    Fixed,
}

/// One label: a slice of the map key and the decoders that turn it into text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Bytes of the key this label reads.
    pub size: usize,
    /// Bytes skipped after it (struct padding).
    #[serde(default)]
    pub padding: usize,
    /// Decoders applied in order; the first gets the raw bytes.
    #[serde(default)]
    pub decoders: Vec<DecoderConfig>,
}

/// A decoder in a label's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Decoder name: uint, int, hex, string, static_map, regexp.
    pub name: String,
    /// `static_map`: input -> output.
    #[serde(default)]
    pub static_map: BTreeMap<String, String>,
    /// `static_map`: pass inputs missing from the map through unchanged.
    #[serde(default)]
    pub allow_unknown: bool,
    /// `regexp`: the label set is kept when any of these matches.
    #[serde(default)]
    pub regexps: Vec<String>,
}

/// Which processes a program attaches to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Equal to `/proc/PID/comm` (the kernel truncates it to 15 bytes).
    #[serde(default)]
    pub binary_name: Option<String>,
}

/// Where a program's BPF code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramSource {
    /// A prebuilt object file (absolute path).
    Object(PathBuf),
    /// Inline C (and cflags) to compile.
    Code {
        /// The C source.
        code: String,
        /// Extra compiler flags.
        cflags: Vec<String>,
        /// Line of the config file where the code starts.
        first_line: u64,
    },
}

/// A probe kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// A USDT (statically defined) probe.
    Usdt,
    /// A function entry probe.
    Uprobe,
    /// A function return probe.
    Uretprobe,
}

impl ProbeKind {
    /// The config key that lists probes of this kind.
    pub fn config_key(self) -> &'static str {
        match self {
            ProbeKind::Usdt => "usdt",
            ProbeKind::Uprobe => "uprobes",
            ProbeKind::Uretprobe => "uretprobes",
        }
    }
}

/// One probe of a program: where it attaches and which BPF function runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Probe kind.
    pub kind: ProbeKind,
    /// The spec as written (`provider:name`, `lib:symbol`, ...).
    pub spec: String,
    /// BPF function name in the object.
    pub function: String,
}

impl Program {
    /// The attachment, under either spelling.
    pub fn attachment(&self) -> Option<&Spanned<Attachment>> {
        self.attachment.as_ref().or(self.attachments.as_ref())
    }

    /// Every probe of the program, usdt first, in config order.
    pub fn probes(&self) -> Vec<ProbeConfig> {
        let mut out = Vec::new();
        for (kind, map) in [
            (ProbeKind::Usdt, &self.usdt),
            (ProbeKind::Uprobe, &self.uprobes),
            (ProbeKind::Uretprobe, &self.uretprobes),
        ] {
            if let Some(map) = map {
                for (spec, function) in &map.value {
                    out.push(ProbeConfig {
                        kind,
                        spec: spec.clone(),
                        function: function.clone(),
                    });
                }
            }
        }
        out
    }

    /// Where the code comes from, with `object:` resolved against `config_dir`.
    pub fn source(&self, config_dir: &Path) -> Option<ProgramSource> {
        if let Some(object) = &self.object {
            let path = Path::new(&object.value);
            return Some(ProgramSource::Object(if path.is_absolute() {
                path.to_path_buf()
            } else {
                config_dir.join(path)
            }));
        }
        self.code.as_ref().map(|code| ProgramSource::Code {
            code: code.value.clone(),
            cflags: self
                .cflags
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_default(),
            first_line: code.referenced.line(),
        })
    }
}

impl Config {
    /// Reads, parses and validates a config file; every problem found is returned.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError::new(
                path,
                0,
                0,
                format!("cannot read the config file: {e}"),
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` is used in messages and for relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut config: Config = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ConfigErrors::single(ConfigError::new(path, line, column, clean_yaml_error(&e)))
        })?;
        config.path = path.to_path_buf();
        validate::validate(&config)?;
        Ok(config)
    }

    /// The directory relative `object:` paths resolve against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Warnings for accepted-but-ignored keys (kprobes and friends), one per key.
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for program in &self.programs {
            let p = &program.value;
            for (key, value) in [
                ("kprobes", &p.kprobes),
                ("kretprobes", &p.kretprobes),
                ("tracepoints", &p.tracepoints),
                ("raw_tracepoints", &p.raw_tracepoints),
                ("perf_events", &p.perf_events),
            ] {
                if let Some(v) = value {
                    out.push(ConfigError::new(
                        &self.path,
                        v.referenced.line(),
                        v.referenced.column(),
                        format!(
                            "program {:?}: `{key}` is ignored: this exporter attaches only userspace probes (usdt, uprobes, uretprobes)",
                            p.name
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// serde-saphyr's messages carry their own location suffix and snippet; keep the first line.
fn clean_yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.to_string()
}

#[cfg(test)]
mod tests;
