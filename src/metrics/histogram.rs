//! Histograms read from BPF maps: the BPF code counts events per bucket slot
//! (e.g. `log2(latency)`), and this module turns those per-slot counts into
//! cumulative Prometheus buckets with `le` bounds, a count and a sum.
//!
//! The slot -> bound rules follow the original project (and ebpf_exporter) so that
//! existing BPF programs and configs keep their meaning:
//!
//! | type     | slots                        | `le` of slot k          |
//! |----------|------------------------------|-------------------------|
//! | exp2     | bucket_min..=bucket_max      | 2^k * m                 |
//! | exp2zero | bucket_min..=bucket_max      | 0 for k = 0, else 2^(k-1) * m |
//! | linear   | bucket_min..=bucket_max      | k * m                   |
//! | fixed    | bucket_keys                  | k * m                   |
//!
//! `m` is `bucket_multiplier` (default 1). The slot after the last bucket
//! (`bucket_max + 1`, or last bucket key + 1) holds the sum of observed values,
//! in the same unit as the bounds before multiplying.
//!
//! exp2 and exp2zero also map onto Prometheus native histograms of schema 0,
//! whose bucket `i` holds values in (2^(i-1), 2^i] ([`NativeLayout`]).

use crate::config::{BucketType, Histogram, NativeHistogram};
use std::collections::HashMap;

/// Zero threshold when the first bucket holds exactly zero (exp2zero's slot
/// 0): client_golang's default, 2^-128. Prometheus 2.42 takes a histogram with
/// a zero threshold of 0 and no observations for a classic one, and no count
/// can land between 0 and 2^-128.
const ZERO_ONLY_THRESHOLD: f64 = 2.938735877055719e-39;

/// How a histogram's buckets become a native histogram of schema 0.
///
/// The first bucket has no lower bound (its values may go down to 0), so it
/// becomes the zero bucket, `[0, its bound]`. Every later bucket, `(b/2, b]`
/// for a bound `b = 2^j * m`, becomes native bucket `j + shift`, where
/// `shift = log2(m)` rounded to the nearest integer: exact when `m` is a power
/// of two, otherwise every bound moves by the same factor `2^shift / m`, at
/// most `sqrt(2)` either way (see [`NativeLayout::boundary_factor`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NativeLayout {
    /// Upper bound of the zero bucket, which holds the first bucket's count.
    pub zero_threshold: f64,
    /// Native index of the second bucket; the later ones follow one by one.
    pub first_index: i32,
    /// Whether the classic buckets are sent too (`native: both`).
    pub classic: bool,
    /// `2^shift / m`: how far each bound moved (1 when `m` is a power of two).
    boundary_factor: f64,
}

impl NativeLayout {
    /// The native form of `config`, if its bucket type has one.
    fn new(config: &Histogram, multiplier: f64) -> Option<NativeLayout> {
        // Exponent j of the first and last buckets' bounds 2^j * m; exp2zero's
        // slot 0 (bound 0) has none.
        let (first, last) = match config.bucket_type {
            BucketType::Exp2 => (Some(config.bucket_min), config.bucket_max),
            BucketType::Exp2zero => (
                config.bucket_min.checked_sub(1),
                config.bucket_max.saturating_sub(1),
            ),
            BucketType::Linear | BucketType::Fixed => return None,
        };
        let classic = match config.native {
            NativeHistogram::Classic => return None,
            NativeHistogram::Both => true,
            NativeHistogram::Only => false,
        };
        let shift = power_of_two_near(multiplier)?;
        // Native index of exponent j; every bound must stay a normal, finite
        // float, as 2^i is for -1022 <= i <= 1023.
        let index = |j: u64| {
            i64::try_from(j)
                .ok()
                .map(|j| j + i64::from(shift))
                .filter(|i| (-1022..=1023).contains(i))
                .and_then(|i| i32::try_from(i).ok())
        };
        let (zero_threshold, first_index) = match first {
            Some(j) => (2f64.powi(index(j)?), index(j)?.saturating_add(1)),
            // exp2zero from slot 0: slot 1's bound is 2^0 * m.
            None => (ZERO_ONLY_THRESHOLD, index(0)?),
        };
        index(last)?;
        Some(NativeLayout {
            zero_threshold,
            first_index,
            classic,
            boundary_factor: 2f64.powi(shift) / multiplier,
        })
    }

    /// Factor by which every native bound differs from its classic bound: 1
    /// when `bucket_multiplier` is a power of two, else in [1/sqrt(2), sqrt(2)]
    /// (1e-9: 0.931, 1e-6: 0.954, 1e-3: 0.977).
    pub fn boundary_factor(&self) -> f64 {
        self.boundary_factor
    }
}

/// log2(m) rounded to the nearest integer: exact for a power of two, whose
/// log2 is an integer.
fn power_of_two_near(m: f64) -> Option<i32> {
    (m.is_finite() && m > 0.0).then(|| m.log2().round() as i32)
}

/// Slot -> bound mapping of one configured histogram, computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramLayout {
    /// (slot key, `le` bound), in export order.
    buckets: Vec<(u64, f64)>,
    /// First and last slot for range types, to answer `is_bucket_slot` without a search.
    range: Option<(u64, u64)>,
    sum_slot: u64,
    multiplier: f64,
    /// The native form, when there is one and the config wants it.
    native: Option<NativeLayout>,
}

/// One histogram series, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltHistogram {
    /// (`le` bound, cumulative count), ascending; `+Inf` (= `count`) is not included.
    pub buckets: Vec<(f64, u64)>,
    /// Total of all bucket slots.
    pub count: u64,
    /// Sum of observed values (sum slot times the multiplier).
    pub sum: f64,
    /// How the buckets map onto a native histogram (protobuf scrapes only).
    pub native: Option<NativeLayout>,
}

impl HistogramLayout {
    /// Computes every bucket's bound from the config.
    ///
    /// The config is assumed validated (min <= max, exp2 max <= 1023, keys
    /// increasing); the number of buckets is that of the configured range.
    pub fn new(config: &Histogram) -> Self {
        let multiplier = config.bucket_multiplier.unwrap_or(1.0);
        let (buckets, range, sum_slot): (Vec<(u64, f64)>, _, _) = match config.bucket_type {
            BucketType::Fixed => (
                config
                    .bucket_keys
                    .iter()
                    .map(|&k| (k, k as f64 * multiplier))
                    .collect(),
                None,
                config
                    .bucket_keys
                    .last()
                    .map_or(0, |&k| k.saturating_add(1)),
            ),
            kind => {
                let (min, max) = (config.bucket_min, config.bucket_max);
                let bound = |k: u64| -> f64 {
                    match kind {
                        BucketType::Exp2 => exp2(k) * multiplier,
                        BucketType::Exp2zero if k == 0 => 0.0,
                        BucketType::Exp2zero => exp2(k - 1) * multiplier,
                        _ => k as f64 * multiplier,
                    }
                };
                (
                    (min..=max).map(|k| (k, bound(k))).collect(),
                    Some((min, max)),
                    max.saturating_add(1),
                )
            }
        };
        HistogramLayout {
            buckets,
            range,
            sum_slot,
            multiplier,
            native: NativeLayout::new(config, multiplier),
        }
    }

    /// The native form, if any.
    pub fn native(&self) -> Option<&NativeLayout> {
        self.native.as_ref()
    }

    /// The slot whose value is the sum of observations.
    pub fn sum_slot(&self) -> u64 {
        self.sum_slot
    }

    /// Whether slot `k` is one of the exported buckets.
    pub fn is_bucket_slot(&self, k: u64) -> bool {
        match self.range {
            Some((min, max)) => (min..=max).contains(&k),
            None => self.buckets.iter().any(|&(slot, _)| slot == k),
        }
    }

    /// Number of buckets (without `+Inf`).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Turns per-slot counts into cumulative buckets.
    ///
    /// Missing slots count as zero (the bucket still appears, with the running
    /// total); slots that are neither buckets nor the sum slot are ignored,
    /// so a BPF program that overshoots `bucket_max` cannot skew the count.
    pub fn build(&self, slots: &HashMap<u64, u64>) -> BuiltHistogram {
        let mut total: u64 = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|&(slot, le)| {
                total = total.saturating_add(slots.get(&slot).copied().unwrap_or(0));
                (le, total)
            })
            .collect();
        BuiltHistogram {
            buckets,
            count: total,
            sum: slots.get(&self.sum_slot).copied().unwrap_or(0) as f64 * self.multiplier,
            native: self.native,
        }
    }
}

/// 2^k as f64; exact for every k the validator allows (k <= 1023).
fn exp2(k: u64) -> f64 {
    2f64.powi(i32::try_from(k).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: BucketType, min: u64, max: u64, m: Option<f64>, keys: &[u64]) -> Histogram {
        Histogram {
            name: "h".into(),
            help: "h".into(),
            table: "t".into(),
            bucket_type: kind,
            bucket_min: min,
            bucket_max: max,
            bucket_multiplier: m,
            bucket_keys: keys.to_vec(),
            labels: Vec::new(),
            native: NativeHistogram::Both,
        }
    }

    fn slots(pairs: &[(u64, u64)]) -> HashMap<u64, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn exp2_with_sum_slot() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2, 0, 3, None, &[]));
        assert_eq!(layout.sum_slot(), 4);
        assert_eq!(layout.bucket_count(), 4);
        let h = layout.build(&slots(&[(0, 1), (1, 2), (2, 3), (3, 4), (4, 25)]));
        assert_eq!(h.buckets, [(1.0, 1), (2.0, 3), (4.0, 6), (8.0, 10)]);
        assert_eq!(h.count, 10);
        assert_eq!(h.sum, 25.0);
    }

    #[test]
    fn exp2_with_min_and_multiplier() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2, 2, 4, Some(0.001), &[]));
        let h = layout.build(&slots(&[(0, 100), (3, 1), (5, 7)]));
        assert_eq!(h.buckets, [(0.004, 0), (0.008, 1), (0.016, 1)]);
        assert_eq!(h.count, 1, "slot 0 is below bucket_min and ignored");
        assert_eq!(h.sum, 0.007);
    }

    #[test]
    fn exp2zero() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2zero, 0, 3, None, &[]));
        assert_eq!(layout.sum_slot(), 4);
        let h = layout.build(&slots(&[(0, 5), (1, 1), (3, 2), (4, 9)]));
        assert_eq!(h.buckets, [(0.0, 5), (1.0, 6), (2.0, 6), (4.0, 8)]);
        assert_eq!(h.count, 8);
        assert_eq!(h.sum, 9.0);
    }

    #[test]
    fn linear_with_multiplier() {
        let layout = HistogramLayout::new(&config(BucketType::Linear, 1, 4, Some(0.5), &[]));
        assert_eq!(layout.sum_slot(), 5);
        let h = layout.build(&slots(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 10)]));
        assert_eq!(h.buckets, [(0.5, 1), (1.0, 2), (1.5, 3), (2.0, 4)]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum, 5.0);
    }

    #[test]
    fn fixed() {
        let layout = HistogramLayout::new(&config(BucketType::Fixed, 0, 0, None, &[10, 50, 100]));
        assert_eq!(layout.sum_slot(), 101);
        assert!(layout.is_bucket_slot(50));
        assert!(!layout.is_bucket_slot(51));
        assert!(!layout.is_bucket_slot(101));
        let h = layout.build(&slots(&[(10, 3), (50, 2), (100, 1), (101, 260), (20, 99)]));
        assert_eq!(h.buckets, [(10.0, 3), (50.0, 5), (100.0, 6)]);
        assert_eq!(h.count, 6, "slot 20 is not a bucket key");
        assert_eq!(h.sum, 260.0);
    }

    #[test]
    fn missing_slots_are_backfilled() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2, 0, 5, None, &[]));
        let h = layout.build(&slots(&[(1, 4), (4, 1)]));
        assert_eq!(
            h.buckets,
            [(1.0, 0), (2.0, 4), (4.0, 4), (8.0, 4), (16.0, 5), (32.0, 5)]
        );
        assert_eq!(h.count, 5);
        assert_eq!(h.sum, 0.0);

        let empty = layout.build(&HashMap::new());
        assert_eq!(empty.buckets.len(), 6);
        assert!(empty.buckets.iter().all(|&(_, c)| c == 0));
        assert_eq!(empty.count, 0);
    }

    #[test]
    fn slots_above_max_are_ignored() {
        let layout = HistogramLayout::new(&config(BucketType::Linear, 0, 2, None, &[]));
        assert!(layout.is_bucket_slot(0));
        assert!(layout.is_bucket_slot(2));
        assert!(!layout.is_bucket_slot(3));
        let h = layout.build(&slots(&[(0, 1), (2, 1), (3, 40), (7, 1000)]));
        assert_eq!(h.buckets, [(0.0, 1), (1.0, 1), (2.0, 2)]);
        assert_eq!(h.count, 2);
        assert_eq!(h.sum, 40.0, "slot 3 is the sum slot");
    }

    #[test]
    fn large_exp2_bounds_are_exact() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2, 60, 63, None, &[]));
        let h = layout.build(&HashMap::new());
        assert_eq!(h.buckets[0].0, (1u64 << 60) as f64);
        assert_eq!(h.buckets[3].0, (1u64 << 63) as f64);
        let top = HistogramLayout::new(&config(BucketType::Exp2, 1023, 1023, None, &[]));
        assert_eq!(top.build(&HashMap::new()).buckets[0].0, 2f64.powi(1023));
    }

    fn native(kind: BucketType, min: u64, max: u64, m: Option<f64>) -> Option<NativeLayout> {
        HistogramLayout::new(&config(kind, min, max, m, &[]))
            .native()
            .copied()
    }

    #[test]
    fn exp2_maps_onto_schema_0_with_its_first_bucket_as_the_zero_bucket() {
        let n = native(BucketType::Exp2, 0, 10, None).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (1.0, 1));
        assert!(n.classic);
        assert_eq!(n.boundary_factor(), 1.0);
        let n = native(BucketType::Exp2, 3, 10, None).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (8.0, 4));
        // A power of two shifts the indexes and moves no bound.
        let n = native(BucketType::Exp2, 0, 10, Some(1.0 / 1024.0)).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (1.0 / 1024.0, -9));
        assert_eq!(n.boundary_factor(), 1.0);
        let n = native(BucketType::Exp2, 2, 10, Some(8.0)).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (32.0, 6));
    }

    #[test]
    fn exp2zero_keeps_zero_alone_in_the_zero_bucket() {
        let n = native(BucketType::Exp2zero, 0, 10, None).unwrap();
        assert_eq!(n.zero_threshold, 2f64.powi(-128));
        assert_eq!(n.first_index, 0, "slot 1, values up to 2^0");
        let n = native(BucketType::Exp2zero, 2, 10, None).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (2.0, 2));
    }

    #[test]
    fn other_multipliers_move_every_bound_by_one_factor_within_sqrt_2() {
        // ns as seconds: 2^k * 1e-9 becomes 2^(k-30), 0.931 of it.
        let n = native(BucketType::Exp2, 0, 40, Some(1e-9)).unwrap();
        assert_eq!((n.zero_threshold, n.first_index), (2f64.powi(-30), -29));
        assert!(
            (n.boundary_factor() - 0.9313).abs() < 1e-4,
            "{}",
            n.boundary_factor()
        );
        for (m, factor) in [(1e-6, 0.9537), (1e-3, 0.9766), (0.1, 1.25), (3.0, 1.3333)] {
            let f = native(BucketType::Exp2, 0, 4, Some(m))
                .unwrap()
                .boundary_factor();
            assert!((f - factor).abs() < 1e-4, "{m}: {f}");
        }
        for i in 0..2000 {
            let m = 1e-12 * 1.0137f64.powi(i);
            let f = native(BucketType::Exp2, 0, 4, Some(m))
                .unwrap()
                .boundary_factor();
            assert!((0.5f64.sqrt()..=2f64.sqrt()).contains(&f), "{m}: {f}");
        }
    }

    #[test]
    fn linear_fixed_and_native_none_have_no_native_form() {
        assert_eq!(native(BucketType::Linear, 0, 10, None), None);
        assert_eq!(
            HistogramLayout::new(&config(BucketType::Fixed, 0, 0, None, &[1, 5])).native(),
            None
        );
        let mut c = config(BucketType::Exp2, 0, 10, None, &[]);
        c.native = NativeHistogram::Classic;
        assert_eq!(HistogramLayout::new(&c).native(), None);
        c.native = NativeHistogram::Only;
        assert!(!HistogramLayout::new(&c).native().unwrap().classic);
        // Bounds past the float range: classic only.
        assert_eq!(native(BucketType::Exp2, 0, 1023, Some(4.0)), None);
        assert!(native(BucketType::Exp2, 0, 1023, None).is_some());
    }

    #[test]
    fn built_histograms_carry_their_native_layout() {
        let layout = HistogramLayout::new(&config(BucketType::Exp2, 0, 3, None, &[]));
        assert_eq!(
            layout.build(&HashMap::new()).native.as_ref(),
            layout.native()
        );
    }

    #[test]
    fn counts_saturate() {
        let layout = HistogramLayout::new(&config(BucketType::Linear, 0, 1, None, &[]));
        let h = layout.build(&slots(&[(0, u64::MAX), (1, 5)]));
        assert_eq!(h.count, u64::MAX);
    }
}
