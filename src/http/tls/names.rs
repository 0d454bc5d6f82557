//! A client certificate's subject alternative names as the exporter
//! toolkit compares them with `client_allowed_sans`: the strings Go's
//! `crypto/x509` gives for them (DNS names and e-mail addresses as written,
//! IP addresses as `net.IP.String` prints them, URIs with the scheme in
//! lower case as `net/url` parses them). The DER is parsed by x509-parser.

use std::net::{Ipv4Addr, Ipv6Addr};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The SANs of `cert` as Go writes them, or why Go would not parse them
/// (a malformed name makes Go refuse the whole certificate).
pub(crate) fn go_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let san = match cert.subject_alternative_name() {
        Ok(Some(san)) => san,
        Ok(None) => return Ok(Vec::new()),
        Err(e) => return Err(format!("its subject alternative names cannot be read: {e}")),
    };
    let mut names = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => {
                if !s.is_ascii() {
                    return Err(format!("SAN {s:?} is not ASCII"));
                }
                names.push(s.to_string());
            }
            GeneralName::IPAddress(bytes) => names.push(go_ip(bytes)?),
            GeneralName::URI(s) => names.push(go_uri(s)?),
            _ => {}
        }
    }
    Ok(names)
}

/// An iPAddress SAN as Go's `net.IP.String` prints it: IPv4 dotted, IPv6 in
/// the RFC 5952 form, an IPv4-mapped IPv6 address as its IPv4 address.
fn go_ip(bytes: &[u8]) -> Result<String, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(Ipv4Addr::from(v4).to_string());
    }
    let Ok(v6) = <[u8; 16]>::try_from(bytes) else {
        return Err(format!(
            "an IP address SAN is {} bytes long (4 or 16 expected)",
            bytes.len()
        ));
    };
    let ip = Ipv6Addr::from(v6);
    Ok(match ip.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    })
}

/// A URI SAN as Go prints it after parsing: the scheme in lower case. Go
/// refuses a URI without a scheme-like start; so does this.
fn go_uri(uri: &str) -> Result<String, String> {
    if !uri.is_ascii() {
        return Err(format!("URI SAN {uri:?} is not ASCII"));
    }
    match uri.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(format!("{}:{rest}", scheme.to_ascii_lowercase()))
        }
        // Go's url.Parse refuses a colon in a first segment that is no scheme.
        Some((first, _)) if !first.contains('/') => Err(format!(
            "URI SAN {uri:?} does not parse as a URL (a colon in its first segment)"
        )),
        // It takes a relative reference (no scheme).
        _ => Ok(uri.to_string()),
    }
}

/// One line naming a certificate for the log: its subject and SANs.
pub(crate) fn describe(cert: &X509Certificate<'_>) -> String {
    let subject = cert.subject().to_string();
    let subject = if subject.is_empty() {
        "no subject".to_string()
    } else {
        subject
    };
    match go_sans(cert) {
        Ok(sans) if sans.is_empty() => format!("{subject}, no SAN"),
        Ok(sans) => format!("{subject}, SAN {}", sans.join(" ")),
        Err(_) => subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_print_as_in_go() {
        assert_eq!(go_ip(&[127, 0, 0, 1]).unwrap(), "127.0.0.1");
        let mut loopback = [0u8; 16];
        loopback[15] = 1;
        assert_eq!(go_ip(&loopback).unwrap(), "::1");
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3];
        assert_eq!(go_ip(&mapped).unwrap(), "10.1.2.3");
        let v6: Ipv6Addr = "2001:db8:0:0:1:0:0:1".parse().unwrap();
        // RFC 5952: the first of two equal runs of zeros is shortened.
        assert_eq!(go_ip(&v6.octets()).unwrap(), "2001:db8::1:0:0:1");
        assert!(go_ip(&[1, 2, 3]).is_err());
    }

    #[test]
    fn uri_schemes_are_lowered_as_go_parses_them() {
        assert_eq!(
            go_uri("SPIFFE://cluster/ns/Prom").unwrap(),
            "spiffe://cluster/ns/Prom"
        );
        assert_eq!(go_uri("urn:x:y").unwrap(), "urn:x:y");
        assert_eq!(go_uri("relative/path").unwrap(), "relative/path");
        assert_eq!(go_uri("a/b:c").unwrap(), "a/b:c");
        assert!(go_uri("1ab:c").is_err());
        assert!(go_uri("spiffe://é").is_err());
    }
}
