//! The landing page: what is loaded, where it is attached, what failed.

use crate::exporter::{BrokenProgram, Published};
use crate::metrics::ReloadStatus;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the page as HTML.
pub fn render(
    published: &Published,
    broken: &[BrokenProgram],
    reload: &ReloadStatus,
    metrics_path: &str,
) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ebpf-userspace-exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left;vertical-align:top}}.err{{color:#b00}}</style></head><body>\
         <h1>ebpf-userspace-exporter {}</h1><p><a href=\"{}\">Metrics</a></p>",
        env!("CARGO_PKG_VERSION"),
        escape(metrics_path)
    );
    if let Some(error) = &reload.error {
        let _ = write!(
            page,
            "<h2 class=\"err\">The last config reload failed</h2><p>The programs below are the ones from before it.</p><pre class=\"err\">{}</pre>",
            escape(error)
        );
    }
    page.push_str("<h2>Programs</h2>");
    for state in &published.programs {
        let p = &state.prepared;
        let _ = write!(
            page,
            "<h3>{}</h3><p>selects {}; probes: {}</p>",
            escape(p.name()),
            escape(&p.selector.describe()),
            escape(
                &p.probes
                    .iter()
                    .map(|x| format!("{} {} -> {}", x.kind.config_key(), x.spec, x.function))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        );
        page.push_str("<table><tr><th>attached to</th><th>attached</th><th>problems</th></tr>");
        for instance in state.attached() {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                escape(&instance.target.describe()),
                escape(&instance.attached.join("<br>")).replace("&lt;br&gt;", "<br>"),
                failure_messages(&instance.failures)
            );
        }
        for failed in &state.failed {
            let _ = write!(
                page,
                "<tr><td>pid {} ({})</td><td>nothing</td><td class=\"err\">{}</td></tr>",
                failed.process.pid(),
                escape(&failed.process.comm),
                failure_messages(&failed.failures)
            );
        }
        for failed in &state.failed_binaries {
            let _ = write!(
                page,
                "<tr><td>every process of {}</td><td>nothing</td><td class=\"err\">{}</td></tr>",
                escape(&failed.path.display().to_string()),
                failure_messages(&failed.failures)
            );
        }
        if state.instances.is_empty()
            && state.failed.is_empty()
            && state.binaries.is_empty()
            && state.failed_binaries.is_empty()
        {
            page.push_str("<tr><td colspan=\"3\">no matching process yet</td></tr>");
        }
        page.push_str("</table>");
    }
    if !broken.is_empty() {
        page.push_str("<h2>Programs that failed to load</h2>");
        for b in broken {
            let _ = write!(
                page,
                "<h3>{}</h3><pre class=\"err\">{}</pre>",
                escape(&b.name),
                escape(&b.errors.join("\n"))
            );
        }
    }
    page.push_str("</body></html>");
    page
}

/// The messages of attach failures, one per line, escaped for the page.
fn failure_messages(failures: &[crate::attach::AttachFailure]) -> String {
    let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    escape(&messages.join("\n"))
}
