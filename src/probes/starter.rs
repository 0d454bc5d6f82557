//! `probes --starter-config`: a config that counts every listed USDT probe,
//! ready to run as it is and to be edited into something better.
//!
//! One program, compiled from inline `code:` (bcc's dialect, as the original
//! project's examples): per probe, a one-slot `BPF_ARRAY`, a function that
//! increments it, and an unlabelled counter reading it. The program selects
//! the processes running the listed executable by `exe_path`, which outlives
//! the pid it was listed from.

use super::{Probe, TargetListing};
use crate::elf::ElfKind;
use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Probes a starter config leaves out unless `--usdt` picks them: enabling
/// them harms the process. (provider, name, why).
const HARMFUL: &[(&str, &str, &str)] = &[(
    "python",
    "line",
    "enabling it can crash CPython 3.11, and it fires on every line executed",
)];

/// Why no starter config could be written.
#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    /// The binary is a shared library: no process runs it, so nothing names
    /// the processes to select.
    #[error("{} is a shared library: a starter config selects the processes running an executable; give the executable with --binary, or --pid of a process that maps the library", path.display())]
    Library {
        /// The library.
        path: PathBuf,
    },
    /// Nothing to count.
    #[error("no USDT probes{} in {where_}: nothing to count", matching.as_deref().map(|g| format!(" matching {g:?}")).unwrap_or_default())]
    NoProbes {
        /// `binary PATH` or `the N ELF files process PID (comm) maps`.
        where_: String,
        /// The `--usdt` glob, if given.
        matching: Option<String>,
    },
    /// The process could not be listed.
    #[error("{0}")]
    Unlisted(String),
}

/// A starter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterConfig {
    /// The config file's text.
    pub yaml: String,
    /// How many probes it counts: each is a BPF program attached to every
    /// process selected.
    pub probes: usize,
}

/// One probe of the config, with the names its parts get.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted<'a> {
    probe: &'a Probe,
    file: &'a Path,
    /// The other files holding the same `provider:name` (the spec attaches to
    /// them too).
    also_in: Vec<&'a Path>,
    /// The base of every name: `python_gc_start`.
    ident: String,
}

/// The starter config for `target` (a process, or an executable file). `command` is the command line that asked for it (quoted in the
/// header); `usdt_glob` is the `--usdt` filter already applied to `target`,
/// which also lets through the probes left out by default.
///
/// # Errors
///
/// [`StarterError::Library`] for a shared library given as a binary,
/// [`StarterError::NoProbes`] when there is nothing to count.
pub fn starter_config(
    target: &TargetListing,
    command: &str,
    usdt_glob: Option<&str>,
) -> Result<StarterConfig, StarterError> {
    if let Some(error) = &target.error {
        return Err(StarterError::Unlisted(error.clone()));
    }
    if target.pid.is_none()
        && target
            .files
            .iter()
            .any(|f| f.kind == ElfKind::SharedLibrary)
    {
        return Err(StarterError::Library {
            path: target.exe.clone(),
        });
    }
    let mut left_out = Vec::new();
    let mut counted: Vec<Counted<'_>> = Vec::new();
    let mut idents = HashSet::new();
    for file in &target.files {
        for probe in &file.usdt {
            if let Some(c) = counted
                .iter_mut()
                .find(|c| c.probe.provider == probe.provider && c.probe.name == probe.name)
            {
                if !c.also_in.contains(&file.path.as_path()) && c.file != file.path {
                    c.also_in.push(&file.path);
                }
                continue;
            }
            if usdt_glob.is_none() {
                if let Some((_, _, why)) = HARMFUL
                    .iter()
                    .find(|(p, n, _)| *p == probe.provider && *n == probe.name)
                {
                    let spec = probe.spec();
                    if !left_out.iter().any(|(s, _)| *s == spec) {
                        left_out.push((spec, *why));
                    }
                    continue;
                }
            }
            let ident = unique(identifier(&probe.provider, &probe.name), &mut idents);
            counted.push(Counted {
                probe,
                file: &file.path,
                also_in: Vec::new(),
                ident,
            });
        }
    }
    if counted.is_empty() {
        let where_ = match (target.pid, &target.comm) {
            (Some(pid), Some(comm)) => format!(
                "the {} ELF file{} process {pid} ({comm}) maps",
                target.files.len(),
                if target.files.len() == 1 { "" } else { "s" }
            ),
            _ => format!("binary {}", target.exe.display()),
        };
        return Err(StarterError::NoProbes {
            where_,
            matching: usdt_glob.map(str::to_string),
        });
    }
    Ok(StarterConfig {
        yaml: yaml(target, command, &counted, &left_out),
        probes: counted.len(),
    })
}

fn yaml(
    target: &TargetListing,
    command: &str,
    counted: &[Counted<'_>],
    left_out: &[(String, &str)],
) -> String {
    let who = match (target.pid, &target.comm) {
        (Some(pid), Some(comm)) => format!("process {pid} ({comm}), {}", target.exe.display()),
        _ => target.exe.display().to_string(),
    };
    let exe = selected_exe(target);
    let name = exe
        .file_name()
        .map_or_else(|| "starter".into(), |n| n.to_string_lossy().into_owned());
    let mut out = String::new();
    let _ = writeln!(out, "# Written by `{command}`:");
    let _ = writeln!(
        out,
        "# a counter per USDT probe of {who} ({} probes).",
        counted.len()
    );
    out.push_str(
        "# Runs as it is: `ebpf-userspace-exporter check -c FILE` loads it through the\n\
         # verifier, `ebpf-userspace-exporter -c FILE` serves the counts. Each probe's\n\
         # arguments are noted above its counter: read one in its function with\n\
         # bpf_usdt_readarg(N, ctx, &value) to count by it (README, \"The probes subcommand\").\n",
    );
    for (spec, why) in left_out {
        let _ = writeln!(
            out,
            "# Left out: {spec} ({why}); add it by hand, or pick it with --usdt."
        );
    }
    out.push_str("programs:\n");
    let _ = writeln!(out, "  - name: {}", quote(&name));
    out.push_str("    # Every process running this executable, whatever its pid.\n");
    out.push_str("    attachment:\n");
    let _ = writeln!(
        out,
        "      exe_path: {}",
        quote(&escape_glob(&exe.to_string_lossy()))
    );
    out.push_str("    metrics:\n      counters:\n");
    for c in counted {
        let mut about = vec![format!("{} in {}", c.probe.spec(), c.file.display())];
        if !c.also_in.is_empty() {
            let also: Vec<String> = c.also_in.iter().map(|p| p.display().to_string()).collect();
            about.push(format!("also in {}", also.join(", ")));
        }
        if c.probe.sites.len() > 1 {
            about.push(format!("{} sites", c.probe.sites.len()));
        }
        if c.probe.semaphore.is_some() {
            about.push("semaphore-guarded".into());
        }
        let args = c.probe.arg_specs().join(" | ");
        about.push(if args.is_empty() {
            "no arguments".into()
        } else {
            format!("arguments: {args}")
        });
        let _ = writeln!(out, "        # {}", about.join("; "));
        let _ = writeln!(out, "        - name: {}_total", c.ident);
        let _ = writeln!(
            out,
            "          help: {}",
            quote(&format!("Times USDT probe {} fired", c.probe.spec()))
        );
        let _ = writeln!(out, "          table: {}_hits", c.ident);
    }
    out.push_str("    usdt:\n");
    for c in counted {
        let _ = writeln!(out, "      {}: on_{}", quote(&c.probe.spec()), c.ident);
    }
    out.push_str("    code: |\n");
    for (i, c) in counted.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(
            out,
            "      BPF_ARRAY({ident}_hits, u64, 1);\n\
             \n      int on_{ident}(struct pt_regs *ctx) {{\n\
             \x20         {ident}_hits.increment(0);\n\
             \x20         return 0;\n\
             \x20     }}\n",
            ident = c.ident
        );
    }
    out
}

/// The executable the config selects: the process's, or the binary's real
/// path (`/proc/PID/exe` shows the target of symbolic links, absolute).
fn selected_exe(target: &TargetListing) -> PathBuf {
    if target.pid.is_some() {
        return target.exe.clone();
    }
    std::fs::canonicalize(&target.exe).unwrap_or_else(|_| target.exe.clone())
}

/// `args` as a shell command line, for the header comment: words holding
/// anything but letters, digits and `-_./:=@,%+` single-quoted.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `provider_name` made a valid metric name and C identifier: runs of
/// anything but ASCII letters and digits become one `_` (so `gc__start` is
/// `gc_start`), no `_` at either end, and a leading digit gets `usdt_` before it.
fn identifier(provider: &str, name: &str) -> String {
    let mut out = String::new();
    for c in format!("{provider}_{name}").chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_');
    match out.chars().next() {
        None => "usdt".into(),
        Some(c) if c.is_ascii_digit() => format!("usdt_{out}"),
        Some(_) => out.to_string(),
    }
}

/// `ident`, or `ident_2`, `ident_3` ... when taken; remembers the result.
fn unique(ident: String, taken: &mut HashSet<String>) -> String {
    let mut candidate = ident.clone();
    let mut n = 1;
    while !taken.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{ident}_{n}");
    }
    candidate
}

/// A YAML double-quoted scalar: JSON's string syntax is YAML's.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

/// A path as an `exe_path` glob matching exactly it.
fn escape_glob(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::{FileListing, Site};

    fn probe(provider: &str, name: &str, semaphore: Option<u64>, args: &[&str]) -> Probe {
        Probe {
            provider: provider.into(),
            name: name.into(),
            semaphore,
            sites: args
                .iter()
                .enumerate()
                .map(|(i, a)| Site {
                    address: 0x1000 + i as u64,
                    args: a.to_string(),
                })
                .collect(),
        }
    }

    fn python() -> TargetListing {
        TargetListing {
            pid: Some(4242),
            comm: Some("python3.11".into()),
            exe: "/usr/bin/python3.11".into(),
            error: None,
            files: vec![
                FileListing {
                    path: "/usr/bin/python3.11".into(),
                    usdt: vec![
                        probe("python", "gc__done", Some(0xa84270), &["-8@%r12"]),
                        probe("python", "gc__start", Some(0xa8426e), &["-4@112(%rsp)"]),
                        probe("python", "line", Some(0xa8426c), &["8@%r14"]),
                    ],
                    kind: ElfKind::Executable,
                    ..Default::default()
                },
                FileListing {
                    path: "/usr/lib/libpython3.11.so.1.0".into(),
                    usdt: vec![probe("python", "gc__start", None, &["-4@%edi", "-4@%ebx"])],
                    kind: ElfKind::SharedLibrary,
                    ..Default::default()
                },
                FileListing {
                    path: "/usr/lib/libx.so".into(),
                    usdt: vec![
                        probe("x", "gc_start", None, &[""]),
                        probe("9p", "a-b", None, &[""]),
                    ],
                    kind: ElfKind::SharedLibrary,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn command_lines_are_quoted_for_the_shell() {
        let args: Vec<String> = [
            "probes",
            "--usdt",
            "python:gc__*",
            "--binary",
            "/a b/it's",
            "",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_words(&args),
            r"probes --usdt 'python:gc__*' --binary '/a b/it'\''s' ''"
        );
    }

    #[test]
    fn names_are_valid_and_unique() {
        assert_eq!(identifier("python", "gc__start"), "python_gc_start");
        assert_eq!(
            identifier("hotspot_jni", "AllocObject__entry"),
            "hotspot_jni_AllocObject_entry"
        );
        assert_eq!(identifier("9p", "a-b."), "usdt_9p_a_b");
        assert_eq!(identifier("_", "__"), "usdt");
        let mut taken = HashSet::new();
        assert_eq!(unique("a_b".into(), &mut taken), "a_b");
        assert_eq!(unique("a_b".into(), &mut taken), "a_b_2");
        assert_eq!(unique("a_b".into(), &mut taken), "a_b_3");
        assert_eq!(
            escape_glob("/opt/a*b/[x]{y}\\z?"),
            "/opt/a\\*b/\\[x\\]\\{y\\}\\\\z\\?"
        );
        assert_eq!(quote("say \"hi\"\\"), r#""say \"hi\"\\""#);
    }

    #[test]
    fn the_config_counts_each_probe_once_and_leaves_harmful_ones_out() {
        let config = starter_config(&python(), "probes --pid 4242 --starter-config", None).unwrap();
        assert_eq!(config.probes, 4);
        let text = config.yaml;
        let expected = r#"# Written by `probes --pid 4242 --starter-config`:
# a counter per USDT probe of process 4242 (python3.11), /usr/bin/python3.11 (4 probes).
# Runs as it is: `ebpf-userspace-exporter check -c FILE` loads it through the
# verifier, `ebpf-userspace-exporter -c FILE` serves the counts. Each probe's
# arguments are noted above its counter: read one in its function with
# bpf_usdt_readarg(N, ctx, &value) to count by it (README, "The probes subcommand").
# Left out: python:line (enabling it can crash CPython 3.11, and it fires on every line executed); add it by hand, or pick it with --usdt.
programs:
  - name: "python3.11"
    # Every process running this executable, whatever its pid.
    attachment:
      exe_path: "/usr/bin/python3.11"
    metrics:
      counters:
        # python:gc__done in /usr/bin/python3.11; semaphore-guarded; arguments: -8@%r12
        - name: python_gc_done_total
          help: "Times USDT probe python:gc__done fired"
          table: python_gc_done_hits
        # python:gc__start in /usr/bin/python3.11; also in /usr/lib/libpython3.11.so.1.0; semaphore-guarded; arguments: -4@112(%rsp)
        - name: python_gc_start_total
          help: "Times USDT probe python:gc__start fired"
          table: python_gc_start_hits
        # x:gc_start in /usr/lib/libx.so; no arguments
        - name: x_gc_start_total
          help: "Times USDT probe x:gc_start fired"
          table: x_gc_start_hits
        # 9p:a-b in /usr/lib/libx.so; no arguments
        - name: usdt_9p_a_b_total
          help: "Times USDT probe 9p:a-b fired"
          table: usdt_9p_a_b_hits
    usdt:
      "python:gc__done": on_python_gc_done
      "python:gc__start": on_python_gc_start
      "x:gc_start": on_x_gc_start
      "9p:a-b": on_usdt_9p_a_b
    code: |
      BPF_ARRAY(python_gc_done_hits, u64, 1);

      int on_python_gc_done(struct pt_regs *ctx) {
          python_gc_done_hits.increment(0);
          return 0;
      }

      BPF_ARRAY(python_gc_start_hits, u64, 1);

      int on_python_gc_start(struct pt_regs *ctx) {
          python_gc_start_hits.increment(0);
          return 0;
      }

      BPF_ARRAY(x_gc_start_hits, u64, 1);

      int on_x_gc_start(struct pt_regs *ctx) {
          x_gc_start_hits.increment(0);
          return 0;
      }

      BPF_ARRAY(usdt_9p_a_b_hits, u64, 1);

      int on_usdt_9p_a_b(struct pt_regs *ctx) {
          usdt_9p_a_b_hits.increment(0);
          return 0;
      }
"#;
        assert_eq!(text, expected);

        // It is a valid config: every name, spec and selector passes validation.
        let config = crate::config::Config::parse(Path::new("starter.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let program = &config.programs[0].value;
        assert_eq!(program.probes().len(), 4);
        assert_eq!(program.metrics.counters.len(), 4);
        assert!(config.warnings().is_empty());
        let selector = crate::discovery::Selector::new(&program.attachment().unwrap().value);
        assert_eq!(selector.describe(), "exe_path=/usr/bin/python3.11");
    }

    #[test]
    fn a_usdt_filter_picks_harmful_probes_too_and_names_clash_no_more() {
        let mut target = python();
        target.files.truncate(1);
        target.files[0]
            .usdt
            .push(probe("python", "gc_done", None, &[""]));
        target.exe = "/opt/my*app/python".into();
        let text = starter_config(&target, "probes", Some("python:*"))
            .unwrap()
            .yaml;
        assert!(!text.contains("Left out"), "{text}");
        for name in [
            "python_gc_done_total",
            "python_gc_done_2_total",
            "python_line_total",
        ] {
            assert!(
                text.contains(&format!("- name: {name}\n")),
                "{name}: {text}"
            );
        }
        assert!(
            text.contains(r#"exe_path: "/opt/my\\*app/python""#),
            "{text}"
        );
        let config = crate::config::Config::parse(Path::new("starter.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let selector =
            crate::discovery::Selector::new(&config.programs[0].value.attachment().unwrap().value);
        let process = |exe: &str| {
            crate::discovery::ProcessInfo::new(
                crate::discovery::ProcessKey {
                    pid: i32::MAX,
                    start_time: 1,
                },
                "python".into(),
                exe.into(),
                1,
            )
        };
        assert!(selector.matches(&process("/opt/my*app/python")));
        assert!(!selector.matches(&process("/opt/myXapp/python")));
    }

    #[test]
    fn libraries_and_empty_listings_are_refused_with_the_reason() {
        let library = TargetListing {
            exe: "/usr/lib/libx.so".into(),
            files: vec![python().files.remove(2)],
            ..Default::default()
        };
        assert_eq!(
            starter_config(&library, "probes", None).unwrap_err().to_string(),
            "/usr/lib/libx.so is a shared library: a starter config selects the processes running an executable; give the executable with --binary, or --pid of a process that maps the library"
        );
        let mut empty = python();
        for f in &mut empty.files {
            f.usdt.clear();
        }
        assert_eq!(
            starter_config(&empty, "probes", Some("nope:*")).unwrap_err().to_string(),
            "no USDT probes matching \"nope:*\" in the 3 ELF files process 4242 (python3.11) maps: nothing to count"
        );
        // Only a harmful probe: nothing left to count.
        let mut only_line = python();
        only_line.files.truncate(1);
        only_line.files[0].usdt.retain(|p| p.name == "line");
        assert_eq!(
            starter_config(&only_line, "probes", None)
                .unwrap_err()
                .to_string(),
            "no USDT probes in the 1 ELF file process 4242 (python3.11) maps: nothing to count"
        );
    }
}
