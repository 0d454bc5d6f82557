//! Adding up the values of map keys that decode to the same label set: a
//! `static_map` or `string` label can give many keys one series, and each
//! histogram series gathers the keys of all its buckets.

/// Values summed per label set of one source, in the order the sets were first
/// seen; one per metric and scrape, cleared between its sources.
#[derive(Debug)]
pub struct SetSums<T> {
    /// Label set id -> index in `in_order` plus one (0: not seen yet); ids are dense.
    index: Vec<u32>,
    /// (label set id, sum), in the order the sets were first seen.
    pub in_order: Vec<(u32, T)>,
}

impl<T> Default for SetSums<T> {
    fn default() -> Self {
        SetSums {
            index: Vec::new(),
            in_order: Vec::new(),
        }
    }
}

impl<T: Default> SetSums<T> {
    /// Forgets the sums, touching only the sets that had one.
    pub fn clear(&mut self) {
        for (id, _) in self.in_order.drain(..) {
            self.index[id as usize] = 0;
        }
    }

    /// The sum of label set `id`, started at its default the first time.
    pub fn get(&mut self, id: u32) -> &mut T {
        let id_at = id as usize;
        if id_at >= self.index.len() {
            self.index.resize(id_at + 1, 0);
        }
        if self.index[id_at] == 0 {
            self.in_order.push((id, T::default()));
            self.index[id_at] = self.in_order.len() as u32;
        }
        &mut self.in_order[self.index[id_at] as usize - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::SetSums;

    #[test]
    fn values_add_up_per_label_set_in_first_seen_order() {
        let mut sums = SetSums::<u64>::default();
        for (id, value) in [(7, 1), (2, 10), (7, 5), (0, 100), (2, 1)] {
            *sums.get(id) += value;
        }
        assert_eq!(sums.in_order, [(7, 6), (2, 11), (0, 100)]);
    }

    #[test]
    fn clear_forgets_every_sum_and_the_next_source_starts_afresh() {
        let mut sums = SetSums::<u64>::default();
        *sums.get(3) += 4;
        *sums.get(1) += 2;
        sums.clear();
        assert!(sums.in_order.is_empty());
        *sums.get(1) += 9;
        *sums.get(5) += 1;
        assert_eq!(sums.in_order, [(1, 9), (5, 1)]);
    }

    #[test]
    fn histogram_series_gather_their_buckets() {
        let mut series = SetSums::<std::collections::HashMap<u64, u64>>::default();
        for (id, slot, count) in [(0, 1, 2), (1, 1, 1), (0, 3, 4), (0, 1, 1)] {
            *series.get(id).entry(slot).or_default() += count;
        }
        let ids: Vec<u32> = series.in_order.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1]);
        assert_eq!(series.in_order[0].1[&1], 3);
        assert_eq!(series.in_order[0].1[&3], 4);
        assert_eq!(series.in_order[1].1[&1], 1);
    }
}
