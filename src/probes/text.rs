//! The `probes` listing as text for people: one block per process or binary,
//! then one aligned table per file with something to show.

use super::{FileListing, Listing, Probe, TargetListing};
use std::fmt::Write;

/// Which filters were given, to say what an empty table means.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown<'a> {
    /// The `--usdt` glob.
    pub usdt: Option<&'a str>,
    /// The `--functions` glob.
    pub functions: Option<&'a str>,
}

/// Renders the listing. Files without anything to show are named on one line
/// at the end of their process; a process whose files are the same as an
/// earlier one's (several workers of one server) refers to it.
pub fn render(listing: &Listing, shown: Shown<'_>) -> String {
    let mut out = String::new();
    if let Some(programs) = &listing.programs {
        for program in programs {
            let _ = write!(out, "program {:?} ({}): ", program.name, program.selector);
            let _ = match program.pids.as_slice() {
                [] => writeln!(out, "no process selected now"),
                [pid] => writeln!(out, "1 process: {pid}"),
                pids => writeln!(
                    out,
                    "{} processes: {}",
                    pids.len(),
                    pids.iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
    }
    for (i, target) in listing.targets.iter().enumerate() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&heading(target));
        if let Some(error) = &target.error {
            let _ = writeln!(out, ": {error}");
            continue;
        }
        let earlier = listing.targets[..i]
            .iter()
            .find(|t| t.error.is_none() && t.files == target.files);
        if let Some(earlier) = earlier {
            let _ = writeln!(out, ": the same files and probes as {}", who(earlier));
            continue;
        }
        out.push('\n');
        render_files(&mut out, target, shown);
    }
    out
}

/// `process 1234 (python3.11) /usr/bin/python3.11` or `binary /path`.
fn heading(target: &TargetListing) -> String {
    format!("{} {}", who(target), target.exe.display())
}

/// `process 1234 (python3.11)` or `binary`.
fn who(target: &TargetListing) -> String {
    match (target.pid, &target.comm) {
        (Some(pid), Some(comm)) => format!("process {pid} ({comm})"),
        _ => "binary".to_string(),
    }
}

fn render_files(out: &mut String, target: &TargetListing, shown: Shown<'_>) {
    let mut quiet = Vec::new();
    let mut shown_any = false;
    for file in &target.files {
        let functions = file.functions.as_deref().unwrap_or_default();
        if let Some(error) = &file.error {
            let _ = writeln!(out, "  {}: cannot read: {error}", file.path.display());
            shown_any = true;
            continue;
        }
        // A binary given on the command line is always shown, even empty.
        if file.usdt.is_empty() && functions.is_empty() && target.pid.is_some() {
            quiet.push(file);
            continue;
        }
        let _ = writeln!(out, "  {}", file.path.display());
        shown_any = true;
        render_probes(out, file, shown);
        if shown.functions.is_some() {
            render_functions(out, file, shown);
        }
    }
    if !quiet.is_empty() {
        let names: Vec<String> = quiet
            .iter()
            .map(|f| {
                f.path.file_name().map_or_else(
                    || f.path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            })
            .collect();
        let what = match (shown.usdt, shown.functions) {
            (None, None) => "no USDT probes".to_string(),
            (Some(u), None) => format!("no USDT probes matching {u:?}"),
            (None, Some(f)) => format!("no USDT probes, no functions matching {f:?}"),
            (Some(u), Some(f)) => {
                format!("no USDT probes matching {u:?}, no functions matching {f:?}")
            }
        };
        let _ = write!(
            out,
            "  {}{} ELF file{} with {what}:",
            quiet.len(),
            if shown_any { " more" } else { "" },
            if quiet.len() == 1 { "" } else { "s" },
        );
        let current = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
        out.push_str(&wrapped(&names, WIDTH.saturating_sub(current)));
    }
}

/// Lines are wrapped before this many columns where that is up to us.
const WIDTH: usize = 100;

/// `names` separated by `, `: on the current line when they fit in `room`
/// columns (after a space), else on lines of their own indented by four
/// spaces, wrapped before [`WIDTH`].
fn wrapped(names: &[String], room: usize) -> String {
    let joined = names.join(", ");
    if joined.len() < room {
        return format!(" {joined}\n");
    }
    let mut out = String::new();
    let mut line = String::from("   ");
    for (i, name) in names.iter().enumerate() {
        let piece = if i + 1 < names.len() {
            format!(" {name},")
        } else {
            format!(" {name}")
        };
        if line.len() > 3 && line.len() + piece.len() > WIDTH {
            out.push('\n');
            out.push_str(&line);
            line = String::from("   ");
        }
        line.push_str(&piece);
    }
    out.push('\n');
    out.push_str(&line);
    out.push('\n');
    out
}

fn render_probes(out: &mut String, file: &FileListing, shown: Shown<'_>) {
    if file.usdt.is_empty() {
        let _ = match shown.usdt {
            Some(glob) => writeln!(out, "    no USDT probes matching {glob:?}"),
            None => writeln!(out, "    no USDT probes"),
        };
        return;
    }
    let rows: Vec<[String; 4]> = file
        .usdt
        .iter()
        .map(|p: &Probe| {
            [
                p.spec(),
                p.sites.len().to_string(),
                p.semaphore
                    .map_or_else(|| "-".into(), |s| format!("{s:#x}")),
                // Sites reading their arguments differently: each way once,
                // on a line of its own.
                p.arg_specs().join("\n"),
            ]
        })
        .collect();
    table(
        out,
        ["USDT PROBE", "SITES", "SEMAPHORE", "ARGUMENTS"],
        &rows,
        1,
    );
}

fn render_functions(out: &mut String, file: &FileListing, shown: Shown<'_>) {
    let functions = file.functions.as_deref().unwrap_or_default();
    if functions.is_empty() {
        let _ = writeln!(
            out,
            "    no functions matching {:?}",
            shown.functions.unwrap_or("*")
        );
        return;
    }
    if functions.iter().any(|f| f.demangled.is_some()) {
        // A C++ function by its demangled name, a valid spec and what a
        // reader looks for, sorted by it; its symbol last.
        let mut rows: Vec<[String; 3]> = functions
            .iter()
            .map(|f| match &f.demangled {
                Some(demangled) => [
                    demangled.clone(),
                    format!("{:#x}", f.address),
                    f.name.clone(),
                ],
                None => [f.name.clone(), format!("{:#x}", f.address), String::new()],
            })
            .collect();
        rows.sort();
        table(out, ["FUNCTION", "ADDRESS", "SYMBOL"], &rows, usize::MAX);
        return;
    }
    let rows: Vec<[String; 2]> = functions
        .iter()
        .map(|f| [f.name.clone(), format!("{:#x}", f.address)])
        .collect();
    table(out, ["FUNCTION", "ADDRESS"], &rows, usize::MAX);
}

/// Writes a table indented by four spaces, columns padded to their widest
/// cell; column `right` (if any) is right-aligned. The last column is not
/// padded, and its lines after the first (a cell may hold several) go on
/// lines of their own, under it.
fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]], right: usize) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last_column = 4 + widths[..N - 1].iter().map(|w| w + 2).sum::<usize>();
    let line = |out: &mut String, cells: [&str; N]| {
        let mut text = String::from("    ");
        for (c, cell) in cells.iter().enumerate() {
            if c + 1 == N {
                let mut lines = cell.lines();
                text.push_str(lines.next().unwrap_or_default());
                for more in lines {
                    let _ = write!(text, "\n{:last_column$}{more}", "");
                }
            } else if c == right {
                let _ = write!(text, "{cell:>w$}  ", w = widths[c]);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, header);
    for row in rows {
        line(out, std::array::from_fn(|c| row[c].as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::{Function, ProgramMatch, Site};

    fn probe(provider: &str, name: &str, semaphore: Option<u64>, sites: &[(u64, &str)]) -> Probe {
        Probe {
            provider: provider.into(),
            name: name.into(),
            semaphore,
            sites: sites
                .iter()
                .map(|(address, args)| Site {
                    address: *address,
                    args: args.to_string(),
                })
                .collect(),
        }
    }

    fn process(pid: i32, files: Vec<FileListing>) -> TargetListing {
        TargetListing {
            pid: Some(pid),
            comm: Some("app".into()),
            exe: "/usr/bin/app".into(),
            error: None,
            files,
        }
    }

    fn app_files() -> Vec<FileListing> {
        vec![
            FileListing {
                path: "/usr/bin/app".into(),
                usdt: vec![
                    probe("app", "gc__start", Some(0xa8426e), &[(0x10, "-4@%edi")]),
                    probe(
                        "app",
                        "request__done",
                        None,
                        &[(0x20, "8@%rax"), (0x30, "8@%rbx"), (0x40, "8@%rax")],
                    ),
                ],
                ..Default::default()
            },
            FileListing {
                path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                ..Default::default()
            },
            FileListing {
                path: "/usr/lib/x86_64-linux-gnu/libm.so.6".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn process_tables_are_aligned_and_quiet_files_summed_up() {
        let listing = Listing {
            targets: vec![process(7, app_files())],
            programs: None,
        };
        assert_eq!(
            render(&listing, Shown::default()),
            "process 7 (app) /usr/bin/app
  /usr/bin/app
    USDT PROBE         SITES  SEMAPHORE  ARGUMENTS
    app:gc__start          1  0xa8426e   -4@%edi
    app:request__done      3  -          8@%rax
                                         8@%rbx
  2 more ELF files with no USDT probes: libc.so.6, libm.so.6
"
        );
    }

    #[test]
    fn programs_functions_errors_and_repeated_processes() {
        let mut files = app_files();
        files[1].functions = Some(vec![
            Function {
                demangled: None,
                name: "malloc".into(),
                address: 0xa5f00,
            },
            Function {
                demangled: None,
                name: "malloc_usable_size".into(),
                address: 0xa6b40,
            },
        ]);
        files[0].functions = Some(Vec::new());
        files[2].functions = Some(Vec::new());
        files.push(FileListing {
            path: "/opt/secret.so".into(),
            error: Some("cannot read /proc/7/map_files/1-2: Permission denied".into()),
            ..Default::default()
        });
        let listing = Listing {
            targets: vec![
                process(7, files.clone()),
                process(8, files),
                TargetListing {
                    error: Some("process 9 exited".into()),
                    ..process(9, Vec::new())
                },
            ],
            programs: Some(vec![
                ProgramMatch {
                    name: "app".into(),
                    selector: "binary_name=app".into(),
                    pids: vec![7, 8, 9],
                },
                ProgramMatch {
                    name: "idle".into(),
                    selector: "exe_path=/usr/bin/idle".into(),
                    pids: Vec::new(),
                },
            ]),
        };
        let shown = Shown {
            usdt: None,
            functions: Some("malloc*"),
        };
        assert_eq!(
            render(&listing, shown),
            r#"program "app" (binary_name=app): 3 processes: 7, 8, 9
program "idle" (exe_path=/usr/bin/idle): no process selected now

process 7 (app) /usr/bin/app
  /usr/bin/app
    USDT PROBE         SITES  SEMAPHORE  ARGUMENTS
    app:gc__start          1  0xa8426e   -4@%edi
    app:request__done      3  -          8@%rax
                                         8@%rbx
    no functions matching "malloc*"
  /usr/lib/x86_64-linux-gnu/libc.so.6
    no USDT probes
    FUNCTION            ADDRESS
    malloc              0xa5f00
    malloc_usable_size  0xa6b40
  /opt/secret.so: cannot read: cannot read /proc/7/map_files/1-2: Permission denied
  1 more ELF file with no USDT probes, no functions matching "malloc*": libm.so.6

process 8 (app) /usr/bin/app: the same files and probes as process 7 (app)

process 9 (app) /usr/bin/app: process 9 exited
"#
        );
    }

    #[test]
    fn a_process_without_probes_says_so() {
        let mut files = app_files();
        files[0].usdt.clear();
        let listing = Listing {
            targets: vec![process(7, files)],
            programs: None,
        };
        assert_eq!(
            render(&listing, Shown::default()),
            "process 7 (app) /usr/bin/app\n  3 ELF files with no USDT probes: app, libc.so.6, libm.so.6\n"
        );
    }

    #[test]
    fn long_lists_of_files_are_wrapped() {
        let names: Vec<String> = (0..12).map(|i| format!("libmodule{i:02}.so")).collect();
        assert_eq!(
            wrapped(&names[..2], 40),
            " libmodule00.so, libmodule01.so\n"
        );
        assert_eq!(
            wrapped(&names, 40),
            "
    libmodule00.so, libmodule01.so, libmodule02.so, libmodule03.so, libmodule04.so, libmodule05.so,
    libmodule06.so, libmodule07.so, libmodule08.so, libmodule09.so, libmodule10.so, libmodule11.so
"
        );
        assert!(wrapped(&names, 40).lines().all(|l| l.len() <= WIDTH));
    }

    #[test]
    fn a_binary_is_shown_even_without_probes() {
        let listing = Listing {
            targets: vec![TargetListing {
                exe: "/bin/true".into(),
                files: vec![FileListing {
                    path: "/bin/true".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            programs: None,
        };
        let shown = Shown {
            usdt: Some("x:*"),
            functions: None,
        };
        assert_eq!(
            render(&listing, shown),
            "binary /bin/true\n  /bin/true\n    no USDT probes matching \"x:*\"\n"
        );
    }

    #[test]
    fn demangled_functions_come_first_sorted_by_their_names() {
        let mut files = app_files();
        files[0].usdt.clear();
        files[0].functions = Some(vec![
            Function {
                name: "_ZN2v88internal4Heap8ScavengeEv".into(),
                address: 0x10f49c0,
                demangled: Some("v8::internal::Heap::Scavenge()".into()),
            },
            Function {
                name: "_ZN2v88internal4Heap11MarkCompactEv".into(),
                address: 0x110d240,
                demangled: Some("v8::internal::Heap::MarkCompact()".into()),
            },
            Function {
                name: "main".into(),
                address: 0x1000,
                demangled: None,
            },
        ]);
        files.truncate(1);
        let listing = Listing {
            targets: vec![process(7, files)],
            programs: None,
        };
        assert_eq!(
            render(
                &listing,
                Shown {
                    usdt: None,
                    functions: Some("*"),
                }
            ),
            "process 7 (app) /usr/bin/app
  /usr/bin/app
    no USDT probes
    FUNCTION                           ADDRESS    SYMBOL
    main                               0x1000
    v8::internal::Heap::MarkCompact()  0x110d240  _ZN2v88internal4Heap11MarkCompactEv
    v8::internal::Heap::Scavenge()     0x10f49c0  _ZN2v88internal4Heap8ScavengeEv
"
        );
    }
}
