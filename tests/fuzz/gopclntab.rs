//! Go's function table reader (`Pclntab`) on a real table, that of the
//! stripped `gofmt` of Debian 12's Go 1.19 (golang-1.19-go), with header
//! words, function table entries, records, names and bytes changed and the
//! table cut short: `parse` and `functions` return a table or an error, never
//! panic, hang or allocate beyond a bound in proportion to the table; what
//! they return holds together (no more functions than declared, entries in
//! order, each function reaching the next one's entry, names never empty,
//! their bytes within the reader's budget).
//!
//! The table is mutated in memory: the reader takes bytes. How the exporter
//! finds the table in a file (and the text's start) is fuzzed with the ELF
//! readers (`elf_go`, tests/fuzz/elf.rs).

use crate::elf::Op;
use crate::engine::{self, Behaviour, Rng, Target};
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use userspace_exporter::elf::Pclntab;

/// The changes of one input.
pub type Mutant = Vec<Op>;

pub struct PclntabTarget {
    source: PathBuf,
    table: Vec<u8>,
    /// Fields the reader decodes, as (offset, width): the header's words,
    /// the function table's entries and record offsets, the records' entries
    /// and name offsets.
    fields: Vec<(usize, usize)>,
    /// Where the names are: the name table's first bytes.
    names: std::ops::Range<usize>,
    time_bound: Duration,
    allocation_bound: usize,
}

/// `gofmt` of Debian 12's Go 1.19 (beside `testing::GO_TOOLCHAIN`).
fn gofmt() -> Result<PathBuf, String> {
    let gofmt = userspace_exporter::testing::go_toolchain()?.with_file_name("gofmt");
    if gofmt.is_file() {
        Ok(gofmt)
    } else {
        Err(format!(
            "no {}; scripts/setup.sh installs golang-1.19-go",
            gofmt.display()
        ))
    }
}

/// The bytes of `.gopclntab` in a 64-bit ELF file.
fn table_of(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let header = object::elf::FileHeader64::<Endianness>::parse(&*data).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, &*data).unwrap();
    let (_, section) = sections
        .section_by_name(endian, b".gopclntab")
        .unwrap_or_else(|| panic!("{} has no .gopclntab", path.display()));
    section.data(endian, &*data).unwrap().to_vec()
}

impl PclntabTarget {
    /// The target on gofmt's table, or why Go 1.19 is missing.
    pub fn new() -> Result<PclntabTarget, String> {
        let source = gofmt()?;
        let table = table_of(&source);
        let parsed = Pclntab::parse(&table).expect("gofmt's table reads");
        assert!(parsed.entries_are_offsets() && parsed.pointer_size() == 8);
        let word = |i: usize| u64::from_le_bytes(table[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(table[at..at + 4].try_into().unwrap()) as usize;
        let (functab, names_at) = (word(7) as usize, word(3) as usize);
        let nfunc = parsed.function_count();
        let mut fields: Vec<(usize, usize)> = vec![(0, 4), (4, 1), (5, 1), (6, 1), (7, 1)];
        fields.extend((0..8).map(|i| (8 + 8 * i, 8)));
        for i in 0..=2 * nfunc {
            fields.push((functab + 4 * i, 4));
        }
        for i in 0..nfunc {
            let record = functab + u32_at(functab + 8 * i + 4);
            fields.push((record, 4));
            fields.push((record + 4, 4));
        }
        let mut target = PclntabTarget {
            source,
            names: names_at..(names_at + 4096).min(table.len()),
            table,
            fields,
            time_bound: Duration::MAX,
            allocation_bound: usize::MAX,
        };
        let started = Instant::now();
        target.check(&target.table).expect("the intact table reads");
        target.time_bound = (started.elapsed() * 50).max(Duration::from_secs(2));
        // The reader's own bound: names copied or scanned within twice the
        // table, a function record per 8 bytes of it; with the mutant's copy,
        // far below 16 times the table.
        target.allocation_bound = 16 * target.table.len() + (1 << 20);
        Ok(target)
    }

    /// Reads `table` as the exporter does and checks what comes back.
    fn check(&self, table: &[u8]) -> Result<Behaviour, String> {
        let parsed = match Pclntab::parse(table) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(format!("err header {}", words(&e.to_string()))),
        };
        let text = parsed.header_text_start().unwrap_or(0x40_1000);
        let functions = match parsed.functions(text) {
            Ok(functions) => functions,
            Err(e) => return Ok(format!("err functions {}", words(&e.to_string()))),
        };
        if functions.len() > parsed.function_count() {
            return Err(format!(
                "more functions than declared: {} of {}",
                functions.len(),
                parsed.function_count()
            ));
        }
        let mut names = 0usize;
        for pair in functions.windows(2) {
            let end = pair[0].entry.checked_add(pair[0].size);
            if end.is_none_or(|end| end > pair[1].entry) {
                return Err(format!(
                    "overlapping functions: {} at {:#x} ({} bytes) and {} at {:#x}",
                    pair[0].name, pair[0].entry, pair[0].size, pair[1].name, pair[1].entry
                ));
            }
        }
        for f in &functions {
            if f.name.is_empty() {
                return Err(format!("a function without a name at {:#x}", f.entry));
            }
            names += f.name.len();
        }
        if names > 2 * table.len() + (1 << 16) {
            return Err(format!(
                "names of {names} bytes from a table of {}",
                table.len()
            ));
        }
        Ok(format!(
            "ok {:?} functions={} text={}",
            parsed.version(),
            usize::BITS - functions.len().leading_zeros(),
            parsed.header_text_start().is_some()
        ))
    }

    fn op(&self, rng: &mut Rng) -> Op {
        let len = self.table.len();
        match rng.below(20) {
            0..=3 => Op::Flip {
                at: if rng.one_in(2) {
                    rng.below(len.min(128))
                } else {
                    rng.below(len)
                },
                bit: rng.below(8) as u8,
            },
            4..=14 => {
                let (at, width) = *rng.pick(&self.fields);
                let mut old = [0u8; 8];
                old[..width].copy_from_slice(&self.table[at..at + width]);
                let old = u64::from_le_bytes(old);
                let small = rng.below(4096) as u64;
                let value = match rng.below(10) {
                    0 => 0,
                    1 => u64::MAX >> (64 - 8 * width as u32),
                    2 => len as u64 + small % 64,
                    3 => old.wrapping_add(small % 33).wrapping_sub(16),
                    4 => old.wrapping_mul(2 + small % 16),
                    5 => 0x8000_0000,
                    6 => (1u64 << (8 * width as u32 - 1)).wrapping_sub(small % 8),
                    7 => rng.below(len) as u64,
                    _ => rng.next_u64(),
                };
                Op::Set { at, width, value }
            }
            15..=16 => {
                // Names without their NULs, or runs of one byte elsewhere.
                let (start, end) = if rng.one_in(2) {
                    (self.names.start, self.names.end)
                } else {
                    (0, len)
                };
                let at = rng.range(start, end - 1);
                let value = *rng.pick(&[0u8, 0xff, b'A']);
                let run = match rng.below(3) {
                    0 => end - at,
                    _ => rng.small(end - at),
                };
                Op::Fill {
                    at,
                    len: run,
                    value,
                }
            }
            _ => Op::Truncate {
                len: match rng.below(3) {
                    0 => rng.below(len),
                    1 => rng.below(256.min(len)),
                    _ => len - rng.below(4096.min(len)),
                },
            },
        }
    }
}

/// The first words of an error, without numbers: a behaviour, not an instance.
fn words(message: &str) -> String {
    message
        .split(|c: char| !c.is_ascii_alphabetic() && c != ' ')
        .collect::<String>()
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Target for PclntabTarget {
    type Input = Mutant;

    fn name(&self) -> &'static str {
        "gopclntab"
    }

    fn ci_executions(&self) -> u64 {
        3000
    }

    fn seeds(&self) -> Vec<Mutant> {
        let mut seeds = vec![Vec::new()];
        for (path, bytes) in engine::regression_files(self.name()) {
            match crate::elf::parse_mutant(&String::from_utf8_lossy(&bytes)) {
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
        for _ in 0..1 + rng.small(5) {
            mutant.push(self.op(rng));
        }
        if mutant.len() > 32 {
            mutant.drain(..mutant.len() - 32);
        }
        mutant
    }

    fn run(&self, mutant: &Mutant) -> Result<Behaviour, String> {
        let cut = mutant
            .iter()
            .filter_map(|op| match op {
                Op::Truncate { len } => Some(*len),
                _ => None,
            })
            .min()
            .unwrap_or(self.table.len());
        let mut table = self.table[..cut.min(self.table.len())].to_vec();
        for op in mutant {
            crate::elf::patch(&mut table, op);
        }
        self.check(&table)
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
            "# .gopclntab of {} ({} bytes): the ops that break it\n",
            self.source.display(),
            self.table.len()
        );
        out.push_str(&crate::elf::format_ops(mutant));
        out.into_bytes()
    }

    fn time_bound(&self) -> Duration {
        self.time_bound
    }

    fn allocation_bound(&self, _: &Mutant) -> usize {
        self.allocation_bound
    }
}

/// Runs the target, or says why it cannot (fails under CI, where
/// `scripts/setup.sh` installs golang-1.19-go).
pub fn fuzz() {
    match PclntabTarget::new() {
        Ok(target) => engine::fuzz(target),
        Err(why) => {
            userspace_exporter::testing::require("gopclntab", Err(why));
        }
    }
}
