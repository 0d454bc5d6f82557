//! `tls_server_config`: the toolkit's TLS settings turned into a rustls
//! [`ServerConfig`] that serves what Go's `crypto/tls` would serve with them.
//! What rustls cannot do (TLS 1.0 and 1.1, CBC and RSA key exchange suites)
//! is dropped with a warning naming it; a config is refused only when no
//! client at all could connect with what is left, or when the toolkit
//! refuses it too.
//!
//! [`pem`] reads the files as Go does, [`provider`] names suites and curves
//! as Go does, [`verify`] checks client certificates as Go does (against
//! the system's CAs of [`roots`] when no client CA is set), [`names`] gives
//! their SANs as Go writes them, and [`refusals`] logs the ones refused.

mod names;
mod pem;
mod provider;
mod refusals;
mod roots;
mod verify;

pub(crate) use refusals::{during_handshake, handshake_failed};

/// The subject alternative names of a DER certificate as
/// `client_allowed_sans` is compared with them (Go's forms), or why the
/// certificate would be refused. Public for the fuzz tests.
pub fn client_sans(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("cannot be parsed: {e}"))?;
    names::go_sans(&cert)
}

/// The verifier's verdict on a client's chain (`chain[0]` the client's
/// certificate, the rest intermediates) at `now` (seconds since the epoch):
/// with `ca_pem`, as `RequireAndVerifyClientCert` with that `client_ca`,
/// without, as `RequireAnyClientCert`; `allowed` as `client_allowed_sans`.
/// Public for the fuzz tests.
pub fn verify_client_chain(
    ca_pem: Option<&[u8]>,
    allowed: Option<&[String]>,
    chain: &[Vec<u8>],
    now: u64,
) -> Result<(), String> {
    use rustls::server::danger::ClientCertVerifier as _;
    let trust = ca_pem.map(|pem| {
        let (certificates, _) = pem::client_cas(pem);
        let anchors = certificates
            .iter()
            .filter_map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect();
        verify::Trust {
            anchors,
            certificates,
        }
    });
    let checks = verify::ClientCerts {
        policy: if trust.is_some() {
            "RequireAndVerifyClientCert"
        } else {
            "RequireAnyClientCert"
        },
        required: true,
        trust,
        allowed_sans: allowed.map(<[String]>::to_vec),
        hints: Vec::new(),
        algorithms: provider::provider().signature_verification_algorithms,
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err("no certificate".into());
    };
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    checks
        .verify_client_cert(
            &CertificateDer::from(leaf.as_slice()),
            &intermediates,
            rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

use super::web_config::{Reader, WebConfigError};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{ServerConfig, SignatureAlgorithm, SupportedCipherSuite, SupportedProtocolVersion};
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

/// A string option as Go sees it: set when not empty.
fn set(value: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
    value.as_ref().filter(|s| !s.value.is_empty())
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

    /// The PEM text, and how to name it in messages (`cert_file /etc/x.pem`,
    /// `the inline cert`).
    fn read(
        &self,
        reader: &mut Reader<'_>,
        file_key: &str,
        inline_key: &str,
    ) -> Result<(Vec<u8>, String), WebConfigError> {
        match self {
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
}

/// The source of one PEM: its `_file` key wins over its inline key, as in
/// the toolkit (the inline value is then ignored, with a warning).
fn source(
    reader: &mut Reader<'_>,
    file_key: &str,
    file: Option<&Spanned<String>>,
    inline_key: &str,
    inline: Option<&Spanned<String>>,
) -> Option<Source> {
    match (file, inline) {
        (Some(f), inline) => {
            if let Some(i) = inline {
                reader.warn(
                    i.referenced,
                    format!("{inline_key} is ignored: {file_key} is set too and wins, as in the exporter toolkit"),
                );
            }
            Some(Source::File {
                path: reader.resolve(&f.value),
                at: f.referenced,
            })
        }
        (None, Some(i)) => Some(Source::Inline {
            text: i.value.clone(),
            at: i.referenced,
        }),
        (None, None) => None,
    }
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

impl ClientAuth {
    fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }
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

/// A TLS version name, as its minor number (10 to 13).
fn version(reader: &Reader<'_>, key: &str, value: &Spanned<String>) -> Result<u8, WebConfigError> {
    match value.value.as_str() {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(reader.error(
            value.referenced,
            format!("{key}: unknown TLS version {other:?}: expected TLS10, TLS11, TLS12 or TLS13"),
        )),
    }
}

/// Which of TLS 1.2 and 1.3 are served.
#[derive(Debug, Clone, Copy)]
struct Versions {
    tls12: bool,
    tls13: bool,
}

/// `min_version` and `max_version` (defaults TLS12 and TLS13, as in the toolkit).
fn versions(
    reader: &mut Reader<'_>,
    t: &TlsFile,
    at: Location,
) -> Result<Versions, WebConfigError> {
    let min = match &t.min_version {
        Some(v) => version(reader, "min_version", v)?,
        None => 12,
    };
    let max = match &t.max_version {
        Some(v) => version(reader, "max_version", v)?,
        None => 13,
    };
    let min_at = t.min_version.as_ref().map_or(at, |v| v.referenced);
    let max_at = t.max_version.as_ref().map_or(at, |v| v.referenced);
    if min > max {
        return Err(reader.error(
            min_at,
            format!("min_version TLS{min} is above max_version TLS{max}: no client could connect"),
        ));
    }
    if max < 12 {
        return Err(reader.error(
            max_at,
            format!(
                "max_version TLS{max}: rustls implements only TLS 1.2 and 1.3 (TLS 1.0 and 1.1 are deprecated, RFC 8996), so no version is left to serve"
            ),
        ));
    }
    if min < 12 {
        reader.warn(
            min_at,
            format!("min_version TLS{min}: TLS 1.0 and 1.1 clients cannot connect (rustls implements neither; RFC 8996 deprecates them); serving TLS 1.2 and up"),
        );
    }
    Ok(Versions {
        tls12: true,
        tls13: max >= 13,
    })
}

/// `cipher_suites`: the TLS 1.2 suites chosen, in order; `None` when the
/// list is absent or empty (Go's defaults, less what rustls lacks).
fn cipher_suites(
    reader: &mut Reader<'_>,
    names: &[Spanned<String>],
) -> Result<Option<Vec<SupportedCipherSuite>>, WebConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        match provider::suite(&name.value) {
            Ok(provider::Suite::Usable(suite)) => {
                if !chosen.iter().any(|s| s.suite() == suite.suite()) {
                    chosen.push(suite);
                }
            }
            Ok(provider::Suite::Tls13) => {} // No effect, as in Go.
            Ok(provider::Suite::Missing(what)) => reader.warn(
                name.referenced,
                format!(
                    "cipher suite {} is dropped: rustls does not implement {what}",
                    name.value
                ),
            ),
            Err(message) => return Err(reader.error(name.referenced, message)),
        }
    }
    Ok(Some(chosen))
}

/// `curve_preferences`: the key exchange groups allowed, in order; `None`
/// for the defaults.
fn curves(
    reader: &Reader<'_>,
    names: &[Spanned<String>],
) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, WebConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let group = provider::group(&name.value).map_err(|m| reader.error(name.referenced, m))?;
        if !chosen.iter().any(|g| g.name() == group.name()) {
            chosen.push(group);
        }
    }
    Ok(Some(chosen))
}

/// A certificate chain, its private key, the key loaded for signing, and
/// how to name the certificate in messages.
struct Loaded {
    chain: Vec<CertificateDer<'static>>,
    private_key: PrivateKeyDer<'static>,
    signing_key: Arc<dyn SigningKey>,
    cert_label: String,
}

/// The certificate chain and a signing key for it, read as Go's
/// `tls.X509KeyPair` reads them.
fn certified_key(
    reader: &mut Reader<'_>,
    provider: &CryptoProvider,
    cert: &Source,
    key: &Source,
) -> Result<Loaded, WebConfigError> {
    let (cert_pem, cert_label) = cert.read(reader, "cert_file", "cert")?;
    let chain =
        pem::chain(&cert_pem).map_err(|e| reader.error(cert.at(), format!("{cert_label}: {e}")))?;
    let (key_pem, key_label) = key.read(reader, "key_file", "key")?;
    let candidates = pem::key_candidates(&key_pem)
        .map_err(|e| reader.error(key.at(), format!("{key_label}: {e}")))?;
    let mut last_error = None;
    let mut loaded = None;
    for candidate in candidates {
        match provider
            .key_provider
            .load_private_key(candidate.clone_key())
        {
            Ok(signing) => {
                loaded = Some((candidate, signing));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some((private_key, signing_key)) = loaded else {
        return Err(reader.error(
            key.at(),
            format!(
                "{key_label}: unsupported private key ({}): RSA keys of 2048 to 8192 bits, ECDSA P-256, P-384 and P-521 and Ed25519 keys are supported",
                last_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        ));
    };
    let certified = CertifiedKey::new(chain.clone(), signing_key.clone());
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
    Ok(Loaded {
        chain,
        private_key,
        signing_key,
        cert_label,
    })
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
    let auth_type = set(&t.client_auth_type);
    let enabled = [
        &t.cert,
        &t.cert_file,
        &t.key,
        &t.key_file,
        &t.client_ca,
        &t.client_ca_file,
    ]
    .iter()
    .any(|v| set(v).is_some())
        || auth_type.is_some();
    if !enabled {
        let other = t.min_version.is_some()
            || t.max_version.is_some()
            || t.cipher_suites.as_ref().is_some_and(|c| !c.is_empty())
            || t.curve_preferences.as_ref().is_some_and(|c| !c.is_empty())
            || t.client_allowed_sans.is_some()
            || t.prefer_server_cipher_suites.is_some();
        if other {
            reader.warn(
                section.referenced,
                "tls_server_config has TLS settings but no certificate: serving plain HTTP, as the exporter toolkit does (add cert_file and key_file for TLS)",
            );
        }
        return Ok(None);
    }
    let cert = source(reader, "cert_file", set(&t.cert_file), "cert", set(&t.cert));
    let key = source(reader, "key_file", set(&t.key_file), "key", set(&t.key));
    let ca = source(
        reader,
        "client_ca_file",
        set(&t.client_ca_file),
        "client_ca",
        set(&t.client_ca),
    );
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
    let mut versions = versions(reader, t, section.referenced)?;

    let mut provider = provider::provider();
    let suites_at = t
        .cipher_suites
        .as_ref()
        .and_then(|c| c.first())
        .map_or(section.referenced, |c| c.referenced);
    let chosen = cipher_suites(reader, t.cipher_suites.as_deref().unwrap_or_default())?;
    if let Some(suites) = &chosen {
        provider
            .cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        provider.cipher_suites.extend(suites.iter().copied());
    }
    if let Some(groups) = curves(reader, t.curve_preferences.as_deref().unwrap_or_default())? {
        provider.kx_groups = groups;
    }
    let provider = provider;

    let Loaded {
        chain,
        private_key,
        signing_key,
        cert_label,
    } = certified_key(reader, &provider, &cert, &key)?;
    let algorithm = signing_key.algorithm();
    if chosen.is_some() {
        tls12_suites_for_key(
            reader,
            &provider,
            &mut versions,
            algorithm,
            &cert_label,
            suites_at,
        )?;
    }
    let provider = Arc::new(provider);

    let verifier = client_verifier(reader, t, section, &provider, client_auth, ca.as_ref())?;

    let mut protocol_versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if versions.tls13 {
        protocol_versions.push(&rustls::version::TLS13);
    }
    if versions.tls12 {
        protocol_versions.push(&rustls::version::TLS12);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocol_versions)
        .map_err(|e| {
            reader.error(
                section.referenced,
                format!("TLS settings rustls refuses: {e}"),
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|e| reader.error(cert.at(), format!("{cert_label}: {e}")))?;
    // The toolkit's documented default: the order of cipher_suites wins (Go
    // itself ignores this since 1.17; see the README).
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(Arc::new(config)))
}

/// With `cipher_suites` set, TLS 1.2 needs one of them usable with the
/// certificate's key: without one, TLS 1.2 is off (with a warning) when TLS
/// 1.3 is served, and the config is refused when it is not (as in Go, whose
/// TLS 1.2 handshakes would all fail).
fn tls12_suites_for_key(
    reader: &mut Reader<'_>,
    provider: &CryptoProvider,
    versions: &mut Versions,
    algorithm: SignatureAlgorithm,
    cert_label: &str,
    at: Location,
) -> Result<(), WebConfigError> {
    let usable = provider.cipher_suites.iter().any(|s| {
        matches!(s, SupportedCipherSuite::Tls12(_)) && s.usable_for_signature_algorithm(algorithm)
    });
    if usable {
        return Ok(());
    }
    let why = format!(
        "cipher_suites leaves TLS 1.2 no suite that rustls implements for the certificate's {algorithm:?} key ({cert_label})"
    );
    if !versions.tls13 {
        return Err(reader.error(
            at,
            format!("{why}, and max_version excludes TLS 1.3: no client could connect"),
        ));
    }
    reader.warn(
        at,
        format!("{why}: TLS 1.2 clients cannot connect; serving TLS 1.3 only"),
    );
    versions.tls12 = false;
    Ok(())
}

/// The client certificate verifier of `client_auth_type`, `client_ca_file`
/// and `client_allowed_sans`.
fn client_verifier(
    reader: &mut Reader<'_>,
    t: &TlsFile,
    section: &Spanned<TlsFile>,
    provider: &CryptoProvider,
    client_auth: ClientAuth,
    ca: Option<&Source>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    let at_auth = set(&t.client_auth_type).map_or(section.referenced, |a| a.referenced);
    let cas = match ca {
        None => None,
        Some(ca) => {
            let (pem, label) = ca.read(reader, "client_ca_file", "client_ca")?;
            let (cas, skipped) = pem::client_cas(&pem);
            for what in skipped {
                reader.warn(ca.at(), format!("{label}: skipped {what}, as Go skips it"));
            }
            Some((cas, label, ca.at()))
        }
    };
    if cas.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(reader.error(
            ca.map_or(at_auth, Source::at),
            "a client CA is configured but client_auth_type is NoClientCert (the default): set client_auth_type: RequireAndVerifyClientCert to check client certificates (the exporter toolkit refuses this too)",
        ));
    }
    let allowed_sans = t.client_allowed_sans.as_ref();
    if client_auth == ClientAuth::NoClientCert {
        if let Some(sans) = allowed_sans {
            reader.warn(
                sans.referenced,
                "client_allowed_sans has no effect with client_auth_type NoClientCert: no client certificate is asked for (as in the exporter toolkit)",
            );
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    if let Some(sans) = allowed_sans {
        if sans.value.is_empty() {
            return Err(reader.error(
                sans.referenced,
                "client_allowed_sans is empty: no client certificate could match, so no client could connect (remove the key, or list the SANs allowed)",
            ));
        }
        if matches!(
            client_auth,
            ClientAuth::RequestClientCert | ClientAuth::VerifyClientCertIfGiven
        ) {
            reader.warn(
                sans.referenced,
                format!("client_allowed_sans with {}: a client without a certificate cannot connect, as with the exporter toolkit (its SAN check fails a handshake without one)", client_auth.name()),
            );
        }
    }
    let verifying = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    let trust = if verifying {
        Some(trust(reader, cas.as_ref(), client_auth, at_auth)?)
    } else {
        None
    };
    let required = matches!(
        client_auth,
        ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
    ) || allowed_sans.is_some();
    if required
        && verifying
        && trust
            .as_ref()
            .is_some_and(|t| t.anchors.is_empty() && t.certificates.is_empty())
    {
        return Err(reader.error(
            cas.as_ref().map_or(at_auth, |(_, _, at)| *at),
            format!(
                "{}: no usable CA certificate, so no client certificate can be verified and no client could connect",
                cas.as_ref().map_or("client_ca_file", |(_, label, _)| label.as_str())
            ),
        ));
    }
    let hints = cas
        .as_ref()
        .map(|(cas, _, _)| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(cas.iter().cloned());
            roots.subjects()
        })
        .unwrap_or_default();
    Ok(Arc::new(verify::ClientCerts {
        policy: client_auth.name(),
        required,
        trust,
        allowed_sans: allowed_sans.map(|s| s.value.clone()),
        hints,
        algorithms: provider.signature_verification_algorithms,
    }))
}

/// The CAs client certificates are verified against: those configured, or
/// without any, the system's (Go verifies against the system roots when
/// `ClientCAs` is unset).
fn trust(
    reader: &mut Reader<'_>,
    cas: Option<&(Vec<CertificateDer<'static>>, String, Location)>,
    client_auth: ClientAuth,
    at: Location,
) -> Result<verify::Trust, WebConfigError> {
    let certificates = match cas {
        Some((cas, _, _)) => cas.clone(),
        None => {
            let (cas, label) = roots::system_roots(reader);
            reader.warn(
                at,
                format!(
                    "client_auth_type {} without client_ca_file: client certificates are verified against the system's CAs ({label}: {} certificates), as Go does",
                    client_auth.name(),
                    cas.len()
                ),
            );
            cas
        }
    };
    let anchors = certificates
        .iter()
        .filter_map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .ok()
                .map(|a| a.to_owned())
        })
        .collect();
    Ok(verify::Trust {
        anchors,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_spellings_of_versions() {
        let path = std::path::Path::new("web.yml");
        let reader = Reader {
            path,
            files: Vec::new(),
            warnings: Vec::new(),
        };
        let v = |s: &str| {
            version(
                &reader,
                "min_version",
                &Spanned {
                    value: s.to_string(),
                    referenced: Location::UNKNOWN,
                    defined: Location::UNKNOWN,
                },
            )
        };
        assert_eq!(v("TLS10").unwrap(), 10);
        assert_eq!(v("TLS13").unwrap(), 13);
        assert!(v("SSL3").is_err());
        assert!(v("tls12").is_err());
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod verify_tests;
