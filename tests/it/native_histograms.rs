//! Native histograms: a scraper that asks for the protobuf format gets exp2
//! histograms as native histograms of schema 0 (README, Histograms). A real
//! BPF program fills an exp2 histogram with known return values, and Debian's
//! Prometheus 2.42 with `--enable-feature=native-histograms` scrapes it.

use crate::common::{self, fixtures, require_bpf, varint, wait_for, Exporter, Target};
use std::io::Read;
use std::time::Duration;

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms`
/// (captured from a real one).
const PROMETHEUS_NATIVE_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// One exp2 histogram of target_add's return values, four times: `native`
/// both (the default), only and none, and in seconds of nanoseconds; the
/// calls by argument, as is and through a static_map (the label cache's path).
fn config(comm: &str) -> String {
    let histogram = |name: &str, extra: &str| {
        format!(
            r#"        - name: {name}
          help: target_add return values
          table: return_values
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
{extra}          labels: [{{name: bucket, size: 8, decoders: [{{name: uint}}]}}]
"#
        )
    };
    format!(
        r#"
programs:
  - name: native
    object: {uprobe}
    metrics:
      counters:
        - name: nh_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
        - name: nh_named_calls_total
          help: target_add calls by first argument, named
          table: calls
          labels:
            - name: arg
              size: 8
              decoders:
                - {{name: uint}}
                - {{name: static_map, static_map: {{"1": one, "5": five, "100": hundred}}, allow_unknown: true}}
      histograms:
{both}{only}{none}{seconds}    uprobes:
      target_add: on_add_entry
    uretprobes:
      target_add: on_add_return
    attachment: {{binary_name: {comm}}}
"#,
        uprobe = fixtures().object("uprobe_counts").display(),
        both = histogram("nh_both", ""),
        only = histogram("nh_only", "          native: only\n"),
        none = histogram("nh_none", "          native: none\n"),
        seconds = histogram("nh_seconds", "          bucket_multiplier: 0.000000001\n"),
    )
}

/// Return values 1, 2, 3, 4 / 5, 6, 7 / 100, 101 / 1000: exp2 slots (values
/// up to 2^k) 0: 1, 1: 1, 2: 2, 3: 3, 7: 2, 10: 1; 10 calls, sum 1229.
fn fire(target: &mut Target) {
    for cmd in ["call 4 1", "call 3 5", "call 2 100", "call 1 1000"] {
        target.fire(cmd);
    }
}

/// The native buckets of that histogram as the API lists them, (lower,
/// upper, count), their bounds times `scale` (2^shift for a multiplier): the
/// zero bucket [-1, 1] holds slot 0, native bucket k, (2^(k-1), 2^k], slot k.
fn expected_native(scale: f64) -> Vec<(f64, f64, f64)> {
    let mut out = vec![(-scale, scale, 1.0)];
    for (k, count) in [(1, 1.0), (2, 2.0), (3, 3.0), (7, 2.0), (10, 1.0)] {
        out.push((2f64.powi(k - 1) * scale, 2f64.powi(k) * scale, count));
    }
    out
}

fn prometheus_installed() -> bool {
    common::require_command("prometheus", &["--version"], "scripts/setup.sh installs it")
}

/// A float as the Prometheus HTTP API writes it (a string).
fn number(v: &serde_json::Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a number string: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn prometheus_ingests_native_histograms_equal_to_the_text_scrape() {
    let _machine = common::shared();
    if !require_bpf() || !prometheus_installed() {
        return;
    }
    let mut target = Target::start("uexp-native");
    let exporter = Exporter::start(&config("uexp-native"));
    fire(&mut target);
    // The target fires no more: every scrape from here on reads the same maps.
    let pid = target.pid().to_string();
    let text = exporter.samples();
    let at = [("pid", pid.as_str())];
    let count = text.value("userspace_exporter_nh_both_count", &at);
    let sum = text.value("userspace_exporter_nh_both_sum", &at);
    assert_eq!((count, sum), (10.0, 1229.0));
    let seconds_sum = text.value("userspace_exporter_nh_seconds_sum", &at);
    assert_eq!(seconds_sum, 1229.0 * 1e-9);

    let prometheus = common::Prometheus::start_with(
        &format!(
            "  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            exporter.port
        ),
        &["--enable-feature=native-histograms"],
    );
    let series = |name: &str| format!("userspace_exporter_{name}{{pid=\"{pid}\"}}");
    let seen = wait_for(Duration::from_secs(30), || {
        prometheus.query(&format!("histogram_count({})", series("nh_both")))
    });
    assert_eq!(
        seen.as_deref().map(str::parse::<f64>),
        Some(Ok(count)),
        "histogram_count never matched the text scrape's _count; up: {:?}",
        prometheus.query("up")
    );
    for (name, want_count, want_sum, scale) in [
        ("nh_both", count, sum, 1.0),
        ("nh_only", count, sum, 1.0),
        // 2^k ns as seconds: native bound 2^(k-30), log2(1e-9) rounded.
        ("nh_seconds", count, seconds_sum, 2f64.powi(-30)),
    ] {
        let query = |f: &str| {
            prometheus
                .query(&format!("{f}({})", series(name)))
                .map(|v| v.parse::<f64>().unwrap())
        };
        assert_eq!(query("histogram_count"), Some(want_count), "{name}");
        assert_eq!(query("histogram_sum"), Some(want_sum), "{name}");
        // The native buckets themselves, as the API lists them (empty ones left out).
        let result = prometheus.query_results(&series(name)).unwrap();
        let histogram = &result[0]["histogram"][1];
        assert_eq!(
            number(&histogram["count"]),
            want_count,
            "{name}: {histogram}"
        );
        let buckets: Vec<(f64, f64, f64)> = histogram["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no buckets in {histogram}"))
            .iter()
            .map(|b| (number(&b[1]), number(&b[2]), number(&b[3])))
            .collect();
        assert_eq!(buckets, expected_native(scale), "{name}");
    }
    // Prometheus 2.42 keeps only the native form of a histogram sent with both
    // (`scrape_classic_histograms` came in 2.45), as the README says...
    assert_eq!(
        prometheus.query(&format!(
            "count(userspace_exporter_nh_both_bucket{{pid=\"{pid}\"}})"
        )),
        None,
        "this Prometheus keeps classic buckets beside native ones: update the README"
    );
    // ...and `native: none` sends the classic buckets over protobuf, kept as
    // `_bucket` series.
    let bucket = |le: &str| {
        prometheus
            .query(&format!(
                "userspace_exporter_nh_none_bucket{{pid=\"{pid}\",le=\"{le}\"}}"
            ))
            .map(|v| v.parse::<f64>().unwrap())
    };
    for (le, want) in [("1.0", 1.0), ("8.0", 7.0), ("128.0", 9.0), ("+Inf", 10.0)] {
        assert_eq!(bucket(le), Some(want), "le={le}");
        assert_eq!(
            Some(want),
            text.get(
                "userspace_exporter_nh_none_bucket",
                &[("pid", &pid), ("le", le.trim_end_matches(".0"))]
            ),
            "text le={le}"
        );
    }
    assert_eq!(
        prometheus.query(&format!(
            "count(userspace_exporter_nh_none_bucket{{pid=\"{pid}\"}})"
        )),
        Some("17".into())
    );
    assert_eq!(
        prometheus.query(&series("nh_none_sum")),
        Some("1229".into())
    );
    // Counters, through the label cache or not, and the self-metrics arrive too.
    let calls = |name: &str, arg: &str| {
        prometheus.query(&format!(
            "userspace_exporter_{name}{{pid=\"{pid}\",arg=\"{arg}\"}}"
        ))
    };
    assert_eq!(calls("nh_calls_total", "5"), Some("3".into()));
    assert_eq!(calls("nh_named_calls_total", "hundred"), Some("2".into()));
    assert_eq!(calls("nh_named_calls_total", "1000"), Some("1".into()));
    assert_eq!(
        prometheus.query("userspace_exporter_attached_processes{name=\"native\"}"),
        Some("1".into())
    );
}

/// A message's fields: (number, raw value bytes), in order.
type Fields = Vec<(u64, Vec<u8>)>;

/// A family's name and its metrics' fields.
type Family = (String, Vec<Fields>);

/// A minimal protobuf reader for the checks below (fields of one message).
fn fields(bytes: &[u8]) -> Fields {
    let (mut out, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let value = match key & 7 {
            0 => {
                let start = at;
                varint(bytes, &mut at);
                bytes[start..at].to_vec()
            }
            1 => {
                at += 8;
                bytes[at - 8..at].to_vec()
            }
            2 => {
                let len = varint(bytes, &mut at) as usize;
                at += len;
                bytes[at - len..at].to_vec()
            }
            wire => panic!("wire type {wire}"),
        };
        out.push((key >> 3, value));
    }
    out
}

/// The delimited families of a protobuf scrape, by name: their metrics' fields.
fn families(body: &[u8]) -> Vec<Family> {
    let (mut out, mut at) = (Vec::new(), 0);
    while at < body.len() {
        let len = varint(body, &mut at) as usize;
        let family = fields(&body[at..at + len]);
        at += len;
        let name = String::from_utf8(family[0].1.clone()).unwrap();
        let metrics = family
            .iter()
            .filter(|(field, _)| *field == 4)
            .map(|(_, m)| fields(m))
            .collect();
        out.push((name, metrics));
    }
    out
}

#[test]
fn a_protobuf_scrape_carries_classic_and_native_buckets_gzipped_or_not() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut target = Target::start("uexp-native-pb");
    let exporter = Exporter::start(&config("uexp-native-pb"));
    fire(&mut target);
    let response = ureq::get(&exporter.url("/metrics"))
        .header("Accept", PROMETHEUS_NATIVE_ACCEPT)
        .call()
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, PROTOBUF);
    let body = response.into_body().read_to_vec().unwrap();
    let families = families(&body);
    let histogram = |name: &str| {
        let (_, metrics) = families
            .iter()
            .find(|(n, _)| n == &format!("userspace_exporter_{name}"))
            .unwrap_or_else(|| panic!("no family {name}"));
        assert_eq!(metrics.len(), 1);
        let (_, h) = metrics[0].iter().find(|(f, _)| *f == 7).unwrap();
        fields(h)
    };
    let has = |h: &[(u64, Vec<u8>)], field: u64| h.iter().filter(|(f, _)| *f == field).count();
    // Classic buckets (field 3: 16 slots, +Inf implied) and native ones
    // (schema 5, zero threshold 6, spans 12, deltas 13).
    let both = histogram("nh_both");
    assert_eq!(has(&both, 3), 16);
    for field in [5, 6, 7, 12, 13] {
        assert_eq!(has(&both, field).min(1), 1, "nh_both field {field}");
    }
    let only = histogram("nh_only");
    assert_eq!(has(&only, 3), 0);
    assert_eq!(has(&only, 13), 1);
    let none = histogram("nh_none");
    assert_eq!(has(&none, 3), 16);
    for field in [5, 6, 7, 12, 13] {
        assert_eq!(has(&none, field), 0, "nh_none field {field}");
    }
    // Every family is there, self-metrics included.
    for name in [
        "userspace_exporter_nh_calls_total",
        "userspace_exporter_nh_named_calls_total",
        "userspace_exporter_build_info",
        "userspace_exporter_attach_duration_seconds",
        "userspace_exporter_scrape_duration_seconds",
    ] {
        assert!(families.iter().any(|(n, _)| n == name), "no {name}");
    }

    // gzip: curl shows the encoding.
    let accept = format!("Accept: {PROMETHEUS_NATIVE_ACCEPT}");
    let (headers, gz) = common::curl_gzipped(&exporter.url("/metrics"), &[&accept]);
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    assert!(
        headers.contains(&format!("content-type: {}", PROTOBUF.to_ascii_lowercase())),
        "{headers}"
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    let names = |f: &[Family]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&self::families(&unzipped)), names(&families));
}
