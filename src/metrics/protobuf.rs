//! The Prometheus protobuf exposition: `io.prometheus.client.MetricFamily`
//! messages, each preceded by its length (`encoding=delimited`), written by
//! hand into the response buffer like the text formats (no protobuf crate:
//! varints, length-delimited fields, zigzag and doubles are all it takes).
//!
//! The messages and field numbers, from Prometheus's `metrics.proto`:
//!
//! ```text
//! MetricFamily { 1 name, 2 help, 3 type (COUNTER 0, GAUGE 1, HISTOGRAM 4), 4 metric* }
//! Metric       { 1 label* (LabelPair { 1 name, 2 value }), 2 gauge, 3 counter, 7 histogram }
//! Gauge, Counter { 1 value (double) }
//! Histogram    { 1 sample_count, 2 sample_sum (double), 3 bucket*,
//!                5 schema (sint32), 6 zero_threshold (double), 7 zero_count,
//!                12 positive_span* (BucketSpan { 1 offset (sint32), 2 length }),
//!                13 positive_delta (packed sint64) }
//! Bucket       { 1 cumulative_count, 2 upper_bound (double) }
//! ```
//!
//! A nested message's length is written before its content but known only
//! after it: [`open`] leaves one byte for it and [`close`] fills it in,
//! moving the content along in the rare case the length needs more bytes (a
//! message of 128 bytes or more: a histogram with many buckets, a family).

use super::histogram::{BuiltHistogram, NativeLayout};

/// Wire type of varints (integers, enums, zigzag).
const VARINT: u8 = 0;
/// Wire type of doubles.
const FIXED64: u8 = 1;
/// Wire type of strings, messages and packed repeated fields.
const LEN: u8 = 2;

/// `MetricFamily.type` of a family.
pub const COUNTER: u64 = 0;
/// `MetricFamily.type` of a family.
pub const GAUGE: u64 = 1;
/// `MetricFamily.type` of a family.
pub const HISTOGRAM: u64 = 4;

/// `Metric` field of a counter's value.
pub const METRIC_COUNTER: u32 = 3;
/// `Metric` field of a gauge's value.
pub const METRIC_GAUGE: u32 = 2;

/// Appends `v` as a varint.
pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Bytes `v` takes as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Zigzag encoding of a signed integer (`sint32`, `sint64`).
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends a field's key: its number and wire type (every field here is below 16: one byte).
fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    debug_assert!(field < 16);
    buf.push((field << 3) as u8 | wire);
}

/// Appends a varint field.
fn uint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    key(buf, field, VARINT);
    varint(buf, v);
}

/// Appends a double field.
fn double_field(buf: &mut Vec<u8>, field: u32, v: f64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends a string (or bytes) field.
fn bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(buf, field, LEN);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Starts a length-delimited field (`field` > 0) or a top-level delimited
/// message (`field` = 0: a length and no key); returns the place of the
/// length for [`close`].
pub fn open(buf: &mut Vec<u8>, field: u32) -> usize {
    if field > 0 {
        key(buf, field, LEN);
    }
    buf.push(0);
    buf.len() - 1
}

/// Ends what [`open`] started at `at`: writes its length.
pub fn close(buf: &mut Vec<u8>, at: usize) {
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let (mut length, mut v, mut n) = ([0u8; 10], len as u64, 0);
    while v >= 0x80 {
        length[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    length[n] = v as u8;
    buf.splice(at..=at, length[..=n].iter().copied());
}

/// Appends a `Metric.label` field: one `LabelPair`.
pub fn label_pair(buf: &mut Vec<u8>, name: &str, value: &str) {
    let (name, value) = (name.as_bytes(), value.as_bytes());
    let inner = 2 + varint_len(name.len() as u64) + name.len() + varint_len(value.len() as u64);
    key(buf, 1, LEN);
    varint(buf, (inner + value.len()) as u64);
    bytes_field(buf, 1, name);
    bytes_field(buf, 2, value);
}

/// Appends the `LabelPair` fields of a label set rendered as text
/// (`a="x",b="y\"z"`, as [`super::encode::render_labels`] writes it): the
/// label cache keeps a set's text and derives this once, on the first
/// protobuf scrape that needs it.
pub fn labels_from_text(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    let mut value = Vec::new();
    while let Some(eq) = rest.iter().position(|&b| b == b'=') {
        let name = &rest[..eq];
        // Skip `="`; the value runs to the first unescaped quote.
        let mut i = eq + 2;
        value.clear();
        while i < rest.len() && rest[i] != b'"' {
            if rest[i] == b'\\' && i + 1 < rest.len() {
                i += 1;
                value.push(if rest[i] == b'n' { b'\n' } else { rest[i] });
            } else {
                value.push(rest[i]);
            }
            i += 1;
        }
        // Both came from `&str`s, and escapes are ASCII: still UTF-8.
        label_pair(
            out,
            std::str::from_utf8(name).unwrap_or_default(),
            std::str::from_utf8(&value).unwrap_or_default(),
        );
        // Skip the closing quote and the comma.
        rest = rest.get(i + 2..).unwrap_or_default();
    }
}

/// Appends a family's name, help and type (the `metric` fields follow).
pub fn family_header(buf: &mut Vec<u8>, name: &str, help: &str, kind: u64) {
    bytes_field(buf, 1, name.as_bytes());
    if !help.is_empty() {
        bytes_field(buf, 2, help.as_bytes());
    }
    uint_field(buf, 3, kind);
}

/// Appends a `Gauge` or `Counter` field (`field` is [`METRIC_GAUGE`] or
/// [`METRIC_COUNTER`]) holding `value`.
pub fn value(buf: &mut Vec<u8>, field: u32, value: f64) {
    key(buf, field, LEN);
    buf.push(9);
    double_field(buf, 1, value);
}

/// Appends `Metric.histogram`: the count and sum, the classic buckets unless
/// `native: only`, and the native buckets when the histogram has a native form.
pub fn histogram(buf: &mut Vec<u8>, h: &BuiltHistogram) {
    let at = open(buf, 7);
    uint_field(buf, 1, h.count);
    double_field(buf, 2, h.sum);
    if h.native.is_none_or(|n| n.classic) {
        for &(le, count) in &h.buckets {
            let bucket = open(buf, 3);
            uint_field(buf, 1, count);
            double_field(buf, 2, le);
            close(buf, bucket);
        }
    }
    if let Some(native) = &h.native {
        native_buckets(buf, h, native);
    }
    close(buf, at);
}

/// The native fields: schema 0, the first bucket as the zero bucket, the
/// others as spans of buckets and the deltas of their counts.
fn native_buckets(buf: &mut Vec<u8>, h: &BuiltHistogram, native: &NativeLayout) {
    uint_field(buf, 5, zigzag(0));
    double_field(buf, 6, native.zero_threshold);
    uint_field(buf, 7, h.buckets.first().map_or(0, |b| b.1));
    let mut spans = false;
    walk_native(
        h,
        native,
        |offset, length| {
            spans = true;
            let at = open(buf, 12);
            uint_field(buf, 1, zigzag(offset));
            uint_field(buf, 2, u64::from(length));
            close(buf, at);
        },
        |_| {},
    );
    if !spans {
        return;
    }
    let deltas = open(buf, 13);
    let mut previous: u64 = 0;
    walk_native(
        h,
        native,
        |_, _| {},
        |count| {
            // Two's complement, as Prometheus adds the deltas up in an int64.
            varint(buf, zigzag((count as i64).wrapping_sub(previous as i64)));
            previous = count;
        },
    );
    close(buf, deltas);
}

/// Walks the native buckets (all but the first, which is the zero bucket) as
/// client_golang lays them out: empty buckets are left out, except a gap of
/// one or two inside a span, written as zero counts; a longer gap starts a
/// new span. Calls `bucket` with each count written, in order, and `span`
/// with each span's offset (its first index, or the gap after the span
/// before it) and length, once the span is complete.
fn walk_native(
    h: &BuiltHistogram,
    native: &NativeLayout,
    mut span: impl FnMut(i64, u32),
    mut bucket: impl FnMut(u64),
) {
    let mut current: Option<(i64, u32)> = None;
    // Index after the last bucket written.
    let mut next = 0;
    for (i, pair) in h.buckets.windows(2).enumerate() {
        let count = pair[1].1.saturating_sub(pair[0].1);
        if count == 0 {
            continue;
        }
        let index = i64::from(native.first_index) + i as i64;
        current = match current {
            Some((offset, length)) if index - next <= 2 => {
                for _ in next..index {
                    bucket(0);
                }
                Some((offset, length + (index - next) as u32 + 1))
            }
            Some((offset, length)) => {
                span(offset, length);
                Some((index - next, 1))
            }
            None => Some((index, 1)),
        };
        bucket(count);
        next = index + 1;
    }
    if let Some((offset, length)) = current {
        span(offset, length);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::encode::{render_labels, Encoder, Format, LabelSet, MetricKind};

    /// One decoded field: its number and value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Field {
        Varint(u32, u64),
        Double(u32, f64),
        Bytes(u32, Vec<u8>),
    }

    fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// Decodes one message's fields, in order (a decoder written apart from the encoder).
    pub fn fields(bytes: &[u8]) -> Vec<Field> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < bytes.len() {
            let key = read_varint(bytes, &mut at);
            let field = (key >> 3) as u32;
            out.push(match key & 7 {
                0 => Field::Varint(field, read_varint(bytes, &mut at)),
                1 => {
                    let v = f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                    at += 8;
                    Field::Double(field, v)
                }
                2 => {
                    let len = read_varint(bytes, &mut at) as usize;
                    at += len;
                    Field::Bytes(field, bytes[at - len..at].to_vec())
                }
                wire => panic!("wire type {wire} at {at}"),
            });
        }
        out
    }

    /// Splits a delimited stream into its messages.
    pub fn delimited(bytes: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < bytes.len() {
            let len = read_varint(bytes, &mut at) as usize;
            out.push(bytes[at..at + len].to_vec());
            at += len;
        }
        out
    }

    fn unzigzag(v: u64) -> i64 {
        (v >> 1) as i64 ^ -((v & 1) as i64)
    }

    /// The packed varints of a field's bytes, unzigzagged.
    fn packed_sint(bytes: &[u8]) -> Vec<i64> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < bytes.len() {
            out.push(unzigzag(read_varint(bytes, &mut at)));
        }
        out
    }

    fn bytes(f: &Field) -> &[u8] {
        match f {
            Field::Bytes(_, b) => b,
            other => panic!("not bytes: {other:?}"),
        }
    }

    #[test]
    fn varints_and_zigzag() {
        for (v, want) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 1]),
            (300, vec![0xac, 2]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
            ),
        ] {
            let mut buf = Vec::new();
            varint(&mut buf, v);
            assert_eq!(buf, want, "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
        }
        for (v, z) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ] {
            assert_eq!(zigzag(v), z);
            assert_eq!(unzigzag(z), v);
        }
    }

    #[test]
    fn a_long_message_gets_a_wider_length() {
        for len in [0usize, 127, 128, 300, 20_000] {
            let mut buf = vec![0xaa];
            let at = open(&mut buf, 4);
            buf.extend(std::iter::repeat_n(7u8, len));
            close(&mut buf, at);
            let decoded = fields(&buf[1..]);
            assert_eq!(decoded, [Field::Bytes(4, vec![7; len])]);
        }
    }

    #[test]
    fn labels_from_text_match_label_pairs_written_directly() {
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        let values = [
            "plain".to_string(),
            "we\"ird\\\nvä,lue=".to_string(),
            String::new(),
        ];
        let mut text = Vec::new();
        render_labels(&mut text, &names, &values);
        let mut from_text = Vec::new();
        labels_from_text(&text, &mut from_text);
        let mut direct = Vec::new();
        for (n, v) in names.iter().zip(&values) {
            label_pair(&mut direct, n, v);
        }
        assert_eq!(from_text, direct);
        let pairs: Vec<Vec<Field>> = fields(&direct).iter().map(|f| fields(bytes(f))).collect();
        assert_eq!(
            pairs[1],
            [
                Field::Bytes(1, b"b".to_vec()),
                Field::Bytes(2, "we\"ird\\\nvä,lue=".as_bytes().to_vec())
            ]
        );
        let mut none = Vec::new();
        labels_from_text(b"", &mut none);
        assert!(none.is_empty());
    }

    /// An exp2 histogram, slots 0..=7, bucket_multiplier 1: slot 0 (values up
    /// to 1) is the zero bucket; slots 1..=7 are native buckets 1..=7.
    fn exp2_histogram(
        slot_counts: &[(u64, u64)],
        native: crate::config::NativeHistogram,
    ) -> BuiltHistogram {
        let config = crate::config::Histogram {
            name: "h".into(),
            help: "h".into(),
            table: "t".into(),
            bucket_type: crate::config::BucketType::Exp2,
            bucket_min: 0,
            bucket_max: 7,
            bucket_multiplier: None,
            bucket_keys: Vec::new(),
            labels: Vec::new(),
            native,
        };
        let layout = crate::metrics::histogram::HistogramLayout::new(&config);
        layout.build(&slot_counts.iter().copied().collect())
    }

    #[test]
    fn a_known_histogram_decodes_field_by_field() {
        // Slot 0: 2, slot 1: 1, slot 2: 3, slot 6: 4 (gap of 3 empty: a new
        // span), slot 7: 0; the sum slot 8 holds 123.
        let h = exp2_histogram(
            &[(0, 2), (1, 1), (2, 3), (6, 4), (8, 123)],
            crate::config::NativeHistogram::Both,
        );
        let mut enc = Encoder::new(Format::Protobuf);
        enc.family("userspace_exporter_lat", "Latency.", MetricKind::Histogram);
        let values = ["read".to_string()];
        enc.histogram(
            &LabelSet {
                names: &["op"],
                values: &values,
                extra: &[("pid", "42")],
            },
            &h,
        );
        let out = enc.finish();
        let families = delimited(&out);
        assert_eq!(families.len(), 1);
        let family = fields(&families[0]);
        assert_eq!(
            family[0],
            Field::Bytes(1, b"userspace_exporter_lat".to_vec())
        );
        assert_eq!(family[1], Field::Bytes(2, b"Latency.".to_vec()));
        assert_eq!(family[2], Field::Varint(3, 4), "type HISTOGRAM");
        assert_eq!(family.len(), 4);
        let metric = fields(bytes(&family[3]));
        let label = |f: &Field| {
            let pair = fields(bytes(f));
            (bytes(&pair[0]).to_vec(), bytes(&pair[1]).to_vec())
        };
        assert_eq!(label(&metric[0]), (b"op".to_vec(), b"read".to_vec()));
        assert_eq!(label(&metric[1]), (b"pid".to_vec(), b"42".to_vec()));
        assert!(matches!(metric[2], Field::Bytes(7, _)));
        let hist = fields(bytes(&metric[2]));
        let mut it = hist.iter();
        assert_eq!(it.next(), Some(&Field::Varint(1, 10)), "sample_count");
        assert_eq!(it.next(), Some(&Field::Double(2, 123.0)), "sample_sum");
        // Classic buckets: cumulative, le 1, 2, 4, ..., 128 (no +Inf).
        let cumulative = [2, 3, 6, 6, 6, 6, 10, 10];
        for (k, want) in cumulative.iter().enumerate() {
            let bucket = fields(bytes(it.next().unwrap()));
            assert_eq!(
                bucket,
                [
                    Field::Varint(1, *want),
                    Field::Double(2, 2f64.powi(k as i32))
                ],
                "bucket {k}"
            );
        }
        assert_eq!(it.next(), Some(&Field::Varint(5, 0)), "schema 0");
        assert_eq!(
            it.next(),
            Some(&Field::Double(6, 1.0)),
            "zero threshold: slot 0's bound"
        );
        assert_eq!(it.next(), Some(&Field::Varint(7, 2)), "zero count: slot 0");
        // Native 1: 1, 2: 3, then 3..=5 empty (a gap of 3: new span), 6: 4.
        let span = |f: &Field| {
            let s = fields(bytes(f));
            match (&s[0], &s[1]) {
                (Field::Varint(1, o), Field::Varint(2, l)) => (unzigzag(*o), *l),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(span(it.next().unwrap()), (1, 2));
        assert_eq!(span(it.next().unwrap()), (3, 1));
        let deltas = it.next().unwrap();
        assert!(matches!(deltas, Field::Bytes(13, _)));
        assert_eq!(packed_sint(bytes(deltas)), [1, 2, 1]);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn short_gaps_stay_in_the_span_and_only_drops_the_classic_buckets() {
        // Slots 1 and 4: a gap of two empty buckets is written as zeros.
        let h = exp2_histogram(&[(1, 5), (4, 2)], crate::config::NativeHistogram::Only);
        let mut buf = Vec::new();
        histogram(&mut buf, &h);
        let hist = fields(bytes(&fields(&buf)[0]));
        assert!(
            !hist.iter().any(|f| matches!(f, Field::Bytes(3, _))),
            "{hist:?}"
        );
        assert!(hist.contains(&Field::Varint(7, 0)), "empty zero bucket");
        let spans: Vec<_> = hist
            .iter()
            .filter(|f| matches!(f, Field::Bytes(12, _)))
            .collect();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            fields(bytes(spans[0])),
            [Field::Varint(1, zigzag(1)), Field::Varint(2, 4)]
        );
        let deltas = hist
            .iter()
            .find(|f| matches!(f, Field::Bytes(13, _)))
            .unwrap();
        assert_eq!(packed_sint(bytes(deltas)), [5, -5, 0, 2]);
    }

    #[test]
    fn an_empty_native_histogram_still_has_a_zero_threshold() {
        // Prometheus 2.42 takes a histogram without buckets, zero count and
        // zero threshold for a classic one.
        let h = exp2_histogram(&[], crate::config::NativeHistogram::Only);
        let mut buf = Vec::new();
        histogram(&mut buf, &h);
        let hist = fields(bytes(&fields(&buf)[0]));
        assert_eq!(
            hist,
            [
                Field::Varint(1, 0),
                Field::Double(2, 0.0),
                Field::Varint(5, 0),
                Field::Double(6, 1.0),
                Field::Varint(7, 0)
            ]
        );
    }
}
