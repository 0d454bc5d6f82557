//! Turns a program's source into BPF object bytes: a clang-built object
//! (`object:`) is read; inline `code:` (bcc's dialect or libbpf style) is
//! compiled by clang against embedded headers and this kernel's `vmlinux.h`
//! ([`clang`], [`bcc`], [`vmlinux`]). The libbpf headers matching the linked
//! loader are also available to users (`ebpf-userspace-exporter headers -o DIR`).

use crate::config::{Config, ProbeKind, Program, ProgramSource};
use std::path::{Path, PathBuf};

pub mod bcc;
pub mod bpf_flags;
pub mod clang;
pub mod vmlinux;

include!(concat!(env!("OUT_DIR"), "/libbpf_headers.rs"));

/// Why a program's object could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The object file could not be read.
    #[error("program {program:?}: cannot read BPF object {}: {source}; build it with clang (see README) or fix the `object:` path", path.display())]
    ObjectUnreadable {
        /// Program name.
        program: String,
        /// Object path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a BPF ELF object.
    #[error("program {program:?}: {} is not a BPF object (expected an ELF file built with `clang -target bpf`)", path.display())]
    NotBpfObject {
        /// Program name.
        program: String,
        /// Object path.
        path: PathBuf,
    },
    /// Neither `object:` nor `code:` (config validation normally catches this).
    #[error("program {program:?} has neither `object:` nor `code:`")]
    NoCode {
        /// Program name.
        program: String,
    },
    /// Inline code did not compile.
    #[error("program {program:?}: {source}")]
    Clang {
        /// Program name.
        program: String,
        /// clang's or the dialect pass's complaint, with config lines.
        source: clang::ClangError,
    },
}

/// Returns the BPF object bytes for a program of `config` (relative `object:`
/// paths resolve against the config's directory, or name an embedded object),
/// and whether inline code came from the compile cache.
pub fn object_bytes(
    config: &Config,
    program: &Program,
    compiler: &clang::Compiler,
) -> Result<(Vec<u8>, bool), CompileError> {
    let name = program.name.clone();
    let config_path = config.path.as_path();
    let config_dir = config.dir();
    let config_dir = config_dir.as_path();
    match program.source(config_dir) {
        Some(ProgramSource::Object(path)) => {
            if let Some(objects) = config.embedded_objects {
                let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
                if let Some((_, bytes)) = objects.iter().find(|(n, _)| *n == file) {
                    return Ok((bytes.to_vec(), false));
                }
            }
            let bytes = std::fs::read(&path).map_err(|source| CompileError::ObjectUnreadable {
                program: name.clone(),
                path: path.clone(),
                source,
            })?;
            // ELF magic, then EM_BPF (247) at e_machine.
            let is_bpf = bytes.len() > 20
                && bytes.starts_with(b"\x7fELF")
                && u16::from_le_bytes([bytes[18], bytes[19]]) == 247;
            if !is_bpf {
                return Err(CompileError::NotBpfObject {
                    program: name,
                    path,
                });
            }
            Ok((bytes, false))
        }
        Some(ProgramSource::Code {
            code,
            cflags,
            first_line,
            indent,
        }) => {
            let probes: Vec<(String, bcc::ProbeSection)> = program
                .probes()
                .into_iter()
                .map(|p| {
                    let section = match p.kind {
                        ProbeKind::Usdt => bcc::ProbeSection::Usdt,
                        ProbeKind::Uprobe => bcc::ProbeSection::Uprobe,
                        ProbeKind::Uretprobe => bcc::ProbeSection::Uretprobe,
                    };
                    (p.function, section)
                })
                .collect();
            let shared = program
                .instances
                .as_ref()
                .is_some_and(|m| m.value == crate::config::InstanceMode::Shared);
            let request = clang::Request {
                code: &code,
                cflags: &cflags,
                probes: &probes,
                config_path,
                first_line,
                indent,
                shared,
            };
            compiler
                .compile(&request)
                .map_err(|source| CompileError::Clang {
                    program: name,
                    source,
                })
        }
        None => Err(CompileError::NoCode { program: name }),
    }
}

/// The header of `instances: pid_keyed` programs: the exporter's maps of
/// selected pids and its PID namespace, and `exporter_pid()`/`exporter_selected()`.
pub const PID_KEYED_HEADER: (&str, &str) = (
    "exporter_pids.bpf.h",
    include_str!("include/exporter_pids.bpf.h"),
);

/// Writes the embedded libbpf headers to `dir/bpf/` and the exporter's own
/// ([`PID_KEYED_HEADER`]) to `dir/`, ready for `clang -I dir`.
pub fn write_headers(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let bpf = dir.join("bpf");
    std::fs::create_dir_all(&bpf)?;
    let mut written = Vec::new();
    for (name, contents) in LIBBPF_HEADERS {
        let path = bpf.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    let (name, contents) = PID_KEYED_HEADER;
    let path = dir.join(name);
    std::fs::write(&path, contents)?;
    written.push(path);
    Ok(written)
}
