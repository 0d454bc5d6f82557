//! The file a process would load for a library it has not mapped yet, found
//! the way its dynamic loader would find it: the executable's `DT_RPATH`
//! (without `DT_RUNPATH`), the process's `LD_LIBRARY_PATH`, `DT_RUNPATH`, the
//! `ld.so.cache` of the process's root, and the default directories, all seen
//! from the process's root.
//!
//! Why: a uprobe registered on a file with a pid filter is put by the kernel
//! into every later mapping of that file by that process. Attaching to the
//! file before the process `dlopen`s it counts every call from the first one,
//! however late the library comes, with no polling.

use super::ld_so_cache;
use crate::elf::{ElfCache, ElfInfo};
use std::path::{Path, PathBuf};

/// The default directories of the loader, after the cache.
fn default_dirs() -> Vec<String> {
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
}

/// What the loader of one process (or of a binary no process runs yet) knows.
pub struct LoaderView<'a> {
    /// The executable, as the process sees it (for `$ORIGIN`).
    pub exe: &'a Path,
    /// The executable's ELF facts (its RPATH and RUNPATH), if readable.
    pub exe_info: Option<&'a ElfInfo>,
    /// `LD_LIBRARY_PATH` from the process's environment.
    pub ld_library_path: Option<String>,
    /// How the exporter opens a path as the process sees it.
    pub host_path: &'a dyn Fn(&Path) -> PathBuf,
}

/// A library found on the loader's search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// As the process sees it.
    pub path: PathBuf,
    /// As the exporter and the kernel open it.
    pub host_path: PathBuf,
    /// Which step found it (`LD_LIBRARY_PATH`, `RUNPATH`, `ld.so.cache`, ...).
    pub via: &'static str,
}

/// Finds `wanted` (a file name such as `libfoo.so.1`, or a short name such as
/// `foo` or `libfoo`, matched by `matches`) as the loader would. On failure,
/// the places searched, for the error message.
pub fn find(
    view: &LoaderView<'_>,
    wanted: &str,
    matches: &dyn Fn(&Path, &str) -> bool,
    elf: &mut ElfCache,
) -> Result<Found, Vec<String>> {
    let origin_dir = view
        .exe
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let expand = |dir: &String| expand_origin(dir, &origin_dir);
    let (rpath, runpath) = view
        .exe_info
        .map(|i| (i.rpath.clone(), i.runpath.clone()))
        .unwrap_or_default();
    let mut steps: Vec<(&'static str, Vec<String>)> = Vec::new();
    // DT_RPATH counts only when there is no DT_RUNPATH.
    if runpath.is_empty() && !rpath.is_empty() {
        steps.push(("RPATH", rpath.iter().map(expand).collect()));
    }
    if let Some(dirs) = &view.ld_library_path {
        let dirs: Vec<String> = dirs
            .split([':', ';'])
            .filter(|d| !d.is_empty())
            .map(|d| expand(&d.to_string()))
            .collect();
        if !dirs.is_empty() {
            steps.push(("LD_LIBRARY_PATH", dirs));
        }
    }
    if !runpath.is_empty() {
        steps.push(("RUNPATH", runpath.iter().map(expand).collect()));
    }
    let mut searched = Vec::new();
    for (via, dirs) in &steps {
        for dir in dirs {
            if let Some(found) = in_dir(view, Path::new(dir), wanted, matches, elf) {
                return Ok(Found { via, ..found });
            }
        }
        searched.push(format!("{via} ({})", dirs.join(":")));
    }
    match from_cache(view, wanted, matches, elf) {
        Ok(Some(found)) => return Ok(found),
        Ok(None) => searched.push("ld.so.cache".to_string()),
        Err(why) => searched.push(format!("ld.so.cache ({why})")),
    }
    let defaults = default_dirs();
    for dir in &defaults {
        if let Some(found) = in_dir(view, Path::new(dir), wanted, matches, elf) {
            return Ok(Found {
                via: "default directories",
                ..found
            });
        }
    }
    searched.push(format!("default directories ({})", defaults.join(":")));
    Err(searched)
}

/// `$ORIGIN` and `${ORIGIN}` replaced by the executable's directory.
fn expand_origin(dir: &str, origin: &str) -> String {
    dir.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
}

/// A loadable ELF library named like `wanted` in `dir`.
fn in_dir(
    view: &LoaderView<'_>,
    dir: &Path,
    wanted: &str,
    matches: &dyn Fn(&Path, &str) -> bool,
    elf: &mut ElfCache,
) -> Option<Found> {
    let host_dir = (view.host_path)(dir);
    // A file name is looked up directly; a short name needs the listing.
    let mut names: Vec<String> = if wanted.contains(".so") {
        vec![wanted.to_string()]
    } else {
        std::fs::read_dir(&host_dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| matches(Path::new(name), wanted))
            .collect()
    };
    // The shortest name is the least specific one the user most likely meant
    // (`libfoo.so` over `libfoo.so.1.2.3`); they are usually one file.
    names.sort_by_key(|n| (n.len(), n.clone()));
    names.into_iter().find_map(|name| {
        let host_path = host_dir.join(&name);
        // `libc.so` is a linker script, not a library: only ELF files count.
        elf.get(&host_path).ok()?;
        Some(Found {
            path: dir.join(&name),
            host_path,
            via: "",
        })
    })
}

/// `wanted` in the `ld.so.cache` of the process's root.
fn from_cache(
    view: &LoaderView<'_>,
    wanted: &str,
    matches: &dyn Fn(&Path, &str) -> bool,
    elf: &mut ElfCache,
) -> Result<Option<Found>, String> {
    let cache_path = (view.host_path)(Path::new("/etc/ld.so.cache"));
    let data = match std::fs::read(&cache_path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let libraries = ld_so_cache::parse(&data).map_err(|e| e.to_string())?;
    for library in libraries {
        let named = if wanted.contains(".so") {
            library.name == wanted
        } else {
            matches(Path::new(&library.name), wanted)
        };
        if !named {
            continue;
        }
        let host_path = (view.host_path)(&library.path);
        if elf.get(&host_path).is_ok() {
            return Ok(Some(Found {
                path: library.path,
                host_path,
                via: "ld.so.cache",
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(path: &Path) -> PathBuf {
        path.to_path_buf()
    }

    fn by_name(path: &Path, wanted: &str) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("lib{wanted}.so")))
    }

    #[test]
    fn origin_is_expanded_both_ways() {
        assert_eq!(
            expand_origin("$ORIGIN/../lib", "/opt/app/bin"),
            "/opt/app/bin/../lib"
        );
        assert_eq!(expand_origin("${ORIGIN}/x", "/a"), "/a/x");
        assert_eq!(expand_origin("/usr/lib", "/a"), "/usr/lib");
    }

    #[test]
    fn the_search_order_is_the_loaders() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // Any ELF file will do: the test binary itself.
        let elf_file = std::env::current_exe().unwrap();
        std::fs::copy(&elf_file, first.join("libdemo.so.1")).unwrap();
        std::fs::copy(&elf_file, second.join("libdemo.so.1")).unwrap();
        std::fs::write(second.join("libscript.so"), "INPUT(libother.so)").unwrap();
        let mut info = ElfInfo {
            runpath: vec![second.display().to_string()],
            ..ElfInfo::default()
        };
        let exe = Path::new("/opt/app/bin/app");
        let mut view = LoaderView {
            exe,
            exe_info: Some(&info),
            ld_library_path: Some(format!("/nonexistent:{}", first.display())),
            host_path: &same,
        };
        let mut elf = ElfCache::new(8);
        let found = find(&view, "demo", &by_name, &mut elf).unwrap();
        assert_eq!(
            (found.path, found.via),
            (first.join("libdemo.so.1"), "LD_LIBRARY_PATH")
        );
        view.ld_library_path = None;
        let found = find(&view, "libdemo.so.1", &by_name, &mut elf).unwrap();
        assert_eq!(
            (found.path, found.via),
            (second.join("libdemo.so.1"), "RUNPATH")
        );
        // A linker script is not a library; nothing else has that name.
        let searched = find(&view, "script", &by_name, &mut elf).unwrap_err();
        assert_eq!(searched.len(), 3, "{searched:?}");
        assert!(searched[0].starts_with("RUNPATH ("), "{searched:?}");
        assert!(searched[1].starts_with("ld.so.cache"), "{searched:?}");
        assert!(
            searched[2].starts_with("default directories ("),
            "{searched:?}"
        );
        // RPATH counts only without RUNPATH.
        info.rpath = vec!["$ORIGIN/../lib".into()];
        let view = LoaderView {
            exe,
            exe_info: Some(&info),
            ld_library_path: None,
            host_path: &same,
        };
        let searched = find(&view, "nothing-here", &by_name, &mut elf).unwrap_err();
        assert!(
            !searched.iter().any(|s| s.starts_with("RPATH")),
            "{searched:?}"
        );
    }

    #[test]
    fn libc_is_found_in_this_machines_cache() {
        let info = ElfInfo::default();
        let view = LoaderView {
            exe: Path::new("/usr/bin/true"),
            exe_info: Some(&info),
            ld_library_path: None,
            host_path: &same,
        };
        let mut elf = ElfCache::new(8);
        let found = find(&view, "libc.so.6", &by_name, &mut elf).unwrap();
        assert_eq!(found.via, "ld.so.cache");
        assert!(found.path.ends_with("libc.so.6"), "{found:?}");
        // The short name skips the linker script /usr/lib/x86_64-linux-gnu/libc.so.
        let found = find(&view, "c", &by_name, &mut elf).unwrap();
        assert!(
            found.path.to_str().unwrap().contains("libc.so.6"),
            "{found:?}"
        );
    }
}
