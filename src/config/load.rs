//! Loading a config file: the YAML read into the schema (shape only), then
//! validated ([`super::validate`]); a YAML or shape error is rendered as one
//! readable line at the most specific position.

use super::span::{Node, SpanTree};
use super::{validate, Config, ConfigError, ConfigErrors};
use std::path::{Path, PathBuf};

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
        let mut config: Config = serde_saphyr::from_str(text)
            .map_err(|e| ConfigErrors::single(yaml_error(path, text, &e)))?;
        config.path = path.to_path_buf();
        config.spans = SpanTree::parse(text);
        validate::validate(&config)?;
        config.resolve_pid_files();
        Ok(config)
    }

    /// Makes relative `pid_file:` paths relative to the config file's directory,
    /// as `object:` paths are.
    fn resolve_pid_files(&mut self) {
        let dir = self.dir();
        for program in &mut self.programs {
            let p = &mut program.value;
            for attachment in [&mut p.attachment, &mut p.attachments]
                .into_iter()
                .flatten()
            {
                for alternative in &mut attachment.value.alternatives {
                    let exclusions = alternative
                        .exclude
                        .as_mut()
                        .map_or(&mut [][..], |e| e.selectors.as_mut_slice());
                    for selector in exclusions {
                        resolve_against(&dir, &mut selector.pid_file);
                    }
                    resolve_against(&dir, &mut alternative.pid_file);
                }
            }
        }
    }
}

/// `path`, when relative, joined to `dir`.
fn resolve_against(dir: &Path, path: &mut Option<PathBuf>) {
    if let Some(p) = path.as_mut().filter(|p| p.is_relative()) {
        *p = dir.join(&*p);
    }
}

/// Turns a serde-saphyr error into one readable line at the most specific
/// position: its own location, except that a missing field points at the
/// mapping that lacks it. serde-saphyr's rendering repeats the location and
/// adds a snippet; we rebuild the message from the error's structure instead,
/// naming the key and what it expects, using a type-free parse of the text.
fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    use serde_saphyr::Error as E;
    let (mut line, mut column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let tree = Node::parse(text);
    let mut inner = e.without_snippet();
    while let E::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    // The type errors of hand-written deserializers (an attachment: one selector
    // or a list of them) come placed at the key whose value is wrong; point at
    // the value instead when it is on the same line, so the key gets named.
    if matches!(
        inner,
        E::SerdeInvalidType { .. } | E::SerdeInvalidValue { .. }
    ) {
        if let Some(value_column) = value_after_key(text, line, column) {
            if tree
                .as_ref()
                .and_then(|t| t.entry_with_value_at(line, value_column))
                .is_some()
            {
                column = value_column;
            }
        }
    }
    // "`size`: " when the failing value is a mapping value, and what was found there.
    let value = tree.as_ref().and_then(|t| t.node_at(line, column));
    let key = tree
        .as_ref()
        .and_then(|t| t.entry_with_value_at(line, column))
        .and_then(|(k, _)| k.as_str())
        .or_else(|| key_before(text, line, column))
        .map(|k| format!("`{k}`: "))
        .unwrap_or_default();
    let found = value
        .map(|v| format!(", found {}", v.describe()))
        .unwrap_or_default();
    let message = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => format!("unknown field `{field}`, expected {}", one_of(expected)),
        E::SerdeMissingField { field, .. } => {
            match tree
                .as_ref()
                .and_then(|t| missing_field_owner(t, field, (line, column)))
            {
                Some((what, node)) => {
                    (line, column) = node.position();
                    let name = node
                        .get("name")
                        .and_then(Node::as_str)
                        .map(|n| format!(" {n:?}"))
                        .unwrap_or_default();
                    format!("{what}{name} is missing required field `{field}`")
                }
                None => format!("missing required field `{field}`"),
            }
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "{key}unknown value `{variant}`, expected {}",
            one_of(expected)
        ),
        E::InvalidScalar { ty, .. } => format!("{key}expected {}{found}", describe_type(ty)),
        E::Unexpected { expected, .. } => {
            format!("{key}expected {}{found}", describe_expected(expected))
        }
        E::NullIntoString { .. } => format!("{key}expected a string, found nothing (null)"),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!("{key}expected {expected}, found {unexpected}"),
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("duplicate key `{k}`: a key may appear only once in a mapping")
        }
        E::Eof { .. }
            if text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) =>
        {
            "the config is empty: expected a `programs:` list".to_string()
        }
        other => {
            use serde_saphyr::MessageFormatter as _;
            // Keep the library's text, on one line and without a second location.
            let message = serde_saphyr::DefaultMessageFormatter.format_message(other);
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            match other {
                // The YAML parser's own messages: say what kind of problem they are.
                E::ExternalMessage { .. } => format!("{message} (YAML syntax error)"),
                _ => message,
            }
        }
    };
    ConfigError::new(path, line, column, message)
}

/// The key written just before `line:column` on that line (`size: abc` -> `size`),
/// for errors in text the type-free parse could not read either.
fn key_before(text: &str, line: u64, column: u64) -> Option<&str> {
    let source = text
        .lines()
        .nth(usize::try_from(line.checked_sub(1)?).ok()?)?;
    let end = source
        .char_indices()
        .nth(usize::try_from(column.checked_sub(1)?).ok()?)
        .map_or(source.len(), |(i, _)| i);
    let before = source[..end].trim_end().strip_suffix(':')?;
    let start = before
        .char_indices()
        .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    Some(&before[start..]).filter(|k| !k.is_empty())
}

/// When a plain `key:` starts at `line:column` with its value on the same line,
/// the column where that value starts.
fn value_after_key(text: &str, line: u64, column: u64) -> Option<u64> {
    let source = text
        .lines()
        .nth(usize::try_from(line.checked_sub(1)?).ok()?)?;
    let skip = usize::try_from(column.checked_sub(1)?).ok()?;
    let rest: Vec<char> = source.chars().skip(skip).collect();
    let key_len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    let mut i = key_len;
    if key_len == 0 || rest.get(i) != Some(&':') {
        return None;
    }
    i += 1;
    let spaces = rest[i..].iter().take_while(|c| **c == ' ').count();
    i += spaces;
    match rest.get(i) {
        Some('#') | None => None,
        Some(_) if spaces == 0 => None,
        Some(_) => Some(column + i as u64),
    }
}

/// "`a`" or "one of `a`, `b`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "no fields here".to_string(),
        [one] => one.clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// A scalar type's name as a user would say it.
fn describe_type(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "bool" => "`true` or `false`".into(),
        "char" => "a single character".into(),
        other => other.into(),
    }
}

/// serde-saphyr's structural expectations as a user would say them.
fn describe_expected(expected: &str) -> String {
    match expected {
        "sequence start" => "a list".into(),
        "mapping start" => "a mapping (`key: value`)".into(),
        "string scalar" => "a string".into(),
        other => other.into(),
    }
}

/// Which mapping misses required `field`: walks the schema's mappings that
/// require it and picks the last one that starts before the error position
/// (serde reports a missing field when the mapping ends, after its children).
/// Returns what the mapping is ("counter") and its node.
fn missing_field_owner<'a>(
    root: &'a Node,
    field: &str,
    error_at: (u64, u64),
) -> Option<(&'static str, &'a Node)> {
    // What each kind of mapping requires (the fields without `#[serde(default)]`).
    const PROGRAM: &[&str] = &["name"];
    const COUNTER: &[&str] = &["name", "help", "table"];
    const HISTOGRAM: &[&str] = &["name", "help", "table", "bucket_type"];
    const LABEL: &[&str] = &["name", "size"];
    const DECODER: &[&str] = &["name"];
    let mut candidates: Vec<(&'static str, &[&str], &Node)> = Vec::new();
    let seq = |n: Option<&'a Node>| n.map(Node::items).unwrap_or(&[]);
    for program in seq(root.get("programs")) {
        candidates.push(("program", PROGRAM, program));
        let metrics = program.get("metrics");
        for (what, key, required) in [
            ("counter", "counters", COUNTER),
            ("histogram", "histograms", HISTOGRAM),
        ] {
            for metric in seq(metrics.and_then(|m| m.get(key))) {
                candidates.push((what, required, metric));
                for label in seq(metric.get("labels")) {
                    candidates.push(("label", LABEL, label));
                    for decoder in seq(label.get("decoders")) {
                        candidates.push(("decoder", DECODER, decoder));
                    }
                }
            }
        }
    }
    candidates
        .into_iter()
        .filter(|(_, required, n)| {
            required.contains(&field)
                && n.is_map()
                && n.get(field).is_none()
                && n.position() <= error_at
        })
        .map(|(what, _, n)| (what, n))
        .max_by_key(|(_, n)| n.position())
}
