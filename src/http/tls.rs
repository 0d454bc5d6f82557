//! `tls_server_config`: the toolkit's TLS settings turned into a rustls
//! [`ServerConfig`] (ring provider, TLS 1.2 and 1.3 only). What rustls cannot
//! do is refused by name: TLS 1.0 and 1.1, the CBC and RSA-key-exchange
//! cipher suites, the P-521 curve.

use super::web_config::{Reader, WebConfigError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::path::PathBuf;
use std::sync::Arc;

/// The `tls_server_config` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    client_auth_type: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    client_allowed_sans: Option<Spanned<Vec<String>>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
    cipher_suites: Option<Vec<Spanned<String>>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<Spanned<String>>>,
}

impl std::fmt::Debug for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print an inline key.
        f.debug_struct("TlsFile")
            .field("cert_file", &self.cert_file.as_ref().map(|s| &s.value))
            .field("key_file", &self.key_file.as_ref().map(|s| &s.value))
            .finish_non_exhaustive()
    }
}

/// Where a PEM comes from: a file (relative to the web config) or the value itself.
enum Source {
    File { path: PathBuf, at: Location },
    Inline { text: String, at: Location },
}

impl Source {
    fn at(&self) -> Location {
        match self {
            Source::File { at, .. } | Source::Inline { at, .. } => *at,
        }
    }
}

/// A string option that counts as set: present and not empty (as in Go,
/// where the empty string is the unset value).
fn set(value: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
    value.as_ref().filter(|s| !s.value.trim().is_empty())
}

/// The source of one PEM, from its inline key and its `_file` key.
fn source(
    reader: &Reader<'_>,
    inline_key: &str,
    inline: Option<&Spanned<String>>,
    file_key: &str,
    file: Option<&Spanned<String>>,
) -> Result<Option<Source>, WebConfigError> {
    match (inline, file) {
        (Some(i), Some(_)) => Err(reader.error(
            i.referenced,
            format!("set either {inline_key} or {file_key}, not both"),
        )),
        (Some(i), None) => Ok(Some(Source::Inline {
            text: i.value.clone(),
            at: i.referenced,
        })),
        (None, Some(f)) => Ok(Some(Source::File {
            path: reader.resolve(&f.value),
            at: f.referenced,
        })),
        (None, None) => Ok(None),
    }
}

/// The PEM text of a source, and how to name it in messages
/// (`cert_file /etc/x.pem`, `the inline cert`).
fn read_pem(
    reader: &mut Reader<'_>,
    source: &Source,
    file_key: &str,
    inline_key: &str,
) -> Result<(Vec<u8>, String), WebConfigError> {
    match source {
        Source::Inline { text, .. } => {
            Ok((text.as_bytes().to_vec(), format!("the inline {inline_key}")))
        }
        Source::File { path, at } => {
            let label = format!("{file_key} {}", path.display());
            let bytes = reader
                .read(path)
                .map_err(|e| reader.error(*at, format!("{label}: cannot read it: {e}")))?;
            Ok((bytes, label))
        }
    }
}

/// PEM certificates of a source; at least one.
fn certificates(
    reader: &Reader<'_>,
    bytes: &[u8],
    label: &str,
    at: Location,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reader.error(at, format!("{label}: not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(reader.error(
            at,
            format!("{label}: no certificate found (expected a PEM block `-----BEGIN CERTIFICATE-----`)"),
        ));
    }
    Ok(certs)
}

/// `client_auth_type`, as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert";

fn client_auth(
    reader: &Reader<'_>,
    value: Option<&Spanned<String>>,
) -> Result<ClientAuth, WebConfigError> {
    let Some(value) = value else {
        return Ok(ClientAuth::NoClientCert);
    };
    Ok(match value.value.as_str() {
        "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        // The toolkit keeps RequireClientCert as an older name.
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(reader.error(
                value.referenced,
                format!("invalid client_auth_type {other:?}: expected {CLIENT_AUTH_TYPES}"),
            ))
        }
    })
}

/// A TLS version name: 12 or 13.
fn version(reader: &Reader<'_>, key: &str, value: &Spanned<String>) -> Result<u8, WebConfigError> {
    match value.value.as_str() {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(reader.error(
            value.referenced,
            format!(
                "{key}: {} is not supported: rustls implements only TLS12 and TLS13 (TLS 1.0 and 1.1 are deprecated, RFC 8996)",
                value.value
            ),
        )),
        other => Err(reader.error(
            value.referenced,
            format!("{key}: unknown TLS version {other:?}: expected TLS12 or TLS13"),
        )),
    }
}

/// The TLS 1.2 cipher suites rustls implements, by their Go names (with the
/// older Go names of the ChaCha20 suites too).
fn tls12_suites() -> Vec<(&'static str, SupportedCipherSuite)> {
    use ring::cipher_suite as c;
    vec![
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            c::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            c::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            c::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            c::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            c::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            c::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            c::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            c::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

/// Go's TLS 1.3 suite names: accepted and without effect, as in Go, where
/// the TLS 1.3 suites are not configurable (rustls enables all three).
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows that rustls does not implement (CBC modes, RC4, 3DES, and
/// RSA key exchange without forward secrecy).
const UNSUPPORTED_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn supported_suite_names() -> String {
    tls12_suites()
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.ends_with("SHA256") || n.ends_with("SHA384"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `cipher_suites`: the TLS 1.2 suites chosen, in order; `None` when the list
/// is absent or empty (rustls' defaults: all six).
fn cipher_suites(
    reader: &Reader<'_>,
    names: &[Spanned<String>],
) -> Result<Option<Vec<SupportedCipherSuite>>, WebConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let table = tls12_suites();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        if let Some((_, suite)) = table.iter().find(|(n, _)| *n == name.value) {
            if !chosen.iter().any(|s| s.suite() == suite.suite()) {
                chosen.push(*suite);
            }
        } else if TLS13_SUITES.contains(&name.value.as_str()) {
            // No effect, as in Go.
        } else if UNSUPPORTED_SUITES.contains(&name.value.as_str()) {
            return Err(reader.error(
                name.referenced,
                format!(
                    "cipher suite {} is not supported: rustls implements only these TLS 1.2 suites: {}",
                    name.value,
                    supported_suite_names()
                ),
            ));
        } else {
            return Err(reader.error(
                name.referenced,
                format!(
                    "unknown cipher suite {:?}: expected one of {} (Go's names)",
                    name.value,
                    supported_suite_names()
                ),
            ));
        }
    }
    Ok(Some(chosen))
}

/// `curve_preferences`: key exchange groups in order; `None` for rustls' defaults.
fn curves(
    reader: &Reader<'_>,
    names: &[Spanned<String>],
) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, WebConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let group: &'static dyn SupportedKxGroup = match name.value.as_str() {
            "X25519" => ring::kx_group::X25519,
            "CurveP256" => ring::kx_group::SECP256R1,
            "CurveP384" => ring::kx_group::SECP384R1,
            "CurveP521" => {
                return Err(reader.error(
                    name.referenced,
                    "curve CurveP521 is not supported: rustls (ring) implements X25519, CurveP256 and CurveP384",
                ))
            }
            other => {
                return Err(reader.error(
                    name.referenced,
                    format!("unknown curve {other:?}: expected X25519, CurveP256 or CurveP384"),
                ))
            }
        };
        if !chosen.iter().any(|g| g.name() == group.name()) {
            chosen.push(group);
        }
    }
    Ok(Some(chosen))
}

/// Builds the server's TLS configuration from the section; `None` when the
/// section configures no TLS at all (the toolkit's rule: TLS is on when any
/// of the certificate, key, client CA or client auth type is set).
pub(crate) fn build(
    reader: &mut Reader<'_>,
    section: &Spanned<TlsFile>,
    http2: bool,
) -> Result<Option<Arc<ServerConfig>>, WebConfigError> {
    let t = &section.value;
    let cert = source(reader, "cert", set(&t.cert), "cert_file", set(&t.cert_file))?;
    let key = source(reader, "key", set(&t.key), "key_file", set(&t.key_file))?;
    let ca = source(
        reader,
        "client_ca",
        set(&t.client_ca),
        "client_ca_file",
        set(&t.client_ca_file),
    )?;
    let auth_type = set(&t.client_auth_type);
    let enabled = cert.is_some() || key.is_some() || ca.is_some() || auth_type.is_some();
    if !enabled {
        let other = t.min_version.is_some()
            || t.max_version.is_some()
            || t.cipher_suites.as_ref().is_some_and(|c| !c.is_empty())
            || t.curve_preferences.as_ref().is_some_and(|c| !c.is_empty())
            || t.client_allowed_sans.is_some()
            || t.prefer_server_cipher_suites.is_some();
        if other {
            return Err(reader.error(
                section.referenced,
                "tls_server_config has TLS settings but no certificate: add cert_file and key_file (or cert and key)",
            ));
        }
        return Ok(None);
    }
    let Some(cert) = cert else {
        return Err(reader.error(
            section.referenced,
            "tls_server_config: missing one of cert or cert_file",
        ));
    };
    let Some(key) = key else {
        return Err(reader.error(
            section.referenced,
            "tls_server_config: missing one of key or key_file",
        ));
    };

    let client_auth = client_auth(reader, auth_type)?;
    let min = match &t.min_version {
        Some(v) => version(reader, "min_version", v)?,
        None => 12,
    };
    let max = match &t.max_version {
        Some(v) => version(reader, "max_version", v)?,
        None => 13,
    };
    if min > max {
        let at = t
            .min_version
            .as_ref()
            .map_or(section.referenced, |v| v.referenced);
        return Err(reader.error(
            at,
            format!("min_version TLS{min} is above max_version TLS{max}"),
        ));
    }
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }

    let mut provider = ring::default_provider();
    if let Some(suites) = cipher_suites(reader, t.cipher_suites.as_deref().unwrap_or_default())? {
        if suites.is_empty() && min <= 12 {
            let at = t
                .cipher_suites
                .as_ref()
                .and_then(|c| c.first())
                .map_or(section.referenced, |c| c.referenced);
            return Err(reader.error(
                at,
                "cipher_suites names no TLS 1.2 suite, so no TLS 1.2 client could connect: add one, or set min_version: TLS13",
            ));
        }
        provider
            .cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        provider.cipher_suites.extend(suites);
    }
    if let Some(groups) = curves(reader, t.curve_preferences.as_deref().unwrap_or_default())? {
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    // The certificate and its key.
    let (cert_pem, cert_label) = read_pem(reader, &cert, "cert_file", "cert")?;
    let chain = certificates(reader, &cert_pem, &cert_label, cert.at())?;
    let (key_pem, key_label) = read_pem(reader, &key, "key_file", "key")?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key found (expected a PEM block `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)".to_string(),
            other => format!("not a PEM private key: {other}"),
        };
        reader.error(key.at(), format!("{key_label}: {why}"))
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(private_key.clone_key())
        .map_err(|e| {
            reader.error(
                key.at(),
                format!("{key_label}: unsupported private key: {e}"),
            )
        })?;
    let algorithm = signing_key.algorithm();
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(reader.error(
                key.at(),
                format!("{key_label}: the key does not match the certificate in {cert_label}"),
            ))
        }
        Err(e) => {
            return Err(reader.error(
                cert.at(),
                format!("{cert_label}: not a usable X.509 certificate: {e}"),
            ))
        }
    }
    if min <= 12
        && t.cipher_suites.as_ref().is_some_and(|c| !c.is_empty())
        && !provider.cipher_suites.iter().any(|s| {
            matches!(s, SupportedCipherSuite::Tls12(_))
                && s.usable_for_signature_algorithm(algorithm)
        })
    {
        return Err(reader.error(
            t.cipher_suites.as_ref().and_then(|c| c.first()).map_or(section.referenced, |c| c.referenced),
            format!(
                "cipher_suites has no TLS 1.2 suite for the certificate's {algorithm:?} key ({cert_label}): TLS 1.2 clients could not connect"
            ),
        ));
    }

    // Client certificates.
    let roots = match &ca {
        None => None,
        Some(ca) => {
            let (pem, label) = read_pem(reader, ca, "client_ca_file", "client_ca")?;
            let mut roots = RootCertStore::empty();
            for (i, der) in certificates(reader, &pem, &label, ca.at())?
                .into_iter()
                .enumerate()
            {
                roots.add(der).map_err(|e| {
                    reader.error(
                        ca.at(),
                        format!(
                            "{label}: certificate {} is not a usable CA certificate: {e}",
                            i + 1
                        ),
                    )
                })?;
            }
            Some(roots)
        }
    };
    let at_auth = auth_type.map_or(section.referenced, |a| a.referenced);
    if roots.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(reader.error(
            ca.as_ref().map_or(at_auth, Source::at),
            "a client CA is configured but client_auth_type is NoClientCert (the default): set client_auth_type: RequireAndVerifyClientCert to check client certificates",
        ));
    }
    let allowed_sans = t
        .client_allowed_sans
        .as_ref()
        .map(|s| (s.value.clone(), s.referenced));
    if let Some((_, at)) = &allowed_sans {
        if !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        ) {
            return Err(reader.error(
                *at,
                "client_allowed_sans requires client_auth_type to be one of RequireAnyClientCert or RequireAndVerifyClientCert",
            ));
        }
    }
    let allowed_sans = allowed_sans.map(|(s, _)| s);
    let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: client_auth == ClientAuth::RequireAnyClientCert,
                hints: roots
                    .as_ref()
                    .map(RootCertStore::subjects)
                    .unwrap_or_default(),
                algorithms: provider.signature_verification_algorithms,
                allowed_sans,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(roots) = roots else {
                return Err(reader.error(
                    at_auth,
                    format!(
                        "client_auth_type {client_auth:?} needs client_ca_file (or client_ca): the CA certificates client certificates are checked against"
                    ),
                ));
            };
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            let verified = builder.build().map_err(|e| {
                reader.error(at_auth, format!("cannot check client certificates: {e}"))
            })?;
            match allowed_sans {
                Some(allowed) => Arc::new(AllowedSans {
                    inner: verified,
                    allowed,
                }),
                None => verified,
            }
        }
    };

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            reader.error(
                section.referenced,
                format!("TLS settings rustls refuses: {e}"),
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|e| reader.error(cert.at(), format!("{cert_label}: {e}")))?;
    // The toolkit's default too: the order of cipher_suites wins (the key
    // exchange group follows the client's order whatever this says).
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(Arc::new(config)))
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is
/// asked for (and required by the second) but not checked against any CA, as
/// in Go; the client must still prove it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
    allowed_sans: Option<Vec<String>>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(allowed) = &self.allowed_sans {
            check_sans(end_entity, allowed)?;
        }
        Ok(ClientCertVerified::assertion())
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

/// A CA-checking verifier that also wants one of `client_allowed_sans` in
/// the client certificate.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_sans(end_entity, &self.allowed)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Ok when one of the certificate's subject alternative names (DNS, e-mail,
/// IP address or URI, written as Go writes them) is exactly one of `allowed`.
fn check_sans(cert: &CertificateDer<'_>, allowed: &[String]) -> Result<(), rustls::Error> {
    let found = subject_alt_names(cert.as_ref()).unwrap_or_default();
    if found.iter().any(|san| allowed.contains(san)) {
        return Ok(());
    }
    tracing::debug!(
        ?found,
        "client certificate refused: none of its SANs is in client_allowed_sans"
    );
    Err(rustls::Error::InvalidCertificate(
        rustls::CertificateError::ApplicationVerificationFailure,
    ))
}

/// One DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a DER sequence's contents.
fn elements(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, value, rest) = der(contents)?;
        out.push((tag, value));
        contents = rest;
    }
    Some(out)
}

/// The subject alternative names of a DER certificate: DNS names, e-mail
/// addresses, IP addresses and URIs.
fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    let (tag, certificate, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let extensions = elements(tbs)?
        .into_iter()
        .find(|(tag, _)| *tag == EXTENSIONS)
        .map(|(_, v)| v)?;
    let (_, extensions, _) = der(extensions)?;
    let mut names = Vec::new();
    for (_, extension) in elements(extensions)? {
        let parts = elements(extension)?;
        let Some((0x06, oid)) = parts.first().copied() else {
            continue;
        };
        if oid != SAN_OID {
            continue;
        }
        let Some((0x04, value)) = parts.last().copied() else {
            return None;
        };
        let (_, general_names, _) = der(value)?;
        for (tag, name) in elements(general_names)? {
            match tag {
                // rfc822Name, dNSName, uniformResourceIdentifier
                0x81 | 0x82 | 0x86 => names.push(String::from_utf8_lossy(name).into_owned()),
                // iPAddress
                0x87 => match name.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::new(name[0], name[1], name[2], name[3]).to_string(),
                    ),
                    16 => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(name);
                        let ip = std::net::Ipv6Addr::from(octets);
                        names.push(match ip.to_ipv4_mapped() {
                            Some(v4) => v4.to_string(),
                            None => ip.to_string(),
                        });
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else {
            vec![0x82, (n >> 8) as u8, n as u8]
        }
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(len(content.len()));
        out.extend_from_slice(content);
        out
    }

    /// A certificate skeleton holding only what the SAN reader looks at.
    fn cert_with_sans(names: &[(u8, &[u8])]) -> Vec<u8> {
        let general: Vec<u8> = names.iter().flat_map(|(t, v)| tlv(*t, v)).collect();
        let san = [
            tlv(0x06, &[0x55, 0x1d, 0x11]),
            tlv(0x04, &tlv(0x30, &general)),
        ]
        .concat();
        let basic = [tlv(0x06, &[0x55, 0x1d, 0x13]), tlv(0x04, &tlv(0x30, &[]))].concat();
        let extensions = tlv(
            0xa3,
            &tlv(0x30, &[tlv(0x30, &basic), tlv(0x30, &san)].concat()),
        );
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(0x30, &[]),
            tlv(0x30, &[]),
            tlv(0x30, &[]),
            tlv(0x30, &[]),
            tlv(0x30, &[0u8; 200]),
            extensions,
        ]
        .concat();
        tlv(
            0x30,
            &[tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn reads_every_kind_of_san() {
        let cert = cert_with_sans(&[
            (0x82, b"scraper.example"),
            (0x81, b"ops@example.org"),
            (0x87, &[127, 0, 0, 1]),
            (0x87, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            (0x86, b"spiffe://cluster/prometheus"),
            (0xa4, b"ignored directory name"),
        ]);
        assert_eq!(
            subject_alt_names(&cert).unwrap(),
            [
                "scraper.example",
                "ops@example.org",
                "127.0.0.1",
                "::1",
                "spiffe://cluster/prometheus"
            ]
        );
        let der = CertificateDer::from(cert);
        assert!(check_sans(&der, &["::1".to_string()]).is_ok());
        assert!(check_sans(&der, &["other.example".to_string()]).is_err());
    }

    #[test]
    fn garbage_has_no_sans() {
        assert_eq!(subject_alt_names(&[0x30, 0x05, 1]), None);
        assert!(check_sans(&CertificateDer::from(vec![1, 2, 3]), &["x".into()]).is_err());
    }
}
