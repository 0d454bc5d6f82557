//! Source-to-source pass from bcc's C dialect to libbpf-style C.
//!
//! Configs written for the original Go+bcc exporter carry inline BPF C in
//! bcc's dialect. Most of it compiles with clang against the libbpf headers
//! plus a force-included compatibility header (`bcc_compat.h`) that defines
//! `BPF_HASH(...)` and friends as macros. Two features are beyond the C
//! preprocessor, and this pass rewrites them:
//!
//! * method calls on tables, `counts.increment(key)`, become
//!   `__bcc_increment(&counts, key)` (see [`TABLE_METHODS`]);
//! * probe functions get a section, `int f(struct pt_regs *ctx) {` becomes
//!   `SEC("usdt") int f(struct pt_regs *ctx) {`.
//!
//! It also rewrites `BPF_TABLE("hash", k, l, n, s)` to
//! `BPF_TABLE_hash(k, l, n, s)` (see [`BPF_TABLE_TYPES`]), lists the declared
//! tables, and refuses table kinds the exporter cannot serve.
//!
//! Every output line is the input line of the same number: the pass never
//! adds or removes a newline, so clang's diagnostics can be mapped back to
//! config lines with a `#line` directive. Comments, string and character
//! literals are never rewritten.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// Which kind of probe a BPF function is attached as; decides its section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeSection {
    /// A USDT probe: section `usdt`.
    Usdt,
    /// A uprobe: section `uprobe`.
    Uprobe,
    /// A uretprobe: section `uretprobe`.
    Uretprobe,
}

impl ProbeSection {
    /// The ELF section name given to the function (`usdt`, `uprobe`, `uretprobe`).
    pub fn section_name(self) -> &'static str {
        match self {
            ProbeSection::Usdt => "usdt",
            ProbeSection::Uprobe => "uprobe",
            ProbeSection::Uretprobe => "uretprobe",
        }
    }

    /// The config key that names functions of this kind (`usdt`, `uprobes`, `uretprobes`).
    pub fn config_key(self) -> &'static str {
        match self {
            ProbeSection::Usdt => "usdt",
            ProbeSection::Uprobe => "uprobes",
            ProbeSection::Uretprobe => "uretprobes",
        }
    }
}

/// The translated program and what it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The libbpf-style C source, line for line the input.
    pub code: String,
    /// Tables declared with bcc macros, in order of first declaration.
    pub tables: Vec<Table>,
}

/// A table (BPF map) declared with a bcc macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table's name, which is also the map's name.
    pub name: String,
    /// 1-based line of `code` where it is declared.
    pub line: u32,
}

/// Why bcc-dialect code could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line_prefix(*.line))]
pub struct TranslateError {
    line: u32,
    message: String,
}

fn line_prefix(line: u32) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

impl TranslateError {
    fn new(line: u32, message: impl Into<String>) -> Self {
        TranslateError {
            line,
            message: message.into(),
        }
    }

    /// 1-based line of `code` at fault, or 0 when the error concerns the
    /// code as a whole (a probe function that is not defined).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The message without the `line N: ` prefix that `Display` adds.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Table methods that are rewritten; `t.m(args)` becomes `__bcc_m(&t, args)`,
/// and `t.m()` becomes `__bcc_m(&t)`. The compatibility header defines them.
pub const TABLE_METHODS: &[&str] = &[
    "increment",
    "atomic_increment",
    "lookup",
    "lookup_or_init",
    "lookup_or_try_init",
    "update",
    "insert",
    "delete",
    "perf_submit",
    "ringbuf_output",
    "push",
    "pop",
    "peek",
];

/// Type strings accepted in `BPF_TABLE("type", ...)`; each becomes a macro
/// `BPF_TABLE_type` that the compatibility header defines.
pub const BPF_TABLE_TYPES: &[&str] = &[
    "hash",
    "array",
    "percpu_hash",
    "percpu_array",
    "lru_hash",
    "lru_percpu_hash",
];

/// Table macros passed through to the compatibility header; the table's
/// name is their first argument.
const TABLE_MACROS: &[&str] = &[
    "BPF_HASH",
    "BPF_ARRAY",
    "BPF_HISTOGRAM",
    "BPF_PERCPU_HASH",
    "BPF_PERCPU_ARRAY",
    "BPF_PERF_OUTPUT",
    "BPF_RINGBUF_OUTPUT",
    "BPF_QUEUE",
    "BPF_STACK",
];

const STACK_TRACES: &str = "stack traces are not supported";
const SHARED: &str = "tables shared between programs or pinned in bpffs are not supported; \
                      declare the table with BPF_TABLE or BPF_HASH";
const OTHER_KIND: &str = "this kind of table is not supported; use BPF_HASH, BPF_ARRAY, \
                          BPF_HISTOGRAM, BPF_PERCPU_HASH, BPF_PERCPU_ARRAY, BPF_TABLE, \
                          BPF_PERF_OUTPUT or BPF_RINGBUF_OUTPUT";

/// bcc table macros the exporter refuses, with the reason given.
const UNSUPPORTED_MACROS: &[(&str, &str)] = &[
    ("BPF_STACK_TRACE", STACK_TRACES),
    ("BPF_STACK_TRACE_BUILDID", STACK_TRACES),
    ("BPF_TABLE_PUBLIC", SHARED),
    ("BPF_TABLE_SHARED", SHARED),
    ("BPF_TABLE_PINNED", SHARED),
    (
        "BPF_PROG_ARRAY",
        "tail calls (program arrays) are not supported",
    ),
    ("BPF_F_TABLE", OTHER_KIND),
    ("BPF_LPM_TRIE", OTHER_KIND),
    ("BPF_PERF_ARRAY", OTHER_KIND),
    ("BPF_HASH_OF_MAPS", OTHER_KIND),
    ("BPF_ARRAY_OF_MAPS", OTHER_KIND),
    ("BPF_CGROUP_ARRAY", OTHER_KIND),
    ("BPF_CGROUP_STORAGE", OTHER_KIND),
    ("BPF_PERCPU_CGROUP_STORAGE", OTHER_KIND),
    ("BPF_SK_STORAGE", OTHER_KIND),
    ("BPF_INODE_STORAGE", OTHER_KIND),
    ("BPF_TASK_STORAGE", OTHER_KIND),
    ("BPF_SOCKMAP", OTHER_KIND),
    ("BPF_SOCKHASH", OTHER_KIND),
    ("BPF_DEVMAP", OTHER_KIND),
    ("BPF_CPUMAP", OTHER_KIND),
    ("BPF_XSKMAP", OTHER_KIND),
];

/// Attribute-like macros that may precede or follow a function's declarator.
const ATTRIBUTES: &[&str] = &["SEC", "__section", "__attribute__", "__attribute"];

/// Rewrites bcc-dialect `code` into libbpf-style C and lists its tables.
///
/// `probes` names the BPF functions the config attaches, with their kind;
/// each definition gets `SEC("usdt")`, `SEC("uprobe")` or `SEC("uretprobe")`
/// unless it already has a section. A function named twice keeps the first
/// kind. The output has exactly the input's lines.
pub fn translate(
    code: &str,
    probes: &[(String, ProbeSection)],
) -> Result<Translated, TranslateError> {
    let src = Source::new(code);
    let mut edits = Vec::new();
    let tables = declarations(&src, &mut edits)?;
    let names: HashSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    method_calls(&src, &names, &mut edits)?;
    sections(&src, probes, &mut edits)?;
    let code = apply(code, edits);
    debug_assert_eq!(
        code.matches('\n').count(),
        src.text.matches('\n').count(),
        "the bcc pass must keep every line in place"
    );
    Ok(Translated { code, tables })
}

/// Whether `code` is written in bcc's dialect: it declares a table with a
/// bcc macro (`BPF_HASH(...)`, `BPF_TABLE(...)`, ...) or calls a table
/// method (`x.increment(...)`). libbpf-style code (`SEC(".maps")` maps,
/// helper calls) is not.
pub fn uses_bcc_dialect(code: &str) -> bool {
    let src = Source::new(code);
    (0..src.toks.len()).any(|i| {
        let name = src.text(i);
        if src.toks[i].kind != Kind::Ident || !src.punct_at(i + 1, "(") || src.defines_macro(i) {
            return false;
        }
        name == "BPF_TABLE"
            || TABLE_MACROS.contains(&name)
            || UNSUPPORTED_MACROS.iter().any(|(m, _)| *m == name)
    }) || (0..src.toks.len()).any(|i| {
        src.method_call(i)
            .is_some_and(|method| TABLE_METHODS.contains(&method))
    })
}

/// Finds table declarations: records their names, rewrites `BPF_TABLE`,
/// refuses unsupported kinds.
fn declarations(src: &Source, edits: &mut Vec<Edit>) -> Result<Vec<Table>, TranslateError> {
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
fn method_calls(
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
fn sections(
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
struct Edit {
    range: Range<usize>,
    text: String,
}

fn apply(code: &str, mut edits: Vec<Edit>) -> String {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Number,
    Str,
    Char,
    Punct,
}

/// A preprocessing token: its kind, byte range, 1-based line and directive
/// (0 outside preprocessor directives, else a number per directive).
#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    line: u32,
    dir: u32,
}

/// Where a function's definition starts, and whether it has a section.
struct Definition {
    start: usize,
    has_section: bool,
}

/// The code with its tokens (comments and blanks left out).
struct Source<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    /// Parameters of each function-like `#define`, by directive number.
    params: HashMap<u32, Vec<&'a str>>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let toks = tokenize(text);
        let mut src = Source {
            text,
            toks,
            params: HashMap::new(),
        };
        src.params = src.macro_params();
        src
    }

    fn text(&self, i: usize) -> &'a str {
        &self.text[self.toks[i].start..self.toks[i].end]
    }

    fn punct_at(&self, i: usize, p: &str) -> bool {
        i < self.toks.len() && self.toks[i].kind == Kind::Punct && self.text(i) == p
    }

    /// Token `i` as seen from token `from`: present and in the same
    /// directive (or both outside directives).
    fn near(&self, from: usize, i: usize) -> bool {
        i < self.toks.len() && self.toks[i].dir == self.toks[from].dir
    }

    /// Whether token `i` is the name in `#define NAME`.
    fn defines_macro(&self, i: usize) -> bool {
        self.toks[i].dir != 0
            && i > 0
            && self.near(i, i - 1)
            && self.toks[i - 1].kind == Kind::Ident
            && self.text(i - 1) == "define"
    }

    fn is_macro_param(&self, i: usize) -> bool {
        let tok = self.toks[i];
        tok.dir != 0
            && self
                .params
                .get(&tok.dir)
                .is_some_and(|p| p.contains(&self.text(i)))
    }

    fn macro_params(&self) -> HashMap<u32, Vec<&'a str>> {
        let mut params = HashMap::new();
        for i in 0..self.toks.len() {
            let tok = self.toks[i];
            if !self.defines_macro(i) || !self.punct_at(i + 1, "(") || !self.near(i, i + 1) {
                continue;
            }
            // Function-like only when `(` touches the name.
            if self.toks[i + 1].start != tok.end {
                continue;
            }
            let mut names = Vec::new();
            let mut j = i + 2;
            while self.near(i, j) && !self.punct_at(j, ")") {
                if self.toks[j].kind == Kind::Ident {
                    names.push(self.text(j));
                }
                j += 1;
            }
            params.insert(tok.dir, names);
        }
        params
    }

    /// The `)` matching the `(` at `open`, within the same directive; outside
    /// directives, tokens of directives in between are skipped.
    fn matching(&self, open: usize) -> Option<usize> {
        let dir = self.toks[open].dir;
        let mut depth = 0usize;
        for i in open..self.toks.len() {
            if self.toks[i].dir != dir {
                if dir != 0 {
                    return None;
                }
                continue;
            }
            if self.punct_at(i, "(") {
                depth += 1;
            } else if self.punct_at(i, ")") {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The token ranges of the comma-separated arguments between `open`
    /// and `close`; an empty list for `()`.
    fn args(&self, open: usize, close: usize) -> Vec<Range<usize>> {
        let dir = self.toks[open].dir;
        let mut args = Vec::new();
        let mut depth = 0usize;
        let mut start = open + 1;
        for i in open + 1..close {
            if self.toks[i].dir != dir || self.toks[i].kind != Kind::Punct {
                continue;
            }
            match self.text(i) {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                "," if depth == 0 => {
                    args.push(start..i);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < close || !args.is_empty() {
            args.push(start..close);
        }
        args
    }

    /// For `x . m (` at `i`, where `x` is not itself a member (`a.x`,
    /// `a->x`), the method name `m`.
    fn method_call(&self, i: usize) -> Option<&'a str> {
        let ok = self.toks[i].kind == Kind::Ident
            && self.near(i, i + 3)
            && self.punct_at(i + 1, ".")
            && self.toks[i + 2].kind == Kind::Ident
            && self.punct_at(i + 3, "(")
            && !(i > 0
                && self.near(i, i - 1)
                && (self.punct_at(i - 1, ".") || self.punct_at(i - 1, "->")));
        ok.then(|| self.text(i + 2))
    }

    /// If the identifier at `name` is a function definition's declarator
    /// (`TYPE name(PARAMS) {`), where the definition starts.
    fn definition(&self, name: usize) -> Option<Definition> {
        if !self.punct_at(name + 1, "(") || self.toks[name + 1].dir != 0 {
            return None;
        }
        let close = self.matching(name + 1)?;
        let mut has_section = false;
        // Attributes between the parameters and the body.
        let mut k = close + 1;
        while k + 1 < self.toks.len()
            && self.toks[k].kind == Kind::Ident
            && ATTRIBUTES.contains(&self.text(k))
            && self.punct_at(k + 1, "(")
        {
            let end = self.matching(k + 1)?;
            has_section |= self.names_section(k, end);
            k = end + 1;
        }
        if !self.punct_at(k, "{") || self.toks[k].dir != 0 {
            return None;
        }
        // Back over the return type, qualifiers and attributes.
        let mut j = name;
        while j > 0 && self.toks[j - 1].dir == 0 {
            let p = j - 1;
            if self.toks[p].kind == Kind::Ident || self.punct_at(p, "*") {
                j = p;
            } else if self.punct_at(p, ")") {
                let open = self.opening(p)?;
                if open == 0
                    || self.toks[open - 1].kind != Kind::Ident
                    || !ATTRIBUTES.contains(&self.text(open - 1))
                {
                    break;
                }
                has_section |= self.names_section(open - 1, p);
                j = open - 1;
            } else {
                break;
            }
        }
        if j == name {
            return None;
        }
        Some(Definition {
            start: self.toks[j].start,
            has_section,
        })
    }

    /// Whether the attribute from `at` to `end` gives a section:
    /// `SEC(...)`, `__section(...)` or `__attribute__((section(...)))`.
    fn names_section(&self, at: usize, end: usize) -> bool {
        matches!(self.text(at), "SEC" | "__section")
            || (at..end).any(|t| self.toks[t].kind == Kind::Ident && self.text(t) == "section")
    }

    /// The `(` matching the `)` at `close`, outside directives.
    fn opening(&self, close: usize) -> Option<usize> {
        let mut depth = 0usize;
        for i in (0..=close).rev() {
            if self.toks[i].dir != 0 {
                continue;
            }
            if self.punct_at(i, ")") {
                depth += 1;
            } else if self.punct_at(i, "(") {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The newlines in `range`, to keep in a replacement: inside a
    /// directive each becomes a line continuation.
    fn newlines(&self, range: Range<usize>, dir: u32) -> String {
        let n = self.text[range].matches('\n').count();
        if dir == 0 {
            "\n".repeat(n)
        } else {
            "\\\n".repeat(n)
        }
    }
}

/// Splits C source into preprocessing tokens, skipping blanks, comments and
/// line continuations, and numbering preprocessor directives.
fn tokenize(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    let mut line_start = true;
    let mut dir = 0u32;
    let mut dirs = 0u32;
    // Length of a line continuation (backslash, optional CR, LF) at `at`.
    let continuation = |at: usize| -> usize {
        if b.get(at) != Some(&b'\\') {
            0
        } else if b.get(at + 1) == Some(&b'\n') {
            2
        } else if b.get(at + 1) == Some(&b'\r') && b.get(at + 2) == Some(&b'\n') {
            3
        } else {
            0
        }
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind;
        if c == b'\n' {
            line += 1;
            i += 1;
            line_start = true;
            dir = 0;
            continue;
        } else if continuation(i) > 0 {
            i += continuation(i);
            line += 1;
            continue;
        } else if matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c) {
            i += 1;
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            // To the end of the line; a continuation extends it.
            while i < b.len() && b[i] != b'\n' {
                let n = continuation(i);
                if n > 0 {
                    i += n;
                    line += 1;
                } else {
                    i += 1;
                }
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(b.len());
            continue;
        } else if c == b'"' || c == b'\'' {
            i += 1;
            let line_at = line;
            while i < b.len() && b[i] != c && b[i] != b'\n' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    if b[i + 1] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            if i < b.len() && b[i] == c {
                i += 1;
            }
            kind = if c == b'"' { Kind::Str } else { Kind::Char };
            toks.push(Tok {
                kind,
                start,
                end: i,
                line: line_at,
                dir,
            });
            line_start = false;
            continue;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            kind = Kind::Ident;
        } else if c.is_ascii_digit()
            || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < b.len() {
                let d = b[i];
                let exponent_sign =
                    matches!(d, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
                if !(d.is_ascii_alphanumeric() || matches!(d, b'_' | b'.') || exponent_sign) {
                    break;
                }
                i += 1;
            }
            kind = Kind::Number;
        } else {
            kind = Kind::Punct;
            if text[i..].starts_with("->") {
                i += 2;
            } else if text[i..].starts_with("...") {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
            }
            if c == b'#' && line_start {
                dirs += 1;
                dir = dirs;
            }
        }
        toks.push(Tok {
            kind,
            start,
            end: i,
            line,
            dir,
        });
        line_start = false;
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str, probes: &[(&str, ProbeSection)]) -> Result<Translated, TranslateError> {
        let probes: Vec<(String, ProbeSection)> =
            probes.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        let out = translate(code, &probes);
        if let Ok(t) = &out {
            assert_eq!(
                t.code.lines().count(),
                code.lines().count(),
                "line count changed:\n{}",
                t.code
            );
            assert_eq!(t.code.matches('\n').count(), code.matches('\n').count());
        }
        out
    }

    fn ok(code: &str, probes: &[(&str, ProbeSection)]) -> Translated {
        run(code, probes).unwrap_or_else(|e| panic!("translate failed: {e}"))
    }

    fn err(code: &str, probes: &[(&str, ProbeSection)]) -> TranslateError {
        match run(code, probes) {
            Ok(t) => panic!("expected an error, got:\n{}", t.code),
            Err(e) => e,
        }
    }

    fn table(name: &str, line: u32) -> Table {
        Table {
            name: name.to_string(),
            line,
        }
    }

    use ProbeSection::{Uprobe, Uretprobe, Usdt};

    #[test]
    fn seed_gunicorn_example() {
        let code = r#"struct gc_event_t {
    u64 gen;
};

BPF_HASH(gc_counts, struct gc_event_t);

int trace_gc__start(struct pt_regs *ctx) {
    struct gc_event_t e = {};
    int gen = 0;
    bpf_usdt_readarg(1, ctx, &gen);
    e.gen = gen;
    gc_counts.increment(e);
    return 0;
}
"#;
        let expected = r#"struct gc_event_t {
    u64 gen;
};

BPF_HASH(gc_counts, struct gc_event_t);

SEC("usdt") int trace_gc__start(struct pt_regs *ctx) {
    struct gc_event_t e = {};
    int gen = 0;
    bpf_usdt_readarg(1, ctx, &gen);
    e.gen = gen;
    __bcc_increment(&gc_counts, e);
    return 0;
}
"#;
        let out = ok(code, &[("trace_gc__start", Usdt)]);
        assert_eq!(out.code, expected);
        assert_eq!(out.tables, vec![table("gc_counts", 5)]);
        assert!(uses_bcc_dialect(code));
    }

    #[test]
    fn seed_redis_example() {
        let code = r#"#include <uapi/linux/ptrace.h>
#define TOTAL_BUCKETS 32

struct entry_t {
    u64 start_ns;
};

struct latency_key_t {
    u64 slot;
};

BPF_HASH(entryinfo, u64, struct entry_t);
BPF_HISTOGRAM(malloc_latency, struct latency_key_t, TOTAL_BUCKETS + 1);
BPF_PERF_OUTPUT(events);

int trace_entry(struct pt_regs *ctx) {
    u64 tgid_pid = bpf_get_current_pid_tgid();

    struct entry_t entry = {};
    entry.start_ns = bpf_ktime_get_ns();

    entryinfo.update(&tgid_pid, &entry);

    return 0;
}

int trace_return(struct pt_regs *ctx) {
    struct entry_t *entryp;
    u64 tgid_pid = bpf_get_current_pid_tgid();

    entryp = entryinfo.lookup(&tgid_pid);
    if (entryp == 0) {
        return 0;
    }

    u64 delta = bpf_ktime_get_ns() - entryp->start_ns;
    entryinfo.delete(&tgid_pid);

    struct latency_key_t key = {};
    key.slot = bpf_log2l(delta);
    if (key.slot >= TOTAL_BUCKETS) {
        key.slot = TOTAL_BUCKETS - 1;
    }
    malloc_latency.increment(key);

    key.slot = TOTAL_BUCKETS;
    malloc_latency.increment(key, delta);

    return 0;
}
"#;
        let expected = r#"#include <uapi/linux/ptrace.h>
#define TOTAL_BUCKETS 32

struct entry_t {
    u64 start_ns;
};

struct latency_key_t {
    u64 slot;
};

BPF_HASH(entryinfo, u64, struct entry_t);
BPF_HISTOGRAM(malloc_latency, struct latency_key_t, TOTAL_BUCKETS + 1);
BPF_PERF_OUTPUT(events);

SEC("uprobe") int trace_entry(struct pt_regs *ctx) {
    u64 tgid_pid = bpf_get_current_pid_tgid();

    struct entry_t entry = {};
    entry.start_ns = bpf_ktime_get_ns();

    __bcc_update(&entryinfo, &tgid_pid, &entry);

    return 0;
}

SEC("uretprobe") int trace_return(struct pt_regs *ctx) {
    struct entry_t *entryp;
    u64 tgid_pid = bpf_get_current_pid_tgid();

    entryp = __bcc_lookup(&entryinfo, &tgid_pid);
    if (entryp == 0) {
        return 0;
    }

    u64 delta = bpf_ktime_get_ns() - entryp->start_ns;
    __bcc_delete(&entryinfo, &tgid_pid);

    struct latency_key_t key = {};
    key.slot = bpf_log2l(delta);
    if (key.slot >= TOTAL_BUCKETS) {
        key.slot = TOTAL_BUCKETS - 1;
    }
    __bcc_increment(&malloc_latency, key);

    key.slot = TOTAL_BUCKETS;
    __bcc_increment(&malloc_latency, key, delta);

    return 0;
}
"#;
        let out = ok(
            code,
            &[("trace_entry", Uprobe), ("trace_return", Uretprobe)],
        );
        assert_eq!(out.code, expected);
        assert_eq!(
            out.tables,
            vec![
                table("entryinfo", 12),
                table("malloc_latency", 13),
                table("events", 14)
            ]
        );
    }

    #[test]
    fn comments_strings_and_chars_are_left_alone() {
        let code = r#"BPF_HASH(counts, u32);
// counts.increment(k);
/* counts.increment(k);
   counts.lookup(&k); */
int f(struct pt_regs *ctx) {
    u32 k = 0;
    char *s = "counts.increment(k)";
    char *t = "a \" counts.increment(k) \\";
    char c = '"'; counts.increment(k); char d = '\'';
    char *u = "\\"; counts.update(&k, &k); // counts.delete(&k)
    return 0;
}
"#;
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[1], "// counts.increment(k);");
        assert_eq!(lines[2], "/* counts.increment(k);");
        assert_eq!(lines[3], "   counts.lookup(&k); */");
        assert_eq!(lines[6], r#"    char *s = "counts.increment(k)";"#);
        assert_eq!(lines[7], r#"    char *t = "a \" counts.increment(k) \\";"#);
        assert_eq!(
            lines[8],
            r#"    char c = '"'; __bcc_increment(&counts, k); char d = '\'';"#
        );
        assert_eq!(
            lines[9],
            r#"    char *u = "\\"; __bcc_update(&counts, &k, &k); // counts.delete(&k)"#
        );
    }

    #[test]
    fn nested_parentheses_macros_and_several_tables() {
        let code = r#"#define KEY(a, b) ((a) * 2 + (b))
#define SLOTS 16
BPF_ARRAY(hits, u64, SLOTS);
BPF_PERCPU_HASH(bytes, u32, u64, 1024);
BPF_PERCPU_ARRAY(scratch, struct big, 1);
BPF_RINGBUF_OUTPUT(ring, 8);
static u32 make_key(u32 a, u32 b) { return a ^ b; }
int f(struct pt_regs *ctx) {
    u32 a = 1, b = 2;
    hits.increment(make_key(a, (b)), 2);
    bytes.atomic_increment(KEY(a, b), sizeof(struct big) * (a + (b)));
    struct big *p = scratch.lookup(&(u32){0});
    ring.ringbuf_output(p, sizeof(*p), 0);
    return (int)hits.lookup_or_try_init(&a, &(u64){0});
}
"#;
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[0], "#define KEY(a, b) ((a) * 2 + (b))");
        assert_eq!(lines[9], "    __bcc_increment(&hits, make_key(a, (b)), 2);");
        assert_eq!(
            lines[10],
            "    __bcc_atomic_increment(&bytes, KEY(a, b), sizeof(struct big) * (a + (b)));"
        );
        assert_eq!(
            lines[11],
            "    struct big *p = __bcc_lookup(&scratch, &(u32){0});"
        );
        assert_eq!(
            lines[12],
            "    __bcc_ringbuf_output(&ring, p, sizeof(*p), 0);"
        );
        assert_eq!(
            lines[13],
            "    return (int)__bcc_lookup_or_try_init(&hits, &a, &(u64){0});"
        );
        // Only `f` is a probe; the static helper stays as it is.
        assert_eq!(
            lines[6],
            "static u32 make_key(u32 a, u32 b) { return a ^ b; }"
        );
        assert_eq!(lines[7], "SEC(\"usdt\") int f(struct pt_regs *ctx) {");
        let names: Vec<&str> = out.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["hits", "bytes", "scratch", "ring"]);
    }

    #[test]
    fn method_calls_in_macro_bodies() {
        let code = "BPF_HASH(counts, u32);\n\
                    #define BUMP(k) counts.increment(k)\n\
                    #define BUMP_IN(t, k) \\\n    t.increment(k, \\\n    1)\n\
                    #define POP_FROM(s) s.pop()\n\
                    int f(void *ctx) { u32 k = 1; BUMP(k); BUMP_IN(counts, k); return 0; }\n";
        let out = ok(code, &[("f", Uprobe)]);
        let expected = "BPF_HASH(counts, u32);\n\
                        #define BUMP(k) __bcc_increment(&counts, k)\n\
                        #define BUMP_IN(t, k) \\\n    __bcc_increment(&t, k, \\\n    1)\n\
                        #define POP_FROM(s) __bcc_pop(&s)\n\
                        SEC(\"uprobe\") int f(void *ctx) { u32 k = 1; BUMP(k); BUMP_IN(counts, k); return 0; }\n";
        assert_eq!(out.code, expected);
        // A macro parameter is not a table.
        assert_eq!(out.tables, vec![table("counts", 1)]);
    }

    #[test]
    fn table_named_like_a_helper_or_a_method() {
        let code = r#"BPF_HASH(lookup, u32, u64);
BPF_ARRAY(bpf_ktime_get_ns, u64, 1);
int f(struct pt_regs *ctx) {
    u32 k = 0;
    u64 *v = lookup.lookup(&k);
    u64 now = bpf_ktime_get_ns();
    bpf_ktime_get_ns.update(&k, &now);
    lookup.increment(k);
    return 0;
}
"#;
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[4], "    u64 *v = __bcc_lookup(&lookup, &k);");
        assert_eq!(lines[5], "    u64 now = bpf_ktime_get_ns();");
        assert_eq!(lines[6], "    __bcc_update(&bpf_ktime_get_ns, &k, &now);");
        assert_eq!(lines[7], "    __bcc_increment(&lookup, k);");
    }

    #[test]
    fn field_access_and_non_tables_are_left_alone() {
        let code = r#"BPF_HASH(counts, u32);
int f(struct pt_regs *ctx) {
    x.counts.increment(1);
    p->counts.increment(1);
    s.increment(2);
    s.get_stackid(ctx, 0);
    counts.increment(3);
    return counts . lookup (&k) != 0;
}
"#;
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[2], "    x.counts.increment(1);");
        assert_eq!(lines[3], "    p->counts.increment(1);");
        assert_eq!(lines[4], "    s.increment(2);");
        assert_eq!(lines[5], "    s.get_stackid(ctx, 0);");
        assert_eq!(lines[6], "    __bcc_increment(&counts, 3);");
        assert_eq!(lines[7], "    return __bcc_lookup(&counts, &k) != 0;");
    }

    #[test]
    fn multi_line_calls_keep_their_lines() {
        let code = "BPF_HASH(counts, struct key_t, u64);\n\
                    int f(struct pt_regs *ctx) {\n\
                    \x20   counts\n\
                    \x20       .increment(\n\
                    \x20           key,\n\
                    \x20           (u64)(1 +\n\
                    \x20               2));\n\
                    \x20   counts.pop(\n\
                    );\n\
                    \x20   return 0;\n\
                    }\n";
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[2], "    __bcc_increment(&counts, ");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "            key,");
        assert_eq!(lines[6], "                2));");
        assert_eq!(lines[7], "    __bcc_pop(&counts");
        assert_eq!(lines[8], ");");
    }

    #[test]
    fn bpf_table_is_rewritten_by_type() {
        let code = r#"BPF_TABLE("hash", u32, u64, counts, 1024);
BPF_TABLE("lru_percpu_hash",
          struct key_t, u64, recent, 128);
BPF_TABLE( "array" , int, u64, slots, 8);
int f(struct pt_regs *ctx) { u32 k = 0; counts.increment(k); recent.delete(&k); return 0; }
"#;
        let out = ok(code, &[("f", Usdt)]);
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[0], "BPF_TABLE_hash(u32, u64, counts, 1024);");
        assert_eq!(lines[1], "BPF_TABLE_lru_percpu_hash(");
        assert_eq!(lines[2], "          struct key_t, u64, recent, 128);");
        assert_eq!(lines[3], "BPF_TABLE_array(int, u64, slots, 8);");
        assert!(lines[4].contains("__bcc_increment(&counts, k); __bcc_delete(&recent, &k);"));
        assert_eq!(
            out.tables,
            vec![table("counts", 1), table("recent", 2), table("slots", 4)]
        );
    }

    #[test]
    fn sections_respect_existing_sec_and_prototypes() {
        let code = r#"static int helper(int x);
int trace_a(struct pt_regs *ctx);
static int
trace_a(struct pt_regs *ctx)
{
    return helper(trace_b(ctx));
}
SEC("usdt/python:gc__start") int trace_b(struct pt_regs *ctx) { return 0; }
static __always_inline int __attribute__((unused))
trace_c(struct pt_regs *ctx, int x) { return x; }
int trace_d(void *ctx) __attribute__((section("uprobe"))) { return 0; }
"#;
        let out = ok(
            code,
            &[
                ("trace_a", Uprobe),
                ("trace_b", Usdt),
                ("trace_c", Uretprobe),
                ("trace_a", Uretprobe),
                ("trace_d", Uprobe),
            ],
        );
        let lines: Vec<&str> = out.code.lines().collect();
        assert_eq!(lines[0], "static int helper(int x);");
        assert_eq!(lines[1], "int trace_a(struct pt_regs *ctx);");
        // First kind given wins.
        assert_eq!(lines[2], "SEC(\"uprobe\") static int");
        assert_eq!(lines[3], "trace_a(struct pt_regs *ctx)");
        assert_eq!(lines[5], "    return helper(trace_b(ctx));");
        assert_eq!(
            lines[7],
            "SEC(\"usdt/python:gc__start\") int trace_b(struct pt_regs *ctx) { return 0; }"
        );
        assert_eq!(
            lines[8],
            "SEC(\"uretprobe\") static __always_inline int __attribute__((unused))"
        );
        assert_eq!(lines[10], code.lines().nth(10).unwrap());
        assert!(!uses_bcc_dialect(code));
    }

    #[test]
    fn section_goes_after_a_table_declaration_without_semicolon() {
        let code = "BPF_PERF_OUTPUT(events)\nint f(struct pt_regs *ctx) { return 0; }\n";
        let out = ok(code, &[("f", Usdt)]);
        assert_eq!(
            out.code,
            "BPF_PERF_OUTPUT(events)\nSEC(\"usdt\") int f(struct pt_regs *ctx) { return 0; }\n"
        );
    }

    #[test]
    fn unsupported_table_kinds_name_their_line() {
        let e = err(
            "struct k { u32 a; };\n\nBPF_STACK_TRACE(stacks, 1024);\n",
            &[],
        );
        assert_eq!(e.line(), 3);
        assert!(
            e.to_string().starts_with("line 3: `BPF_STACK_TRACE`"),
            "{e}"
        );
        assert!(
            e.message().contains("stack traces are not supported"),
            "{e}"
        );

        let e = err(
            "\nBPF_TABLE_PINNED(\"hash\", u32, u64, t, 8, \"/sys/fs/bpf/t\");\n",
            &[],
        );
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("BPF_TABLE_PINNED"), "{e}");

        let e = err("BPF_TABLE_PUBLIC(\"hash\", u32, u64, t, 8);\n", &[]);
        assert_eq!(e.line(), 1);

        let e = err("\n\n\n\nBPF_PROG_ARRAY(jumps, 8);\n", &[]);
        assert_eq!(e.line(), 5);
        assert!(e.message().contains("BPF_PROG_ARRAY"), "{e}");

        let e = err("// x\nBPF_TABLE(\"hashmap\", u32, u64, t, 8);\n", &[]);
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("\"hashmap\""), "{e}");
        assert!(e.message().contains("hash, array"), "{e}");

        let e = err("BPF_TABLE(\"stacktrace\", int, struct s, st, 8);\n", &[]);
        assert!(e.message().contains("stack traces"), "{e}");

        // Mentioned only in a comment or string: fine.
        ok(
            "// BPF_STACK_TRACE(s, 1)\nchar *x = \"BPF_PROG_ARRAY(p, 1)\";\n",
            &[],
        );
    }

    #[test]
    fn unknown_method_names_table_method_and_line() {
        let code = r#"BPF_HASH(counts, u32);
int f(struct pt_regs *ctx) {
    u32 k = 0;
    counts.increment(k);
    int id = counts.get_stackid(ctx, 0);
    return id;
}
"#;
        let e = err(code, &[("f", Usdt)]);
        assert_eq!(e.line(), 5);
        let msg = e.to_string();
        assert!(
            msg.starts_with("line 5: table `counts` has no method `get_stackid` in this exporter; supported: increment, "),
            "{msg}"
        );
    }

    #[test]
    fn missing_function_is_an_error() {
        let code = "BPF_HASH(counts, u32);\nint trace_b(struct pt_regs *ctx);\nint g(void) { return trace_b(0); }\n";
        let e = err(code, &[("trace_b", Uretprobe)]);
        assert_eq!(e.line(), 0);
        assert_eq!(
            e.to_string(),
            "BPF function `trace_b` named in `uretprobes` is not defined in `code`"
        );
        let e = err("", &[("x", Usdt)]);
        assert!(e.message().contains("`usdt`"));
        // Named only in a comment.
        let e = err("// int x(void *ctx) {}\n", &[("x", Uprobe)]);
        assert!(e.message().contains("`uprobes`"));
    }

    #[test]
    fn table_declared_twice_under_ifdef_is_listed_once() {
        let code = "#ifdef WIDE\nBPF_HASH(counts, u64);\n#else\nBPF_HASH(counts, u32);\n#endif\n";
        let out = ok(code, &[]);
        assert_eq!(out.code, code);
        assert_eq!(out.tables, vec![table("counts", 2)]);
    }

    #[test]
    fn crlf_and_no_trailing_newline() {
        let code =
            "BPF_HASH(c, u32);\r\nint f(void *ctx) {\r\n  c.increment(1);\r\n  return 0;\r\n}";
        let out = ok(code, &[("f", Usdt)]);
        assert_eq!(
            out.code,
            "BPF_HASH(c, u32);\r\nSEC(\"usdt\") int f(void *ctx) {\r\n  __bcc_increment(&c, 1);\r\n  return 0;\r\n}"
        );
    }

    #[test]
    fn detects_the_bcc_dialect() {
        assert!(uses_bcc_dialect("BPF_ARRAY(a, u64, 4);"));
        assert!(uses_bcc_dialect("BPF_TABLE(\"hash\", u32, u64, t, 8);"));
        assert!(uses_bcc_dialect("BPF_STACK_TRACE(s, 8);"));
        assert!(uses_bcc_dialect(
            "int f(void *c) { t.perf_submit(c, &d, 8); return 0; }"
        ));
        let libbpf = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u64);
    __type(value, u64);
} gc_counts SEC(".maps");

SEC("usdt")
int BPF_USDT(gc_start, int gen) {
    u64 key = gen, one = 1, *v = bpf_map_lookup_elem(&gc_counts, &key);
    if (v) __sync_fetch_and_add(v, 1);
    else bpf_map_update_elem(&gc_counts, &key, &one, BPF_NOEXIST);
    // gc_counts.increment(key) in bcc
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;
        assert!(!uses_bcc_dialect(libbpf));
        assert!(!uses_bcc_dialect("#define BPF_HASH(n) struct n\n"));
        assert!(!uses_bcc_dialect("x.counts.increment(1);"));
    }

    #[test]
    fn libbpf_code_passes_through_unchanged() {
        let code = "struct {\n    __uint(type, BPF_MAP_TYPE_ARRAY);\n} m SEC(\".maps\");\nSEC(\"uprobe\")\nint f(struct pt_regs *ctx) { return 0; }\n";
        let out = ok(code, &[("f", Uprobe)]);
        assert_eq!(out.code, code);
        assert!(out.tables.is_empty());
    }
    /// Random mixes of tricky fragments never panic and never move a line.
    #[test]
    fn random_fragments_keep_lines() {
        const PIECES: &[&str] = &[
            "BPF_HASH(t, u32);",
            "t.increment(k",
            ")",
            "(",
            ", ",
            "\n",
            "\r\n",
            "\\\n",
            "//",
            "/*",
            "*/",
            "\"",
            "'",
            "\\",
            "#define M(t) ",
            "#",
            " t . lookup (",
            "x.t.",
            "->",
            "int f(void *ctx) {",
            "}",
            "{",
            ";",
            "SEC(\"x\") ",
            "é",
            "1.5e+3",
            ".",
            "BPF_TABLE(\"hash\", u32, u64, h, 8)",
            "h.pop()",
            "static ",
            "*",
            "f",
            "t",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut code = String::new();
            for _ in 0..next() % 40 {
                code.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let probes = match next() % 2 {
                0 => vec![("f".to_string(), Usdt)],
                _ => vec![],
            };
            if let Ok(t) = translate(&code, &probes) {
                assert_eq!(
                    t.code.matches('\n').count(),
                    code.matches('\n').count(),
                    "{code:?}"
                );
            }
            let _ = uses_bcc_dialect(&code);
        }
    }
}
