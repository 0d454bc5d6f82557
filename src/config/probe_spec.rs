//! Probe specs as written in the config: their parsing (used by the attach
//! stage to find each probe) and, for validation, why one does not parse.
//!
//! USDT: `name`, `provider:name`, `module:name` (when the first part is a path
//! or contains `.so`), or `module:provider:name`.
//! uprobes: `symbol` (in the executable) or `lib:symbol`, where `lib` is an
//! absolute path, a file name (`libjemalloc.so.2`) or a short name (`c` = libc).
//! The symbol may be a glob, or a C++ name ([`CppName`]: `v8::internal::Heap::Scavenge`),
//! whose `::` do not separate the library: only a lone `:` does.

use super::cpp_name::{is_cpp_name, CppName};
use super::ProbeKind;
use std::fmt;

/// A parsed USDT probe spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtSpec {
    /// Restrict the search to this file (path or library name).
    pub module: Option<String>,
    /// Provider; any provider when absent.
    pub provider: Option<String>,
    /// Probe name.
    pub name: String,
}

/// A parsed uprobe/uretprobe spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UprobeSpec {
    /// Library the symbol lives in; the executable when absent.
    pub library: Option<String>,
    /// Function symbol, symbol glob or C++ name.
    pub symbol: String,
}

/// What the symbol part of a uprobe spec names.
#[derive(Debug, Clone)]
pub enum SymbolPattern {
    /// One symbol, by its name in the symbol table.
    Symbol(String),
    /// Every symbol whose name matches a glob.
    Glob(globset::GlobMatcher),
    /// Functions by their demangled C++ name (a glob if it has wildcards).
    Cpp(CppName),
}

fn looks_like_module(s: &str) -> bool {
    s.contains('/') || s.contains(".so")
}

impl UsdtSpec {
    /// Parses a USDT spec; `None` when it has more than three parts or an empty one.
    pub fn parse(spec: &str) -> Option<UsdtSpec> {
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let own = |s: &str| Some(s.to_string());
        Some(match parts.as_slice() {
            [name] => UsdtSpec {
                module: None,
                provider: None,
                name: name.to_string(),
            },
            [first, name] if looks_like_module(first) => UsdtSpec {
                module: own(first),
                provider: None,
                name: name.to_string(),
            },
            [provider, name] => UsdtSpec {
                module: None,
                provider: own(provider),
                name: name.to_string(),
            },
            [module, provider, name] => UsdtSpec {
                module: own(module),
                provider: own(provider),
                name: name.to_string(),
            },
            _ => return None,
        })
    }
}

impl UprobeSpec {
    /// Parses a uprobe spec; `None` when a part is empty. The library is
    /// what comes before the last lone `:` outside brackets (`::` is C++'s
    /// scope operator, `[abi:cxx11]` a tag of a C++ name).
    pub fn parse(spec: &str) -> Option<UprobeSpec> {
        let (library, symbol) = match library_separator(spec) {
            Some(at) => (Some(spec[..at].to_string()), spec[at + 1..].to_string()),
            None => (None, spec.to_string()),
        };
        if symbol.is_empty() || library.as_deref() == Some("") {
            return None;
        }
        Some(UprobeSpec { library, symbol })
    }

    /// Whether the symbol is a glob (`foo_*`, `PyGC_?`, `op_[ab]*`, or a C++
    /// name with `*` or `?`: `v8::internal::Heap::*`): one BPF function is
    /// then attached to every matching symbol at once. What Go names hold
    /// literally is not glob syntax (see [`go_literal_glob`]):
    /// `net/http.(*conn).serve` is one function, `net/http.(*conn).*` a glob.
    pub fn is_wildcard(&self) -> bool {
        match self.pattern() {
            Ok(SymbolPattern::Symbol(_)) => false,
            Ok(SymbolPattern::Glob(_)) => true,
            Ok(SymbolPattern::Cpp(name)) => name.is_glob(),
            // What a bad pattern would have been, had it parsed.
            Err(_) if is_cpp_name(&self.symbol) => false,
            Err(_) => has_glob_syntax(&self.symbol),
        }
    }

    /// What the symbol names; the error says why it does not parse.
    pub fn pattern(&self) -> Result<SymbolPattern, String> {
        if is_cpp_name(&self.symbol) {
            return CppName::parse(&self.symbol).map(SymbolPattern::Cpp);
        }
        if !has_glob_syntax(&self.symbol) {
            return Ok(SymbolPattern::Symbol(self.symbol.clone()));
        }
        super::selector::memoized(&SYMBOL_GLOBS, &self.symbol, || {
            self.glob()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("has a symbol glob that does not parse: {}", e.kind()))
        })
        .map(SymbolPattern::Glob)
    }

    /// The symbol's glob matcher (`None` for a plain symbol, a C++ name or a
    /// bad glob).
    pub fn matcher(&self) -> Option<globset::GlobMatcher> {
        match self.pattern() {
            Ok(SymbolPattern::Glob(matcher)) => Some(matcher),
            _ => None,
        }
    }

    /// The symbol as a glob, Go's literal sequences escaped.
    fn glob(&self) -> Result<globset::Glob, globset::Error> {
        globset::GlobBuilder::new(&go_literal_glob(&self.symbol))
            .backslash_escape(true)
            .build()
    }
}

/// Symbol globs compiled so far (see [`super::selector::memoized`]).
static SYMBOL_GLOBS: super::selector::Memo<globset::GlobMatcher> = super::selector::Memo::new();

/// Glob characters that Go function names hold literally: the `(*` of a
/// method with a pointer receiver (`net/http.(*conn).serve`) and the `[...]`
/// of a generic function's instance (`main.Map[...]`). No C symbol, nor a
/// mangled C++ one, holds either, and neither means anything useful as a
/// glob.
const GO_LITERALS: [&str; 2] = ["(*", "[...]"];

/// Whether a symbol (not a C++ name) is a glob: `*`, `?` or `[` outside
/// Go's literal sequences.
fn has_glob_syntax(symbol: &str) -> bool {
    let mut rest = symbol.to_string();
    for literal in GO_LITERALS {
        rest = rest.replace(literal, "");
    }
    rest.contains(['*', '?', '['])
}

/// `pattern` with what Go names hold literally (`(*`, `[...]`) escaped, for
/// a glob builder that takes backslash escapes: `net/http.(*conn).*`
/// matches the methods of `*conn` only.
pub fn go_literal_glob(pattern: &str) -> String {
    pattern.replace("(*", "(\\*").replace("[...]", "\\[...\\]")
}

/// Where a uprobe spec's library ends: its last lone `:` outside `()`,
/// `[]` and `{}`. In a run of three colons (`lib:::f`, the global scope) the
/// first one separates.
fn library_separator(spec: &str) -> Option<usize> {
    let bytes = spec.as_bytes();
    let mut depth = 0i32;
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b':' => {
                let start = i;
                while i < bytes.len() && bytes[i] == b':' {
                    i += 1;
                }
                if depth == 0 && (i - start) % 2 == 1 {
                    found = Some(start);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

impl fmt::Display for UsdtSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.module {
            write!(f, "{m}:")?;
        }
        if let Some(p) = &self.provider {
            write!(f, "{p}:")?;
        }
        write!(f, "{}", self.name)
    }
}

/// Why a probe spec is invalid, or `None` when the attach stage can parse it.
pub(super) fn spec_problem(kind: ProbeKind, spec: &str) -> Option<String> {
    let library = match kind {
        ProbeKind::Usdt => UsdtSpec::parse(spec).and_then(|s| s.module),
        _ => UprobeSpec::parse(spec).and_then(|s| s.library),
    };
    if let Some(library) = library.filter(|l| l.contains(['*', '?', '['])) {
        if let Err(e) = super::compile_glob(&library) {
            return Some(format!(
                "has a library glob that does not parse: {e}; a glob matches the file names of the libraries a process maps (`libpython3.*.so*`)"
            ));
        }
    }
    if let Some(uprobe) = UprobeSpec::parse(spec).filter(|_| kind != ProbeKind::Usdt) {
        if let Err(problem) = uprobe.pattern() {
            return Some(problem);
        }
    }
    let valid = match kind {
        ProbeKind::Usdt => UsdtSpec::parse(spec).is_some(),
        ProbeKind::Uprobe | ProbeKind::Uretprobe => UprobeSpec::parse(spec).is_some(),
    };
    if valid && !spec.trim().is_empty() {
        return None;
    }
    let parts = spec.split(':').count();
    Some(if spec.trim().is_empty() {
        "is empty".to_string()
    } else if kind == ProbeKind::Usdt && parts > 3 {
        format!(
            "has {parts} `:`-separated parts; a USDT probe is `name`, `provider:name`, `module:name` or `module:provider:name`"
        )
    } else if kind == ProbeKind::Usdt {
        "has an empty part; a USDT probe is `name`, `provider:name`, `module:name` or `module:provider:name`".to_string()
    } else {
        "has an empty part; a uprobe is `symbol` or `library:symbol`".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usdt_specs() {
        let s = UsdtSpec::parse("gc__start").unwrap();
        assert_eq!(
            (s.module, s.provider, s.name.as_str()),
            (None, None, "gc__start")
        );
        let s = UsdtSpec::parse("python:gc__start").unwrap();
        assert_eq!((s.module, s.provider.as_deref()), (None, Some("python")));
        let s = UsdtSpec::parse("libjvm.so:gc__begin").unwrap();
        assert_eq!((s.module.as_deref(), s.provider), (Some("libjvm.so"), None));
        let s = UsdtSpec::parse("/usr/lib/libruby.so.3.1:ruby:gc__mark__begin").unwrap();
        assert_eq!(s.module.as_deref(), Some("/usr/lib/libruby.so.3.1"));
        assert_eq!(s.provider.as_deref(), Some("ruby"));
        // `libstdcxx` is a provider, not a module: no `.so`, no slash.
        assert_eq!(
            UsdtSpec::parse("libstdcxx:throw")
                .unwrap()
                .provider
                .as_deref(),
            Some("libstdcxx")
        );
        assert!(UsdtSpec::parse("a:b:c:d").is_none());
        assert!(UsdtSpec::parse("python:").is_none());
        assert_eq!(UsdtSpec::parse("m.so:p:n").unwrap().to_string(), "m.so:p:n");
    }

    #[test]
    fn uprobe_specs() {
        assert_eq!(
            UprobeSpec::parse("je_malloc").unwrap(),
            UprobeSpec {
                library: None,
                symbol: "je_malloc".into()
            }
        );
        assert_eq!(
            UprobeSpec::parse("c:malloc").unwrap().library.as_deref(),
            Some("c")
        );
        let s = UprobeSpec::parse("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2:malloc").unwrap();
        assert_eq!(
            s.library.as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
        );
        assert_eq!(s.symbol, "malloc");
        assert!(UprobeSpec::parse("c:").is_none());
        assert!(UprobeSpec::parse(":malloc").is_none());
    }

    #[test]
    fn wildcard_uprobe_specs() {
        let s = UprobeSpec::parse("libuexp_plugin.so:plugin_op_*").unwrap();
        assert!(s.is_wildcard());
        let Ok(SymbolPattern::Glob(m)) = s.pattern() else {
            panic!("{s:?} is a glob")
        };
        assert!(m.is_match("plugin_op_alpha") && !m.is_match("plugin_work"));
        assert!(UprobeSpec::parse("PyGC_?ollect").unwrap().is_wildcard());
        assert!(!UprobeSpec::parse("c:malloc").unwrap().is_wildcard());
        assert!(matches!(
            UprobeSpec::parse("c:malloc").unwrap().pattern(),
            Ok(SymbolPattern::Symbol(s)) if s == "malloc"
        ));
        assert!(UprobeSpec::parse("c:malloc").unwrap().matcher().is_none());
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "libpython3.*.so*:invoke_gc_callback*"),
            None
        );
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "libpython3.[9-0].so*:f"),
            Some("has a library glob that does not parse: invalid range; '9' > '0'; a glob matches the file names of the libraries a process maps (`libpython3.*.so*`)".into())
        );
        assert_eq!(spec_problem(ProbeKind::Uprobe, "lib.so:op_*"), None);

        // Go names are written as Go spells them: not globs.
        for name in [
            "net/http.(*conn).serve",
            "uexp.example/fixture/tally.(*Tally).Add",
            "main.Map[...]",
            "main.(*List[...]).Push",
        ] {
            let s = UprobeSpec::parse(name).unwrap();
            assert!(!s.is_wildcard(), "{name}");
            assert!(s.matcher().is_none(), "{name}");
        }
        let s = UprobeSpec::parse("net/http.(*conn).*").unwrap();
        assert!(s.is_wildcard());
        let m = s.matcher().unwrap();
        assert!(m.is_match("net/http.(*conn).serve"));
        assert!(m.is_match("net/http.(*conn).readRequest"));
        assert!(!m.is_match("net/http.(*persistConn).readLoop"));
        assert!(!m.is_match("net/http.(xconn).serve"));
        let m = UprobeSpec::parse("main.Map[...]*")
            .unwrap()
            .matcher()
            .unwrap();
        assert!(
            m.is_match("main.Map[...]") && !m.is_match("main.Map.") && !m.is_match("main.Mapx")
        );
        assert_eq!(go_literal_glob("a.(*T).[...]"), "a.(\\*T).\\[...\\]");
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "op_[ab"),
            Some(
                "has a symbol glob that does not parse: unclosed character class; missing ']'"
                    .into()
            )
        );
    }

    #[test]
    fn cpp_names_keep_their_scopes_and_only_a_lone_colon_separates_the_library() {
        let s = UprobeSpec::parse("v8::internal::Heap::Scavenge").unwrap();
        assert_eq!(s.library, None);
        assert_eq!(s.symbol, "v8::internal::Heap::Scavenge");
        assert!(!s.is_wildcard());
        assert!(matches!(s.pattern(), Ok(SymbolPattern::Cpp(_))));
        let s = UprobeSpec::parse("/usr/lib/x86_64-linux-gnu/libnode.so.108:v8::internal::Heap::*")
            .unwrap();
        assert_eq!(
            s.library.as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libnode.so.108")
        );
        assert_eq!(s.symbol, "v8::internal::Heap::*");
        assert!(s.is_wildcard());
        let s = UprobeSpec::parse("node:v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::GCCallbackFlags)").unwrap();
        assert_eq!(s.library.as_deref(), Some("node"));
        let s = UprobeSpec::parse("libfoo.so:f[abi:cxx11]()").unwrap();
        assert_eq!(
            (s.library.as_deref(), s.symbol.as_str()),
            (Some("libfoo.so"), "f[abi:cxx11]()")
        );
        let s = UprobeSpec::parse("libfoo.so:::f").unwrap();
        assert_eq!(
            (s.library.as_deref(), s.symbol.as_str()),
            (Some("libfoo.so"), "::f")
        );
        // A `*` in a parameter list is a pointer, not a wildcard.
        assert!(!UprobeSpec::parse("f(char const*)").unwrap().is_wildcard());
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "node:v8::internal::Heap::Scavenge"),
            None
        );
        assert_eq!(
            spec_problem(ProbeKind::Uretprobe, "node:A::f(int"),
            Some("has an unclosed `(` in its C++ name".into())
        );
    }
}
