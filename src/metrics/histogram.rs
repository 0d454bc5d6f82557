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

use crate::config::{BucketType, Histogram};
use std::collections::HashMap;

/// Slot -> bound mapping of one configured histogram, computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramLayout {
    /// (slot key, `le` bound), in export order.
    buckets: Vec<(u64, f64)>,
    /// First and last slot for range types, to answer `is_bucket_slot` without a search.
    range: Option<(u64, u64)>,
    sum_slot: u64,
    multiplier: f64,
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
        }
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

    #[test]
    fn counts_saturate() {
        let layout = HistogramLayout::new(&config(BucketType::Linear, 0, 1, None, &[]));
        let h = layout.build(&slots(&[(0, u64::MAX), (1, 5)]));
        assert_eq!(h.count, u64::MAX);
    }
}
