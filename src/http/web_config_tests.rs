//! The web config read from real files: schema errors at their line and
//! column, TLS settings accepted or refused by name, certificates and keys
//! made by the `openssl` command line, and reloading.

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
        for (name, key) in [
            ("server", &ec[..]),
            ("rsa", &["-newkey", "rsa:2048", "-nodes"][..]),
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
    error_at(
        pki.parse("rate_limit:\n  interval: 1s\n"),
        2,
        "burst must be at least 1",
    );
    error_at(
        pki.parse("tls_server_config:\n  min_version: TLS13\n"),
        2,
        "TLS settings but no certificate",
    );
    let e = pki.parse("").map(|_| ());
    assert!(e.is_ok());
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
}

#[test]
fn tls_settings_build() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    let s = pki.parse(&pki.tls("")).unwrap();
    let tls = s.tls.unwrap();
    assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(tls.ignore_client_order);
    let s = pki
        .parse(&format!(
            "{}http_server_config:\n  http2: false\n",
            pki.tls("  min_version: TLS13\n  prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP256]\n")
        ))
        .unwrap();
    let tls = s.tls.unwrap();
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(!tls.ignore_client_order);
    // Every client_auth_type with what it needs.
    for auth in [
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "RequireClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] {
        let ca = if auth == "NoClientCert" {
            ""
        } else {
            "  client_ca_file: ca.crt\n"
        };
        let text = pki.tls(&format!("  client_auth_type: {auth}\n{ca}"));
        assert!(
            pki.parse(&text).is_ok(),
            "{auth}: {:?}",
            pki.parse(&text).err()
        );
    }
    // Inline PEM, as the toolkit allows.
    let cert = std::fs::read_to_string(pki.path("server.crt")).unwrap();
    let key = std::fs::read_to_string(pki.path("server.key")).unwrap();
    let inline = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let text = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        inline(&cert),
        inline(&key)
    );
    assert!(pki.parse(&text).is_ok(), "{:?}", pki.parse(&text).err());
    // TLS 1.2 suites by their Go names; the TLS 1.3 names have no effect, as in Go.
    let text = pki.tls("  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n    - TLS_AES_128_GCM_SHA256\n");
    let tls = pki.parse(&text).unwrap().tls.unwrap();
    let tls12: Vec<_> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    assert_eq!(
        tls12,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );
}

#[test]
fn what_rustls_cannot_do_is_refused_by_name() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new();
    error_at(
        pki.parse(&pki.tls("  min_version: TLS10\n")),
        4,
        "TLS10 is not supported: rustls implements only TLS12 and TLS13",
    );
    error_at(
        pki.parse(&pki.tls("  max_version: TLS11\n")),
        4,
        "max_version: TLS11 is not supported",
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
        pki.parse(&pki.tls("  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n")),
        6,
        "cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported: rustls implements only these TLS 1.2 suites",
    );
    error_at(
        pki.parse(&pki.tls("  cipher_suites: [TLS_MADE_UP]\n")),
        4,
        "unknown cipher suite \"TLS_MADE_UP\"",
    );
    error_at(
        pki.parse(&pki.tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")),
        4,
        "names no TLS 1.2 suite",
    );
    assert!(pki
        .parse(&pki.tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  min_version: TLS13\n"))
        .is_ok());
    // An ECDSA certificate cannot use the ECDHE_RSA suites.
    error_at(
        pki.parse(&pki.tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n")),
        4,
        "no TLS 1.2 suite for the certificate's ECDSA key",
    );
    error_at(
        pki.parse(&pki.tls("  curve_preferences: [X25519, CurveP521]\n")),
        4,
        "curve CurveP521 is not supported",
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
    error_at(
        pki.parse(
            "tls_server_config:\n  cert: x\n  cert_file: server.crt\n  key_file: server.key\n",
        ),
        2,
        "set either cert or cert_file, not both",
    );
    // The RSA certificate with its own key is fine, and with ECDSA suites only it is not.
    assert!(pki
        .parse("tls_server_config:\n  cert_file: rsa.crt\n  key_file: rsa.key\n")
        .is_ok());
    error_at(
        pki.parse("tls_server_config:\n  cert_file: rsa.crt\n  key_file: rsa.key\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
        4,
        "RSA key",
    );
}

#[test]
fn client_auth_needs_what_it_checks_against() {
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
        pki.parse(&pki.tls("  client_auth_type: RequireAndVerifyClientCert\n")),
        4,
        "needs client_ca_file",
    );
    error_at(
        pki.parse(&pki.tls("  client_auth_type: Sometimes\n")),
        4,
        "invalid client_auth_type \"Sometimes\"",
    );
    error_at(
        pki.parse(&pki.tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [prometheus]\n")),
        6,
        "client_allowed_sans requires client_auth_type",
    );
    error_at(
        pki.parse(
            &pki.tls(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n",
            ),
        ),
        5,
        "no certificate found",
    );
    assert!(pki
        .parse(&pki.tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [prometheus.example]\n"))
        .is_ok());
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
    std::fs::write(&path, format!("{}  min_version: TLS10\n", pki.tls(""))).unwrap();
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
