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

use super::decoders::{DecodeError, LabelDecoders};
use super::encode::{render_labels, Format};
use std::collections::HashMap;
use std::sync::Arc;

/// Keys cached per metric by default (2^17): about 250 bytes each with two
/// small labels (measured: 25 MB of RSS for 100k keys), so at most about 33 MB.
pub const DEFAULT_CAPACITY: usize = 131_072;

/// Longest key kept inline in the hash table: comparing it then touches no
/// other memory (most keys are a few integers).
const INLINE_KEY: usize = 30;

/// A raw map key as the cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawKey {
    /// Up to [`INLINE_KEY`] bytes, and how many are used.
    Inline([u8; INLINE_KEY], u8),
    /// A longer key.
    Heap(Box<[u8]>),
}

impl RawKey {
    fn new(bytes: &[u8]) -> RawKey {
        if bytes.len() <= INLINE_KEY {
            let mut inline = [0; INLINE_KEY];
            inline[..bytes.len()].copy_from_slice(bytes);
            RawKey::Inline(inline, bytes.len() as u8)
        } else {
            RawKey::Heap(bytes.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            RawKey::Inline(bytes, len) => &bytes[..*len as usize],
            RawKey::Heap(bytes) => bytes,
        }
    }
}

// Hashed as its bytes, so that the table can be searched with a `&[u8]`.
impl std::hash::Hash for RawKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for RawKey {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// Marks a key whose label set a decoder drops (`regexp` without a match).
const DROPPED: u32 = u32::MAX;

/// A cached key.
#[derive(Debug, Clone, Copy)]
struct CachedKey {
    /// Its label set's id, or [`DROPPED`].
    set: u32,
    /// The histogram slot the key's last label decodes to (0 for counters).
    slot: u64,
    /// The scrape generation that last looked it up.
    seen: u32,
}

/// A label set, as the text written between the braces.
pub type LabelText = Arc<[u8]>;

/// A cached label set: its text, and its protobuf `LabelPair`s once a
/// protobuf scrape asked for them.
#[derive(Debug, Clone)]
struct Set {
    text: LabelText,
    protobuf: Option<Arc<[u8]>>,
}

/// What one key decodes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A label set held by the cache: its id, and the histogram slot.
    Set(u32, u64),
    /// A label set decoded for this scrape only (the cache is full): its text and slot.
    Uncached(Vec<u8>, u64),
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
    resolved: Vec<(u32, u64)>,
}

impl Memo {
    /// What the key at `index` resolved to last scrape, if `key` is that key.
    fn get(&self, index: usize, key: &[u8]) -> Option<(u32, u64)> {
        let at = index * self.key_size;
        let resolved = *self.resolved.get(index)?;
        (key.len() == self.key_size
            && resolved.0 != NOT_CACHED
            && self.keys.get(at..at + self.key_size) == Some(key))
        .then_some(resolved)
    }

    fn push(&mut self, key: &[u8], resolved: (u32, u64)) {
        if key.len() == self.key_size {
            self.keys.extend_from_slice(key);
            self.resolved.push(resolved);
        } else {
            // Keys of one map all have one size; keep positions aligned regardless.
            self.keys.resize(self.keys.len() + self.key_size, 0);
            self.resolved.push((NOT_CACHED, 0));
        }
    }
}

/// Raw key -> label set, for one metric.
#[derive(Debug)]
pub struct LabelCache {
    capacity: usize,
    keys: HashMap<RawKey, CachedKey>,
    sets: Vec<Set>,
    set_ids: HashMap<LabelText, u32>,
    generation: u32,
    /// Decoded values of the key at hand, reused.
    values: Vec<String>,
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
            keys: HashMap::new(),
            sets: Vec::new(),
            set_ids: HashMap::new(),
            generation: 0,
            values: Vec::new(),
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
            memo.keys.reserve(old.keys.len());
            memo.resolved.reserve(old.resolved.len());
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
            if memo.resolved.len() < self.capacity {
                memo.push(key, remembered);
            }
        }
        resolved
    }

    /// The text of label set `id`.
    pub fn text(&self, id: u32) -> &[u8] {
        &self.sets[id as usize].text
    }

    /// Label set `id` as `format` writes leading labels (see
    /// [`Format::labels_from_text`]), derived once per set and kept.
    pub fn rendered(&mut self, id: u32, format: Format) -> &[u8] {
        let set = &mut self.sets[id as usize];
        match format {
            Format::Text | Format::OpenMetrics => &set.text,
            Format::Protobuf => set
                .protobuf
                .get_or_insert_with(|| format.labels_from_text(&set.text).into()),
        }
    }

    /// Number of label sets (ids are `0..len`).
    pub fn sets(&self) -> usize {
        self.sets.len()
    }

    /// Number of keys cached.
    pub fn keys(&self) -> usize {
        self.keys.len()
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

    /// Resolves `key`, cached under `cache_key`.
    fn resolve_keyed(
        &mut self,
        cache_key: &[u8],
        key: &[u8],
        decoders: &LabelDecoders,
        histogram: bool,
        process: Option<i32>,
    ) -> Result<Resolved, ResolveError> {
        if let Some(cached) = self.keys.get_mut(cache_key) {
            cached.seen = self.generation;
            return Ok(match cached.set {
                DROPPED => Resolved::Dropped,
                set => Resolved::Set(set, cached.slot),
            });
        }
        let mut values = std::mem::take(&mut self.values);
        let decoded = decoders.decode_key_in(key, process, &mut values);
        let resolved = self.decoded(cache_key, decoded, &mut values, decoders, histogram);
        self.values = values;
        resolved
    }

    /// Files a freshly decoded key.
    fn decoded(
        &mut self,
        key: &[u8],
        decoded: Result<bool, DecodeError>,
        values: &mut Vec<String>,
        decoders: &LabelDecoders,
        histogram: bool,
    ) -> Result<Resolved, ResolveError> {
        let room = self.keys.len() < self.capacity;
        if !decoded? {
            if room {
                self.insert(key, DROPPED, 0);
            }
            return Ok(Resolved::Dropped);
        }
        let slot = if histogram {
            let text = values.pop().unwrap_or_default();
            text.parse::<u64>().map_err(|_| ResolveError::Slot(text))?
        } else {
            0
        };
        let mut text = Vec::new();
        render_labels(&mut text, decoders.names(), values);
        if let Some(&set) = self.set_ids.get(text.as_slice()) {
            if room {
                self.insert(key, set, slot);
            }
            return Ok(Resolved::Set(set, slot));
        }
        if !room {
            return Ok(Resolved::Uncached(text, slot));
        }
        let set = self.sets.len() as u32;
        let text: LabelText = text.into();
        self.sets.push(Set {
            text: text.clone(),
            protobuf: None,
        });
        self.set_ids.insert(text, set);
        self.insert(key, set, slot);
        Ok(Resolved::Set(set, slot))
    }

    fn insert(&mut self, key: &[u8], set: u32, slot: u64) {
        self.keys.insert(
            RawKey::new(key),
            CachedKey {
                set,
                slot,
                seen: self.generation,
            },
        );
    }

    /// Ends a scrape. A full cache evicts the keys this scrape did not see, and
    /// the label sets no key uses any more; ids of the sets kept change.
    pub fn end_scrape(&mut self) {
        let current = self.generation;
        self.generation = self.generation.wrapping_add(1);
        self.memos.truncate(std::mem::take(&mut self.sources));
        if self.keys.len() < self.capacity {
            return;
        }
        // Keys answered from a memo were seen too.
        for memo in &self.memos {
            for key in memo.keys.chunks_exact(memo.key_size.max(1)) {
                if let Some(cached) = self.keys.get_mut(key) {
                    cached.seen = current;
                }
            }
        }
        let before = self.keys.len();
        self.keys.retain(|_, cached| cached.seen == current);
        if self.keys.len() == before {
            return;
        }
        // Set ids change below: no memo may answer with an old one.
        self.memos.clear();
        let mut renumbered = vec![DROPPED; self.sets.len()];
        let mut sets = Vec::new();
        for cached in self.keys.values_mut() {
            if cached.set == DROPPED {
                continue;
            }
            let old = cached.set as usize;
            if renumbered[old] == DROPPED {
                renumbered[old] = sets.len() as u32;
                sets.push(self.sets[old].clone());
            }
            cached.set = renumbered[old];
        }
        self.set_ids = sets
            .iter()
            .enumerate()
            .map(|(id, set)| (set.text.clone(), id as u32))
            .collect();
        self.sets = sets;
    }
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
            Resolved::Uncached(text, _) => String::from_utf8(text.clone()).unwrap(),
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
        assert_eq!(text(&cache, &extra), r#"op="unknown:3",slot="1""#);
        assert!(matches!(extra, Resolved::Uncached(..)));
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
        // The memo answers without the hash table: take a key out of it.
        cache.keys.remove([1u8, 1].as_slice());
        cache.begin_source(0, &d);
        assert_eq!(
            cache.resolve_at(0, &[1, 1], &d, false, None).unwrap(),
            Resolved::Set(0, 0)
        );
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
                Resolved::Uncached(br#"op="unknown:4",slot="1""#.to_vec(), 0)
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
        assert!(
            cache.sets.iter().all(|s| s.protobuf.is_none()),
            "text scrapes pay nothing"
        );
        assert_eq!(cache.rendered(1, Format::Text), br#"op="write",slot="1""#);
        let mut want = Vec::new();
        crate::metrics::protobuf::label_pair(&mut want, "op", "write");
        crate::metrics::protobuf::label_pair(&mut want, "slot", "1");
        assert_eq!(cache.rendered(1, Format::Protobuf), want);
        let kept = cache.sets[1].protobuf.clone().unwrap();
        cache.rendered(1, Format::Protobuf);
        assert!(
            Arc::ptr_eq(&kept, cache.sets[1].protobuf.as_ref().unwrap()),
            "derived once"
        );
        cache.end_scrape();
        // Only [2, 1] seen: [1, 1] is evicted and op="write" becomes set 0, its
        // protobuf form with it.
        cache.resolve(&[2, 1], &d, false).unwrap();
        cache.resolve(&[3, 1], &d, false).unwrap();
        cache.end_scrape();
        assert_eq!(cache.text(0), br#"op="write",slot="1""#);
        assert!(Arc::ptr_eq(&kept, cache.sets[0].protobuf.as_ref().unwrap()));
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
                Resolved::Uncached(br#"op="read",slot="1""#.to_vec(), 0)
            );
            cache.end_source();
            cache.end_scrape();
        }
        assert_eq!((cache.keys(), cache.sets(), cache.memos.len()), (0, 0, 0));
    }
}
