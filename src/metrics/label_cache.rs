//! Decoded label sets, kept between scrapes.
//!
//! Keys whose labels are not all integers (`string`, `static_map`, `regexp`)
//! may share a label set, so their values are summed per set at scrape time.
//! Decoding every key and merging by label values on every scrape cost about
//! 1.2 µs a key; most keys of a counter map stay from one scrape to the next,
//! so the cache maps each raw key to the id of its label set, encoded once as
//! the text it is written as. A scrape then hashes the key, adds its value to
//! the set's sum and writes the text.
//!
//! A source's map (one per process, or a shared one) is read in the kernel's
//! hash order, which stays the same from one scrape to the next while keys are
//! only added: so each source also remembers the keys of its last scrape in read
//! order, and a key equal to the one at the same position last time takes its
//! answer from there, without a hash lookup (a random memory access per key,
//! about 150 ns at 100k keys).
//!
//! A protobuf scrape writes labels as `LabelPair` messages: the first one to
//! need a set's labels derives them from its text, and the set keeps them
//! beside the text for every later protobuf scrape (so a text-only scraper
//! pays nothing for them).
//!
//! Bounded: at most `capacity` keys are cached. Keys seen while it is full are
//! decoded for that scrape only (and still merged with cached sets); when it
//! is full at the end of a scrape, keys that scrape did not see are evicted.
//!
//! Compact: keys, texts and `LabelPair`s are laid end to end in a few large
//! buffers, and the two hash tables hold only 4-byte indices into them (about
//! 40 bytes a key with 8-byte keys and short labels, where a table of boxed
//! keys and shared texts took about 400 bytes: 54 MB when full).

use super::decoders::{DecodeError, LabelDecoders};
use super::encode::{render_labels, Format};
use std::hash::BuildHasher;

/// Keys cached per metric by default (2^17): about 40 bytes each with 8-byte
/// keys and two small labels, and as much again for the memo of each source
/// (its keys in read order), so about 10 MB when full.
pub const DEFAULT_CAPACITY: usize = 131_072;

/// Marks a key whose label set a decoder drops (`regexp` without a match).
const DROPPED: u32 = u32::MAX;

/// A cached key.
#[derive(Debug, Clone, Copy)]
struct CachedKey {
    /// Its label set's id, or [`DROPPED`].
    set: u32,
    /// The scrape generation that last looked it up.
    seen: u32,
    /// The histogram slot the key's last label decodes to (0 for counters).
    slot: u64,
}

/// Marks a set whose protobuf form is not derived yet.
const NOT_DERIVED: (u32, u32) = (u32::MAX, u32::MAX);

/// Label sets: the text each is written as, laid end to end, and its
/// protobuf `LabelPair`s once a protobuf scrape asked for them.
#[derive(Debug, Default)]
struct Sets {
    /// Set `id`'s text is `texts[ends[id - 1]..ends[id]]`.
    texts: Vec<u8>,
    ends: Vec<u32>,
    /// Derived `LabelPair`s, and each set's range of them ([`NOT_DERIVED`] if none).
    protobuf: Vec<u8>,
    protobuf_at: Vec<(u32, u32)>,
    /// Set ids by the hash of their text.
    ids: hashbrown::HashTable<u32>,
}

impl Sets {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn text(&self, id: u32) -> &[u8] {
        let id = id as usize;
        let start = if id == 0 {
            0
        } else {
            self.ends[id - 1] as usize
        };
        &self.texts[start..self.ends[id] as usize]
    }

    fn find(&self, hash: u64, text: &[u8]) -> Option<u32> {
        self.ids.find(hash, |&id| self.text(id) == text).copied()
    }

    /// Adds a set not held yet; its id.
    fn push(
        &mut self,
        hasher: &std::hash::RandomState,
        text: &[u8],
        protobuf: Option<&[u8]>,
    ) -> u32 {
        let id = self.ends.len() as u32;
        self.texts.extend_from_slice(text);
        self.ends.push(self.texts.len() as u32);
        self.protobuf_at.push(match protobuf {
            Some(pairs) => {
                let start = self.protobuf.len() as u32;
                self.protobuf.extend_from_slice(pairs);
                (start, self.protobuf.len() as u32)
            }
            None => NOT_DERIVED,
        });
        let (texts, ends) = (&self.texts, &self.ends);
        let text_of = |id: u32| {
            let id = id as usize;
            let start = if id == 0 { 0 } else { ends[id - 1] as usize };
            &texts[start..ends[id] as usize]
        };
        self.ids.insert_unique(hasher.hash_one(text), id, |&id| {
            hasher.hash_one(text_of(id))
        });
        id
    }

    fn protobuf(&self, id: u32) -> Option<&[u8]> {
        let (start, end) = self.protobuf_at[id as usize];
        (start != u32::MAX).then(|| &self.protobuf[start as usize..end as usize])
    }
}

/// What one key decodes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A label set held by the cache: its id, and the histogram slot.
    Set(u32, u64),
    /// A label set the cache does not hold (it is full): a hash of its text
    /// ([`set_hash`]) and the slot. The text itself is derived again from
    /// the key when it is written ([`decode_set`]), not kept.
    Uncached(u32, u64),
    /// A decoder dropped the key.
    Dropped,
}

/// Why a key could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A decoder failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A histogram's slot label did not decode to an integer.
    #[error("bucket slot {0:?} is not an integer")]
    Slot(String),
}

/// Marks a memo position whose key was not cached (decoded for one scrape, or
/// an error): looked up again next time.
const NOT_CACHED: u32 = u32::MAX - 1;

/// One source's keys of its last scrape, in read order, and what each resolved to.
#[derive(Debug, Default)]
struct Memo {
    key_size: usize,
    keys: Vec<u8>,
    sets: Vec<u32>,
    /// Histogram slots, parallel to `sets` (empty while every slot is 0, as
    /// for counters).
    slots: Vec<u64>,
}

impl Memo {
    /// What the key at `index` resolved to last scrape, if `key` is that key.
    fn get(&self, index: usize, key: &[u8]) -> Option<(u32, u64)> {
        let at = index * self.key_size;
        let set = *self.sets.get(index)?;
        (key.len() == self.key_size
            && set != NOT_CACHED
            && self.keys.get(at..at + self.key_size) == Some(key))
        .then(|| (set, self.slots.get(index).copied().unwrap_or(0)))
    }

    fn push(&mut self, key: &[u8], (set, slot): (u32, u64)) {
        let set = if key.len() == self.key_size {
            self.keys.extend_from_slice(key);
            set
        } else {
            // Keys of one map all have one size; keep positions aligned regardless.
            self.keys.resize(self.keys.len() + self.key_size, 0);
            NOT_CACHED
        };
        if slot != 0 || !self.slots.is_empty() {
            // The first slot that is not 0: the ones before it were.
            self.slots.resize(self.sets.len(), 0);
            self.slots.push(slot);
        }
        self.sets.push(set);
    }
}

/// Raw key -> label set, for one metric.
#[derive(Debug)]
pub struct LabelCache {
    capacity: usize,
    hasher: std::hash::RandomState,
    /// Cached keys laid end to end, `key_len` bytes each (the first key
    /// cached sets it: a metric's keys all have one size), and what each
    /// resolves to, by index.
    key_bytes: Vec<u8>,
    key_len: usize,
    key_info: Vec<CachedKey>,
    /// Key indices by the hash of their bytes.
    key_ids: hashbrown::HashTable<u32>,
    sets: Sets,
    generation: u32,
    /// Decoded values of the key at hand, reused.
    values: Vec<String>,
    /// Their text, reused.
    text: Vec<u8>,
    /// Per source position: its last scrape's keys.
    memos: Vec<Memo>,
    /// The memo being written for the source at hand, and that source's position.
    writing: Option<(usize, Memo)>,
    /// Sources read this scrape (their memos are current).
    sources: usize,
}

impl LabelCache {
    /// An empty cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> LabelCache {
        LabelCache {
            capacity,
            hasher: std::hash::RandomState::new(),
            key_bytes: Vec::new(),
            key_len: 0,
            key_info: Vec::new(),
            key_ids: hashbrown::HashTable::new(),
            sets: Sets::default(),
            generation: 0,
            values: Vec::new(),
            text: Vec::new(),
            memos: Vec::new(),
            writing: None,
            sources: 0,
        }
    }

    /// Starts reading source number `position` of this scrape (sources come in
    /// a stable order) with `decoders`.
    pub fn begin_source(&mut self, position: usize, decoders: &LabelDecoders) {
        if self.capacity == 0 {
            self.writing = None;
            return;
        }
        let mut memo = Memo {
            key_size: decoders.key_size(),
            ..Memo::default()
        };
        if let Some(old) = self.memos.get(position) {
            memo.keys.reserve_exact(old.keys.len());
            memo.sets.reserve_exact(old.sets.len());
            memo.slots.reserve_exact(old.slots.len());
        }
        self.writing = Some((position, memo));
    }

    /// Ends the source begun last: its keys become its memo for the next scrape.
    pub fn end_source(&mut self) {
        if let Some((position, memo)) = self.writing.take() {
            if self.memos.len() <= position {
                self.memos.resize_with(position + 1, Memo::default);
            }
            self.memos[position] = memo;
            self.sources = self.sources.max(position + 1);
        }
    }

    /// The label set of the key at `index` in the current source's read order:
    /// from the source's memo when that key is unchanged, otherwise as
    /// [`resolve`](Self::resolve) finds it.
    pub fn resolve_at(
        &mut self,
        index: usize,
        key: &[u8],
        decoders: &LabelDecoders,
        histogram: bool,
        process: Option<i32>,
    ) -> Result<Resolved, ResolveError> {
        let key = key.get(..decoders.key_size()).unwrap_or(key);
        let memoized = self
            .writing
            .as_ref()
            .and_then(|(position, _)| self.memos.get(*position))
            .and_then(|memo| memo.get(index, key));
        let resolved = match memoized {
            Some((DROPPED, _)) => Ok(Resolved::Dropped),
            Some((set, slot)) => Ok(Resolved::Set(set, slot)),
            None => self.resolve_in(key, decoders, histogram, process),
        };
        // Set ids hold until the next eviction (which drops every memo); a
        // dropped key stays dropped; the rest is looked up again.
        let remembered = match &resolved {
            Ok(Resolved::Set(set, slot)) => (*set, *slot),
            Ok(Resolved::Dropped) => (DROPPED, 0),
            _ => (NOT_CACHED, 0),
        };
        // Positions past the bound are not remembered: the memo is bounded too.
        if let Some((_, memo)) = &mut self.writing {
            if memo.sets.len() < self.capacity {
                memo.push(key, remembered);
            }
        }
        resolved
    }

    /// The text of label set `id`.
    pub fn text(&self, id: u32) -> &[u8] {
        self.sets.text(id)
    }

    /// Label set `id` as `format` writes leading labels (see
    /// [`Format::labels_from_text`]), derived once per set and kept.
    pub fn rendered(&mut self, id: u32, format: Format) -> &[u8] {
        if format == Format::Protobuf && self.sets.protobuf(id).is_none() {
            let derived = format.labels_from_text(self.sets.text(id)).into_owned();
            let start = self.sets.protobuf.len() as u32;
            self.sets.protobuf.extend_from_slice(&derived);
            self.sets.protobuf_at[id as usize] = (start, self.sets.protobuf.len() as u32);
        }
        match format {
            Format::Text | Format::OpenMetrics => self.sets.text(id),
            Format::Protobuf => self.sets.protobuf(id).unwrap_or_default(),
        }
    }

    /// Number of label sets (ids are `0..len`).
    pub fn sets(&self) -> usize {
        self.sets.len()
    }

    /// Number of keys cached.
    pub fn keys(&self) -> usize {
        self.key_info.len()
    }

    /// The label set of `key`: from the cache, or decoded with `decoders` (and
    /// cached while there is room). With `histogram`, the last label is the
    /// bucket slot, returned apart from the set.
    pub fn resolve(
        &mut self,
        key: &[u8],
        decoders: &LabelDecoders,
        histogram: bool,
    ) -> Result<Resolved, ResolveError> {
        self.resolve_in(key, decoders, histogram, None)
    }

    /// [`resolve`](Self::resolve) for a key read from the maps of `process`.
    /// When a decoder needs the process (`usym`), the key is cached with the
    /// pid in front: one address names different functions in two processes.
    pub fn resolve_in(
        &mut self,
        key: &[u8],
        decoders: &LabelDecoders,
        histogram: bool,
        process: Option<i32>,
    ) -> Result<Resolved, ResolveError> {
        // Bytes past the labels are padding the decoders never read.
        let key = key.get(..decoders.key_size()).unwrap_or(key);
        if decoders.needs_process() {
            let mut cache_key = process.unwrap_or(-1).to_ne_bytes().to_vec();
            cache_key.extend_from_slice(key);
            return self.resolve_keyed(&cache_key, key, decoders, histogram, process);
        }
        self.resolve_keyed(key, key, decoders, histogram, process)
    }

    /// The index of cached key `key`, and its hash.
    fn find_key(&self, key: &[u8]) -> (Option<usize>, u64) {
        let hash = self.hasher.hash_one(key);
        if key.len() != self.key_len {
            return (None, hash);
        }
        let (bytes, len) = (&self.key_bytes, self.key_len);
        let found = self.key_ids.find(hash, |&i| {
            &bytes[i as usize * len..(i as usize + 1) * len] == key
        });
        (found.map(|&i| i as usize), hash)
    }

    /// Resolves `key`, cached under `cache_key`.
    fn resolve_keyed(
        &mut self,
        cache_key: &[u8],
        key: &[u8],
        decoders: &LabelDecoders,
        histogram: bool,
        process: Option<i32>,
    ) -> Result<Resolved, ResolveError> {
        let (found, hash) = self.find_key(cache_key);
        if let Some(i) = found {
            let cached = &mut self.key_info[i];
            cached.seen = self.generation;
            return Ok(match cached.set {
                DROPPED => Resolved::Dropped,
                set => Resolved::Set(set, cached.slot),
            });
        }
        let mut values = std::mem::take(&mut self.values);
        let decoded = decoders.decode_key_in(key, process, &mut values);
        let resolved = self.decoded(cache_key, hash, decoded, &mut values, decoders, histogram);
        self.values = values;
        resolved
    }

    /// Files a freshly decoded key (`hash` is its cache key's).
    fn decoded(
        &mut self,
        key: &[u8],
        hash: u64,
        decoded: Result<bool, DecodeError>,
        values: &mut Vec<String>,
        decoders: &LabelDecoders,
        histogram: bool,
    ) -> Result<Resolved, ResolveError> {
        let room = self.key_info.len() < self.capacity
            && (self.key_len == key.len() || self.key_info.is_empty());
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let outcome = set_text(decoded, values, decoders, histogram, &mut text);
        let resolved = match outcome {
            Err(e) => Err(e),
            Ok(None) => {
                if room {
                    self.insert(key, hash, DROPPED, 0);
                }
                Ok(Resolved::Dropped)
            }
            Ok(Some(slot)) => {
                let text_hash = self.hasher.hash_one(text.as_slice());
                match self.sets.find(text_hash, &text) {
                    Some(set) => {
                        if room {
                            self.insert(key, hash, set, slot);
                        }
                        Ok(Resolved::Set(set, slot))
                    }
                    None if !room => Ok(Resolved::Uncached(set_hash(&text), slot)),
                    None => {
                        let set = self.sets.push(&self.hasher, &text, None);
                        self.insert(key, hash, set, slot);
                        Ok(Resolved::Set(set, slot))
                    }
                }
            }
        };
        self.text = text;
        resolved
    }

    fn insert(&mut self, key: &[u8], hash: u64, set: u32, slot: u64) {
        if self.key_info.is_empty() {
            self.key_len = key.len();
        }
        let index = self.key_info.len() as u32;
        self.key_bytes.extend_from_slice(key);
        self.key_info.push(CachedKey {
            set,
            seen: self.generation,
            slot,
        });
        let (bytes, len, hasher) = (&self.key_bytes, self.key_len, &self.hasher);
        self.key_ids.insert_unique(hash, index, |&i| {
            hasher.hash_one(&bytes[i as usize * len..(i as usize + 1) * len])
        });
    }

    /// Ends a scrape. A full cache evicts the keys this scrape did not see, and
    /// the label sets no key uses any more; ids of the sets kept change.
    pub fn end_scrape(&mut self) {
        let current = self.generation;
        self.generation = self.generation.wrapping_add(1);
        self.memos.truncate(std::mem::take(&mut self.sources));
        if self.key_info.len() < self.capacity {
            return;
        }
        // Keys answered from a memo were seen too.
        for memo in &self.memos {
            for key in memo.keys.chunks_exact(memo.key_size.max(1)) {
                if let (Some(i), _) = self.find_key(key) {
                    self.key_info[i].seen = current;
                }
            }
        }
        if self.key_info.iter().all(|k| k.seen == current) {
            return;
        }
        // Set ids change below: no memo may answer with an old one.
        self.memos.clear();
        let old_sets = std::mem::take(&mut self.sets);
        let old_keys = std::mem::take(&mut self.key_bytes);
        let old_info = std::mem::take(&mut self.key_info);
        self.key_ids = hashbrown::HashTable::new();
        let mut renumbered = vec![DROPPED; old_sets.len()];
        let len = self.key_len;
        for (i, cached) in old_info.iter().enumerate() {
            if cached.seen != current {
                continue;
            }
            let set = match cached.set {
                DROPPED => DROPPED,
                old => {
                    if renumbered[old as usize] == DROPPED {
                        renumbered[old as usize] = self.sets.push(
                            &self.hasher,
                            old_sets.text(old),
                            old_sets.protobuf(old),
                        );
                    }
                    renumbered[old as usize]
                }
            };
            let key = &old_keys[i * len..(i + 1) * len];
            let hash = self.hasher.hash_one(key);
            self.insert(key, hash, set, cached.slot);
            if let Some(last) = self.key_info.last_mut() {
                last.seen = current;
            }
        }
    }
}

/// The text of a decoded key's label set into `text` (after what it holds),
/// and its histogram slot (0 for counters); None when a decoder dropped it.
fn set_text(
    decoded: Result<bool, DecodeError>,
    values: &mut Vec<String>,
    decoders: &LabelDecoders,
    histogram: bool,
    text: &mut Vec<u8>,
) -> Result<Option<u64>, ResolveError> {
    if !decoded? {
        return Ok(None);
    }
    let slot = if histogram {
        let text = values.pop().unwrap_or_default();
        text.parse::<u64>().map_err(|_| ResolveError::Slot(text))?
    } else {
        0
    };
    render_labels(text, decoders.names(), values);
    Ok(Some(slot))
}

/// Decodes `key` (read from the maps of `process`) into the text of its label
/// set, appended to `text`, as the cache renders it: the same bytes, so that
/// a key [`Resolved::Uncached`] gets its text back when it is written. Returns
/// its histogram slot, or None when a decoder drops it. `values` is scratch.
pub fn decode_set(
    key: &[u8],
    decoders: &LabelDecoders,
    histogram: bool,
    process: Option<i32>,
    values: &mut Vec<String>,
    text: &mut Vec<u8>,
) -> Result<Option<u64>, ResolveError> {
    let key = key.get(..decoders.key_size()).unwrap_or(key);
    let decoded = decoders.decode_key_in(key, process, values);
    set_text(decoded, values, decoders, histogram, text)
}

/// The hash [`Resolved::Uncached`] carries: equal texts hash equal; unequal
/// ones may too, so sums grouped by it are told apart by their texts.
pub fn set_hash(text: &[u8]) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let h = hasher.finish();
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecoderConfig, Label};
    use std::collections::BTreeMap;

    fn label(name: &str, size: usize, decoders: Vec<DecoderConfig>) -> Label {
        Label {
            name: name.into(),
            size,
            padding: 0,
            decoders,
        }
    }

    fn decoder(name: &str) -> DecoderConfig {
        DecoderConfig {
            name: name.into(),
            static_map: BTreeMap::new(),
            allow_unknown: false,
            regexps: Vec::new(),
        }
    }

    /// `op` (1 byte, static_map: 1 -> read, 2 -> write, else unknown:N) and
    /// `slot` (1 byte uint), the last for histograms.
    fn decoders() -> LabelDecoders {
        let mut map = decoder("static_map");
        map.static_map =
            BTreeMap::from([("1".into(), "read".into()), ("2".into(), "write".into())]);
        let mut filter = decoder("regexp");
        filter.regexps = vec!["^[^9]".into()];
        LabelDecoders::new(&[
            label("op", 1, vec![decoder("uint"), filter, map]),
            label("slot", 1, vec![decoder("uint")]),
        ])
        .unwrap()
    }

    fn text(cache: &LabelCache, resolved: &Resolved) -> String {
        match resolved {
            Resolved::Set(id, _) => String::from_utf8(cache.text(*id).to_vec()).unwrap(),
            Resolved::Uncached(..) => panic!("not cached: no text"),
            Resolved::Dropped => "dropped".into(),
        }
    }

    #[test]
    fn keys_with_one_label_set_share_its_id_and_a_histogram_slot_is_kept_apart() {
        let d = decoders();
        let mut cache = LabelCache::new(10);
        let a = cache.resolve(&[1, 3], &d, true).unwrap();
        let b = cache.resolve(&[1, 4], &d, true).unwrap();
        assert_eq!((a, b), (Resolved::Set(0, 3), Resolved::Set(0, 4)));
        assert_eq!(text(&cache, &Resolved::Set(0, 0)), r#"op="read""#);
        // As a counter, the slot byte is a label of its own.
        let mut counters = LabelCache::new(10);
        let c = counters.resolve(&[2, 5], &d, false).unwrap();
        assert_eq!(text(&counters, &c), r#"op="write",slot="5""#);
        let dropped = counters.resolve(&[9, 5], &d, false).unwrap();
        assert_eq!(dropped, Resolved::Dropped);
        assert_eq!(counters.keys(), 2);
        // Cached answers are the same as fresh ones.
        assert_eq!(counters.resolve(&[2, 5], &d, false).unwrap(), c);
        assert_eq!(
            counters.resolve(&[9, 5], &d, false).unwrap(),
            Resolved::Dropped
        );
    }

    #[test]
    fn errors_are_not_cached_and_trailing_padding_is_ignored() {
        let d = decoders();
        let mut cache = LabelCache::new(10);
        assert!(matches!(
            cache.resolve(&[1], &d, false),
            Err(ResolveError::Decode(DecodeError::KeyTooShort { .. }))
        ));
        assert_eq!(cache.keys(), 0);
        let padded = cache.resolve(&[1, 3, 0xaa, 0xbb], &d, false).unwrap();
        let other_padding = cache.resolve(&[1, 3, 0xcc, 0xdd], &d, false).unwrap();
        assert_eq!(padded, other_padding);
        assert_eq!(cache.keys(), 1);
    }

    #[test]
    fn a_full_cache_decodes_new_keys_for_the_scrape_and_evicts_keys_gone_from_the_map() {
        let d = decoders();
        let mut cache = LabelCache::new(2);
        cache.resolve(&[1, 1], &d, false).unwrap();
        cache.resolve(&[2, 1], &d, false).unwrap();
        // Full: a new label set is decoded but not kept...
        let extra = cache.resolve(&[3, 1], &d, false).unwrap();
        assert_eq!(
            extra,
            Resolved::Uncached(set_hash(br#"op="unknown:3",slot="1""#), 0)
        );
        // Its text is derived again from the key when it is written.
        let (mut values, mut written) = (Vec::new(), Vec::new());
        let slot = decode_set(&[3, 1, 0xff], &d, false, None, &mut values, &mut written);
        assert_eq!(slot.unwrap(), Some(0));
        assert_eq!(written, br#"op="unknown:3",slot="1""#);
        let mut dropped = Vec::new();
        assert_eq!(
            decode_set(&[9, 1], &d, true, None, &mut values, &mut dropped).unwrap(),
            None
        );
        // ...and a new key with a cached label set gets that set's id, so that
        // one series is never written twice.
        let mut histograms = LabelCache::new(1);
        histograms.resolve(&[1, 1], &d, true).unwrap();
        assert_eq!(
            histograms.resolve(&[1, 2], &d, true).unwrap(),
            Resolved::Set(0, 2)
        );
        assert_eq!(histograms.keys(), 1);
        cache.end_scrape();
        // The next scrape sees only [2, 1] and [3, 1]: [1, 1] is evicted at its end.
        cache.resolve(&[2, 1], &d, false).unwrap();
        cache.resolve(&[3, 1], &d, false).unwrap();
        cache.end_scrape();
        assert_eq!(cache.keys(), 1);
        assert_eq!(cache.sets(), 1);
        let kept = cache.resolve(&[2, 1], &d, false).unwrap();
        assert_eq!(kept, Resolved::Set(0, 0));
        assert_eq!(text(&cache, &kept), r#"op="write",slot="1""#);
        let now_cached = cache.resolve(&[3, 1], &d, false).unwrap();
        assert_eq!(now_cached, Resolved::Set(1, 0));
    }

    #[test]
    fn a_source_answers_unchanged_keys_from_its_memo_and_they_count_as_seen() {
        let d = decoders();
        let mut cache = LabelCache::new(2);
        let scrape = |cache: &mut LabelCache, keys: &[[u8; 2]]| {
            cache.begin_source(0, &d);
            let out: Vec<Resolved> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| cache.resolve_at(i, k, &d, false, None).unwrap())
                .collect();
            cache.end_source();
            cache.end_scrape();
            out
        };
        assert_eq!(
            scrape(&mut cache, &[[1, 1], [2, 1]]),
            [Resolved::Set(0, 0), Resolved::Set(1, 0)]
        );
        // Full, and every key answered from the memo: none is evicted.
        assert_eq!(
            scrape(&mut cache, &[[1, 1], [2, 1]]),
            [Resolved::Set(0, 0), Resolved::Set(1, 0)]
        );
        assert_eq!(cache.keys(), 2);
        // The memo answers without the hash table: take the table away.
        let table = std::mem::take(&mut cache.key_ids);
        cache.begin_source(0, &d);
        assert_eq!(
            cache.resolve_at(0, &[1, 1], &d, false, None).unwrap(),
            Resolved::Set(0, 0)
        );
        cache.key_ids = table;
        // A key that moved is looked up, not taken from its old position.
        assert_eq!(
            cache.resolve_at(1, &[1, 1], &d, false, None).unwrap(),
            Resolved::Set(0, 0)
        );
        assert_eq!(cache.keys(), 2);
        cache.end_source();
        cache.end_scrape();
        // The map no longer holds [2, 1]: evicted, the sets renumbered (op="read"
        // stays 0 here) and every memo dropped.
        assert_eq!(cache.keys(), 1);
        assert_eq!(cache.sets(), 1);
        let next = scrape(&mut cache, &[[1, 1], [3, 1], [4, 1]]);
        assert_eq!(
            next,
            [
                Resolved::Set(0, 0),
                Resolved::Set(1, 0),
                Resolved::Uncached(set_hash(br#"op="unknown:4",slot="1""#), 0)
            ]
        );
        assert_eq!(cache.text(1), br#"op="unknown:3",slot="1""#);
    }

    #[test]
    fn protobuf_labels_are_derived_once_per_set_and_survive_renumbering() {
        let d = decoders();
        let mut cache = LabelCache::new(2);
        cache.resolve(&[1, 1], &d, false).unwrap();
        cache.resolve(&[2, 1], &d, false).unwrap();
        assert!(cache.sets.protobuf.is_empty(), "text scrapes pay nothing");
        assert_eq!(cache.rendered(1, Format::Text), br#"op="write",slot="1""#);
        let mut want = Vec::new();
        crate::metrics::protobuf::label_pair(&mut want, "op", "write");
        crate::metrics::protobuf::label_pair(&mut want, "slot", "1");
        assert_eq!(cache.rendered(1, Format::Protobuf), want);
        let derived = cache.sets.protobuf.len();
        cache.rendered(1, Format::Protobuf);
        assert_eq!(cache.sets.protobuf.len(), derived, "derived once");
        cache.end_scrape();
        // Only [2, 1] seen: [1, 1] is evicted and op="write" becomes set 0, its
        // protobuf form with it.
        cache.resolve(&[2, 1], &d, false).unwrap();
        cache.resolve(&[3, 1], &d, false).unwrap();
        cache.end_scrape();
        assert_eq!(cache.text(0), br#"op="write",slot="1""#);
        assert_eq!(
            cache.sets.protobuf(0),
            Some(&want[..]),
            "kept, not derived again"
        );
    }

    #[test]
    fn a_cache_of_no_keys_decodes_every_time() {
        let d = decoders();
        let mut cache = LabelCache::new(0);
        for _ in 0..2 {
            cache.begin_source(0, &d);
            let resolved = cache.resolve_at(0, &[1, 1], &d, false, None).unwrap();
            assert_eq!(
                resolved,
                Resolved::Uncached(set_hash(br#"op="read",slot="1""#), 0)
            );
            cache.end_source();
            cache.end_scrape();
        }
        assert_eq!((cache.keys(), cache.sets(), cache.memos.len()), (0, 0, 0));
    }

    #[test]
    fn histogram_slots_come_back_from_the_memo() {
        // The slot alone is the label: every key is set 0, told apart by slot.
        let d = LabelDecoders::new(&[label("bucket", 8, vec![decoder("uint")])]).unwrap();
        let mut cache = LabelCache::new(100);
        let slots = [3u64, 0, 10, 1, 7, 2];
        for round in 0..3 {
            cache.begin_source(0, &d);
            let got: Vec<Resolved> = slots
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    cache
                        .resolve_at(i, &s.to_ne_bytes(), &d, true, None)
                        .unwrap()
                })
                .collect();
            cache.end_source();
            cache.end_scrape();
            let want: Vec<Resolved> = slots.iter().map(|&s| Resolved::Set(0, s)).collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
