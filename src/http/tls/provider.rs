//! The crypto provider (aws-lc-rs) and the TLS parameters it offers, named
//! as Go names them: the TLS 1.2 cipher suites and the key exchange groups.
//!
//! aws-lc-rs rather than ring: with it rustls signs with P-521 keys and
//! verifies P-521 signatures, and offers X25519MLKEM768 as Go 1.24 does by
//! default. rustls has no P-521 key exchange of its own, so [`SECP521R1`]
//! adds it here on aws-lc-rs' ECDH.

use rustls::crypto::aws_lc_rs::{self, cipher_suite as cs, kx_group};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup};
use rustls::{NamedGroup, SupportedCipherSuite};

/// The provider with every key exchange group Go offers by default, in Go's
/// order (X25519MLKEM768, X25519, P-256, P-384, P-521).
pub(crate) fn provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
        SECP521R1,
    ];
    provider
}

/// What Go calls a TLS 1.2 cipher suite, and what rustls makes of it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Suite {
    /// Implemented by rustls.
    Usable(SupportedCipherSuite),
    /// A TLS 1.3 suite: Go and rustls always enable all three, and Go's
    /// `CipherSuites` setting leaves them alone.
    Tls13,
    /// Known to Go (its `CipherSuites()`, or before Go 1.22 with RSA key
    /// exchange), not implemented by rustls: CBC mode, or RSA key exchange.
    Missing(&'static str),
}

/// The names the toolkit accepts in `cipher_suites` (Go's `CipherSuites()`,
/// with the RSA key exchange suites older Go listed there too), and Go's
/// older names of the ChaCha20 suites, which this exporter always took.
const SUITES: &[(&str, Suite)] = &[
    ("TLS_AES_128_GCM_SHA256", Suite::Tls13),
    ("TLS_AES_256_GCM_SHA384", Suite::Tls13),
    ("TLS_CHACHA20_POLY1305_SHA256", Suite::Tls13),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Suite::Usable(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Suite::Usable(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Suite::Usable(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        Suite::Usable(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Suite::Usable(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Suite::Usable(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Suite::Usable(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        Suite::Usable(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        Suite::Missing("CBC mode"),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        Suite::Missing("CBC mode"),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        Suite::Missing("CBC mode"),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        Suite::Missing("CBC mode"),
    ),
    (
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        Suite::Missing("RSA key exchange and CBC mode"),
    ),
    (
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        Suite::Missing("RSA key exchange and CBC mode"),
    ),
    (
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        Suite::Missing("RSA key exchange"),
    ),
    (
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        Suite::Missing("RSA key exchange"),
    ),
];

/// Go's insecure suites (`InsecureCipherSuites()`): the toolkit refuses
/// them as unknown, and so does this exporter.
const INSECURE: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// A `cipher_suites` name: `Ok` with what it is, or `Err` with why the
/// toolkit refuses it too.
pub(crate) fn suite(name: &str) -> Result<Suite, String> {
    if let Some((_, s)) = SUITES.iter().find(|(n, _)| *n == name) {
        return Ok(*s);
    }
    let names: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
    if INSECURE.contains(&name) {
        return Err(format!(
            "cipher suite {name} is one of Go's insecure suites, which the exporter toolkit refuses too: use one of {}",
            names.join(", ")
        ));
    }
    Err(format!(
        "unknown cipher suite {name:?}: expected one of {} (Go's names)",
        names.join(", ")
    ))
}

/// A `curve_preferences` name (Go's `CurveID` names the toolkit takes).
pub(crate) fn group(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    Ok(match name {
        "X25519" => kx_group::X25519,
        "CurveP256" => kx_group::SECP256R1,
        "CurveP384" => kx_group::SECP384R1,
        "CurveP521" => SECP521R1,
        other => {
            return Err(format!(
                "unknown curve {other:?}: expected X25519, CurveP256, CurveP384 or CurveP521"
            ))
        }
    })
}

/// ECDHE over P-521 (secp521r1), which Go offers and rustls does not.
pub(crate) static SECP521R1: &dyn SupportedKxGroup = &P521;

#[derive(Debug)]
struct P521;

impl SupportedKxGroup for P521 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        use ::aws_lc_rs::agreement::{EphemeralPrivateKey, ECDH_P521};
        let rng = ::aws_lc_rs::rand::SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&ECDH_P521, &rng)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let public = private
            .compute_public_key()
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?
            .as_ref()
            .to_vec();
        Ok(Box::new(P521Exchange { private, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

struct P521Exchange {
    private: ::aws_lc_rs::agreement::EphemeralPrivateKey,
    public: Vec<u8>,
}

impl ActiveKeyExchange for P521Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        use ::aws_lc_rs::agreement::{agree_ephemeral, UnparsedPublicKey, ECDH_P521};
        let invalid = || rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare);
        // TLS sends uncompressed points only (RFC 8446 §4.2.8.2).
        if peer.first() != Some(&0x04) {
            return Err(invalid());
        }
        let peer = UnparsedPublicKey::new(&ECDH_P521, peer);
        agree_ephemeral(self.private, peer, (), |secret| {
            Ok(SharedSecret::from(secret))
        })
        .map_err(|()| invalid())
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p521_agrees_with_itself() {
        let a = SECP521R1.start().unwrap();
        let b = SECP521R1.start().unwrap();
        assert_eq!(a.pub_key().len(), 133);
        let b_public = b.pub_key().to_vec();
        let a_public = a.pub_key().to_vec();
        let ab = a.complete(&b_public).unwrap();
        let ba = b.complete(&a_public).unwrap();
        assert_eq!(ab.secret_bytes(), ba.secret_bytes());
        assert_eq!(ab.secret_bytes().len(), 66);
        let c = SECP521R1.start().unwrap();
        assert!(c.complete(&[0x02; 67]).is_err());
    }

    #[test]
    fn suite_names_as_the_toolkit_takes_them() {
        assert!(matches!(
            suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            Ok(Suite::Usable(_))
        ));
        assert!(matches!(suite("TLS_AES_128_GCM_SHA256"), Ok(Suite::Tls13)));
        assert!(matches!(
            suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            Ok(Suite::Missing("CBC mode"))
        ));
        assert!(suite("TLS_RSA_WITH_RC4_128_SHA")
            .unwrap_err()
            .contains("insecure"));
        assert!(suite("TLS_MADE_UP").unwrap_err().contains("unknown"));
        assert_eq!(group("CurveP521").unwrap().name(), NamedGroup::secp521r1);
        assert!(group("Curve25519").is_err());
    }
}
