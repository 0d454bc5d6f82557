//! `inet_ip`: an IPv4 (4 bytes) or IPv6 (16 bytes) address in network byte
//! order, as `sin_addr` / `sin6_addr` hold it, in its usual text form.

use super::{DecodeError, Decoder};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Decodes 4 bytes as dotted IPv4 and 16 bytes as IPv6 (RFC 5952 text:
/// `::1`, `2001:db8::1`, IPv4-mapped as `::ffff:10.0.0.1`).
#[derive(Debug, Clone, Copy, Default)]
pub struct InetIpDecoder;

impl Decoder for InetIpDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let text = if let Ok(v4) = <[u8; 4]>::try_from(input) {
            Ipv4Addr::from(v4).to_string()
        } else if let Ok(v6) = <[u8; 16]>::try_from(input) {
            Ipv6Addr::from(v6).to_string()
        } else {
            return Err(DecodeError::bad_input(
                "inet_ip",
                input,
                "an address is 4 bytes (IPv4) or 16 bytes (IPv6)",
            ));
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
        String::from_utf8(InetIpDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn ipv4_and_ipv6_in_network_order() {
        assert_eq!(decode(&[127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(decode(&[10, 1, 2, 254]), "10.1.2.254");
        let mut loopback = [0u8; 16];
        loopback[15] = 1;
        assert_eq!(decode(&loopback), "::1");
        let doc: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(decode(&doc), "2001:db8::1");
        let mapped: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1];
        assert_eq!(decode(&mapped), "::ffff:10.0.0.1");
    }

    #[test]
    fn other_sizes_are_errors() {
        for size in [0, 1, 5, 8, 15, 17] {
            assert!(InetIpDecoder.decode(&vec![0; size]).is_err(), "{size}");
        }
    }
}
