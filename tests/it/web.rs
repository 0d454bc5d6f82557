//! The secured endpoint (`--web.config.file`, the exporter toolkit's format)
//! as real clients see it: certificates made by the `openssl` command line,
//! `curl` over TLS 1.2 and 1.3 with and without client certificates and
//! passwords, `openssl s_client` reading the certificate presented, slow
//! clients holding connections while scrapes go on, and Debian's Prometheus
//! scraping over TLS with basic auth.

use crate::common::{self, free_port, hits_config, require_bpf, wait_for, Target};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the `prometheus` user in the tests' web configs.
const PASSWORD: &str = "s3cret-scrape";

fn tool(name: &str) -> bool {
    // openssl answers `version`, curl `--version`.
    let runs = |arg: &str| {
        Command::new(name)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    common::require(
        name,
        common::found(
            runs("--version") || runs("version"),
            "scripts/setup.sh installs it",
        ),
    )
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test PKI made with `openssl`: a CA; server certificates it signed for
/// 127.0.0.1 and localhost (`server`, and `server2` for rotation); client
/// certificates it signed (`client`: SAN prometheus.example, `client2`: SAN
/// other.example); and a self-signed client certificate no CA vouches for
/// (`rogue`, SAN prometheus.example). ECDSA P-256 keys; and with P-521
/// keys, a CA `ca521` with a server certificate `server521` and a client
/// certificate `client521` (SAN prometheus.example) it signed.
struct Pki {
    dir: tempfile::TempDir,
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
        let req_x509 = |out: &str, subject: &str, san: Option<&str>| {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let key = format!("{out}.key");
            let crt = format!("{out}.crt");
            args.extend([
                "-keyout", &key, "-out", &crt, "-days", "2", "-subj", subject,
            ]);
            let san = san.map(|s| format!("subjectAltName={s}"));
            if let Some(san) = &san {
                args.extend(["-addext", san]);
            }
            run(d, "openssl", &args);
        };
        req_x509("ca", "/CN=eue test CA", None);
        req_x509("rogue", "/CN=rogue", Some("DNS:prometheus.example"));
        let p521 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:secp521r1",
            "-nodes",
        ];
        run(
            d,
            "openssl",
            &[
                &["req", "-x509"][..],
                &p521,
                &[
                    "-keyout",
                    "ca521.key",
                    "-out",
                    "ca521.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=eue P-521 CA",
                ],
            ]
            .concat(),
        );
        for (name, san, ca) in [
            ("server", "DNS:localhost,IP:127.0.0.1", "ca"),
            ("server2", "DNS:localhost,IP:127.0.0.1", "ca"),
            ("client", "DNS:prometheus.example", "ca"),
            ("client2", "DNS:other.example", "ca"),
            ("server521", "DNS:localhost,IP:127.0.0.1", "ca521"),
            ("client521", "DNS:prometheus.example", "ca521"),
        ] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            let san = format!("subjectAltName={san}");
            let mut args = vec!["req"];
            args.extend(if ca == "ca521" { p521 } else { ec });
            args.extend([
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
                "-addext",
                &san,
            ]);
            run(d, "openssl", &args);
            run(
                d,
                "openssl",
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
                    "2",
                    "-out",
                    &crt,
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `serial=...` of a certificate file.
    fn serial(&self, name: &str) -> String {
        run(
            self.dir.path(),
            "openssl",
            &["x509", "-noout", "-serial", "-in", &self.path(name)],
        )
        .trim()
        .to_string()
    }
}

/// A bcrypt hash of `password` (cost 4: the tests time nothing of bcrypt).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// What curl got: its exit code, the HTTP status (0 without a response), the
/// response head and body, and its stderr (with `-v`, the TLS details).
#[derive(Debug)]
struct Reply {
    exit: i32,
    status: u16,
    head: String,
    body: String,
    stderr: String,
}

impl Reply {
    /// A header's value (names compared case-insensitively).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn curl(args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = stdout
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or((stdout.clone(), String::new()));
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        exit: out.status.code().unwrap_or(-1),
        status,
        head,
        body,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The exporter binary started with a web config.
struct Secured {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// curl arguments that reach it (CA, client certificate, password).
    curl_args: Vec<String>,
    scheme: &'static str,
}

impl Secured {
    /// Starts the exporter on the hits config selecting `comm`, with `web`
    /// as its web config and `args`; waits until `/-/ready` answers 200 to
    /// curl with `curl_args`.
    fn start(comm: &str, web: &str, args: &[&str], curl_args: &[&str]) -> Secured {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), hits_config(comm)).unwrap();
        std::fs::write(dir.path().join("web.yml"), web).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("exporter.log")).unwrap();
        let child = Command::new(common::EXPORTER)
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-c")
            .arg(dir.path().join("config.yaml"))
            .arg("--web.config.file")
            .arg(dir.path().join("web.yml"))
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start exporter");
        let scheme = if web.contains("tls_server_config") {
            "https"
        } else {
            "http"
        };
        let mut exporter = Secured {
            child,
            port,
            dir,
            curl_args: curl_args.iter().map(|s| s.to_string()).collect(),
            scheme,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = exporter.child.try_wait().unwrap() {
                panic!("exporter exited early with {status}:\n{}", exporter.logs());
            }
            if exporter.get("/-/ready", &[]).status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "exporter not ready after 30 s:\n{}",
                exporter.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        exporter
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// curl GET `path` with the exporter's curl arguments and `extra`.
    fn get(&self, path: &str, extra: &[&str]) -> Reply {
        let mut args: Vec<&str> = self.curl_args.iter().map(String::as_str).collect();
        args.extend(extra);
        let url = self.url(path);
        args.push(&url);
        curl(&args)
    }

    fn web_config(&self) -> PathBuf {
        self.dir.path().join("web.yml")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A web config with the PKI's server certificate and `extra` lines in
/// `tls_server_config`.
fn tls_config(pki: &Pki, cert: &str, extra: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
        pki.path(&format!("{cert}.crt")),
        pki.path(&format!("{cert}.key")),
    )
}

fn tools() -> bool {
    require_bpf() && tool("openssl") && tool("curl")
}

#[test]
fn tls_1_2_and_1_3_with_the_ca_and_the_configured_suites() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let web = tls_config(
        &pki,
        "server",
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n",
    );
    let ca = pki.path("ca.crt");
    let exporter = Secured::start("uexp-web-tls", &web, &[], &["--cacert", &ca]);

    let tls12 = exporter.get("/metrics", &["-v", "--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(tls12.status, 200, "{tls12:?}");
    assert!(
        tls12
            .stderr
            .contains("SSL connection using TLSv1.2 / ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{}",
        tls12.stderr
    );
    assert!(tls12.body.contains("userspace_exporter_"), "{}", tls12.body);

    let tls13 = exporter.get("/metrics", &["-v", "--tlsv1.3"]);
    assert_eq!(tls13.status, 200, "{tls13:?}");
    assert!(
        tls13.stderr.contains("SSL connection using TLSv1.3"),
        "{}",
        tls13.stderr
    );
    // HTTP/2 is offered (http2 defaults to true, as in the toolkit).
    assert!(tls13.head.starts_with("HTTP/2 200"), "{}", tls13.head);

    // A TLS 1.2 suite not in cipher_suites is refused.
    let other = exporter.get(
        "/metrics",
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    );
    assert_eq!(other.status, 0, "{other:?}");
    assert_ne!(other.exit, 0);

    // Without the CA, curl cannot verify the server (exit 60).
    let unverified = curl(&[&exporter.url("/metrics")]);
    assert_eq!(unverified.exit, 60, "{unverified:?}");
}

#[test]
fn mutual_tls_accepts_only_client_certificates_the_ca_signed() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let web = tls_config(
        &pki,
        "server",
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  client_allowed_sans: [prometheus.example]\n",
            pki.path("ca.crt")
        ),
    );
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let exporter = Secured::start(
        "uexp-web-mtls",
        &web,
        &[],
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
    );
    for version in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
        let signed = exporter.get("/metrics", version);
        assert_eq!(signed.status, 200, "{version:?}: {signed:?}");
        for (what, args) in [
            ("no client certificate", vec![]),
            (
                "a self-signed client certificate",
                vec![
                    "--cert",
                    &pki.path("rogue.crt"),
                    "--key",
                    &pki.path("rogue.key"),
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ),
            (
                "a signed certificate without an allowed SAN",
                vec![
                    "--cert",
                    &pki.path("client2.crt"),
                    "--key",
                    &pki.path("client2.key"),
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ),
        ] {
            let mut all: Vec<&str> = vec!["--cacert", &ca];
            all.extend(version.iter().copied());
            all.extend(args.iter().map(String::as_str));
            let url = exporter.url("/metrics");
            all.push(&url);
            let refused = curl(&all);
            assert_eq!(refused.status, 0, "{what} {version:?}: {refused:?}");
            assert_ne!(refused.exit, 0, "{what}");
        }
    }
}

#[test]
fn basic_auth_headers_and_health_without_auth() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let web = format!(
        "{}basic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1; mode=block\n    Content-Security-Policy: default-src 'self'\n",
        tls_config(&pki, "server", ""),
        hash(PASSWORD)
    );
    let ca = pki.path("ca.crt");
    let exporter = Secured::start("uexp-web-auth", &web, &[], &["--cacert", &ca]);
    let right = format!("prometheus:{PASSWORD}");

    let ok = exporter.get("/metrics", &["-u", &right]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.contains("userspace_exporter_"));
    let landing = exporter.get("/", &["-u", &right]);
    assert_eq!(landing.status, 200, "{landing:?}");

    for (what, extra) in [
        ("no password", vec![]),
        ("a wrong password", vec!["-u", "prometheus:guess"]),
        ("an unknown user", vec!["-u", "admin:s3cret-scrape"]),
    ] {
        for path in ["/metrics", "/"] {
            let denied = exporter.get(path, &extra);
            assert_eq!(denied.status, 401, "{what} {path}: {denied:?}");
            assert_eq!(
                denied.header("www-authenticate"),
                Some("Basic"),
                "{what}: {denied:?}"
            );
            assert_eq!(denied.header("x-frame-options"), Some("deny"), "{denied:?}");
        }
    }
    // The right password works again after failures (they are not remembered).
    assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 200);

    for path in ["/-/healthy", "/-/ready"] {
        let health = exporter.get(path, &[]);
        assert_eq!(health.status, 200, "{path} needs no password: {health:?}");
        assert_eq!(
            health.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{health:?}"
        );
    }
    for (name, value) in [
        ("strict-transport-security", "max-age=31536000"),
        ("x-frame-options", "deny"),
        ("x-content-type-options", "nosniff"),
        ("x-xss-protection", "1; mode=block"),
        ("content-security-policy", "default-src 'self'"),
    ] {
        assert_eq!(ok.header(name), Some(value), "{name} in {}", ok.head);
    }
}

#[test]
fn plain_http_to_the_tls_port_is_refused() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let exporter = Secured::start(
        "uexp-web-plain",
        &tls_config(&pki, "server", ""),
        &[],
        &["--cacert", &ca],
    );
    let plain = curl(&[&format!("http://127.0.0.1:{}/metrics", exporter.port)]);
    assert_eq!(plain.status, 0, "{plain:?}");
    assert_ne!(plain.exit, 0);

    // By hand: an HTTP request where a ClientHello is due gets no HTTP answer.
    let mut stream = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The TLS side still serves.
    assert_eq!(exporter.get("/metrics", &[]).status, 200);
}

/// `serial=...` of the certificate the server presents now.
fn presented_serial(port: u16) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let serial = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&serial.stdout).trim().to_string()
}

#[test]
fn a_certificate_replaced_on_disk_is_presented_at_the_next_handshake() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    // As a Kubernetes secret volume lays it out (cert-manager's rotations):
    // tls.crt -> ..data/tls.crt, ..data -> ..v1; a rotation writes ..v2 and
    // renames a new ..data symlink over the old one.
    let mount = pki.dir.path().join("mount");
    std::fs::create_dir(&mount).unwrap();
    let version = |name: &str, cert: &str| {
        let dir = mount.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(pki.path(&format!("{cert}.crt")), dir.join("tls.crt")).unwrap();
        std::fs::copy(pki.path(&format!("{cert}.key")), dir.join("tls.key")).unwrap();
    };
    version("..v1", "server");
    std::os::unix::fs::symlink("..v1", mount.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), mount.join(file)).unwrap();
    }
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        mount.join("tls.crt").display(),
        mount.join("tls.key").display()
    );
    let ca = pki.path("ca.crt");
    let exporter = Secured::start("uexp-web-rotate", &web, &[], &["--cacert", &ca]);
    let first = pki.serial("server.crt");
    let second = pki.serial("server2.crt");
    assert_ne!(first, second);
    assert_eq!(presented_serial(exporter.port), first);

    version("..v2", "server2");
    std::os::unix::fs::symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    // The very next handshake: no wait.
    assert_eq!(presented_serial(exporter.port), second);
    assert_eq!(exporter.get("/metrics", &[]).status, 200);
    let logs = exporter.logs();
    assert!(logs.contains("reloaded"), "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");
}

#[test]
fn a_web_config_turning_bad_keeps_the_last_good_settings() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let good = |password: &str| {
        format!(
            "{}basic_auth_users:\n  prometheus: {}\n",
            tls_config(&pki, "server", ""),
            hash(password)
        )
    };
    let ca = pki.path("ca.crt");
    let exporter = Secured::start("uexp-web-bad", &good(PASSWORD), &[], &["--cacert", &ca]);
    let right = format!("prometheus:{PASSWORD}");
    assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 200);

    // Broken YAML, then a key that does not match: each keeps the last good settings.
    let errors = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("ERROR") && l.contains("keeping the web config in force"))
            .count()
    };
    std::fs::write(
        exporter.web_config(),
        format!("{}basic_auth_users: [\n", tls_config(&pki, "server", "")),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 200);
        assert_eq!(exporter.get("/metrics", &[]).status, 401);
    }
    let logs = exporter.logs();
    assert_eq!(errors(&logs), 1, "one error for one bad file:\n{logs}");
    assert!(
        logs.contains("web.yml:4:"),
        "the error names file and line:\n{logs}"
    );

    std::fs::write(
        exporter.web_config(),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.path("server.crt"),
            pki.path("client.key")
        ),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 200);
    }
    let logs = exporter.logs();
    assert_eq!(errors(&logs), 2, "{logs}");
    assert!(
        logs.contains("the key does not match the certificate"),
        "{logs}"
    );

    // A writer stalled between truncating and filling the file: a warning,
    // not an error, and the settings in force stay.
    std::fs::write(exporter.web_config(), "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 200);
    let logs = exporter.logs();
    assert_eq!(errors(&logs), 2, "{logs}");
    assert!(logs.contains("is empty (being written?)"), "{logs}");

    // Fixed, with a new password: taken at once.
    std::fs::write(exporter.web_config(), good("rotated")).unwrap();
    assert_eq!(
        exporter
            .get("/metrics", &["-u", "prometheus:rotated"])
            .status,
        200
    );
    assert_eq!(exporter.get("/metrics", &["-u", &right]).status, 401);
    assert_eq!(errors(&exporter.logs()), 2);
}

/// Reads until the peer closes; the time it took, or None if still open at `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// A TLS client (rustls, trusting only `ca`) over `tcp`, for clients that
/// curl cannot play: one that dribbles its request, one that never reads.
fn tls_client(
    tcp: TcpStream,
    ca: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

#[test]
fn slow_clients_never_delay_a_scrape() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let web = format!(
        "{}basic_auth_users:\n  prometheus: {}\n",
        tls_config(&pki, "server", ""),
        hash(PASSWORD)
    );
    let ca = pki.path("ca.crt");
    let right = format!("prometheus:{PASSWORD}");
    let exporter = Secured::start(
        "uexp-web-slow",
        &web,
        &[
            "--web.read-header-timeout",
            "2s",
            "--web.idle-timeout",
            "3s",
        ],
        &["--cacert", &ca, "-u", &right],
    );
    let port = exporter.port;
    let scrape_times = |n: usize| -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let start = Instant::now();
                let reply = exporter.get("/metrics", &[]);
                assert_eq!(reply.status, 200, "{reply:?}");
                start.elapsed()
            })
            .collect()
    };
    let before = scrape_times(5);

    // 20 clients that connect and send nothing: no handshake ever starts.
    let silent: Vec<(TcpStream, Instant)> = (0..20)
        .map(|_| {
            (
                TcpStream::connect(("127.0.0.1", port)).unwrap(),
                Instant::now(),
            )
        })
        .collect();
    // 10 clients that finish the TLS handshake, then send a request's headers
    // one byte every 100 ms, never finishing. Each returns how long after its
    // connect a write failed (the server had closed it).
    let dribblers: Vec<_> = (0..10)
        .map(|_| {
            let ca = ca.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut tls = tls_client(TcpStream::connect(("127.0.0.1", port)).unwrap(), &ca);
                let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                let bytes = head
                    .iter()
                    .chain(b"abcdefghijklmnopqrstuvwxyz".iter().cycle());
                for byte in bytes.take(150) {
                    if tls.write_all(&[*byte]).and_then(|_| tls.flush()).is_err() {
                        return Some(started.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                None
            })
        })
        .collect();
    // 2 clients with 4 KiB socket buffers that pipeline up to 20000 scrapes
    // and never read the answers: the server's writes stall, it stops reading
    // requests, and the client's writes block until the server closes the
    // connection. Each returns how many requests it wrote and when (after
    // its connect) a write failed, if one did within 10 s of blocking.
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\r\n",
        base64(right.as_bytes())
    );
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let ca = ca.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let tcp = common::connect_with_small_buffers(port, 4096);
                tcp.set_write_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut tls = tls_client(tcp, &ca);
                for written in 0..20_000 {
                    match tls.write_all(request.as_bytes()) {
                        Ok(()) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return (written, None)
                        }
                        Err(_) => return (written, Some(started.elapsed())),
                    }
                }
                (20_000, None)
            })
        })
        .collect();

    // Meanwhile, scrapes answer as fast as before.
    std::thread::sleep(Duration::from_millis(500));
    let during = scrape_times(20);
    let slowest = *during.iter().max().unwrap();
    let mut sorted = during.clone();
    sorted.sort();
    eprintln!(
        "scrapes: before {:?} max; with 32 slow clients {slowest:?} max, {:?} median",
        before.iter().max().unwrap(),
        sorted[sorted.len() / 2]
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?} while slow clients held connections: {during:?}"
    );

    // The silent clients are closed at the handshake deadline, 2 s after
    // their connect (checked every 200 ms).
    for (mut stream, connected) in silent {
        let closed = closed_within(&mut stream, Duration::from_secs(6));
        assert!(closed.is_some(), "a silent connection is still open");
        let after = connected.elapsed();
        assert!(
            after > Duration::from_millis(1800) && after < Duration::from_secs(4),
            "a silent connection was closed {after:?} after its connect"
        );
    }
    // The dribblers are closed at their headers' deadline, 2 s after connecting.
    for dribbler in dribblers {
        let closed = dribbler.join().unwrap();
        eprintln!("a dribbler's write failed {closed:?} after its connect");
        let closed = closed.expect("a client sending its headers byte by byte was never closed");
        assert!(
            closed > Duration::from_millis(1800) && closed < Duration::from_secs(4),
            "closed {closed:?} after connecting"
        );
    }
    // The non-readers stalled (the server stopped taking their requests) and
    // were closed by the idle timeout.
    for reader in readers {
        let (written, closed) = reader.join().unwrap();
        eprintln!(
            "a non-reader wrote {written} requests; a write failed {closed:?} after its connect"
        );
        assert!(
            written < 20_000,
            "the server took all 20000 requests of a client that never read"
        );
        let closed = closed
            .expect("a client that never read was still connected 10 s after its writes blocked");
        assert!(closed > Duration::from_secs(3), "closed after {closed:?}");
    }
    // Still fast after all that.
    let after = scrape_times(5);
    assert!(
        after.iter().all(|d| *d < Duration::from_secs(1)),
        "{after:?}"
    );
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

#[test]
fn oversized_headers_get_431_and_connections_beyond_the_limit_are_closed() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let exporter = Secured::start(
        "uexp-web-limits",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        &[
            "--web.max-header-bytes",
            "4096",
            "--web.max-connections",
            "8",
        ],
        &[],
    );
    let big = format!("X-Big: {}", "a".repeat(5000));
    let reply = exporter.get("/metrics", &["-H", &big]);
    assert_eq!(reply.status, 431, "{reply:?}");
    let small = format!("X-Big: {}", "a".repeat(3000));
    assert_eq!(exporter.get("/metrics", &["-H", &small]).status, 200);

    // 8 connections held open: the 9th is closed at once, without an answer.
    // (First, curl's connections above end on the server too.)
    std::thread::sleep(Duration::from_millis(500));
    let connect = format!("127.0.0.1:{}", exporter.port);
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&connect).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for stream in &mut held {
        assert_eq!(
            closed_within(stream, Duration::from_millis(50)),
            None,
            "one of the 8 connections within the limit was closed"
        );
    }
    let mut extra = TcpStream::connect(&connect).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let closed = closed_within(&mut extra, Duration::from_secs(2));
    assert!(
        closed.is_some(),
        "the connection over the limit stayed open"
    );
    drop(held);
    let again = wait_for(Duration::from_secs(5), || {
        (exporter.get("/metrics", &[]).status == 200).then_some(())
    });
    assert!(again.is_some(), "no scrape once the connections closed");
    assert!(exporter.logs().contains("--web.max-connections"));
}

#[test]
fn a_bad_web_config_at_startup_is_an_error_at_its_line() {
    let _machine = common::shared();
    if !tool("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    for (text, expected) in [
        (
            "tls_server_config:\n  cert_file: server.crt\n  keyfile: server.key\n".to_string(),
            "web.yml:3:3: unknown field `keyfile`",
        ),
        (
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                pki.path("server.crt"),
                pki.path("client.key")
            ),
            "web.yml:3:13: key_file",
        ),
        (
            format!(
                "tls_server_config:\n  cert_file: {}/missing.crt\n  key_file: {}\n",
                pki.path(""),
                pki.path("server.key")
            ),
            "web.yml:2:14: cert_file",
        ),
        (
            tls_config(
                &pki,
                "server",
                "  min_version: TLS10\n  max_version: TLS11\n",
            ),
            "web.yml:5:16: max_version TLS11: rustls implements only TLS 1.2 and 1.3",
        ),
    ] {
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(common::EXPORTER)
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--web.config.file")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {text}");
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    // The mismatch and the missing file say what is wrong.
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.path("server.crt"),
            pki.path("client.key")
        ),
    )
    .unwrap();
    let out = Command::new(common::EXPORTER)
        .args(["--listen-address", "127.0.0.1:1", "--web.config.file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("the key does not match the certificate"));
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let _machine = common::shared();
    if !tools() || !tool("prometheus") {
        return;
    }
    let pki = Pki::new();
    let mut target = Target::start("uexp-web-prom");
    let web = format!(
        "{}basic_auth_users:\n  prometheus: {}\n",
        tls_config(&pki, "server", ""),
        hash(PASSWORD)
    );
    let ca = pki.path("ca.crt");
    let right = format!("prometheus:{PASSWORD}");
    let exporter = Secured::start("uexp-web-prom", &web, &[], &["--cacert", &ca, "-u", &right]);
    target.cmd("usdt 17 3");

    let prometheus = common::Prometheus::start(&format!(
        "  - job_name: secured\n    scheme: https\n    tls_config: {{ca_file: {ca}}}\n    basic_auth: {{username: prometheus, password: {PASSWORD}}}\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
        exporter.port
    ));
    let pid = target.pid().to_string();
    let series = format!("userspace_exporter_churn_hits_total{{arg=\"3\",pid=\"{pid}\"}}");
    let scraped = wait_for(Duration::from_secs(30), || prometheus.query(&series));
    let up = prometheus.query("up{job=\"secured\"}");
    drop(prometheus);

    let direct = common::Samples::parse(&exporter.get("/metrics", &[]).body);
    let direct = direct.value(
        "userspace_exporter_churn_hits_total",
        &[("arg", "3"), ("pid", &pid)],
    );
    assert_eq!(direct, 17.0);
    assert_eq!(up.as_deref(), Some("1"), "Prometheus' up for the job");
    assert_eq!(
        scraped.as_deref(),
        Some("17"),
        "Prometheus' value of {series} (direct scrape: {direct})"
    );
}

#[test]
fn the_example_in_deploy_serves_as_documented() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/web-config.yml"
    ))
    .unwrap();
    let tls_dir = pki.dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    std::fs::copy(pki.path("server.crt"), tls_dir.join("tls.crt")).unwrap();
    std::fs::copy(pki.path("server.key"), tls_dir.join("tls.key")).unwrap();
    let web = example.replace(
        "/etc/ebpf-userspace-exporter/tls/",
        &format!("{}/", tls_dir.display()),
    );
    assert_ne!(web, example, "the example names no certificate under /etc");
    let ca = pki.path("ca.crt");
    let exporter = Secured::start("uexp-web-example", &web, &[], &["--cacert", &ca]);
    let ok = exporter.get("/metrics", &["-u", "prometheus:change-me"]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-frame-options"), Some("deny"));
    assert_eq!(exporter.get("/metrics", &[]).status, 401);
    let landing = exporter.get("/", &["-u", "prometheus:change-me"]);
    assert_eq!(landing.status, 200);
    assert!(landing.header("content-security-policy").is_some());
}

/// Whether the server asks for a client certificate in a TLS `version`
/// (`-tls1_2` or `-tls1_3`) handshake, as `openssl s_client -state` sees it.
fn asks_for_a_certificate(port: u16, ca: &str, version: &str) -> bool {
    let connect = format!("127.0.0.1:{port}");
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            ca,
            "-state",
            version,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("read server certificate") || text.contains("read server hello"),
        "no handshake at all:\n{text}"
    );
    text.contains("certificate request")
}

#[test]
fn client_auth_as_in_go_with_and_without_cas_and_sans() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let exporter = Secured::start(
        "uexp-web-cauth",
        &tls_config(&pki, "server", ""),
        &[],
        &["--cacert", &ca],
    );
    let cert = |name: &str| {
        [
            "--cert",
            &pki.path(&format!("{name}.crt")),
            "--key",
            &pki.path(&format!("{name}.key")),
        ]
        .map(String::from)
        .to_vec()
    };
    // The clients: none, the self-signed `rogue` (SAN prometheus.example),
    // `client` (the CA signed it, SAN prometheus.example), `client2` (the CA
    // signed it, SAN other.example).
    let clients = [
        ("no certificate", Vec::new()),
        ("rogue", cert("rogue")),
        ("client", cert("client")),
        ("client2", cert("client2")),
    ];
    let ca_file = format!("  client_ca_file: {ca}\n");
    let sans = "  client_allowed_sans: [prometheus.example]\n";
    let pinned = format!("  client_ca_file: {}\n", pki.path("rogue.crt"));
    // Per setting: whether a certificate is asked for, and the status for
    // each client (0: the handshake failed). The toolkit's behaviour, read
    // from its source and Go's crypto/tls: without a CA, Go verifies against
    // the system's CAs (which do not know this test CA); a SAN list makes a
    // certificate necessary whatever the type (its check fails a handshake
    // without one); a certificate that is itself in the pool is trusted.
    let cases: Vec<(&str, String, bool, [u16; 4])> = vec![
        ("NoClientCert", String::new(), false, [200, 200, 200, 200]),
        (
            "NoClientCert",
            sans.to_string(),
            false,
            [200, 200, 200, 200],
        ),
        (
            "RequestClientCert",
            ca_file.clone(),
            true,
            [200, 200, 200, 200],
        ),
        (
            "RequestClientCert",
            format!("{ca_file}{sans}"),
            true,
            [0, 200, 200, 0],
        ),
        (
            "RequireAnyClientCert",
            String::new(),
            true,
            [0, 200, 200, 200],
        ),
        (
            "RequireAnyClientCert",
            sans.to_string(),
            true,
            [0, 200, 200, 0],
        ),
        (
            "VerifyClientCertIfGiven",
            ca_file.clone(),
            true,
            [200, 0, 200, 200],
        ),
        (
            "VerifyClientCertIfGiven",
            String::new(),
            true,
            [200, 0, 0, 0],
        ),
        (
            "VerifyClientCertIfGiven",
            format!("{ca_file}{sans}"),
            true,
            [0, 0, 200, 0],
        ),
        (
            "RequireAndVerifyClientCert",
            ca_file.clone(),
            true,
            [0, 0, 200, 200],
        ),
        (
            "RequireAndVerifyClientCert",
            format!("{ca_file}{sans}"),
            true,
            [0, 0, 200, 0],
        ),
        ("RequireAndVerifyClientCert", pinned, true, [0, 200, 0, 0]),
    ];
    for (auth, extra, asks, expected) in &cases {
        // Written in place (truncated, then filled), and applied at the next
        // connection: no restart, and no error for a file caught half written.
        let text = format!("  client_auth_type: {auth}\n{extra}");
        std::fs::write(exporter.web_config(), tls_config(&pki, "server", &text)).unwrap();
        for ((what, args), want) in clients.iter().zip(expected) {
            for version in ["--tlsv1.3", "--tls-max"] {
                let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
                if version == "--tls-max" {
                    extra.extend(["--tls-max", "1.2"]);
                }
                let reply = exporter.get("/metrics", &extra);
                assert_eq!(
                    reply.status,
                    *want,
                    "{auth} {text:?} with {what} ({version}): {reply:?}\n{}",
                    exporter.logs()
                );
            }
        }
        for version in ["-tls1_2", "-tls1_3"] {
            assert_eq!(
                asks_for_a_certificate(exporter.port, &ca, version),
                *asks,
                "{auth} {text:?} {version}"
            );
        }
    }
    // Each refused certificate was logged once (per client address and
    // certificate) at info level with its reason, however often refused.
    let logs = exporter.logs();
    let refused = |who: &str| {
        logs.lines()
            .filter(|l| {
                l.contains("INFO")
                    && l.contains("client certificate of 127.0.0.1 refused")
                    && l.contains(who)
            })
            .count()
    };
    assert_eq!(refused("CN=rogue"), 1, "{logs}");
    assert!(
        logs.contains("CN=rogue") && logs.contains("not signed by a client CA"),
        "{logs}"
    );
    assert_eq!(refused("CN=localhost, SAN other.example"), 1, "{logs}");
    assert!(
        logs.contains(
            "none of its SANs (other.example) is in client_allowed_sans (prometheus.example)"
        ),
        "{logs}"
    );
    assert_eq!(refused("the client sent none"), 1, "{logs}");
    // Without a CA: a warning naming the system's CAs, as Go uses them.
    assert!(logs.contains("verified against the system's CAs"), "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");

    // The toolkit's rate_limit with burst 0: every request but the health
    // paths gets 429 (the toolkit would refuse those too).
    std::fs::write(
        exporter.web_config(),
        format!(
            "{}rate_limit:\n  interval: 1s\n  burst: 0\n",
            tls_config(&pki, "server", "")
        ),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(exporter.get("/metrics", &[]).status, 429);
    }
    assert_eq!(exporter.get("/-/healthy", &[]).status, 200);
    assert!(exporter.logs().contains("burst 0 allows no request"));
}

#[test]
fn what_rustls_lacks_is_dropped_and_p521_serves() {
    let _machine = common::shared();
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let ca = pki.path("ca521.crt");
    // A P-521 server certificate and CA; TLS 1.0 allowed, a CBC suite and
    // an AEAD one, P-521 key exchange first: as node_exporter would take it.
    let web = tls_config(
        &pki,
        "server521",
        &format!(
            "  min_version: TLS10\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  curve_preferences: [CurveP521, X25519]\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n"
        ),
    );
    let (cert, key) = (pki.path("client521.crt"), pki.path("client521.key"));
    let exporter = Secured::start(
        "uexp-web-p521",
        &web,
        &[],
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
    );
    let logs = exporter.logs();
    for warning in [
        "min_version TLS10: TLS 1.0 and 1.1 clients cannot connect",
        "cipher suite TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA is dropped: rustls does not implement CBC mode",
    ] {
        assert!(
            logs.lines().any(|l| l.contains("WARN") && l.contains(warning)),
            "{warning:?} not warned:\n{logs}"
        );
    }
    // The AEAD suite serves TLS 1.2, with P-521 for the key exchange and a
    // P-521 client certificate verified against the P-521 CA.
    let tls12 = exporter.get(
        "/metrics",
        &["-v", "--tls-max", "1.2", "--curves", "secp521r1"],
    );
    assert_eq!(tls12.status, 200, "{tls12:?}");
    assert!(
        tls12
            .stderr
            .contains("TLSv1.2 / ECDHE-ECDSA-AES256-GCM-SHA384"),
        "{}",
        tls12.stderr
    );
    let tls13 = exporter.get("/metrics", &["-v", "--tlsv1.3", "--curves", "secp521r1"]);
    assert_eq!(tls13.status, 200, "{tls13:?}");
    // The dropped CBC suite: a client offering only it cannot connect.
    let cbc = exporter.get(
        "/metrics",
        &["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-SHA"],
    );
    assert_eq!(cbc.status, 0, "{cbc:?}");
    // A group not in curve_preferences: refused.
    let p256 = exporter.get("/metrics", &["--curves", "prime256v1"]);
    assert_eq!(p256.status, 0, "{p256:?}");
    assert!(!exporter.logs().contains("ERROR"), "{}", exporter.logs());
}
