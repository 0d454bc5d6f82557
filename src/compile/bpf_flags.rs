//! The clang flags every BPF object of this project is built with: by
//! `build.rs` for the default pack's objects (it includes this file as a
//! module, since a build script cannot use the crate), and by
//! [`super::clang`] for inline `code:` at run time.
//!
//! The probes read registers through libbpf's `bpf_tracing.h`, which must be
//! told the architecture of the traced processes with `-D__TARGET_ARCH_*`:
//! the target's, taken from `CARGO_CFG_TARGET_ARCH` in `build.rs` and from
//! [`std::env::consts::ARCH`] at run time, and named the way libbpf names it.
//!
//! Only the standard library may be used here.

use std::fmt;

/// The flags that do not depend on the architecture; [`cflags`] adds the
/// architecture's `-D__TARGET_ARCH_*`.
pub const BASE_CFLAGS: &[&str] = &["-target", "bpf", "-O2", "-g"];

/// An architecture BPF probes can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfArch {
    /// Rust's name for it (`target_arch`, `CARGO_CFG_TARGET_ARCH`, `std::env::consts::ARCH`).
    pub rust: &'static str,
    /// libbpf's name for it, as `bpf_tracing.h` expects in `__TARGET_ARCH_*`.
    pub libbpf: &'static str,
    /// Debian's multiarch triplet, whose `/usr/include/TRIPLET` holds the
    /// kernel's `asm/` headers (for powerpc64 the little-endian one; see
    /// [`BpfArch::multiarch`]).
    triplet: &'static str,
}

/// The architectures known here.
pub const ARCHES: &[BpfArch] = &[
    BpfArch {
        rust: "x86_64",
        libbpf: "x86",
        triplet: "x86_64-linux-gnu",
    },
    BpfArch {
        rust: "aarch64",
        libbpf: "arm64",
        triplet: "aarch64-linux-gnu",
    },
    BpfArch {
        rust: "riscv64",
        libbpf: "riscv",
        triplet: "riscv64-linux-gnu",
    },
    BpfArch {
        rust: "powerpc64",
        libbpf: "powerpc",
        triplet: "powerpc64le-linux-gnu",
    },
    BpfArch {
        rust: "s390x",
        libbpf: "s390",
        triplet: "s390x-linux-gnu",
    },
    BpfArch {
        rust: "loongarch64",
        libbpf: "loongarch",
        triplet: "loongarch64-linux-gnu",
    },
];

/// An architecture not in [`ARCHES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedArch(pub String);

impl fmt::Display for UnsupportedArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = ARCHES.iter().map(|a| a.rust).collect();
        write!(
            f,
            "unsupported architecture `{}`: BPF probes need libbpf's __TARGET_ARCH_* name for it, \
             known for {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnsupportedArch {}

impl BpfArch {
    /// The architecture Rust calls `rust_arch` (`x86_64`, `aarch64`, ...).
    pub fn of(rust_arch: &str) -> Result<&'static BpfArch, UnsupportedArch> {
        ARCHES
            .iter()
            .find(|a| a.rust == rust_arch)
            .ok_or_else(|| UnsupportedArch(rust_arch.to_string()))
    }

    /// `-D__TARGET_ARCH_<libbpf's name>`.
    pub fn define(&self) -> String {
        format!("-D__TARGET_ARCH_{}", self.libbpf)
    }

    /// Debian's multiarch triplet (`x86_64-linux-gnu`, ...). The kernel
    /// headers are the same for the gnu and musl targets, so it is always the
    /// gnu one; powerpc64 has one per byte order.
    pub fn multiarch(&self, big_endian: bool) -> &'static str {
        if big_endian && self.rust == "powerpc64" {
            "powerpc64-linux-gnu"
        } else {
            self.triplet
        }
    }

    /// `/usr/include/<multiarch triplet>`, where `asm/types.h` and the other
    /// headers `linux/types.h` includes live.
    pub fn multiarch_include_dir(&self, big_endian: bool) -> String {
        format!("/usr/include/{}", self.multiarch(big_endian))
    }
}

/// The flags for a BPF object probing processes of `arch`:
/// [`BASE_CFLAGS`] then `-D__TARGET_ARCH_*`.
pub fn cflags(arch: &BpfArch) -> Vec<String> {
    BASE_CFLAGS
        .iter()
        .map(|f| f.to_string())
        .chain(std::iter::once(arch.define()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_map_to_libbpfs_and_debians() {
        let cases = [
            ("x86_64", "x86", "x86_64-linux-gnu"),
            ("aarch64", "arm64", "aarch64-linux-gnu"),
            ("riscv64", "riscv", "riscv64-linux-gnu"),
            ("powerpc64", "powerpc", "powerpc64le-linux-gnu"),
            ("s390x", "s390", "s390x-linux-gnu"),
            ("loongarch64", "loongarch", "loongarch64-linux-gnu"),
        ];
        assert_eq!(cases.len(), ARCHES.len());
        for (rust, libbpf, triplet) in cases {
            let arch = BpfArch::of(rust).unwrap();
            assert_eq!(arch.rust, rust);
            assert_eq!(arch.libbpf, libbpf);
            assert_eq!(arch.define(), format!("-D__TARGET_ARCH_{libbpf}"));
            assert_eq!(arch.multiarch(false), triplet);
            assert_eq!(
                arch.multiarch_include_dir(false),
                format!("/usr/include/{triplet}")
            );
        }
        let ppc = BpfArch::of("powerpc64").unwrap();
        assert_eq!(ppc.multiarch(true), "powerpc64-linux-gnu");
        // s390x is big-endian only; its triplet does not change.
        assert_eq!(
            BpfArch::of("s390x").unwrap().multiarch(true),
            "s390x-linux-gnu"
        );
    }

    #[test]
    fn x86_64_flags_are_the_ones_used_before_the_list_was_shared() {
        let arch = BpfArch::of("x86_64").unwrap();
        assert_eq!(
            cflags(arch),
            ["-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86"]
        );
        assert_eq!(
            arch.multiarch_include_dir(false),
            "/usr/include/x86_64-linux-gnu"
        );
    }

    #[test]
    fn the_running_architecture_is_known() {
        // The build script refuses to build for an unknown one.
        let arch = BpfArch::of(std::env::consts::ARCH).unwrap();
        assert_eq!(arch.rust, std::env::consts::ARCH);
    }

    #[test]
    fn an_unknown_architecture_is_named_in_the_error() {
        for name in ["mips64", "x86", "arm", "i686", "powerpc", ""] {
            let e = BpfArch::of(name).unwrap_err();
            assert_eq!(e, UnsupportedArch(name.to_string()));
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("unsupported architecture `{name}`: ")),
                "{text}"
            );
            assert!(text.contains("x86_64, aarch64, riscv64, powerpc64, s390x, loongarch64"));
        }
    }
}
