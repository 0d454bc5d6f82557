//! `vmlinux.h` from the running kernel's BTF, so programs get kernel types
//! (`struct pt_regs`, `struct task_struct`) and CO-RE without kernel headers.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The kernel's BTF, as the kernel exposes it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why `vmlinux.h` could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    /// No BTF at all: the kernel lacks CONFIG_DEBUG_INFO_BTF.
    #[error("cannot read kernel BTF from {path}: {source}; the kernel needs CONFIG_DEBUG_INFO_BTF=y (or build objects elsewhere with `compile`)")]
    NoBtf {
        /// Path tried.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// libbpf could not dump a type.
    #[error("dumping BTF type {id} as C failed: {source}")]
    Dump {
        /// Type id.
        id: u32,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the header failed.
    #[error("writing {path}: {source}")]
    Write {
        /// Output path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

unsafe extern "C" fn print_to_fd(
    ctx: *mut std::os::raw::c_void,
    fmt: *const std::os::raw::c_char,
    args: *mut libbpf_sys::__va_list_tag,
) {
    // SAFETY: ctx carries the fd of the open output file; fmt/args come from libbpf.
    unsafe {
        libbpf_sys::vdprintf(ctx as usize as i32, fmt, args);
    }
}

/// Writes every type of the BTF at `btf_path` as C declarations to `out`.
pub fn write_vmlinux_h(btf_path: &Path, out: &Path) -> Result<(), VmlinuxError> {
    let c_path = CString::new(btf_path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    std::fs::metadata(btf_path).map_err(|source| VmlinuxError::NoBtf {
        path: btf_path.display().to_string(),
        source,
    })?;
    // SAFETY: c_path is a valid C string; the result is checked for errors.
    let btf = unsafe { libbpf_sys::btf__parse(c_path.as_ptr(), std::ptr::null_mut()) };
    let err = unsafe { libbpf_sys::libbpf_get_error(btf as *const _) };
    if btf.is_null() || err != 0 {
        return Err(VmlinuxError::NoBtf {
            path: btf_path.display().to_string(),
            source: std::io::Error::from_raw_os_error((-err) as i32),
        });
    }
    let write_err = |source| VmlinuxError::Write {
        path: out.display().to_string(),
        source,
    };
    let mut file = std::fs::File::create(out).map_err(write_err)?;
    let result = (|| {
        // Records get preserve_access_index so field accesses are CO-RE relocatable.
        file.write_all(
            b"#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
              #pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n",
        )
        .map_err(write_err)?;
        file.flush().map_err(write_err)?;
        let opts = libbpf_sys::btf_dump_opts {
            sz: std::mem::size_of::<libbpf_sys::btf_dump_opts>() as _,
        };
        // SAFETY: btf is valid; the callback writes to the file's fd, which outlives the dumper.
        let dumper = unsafe {
            libbpf_sys::btf_dump__new(
                btf,
                Some(print_to_fd),
                file.as_raw_fd() as usize as *mut _,
                &opts,
            )
        };
        if dumper.is_null() {
            return Err(VmlinuxError::Dump {
                id: 0,
                source: std::io::Error::last_os_error(),
            });
        }
        let count = unsafe { libbpf_sys::btf__type_cnt(btf) };
        let mut outcome = Ok(());
        for id in 1..count {
            let rc = unsafe { libbpf_sys::btf_dump__dump_type(dumper, id) };
            if rc < 0 {
                outcome = Err(VmlinuxError::Dump {
                    id,
                    source: std::io::Error::from_raw_os_error(-rc),
                });
                break;
            }
        }
        unsafe { libbpf_sys::btf_dump__free(dumper) };
        outcome?;
        file.write_all(b"#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n#endif /* __VMLINUX_H__ */\n")
            .map_err(write_err)
    })();
    unsafe { libbpf_sys::btf__free(btf) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_btf_dumps_to_a_header_with_kernel_types() {
        let found = if Path::new(KERNEL_BTF).exists() {
            Ok(())
        } else {
            Err("the kernel must be built with CONFIG_DEBUG_INFO_BTF".to_string())
        };
        if !crate::testing::require(KERNEL_BTF, found) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("vmlinux.h");
        write_vmlinux_h(Path::new(KERNEL_BTF), &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("#ifndef __VMLINUX_H__"));
        assert!(text.contains("struct pt_regs {"), "no struct pt_regs");
        assert!(
            text.contains("struct task_struct {"),
            "no struct task_struct"
        );
        assert!(text.trim_end().ends_with("#endif /* __VMLINUX_H__ */"));
        assert!(text.len() > 1_000_000, "only {} bytes", text.len());
    }

    #[test]
    fn missing_btf_says_what_the_kernel_needs() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            write_vmlinux_h(Path::new("/nonexistent/btf"), &dir.path().join("v.h")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
