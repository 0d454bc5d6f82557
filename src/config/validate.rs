//! Meaning checks that need no BPF object: names, label layout, buckets,
//! decoders, regexps, probes, attachment. All problems are collected.

use super::{BucketType, Config, ConfigError, ConfigErrors, Label, Program};
use serde_saphyr::Spanned;
use std::collections::HashSet;

/// Labels the exporter adds itself; a user label may not take them.
const RESERVED_LABELS: &[&str] = &["pid"];

struct Checker<'a> {
    config: &'a Config,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, message: String) {
        self.errors.push(ConfigError::new(
            &self.config.path,
            at.referenced.line(),
            at.referenced.column(),
            message,
        ));
    }
}

/// Checks a parsed config; returns every problem found.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut c = Checker {
        config,
        errors: Vec::new(),
    };
    if config.programs.is_empty() {
        c.errors.push(ConfigError::new(
            &config.path,
            0,
            0,
            "no programs: add at least one entry under `programs:`",
        ));
    }
    let mut program_names = HashSet::new();
    let mut metric_names = HashSet::new();
    for program in &config.programs {
        let p = &program.value;
        if p.name.trim().is_empty() {
            c.err(program, "a program needs a non-empty `name`".into());
        } else if !program_names.insert(p.name.clone()) {
            c.err(
                program,
                format!(
                    "program name {:?} is used twice: names must be unique",
                    p.name
                ),
            );
        }
        check_source(&mut c, program);
        check_probes(&mut c, program);
        check_attachment(&mut c, program);
        check_metrics(&mut c, program, &mut metric_names);
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(c.errors))
    }
}

fn check_source(c: &mut Checker, program: &Spanned<Program>) {
    let p = &program.value;
    match (&p.object, &p.code) {
        (Some(_), Some(code)) => c.err(
            code,
            format!("program {:?}: give either `object:` or `code:`, not both", p.name),
        ),
        (None, None) => c.err(
            program,
            format!(
                "program {:?} has no BPF code: add `object: file.bpf.o` (a clang-built object) or inline `code:`",
                p.name
            ),
        ),
        (Some(object), None) if object.value.trim().is_empty() => {
            c.err(object, format!("program {:?}: `object:` is empty", p.name))
        }
        _ => {}
    }
    if let (Some(cflags), None) = (&p.cflags, &p.code) {
        c.err(
            cflags,
            format!(
                "program {:?}: `cflags:` only applies to inline `code:`",
                p.name
            ),
        );
    }
}

fn check_probes(c: &mut Checker, program: &Spanned<Program>) {
    let p = &program.value;
    let mut any = false;
    for map in [&p.usdt, &p.uprobes, &p.uretprobes].into_iter().flatten() {
        for (spec, function) in &map.value {
            any = true;
            if spec.trim().is_empty() || spec.split(':').any(|part| part.is_empty()) {
                c.err(
                    map,
                    format!(
                        "program {:?}: probe {spec:?} is not a valid probe spec (empty part)",
                        p.name
                    ),
                );
            }
            if !is_c_identifier(function) {
                c.err(
                    map,
                    format!(
                        "program {:?}: probe {spec:?} names BPF function {function:?}, which is not a C identifier",
                        p.name
                    ),
                );
            }
        }
    }
    if !any {
        c.err(
            program,
            format!(
                "program {:?} has no probes: add `usdt:`, `uprobes:` or `uretprobes:` (probe -> BPF function)",
                p.name
            ),
        );
    }
}

fn check_attachment(c: &mut Checker, program: &Spanned<Program>) {
    let p = &program.value;
    if let (Some(_), Some(second)) = (&p.attachment, &p.attachments) {
        c.err(
            second,
            format!(
                "program {:?}: give `attachment:` or `attachments:`, not both",
                p.name
            ),
        );
    }
    match p.attachment() {
        None => c.err(
            program,
            format!(
                "program {:?} has no `attachment:`: say which processes to attach to, e.g. `attachment: {{binary_name: python3.11}}`",
                p.name
            ),
        ),
        Some(a) => match &a.value.binary_name {
            None => c.err(a, format!("program {:?}: `attachment` needs `binary_name`", p.name)),
            Some(name) if name.is_empty() => {
                c.err(a, format!("program {:?}: `binary_name` is empty", p.name))
            }
            _ => {}
        },
    }
}

fn check_metrics(c: &mut Checker, program: &Spanned<Program>, seen: &mut HashSet<String>) {
    let p = &program.value;
    for counter in &p.metrics.counters {
        let m = &counter.value;
        check_metric_name(c, counter, &p.name, &m.name, seen);
        check_labels(c, counter, &m.name, &m.labels);
        if m.table.is_empty() {
            c.err(counter, format!("counter {:?}: `table` is empty", m.name));
        }
    }
    for histogram in &p.metrics.histograms {
        let h = &histogram.value;
        check_metric_name(c, histogram, &p.name, &h.name, seen);
        check_labels(c, histogram, &h.name, &h.labels);
        if h.labels.is_empty() {
            c.err(
                histogram,
                format!(
                    "histogram {:?} needs at least one label: the last label is the bucket slot",
                    h.name
                ),
            );
        }
        // The last (slot) label is consumed into `le`; any other label may not be named `le`.
        if h.labels[..h.labels.len().saturating_sub(1)]
            .iter()
            .any(|l| l.name == "le")
        {
            c.err(
                histogram,
                format!(
                    "histogram {:?}: label name `le` is reserved for buckets",
                    h.name
                ),
            );
        }
        match h.bucket_type {
            BucketType::Fixed => {
                if h.bucket_keys.is_empty() {
                    c.err(
                        histogram,
                        format!(
                            "histogram {:?}: bucket_type fixed needs `bucket_keys`",
                            h.name
                        ),
                    );
                } else if h.bucket_keys.windows(2).any(|w| w[0] >= w[1]) {
                    c.err(
                        histogram,
                        format!(
                            "histogram {:?}: `bucket_keys` must be strictly increasing",
                            h.name
                        ),
                    );
                }
            }
            _ => {
                if h.bucket_min > h.bucket_max {
                    c.err(
                        histogram,
                        format!(
                            "histogram {:?}: bucket_min ({}) is greater than bucket_max ({})",
                            h.name, h.bucket_min, h.bucket_max
                        ),
                    );
                }
                if matches!(h.bucket_type, BucketType::Exp2 | BucketType::Exp2zero)
                    && h.bucket_max > 1023
                {
                    c.err(
                        histogram,
                        format!(
                            "histogram {:?}: bucket_max {} is too large for exp2 (2^k overflows)",
                            h.name, h.bucket_max
                        ),
                    );
                }
            }
        }
        if let Some(m) = h.bucket_multiplier {
            if !(m.is_finite() && m > 0.0) {
                c.err(
                    histogram,
                    format!(
                        "histogram {:?}: bucket_multiplier must be a positive number",
                        h.name
                    ),
                );
            }
        }
    }
}

fn check_metric_name<T>(
    c: &mut Checker,
    at: &Spanned<T>,
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

fn check_labels<T>(c: &mut Checker, at: &Spanned<T>, metric: &str, labels: &[Label]) {
    let mut names = HashSet::new();
    for label in labels {
        if !is_label_name(&label.name) {
            c.err(
                at,
                format!(
                    "metric {metric:?}: label name {:?} is not a valid Prometheus label name",
                    label.name
                ),
            );
        } else if RESERVED_LABELS.contains(&label.name.as_str()) {
            c.err(
                at,
                format!(
                    "metric {metric:?}: label {:?} is added by the exporter; rename yours",
                    label.name
                ),
            );
        } else if !names.insert(label.name.clone()) {
            c.err(
                at,
                format!("metric {metric:?}: label {:?} appears twice", label.name),
            );
        }
        if label.size == 0 {
            c.err(at, format!("metric {metric:?}: label {:?} has size 0: give the number of key bytes it reads", label.name));
        }
        if label.decoders.is_empty() {
            c.err(at, format!("metric {metric:?}: label {:?} has no decoders (e.g. `decoders: [{{name: uint}}]`)", label.name));
        }
        // Building the chain is the one definition of what a valid decoder list is.
        if let Err(e) = crate::metrics::decoders::DecoderChain::new(&label.decoders) {
            c.err(
                at,
                format!("metric {metric:?}: label {:?}: {e}", label.name),
            );
        }
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
