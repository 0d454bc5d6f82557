//! `regexp`: keeps the label set only when the input matches a pattern.

use super::{DecodeError, Decoder, DecoderConfigError};
use crate::config::compile_regexps;
use regex::bytes::RegexSet;

/// Passes the input through unchanged when any pattern matches (unanchored,
/// like `Regex::is_match`); otherwise drops the whole label set.
#[derive(Debug, Clone)]
pub struct RegexpDecoder {
    // One automaton for all patterns, matched on bytes: no UTF-8 conversion per key.
    set: RegexSet,
}

impl RegexpDecoder {
    /// Compiles the patterns once; the first bad one is named in the error
    /// (the config's own check: [`compile_regexps`]).
    pub fn new(patterns: &[String]) -> Result<Self, DecoderConfigError> {
        Ok(RegexpDecoder {
            set: compile_regexps(patterns)?,
        })
    }
}

impl Decoder for RegexpDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        Ok(self.set.is_match(input).then(|| input.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(patterns: &[&str]) -> RegexpDecoder {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        RegexpDecoder::new(&patterns).unwrap()
    }

    #[test]
    fn keeps_matching_input_unchanged() {
        let d = decoder(&["^java$", "^python[0-9.]*$"]);
        assert_eq!(d.decode(b"java").unwrap().as_deref(), Some(&b"java"[..]));
        assert_eq!(
            d.decode(b"python3.12").unwrap().as_deref(),
            Some(&b"python3.12"[..])
        );
    }

    #[test]
    fn drops_non_matching_input() {
        let d = decoder(&["^java$", "^python"]);
        assert_eq!(d.decode(b"javac").unwrap(), None);
        assert_eq!(d.decode(b"").unwrap(), None);
    }

    #[test]
    fn unanchored_patterns_search() {
        let d = decoder(&["sql"]);
        assert!(d.decode(b"mysqld").unwrap().is_some());
    }

    #[test]
    fn bad_patterns_are_named() {
        let patterns = vec!["ok".to_string(), "a(b".to_string()];
        match RegexpDecoder::new(&patterns).unwrap_err() {
            DecoderConfigError::BadRegex { pattern, .. } => assert_eq!(pattern, "a(b"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            RegexpDecoder::new(&[]).unwrap_err(),
            DecoderConfigError::NoRegexps
        );
    }
}
