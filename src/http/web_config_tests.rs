//! The web config read from real files, field by field against the
//! exporter toolkit: what it accepts starts (with a warning at its line when
//! something is dropped or has no effect), what it refuses is an error at
//! its line and column; certificates and keys made by the `openssl` command
//! line; reloading.

use super::*;
use crate::http::reload::WebConfig;
use std::process::Command;

/// Certificates made with `openssl` in a temporary directory: a CA, a server
/// certificate (ECDSA P-256) it signed, an RSA one, and an unrelated key.
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=test CA",
                ],
            ]
            .concat(),
        );
        let p521 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:secp521r1",
            "-nodes",
        ];
        for (name, key) in [
            ("server", &ec[..]),
            ("rsa", &["-newkey", "rsa:2048", "-nodes"][..]),
            ("p521", &p521[..]),
        ] {
            openssl(
                d,
                &[
                    &["req"][..],
                    key,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                        "-subj",
                        "/CN=localhost",
                        "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    ],
                ]
                .concat(),
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-copy_extensions",
                    "copyall",
                    "-days",
                    "2",
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "other.key",
                    "-out",
                    "other.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=other",
                ],
            ]
            .concat(),
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes `text` as web.yml beside the certificates and reads it.
    fn parse(&self, text: &str) -> Result<WebSettings, WebConfigError> {
        let path = self.dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        load(&path, &Arc::new(AuthCache::new()))
            .map(|(s, _)| s)
            .map_err(|(e, _)| e)
    }

    /// A TLS section with the server certificate and `extra` lines.
    fn tls(&self, extra: &str) -> String {
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
    }
}

/// The error of `result`, checked to be at `line` and to contain `words`.
fn error_at(result: Result<WebSettings, WebConfigError>, line: u64, words: &str) -> WebConfigError {
    let e = result.expect_err("expected an error");
    assert_eq!(e.line, line, "{e}");
    assert!(e.to_string().contains(words), "{e:?} lacks {words:?}");
    assert!(
        e.to_string().contains("web.yml:"),
        "{e} does not name the file"
    );
    e
}

fn openssl_present() -> bool {
    let found = match Command::new("openssl").arg("version").output() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e}; scripts/setup.sh installs Debian's openssl")),
    };
    crate::testing::require("openssl", found)
}

#[test]
fn an_empty_file_is_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, "# nothing yet\n").unwrap();
    let (settings, files) = load(&path, &Arc::new(AuthCache::new())).unwrap();
    assert!(settings.tls.is_none() && settings.auth.is_none() && settings.headers.is_empty());
    assert_eq!(files.len(), 1);
}

/// The settings of `result`, checked to carry a warning at `line` that
/// contains `words`.
fn warning_at(result: Result<WebSettings, WebConfigError>, line: u64, words: &str) -> WebSettings {
    let settings = result.unwrap_or_else(|e| panic!("refused: {e}"));
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.line == line && w.to_string().contains(words)),
        "no warning at line {line} with {words:?}: {:?}",
        settings.warnings
    );
    settings
}

/// The TLS 1.2 suites of a built config, by name.
fn tls12_suites(settings: &WebSettings) -> Vec<String> {
    settings
        .tls
        .as_ref()
        .unwrap()
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| format!("{:?}", s.suite()))
        .collect()
}

#[test]
fn schema_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki { dir };
    let e = error_at(
        pki.parse("tls_server_config:\n  cert_fil: x\n"),
        2,
        "unknown field `cert_fil`",
    );
    assert_eq!(e.column, 3);
    error_at(pki.parse("metrics: {}\n"), 1, "unknown field `metrics`");
    error_at(
        pki.parse("http_server_config:\n  http2: maybe\n"),
        2,
        "`http2`",
    );
    error_at(
        pki.parse("basic_auth_users:\n  a: x\n  a: y\n"),
        3,
        "duplicate key `a`",
    );
    error_at(
        pki.parse("basic_auth_users:\n  prometheus: plaintext\n"),
        2,
        "the password of user \"prometheus\" is not a bcrypt hash",
    );
    error_at(
        pki.parse("http_server_config:\n  headers:\n    Server: x\n"),
        3,
        "HTTP header \"Server\" can not be configured",
    );
    error_at(
        pki.parse("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
        3,
        "expected one of deny, sameorigin",
    );
    error_at(
        pki.parse("rate_limit:\n  interval: 1d\n"),
        2,
        "\"1d\" is not a duration",
    );
    assert!(pki.parse("").is_ok());
}

#[test]
fn what_the_toolkit_accepts_outside_tls_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki { dir };
    // YAML 1.1 booleans, as yaml.v2 takes them.
    let s = pki.parse("http_server_config:\n  http2: no\n").unwrap();
    assert!(!s.http2 && s.warnings.is_empty());
    // A TLS setting without a certificate: plain HTTP, as in the toolkit.
    let s = warning_at(
        pki.parse("tls_server_config:\n  min_version: TLS13\n"),
        2,
        "serving plain HTTP",
    );
    assert!(s.tls.is_none());
    // Header values as Go writes them: a folded block becomes one line.
    let s = pki
        .parse("http_server_config:\n  headers:\n    Content-Security-Policy: >\n      default-src 'none';\n      img-src 'self'\n    X-XSS-Protection: 0\n    Strict-Transport-Security:\n")
        .unwrap();
    let headers: Vec<_> = s
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            "content-security-policy: default-src 'none'; img-src 'self'",
            "x-xss-protection: 0"
        ]
    );
    // rate_limit: burst 0 (or none) allows nothing, a negative interval
    // everything, a number is nanoseconds; all as in Go.
    let s = warning_at(
        pki.parse("rate_limit:\n  interval: 1s\n"),
        2,
        "burst 0 allows no request",
    );
    assert!(!s.rate_limit.unwrap().allow());
    let s = warning_at(
        pki.parse("rate_limit:\n  interval: 1s\n  burst: -3\n"),
        3,
        "burst -3 allows no request",
    );
    assert!(!s.rate_limit.unwrap().allow());
    let s = warning_at(
        pki.parse("rate_limit:\n  interval: -1s\n  burst: 1\n"),
        2,
        "a negative interval limits nothing",
    );
    assert!(s.rate_limit.is_none());
    let s = pki
        .parse("rate_limit:\n  interval: 1000000000\n  burst: 1\n")
        .unwrap();
    let limiter = s.rate_limit.unwrap();
    assert!(limiter.allow());
    assert!(!limiter.allow());
    assert!(pki
        .parse("rate_limit:\n  interval: 0\n  burst: 0\n")
        .unwrap()
        .rate_limit
        .is_none());
    // bcrypt hashes Go's bcrypt takes, $2$ and $2x$ included.
    let tail = "X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
    let s = pki
        .parse(&format!(
            "basic_auth_users:\n  a: $2$10${tail}\n  b: $2x$10${tail}\n"
        ))
        .unwrap();
    assert_eq!(s.auth.unwrap().users(), 2);
}

#[test]
fn headers_and_users_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki { dir };
    let hash = bcrypt::hash("pw", 4).unwrap();
    let settings = pki
        .parse(&format!(
            "http_server_config:\n  headers:\n    x-frame-options: deny\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\nbasic_auth_users:\n  prometheus: {hash}\nrate_limit:\n  interval: 100ms\n  burst: 3\n"
        ))
        .unwrap();
    let headers: Vec<_> = settings
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    // Names are taken case-insensitively; a blank value sets nothing.
    assert_eq!(
        headers,
        [
            "strict-transport-security: max-age=31536000",
            "x-frame-options: deny"
        ]
    );
    assert_eq!(settings.auth.as_ref().unwrap().users(), 1);
    assert!(settings.rate_limit.is_some());
    assert!(settings.tls.is_none());
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn tls_settings_build() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    let s = pki.parse(&pki.tls("")).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let tls = s.tls.unwrap();
    assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(tls.ignore_client_order);
    // Go's default groups, P-521 and the post-quantum hybrid included.
    let groups: Vec<_> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(
        groups,
        [
            "X25519MLKEM768",
            "X25519",
            "secp256r1",
            "secp384r1",
            "secp521r1"
        ]
    );
    let s = pki
        .parse(&format!(
            "{}http_server_config:\n  http2: false\n",
            pki.tls("  min_version: TLS13\n  prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP521]\n")
        ))
        .unwrap();
    let tls = s.tls.unwrap();
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(!tls.ignore_client_order);
    assert_eq!(tls.crypto_provider().kx_groups.len(), 2);
    // Every client_auth_type, with and without a CA: all start, as in Go.
    for auth in [
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "RequireClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] {
        let with_ca = pki.tls(&format!(
            "  client_auth_type: {auth}\n  client_ca_file: ca.crt\n"
        ));
        let without = pki.tls(&format!("  client_auth_type: {auth}\n"));
        if auth != "NoClientCert" {
            assert!(
                pki.parse(&with_ca).is_ok(),
                "{auth}: {:?}",
                pki.parse(&with_ca).err()
            );
        }
        assert!(
            pki.parse(&without).is_ok(),
            "{auth}: {:?}",
            pki.parse(&without).err()
        );
    }
    // Inline PEM, as the toolkit allows.
    let cert = std::fs::read_to_string(pki.path("server.crt")).unwrap();
    let key = std::fs::read_to_string(pki.path("server.key")).unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.crt")).unwrap();
    let inline = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let text = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{}",
        inline(&cert),
        inline(&key),
        inline(&ca)
    );
    let s = pki.parse(&text).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // TLS 1.2 suites by their Go names; the TLS 1.3 names have no effect, as in Go.
    let text = pki.tls("  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n    - TLS_AES_128_GCM_SHA256\n");
    assert_eq!(
        tls12_suites(&pki.parse(&text).unwrap()),
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );
    // A P-521 certificate and key (aws-lc-rs signs with them; ring could not).
    assert!(pki
        .parse("tls_server_config:\n  cert_file: p521.crt\n  key_file: p521.key\n")
        .is_ok());
}

#[test]
fn what_rustls_cannot_do_is_dropped_with_a_warning() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    let s = warning_at(
        pki.parse(&pki.tls("  min_version: TLS10\n")),
        4,
        "min_version TLS10: TLS 1.0 and 1.1 clients cannot connect",
    );
    let tls = s.tls.unwrap();
    assert!(handshakes(&tls, &rustls::version::TLS12));
    assert!(handshakes(&tls, &rustls::version::TLS13));
    // CBC suites are dropped; the rest serve.
    let s = warning_at(
        pki.parse(&pki.tls("  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n    - TLS_RSA_WITH_AES_128_GCM_SHA256\n")),
        6,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is dropped: rustls does not implement CBC mode",
    );
    assert!(s
        .warnings
        .iter()
        .any(|w| w.line == 7 && w.message.contains("RSA key exchange")));
    assert_eq!(
        tls12_suites(&s),
        ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
    );
    // Only CBC suites, or only TLS 1.3 names, or only suites for another key
    // type: TLS 1.2 is off and TLS 1.3 serves (Go's TLS 1.2 handshakes would fail).
    for suites in [
        "[TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]",
        "[TLS_AES_128_GCM_SHA256]",
        "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
    ] {
        let s = warning_at(
            pki.parse(&pki.tls(&format!("  cipher_suites: {suites}\n"))),
            4,
            "TLS 1.2 clients cannot connect; serving TLS 1.3 only",
        );
        let tls = s.tls.unwrap();
        assert!(!handshakes(&tls, &rustls::version::TLS12), "{suites}");
        assert!(handshakes(&tls, &rustls::version::TLS13), "{suites}");
    }
    // The RSA certificate with ECDSA suites only, the same.
    let s = warning_at(
        pki.parse("tls_server_config:\n  cert_file: rsa.crt\n  key_file: rsa.key\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
        4,
        "RSA key",
    );
    assert!(!handshakes(
        s.tls.as_ref().unwrap(),
        &rustls::version::TLS12
    ));
    // And the default suites serve TLS 1.2 to both key types.
    for cert in ["server", "rsa", "p521"] {
        let s = pki
            .parse(&format!(
                "tls_server_config:\n  cert_file: {cert}.crt\n  key_file: {cert}.key\n"
            ))
            .unwrap();
        assert!(
            handshakes(s.tls.as_ref().unwrap(), &rustls::version::TLS12),
            "{cert}"
        );
    }
}

/// Whether a client offering only `version` completes a handshake with
/// `tls`, in memory.
fn handshakes(
    tls: &rustls::ServerConfig,
    version: &'static rustls::SupportedProtocolVersion,
) -> bool {
    // A provider without a suite of this version: no handshake is possible.
    let Ok(client) = rustls::ClientConfig::builder_with_provider(tls.crypto_provider().clone())
        .with_protocol_versions(&[version])
    else {
        return false;
    };
    let client = client
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(
            tls.crypto_provider().signature_verification_algorithms,
        )))
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(tls.clone())).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        if server.read_tls(&mut &buf[..]).is_err() || server.process_new_packets().is_err() {
            return false;
        }
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        if client.read_tls(&mut &buf[..]).is_err() || client.process_new_packets().is_err() {
            return false;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return true;
        }
    }
    false
}

/// A server certificate verifier that takes any certificate (for handshakes
/// in memory, where the point is the protocol version).
#[derive(Debug)]
struct AcceptAnything(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[test]
fn what_the_toolkit_refuses_or_nothing_could_serve_is_an_error() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    error_at(
        pki.parse(&pki.tls("  min_version: TLS10\n  max_version: TLS11\n")),
        5,
        "max_version TLS11: rustls implements only TLS 1.2 and 1.3",
    );
    error_at(
        pki.parse(&pki.tls("  min_version: SSL3\n")),
        4,
        "unknown TLS version \"SSL3\"",
    );
    error_at(
        pki.parse(&pki.tls("  min_version: TLS13\n  max_version: TLS12\n")),
        4,
        "min_version TLS13 is above max_version TLS12",
    );
    error_at(
        pki.parse(&pki.tls("  cipher_suites: [TLS_MADE_UP]\n")),
        4,
        "unknown cipher suite \"TLS_MADE_UP\"",
    );
    error_at(
        pki.parse(&pki.tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_RC4_128_SHA]\n")),
        4,
        "one of Go's insecure suites, which the exporter toolkit refuses too",
    );
    error_at(
        pki.parse(&pki.tls(
            "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n",
        )),
        5,
        "no client could connect",
    );
    error_at(
        pki.parse(&pki.tls("  curve_preferences: [Curve25519]\n")),
        4,
        "unknown curve \"Curve25519\"",
    );
}

#[test]
fn certificate_and_key_problems_name_the_file() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    let missing = error_at(
        pki.parse("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n"),
        2,
        "cannot read it: No such file or directory",
    );
    assert!(
        missing.message.contains(&pki.path("nowhere.crt")),
        "{missing}"
    );
    let mismatch = error_at(
        pki.parse("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n"),
        3,
        "the key does not match the certificate in cert_file",
    );
    assert!(
        mismatch.message.contains(&pki.path("other.key")),
        "{mismatch}"
    );
    error_at(
        pki.parse("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n"),
        2,
        "no certificate found",
    );
    error_at(
        pki.parse("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n"),
        3,
        "no private key found",
    );
    error_at(
        pki.parse("tls_server_config:\n  key_file: server.key\n"),
        2,
        "missing one of cert or cert_file",
    );
    error_at(
        pki.parse("tls_server_config:\n  cert_file: server.crt\n"),
        2,
        "missing one of key or key_file",
    );
    // Both cert and cert_file: the file wins, as in the toolkit.
    warning_at(
        pki.parse(
            "tls_server_config:\n  cert: x\n  cert_file: server.crt\n  key_file: server.key\n",
        ),
        2,
        "cert is ignored: cert_file is set too and wins",
    );
    // A PKCS #8 key under an `EC PRIVATE KEY` label: Go tries every format.
    let key = std::fs::read_to_string(pki.path("server.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"), "{key}");
    std::fs::write(
        pki.path("relabelled.key"),
        key.replace(" PRIVATE KEY", " EC PRIVATE KEY"),
    )
    .unwrap();
    assert!(pki
        .parse("tls_server_config:\n  cert_file: server.crt\n  key_file: relabelled.key\n")
        .is_ok());
    assert!(pki
        .parse("tls_server_config:\n  cert_file: rsa.crt\n  key_file: rsa.key\n")
        .is_ok());
}

#[test]
fn client_auth_settings_as_in_the_toolkit() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    error_at(
        pki.parse(&pki.tls("  client_ca_file: ca.crt\n")),
        4,
        "client_auth_type is NoClientCert",
    );
    error_at(
        pki.parse(&pki.tls("  client_auth_type: Sometimes\n")),
        4,
        "invalid client_auth_type \"Sometimes\"",
    );
    // Without a CA, Go verifies against the system's CAs.
    warning_at(
        pki.parse(&pki.tls("  client_auth_type: VerifyClientCertIfGiven\n")),
        4,
        "verified against the system's CAs",
    );
    // client_allowed_sans: no effect without a certificate request; with
    // the types that do not require one, it makes one necessary.
    warning_at(
        pki.parse(&pki.tls("  client_allowed_sans: [prometheus]\n")),
        4,
        "no effect with client_auth_type NoClientCert",
    );
    warning_at(
        pki.parse(&pki.tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [prometheus]\n")),
        6,
        "a client without a certificate cannot connect",
    );
    error_at(
        pki.parse(
            &pki.tls("  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: []\n"),
        ),
        5,
        "client_allowed_sans is empty",
    );
    // A CA file without a certificate: Go's pool is empty; nobody could
    // connect when a verified certificate is required, so that is refused.
    warning_at(
        pki.parse(
            &pki.tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: server.key\n"),
        ),
        5,
        "skipped a PrivateKey block",
    );
    error_at(
        pki.parse(
            &pki.tls(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n",
            ),
        ),
        5,
        "no usable CA certificate",
    );
    let s = pki
        .parse(&pki.tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [prometheus.example]\n"))
        .unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn a_reload_takes_good_files_and_keeps_the_last_good_settings() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    let path = pki.dir.path().join("web.yml");
    std::fs::write(&path, pki.tls("")).unwrap();
    let web = WebConfig::load(&path).unwrap();
    assert!(!web.changed());
    assert!(!web.refresh(), "nothing changed");
    let first = web.current();

    // A bad file: the settings in force stay, and it is read once only.
    std::fs::write(&path, format!("{}  min_version: SSL3\n", pki.tls(""))).unwrap();
    assert!(web.changed());
    assert!(!web.refresh());
    assert!(Arc::ptr_eq(&first, &web.current()));
    assert!(
        !web.changed(),
        "a bad file that did not change again is not read again"
    );

    // Fixed: taken.
    std::fs::write(&path, pki.tls("  min_version: TLS13\n")).unwrap();
    assert!(web.refresh());
    assert!(!Arc::ptr_eq(&first, &web.current()));

    // The certificate replaced: noticed through its own stamp.
    let second = web.current();
    std::fs::copy(pki.path("rsa.crt"), pki.path("server.crt")).unwrap();
    std::fs::copy(pki.path("rsa.key"), pki.path("server.key")).unwrap();
    assert!(web.changed());
    assert!(web.refresh());
    assert!(!Arc::ptr_eq(&second, &web.current()));

    // Turning TLS off needs a restart.
    let third = web.current();
    std::fs::write(&path, "http_server_config:\n  http2: false\n").unwrap();
    assert!(!web.refresh());
    assert!(Arc::ptr_eq(&third, &web.current()));

    // Caught empty (truncated, not yet filled): kept, and read again once filled.
    std::fs::write(&path, "").unwrap();
    assert!(!web.refresh());
    assert!(Arc::ptr_eq(&third, &web.current()));
    std::fs::write(&path, pki.tls("  min_version: TLS12\n")).unwrap();
    assert!(web.changed());
    assert!(web.refresh());
    assert!(!Arc::ptr_eq(&third, &web.current()));
}
