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

mod lexer;
mod rewrite;
mod source;

use lexer::Kind;
use rewrite::{apply, declarations, method_calls, sections};
use source::Source;
use std::collections::HashSet;

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

#[cfg(test)]
mod tests;
