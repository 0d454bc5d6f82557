//! Turns a program's source into BPF object bytes.
//!
//! Today a program names a clang-built object (`object:`); inline `code:`
//! compilation comes next. The libbpf headers matching the linked loader are
//! embedded so users can build objects against the right `usdt.bpf.h`
//! (`ebpf-userspace-exporter headers -o DIR`).

use crate::config::ProgramSource;
use std::path::{Path, PathBuf};

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
    /// Inline code is not compiled yet.
    #[error("program {program:?} (config line {line}): inline `code:` is not supported yet; build the program with clang and point `object:` at the .bpf.o (headers: `ebpf-userspace-exporter headers -o DIR`)")]
    InlineCodeUnsupported {
        /// Program name.
        program: String,
        /// Line of `code:` in the config.
        line: u64,
    },
}

/// Returns the BPF object bytes for a program.
pub fn object_bytes(program: &str, source: &ProgramSource) -> Result<Vec<u8>, CompileError> {
    match source {
        ProgramSource::Object(path) => {
            let bytes = std::fs::read(path).map_err(|source| CompileError::ObjectUnreadable {
                program: program.to_string(),
                path: path.clone(),
                source,
            })?;
            // ELF magic, 64-bit, EM_BPF (247) at e_machine.
            let is_bpf = bytes.len() > 20
                && bytes.starts_with(b"\x7fELF")
                && u16::from_le_bytes([bytes[18], bytes[19]]) == 247;
            if !is_bpf {
                return Err(CompileError::NotBpfObject {
                    program: program.to_string(),
                    path: path.clone(),
                });
            }
            Ok(bytes)
        }
        ProgramSource::Code { first_line, .. } => Err(CompileError::InlineCodeUnsupported {
            program: program.to_string(),
            line: *first_line,
        }),
    }
}

/// Writes the embedded libbpf headers to `dir/bpf/`, ready for `clang -I dir`.
pub fn write_headers(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let bpf = dir.join("bpf");
    std::fs::create_dir_all(&bpf)?;
    let mut written = Vec::new();
    for (name, contents) in LIBBPF_HEADERS {
        let path = bpf.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}
