//! `static_map`: maps input text through a fixed table (enum value -> name).

use super::{DecodeError, Decoder};
use std::collections::{BTreeMap, HashMap};

/// Looks the input up in a table; a miss keeps a distinct series
/// (`unknown:<input>`, or the input itself with `allow_unknown`) so that
/// no count is lost or merged.
#[derive(Debug, Clone)]
pub struct StaticMapDecoder {
    map: HashMap<String, String>,
    allow_unknown: bool,
}

impl StaticMapDecoder {
    /// Builds the table (config validation rejects an empty one:
    /// [`crate::config::DecoderConfig::kind`]).
    pub fn new(map: &BTreeMap<String, String>, allow_unknown: bool) -> Self {
        StaticMapDecoder {
            map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            allow_unknown,
        }
    }
}

impl Decoder for StaticMapDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let text = String::from_utf8_lossy(input);
        if let Some(mapped) = self.map.get(text.as_ref()) {
            return Ok(Some(mapped.as_bytes().to_vec()));
        }
        if self.allow_unknown {
            return Ok(Some(input.to_vec()));
        }
        let mut out = Vec::with_capacity(8 + input.len());
        out.extend_from_slice(b"unknown:");
        out.extend_from_slice(input);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(allow_unknown: bool) -> StaticMapDecoder {
        let map = [("1", "read"), ("2", "write"), ("", "empty")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StaticMapDecoder::new(&map, allow_unknown)
    }

    fn decode(d: &StaticMapDecoder, input: &[u8]) -> String {
        String::from_utf8(d.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn maps_known_inputs() {
        let d = decoder(false);
        assert_eq!(decode(&d, b"1"), "read");
        assert_eq!(decode(&d, b"2"), "write");
        assert_eq!(decode(&d, b""), "empty");
    }

    #[test]
    fn unknown_inputs_are_marked() {
        assert_eq!(decode(&decoder(false), b"9"), "unknown:9");
    }

    #[test]
    fn allow_unknown_passes_through() {
        assert_eq!(decode(&decoder(true), b"9"), "9");
        assert_eq!(decode(&decoder(true), b"1"), "read");
    }
}
