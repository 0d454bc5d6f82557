//! Unit tests of the bcc dialect pass (translation, dialect detection, errors).

use super::*;

fn run(code: &str, probes: &[(&str, ProbeSection)]) -> Result<Translated, TranslateError> {
    let probes: Vec<(String, ProbeSection)> =
        probes.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    let out = translate(code, &probes);
    if let Ok(t) = &out {
        assert_eq!(
            t.code.lines().count(),
            code.lines().count(),
            "line count changed:\n{}",
            t.code
        );
        assert_eq!(t.code.matches('\n').count(), code.matches('\n').count());
    }
    out
}

fn ok(code: &str, probes: &[(&str, ProbeSection)]) -> Translated {
    run(code, probes).unwrap_or_else(|e| panic!("translate failed: {e}"))
}

fn err(code: &str, probes: &[(&str, ProbeSection)]) -> TranslateError {
    match run(code, probes) {
        Ok(t) => panic!("expected an error, got:\n{}", t.code),
        Err(e) => e,
    }
}

fn table(name: &str, line: u32) -> Table {
    Table {
        name: name.to_string(),
        line,
    }
}

use ProbeSection::{Uprobe, Uretprobe, Usdt};

/// The original project's (josecv/ebpf-userspace-exporter) gunicorn example.
#[test]
fn original_project_gunicorn_example() {
    let code = r#"struct gc_event_t {
    u64 gen;
};

BPF_HASH(gc_counts, struct gc_event_t);

int trace_gc__start(struct pt_regs *ctx) {
    struct gc_event_t e = {};
    int gen = 0;
    bpf_usdt_readarg(1, ctx, &gen);
    e.gen = gen;
    gc_counts.increment(e);
    return 0;
}
"#;
    let expected = r#"struct gc_event_t {
    u64 gen;
};

BPF_HASH(gc_counts, struct gc_event_t);

SEC("usdt") int trace_gc__start(struct pt_regs *ctx) {
    struct gc_event_t e = {};
    int gen = 0;
    bpf_usdt_readarg(1, ctx, &gen);
    e.gen = gen;
    __bcc_increment(&gc_counts, e);
    return 0;
}
"#;
    let out = ok(code, &[("trace_gc__start", Usdt)]);
    assert_eq!(out.code, expected);
    assert_eq!(out.tables, vec![table("gc_counts", 5)]);
    assert!(uses_bcc_dialect(code));
}

/// The original project's redis example.
#[test]
fn original_project_redis_example() {
    let code = r#"#include <uapi/linux/ptrace.h>
#define TOTAL_BUCKETS 32

struct entry_t {
    u64 start_ns;
};

struct latency_key_t {
    u64 slot;
};

BPF_HASH(entryinfo, u64, struct entry_t);
BPF_HISTOGRAM(malloc_latency, struct latency_key_t, TOTAL_BUCKETS + 1);
BPF_PERF_OUTPUT(events);

int trace_entry(struct pt_regs *ctx) {
    u64 tgid_pid = bpf_get_current_pid_tgid();

    struct entry_t entry = {};
    entry.start_ns = bpf_ktime_get_ns();

    entryinfo.update(&tgid_pid, &entry);

    return 0;
}

int trace_return(struct pt_regs *ctx) {
    struct entry_t *entryp;
    u64 tgid_pid = bpf_get_current_pid_tgid();

    entryp = entryinfo.lookup(&tgid_pid);
    if (entryp == 0) {
        return 0;
    }

    u64 delta = bpf_ktime_get_ns() - entryp->start_ns;
    entryinfo.delete(&tgid_pid);

    struct latency_key_t key = {};
    key.slot = bpf_log2l(delta);
    if (key.slot >= TOTAL_BUCKETS) {
        key.slot = TOTAL_BUCKETS - 1;
    }
    malloc_latency.increment(key);

    key.slot = TOTAL_BUCKETS;
    malloc_latency.increment(key, delta);

    return 0;
}
"#;
    let expected = r#"#include <uapi/linux/ptrace.h>
#define TOTAL_BUCKETS 32

struct entry_t {
    u64 start_ns;
};

struct latency_key_t {
    u64 slot;
};

BPF_HASH(entryinfo, u64, struct entry_t);
BPF_HISTOGRAM(malloc_latency, struct latency_key_t, TOTAL_BUCKETS + 1);
BPF_PERF_OUTPUT(events);

SEC("uprobe") int trace_entry(struct pt_regs *ctx) {
    u64 tgid_pid = bpf_get_current_pid_tgid();

    struct entry_t entry = {};
    entry.start_ns = bpf_ktime_get_ns();

    __bcc_update(&entryinfo, &tgid_pid, &entry);

    return 0;
}

SEC("uretprobe") int trace_return(struct pt_regs *ctx) {
    struct entry_t *entryp;
    u64 tgid_pid = bpf_get_current_pid_tgid();

    entryp = __bcc_lookup(&entryinfo, &tgid_pid);
    if (entryp == 0) {
        return 0;
    }

    u64 delta = bpf_ktime_get_ns() - entryp->start_ns;
    __bcc_delete(&entryinfo, &tgid_pid);

    struct latency_key_t key = {};
    key.slot = bpf_log2l(delta);
    if (key.slot >= TOTAL_BUCKETS) {
        key.slot = TOTAL_BUCKETS - 1;
    }
    __bcc_increment(&malloc_latency, key);

    key.slot = TOTAL_BUCKETS;
    __bcc_increment(&malloc_latency, key, delta);

    return 0;
}
"#;
    let out = ok(
        code,
        &[("trace_entry", Uprobe), ("trace_return", Uretprobe)],
    );
    assert_eq!(out.code, expected);
    assert_eq!(
        out.tables,
        vec![
            table("entryinfo", 12),
            table("malloc_latency", 13),
            table("events", 14)
        ]
    );
}

#[test]
fn comments_strings_and_chars_are_left_alone() {
    let code = r#"BPF_HASH(counts, u32);
// counts.increment(k);
/* counts.increment(k);
   counts.lookup(&k); */
int f(struct pt_regs *ctx) {
    u32 k = 0;
    char *s = "counts.increment(k)";
    char *t = "a \" counts.increment(k) \\";
    char c = '"'; counts.increment(k); char d = '\'';
    char *u = "\\"; counts.update(&k, &k); // counts.delete(&k)
    return 0;
}
"#;
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[1], "// counts.increment(k);");
    assert_eq!(lines[2], "/* counts.increment(k);");
    assert_eq!(lines[3], "   counts.lookup(&k); */");
    assert_eq!(lines[6], r#"    char *s = "counts.increment(k)";"#);
    assert_eq!(lines[7], r#"    char *t = "a \" counts.increment(k) \\";"#);
    assert_eq!(
        lines[8],
        r#"    char c = '"'; __bcc_increment(&counts, k); char d = '\'';"#
    );
    assert_eq!(
        lines[9],
        r#"    char *u = "\\"; __bcc_update(&counts, &k, &k); // counts.delete(&k)"#
    );
}

#[test]
fn nested_parentheses_macros_and_several_tables() {
    let code = r#"#define KEY(a, b) ((a) * 2 + (b))
#define SLOTS 16
BPF_ARRAY(hits, u64, SLOTS);
BPF_PERCPU_HASH(bytes, u32, u64, 1024);
BPF_PERCPU_ARRAY(scratch, struct big, 1);
BPF_RINGBUF_OUTPUT(ring, 8);
static u32 make_key(u32 a, u32 b) { return a ^ b; }
int f(struct pt_regs *ctx) {
    u32 a = 1, b = 2;
    hits.increment(make_key(a, (b)), 2);
    bytes.atomic_increment(KEY(a, b), sizeof(struct big) * (a + (b)));
    struct big *p = scratch.lookup(&(u32){0});
    ring.ringbuf_output(p, sizeof(*p), 0);
    return (int)hits.lookup_or_try_init(&a, &(u64){0});
}
"#;
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[0], "#define KEY(a, b) ((a) * 2 + (b))");
    assert_eq!(lines[9], "    __bcc_increment(&hits, make_key(a, (b)), 2);");
    assert_eq!(
        lines[10],
        "    __bcc_atomic_increment(&bytes, KEY(a, b), sizeof(struct big) * (a + (b)));"
    );
    assert_eq!(
        lines[11],
        "    struct big *p = __bcc_lookup(&scratch, &(u32){0});"
    );
    assert_eq!(
        lines[12],
        "    __bcc_ringbuf_output(&ring, p, sizeof(*p), 0);"
    );
    assert_eq!(
        lines[13],
        "    return (int)__bcc_lookup_or_try_init(&hits, &a, &(u64){0});"
    );
    // Only `f` is a probe; the static helper stays as it is.
    assert_eq!(
        lines[6],
        "static u32 make_key(u32 a, u32 b) { return a ^ b; }"
    );
    assert_eq!(lines[7], "SEC(\"usdt\") int f(struct pt_regs *ctx) {");
    let names: Vec<&str> = out.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["hits", "bytes", "scratch", "ring"]);
}

#[test]
fn method_calls_in_macro_bodies() {
    let code = "BPF_HASH(counts, u32);\n\
                    #define BUMP(k) counts.increment(k)\n\
                    #define BUMP_IN(t, k) \\\n    t.increment(k, \\\n    1)\n\
                    #define POP_FROM(s) s.pop()\n\
                    int f(void *ctx) { u32 k = 1; BUMP(k); BUMP_IN(counts, k); return 0; }\n";
    let out = ok(code, &[("f", Uprobe)]);
    let expected = "BPF_HASH(counts, u32);\n\
                        #define BUMP(k) __bcc_increment(&counts, k)\n\
                        #define BUMP_IN(t, k) \\\n    __bcc_increment(&t, k, \\\n    1)\n\
                        #define POP_FROM(s) __bcc_pop(&s)\n\
                        SEC(\"uprobe\") int f(void *ctx) { u32 k = 1; BUMP(k); BUMP_IN(counts, k); return 0; }\n";
    assert_eq!(out.code, expected);
    // A macro parameter is not a table.
    assert_eq!(out.tables, vec![table("counts", 1)]);
}

#[test]
fn table_named_like_a_helper_or_a_method() {
    let code = r#"BPF_HASH(lookup, u32, u64);
BPF_ARRAY(bpf_ktime_get_ns, u64, 1);
int f(struct pt_regs *ctx) {
    u32 k = 0;
    u64 *v = lookup.lookup(&k);
    u64 now = bpf_ktime_get_ns();
    bpf_ktime_get_ns.update(&k, &now);
    lookup.increment(k);
    return 0;
}
"#;
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[4], "    u64 *v = __bcc_lookup(&lookup, &k);");
    assert_eq!(lines[5], "    u64 now = bpf_ktime_get_ns();");
    assert_eq!(lines[6], "    __bcc_update(&bpf_ktime_get_ns, &k, &now);");
    assert_eq!(lines[7], "    __bcc_increment(&lookup, k);");
}

#[test]
fn field_access_and_non_tables_are_left_alone() {
    let code = r#"BPF_HASH(counts, u32);
int f(struct pt_regs *ctx) {
    x.counts.increment(1);
    p->counts.increment(1);
    s.increment(2);
    s.get_stackid(ctx, 0);
    counts.increment(3);
    return counts . lookup (&k) != 0;
}
"#;
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[2], "    x.counts.increment(1);");
    assert_eq!(lines[3], "    p->counts.increment(1);");
    assert_eq!(lines[4], "    s.increment(2);");
    assert_eq!(lines[5], "    s.get_stackid(ctx, 0);");
    assert_eq!(lines[6], "    __bcc_increment(&counts, 3);");
    assert_eq!(lines[7], "    return __bcc_lookup(&counts, &k) != 0;");
}

#[test]
fn multi_line_calls_keep_their_lines() {
    let code = "BPF_HASH(counts, struct key_t, u64);\n\
                    int f(struct pt_regs *ctx) {\n\
                    \x20   counts\n\
                    \x20       .increment(\n\
                    \x20           key,\n\
                    \x20           (u64)(1 +\n\
                    \x20               2));\n\
                    \x20   counts.pop(\n\
                    );\n\
                    \x20   return 0;\n\
                    }\n";
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[2], "    __bcc_increment(&counts, ");
    assert_eq!(lines[3], "");
    assert_eq!(lines[4], "            key,");
    assert_eq!(lines[6], "                2));");
    assert_eq!(lines[7], "    __bcc_pop(&counts");
    assert_eq!(lines[8], ");");
}

#[test]
fn bpf_table_is_rewritten_by_type() {
    let code = r#"BPF_TABLE("hash", u32, u64, counts, 1024);
BPF_TABLE("lru_percpu_hash",
          struct key_t, u64, recent, 128);
BPF_TABLE( "array" , int, u64, slots, 8);
int f(struct pt_regs *ctx) { u32 k = 0; counts.increment(k); recent.delete(&k); return 0; }
"#;
    let out = ok(code, &[("f", Usdt)]);
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[0], "BPF_TABLE_hash(u32, u64, counts, 1024);");
    assert_eq!(lines[1], "BPF_TABLE_lru_percpu_hash(");
    assert_eq!(lines[2], "          struct key_t, u64, recent, 128);");
    assert_eq!(lines[3], "BPF_TABLE_array(int, u64, slots, 8);");
    assert!(lines[4].contains("__bcc_increment(&counts, k); __bcc_delete(&recent, &k);"));
    assert_eq!(
        out.tables,
        vec![table("counts", 1), table("recent", 2), table("slots", 4)]
    );
}

#[test]
fn sections_respect_existing_sec_and_prototypes() {
    let code = r#"static int helper(int x);
int trace_a(struct pt_regs *ctx);
static int
trace_a(struct pt_regs *ctx)
{
    return helper(trace_b(ctx));
}
SEC("usdt/python:gc__start") int trace_b(struct pt_regs *ctx) { return 0; }
static __always_inline int __attribute__((unused))
trace_c(struct pt_regs *ctx, int x) { return x; }
int trace_d(void *ctx) __attribute__((section("uprobe"))) { return 0; }
"#;
    let out = ok(
        code,
        &[
            ("trace_a", Uprobe),
            ("trace_b", Usdt),
            ("trace_c", Uretprobe),
            ("trace_a", Uretprobe),
            ("trace_d", Uprobe),
        ],
    );
    let lines: Vec<&str> = out.code.lines().collect();
    assert_eq!(lines[0], "static int helper(int x);");
    assert_eq!(lines[1], "int trace_a(struct pt_regs *ctx);");
    // First kind given wins.
    assert_eq!(lines[2], "SEC(\"uprobe\") static int");
    assert_eq!(lines[3], "trace_a(struct pt_regs *ctx)");
    assert_eq!(lines[5], "    return helper(trace_b(ctx));");
    assert_eq!(
        lines[7],
        "SEC(\"usdt/python:gc__start\") int trace_b(struct pt_regs *ctx) { return 0; }"
    );
    assert_eq!(
        lines[8],
        "SEC(\"uretprobe\") static __always_inline int __attribute__((unused))"
    );
    assert_eq!(lines[10], code.lines().nth(10).unwrap());
    assert!(!uses_bcc_dialect(code));
}

#[test]
fn section_goes_after_a_table_declaration_without_semicolon() {
    let code = "BPF_PERF_OUTPUT(events)\nint f(struct pt_regs *ctx) { return 0; }\n";
    let out = ok(code, &[("f", Usdt)]);
    assert_eq!(
        out.code,
        "BPF_PERF_OUTPUT(events)\nSEC(\"usdt\") int f(struct pt_regs *ctx) { return 0; }\n"
    );
}

#[test]
fn unsupported_table_kinds_name_their_line() {
    let e = err(
        "struct k { u32 a; };\n\nBPF_STACK_TRACE(stacks, 1024);\n",
        &[],
    );
    assert_eq!(e.line(), 3);
    assert!(
        e.to_string().starts_with("line 3: `BPF_STACK_TRACE`"),
        "{e}"
    );
    assert!(
        e.message().contains("stack traces are not supported"),
        "{e}"
    );

    let e = err(
        "\nBPF_TABLE_PINNED(\"hash\", u32, u64, t, 8, \"/sys/fs/bpf/t\");\n",
        &[],
    );
    assert_eq!(e.line(), 2);
    assert!(e.message().contains("BPF_TABLE_PINNED"), "{e}");

    let e = err("BPF_TABLE_PUBLIC(\"hash\", u32, u64, t, 8);\n", &[]);
    assert_eq!(e.line(), 1);

    let e = err("\n\n\n\nBPF_PROG_ARRAY(jumps, 8);\n", &[]);
    assert_eq!(e.line(), 5);
    assert!(e.message().contains("BPF_PROG_ARRAY"), "{e}");

    let e = err("// x\nBPF_TABLE(\"hashmap\", u32, u64, t, 8);\n", &[]);
    assert_eq!(e.line(), 2);
    assert!(e.message().contains("\"hashmap\""), "{e}");
    assert!(e.message().contains("hash, array"), "{e}");

    let e = err("BPF_TABLE(\"stacktrace\", int, struct s, st, 8);\n", &[]);
    assert!(e.message().contains("stack traces"), "{e}");

    // Mentioned only in a comment or string: fine.
    ok(
        "// BPF_STACK_TRACE(s, 1)\nchar *x = \"BPF_PROG_ARRAY(p, 1)\";\n",
        &[],
    );
}

#[test]
fn unknown_method_names_table_method_and_line() {
    let code = r#"BPF_HASH(counts, u32);
int f(struct pt_regs *ctx) {
    u32 k = 0;
    counts.increment(k);
    int id = counts.get_stackid(ctx, 0);
    return id;
}
"#;
    let e = err(code, &[("f", Usdt)]);
    assert_eq!(e.line(), 5);
    let msg = e.to_string();
    assert!(
        msg.starts_with("line 5: table `counts` has no method `get_stackid` in this exporter; supported: increment, "),
        "{msg}"
    );
}

#[test]
fn missing_function_is_an_error() {
    let code = "BPF_HASH(counts, u32);\nint trace_b(struct pt_regs *ctx);\nint g(void) { return trace_b(0); }\n";
    let e = err(code, &[("trace_b", Uretprobe)]);
    assert_eq!(e.line(), 0);
    assert_eq!(
        e.to_string(),
        "BPF function `trace_b` named in `uretprobes` is not defined in `code`"
    );
    let e = err("", &[("x", Usdt)]);
    assert!(e.message().contains("`usdt`"));
    // Named only in a comment.
    let e = err("// int x(void *ctx) {}\n", &[("x", Uprobe)]);
    assert!(e.message().contains("`uprobes`"));
}

#[test]
fn table_declared_twice_under_ifdef_is_listed_once() {
    let code = "#ifdef WIDE\nBPF_HASH(counts, u64);\n#else\nBPF_HASH(counts, u32);\n#endif\n";
    let out = ok(code, &[]);
    assert_eq!(out.code, code);
    assert_eq!(out.tables, vec![table("counts", 2)]);
}

#[test]
fn crlf_and_no_trailing_newline() {
    let code = "BPF_HASH(c, u32);\r\nint f(void *ctx) {\r\n  c.increment(1);\r\n  return 0;\r\n}";
    let out = ok(code, &[("f", Usdt)]);
    assert_eq!(
        out.code,
        "BPF_HASH(c, u32);\r\nSEC(\"usdt\") int f(void *ctx) {\r\n  __bcc_increment(&c, 1);\r\n  return 0;\r\n}"
    );
}

/// A rewritten call keeps every line break it spans as written: a lone `\r`
/// (a line to clang) and `\r\n`, also as a continuation in a macro (found
/// by fuzzing: the lone `\r` was dropped).
#[test]
fn rewritten_calls_keep_carriage_returns() {
    let code = "BPF_HASH(c, u32);\nint f(void *ctx) { c.increment\r(1); return 0; }";
    let out = ok(code, &[]);
    assert_eq!(
        out.code,
        "BPF_HASH(c, u32);\nint f(void *ctx) { __bcc_increment(&c, \r1); return 0; }"
    );
    let code = "BPF_HASH(c, u32);\n#define M(t) t.increment\\\r\n(1)\r\n";
    let out = ok(code, &[]);
    assert_eq!(
        out.code,
        "BPF_HASH(c, u32);\n#define M(t) __bcc_increment(&t, \\\r\n1)\r\n"
    );
}

#[test]
fn detects_the_bcc_dialect() {
    assert!(uses_bcc_dialect("BPF_ARRAY(a, u64, 4);"));
    assert!(uses_bcc_dialect("BPF_TABLE(\"hash\", u32, u64, t, 8);"));
    assert!(uses_bcc_dialect("BPF_STACK_TRACE(s, 8);"));
    assert!(uses_bcc_dialect(
        "int f(void *c) { t.perf_submit(c, &d, 8); return 0; }"
    ));
    let libbpf = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u64);
    __type(value, u64);
} gc_counts SEC(".maps");

SEC("usdt")
int BPF_USDT(gc_start, int gen) {
    u64 key = gen, one = 1, *v = bpf_map_lookup_elem(&gc_counts, &key);
    if (v) __sync_fetch_and_add(v, 1);
    else bpf_map_update_elem(&gc_counts, &key, &one, BPF_NOEXIST);
    // gc_counts.increment(key) in bcc
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;
    assert!(!uses_bcc_dialect(libbpf));
    assert!(!uses_bcc_dialect("#define BPF_HASH(n) struct n\n"));
    assert!(!uses_bcc_dialect("x.counts.increment(1);"));
}

#[test]
fn libbpf_code_passes_through_unchanged() {
    let code = "struct {\n    __uint(type, BPF_MAP_TYPE_ARRAY);\n} m SEC(\".maps\");\nSEC(\"uprobe\")\nint f(struct pt_regs *ctx) { return 0; }\n";
    let out = ok(code, &[("f", Uprobe)]);
    assert_eq!(out.code, code);
    assert!(out.tables.is_empty());
}
/// Random mixes of tricky fragments never panic and never move a line.
#[test]
fn random_fragments_keep_lines() {
    const PIECES: &[&str] = &[
        "BPF_HASH(t, u32);",
        "t.increment(k",
        ")",
        "(",
        ", ",
        "\n",
        "\r\n",
        "\\\n",
        "//",
        "/*",
        "*/",
        "\"",
        "'",
        "\\",
        "#define M(t) ",
        "#",
        " t . lookup (",
        "x.t.",
        "->",
        "int f(void *ctx) {",
        "}",
        "{",
        ";",
        "SEC(\"x\") ",
        "é",
        "1.5e+3",
        ".",
        "BPF_TABLE(\"hash\", u32, u64, h, 8)",
        "h.pop()",
        "static ",
        "*",
        "f",
        "t",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut code = String::new();
        for _ in 0..next() % 40 {
            code.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let probes = match next() % 2 {
            0 => vec![("f".to_string(), Usdt)],
            _ => vec![],
        };
        if let Ok(t) = translate(&code, &probes) {
            assert_eq!(
                t.code.matches('\n').count(),
                code.matches('\n').count(),
                "{code:?}"
            );
        }
        let _ = uses_bcc_dialect(&code);
    }
}
