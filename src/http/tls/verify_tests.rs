//! The client-certificate verifier against Go's rules, one case per rule,
//! with certificates made by the `openssl` command line and the verifier
//! called directly (at a chosen time for the validity cases).

use super::*;
use rustls::pki_types::UnixTime;
use rustls::CertificateError;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn openssl(dir: &Path, args: &[&str]) -> bool {
    let out = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => {
            return crate::testing::require(
                "openssl",
                Err(format!("{e}; scripts/setup.sh installs Debian's openssl")),
            );
        }
    };
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

const EC: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed certificate `name` (a CA: openssl's `req -x509` marks it so).
fn self_signed(dir: &Path, name: &str, extra: &[&str]) -> bool {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &crt, "-days", "10", "-subj"]);
    let subject = format!("/CN={name}");
    args.push(&subject);
    args.extend(extra);
    openssl(dir, &args)
}

/// A certificate `name` signed by `ca`, valid `days`, with `-addext` values.
fn signed(dir: &Path, name: &str, ca: &str, days: &str, exts: &[&str]) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let subject = format!("/CN={name}");
    let mut args = vec!["req"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    for ext in exts {
        args.extend(["-addext", ext]);
    }
    openssl(dir, &args);
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-copy_extensions",
            "copyall",
            "-days",
            days,
            "-out",
            &crt,
        ],
    );
}

fn der(dir: &Path, name: &str) -> CertificateDer<'static> {
    let pem = std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
    pem::chain(&pem).unwrap().remove(0)
}

fn checks(
    dir: &Path,
    cas: &[&str],
    verify: bool,
    allowed_sans: Option<&[&str]>,
) -> verify::ClientCerts {
    let certificates: Vec<_> = cas.iter().map(|n| der(dir, n)).collect();
    let anchors = certificates
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).unwrap().to_owned())
        .collect();
    verify::ClientCerts {
        policy: "RequireAndVerifyClientCert",
        required: true,
        trust: verify.then_some(verify::Trust {
            anchors,
            certificates,
        }),
        allowed_sans: allowed_sans.map(|s| s.iter().map(|s| s.to_string()).collect()),
        hints: Vec::new(),
        algorithms: provider::provider().signature_verification_algorithms,
    }
}

fn now_plus(days: u64) -> UnixTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    UnixTime::since_unix_epoch(now + Duration::from_secs(days * 86_400))
}

/// The verdict on certificate `name` (with `chain` as intermediates).
fn verdict(
    checks: &verify::ClientCerts,
    dir: &Path,
    name: &str,
    chain: &[&str],
    at: UnixTime,
) -> Result<(), rustls::Error> {
    let intermediates: Vec<_> = chain.iter().map(|n| der(dir, n)).collect();
    checks
        .verify_client_cert(&der(dir, name), &intermediates, at)
        .map(|_| ())
}

#[test]
fn client_certificates_as_go_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !self_signed(d, "ca", &[]) {
        return;
    }
    self_signed(d, "rogue", &["-addext", "subjectAltName=DNS:prom.example"]);
    self_signed(d, "otherca", &[]);
    signed(
        d,
        "stranger",
        "otherca",
        "5",
        &["subjectAltName=DNS:prom.example"],
    );
    signed(d, "plain", "ca", "5", &["subjectAltName=DNS:prom.example"]);
    signed(
        d,
        "client_eku",
        "ca",
        "5",
        &["extendedKeyUsage=clientAuth", "subjectAltName=IP:10.0.0.7"],
    );
    signed(d, "server_eku", "ca", "5", &["extendedKeyUsage=serverAuth"]);
    signed(
        d,
        "any_eku",
        "ca",
        "5",
        &["extendedKeyUsage=anyExtendedKeyUsage"],
    );
    signed(
        d,
        "inter",
        "ca",
        "5",
        &["basicConstraints=critical,CA:TRUE", "keyUsage=keyCertSign"],
    );
    signed(
        d,
        "leaf",
        "inter",
        "5",
        &["subjectAltName=URI:SPIFFE://cluster/prom"],
    );
    let now = now_plus(0);
    let v = checks(d, &["ca"], true, None);
    assert!(verdict(&v, d, "plain", &[], now).is_ok(), "no EKU: any use");
    assert!(verdict(&v, d, "client_eku", &[], now).is_ok());
    assert!(
        verdict(&v, d, "any_eku", &[], now).is_ok(),
        "Go takes anyExtendedKeyUsage"
    );
    assert_eq!(
        verdict(&v, d, "server_eku", &[], now),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose
        ))
    );
    assert_eq!(
        verdict(&v, d, "stranger", &[], now),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    // A self-signed CA certificate as a client certificate: refused (Go:
    // unknown authority; webpki: a CA used as an end entity).
    assert!(verdict(&v, d, "rogue", &[], now).is_err());
    // Through an intermediate the client sends.
    assert!(verdict(&v, d, "leaf", &["inter"], now).is_ok());
    assert!(verdict(&v, d, "leaf", &[], now).is_err());
    // Validity: the leaf's 5 days are over in 6 (the CA's 10 are not).
    assert_eq!(
        verdict(&v, d, "plain", &[], now_plus(6)),
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
    );
    // A self-signed CA certificate that is itself in the pool: Go trusts it
    // as it is (a common way to pin one client); webpki alone would not.
    let pinned = checks(d, &["ca", "rogue"], true, None);
    assert!(verdict(&pinned, d, "rogue", &[], now).is_ok());
    assert!(verdict(&pinned, d, "rogue", &[], now_plus(11)).is_err());
    // An empty pool verifies nothing.
    let empty = checks(d, &[], true, None);
    assert!(verdict(&empty, d, "plain", &[], now).is_err());
    // Not a certificate at all.
    assert!(v
        .verify_client_cert(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]), &[], now)
        .is_err());
}

#[test]
fn allowed_sans_as_go_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !self_signed(d, "ca", &[]) {
        return;
    }
    signed(
        d,
        "many",
        "ca",
        "5",
        &["subjectAltName=DNS:prom.example,email:ops@example.org,IP:10.0.0.7,IP:::ffff:10.0.0.8,IP:2001:db8:0:0:1:0:0:1,URI:SPIFFE://cluster/prom"],
    );
    signed(d, "none", "ca", "5", &[]);
    let now = now_plus(0);
    for allowed in [
        "prom.example",
        "ops@example.org",
        "10.0.0.7",
        "10.0.0.8",
        "2001:db8::1:0:0:1",
        "spiffe://cluster/prom",
    ] {
        let v = checks(d, &["ca"], true, Some(&[allowed]));
        assert!(verdict(&v, d, "many", &[], now).is_ok(), "{allowed}");
    }
    for refused in [
        "PROM.EXAMPLE",
        "SPIFFE://cluster/prom",
        "::ffff:10.0.0.8",
        "other",
    ] {
        let v = checks(d, &["ca"], true, Some(&[refused]));
        assert_eq!(
            verdict(&v, d, "many", &[], now),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            )),
            "{refused}"
        );
    }
    let v = checks(d, &["ca"], true, Some(&["prom.example"]));
    assert!(verdict(&v, d, "none", &[], now).is_err());
    // Without chain checks (RequireAnyClientCert): the SANs alone decide.
    let unverified = checks(d, &[], false, Some(&["prom.example"]));
    assert!(verdict(&unverified, d, "many", &[], now).is_ok());
    assert!(verdict(&unverified, d, "none", &[], now).is_err());
}
