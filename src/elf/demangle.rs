//! Demangled names of C++ function symbols (the Itanium C++ ABI's mangling,
//! which GCC and Clang use on Linux), printed as `c++filt` prints them but
//! without return types, with the cpp_demangle crate.
//!
//! Demangling is not free: the 66,510 C++ functions of Node.js 20's `node`
//! took 143 ms with their parameter lists and 123 ms without (release build,
//! this project's 2-core machine, 2026-12-07), and their names add up to
//! 9 MB. So nothing is demangled when a file is read: a spec that names a C++
//! function demangles only the symbols that contain one of its identifiers
//! (see `CppName::mangled_hint`), when it is resolved.

use std::fmt;

/// The longest symbol demangled: real ones are far shorter (node's longest
/// function symbol has 716 characters); a longer one is taken for garbage.
const MAX_SYMBOL: usize = 4096;

/// The longest demangled name produced: substitutions let a short symbol
/// stand for an exponentially long name, which a hostile file could use.
const MAX_DEMANGLED: usize = 16 * 1024;

/// Whether a symbol is a mangled C++ name (`_Z...`).
pub fn is_mangled(symbol: &str) -> bool {
    symbol.starts_with("_Z")
}

/// A symbol split at its clone suffix: `_ZN1A1fEv.constprop.0` is
/// (`_ZN1A1fEv`, `.constprop.0`). Mangled names have no `.` of their own; the
/// compiler appends one suffix per cloning (`.isra.0.cold`).
pub fn split_clone_suffix(symbol: &str) -> (&str, &str) {
    match symbol.find('.') {
        Some(at) => (&symbol[..at], &symbol[at..]),
        None => (symbol, ""),
    }
}

/// Whether a clone suffix makes the symbol a piece of a function rather than
/// a whole copy of it: `.part.N` (partial inlining: the function's callers
/// run its head inline and call this for the rest) and `.cold` (code moved
/// out of line, entered by a jump, never called).
pub fn is_piece(suffix: &str) -> bool {
    suffix
        .split('.')
        .any(|part| part == "part" || part == "cold")
}

/// The demangled name of `symbol`, with its parameter list (`A::f(int) const`)
/// or without (`A::f`), and its clone suffix appended as it is (`A::f.isra.0`);
/// `None` when it is no mangled C++ name (a C function), or one this crate
/// cannot demangle.
pub fn demangle(symbol: &str, with_params: bool) -> Option<String> {
    if !is_mangled(symbol) || symbol.len() > MAX_SYMBOL {
        return None;
    }
    let (base, suffix) = split_clone_suffix(symbol);
    let mut options = cpp_demangle::DemangleOptions::new().no_return_type();
    if !with_params {
        options = options.no_params();
    }
    // cpp_demangle is fuzzed, but the symbols come from any file a probed
    // process maps: a panic in it must not take the exporter down.
    let mut out = Capped(String::new());
    let parsed = std::panic::catch_unwind(move || {
        let symbol = cpp_demangle::Symbol::new(base.as_bytes()).ok()?;
        symbol.structured_demangle(&mut out, &options).ok()?;
        Some(out.0)
    });
    let mut name = parsed.ok().flatten()?;
    name.push_str(suffix);
    Some(name)
}

/// A string that refuses to grow past [`MAX_DEMANGLED`].
struct Capped(String);

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.len() + s.len() > MAX_DEMANGLED {
            return Err(fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_parameters() {
        let s = "_ZN2v88internal4Heap24PerformGarbageCollectionENS0_16GarbageCollectorENS0_23GarbageCollectionReasonEPKc";
        assert_eq!(
            demangle(s, false).as_deref(),
            Some("v8::internal::Heap::PerformGarbageCollection")
        );
        assert_eq!(
            demangle(s, true).as_deref(),
            Some("v8::internal::Heap::PerformGarbageCollection(v8::internal::GarbageCollector, v8::internal::GarbageCollectionReason, char const*)")
        );
        assert_eq!(
            demangle("_ZNK2v88internal4Heap11MaxReservedEv", true).as_deref(),
            Some("v8::internal::Heap::MaxReserved() const")
        );
        // Templates: no return type.
        assert_eq!(
            demangle("_Z3maxIiET_S0_S0_", true).as_deref(),
            Some("max<int>(int, int)")
        );
    }

    #[test]
    fn clone_suffixes_stay_on_the_name() {
        assert_eq!(
            demangle("_ZN2v88internal4Heap8ScavengeEv.constprop.0", false).as_deref(),
            Some("v8::internal::Heap::Scavenge.constprop.0")
        );
        assert_eq!(
            demangle("_ZN2v88internal4Heap8ScavengeEv.isra.0.cold", true).as_deref(),
            Some("v8::internal::Heap::Scavenge().isra.0.cold")
        );
        assert_eq!(
            split_clone_suffix("_ZN1A1fEv.part.0"),
            ("_ZN1A1fEv", ".part.0")
        );
        assert!(is_piece(".part.0") && is_piece(".isra.0.cold") && is_piece(".cold"));
        assert!(!is_piece(".constprop.0") && !is_piece(".isra.1") && !is_piece(""));
    }

    #[test]
    fn c_names_and_garbage_are_not_demangled() {
        assert_eq!(demangle("malloc", false), None);
        assert_eq!(demangle("_Zgarbage", false), None);
        assert_eq!(demangle("_Z", true), None);
        let long = format!("_Z{}", "x".repeat(MAX_SYMBOL));
        assert_eq!(demangle(&long, false), None);
    }

    /// Each `S_` repeats everything before it: a short symbol whose name
    /// doubles with every substitution is cut off, not built.
    #[test]
    fn exponential_names_are_refused() {
        let mut symbol = String::from("_Z1fIJ");
        symbol.push_str("1aIS_S_E");
        for _ in 0..40 {
            symbol.push_str("IS0_S0_E");
        }
        symbol.push_str("EEvv");
        // Whatever the crate makes of it, it returns quickly and bounded.
        if let Some(name) = demangle(&symbol, true) {
            assert!(name.len() <= MAX_DEMANGLED + 64, "{}", name.len());
        }
    }

    /// Real symbols with bytes changed, cut and repeated: a name or `None`,
    /// never a panic, and never longer than the cap.
    #[test]
    fn mutated_symbols_demangle_or_not_without_panic() {
        let seeds = [
            "_ZN2v88internal4Heap24PerformGarbageCollectionENS0_16GarbageCollectorENS0_23GarbageCollectionReasonEPKc",
            "_ZNSt17_Function_handlerIFbN2v88internal10HeapObjectEEZNS1_18ScavengerCollector14CollectGarbageEvEUlS2_E1_E9_M_invokeERKSt9_Any_dataOS2_",
            "_ZZN12v8_inspector10V8Debugger17interruptAndBreakEiENUlPN2v87IsolateEPvE_4_FUNES3_S4_",
            "_ZN2v88internal4Heap8ScavengeEv.isra.0.cold",
        ];
        let alphabet = b"_ZNEvSIJT0123456789abcdefKPRSt.CDzL";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for round in 0..4000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len());
                match next(3) {
                    0 => bytes[at] = alphabet[next(alphabet.len())],
                    1 => bytes.truncate(at.max(2)),
                    _ => {
                        let piece = bytes[at..].to_vec();
                        bytes.extend_from_slice(&piece);
                    }
                }
            }
            let symbol = String::from_utf8_lossy(&bytes);
            for with_params in [false, true] {
                if let Some(name) = demangle(&symbol, with_params) {
                    assert!(name.len() <= MAX_DEMANGLED + symbol.len(), "{symbol}");
                }
            }
        }
    }
}
