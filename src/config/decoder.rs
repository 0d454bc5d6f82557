//! The label decoders a config may name: one registry of every decoder (its
//! name and the keys it takes), and the checks of each decoder's parameters.
//! The metrics stage builds the runtime decoder from a checked [`DecoderKind`].

use super::DecoderConfig;
use regex::bytes::RegexSet;

/// A label decoder, as named by a label's `decoders:` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecoderKind {
    /// A host-order unsigned integer of 1, 2, 4 or 8 bytes, as decimal text.
    Uint,
    /// A host-order signed integer of 1, 2, 4 or 8 bytes, as decimal text.
    Int,
    /// Integers as `0x`-prefixed hex of their value, other sizes as the bytes in order.
    Hex,
    /// A NUL-terminated C string.
    String,
    /// Text mapped through `static_map` (non-empty); `allow_unknown` passes
    /// inputs missing from it through unchanged.
    StaticMap,
    /// Keeps the label set when any of `regexps` (at least one) matches.
    Regexp,
    /// An 8-byte address in the process (an instruction pointer such as
    /// `PT_REGS_IP(ctx)`) as the name of the function holding it.
    Usym,
    /// A 1, 2, 4 or 8-byte signed integer; a negative error number as its name.
    Errno,
    /// A 4-byte IPv4 or 16-byte IPv6 address in network byte order.
    InetIp,
    /// An 8-byte cgroup v2 id as the cgroup's path.
    Cgroup,
    /// A 4 or 8-byte pid (`exporter_pid()`) keying an `instances: pid_keyed`
    /// program's maps: the `pid` label, with the program's process labels.
    Pid,
}

/// The registry: every decoder once, in the order messages list them, with
/// the name a config gives it and the keys besides `name` it takes.
const DECODERS: &[(DecoderKind, &str, &[&str])] = &[
    (DecoderKind::Uint, "uint", &[]),
    (DecoderKind::Int, "int", &[]),
    (DecoderKind::Hex, "hex", &[]),
    (DecoderKind::String, "string", &[]),
    (
        DecoderKind::StaticMap,
        "static_map",
        &["static_map", "allow_unknown"],
    ),
    (DecoderKind::Regexp, "regexp", &["regexps"]),
    (DecoderKind::Usym, "usym", &[]),
    (DecoderKind::Errno, "errno", &[]),
    (DecoderKind::InetIp, "inet_ip", &[]),
    (DecoderKind::Cgroup, "cgroup", &[]),
    (DecoderKind::Pid, "pid", &[]),
];

impl DecoderKind {
    /// The decoder a config names `name`.
    pub fn from_name(name: &str) -> Option<DecoderKind> {
        DECODERS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(kind, _, _)| *kind)
    }

    /// The name a config gives this decoder.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The keys of a decoder entry, besides `name`, this decoder reads.
    pub fn parameters(self) -> &'static [&'static str] {
        self.entry().2
    }

    /// Every decoder's name, in the registry's order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        DECODERS.iter().map(|(_, name, _)| *name)
    }

    fn entry(self) -> &'static (DecoderKind, &'static str, &'static [&'static str]) {
        DECODERS
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .expect("every decoder kind is in the registry")
    }
}

/// "uint, int, ...": the registry's names, for the unknown-name message.
fn known_names() -> String {
    DecoderKind::names().collect::<Vec<_>>().join(", ")
}

/// A decoder config that cannot be turned into a working decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecoderConfigError {
    /// The name is not in the registry ([`DecoderKind`]).
    #[error("unknown decoder {name:?}; known decoders: {known}", known = known_names())]
    Unknown {
        /// The name as written.
        name: String,
    },
    /// `static_map` without any entries would map everything to `unknown:`.
    #[error("decoder static_map needs a non-empty `static_map`")]
    EmptyStaticMap,
    /// `regexp` without patterns would drop every label set.
    #[error("decoder regexp needs at least one pattern in `regexps`")]
    NoRegexps,
    /// A `regexp` pattern does not compile.
    #[error("decoder regexp: pattern {pattern:?} does not compile: {error}")]
    BadRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex crate's message.
        error: String,
    },
    /// A decoder of the named label is misconfigured.
    #[error("label {label:?}: {error}")]
    Label {
        /// Label name.
        label: String,
        /// What is wrong with its chain.
        error: Box<DecoderConfigError>,
    },
}

impl DecoderConfig {
    /// Which decoder this is, once its name is known and the parameters its
    /// kind takes are valid: the one definition of a valid decoder config.
    pub fn kind(&self) -> Result<DecoderKind, DecoderConfigError> {
        let kind =
            DecoderKind::from_name(&self.name).ok_or_else(|| DecoderConfigError::Unknown {
                name: self.name.clone(),
            })?;
        match kind {
            DecoderKind::Uint
            | DecoderKind::Int
            | DecoderKind::Hex
            | DecoderKind::String
            | DecoderKind::Usym
            | DecoderKind::Errno
            | DecoderKind::InetIp
            | DecoderKind::Cgroup
            | DecoderKind::Pid => {}
            DecoderKind::StaticMap => {
                if self.static_map.is_empty() {
                    return Err(DecoderConfigError::EmptyStaticMap);
                }
            }
            DecoderKind::Regexp => {
                compile_regexps(&self.regexps)?;
            }
        }
        Ok(kind)
    }
}

/// Compiles a `regexp` decoder's patterns into one set, matched on bytes; the
/// first pattern that does not compile is named in the error.
pub fn compile_regexps(patterns: &[String]) -> Result<RegexSet, DecoderConfigError> {
    if patterns.is_empty() {
        return Err(DecoderConfigError::NoRegexps);
    }
    // Compile one by one first so that the error names the bad pattern.
    for pattern in patterns {
        if let Err(e) = regex::bytes::Regex::new(pattern) {
            return Err(DecoderConfigError::BadRegex {
                pattern: pattern.clone(),
                error: e.to_string(),
            });
        }
    }
    RegexSet::new(patterns).map_err(|e| DecoderConfigError::BadRegex {
        pattern: patterns.join(" | "),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn decoder(name: &str) -> DecoderConfig {
        DecoderConfig {
            name: name.to_string(),
            static_map: BTreeMap::new(),
            allow_unknown: false,
            regexps: Vec::new(),
        }
    }

    #[test]
    fn every_kind_is_registered_once_under_its_name() {
        // A new kind fails to compile here until it is listed, then fails this
        // test until the registry has it.
        let all = |kind: DecoderKind| match kind {
            DecoderKind::Uint
            | DecoderKind::Int
            | DecoderKind::Hex
            | DecoderKind::String
            | DecoderKind::StaticMap
            | DecoderKind::Regexp
            | DecoderKind::Usym
            | DecoderKind::Errno
            | DecoderKind::InetIp
            | DecoderKind::Cgroup
            | DecoderKind::Pid => kind,
        };
        let kinds = [
            DecoderKind::Uint,
            DecoderKind::Int,
            DecoderKind::Hex,
            DecoderKind::String,
            DecoderKind::StaticMap,
            DecoderKind::Regexp,
            DecoderKind::Usym,
            DecoderKind::Errno,
            DecoderKind::InetIp,
            DecoderKind::Cgroup,
            DecoderKind::Pid,
        ]
        .map(all);
        assert_eq!(DECODERS.len(), kinds.len());
        for kind in kinds {
            assert_eq!(DECODERS.iter().filter(|(k, _, _)| *k == kind).count(), 1);
            assert_eq!(DecoderKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DecoderKind::from_name("float"), None);
    }

    #[test]
    fn unknown_name_lists_the_registry() {
        let err = decoder("float").kind().unwrap_err();
        assert_eq!(
            err,
            DecoderConfigError::Unknown {
                name: "float".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown decoder \"float\"; known decoders: uint, int, hex, string, static_map, regexp, usym, errno, inet_ip, cgroup, pid"
        );
    }

    #[test]
    fn parameters_are_keys_of_a_decoder_entry() {
        for name in DecoderKind::names() {
            let kind = DecoderKind::from_name(name).unwrap();
            for key in kind.parameters() {
                let value = if *key == "allow_unknown" {
                    "true"
                } else if *key == "regexps" {
                    "[x]"
                } else {
                    "{a: b}"
                };
                let yaml = format!("{{name: {name}, {key}: {value}}}");
                let parsed: Result<DecoderConfig, _> = serde_saphyr::from_str(&yaml);
                assert!(parsed.is_ok(), "{yaml}: {parsed:?}");
            }
        }
    }

    #[test]
    fn parameters_are_checked_by_kind() {
        for name in ["uint", "int", "hex", "string"] {
            assert_eq!(decoder(name).kind().unwrap().name(), name);
        }
        let mut map = decoder("static_map");
        map.static_map.insert("1".into(), "one".into());
        assert_eq!(map.kind(), Ok(DecoderKind::StaticMap));
        let mut regexp = decoder("regexp");
        regexp.regexps = vec!["^a".into(), "b$".into()];
        assert_eq!(regexp.kind(), Ok(DecoderKind::Regexp));
        assert_eq!(
            decoder("regexp").kind().unwrap_err(),
            DecoderConfigError::NoRegexps
        );
        regexp.regexps.push("(".into());
        match regexp.kind().unwrap_err() {
            DecoderConfigError::BadRegex { pattern, .. } => assert_eq!(pattern, "("),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_map_is_rejected() {
        let err = decoder("static_map").kind().unwrap_err();
        assert_eq!(err, DecoderConfigError::EmptyStaticMap);
    }
}
