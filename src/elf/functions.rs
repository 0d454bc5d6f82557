//! Function symbols with their addresses, and the loadable segments that place
//! them in a process: what wildcard uprobes attach to (file offsets) and what
//! the `usym` decoder names (an instruction pointer back to its function).

/// One function symbol: a name at a link-time address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Name without its symbol version.
    pub name: Box<str>,
    /// Link-time virtual address.
    pub address: u64,
    /// Size in bytes (0 when the symbol does not say).
    pub size: u64,
    /// Binding rank: global 0, weak 1, local 2, Go's function table 3 (the
    /// lower names an address first).
    rank: u8,
}

impl Function {
    /// Whether only Go's function table (`.gopclntab`) names it: the ELF
    /// symbol tables lack the name (a stripped Go binary), so a uprobe on it
    /// is attached at its file offset.
    pub fn from_go_table(&self) -> bool {
        self.rank == Binding::Go as u8
    }

    /// Whether the symbol is weak (`STB_WEAK`): a strong definition of the
    /// same name overrides it.
    pub fn is_weak(&self) -> bool {
        self.rank == Binding::Weak as u8
    }
}

/// A `PT_LOAD` segment: where a range of the file lands in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Link-time virtual address.
    pub vaddr: u64,
    /// Offset in the file.
    pub offset: u64,
    /// Bytes of the file it maps.
    pub file_size: u64,
}

/// The function symbols of one file, sorted by address, and its segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionTable {
    /// Sorted by address, then by rank and name: the first of an address is its name.
    functions: Vec<Function>,
    segments: Vec<LoadSegment>,
}

/// Symbol binding, as [`FunctionTable`] ranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `STB_GLOBAL` (and anything unknown).
    Global,
    /// `STB_WEAK`.
    Weak,
    /// `STB_LOCAL`.
    Local,
    /// Go's function table, for a name no ELF symbol has.
    Go,
}

impl FunctionTable {
    /// A table of `functions` (in any order, duplicates allowed) and `segments`.
    pub(crate) fn new(
        functions: impl IntoIterator<Item = (String, u64, u64, Binding)>,
        segments: Vec<LoadSegment>,
    ) -> FunctionTable {
        let mut functions: Vec<Function> = functions
            .into_iter()
            .map(|(name, address, size, binding)| Function {
                name: name.into_boxed_str(),
                address,
                size,
                rank: binding as u8,
            })
            .collect();
        functions.sort_by(|a, b| {
            (a.address, a.rank, &a.name, std::cmp::Reverse(a.size)).cmp(&(
                b.address,
                b.rank,
                &b.name,
                std::cmp::Reverse(b.size),
            ))
        });
        // The same symbol in .symtab and .dynsym, or twice in .symtab.
        functions.dedup_by(|b, a| a.address == b.address && a.name == b.name);
        FunctionTable {
            functions,
            segments,
        }
    }

    /// Number of (name, address) entries.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Whether there are no function symbols.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Every (name, address) entry, by address; the aliases of one address
    /// follow each other, the one [`containing`](Self::containing) names first.
    pub fn iter(&self) -> impl Iterator<Item = &Function> + '_ {
        self.functions.iter()
    }

    /// The functions whose name `matches`, one per address (aliases of one
    /// address are one function: attaching both would count each call twice),
    /// named by the alias that matched first in address order. Of the
    /// functions of one name in Go's function table, only the one
    /// [`FunctionTable::go_function`] picks: the others are wrappers that
    /// call it.
    pub fn matching(&self, matches: impl Fn(&str) -> bool) -> Vec<&Function> {
        let mut out: Vec<&Function> = Vec::new();
        for function in &self.functions {
            if !matches(&function.name) {
                continue;
            }
            if out
                .last()
                .is_some_and(|last| last.address == function.address)
            {
                continue;
            }
            out.push(function);
        }
        let mut best: std::collections::HashMap<&str, &Function> = std::collections::HashMap::new();
        for function in out.iter().filter(|f| f.from_go_table()) {
            let kept = best.entry(&function.name).or_insert(function);
            if better_go_function(function, kept) {
                *kept = function;
            }
        }
        if best.len() < out.iter().filter(|f| f.from_go_table()).count() {
            out.retain(|f| !f.from_go_table() || std::ptr::eq(best[&*f.name], *f));
        }
        out
    }

    /// The function named `name` that only Go's function table knows, if
    /// any, and the others of that name in it. Since Go 1.17 a function
    /// called from assembly (or assembly called from Go) has a second entry of
    /// the same name: a small wrapper converting between the two calling
    /// conventions, which calls the function. The function is the largest
    /// (the lowest address among equals); a probe on the wrappers too would
    /// count the calls through them twice.
    pub fn go_function(&self, name: &str) -> Option<(&Function, Vec<&Function>)> {
        let mut named: Vec<&Function> = self
            .functions
            .iter()
            .filter(|f| f.from_go_table() && &*f.name == name)
            .collect();
        let best = named
            .iter()
            .copied()
            .reduce(|a, b| if better_go_function(b, a) { b } else { a })?;
        named.retain(|f| !std::ptr::eq(*f, best));
        Some((best, named))
    }

    /// The functions named exactly `name`, one per address (aliases in
    /// `.symtab` and `.dynsym` are one): usually one; more when `static`
    /// functions of different source files share the name, or a weak
    /// definition sits beside a strong one.
    pub fn named(&self, name: &str) -> Vec<&Function> {
        self.matching(|n| n == name)
    }

    /// The copies a compiler made of function `name` (see [`clone_suffix`]),
    /// one per address, leaving out any at an address `name` itself has (an
    /// alias, not a copy) and `.cold` fragments (not entry points).
    pub fn clones_of(&self, name: &str) -> Vec<&Function> {
        let own: Vec<u64> = self.named(name).iter().map(|f| f.address).collect();
        self.matching(|n| {
            n.strip_prefix(name)
                .is_some_and(|rest| clone_suffix(rest).is_some())
        })
        .into_iter()
        .filter(|f| !own.contains(&f.address))
        .collect()
    }

    /// The function containing link-time address `address`: the symbol at or
    /// before it whose size covers it (a symbol without a size covers only its
    /// own address). Aliases resolve to the global name first.
    pub fn containing(&self, address: u64) -> Option<&Function> {
        let after = self.functions.partition_point(|f| f.address <= address);
        let candidates = &self.functions[..after];
        let last = candidates.last()?;
        // The first entry of that address has the best rank.
        let first = candidates.partition_point(|f| f.address < last.address);
        let best = &candidates[first];
        let covers = if best.size == 0 {
            best.address == address
        } else {
            address - best.address < best.size
        };
        covers.then_some(best)
    }

    /// The file offset that link-time address `address` is loaded from
    /// (`None` also when a broken segment would place it past `u64::MAX`).
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| address >= s.vaddr && address - s.vaddr < s.file_size)
            .and_then(|s| (address - s.vaddr).checked_add(s.offset))
    }

    /// The link-time address loaded from file offset `offset` (`None` also
    /// when a broken segment would place it past `u64::MAX`).
    pub fn address_of_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| offset >= s.offset && offset - s.offset < s.file_size)
            .and_then(|s| (offset - s.offset).checked_add(s.vaddr))
    }
}

/// Whether `a` rather than `b` is the function of their shared name: the
/// larger, then the lower address.
fn better_go_function(a: &Function, b: &Function) -> bool {
    (a.size, std::cmp::Reverse(a.address)) > (b.size, std::cmp::Reverse(b.address))
}

/// What a compiler's copy of a function is called after the function's own
/// name: one or more of GCC's `.constprop.N` (constant arguments folded in,
/// and dropped), `.isra.N` (arguments passed in parts, or dropped),
/// `.part.N` (the body split off from an inlined head), LTO's `.lto_priv.N`
/// and clang's `.llvm.N`. Returns the kinds in order (`["constprop"]`), or
/// `None` when `rest` is no such suffix, or ends in `.cold` (a fragment
/// jumped to from inside the function, not an entry point).
pub fn clone_suffix(rest: &str) -> Option<Vec<&str>> {
    const KINDS: &[&str] = &["constprop", "isra", "part", "lto_priv", "llvm"];
    let mut parts = rest.strip_prefix('.')?.split('.');
    let mut kinds = Vec::new();
    while let Some(kind) = parts.next() {
        if !KINDS.contains(&kind) {
            return None;
        }
        let number = parts.next()?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        kinds.push(kind);
    }
    (!kinds.is_empty()).then_some(kinds)
}

#[cfg(test)]
mod tests {
    use super::{clone_suffix, Binding, FunctionTable, LoadSegment};

    fn table() -> FunctionTable {
        FunctionTable::new(
            [
                ("foo_b".to_string(), 0x1100, 0x20, Binding::Global),
                ("foo_a".to_string(), 0x1000, 0x40, Binding::Global),
                ("__foo_a_alias".to_string(), 0x1000, 0x40, Binding::Weak),
                ("foo_a".to_string(), 0x1000, 0x40, Binding::Global),
                ("helper".to_string(), 0x1200, 0, Binding::Local),
            ],
            vec![
                LoadSegment {
                    vaddr: 0,
                    offset: 0,
                    file_size: 0x800,
                },
                LoadSegment {
                    vaddr: 0x1000,
                    offset: 0x1000,
                    file_size: 0x400,
                },
                LoadSegment {
                    vaddr: 0x3df0,
                    offset: 0x2df0,
                    file_size: 0x100,
                },
            ],
        )
    }

    #[test]
    fn aliases_are_one_function_and_glob_matches_are_per_address() {
        let t = table();
        assert_eq!(t.len(), 4);
        let names: Vec<&str> = t
            .matching(|n| n.contains("foo"))
            .iter()
            .map(|f| &*f.name)
            .collect();
        assert_eq!(names, ["foo_a", "foo_b"]);
        let names: Vec<&str> = t
            .matching(|n| n.starts_with("__"))
            .iter()
            .map(|f| &*f.name)
            .collect();
        assert_eq!(names, ["__foo_a_alias"]);
    }

    #[test]
    fn an_address_names_the_function_covering_it() {
        let t = table();
        assert_eq!(t.containing(0x1000).map(|f| &*f.name), Some("foo_a"));
        assert_eq!(t.containing(0x103f).map(|f| &*f.name), Some("foo_a"));
        assert_eq!(t.containing(0x1040).map(|f| &*f.name), None);
        assert_eq!(t.containing(0x1110).map(|f| &*f.name), Some("foo_b"));
        assert_eq!(t.containing(0x1200).map(|f| &*f.name), Some("helper"));
        assert_eq!(t.containing(0x1201).map(|f| &*f.name), None);
        assert_eq!(t.containing(0xfff), None);
    }

    #[test]
    fn offsets_and_addresses_go_through_the_segments() {
        let t = table();
        assert_eq!(t.file_offset(0x1100), Some(0x1100));
        assert_eq!(t.file_offset(0x3e00), Some(0x2e00));
        assert_eq!(t.file_offset(0x3000), None);
        assert_eq!(t.address_of_offset(0x2e00), Some(0x3e00));
        assert_eq!(t.address_of_offset(0x1010), Some(0x1010));
        assert_eq!(t.address_of_offset(0x5000), None);
    }

    /// A segment whose offset or address is near `u64::MAX` (a broken or
    /// hostile file; found by fuzzing) places nothing instead of overflowing.
    #[test]
    fn broken_segments_place_nothing() {
        let segments = vec![
            LoadSegment {
                vaddr: 0x1000,
                offset: u64::MAX - 0x10,
                file_size: 0x100,
            },
            LoadSegment {
                vaddr: u64::MAX - 0x10,
                offset: 0x2000,
                file_size: 0x100,
            },
        ];
        let t = FunctionTable::new([], segments);
        assert_eq!(t.file_offset(0x1008), Some(u64::MAX - 8));
        assert_eq!(t.file_offset(0x1020), None);
        assert_eq!(t.address_of_offset(0x2008), Some(u64::MAX - 8));
        assert_eq!(t.address_of_offset(0x2020), None);
    }

    /// A Go function and its ABI wrapper share a name in `.gopclntab`: the
    /// function (the larger) is the one attached, by name or by glob.
    #[test]
    fn of_go_functions_of_one_name_the_largest_is_the_function() {
        let t = FunctionTable::new(
            [
                ("runtime.args".to_string(), 0x441e20, 128, Binding::Go),
                ("runtime.args".to_string(), 0x45fa20, 64, Binding::Go),
                ("runtime.argv".to_string(), 0x441f00, 64, Binding::Go),
                ("twin".to_string(), 0x500000, 32, Binding::Go),
                ("twin".to_string(), 0x400000, 32, Binding::Go),
                ("c_static".to_string(), 0x1000, 16, Binding::Local),
                ("c_static".to_string(), 0x2000, 32, Binding::Local),
            ],
            Vec::new(),
        );
        let (chosen, others) = t.go_function("runtime.args").unwrap();
        assert_eq!((chosen.address, chosen.size), (0x441e20, 128));
        assert!(chosen.from_go_table());
        assert_eq!(
            others.iter().map(|f| f.address).collect::<Vec<_>>(),
            [0x45fa20]
        );
        let (chosen, others) = t.go_function("runtime.argv").unwrap();
        assert_eq!(chosen.address, 0x441f00);
        assert!(others.is_empty());
        // Equal sizes: the lower address.
        assert_eq!(t.go_function("twin").unwrap().0.address, 0x400000);
        // Symbol table names are not Go's to pick from.
        assert!(t.go_function("c_static").is_none());
        assert!(t.go_function("missing").is_none());

        let matched: Vec<(&str, u64)> = t
            .matching(|n| n.starts_with("runtime.") || n == "c_static" || n == "twin")
            .iter()
            .map(|f| (&*f.name, f.address))
            .collect();
        assert_eq!(
            matched,
            [
                ("c_static", 0x1000),
                ("c_static", 0x2000),
                ("twin", 0x400000),
                ("runtime.args", 0x441e20),
                ("runtime.argv", 0x441f00),
            ]
        );
    }

    #[test]
    fn clone_suffixes_are_the_compilers_copies_and_cold_parts_are_not() {
        assert_eq!(clone_suffix(".constprop.0"), Some(vec!["constprop"]));
        assert_eq!(clone_suffix(".isra.0.part.12"), Some(vec!["isra", "part"]));
        assert_eq!(clone_suffix(".lto_priv.0"), Some(vec!["lto_priv"]));
        assert_eq!(clone_suffix(".llvm.1234567"), Some(vec!["llvm"]));
        for not_a_copy in [
            "",
            ".cold",
            ".part.0.cold",
            ".constprop",
            ".constprop.x",
            "_main",
            ".localalias",
            "constprop.0",
        ] {
            assert_eq!(clone_suffix(not_a_copy), None, "{not_a_copy:?}");
        }
    }

    #[test]
    fn copies_of_a_function_are_found_beside_it_and_aliases_are_not_copies() {
        let t = FunctionTable::new(
            [
                (
                    "collect.constprop.1".to_string(),
                    0x100,
                    0x40,
                    Binding::Local,
                ),
                (
                    "collect.constprop.0".to_string(),
                    0x200,
                    0x40,
                    Binding::Local,
                ),
                ("collect.cold".to_string(), 0x300, 0x10, Binding::Local),
                (
                    "collect_generations".to_string(),
                    0x400,
                    0x40,
                    Binding::Local,
                ),
                ("take_gil".to_string(), 0x500, 0x40, Binding::Local),
                (
                    "take_gil.constprop.0".to_string(),
                    0x600,
                    0x40,
                    Binding::Local,
                ),
                (
                    "take_gil.localalias".to_string(),
                    0x500,
                    0x40,
                    Binding::Local,
                ),
                ("traverse".to_string(), 0x700, 0x10, Binding::Local),
                ("traverse".to_string(), 0x800, 0x10, Binding::Local),
                ("traverse.isra.0".to_string(), 0x700, 0x10, Binding::Local),
            ],
            Vec::new(),
        );
        let names = |fs: Vec<&super::Function>| -> Vec<String> {
            fs.iter()
                .map(|f| format!("{}@{:#x}", f.name, f.address))
                .collect()
        };
        assert!(t.named("collect").is_empty());
        assert_eq!(
            names(t.clones_of("collect")),
            ["collect.constprop.1@0x100", "collect.constprop.0@0x200"]
        );
        assert_eq!(names(t.named("take_gil")), ["take_gil@0x500"]);
        assert_eq!(
            names(t.clones_of("take_gil")),
            ["take_gil.constprop.0@0x600"]
        );
        // Two static functions of one name; a "copy" at one of their addresses is an alias.
        assert_eq!(
            names(t.named("traverse")),
            ["traverse@0x700", "traverse@0x800"]
        );
        assert!(t.clones_of("traverse").is_empty());
    }
}
