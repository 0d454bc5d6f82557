//! The functions of one file that a C++ name in a uprobe spec names
//! ([`CppName`]), found through their demangled names.
//!
//! Only the mangled symbols that contain the name's last identifier are
//! demangled (node 20 has 66,510 C++ functions; `v8::internal::Heap::Scavenge`
//! demangles the few that contain `8Scavenge`), and a search's result is kept
//! with the file ([`ElfInfo::derived`]): the scan over every symbol (5 to
//! 15 ms in node) is paid once per file, not once per process.

use crate::config::{normalize_cpp_name, CppName};
use crate::elf::demangle;
use crate::elf::{ElfInfo, FunctionTable, SymbolTable};
use std::sync::Arc;

/// One function a C++ name matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CppFunction {
    /// Its symbol.
    pub symbol: Box<str>,
    /// Its link-time address.
    pub address: u64,
    /// Its demangled name with its parameter list and clone suffix, as
    /// `c++filt` prints it (without return type): tells overloads apart.
    pub demangled: String,
}

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CppSearch {
    /// The functions the name names, one per address (an alias of an
    /// address already found is the same function), by address.
    pub matches: Vec<CppFunction>,
    /// For a name without wildcards or clone suffix: the compiler's clones of
    /// the functions it names (`.constprop.0`, `.isra.0`, `.part.0`,
    /// `.cold`), which it does not name.
    pub clones: Vec<CppFunction>,
}

/// The functions of the file that `name` names, searched once per file.
pub fn search(info: &ElfInfo, name: &CppName) -> Arc<CppSearch> {
    info.derived(&format!("cpp-name:{}", name.cache_key()), || {
        search_table(&info.functions, name)
    })
}

/// The functions of `functions` that `name` names.
pub fn search_table(functions: &FunctionTable, name: &CppName) -> CppSearch {
    let started = std::time::Instant::now();
    let hint = name.mangled_hint();
    let with_params = name.has_params();
    let want_clones = !name.is_glob() && !name.has_clone_suffix();
    let mut found = CppSearch::default();
    let mut last_address = None;
    let mut demangled_count = 0usize;
    for function in functions.iter() {
        let raw = &*function.name;
        if last_address == Some(function.address)
            || !demangle::is_mangled(raw)
            || hint.is_some_and(|h| !raw.contains(h))
        {
            continue;
        }
        demangled_count += 1;
        let Some(demangled) = demangle::demangle(raw, with_params) else {
            continue;
        };
        let key = normalize_cpp_name(&demangled);
        let suffix = demangle::split_clone_suffix(raw).1;
        // A pattern without a clone suffix names whole functions only.
        let clone_unasked = !suffix.is_empty() && !name.has_clone_suffix();
        let without_suffix = || key.strip_suffix(&normalize_cpp_name(suffix));
        let into = if !clone_unasked && name.matches(&key) {
            &mut found.matches
        } else if want_clones
            && !suffix.is_empty()
            && without_suffix().is_some_and(|k| name.matches(k))
        {
            &mut found.clones
        } else {
            continue;
        };
        last_address = Some(function.address);
        into.push(CppFunction {
            symbol: raw.into(),
            address: function.address,
            demangled: if with_params {
                demangled
            } else {
                demangle::demangle(raw, true).unwrap_or(demangled)
            },
        });
    }
    tracing::debug!(
        name = name.text(),
        hint,
        symbols = functions.len(),
        demangled = demangled_count,
        matches = found.matches.len(),
        clones = found.clones.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "C++ name searched"
    );
    found
}

/// [`similar`], kept with the cached file: every process of a binary whose
/// spec misspells a name gets the same suggestions, computed once.
pub fn similar_cached(info: &ElfInfo, name: &str, max: usize) -> Arc<Vec<String>> {
    info.derived(&format!("cpp-similar:{max}:{name}"), || {
        similar(&info.functions, name, max)
    })
}

/// Up to `max` demangled names (without parameters or clone suffixes) most
/// like `name`, for "not found" errors. When the file has functions in the
/// name's scope (`v8::internal::Heap::`), only they are suggested: first by
/// their own names, then by whole names. They are found among the symbols
/// that contain the scope's last identifier as mangled (`4Heap`: 641 of
/// node 20's 66,510 C++ functions). Every C++ function of the file is
/// demangled (over a second in node) only when the scope has none: then it
/// is misspelt (`Isolat::`), and any function may be meant.
pub fn similar(functions: &FunctionTable, name: &str, max: usize) -> Vec<String> {
    let demangled = |hint: Option<&str>| -> SymbolTable {
        functions
            .iter()
            .filter(|f| {
                demangle::is_mangled(&f.name)
                    && hint.is_none_or(|h| f.name.contains(h))
                    && demangle::split_clone_suffix(&f.name).1.is_empty()
            })
            .filter_map(|f| demangle::demangle(&f.name, false))
            .collect()
    };
    // Every C++ function's name, demangled at most once.
    let mut all: Option<SymbolTable> = None;
    if let Some((scope, own)) = name.rsplit_once("::") {
        // A scope without an identifier to go by (`std`) is sought among all.
        let hint = CppName::parse(scope)
            .ok()
            .and_then(|s| s.mangled_hint().map(str::to_string));
        let hinted;
        let candidates = match hint {
            Some(hint) => {
                hinted = demangled(Some(&hint));
                &hinted
            }
            None => all.insert(demangled(None)),
        };
        if let Some(out) = similar_in_scope(candidates, scope, own, name, max) {
            return out;
        }
    }
    all.unwrap_or_else(|| demangled(None)).similar(name, max)
}

/// Of `names`, those in `scope` most like `name` (`scope::own`): first by
/// their own names, then by whole names; `None` when the scope has none.
fn similar_in_scope(
    names: &SymbolTable,
    scope: &str,
    own: &str,
    name: &str,
    max: usize,
) -> Option<Vec<String>> {
    let prefix = format!("{scope}::");
    let in_scope: SymbolTable = names.with_prefix(&prefix).collect();
    if in_scope.is_empty() {
        return None;
    }
    let own_names: SymbolTable = in_scope.iter().map(|n| &n[prefix.len()..]).collect();
    let mut out: Vec<String> = own_names
        .similar(own, max)
        .into_iter()
        .map(|n| format!("{prefix}{n}"))
        .collect();
    for other in in_scope.similar(name, max) {
        if out.len() < max && !out.contains(&other) {
            out.push(other);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::LoadSegment;

    fn table(symbols: &[(&str, u64)]) -> FunctionTable {
        FunctionTable::new(
            symbols.iter().map(|(name, address)| {
                (name.to_string(), *address, 16, crate::elf::Binding::Global)
            }),
            vec![LoadSegment {
                vaddr: 0,
                offset: 0,
                file_size: 0x10000,
            }],
        )
    }

    fn names(found: &[CppFunction]) -> Vec<String> {
        found.iter().map(|f| f.demangled.clone()).collect()
    }

    const HEAP: &[(&str, u64)] = &[
        ("_ZN2v88internal4Heap8ScavengeEv", 0x100),
        ("_ZN2v88internal4Heap8ScavengeEv.constprop.0", 0x200),
        ("_ZN2v88internal4Heap8ScavengeEv.part.0", 0x300),
        ("_ZN2v88internal4Heap11MarkCompactEv", 0x400),
        ("_ZN2v88internal4Heap7CollectEi", 0x500),
        ("_ZN2v88internal4Heap7CollectEPKc", 0x600),
        // An alias of the first overload: the same function.
        ("_ZN2v88internal4Heap7CollectEi", 0x500),
        ("_ZN2v88internal7Isolate8ScavengeEv", 0x700),
        ("Scavenge", 0x800),
    ];

    #[test]
    fn exact_names_find_overloads_and_report_clones() {
        let t = table(HEAP);
        let found = search_table(&t, &CppName::parse("v8::internal::Heap::Scavenge").unwrap());
        assert_eq!(names(&found.matches), ["v8::internal::Heap::Scavenge()"]);
        assert_eq!(
            names(&found.clones),
            [
                "v8::internal::Heap::Scavenge().constprop.0",
                "v8::internal::Heap::Scavenge().part.0"
            ]
        );
        let found = search_table(&t, &CppName::parse("v8::internal::Heap::Collect").unwrap());
        assert_eq!(
            names(&found.matches),
            [
                "v8::internal::Heap::Collect(int)",
                "v8::internal::Heap::Collect(char const*)"
            ]
        );
        let one = search_table(
            &t,
            &CppName::parse("v8::internal::Heap::Collect(char const *)").unwrap(),
        );
        assert_eq!(
            names(&one.matches),
            ["v8::internal::Heap::Collect(char const*)"]
        );
        assert_eq!(one.matches[0].address, 0x600);
        let clone = search_table(
            &t,
            &CppName::parse("v8::internal::Heap::Scavenge.constprop.0").unwrap(),
        );
        assert_eq!(clone.matches[0].address, 0x200);
        assert!(clone.clones.is_empty());
    }

    #[test]
    fn globs_match_whole_functions_unless_they_name_a_clone_suffix() {
        let t = table(HEAP);
        let found = search_table(&t, &CppName::parse("v8::internal::Heap::*").unwrap());
        assert_eq!(
            names(&found.matches),
            [
                "v8::internal::Heap::Scavenge()",
                "v8::internal::Heap::MarkCompact()",
                "v8::internal::Heap::Collect(int)",
                "v8::internal::Heap::Collect(char const*)"
            ]
        );
        assert!(found.clones.is_empty());
        let found = search_table(&t, &CppName::parse("v8::internal::Heap::*.*").unwrap());
        assert_eq!(
            names(&found.matches),
            [
                "v8::internal::Heap::Scavenge().constprop.0",
                "v8::internal::Heap::Scavenge().part.0"
            ]
        );
        let found = search_table(&t, &CppName::parse("*::Scavenge").unwrap());
        assert_eq!(
            names(&found.matches),
            [
                "v8::internal::Heap::Scavenge()",
                "v8::internal::Isolate::Scavenge()"
            ]
        );
    }

    #[test]
    fn misspelt_names_get_suggestions() {
        let t = table(HEAP);
        let name = CppName::parse("v8::internal::Heap::Scavange").unwrap();
        assert!(search_table(&t, &name).matches.is_empty());
        assert_eq!(
            similar(&t, name.name(), 2),
            [
                "v8::internal::Heap::Scavenge",
                "v8::internal::Heap::Collect"
            ]
        );
        // Another scope's function when the scope itself is misspelt.
        assert_eq!(
            similar(&t, "v8::internal::Isolat::Scavenge", 1),
            ["v8::internal::Isolate::Scavenge"]
        );
    }

    /// [`similar`]'s rule applied to every C++ function demangled: what it
    /// must give while demangling only those that contain the scope's hint
    /// (the shortcut under test is which names are demangled).
    fn similar_by_full_scan(functions: &FunctionTable, name: &str, max: usize) -> Vec<String> {
        let names: SymbolTable = functions
            .iter()
            .filter(|f| {
                demangle::is_mangled(&f.name) && demangle::split_clone_suffix(&f.name).1.is_empty()
            })
            .filter_map(|f| demangle::demangle(&f.name, false))
            .collect();
        name.rsplit_once("::")
            .and_then(|(scope, own)| super::similar_in_scope(&names, scope, own, name, max))
            .unwrap_or_else(|| names.similar(name, max))
    }

    #[test]
    fn suggestions_come_from_the_scope_when_it_exists() {
        let mut symbols = HEAP.to_vec();
        symbols.extend([
            ("_ZN2v88internal4Heap4IdleEv", 0x900),
            ("_ZN2v88internal4Heap9ScavengerEv", 0xa00),
            ("_ZN2v88internal10HeapObject8ScavengeEv", 0xb00),
            ("_ZN2v88internal4Heap7Scavger3RunEv", 0xc00),
            ("_ZNSt6vectorIiSaIiEE9push_backERKi", 0xd00),
            ("_ZN12_GLOBAL__N_14Heap8ScavengeEv", 0xe00),
            // Nearer `v8::internal::Heap::Scavange` as a whole name than
            // Heap's own functions, but in another scope.
            ("_ZN2v88internal5Heap28ScavangeEv", 0xf00),
            // Heap in a parameter list only: not in Heap's scope.
            ("_ZN2v88internal7Factory8ScavangeEPNS0_4HeapE", 0x1000),
        ]);
        let t = table(&symbols);
        assert_eq!(
            similar(&t, "v8::internal::Heap::Scavange", 4),
            [
                "v8::internal::Heap::Scavenge",
                "v8::internal::Heap::Scavenger",
                "v8::internal::Heap::Idle",
                "v8::internal::Heap::Collect"
            ]
        );
        // A scope the file lacks: any function may be meant.
        assert_eq!(
            similar(&t, "v8::internal::Hep::Scavange", 2),
            [
                "v8::internal::Heap::Scavenge",
                "v8::internal::Heap2::Scavange"
            ]
        );
        for name in [
            "v8::internal::Heap::Scavange",
            "v8::internal::Heap::Scavger",
            "v8::internal::Heap::Scavger::Rn",
            "v8::internal::Isolat::Scavenge",
            "v8::internal::HeapObject::Scaveng",
            "v8::internal::Nothing::Scavenge",
            "std::vector<int,std::allocator<int>>::push_bak",
            "std::vectr::push_back",
            "(anonymous namespace)::Heap::Scavange",
            "Scavange",
        ] {
            for max in 1..=6 {
                assert_eq!(
                    similar(&t, name, max),
                    similar_by_full_scan(&t, name, max),
                    "{name} {max}"
                );
            }
        }
    }

    /// Symbols are whatever a file holds. Names are compared without
    /// whitespace, so a clone suffix with spaces (here longer than the
    /// name itself) or non-ASCII is taken off the compared name as
    /// compared, not by its length in the symbol: no panic, and the clones
    /// are still reported as clones, not matches.
    #[test]
    fn odd_suffixes_are_harmless() {
        let t = table(&[
            ("_ZN1A1fEv. x", 0x100),
            ("_ZN1A1fEv.\u{fffd}\u{fffd}", 0x200),
            ("_ZN1A1fEv.          ", 0x300),
            ("_ZN1A1fEv.\u{3000}\u{3000}\u{3000}", 0x400),
            ("_ZN1A1fEv", 0x500),
        ]);
        let found = search_table(&t, &CppName::parse("A::f").unwrap());
        assert_eq!(names(&found.matches), ["A::f()"]);
        assert_eq!(
            found.clones.iter().map(|f| f.address).collect::<Vec<_>>(),
            [0x100, 0x200, 0x300, 0x400]
        );
        // With a parameter list the compared name has it too.
        let found = search_table(&t, &CppName::parse("A::f()").unwrap());
        assert_eq!(found.matches.len(), 1);
        assert_eq!(found.clones.len(), 4);
    }
}
