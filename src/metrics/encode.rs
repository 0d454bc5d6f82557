//! Prometheus exposition, written straight into a byte buffer.
//!
//! A scrape can carry many thousands of series (one per map key and process),
//! so the encoder builds no intermediate structures: each call appends text to
//! one `Vec<u8>`, and writing a sample allocates nothing beyond the buffer's
//! own growth.
//!
//! Three formats are written: the classic text format (0.0.4), OpenMetrics
//! 1.0.0, and the delimited protobuf format (the one that carries native
//! histograms; see [`super::protobuf`]), chosen per request from the `Accept`
//! header by [`Format::negotiate`].
//!
//! Usage: call [`Encoder::family`] once per metric family, then its samples
//! ([`Encoder::sample`], [`Encoder::sample_u64`], [`Encoder::histogram`], each
//! taking a [`LabelSet`]), then [`Encoder::finish`].
//!
//! A scrape streams: [`Encoder::streaming`] hands the buffer to a [`Sink`]
//! each time it holds a chunk's worth (after a whole sample, so a chunk never
//! splits one), and starts the next chunk in a buffer of the same size, so a
//! response of any size costs one chunk of memory here. A protobuf family
//! longer than a chunk is sent as several `MetricFamily` messages of the same
//! name, help and type, each with part of its metrics (its length must be
//! written before its content); a scraper adds their metrics up as one family.

use super::histogram::BuiltHistogram;
use super::protobuf;
use std::borrow::Cow;
use std::io::Write as _;

/// Exposition format of a scrape response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Prometheus text format 0.0.4: understood by every scraper.
    #[default]
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` protobuf messages,
    /// histograms with their native buckets.
    Protobuf,
}

impl Format {
    /// The `Content-Type` header value of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }

    /// Picks the format for a request's `Accept` header.
    ///
    /// The acceptable format with the highest q wins: protobuf
    /// (`application/vnd.google.protobuf` with
    /// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`),
    /// `application/openmetrics-text` or `text/plain`; on equal q, protobuf,
    /// then OpenMetrics. Prometheus lists protobuf first when native
    /// histograms are enabled, OpenMetrics first otherwise. Wildcards,
    /// browsers and a missing header get text, which every client reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut protobuf_q: f64 = 0.0;
        let mut openmetrics_q: f64 = 0.0;
        let mut text_q: f64 = 0.0;
        for entry in accept.split(',') {
            let mut parts = entry.split(';');
            let media_type = parts.next().unwrap_or("").trim();
            let mut q = 1.0;
            let (mut proto, mut delimited) = (false, false);
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim().trim_matches('"'));
                if key.eq_ignore_ascii_case("q") {
                    // A malformed q is treated as "not acceptable" rather than guessed.
                    q = value
                        .parse::<f64>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                } else if key.eq_ignore_ascii_case("proto") {
                    proto = value == "io.prometheus.client.MetricFamily";
                } else if key.eq_ignore_ascii_case("encoding") {
                    delimited = value.eq_ignore_ascii_case("delimited");
                }
            }
            if media_type.eq_ignore_ascii_case("application/vnd.google.protobuf") {
                if proto && delimited {
                    protobuf_q = protobuf_q.max(q);
                }
            } else if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics_q = openmetrics_q.max(q);
            } else if media_type.eq_ignore_ascii_case("text/plain") {
                text_q = text_q.max(q);
            }
        }
        if protobuf_q > 0.0 && protobuf_q >= openmetrics_q && protobuf_q >= text_q {
            Format::Protobuf
        } else if openmetrics_q > 0.0 && openmetrics_q >= text_q {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// Label text rendered by [`render_labels`], as this format writes
    /// leading labels (for [`Encoder::sample_u64_rendered`]): unchanged for
    /// the text formats, `LabelPair` fields for protobuf.
    pub fn labels_from_text(self, text: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Format::Text | Format::OpenMetrics => Cow::Borrowed(text),
            Format::Protobuf => {
                let mut out = Vec::with_capacity(text.len() + 8);
                protobuf::labels_from_text(text, &mut out);
                Cow::Owned(out)
            }
        }
    }
}

/// Type of a metric family, as written in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets with `_bucket`, `_sum` and `_count` samples.
    Histogram,
}

impl MetricKind {
    fn type_name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }

    /// `MetricFamily.type`.
    fn protobuf_type(self) -> u64 {
        match self {
            MetricKind::Counter => protobuf::COUNTER,
            MetricKind::Gauge => protobuf::GAUGE,
            MetricKind::Histogram => protobuf::HISTOGRAM,
        }
    }
}

/// The labels of one sample, borrowed where they already live: decoded
/// values zipped with their names, then fixed extra pairs (the exporter's
/// `pid`). Nothing is collected into a list of pairs.
///
/// `names` and `values` are parallel (same length); written in order
/// `names`/`values`, then `extra`.
#[derive(Debug, Clone, Copy)]
pub struct LabelSet<'a> {
    /// Label names, in order.
    pub names: &'a [&'a str],
    /// Label values, parallel to `names`.
    pub values: &'a [String],
    /// Pairs written after the named ones.
    pub extra: &'a [(&'a str, &'a str)],
}

impl<'a> LabelSet<'a> {
    /// No labels at all.
    pub const EMPTY: LabelSet<'static> = LabelSet {
        names: &[],
        values: &[],
        extra: &[],
    };

    /// Labels given only as (name, value) pairs.
    pub fn pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        LabelSet {
            names: &[],
            values: &[],
            extra: pairs,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
        debug_assert_eq!(self.names.len(), self.values.len());
        self.names
            .iter()
            .copied()
            .zip(self.values.iter().map(String::as_str))
            .chain(self.extra.iter().copied())
    }
}

/// The reader of a streamed response has gone: nothing more will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client went away")]
pub struct Closed;

/// Where a streaming [`Encoder`] sends its chunks (the HTTP response body).
pub trait Sink: Send {
    /// Takes the bytes of `chunk`, leaving it empty (its capacity may be kept
    /// for the next chunk). With `wait`, may block until the reader has taken
    /// enough of the chunks before; without, never blocks (the chunk is queued
    /// regardless): a render holding a lock others may need sends that way.
    fn send(&mut self, chunk: &mut Vec<u8>, wait: bool) -> Result<(), Closed>;
    /// Ends the response after the last chunk.
    fn finish(&mut self) -> Result<(), Closed>;
    /// Whether the reader has gone (checked between batches of a map read).
    fn closed(&self) -> bool;
    /// Time spent blocked in [`Sink::send`] waiting for the reader.
    fn waited(&self) -> std::time::Duration;
}

/// Writes metric families into one buffer, or into a [`Sink`] chunk by chunk.
pub struct Encoder {
    buf: Vec<u8>,
    format: Format,
    /// Sample name of the current family (differs from the family name for
    /// OpenMetrics counters); reused across families to avoid allocating.
    sample_name: String,
    /// Protobuf: the family being written, if any.
    family: Option<OpenFamily>,
    /// Protobuf: the open family's name and help, to start its next part
    /// after a chunk is sent.
    family_name: String,
    family_help: String,
    /// Where full chunks go; none: the whole exposition stays in `buf`.
    sink: Option<Box<dyn Sink>>,
    /// A chunk is sent once `buf` holds this many bytes.
    chunk: usize,
    /// Whether sending may block (no lock held).
    wait: bool,
    /// The reader has gone: what is written is dropped.
    closed: bool,
    /// Bytes handed to the sink so far.
    sent: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("format", &self.format)
            .field("buffered", &self.buf.len())
            .field("streaming", &self.sink.is_some())
            .field("sent", &self.sent)
            .finish()
    }
}

/// A protobuf family whose length is not written yet.
#[derive(Debug, Clone, Copy)]
struct OpenFamily {
    /// Where its length goes ([`protobuf::open`]).
    at: usize,
    /// Where its first metric starts: nothing past it, no metric.
    metrics_at: usize,
    kind: MetricKind,
}

impl Encoder {
    /// An encoder with an empty buffer.
    pub fn new(format: Format) -> Self {
        Self::with_capacity(format, 0)
    }

    /// An encoder whose buffer starts with `capacity` bytes.
    pub fn with_capacity(format: Format, capacity: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(capacity),
            format,
            sample_name: String::new(),
            family: None,
            family_name: String::new(),
            family_help: String::new(),
            sink: None,
            chunk: usize::MAX,
            wait: true,
            closed: false,
            sent: 0,
        }
    }

    /// An encoder that sends its output to `sink` in chunks of about `chunk`
    /// bytes (a chunk ends after the sample that reaches `chunk`).
    pub fn streaming(format: Format, sink: Box<dyn Sink>, chunk: usize) -> Self {
        let mut e = Self::with_capacity(format, chunk + chunk / 8);
        e.sink = Some(sink);
        e.chunk = chunk.max(1);
        e
    }

    /// Whether sending a chunk may block until the reader takes it: turned
    /// off while the caller holds a lock another scrape or the attach side
    /// may need, so that a slow reader never holds it up (chunks then queue
    /// up, unbounded, until it is turned on again).
    pub fn set_wait(&mut self, wait: bool) {
        self.wait = wait;
    }

    /// Whether the reader of a streamed response has gone: the caller should
    /// stop (what it writes is dropped).
    pub fn closed(&mut self) -> bool {
        if !self.closed && self.sink.as_ref().is_some_and(|s| s.closed()) {
            self.closed = true;
        }
        self.closed
    }

    /// Time a streaming encoder has spent waiting for its reader.
    pub fn waited(&self) -> std::time::Duration {
        self.sink.as_ref().map(|s| s.waited()).unwrap_or_default()
    }

    /// Bytes written so far (sent and buffered).
    pub fn written(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    /// Sends the buffer once it holds a chunk. Called after each whole
    /// family header, sample or histogram.
    #[inline]
    fn flush_if_full(&mut self) {
        if self.buf.len() >= self.chunk {
            self.flush();
        }
    }

    #[cold]
    fn flush(&mut self) {
        if self.sink.is_none() {
            return;
        }
        // Protobuf: the open family is closed here and continued in the next
        // chunk under the same header (its length must precede it).
        let mut continued = None;
        if let Some(family) = self.family {
            if self.buf.len() == family.metrics_at {
                return; // no metric yet: wait for one
            }
            protobuf::close(&mut self.buf, family.at);
            self.family = None;
            continued = Some(family.kind);
        }
        self.send_buf();
        if let Some(kind) = continued {
            let at = protobuf::open(&mut self.buf, 0);
            protobuf::family_header(
                &mut self.buf,
                &self.family_name,
                &self.family_help,
                kind.protobuf_type(),
            );
            self.family = Some(OpenFamily {
                at,
                metrics_at: self.buf.len(),
                kind,
            });
        }
    }

    /// Hands the whole buffer to the sink (dropped once the reader has gone).
    fn send_buf(&mut self) {
        let len = self.buf.len() as u64;
        if let Some(sink) = self.sink.as_mut() {
            if !self.closed && sink.send(&mut self.buf, self.wait).is_ok() {
                self.sent += len;
            } else {
                self.closed = true;
            }
        }
        self.buf.clear();
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The bytes written so far (without the OpenMetrics `# EOF`, and the
    /// protobuf family being written).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Starts a family: writes `# HELP` (skipped when `help` is empty) and `# TYPE`.
    ///
    /// `name` is the full name. For counters in OpenMetrics the family name
    /// drops a trailing `_total` and samples are named family + `_total`
    /// (the format requires it); in text format both are `name` as given.
    ///
    /// In protobuf, `name` is the family name whatever the kind, as in the
    /// text format, and a family without samples is left out.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        if self.format == Format::Protobuf {
            self.close_family();
            self.flush_if_full();
            let at = protobuf::open(&mut self.buf, 0);
            protobuf::family_header(&mut self.buf, name, help, kind.protobuf_type());
            self.family = Some(OpenFamily {
                at,
                metrics_at: self.buf.len(),
                kind,
            });
            if self.sink.is_some() {
                self.family_name.clear();
                self.family_name.push_str(name);
                self.family_help.clear();
                self.family_help.push_str(help);
            }
            return;
        }
        let family = match (self.format, kind) {
            (Format::OpenMetrics, MetricKind::Counter) => {
                name.strip_suffix("_total").unwrap_or(name)
            }
            _ => name,
        };
        self.sample_name.clear();
        self.sample_name.push_str(family);
        if self.format == Format::OpenMetrics && kind == MetricKind::Counter {
            self.sample_name.push_str("_total");
        }

        if !help.is_empty() {
            self.buf.extend_from_slice(b"# HELP ");
            self.buf.extend_from_slice(family.as_bytes());
            self.buf.push(b' ');
            // Text format knows only `\\` and `\n` escapes in HELP; OpenMetrics also needs `\"`.
            write_escaped(&mut self.buf, help, self.format == Format::OpenMetrics);
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(b"# TYPE ");
        self.buf.extend_from_slice(family.as_bytes());
        self.buf.push(b' ');
        self.buf.extend_from_slice(kind.type_name().as_bytes());
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes a counter or gauge sample with a float value.
    pub fn sample(&mut self, labels: &LabelSet<'_>, value: f64) {
        if self.format == Format::Protobuf {
            return self.protobuf_value(b"", labels.iter(), value);
        }
        self.write_series("", b"", labels.iter(), None);
        write_f64(&mut self.buf, value);
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes a counter or gauge sample with an exact integer value.
    pub fn sample_u64(&mut self, labels: &LabelSet<'_>, value: u64) {
        if self.format == Format::Protobuf {
            return self.protobuf_value(b"", labels.iter(), value as f64);
        }
        self.write_series("", b"", labels.iter(), None);
        write_u64(&mut self.buf, value);
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes a counter sample whose leading labels are already rendered in
    /// this encoder's format ([`render_labels`], then
    /// [`Format::labels_from_text`]), followed by the `extra` pairs.
    pub fn sample_u64_rendered(&mut self, rendered: &[u8], extra: &[(&str, &str)], value: u64) {
        if self.format == Format::Protobuf {
            return self.protobuf_value(rendered, extra.iter().copied(), value as f64);
        }
        self.write_series("", rendered, extra.iter().copied(), None);
        write_u64(&mut self.buf, value);
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes a counter or gauge sample with a float value whose leading labels
    /// are already rendered in this encoder's format.
    pub fn sample_rendered(&mut self, rendered: &[u8], extra: &[(&str, &str)], value: f64) {
        if self.format == Format::Protobuf {
            return self.protobuf_value(rendered, extra.iter().copied(), value);
        }
        self.write_series("", rendered, extra.iter().copied(), None);
        write_f64(&mut self.buf, value);
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes one histogram series: cumulative `_bucket` lines, `+Inf`, `_sum`,
    /// `_count`; in protobuf, one `Histogram`, with its native buckets.
    pub fn histogram(&mut self, labels: &LabelSet<'_>, h: &BuiltHistogram) {
        self.write_histogram(b"", labels.iter(), h);
    }

    /// Writes one histogram series whose leading labels are already rendered
    /// in this encoder's format (as for [`Encoder::sample_u64_rendered`]).
    pub fn histogram_rendered(
        &mut self,
        rendered: &[u8],
        extra: &[(&str, &str)],
        h: &BuiltHistogram,
    ) {
        self.write_histogram(rendered, extra.iter().copied(), h);
    }

    /// Ends the exposition (OpenMetrics gets its `# EOF`) and returns the
    /// bytes; a streaming encoder sends the last chunk, ends its sink and
    /// returns nothing.
    pub fn finish(mut self) -> Vec<u8> {
        match self.format {
            Format::OpenMetrics => self.buf.extend_from_slice(b"# EOF\n"),
            Format::Protobuf => self.close_family(),
            Format::Text => {}
        }
        if self.sink.is_some() {
            self.wait = true;
            self.send_buf();
            if let Some(sink) = self.sink.as_mut() {
                if self.closed || sink.finish().is_err() {
                    self.closed = true;
                }
            }
        }
        self.buf
    }

    /// Protobuf: writes the open family's length, or drops it when it has no metric.
    fn close_family(&mut self) {
        if let Some(family) = self.family.take() {
            if self.buf.len() == family.metrics_at {
                self.buf.truncate(family.at);
            } else {
                protobuf::close(&mut self.buf, family.at);
            }
        }
    }

    /// Protobuf: one `Metric` with its labels (`rendered` `LabelPair`s, then
    /// `labels`), and whatever `body` writes after them.
    fn protobuf_metric<'l>(
        &mut self,
        rendered: &[u8],
        labels: impl Iterator<Item = (&'l str, &'l str)>,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        debug_assert!(self.family.is_some(), "sample before family()");
        let at = protobuf::open(&mut self.buf, 4);
        self.buf.extend_from_slice(rendered);
        for (name, value) in labels {
            protobuf::label_pair(&mut self.buf, name, value);
        }
        body(&mut self.buf);
        protobuf::close(&mut self.buf, at);
        self.flush_if_full();
    }

    /// Protobuf: a counter's or gauge's `Metric`.
    fn protobuf_value<'l>(
        &mut self,
        rendered: &[u8],
        labels: impl Iterator<Item = (&'l str, &'l str)>,
        value: f64,
    ) {
        let field = match self.family.map(|f| f.kind) {
            Some(MetricKind::Counter) => protobuf::METRIC_COUNTER,
            _ => protobuf::METRIC_GAUGE,
        };
        self.protobuf_metric(rendered, labels, |buf| protobuf::value(buf, field, value));
    }

    fn write_histogram<'l, I>(&mut self, rendered: &[u8], labels: I, h: &BuiltHistogram)
    where
        I: Iterator<Item = (&'l str, &'l str)> + Clone,
    {
        if self.format == Format::Protobuf {
            return self.protobuf_metric(rendered, labels, |buf| protobuf::histogram(buf, h));
        }
        for &(le, count) in &h.buckets {
            self.write_series("_bucket", rendered, labels.clone(), Some(le));
            write_u64(&mut self.buf, count);
            self.buf.push(b'\n');
        }
        self.write_series("_bucket", rendered, labels.clone(), Some(f64::INFINITY));
        write_u64(&mut self.buf, h.count);
        self.buf.push(b'\n');
        self.write_series("_sum", rendered, labels.clone(), None);
        write_f64(&mut self.buf, h.sum);
        self.buf.push(b'\n');
        self.write_series("_count", rendered, labels, None);
        write_u64(&mut self.buf, h.count);
        self.buf.push(b'\n');
        self.flush_if_full();
    }

    /// Writes `name{labels} ` (braces only when there are labels): the
    /// `rendered` ones first, then the `labels` pairs, then `le`.
    fn write_series<'l, I>(&mut self, suffix: &str, rendered: &[u8], labels: I, le: Option<f64>)
    where
        I: Iterator<Item = (&'l str, &'l str)>,
    {
        debug_assert!(!self.sample_name.is_empty(), "sample before family()");
        self.buf.extend_from_slice(self.sample_name.as_bytes());
        self.buf.extend_from_slice(suffix.as_bytes());
        let mut first = rendered.is_empty();
        if !first {
            self.buf.push(b'{');
            self.buf.extend_from_slice(rendered);
        }
        for (name, value) in labels {
            self.buf.push(if first { b'{' } else { b',' });
            first = false;
            write_label(&mut self.buf, name, value);
        }
        if let Some(le) = le {
            self.buf.push(if first { b'{' } else { b',' });
            first = false;
            self.buf.extend_from_slice(b"le=\"");
            let start = self.buf.len();
            write_f64(&mut self.buf, le);
            // OpenMetrics wants canonical floats in `le` ("1.0", as its reference
            // clients write); only digits and sign mean an integer that needs the ".0".
            if self.format == Format::OpenMetrics
                && self.buf[start..]
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b'-')
            {
                self.buf.extend_from_slice(b".0");
            }
            self.buf.push(b'"');
        }
        if !first {
            self.buf.push(b'}');
        }
        self.buf.push(b' ');
    }
}

/// Appends `name="value"`, the value escaped.
fn write_label(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"=\"");
    write_escaped(buf, value, true);
    buf.push(b'"');
}

/// Renders label pairs as a sample line carries them between its braces
/// (`a="x",b="y"`, escaped), for [`Encoder::sample_u64_rendered`]: the same in
/// the text format and OpenMetrics.
pub fn render_labels(out: &mut Vec<u8>, names: &[String], values: &[String]) {
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_label(out, name, value);
    }
}

/// Appends `s`, escaping backslash and newline, and `"` when `quote` is set.
fn write_escaped(buf: &mut Vec<u8>, s: &str, quote: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quote => b"\\\"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(replacement);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// Appends `v` in decimal without going through `fmt`.
fn write_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends a float the way Prometheus parsers read it back exactly:
/// integers without a decimal point, other values in their shortest
/// round-trip form (exponent notation when very large or small), and
/// `+Inf`, `-Inf`, `NaN`.
fn write_f64(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        buf.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e19 {
        // Exact: every integral f64 below 1e19 fits in a u64.
        if v < 0.0 {
            buf.push(b'-');
        }
        write_u64(buf, v.abs() as u64);
    } else if (1e-4..1e15).contains(&v.abs()) {
        // Writing to a Vec cannot fail.
        let _ = write!(buf, "{v}");
    } else {
        let _ = write!(buf, "{v:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn float(v: f64) -> String {
        let mut buf = Vec::new();
        write_f64(&mut buf, v);
        String::from_utf8(buf).unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn histogram() -> BuiltHistogram {
        BuiltHistogram {
            buckets: vec![(0.5, 1), (1.0, 3), (1024.0, 3)],
            count: 4,
            sum: 2050.25,
            native: None,
        }
    }

    /// One of each kind, with escaping; used by the exact and parser tests.
    fn sample_exposition(format: Format) -> Vec<u8> {
        let mut e = Encoder::new(format);
        e.family(
            "userspace_exporter_gc_total",
            "Garbage collections, by \"kind\".\nSecond line \\ backslash.",
            MetricKind::Counter,
        );
        let names = ["kind"];
        let extra = [("pid", "42")];
        for (kind, value) in [("minor", 7), ("we\"ird\\\nvalue", 0)] {
            let values = [kind.to_string()];
            let labels = LabelSet {
                names: &names,
                values: &values,
                extra: &extra,
            };
            e.sample_u64(&labels, value);
        }
        e.family(
            "userspace_exporter_heap_bytes",
            "Heap size.",
            MetricKind::Gauge,
        );
        e.sample(&LabelSet::EMPTY, 1.5e9);
        e.family(
            "userspace_exporter_latency_seconds",
            "Latency.",
            MetricKind::Histogram,
        );
        let names = ["op"];
        let values = ["read".to_string()];
        e.histogram(
            &LabelSet {
                names: &names,
                values: &values,
                extra: &[("pid", "42")],
            },
            &histogram(),
        );
        e.finish()
    }

    /// A sink that keeps each chunk it is sent, and whether it was finished.
    #[derive(Default, Clone)]
    struct Chunks(std::sync::Arc<std::sync::Mutex<(Vec<Vec<u8>>, bool)>>);

    impl Sink for Chunks {
        fn send(&mut self, chunk: &mut Vec<u8>, _wait: bool) -> Result<(), Closed> {
            self.0.lock().unwrap().0.push(std::mem::take(chunk));
            Ok(())
        }
        fn finish(&mut self) -> Result<(), Closed> {
            self.0.lock().unwrap().1 = true;
            Ok(())
        }
        fn closed(&self) -> bool {
            false
        }
        fn waited(&self) -> std::time::Duration {
            std::time::Duration::ZERO
        }
    }

    /// Many series in three families, written into `e`.
    fn long_exposition(mut e: Encoder) -> Vec<u8> {
        let names = ["key"];
        e.family(
            "userspace_exporter_keys_total",
            "Keys.",
            MetricKind::Counter,
        );
        for i in 0..2000u64 {
            let values = [i.to_string()];
            let labels = LabelSet {
                names: &names,
                values: &values,
                extra: &[("pid", "42")],
            };
            e.sample_u64(&labels, i * 3);
        }
        e.family("userspace_exporter_up", "", MetricKind::Gauge);
        e.sample(&LabelSet::EMPTY, 1.0);
        e.family(
            "userspace_exporter_latency_seconds",
            "Latency.",
            MetricKind::Histogram,
        );
        for i in 0..200u64 {
            let values = [i.to_string()];
            let labels = LabelSet {
                names: &names,
                values: &values,
                extra: &[],
            };
            e.histogram(&labels, &histogram());
        }
        e.finish()
    }

    #[test]
    fn a_streamed_exposition_is_the_same_bytes_in_chunks_of_whole_samples() {
        for format in [Format::Text, Format::OpenMetrics] {
            let whole = long_exposition(Encoder::new(format));
            let sink = Chunks::default();
            let rest = long_exposition(Encoder::streaming(format, Box::new(sink.clone()), 4096));
            assert!(rest.is_empty(), "everything went to the sink");
            let (chunks, finished) = sink.0.lock().unwrap().clone();
            assert!(finished);
            assert!(chunks.len() > 20, "{} chunks", chunks.len());
            assert_eq!(chunks.concat(), whole, "{format:?}");
            for chunk in &chunks {
                // Each chunk ends a line, and holds little more than 4096 bytes.
                assert_eq!(chunk.last(), Some(&b'\n'));
                assert!(chunk.len() < 4096 + 512, "{}", chunk.len());
            }
        }
    }

    #[test]
    fn a_streamed_protobuf_family_longer_than_a_chunk_comes_in_parts_with_every_metric() {
        use crate::metrics::protobuf::tests::{delimited, fields, Field};
        let whole = long_exposition(Encoder::new(Format::Protobuf));
        let sink = Chunks::default();
        long_exposition(Encoder::streaming(
            Format::Protobuf,
            Box::new(sink.clone()),
            4096,
        ));
        let (chunks, finished) = sink.0.lock().unwrap().clone();
        assert!(finished && chunks.len() > 10);
        // (name, help, type, metrics) of each family message.
        let families = |bytes: &[u8]| -> Vec<(Vec<Field>, Vec<Field>)> {
            delimited(bytes)
                .iter()
                .map(|m| {
                    let f = fields(m);
                    let (header, metrics) = f.split_at(
                        f.iter()
                            .position(|x| matches!(x, Field::Bytes(4, _)))
                            .unwrap(),
                    );
                    (header.to_vec(), metrics.to_vec())
                })
                .collect()
        };
        let merged = |parts: Vec<(Vec<Field>, Vec<Field>)>| {
            let mut out: Vec<(Vec<Field>, Vec<Field>)> = Vec::new();
            for (header, metrics) in parts {
                match out.last_mut() {
                    Some((last, all)) if *last == header => all.extend(metrics),
                    _ => out.push((header, metrics)),
                }
            }
            out
        };
        let mut parts = Vec::new();
        for chunk in &chunks {
            // Every chunk is whole messages.
            parts.extend(families(chunk));
        }
        assert!(parts.len() > 3, "the long families came in parts");
        let whole_families = families(&whole);
        assert_eq!(whole_families.len(), 3);
        assert_eq!(merged(parts), whole_families);
    }

    #[test]
    fn text_format_exact() {
        let expected = r#"# HELP userspace_exporter_gc_total Garbage collections, by "kind".\nSecond line \\ backslash.
# TYPE userspace_exporter_gc_total counter
userspace_exporter_gc_total{kind="minor",pid="42"} 7
userspace_exporter_gc_total{kind="we\"ird\\\nvalue",pid="42"} 0
# HELP userspace_exporter_heap_bytes Heap size.
# TYPE userspace_exporter_heap_bytes gauge
userspace_exporter_heap_bytes 1500000000
# HELP userspace_exporter_latency_seconds Latency.
# TYPE userspace_exporter_latency_seconds histogram
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="0.5"} 1
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="1"} 3
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="1024"} 3
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="+Inf"} 4
userspace_exporter_latency_seconds_sum{op="read",pid="42"} 2050.25
userspace_exporter_latency_seconds_count{op="read",pid="42"} 4
"#;
        assert_eq!(text(sample_exposition(Format::Text)), expected);
    }

    #[test]
    fn openmetrics_format_exact() {
        let expected = r#"# HELP userspace_exporter_gc Garbage collections, by \"kind\".\nSecond line \\ backslash.
# TYPE userspace_exporter_gc counter
userspace_exporter_gc_total{kind="minor",pid="42"} 7
userspace_exporter_gc_total{kind="we\"ird\\\nvalue",pid="42"} 0
# HELP userspace_exporter_heap_bytes Heap size.
# TYPE userspace_exporter_heap_bytes gauge
userspace_exporter_heap_bytes 1500000000
# HELP userspace_exporter_latency_seconds Latency.
# TYPE userspace_exporter_latency_seconds histogram
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="0.5"} 1
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="1.0"} 3
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="1024.0"} 3
userspace_exporter_latency_seconds_bucket{op="read",pid="42",le="+Inf"} 4
userspace_exporter_latency_seconds_sum{op="read",pid="42"} 2050.25
userspace_exporter_latency_seconds_count{op="read",pid="42"} 4
# EOF
"#;
        assert_eq!(text(sample_exposition(Format::OpenMetrics)), expected);
    }

    #[test]
    fn counter_naming() {
        let mut e = Encoder::new(Format::OpenMetrics);
        e.family("allocs", "Allocations.", MetricKind::Counter);
        e.sample(&LabelSet::EMPTY, 3.0);
        e.family("gc_total", "GCs.", MetricKind::Counter);
        e.sample_u64(&LabelSet::EMPTY, 1);
        e.family("queue_total", "A gauge keeps its name.", MetricKind::Gauge);
        e.sample_u64(&LabelSet::EMPTY, 2);
        assert_eq!(
            text(e.finish()),
            "# HELP allocs Allocations.\n# TYPE allocs counter\nallocs_total 3\n\
             # HELP gc GCs.\n# TYPE gc counter\ngc_total 1\n\
             # HELP queue_total A gauge keeps its name.\n# TYPE queue_total gauge\nqueue_total 2\n# EOF\n"
        );

        let mut e = Encoder::new(Format::Text);
        e.family("allocs", "Allocations.", MetricKind::Counter);
        e.sample(&LabelSet::EMPTY, 3.0);
        assert_eq!(
            text(e.finish()),
            "# HELP allocs Allocations.\n# TYPE allocs counter\nallocs 3\n"
        );
    }

    #[test]
    fn protobuf_exposition_decodes_to_the_same_families() {
        use crate::metrics::protobuf::tests::{delimited, fields, Field};
        let out = sample_exposition(Format::Protobuf);
        let families: Vec<Vec<Field>> = delimited(&out).iter().map(|m| fields(m)).collect();
        let header = |f: &[Field]| (f[0].clone(), f[1].clone(), f[2].clone());
        assert_eq!(families.len(), 3);
        // Counters keep their name (the text format's), help unescaped.
        assert_eq!(
            header(&families[0]),
            (
                Field::Bytes(1, b"userspace_exporter_gc_total".to_vec()),
                Field::Bytes(
                    2,
                    b"Garbage collections, by \"kind\".\nSecond line \\ backslash.".to_vec()
                ),
                Field::Varint(3, 0)
            )
        );
        let metric = |f: &Field| match f {
            Field::Bytes(4, m) => fields(m),
            other => panic!("not a metric: {other:?}"),
        };
        let pair = |f: &Field| match f {
            Field::Bytes(1, p) => fields(p),
            other => panic!("not a label: {other:?}"),
        };
        let weird = metric(&families[0][4]);
        assert_eq!(
            pair(&weird[0]),
            [
                Field::Bytes(1, b"kind".to_vec()),
                Field::Bytes(2, b"we\"ird\\\nvalue".to_vec())
            ]
        );
        assert_eq!(
            pair(&weird[1]),
            [
                Field::Bytes(1, b"pid".to_vec()),
                Field::Bytes(2, b"42".to_vec())
            ]
        );
        assert_eq!(
            weird[2],
            Field::Bytes(3, vec![0x09, 0, 0, 0, 0, 0, 0, 0, 0]),
            "counter 0"
        );
        // The gauge: no labels, value 1.5e9.
        assert_eq!(families[1][2], Field::Varint(3, 1));
        let gauge = metric(&families[1][3]);
        let mut value = vec![0x09];
        value.extend_from_slice(&1.5e9f64.to_le_bytes());
        assert_eq!(gauge, [Field::Bytes(2, value)]);
        // The histogram has no native form: classic buckets, count and sum.
        assert_eq!(families[2][2], Field::Varint(3, 4));
        let histogram = metric(&families[2][3]);
        let Field::Bytes(7, h) = &histogram[2] else {
            panic!("{histogram:?}");
        };
        let h = fields(h);
        assert_eq!(h[0], Field::Varint(1, 4));
        assert_eq!(h[1], Field::Double(2, 2050.25));
        assert_eq!(h.len(), 5, "three buckets, no native fields: {h:?}");
    }

    #[test]
    fn protobuf_leaves_out_families_without_samples() {
        let mut e = Encoder::new(Format::Protobuf);
        e.family("empty_total", "None.", MetricKind::Counter);
        e.family("up", "", MetricKind::Gauge);
        e.sample_u64(&LabelSet::EMPTY, 1);
        e.family("also_empty", "None.", MetricKind::Histogram);
        let out = e.finish();
        assert_eq!(
            out,
            [
                19, 0x0a, 2, b'u', b'p', 0x18, 1, 0x22, 11, 0x12, 9, 0x09, 0, 0, 0, 0, 0, 0, 0xf0,
                0x3f
            ][..]
        );
    }

    #[test]
    fn empty_help_is_omitted() {
        let mut e = Encoder::new(Format::Text);
        e.family("up", "", MetricKind::Gauge);
        e.sample(&LabelSet::pairs(&[("a", "")]), 1.0);
        assert_eq!(text(e.finish()), "# TYPE up gauge\nup{a=\"\"} 1\n");
    }

    #[test]
    fn histogram_without_labels_or_buckets() {
        let mut e = Encoder::new(Format::Text);
        e.family("h", "H.", MetricKind::Histogram);
        e.histogram(
            &LabelSet::EMPTY,
            &BuiltHistogram {
                buckets: Vec::new(),
                count: 0,
                sum: 0.0,
                native: None,
            },
        );
        assert_eq!(
            text(e.finish()),
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n"
        );
    }

    #[test]
    fn label_sets() {
        let mut e = Encoder::new(Format::Text);
        e.family("c_total", "C.", MetricKind::Counter);
        let names = ["a", "b"];
        let values = vec!["x".to_string(), "y\"".to_string()];
        e.sample_u64(
            &LabelSet {
                names: &names,
                values: &values,
                extra: &[],
            },
            u64::MAX,
        );
        e.sample(&LabelSet::pairs(&[("pid", "1"), ("z", "2")]), 0.25);
        e.sample(
            &LabelSet {
                names: &names[..1],
                values: &values[..1],
                extra: &[("pid", "1")],
            },
            -2.5,
        );
        assert_eq!(
            text(e.finish()),
            "# HELP c_total C.\n# TYPE c_total counter\n\
             c_total{a=\"x\",b=\"y\\\"\"} 18446744073709551615\n\
             c_total{pid=\"1\",z=\"2\"} 0.25\n\
             c_total{a=\"x\",pid=\"1\"} -2.5\n"
        );
    }

    #[test]
    fn float_formatting() {
        assert_eq!(float(0.0), "0");
        assert_eq!(float(-0.0), "0");
        assert_eq!(float(1024.0), "1024");
        assert_eq!(float(-3.0), "-3");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(0.001), "0.001");
        assert_eq!(float(2050.25), "2050.25");
        assert_eq!(float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float((1u64 << 60) as f64), "1152921504606846976");
        assert_eq!(float(1e19), "1e19");
        assert_eq!(float(2f64.powi(1023)), "8.98846567431158e307");
        assert_eq!(float(1.5e-7), "1.5e-7");
        assert_eq!(float(1e15 + 0.5), "1.0000000000000005e15");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        for v in [
            0.1,
            1.0 / 3.0,
            123456.789,
            1e-300,
            6.02e23,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(float(v).parse::<f64>().unwrap(), v, "{v} round-trips");
        }
    }

    #[test]
    fn integers() {
        for v in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut buf = Vec::new();
            write_u64(&mut buf, v);
            assert_eq!(text(buf), v.to_string());
        }
    }

    #[test]
    fn escaping() {
        let mut buf = Vec::new();
        write_escaped(&mut buf, "a\\b\"c\nd", true);
        assert_eq!(text(buf), r#"a\\b\"c\nd"#);
        let mut buf = Vec::new();
        write_escaped(&mut buf, "a\\b\"c\nd", false);
        assert_eq!(text(buf), r#"a\\b"c\nd"#);
        let mut buf = Vec::new();
        write_escaped(&mut buf, "plain ünïcode", true);
        assert_eq!(text(buf), "plain ünïcode");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        // client_golang's expfmt.ProtoFmt, which Prometheus parses by media type.
        assert_eq!(
            Format::Protobuf.content_type(),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        );
    }

    #[test]
    fn negotiation() {
        use Format::*;
        let cases: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            // Prometheus 2.42 (Debian 12's), as it sent it to a listener:
            // without --enable-feature=native-histograms...
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
            // ...and with it.
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Protobuf,
            ),
            // Prometheus 3.x with native histograms (protobuf first, weighted)
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05"),
                Protobuf,
            ),
            // protobuf weighted below OpenMetrics, or below text
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.3,application/openmetrics-text;version=1.0.0;q=0.4"),
                OpenMetrics,
            ),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.3,text/plain;q=0.4"),
                Text,
            ),
            // equal q: protobuf wins; parameters in any order and case
            (
                Some("text/plain;q=0.5, Application/Vnd.Google.Protobuf; encoding=Delimited; q=0.5; proto=io.prometheus.client.MetricFamily"),
                Protobuf,
            ),
            // only the delimited MetricFamily stream is spoken
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text,text/plain;q=0.1"),
                Text,
            ),
            (
                Some("application/vnd.google.protobuf;encoding=delimited"),
                Text,
            ),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"),
                Text,
            ),
            // Prometheus configured to prefer the text format
            (
                Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5"),
                Text,
            ),
            // equal q: OpenMetrics wins
            (
                Some("text/plain; q=0.5, Application/OpenMetrics-Text; Version=1.0.0; Q=0.5"),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;q=bogus"), Text),
            // browser
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
                Text,
            ),
            (Some("curl/8"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(*accept), *want, "Accept: {accept:?}");
        }
    }

    /// Runs `cmd` with `input` on stdin: (exit code, stdout + stderr), or
    /// None when the program cannot be started (not installed).
    fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Option<(Option<i32>, String)> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // Write from a thread so a child that fills its stdout first cannot deadlock us.
        let mut stdin = child.stdin.take()?;
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().ok()?;
        writer.join().ok()?.ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Some((output.status.code(), text))
    }

    #[test]
    fn promtool_accepts_text_format() {
        let input = sample_exposition(Format::Text);
        let Some((code, output)) =
            run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &input)
        else {
            eprintln!("promtool not found: skipping");
            return;
        };
        // Exit 0 means it parsed and passed promtool's lint (names, HELP, suffixes) too.
        assert_eq!(
            code,
            Some(0),
            "promtool check metrics failed:\n{output}\n---\n{}",
            text(input)
        );
    }

    const OPENMETRICS_CHECK: &str = r#"
import sys
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit(77)
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
gc = fams["userspace_exporter_gc"]
assert gc.type == "counter", gc.type
assert [(s.name, s.labels, s.value) for s in gc.samples] == [
    ("userspace_exporter_gc_total", {"kind": "minor", "pid": "42"}, 7.0),
    ("userspace_exporter_gc_total", {"kind": 'we"ird\\\nvalue', "pid": "42"}, 0.0),
], gc.samples
assert gc.documentation == 'Garbage collections, by "kind".\nSecond line \\ backslash.', repr(gc.documentation)
assert fams["userspace_exporter_heap_bytes"].samples[0].value == 1.5e9
h = fams["userspace_exporter_latency_seconds"]
assert h.type == "histogram", h.type
buckets = [(s.labels["le"], s.value) for s in h.samples if s.name.endswith("_bucket")]
assert buckets == [("0.5", 1), ("1.0", 3), ("1024.0", 3), ("+Inf", 4)], buckets
print("ok")
"#;

    #[test]
    fn python_openmetrics_parser_accepts_openmetrics_format() {
        let input = sample_exposition(Format::OpenMetrics);
        let mut cmd = Command::new("python3");
        cmd.args(["-c", OPENMETRICS_CHECK]);
        let Some((code, output)) = run_with_stdin(&mut cmd, &input) else {
            eprintln!("python3 not found: skipping");
            return;
        };
        if code == Some(77) {
            eprintln!("python prometheus_client not installed: skipping");
            return;
        }
        assert_eq!(
            code,
            Some(0),
            "OpenMetrics parser rejected the output:\n{output}\n---\n{}",
            text(input)
        );
    }
}
