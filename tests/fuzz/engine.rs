//! A small mutation fuzzer on stable Rust: a seeded RNG, a run loop with a
//! budget (a fixed number of executions under `cargo test`, seconds when
//! `FUZZ_SECONDS` is set), panics caught per input, a time and allocation
//! bound per input, a corpus that keeps inputs showing new behaviour, and a
//! greedy shrinker for what fails.
//!
//! Environment (read by [`Settings::from_env`]):
//! - `FUZZ_SECONDS`: run each target this long instead of its fixed count;
//! - `FUZZ_EXECUTIONS`: run each target this many generated inputs instead
//!   (with `FUZZ_SEED`, repeats a timed run's first inputs exactly);
//! - `FUZZ_SEED`: the base seed (a target's stream is derived from it and the
//!   target's name); without it, a fixed seed under `cargo test` and a random
//!   one with `FUZZ_SECONDS`;
//! - `FUZZ_REPORT`: a file to which each target appends one tab-separated line
//!   (name, executions, seconds, crashes, seed, corpus size, peak allocation).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Allocation accounting

/// The system allocator, counting the bytes each thread holds (and its peak)
/// so that one input's allocations can be bounded. Counts are per thread: the
/// parsers are single-threaded and the test harness runs targets in parallel.
pub struct CountingAlloc;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Set while an input runs: allocations past it fail (the process then
    /// aborts with "memory allocation of N bytes failed", and the input is
    /// in the `.current` file), instead of the machine swapping.
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
}

fn account(delta: isize) -> bool {
    HELD.try_with(|held| {
        let now = held.get() + delta;
        if delta > 0 && now > CAP.try_with(Cell::get).unwrap_or(isize::MAX) {
            return false;
        }
        held.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
        true
    })
    .unwrap_or(true)
}

// SAFETY: every call is forwarded to `System` unchanged; only counters change.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !account(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !account(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let delta = new_size as isize - layout.size() as isize;
        if !account(delta) {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes this thread holds now.
fn held() -> isize {
    HELD.with(Cell::get)
}

/// Starts measuring this thread's peak from what it holds now.
fn reset_peak() {
    PEAK.with(|p| p.set(held()));
}

fn peak() -> isize {
    PEAK.with(Cell::get)
}

/// The allocation cap of one input: far above any bound a target asserts, low
/// enough to keep a runaway input from taking the machine.
const HARD_CAP: isize = 4 << 30;

// ---------------------------------------------------------------------------
// Random numbers

/// wyrand: a small, fast, well-mixed 64-bit generator; runs are reproducible
/// from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One of `words`.
    pub fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[self.below(words.len())]
    }

    /// Small numbers far more often than large ones (1 ..= max).
    pub fn small(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as usize - max.leading_zeros() as usize) + 1;
        (self.below(1 << bits) + 1).min(max)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A stable 64-bit hash (the std SipHash with fixed keys).
pub fn hash64(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

// ---------------------------------------------------------------------------
// Settings

/// How long to run and from which seed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base seed.
    pub seed: u64,
    /// `Some(seconds)` for a timed run, `None` for a count.
    pub seconds: Option<f64>,
    /// The count instead of the target's own.
    pub executions: Option<u64>,
    /// Where to append the result line.
    pub report: Option<PathBuf>,
}

impl Settings {
    pub fn from_env() -> Settings {
        let seconds = std::env::var("FUZZ_SECONDS")
            .ok()
            .map(|s| s.trim().parse::<f64>().expect("FUZZ_SECONDS is a number"));
        let seed = match std::env::var("FUZZ_SEED") {
            Ok(s) => parse_seed(&s),
            Err(_) if seconds.is_some() => hash64((
                std::process::id(),
                Instant::now(),
                std::time::SystemTime::now(),
            )),
            Err(_) => 0xf022_5eed,
        };
        let executions = std::env::var("FUZZ_EXECUTIONS")
            .ok()
            .map(|s| s.trim().parse::<u64>().expect("FUZZ_EXECUTIONS is a count"));
        Settings {
            seed,
            seconds,
            executions,
            report: std::env::var_os("FUZZ_REPORT").map(PathBuf::from),
        }
    }
}

fn parse_seed(s: &str) -> u64 {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.expect("FUZZ_SEED is a 64-bit number (decimal or 0x hex)")
}

// ---------------------------------------------------------------------------
// Targets

/// What an input did, when it did not fail: a coarse description whose hash
/// decides whether the input is new behaviour worth keeping in the corpus.
pub type Behaviour = String;

/// One fuzz target.
pub trait Target {
    type Input: Clone;

    /// The target's name, used in reports and corpus paths.
    fn name(&self) -> &'static str;

    /// Executions under `cargo test` (no `FUZZ_SECONDS`).
    fn ci_executions(&self) -> u64;

    /// The starting corpus: real inputs and the committed regressions.
    fn seeds(&self) -> Vec<Self::Input>;

    /// A new input: generated from nothing, or a mutation of corpus entries.
    fn generate(&self, rng: &mut Rng, corpus: &[Self::Input]) -> Self::Input;

    /// Runs the code under test on `input`: its behaviour, or why a property
    /// does not hold (`kind: details`, where the kind tells failures apart).
    /// A panic is caught by the engine.
    fn run(&self, input: &Self::Input) -> Result<Behaviour, String>;

    /// Smaller variants of `input`, biggest cuts first, for shrinking a failure.
    fn shrink(&self, input: &Self::Input) -> Box<dyn Iterator<Item = Self::Input>>;

    /// The input as bytes, for the crash file and `tests/fuzz_corpus/`.
    fn save(&self, input: &Self::Input) -> Vec<u8>;

    /// File name extension of saved inputs.
    fn extension(&self) -> &'static str {
        "txt"
    }

    /// Longest one input may take before it counts as a hang (generous: the
    /// slowest inputs of the text targets take tens of milliseconds, and CI
    /// machines are shared).
    fn time_bound(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Most bytes one input may allocate (peak, above what was held before).
    fn allocation_bound(&self, input: &Self::Input) -> usize;
}

/// How one input failed.
#[derive(Debug, Clone)]
struct Failure {
    /// What failed, without the input-specific numbers (used to tell
    /// failures apart and to check that shrinking keeps the same one).
    signature: String,
    /// The whole message.
    message: String,
}

thread_local! {
    /// Set while this thread runs an input: its panics are recorded, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some(format!("panic at {location}: {payload}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Digits and hex numbers out, so that one failure found at different
/// offsets is one failure.
fn signature_of(message: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in message.chars().take(300) {
        let continues = in_number && (c.is_ascii_hexdigit() || c == 'x');
        if c.is_ascii_digit() || continues {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// What happened to one input, as the engine sees it.
struct Outcome {
    result: Result<Behaviour, Failure>,
    elapsed: Duration,
    allocated: usize,
}

/// Runs one input with panics caught, timed and with its peak allocation.
fn execute<T: Target>(target: &T, input: &T::Input, current: &CurrentInput) -> Outcome {
    current.record(&target.save(input));
    PANIC.with(|p| p.borrow_mut().take());
    let before = held();
    reset_peak();
    CAP.with(|c| c.set(before.saturating_add(HARD_CAP)));
    CATCHING.with(|c| c.set(true));
    let started = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let elapsed = started.elapsed();
    CATCHING.with(|c| c.set(false));
    CAP.with(|c| c.set(isize::MAX));
    let allocated = (peak() - before).max(0) as usize;
    let result = match result {
        Ok(Ok(behaviour)) => Ok(behaviour),
        Ok(Err(violation)) => Err(Failure {
            // What a property says before its first ": " is its kind.
            signature: format!(
                "property: {}",
                signature_of(violation.split(": ").next().unwrap_or(""))
            ),
            message: violation,
        }),
        Err(_) => {
            let message = PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic".to_string());
            // The location is the signature: one bug, one entry.
            let signature = message.split(": ").next().unwrap_or("").to_string();
            Err(Failure { signature, message })
        }
    };
    let bound = target.time_bound();
    let allocation_bound = target.allocation_bound(input);
    let result = match result {
        Ok(_) if elapsed > bound => Err(Failure {
            signature: "hang".into(),
            message: format!("took {elapsed:?}, more than the bound of {bound:?}"),
        }),
        Ok(_) if allocated > allocation_bound => Err(Failure {
            signature: "memory".into(),
            message: format!(
                "allocated {allocated} bytes at the peak, more than the bound of {allocation_bound}"
            ),
        }),
        other => other,
    };
    Outcome {
        result,
        elapsed,
        allocated,
    }
}

/// The input being run, kept in a file so that an abort (stack overflow,
/// allocation failure) or a hang leaves it behind; removed when the target
/// finishes.
struct CurrentInput {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl CurrentInput {
    fn new(path: PathBuf) -> CurrentInput {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        CurrentInput {
            path,
            file: Mutex::new(file),
        }
    }

    fn record(&self, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = self.file.lock().unwrap();
        let _ = file.set_len(bytes.len() as u64);
        let _ = file.write_all_at(bytes, 0);
    }
}

impl Drop for CurrentInput {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `target/`, from the integration test's temp dir (`target/tmp`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where crashes and the current inputs are written.
pub fn crash_dir() -> PathBuf {
    target_dir().join("reliability").join("fuzz-crashes")
}

/// The files of `tests/fuzz_corpus/<name>/`, sorted: committed regressions.
pub fn regression_files(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo_dir().join("tests/fuzz_corpus").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// What a target's run found.
struct Found {
    failure: Failure,
    saved: PathBuf,
    size: usize,
}

/// Largest corpus a run keeps (besides its seeds).
const CORPUS_LIMIT: usize = 512;

/// Runs `target`: every seed, then generated inputs until the budget is spent;
/// shrinks and saves each distinct failure, appends the report line, and
/// panics listing the failures if there were any.
pub fn fuzz<T: Target>(target: T) {
    install_panic_hook();
    let settings = Settings::from_env();
    let name = target.name();
    let seed = settings.seed ^ hash64(name);
    let mut rng = Rng::new(seed);
    let current = CurrentInput::new(crash_dir().join(format!("{name}.current")));
    let started = Instant::now();
    let mut failures: BTreeMap<String, Found> = BTreeMap::new();
    let mut executions = 0u64;
    let mut max_allocated = 0usize;
    let mut slowest = Duration::ZERO;
    let mut slowest_input: Option<T::Input> = None;
    let mut seen: HashSet<u64> = HashSet::new();

    let mut corpus = target.seeds();
    assert!(!corpus.is_empty(), "{name}: no seeds");
    let seeds = corpus.len();
    let mut handle = |input: &T::Input,
                      outcome: Outcome,
                      corpus: &mut Vec<T::Input>,
                      failures: &mut BTreeMap<String, Found>| {
        max_allocated = max_allocated.max(outcome.allocated);
        if outcome.elapsed > slowest {
            slowest = outcome.elapsed;
            slowest_input = Some(input.clone());
        }
        match outcome.result {
            Ok(behaviour) => {
                if seen.insert(hash64(&behaviour)) && corpus.len() < seeds + CORPUS_LIMIT {
                    corpus.push(input.clone());
                }
            }
            Err(failure) => {
                if !failures.contains_key(&failure.signature) {
                    let found = record_failure(&target, input, failure, &current);
                    failures.insert(found.failure.signature.clone(), found);
                }
            }
        }
    };
    for i in 0..seeds {
        let input = corpus[i].clone();
        let outcome = execute(&target, &input, &current);
        executions += 1;
        handle(&input, outcome, &mut corpus, &mut failures);
    }
    // Under `cargo test` a fixed count keeps runs reproducible; the time cap
    // only stops a much slower machine from holding CI up.
    let (count, time_cap) = match settings.executions {
        Some(n) => (n + seeds as u64, Duration::MAX),
        None => (
            target.ci_executions() + seeds as u64,
            Duration::from_secs(20),
        ),
    };
    loop {
        let done = match settings.seconds {
            Some(seconds) => started.elapsed().as_secs_f64() >= seconds,
            None => executions >= count || started.elapsed() > time_cap,
        };
        if done {
            break;
        }
        let input = target.generate(&mut rng, &corpus);
        let outcome = execute(&target, &input, &current);
        executions += 1;
        handle(&input, outcome, &mut corpus, &mut failures);
    }
    let seconds = started.elapsed().as_secs_f64();
    if let (Some(input), Some(_)) = (&slowest_input, settings.seconds) {
        // For a look at what takes long, in a timed run.
        let path = crash_dir().join(format!("{name}.slowest.{}", target.extension()));
        let _ = std::fs::write(path, target.save(input));
    }
    let crashes = if failures.is_empty() {
        "0".to_string()
    } else {
        failures
            .values()
            .map(|f| {
                format!(
                    "{} ({} bytes, {})",
                    f.failure.signature,
                    f.size,
                    f.saved.display()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    eprintln!(
        "fuzz {name}: {executions} executions in {seconds:.1} s, seed {:#x} (base {:#x}), corpus {} ({} seeds), slowest input {:?}, peak allocation {} KiB, crashes: {crashes}",
        seed,
        settings.seed,
        corpus.len(),
        seeds,
        slowest,
        max_allocated / 1024
    );
    if let Some(report) = &settings.report {
        let mut line = String::new();
        let _ = writeln!(
            line,
            "{name}\t{executions}\t{seconds:.0}\t{}\t{:#x}\t{}\t{}",
            crashes.replace(['\t', '\n'], " "),
            seed,
            corpus.len(),
            max_allocated
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
            .expect("FUZZ_REPORT is writable");
        file.write_all(line.as_bytes()).unwrap();
    }
    drop(current);
    if !failures.is_empty() {
        let mut text = String::new();
        for f in failures.values() {
            let _ = writeln!(
                text,
                "\n- {}\n  {}\n  shrunk input ({} bytes) saved to {}",
                f.failure.signature,
                f.failure.message,
                f.size,
                f.saved.display()
            );
        }
        panic!("fuzz {name}: {} distinct failures:{text}", failures.len());
    }
}

/// Shrinks a failing input (keeping the same failure) and saves it.
fn record_failure<T: Target>(
    target: &T,
    input: &T::Input,
    failure: Failure,
    current: &CurrentInput,
) -> Found {
    let mut best = input.clone();
    let mut best_failure = failure;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempts = 0;
    'shrinking: while Instant::now() < deadline && attempts < 20_000 {
        for candidate in target.shrink(&best) {
            attempts += 1;
            if Instant::now() >= deadline || attempts >= 20_000 {
                break 'shrinking;
            }
            if let Err(f) = execute(target, &candidate, current).result {
                if f.signature == best_failure.signature {
                    best = candidate;
                    best_failure = f;
                    continue 'shrinking;
                }
            }
        }
        break;
    }
    let bytes = target.save(&best);
    let dir = crash_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join(format!(
        "{}-{:016x}.{}",
        target.name(),
        hash64(&best_failure.signature),
        target.extension()
    ));
    std::fs::write(&saved, &bytes).unwrap();
    eprintln!(
        "fuzz {}: FAILURE {}\n  {}\n  saved {} bytes to {}",
        target.name(),
        best_failure.signature,
        best_failure.message,
        bytes.len(),
        saved.display()
    );
    Found {
        failure: best_failure,
        saved,
        size: bytes.len(),
    }
}

// ---------------------------------------------------------------------------
// Mutators shared by the text targets

/// Characters and fragments that tend to break parsers of text.
pub const ODD_TEXT: &[&str] = &[
    "\0",
    "\n",
    "\r",
    "\r\n",
    "\t",
    " ",
    "\\",
    "\"",
    "'",
    "`",
    "#",
    ":",
    "-",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ";",
    "*",
    "&",
    "!",
    "|",
    ">",
    "<",
    "%",
    "@",
    "?",
    "=",
    ".",
    "/",
    "\u{feff}",
    "\u{85}",
    "\u{2028}",
    "é",
    "日本",
    "\u{1F600}",
    "\u{fffd}",
    "\u{7f}",
];

/// Numbers that tend to break parsers of text.
pub const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "1e308",
    "-1e308",
    "1e-400",
    "nan",
    "inf",
    "-inf",
    ".nan",
    ".inf",
    "0x",
    "0x10",
    "0o7",
    "0b1",
    "127",
    "128",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
];

/// A random character: mostly ASCII, sometimes anything.
pub fn random_char(rng: &mut Rng) -> char {
    match rng.below(10) {
        0 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
        1 => char::from(rng.below(0x20) as u8),
        _ => char::from(rng.range(0x20, 0x7e) as u8),
    }
}

/// The byte index of a char boundary in `s`, uniformly among them.
pub fn boundary(rng: &mut Rng, s: &str) -> usize {
    if s.is_empty() {
        return 0;
    }
    let mut i = rng.below(s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A boundary-aligned range of `s` of at most `max` bytes.
pub fn span(rng: &mut Rng, s: &str, max: usize) -> (usize, usize) {
    let a = boundary(rng, s);
    let mut b = (a + rng.small(max.max(1))).min(s.len());
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    (a, b.max(a))
}

/// One text input for a text target: random bytes (1 in 20), a run of up to
/// `max_words` dictionary words joined by `joiner` or by nothing (1 in 20),
/// or else a corpus entry with up to eight mutations.
pub fn generate_text(
    rng: &mut Rng,
    corpus: &[String],
    dictionary: &[&str],
    max_words: usize,
    joiner: &str,
) -> String {
    match rng.below(20) {
        0 => {
            let len = rng.small(512);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        }
        1 => (0..rng.small(max_words))
            .map(|_| *rng.pick(dictionary))
            .collect::<Vec<_>>()
            .join(if rng.one_in(2) { joiner } else { "" }),
        _ => {
            let mut s = rng.pick(corpus).clone();
            let other = rng.pick(corpus).clone();
            for _ in 0..rng.small(8) {
                mutate_text(rng, &mut s, dictionary, &other);
            }
            s
        }
    }
}

/// One generic text mutation of `s`: characters, fragments, dictionary
/// words, line operations, splices with `other`.
pub fn mutate_text(rng: &mut Rng, s: &mut String, dictionary: &[&str], other: &str) {
    match rng.below(14) {
        0 | 1 => {
            let at = boundary(rng, s);
            let word = *rng.pick(dictionary);
            s.insert_str(at, word);
        }
        2 => {
            let (a, b) = span(rng, s, 16);
            let word = *rng.pick(dictionary);
            s.replace_range(a..b, word);
        }
        3 => {
            let at = boundary(rng, s);
            let odd = *rng.pick(ODD_TEXT);
            s.insert_str(at, odd);
        }
        4 => {
            let at = boundary(rng, s);
            s.insert(at, random_char(rng));
        }
        5 => {
            let (a, b) = span(rng, s, 8);
            s.replace_range(a..b, "");
        }
        6 => {
            let (a, b) = span(rng, s, 64);
            s.replace_range(a..b, "");
        }
        7 => {
            // Replace a number (or any word) with an odd number.
            let (a, b) = span(rng, s, 6);
            let number = *rng.pick(ODD_NUMBERS);
            s.replace_range(a..b, number);
        }
        8 => {
            // Duplicate a range.
            let (a, b) = span(rng, s, 128);
            let copy = s[a..b].to_string();
            let at = boundary(rng, s);
            s.insert_str(at, &copy);
        }
        9 => {
            // Splice a range of another input.
            if !other.is_empty() {
                let (a, b) = span(rng, other, 256);
                let at = boundary(rng, s);
                s.insert_str(at, &other[a..b]);
            }
        }
        10 => line_mutation(rng, s),
        11 => {
            // Change a line's indentation.
            let mut lines: Vec<String> = s.split('\n').map(str::to_string).collect();
            let i = rng.below(lines.len());
            if rng.one_in(2) {
                let n = rng.range(1, 4);
                lines[i].insert_str(0, &" ".repeat(n));
            } else {
                let n = rng
                    .range(1, 4)
                    .min(lines[i].len() - lines[i].trim_start_matches([' ', '\t']).len());
                lines[i].replace_range(..n, "");
            }
            *s = lines.join("\n");
        }
        12 => {
            // Truncate.
            let at = boundary(rng, s);
            s.truncate(at);
        }
        _ => {
            // Flip the case of an ASCII letter.
            let at = boundary(rng, s);
            if let Some(c) = s[at..].chars().next() {
                if c.is_ascii_alphabetic() {
                    let flipped = if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                    s.replace_range(at..at + 1, &flipped.to_string());
                }
            }
        }
    }
}

/// Deletes, duplicates, swaps or moves whole lines.
fn line_mutation(rng: &mut Rng, s: &mut String) {
    let mut lines: Vec<&str> = s.split('\n').collect();
    let n = lines.len();
    let i = rng.below(n);
    let j = rng.below(n);
    match rng.below(4) {
        0 if n > 1 => {
            lines.remove(i);
        }
        1 => lines.insert(j, lines[i]),
        2 => lines.swap(i, j),
        _ => {
            let line = lines.remove(i);
            let j = j.min(lines.len());
            lines.insert(j, line);
        }
    }
    *s = lines.join("\n");
}

/// Candidates for shrinking text: each line removed, then chunks of
/// decreasing size (halves down to single characters).
pub fn shrink_text(s: &str) -> Box<dyn Iterator<Item = String>> {
    let text = s.to_string();
    let lines: Vec<String> = s.split('\n').map(str::to_string).collect();
    let by_line = (0..if lines.len() > 1 { lines.len() } else { 0 }).map(move |i| {
        let mut rest = lines.clone();
        rest.remove(i);
        rest.join("\n")
    });
    let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let n = starts.len();
    let mut chunks = Vec::new();
    let mut chunk = n.div_ceil(2);
    while chunk >= 1 && n > 0 {
        chunks.push(chunk);
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    let by_chunk = chunks.into_iter().flat_map(move |chunk| {
        let text = text.clone();
        let starts = starts.clone();
        (0..n).step_by(chunk).map(move |from| {
            let a = starts[from];
            let b = starts.get(from + chunk).copied().unwrap_or(text.len());
            format!("{}{}", &text[..a], &text[b..])
        })
    });
    Box::new(by_line.chain(by_chunk))
}
