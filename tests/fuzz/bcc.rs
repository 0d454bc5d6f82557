//! The bcc rewriter on arbitrary C: `translate` never panics, and its output
//! has the input's lines (the property that maps clang's diagnostics back to
//! config lines); errors and tables name lines of the input.

use crate::engine::{self, generate_text, shrink_text, Behaviour, Rng, Target};
use crate::seeds;
use userspace_exporter::compile::bcc::{translate, uses_bcc_dialect, ProbeSection};

/// C tokens and bcc constructs.
const DICTIONARY: &[&str] = &[
    "BPF_HASH(",
    "BPF_HASH(counts, u32);",
    "BPF_HASH(counts, struct key_t, u64, 10240);",
    "BPF_ARRAY(a, u64, 4);",
    "BPF_HISTOGRAM(h);",
    "BPF_HISTOGRAM(h, int, 64);",
    "BPF_PERCPU_HASH(p, u32);",
    "BPF_PERCPU_ARRAY(pa, u64, 2);",
    "BPF_TABLE(\"hash\", u32, u64, t, 1024);",
    "BPF_TABLE(\"lru_hash\", u32, u64, t, 8);",
    "BPF_TABLE(\"lpm\", u32, u64, t, 1);",
    "BPF_TABLE(",
    "BPF_TABLE(x, ",
    "BPF_STACK_TRACE(st, 10);",
    "BPF_PERF_OUTPUT(events);",
    "BPF_RINGBUF_OUTPUT(rb, 8);",
    "BPF_QUEUE(q, u32, 8);",
    "BPF_TABLE_PINNED(",
    "BPF_PROG_ARRAY(pa, 4);",
    ".increment(",
    ".increment(k);",
    ".atomic_increment(k, 2);",
    ".lookup(&k)",
    ".lookup_or_init(&k, &zero)",
    ".lookup_or_try_init(&k, &zero)",
    ".update(&k, &v)",
    ".insert(&k, &v)",
    ".delete(&k)",
    ".perf_submit(ctx, &e, sizeof(e))",
    ".ringbuf_output(&e, sizeof(e), 0)",
    ".push(&v, 0)",
    ".pop(&v)",
    ".peek(&v)",
    "counts.increment(key);",
    "->",
    ".",
    "SEC(\"usdt\")",
    "SEC(\"uprobe\") ",
    "int trace_x(struct pt_regs *ctx) {",
    "int trace_y(struct pt_regs *ctx)",
    "int f(void) { return 0; }",
    "#define T(x) x.increment(1)\n",
    "#define ",
    "#define BPF_HASH(a, b) x\n",
    "#include <uapi/linux/ptrace.h>\n",
    "/*",
    "*/",
    "//",
    "\"",
    "'",
    "\\\n",
    "\\",
    "R\"(",
    ")\"",
    "{",
    "}",
    "(",
    ")",
    ";",
    ",",
    "??/",
    "\r\n",
    "\r",
    "\n",
    "0x",
    "1.5e3",
    "'\\''",
    "\"\\\"\"",
    "L\"x\"",
    "u8\"x\"",
    "// probe: trace_missing\n",
    "int ",
    "static ",
    "inline ",
    "__attribute__((always_inline)) ",
    "return 0;",
    "struct key_t k = {};",
    "bpf_usdt_readarg(1, ctx, &x);",
    "#if 0\n",
    "#endif\n",
    "struct key_t { u64 gen; };",
    "u64 *v = ",
    "&",
    "*",
    "[",
    "]",
    "sizeof(",
    "=",
    "==",
];

pub struct BccTarget {
    seeds: Vec<String>,
}

impl BccTarget {
    pub fn new() -> BccTarget {
        let mut seeds = seeds::c_sources();
        for (_, bytes) in engine::regression_files("bcc") {
            seeds.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        BccTarget { seeds }
    }
}

/// The probes a config would attach, read from the code itself so that an
/// input is just its text: every `int NAME(` is a probe function, and a
/// comment `// probe: NAME` names one that may not be defined. The kind
/// follows from the name, so it is reproducible.
fn probes_of(code: &str) -> Vec<(String, ProbeSection)> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices("int ") {
        let rest = &code[i + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with('(') {
            names.push(name);
        }
    }
    for (i, _) in code.match_indices("// probe: ") {
        let name: String = code[i + 10..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        names.push(name);
    }
    names
        .into_iter()
        .map(|name| {
            let kind = match engine::hash64(&name) % 3 {
                0 => ProbeSection::Usdt,
                1 => ProbeSection::Uprobe,
                _ => ProbeSection::Uretprobe,
            };
            (name, kind)
        })
        .collect()
}

impl Target for BccTarget {
    type Input = String;

    fn name(&self) -> &'static str {
        "bcc"
    }

    fn ci_executions(&self) -> u64 {
        5_000
    }

    fn seeds(&self) -> Vec<String> {
        self.seeds.clone()
    }

    fn generate(&self, rng: &mut Rng, corpus: &[String]) -> String {
        generate_text(rng, corpus, DICTIONARY, 60, " ")
    }

    fn run(&self, code: &String) -> Result<Behaviour, String> {
        let lines = code.matches('\n').count() + 1;
        let dialect = uses_bcc_dialect(code);
        let probes = probes_of(code);
        match translate(code, &probes) {
            Ok(t) => {
                for (what, c) in [("newlines", '\n'), ("carriage returns", '\r')] {
                    let (before, after) = (code.matches(c).count(), t.code.matches(c).count());
                    if before != after {
                        return Err(format!(
                            "the rewrite changed the number of {what}: from {before} to {after}"
                        ));
                    }
                }
                for table in &t.tables {
                    if table.line == 0 || table.line as usize > lines {
                        return Err(format!(
                            "a table outside the code: {:?} at line {} of {lines}",
                            table.name, table.line
                        ));
                    }
                }
                Ok(format!(
                    "ok dialect={dialect} tables={} probes={} changed={}",
                    t.tables.len().min(3),
                    probes.len().min(3),
                    t.code != *code
                ))
            }
            Err(e) => {
                let shown = e.to_string();
                if e.line() as usize > lines || e.message().is_empty() {
                    return Err(format!(
                        "an error outside the code: line {} of {lines}, {shown}",
                        e.line()
                    ));
                }
                let kind: String = e.message().chars().take(40).collect();
                Ok(format!("err dialect={dialect} {kind}"))
            }
        }
    }

    fn shrink(&self, code: &String) -> Box<dyn Iterator<Item = String>> {
        shrink_text(code)
    }

    fn save(&self, code: &String) -> Vec<u8> {
        code.as_bytes().to_vec()
    }

    fn extension(&self) -> &'static str {
        "c"
    }

    fn allocation_bound(&self, code: &String) -> usize {
        (16 << 20) + 64 * code.len()
    }
}
