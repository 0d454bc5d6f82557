//! The code as tokens, and the questions the rewriting asks of them:
//! matching parentheses, macro arguments and parameters, `x.m(` method
//! calls, where a function definition starts.

use super::lexer::{tokenize, Kind, Tok};
use std::collections::HashMap;
use std::ops::Range;

/// Attribute-like macros that may precede or follow a function's declarator.
const ATTRIBUTES: &[&str] = &["SEC", "__section", "__attribute__", "__attribute"];

/// Where a function's definition starts, and whether it has a section.
pub(super) struct Definition {
    pub(super) start: usize,
    pub(super) has_section: bool,
}

/// The code with its tokens (comments and blanks left out).
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) toks: Vec<Tok>,
    /// Parameters of each function-like `#define`, by directive number.
    params: HashMap<u32, Vec<&'a str>>,
}

impl<'a> Source<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let toks = tokenize(text);
        let mut src = Source {
            text,
            toks,
            params: HashMap::new(),
        };
        src.params = src.macro_params();
        src
    }

    pub(super) fn text(&self, i: usize) -> &'a str {
        &self.text[self.toks[i].start..self.toks[i].end]
    }

    pub(super) fn punct_at(&self, i: usize, p: &str) -> bool {
        i < self.toks.len() && self.toks[i].kind == Kind::Punct && self.text(i) == p
    }

    /// Token `i` as seen from token `from`: present and in the same
    /// directive (or both outside directives).
    fn near(&self, from: usize, i: usize) -> bool {
        i < self.toks.len() && self.toks[i].dir == self.toks[from].dir
    }

    /// Whether token `i` is the name in `#define NAME`.
    pub(super) fn defines_macro(&self, i: usize) -> bool {
        self.toks[i].dir != 0
            && i > 0
            && self.near(i, i - 1)
            && self.toks[i - 1].kind == Kind::Ident
            && self.text(i - 1) == "define"
    }

    pub(super) fn is_macro_param(&self, i: usize) -> bool {
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
    pub(super) fn matching(&self, open: usize) -> Option<usize> {
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
    pub(super) fn args(&self, open: usize, close: usize) -> Vec<Range<usize>> {
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
    pub(super) fn method_call(&self, i: usize) -> Option<&'a str> {
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
    pub(super) fn definition(&self, name: usize) -> Option<Definition> {
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

    /// The line breaks in `range` (`\n`, `\r\n`, and a lone `\r`, which
    /// clang counts as a line too), to keep in a replacement: inside a
    /// directive each becomes a line continuation.
    pub(super) fn newlines(&self, range: Range<usize>, dir: u32) -> String {
        let mut out = String::new();
        let mut previous = ' ';
        for c in self.text[range].chars() {
            if c == '\n' || c == '\r' {
                // A continuation is written before the whole `\r\n`.
                if dir != 0 && !(c == '\n' && previous == '\r') {
                    out.push('\\');
                }
                out.push(c);
            }
            previous = c;
        }
        out
    }
}
