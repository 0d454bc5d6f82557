//! Text-level edits of a config file that keep everything else as written
//! (comments, order, quoting): used by `compile` to swap inline `code:` for
//! `object:`.

use super::Program;
use serde_saphyr::Spanned;

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The 0-based index of the line holding `key:` at or before 0-based line `from`.
fn key_line(lines: &[&str], from: usize, key: &str) -> Option<usize> {
    let prefix = format!("{key}:");
    (0..=from.min(lines.len().saturating_sub(1)))
        .rev()
        .find(|&i| {
            let t = lines[i].trim_start();
            t.starts_with(&prefix)
                || t.strip_prefix("- ")
                    .is_some_and(|rest| rest.trim_start().starts_with(&prefix))
        })
}

/// Removes the `key:` entry whose value starts on 1-based `value_line` (the key line
/// and every line of its value), optionally putting `replacement` (a full line
/// without indentation) in its place at the key's indentation.
fn replace_entry(text: &str, value_line: u64, key: &str, replacement: Option<&str>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = key_line(&lines, (value_line as usize).saturating_sub(1), key) else {
        return text.to_string();
    };
    let first = lines[start];
    // A key after a list dash (`- code: |`) is indented to the key, not the dash.
    let key_indent = indent(first)
        + if first.trim_start().starts_with("- ") {
            2
        } else {
            0
        };
    let mut end = start + 1;
    while end < lines.len() {
        let line = lines[end];
        let blank = line.trim().is_empty();
        let deeper = indent(line) > key_indent;
        let same_level_item = indent(line) == key_indent && line.trim_start().starts_with("- ");
        if !(blank || deeper || same_level_item) {
            break;
        }
        end += 1;
    }
    // Trailing blank lines belong to what follows.
    while end > start + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    if let Some(r) = replacement {
        let dash = if first.trim_start().starts_with("- ") {
            "- "
        } else {
            ""
        };
        out.push(format!("{}{dash}{r}", " ".repeat(indent(first))));
    } else if first.trim_start().starts_with("- ") {
        // Keep the list item alive: the next key becomes its first.
        out.push(format!("{}-", " ".repeat(indent(first))));
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// Replaces a program's `code:` (and `cflags:`) with `object: OBJECT`.
pub fn code_to_object(text: &str, program: &Program, object: &str) -> String {
    let mut text = text.to_string();
    let code_line = program.code.as_ref().map(|c| c.referenced.line());
    let cflags_line = program.cflags.as_ref().map(|c| c.referenced.line());
    // Edit the later entry first so the earlier one's line stays put.
    let mut edits: Vec<(u64, &str)> = code_line
        .map(|l| (l, "code"))
        .into_iter()
        .chain(cflags_line.map(|l| (l, "cflags")))
        .collect();
    edits.sort_by_key(|(line, _)| std::cmp::Reverse(*line));
    for (line, key) in edits {
        let replacement = (key == "code").then(|| format!("object: {object}"));
        text = replace_entry(&text, line, key, replacement.as_deref());
    }
    text
}

/// Replaces a scalar value on its line (the first occurrence there).
pub fn replace_value(text: &str, value: &Spanned<String>, new: &str) -> String {
    let line = value.referenced.line() as usize;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(l) = lines.get_mut(line.saturating_sub(1)) {
        *l = l.replacen(&value.value, new, 1);
    }
    let mut joined = lines.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const CONFIG: &str = "# header comment\nprograms:\n  - name: gc\n    usdt:\n      gc__start: trace\n    attachment:\n      binary_name: gunicorn\n    cflags:\n      - -DX=1\n    code: |\n      int trace(void *ctx) {\n\n        return 0;\n      }\n\n  - name: other  # kept\n    object: other.bpf.o\n    usdt: {a: b}\n    attachment: {binary_name: x}\n";

    #[test]
    fn code_and_cflags_become_object() {
        let config = Config::parse(Path::new("t.yaml"), CONFIG).unwrap();
        let out = code_to_object(CONFIG, &config.programs[0].value, "gc.bpf.o");
        assert_eq!(
            out,
            "# header comment\nprograms:\n  - name: gc\n    usdt:\n      gc__start: trace\n    attachment:\n      binary_name: gunicorn\n    object: gc.bpf.o\n\n  - name: other  # kept\n    object: other.bpf.o\n    usdt: {a: b}\n    attachment: {binary_name: x}\n"
        );
        let again = Config::parse(Path::new("t.yaml"), &out).unwrap();
        assert_eq!(
            again.programs[0].value.object.as_ref().unwrap().value,
            "gc.bpf.o"
        );
        let out = replace_value(
            &out,
            again.programs[1].value.object.as_ref().unwrap(),
            "/abs/other.bpf.o",
        );
        assert!(out.contains("    object: /abs/other.bpf.o\n"));
    }

    #[test]
    fn code_first_in_its_list_item_and_inline() {
        let text = "programs:\n  - code: \"int trace(void *ctx) { return 0; }\"\n    name: gc\n    usdt: {gc__start: trace}\n    attachment: {binary_name: g}\n";
        let config = Config::parse(Path::new("t.yaml"), text).unwrap();
        let out = code_to_object(text, &config.programs[0].value, "gc.bpf.o");
        assert_eq!(out, "programs:\n  - object: gc.bpf.o\n    name: gc\n    usdt: {gc__start: trace}\n    attachment: {binary_name: g}\n");
        Config::parse(Path::new("t.yaml"), &out).unwrap();
    }
}
