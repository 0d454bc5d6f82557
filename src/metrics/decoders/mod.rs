//! Label decoders: they turn the raw bytes of a BPF map key into label values.
//!
//! A label reads `size` bytes of the key and runs them through a chain of
//! decoders (the first gets the raw bytes, each next one the previous output).
//! A decoder may also drop the whole label set (`regexp` without a match), so
//! filtering happens while decoding, before anything is exported.

pub mod cgroup;
pub mod errno;
pub mod hex;
pub mod inet_ip;
pub mod int;
pub mod regexp;
pub mod static_map;
pub mod string;
pub mod uint;
pub mod usym;

pub use cgroup::CgroupDecoder;
pub use errno::ErrnoDecoder;
pub use hex::HexDecoder;
pub use inet_ip::InetIpDecoder;
pub use int::IntDecoder;
pub use regexp::RegexpDecoder;
pub use static_map::StaticMapDecoder;
pub use string::StringDecoder;
pub use uint::UintDecoder;
pub use usym::UsymDecoder;

pub use crate::config::DecoderConfigError;

use crate::config::{DecoderConfig, DecoderKind, Label};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest input shown in an error message; keys are small, but a bad config
/// could hand a long value to a decoder and the message should stay readable.
const MAX_ERROR_INPUT: usize = 64;

/// One step of a label's decoder chain.
///
/// `Ok(None)` means "drop this whole label set": the key is not exported.
pub trait Decoder: Send + Sync + std::fmt::Debug {
    /// Decodes `input` (raw key bytes or the previous decoder's output).
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError>;

    /// Whether distinct inputs always give distinct outputs and none is dropped:
    /// then keys need not be merged by label set at scrape time.
    fn is_injective(&self) -> bool {
        false
    }

    /// Decodes `input` read from the maps of process `process` (`None` for a
    /// shared or per-binary instance). Only decoders that need the process
    /// (see [`needs_process`](Self::needs_process)) look at it.
    fn decode_in(
        &self,
        input: &[u8],
        process: Option<i32>,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        let _ = process;
        self.decode(input)
    }

    /// Whether the output depends on the process the key was read for (an
    /// address means a different function in each process).
    fn needs_process(&self) -> bool {
        false
    }
}

/// A decoder could not read its input, so the key cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input has a shape the decoder does not accept (e.g. a 3-byte integer).
    #[error("decoder {decoder}: cannot decode input {input} ({len} bytes): {reason}")]
    BadInput {
        /// Decoder name as written in the config.
        decoder: &'static str,
        /// The input as hex.
        input: String,
        /// Input length in bytes.
        len: usize,
        /// What the decoder expected.
        reason: &'static str,
    },
    /// A decoder that names things in a process has no process to look in.
    #[error("decoder {decoder}: {reason}")]
    NoProcess {
        /// Decoder name as written in the config.
        decoder: &'static str,
        /// What to do.
        reason: &'static str,
    },
    /// The map key has fewer bytes than the configured labels read.
    #[error("map key {input} has {got} bytes, but the labels read {expected} bytes (sizes plus paddings)")]
    KeyTooShort {
        /// The key as hex.
        input: String,
        /// Key length in bytes.
        got: usize,
        /// Sum of the labels' sizes and paddings.
        expected: usize,
    },
    /// A decoder of the named label failed.
    #[error("label {label:?}: {error}")]
    Label {
        /// Label name.
        label: String,
        /// What went wrong in its chain.
        error: Box<DecodeError>,
    },
}

impl DecodeError {
    /// A [`DecodeError::BadInput`] for `input`.
    pub fn bad_input(decoder: &'static str, input: &[u8], reason: &'static str) -> Self {
        DecodeError::BadInput {
            decoder,
            input: hex_for_error(input),
            len: input.len(),
            reason,
        }
    }
}

/// Builds one decoder from its config, checked by the config's registry
/// ([`DecoderConfig::kind`]).
pub fn build_decoder(config: &DecoderConfig) -> Result<Box<dyn Decoder>, DecoderConfigError> {
    // Every kind is matched: a decoder added to the registry does not compile
    // until it is built here.
    Ok(match config.kind()? {
        DecoderKind::Uint => Box::new(UintDecoder),
        DecoderKind::Int => Box::new(IntDecoder),
        DecoderKind::Hex => Box::new(HexDecoder),
        DecoderKind::String => Box::new(StringDecoder),
        DecoderKind::StaticMap => Box::new(StaticMapDecoder::new(
            &config.static_map,
            config.allow_unknown,
        )),
        DecoderKind::Regexp => Box::new(RegexpDecoder::new(&config.regexps)?),
        DecoderKind::Usym => Box::new(UsymDecoder::default()),
        DecoderKind::Errno => Box::new(ErrnoDecoder),
        DecoderKind::InetIp => Box::new(InetIpDecoder),
        DecoderKind::Cgroup => Box::new(CgroupDecoder::default()),
        // The pid as a number; the process labels come with the partition
        // of the map by pid (metrics::render).
        DecoderKind::Pid => Box::new(UintDecoder),
    })
}

/// The decoders of one label, applied in order.
#[derive(Debug)]
pub struct DecoderChain {
    decoders: Vec<Box<dyn Decoder>>,
}

impl DecoderChain {
    /// Builds every decoder of the chain; the first misconfigured one is reported.
    pub fn new(configs: &[DecoderConfig]) -> Result<DecoderChain, DecoderConfigError> {
        let decoders = configs
            .iter()
            .map(build_decoder)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DecoderChain { decoders })
    }

    /// Decodes `raw` into the label value, or `Ok(None)` when the label set is dropped.
    ///
    /// An empty chain (rejected by config validation) yields the bytes as hex,
    /// so that nothing is silently lost or misread.
    pub fn decode(&self, raw: &[u8]) -> Result<Option<String>, DecodeError> {
        self.decode_in(raw, None)
    }

    /// [`decode`](Self::decode) for a key read from the maps of `process`.
    pub fn decode_in(
        &self,
        raw: &[u8],
        process: Option<i32>,
    ) -> Result<Option<String>, DecodeError> {
        if self.decoders.is_empty() {
            return Ok(Some(hex_bytes(raw)));
        }
        let mut current: Cow<'_, [u8]> = Cow::Borrowed(raw);
        for decoder in &self.decoders {
            match decoder.decode_in(&current, process)? {
                Some(next) => current = Cow::Owned(next),
                None => return Ok(None),
            }
        }
        Ok(Some(match current {
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }))
    }

    /// Whether distinct raw inputs always decode to distinct values (an empty
    /// chain's hex included).
    pub fn is_injective(&self) -> bool {
        self.decoders.iter().all(|d| d.is_injective())
    }

    /// Whether a decoder of the chain needs the process the key was read for.
    pub fn needs_process(&self) -> bool {
        self.decoders.iter().any(|d| d.needs_process())
    }

    /// Number of decoders in the chain.
    pub fn len(&self) -> usize {
        self.decoders.len()
    }

    /// Whether the chain has no decoders (then [`decode`](Self::decode) yields hex).
    pub fn is_empty(&self) -> bool {
        self.decoders.is_empty()
    }
}

/// One label's place in the key and its decoders.
#[derive(Debug)]
struct LabelSlot {
    size: usize,
    padding: usize,
    chain: DecoderChain,
}

/// The decoders of all labels of a metric: splits a map key into label values.
#[derive(Debug)]
pub struct LabelDecoders {
    names: Vec<String>,
    slots: Vec<LabelSlot>,
    key_size: usize,
}

impl LabelDecoders {
    /// Builds every label's chain; errors name the label.
    pub fn new(labels: &[Label]) -> Result<Self, DecoderConfigError> {
        let mut slots = Vec::with_capacity(labels.len());
        for label in labels {
            let chain =
                DecoderChain::new(&label.decoders).map_err(|e| DecoderConfigError::Label {
                    label: label.name.clone(),
                    error: Box::new(e),
                })?;
            slots.push(LabelSlot {
                size: label.size,
                padding: label.padding,
                chain,
            });
        }
        Ok(LabelDecoders {
            names: labels.iter().map(|l| l.name.clone()).collect(),
            key_size: slots.iter().map(|s| s.size + s.padding).sum(),
            slots,
        })
    }

    /// Bytes of the key the labels read: the sum of sizes and paddings.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Label names, in key order (parallel to the values of [`decode_key`](Self::decode_key)).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether distinct keys of `key_size` bytes always decode to distinct label
    /// sets: every label decoded injectively, no padding or trailing bytes
    /// ignored, and at least one label.
    pub fn is_injective(&self, key_size: usize) -> bool {
        !self.slots.is_empty()
            && key_size == self.key_size
            && self
                .slots
                .iter()
                .all(|s| s.padding == 0 && s.chain.is_injective())
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no labels (every key maps to the same series).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Decodes `key` into one value per label, in order, into `out` (cleared first).
    ///
    /// Returns `Ok(false)` when a decoder drops the label set; `out` is then
    /// incomplete and must not be used. Bytes past [`key_size`](Self::key_size)
    /// are ignored (the kernel may pad the key struct).
    pub fn decode_key(&self, key: &[u8], out: &mut Vec<String>) -> Result<bool, DecodeError> {
        self.decode_key_in(key, None, out)
    }

    /// Whether a label's decoders need the process the key was read for: then
    /// the same key means different label sets in different processes.
    pub fn needs_process(&self) -> bool {
        self.slots.iter().any(|s| s.chain.needs_process())
    }

    /// [`decode_key`](Self::decode_key) for a key read from the maps of `process`.
    pub fn decode_key_in(
        &self,
        key: &[u8],
        process: Option<i32>,
        out: &mut Vec<String>,
    ) -> Result<bool, DecodeError> {
        out.clear();
        if key.len() < self.key_size {
            return Err(DecodeError::KeyTooShort {
                input: hex_for_error(key),
                got: key.len(),
                expected: self.key_size,
            });
        }
        let mut offset = 0;
        for (slot, name) in self.slots.iter().zip(&self.names) {
            let raw = &key[offset..offset + slot.size];
            offset += slot.size + slot.padding;
            match slot.chain.decode_in(raw, process) {
                Ok(Some(value)) => out.push(value),
                Ok(None) => return Ok(false),
                Err(error) => {
                    return Err(DecodeError::Label {
                        label: name.clone(),
                        error: Box::new(error),
                    })
                }
            }
        }
        Ok(true)
    }
}

/// Bytes as lowercase hex, in order, without prefix.
pub fn hex_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex for error messages, shortened so that one bad key cannot flood the log.
fn hex_for_error(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_ERROR_INPUT {
        hex_bytes(bytes)
    } else {
        format!("{}...", hex_bytes(&bytes[..MAX_ERROR_INPUT]))
    }
}

/// A host-order unsigned integer of 1, 2, 4 or 8 bytes (BPF maps use host order).
pub(crate) fn read_unsigned(input: &[u8]) -> Option<u64> {
    Some(match input.len() {
        1 => u64::from(input[0]),
        2 => u64::from(u16::from_ne_bytes(input.try_into().ok()?)),
        4 => u64::from(u32::from_ne_bytes(input.try_into().ok()?)),
        8 => u64::from_ne_bytes(input.try_into().ok()?),
        _ => return None,
    })
}

/// A host-order signed integer of 1, 2, 4 or 8 bytes.
pub(crate) fn read_signed(input: &[u8]) -> Option<i64> {
    Some(match input.len() {
        1 => i64::from(input[0] as i8),
        2 => i64::from(i16::from_ne_bytes(input.try_into().ok()?)),
        4 => i64::from(i32::from_ne_bytes(input.try_into().ok()?)),
        8 => i64::from_ne_bytes(input.try_into().ok()?),
        _ => return None,
    })
}

/// Why an integer decoder refused its input.
pub(crate) const INT_SIZE_REASON: &str = "integers must be 1, 2, 4 or 8 bytes";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dec(name: &str) -> DecoderConfig {
        DecoderConfig {
            name: name.to_string(),
            static_map: BTreeMap::new(),
            allow_unknown: false,
            regexps: Vec::new(),
        }
    }

    fn static_map(pairs: &[(&str, &str)]) -> DecoderConfig {
        DecoderConfig {
            static_map: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..dec("static_map")
        }
    }

    fn regexp(patterns: &[&str]) -> DecoderConfig {
        DecoderConfig {
            regexps: patterns.iter().map(|p| p.to_string()).collect(),
            ..dec("regexp")
        }
    }

    fn label(name: &str, size: usize, padding: usize, decoders: Vec<DecoderConfig>) -> Label {
        Label {
            name: name.to_string(),
            size,
            padding,
            decoders,
        }
    }

    #[test]
    fn chain_applies_decoders_in_order() {
        let chain = DecoderChain::new(&[dec("uint"), static_map(&[("1", "read"), ("2", "write")])])
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            chain.decode(&2u32.to_ne_bytes()).unwrap().as_deref(),
            Some("write")
        );
        assert_eq!(
            chain.decode(&7u32.to_ne_bytes()).unwrap().as_deref(),
            Some("unknown:7")
        );
    }

    #[test]
    fn chain_regexp_drops_set() {
        let chain = DecoderChain::new(&[dec("string"), regexp(&["^java"])]).unwrap();
        assert_eq!(
            chain.decode(b"java\0\0\0").unwrap().as_deref(),
            Some("java")
        );
        assert_eq!(chain.decode(b"bash\0\0\0").unwrap(), None);
    }

    #[test]
    fn chain_propagates_errors() {
        let chain = DecoderChain::new(&[dec("uint")]).unwrap();
        let err = chain.decode(&[1, 2, 3]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("uint"), "{text}");
        assert!(text.contains("010203"), "{text}");
    }

    #[test]
    fn empty_chain_yields_hex() {
        let chain = DecoderChain::new(&[]).unwrap();
        assert!(chain.is_empty());
        assert_eq!(
            chain.decode(&[0xde, 0xad, 0x00]).unwrap().as_deref(),
            Some("dead00")
        );
    }

    #[test]
    fn chain_output_is_lossy_utf8() {
        let chain = DecoderChain::new(&[dec("string")]).unwrap();
        assert_eq!(
            chain.decode(&[b'a', 0xff, b'b']).unwrap().as_deref(),
            Some("a\u{fffd}b")
        );
    }

    #[test]
    fn config_errors_name_the_decoder() {
        let err = DecoderChain::new(&[dec("float")]).unwrap_err();
        assert_eq!(
            err,
            DecoderConfigError::Unknown {
                name: "float".into()
            }
        );
        assert!(err.to_string().contains("\"float\""));

        let err = DecoderChain::new(&[dec("static_map")]).unwrap_err();
        assert_eq!(err, DecoderConfigError::EmptyStaticMap);
        assert!(err.to_string().contains("static_map"));

        let err = DecoderChain::new(&[dec("regexp")]).unwrap_err();
        assert_eq!(err, DecoderConfigError::NoRegexps);

        let err = DecoderChain::new(&[regexp(&["ok", "(unclosed"])]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("regexp"), "{text}");
        assert!(text.contains("(unclosed"), "{text}");
    }

    #[test]
    fn label_decoders_split_key() {
        let labels = [
            label("pid", 4, 4, vec![dec("uint")]),
            label("comm", 8, 0, vec![dec("string")]),
            label("delta", 2, 0, vec![dec("int")]),
        ];
        let decoders = LabelDecoders::new(&labels).unwrap();
        assert_eq!(decoders.key_size(), 18);
        assert_eq!(decoders.names(), ["pid", "comm", "delta"]);
        assert_eq!(decoders.len(), 3);

        let mut key = Vec::new();
        key.extend_from_slice(&1234u32.to_ne_bytes());
        key.extend_from_slice(&[0xaa; 4]); // padding: never read
        key.extend_from_slice(b"ruby\0\0\0\0");
        key.extend_from_slice(&(-5i16).to_ne_bytes());
        key.extend_from_slice(&[0; 6]); // trailing struct padding: ignored

        let mut out = vec!["stale".to_string()];
        assert!(decoders.decode_key(&key, &mut out).unwrap());
        assert_eq!(out, ["1234", "ruby", "-5"]);
    }

    #[test]
    fn label_decoders_drop_set() {
        let labels = [
            label("comm", 4, 0, vec![dec("string"), regexp(&["^go"])]),
            label("n", 1, 0, vec![dec("uint")]),
        ];
        let decoders = LabelDecoders::new(&labels).unwrap();
        let mut out = Vec::new();
        assert!(decoders.decode_key(b"go\0\0\x07", &mut out).unwrap());
        assert_eq!(out, ["go", "7"]);
        assert!(!decoders.decode_key(b"sh\0\0\x07", &mut out).unwrap());
    }

    #[test]
    fn label_decoders_reject_short_key() {
        let labels = [label("a", 4, 4, vec![dec("uint")])];
        let decoders = LabelDecoders::new(&labels).unwrap();
        let mut out = Vec::new();
        let err = decoders.decode_key(&[1, 2, 3, 4], &mut out).unwrap_err();
        assert_eq!(
            err,
            DecodeError::KeyTooShort {
                input: "01020304".into(),
                got: 4,
                expected: 8
            }
        );
    }

    #[test]
    fn label_errors_name_the_label() {
        let labels = [label("weird", 3, 0, vec![dec("uint")])];
        let decoders = LabelDecoders::new(&labels).unwrap();
        let err = decoders
            .decode_key(&[1, 2, 3], &mut Vec::new())
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("label \"weird\": decoder uint"), "{text}");
        assert!(text.contains("010203"), "{text}");

        let err = LabelDecoders::new(&[label("x", 4, 0, vec![dec("nope")])]).unwrap_err();
        assert!(
            err.to_string().starts_with("label \"x\": unknown decoder"),
            "{err}"
        );
    }

    #[test]
    fn no_labels_means_one_series() {
        let decoders = LabelDecoders::new(&[]).unwrap();
        assert!(decoders.is_empty());
        assert_eq!(decoders.key_size(), 0);
        let mut out = Vec::new();
        assert!(decoders.decode_key(&[0; 4], &mut out).unwrap());
        assert!(out.is_empty());
    }

    #[test]
    fn error_input_is_shortened() {
        let err = DecodeError::bad_input("uint", &[0u8; 100], "x");
        let text = err.to_string();
        assert!(text.contains(&format!("{}...", "00".repeat(64))), "{text}");
        assert!(text.contains("(100 bytes)"), "{text}");
    }

    #[test]
    fn integer_readers() {
        assert_eq!(read_unsigned(&[0xff]), Some(255));
        assert_eq!(read_unsigned(&u16::MAX.to_ne_bytes()), Some(65535));
        assert_eq!(read_unsigned(&[1, 2, 3]), None);
        assert_eq!(read_unsigned(&[]), None);
        assert_eq!(read_signed(&[0xff]), Some(-1));
        assert_eq!(read_signed(&i64::MIN.to_ne_bytes()), Some(i64::MIN));
        assert_eq!(read_signed(&[0; 16]), None);
    }

    #[test]
    fn only_integer_labels_without_padding_are_injective() {
        let ints = LabelDecoders::new(&[
            label("a", 8, 0, vec![dec("uint")]),
            label("b", 4, 0, vec![dec("int")]),
            label("c", 2, 0, vec![dec("hex")]),
        ])
        .unwrap();
        assert!(ints.is_injective(14));
        // Trailing key bytes no label reads: two keys may differ only there.
        assert!(!ints.is_injective(16));
        let padded = LabelDecoders::new(&[label("a", 4, 4, vec![dec("uint")])]).unwrap();
        assert!(!padded.is_injective(8));
        let strings = LabelDecoders::new(&[label("s", 8, 0, vec![dec("string")])]).unwrap();
        assert!(!strings.is_injective(8));
        let mut map = dec("static_map");
        map.static_map.insert("1".into(), "one".into());
        let mapped = LabelDecoders::new(&[label("m", 8, 0, vec![dec("uint"), map])]).unwrap();
        assert!(!mapped.is_injective(8));
        assert!(!LabelDecoders::new(&[]).unwrap().is_injective(0));
    }
}
