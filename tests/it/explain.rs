//! "Why is my process (not) selected?": `check --pid` and the landing page's
//! explain view on a running fixture target, against a program that selects
//! it and one that does not; the explain view served only when asked for
//! (`--web.enable-explain`), and then behind the web config's basic auth;
//! and the landing page's summary and its problems listed before the
//! healthy programs.

use crate::common::{self, fixtures, require_bpf, Exporter, Target};
use std::process::Command;

/// Above the kernel's largest pid_max (2^22): no process has it.
const NO_SUCH_PID: &str = "4999999";

/// A program `hits` (USDT `fixture:hit`) selecting processes named `comm`, one
/// `others` (a uprobe on `target_add`) selecting `uexp-notme`, which no test
/// starts, and `extra` programs after them.
fn config(comm: &str, extra: &str) -> String {
    let f = fixtures();
    format!(
        r#"
programs:
  - name: hits
    object: {usdt}
    metrics:
      counters:
        - name: explain_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
  - name: others
    object: {uprobe}
    metrics:
      counters:
        - name: explain_calls_total
          help: target_add calls by argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {{binary_name: uexp-notme}}
{extra}"#,
        usdt = f.object("usdt_counts").display(),
        uprobe = f.object("uprobe_counts").display(),
    )
}

/// A third program selecting `comm` whose only probe is a uprobe on a symbol
/// the fixture lacks (it has `target_add`).
fn missing_symbol_program(comm: &str) -> String {
    format!(
        r#"  - name: missing
    object: {uprobe}
    metrics:
      counters:
        - name: explain_missing_total
          help: never counted
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_ad: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        uprobe = fixtures().object("uprobe_counts").display(),
    )
}

/// Runs `check -c CONFIG --pid PID`: (success, stdout, stderr).
fn check(config: &str, pid: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::EXPORTER)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .args(["--pid", pid])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The explanation of a `check --pid` output: the lines after the verifier's
/// (from `process PID (...)` on).
fn explanation(stdout: &str) -> Vec<String> {
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("process "))
        .unwrap_or_else(|| panic!("no explanation in:\n{stdout}"));
    lines[start..].to_vec()
}

/// The lines of `all` from `first` on, `n` of them.
fn block<'a>(all: &'a [String], first: &str, n: usize) -> &'a [String] {
    let at = all
        .iter()
        .position(|l| l == first)
        .unwrap_or_else(|| panic!("no line {first:?} in {all:#?}"));
    &all[at..(at + n).min(all.len())]
}

#[test]
fn check_pid_says_which_programs_select_a_process_and_where_probes_resolve() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-expl-cli";
    let target = Target::start(comm);
    let path = fixtures().target_named(comm);
    let pid = target.pid().to_string();
    let (ok, stdout, stderr) = check(&config(comm, ""), &pid);
    assert!(ok, "{stdout}{stderr}");
    // The verifier still loads every program.
    for name in ["hits", "others"] {
        assert!(
            stdout.contains(&format!(
                "ok: program {name:?}: 1 probe(s), 1 counter(s), 0 histogram(s); loads through the verifier"
            )),
            "{stdout}"
        );
    }
    let lines = explanation(&stdout);
    assert_eq!(lines[0], format!("process {pid} ({comm})"));
    assert_eq!(lines[1], format!("  exe: {}", path.display()));
    assert_eq!(
        lines[2],
        format!("  cmdline: {:?}", path.display().to_string())
    );
    assert_eq!(
        block(
            &lines,
            "program \"hits\" (binary_name=uexp-expl-cli): SELECTED",
            3
        ),
        [
            "program \"hits\" (binary_name=uexp-expl-cli): SELECTED".to_string(),
            "  binary_name matches: comm \"uexp-expl-cli\" is \"uexp-expl-cli\"".into(),
            format!(
                "  usdt fixture:hit -> on_hit: found fixture:hit in {}",
                path.display()
            ),
        ]
    );
    // Not selected: the field that does not match, and no probe lookup.
    assert_eq!(
        block(
            &lines,
            "program \"others\" (binary_name=uexp-notme): NOT SELECTED",
            3
        ),
        [
            "program \"others\" (binary_name=uexp-notme): NOT SELECTED",
            "  binary_name does not match: comm \"uexp-expl-cli\" is not \"uexp-notme\"",
        ]
    );
}

#[test]
fn check_pid_of_no_process_fails_naming_the_pid() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (ok, stdout, stderr) = check(&config("uexp-expl-none", ""), NO_SUCH_PID);
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "error: no process with pid {NO_SUCH_PID} (in the exporter's PID namespace)\n"
        )),
        "{stdout}"
    );
    // A pid that is not a number is refused by the argument parser.
    let (ok, _, stderr) = check(&config("uexp-expl-none", ""), "12ab");
    assert!(!ok);
    assert!(
        stderr.contains("\"12ab\" is not a process id: give a positive integer"),
        "{stderr}"
    );
}

/// Undoes the landing page's escaping.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The explain view's lines as `check --pid` prints them (two spaces per
/// level), leaving out what only the live exporter knows (what it attached).
fn explain_view(page: &str) -> Vec<String> {
    let section = page
        .split_once("<section id=\"explain\">")
        .and_then(|(_, rest)| rest.split_once("</section>"))
        .unwrap_or_else(|| panic!("no explain section in {page}"))
        .0;
    let div = regex::Regex::new(r#"<div class="d(\d)[^"]*">(.*?)</div>"#).unwrap();
    div.captures_iter(section)
        .map(|c| {
            let depth: usize = c[1].parse().unwrap();
            format!("{}{}", "  ".repeat(depth), unescape(&c[2]))
        })
        .filter(|l| {
            let text = l.trim_start();
            !text.starts_with("attached now ") && !text.starts_with("not attached")
        })
        .collect()
}

#[test]
fn landing_page_sums_up_and_explains_a_pid_as_check_does() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-expl-page";
    let target = Target::start(comm);
    let pid = target.pid().to_string();
    let config = config(comm, "");
    let exporter = Exporter::start_with(&config, &["--web.enable-explain"]);
    assert!(
        exporter.logs().contains("--web.enable-explain on plain HTTP without authentication: anyone who reaches 127.0.0.1:"),
        "{}",
        exporter.logs()
    );
    let page = exporter.page("/");
    assert!(
        page.contains("<p id=\"summary\">programs: 2 loaded, 0 broken; processes attached: 1; attach failures: 0; last reload: successful, "),
        "{page}"
    );
    assert!(!page.contains("id=\"problems\""), "{page}");
    let path = fixtures().target_named(comm);
    assert!(
        page.contains(&format!(
            "<tr><td>pid {pid} ({comm})</td><td>usdt fixture:hit in {} -&gt; on_hit</td>",
            path.display()
        )),
        "{page}"
    );
    assert!(
        page.contains("<tr><td colspan=\"3\">no matching process yet</td></tr>"),
        "{page}"
    );

    // The explain view shows what `check --pid` prints, line for line, but
    // for the command line, which the page hides (it may hold secrets).
    let explained = exporter.page(&format!("/?pid={pid}"));
    let (ok, stdout, stderr) = check(&config, &pid);
    assert!(ok, "{stdout}{stderr}");
    let mut expected = explanation(&stdout);
    let cmdline = path.display().to_string();
    assert_eq!(expected[2], format!("  cmdline: {cmdline:?}"));
    expected[2] = format!(
        "  cmdline: the command line ({} bytes, hidden)",
        cmdline.len()
    );
    assert_eq!(explain_view(&explained), expected);
    assert!(
        !explained.contains(&format!("&quot;{cmdline}&quot;")),
        "{explained}"
    );
    // ... and what the exporter attached for it.
    assert!(
        explained.contains(&format!(
            "<div class=\"d1 ok\">attached now (pid {pid} ({comm})): usdt fixture:hit in {} -&gt; on_hit</div>",
            path.display()
        )),
        "{explained}"
    );
    assert!(
        explained.contains(&format!("<input name=\"pid\" value=\"{pid}\"")),
        "{explained}"
    );

    // Bad input: a message, not a server error.
    let get = |query: &str| {
        let mut response = ureq::get(&exporter.url(&format!("/?pid={query}")))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let (status, body) = get("%3Cb%3E1");
    assert_eq!(status, 400);
    assert!(
        body.contains("<p class=\"err\">&quot;&lt;b&gt;1&quot; is not a process id: give a positive integer</p>"),
        "{body}"
    );
    let (status, body) = get(NO_SUCH_PID);
    assert_eq!(status, 404);
    assert!(
        body.contains(&format!(
            "<p class=\"err\">no process with pid {NO_SUCH_PID} (in the exporter&#39;s PID namespace)</p>"
        )),
        "{body}"
    );
}

/// GET `url` with curl (with `user:password` if given): the status and body.
fn curl(url: &str, user: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}"]);
    if let Some(user) = user {
        command.args(["-u", user]);
    }
    let out = command
        .arg(url)
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

/// By default the landing page has no explain form and `/?pid=N` is
/// refused without a word about the process; with `--web.enable-explain`
/// and basic auth in the web config, only a client with the password gets
/// the explanation.
#[test]
fn the_explainer_is_off_by_default_and_behind_basic_auth_when_enabled() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-expl-off";
    let target = Target::start(comm);
    let pid = target.pid().to_string();
    let config = config(comm, "");

    let exporter = Exporter::start(&config);
    let page = exporter.page("/");
    assert!(!page.contains("<form"), "{page}");
    assert!(page.contains("<p id=\"explain-off\">"), "{page}");
    // The page still lists the attached process, as it always did.
    assert!(
        page.contains(&format!("<tr><td>pid {pid} ({comm})</td>")),
        "{page}"
    );
    let (status, body) = curl(&exporter.url(&format!("/?pid={pid}")), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.starts_with("Forbidden: process explanations are off."),
        "{body}"
    );
    assert!(body.contains("--web.enable-explain"), "{body}");
    assert!(!body.contains(comm) && !body.contains(&pid), "{body}");
    // Not a pid the host has either: the same answer, nothing to tell them apart.
    let (status, other) = curl(&exporter.url(&format!("/?pid={NO_SUCH_PID}")), None);
    assert_eq!((status, &other), (403, &body));
    // An empty pid is the page.
    assert_eq!(curl(&exporter.url("/?pid="), None).0, 200);
    drop(exporter);

    let password = "expl-pass";
    let web = tempfile::tempdir().unwrap();
    let web_config = web.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "basic_auth_users:\n  prometheus: {}\n",
            bcrypt::hash(password, 4).unwrap()
        ),
    )
    .unwrap();
    let exporter = Exporter::start_with(
        &config,
        &[
            "--web.enable-explain",
            "--web.config.file",
            web_config.to_str().unwrap(),
        ],
    );
    assert!(
        exporter.logs().contains(
            "/?pid=N describes any process of this host to every client the web config admits"
        ),
        "{}",
        exporter.logs()
    );
    let url = exporter.url(&format!("/?pid={pid}"));
    let (status, body) = curl(&url, None);
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(comm), "{body}");
    let (status, _) = curl(&url, Some("prometheus:wrong"));
    assert_eq!(status, 401);
    let (status, body) = curl(&url, Some(&format!("prometheus:{password}")));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("<input name=\"pid\" value=\"{pid}\"")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "<div class=\"d1 ok\">attached now (pid {pid} ({comm})): usdt fixture:hit in "
        )),
        "{body}"
    );
}

#[test]
fn landing_page_lists_attach_failures_before_the_healthy_programs() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-expl-fail";
    let target = Target::start(comm);
    let pid = target.pid().to_string();
    let exporter = Exporter::start_with(&config(comm, &missing_symbol_program(comm)), &[]);
    let page = exporter.page("/");
    assert!(
        page.contains("<p id=\"summary\">programs: 3 loaded, 0 broken; processes attached: 1; <span class=\"err\">attach failures: 1</span>; last reload: successful, "),
        "{page}"
    );
    let problems = page.find("<section id=\"problems\">").expect(&page);
    let programs = page.find("<section id=\"programs\">").expect(&page);
    assert!(problems < programs, "{page}");
    let path = fixtures().target_named(comm);
    let failure = format!(
        "<tr><td>missing</td><td>pid {pid} ({comm}) (nothing attached)</td><td>uprobes target_ad</td><td class=\"msg err\">uprobes &quot;target_ad&quot;: symbol &quot;target_ad&quot; not found in {} of process {pid} ({comm}); similar symbols: target_add</td></tr>",
        path.display()
    );
    let at = page.find(&failure).unwrap_or_else(|| panic!("{page}"));
    assert!(problems < at && at < programs, "{page}");
    // The healthy program, after it.
    let healthy = page
        .find(&format!(
            "<td>usdt fixture:hit in {} -&gt; on_hit</td>",
            path.display()
        ))
        .expect(&page);
    assert!(programs < healthy, "{page}");
}
