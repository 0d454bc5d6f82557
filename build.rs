//! Exposes the libbpf headers that libbpf-sys ships (and that match the loader
//! linked into this binary) so they can be embedded in the exporter.
//!
//! Debian's `/usr/include/bpf` carries an older `usdt.bpf.h` whose argument
//! spec layout differs from libbpf 1.7: objects built against it load, attach,
//! and read every USDT argument as 0. So we never use the distro headers.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The clang flags for BPF, shared with the runtime compiler.
#[allow(dead_code)]
#[path = "src/compile/bpf_flags.rs"]
mod bpf_flags;

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
    compile_builtin_objects(&out);
    println!("cargo:rerun-if-changed=build.rs");
}

/// The examples whose objects make up the embedded default pack
/// (src/builtin/default.yaml): compiled here so the exporter needs no clang
/// to run them.
const BUILTIN_PROGRAMS: &[&str] = &["python", "jvm", "ruby", "postgresql", "nodejs", "php"];

/// Compiles each `examples/NAME.bpf.c` of the default pack against the libbpf
/// headers copied above and writes `builtin_objects.rs`: (object file name, bytes).
fn compile_builtin_objects(out: &Path) {
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // The probes read the registers of the target's processes.
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let big_endian = env::var("CARGO_CFG_TARGET_ENDIAN").is_ok_and(|e| e == "big");
    let arch = bpf_flags::BpfArch::of(&target_arch)
        .unwrap_or_else(|e| panic!("building the default pack's BPF objects: {e}"));
    let multiarch_dir = arch.multiarch_include_dir(big_endian);
    println!("cargo:rerun-if-changed=src/compile/bpf_flags.rs");
    // Their shared helpers, included as "metrics.bpf.h".
    println!("cargo:rerun-if-changed=examples/metrics.bpf.h");
    println!("cargo:rerun-if-changed=src/compile/include/exporter_pids.bpf.h");
    let mut table = String::from(
        "/// The default pack's BPF objects, compiled at build time: (file name, contents).\npub const BUILTIN_OBJECTS: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTIN_PROGRAMS {
        let source = PathBuf::from(format!("examples/{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", source.display());
        let object = out.join(format!("{name}.bpf.o"));
        // The headers were copied to OUT_DIR flat; the sources include <bpf/...>.
        let include = out.join("builtin-include");
        fs::create_dir_all(include.join("bpf")).unwrap();
        for header in HEADERS {
            fs::copy(out.join(header), include.join("bpf").join(header)).unwrap();
        }
        // The header of `instances: pid_keyed` programs, as `headers -o` writes it.
        fs::copy(
            "src/compile/include/exporter_pids.bpf.h",
            include.join("exporter_pids.bpf.h"),
        )
        .unwrap();
        let result = Command::new(&clang)
            .args(bpf_flags::cflags(arch))
            .arg(format!("-I{multiarch_dir}"))
            .arg(format!("-I{}", include.display()))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "compiling the default pack's {}: clang failed:\n{}{}",
                source.display(),
                String::from_utf8_lossy(&output.stderr),
                if Path::new(&multiarch_dir).is_dir() {
                    String::new()
                } else {
                    format!("{multiarch_dir} (the {target_arch} kernel's asm/ headers) does not exist; on Debian, install linux-libc-dev for that architecture")
                }
            ),
            Err(e) => panic!(
                "compiling the default pack needs clang ({clang}: {e}); install it (apt-get install clang) or set CLANG"
            ),
        }
        table.push_str(&format!(
            "    (\"{name}.bpf.o\", include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.bpf.o\"))),\n"
        ));
    }
    table.push_str("];\n");
    fs::write(out.join("builtin_objects.rs"), table).unwrap();
    println!("cargo:rerun-if-env-changed=CLANG");
}
