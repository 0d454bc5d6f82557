//! The ELF symbol and USDT-note readers on real binaries with bits flipped,
//! bytes and words overwritten and the file truncated: `read_elf` and
//! `read_functions` return a result or an error, never panic, hang or
//! allocate without bound, and agree with each other; `read_elf`, which
//! reads only the tables the parsers use, gives what parsing the whole
//! mutant in memory (`parse_bytes`) gives, so no mutation makes the parsers
//! look where nothing was read; the lookups the exporter makes on the result
//! (probe sites, the function holding an address, file offsets) do not
//! panic either.
//!
//! The readers take paths and read the file, so each mutant is written to a
//! copy of the binary in a temp dir: overwrites in place (undone after the
//! run), truncations as a new file.

use crate::engine::{self, Behaviour, Rng, Target};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use userspace_exporter::elf::{parse_bytes, read_elf, read_functions, ElfError};

/// One change to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Flip bit `bit` of the byte at `at`.
    Flip { at: usize, bit: u8 },
    /// Overwrite `width` bytes (1, 2, 4 or 8) at `at` with `value`, little-endian.
    Set { at: usize, width: usize, value: u64 },
    /// Overwrite `len` bytes from `at` with `value`.
    Fill { at: usize, len: usize, value: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
}

/// A mutant: the original file with these changes.
pub type Mutant = Vec<Op>;

/// Values that tend to break size and offset arithmetic.
fn interesting(rng: &mut Rng, file_len: usize, old: u64) -> u64 {
    let small = rng.below(4096) as u64;
    match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => u64::MAX - small,
        3 => u64::from(u32::MAX) - small % 16,
        4 => i64::MAX as u64 - small % 16,
        5 => (1 << 63) + small % 16,
        6 => 0x8000_0000,
        7 => (file_len as u64 + small % 64).saturating_sub(32),
        8 => old.wrapping_add(small % 33).wrapping_sub(16),
        9 => old.wrapping_mul(2 + small % 16),
        10 => old.wrapping_neg(),
        11 => u64::MAX - old,
        12 => u64::MAX - old.wrapping_sub(small),
        _ => rng.next_u64() >> rng.below(64),
    }
}

pub struct ElfTarget {
    name: &'static str,
    source: PathBuf,
    original: Vec<u8>,
    /// Where the readers look: the ELF header, program and section header
    /// tables, symbol, string, version, dynamic and note sections.
    hot: Vec<Range<usize>>,
    /// The fields of the structures the readers decode, by structure kind:
    /// (offset, width) of each.
    fields: Vec<Vec<(usize, usize)>>,
    _dir: tempfile::TempDir,
    work: PathBuf,
    truncated: PathBuf,
    work_file: std::fs::File,
    /// The mutant's bytes, for `parse_bytes`.
    scratch: std::cell::RefCell<Vec<u8>>,
    time_bound: Duration,
    allocation_bound: usize,
    ci_executions: u64,
}

/// The readers' regions of a 64-bit little-endian ELF file.
fn hot_regions(data: &[u8]) -> Vec<Range<usize>> {
    let header = elf::FileHeader64::<Endianness>::parse(data).expect("an ELF64 file");
    let e = header.endian().unwrap();
    let mut hot: Vec<Range<usize>> = Vec::new();
    hot.push(0..64);
    let ph = header.e_phoff(e) as usize;
    hot.push(ph..ph + header.e_phnum(e) as usize * header.e_phentsize(e) as usize);
    let sh = header.e_shoff(e) as usize;
    hot.push(sh..sh + header.e_shnum(e) as usize * header.e_shentsize(e) as usize);
    let sections = header.sections(e, data).unwrap();
    for s in sections.iter() {
        let wanted = [
            elf::SHT_SYMTAB,
            elf::SHT_DYNSYM,
            elf::SHT_STRTAB,
            elf::SHT_DYNAMIC,
            elf::SHT_NOTE,
            elf::SHT_GNU_VERSYM,
            elf::SHT_GNU_VERDEF,
            elf::SHT_GNU_VERNEED,
        ];
        // Go's function table and where the runtime's module data lives.
        let go = sections
            .section_name(e, s)
            .is_ok_and(|n| n == b".gopclntab" || n == b".noptrdata");
        if go || wanted.contains(&s.sh_type(e)) {
            let start = s.sh_offset(e) as usize;
            let end = (start + s.sh_size(e) as usize).min(data.len());
            if start < end {
                hot.push(start..end);
            }
        }
    }
    hot.retain(|r| !r.is_empty());
    hot
}

impl ElfTarget {
    /// A target on a copy of `source`; `None` when the file is not there.
    pub fn new(name: &'static str, candidates: &[&str], ci_executions: u64) -> Option<ElfTarget> {
        let source = candidates.iter().find_map(|pattern| find(pattern))?;
        let original = std::fs::read(&source).unwrap();
        let hot = hot_regions(&original);
        let fields = fields(&original);
        std::fs::create_dir_all(engine::target_dir().join("tmp")).unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("fuzz-{name}-"))
            .tempdir_in(engine::target_dir().join("tmp"))
            .unwrap();
        let work = dir.path().join("work");
        std::fs::write(&work, &original).unwrap();
        // Read too: an op reads what earlier ops of the mutant wrote.
        let work_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&work)
            .unwrap();
        let size = original.len();
        let mut target = ElfTarget {
            name,
            source,
            original,
            hot,
            fields,
            truncated: dir.path().join("truncated"),
            work,
            _dir: dir,
            work_file,
            scratch: std::cell::RefCell::new(Vec::with_capacity(size)),
            time_bound: Duration::MAX,
            allocation_bound: usize::MAX,
            ci_executions,
        };
        // The bounds are relative to reading the intact file.
        let started = Instant::now();
        target
            .check(&target.work, &target.original)
            .expect("the intact file reads");
        let baseline = started.elapsed();
        target.time_bound = (baseline * 50).max(Duration::from_secs(5));
        target.allocation_bound = 64 << 20;
        Some(target)
    }

    /// The mutant's bytes, as [`ElfTarget::apply`] writes them, in the
    /// buffer kept for them (allocated once: not a cost of the run).
    fn bytes(&self, ops: &[Op]) -> std::cell::RefMut<'_, Vec<u8>> {
        let len = ops
            .iter()
            .filter_map(|op| match op {
                Op::Truncate { len } => Some(*len),
                _ => None,
            })
            .min()
            .unwrap_or(self.original.len());
        let mut bytes = self.scratch.borrow_mut();
        bytes.clear();
        bytes.extend_from_slice(&self.original[..len.min(self.original.len())]);
        for op in ops {
            patch(&mut bytes, op);
        }
        bytes
    }

    /// Writes `ops` into the work file (or a truncated copy) and returns the
    /// path to read and a guard that restores the work file.
    fn apply(&self, ops: &[Op]) -> (PathBuf, Restore<'_>) {
        let truncate = ops
            .iter()
            .filter_map(|op| match op {
                Op::Truncate { len } => Some(*len),
                _ => None,
            })
            .min();
        if let Some(len) = truncate {
            let mut bytes = self.original[..len.min(self.original.len())].to_vec();
            for op in ops {
                patch(&mut bytes, op);
            }
            std::fs::write(&self.truncated, &bytes).unwrap();
            return (
                self.truncated.clone(),
                Restore {
                    target: self,
                    ranges: Vec::new(),
                },
            );
        }
        let mut ranges = Vec::new();
        for op in ops {
            let range = op_range(op, self.original.len());
            let mut bytes = self.original[range.clone()].to_vec();
            // Earlier ops on the same bytes stay applied.
            self.work_file
                .read_exact_at(&mut bytes, range.start as u64)
                .unwrap();
            let mut shifted = *op;
            match &mut shifted {
                Op::Flip { at, .. } | Op::Set { at, .. } | Op::Fill { at, .. } => {
                    *at -= range.start
                }
                Op::Truncate { .. } => {}
            }
            patch(&mut bytes, &shifted);
            self.work_file
                .write_all_at(&bytes, range.start as u64)
                .unwrap();
            ranges.push(range);
        }
        (
            self.work.clone(),
            Restore {
                target: self,
                ranges,
            },
        )
    }

    /// Reads `path` (holding `bytes`) the ways the exporter does and checks
    /// what comes back.
    fn check(&self, path: &Path, bytes: &[u8]) -> Result<Behaviour, String> {
        let info = read_elf(path);
        let functions = read_functions(path, |_| true);
        let whole = parse_bytes(path, bytes);
        let same = match (&info, &whole) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        };
        if !same {
            let show = |r: &Result<userspace_exporter::elf::ElfInfo, ElfError>| match r {
                Ok(info) => format!(
                    "ok ({} probes, {} functions)",
                    info.usdt.len(),
                    info.functions.len()
                ),
                Err(e) => format!("{e}"),
            };
            return Err(format!(
                "reading the tables differs from parsing the whole file: {} against {}",
                show(&info),
                show(&whole)
            ));
        }
        match (&info, &functions) {
            (Ok(_), Err(e)) => {
                return Err(format!("read_elf succeeds but read_functions fails: {e}"))
            }
            (Err(e), _) if e.path() != path => {
                return Err(format!("the error names another file: {e}"));
            }
            _ => {}
        }
        let Ok(info) = info else {
            let e = info.unwrap_err();
            let shown = e.to_string();
            let kind = match e {
                ElfError::NotElf { .. } => "not elf",
                ElfError::Malformed { .. } => "malformed",
                ElfError::MalformedNote { .. } => "malformed note",
                ElfError::NotFound { .. } | ElfError::Unreadable { .. } => {
                    return Err(format!("an I/O error on a readable file: {shown}"));
                }
                // Nothing writes the file while it is read, and the tables of
                // a file this size fit what is read.
                ElfError::Changed { .. } | ElfError::TooLarge { .. } => {
                    return Err(format!("an error of a file changing or too large: {shown}"));
                }
            };
            let reason: String = shown
                .rsplit(": ")
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
                .take(40)
                .collect();
            return Ok(format!("err {kind} {reason}"));
        };
        let functions = functions.unwrap();
        for f in &functions {
            if !info.symbols.contains(&f.name) {
                return Err(format!(
                    "read_functions lists a symbol read_elf lacks: {:?}",
                    f.name
                ));
            }
        }
        // The lookups of attaching (probe sites, file offsets), of `usym`
        // (the function holding an address) and of "did you mean".
        for note in info.usdt.iter().take(256) {
            let _ = note.to_string();
            if info.find_usdt(Some(&note.provider), &note.name).is_empty() {
                return Err(format!("a probe is not found by its own name: {note}"));
            }
            let _ = info.functions.containing(note.address);
            if let Some(offset) = info.functions.file_offset(note.address) {
                let _ = info.functions.address_of_offset(offset);
            }
        }
        let all = info.functions.matching(|_| true);
        let step = (all.len() / 256).max(1);
        for f in all.iter().step_by(step) {
            let _ = info.functions.containing(f.address);
            let _ = info.functions.containing(f.address.wrapping_add(f.size));
            if let Some(offset) = info.functions.file_offset(f.address) {
                let _ = info.functions.address_of_offset(offset);
            }
        }
        let _ = info.symbols.similar("malloc", 3);
        let _ = info.symbols.iter().take(16).count();
        Ok(format!(
            "ok usdt={} symbols={} functions={} go={} kind={:?} rpath={} runpath={}",
            bucket(info.usdt.len()),
            bucket(info.symbols.len()),
            bucket(info.functions.len()),
            info.is_go,
            info.kind,
            info.rpath.len().min(2),
            info.runpath.len().min(2)
        ))
    }
}

/// The fields of an ELF64 file's header, program headers, section headers,
/// symbols, dynamic entries and stapsdt notes, grouped by structure kind, as
/// (offset, width): a field-aware mutation sets one to an odd value.
fn fields(data: &[u8]) -> Vec<Vec<(usize, usize)>> {
    const EHDR: &[(usize, usize)] = &[
        (4, 1),
        (5, 1),
        (6, 1),
        (16, 2),
        (18, 2),
        (20, 4),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 4),
        (52, 2),
        (54, 2),
        (56, 2),
        (58, 2),
        (60, 2),
        (62, 2),
    ];
    const PHDR: &[(usize, usize)] = &[
        (0, 4),
        (4, 4),
        (8, 8),
        (16, 8),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 8),
    ];
    const SHDR: &[(usize, usize)] = &[
        (0, 4),
        (4, 4),
        (8, 8),
        (16, 8),
        (24, 8),
        (32, 8),
        (40, 4),
        (44, 4),
        (48, 8),
        (56, 8),
    ];
    const SYM: &[(usize, usize)] = &[(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)];
    const DYN: &[(usize, usize)] = &[(0, 8), (8, 8)];
    // A note header, then (stapsdt) three addresses.
    const NOTE: &[(usize, usize)] = &[(0, 4), (4, 4), (8, 4), (20, 8), (28, 8), (36, 8)];
    let table = |start: usize, count: usize, size: usize, layout: &[(usize, usize)]| {
        (0..count)
            .flat_map(|i| layout.iter().map(move |(o, w)| (start + i * size + o, *w)))
            .filter(|(o, w)| o + w <= data.len())
            .collect::<Vec<_>>()
    };
    let header = elf::FileHeader64::<Endianness>::parse(data).unwrap();
    let e = header.endian().unwrap();
    let mut groups = vec![
        table(0, 1, 64, EHDR),
        table(
            header.e_phoff(e) as usize,
            header.e_phnum(e) as usize,
            56,
            PHDR,
        ),
        table(
            header.e_shoff(e) as usize,
            header.e_shnum(e) as usize,
            64,
            SHDR,
        ),
    ];
    let sections = header.sections(e, data).unwrap();
    for s in sections.iter() {
        let (start, size) = (s.sh_offset(e) as usize, s.sh_size(e) as usize);
        let group = match s.sh_type(e) {
            elf::SHT_SYMTAB | elf::SHT_DYNSYM => table(start, size / 24, 24, SYM),
            elf::SHT_DYNAMIC => table(start, size / 16, 16, DYN),
            elf::SHT_NOTE => {
                // Walk the notes (4-byte aligned) to find each header.
                let mut at = 0;
                let mut starts = Vec::new();
                while at + 12 <= size {
                    starts.push(start + at);
                    let word = |o: usize| {
                        u32::from_le_bytes(data[start + o..start + o + 4].try_into().unwrap())
                            as usize
                    };
                    let (namesz, descsz) = (word(at), word(at + 4));
                    at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
                }
                starts
                    .into_iter()
                    .flat_map(|n| NOTE.iter().map(move |(o, w)| (n + o, *w)))
                    .filter(|(o, w)| o + w <= data.len())
                    .collect()
            }
            _ => continue,
        };
        if !group.is_empty() {
            groups.push(group);
        }
    }
    groups
}

/// 0, 1, 2-3, 4-7, ...: counts by order of magnitude.
fn bucket(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

/// The first existing file matching a glob-like `pattern` (one `*` per
/// component at most), by sorted name.
fn find(pattern: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/")];
    for part in Path::new(pattern).components().skip(1) {
        let part = part.as_os_str().to_string_lossy().to_string();
        let mut next = Vec::new();
        for dir in candidates {
            if let Some((prefix, suffix)) = part.split_once('*') {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else {
                next.push(dir.join(&part));
            }
        }
        candidates = next;
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The bytes an op touches.
fn op_range(op: &Op, len: usize) -> Range<usize> {
    match *op {
        Op::Flip { at, .. } => at..at + 1,
        Op::Set { at, width, .. } => at..(at + width).min(len),
        Op::Fill { at, len: n, .. } => at..(at + n).min(len),
        Op::Truncate { .. } => 0..0,
    }
}

/// Applies `op` to `bytes` (ops past the end are dropped).
pub fn patch(bytes: &mut [u8], op: &Op) {
    match *op {
        Op::Flip { at, bit } => {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << bit;
            }
        }
        Op::Set { at, width, value } => {
            for (i, v) in value.to_le_bytes().iter().take(width).enumerate() {
                if let Some(b) = bytes.get_mut(at + i) {
                    *b = *v;
                }
            }
        }
        Op::Fill { at, len, value } => {
            let end = (at + len).min(bytes.len());
            if at < end {
                bytes[at..end].fill(value);
            }
        }
        Op::Truncate { .. } => {}
    }
}

/// Puts the original bytes back into the work file, even after a panic.
struct Restore<'a> {
    target: &'a ElfTarget,
    ranges: Vec<Range<usize>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        for range in self.ranges.iter().rev() {
            self.target
                .work_file
                .write_all_at(&self.target.original[range.clone()], range.start as u64)
                .unwrap();
        }
    }
}

impl ElfTarget {
    fn offset(&self, rng: &mut Rng) -> usize {
        if rng.one_in(10) {
            return rng.below(self.original.len());
        }
        let region = rng.pick(&self.hot).clone();
        // Header fields sit at the start of small regions: both ends are
        // interesting in big ones.
        match rng.below(4) {
            0 => region.start + rng.below(region.len().min(64)),
            _ => region.start + rng.below(region.len()),
        }
    }

    fn op(&self, rng: &mut Rng) -> Op {
        let len = self.original.len();
        match rng.below(20) {
            0..=4 => Op::Flip {
                at: self.offset(rng),
                bit: rng.below(8) as u8,
            },
            5..=8 => {
                let width = *rng.pick(&[1, 2, 4, 8]);
                let at = self.offset(rng) & !(width - 1);
                self.set(rng, at.min(len - width), width)
            }
            9..=17 => {
                // One field of one structure.
                let group = rng.pick(&self.fields);
                let (at, width) = *rng.pick(group);
                self.set(rng, at, width)
            }
            18 => {
                // A run of one byte over part of a region (a string table
                // without its NULs, a zeroed table).
                let region = rng.pick(&self.hot).clone();
                let at = region.start + rng.below(region.len());
                let len = match rng.below(3) {
                    0 => region.end - at,
                    1 => rng.range(1, region.end - at),
                    _ => rng.small(region.end - at),
                };
                let value = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => b'A',
                    _ => rng.next_u64() as u8,
                };
                Op::Fill { at, len, value }
            }
            _ => {
                let cut = match rng.below(3) {
                    0 => rng.below(len),
                    1 => {
                        let region = rng.pick(&self.hot).clone();
                        (region.end + rng.below(16)).saturating_sub(8)
                    }
                    _ => rng.below(4096.min(len)),
                };
                Op::Truncate { len: cut.min(len) }
            }
        }
    }

    /// Sets the `width` bytes at `at` to a value that tends to break things.
    fn set(&self, rng: &mut Rng, at: usize, width: usize) -> Op {
        let mut old = [0u8; 8];
        old[..width].copy_from_slice(&self.original[at..at + width]);
        let value = interesting(rng, self.original.len(), u64::from_le_bytes(old));
        Op::Set { at, width, value }
    }
}

impl Target for ElfTarget {
    type Input = Mutant;

    fn name(&self) -> &'static str {
        self.name
    }

    fn ci_executions(&self) -> u64 {
        self.ci_executions
    }

    fn seeds(&self) -> Vec<Mutant> {
        let mut seeds = vec![Vec::new()];
        for (path, bytes) in engine::regression_files(self.name) {
            match parse_mutant(&String::from_utf8_lossy(&bytes)) {
                Some(m) => seeds.push(m),
                None => panic!("{}: not a list of ops", path.display()),
            }
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Mutant]) -> Mutant {
        let mut mutant = if rng.one_in(4) {
            Vec::new()
        } else {
            rng.pick(corpus).clone()
        };
        for _ in 0..rng.small(6) {
            mutant.push(self.op(rng));
        }
        if mutant.len() > 32 {
            mutant.drain(..mutant.len() - 32);
        }
        mutant
    }

    fn run(&self, mutant: &Mutant) -> Result<Behaviour, String> {
        let (path, _restore) = self.apply(mutant);
        self.check(&path, &self.bytes(mutant))
    }

    fn shrink(&self, mutant: &Mutant) -> Box<dyn Iterator<Item = Mutant>> {
        let mutant = mutant.clone();
        Box::new((0..mutant.len()).map(move |i| {
            let mut fewer = mutant.clone();
            fewer.remove(i);
            fewer
        }))
    }

    fn save(&self, mutant: &Mutant) -> Vec<u8> {
        let mut out = format!(
            "# {} ({} bytes): the ops that break it\n",
            self.source.display(),
            self.original.len()
        );
        out.push_str(&format_ops(mutant));
        out.into_bytes()
    }

    fn time_bound(&self) -> Duration {
        self.time_bound
    }

    fn allocation_bound(&self, _: &Mutant) -> usize {
        self.allocation_bound
    }
}

/// `ops` one per line, as [`parse_mutant`] reads them.
pub fn format_ops(ops: &[Op]) -> String {
    ops.iter()
        .map(|op| match op {
            Op::Flip { at, bit } => format!("flip {at:#x} {bit}\n"),
            Op::Set { at, width, value } => format!("set {at:#x} {width} {value:#x}\n"),
            Op::Fill { at, len, value } => format!("fill {at:#x} {len:#x} {value:#x}\n"),
            Op::Truncate { len } => format!("truncate {len:#x}\n"),
        })
        .collect()
}

/// The ops written by `save`.
pub fn parse_mutant(text: &str) -> Option<Mutant> {
    let num = |s: &str| -> Option<u64> {
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let mut ops = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        ops.push(match words.as_slice() {
            ["flip", at, bit] => Op::Flip {
                at: num(at)? as usize,
                bit: num(bit)? as u8 & 7,
            },
            ["set", at, width, value] => Op::Set {
                at: num(at)? as usize,
                width: num(width)? as usize,
                value: num(value)?,
            },
            ["fill", at, len, value] => Op::Fill {
                at: num(at)? as usize,
                len: num(len)? as usize,
                value: num(value)? as u8,
            },
            ["truncate", len] => Op::Truncate {
                len: num(len)? as usize,
            },
            _ => return None,
        });
    }
    Some(ops)
}

/// The binaries of the brief: CPython 3.11, the JVM's libjvm.so, postgres;
/// and Go 1.19's gofmt, stripped.
pub fn targets() -> Vec<(&'static str, &'static [&'static str], u64)> {
    vec![
        ("elf_python", &["/usr/bin/python3.11"], 200),
        (
            "elf_libjvm",
            &[
                "/usr/lib/jvm/java-17-openjdk-*/lib/server/libjvm.so",
                "/usr/lib/jvm/*/lib/server/libjvm.so",
            ],
            4,
        ),
        ("elf_postgres", &["/usr/lib/postgresql/*/bin/postgres"], 40),
        // A stripped Go binary: its functions come from .gopclntab. Go 1.19's
        // (Debian 12), whose bytes the committed regressions patch.
        ("elf_go", &["/usr/lib/go-1.19/bin/gofmt"], 300),
    ]
}

/// Runs the ELF target `name`, or says why it cannot (fails under CI, where
/// `scripts/setup.sh` installs the binaries).
pub fn fuzz(name: &str) {
    let (name, candidates, ci) = targets().into_iter().find(|(n, _, _)| *n == name).unwrap();
    match ElfTarget::new(name, candidates, ci) {
        Some(target) => engine::fuzz(target),
        None => {
            userspace_exporter::testing::require(
                name,
                Err(format!(
                    "none of {candidates:?} exists; scripts/setup.sh installs it"
                )),
            );
        }
    }
}
