//! `uint`: a host-order unsigned integer of 1, 2, 4 or 8 bytes, as decimal text.

use super::{read_unsigned, DecodeError, Decoder, INT_SIZE_REASON};

/// Decodes an unsigned integer (pids, counts, enum values) to decimal.
#[derive(Debug, Clone, Copy, Default)]
pub struct UintDecoder;

impl Decoder for UintDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        match read_unsigned(input) {
            Some(v) => Ok(Some(v.to_string().into_bytes())),
            None => Err(DecodeError::bad_input("uint", input, INT_SIZE_REASON)),
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
        String::from_utf8(UintDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn all_sizes() {
        assert_eq!(decode(&[7]), "7");
        assert_eq!(decode(&[0xff]), "255");
        assert_eq!(decode(&0x1234u16.to_ne_bytes()), "4660");
        assert_eq!(decode(&u32::MAX.to_ne_bytes()), "4294967295");
        assert_eq!(decode(&u64::MAX.to_ne_bytes()), "18446744073709551615");
        assert_eq!(decode(&0u64.to_ne_bytes()), "0");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn little_endian() {
        assert_eq!(decode(&[0x01, 0x02, 0x00, 0x00]), "513");
    }

    #[test]
    fn other_sizes_fail() {
        for len in [0, 3, 5, 6, 7, 9, 16] {
            let err = UintDecoder.decode(&vec![1; len]).unwrap_err();
            assert!(err.to_string().starts_with("decoder uint:"), "{err}");
        }
    }
}
