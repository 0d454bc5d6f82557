//! The rewriting passes: each finds its constructs in the tokens and records
//! byte-range edits that keep every newline of the range; [`apply`] makes them.

use super::lexer::Kind;
use super::source::Source;
use super::{
    ProbeSection, Table, TranslateError, BPF_TABLE_TYPES, STACK_TRACES, TABLE_MACROS,
    TABLE_METHODS, UNSUPPORTED_MACROS,
};
use std::collections::HashSet;
use std::ops::Range;

/// Finds table declarations: records their names, rewrites `BPF_TABLE`,
/// refuses unsupported kinds.
pub(super) fn declarations(
    src: &Source,
    edits: &mut Vec<Edit>,
) -> Result<Vec<Table>, TranslateError> {
    let mut tables: Vec<Table> = Vec::new();
    for i in 0..src.toks.len() {
        let tok = src.toks[i];
        if tok.kind != Kind::Ident || !src.punct_at(i + 1, "(") || src.defines_macro(i) {
            continue;
        }
        let macro_name = src.text(i);
        if let Some((_, reason)) = UNSUPPORTED_MACROS.iter().find(|(m, _)| *m == macro_name) {
            return Err(TranslateError::new(
                tok.line,
                format!("`{macro_name}` is not supported by this exporter: {reason}"),
            ));
        }
        let name_arg = if macro_name == "BPF_TABLE" {
            3
        } else if TABLE_MACROS.contains(&macro_name) {
            0
        } else {
            continue;
        };
        let Some(close) = src.matching(i + 1) else {
            continue;
        };
        let args = src.args(i + 1, close);
        if macro_name == "BPF_TABLE" {
            table_type(src, i, &args, edits)?;
        }
        let Some(arg) = args.get(name_arg) else {
            continue;
        };
        if arg.len() != 1 || src.toks[arg.start].kind != Kind::Ident {
            continue;
        }
        let name = src.text(arg.start);
        if src.is_macro_param(arg.start) || tables.iter().any(|t| t.name == name) {
            continue;
        }
        tables.push(Table {
            name: name.to_string(),
            line: tok.line,
        });
    }
    Ok(tables)
}

/// Checks `BPF_TABLE`'s type string and rewrites `BPF_TABLE("t", ` to `BPF_TABLE_t(`.
fn table_type(
    src: &Source,
    at: usize,
    args: &[Range<usize>],
    edits: &mut Vec<Edit>,
) -> Result<(), TranslateError> {
    let line = src.toks[at].line;
    let Some(first) = args
        .first()
        .filter(|a| a.len() == 1 && src.toks[a.start].kind == Kind::Str)
    else {
        return Err(TranslateError::new(
            line,
            "BPF_TABLE's first argument must be a string naming the table type, like \"hash\"",
        ));
    };
    let quoted = src.text(first.start);
    let ty = quoted.trim_matches('"');
    if !BPF_TABLE_TYPES.contains(&ty) {
        let why = match ty {
            "stacktrace" => format!(": {STACK_TRACES}"),
            "prog" => ": tail calls (program arrays) are not supported".to_string(),
            _ => String::new(),
        };
        return Err(TranslateError::new(
            line,
            format!(
                "BPF_TABLE type {quoted} is not supported by this exporter{why}; supported: {}",
                BPF_TABLE_TYPES.join(", ")
            ),
        ));
    }
    // Replace `BPF_TABLE ( "t" ,` and the blanks after the comma, when they
    // stay on the line.
    let Some(&comma) = args.get(1).map(|a| &a.start) else {
        return Ok(());
    };
    let comma_tok = src.toks[comma - 1];
    let mut end = comma_tok.end;
    let next = src.toks[comma].start;
    if src.text[end..next].bytes().all(|b| b == b' ' || b == b'\t') {
        end = next;
    }
    let start = src.toks[at].start;
    let replacement = format!(
        "BPF_TABLE_{ty}({}",
        src.newlines(start..end, src.toks[at].dir)
    );
    edits.push(Edit {
        range: start..end,
        text: replacement,
    });
    Ok(())
}

/// Rewrites `table.method(args)` to `__bcc_method(&table, args)`.
pub(super) fn method_calls(
    src: &Source,
    tables: &HashSet<&str>,
    edits: &mut Vec<Edit>,
) -> Result<(), TranslateError> {
    for i in 0..src.toks.len() {
        let Some(method) = src.method_call(i) else {
            continue;
        };
        let name = src.text(i);
        // In a function-like macro, `param.method(...)` may name a table once
        // expanded; rewrite it when the method is one of ours.
        let is_table = tables.contains(name);
        let is_param = !is_table && src.is_macro_param(i);
        if !is_table && !is_param {
            continue;
        }
        if !TABLE_METHODS.contains(&method) {
            if is_param {
                continue;
            }
            return Err(TranslateError::new(
                src.toks[i].line,
                format!(
                    "table `{name}` has no method `{method}` in this exporter; supported: {}",
                    TABLE_METHODS.join(", ")
                ),
            ));
        }
        let open = i + 3;
        let start = src.toks[i].start;
        let end = src.toks[open].end;
        let sep = if src.punct_at(open + 1, ")") {
            ""
        } else {
            ", "
        };
        edits.push(Edit {
            range: start..end,
            text: format!(
                "__bcc_{method}(&{name}{sep}{}",
                src.newlines(start..end, src.toks[i].dir)
            ),
        });
    }
    Ok(())
}

/// Puts `SEC("kind") ` before each probe function's definition.
pub(super) fn sections(
    src: &Source,
    probes: &[(String, ProbeSection)],
    edits: &mut Vec<Edit>,
) -> Result<(), TranslateError> {
    let mut seen = HashSet::new();
    for (name, kind) in probes {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let mut found = false;
        for i in 0..src.toks.len() {
            if src.toks[i].kind != Kind::Ident || src.toks[i].dir != 0 || src.text(i) != name {
                continue;
            }
            let Some(definition) = src.definition(i) else {
                continue;
            };
            found = true;
            if !definition.has_section {
                edits.push(Edit {
                    range: definition.start..definition.start,
                    text: format!("SEC(\"{}\") ", kind.section_name()),
                });
            }
        }
        if !found {
            return Err(TranslateError::new(
                0,
                format!(
                    "BPF function `{name}` named in `{}` is not defined in `code`",
                    kind.config_key()
                ),
            ));
        }
    }
    Ok(())
}

/// A replacement of a byte range of the source.
pub(super) struct Edit {
    range: Range<usize>,
    text: String,
}

pub(super) fn apply(code: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(code.len() + 64 * edits.len());
    let mut at = 0;
    for edit in edits {
        debug_assert!(edit.range.start >= at, "overlapping edits");
        out.push_str(&code[at..edit.range.start]);
        out.push_str(&edit.text);
        at = edit.range.end;
    }
    out.push_str(&code[at..]);
    out
}
