//! Real inputs to start from: the repository's example configs, the default
//! pack, the YAML and C written in its tests, and the BPF C sources.

use crate::engine::repo_dir;
use std::path::Path;

/// Every file under `dir` (relative to the repository) whose name ends with
/// `suffix`, sorted, as text.
pub fn files(dir: &str, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repo_dir().join(dir)) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// The raw string literals (`r#"..."#`) of the Rust sources under `dir`.
pub fn raw_strings(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for text in files(dir, ".rs") {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("r#\"") {
            rest = &rest[start + 3..];
            let Some(end) = rest.find("\"#") else {
                break;
            };
            out.push(rest[..end].to_string());
            rest = &rest[end + 2..];
        }
    }
    out
}

/// The example configs and the default pack.
pub fn configs() -> Vec<String> {
    let mut out = files("examples", ".yaml");
    out.extend(files("src/builtin", ".yaml"));
    assert!(out.len() >= 5, "the example configs are missing");
    out
}

/// YAML written in the config and integration tests: every raw string that
/// has a `programs:` key.
pub fn test_configs() -> Vec<String> {
    let mut out = raw_strings("src/config/tests");
    out.extend(raw_strings("tests/it"));
    out.retain(|s| s.contains("programs:"));
    out
}

/// bcc-dialect and libbpf C: the examples' inline `code:`, the C in the bcc
/// tests, and the BPF sources of the examples and fixtures.
pub fn c_sources() -> Vec<String> {
    let mut out: Vec<String> = configs()
        .iter()
        .chain(test_configs().iter())
        .filter_map(|text| {
            userspace_exporter::config::Config::parse(Path::new("seed.yaml"), text).ok()
        })
        .flat_map(|config| {
            config
                .programs
                .into_iter()
                .filter_map(|p| p.value.code.map(|c| c.value))
                .collect::<Vec<_>>()
        })
        .collect();
    let inline = out.len();
    assert!(inline >= 2, "no inline code in the example configs");
    let mut tests = raw_strings("src/compile/bcc");
    tests.extend(raw_strings("tests/it"));
    tests.retain(|s| s.contains('(') && s.contains(';') && !s.contains("programs:"));
    out.extend(tests);
    out.extend(files("examples", ".c"));
    out.extend(files("examples", ".h"));
    out.extend(files("tests/fixtures/bpf", ".c"));
    out
}
