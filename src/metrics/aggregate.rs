//! Adding up the values of map keys that decode to the same label set: a
//! `static_map` or `string` label can give many keys one series, and each
//! histogram series gathers the keys of all its buckets.
//!
//! Sets the label cache holds are summed by their id ([`SetSums`]). Keys past
//! the cache's bound are [`Spill`]ed: each keeps its raw key, its value and a
//! 32-bit hash of its set's text, 24 bytes with an 8-byte key (where keeping
//! the text of each of a million sets took about 100 bytes a set, 245 MB in
//! all for a 1M-series scrape); sorting by hash brings each set's keys
//! together, and the text is decoded again from the key when it is written,
//! so that keys whose hashes collide are told apart by their texts.

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

/// The keys of one source whose label sets the cache does not hold, summed
/// per set once all are in (see the module doc).
#[derive(Debug, Default)]
pub struct Spill {
    /// (hash << 32 | index), sorted by [`Spill::groups`].
    order: Vec<u64>,
    /// Key bytes, `key_size` each, by index.
    keys: Vec<u8>,
    key_size: usize,
    /// Values by index.
    values: Vec<u64>,
    /// Histogram slots by index (empty for counters).
    slots: Vec<u64>,
}

impl Spill {
    /// Adds a key of `hash` (of its set's text), its value and, for a
    /// histogram, its bucket slot. Keys are cut or padded to the size of the first.
    pub fn push(&mut self, hash: u32, key: &[u8], value: u64, slot: Option<u64>) {
        if self.values.is_empty() {
            self.key_size = key.len();
        }
        let index = self.values.len() as u64;
        self.order.push(u64::from(hash) << 32 | index);
        let at = self.keys.len();
        self.keys.resize(at + self.key_size, 0);
        let n = key.len().min(self.key_size);
        self.keys[at..at + n].copy_from_slice(&key[..n]);
        self.values.push(value);
        if let Some(slot) = slot {
            self.slots.push(slot);
        }
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The keys grouped by hash, each group in push order: calls `group`
    /// with the keys of each hash (a set's keys, or more than one set's when
    /// hashes collide) as (key, value, slot) triples. Empties the spill.
    pub fn groups(&mut self, mut group: impl FnMut(&[SpilledKey<'_>])) {
        self.order.sort_unstable();
        let mut members = Vec::new();
        let mut i = 0;
        while i < self.order.len() {
            let hash = self.order[i] >> 32;
            members.clear();
            while i < self.order.len() && self.order[i] >> 32 == hash {
                let index = (self.order[i] & u64::from(u32::MAX)) as usize;
                members.push(SpilledKey {
                    key: &self.keys[index * self.key_size..(index + 1) * self.key_size],
                    value: self.values[index],
                    slot: self.slots.get(index).copied().unwrap_or(0),
                });
                i += 1;
            }
            group(&members);
        }
        self.clear();
    }

    /// Forgets every key (keeping the buffers for the next source).
    pub fn clear(&mut self) {
        self.order.clear();
        self.keys.clear();
        self.values.clear();
        self.slots.clear();
    }
}

/// One key of a [`Spill`] group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpilledKey<'a> {
    /// The raw key.
    pub key: &'a [u8],
    /// Its value.
    pub value: u64,
    /// Its histogram slot (0 for counters).
    pub slot: u64,
}

#[cfg(test)]
mod tests {
    use super::{SetSums, Spill, SpilledKey};

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

    #[test]
    fn spilled_keys_come_out_grouped_by_hash_in_push_order() {
        let mut spill = Spill::default();
        for (hash, key, value) in [(7, 1u8, 10), (3, 2, 20), (7, 3, 30), (u32::MAX, 4, 40)] {
            spill.push(hash, &[key, 0], value, None);
        }
        let mut groups = Vec::new();
        spill.groups(|members| {
            groups.push(
                members
                    .iter()
                    .map(|m: &SpilledKey| (m.key[0], m.value))
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(
            groups,
            [vec![(2, 20)], vec![(1, 10), (3, 30)], vec![(4, 40)]]
        );
        assert!(spill.is_empty(), "emptied");
        spill.push(1, &[9, 9], 1, Some(5));
        spill.groups(|members| assert_eq!(members[0].slot, 5));
    }
}
