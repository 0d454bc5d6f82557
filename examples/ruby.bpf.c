// Ruby 3.1 (Debian's ruby3.1; the probes live in libruby-3.1.so.3.1): GC
// mark and sweep phases, counted and timed (USDT gc__mark__begin/end,
// gc__sweep__begin/end), and object allocations by type (array__create,
// hash__create, string__create, object__create with the class name).
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c ruby.bpf.c -o ruby.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "exporter_pids.bpf.h"
#include "metrics.bpf.h"


// Allocation key: the process, the probe's type and, for object__create, the
// class name.
#define TYPE_LEN 8
#define CLASS_LEN 56

struct alloc_key {
    __u64 pid;
    char type[TYPE_LEN];
    char class_name[CLASS_LEN];
};

// One key (0) each: the number of mark and sweep phases begun.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_marks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_sweeps SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_mark_time SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_sweep_time SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct alloc_key);
    __type(value, __u64);
} allocations SEC(".maps");

// Start timestamps by thread id.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} mark_started SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} sweep_started SEC(".maps");

// Counts one allocation of `kind` (a string literal of at most TYPE_LEN bytes
// with its NUL) and class `cls` (a user pointer, or 0).
#define COUNT_ALLOC(kind, cls)                                                     \
    do {                                                                           \
        struct alloc_key key = {.pid = exporter_pid()};                            \
        _Static_assert(sizeof(kind) <= TYPE_LEN, "type name too long");            \
        __builtin_memcpy(key.type, kind, sizeof(kind));                            \
        if (cls)                                                                   \
            bpf_probe_read_user_str(key.class_name, sizeof(key.class_name),        \
                                    (const void *)(cls));                          \
        add(&allocations, &key, 1);                                                \
    } while (0)

SEC("usdt")
int on_mark_begin(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&gc_marks, 0, 1);
    start(&mark_started);
    return 0;
}

SEC("usdt")
int on_mark_end(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    finish(&mark_started, &gc_mark_time);
    return 0;
}

SEC("usdt")
int on_sweep_begin(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&gc_sweeps, 0, 1);
    start(&sweep_started);
    return 0;
}

SEC("usdt")
int on_sweep_end(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    finish(&sweep_started, &gc_sweep_time);
    return 0;
}

// array__create(length, filename, line)
SEC("usdt")
int on_array_create(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    COUNT_ALLOC("array", 0);
    return 0;
}

// hash__create(length, filename, line)
SEC("usdt")
int on_hash_create(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    COUNT_ALLOC("hash", 0);
    return 0;
}

// string__create(length, filename, line)
SEC("usdt")
int on_string_create(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    COUNT_ALLOC("string", 0);
    return 0;
}

// object__create(class name, filename, line)
SEC("usdt")
int on_object_create(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    long class_name = 0;
    bpf_usdt_arg(ctx, 0, &class_name);
    COUNT_ALLOC("object", class_name);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
