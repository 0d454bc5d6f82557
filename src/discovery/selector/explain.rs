//! Why a selector does or does not select one process: a verdict per field,
//! as values, so that `check --pid` and the landing page say the same thing.
//!
//! [`Selector::explain`] compares every field (no short cut, unlike
//! [`Selector::matches`]), and reports what was compared with what.

use super::{read_pid_file_text, Criteria, Selector};
use crate::discovery::ProcessInfo;

/// Longest command line shown in a verdict; longer ones are cut (the regex
/// still sees all of it).
const CMDLINE_SHOWN: usize = 200;

/// Most ancestors named in a verdict.
const ANCESTORS_SHOWN: usize = 8;

/// Whether an explanation quotes command lines. They may hold secrets
/// (passwords passed as arguments): a page anyone on the network may read
/// hides them, the command line of the host shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandLines {
    /// Quoted (cut to a readable length).
    Shown,
    /// Only their length is told.
    Hidden,
}

/// The verdict on one selector field for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldVerdict {
    /// The field as written in the config (`binary_name`, `exe_path`, ...).
    pub field: &'static str,
    /// Whether the process matches it.
    pub matched: bool,
    /// What was compared with what: `comm "python3" is not "ruby"`.
    pub detail: String,
}

impl std::fmt::Display for FieldVerdict {
    /// `binary_name does not match: comm "python3" is not "ruby"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.matched {
            "matches"
        } else {
            "does not match"
        };
        write!(f, "{} {verb}: {}", self.field, self.detail)
    }
}

/// One `exclude:` entry of an alternative, judged: it excludes the process
/// when every field it gives matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExclusionVerdict {
    /// The entry in short (`exe_path=/usr/bin/foo`).
    pub describe: String,
    /// Its fields, in [`crate::config::SELECTOR_FIELDS`] order.
    pub fields: Vec<FieldVerdict>,
}

impl ExclusionVerdict {
    /// Whether it excludes the process.
    pub fn applies(&self) -> bool {
        !self.fields.is_empty() && self.fields.iter().all(|f| f.matched)
    }
}

/// One alternative of an `attachment:` (the whole of it when it is a single
/// mapping), judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternativeVerdict {
    /// The alternative in short (`binary_name=gunicorn, cmdline=~"--workers"`).
    pub describe: String,
    /// Its fields, in [`crate::config::SELECTOR_FIELDS`] order.
    pub fields: Vec<FieldVerdict>,
    /// Its `exclude:` entries, in file order.
    pub exclusions: Vec<ExclusionVerdict>,
}

impl AlternativeVerdict {
    /// Every field given matches (and there is at least one).
    pub fn fields_match(&self) -> bool {
        !self.fields.is_empty() && self.fields.iter().all(|f| f.matched)
    }

    /// The first exclusion that applies (0-based).
    pub fn excluded_by(&self) -> Option<usize> {
        self.exclusions.iter().position(ExclusionVerdict::applies)
    }

    /// Whether this alternative selects the process.
    pub fn selects(&self) -> bool {
        self.fields_match() && self.excluded_by().is_none()
    }
}

/// Why a selector does or does not select one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Whether it is selected: what [`Selector::matches`] says.
    pub selected: bool,
    /// The process is the exporter itself, which is never selected.
    pub own_process: bool,
    /// Each alternative, in file order.
    pub alternatives: Vec<AlternativeVerdict>,
}

/// One line of an explanation as the front ends show it: indented by
/// `depth`, `matched` saying whether it is good news (none: neutral).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Nesting level, from 0.
    pub depth: usize,
    /// The text.
    pub text: String,
    /// A verdict that holds (`Some(true)`), fails (`Some(false)`), or neither.
    pub matched: Option<bool>,
}

impl Line {
    /// A line at `depth`.
    pub fn new(depth: usize, text: impl Into<String>, matched: Option<bool>) -> Line {
        Line {
            depth,
            text: text.into(),
            matched,
        }
    }
}

impl Explanation {
    /// The verdicts as lines, starting at `depth`: the fields of a single
    /// alternative directly, several alternatives each under a header, each
    /// exclusion under its alternative.
    pub fn lines(&self, depth: usize) -> Vec<Line> {
        let mut out = Vec::new();
        if self.own_process {
            out.push(Line::new(
                depth,
                "this is the exporter's own process, which is never selected",
                Some(false),
            ));
        }
        if self.alternatives.is_empty() {
            out.push(Line::new(
                depth,
                "the attachment selects nothing (no selector given)",
                Some(false),
            ));
        }
        let many = self.alternatives.len() > 1;
        for (i, alternative) in self.alternatives.iter().enumerate() {
            let depth = if many {
                out.push(Line::new(
                    depth,
                    format!(
                        "alternative {} of {} ({}): {}",
                        i + 1,
                        self.alternatives.len(),
                        alternative.describe,
                        if alternative.selects() {
                            "selects"
                        } else {
                            "does not select"
                        }
                    ),
                    Some(alternative.selects()),
                ));
                depth + 1
            } else {
                depth
            };
            if alternative.fields.is_empty() {
                out.push(Line::new(
                    depth,
                    "no selector field given: selects nothing",
                    Some(false),
                ));
            }
            for field in &alternative.fields {
                out.push(Line::new(depth, field.to_string(), Some(field.matched)));
            }
            for (j, exclusion) in alternative.exclusions.iter().enumerate() {
                let applies = exclusion.applies();
                out.push(Line::new(
                    depth,
                    format!(
                        "exclude {} ({}): {}",
                        j + 1,
                        exclusion.describe,
                        if applies {
                            "applies, the process is excluded"
                        } else {
                            "does not apply"
                        }
                    ),
                    Some(!applies),
                ));
                for field in &exclusion.fields {
                    out.push(Line::new(depth + 1, field.to_string(), None));
                }
            }
        }
        out
    }
}

impl Selector {
    /// Judges every field of every alternative (and of its exclusions) against
    /// `process`. Fields that read `/proc` (command line, cgroup, ancestors)
    /// or a pid file are read here; `selected` is what [`Selector::matches`]
    /// answers.
    pub fn explain(&self, process: &ProcessInfo) -> Explanation {
        self.explain_with(process, CommandLines::Shown)
    }

    /// [`Selector::explain`], quoting command lines or not.
    pub fn explain_with(&self, process: &ProcessInfo, command_lines: CommandLines) -> Explanation {
        let own_process = process.pid() == crate::discovery::process::own_pid();
        let alternatives: Vec<AlternativeVerdict> = self
            .alternatives
            .iter()
            .map(|a| AlternativeVerdict {
                describe: a.require.describe(),
                fields: a.require.verdicts(process, command_lines),
                exclusions: a
                    .exclude
                    .iter()
                    .map(|e| ExclusionVerdict {
                        describe: e.describe(),
                        fields: e.verdicts(process, command_lines),
                    })
                    .collect(),
            })
            .collect();
        Explanation {
            selected: !own_process && alternatives.iter().any(AlternativeVerdict::selects),
            own_process,
            alternatives,
        }
    }
}

/// A command line as a verdict or a fact shows it.
fn shown_cmdline(cmdline: &str, command_lines: CommandLines) -> String {
    match command_lines {
        CommandLines::Shown => quoted_cut(cmdline, CMDLINE_SHOWN),
        CommandLines::Hidden => format!("the command line ({} bytes, hidden)", cmdline.len()),
    }
}

/// `text` quoted, cut to `max` characters (marked, with its full length).
fn quoted_cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes)", &text[..end], text.len()),
    }
}

impl Criteria {
    /// The verdict on each field given, in [`crate::config::SELECTOR_FIELDS`]
    /// order; the same comparisons as [`Criteria::matches`].
    fn verdicts(&self, p: &ProcessInfo, command_lines: CommandLines) -> Vec<FieldVerdict> {
        let mut out = Vec::new();
        let mut verdict = |field, matched, detail| {
            out.push(FieldVerdict {
                field,
                matched,
                detail,
            })
        };
        if let Some(name) = &self.binary_name {
            let matched = *name == p.comm;
            let verb = if matched { "is" } else { "is not" };
            verdict(
                "binary_name",
                matched,
                format!("comm {:?} {verb} {name:?}", p.comm),
            );
        }
        if let Some(glob) = &self.exe_path {
            let pattern = glob.glob().glob();
            if p.exe.as_os_str().is_empty() {
                verdict(
                    "exe_path",
                    false,
                    format!("the executable's path cannot be read (permission denied), so it cannot match glob {pattern:?}"),
                );
            } else {
                let exe = p.exe.to_string_lossy();
                let live = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
                let matched = glob.is_match(live);
                let verb = if matched { "matches" } else { "does not match" };
                verdict(
                    "exe_path",
                    matched,
                    format!("{exe} {verb} glob {pattern:?}"),
                );
            }
        }
        if let Some(regex) = &self.cmdline {
            let pattern = regex.as_str();
            match p.cmdline() {
                None => verdict(
                    "cmdline",
                    false,
                    format!(
                        "the command line cannot be read, so it cannot match regex {pattern:?}"
                    ),
                ),
                Some(cmdline) => {
                    let matched = regex.is_match(cmdline);
                    let verb = if matched { "matches" } else { "does not match" };
                    verdict(
                        "cmdline",
                        matched,
                        format!(
                            "{} {verb} regex {pattern:?}",
                            shown_cmdline(cmdline, command_lines)
                        ),
                    );
                }
            }
        }
        if let Some(name) = &self.parent_binary_name {
            if self.any_ancestor {
                let ancestors = p.ancestor_comms();
                let matched = ancestors.iter().any(|c| c == name);
                let mut shown: Vec<String> = ancestors
                    .iter()
                    .take(ANCESTORS_SHOWN)
                    .map(|c| format!("{c:?}"))
                    .collect();
                if ancestors.len() > ANCESTORS_SHOWN {
                    shown.push(format!("and {} more", ancestors.len() - ANCESTORS_SHOWN));
                }
                let detail = match (matched, ancestors.is_empty()) {
                    (true, _) => {
                        format!("an ancestor is {name:?} (ancestors: {})", shown.join(", "))
                    }
                    (false, true) => format!("the process has no ancestor left to be {name:?}"),
                    (false, false) => {
                        format!("no ancestor is {name:?} (ancestors: {})", shown.join(", "))
                    }
                };
                verdict("parent_binary_name (any_ancestor)", matched, detail);
            } else {
                match p.parent_comm() {
                    None => verdict(
                        "parent_binary_name",
                        false,
                        format!(
                            "the parent (pid {}) is gone or unreadable, so it cannot be {name:?}",
                            p.ppid
                        ),
                    ),
                    Some(parent) => {
                        let matched = parent == name;
                        let verb = if matched { "is" } else { "is not" };
                        verdict(
                            "parent_binary_name",
                            matched,
                            format!(
                                "the parent's comm {parent:?} (pid {}) {verb} {name:?}",
                                p.ppid
                            ),
                        );
                    }
                }
            }
        }
        if let Some(pid) = self.pid {
            let matched = pid == p.pid();
            let verb = if matched { "is" } else { "is not" };
            verdict("pid", matched, format!("pid {} {verb} {pid}", p.pid()));
        }
        if let Some(file) = &self.pid_file {
            let path = file.path.display();
            let detail = match read_pid_file_text(&file.path) {
                Err(e) => (false, format!("cannot read {path}: {e}")),
                Ok(text) => match text.trim().parse::<i32>().ok().filter(|&pid| pid > 0) {
                    None => (
                        false,
                        format!(
                            "{path} holds {}, not a process id",
                            quoted_cut(text.trim(), 40)
                        ),
                    ),
                    Some(pid) if pid == p.pid() => (true, format!("{path} holds {pid}")),
                    Some(pid) => (false, format!("{path} holds {pid}, not {}", p.pid())),
                },
            };
            verdict("pid_file", detail.0, detail.1);
        }
        if let Some(glob) = &self.cgroup {
            let pattern = glob.glob().glob();
            match p.cgroup() {
                None => verdict(
                    "cgroup",
                    false,
                    format!("the process has no cgroup v2 path (a cgroup v1 host, or /proc/PID/cgroup unreadable), so it cannot match glob {pattern:?}"),
                ),
                Some(cgroup) => {
                    let matched = glob.is_match(cgroup);
                    let verb = if matched {
                        "matches"
                    } else {
                        "does not match"
                    };
                    verdict("cgroup", matched, format!("{cgroup} {verb} glob {pattern:?}"));
                }
            }
        }
        if let Some(glob) = &self.maps {
            let pattern = glob.glob().glob();
            let paths = p.mapped_paths();
            match paths.iter().find(|path| glob.is_match(path)) {
                Some(path) => verdict(
                    "maps",
                    true,
                    format!("it maps {}, which matches glob {pattern:?}", path.display()),
                ),
                None if paths.is_empty() => verdict(
                    "maps",
                    false,
                    format!("its mapped files cannot be read (/proc/PID/maps), so none can match glob {pattern:?}"),
                ),
                None => verdict(
                    "maps",
                    false,
                    format!(
                        "none of the {} files it maps matches glob {pattern:?}",
                        paths.len()
                    ),
                ),
            }
        }
        out
    }
}

/// The facts of a process that selectors look at, for the top of an
/// explanation (container and pod ids included, though no selector field
/// reads them: a `cgroup` glob is how to select them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    /// pid.
    pub pid: i32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// The executable as the process sees it (empty: unreadable).
    pub exe: String,
    /// The command line as shown: quoted, or its length when hidden; `None`
    /// when unreadable.
    pub cmdline: Option<String>,
    /// Parent pid.
    pub ppid: i32,
    /// The parent's comm, if readable.
    pub parent_comm: Option<String>,
    /// The cgroup v2 path.
    pub cgroup: Option<String>,
    /// The container id in the cgroup path.
    pub container_id: Option<String>,
    /// The Kubernetes pod UID in the cgroup path.
    pub pod_uid: Option<String>,
}

impl ProcessFacts {
    /// Reads them (the lazy ones from `/proc` if not yet known).
    pub fn of(p: &ProcessInfo) -> ProcessFacts {
        ProcessFacts::of_with(p, CommandLines::Shown)
    }

    /// [`ProcessFacts::of`], quoting the command line or not.
    pub fn of_with(p: &ProcessInfo, command_lines: CommandLines) -> ProcessFacts {
        ProcessFacts {
            pid: p.pid(),
            comm: p.comm.clone(),
            exe: p.exe.display().to_string(),
            cmdline: p.cmdline().map(|c| shown_cmdline(c, command_lines)),
            ppid: p.ppid,
            parent_comm: p.parent_comm().map(str::to_string),
            cgroup: p.cgroup().map(str::to_string),
            container_id: p.container_id().map(str::to_string),
            pod_uid: p.pod_uid(),
        }
    }

    /// `process 42 (python3)` then one line per fact, indented.
    pub fn lines(&self) -> Vec<Line> {
        let unknown = |v: &Option<String>, what: &str| {
            v.as_deref()
                .map_or_else(|| format!("({what})"), str::to_string)
        };
        let mut out = vec![Line::new(
            0,
            format!("process {} ({})", self.pid, self.comm),
            None,
        )];
        let mut fact = |text: String| out.push(Line::new(1, text, None));
        fact(format!(
            "exe: {}",
            if self.exe.is_empty() {
                "(unreadable: permission denied)"
            } else {
                &self.exe
            }
        ));
        fact(format!(
            "cmdline: {}",
            self.cmdline.as_deref().unwrap_or("(unreadable)")
        ));
        fact(format!(
            "parent: pid {} ({})",
            self.ppid,
            self.parent_comm.as_deref().unwrap_or("gone")
        ));
        fact(format!(
            "cgroup: {}",
            unknown(&self.cgroup, "no cgroup v2 path")
        ));
        fact(format!(
            "container_id: {}",
            unknown(&self.container_id, "none")
        ));
        fact(format!("pod_uid: {}", unknown(&self.pod_uid, "none")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{process, selector, FAKE};
    use super::*;
    use std::path::PathBuf;

    /// The verdicts of the single alternative of `yaml` on `p`, checked against
    /// [`Selector::matches`].
    fn fields(yaml: &str, p: &ProcessInfo) -> Vec<String> {
        let s = selector(yaml);
        let explained = s.explain(p);
        assert_eq!(explained.selected, s.matches(p), "{yaml}");
        assert_eq!(explained.alternatives.len(), 1, "{yaml}");
        explained.alternatives[0]
            .fields
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn python() -> ProcessInfo {
        process(FAKE, "python3", "/usr/bin/python3.11")
    }

    #[test]
    fn binary_name_compares_the_comm() {
        let p = python();
        let e = selector("{binary_name: ruby}").explain(&p);
        assert!(!e.selected && !e.own_process);
        assert_eq!(
            e.alternatives[0].fields,
            [FieldVerdict {
                field: "binary_name",
                matched: false,
                detail: "comm \"python3\" is not \"ruby\"".into(),
            }]
        );
        assert_eq!(
            fields("{binary_name: ruby}", &p),
            ["binary_name does not match: comm \"python3\" is not \"ruby\""]
        );
        assert_eq!(
            fields("{binary_name: python3}", &p),
            ["binary_name matches: comm \"python3\" is \"python3\""]
        );
        // Compared cut to the kernel's 15 bytes, and shown so.
        let long = process(FAKE, "gunicorn-worker", "/x");
        assert_eq!(
            fields("{binary_name: gunicorn-worker-pool}", &long),
            ["binary_name matches: comm \"gunicorn-worker\" is \"gunicorn-worker\""]
        );
    }

    #[test]
    fn exe_path_is_a_glob_on_the_live_path() {
        let p = python();
        assert_eq!(
            fields("{exe_path: /usr/bin/ruby}", &p),
            ["exe_path does not match: /usr/bin/python3.11 does not match glob \"/usr/bin/ruby\""]
        );
        assert_eq!(
            fields("{exe_path: \"/usr/bin/python3*\"}", &p),
            ["exe_path matches: /usr/bin/python3.11 matches glob \"/usr/bin/python3*\""]
        );
        let upgraded = process(FAKE, "python3", "/usr/bin/python3.11 (deleted)");
        assert_eq!(
            fields("{exe_path: /usr/bin/python3.11}", &upgraded),
            ["exe_path matches: /usr/bin/python3.11 (deleted) matches glob \"/usr/bin/python3.11\""]
        );
        let unreadable = process(FAKE, "python3", "");
        assert_eq!(
            fields("{exe_path: \"/**\"}", &unreadable),
            ["exe_path does not match: the executable's path cannot be read (permission denied), so it cannot match glob \"/**\""]
        );
    }

    #[test]
    fn cmdline_is_a_regex_on_the_joined_arguments() {
        let p = python();
        assert_eq!(
            fields("{cmdline: \"^ruby$\"}", &p),
            ["cmdline does not match: \"/usr/bin/python3.11 --workers 4\" does not match regex \"^ruby$\""]
        );
        assert_eq!(
            fields("{cmdline: \"--workers [0-9]\"}", &p),
            ["cmdline matches: \"/usr/bin/python3.11 --workers 4\" matches regex \"--workers [0-9]\""]
        );
        assert_eq!(
            fields("{cmdline: \".*\"}", &p.clone().with_cmdline(None)),
            ["cmdline does not match: the command line cannot be read, so it cannot match regex \".*\""]
        );
        // A long command line is cut in the text, not in the match.
        let long = format!("java {}end", "-Dx=y ".repeat(50));
        let text = fields("{cmdline: \"end$\"}", &p.with_cmdline(Some(long.clone())));
        assert_eq!(
            text,
            [format!(
                "cmdline matches: {:?}... (308 bytes) matches regex \"end$\"",
                &long[..200]
            )]
        );
    }

    #[test]
    fn hidden_command_lines_are_told_by_their_length_only() {
        let p = python();
        let s = selector("{cmdline: workers}");
        let e = s.explain_with(&p, CommandLines::Hidden);
        assert!(e.selected);
        assert_eq!(
            e.alternatives[0].fields[0].to_string(),
            "cmdline matches: the command line (31 bytes, hidden) matches regex \"workers\""
        );
        let facts = ProcessFacts::of_with(&p, CommandLines::Hidden);
        assert_eq!(
            facts.lines()[2].text,
            "cmdline: the command line (31 bytes, hidden)"
        );
        assert_eq!(
            ProcessFacts::of(&p).lines()[2].text,
            "cmdline: \"/usr/bin/python3.11 --workers 4\""
        );
    }

    #[test]
    fn parent_binary_name_names_the_parent_or_the_ancestors() {
        // The made-up process descends from bash, sshd, systemd; its ppid is 1.
        let p = python();
        assert_eq!(
            fields("{parent_binary_name: cron}", &p),
            ["parent_binary_name does not match: the parent's comm \"bash\" (pid 1) is not \"cron\""]
        );
        assert_eq!(
            fields("{parent_binary_name: bash}", &p),
            ["parent_binary_name matches: the parent's comm \"bash\" (pid 1) is \"bash\""]
        );
        assert_eq!(
            fields("{parent_binary_name: sshd, any_ancestor: true}", &p),
            ["parent_binary_name (any_ancestor) matches: an ancestor is \"sshd\" (ancestors: \"bash\", \"sshd\", \"systemd\")"]
        );
        assert_eq!(
            fields("{parent_binary_name: cron, any_ancestor: true}", &p),
            ["parent_binary_name (any_ancestor) does not match: no ancestor is \"cron\" (ancestors: \"bash\", \"sshd\", \"systemd\")"]
        );
        let orphan = p.with_ancestors(Vec::new());
        assert_eq!(
            fields("{parent_binary_name: bash}", &orphan),
            ["parent_binary_name does not match: the parent (pid 1) is gone or unreadable, so it cannot be \"bash\""]
        );
        assert_eq!(
            fields("{parent_binary_name: bash, any_ancestor: true}", &orphan),
            ["parent_binary_name (any_ancestor) does not match: the process has no ancestor left to be \"bash\""]
        );
        let deep = python().with_ancestors((0..10).map(|i| format!("a{i}")).collect());
        assert_eq!(
            fields("{parent_binary_name: a9, any_ancestor: true}", &deep),
            ["parent_binary_name (any_ancestor) matches: an ancestor is \"a9\" (ancestors: \"a0\", \"a1\", \"a2\", \"a3\", \"a4\", \"a5\", \"a6\", \"a7\", and 2 more)"]
        );
    }

    #[test]
    fn pid_and_pid_file() {
        let p = python();
        assert_eq!(
            fields(&format!("{{pid: {}}}", FAKE + 1), &p),
            [format!(
                "pid does not match: pid {FAKE} is not {}",
                FAKE + 1
            )]
        );
        assert_eq!(
            fields(&format!("{{pid: {FAKE}}}"), &p),
            [format!("pid matches: pid {FAKE} is {FAKE}")]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let yaml = format!("{{pid_file: {}}}", path.display());
        let shown = path.display();
        assert_eq!(
            fields(&yaml, &p),
            [format!("pid_file does not match: cannot read {shown}: No such file or directory (os error 2)")]
        );
        std::fs::write(&path, "not a pid\n").unwrap();
        assert_eq!(
            fields(&yaml, &p),
            [format!(
                "pid_file does not match: {shown} holds \"not a pid\", not a process id"
            )]
        );
        std::fs::write(&path, format!("{}\n", FAKE + 1)).unwrap();
        assert_eq!(
            fields(&yaml, &p),
            [format!(
                "pid_file does not match: {shown} holds {}, not {FAKE}",
                FAKE + 1
            )]
        );
        std::fs::write(&path, format!("{FAKE}\n")).unwrap();
        assert_eq!(
            fields(&yaml, &p),
            [format!("pid_file matches: {shown} holds {FAKE}")]
        );
    }

    #[test]
    fn cgroup_is_a_glob_on_the_v2_path() {
        // The made-up process is in /system.slice/app.service.
        let p = python();
        assert_eq!(
            fields("{cgroup: \"/kubepods/**\"}", &p),
            ["cgroup does not match: /system.slice/app.service does not match glob \"/kubepods/**\""]
        );
        assert_eq!(
            fields("{cgroup: \"/system.slice/*.service\"}", &p),
            ["cgroup matches: /system.slice/app.service matches glob \"/system.slice/*.service\""]
        );
        assert_eq!(
            fields("{cgroup: \"/**\"}", &p.with_cgroup(None)),
            ["cgroup does not match: the process has no cgroup v2 path (a cgroup v1 host, or /proc/PID/cgroup unreadable), so it cannot match glob \"/**\""]
        );
    }

    #[test]
    fn maps_is_a_glob_on_the_paths_of_the_mapped_files() {
        let p = python().with_mapped_paths(vec![
            PathBuf::from("/opt/app/bin/uwsgi"),
            PathBuf::from("/usr/local/lib/libpython3.12.so.1.0"),
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ]);
        assert_eq!(
            fields("{maps: \"**/libpython3.*.so*\"}", &p),
            ["maps matches: it maps /usr/local/lib/libpython3.12.so.1.0, which matches glob \"**/libpython3.*.so*\""]
        );
        assert_eq!(
            fields("{maps: \"**/libruby*\"}", &p),
            ["maps does not match: none of the 3 files it maps matches glob \"**/libruby*\""]
        );
        assert_eq!(
            fields("{maps: \"**/libruby*\"}", &python().with_mapped_paths(vec![])),
            ["maps does not match: its mapped files cannot be read (/proc/PID/maps), so none can match glob \"**/libruby*\""]
        );
    }

    #[test]
    fn every_field_is_judged_in_the_order_of_the_config_reference() {
        let s = selector("{pid: 5000001, cgroup: \"/**\", binary_name: ruby, exe_path: \"/usr/**\", cmdline: workers, parent_binary_name: bash}");
        let e = s.explain(&python());
        assert!(!e.selected);
        let verdicts: Vec<(&str, bool)> = e.alternatives[0]
            .fields
            .iter()
            .map(|f| (f.field, f.matched))
            .collect();
        // No short cut: the fields after the first mismatch are judged too.
        assert_eq!(
            verdicts,
            [
                ("binary_name", false),
                ("exe_path", true),
                ("cmdline", true),
                ("parent_binary_name", true),
                ("pid", false),
                ("cgroup", true),
            ]
        );
    }

    #[test]
    fn exclusions_say_which_one_excludes() {
        let s = selector(
            "{binary_name: python3, exclude: [{cmdline: pip}, {exe_path: /usr/bin/python3.11}]}",
        );
        let p = python();
        let e = s.explain(&p);
        assert_eq!((e.selected, s.matches(&p)), (false, false));
        let a = &e.alternatives[0];
        assert!(a.fields_match());
        assert_eq!(a.excluded_by(), Some(1));
        let lines: Vec<(usize, String, Option<bool>)> = e
            .lines(0)
            .into_iter()
            .map(|l| (l.depth, l.text, l.matched))
            .collect();
        assert_eq!(
            lines,
            [
                (0, "binary_name matches: comm \"python3\" is \"python3\"".into(), Some(true)),
                (0, "exclude 1 (cmdline=~\"pip\"): does not apply".into(), Some(true)),
                (1, "cmdline does not match: \"/usr/bin/python3.11 --workers 4\" does not match regex \"pip\"".into(), None),
                (0, "exclude 2 (exe_path=/usr/bin/python3.11): applies, the process is excluded".into(), Some(false)),
                (1, "exe_path matches: /usr/bin/python3.11 matches glob \"/usr/bin/python3.11\"".into(), None),
            ]
        );
        // Another executable is not excluded.
        let other = process(FAKE, "python3", "/opt/python3");
        let e = s.explain(&other);
        assert!(e.selected && s.matches(&other));
        assert_eq!(e.alternatives[0].excluded_by(), None);
    }

    #[test]
    fn alternatives_are_judged_each_under_a_header() {
        let s =
            selector("[{binary_name: ruby}, {exe_path: \"/usr/bin/python3*\", cmdline: workers}]");
        let p = python();
        let e = s.explain(&p);
        assert!(e.selected && s.matches(&p));
        let text: Vec<String> = e
            .lines(1)
            .iter()
            .map(|l| format!("{}{}", "  ".repeat(l.depth), l.text))
            .collect();
        assert_eq!(
            text,
            [
                "  alternative 1 of 2 (binary_name=ruby): does not select",
                "    binary_name does not match: comm \"python3\" is not \"ruby\"",
                "  alternative 2 of 2 (exe_path=/usr/bin/python3*, cmdline=~\"workers\"): selects",
                "    exe_path matches: /usr/bin/python3.11 matches glob \"/usr/bin/python3*\"",
                "    cmdline matches: \"/usr/bin/python3.11 --workers 4\" matches regex \"workers\"",
            ]
        );
    }

    #[test]
    fn the_exporter_itself_is_never_selected_and_says_so() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        let s = selector("{exe_path: \"/**\"}");
        let e = s.explain(&me);
        assert!(e.own_process && !e.selected && !s.matches(&me));
        assert!(e.alternatives[0].selects());
        assert_eq!(
            e.lines(0)[0].text,
            "this is the exporter's own process, which is never selected"
        );
    }

    #[test]
    fn an_empty_attachment_selects_nothing() {
        let nothing = Selector::new(&crate::config::Attachment::default());
        let e = nothing.explain(&python());
        assert!(!e.selected && e.alternatives.is_empty());
        assert_eq!(
            e.lines(0)[0].text,
            "the attachment selects nothing (no selector given)"
        );
    }

    #[test]
    fn process_facts_list_what_selectors_read() {
        let id = "3f4b1c2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
        let p = python().with_cgroup(Some(format!("/system.slice/docker-{id}.scope")));
        let facts = ProcessFacts::of(&p);
        let text: Vec<String> = facts
            .lines()
            .iter()
            .map(|l| format!("{}{}", "  ".repeat(l.depth), l.text))
            .collect();
        assert_eq!(
            text,
            [
                format!("process {FAKE} (python3)"),
                "  exe: /usr/bin/python3.11".into(),
                "  cmdline: \"/usr/bin/python3.11 --workers 4\"".into(),
                "  parent: pid 1 (bash)".into(),
                format!("  cgroup: /system.slice/docker-{id}.scope"),
                format!("  container_id: {id}"),
                "  pod_uid: (none)".into(),
            ]
        );
        let bare = ProcessFacts::of(
            &process(FAKE, "x", "")
                .with_cmdline(None)
                .with_cgroup(None)
                .with_ancestors(Vec::new()),
        );
        let text: Vec<String> = bare.lines().into_iter().map(|l| l.text).collect();
        assert_eq!(
            text[1..],
            [
                "exe: (unreadable: permission denied)",
                "cmdline: (unreadable)",
                "parent: pid 1 (gone)",
                "cgroup: (no cgroup v2 path)",
                "container_id: (none)",
                "pod_uid: (none)",
            ]
        );
    }
}
