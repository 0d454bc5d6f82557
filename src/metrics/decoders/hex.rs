//! `hex`: integers of 1, 2, 4 or 8 bytes as `0x`-prefixed lowercase hex of
//! their value; any other size as the bytes in order (hashes, addresses).

use super::{hex_bytes, read_unsigned, DecodeError, Decoder};

/// Decodes bytes to lowercase hex text.
#[derive(Debug, Clone, Copy, Default)]
pub struct HexDecoder;

impl Decoder for HexDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let text = match read_unsigned(input) {
            Some(v) => format!("{v:#x}"),
            None => hex_bytes(input),
        };
        Ok(Some(text.into_bytes()))
    }

    fn is_injective(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> String {
        String::from_utf8(HexDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn integer_sizes_use_value() {
        assert_eq!(decode(&[0x1f]), "0x1f");
        assert_eq!(decode(&[0]), "0x0");
        assert_eq!(decode(&0xbeefu16.to_ne_bytes()), "0xbeef");
        assert_eq!(decode(&0xdead_beefu32.to_ne_bytes()), "0xdeadbeef");
        assert_eq!(
            decode(&0x7fff_1234_5678_9abcu64.to_ne_bytes()),
            "0x7fff123456789abc"
        );
    }

    #[test]
    fn other_sizes_use_byte_order() {
        assert_eq!(decode(&[0xAB, 0x01, 0xff]), "ab01ff");
        assert_eq!(decode(&[0x00; 16]), "0".repeat(32));
        assert_eq!(decode(&[]), "");
    }
}
