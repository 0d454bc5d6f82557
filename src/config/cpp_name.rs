//! C++ functions named in uprobe specs by their demangled names
//! (`v8::internal::Heap::Scavenge`), as `c++filt` prints them, instead of
//! their mangled symbols (`_ZN2v88internal4Heap8ScavengeEv`).
//!
//! The rule, as the README states it:
//! - A symbol with `::`, or with a `(` that does not follow a `.`, is a C++
//!   name (Go's `net/http.(*conn).serve` is not).
//! - Without a parameter list it names every overload; with one
//!   (`f(int, char const*)`, `g() const`) only that one. Whitespace does not
//!   matter (`char const *` = `char const*`), and `(void)` is `()`.
//! - A compiler clone is named with its suffix after the name (and after the
//!   parameter list if one is given): `Heap::Scavenge.constprop.0`. A name
//!   without a suffix never names a clone: `.constprop` and `.isra` clones take
//!   other arguments than the function, and `.part` and `.cold` pieces are not
//!   its entry.
//! - `*` and `?` in the name are wildcards (`v8::internal::Heap::*`), matched
//!   against names without parameter lists (unless the pattern has one); like
//!   a plain name, a pattern matches clones only if it has a suffix itself
//!   (`Heap::*.constprop.*`). Every other character is literal (`[abi:cxx11]`,
//!   `{lambda()#1}`, the whole parameter list); `\*` is a literal `*`
//!   (`operator\*`).
//!
//! This module only deals in strings; `crate::elf::demangle` turns a file's
//! symbols into the strings matched here.

use globset::{GlobBuilder, GlobMatcher};

/// Whether a uprobe spec's symbol part names a C++ function by its demangled
/// name (it has `::`, or a `(` that does not follow a `.`), rather than a
/// symbol, a symbol glob or a Go name: Go's methods on pointer receivers are
/// `pkg.(*T).m`, and no C++ name has `.(`.
pub fn is_cpp_name(symbol: &str) -> bool {
    symbol.contains("::")
        || symbol
            .match_indices('(')
            .any(|(at, _)| !symbol[..at].ends_with('.'))
}

/// A parsed C++ name pattern.
#[derive(Debug, Clone)]
pub struct CppName {
    /// As written, for messages.
    text: String,
    /// The qualified name without parameter list or clone suffix, whitespace
    /// removed: what the rest of the pattern's literals are searched from.
    name: String,
    /// Whether a parameter list was given: names are then compared with theirs.
    with_params: bool,
    /// The whole pattern, whitespace removed: compared as is when exact.
    key: String,
    /// For a pattern with wildcards: its matcher over normalised names.
    glob: Option<GlobMatcher>,
    /// See [`CppName::mangled_hint`].
    hint: Option<String>,
}

impl CppName {
    /// Parses the symbol part of a uprobe spec; the error says what is wrong.
    pub fn parse(text: &str) -> Result<CppName, String> {
        let normal = normalize(text);
        if normal.is_empty() {
            return Err("is an empty C++ name".into());
        }
        check_balanced(&normal)?;
        let (head, suffix) = split_clone_suffix(&normal);
        let (name, params) = split_params(head);
        if let Some(params) = params.filter(|_| name.is_empty() || name.ends_with("::")) {
            return Err(format!(
                "has no function name before its parameter list: write it as `namespace::Class::function{params}`"
            ));
        }
        if name.ends_with("::") {
            return Err("ends with `::`: name the function after it (`Class::function`)".into());
        }
        let with_params = params.is_some();
        let params = params.map(|p| match p.strip_prefix("(void)") {
            Some(rest) => format!("(){rest}"),
            None => p.to_string(),
        });
        let params = params.unwrap_or_default();
        let key = format!("{name}{params}{suffix}");
        let (key, glob) = if has_wildcard(name) || has_wildcard(suffix) {
            let literal = name.len()..name.len() + params.len();
            let glob = compile(&key, literal)?;
            (key, Some(glob))
        } else {
            (unescape(&key), None)
        };
        Ok(CppName {
            text: text.trim().to_string(),
            hint: mangled_hint(name),
            name: unescape(name),
            with_params,
            key,
            glob,
        })
    }

    /// The pattern as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the name has wildcards (`*`, `?`): it then names a set of
    /// functions, attached through one multi-uprobe link (one uprobe each on
    /// kernels without those links).
    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    /// Whether a parameter list was given.
    pub fn has_params(&self) -> bool {
        self.with_params
    }

    /// What tells this pattern's matches apart from another's: patterns
    /// with equal keys match the same functions.
    pub fn cache_key(&self) -> String {
        format!(
            "{}{}",
            if self.glob.is_some() {
                "glob:"
            } else {
                "name:"
            },
            self.key
        )
    }

    /// Whether the pattern has a clone suffix (`A::f.constprop.0`).
    pub fn has_clone_suffix(&self) -> bool {
        !split_clone_suffix(&self.key).1.is_empty()
    }

    /// Whether a function matches, given its demangled name with its
    /// parameter list if [`has_params`](Self::has_params) (without otherwise)
    /// and with its clone suffix, [`normalize`]d.
    pub fn matches(&self, demangled: &str) -> bool {
        match &self.glob {
            Some(glob) => glob.is_match(demangled),
            None => demangled == self.key,
        }
    }

    /// A piece of text that every matching function's mangled symbol
    /// contains: a symbol without it need not be demangled. `None` when the
    /// name has no identifier to go by (then every symbol is demangled).
    pub fn mangled_hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The qualified name without parameter list and clone suffix, for
    /// "did you mean" suggestions.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What every symbol a qualified name (normalised, without parameter list)
/// matches contains. The mangling writes each identifier of the name as
/// `<length><identifier>` (`v8::internal::Heap::Scavenge` is
/// `_ZN2v88internal4Heap8ScavengeEv`), except the words it abbreviates
/// (`std`, `allocator`, `basic_string`, `string`, `istream`, `ostream`,
/// `iostream`) or replaces (`operator`, `anonymous`, `namespace`, `lambda`).
/// So the hint is the last whole identifier outside template arguments,
/// parameter lists, lambdas and ABI tags, with its length (`8Scavenge`,
/// `4Heap` for `v8::internal::Heap::*`): the function's own name or its
/// class, the rarest. Without one, the longest part of an identifier next to
/// a wildcard (`Scaven` for `*::Scaven*`), without length.
fn mangled_hint(name: &str) -> Option<String> {
    const ABBREVIATED: &[&str] = &[
        "std",
        "allocator",
        "basic_string",
        "string",
        "istream",
        "ostream",
        "iostream",
        "operator",
        "anonymous",
        "namespace",
        "lambda",
    ];
    let bytes = name.as_bytes();
    let mut depth = 0i32;
    let mut whole: Option<&str> = None;
    let mut partial: Option<&str> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b')' | b']' | b'}' | b'>' => depth -= 1,
            b'\\' => i += 1,
            c if depth == 0 && is_ident(c) => {
                let start = i;
                while i < bytes.len() && is_ident(bytes[i]) {
                    i += 1;
                }
                let word = &name[start..i];
                // `operator<` opens no template argument list.
                if word.ends_with("operator") {
                    while i < bytes.len() && b"<>".contains(&bytes[i]) {
                        i += 1;
                    }
                }
                let wild = |at: Option<&u8>| matches!(at, Some(b'*' | b'?' | b'\\'));
                let is_whole = !wild(start.checked_sub(1).and_then(|s| bytes.get(s)))
                    && !wild(bytes.get(i))
                    && !word.as_bytes()[0].is_ascii_digit();
                let usable =
                    !ABBREVIATED.contains(&word) && !word.bytes().all(|b| b.is_ascii_digit());
                if usable && is_whole {
                    whole = Some(word);
                } else if usable && partial.is_none_or(|p| word.len() > p.len()) {
                    partial = Some(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match whole {
        Some(word) => Some(format!("{}{word}", word.len())),
        None => partial.map(str::to_string),
    }
}

/// A demangled name with its whitespace removed: how names are compared.
pub fn normalize(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Parentheses, brackets and braces must pair up (angle brackets need not:
/// `operator<` has one alone).
fn check_balanced(text: &str) -> Result<(), String> {
    let mut stack = Vec::new();
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("has an unmatched `{c}` in its C++ name"));
                }
            }
            _ => {}
        }
    }
    match stack.pop() {
        Some(c) => Err(format!("has an unclosed `{c}` in its C++ name")),
        None => Ok(()),
    }
}

/// Splits a normalised name at its clone suffix (`.constprop.0`, `.isra.0`,
/// `.part.0`, `.cold`): the first `.` outside brackets.
pub fn split_clone_suffix(text: &str) -> (&str, &str) {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '.' if depth == 0 => return (&text[..i], &text[i..]),
            _ => {}
        }
    }
    (text, "")
}

/// Splits a normalised name without clone suffix into the qualified name and
/// its parameter list with qualifiers (`(int)const&`), if it has one.
fn split_params(head: &str) -> (&str, Option<&str>) {
    let mut end = head;
    loop {
        let before = end;
        for qualifier in ["const", "volatile", "&&", "&", "noexcept"] {
            end = end.strip_suffix(qualifier).unwrap_or(end);
        }
        if end == before {
            break;
        }
    }
    if !end.ends_with(')') {
        return (head, None);
    }
    // The `(` that the last `)` closes.
    let mut depth = 0;
    let mut open = None;
    for (i, c) in end.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    match open {
        // `operator()` is a name, not a parameter list.
        Some(i) if !head[..i].ends_with("operator") => (&head[..i], Some(&head[i..])),
        _ => (head, None),
    }
}

/// `text` with each `\\x` made `x`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

/// Whether a part of a name has an unescaped `*` or `?`.
fn has_wildcard(name: &str) -> bool {
    let mut escaped = false;
    for c in name.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '*' | '?' if !escaped => return true,
            _ => escaped = false,
        }
    }
    false
}

/// A matcher for a normalised pattern: `*` and `?` are wildcards and `\\x`
/// is `x`, except in the byte range `literal` (the parameter list), which is
/// matched as it is, like every other character.
fn compile(key: &str, literal: std::ops::Range<usize>) -> Result<GlobMatcher, String> {
    let mut glob = String::with_capacity(key.len() * 2);
    let mut escaped = false;
    for (i, c) in key.char_indices() {
        let special = !literal.contains(&i);
        match c {
            '\\' if special && !escaped => {
                escaped = true;
                continue;
            }
            '*' | '?' if special && !escaped => glob.push(c),
            _ => glob.push_str(&globset::escape(&c.to_string())),
        }
        escaped = false;
    }
    GlobBuilder::new(&glob)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("has a C++ name glob that does not parse: {}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_symbols_are_cpp_names() {
        assert!(is_cpp_name("v8::internal::Heap::Scavenge"));
        assert!(is_cpp_name("foo(int)"));
        assert!(!is_cpp_name("_ZN2v88internal4Heap8ScavengeEv"));
        assert!(!is_cpp_name("PyGC_*"));
        assert!(is_cpp_name("(anonymous namespace)::f"));
        assert!(is_cpp_name("operator()"));
        assert!(is_cpp_name("f(char const*).isra.0"));
        // Go names, as Go spells them.
        for go in [
            "net/http.(*conn).serve",
            "net/http.(*conn).*",
            "main.(*List[...]).Push",
            "main.Map[...]",
            "main.main.func1",
        ] {
            assert!(!is_cpp_name(go), "{go}");
        }
    }

    /// What a function offers a pattern: its name with or without its
    /// parameter list, as the pattern asks.
    fn offered(pattern: &CppName, name: &str, full: &str) -> bool {
        pattern.matches(&normalize(if pattern.has_params() { full } else { name }))
    }

    #[test]
    fn a_name_without_parameters_names_every_overload_but_no_clone() {
        let n = CppName::parse("v8::internal::Heap::Scavenge").unwrap();
        assert!(!n.is_glob() && !n.has_params() && !n.has_clone_suffix());
        assert!(offered(
            &n,
            "v8::internal::Heap::Scavenge",
            "v8::internal::Heap::Scavenge()"
        ));
        assert!(offered(
            &n,
            "v8::internal::Heap::Scavenge",
            "v8::internal::Heap::Scavenge(int)"
        ));
        assert!(!n.matches("v8::internal::Heap::Scavenge.constprop.0"));
        assert!(!n.matches("v8::internal::Heap::ScavengeX"));
        let clone = CppName::parse("v8::internal::Heap::Scavenge.constprop.0").unwrap();
        assert!(clone.has_clone_suffix());
        assert!(clone.matches("v8::internal::Heap::Scavenge.constprop.0"));
        assert_eq!(clone.name(), "v8::internal::Heap::Scavenge");
    }

    #[test]
    fn a_parameter_list_picks_one_overload_whatever_the_spaces() {
        let n = CppName::parse(
            "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)",
        )
        .unwrap();
        assert!(n.has_params() && !n.is_glob());
        assert!(offered(
            &n,
            "",
            "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)"
        ));
        assert!(!offered(
            &n,
            "",
            "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace)"
        ));
        // `char const *` = `char const*`, `(void)` = `()`, qualifiers belong to the list.
        let p = CppName::parse("f(char const *) const").unwrap();
        assert!(offered(&p, "", "f(char const*) const"));
        assert!(!offered(&p, "", "f(char const*)"));
        assert!(!p.is_glob(), "a `*` in the parameter list is literal");
        let v = CppName::parse("A::f(void)").unwrap();
        assert!(offered(&v, "", "A::f()"));
        let clone = CppName::parse("A::f(int).isra.0").unwrap();
        assert!(clone.has_params() && clone.has_clone_suffix());
        assert!(offered(&clone, "", "A::f(int).isra.0"));
        // `operator()` is a name; its parameters come after it.
        let call = CppName::parse("A::operator()").unwrap();
        assert!(!call.has_params());
        assert!(offered(&call, "A::operator()", "A::operator()() const"));
        let call = CppName::parse("A::operator()(int)").unwrap();
        assert!(call.has_params());
        assert!(offered(&call, "A::operator()", "A::operator()(int)"));
    }

    #[test]
    fn wildcards_are_only_star_and_question_mark_in_the_name() {
        let g = CppName::parse("v8::internal::Heap::*").unwrap();
        assert!(g.is_glob());
        assert!(g.matches("v8::internal::Heap::Scavenge"));
        assert!(g.matches("v8::internal::Heap::Scavenge.constprop.0"));
        assert!(!g.matches("v8::internal::Isolate::Init"));
        let abi = CppName::parse("v8_inspector::UTF16ToUTF8[abi:cxx11]").unwrap();
        assert!(!abi.is_glob());
        assert!(abi.matches("v8_inspector::UTF16ToUTF8[abi:cxx11]"));
        let lambda = CppName::parse("f(int)::{lambda()#1}::operator()").unwrap();
        assert!(!lambda.is_glob());
        let any = CppName::parse("*::_FUN(v8::Isolate*, void*)").unwrap();
        assert!(any.is_glob() && any.has_params());
        assert!(offered(
            &any,
            "",
            "x::{lambda(v8::Isolate*, void*)#1}::_FUN(v8::Isolate*, void*)"
        ));
        assert!(!offered(&any, "", "y::_FUN(v8::IsolateX, void*)"));
        let star = CppName::parse("A::operator\\*").unwrap();
        assert!(!star.is_glob());
        assert!(star.matches("A::operator*"));
        let q = CppName::parse("A::f?").unwrap();
        assert!(q.matches("A::fg") && !q.matches("A::f"));
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        assert_eq!(
            CppName::parse("A::f(int").unwrap_err(),
            "has an unclosed `(` in its C++ name"
        );
        assert_eq!(
            CppName::parse("A::f)").unwrap_err(),
            "has an unmatched `)` in its C++ name"
        );
        assert_eq!(
            CppName::parse("(int)").unwrap_err(),
            "has no function name before its parameter list: write it as `namespace::Class::function(int)`"
        );
        assert!(CppName::parse("A::").is_err());
        assert!(CppName::parse("::").is_err());
        assert!(CppName::parse("::f").is_ok());
    }

    #[test]
    fn the_hint_is_a_literal_of_every_mangled_match() {
        let hint = |s: &str| {
            CppName::parse(s)
                .unwrap()
                .mangled_hint()
                .map(str::to_string)
        };
        assert_eq!(
            hint("v8::internal::Heap::Scavenge").as_deref(),
            Some("8Scavenge")
        );
        assert_eq!(hint("v8::internal::Heap::*").as_deref(), Some("4Heap"));
        assert_eq!(hint("v8::internal::Heap::Scav*").as_deref(), Some("4Heap"));
        assert_eq!(hint("*::Scaven*").as_deref(), Some("Scaven"));
        assert_eq!(
            hint("std::vector<int, std::allocator<int> >::push_back").as_deref(),
            Some("9push_back")
        );
        assert_eq!(hint("std::string::size").as_deref(), Some("4size"));
        assert_eq!(hint("(anonymous namespace)::f").as_deref(), Some("1f"));
        assert_eq!(hint("A::operator<").as_deref(), Some("1A"));
        assert_eq!(hint("A::~A").as_deref(), Some("1A"));
        assert_eq!(hint("A::f(int)").as_deref(), Some("1f"));
        assert_eq!(hint("*::*"), None);
    }
}
