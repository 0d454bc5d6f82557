//! `string`: a NUL-terminated C string (e.g. `comm`), as text.

use super::{DecodeError, Decoder};

/// Decodes the bytes before the first NUL; invalid UTF-8 becomes U+FFFD.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringDecoder;

impl Decoder for StringDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let end = input.iter().position(|&b| b == 0).unwrap_or(input.len());
        let text = String::from_utf8_lossy(&input[..end]).into_owned();
        Ok(Some(text.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> String {
        String::from_utf8(StringDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn stops_at_first_nul() {
        assert_eq!(decode(b"bash\0garbage\0"), "bash");
        assert_eq!(decode(b"\0abc"), "");
    }

    #[test]
    fn without_nul_takes_everything() {
        assert_eq!(decode(b"exactly16bytes!!"), "exactly16bytes!!");
        assert_eq!(decode(b""), "");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(decode(&[b'x', 0xc3, b'y', 0]), "x\u{fffd}y");
        assert_eq!(decode("héllo\0".as_bytes()), "héllo");
    }
}
