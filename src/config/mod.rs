//! The YAML configuration: the original project's `programs:` format, parsed
//! with source locations so that every error names `file:line:column`.
//!
//! This file is the schema: the types a config file is read into. Loading
//! ([`Config::load`], [`Config::parse`], in `load`) only checks shape; `validate`
//! then checks meaning (names, sizes, decoders, regexps, probe specs,
//! selectors) without looking at any BPF object. What the values mean is
//! defined here too, for the stages that use them: probe specs (`probe_spec`),
//! selector fields and their compiled form (`selector`), the decoder registry
//! (`decoder`). Source positions are in `span`, error types in `error`.

mod cpp_name;
mod decoder;
mod error;
mod load;
mod probe_spec;
pub mod rewrite;
mod selector;
mod span;
mod validate;

pub use cpp_name::{is_cpp_name, normalize as normalize_cpp_name, CppName};
pub use decoder::{compile_regexps, DecoderConfigError, DecoderKind};
pub use error::{ConfigError, ConfigErrors};
pub use probe_spec::{go_literal_glob, SymbolPattern, UprobeSpec, UsdtSpec};
pub use selector::{comm_prefix, compile_glob, compile_regex, CompiledSelector};

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use span::SpanTree;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of every exported metric name, as in the original project.
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
    /// Where every key and value of the file is, for precise messages.
    #[serde(skip)]
    spans: SpanTree,
    /// Objects that `object:` names resolve to instead of files (the embedded
    /// default pack): (file name, contents).
    #[serde(skip)]
    pub embedded_objects: Option<&'static [(&'static str, &'static [u8])]>,
}

/// Longest `/proc/PID/comm` the kernel keeps (TASK_COMM_LEN - 1).
pub const COMM_MAX_BYTES: usize = 15;

/// `help:` with nothing after it means an empty HELP text; the key itself is still required.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
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
    /// Which processes get an instance (the original project's README spells it both ways).
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
    /// Kernel-side probe kinds the original also ignores: accepted, warned about, unused.
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
    /// `per_process` (default): a loaded copy per process, series labelled by pid.
    /// `shared`: one loaded copy attached to every matching process; its maps count
    /// for all of them (no pid label), for fleets where a copy each costs too much.
    /// `per_binary`: one per executable, for every process that runs it.
    /// `pid_keyed`: one loaded copy, probes placed once per file, maps keyed
    /// by pid (series by pid, kernel cost independent of the processes).
    #[serde(default)]
    pub instances: Option<Spanned<InstanceMode>>,
    /// Facts about the process added as labels to every series, beside `pid`.
    #[serde(default)]
    pub process_labels: Option<Spanned<Vec<ProcessLabel>>>,
    /// Features of the runtime (its GC, its imports) that builds expose in
    /// different ways, each with its ways of observing it, best first: per
    /// process, the first way whose probes all resolve there is attached.
    #[serde(default)]
    pub sources: Option<Spanned<BTreeMap<String, Spanned<Source>>>>,
}

/// Probe spec -> BPF function name, as written under `usdt:`, `uprobes:` or
/// `uretprobes:`.
pub type ProbeMap = Spanned<BTreeMap<String, String>>;

/// One feature of a runtime and the probe sets that can observe it, best
/// first (USDT, then functions found through `.symtab`, then exported ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The metrics it feeds (names without the `userspace_exporter_` prefix):
    /// a process where no set resolves lacks them, and the landing page and
    /// `check --pid` say why.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// The probe sets, best first.
    pub from: Vec<Spanned<ProbeSet>>,
}

/// Probes that observe a feature together (an entry and its return, a start
/// and a done): attached all or none.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSet {
    /// A short name for the landing page (`usdt`, `symbols`, `exports`);
    /// default: the probe kinds it holds.
    #[serde(default)]
    pub name: Option<String>,
    /// USDT probe spec -> BPF function name.
    #[serde(default)]
    pub usdt: Option<Spanned<BTreeMap<String, String>>>,
    /// uprobe spec -> BPF function name.
    #[serde(default)]
    pub uprobes: Option<Spanned<BTreeMap<String, String>>>,
    /// uretprobe spec -> BPF function name.
    #[serde(default)]
    pub uretprobes: Option<Spanned<BTreeMap<String, String>>>,
}

impl ProbeSet {
    /// Its probe maps, by kind.
    pub fn maps(&self) -> [(ProbeKind, &Option<ProbeMap>); 3] {
        [
            (ProbeKind::Usdt, &self.usdt),
            (ProbeKind::Uprobe, &self.uprobes),
            (ProbeKind::Uretprobe, &self.uretprobes),
        ]
    }

    /// Its name, or the kinds of probe it holds (`usdt`, `uprobes+uretprobes`).
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.maps()
            .iter()
            .filter(|(_, m)| m.as_ref().is_some_and(|m| !m.value.is_empty()))
            .map(|(kind, _)| kind.config_key())
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// How many loaded copies of a program there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceMode {
    /// One per matching process.
    #[default]
    PerProcess,
    /// One for all matching processes.
    Shared,
    /// One per executable, attached for every process that runs it, from its
    /// first instruction (libbpf's pid -1).
    PerBinary,
    /// One for all matching processes, its probes placed once per file for
    /// every process that maps it; the program counts only the processes the
    /// exporter selected (`exporter_pids.bpf.h`) and keys its maps by pid,
    /// which the `pid` decoder names: series by pid, with a kernel cost that
    /// does not grow with the processes.
    PidKeyed,
}

/// A label the exporter derives from the process a series comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLabel {
    /// `/proc/PID/comm`.
    Comm,
    /// The executable path as the process sees it.
    Exe,
    /// The cgroup v2 path.
    Cgroup,
    /// The container id parsed from the cgroup path (docker, containerd, cri-o,
    /// podman), from the cgroup v1 hierarchies when the v2 path has none.
    ContainerId,
    /// The Kubernetes pod UID parsed from the kubelet's pod cgroup, dashed.
    PodUid,
}

impl ProcessLabel {
    /// The label name.
    pub fn name(self) -> &'static str {
        match self {
            ProcessLabel::Comm => "comm",
            ProcessLabel::Exe => "exe",
            ProcessLabel::Cgroup => "cgroup",
            ProcessLabel::ContainerId => "container_id",
            ProcessLabel::PodUid => "pod_uid",
        }
    }
}

/// The metric families a program exports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Counters: one series per map key.
    #[serde(default)]
    pub counters: Vec<Spanned<Counter>>,
    /// Gauges: one series per map key, values that go up and down.
    #[serde(default)]
    pub gauges: Vec<Spanned<Counter>>,
    /// Histograms: the last label of the key is the bucket slot.
    #[serde(default)]
    pub histograms: Vec<Spanned<Histogram>>,
}

impl Metrics {
    /// Counters then gauges, each with its kind (`counter` or `gauge`): the
    /// metrics that read one value per map key.
    pub fn scalars(&self) -> impl Iterator<Item = (&'static str, &Spanned<Counter>)> {
        self.counters
            .iter()
            .map(|c| ("counter", c))
            .chain(self.gauges.iter().map(|g| ("gauge", g)))
    }
}

/// A counter or a gauge: one value per map entry (the whole 8-byte value, or
/// one field of a struct value).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// Name without the `userspace_exporter_` prefix.
    pub name: String,
    /// HELP text (may be empty).
    #[serde(deserialize_with = "null_as_empty")]
    pub help: String,
    /// The map to read.
    pub table: String,
    /// How the map key splits into labels, in key order.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Which part of the map value is the metric's value (default: the whole
    /// value, an 8-byte integer).
    #[serde(default)]
    pub value: Option<ValueField>,
}

/// One field of a map's value: a struct member by name (found in the map's
/// BTF) or by offset and size, with a scale.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueField {
    /// Member of the value struct, by name.
    #[serde(default)]
    pub field: Option<String>,
    /// Byte offset in the value.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Bytes: 1, 2, 4 or 8 (default: the member's size, or 8).
    #[serde(default)]
    pub size: Option<usize>,
    /// Whether the integer is signed (default: as the BTF says, else unsigned
    /// for counters and signed for gauges).
    #[serde(default)]
    pub signed: Option<bool>,
    /// Exported value = raw value x multiplier (`1e-9`: nanoseconds as seconds).
    #[serde(default)]
    pub multiplier: Option<f64>,
}

/// A histogram read from a map keyed by (labels..., bucket slot).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// Name without the `userspace_exporter_` prefix.
    pub name: String,
    /// HELP text (may be empty).
    #[serde(deserialize_with = "null_as_empty")]
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
    /// What a protobuf scrape gets: a native histogram, the classic buckets, or both.
    #[serde(default)]
    pub native: NativeHistogram,
}

/// Whether a histogram is also sent as a Prometheus native histogram (schema 0)
/// to scrapers that ask for the protobuf format; text scrapes always get the
/// classic buckets. Only `exp2` and `exp2zero` have a native form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeHistogram {
    /// Native buckets and the classic ones.
    #[default]
    Both,
    /// Native buckets only (with the count and the sum).
    Only,
    /// Classic buckets only.
    #[serde(rename = "none")]
    Classic,
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

impl Label {
    /// Whether this label is the pid of an `instances: pid_keyed` program's
    /// key: its chain is the `pid` decoder alone.
    pub fn is_pid(&self) -> bool {
        self.decoders.len() == 1 && self.decoders[0].name == "pid"
    }
}

/// Where a map key holds the pid of the process it counts (the label the
/// `pid` decoder reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidKey {
    /// Offset in the key, in bytes.
    pub offset: usize,
    /// 4 or 8 bytes, host order.
    pub size: usize,
}

impl PidKey {
    /// The pid label of `labels`, if one is decoded by `pid`, at its offset.
    pub fn of(labels: &[crate::config::Label]) -> Option<PidKey> {
        let mut offset = 0;
        for label in labels {
            if label.is_pid() {
                return Some(PidKey {
                    offset,
                    size: label.size,
                });
            }
            offset += label.size + label.padding;
        }
        None
    }

    /// The pid in `key`; none for a key too short (or of another size).
    pub fn read(&self, key: &[u8]) -> Option<u32> {
        let bytes = key.get(self.offset..self.offset + self.size)?;
        match self.size {
            4 => Some(u32::from_ne_bytes(bytes.try_into().ok()?)),
            8 => u32::try_from(u64::from_ne_bytes(bytes.try_into().ok()?)).ok(),
            _ => None,
        }
    }
}

/// A decoder in a label's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Decoder name: one of the registry's ([`DecoderKind`]).
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

/// Which processes a program attaches to: one selector mapping, or a list of
/// alternatives. A process is selected when any alternative selects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The alternatives, in file order (one for the mapping form).
    pub alternatives: Vec<AttachmentSelector>,
    /// Whether the alternatives were written as a YAML list.
    pub is_list: bool,
}

impl Attachment {
    /// The usual form: one selector.
    pub fn single(selector: AttachmentSelector) -> Attachment {
        Attachment {
            alternatives: vec![selector],
            is_list: false,
        }
    }
}

/// The selector fields, in the order messages list them.
pub const SELECTOR_FIELDS: &[&str] = &[
    "binary_name",
    "exe_path",
    "cmdline",
    "parent_binary_name",
    "pid",
    "pid_file",
    "cgroup",
    "maps",
];

/// One attachment selector: a process matches when every field given matches
/// and none of the `exclude` selectors matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSelector {
    /// Equal to `/proc/PID/comm` (the kernel truncates it to 15 bytes).
    #[serde(default)]
    pub binary_name: Option<String>,
    /// Glob on the executable's path as the process sees it (`/usr/bin/python3*`, `**/bin/java`).
    #[serde(default)]
    pub exe_path: Option<String>,
    /// Regex (unanchored) on the arguments joined by single spaces.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Equal to the parent's `/proc/PID/comm` (any ancestor's with `any_ancestor`).
    #[serde(default)]
    pub parent_binary_name: Option<String>,
    /// `parent_binary_name` matches any ancestor up to pid 1, not only the parent.
    #[serde(default)]
    pub any_ancestor: bool,
    /// Exactly this process id.
    #[serde(default)]
    pub pid: Option<i64>,
    /// A file holding a process id, read when processes are matched; relative
    /// paths resolve against the config file's directory.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Glob on the cgroup v2 path (the `0::/path` line of `/proc/PID/cgroup`).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Glob on the paths of the files the process maps (its executable and
    /// libraries, `/proc/PID/maps`): any one matching selects it
    /// (`**/libpython3.*.so*`: any process running a shared CPython).
    #[serde(default)]
    pub maps: Option<String>,
    /// Processes this selector leaves out, though they match its fields.
    #[serde(default)]
    pub exclude: Option<Exclusions>,
}

impl AttachmentSelector {
    /// Whether no selector field is given (`any_ancestor` and `exclude` select nothing by themselves).
    pub fn is_empty(&self) -> bool {
        self.binary_name.is_none()
            && self.exe_path.is_none()
            && self.cmdline.is_none()
            && self.parent_binary_name.is_none()
            && self.pid.is_none()
            && self.pid_file.is_none()
            && self.cgroup.is_none()
            && self.maps.is_none()
    }

    /// The exclusions (none when `exclude` is absent).
    pub fn exclusions(&self) -> &[AttachmentSelector] {
        self.exclude
            .as_ref()
            .map_or(&[], |e| e.selectors.as_slice())
    }
}

/// The `exclude:` of a selector: one selector mapping, or a list of them; a
/// process matching any of them is not selected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// The excluding selectors, in file order.
    pub selectors: Vec<AttachmentSelector>,
    /// Whether they were written as a YAML list.
    pub is_list: bool,
}

/// Reads a selector mapping or a list of selector mappings.
struct SelectorsVisitor;

impl<'de> serde::de::Visitor<'de> for SelectorsVisitor {
    type Value = (Vec<AttachmentSelector>, bool);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a selector mapping (e.g. `{binary_name: python3.11}`) or a list of them")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let selector =
            AttachmentSelector::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok((vec![selector], false))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(selector) = seq.next_element::<AttachmentSelector>()? {
            out.push(selector);
        }
        Ok((out, true))
    }
}

impl<'de> Deserialize<'de> for Attachment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (alternatives, is_list) = d.deserialize_any(SelectorsVisitor)?;
        Ok(Attachment {
            alternatives,
            is_list,
        })
    }
}

impl<'de> Deserialize<'de> for Exclusions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (selectors, is_list) = d.deserialize_any(SelectorsVisitor)?;
        Ok(Exclusions { selectors, is_list })
    }
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
        /// Indentation YAML removed from each line of a block scalar (0 for inline strings).
        indent: u64,
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
    /// The source and probe set it belongs to; `None`: attached everywhere.
    pub source: Option<SourceRef>,
}

/// Where a probe of a `sources:` entry sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    /// The source's name (the key under `sources:`).
    pub source: String,
    /// The probe set's place in its `from:` list, 0 for the best.
    pub rank: usize,
}

impl Program {
    /// The attachment, under either spelling.
    pub fn attachment(&self) -> Option<&Spanned<Attachment>> {
        self.attachment.as_ref().or(self.attachments.as_ref())
    }

    /// What the program does, as text, without where it is written: two
    /// programs with equal fingerprints (and equal object bytes) behave the
    /// same, so a reload keeps one that did not change. Covers the name, the
    /// metrics, the probes, the selector, the instance mode, the process labels
    /// and the code, object path and flags; not comments, layout or line numbers.
    pub fn fingerprint(&self) -> String {
        let value = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.value.clone());
        format!(
            "{:?}",
            (
                &self.name,
                self.metrics
                    .scalars()
                    .map(|(kind, c)| (kind, &c.value))
                    .collect::<Vec<_>>(),
                self.metrics
                    .histograms
                    .iter()
                    .map(|h| &h.value)
                    .collect::<Vec<_>>(),
                self.probes(),
                self.attachment().map(|a| &a.value),
                (value(&self.object), value(&self.code)),
                self.cflags.as_ref().map(|c| &c.value),
                self.instances.as_ref().map(|i| i.value),
                self.process_labels.as_ref().map(|l| &l.value),
                self.source_metrics(),
            )
        )
    }

    /// Each source's metrics, by source name.
    pub fn source_metrics(&self) -> BTreeMap<&str, &[String]> {
        self.sources
            .iter()
            .flat_map(|s| s.value.iter())
            .map(|(name, source)| (name.as_str(), source.value.metrics.as_slice()))
            .collect()
    }

    /// Every probe of the program: usdt, then uprobes, then uretprobes; within
    /// a kind sorted by spec (the maps are `BTreeMap`s, so YAML order is not kept).
    pub fn probes(&self) -> Vec<ProbeConfig> {
        let mut out = Vec::new();
        let mut add = |kind: ProbeKind,
                       map: &Option<Spanned<BTreeMap<String, String>>>,
                       source: Option<SourceRef>| {
            if let Some(map) = map {
                for (spec, function) in &map.value {
                    out.push(ProbeConfig {
                        kind,
                        spec: spec.clone(),
                        function: function.clone(),
                        source: source.clone(),
                    });
                }
            }
        };
        for (kind, map) in [
            (ProbeKind::Usdt, &self.usdt),
            (ProbeKind::Uprobe, &self.uprobes),
            (ProbeKind::Uretprobe, &self.uretprobes),
        ] {
            add(kind, map, None);
        }
        // Then each source's sets, best first.
        for (name, source) in self.sources.iter().flat_map(|s| s.value.iter()) {
            for (rank, set) in source.value.from.iter().enumerate() {
                for (kind, map) in set.value.maps() {
                    add(
                        kind,
                        map,
                        Some(SourceRef {
                            source: name.clone(),
                            rank,
                        }),
                    );
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
            indent: if code.value.contains('\n') {
                code.referenced.column().saturating_sub(1)
            } else {
                0
            },
        })
    }
}

impl Config {
    /// The directory relative `object:` paths resolve against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[cfg(test)]
mod tests;
