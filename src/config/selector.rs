//! What the fields of an attachment selector mean: the checks every selector
//! of a config must pass, and the compiled form (globs and regexes built,
//! names cut to the kernel's comm) that processes are matched against.

use super::{AttachmentSelector, COMM_MAX_BYTES, SELECTOR_FIELDS};
use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;
use std::path::PathBuf;

/// Compiles an `exe_path`, `cgroup` or `maps` glob: `*`, `?` and `[...]` stay within
/// one path component, `**` spans any number, `{a,b}` is either. Each pattern
/// is compiled once (see [`memoized`]): probes are resolved with it for every
/// process.
pub fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    memoized(&PATH_GLOBS, pattern, || {
        GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| e.kind().to_string())
    })
}

/// Path globs compiled so far, by pattern.
static PATH_GLOBS: Memo<GlobMatcher> = Memo::new();

/// Compiled patterns by their text (a matcher's clone shares its automaton).
pub(crate) struct Memo<T>(
    std::sync::Mutex<Option<std::collections::HashMap<String, Result<T, String>>>>,
);

impl<T> Memo<T> {
    /// An empty memo.
    pub(crate) const fn new() -> Memo<T> {
        Memo(std::sync::Mutex::new(None))
    }
}

/// Most patterns a memo keeps: configs name a few dozen; a reload with new
/// ones starts it over.
const MEMO_ENTRIES: usize = 4096;

/// `compile()`'s result for `pattern`, compiled on its first use only.
/// Building a glob's automaton took most of the time of attaching a
/// CPython process (perf: 60% in regex determinization, 22 ms a process
/// with the default pack).
pub(crate) fn memoized<T: Clone>(
    memo: &Memo<T>,
    pattern: &str,
    compile: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let mut map = memo.0.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(Default::default);
    if let Some(found) = map.get(pattern) {
        return found.clone();
    }
    if map.len() >= MEMO_ENTRIES {
        map.clear();
    }
    let compiled = compile();
    map.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// Compiles a `cmdline` regex; the error is the regex crate's, on one line.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        // Syntax errors are drawn over several lines; the last one says what is wrong.
        let last = text.lines().last().unwrap_or_default().trim();
        last.strip_prefix("error: ").unwrap_or(last).to_string()
    })
}

/// `name` cut to the bytes the kernel keeps in a comm ([`COMM_MAX_BYTES`]),
/// on a character boundary: what a process named `name` shows in `/proc/PID/comm`.
pub fn comm_prefix(name: &str) -> &str {
    let mut end = name.len().min(COMM_MAX_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// One selector with its patterns compiled: what discovery matches processes
/// against. Built by [`AttachmentSelector::compile`].
#[derive(Debug, Clone)]
pub struct CompiledSelector {
    /// Exactly this process id (positive).
    pub pid: Option<i32>,
    /// `binary_name`, cut to what `/proc/PID/comm` can hold.
    pub binary_name: Option<String>,
    /// The `exe_path` glob.
    pub exe_path: Option<GlobMatcher>,
    /// The `pid_file` path (resolved against the config's directory by parsing).
    pub pid_file: Option<PathBuf>,
    /// The `cmdline` regex.
    pub cmdline: Option<Regex>,
    /// The `cgroup` glob.
    pub cgroup: Option<GlobMatcher>,
    /// The `maps` glob.
    pub maps: Option<GlobMatcher>,
    /// `parent_binary_name`, cut to what `/proc/PID/comm` can hold.
    pub parent_binary_name: Option<String>,
    /// `parent_binary_name` applies to any ancestor.
    pub any_ancestor: bool,
}

/// Where in a selector mapping a [`SelectorProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spot {
    /// The mapping itself.
    Mapping,
    /// The value of this field.
    Value(&'static str),
    /// This key, or the mapping when the key is not written.
    Key(&'static str),
}

/// One thing wrong with a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SelectorProblem {
    /// Where it is.
    pub spot: Spot,
    /// What is wrong, to follow the selector's name (`attachment #2 ...`).
    pub message: String,
}

/// An `exe_path` or `cgroup` glob compiled, or why it does not compile.
fn glob_field(field: &str, pattern: &str) -> Result<GlobMatcher, String> {
    compile_glob(pattern).map_err(|e| format!("{field} glob {pattern:?} does not compile: {e}"))
}

/// The `cmdline` regex compiled, or why it does not compile.
fn regex_field(pattern: &str) -> Result<Regex, String> {
    compile_regex(pattern).map_err(|e| format!("cmdline regex {pattern:?} does not compile: {e}"))
}

/// The `pid`, when it is a process id (positive and within `pid_t`).
fn pid_field(pid: i64) -> Result<i32, String> {
    i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("pid {pid} is not a process id"))
}

impl AttachmentSelector {
    /// Every problem of this selector, in the order they are reported;
    /// `is_exclusion` when it is an `exclude:` entry. (A name longer than the
    /// kernel's comm is only a warning, see [`super::Config::warnings`].)
    pub(super) fn problems(&self, is_exclusion: bool) -> Vec<SelectorProblem> {
        let mut out = Vec::new();
        let mut problem = |spot, message| out.push(SelectorProblem { spot, message });
        if self.is_empty() {
            let fields = SELECTOR_FIELDS.join(", ");
            problem(
                Spot::Mapping,
                format!("needs at least one of {fields} (e.g. `binary_name: python3.11`)"),
            );
        }
        for (field, value) in [
            ("binary_name", self.binary_name.as_deref()),
            ("exe_path", self.exe_path.as_deref()),
            ("cmdline", self.cmdline.as_deref()),
            ("parent_binary_name", self.parent_binary_name.as_deref()),
            (
                "pid_file",
                self.pid_file.as_deref().and_then(|p| p.to_str()),
            ),
            ("cgroup", self.cgroup.as_deref()),
            ("maps", self.maps.as_deref()),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                problem(Spot::Value(field), format!("`{field}` is empty"));
            }
        }
        for (field, glob, what) in [
            ("exe_path", &self.exe_path, "executable paths"),
            ("cgroup", &self.cgroup, "cgroup paths"),
            ("maps", &self.maps, "the paths of mapped files"),
        ] {
            let Some(glob) = glob.as_deref().filter(|g| !g.trim().is_empty()) else {
                continue;
            };
            if let Err(e) = glob_field(field, glob) {
                problem(Spot::Value(field), e);
            } else if !glob.starts_with(['/', '*', '?', '[', '{', '\\']) {
                problem(
                    Spot::Value(field),
                    format!(
                        "{field} glob {glob:?} never matches: {what} are absolute; start it with `/` or `**/` (e.g. {:?})",
                        format!("**/{glob}")
                    ),
                );
            }
        }
        if let Some(regex) = self.cmdline.as_deref().filter(|r| !r.trim().is_empty()) {
            if let Err(e) = regex_field(regex) {
                problem(Spot::Value("cmdline"), e);
            }
        }
        if let Some(pid) = self.pid {
            if let Err(e) = pid_field(pid) {
                problem(Spot::Value("pid"), format!("{e}: give a positive integer"));
            }
        }
        if self.any_ancestor && self.parent_binary_name.is_none() {
            problem(
                Spot::Key("any_ancestor"),
                "`any_ancestor` applies to `parent_binary_name`, which is not given".into(),
            );
        }
        if is_exclusion && self.exclude.is_some() {
            problem(
                Spot::Key("exclude"),
                "has its own `exclude`: exclusions cannot be nested".into(),
            );
        }
        out
    }

    /// Compiles the selector's fields (its `exclude:` entries are selectors of
    /// their own); says which glob, regex or pid is invalid, which a validated
    /// config ([`super::Config::parse`]) rules out.
    pub fn compile(&self) -> Result<CompiledSelector, String> {
        Ok(CompiledSelector {
            pid: self.pid.map(pid_field).transpose()?,
            binary_name: self.binary_name.as_deref().map(|n| comm_prefix(n).into()),
            exe_path: self
                .exe_path
                .as_deref()
                .map(|p| glob_field("exe_path", p))
                .transpose()?,
            pid_file: self.pid_file.clone(),
            cmdline: self.cmdline.as_deref().map(regex_field).transpose()?,
            cgroup: self
                .cgroup
                .as_deref()
                .map(|p| glob_field("cgroup", p))
                .transpose()?,
            maps: self
                .maps
                .as_deref()
                .map(|p| glob_field("maps", p))
                .transpose()?,
            parent_binary_name: self
                .parent_binary_name
                .as_deref()
                .map(|n| comm_prefix(n).into()),
            any_ancestor: self.any_ancestor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_prefix_cuts_at_15_bytes_on_a_character_boundary() {
        assert_eq!(comm_prefix("gunicorn"), "gunicorn");
        assert_eq!(comm_prefix("gunicorn-worker-pool"), "gunicorn-worker");
        // "é" is two bytes: the 15th byte is inside it, so it is left out.
        assert_eq!(comm_prefix("abcdefghijklmné"), "abcdefghijklmn");
    }

    #[test]
    fn compile_builds_patterns_and_cuts_names() {
        let s = AttachmentSelector {
            binary_name: Some("gunicorn-worker-pool".into()),
            exe_path: Some("/usr/bin/python3*".into()),
            cmdline: Some("--workers [0-9]".into()),
            cgroup: Some("/system.slice/**".into()),
            pid: Some(42),
            ..Default::default()
        }
        .compile()
        .unwrap();
        assert_eq!(s.binary_name.as_deref(), Some("gunicorn-worker"));
        assert!(s.exe_path.unwrap().is_match("/usr/bin/python3.11"));
        assert!(s.cmdline.unwrap().is_match("app --workers 4"));
        assert!(s.cgroup.unwrap().is_match("/system.slice/a/b.scope"));
        assert_eq!(s.pid, Some(42));
        let bad = |s: AttachmentSelector| s.compile().unwrap_err();
        assert_eq!(
            bad(AttachmentSelector {
                pid: Some(i64::from(i32::MAX) + 1),
                ..Default::default()
            }),
            "pid 2147483648 is not a process id"
        );
        assert!(bad(AttachmentSelector {
            cgroup: Some("/a/{b".into()),
            ..Default::default()
        })
        .starts_with("cgroup glob \"/a/{b\" does not compile: "));
    }
}
