//! Probe specs as written in the config: their parsing (used by the attach
//! stage to find each probe) and, for validation, why one does not parse.
//!
//! USDT: `name`, `provider:name`, `module:name` (when the first part is a path
//! or contains `.so`), or `module:provider:name`.
//! uprobes: `symbol` (in the executable) or `lib:symbol`, where `lib` is an
//! absolute path, a file name (`libjemalloc.so.2`) or a short name (`c` = libc).

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
    /// Function symbol.
    pub symbol: String,
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
    /// Parses a uprobe spec; `None` when a part is empty.
    pub fn parse(spec: &str) -> Option<UprobeSpec> {
        let (library, symbol) = match spec.rsplit_once(':') {
            Some((lib, sym)) => (Some(lib.to_string()), sym.to_string()),
            None => (None, spec.to_string()),
        };
        if symbol.is_empty() || library.as_deref() == Some("") {
            return None;
        }
        Some(UprobeSpec { library, symbol })
    }

    /// Whether the symbol is a glob (`foo_*`, `PyGC_?`, `op_[ab]*`): one BPF
    /// function is then attached to every matching symbol at once.
    pub fn is_wildcard(&self) -> bool {
        self.symbol.contains(['*', '?', '['])
    }

    /// The symbol's glob matcher (`None` for a plain symbol or a bad glob).
    pub fn matcher(&self) -> Option<globset::GlobMatcher> {
        if !self.is_wildcard() {
            return None;
        }
        Some(globset::Glob::new(&self.symbol).ok()?.compile_matcher())
    }
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
        if uprobe.is_wildcard() {
            if let Err(e) = globset::Glob::new(&uprobe.symbol) {
                return Some(format!(
                    "has a symbol glob that does not parse: {}",
                    e.kind()
                ));
            }
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
        let m = s.matcher().unwrap();
        assert!(m.is_match("plugin_op_alpha") && !m.is_match("plugin_work"));
        assert!(UprobeSpec::parse("PyGC_?ollect").unwrap().is_wildcard());
        assert!(!UprobeSpec::parse("c:malloc").unwrap().is_wildcard());
        assert!(UprobeSpec::parse("c:malloc").unwrap().matcher().is_none());
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "libpython3.*.so*:invoke_gc_callback*"),
            None
        );
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "libpython3.[0-9.so:f"),
            Some("has a library glob that does not parse: unclosed character class; missing ']'; a glob matches the file names of the libraries a process maps (`libpython3.*.so*`)".into())
        );
        assert_eq!(spec_problem(ProbeKind::Uprobe, "lib.so:op_*"), None);
        assert_eq!(
            spec_problem(ProbeKind::Uprobe, "op_[ab"),
            Some(
                "has a symbol glob that does not parse: unclosed character class; missing ']'"
                    .into()
            )
        );
    }
}
