//! The exposition as real Prometheus parts see it: promtool's parser, the
//! OpenMetrics parser of the Python client, gzip, and a real Prometheus
//! server scraping the exporter and answering a query with the exact count.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(comm: &str) -> String {
    let f = fixtures();
    format!(
        r#"
programs:
  - name: expo
    object: {usdt}
    metrics:
      counters:
        - name: expo_hits_total
          help: "fixture:hit probes by argument, with a \\ backslash and \"quotes\""
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
        - name: expo_tagged
          help: tagged hits (a counter whose name has no _total)
          table: tagged
          labels:
            - {{name: arg, size: 4, padding: 4, decoders: [{{name: uint}}]}}
            - {{name: text, size: 16, decoders: [{{name: string}}]}}
    usdt:
      fixture:hit: on_hit
      fixture:tagged: on_tagged
    attachment: {{binary_name: {comm}}}
  - name: expo_uprobes
    object: {uprobe}
    metrics:
      histograms:
        - name: expo_return_value
          help: return values
          table: return_values
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
          labels: [{{name: bucket, size: 8, decoders: [{{name: uint}}]}}]
    uretprobes:
      target_add: on_add_return
    attachment: {{binary_name: {comm}}}
"#,
        usdt = f.object("usdt_counts").display(),
        uprobe = f.object("uprobe_counts").display(),
    )
}

fn get(url: &str, headers: &[(&str, &str)]) -> (String, Option<String>, Vec<u8>) {
    let mut req = ureq::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.call().unwrap();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let encoding = resp
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().read_to_vec().unwrap();
    (content_type, encoding, body)
}

fn tool(name: &str) -> bool {
    common::require_command(name, &["--version"], "scripts/setup.sh installs it")
}

#[test]
fn text_format_passes_promtool_and_gzip_round_trips() {
    let _machine = common::shared();
    if !require_bpf() || !tool("promtool") || !tool("curl") {
        return;
    }
    let mut target = Target::start("uexp-expo-text");
    let exporter = Exporter::start(&config("uexp-expo-text"));
    target.cmd("usdt 3 1");
    target.cmd("comm 2 5");
    target.cmd("call 4 1");
    let (content_type, encoding, body) = get(&exporter.url("/metrics"), &[]);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(encoding, None);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("userspace_exporter_expo_tagged{arg=\"5\",text=\"name-5\",pid="),
        "{text}"
    );
    assert!(
        text.contains("# TYPE userspace_exporter_expo_tagged counter"),
        "{text}"
    );

    let out = common::promtool_check_metrics(text.as_bytes());
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3 is lint only (the parse succeeded); the one lint allowed is the name this
    // config chose on purpose, as the original project's configs may.
    let lint_only = out.status.code() == Some(3)
        && complaints
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| {
                l == "userspace_exporter_expo_tagged counter metrics should have \"_total\" suffix"
            });
    assert!(
        out.status.success() || lint_only,
        "promtool rejected the exposition ({:?}):\n{complaints}\n{text}",
        out.status.code()
    );

    let (headers, gz) = common::curl_gzipped(&exporter.url("/metrics"), &[]);
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    // Same series as the plain scrape (the scrape duration differs).
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("scrape_duration"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&unzipped), strip(&text));
    assert!(gz.len() < text.len());
}

#[test]
fn openmetrics_when_asked_parses_with_the_python_client() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_command(
        "python3",
        &["-c", "import prometheus_client.openmetrics.parser"],
        "scripts/setup.sh installs prometheus_client",
    ) {
        return;
    }
    let mut target = Target::start("uexp-expo-om");
    let exporter = Exporter::start(&config("uexp-expo-om"));
    target.cmd("usdt 3 1");
    target.cmd("comm 2 5");
    target.cmd("call 4 1");
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, _, body) = get(&exporter.url("/metrics"), &[("Accept", accept)]);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "pid")
        print(f"{family.type} {s.name} {labels} {s.value}")
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "OpenMetrics parser rejected:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = String::from_utf8(out.stdout).unwrap();
    for line in [
        "counter userspace_exporter_expo_hits_total arg=1 3",
        "counter userspace_exporter_expo_tagged_total arg=5,text=name-5 2",
        "histogram userspace_exporter_expo_return_value_bucket le=1.0 1",
        "histogram userspace_exporter_expo_return_value_bucket le=2.0 2",
        "histogram userspace_exporter_expo_return_value_bucket le=4.0 4",
        "histogram userspace_exporter_expo_return_value_bucket le=+Inf 4",
        "histogram userspace_exporter_expo_return_value_count  4",
        "histogram userspace_exporter_expo_return_value_sum  10",
    ] {
        assert!(
            parsed.lines().any(|l| l == line),
            "missing {line:?} in\n{parsed}"
        );
    }
}

#[test]
fn a_real_prometheus_server_scrapes_the_exact_count() {
    let _machine = common::shared();
    if !require_bpf() || !tool("prometheus") {
        return;
    }
    let mut target = Target::start("uexp-expo-prom");
    let exporter = Exporter::start(&config("uexp-expo-prom"));
    target.cmd("usdt 17 3");
    let prometheus = common::Prometheus::start(&format!(
        "  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
        exporter.port
    ));
    let pid = target.pid().to_string();
    let series = format!("userspace_exporter_expo_hits_total{{arg=\"3\",pid=\"{pid}\"}}");
    let value = wait_for(Duration::from_secs(30), || prometheus.query(&series));
    let up = prometheus.query("up");
    assert_eq!(
        value.as_deref(),
        Some("17"),
        "prometheus never saw the series; up: {up:?}"
    );
}
