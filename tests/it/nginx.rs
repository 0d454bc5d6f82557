//! A real server: Debian's nginx 1.22, with examples/nginx.yaml (uprobes on
//! the exported ngx_http_create_request and ngx_http_free_request, attached
//! to the executable: `instances: per_binary`). A private master with two
//! workers on a loopback port serves plain, keep-alive, pipelined and proxied
//! requests (to a backend here that answers after 150 ms), and is reloaded
//! half way (new workers, the old ones exit); the exporter's request count
//! equals stub_status's `requests` delta exactly, and the durations are
//! bounded by what the client waited and by the backend's delay.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

/// How long the backend behind `/slow` waits before it answers.
const BACKEND_DELAY: Duration = Duration::from_millis(150);

/// A backend on a loopback port that answers `connections` HTTP/1.0 requests,
/// each after [`BACKEND_DELAY`], then stops.
fn slow_backend(connections: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "nginx closed the proxied request early");
                request.extend_from_slice(&buf[..n]);
            }
            std::thread::sleep(BACKEND_DELAY);
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nslow\n")
                .unwrap();
        }
    });
    (port, thread)
}

/// A private nginx: a copy of the binary named `uexp-nginx` (so that only this
/// test's exporter selects it), master and 2 workers in their own process group.
struct Nginx {
    master: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start(backend: u16) -> Option<Nginx> {
        if !common::require_path(NGINX, "scripts/setup.sh installs nginx") {
            return None;
        }
        let binary = common::named_copy(Path::new(NGINX), "uexp-nginx");
        let dir = tempfile::Builder::new()
            .prefix("uexp-nginx")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let port = common::free_port();
        // Temp paths in the temp dir: the compiled-in ones are under /var/lib/nginx.
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port};\n\
                 location = /status {{ stub_status; }}\n\
                 location = /slow {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
                 location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let master = common::spawn(
            Command::new(&binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let nginx = Nginx { master, dir, port };
        wait_for(Duration::from_secs(20), || {
            (nginx.workers().len() == 2 && TcpStream::connect(("127.0.0.1", port)).is_ok())
                .then_some(())
        })
        .unwrap_or_else(|| panic!("nginx did not start:\n{}", nginx.log()));
        Some(nginx)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn workers(&self) -> Vec<String> {
        common::children(self.master.id())
    }

    /// Sends `requests` (paths) on one connection, pipelined, the last with
    /// `Connection: close`; returns the whole response stream once nginx
    /// closes the connection.
    fn get(&self, paths: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut request = String::new();
        for (i, path) in paths.iter().enumerate() {
            let close = if i + 1 == paths.len() {
                "Connection: close\r\n"
            } else {
                ""
            };
            request.push_str(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n"));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        let out = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(
            out.matches("HTTP/1.1 200 OK").count(),
            paths.len(),
            "{paths:?}: {out:.300}"
        );
        out
    }

    /// stub_status's `requests` (this status request included).
    fn requests(&self) -> f64 {
        let page = self.get(&["/status"]);
        // "server accepts handled requests\n A H R"
        let line = page
            .lines()
            .skip_while(|l| !l.starts_with("server accepts handled requests"))
            .nth(1)
            .unwrap_or_else(|| panic!("no counters in stub_status:\n{page}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let group = self.master.id() as i32;
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.master.wait();
    }
}

#[test]
fn nginx_example_counts_what_stub_status_counts() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (backend, backend_thread) = slow_backend(2);
    let Some(nginx) = Nginx::start(backend) else {
        return;
    };
    let exporter = Exporter::start(&fixtures().example_config("nginx", "nginx", "uexp-nginx"));
    let exe = fixtures().dir.join("uexp-nginx").display().to_string();
    wait_for(Duration::from_secs(10), || {
        let attached = exporter
            .samples()
            .get("userspace_exporter_attached_binaries", &[("name", "nginx")])?;
        (attached == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("nginx's executable not attached:\n{}", exporter.logs()));
    let requests = "userspace_exporter_nginx_requests_total";
    let hist = "userspace_exporter_nginx_request_duration_seconds";

    // The first status request is counted by both before the first scrape;
    // the second, by both before the last one.
    let before = nginx.requests();
    let s0 = exporter.samples();
    let t0 = Instant::now();
    for i in 0..20 {
        nginx.get(&[&format!("/plain/{i}")]);
    }
    // A reload: new workers are forked, the old ones exit once idle.
    let old = nginx.workers();
    unsafe { libc::kill(nginx.master.id() as i32, libc::SIGHUP) };
    wait_for(Duration::from_secs(20), || {
        let now = nginx.workers();
        (now.len() == 2 && now.iter().all(|w| !old.contains(w))).then_some(())
    })
    .unwrap_or_else(|| panic!("nginx did not reload:\n{}", nginx.log()));
    // Keep-alive: three requests on one connection.
    for _ in 0..5 {
        nginx.get(&["/a", "/b", "/c"]);
    }
    // Two proxied requests the backend delays, one after a quick request.
    nginx.get(&["/slow"]);
    nginx.get(&["/quick", "/slow"]);
    let sent = 20 + 5 * 3 + 1 + 2;
    backend_thread.join().unwrap();
    let after = nginx.requests();
    let waited = t0.elapsed().as_secs_f64();
    // ngx_http_free_request (the duration's end) can run after the client
    // read its response (the last one is stub_status's own request): scrape
    // once every counted request's duration is in too; else as it stands.
    let hist_count = format!("{hist}_count");
    let exe_label = [("exe", exe.as_str())];
    let s1 = wait_for(Duration::from_secs(5), || {
        let s = exporter.samples();
        let d = |name: &str| s.sum(name, &exe_label) - s0.sum(name, &exe_label);
        (d(&hist_count) == d(requests)).then_some(s)
    })
    .unwrap_or_else(|| exporter.samples());

    let delta = |name: &str, labels: &[(&str, &str)]| {
        let mut l = labels.to_vec();
        l.push(("exe", &exe));
        s1.sum(name, &l) - s0.sum(name, &l)
    };
    let counted = delta(requests, &[]);
    eprintln!(
        "nginx: stub_status requests delta {}, exported delta {counted}, client waited {waited:.3} s, observed {:.3} s",
        after - before,
        delta(&format!("{hist}_sum"), &[])
    );
    assert_eq!(after - before, (sent + 1) as f64);
    assert_eq!(counted, after - before, "exported vs stub_status requests");

    // One duration per request; all of them within the client's wait, the two
    // proxied ones over 2^27 ns (134 ms) each.
    assert_eq!(delta(&format!("{hist}_count"), &[]), counted);
    let observed = delta(&format!("{hist}_sum"), &[]);
    assert!(
        observed <= waited,
        "observed {observed} s > waited {waited} s"
    );
    let slow_floor = 2.0 * BACKEND_DELAY.as_secs_f64();
    assert!(observed >= slow_floor, "observed {observed} s");
    let quick = delta(&format!("{hist}_bucket"), &[("le", "0.134217728")]);
    assert!(quick <= counted - 2.0, "{quick} of {counted} under 134 ms");
}
