//! The system's CA certificates, read where Go's `crypto/x509` reads them
//! on Linux: the toolkit verifies client certificates against them when
//! `client_auth_type` verifies and no client CA is set.

use super::pem;
use crate::http::web_config::Reader;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;

/// The system's CA certificates where Go looks for them on Linux: the file
/// `SSL_CERT_FILE` or the first bundle found, and the directories of
/// `SSL_CERT_DIR` (or Go's defaults). Returns them and where they came from.
pub(super) fn system_roots(reader: &mut Reader<'_>) -> (Vec<CertificateDer<'static>>, String) {
    const FILES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    const DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];
    let files: Vec<PathBuf> = match std::env::var_os("SSL_CERT_FILE") {
        Some(f) => vec![PathBuf::from(f)],
        None => FILES.iter().map(PathBuf::from).collect(),
    };
    let dirs: Vec<PathBuf> = match std::env::var_os("SSL_CERT_DIR") {
        Some(d) => std::env::split_paths(&d).collect(),
        None => DIRS.iter().map(PathBuf::from).collect(),
    };
    let mut cas: Vec<CertificateDer<'static>> = Vec::new();
    let mut from = Vec::new();
    if let Some((path, bytes)) = files
        .iter()
        .find_map(|p| reader.read(p).ok().map(|b| (p.clone(), b)))
    {
        cas.extend(pem::client_cas(&bytes).0);
        from.push(path.display().to_string());
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        let before = cas.len();
        for path in paths {
            if path.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    for ca in pem::client_cas(&bytes).0 {
                        if !cas.contains(&ca) {
                            cas.push(ca);
                        }
                    }
                }
            }
        }
        if cas.len() > before {
            from.push(dir.display().to_string());
        }
    }
    let label = if from.is_empty() {
        "none found".to_string()
    } else {
        from.join(" and ")
    };
    (cas, label)
}
