//! The landing page: a summary line, what is wrong (before anything else),
//! then every program with the processes it is attached to and the probes
//! attached in each; and, with `--web.enable-explain`, a form that explains
//! why a process is (not) selected (`/?pid=N`,
//! [`crate::exporter::explain_pid`]). Server-rendered,
//! no JavaScript; every text from outside is escaped.

use crate::attach::{AttachFailure, Instance};
use crate::discovery::Line;
use crate::exporter::{BrokenProgram, ExplainError, ProcessExplanation, Published};
use crate::metrics::ReloadStatus;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

/// Most rows of the problems table; the rest are counted.
const MAX_PROBLEMS: usize = 100;

/// Most processes (or binaries) listed per program; the rest are counted.
const MAX_ROWS_PER_PROGRAM: usize = 50;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the explain form asked for, and what came of it.
#[derive(Debug)]
pub enum ExplainView {
    /// The form is not served (no `--web.enable-explain`): a note says how
    /// to ask instead.
    Off,
    /// No `pid` asked for.
    None,
    /// The process, explained against the running programs.
    Explained(Box<ProcessExplanation>),
    /// The pid was not a pid, or names no process; with the text as given.
    Failed(String, ExplainError),
}

/// The numbers of the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Programs running.
    pub loaded: usize,
    /// Programs of the config that could not be set up.
    pub broken: usize,
    /// Distinct processes with at least one program attached.
    pub processes: usize,
    /// Executables attached for every process (`instances: per_binary`).
    pub binaries: usize,
    /// Probes that failed to attach, per process (or binary) and probe, as
    /// things stand now (an instance that failed as a whole counts once).
    pub failures: usize,
}

impl Summary {
    /// Counts them in one pass over the published state.
    pub fn of(published: &Published, broken: &[BrokenProgram]) -> Summary {
        let mut pids = BTreeSet::new();
        let mut binaries = 0;
        let mut failures = 0;
        for program in &published.programs {
            pids.extend(program.instances.iter().filter_map(|i| i.target.pid()));
            binaries += program.binaries.len();
            failures += program
                .attached()
                .map(|i| i.failures.len())
                .chain(program.failed.iter().map(|f| f.failures.len()))
                .chain(program.failed_binaries.iter().map(|f| f.failures.len()))
                .sum::<usize>();
        }
        Summary {
            loaded: published.programs.len(),
            broken: broken.len(),
            processes: pids.len(),
            binaries,
            failures,
        }
    }
}

/// `12 s`, `5 min`, `3 h`, `2 d`.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Renders the page as HTML.
pub fn render(
    published: &Published,
    broken: &[BrokenProgram],
    reload: &ReloadStatus,
    metrics_path: &str,
    explain: &ExplainView,
) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ebpf-userspace-exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left;vertical-align:top}}\
         .err{{color:#b00}}.ok{{color:#070}}td.msg{{white-space:pre-wrap}}\
         .d1{{padding-left:1.5em}}.d2{{padding-left:3em}}.d3{{padding-left:4.5em}}.d4{{padding-left:6em}}</style></head><body>\
         <h1>ebpf-userspace-exporter {}</h1><p><a href=\"{}\">Metrics</a></p>",
        env!("CARGO_PKG_VERSION"),
        escape(metrics_path)
    );
    summary(&mut page, &Summary::of(published, broken), reload);
    explain_form(&mut page, published, explain);
    problems(&mut page, published, broken, reload);
    programs(&mut page, published);
    page.push_str("</body></html>");
    page
}

/// The summary line.
fn summary(page: &mut String, s: &Summary, reload: &ReloadStatus) {
    let reload = if reload.error.is_some() {
        "<span class=\"err\">FAILED</span> (the programs are those of the config before it)"
            .to_string()
    } else {
        format!(
            "successful, {} ago",
            ago(unix_now() - reload.success_timestamp)
        )
    };
    let binaries = if s.binaries > 0 {
        format!("; binaries attached: {}", s.binaries)
    } else {
        String::new()
    };
    let failures = if s.failures > 0 {
        format!("<span class=\"err\">attach failures: {}</span>", s.failures)
    } else {
        "attach failures: 0".to_string()
    };
    let broken = if s.broken > 0 {
        format!("<span class=\"err\">{} broken</span>", s.broken)
    } else {
        "0 broken".to_string()
    };
    let _ = write!(
        page,
        "<p id=\"summary\">programs: {} loaded, {broken}; processes attached: {}{binaries}; {failures}; last reload: {reload}</p>",
        s.loaded, s.processes
    );
}

/// Explanation lines as indented divs, marked good or bad.
fn lines_html(page: &mut String, lines: &[Line]) {
    for line in lines {
        let class = match line.matched {
            Some(true) => " ok",
            Some(false) => " err",
            None => "",
        };
        let _ = write!(
            page,
            "<div class=\"d{}{class}\">{}</div>",
            line.depth.min(4),
            escape(&line.text)
        );
    }
}

/// The explain form, and what it explained.
fn explain_form(page: &mut String, published: &Published, explain: &ExplainView) {
    let asked = match explain {
        ExplainView::Off => {
            page.push_str("<p id=\"explain-off\">Why is a process (not) selected? <code>ebpf-userspace-exporter check --pid N</code> on the host says; the exporter started with <code>--web.enable-explain</code> answers here too.</p>");
            return;
        }
        ExplainView::None => String::new(),
        ExplainView::Explained(e) => e.facts.pid.to_string(),
        ExplainView::Failed(text, _) => text.clone(),
    };
    let _ = write!(
        page,
        "<form method=\"get\" action=\"/\"><label>Why is process <input name=\"pid\" value=\"{}\" size=\"8\" inputmode=\"numeric\"> (not) selected?</label> <button type=\"submit\">Explain</button></form>",
        escape(&asked)
    );
    match explain {
        ExplainView::Off | ExplainView::None => {}
        ExplainView::Failed(_, e) => {
            let _ = write!(
                page,
                "<section id=\"explain\"><p class=\"err\">{}</p></section>",
                escape(&e.to_string())
            );
        }
        ExplainView::Explained(e) => {
            page.push_str("<section id=\"explain\"><p>Command lines are hidden here (they may hold secrets); <code>ebpf-userspace-exporter check --pid N</code> on the host shows them.</p>");
            lines_html(page, &e.facts.lines());
            for program in &e.programs {
                lines_html(page, &program.lines());
                let state = published
                    .programs
                    .iter()
                    .find(|p| p.prepared.name() == program.name);
                if let Some(state) = state {
                    lines_html(
                        page,
                        &live_lines(state, &e.facts, program.selection.selected),
                    );
                }
            }
            page.push_str("</section>");
        }
    }
}

/// What the running exporter has for this process: the instance attached to
/// it (or its binary), or why nothing is.
fn live_lines(
    state: &crate::exporter::PublishedProgram,
    facts: &crate::discovery::ProcessFacts,
    selected: bool,
) -> Vec<Line> {
    let pid = facts.pid;
    let instance = state
        .instances
        .iter()
        .find(|i| i.target.pid() == Some(pid))
        .or_else(|| {
            state.binaries.iter().find(|i| match &i.target {
                crate::attach::AttachTarget::Binary { exe, found_in } => {
                    found_in.as_ref().is_some_and(|p| p.pid() == pid)
                        || exe.display().to_string() == facts.exe
                }
                crate::attach::AttachTarget::Process(_) => false,
            })
        });
    let mut out = Vec::new();
    if let Some(instance) = instance {
        out.push(Line::new(
            1,
            format!(
                "attached now ({}): {}",
                instance.target.describe(),
                instance.attached.join("; ")
            ),
            Some(true),
        ));
        for f in &instance.failures {
            out.push(Line::new(
                1,
                format!("failed to attach: {}", f.message),
                Some(false),
            ));
        }
        for outcome in &instance.sources {
            out.push(Line::new(
                1,
                outcome.describe(),
                Some(outcome.chosen.is_some()),
            ));
        }
    } else if let Some(failed) = state.failed.iter().find(|f| f.process.pid() == pid) {
        for f in &failed.failures {
            out.push(Line::new(
                1,
                format!("not attached: {}", f.message),
                Some(false),
            ));
        }
    } else if selected {
        out.push(Line::new(
            1,
            "not attached yet: the exporter has not seen this process since it changed (the next rescan attaches it)",
            None,
        ));
    }
    out
}

/// What an attach failure is about.
enum ProblemTarget<'a> {
    /// A process where nothing attached.
    Failed(&'a crate::discovery::ProcessInfo),
    /// An executable named in the config where nothing attached.
    FailedBinary(&'a std::path::Path),
    /// An attached instance, some of whose probes failed.
    Instance(&'a Instance),
}

impl ProblemTarget<'_> {
    fn describe(&self) -> String {
        match self {
            ProblemTarget::Failed(p) => {
                format!("pid {} ({}) (nothing attached)", p.pid(), p.comm)
            }
            ProblemTarget::FailedBinary(path) => {
                format!("every process of {} (nothing attached)", path.display())
            }
            ProblemTarget::Instance(i) => i.target.describe(),
        }
    }
}

/// One row of the problems table.
struct Problem<'a> {
    program: &'a str,
    target: ProblemTarget<'a>,
    failure: &'a AttachFailure,
}

/// Everything wrong, before the healthy listing: a failed reload, programs
/// that failed to load, and every attach failure.
fn problems(
    page: &mut String,
    published: &Published,
    broken: &[BrokenProgram],
    reload: &ReloadStatus,
) {
    let mut rows: Vec<Problem<'_>> = Vec::new();
    for program in &published.programs {
        let name = program.prepared.name();
        for failed in &program.failed {
            rows.extend(failed.failures.iter().map(|failure| Problem {
                program: name,
                target: ProblemTarget::Failed(&failed.process),
                failure,
            }));
        }
        for failed in &program.failed_binaries {
            rows.extend(failed.failures.iter().map(|failure| Problem {
                program: name,
                target: ProblemTarget::FailedBinary(&failed.path),
                failure,
            }));
        }
        for instance in program.attached() {
            rows.extend(instance.failures.iter().map(|failure| Problem {
                program: name,
                target: ProblemTarget::Instance(instance),
                failure,
            }));
        }
    }
    if reload.error.is_none() && broken.is_empty() && rows.is_empty() {
        return;
    }
    page.push_str("<section id=\"problems\"><h2 class=\"err\">Problems</h2>");
    if let Some(error) = &reload.error {
        let _ = write!(
            page,
            "<h3 class=\"err\">The last config reload failed</h3><p>The programs below are the ones from before it.</p><pre class=\"err\">{}</pre>",
            escape(error)
        );
    }
    if !broken.is_empty() {
        page.push_str("<h3 class=\"err\">Programs that failed to load</h3>");
        for b in broken {
            let _ = write!(
                page,
                "<h4>{}</h4><pre class=\"err\">{}</pre>",
                escape(&b.name),
                escape(&b.errors.join("\n"))
            );
        }
    }
    if !rows.is_empty() {
        page.push_str("<h3 class=\"err\">Attach failures</h3><table><tr><th>program</th><th>target</th><th>probe</th><th>error</th></tr>");
        for row in rows.iter().take(MAX_PROBLEMS) {
            let probe = if row.failure.probe.is_empty() {
                "(the whole instance)".to_string()
            } else {
                format!("{} {}", row.failure.kind.config_key(), row.failure.probe)
            };
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"msg err\">{}</td></tr>",
                escape(row.program),
                escape(&row.target.describe()),
                escape(&probe),
                escape(&row.failure.message)
            );
        }
        page.push_str("</table>");
        if rows.len() > MAX_PROBLEMS {
            let _ = write!(
                page,
                "<p>and {} more attach failures</p>",
                rows.len() - MAX_PROBLEMS
            );
        }
    }
    page.push_str("</section>");
}

/// Every program: what it selects and its probes, then the processes (or
/// binaries) it is attached to, with what is attached in each and what failed.
fn programs(page: &mut String, published: &Published) {
    page.push_str("<section id=\"programs\"><h2>Programs</h2>");
    for state in &published.programs {
        let p = &state.prepared;
        let _ = write!(
            page,
            "<h3>{}</h3><p>selects {}; probes: {}</p><p>{}</p>",
            escape(p.name()),
            escape(&p.selector.describe()),
            escape(
                &p.probes
                    .iter()
                    .map(|x| format!("{} {} -> {}", x.kind.config_key(), x.spec, x.function))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            attached_counts(state)
        );
        page.push_str(
            "<table><tr><th>attached to</th><th>probes attached</th><th>failures</th></tr>",
        );
        let mut shown = 0;
        let mut more = 0;
        let mut row = |page: &mut String, html: String| {
            if shown < MAX_ROWS_PER_PROGRAM {
                page.push_str(&html);
                shown += 1;
            } else {
                more += 1;
            }
        };
        for instance in state.attached() {
            row(page, instance_row(instance));
        }
        for failed in &state.failed {
            row(
                page,
                format!(
                    "<tr><td>pid {} ({})</td><td>nothing</td><td class=\"msg{}\">{}</td></tr>",
                    failed.process.pid(),
                    escape(&failed.process.comm),
                    // A build without any of the sources is no fault.
                    if failed.unobservable() { "" } else { " err" },
                    failure_messages(&failed.failures)
                ),
            );
        }
        for failed in &state.failed_binaries {
            row(
                page,
                format!(
                    "<tr><td>every process of {}</td><td>nothing</td><td class=\"msg err\">{}</td></tr>",
                    escape(&failed.path.display().to_string()),
                    failure_messages(&failed.failures)
                ),
            );
        }
        if shown == 0 {
            page.push_str("<tr><td colspan=\"3\">no matching process yet</td></tr>");
        }
        page.push_str("</table>");
        if more > 0 {
            let _ = write!(page, "<p>and {more} more</p>");
        }
    }
    page.push_str("</section>");
}

/// What the program's BPF functions cost the processes so far: runs, total
/// time and time per run (empty when BPF statistics are off).
fn probe_cost(state: &crate::exporter::PublishedProgram) -> String {
    use crate::metrics::bpf_stats;
    if !bpf_stats::counting() {
        return String::new();
    }
    let runs: Vec<bpf_stats::ProgramRuns> = match (&state.shared, state.instances.first()) {
        (Some(shared), Some(first)) => bpf_stats::of_object(shared, &first.programs),
        (Some(_), None) => Vec::new(),
        (None, _) => state
            .instances
            .iter()
            .chain(&state.binaries)
            .flat_map(|i| bpf_stats::of_object(i.object(), &i.programs))
            .collect(),
    };
    let (n, ns) = bpf_stats::total(&runs);
    let per_run = if n > 0 {
        format!(", {:.0} ns per run", ns as f64 / n as f64)
    } else {
        String::new()
    };
    format!(
        "; probe cost so far: {n} BPF program run(s), {:.3} ms{per_run}",
        ns as f64 / 1e6
    )
}

/// `attached to 3 process(es); 1 failed`.
fn attached_counts(state: &crate::exporter::PublishedProgram) -> String {
    let mut parts = vec![format!(
        "attached to {} process(es){}",
        state.instances.len(),
        probe_cost(state)
    )];
    if !state.binaries.is_empty() || state.prepared.is_per_binary() {
        parts.push(format!("{} binary(ies)", state.binaries.len()));
    }
    let failed = state.failed.len() - state.no_source.processes + state.failed_binaries.len();
    if failed > 0 {
        parts.push(format!(
            "<span class=\"err\">{failed} with nothing attached</span>"
        ));
    }
    if state.no_source.processes > 0 {
        parts.push(format!(
            "{} whose build offers none of its sources",
            state.no_source.processes
        ));
    }
    parts.join("; ")
}

/// One attached instance: its target, each probe attached and the sources
/// they feed, its failures and the sources it lacks (with why).
fn instance_row(instance: &Arc<Instance>) -> String {
    let mut attached: Vec<String> = instance.attached.iter().map(|a| escape(a)).collect();
    let mut missing = Vec::new();
    for outcome in &instance.sources {
        match &outcome.chosen {
            Some(_) => attached.push(escape(&outcome.describe())),
            None => missing.push(outcome.describe()),
        }
    }
    let failures = failure_messages(&instance.failures);
    let missing = escape(&missing.join("\n"));
    format!(
        "<tr><td>{}</td><td>{}</td><td class=\"msg err\">{}</td></tr>",
        escape(&instance.target.describe()),
        attached.join("<br>"),
        [failures, missing]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The messages of attach failures, one per line, escaped for the page.
fn failure_messages(failures: &[AttachFailure]) -> String {
    let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    escape(&messages.join("\n"))
}

/// The value of `key` in a URL query string (`a=1&pid=42`), percent-decoded
/// (`+` is a space); the first one when repeated.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// `%XX` escapes and `+` decoded; invalid escapes kept as they are, invalid
/// UTF-8 replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(query_param("pid=42", "pid").as_deref(), Some("42"));
        assert_eq!(
            query_param("a=1&pid=%2042+", "pid").as_deref(),
            Some(" 42 ")
        );
        assert_eq!(
            query_param("pid=%3Cscript%3E", "pid").as_deref(),
            Some("<script>")
        );
        // Broken escapes stay as written; the first of repeated keys wins.
        assert_eq!(query_param("pid=5%&pid=6", "pid").as_deref(), Some("5%"));
        assert_eq!(query_param("pid=%zz", "pid").as_deref(), Some("%zz"));
        assert_eq!(query_param("pid", "pid").as_deref(), Some(""));
        assert_eq!(query_param("other=1", "pid"), None);
        assert_eq!(query_param("pid=%FF", "pid").as_deref(), Some("\u{fffd}"));
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(ago(3.7), "3 s");
        assert_eq!(ago(-1.0), "0 s");
        assert_eq!(ago(125.0), "2 min");
        assert_eq!(ago(7300.0), "2 h");
        assert_eq!(ago(200_000.0), "2 d");
    }

    /// The page's text between `from` and the next `to`.
    fn between<'a>(page: &'a str, from: &str, to: &str) -> &'a str {
        let start = page
            .find(from)
            .unwrap_or_else(|| panic!("{from} in {page}"));
        let rest = &page[start..];
        &rest[..rest.find(to).unwrap_or(rest.len())]
    }

    #[test]
    fn a_healthy_empty_page_has_a_summary_and_no_problems() {
        let mut reload = ReloadStatus::default();
        reload.success(unix_now() - 5.0);
        let page = render(
            &Published::default(),
            &[],
            &reload,
            "/metrics",
            &ExplainView::None,
        );
        assert_eq!(
            between(&page, "<p id=\"summary\">", "</p>"),
            "<p id=\"summary\">programs: 0 loaded, 0 broken; processes attached: 0; attach failures: 0; last reload: successful, 5 s ago"
        );
        assert!(!page.contains("id=\"problems\""), "{page}");
        assert!(
            page.contains("<form method=\"get\" action=\"/\">"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
    }

    /// Without `--web.enable-explain` there is no form, only how to ask.
    #[test]
    fn the_explain_form_is_off_by_default() {
        let page = render(
            &Published::default(),
            &[],
            &ReloadStatus::default(),
            "/metrics",
            &ExplainView::Off,
        );
        assert!(!page.contains("<form"), "{page}");
        assert!(!page.contains("name=\"pid\""), "{page}");
        assert_eq!(
            between(&page, "<p id=\"explain-off\">", "</p>"),
            "<p id=\"explain-off\">Why is a process (not) selected? <code>ebpf-userspace-exporter check --pid N</code> on the host says; the exporter started with <code>--web.enable-explain</code> answers here too."
        );
    }

    #[test]
    fn problems_come_before_the_programs_and_are_escaped() {
        let mut reload = ReloadStatus::default();
        reload.failure("config.yaml:3:1: <bad> & worse".into());
        let broken = [BrokenProgram {
            name: "b<1>".into(),
            errors: vec!["object \"x.o\" missing".into()],
        }];
        let page = render(
            &Published::default(),
            &broken,
            &reload,
            "/m\"etrics",
            &ExplainView::Failed(
                "<x>".into(),
                crate::exporter::ExplainError::BadPid("<x>".into()),
            ),
        );
        assert_eq!(
            between(&page, "<p id=\"summary\">", "</p>"),
            "<p id=\"summary\">programs: 0 loaded, <span class=\"err\">1 broken</span>; processes attached: 0; attach failures: 0; last reload: <span class=\"err\">FAILED</span> (the programs are those of the config before it)"
        );
        let problems = page.find("<section id=\"problems\">").unwrap();
        let programs = page.find("<section id=\"programs\">").unwrap();
        assert!(problems < programs, "{page}");
        assert!(page.contains("<pre class=\"err\">config.yaml:3:1: &lt;bad&gt; &amp; worse</pre>"));
        assert!(page.contains(
            "<h4>b&lt;1&gt;</h4><pre class=\"err\">object &quot;x.o&quot; missing</pre>"
        ));
        assert!(page.contains("href=\"/m&quot;etrics\""));
        assert!(page.contains("<input name=\"pid\" value=\"&lt;x&gt;\""));
        assert!(page.contains(
            "<section id=\"explain\"><p class=\"err\">&quot;&lt;x&gt;&quot; is not a process id: give a positive integer</p></section>"
        ));
    }
}
