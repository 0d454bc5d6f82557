//! PEM files read as Go reads them for the toolkit: the certificate chain
//! and key as `tls.X509KeyPair` takes them, the client CAs as
//! `CertPool.AppendCertsFromPEM` does (blocks it cannot use are skipped, not
//! errors).

use rustls::pki_types::pem::{self, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::prelude::FromDer;

/// Every PEM section of `bytes` in order, up to the first malformed one.
fn sections(bytes: &[u8]) -> (Vec<(SectionKind, Vec<u8>)>, Option<String>) {
    use rustls::pki_types::pem::PemObject;
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        match item {
            Ok(section) => out.push(section),
            Err(e) => return (out, Some(pem_error(&e))),
        }
    }
    (out, None)
}

fn pem_error(e: &pem::Error) -> String {
    format!("malformed PEM: {e}")
}

/// The certificates of a `cert_file`: every `CERTIFICATE` block, the leaf
/// first; the leaf must parse as X.509.
pub(crate) fn chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let (sections, error) = sections(bytes);
    if let Some(e) = error {
        return Err(e);
    }
    let certs: Vec<CertificateDer<'static>> = sections
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    let Some(leaf) = certs.first() else {
        return Err(
            "no certificate found (expected a PEM block `-----BEGIN CERTIFICATE-----`)".into(),
        );
    };
    if let Err(e) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()) {
        return Err(format!("the first certificate is not X.509: {e}"));
    }
    Ok(certs)
}

/// The private keys a `key_file`'s first key block may hold: Go takes the
/// first block whose label ends in `PRIVATE KEY` and tries PKCS #1, PKCS #8
/// and SEC 1 in turn whatever the label says; so do these candidates.
pub(crate) fn key_candidates(bytes: &[u8]) -> Result<Vec<PrivateKeyDer<'static>>, String> {
    let (sections, error) = sections(bytes);
    let der = sections.into_iter().find_map(|(kind, der)| {
        matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
        .then_some(der)
    });
    let Some(der) = der else {
        return Err(error.unwrap_or_else(|| {
            "no private key found (expected a PEM block `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)".into()
        }));
    };
    Ok(vec![
        PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
        PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
    ])
}

/// The client CAs: every `CERTIFICATE` block that parses as X.509 and that
/// webpki can take as a trust anchor; the others are described in the
/// second list (Go skips them silently; here they are warnings).
pub(crate) fn client_cas(bytes: &[u8]) -> (Vec<CertificateDer<'static>>, Vec<String>) {
    let (sections, error) = sections(bytes);
    let mut skipped: Vec<String> = error.into_iter().collect();
    let mut cas = Vec::new();
    let mut n = 0;
    for (kind, der) in sections {
        if kind != SectionKind::Certificate {
            skipped.push(format!("a {kind:?} block (not a certificate)"));
            continue;
        }
        n += 1;
        let der = CertificateDer::from(der);
        if let Err(e) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()) {
            skipped.push(format!("certificate {n}: not X.509: {e}"));
            continue;
        }
        if let Err(e) = webpki::anchor_from_trusted_cert(&der) {
            skipped.push(format!("certificate {n}: not usable as a CA: {e}"));
            continue;
        }
        cas.push(der);
    }
    (cas, skipped)
}
