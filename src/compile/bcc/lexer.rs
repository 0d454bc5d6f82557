//! The lexer: C source to preprocessing tokens, with comments, blanks and
//! line continuations left out and each preprocessor directive numbered.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Ident,
    Number,
    Str,
    Char,
    Punct,
}

/// A preprocessing token: its kind, byte range, 1-based line and directive
/// (0 outside preprocessor directives, else a number per directive).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) line: u32,
    pub(super) dir: u32,
}

/// Splits C source into preprocessing tokens, skipping blanks, comments and
/// line continuations, and numbering preprocessor directives.
pub(super) fn tokenize(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    let mut line_start = true;
    let mut dir = 0u32;
    let mut dirs = 0u32;
    // Length of a line continuation (backslash, optional CR, LF) at `at`.
    let continuation = |at: usize| -> usize {
        if b.get(at) != Some(&b'\\') {
            0
        } else if b.get(at + 1) == Some(&b'\n') {
            2
        } else if b.get(at + 1) == Some(&b'\r') && b.get(at + 2) == Some(&b'\n') {
            3
        } else {
            0
        }
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind;
        if c == b'\n' {
            line += 1;
            i += 1;
            line_start = true;
            dir = 0;
            continue;
        } else if continuation(i) > 0 {
            i += continuation(i);
            line += 1;
            continue;
        } else if matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c) {
            i += 1;
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            // To the end of the line; a continuation extends it.
            while i < b.len() && b[i] != b'\n' {
                let n = continuation(i);
                if n > 0 {
                    i += n;
                    line += 1;
                } else {
                    i += 1;
                }
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(b.len());
            continue;
        } else if c == b'"' || c == b'\'' {
            i += 1;
            let line_at = line;
            while i < b.len() && b[i] != c && b[i] != b'\n' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    if b[i + 1] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            if i < b.len() && b[i] == c {
                i += 1;
            }
            kind = if c == b'"' { Kind::Str } else { Kind::Char };
            toks.push(Tok {
                kind,
                start,
                end: i,
                line: line_at,
                dir,
            });
            line_start = false;
            continue;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            kind = Kind::Ident;
        } else if c.is_ascii_digit()
            || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < b.len() {
                let d = b[i];
                let exponent_sign =
                    matches!(d, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
                if !(d.is_ascii_alphanumeric() || matches!(d, b'_' | b'.') || exponent_sign) {
                    break;
                }
                i += 1;
            }
            kind = Kind::Number;
        } else {
            kind = Kind::Punct;
            if text[i..].starts_with("->") {
                i += 2;
            } else if text[i..].starts_with("...") {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
            }
            if c == b'#' && line_start {
                dirs += 1;
                dir = dirs;
            }
        }
        toks.push(Tok {
            kind,
            start,
            end: i,
            line,
            dir,
        });
        line_start = false;
    }
    toks
}
