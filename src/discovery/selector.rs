//! Which processes a program attaches to, and why a process is (not) selected.

mod explain;

pub use explain::{
    AlternativeVerdict, CommandLines, ExclusionVerdict, Explanation, FieldVerdict, Line,
    ProcessFacts,
};

use super::ProcessInfo;
use crate::config::{Attachment, AttachmentSelector, CompiledSelector};
use globset::GlobMatcher;
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a `pid_file`'s content is reused: one rescan matches every process
/// against it, and reading the file once per process would be wasteful.
const PID_FILE_REUSE: Duration = Duration::from_millis(100);

/// A compiled `attachment:`: a process is selected when any alternative
/// matches it and none of that alternative's exclusions does. The exporter's
/// own process is never selected.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    alternatives: Vec<Alternative>,
}

/// One alternative: its fields and its exclusions.
#[derive(Debug, Clone)]
struct Alternative {
    require: Criteria,
    exclude: Vec<Criteria>,
}

/// The fields of one selector mapping; all given ones must match, and a
/// mapping with none matches nothing.
#[derive(Debug, Clone, Default)]
struct Criteria {
    pid: Option<i32>,
    binary_name: Option<String>,
    exe_path: Option<GlobMatcher>,
    pid_file: Option<PidFile>,
    cmdline: Option<Regex>,
    cgroup: Option<GlobMatcher>,
    parent_binary_name: Option<String>,
    any_ancestor: bool,
    maps: Option<GlobMatcher>,
}

/// When a pid file was last read and the pid it held (`None`: unreadable or garbage).
type LastRead = Option<(Instant, Option<i32>)>;

/// A pid file, re-read at most every [`PID_FILE_REUSE`].
#[derive(Debug, Clone)]
struct PidFile {
    path: PathBuf,
    last: Arc<Mutex<LastRead>>,
}

impl PidFile {
    fn new(path: &Path) -> PidFile {
        PidFile {
            path: path.to_path_buf(),
            last: Arc::default(),
        }
    }

    /// The pid the file holds now (or within the last [`PID_FILE_REUSE`]).
    fn pid(&self) -> Option<i32> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, pid)) = *last {
            if at.elapsed() < PID_FILE_REUSE {
                return pid;
            }
        }
        let pid = read_pid_file(&self.path);
        *last = Some((Instant::now(), pid));
        pid
    }
}

/// A pid file's pid: a positive integer, surrounding whitespace allowed.
fn read_pid_file(path: &Path) -> Option<i32> {
    let text = read_pid_file_text(path).ok()?;
    text.trim().parse::<i32>().ok().filter(|&pid| pid > 0)
}

/// A pid file's text.
fn read_pid_file_text(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

impl Selector {
    /// Builds a selector from config. `binary_name` and `parent_binary_name`
    /// longer than the kernel's 15-byte comm are compared truncated, since that
    /// is all `/proc/PID/comm` can hold.
    ///
    /// # Panics
    ///
    /// When a glob or regex does not compile: a validated config
    /// ([`crate::config::Config::parse`]) guarantees they do.
    pub fn new(attachment: &Attachment) -> Selector {
        Selector::try_new(attachment).unwrap_or_else(|e| panic!("invalid attachment: {e}"))
    }

    /// Builds a selector, or says which glob or regex does not compile.
    pub fn try_new(attachment: &Attachment) -> Result<Selector, String> {
        let alternatives = attachment
            .alternatives
            .iter()
            .map(|a| {
                Ok(Alternative {
                    require: Criteria::new(a)?,
                    exclude: a
                        .exclusions()
                        .iter()
                        .map(Criteria::new)
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Selector { alternatives })
    }

    /// Whether the process is selected.
    pub fn matches(&self, process: &ProcessInfo) -> bool {
        if process.pid() == super::process::own_pid() {
            return false;
        }
        self.alternatives
            .iter()
            .any(|a| a.require.matches(process) && !a.exclude.iter().any(|e| e.matches(process)))
    }

    /// Executables the selector names outright: alternatives whose only field is
    /// an `exe_path` with no glob characters and no exclusions. A per-binary
    /// program attaches to these before any process runs them.
    pub fn named_executables(&self) -> Vec<PathBuf> {
        self.alternatives
            .iter()
            .filter(|a| a.exclude.is_empty() && a.require.field_count() == 1)
            .filter_map(|a| a.require.exe_path.as_ref())
            .map(|g| g.glob().glob())
            .filter(|g| g.starts_with('/') && !g.contains(['*', '?', '[', '{']))
            .map(PathBuf::from)
            .collect()
    }

    /// A short human description, for logs and the landing page, e.g.
    /// `binary_name=gunicorn, cmdline=~"--workers"; excluding exe_path=/usr/bin/foo`.
    pub fn describe(&self) -> String {
        let many = self.alternatives.len() > 1;
        let parts: Vec<String> = self
            .alternatives
            .iter()
            .map(|a| {
                let mut text = a.require.describe();
                if !a.exclude.is_empty() {
                    let excluded: Vec<String> = a
                        .exclude
                        .iter()
                        .map(|e| {
                            if e.field_count() > 1 {
                                format!("({})", e.describe())
                            } else {
                                e.describe()
                            }
                        })
                        .collect();
                    text = format!("{text}; excluding {}", excluded.join(" or "));
                }
                if many && (a.require.field_count() > 1 || !a.exclude.is_empty()) {
                    format!("({text})")
                } else {
                    text
                }
            })
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(" or ")
        }
    }
}

impl Criteria {
    fn new(s: &AttachmentSelector) -> Result<Criteria, String> {
        let CompiledSelector {
            pid,
            binary_name,
            exe_path,
            pid_file,
            cmdline,
            cgroup,
            parent_binary_name,
            any_ancestor,
            maps,
        } = s.compile()?;
        Ok(Criteria {
            pid,
            binary_name,
            exe_path,
            pid_file: pid_file.as_deref().map(PidFile::new),
            cmdline,
            cgroup,
            parent_binary_name,
            any_ancestor,
            maps,
        })
    }

    fn field_count(&self) -> usize {
        [
            self.pid.is_some(),
            self.binary_name.is_some(),
            self.exe_path.is_some(),
            self.pid_file.is_some(),
            self.cmdline.is_some(),
            self.cgroup.is_some(),
            self.parent_binary_name.is_some(),
            self.maps.is_some(),
        ]
        .into_iter()
        .filter(|&given| given)
        .count()
    }

    /// Every given field matches; cheap in-memory checks run first, the ones
    /// that read `/proc` (or the pid file) only when those passed.
    fn matches(&self, p: &ProcessInfo) -> bool {
        if self.field_count() == 0 {
            return false;
        }
        if self.pid.is_some_and(|pid| pid != p.pid()) {
            return false;
        }
        if self.binary_name.as_ref().is_some_and(|n| *n != p.comm) {
            return false;
        }
        if let Some(glob) = &self.exe_path {
            // An executable replaced on disk reads as "/path (deleted)".
            let exe = p.exe.to_string_lossy();
            let live = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
            if !glob.is_match(live) {
                return false;
            }
        }
        if let Some(file) = &self.pid_file {
            if file.pid() != Some(p.pid()) {
                return false;
            }
        }
        if let Some(regex) = &self.cmdline {
            if !p.cmdline().is_some_and(|c| regex.is_match(c)) {
                return false;
            }
        }
        if let Some(glob) = &self.cgroup {
            if !p.cgroup().is_some_and(|c| glob.is_match(c)) {
                return false;
            }
        }
        if let Some(name) = &self.parent_binary_name {
            let found = if self.any_ancestor {
                p.ancestor_comms().iter().any(|c| c == name)
            } else {
                p.parent_comm() == Some(name.as_str())
            };
            if !found {
                return false;
            }
        }
        if let Some(glob) = &self.maps {
            if !p.mapped_paths().iter().any(|path| glob.is_match(path)) {
                return false;
            }
        }
        true
    }

    /// `binary_name=gunicorn, cmdline=~"--workers"`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.binary_name {
            parts.push(format!("binary_name={n}"));
        }
        if let Some(g) = &self.exe_path {
            parts.push(format!("exe_path={}", g.glob()));
        }
        if let Some(r) = &self.cmdline {
            parts.push(format!("cmdline=~{:?}", r.as_str()));
        }
        if let Some(n) = &self.parent_binary_name {
            parts.push(if self.any_ancestor {
                format!("ancestor_binary_name={n}")
            } else {
                format!("parent_binary_name={n}")
            });
        }
        if let Some(pid) = self.pid {
            parts.push(format!("pid={pid}"));
        }
        if let Some(f) = &self.pid_file {
            parts.push(format!("pid_file={}", f.path.display()));
        }
        if let Some(g) = &self.cgroup {
            parts.push(format!("cgroup={}", g.glob()));
        }
        if let Some(g) = &self.maps {
            parts.push(format!("maps={}", g.glob()));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::discovery::ProcessKey;
    use std::process::{Child, Command};
    use std::time::Duration;

    /// The selector of a one-program config whose `attachment:` is `yaml` (flow style).
    pub(super) fn selector(yaml: &str) -> Selector {
        let text = format!(
            "programs:\n  - name: x\n    object: x.o\n    usdt: {{a: f}}\n    attachment: {yaml}\n"
        );
        let config = Config::parse(Path::new("/etc/exporter/test.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        let attachment = &config.programs[0].value.attachment().unwrap().value;
        Selector::new(attachment)
    }

    /// A made-up process: no /proc reads happen for the facts given here.
    pub(super) fn process(pid: i32, comm: &str, exe: &str) -> ProcessInfo {
        ProcessInfo::new(
            ProcessKey { pid, start_time: 1 },
            comm.into(),
            exe.into(),
            1,
        )
        .with_cmdline(Some(format!("{exe} --workers 4")))
        .with_cgroup(Some("/system.slice/app.service".into()))
        .with_ancestors(vec!["bash".into(), "sshd".into(), "systemd".into()])
    }

    /// Pids no real process of this test has (above the kernel's pid_max).
    pub(super) const FAKE: i32 = 5_000_000;

    #[test]
    fn binary_name_compares_the_comm_truncated_to_15_bytes() {
        let s = selector("{binary_name: gunicorn}");
        assert!(s.matches(&process(FAKE, "gunicorn", "/usr/bin/gunicorn")));
        assert!(!s.matches(&process(FAKE, "gunicorn2", "/usr/bin/gunicorn")));
        let long = selector("{binary_name: gunicorn-worker-pool}");
        assert!(long.matches(&process(FAKE, "gunicorn-worker", "/x")));
        assert_eq!(long.describe(), "binary_name=gunicorn-worker");
    }

    #[test]
    fn named_executables_are_plain_exe_paths() {
        let s = selector("[{exe_path: /usr/bin/redis-server}, {exe_path: \"/usr/bin/python3*\"}, {exe_path: /opt/x, cmdline: y}, {exe_path: /opt/z, exclude: {pid: 1}}]");
        assert_eq!(
            s.named_executables(),
            vec![PathBuf::from("/usr/bin/redis-server")]
        );
        assert!(selector("{binary_name: x}").named_executables().is_empty());
    }

    #[test]
    fn exe_path_is_a_path_glob() {
        let s = selector("{exe_path: \"/usr/bin/python3*\"}");
        assert!(s.matches(&process(FAKE, "python3", "/usr/bin/python3")));
        assert!(s.matches(&process(FAKE, "python3", "/usr/bin/python3.11")));
        assert!(!s.matches(&process(FAKE, "python3", "/usr/local/bin/python3.11")));
        // `*` stays within one path component.
        assert!(!s.matches(&process(FAKE, "x", "/usr/bin/python3/x")));
        // An upgraded executable reads as "... (deleted)": still its path.
        assert!(s.matches(&process(FAKE, "python3", "/usr/bin/python3.11 (deleted)")));

        let java = selector("{exe_path: \"**/bin/java\"}");
        assert!(java.matches(&process(FAKE, "java", "/usr/lib/jvm/java-17/bin/java")));
        assert!(java.matches(&process(FAKE, "java", "/bin/java")));
        assert!(!java.matches(&process(FAKE, "java", "/usr/bin/javac")));

        let opt = selector("{exe_path: \"/opt/{a,b}/bin/python3\"}");
        assert!(opt.matches(&process(FAKE, "python3", "/opt/b/bin/python3")));
        assert!(!opt.matches(&process(FAKE, "python3", "/opt/c/bin/python3")));
    }

    #[test]
    fn cmdline_is_an_unanchored_regex_on_the_joined_arguments() {
        let s = selector("{cmdline: \"--workers [0-9]\"}");
        assert!(s.matches(&process(FAKE, "g", "/usr/bin/g")));
        let anchored = selector("{cmdline: \"^/usr/bin/g --workers 4$\"}");
        assert!(anchored.matches(&process(FAKE, "g", "/usr/bin/g")));
        assert!(!anchored.matches(&process(FAKE, "g", "/usr/bin/gg")));
        // An unreadable command line matches nothing, not even `.*`.
        let any = selector("{cmdline: \".*\"}");
        assert!(!any.matches(&process(FAKE, "g", "/g").with_cmdline(None)));
        assert!(any.matches(&process(FAKE, "g", "/g").with_cmdline(Some(String::new()))));
    }

    #[test]
    fn parent_binary_name_is_the_parent_or_with_any_ancestor_any_ancestor() {
        let p = process(FAKE, "worker", "/w");
        assert!(selector("{parent_binary_name: bash}").matches(&p));
        assert!(!selector("{parent_binary_name: sshd}").matches(&p));
        assert!(selector("{parent_binary_name: sshd, any_ancestor: true}").matches(&p));
        assert!(selector("{parent_binary_name: systemd, any_ancestor: true}").matches(&p));
        assert!(!selector("{parent_binary_name: cron, any_ancestor: true}").matches(&p));
        let orphan = p.clone().with_ancestors(Vec::new());
        assert!(!selector("{parent_binary_name: bash, any_ancestor: true}").matches(&orphan));
        assert!(!selector("{parent_binary_name: bash}").matches(&orphan));
    }

    #[test]
    fn pid_and_cgroup() {
        let p = process(FAKE, "app", "/app");
        assert!(selector(&format!("{{pid: {FAKE}}}")).matches(&p));
        assert!(!selector(&format!("{{pid: {}}}", FAKE + 1)).matches(&p));
        assert!(selector("{cgroup: /system.slice/app.service}").matches(&p));
        assert!(selector("{cgroup: \"/system.slice/*.service\"}").matches(&p));
        assert!(!selector("{cgroup: /system.slice}").matches(&p));
        let pod = p.clone().with_cgroup(Some(
            "/kubepods/burstable/pod1234-abcd/cri-containerd-77.scope".into(),
        ));
        assert!(selector("{cgroup: \"/kubepods/**/pod1234*/**\"}").matches(&pod));
        assert!(!selector("{cgroup: \"/kubepods/**/pod9*/**\"}").matches(&pod));
        let no_v2 = p.with_cgroup(None);
        assert!(!selector("{cgroup: \"/**\"}").matches(&no_v2));
    }

    #[test]
    fn pid_file_is_read_when_matching() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let yaml = format!("{{pid_file: {}}}", path.display());
        let p = process(FAKE, "app", "/app");
        // Missing, then garbage, then the pid (with a newline), then another pid.
        assert!(!selector(&yaml).matches(&p));
        std::fs::write(&path, "not a pid\n").unwrap();
        assert!(!selector(&yaml).matches(&p));
        std::fs::write(&path, "-1\n").unwrap();
        assert!(!selector(&yaml).matches(&p));
        std::fs::write(&path, format!("{FAKE}\n")).unwrap();
        let s = selector(&yaml);
        assert!(s.matches(&p));
        assert!(!s.matches(&process(FAKE + 1, "app", "/app")));
        // The same selector sees the file change once its short reuse is over.
        std::fs::write(&path, format!("{}\n", FAKE + 1)).unwrap();
        std::thread::sleep(PID_FILE_REUSE + Duration::from_millis(20));
        assert!(!s.matches(&p));
        assert!(s.matches(&process(FAKE + 1, "app", "/app")));
    }

    #[test]
    fn every_given_field_must_match() {
        let s = selector(
            "{binary_name: app, exe_path: /app, cmdline: workers, parent_binary_name: bash, pid: 5000000, cgroup: \"/system.slice/**\"}",
        );
        let p = process(FAKE, "app", "/app");
        assert!(s.matches(&p));
        assert!(!s.matches(&process(FAKE, "app2", "/app")));
        assert!(!s.matches(&process(FAKE, "app", "/app2")));
        assert!(!s.matches(&p.clone().with_cmdline(Some("/app".into()))));
        assert!(!s.matches(&p.clone().with_ancestors(vec!["zsh".into()])));
        assert!(!s.matches(&process(FAKE + 1, "app", "/app")));
        assert!(!s.matches(&p.with_cgroup(Some("/user.slice/x".into()))));
    }

    #[test]
    fn exclusions_remove_processes_from_their_alternative() {
        let s = selector("{binary_name: python3, exclude: {exe_path: /usr/bin/python3}}");
        assert!(s.matches(&process(FAKE, "python3", "/opt/app/bin/python3")));
        assert!(!s.matches(&process(FAKE, "python3", "/usr/bin/python3")));

        let s = selector(
            "{binary_name: python3, exclude: [{cmdline: pip}, {parent_binary_name: cron, exe_path: \"/usr/**\"}]}",
        );
        let p = process(FAKE, "python3", "/usr/bin/python3");
        assert!(s.matches(&p));
        assert!(!s.matches(
            &p.clone()
                .with_cmdline(Some("python3 -m pip install".into()))
        ));
        assert!(!s.matches(&p.clone().with_ancestors(vec!["cron".into()])));
        // Both fields of the second exclusion must match for it to exclude.
        let opt = process(FAKE, "python3", "/opt/python3").with_ancestors(vec!["cron".into()]);
        assert!(s.matches(&opt));

        // An alternative's exclusions do not apply to the other alternatives.
        let s = selector("[{binary_name: a, exclude: {pid: 5000000}}, {exe_path: /a}]");
        assert!(s.matches(&process(FAKE, "a", "/a")));
        assert!(!s.matches(&process(FAKE, "a", "/b")));
        assert!(s.matches(&process(FAKE + 1, "a", "/b")));
    }

    #[test]
    fn a_list_selects_what_any_alternative_selects() {
        let s = selector("[{binary_name: python3.11}, {exe_path: \"/opt/*/bin/python3\"}]");
        assert!(s.matches(&process(FAKE, "python3.11", "/usr/bin/python3.11")));
        assert!(s.matches(&process(FAKE, "python3", "/opt/app/bin/python3")));
        assert!(!s.matches(&process(FAKE, "python3", "/usr/bin/python3")));
    }

    #[test]
    fn empty_attachment_and_empty_criteria_match_nothing() {
        let nothing = Selector::new(&Attachment::default());
        assert!(!nothing.matches(&process(FAKE, "a", "/a")));
        assert_eq!(nothing.describe(), "nothing");
        // Not validated: a selector without fields still selects nothing.
        let empty = Selector::new(&Attachment::single(AttachmentSelector::default()));
        assert!(!empty.matches(&process(FAKE, "a", "/a")));
    }

    #[test]
    fn the_exporter_itself_is_never_selected() {
        let me = std::process::id() as i32;
        let info = ProcessInfo::read(me).unwrap();
        assert!(!selector(&format!("{{pid: {me}}}")).matches(&info));
        assert!(!selector(&format!("{{binary_name: {:?}}}", info.comm)).matches(&info));
        assert!(!selector("{exe_path: \"/**\"}").matches(&info));
        assert!(!selector("[{cmdline: \".\"}, {exe_path: \"/**\"}]").matches(&info));
        // Another pid with the same facts would be.
        let mut other = info.clone();
        other.key.pid = FAKE;
        assert!(selector("{exe_path: \"/**\"}").matches(&other));
    }

    #[test]
    fn parent_of_this_test_process_is_read_from_proc() {
        let me = std::process::id() as i32;
        let info = ProcessInfo::read(me).unwrap();
        let parent = ProcessInfo::read(info.ppid).unwrap();
        assert_eq!(info.parent_comm(), Some(parent.comm.as_str()));
        assert_eq!(info.ancestor_comms()[0], parent.comm);
        // This process itself is excluded; a copy under another pid (its /proc
        // facts already read) is matched through its real parent.
        let s = selector(&format!("{{parent_binary_name: {:?}}}", parent.comm));
        assert!(!s.matches(&info));
        let mut copy = info.clone();
        copy.key.pid = FAKE;
        assert!(s.matches(&copy));
        assert!(!selector("{parent_binary_name: no-such-parent}").matches(&copy));
    }

    /// A child process killed (and reaped) when dropped, even if a test fails.
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts `sleep 30` and waits until it has exec'd (its comm is `sleep`).
    fn spawn_sleep() -> (Sleeper, ProcessInfo) {
        let child = Sleeper(Command::new("sleep").arg("30").spawn().unwrap());
        let pid = child.0.id() as i32;
        for _ in 0..500 {
            // comm changes before the kernel sets up the new arguments: wait for both.
            let args_ready = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\0"));
            if let Some(info) = ProcessInfo::read(pid).filter(|i| i.comm == "sleep" && args_ready) {
                return (child, info);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("sleep {pid} did not start");
    }

    #[test]
    fn a_real_child_is_matched_by_every_kind_of_field() {
        let (child, info) = spawn_sleep();
        let pid = info.pid();
        let me = std::process::id() as i32;
        assert_eq!(info.ppid, me);

        assert!(selector("{binary_name: sleep}").matches(&info));
        assert!(selector("{cmdline: \"^sleep 30$\"}").matches(&info));
        assert!(!selector("{cmdline: \"^sleep 31$\"}").matches(&info));
        // Debian's sleep is its own binary; a multi-call one would be named otherwise.
        let exe_name = info.exe.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(exe_name, "sleep", "{}", info.exe.display());
        assert!(selector("{exe_path: \"**/sleep\"}").matches(&info));
        assert!(!selector("{exe_path: \"**/bin/sleeper\"}").matches(&info));
        assert!(selector(&format!("{{pid: {pid}}}")).matches(&info));
        assert!(!selector(&format!("{{pid: {me}}}")).matches(&info));

        // Its parent is this test process; its grandparent an ancestor.
        let own_comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let own_comm = own_comm.trim_end_matches('\n');
        assert!(selector(&format!("{{parent_binary_name: {own_comm:?}}}")).matches(&info));
        let grandparent = ProcessInfo::read(me)
            .unwrap()
            .parent_comm()
            .unwrap()
            .to_string();
        assert!(selector(&format!(
            "{{parent_binary_name: {grandparent:?}, any_ancestor: true}}"
        ))
        .matches(&info));

        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        assert!(selector(&format!(
            "{{pid_file: {:?}}}",
            pid_file.display().to_string()
        ))
        .matches(&info));

        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        match cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
            Some(path) => {
                assert_eq!(info.cgroup(), Some(path));
                let exact = globset::escape(path);
                assert!(selector(&format!("{{cgroup: {exact:?}}}")).matches(&info));
                assert!(selector("{cgroup: \"/**\"}").matches(&info) || path == "/");
                assert!(!selector("{cgroup: /no/such/cgroup}").matches(&info));
            }
            None => eprintln!("no cgroup v2 line in /proc/{pid}/cgroup: cgroup not checked"),
        }

        // All together, then with an exclusion, then as one of two alternatives.
        let all = format!(
            "{{binary_name: sleep, cmdline: \"^sleep 30$\", exe_path: \"**/sleep\", pid: {pid}, parent_binary_name: {own_comm:?}}}"
        );
        assert!(selector(&all).matches(&info));
        assert!(!selector("{binary_name: sleep, exclude: {cmdline: \" 30$\"}}").matches(&info));
        assert!(selector("[{binary_name: nope}, {cmdline: \"^sleep\"}]").matches(&info));

        drop(child);
        // Gone: its lazily read facts can no longer be read.
        assert!(ProcessInfo::read(pid).is_none_or(|i| i.key != info.key));
    }

    #[test]
    fn describe_is_short_and_readable() {
        assert_eq!(
            selector("{binary_name: gunicorn}").describe(),
            "binary_name=gunicorn"
        );
        assert_eq!(
            selector("{binary_name: gunicorn, cmdline: \"--workers\", exclude: {exe_path: /usr/bin/foo}}")
                .describe(),
            "binary_name=gunicorn, cmdline=~\"--workers\"; excluding exe_path=/usr/bin/foo"
        );
        assert_eq!(
            selector("[{binary_name: python3.11}, {exe_path: \"/opt/*/bin/python3\", exclude: [{pid: 7}, {cgroup: \"/a/**\", parent_binary_name: sh, any_ancestor: true}]}]")
                .describe(),
            "binary_name=python3.11 or (exe_path=/opt/*/bin/python3; excluding pid=7 or (ancestor_binary_name=sh, cgroup=/a/**))"
        );
        assert_eq!(
            selector("{pid_file: run/app.pid, parent_binary_name: bash}").describe(),
            "parent_binary_name=bash, pid_file=/etc/exporter/run/app.pid"
        );
    }

    #[test]
    fn try_new_reports_what_does_not_compile() {
        let bad = |s: AttachmentSelector| Selector::try_new(&Attachment::single(s)).unwrap_err();
        let e = bad(AttachmentSelector {
            cmdline: Some("(".into()),
            ..Default::default()
        });
        assert_eq!(e, "cmdline regex \"(\" does not compile: unclosed group");
        let e = bad(AttachmentSelector {
            exe_path: Some("/a/[".into()),
            ..Default::default()
        });
        assert!(
            e.starts_with("exe_path glob \"/a/[\" does not compile: unclosed character class"),
            "{e}"
        );
        let e = bad(AttachmentSelector {
            pid: Some(0),
            ..Default::default()
        });
        assert_eq!(e, "pid 0 is not a process id");
    }
}
