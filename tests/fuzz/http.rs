//! HTTP content negotiation on arbitrary header values: `Format::negotiate`
//! (`Accept`) and `accepts_gzip` (`Accept-Encoding`) never panic; a header
//! that does not name OpenMetrics never gets it, one that refuses it with
//! q=0 neither; one that does not name gzip (or `*`) never gets gzip, one
//! that refuses gzip with q=0 neither, whatever `*` says (RFC 9110 §12.5.3).
//! On well-formed headers the choice is exactly the documented rule.

use crate::engine::{self, mutate_text, shrink_text, Behaviour, Rng, Target};
use userspace_exporter::http::accepts_gzip;
use userspace_exporter::metrics::encode::Format;

const MEDIA: &[&str] = &[
    "application/openmetrics-text",
    "text/plain",
    "*/*",
    "text/*",
    "application/*",
    "text/html",
    "application/json",
    "application/vnd.google.protobuf",
    "application/openmetrics-text-x",
    "",
];

const MEDIA_PARAMS: &[&str] = &[
    "version=1.0.0",
    "version=0.0.1",
    "version=0.0.4",
    "charset=utf-8",
    "proto=io.prometheus.client.MetricFamily",
    "encoding=delimited",
    "escaping=underscores",
];

const CODINGS: &[&str] = &[
    "gzip", "deflate", "br", "identity", "*", "compress", "zstd", "x-gzip", "gzip2", "",
];

/// qvalues: valid ones (RFC 9110: 0 to 1 with up to 3 decimals), and not.
const Q_VALUES: &[&str] = &[
    "0", "0.0", "0.00", "0.000", "1", "1.0", "1.000", "0.5", "0.001", "0.9", "0.1", "-0", "-1",
    "2", "1.5", "nan", "inf", "", "0.0001", ".5", "1e-1", "+0.5", "bogus", "0x1",
];

/// Flips the case of some letters.
fn recase(rng: &mut Rng, s: &str) -> String {
    if !rng.one_in(3) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if rng.one_in(3) {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn q_param(rng: &mut Rng) -> String {
    let key = rng.word(&["q", "q", "q", "Q", " q", "q "]);
    format!("{key}={}", rng.word(Q_VALUES))
}

fn separator(rng: &mut Rng) -> &'static str {
    rng.word(&[",", ", ", " , ", ",,", ",\t"])
}

/// A header from the grammar, sometimes mutated into something else.
fn header(rng: &mut Rng, corpus: &[String], accept: bool) -> String {
    let mut s = String::new();
    for i in 0..rng.small(6) {
        if i > 0 {
            s.push_str(separator(rng));
        }
        if accept {
            let media = rng.word(MEDIA);
            s.push_str(&recase(rng, media));
            for _ in 0..rng.below(3) {
                s.push_str(rng.word(&[";", "; ", " ;"]));
                if rng.one_in(2) {
                    s.push_str(&q_param(rng));
                } else {
                    s.push_str(rng.word(MEDIA_PARAMS));
                }
            }
        } else {
            let coding = rng.word(CODINGS);
            s.push_str(&recase(rng, coding));
            if rng.one_in(2) {
                s.push_str(rng.word(&[";", "; ", " ;"]));
                s.push_str(&q_param(rng));
            }
        }
    }
    if rng.one_in(3) {
        let other = rng.pick(corpus).clone();
        let dictionary: &[&str] = if accept { MEDIA } else { CODINGS };
        for _ in 0..rng.small(3) {
            mutate_text(rng, &mut s, dictionary, &other);
        }
    }
    s
}

/// An RFC 9110 qvalue: `0[.ddd]` or `1[.000]`.
fn qvalue(s: &str) -> Option<f64> {
    let ok = match s.split_once('.') {
        None => s == "0" || s == "1",
        Some((int, frac)) => {
            frac.len() <= 3
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (int == "0" || (int == "1" && frac.bytes().all(|b| b == b'0')))
        }
    };
    ok.then(|| s.parse().unwrap())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

/// One list element: its name (media type or coding, lower-cased) and its
/// q, when the element is well-formed (`None` otherwise).
fn element(entry: &str, accept: bool) -> Option<(String, f64)> {
    let mut parts = entry.split(';');
    let name = parts.next()?.trim();
    let well_formed_name = if accept {
        name.split_once('/')
            .is_some_and(|(a, b)| is_token(a) && is_token(b))
    } else {
        is_token(name)
    };
    if !well_formed_name {
        return None;
    }
    let mut q = None;
    for param in parts {
        let (key, value) = param.trim().split_once('=')?;
        if !is_token(key) || !is_token(value) {
            return None;
        }
        if key.eq_ignore_ascii_case("q") {
            if q.is_some() {
                return None;
            }
            q = Some(qvalue(value)?);
        } else if !accept {
            return None;
        }
    }
    Some((name.to_ascii_lowercase(), q.unwrap_or(1.0)))
}

/// The names in a header, however malformed, as the code splits them.
fn names(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(|e| {
            e.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect()
}

/// Whether an element refuses with an explicit q of zero, however written.
fn refuses(entry: &str) -> bool {
    let mut qs = entry.split(';').skip(1).filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
    });
    let first = qs.next();
    first.is_some_and(|v| qvalue(v) == Some(0.0)) && qs.next().is_none()
}

/// The well-formed elements of a header, or `None` if one is not (empty
/// elements are allowed, as in any HTTP list).
fn well_formed(header: &str, accept: bool) -> Option<Vec<(String, f64)>> {
    header
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| element(e, accept))
        .collect()
}

pub struct Negotiation {
    accept: bool,
}

impl Negotiation {
    pub fn accept() -> Negotiation {
        Negotiation { accept: true }
    }

    pub fn accept_encoding() -> Negotiation {
        Negotiation { accept: false }
    }

    fn check_accept(&self, header: &str) -> Result<Behaviour, String> {
        let format = Format::negotiate(Some(header));
        const OM: &str = "application/openmetrics-text";
        let om_entries: Vec<&str> = header
            .split(',')
            .filter(|e| {
                e.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(OM)
            })
            .collect();
        if format == Format::OpenMetrics {
            if om_entries.is_empty() {
                return Err(format!(
                    "OpenMetrics for a header that does not name it: {header:?}"
                ));
            }
            if om_entries.iter().all(|e| refuses(e)) {
                return Err(format!(
                    "OpenMetrics for a header that refuses it with q=0: {header:?}"
                ));
            }
        }
        let names = names(header);
        if names.iter().all(|n| n == "text/plain" || n.is_empty()) && format != Format::Text {
            return Err(format!(
                "not text for a header naming only text/plain: {format:?} for {header:?}"
            ));
        }
        let clean = well_formed(header, true);
        if let Some(elements) = &clean {
            // The documented rule, on headers without protobuf (a format of its own).
            if elements
                .iter()
                .all(|(n, _)| !n.starts_with("application/vnd.google.protobuf"))
            {
                let best = |name: &str| {
                    elements
                        .iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, q)| *q)
                        .fold(0.0, f64::max)
                };
                let (om, text) = (best(OM), best("text/plain"));
                let want = if om > 0.0 && om >= text {
                    Format::OpenMetrics
                } else {
                    Format::Text
                };
                if format != want {
                    return Err(format!(
                        "not the documented choice: {format:?} for {header:?} (OpenMetrics q={om}, text/plain q={text}, so {want:?})"
                    ));
                }
            }
        }
        Ok(format!("{format:?} clean={}", clean.is_some()))
    }

    fn check_encoding(&self, header: &str) -> Result<Behaviour, String> {
        let gzip = accepts_gzip(header);
        let entries: Vec<&str> = header.split(',').collect();
        let named = |e: &&str, name: &str| {
            e.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(name)
        };
        let gzips: Vec<&str> = entries
            .iter()
            .filter(|e| named(e, "gzip"))
            .copied()
            .collect();
        let stars: Vec<&str> = entries.iter().filter(|e| named(e, "*")).copied().collect();
        if gzip {
            if gzips.is_empty() && stars.is_empty() {
                return Err(format!(
                    "gzip for a header naming neither gzip nor *: {header:?}"
                ));
            }
            if !gzips.is_empty() && gzips.iter().all(|e| refuses(e)) {
                return Err(format!(
                    "gzip for a header refusing it with q=0: {header:?}"
                ));
            }
        }
        let clean = well_formed(header, false);
        if let Some(elements) = &clean {
            let qs = |name: &str| -> Vec<f64> {
                elements
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, q)| *q)
                    .collect()
            };
            let (g, s) = (qs("gzip"), qs("*"));
            if g.len() <= 1 && s.len() <= 1 {
                let want = match (g.first(), s.first()) {
                    (Some(q), _) => *q > 0.0,
                    (None, Some(q)) => *q > 0.0,
                    (None, None) => false,
                };
                if gzip != want {
                    return Err(format!(
                        "not the RFC's choice: gzip={gzip} for {header:?} (gzip q={g:?}, * q={s:?}, so {want})"
                    ));
                }
            }
        }
        Ok(format!("{gzip} clean={}", clean.is_some()))
    }
}

impl Target for Negotiation {
    type Input = String;

    fn name(&self) -> &'static str {
        if self.accept {
            "accept"
        } else {
            "accept_encoding"
        }
    }

    fn ci_executions(&self) -> u64 {
        20_000
    }

    fn seeds(&self) -> Vec<String> {
        let mut seeds: Vec<String> = if self.accept {
            vec![
                // Prometheus 2.x/3.x, with and without native histograms.
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1".into(),
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2".into(),
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8".into(),
                "application/openmetrics-text;q=0".into(),
                "*/*".into(),
            ]
        } else {
            vec![
                "gzip".into(),
                "gzip, deflate, br".into(),
                "identity".into(),
                "*;q=0.5, gzip;q=0".into(),
                "br;q=1.0, gzip;q=0.8, *;q=0.1".into(),
            ]
        };
        for (_, bytes) in engine::regression_files(self.name()) {
            seeds.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, corpus: &[String]) -> String {
        if rng.one_in(20) {
            return (0..rng.small(64))
                .map(|_| engine::random_char(rng))
                .collect();
        }
        header(rng, corpus, self.accept)
    }

    fn run(&self, header: &String) -> Result<Behaviour, String> {
        if self.accept {
            self.check_accept(header)
        } else {
            self.check_encoding(header)
        }
    }

    fn shrink(&self, header: &String) -> Box<dyn Iterator<Item = String>> {
        shrink_text(header)
    }

    fn save(&self, header: &String) -> Vec<u8> {
        header.as_bytes().to_vec()
    }

    fn allocation_bound(&self, header: &String) -> usize {
        (1 << 20) + 16 * header.len()
    }
}
