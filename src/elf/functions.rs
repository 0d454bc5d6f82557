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

#[cfg(test)]
mod tests {
    use super::{Binding, FunctionTable, LoadSegment};

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
}
