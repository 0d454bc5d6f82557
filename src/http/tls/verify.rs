//! The client-certificate verifier: one [`ClientCerts`] for every
//! `client_auth_type` that asks for a certificate, deciding as Go's
//! `crypto/tls` server does with the toolkit's settings:
//!
//! * every certificate the client sends must parse (Go parses them all);
//! * `VerifyClientCertIfGiven` and `RequireAndVerifyClientCert` check the
//!   chain against the client CAs as Go's `x509.Verify` does: in its
//!   validity period, extended key usage client authentication or "any" (or
//!   none at all), signed up to a CA; a certificate that is itself one of the
//!   CAs is trusted as it is;
//! * `client_allowed_sans` wants one of its names among the certificate's
//!   SANs, and so a certificate (the toolkit's check fails a handshake
//!   without one, whatever the type);
//! * the client must prove it holds the certificate's key (rustls checks
//!   its signature with the provider's algorithms).
//!
//! A refusal is logged through [`super::refusals`].

use super::names;
use super::refusals;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// The client CAs of `client_ca_file` (or `client_ca`), for verifying.
#[derive(Debug)]
pub(crate) struct Trust {
    /// As trust anchors for webpki.
    pub anchors: Vec<TrustAnchor<'static>>,
    /// The CA certificates themselves: a client certificate equal to one of
    /// them is trusted as it is.
    pub certificates: Vec<CertificateDer<'static>>,
}

/// The checks of one `tls_server_config` on client certificates.
#[derive(Debug)]
pub(crate) struct ClientCerts {
    /// `client_auth_type`, for messages.
    pub policy: &'static str,
    /// A handshake without a client certificate fails.
    pub required: bool,
    /// Check the chain against these CAs (`None`: not checked, as
    /// `RequestClientCert` and `RequireAnyClientCert`).
    pub trust: Option<Trust>,
    /// `client_allowed_sans`.
    pub allowed_sans: Option<Vec<String>>,
    /// The CA subjects sent in the certificate request, as Go sends them.
    pub hints: Vec<DistinguishedName>,
    /// The signature algorithms of the provider.
    pub algorithms: WebPkiSupportedAlgorithms,
}

/// Why a certificate was refused: the error rustls reports (which picks the
/// TLS alert) and a sentence for the log.
struct Refusal {
    error: CertificateError,
    why: String,
}

impl Refusal {
    fn new(error: CertificateError, why: impl Into<String>) -> Refusal {
        Refusal {
            error,
            why: why.into(),
        }
    }
}

/// OIDs of the extended key usages Go accepts for a client certificate.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Go's rule for a client certificate's extended key usage: absent, or
/// listing client authentication or "any".
struct GoClientUsage;

impl webpki::ExtendedKeyUsageValidator for GoClientUsage {
    // The error with context cannot be made outside webpki.
    #[allow(deprecated)]
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let wanted = [
            webpki::KeyPurposeId::new(EKU_CLIENT_AUTH),
            webpki::KeyPurposeId::new(EKU_ANY),
        ];
        let mut empty = true;
        for id in iter {
            empty = false;
            if wanted.contains(&id?) {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

impl ClientCerts {
    /// Every check on a certificate the client sent.
    fn check(
        &self,
        leaf: &X509Certificate<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Refusal> {
        if let Some(trust) = &self.trust {
            self.chain(trust, leaf, end_entity, intermediates, now)?;
        }
        if let Some(allowed) = &self.allowed_sans {
            let sans = names::go_sans(leaf)
                .map_err(|why| Refusal::new(CertificateError::BadEncoding, why))?;
            if !sans.iter().any(|san| allowed.contains(san)) {
                return Err(Refusal::new(
                    CertificateError::ApplicationVerificationFailure,
                    format!(
                        "none of its SANs ({}) is in client_allowed_sans ({})",
                        if sans.is_empty() {
                            "it has none".to_string()
                        } else {
                            sans.join(", ")
                        },
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The chain check of the `Verify...` types.
    #[allow(deprecated)] // webpki's older error variants are matched too.
    fn chain(
        &self,
        trust: &Trust,
        leaf: &X509Certificate<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Refusal> {
        if trust.certificates.iter().any(|ca| ca == end_entity) {
            // Go trusts a certificate of its pool as it is (webpki would
            // refuse a CA certificate as an end entity): its validity period
            // and key usage still count.
            let at = i64::try_from(now.as_secs())
                .ok()
                .and_then(|s| x509_parser::time::ASN1Time::from_timestamp(s).ok());
            if !at.is_some_and(|at| leaf.validity().is_valid_at(at)) {
                return Err(Refusal::new(
                    CertificateError::Expired,
                    format!(
                        "outside its validity period ({} to {})",
                        leaf.validity().not_before,
                        leaf.validity().not_after
                    ),
                ));
            }
            return match leaf.extended_key_usage() {
                Ok(None) => Ok(()),
                Ok(Some(eku)) if eku.value.any || eku.value.client_auth => Ok(()),
                Ok(Some(_)) => Err(Refusal::new(
                    CertificateError::InvalidPurpose,
                    "its extended key usage does not include client authentication",
                )),
                Err(e) => Err(Refusal::new(
                    CertificateError::BadEncoding,
                    format!("its extended key usage cannot be read: {e}"),
                )),
            };
        }
        if trust.anchors.is_empty() {
            return Err(Refusal::new(
                CertificateError::UnknownIssuer,
                "the client CA file holds no usable CA certificate, so no certificate can be verified",
            ));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| Refusal::new(CertificateError::BadEncoding, format!("not usable: {e}")))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &trust.anchors,
            intermediates,
            now,
            GoClientUsage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| {
            let error = match &e {
                webpki::Error::CertExpired { .. } => CertificateError::Expired,
                webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
                webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
                webpki::Error::RequiredEkuNotFound
                | webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
                webpki::Error::InvalidSignatureForPublicKey
                | webpki::Error::UnsupportedSignatureAlgorithm
                | webpki::Error::UnsupportedSignatureAlgorithmContext(_)
                | webpki::Error::UnsupportedSignatureAlgorithmForPublicKey
                | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                    CertificateError::BadSignature
                }
                _ => CertificateError::BadEncoding,
            };
            let why = match e {
                webpki::Error::UnknownIssuer => {
                    "not signed by a client CA (client_ca_file or client_ca)".to_string()
                }
                webpki::Error::CertExpired { not_after, .. } => {
                    format!(
                        "expired (not valid after {} s since the epoch)",
                        not_after.as_secs()
                    )
                }
                webpki::Error::CertNotValidYet { not_before, .. } => format!(
                    "not valid yet (not before {} s since the epoch)",
                    not_before.as_secs()
                ),
                webpki::Error::RequiredEkuNotFound
                | webpki::Error::RequiredEkuNotFoundContext(_) => {
                    "its extended key usage does not include client authentication".to_string()
                }
                webpki::Error::CaUsedAsEndEntity => "it is a CA certificate (basicConstraints CA:TRUE), which webpki refuses as a client certificate unless it is itself in the client CA file".to_string(),
                other => format!("{other:?}"),
            };
            Refusal::new(error, why)
        })
    }
}

impl ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Go parses every certificate of the chain first.
        let parsed = X509Certificate::from_der(end_entity.as_ref());
        let outcome = match &parsed {
            Ok((_, leaf)) => match intermediates
                .iter()
                .enumerate()
                .find_map(|(i, c)| X509Certificate::from_der(c.as_ref()).err().map(|e| (i, e)))
            {
                Some((i, e)) => Err(Refusal::new(
                    CertificateError::BadEncoding,
                    format!("intermediate certificate {} cannot be parsed: {e}", i + 1),
                )),
                None => self.check(leaf, end_entity, intermediates, now),
            },
            Err(e) => Err(Refusal::new(
                CertificateError::BadEncoding,
                format!("cannot be parsed: {e}"),
            )),
        };
        match outcome {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(refusal) => {
                let what = match &parsed {
                    Ok((_, leaf)) => names::describe(leaf),
                    Err(_) => "an unparsable certificate".to_string(),
                };
                refusals::refused(
                    end_entity.as_ref(),
                    &what,
                    &format!("{} (client_auth_type {})", refusal.why, self.policy),
                );
                Err(rustls::Error::InvalidCertificate(refusal.error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
