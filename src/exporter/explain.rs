//! Why a process is (not) selected by each program, and where each selecting
//! program's probes would attach: the one explanation that `check --pid`
//! prints and the landing page's explain view shows.

use crate::attach::sources::{self, SourceOutcome};
use crate::attach::{resolve_probes, ProbeResolution};
use crate::config::{ProbeConfig, Program};
use crate::discovery::{CommandLines, Explanation, Line, ProcessFacts, ProcessInfo, Selector};
use crate::elf::ElfCache;

/// ELF files kept while one process is explained (its executable and libraries).
const EXPLAIN_ELF_CACHE: usize = 64;

/// A program to explain a process against: its config, selector and probes.
#[derive(Debug, Clone, Copy)]
pub struct ExplainProgram<'a> {
    /// The program's config (its name and sources).
    pub config: &'a Program,
    /// Its compiled `attachment:`.
    pub selector: &'a Selector,
    /// Its probes, in config order.
    pub probes: &'a [ProbeConfig],
}

/// One program's verdict on one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramExplanation {
    /// Program name.
    pub name: String,
    /// Its selector in short.
    pub selector: String,
    /// The verdict per selector field.
    pub selection: Explanation,
    /// Where each probe would attach; only for a program that selects the process.
    pub probes: Vec<ProbeResolution>,
    /// Which probe set would feed each source, or why none can; only for a
    /// program that selects the process.
    pub sources: Vec<SourceOutcome>,
}

impl ProgramExplanation {
    /// `program "x" (binary_name=y): SELECTED`, then the field verdicts and
    /// the probes, one level down.
    pub fn lines(&self) -> Vec<Line> {
        let verdict = if self.selection.selected {
            "SELECTED"
        } else {
            "NOT SELECTED"
        };
        let mut out = vec![Line::new(
            0,
            format!("program {:?} ({}): {verdict}", self.name, self.selector),
            // Not being selected is no fault; the field that does not match is marked.
            self.selection.selected.then_some(true),
        )];
        out.extend(self.selection.lines(1));
        for probe in self.probes.iter().filter(|p| p.probe.source.is_none()) {
            out.push(Line::new(1, probe.describe(), Some(probe.resolved())));
        }
        // A source: the verdict, then the probes of the sets tried.
        for outcome in &self.sources {
            out.push(Line::new(
                1,
                outcome.describe(),
                Some(outcome.chosen.is_some()),
            ));
            let tried = outcome
                .chosen
                .as_ref()
                .map_or(usize::MAX, |(rank, _)| *rank);
            for probe in self.probes.iter().filter(|p| {
                p.probe
                    .source
                    .as_ref()
                    .is_some_and(|s| s.source == outcome.source && s.rank <= tried)
            }) {
                out.push(Line::new(2, probe.describe(), Some(probe.resolved())));
            }
        }
        out
    }
}

/// A process and every program's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExplanation {
    /// What selectors look at.
    pub facts: ProcessFacts,
    /// One per program, in the order given.
    pub programs: Vec<ProgramExplanation>,
}

impl ProcessExplanation {
    /// The facts, then each program.
    pub fn lines(&self) -> Vec<Line> {
        let mut out = self.facts.lines();
        for program in &self.programs {
            out.extend(program.lines());
        }
        out
    }

    /// [`ProcessExplanation::lines`] as text, two spaces per level.
    pub fn text(&self) -> String {
        lines_text(&self.lines())
    }
}

/// Lines as text, two spaces per level, each ending in a newline.
pub fn lines_text(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| format!("{}{}\n", "  ".repeat(l.depth), l.text))
        .collect()
}

/// Why a process cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The text given is not a pid.
    #[error("{0:?} is not a process id: give a positive integer")]
    BadPid(String),
    /// No such process.
    #[error("no process with pid {0} (in the exporter's PID namespace)")]
    NoSuchProcess(i32),
    /// A kernel thread or a zombie: nothing to probe.
    #[error("pid {0} is a kernel thread or a zombie: it has no executable to probe")]
    NotProbeable(i32),
}

/// Parses a pid as given on the command line or in the landing page's form.
pub fn parse_pid(text: &str) -> Result<i32, ExplainError> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| ExplainError::BadPid(text.to_string()))
}

/// Reads process `pid` and explains it against `programs`, quoting its
/// command line or not.
pub fn explain_pid(
    pid: i32,
    programs: &[ExplainProgram<'_>],
    command_lines: CommandLines,
) -> Result<ProcessExplanation, ExplainError> {
    let process = ProcessInfo::read(pid).ok_or_else(|| {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            ExplainError::NotProbeable(pid)
        } else {
            ExplainError::NoSuchProcess(pid)
        }
    })?;
    Ok(explain_process(&process, programs, command_lines))
}

/// Explains `process` against `programs`: every selector field judged, and
/// for the programs that select it, every probe looked up in its files.
pub fn explain_process(
    process: &ProcessInfo,
    programs: &[ExplainProgram<'_>],
    command_lines: CommandLines,
) -> ProcessExplanation {
    let mut cache = ElfCache::new(EXPLAIN_ELF_CACHE);
    let programs = programs
        .iter()
        .map(|p| {
            let selection = p.selector.explain_with(process, command_lines);
            let probes = if selection.selected {
                resolve_probes(process, p.probes, &mut cache)
            } else {
                Vec::new()
            };
            // The attach's own choice, over these resolutions.
            let sources = if selection.selected {
                sources::choose(p.config, p.probes, |i| {
                    probes[i]
                        .outcome
                        .as_ref()
                        .map(|_| ())
                        .map_err(|u| u.clone())
                })
                .sources
            } else {
                Vec::new()
            };
            ProgramExplanation {
                name: p.config.name.clone(),
                selector: p.selector.describe(),
                selection,
                probes,
                sources,
            }
        })
        .collect();
    ProcessExplanation {
        facts: ProcessFacts::of_with(process, command_lines),
        programs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Attachment, AttachmentSelector, ProbeKind};
    use crate::discovery::ProcessKey;

    #[test]
    fn pids_are_positive_integers() {
        assert_eq!(parse_pid("42"), Ok(42));
        assert_eq!(parse_pid(" 7 "), Ok(7));
        assert_eq!(
            parse_pid("abc").unwrap_err().to_string(),
            "\"abc\" is not a process id: give a positive integer"
        );
        assert!(parse_pid("0").is_err());
        assert!(parse_pid("-3").is_err());
        assert!(parse_pid("99999999999").is_err());
    }

    #[test]
    fn unknown_pids_are_named() {
        // Above the kernel's largest pid_max.
        let e = explain_pid(5_000_000, &[], CommandLines::Shown).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no process with pid 5000000 (in the exporter's PID namespace)"
        );
        // pid 2 is kthreadd.
        assert_eq!(
            explain_pid(2, &[], CommandLines::Shown).unwrap_err(),
            ExplainError::NotProbeable(2)
        );
    }

    /// A program named `name` (only its name and absence of sources matter here).
    fn named(name: &str) -> Program {
        let text = format!(
            "programs:\n  - name: {name}\n    object: x.bpf.o\n    metrics: {{counters: [{{name: c, help: h, table: t}}]}}\n    usdt: {{\"p:n\": f}}\n    attachment: {{binary_name: app}}\n"
        );
        crate::config::Config::parse(std::path::Path::new("test.yaml"), &text)
            .unwrap()
            .programs
            .remove(0)
            .value
    }

    #[test]
    fn only_selecting_programs_resolve_their_probes() {
        let process = ProcessInfo::new(
            ProcessKey {
                pid: 5_000_000,
                start_time: 1,
            },
            "app".into(),
            "/opt/app".into(),
            1,
        )
        .with_cmdline(Some("/opt/app".into()))
        .with_cgroup(None)
        .with_ancestors(vec!["bash".into()]);
        let selector = |name: &str| {
            Selector::new(&Attachment::single(AttachmentSelector {
                binary_name: Some(name.into()),
                ..Default::default()
            }))
        };
        let (yes, no) = (selector("app"), selector("other"));
        let probes = [ProbeConfig {
            kind: ProbeKind::Usdt,
            spec: "p:n".into(),
            function: "f".into(),
            source: None,
        }];
        let explained = explain_process(
            &process,
            &[
                ExplainProgram {
                    config: &named("a"),
                    selector: &yes,
                    probes: &probes,
                },
                ExplainProgram {
                    config: &named("b"),
                    selector: &no,
                    probes: &probes,
                },
            ],
            CommandLines::Shown,
        );
        let text = explained.text();
        // The made-up process has no /proc entry: its probe does not resolve.
        assert_eq!(
            text,
            "process 5000000 (app)\n\
             \x20 exe: /opt/app\n\
             \x20 cmdline: \"/opt/app\"\n\
             \x20 parent: pid 1 (bash)\n\
             \x20 cgroup: (no cgroup v2 path)\n\
             \x20 container_id: (none)\n\
             \x20 pod_uid: (none)\n\
             program \"a\" (binary_name=app): SELECTED\n\
             \x20 binary_name matches: comm \"app\" is \"app\"\n\
             \x20 usdt p:n -> f: does not resolve: process 5000000 exited\n\
             program \"b\" (binary_name=other): NOT SELECTED\n\
             \x20 binary_name does not match: comm \"app\" is not \"other\"\n"
        );
    }
}
