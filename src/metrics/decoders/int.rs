//! `int`: a host-order signed integer of 1, 2, 4 or 8 bytes, as decimal text.

use super::{read_signed, DecodeError, Decoder, INT_SIZE_REASON};

/// Decodes a two's-complement signed integer (return codes, deltas) to decimal.
#[derive(Debug, Clone, Copy, Default)]
pub struct IntDecoder;

impl Decoder for IntDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        match read_signed(input) {
            Some(v) => Ok(Some(v.to_string().into_bytes())),
            None => Err(DecodeError::bad_input("int", input, INT_SIZE_REASON)),
        }
    }

    fn is_injective(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> String {
        String::from_utf8(IntDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn all_sizes() {
        assert_eq!(decode(&[0xff]), "-1");
        assert_eq!(decode(&[0x7f]), "127");
        assert_eq!(decode(&(-300i16).to_ne_bytes()), "-300");
        assert_eq!(decode(&i32::MIN.to_ne_bytes()), "-2147483648");
        assert_eq!(decode(&42i32.to_ne_bytes()), "42");
        assert_eq!(decode(&i64::MIN.to_ne_bytes()), "-9223372036854775808");
        assert_eq!(decode(&i64::MAX.to_ne_bytes()), "9223372036854775807");
    }

    #[test]
    fn other_sizes_fail() {
        let err = IntDecoder.decode(&[1, 2, 3]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("decoder int:"), "{text}");
        assert!(text.contains("010203"), "{text}");
    }
}
