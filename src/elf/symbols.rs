//! Function symbols of an ELF file, and "did you mean" suggestions.

use std::collections::HashSet;

/// Prefixes that wrap a familiar name without changing its meaning; they
/// are removed (after leading underscores) before names are compared in
/// [`SymbolTable::similar`]. `je_` is jemalloc's, `tc_` tcmalloc's, `mi_`
/// mimalloc's, `libc_` the one of glibc's internal aliases.
const WRAPPER_PREFIXES: &[&str] = &["je_", "tc_", "mi_", "libc_"];

/// The function symbols (`STT_FUNC` and `STT_GNU_IFUNC`, defined, with a
/// non-zero address) of one ELF file, from both `.symtab` and `.dynsym`.
///
/// Names are stored without their symbol version: `malloc@@GLIBC_2.2.5` is
/// found as `malloc`. Looking up a versioned name (`malloc@GLIBC_2.2.5` or
/// `malloc@@GLIBC_2.2.5`) also works when the file defines that version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolTable {
    /// Unversioned names, sorted and deduplicated.
    names: Vec<Box<str>>,
    /// Versioned spellings (`name@VER`, and `name@@VER` for the default
    /// version) of the symbols that carry a version.
    versioned: HashSet<Box<str>>,
}

impl SymbolTable {
    /// Whether a function named `name` is defined. A name without `@` matches
    /// any version of the symbol; `name@VER` / `name@@VER` must match the
    /// version too.
    pub fn contains(&self, name: &str) -> bool {
        if name.contains('@') {
            self.versioned.contains(name)
        } else {
            self.names
                .binary_search_by(|n| n.as_ref().cmp(name))
                .is_ok()
        }
    }

    /// The number of distinct (unversioned) function names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the file defines no function symbols (for example a stripped
    /// executable without a dynamic symbol table).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The distinct unversioned function names, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(AsRef::as_ref)
    }

    /// The names that start with `prefix`, in byte order (`foo.` finds the
    /// clones `foo.constprop.0` and `foo.part.0`).
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let start = self.names.partition_point(|n| n.as_ref() < prefix);
        self.names[start..]
            .iter()
            .map(AsRef::as_ref)
            .take_while(move |n: &&str| n.starts_with(prefix))
    }

    /// Up to `max` defined names most like `name`, best first, for "symbol not
    /// found" errors. `name` itself is never returned.
    ///
    /// Names are compared case-insensitively after removing a version suffix,
    /// leading underscores and a wrapper prefix (`je_`, `tc_`, `mi_`,
    /// `libc_`). Ranked first are names equal to the query after that
    /// normalisation (`je_malloc` ~ `malloc`), then names that contain the
    /// query or are contained in it (at least 3 characters), then other names
    /// within an edit distance (optimal string alignment) of about a third of
    /// the query's length. Within a rank, smaller edit distance wins, then
    /// shorter name, then byte order, so the result is deterministic.
    pub fn similar(&self, name: &str, max: usize) -> Vec<String> {
        if max == 0 || self.names.is_empty() {
            return Vec::new();
        }
        let query = normalize(unversioned(name));
        let q = query.as_bytes();

        // Ranks 0 and 1: cheap substring tests over every name.
        let mut ranked: Vec<(u8, usize, &str)> = Vec::new();
        let mut rest: Vec<(&str, String)> = Vec::new();
        for n in self.iter() {
            if n == name {
                continue;
            }
            let norm = normalize(n);
            if norm == query {
                // Equal after normalisation: order by the raw spelling.
                let d = osa_distance(name.as_bytes(), n.as_bytes(), usize::MAX);
                ranked.push((0, d.unwrap_or(usize::MAX), n));
            } else if related(&norm, &query) {
                let d = osa_distance(norm.as_bytes(), q, usize::MAX).unwrap_or(usize::MAX);
                ranked.push((1, d, n));
            } else {
                rest.push((n, norm));
            }
        }
        let order = |a: &(u8, usize, &str), b: &(u8, usize, &str)| {
            (a.0, a.1, a.2.len(), a.2).cmp(&(b.0, b.1, b.2.len(), b.2))
        };
        ranked.sort_by(order);
        ranked.truncate(max);

        // Rank 2: edit distance, only if more suggestions are wanted. Keep
        // the best `need` so far and tighten the bound as they improve.
        let need = max - ranked.len();
        if need > 0 && !q.is_empty() {
            let cutoff = 2.max(q.len().div_ceil(3));
            let mut best: Vec<(u8, usize, &str)> = Vec::with_capacity(need + 1);
            for (n, norm) in &rest {
                let bound = if best.len() == need {
                    best[need - 1].1
                } else {
                    cutoff
                };
                if norm.len().abs_diff(q.len()) > bound {
                    continue;
                }
                if let Some(d) = osa_distance(norm.as_bytes(), q, bound) {
                    let cand = (2, d, *n);
                    let pos = best
                        .binary_search_by(|b| order(b, &cand))
                        .unwrap_or_else(|p| p);
                    if pos < need {
                        best.insert(pos, cand);
                        best.truncate(need);
                    }
                }
            }
            ranked.extend(best);
        }
        ranked.into_iter().map(|(_, _, n)| n.to_string()).collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for SymbolTable {
    /// Builds a table from raw symbol names; a name with a version suffix
    /// (`memcpy@GLIBC_2.2.5`, `malloc@@GLIBC_2.2.5`) is stored as both its
    /// base name and its versioned spelling.
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut builder = SymbolTableBuilder::default();
        for name in iter {
            builder.add(name.as_ref(), None);
        }
        builder.finish()
    }
}

/// Collects symbols while an ELF file is read.
#[derive(Debug, Default)]
pub(crate) struct SymbolTableBuilder {
    names: Vec<Box<str>>,
    versioned: HashSet<Box<str>>,
}

impl SymbolTableBuilder {
    /// Adds a symbol named `raw` (which may carry its own `@VER` / `@@VER`
    /// suffix, as in `.symtab`), with its `.gnu.version` version if known:
    /// `(version name, hidden)`, where a hidden version is not the default.
    pub(crate) fn add(&mut self, raw: &str, version: Option<(&str, bool)>) {
        let base = unversioned(raw);
        if base.is_empty() {
            return;
        }
        self.names.push(base.into());
        if let Some(at) = raw.find('@') {
            let ver = raw[at..].trim_start_matches('@');
            if !ver.is_empty() {
                self.add_version(base, ver, raw[at..].starts_with("@@"));
            }
        }
        if let Some((ver, hidden)) = version {
            if !ver.is_empty() {
                self.add_version(base, ver, !hidden);
            }
        }
    }

    fn add_version(&mut self, base: &str, ver: &str, default: bool) {
        self.versioned.insert(format!("{base}@{ver}").into());
        if default {
            self.versioned.insert(format!("{base}@@{ver}").into());
        }
    }

    /// Sorts and deduplicates the collected names.
    pub(crate) fn finish(mut self) -> SymbolTable {
        self.names.sort_unstable();
        self.names.dedup();
        self.names.shrink_to_fit();
        self.versioned.shrink_to_fit();
        SymbolTable {
            names: self.names,
            versioned: self.versioned,
        }
    }
}

/// `name` without a `@VER` / `@@VER` suffix.
pub(super) fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// Lower-cases `name` and removes leading underscores and one wrapper prefix.
fn normalize(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let mut s = lower.trim_start_matches('_');
    for prefix in WRAPPER_PREFIXES {
        if let Some(stripped) = s.strip_prefix(prefix) {
            s = stripped.trim_start_matches('_');
            break;
        }
    }
    if s.is_empty() {
        lower
    } else {
        s.to_string()
    }
}

/// Whether one normalised name contains the other, the shorter having at
/// least 3 characters (so that `a` is not "related" to everything).
fn related(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 3 && long.contains(short)
}

/// Optimal string alignment distance (Levenshtein plus adjacent
/// transpositions) between `a` and `b`, or `None` if it exceeds `bound`.
fn osa_distance(a: &[u8], b: &[u8], bound: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    // Three rows of the dynamic programming matrix: i-2, i-1 and i.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= bound).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(osa_distance(b"", b"", 10), Some(0));
        assert_eq!(osa_distance(b"abc", b"", 10), Some(3));
        assert_eq!(osa_distance(b"kitten", b"sitting", 10), Some(3));
        assert_eq!(osa_distance(b"function", b"functoin", 10), Some(1));
        assert_eq!(osa_distance(b"kitten", b"sitting", 2), None);
        assert_eq!(osa_distance(b"a", b"abcdef", 2), None);
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("je_malloc"), "malloc");
        assert_eq!(normalize("__libc_malloc"), "malloc");
        assert_eq!(normalize("_Py_Dealloc"), "py_dealloc");
        assert_eq!(normalize("___"), "___");
    }

    #[test]
    fn contains_handles_versions() {
        let table: SymbolTable = [
            "malloc@@GLIBC_2.2.5",
            "memcpy@GLIBC_2.2.5",
            "memcpy@@GLIBC_2.14",
            "plain",
        ]
        .into_iter()
        .collect();
        assert_eq!(table.len(), 3);
        assert!(!table.is_empty());
        assert!(table.contains("malloc"));
        assert!(table.contains("malloc@@GLIBC_2.2.5"));
        assert!(table.contains("malloc@GLIBC_2.2.5"));
        assert!(!table.contains("malloc@GLIBC_2.3"));
        assert!(table.contains("memcpy@GLIBC_2.2.5"));
        assert!(!table.contains("memcpy@@GLIBC_2.2.5"));
        assert!(table.contains("memcpy@@GLIBC_2.14"));
        assert!(table.contains("plain"));
        assert!(!table.contains("plai"));
        assert!(!table.contains(""));
        assert_eq!(
            table.iter().collect::<Vec<_>>(),
            ["malloc", "memcpy", "plain"]
        );
    }

    #[test]
    fn names_by_prefix() {
        let table: SymbolTable = ["f", "f.constprop.0", "f.part.0", "fg", "e.cold", "g"]
            .into_iter()
            .collect();
        assert_eq!(
            table.with_prefix("f.").collect::<Vec<_>>(),
            ["f.constprop.0", "f.part.0"]
        );
        assert_eq!(table.with_prefix("h").count(), 0);
        assert_eq!(table.with_prefix("").count(), 6);
    }

    #[test]
    fn builder_uses_gnu_version() {
        let mut b = SymbolTableBuilder::default();
        b.add("malloc", Some(("GLIBC_2.2.5", false)));
        b.add("old", Some(("GLIBC_2.0", true)));
        b.add("", None);
        let t = b.finish();
        assert_eq!(t.len(), 2);
        assert!(t.contains("malloc@@GLIBC_2.2.5"));
        assert!(t.contains("malloc@GLIBC_2.2.5"));
        assert!(t.contains("old@GLIBC_2.0"));
        assert!(!t.contains("old@@GLIBC_2.0"));
    }

    #[test]
    fn similar_prefers_containment_then_distance() {
        let table: SymbolTable = [
            "malloc",
            "zmalloc",
            "ztrymalloc_usable",
            "calloc",
            "free",
            "main",
            "je_malloc_usable_size",
            "a",
        ]
        .into_iter()
        .collect();
        assert_eq!(
            table.similar("je_malloc", 3),
            ["malloc", "zmalloc", "ztrymalloc_usable"]
        );
        assert_eq!(
            table.similar("je_malloc", 10),
            [
                "malloc",
                "zmalloc",
                "ztrymalloc_usable",
                "je_malloc_usable_size",
                "calloc",
            ]
        );
        // Typos fall back to edit distance; the name itself is never offered.
        assert_eq!(table.similar("fre", 2), ["free"]);
        assert_eq!(table.similar("mian", 5), ["main"]);
        assert_eq!(table.similar("malloc", 1), ["zmalloc"]);
        assert!(table.similar("something_else_entirely", 5).is_empty());
        assert!(table.similar("malloc", 0).is_empty());
        assert!(SymbolTable::default().similar("malloc", 3).is_empty());
    }

    #[test]
    fn similar_is_deterministic_for_ties() {
        let table: SymbolTable = ["fooc", "foob", "fooa", "fo"].into_iter().collect();
        // All three are at distance 1 and of the same length: byte order.
        assert_eq!(table.similar("foo", 3), ["fooa", "foob", "fooc"]);
        assert_eq!(table.similar("foo", 4), ["fooa", "foob", "fooc", "fo"]);
    }
}
