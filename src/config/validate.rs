//! Meaning checks that need no BPF object: names, label layout, buckets,
//! decoders, regexps, probes, attachment. All problems are collected, each at
//! the most specific key or value the position tree knows (a label's `size`,
//! one regexp, one probe spec), and returned in file order.

use super::probe_spec::spec_problem;
use super::selector::{comm_prefix, Spot};
use super::span::At;
use super::{
    Attachment, AttachmentSelector, BucketType, Config, ConfigError, ConfigErrors,
    DecoderConfigError, Label, NativeHistogram, ProbeKind, Program, COMM_MAX_BYTES,
};
use serde_saphyr::Spanned;
use std::collections::HashSet;

/// Labels the exporter adds itself; a user label may not take them.
const RESERVED_LABELS: &[&str] = &["pid"];

/// Most buckets one histogram may have: every bucket is a series per label set.
pub const MAX_BUCKETS: u64 = 10_000;

/// Largest exp2 slot: 2^k must stay a finite bound.
const MAX_EXP2_SLOT: u64 = 1023;

struct Checker<'a> {
    config: &'a Config,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, at: At<'_>, message: String) {
        self.errors.push(self.config.error_at(at, message));
    }
}

/// Where a typed node is: the tree's position, else the node's own span.
fn place<'a, T>(at: At<'a>, spanned: &Spanned<T>) -> At<'a> {
    at.or_at(spanned.referenced.line(), spanned.referenced.column())
}

/// The key `key` when the mapping has it, else the mapping itself.
fn key_or_self<'a>(at: At<'a>, key: &str) -> At<'a> {
    if at.has(key) {
        at.key(key)
    } else {
        at
    }
}

impl Config {
    /// Warnings about things that are accepted but probably not what was meant:
    /// ignored kernel-side keys (kprobes and friends, one warning per key) and a
    /// `binary_name` or `parent_binary_name` longer than the kernel keeps in
    /// `/proc/PID/comm`.
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let root = self.root();
        for (i, program) in self.programs.iter().enumerate() {
            let p = &program.value;
            let at = root
                .get("programs")
                .index(i)
                .or_at(program.referenced.line(), program.referenced.column());
            for (key, value) in [
                ("kprobes", &p.kprobes),
                ("kretprobes", &p.kretprobes),
                ("tracepoints", &p.tracepoints),
                ("raw_tracepoints", &p.raw_tracepoints),
                ("perf_events", &p.perf_events),
            ] {
                let key_at = match value {
                    _ if at.has(key) => at.key(key),
                    Some(v) => At::root(None).or_at(v.referenced.line(), v.referenced.column()),
                    // `kprobes:` with no value deserializes to None; only the tree knows it is there.
                    None => continue,
                };
                out.push(self.error_at(
                    key_at,
                    format!(
                        "program {:?}: `{key}` is ignored: this exporter attaches only userspace probes (usdt, uprobes, uretprobes)",
                        p.name
                    ),
                ));
            }
            if let Some(attachment) = p.attachment() {
                let key = if p.attachment.is_some() {
                    "attachment"
                } else {
                    "attachments"
                };
                let a_at = at
                    .get(key)
                    .or_at(attachment.referenced.line(), attachment.referenced.column());
                for place in selector_places(key, &attachment.value, a_at) {
                    for (field, name) in [
                        ("binary_name", &place.selector.binary_name),
                        ("parent_binary_name", &place.selector.parent_binary_name),
                    ] {
                        let Some(name) = name.as_deref().filter(|n| n.len() > COMM_MAX_BYTES)
                        else {
                            continue;
                        };
                        out.push(self.error_at(
                            place.at.get(field),
                            format!(
                                "program {:?}: {field} {name:?} is {} bytes, but the kernel keeps only the first {COMM_MAX_BYTES} bytes of a process name (/proc/PID/comm); processes named {:?} will be matched",
                                p.name,
                                name.len(),
                                comm_prefix(name)
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The root of the position tree.
    fn root(&self) -> At<'_> {
        self.spans.root()
    }

    /// A [`ConfigError`] in this file at `at`.
    fn error_at(&self, at: At<'_>, message: String) -> ConfigError {
        ConfigError::new(&self.path, at.line(), at.column(), message)
    }
}

/// Checks a parsed config; returns every problem found, in file order.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut c = Checker {
        config,
        errors: Vec::new(),
    };
    let root = config.root();
    if config.programs.is_empty() {
        c.err(
            root.key("programs"),
            "no programs: add at least one entry under `programs:`".into(),
        );
    }
    let mut program_names = HashSet::new();
    let mut metric_names = HashSet::new();
    for (i, program) in config.programs.iter().enumerate() {
        let p = &program.value;
        let at = place(root.get("programs").index(i), program);
        if p.name.trim().is_empty() {
            c.err(at.get("name"), "a program needs a non-empty `name`".into());
        } else if !program_names.insert(p.name.clone()) {
            c.err(
                at.get("name"),
                format!(
                    "program name {:?} is used twice: names must be unique",
                    p.name
                ),
            );
        }
        check_source(&mut c, p, at);
        check_probes(&mut c, p, at);
        check_attachment(&mut c, p, at);
        check_metrics(&mut c, p, at, &mut metric_names);
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        // Stable: problems at one place keep the order they were found in.
        c.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(c.errors))
    }
}

fn check_source(c: &mut Checker, p: &Program, at: At<'_>) {
    match (&p.object, &p.code) {
        (Some(_), Some(code)) => c.err(
            place(at.key("code"), code),
            format!("program {:?}: give either `object:` or `code:`, not both", p.name),
        ),
        (None, None) => c.err(
            at,
            format!(
                "program {:?} has no BPF code: add `object: file.bpf.o` (a clang-built object) or inline `code:`",
                p.name
            ),
        ),
        (Some(object), None) if object.value.trim().is_empty() => c.err(
            place(at.get("object"), object),
            format!("program {:?}: `object:` is empty", p.name),
        ),
        (None, Some(code)) if code.value.trim().is_empty() => c.err(
            place(at.key("code"), code),
            format!("program {:?}: `code:` is empty", p.name),
        ),
        _ => {}
    }
    if let (Some(cflags), None) = (&p.cflags, &p.code) {
        c.err(
            place(at.key("cflags"), cflags),
            format!(
                "program {:?}: `cflags:` only applies to inline `code:`",
                p.name
            ),
        );
    }
}

/// Checks one list of probes (`usdt:`, `uprobes:` or `uretprobes:` under
/// `at`); returns whether it has any. `whose` names where it is, for messages.
fn check_probe_map(
    c: &mut Checker,
    whose: &str,
    kind: ProbeKind,
    map: &Spanned<std::collections::BTreeMap<String, String>>,
    at: At<'_>,
) -> bool {
    let key = kind.config_key();
    let map_at = place(at.get(key), map);
    for (spec, function) in &map.value {
        if let Some(problem) = spec_problem(kind, spec) {
            c.err(
                map_at.key(spec),
                format!("{whose}: {key} probe {spec:?} {problem}"),
            );
        }
        if !is_c_identifier(function) {
            c.err(
                map_at.get(spec),
                format!(
                    "{whose}: {key} probe {spec:?} names BPF function {function:?}, which is not a C identifier"
                ),
            );
        }
    }
    !map.value.is_empty()
}

fn check_probes(c: &mut Checker, p: &Program, at: At<'_>) {
    let mut any = false;
    let mut first_key = None;
    let whose = format!("program {:?}", p.name);
    for (kind, map) in [
        (ProbeKind::Usdt, &p.usdt),
        (ProbeKind::Uprobe, &p.uprobes),
        (ProbeKind::Uretprobe, &p.uretprobes),
    ] {
        let Some(map) = map else { continue };
        first_key.get_or_insert(place(at.key(kind.config_key()), map));
        any |= check_probe_map(c, &whose, kind, map, at);
    }
    if let Some(sources) = &p.sources {
        any |= check_sources(c, p, sources, at);
    }
    if !any {
        c.err(
            first_key.unwrap_or(at),
            format!(
                "program {:?} has no probes: add `usdt:`, `uprobes:` or `uretprobes:` (probe -> BPF function), or `sources:`",
                p.name
            ),
        );
    }
}

/// Checks `sources:`: each source lists probe sets, each set has probes, and
/// each metric named is one of the program's and fed by one source only.
/// Returns whether any set has probes.
fn check_sources(
    c: &mut Checker,
    p: &Program,
    sources: &Spanned<std::collections::BTreeMap<String, Spanned<crate::config::Source>>>,
    at: At<'_>,
) -> bool {
    let at = place(at.get("sources"), sources);
    let mut any = false;
    let defined: std::collections::BTreeSet<&str> = p
        .metrics
        .scalars()
        .map(|(_, m)| m.value.name.as_str())
        .chain(p.metrics.histograms.iter().map(|h| h.value.name.as_str()))
        .collect();
    let mut fed_by: std::collections::BTreeMap<&str, &str> = Default::default();
    for (name, source) in &sources.value {
        let source_at = place(at.get(name), source);
        let whose = format!("program {:?}, source {name:?}", p.name);
        if source.value.from.is_empty() {
            c.err(
                source_at,
                format!("{whose} has no probe sets: list them under `from:`, best first"),
            );
        }
        for (i, set) in source.value.from.iter().enumerate() {
            let set_at = place(source_at.get("from").index(i), set);
            let mut has = false;
            for (kind, map) in set.value.maps() {
                if let Some(map) = map {
                    has |= check_probe_map(c, &whose, kind, map, set_at);
                }
            }
            if !has {
                c.err(
                    set_at,
                    format!("{whose}: probe set {} has no probes: give `usdt:`, `uprobes:` or `uretprobes:`", i + 1),
                );
            }
            any |= has;
        }
        for (i, metric) in source.value.metrics.iter().enumerate() {
            let metric_at = source_at.get("metrics").index(i);
            if !defined.contains(metric.as_str()) {
                c.err(
                    metric_at,
                    format!(
                        "{whose} names metric {metric:?}, which the program does not define; its metrics: {}",
                        defined.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            } else if let Some(other) = fed_by.insert(metric.as_str(), name.as_str()) {
                c.err(
                    metric_at,
                    format!("{whose} names metric {metric:?}, which source {other:?} already feeds: a metric has one source"),
                );
            }
        }
    }
    any
}

fn check_attachment(c: &mut Checker, p: &Program, at: At<'_>) {
    if let (Some(_), Some(second)) = (&p.attachment, &p.attachments) {
        c.err(
            place(at.key("attachments"), second),
            format!(
                "program {:?}: give `attachment:` or `attachments:`, not both",
                p.name
            ),
        );
    }
    let key = if p.attachment.is_some() || (p.attachments.is_none() && at.has("attachment")) {
        "attachment"
    } else {
        "attachments"
    };
    let Some(a) = p.attachment() else {
        if at.has(key) {
            // `attachment:` written without a value.
            c.err(
                at.key(key),
                format!(
                    "program {:?}: `{key}` is empty: give `binary_name`, e.g. `{key}: {{binary_name: python3.11}}`",
                    p.name
                ),
            );
        } else {
            c.err(
                at,
                format!(
                    "program {:?} has no `attachment:`: say which processes to attach to, e.g. `attachment: {{binary_name: python3.11}}`",
                    p.name
                ),
            );
        }
        return;
    };
    if a.value.alternatives.is_empty() {
        c.err(
            place(at.key(key), a),
            format!(
                "program {:?}: `{key}` is an empty list: give at least one selector, e.g. `{key}: [{{binary_name: python3.11}}]`",
                p.name
            ),
        );
    }
    let a_at = place(at.get(key), a);
    for s in selector_places(key, &a.value, a_at) {
        check_selector(c, &p.name, &s);
    }
}

/// One selector of an attachment (an alternative or an exclusion), where it
/// is, and how messages name it.
struct SelectorPlace<'a> {
    /// The selector.
    selector: &'a AttachmentSelector,
    /// Its mapping in the file.
    at: At<'a>,
    /// `attachment`, `attachment #2`, `attachment exclude`, `attachment #2 exclude #1`.
    label: String,
    /// Whether it is an `exclude:` entry.
    is_exclusion: bool,
}

/// Every selector of `attachment` (written under `key`, at `at`): each
/// alternative followed by its exclusions.
fn selector_places<'a>(
    key: &str,
    attachment: &'a Attachment,
    at: At<'a>,
) -> Vec<SelectorPlace<'a>> {
    let mut out = Vec::new();
    for (i, alternative) in attachment.alternatives.iter().enumerate() {
        let (alt_at, label) = if attachment.is_list {
            (at.index(i), format!("{key} #{}", i + 1))
        } else {
            (at, key.to_string())
        };
        out.push(SelectorPlace {
            selector: alternative,
            at: alt_at,
            label: label.clone(),
            is_exclusion: false,
        });
        let Some(exclude) = &alternative.exclude else {
            continue;
        };
        let ex_at = alt_at.get("exclude");
        for (j, exclusion) in exclude.selectors.iter().enumerate() {
            let (at, label) = if exclude.is_list {
                (ex_at.index(j), format!("{label} exclude #{}", j + 1))
            } else {
                (ex_at, format!("{label} exclude"))
            };
            out.push(SelectorPlace {
                selector: exclusion,
                at,
                label,
                is_exclusion: true,
            });
        }
    }
    out
}

/// Reports one selector's problems (a name longer than the kernel's comm is
/// only a warning, in [`Config::warnings`]).
fn check_selector(c: &mut Checker, program: &str, s: &SelectorPlace<'_>) {
    for problem in s.selector.problems(s.is_exclusion) {
        let at = match problem.spot {
            Spot::Mapping => s.at,
            Spot::Value(field) => s.at.get(field),
            Spot::Key(key) => key_or_self(s.at, key),
        };
        c.err(
            at,
            format!("program {program:?}: {} {}", s.label, problem.message),
        );
    }
}

fn check_metrics(c: &mut Checker, p: &Program, at: At<'_>, seen: &mut HashSet<String>) {
    let metrics_at = at.get("metrics");
    let per_binary = p
        .instances
        .as_ref()
        .is_some_and(|m| m.value == crate::config::InstanceMode::PerBinary);
    let pid_keyed = p
        .instances
        .as_ref()
        .is_some_and(|m| m.value == crate::config::InstanceMode::PidKeyed);
    if let Some(labels) = p.process_labels.as_ref().filter(|_| per_binary) {
        c.err(
            place(at.get("process_labels"), labels),
            format!("program {:?}: `process_labels` need one process per instance, but `instances: per_binary` counts every process of an executable in one instance; its series carry `exe` (put the pid or other facts in the map key from the BPF code)", p.name),
        );
    }
    // A per-binary instance's series carry `exe` instead.
    let process_labels: Vec<&str> = if per_binary {
        vec!["exe"]
    } else {
        p.process_labels
            .iter()
            .flat_map(|l| l.value.iter().map(|x| x.name()))
            .collect()
    };
    for (list, kind, metrics) in [
        ("counters", "counter", &p.metrics.counters),
        ("gauges", "gauge", &p.metrics.gauges),
    ] {
        for (j, counter) in metrics.iter().enumerate() {
            let m = &counter.value;
            let m_at = place(metrics_at.get(list).index(j), counter);
            check_metric_name(c, m_at.get("name"), &p.name, &m.name, seen);
            if m.table.is_empty() {
                c.err(
                    m_at.get("table"),
                    format!("{kind} {:?}: `table` is empty", m.name),
                );
            }
            check_labels(c, m_at, &m.name, &m.labels, &process_labels);
            check_pid_label(c, m_at, &p.name, &m.name, &m.labels, pid_keyed, false);
            if let Some(value) = &m.value {
                check_value_field(c, m_at.get("value"), kind, &m.name, value);
            }
        }
    }
    for (j, histogram) in p.metrics.histograms.iter().enumerate() {
        let h = &histogram.value;
        let h_at = place(metrics_at.get("histograms").index(j), histogram);
        check_metric_name(c, h_at.get("name"), &p.name, &h.name, seen);
        if h.table.is_empty() {
            c.err(
                h_at.get("table"),
                format!("histogram {:?}: `table` is empty", h.name),
            );
        }
        check_labels(c, h_at, &h.name, &h.labels, &process_labels);
        check_pid_label(c, h_at, &p.name, &h.name, &h.labels, pid_keyed, true);
        if h.labels.is_empty() {
            c.err(
                key_or_self(h_at, "labels"),
                format!(
                    "histogram {:?} needs at least one label: the last label is the bucket slot",
                    h.name
                ),
            );
        }
        // The last (slot) label is consumed into `le`; any other label may not be named `le`.
        for (k, label) in h.labels[..h.labels.len().saturating_sub(1)]
            .iter()
            .enumerate()
        {
            if label.name == "le" {
                c.err(
                    h_at.get("labels").index(k).get("name"),
                    format!(
                        "histogram {:?}: label name `le` is reserved for buckets",
                        h.name
                    ),
                );
            }
        }
        check_buckets(c, h, h_at);
        if h.native == NativeHistogram::Only
            && !matches!(h.bucket_type, BucketType::Exp2 | BucketType::Exp2zero)
        {
            c.err(
                h_at.get("native"),
                format!(
                    "histogram {:?}: `native: only` needs bucket_type exp2 or exp2zero; other bucket types have no native form (use `native: both` or leave it out)",
                    h.name
                ),
            );
        }
        if let Some(m) = h.bucket_multiplier {
            if !(m.is_finite() && m > 0.0) {
                c.err(
                    h_at.get("bucket_multiplier"),
                    format!(
                        "histogram {:?}: bucket_multiplier must be a positive number, not {m}",
                        h.name
                    ),
                );
            }
        }
    }
}

/// A value field names a member or an offset, an integer size and a usable scale.
fn check_value_field(c: &mut Checker, at: At<'_>, kind: &str, name: &str, v: &super::ValueField) {
    if v.field.is_none() && v.offset.is_none() {
        c.err(
            at,
            format!("{kind} {name:?}: `value` needs `field` (a member of the value struct) or `offset` (and `size`)"),
        );
    }
    if let Some(size) = v.size.filter(|s| ![1, 2, 4, 8].contains(s)) {
        c.err(
            at.get("size"),
            format!("{kind} {name:?}: value size {size} is not an integer size; use 1, 2, 4 or 8"),
        );
    }
    if let Some(m) = v.multiplier.filter(|m| !(m.is_finite() && *m != 0.0)) {
        c.err(
            at.get("multiplier"),
            format!("{kind} {name:?}: value multiplier must be a finite, non-zero number, not {m}"),
        );
    }
}

fn check_buckets(c: &mut Checker, h: &super::Histogram, h_at: At<'_>) {
    match h.bucket_type {
        BucketType::Fixed => {
            let keys_at = h_at.get("bucket_keys");
            if h.bucket_keys.is_empty() {
                c.err(
                    if h_at.has("bucket_keys") {
                        h_at.key("bucket_keys")
                    } else {
                        h_at.get("bucket_type")
                    },
                    format!(
                        "histogram {:?}: bucket_type fixed needs `bucket_keys` (the slot keys, increasing)",
                        h.name
                    ),
                );
            } else if h.bucket_keys.len() as u64 > MAX_BUCKETS {
                c.err(
                    h_at.key("bucket_keys"),
                    format!(
                        "histogram {:?}: {} bucket_keys; at most {MAX_BUCKETS} buckets are allowed (each bucket is a series per label set)",
                        h.name,
                        h.bucket_keys.len()
                    ),
                );
            } else if let Some(i) = h.bucket_keys.windows(2).position(|w| w[0] >= w[1]) {
                c.err(
                    keys_at.index(i + 1),
                    format!(
                        "histogram {:?}: `bucket_keys` must be strictly increasing, but {} follows {}",
                        h.name,
                        h.bucket_keys[i + 1],
                        h.bucket_keys[i]
                    ),
                );
            }
        }
        BucketType::Exp2 | BucketType::Exp2zero | BucketType::Linear => {
            if h.bucket_min > h.bucket_max {
                c.err(
                    h_at.get(if h_at.has("bucket_min") {
                        "bucket_min"
                    } else {
                        "bucket_max"
                    }),
                    format!(
                        "histogram {:?}: bucket_min ({}) is greater than bucket_max ({})",
                        h.name, h.bucket_min, h.bucket_max
                    ),
                );
            } else if h.bucket_type != BucketType::Linear && h.bucket_max > MAX_EXP2_SLOT {
                c.err(
                    h_at.get("bucket_max"),
                    format!(
                        "histogram {:?}: bucket_max {} is too large for exp2 (2^k overflows); at most {MAX_EXP2_SLOT}",
                        h.name, h.bucket_max
                    ),
                );
            } else if h.bucket_type == BucketType::Linear
                && h.bucket_max - h.bucket_min >= MAX_BUCKETS
            {
                c.err(
                    h_at.get("bucket_max"),
                    format!(
                        "histogram {:?}: linear buckets {}..={} are {} buckets; at most {MAX_BUCKETS} are allowed (each bucket is a series per label set)",
                        h.name,
                        h.bucket_min,
                        h.bucket_max,
                        (h.bucket_max - h.bucket_min).saturating_add(1)
                    ),
                );
            }
        }
    }
}

fn check_metric_name(
    c: &mut Checker,
    at: At<'_>,
    program: &str,
    name: &str,
    seen: &mut HashSet<String>,
) {
    if !is_metric_name(name) {
        c.err(
            at,
            format!("program {program:?}: metric name {name:?} is not a valid Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
        );
    } else if !seen.insert(name.to_string()) {
        c.err(at, format!("program {program:?}: metric {name:?} is defined twice: metric names must be unique"));
    }
}

fn check_labels(
    c: &mut Checker,
    metric_at: At<'_>,
    metric: &str,
    labels: &[Label],
    process_labels: &[&str],
) {
    let labels_at = metric_at.get("labels");
    let mut names = HashSet::new();
    for (k, label) in labels.iter().enumerate() {
        let l_at = labels_at.index(k);
        if !is_label_name(&label.name) {
            c.err(
                l_at.get("name"),
                format!(
                    "metric {metric:?}: label name {:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                    label.name
                ),
            );
        } else if RESERVED_LABELS.contains(&label.name.as_str()) && !label.is_pid() {
            c.err(
                l_at.get("name"),
                format!(
                    "metric {metric:?}: label {:?} is added by the exporter; rename yours",
                    label.name
                ),
            );
        } else if process_labels.contains(&label.name.as_str()) {
            c.err(
                l_at.get("name"),
                format!("metric {metric:?}: label {:?} is also in this program's `process_labels`; rename one", label.name),
            );
        } else if !names.insert(label.name.clone()) {
            c.err(
                l_at.get("name"),
                format!("metric {metric:?}: label {:?} appears twice", label.name),
            );
        }
        if label.size == 0 {
            c.err(l_at.get("size"), format!("metric {metric:?}: label {:?} has size 0: give the number of key bytes it reads", label.name));
        }
        if label.decoders.is_empty() {
            c.err(key_or_self(l_at, "decoders"), format!("metric {metric:?}: label {:?} has no decoders (e.g. `decoders: [{{name: uint}}]`)", label.name));
        }
        for (d, decoder) in label.decoders.iter().enumerate() {
            let d_at = l_at.get("decoders").index(d);
            // The registry's check is the one definition of a valid decoder config.
            let Err(e) = decoder.kind() else {
                continue;
            };
            let where_ = match &e {
                DecoderConfigError::Unknown { .. } => d_at.get("name"),
                DecoderConfigError::EmptyStaticMap => key_or_self(d_at, "static_map"),
                DecoderConfigError::NoRegexps => key_or_self(d_at, "regexps"),
                DecoderConfigError::BadRegex { pattern, .. } => {
                    match decoder.regexps.iter().position(|r| r == pattern) {
                        Some(i) => d_at.get("regexps").index(i),
                        None => key_or_self(d_at, "regexps"),
                    }
                }
                DecoderConfigError::Label { .. } => d_at,
            };
            c.err(
                where_,
                format!("metric {metric:?}: label {:?}: {e}", label.name),
            );
        }
    }
}

/// The `pid` decoder belongs to `instances: pid_keyed` programs, whose every
/// metric has one such label, named `pid`, of 4 or 8 bytes (and, in a
/// histogram, not the slot).
fn check_pid_label(
    c: &mut Checker,
    metric_at: At<'_>,
    program: &str,
    metric: &str,
    labels: &[Label],
    pid_keyed: bool,
    histogram: bool,
) {
    let labels_at = metric_at.get("labels");
    let mut found = 0;
    for (k, label) in labels.iter().enumerate() {
        let Some(d) = label.decoders.iter().position(|d| d.name == "pid") else {
            continue;
        };
        let l_at = labels_at.index(k);
        if !pid_keyed {
            c.err(l_at.get("decoders").index(d), format!("metric {metric:?}: label {:?}: decoder `pid` names the pid an `instances: pid_keyed` program puts in its map keys; program {program:?} is not one (use `uint` for a number, or set `instances: pid_keyed`)", label.name));
            continue;
        }
        found += 1;
        if !label.is_pid() {
            c.err(l_at.get("decoders"), format!("metric {metric:?}: label {:?}: decoder `pid` stands alone (`decoders: [{{name: pid}}]`)", label.name));
        } else if label.name != "pid" {
            c.err(
                l_at.get("name"),
                format!(
                    "metric {metric:?}: the label decoded by `pid` is named `pid`, not {:?}",
                    label.name
                ),
            );
        }
        if label.size != 4 && label.size != 8 {
            c.err(l_at.get("size"), format!("metric {metric:?}: label {:?}: a pid is 4 or 8 bytes (exporter_pid() stored as __u32 or __u64), not {}", label.name, label.size));
        }
        if histogram && k + 1 == labels.len() {
            c.err(l_at, format!("metric {metric:?}: the last label of a histogram is its bucket slot, not the pid"));
        }
    }
    if pid_keyed && found == 0 {
        c.err(key_or_self(metric_at, "labels"), format!("metric {metric:?}: program {program:?} has `instances: pid_keyed`, so its maps are keyed by pid: add the label `{{name: pid, size: 8, decoders: [{{name: pid}}]}}` where the key holds exporter_pid()"));
    } else if found > 1 {
        c.err(
            key_or_self(metric_at, "labels"),
            format!("metric {metric:?}: {found} labels are decoded by `pid`; a key holds one pid"),
        );
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn is_c_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
