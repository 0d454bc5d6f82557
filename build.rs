//! Exposes the libbpf headers that libbpf-sys ships (and that match the loader
//! linked into this binary) so they can be embedded in the exporter.
//!
//! Debian's `/usr/include/bpf` carries an older `usdt.bpf.h` whose argument
//! spec layout differs from libbpf 1.7: objects built against it load, attach,
//! and read every USDT argument as 0. So we never use the distro headers.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Headers a BPF program for userspace probes may include.
const HEADERS: &[&str] = &[
    "bpf_helpers.h",
    "bpf_helper_defs.h",
    "bpf_tracing.h",
    "bpf_core_read.h",
    "bpf_endian.h",
    "usdt.bpf.h",
];

fn main() {
    let include = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports DEP_BPF_INCLUDE");
    let src = PathBuf::from(include).join("bpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut table = String::from("/// The libbpf headers matching the linked loader: (file name, contents).\npub const LIBBPF_HEADERS: &[(&str, &[u8])] = &[\n");
    for name in HEADERS {
        let path = src.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let dest = out.join(name);
        fs::copy(&path, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        table.push_str(&format!(
            "    ({name:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}\"))),\n"
        ));
    }
    table.push_str("];\n");
    fs::write(out.join("libbpf_headers.rs"), table).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
