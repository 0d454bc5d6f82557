// CPython 3.11 (Debian's /usr/bin/python3.11): garbage collections per
// generation, the objects they found unreachable and their pause times (USDT
// gc__start/gc__done), and the calls
// and latency of PyImport_ImportModuleLevelObject (uprobe + uretprobe), which
// every `import` statement goes through.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c python.bpf.c -o python.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "metrics.bpf.h"


struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8);
    __type(key, __u64);
    __type(value, __u64);
} gc_collections SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} gc_pause SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} import_latency SEC(".maps");

// Objects each collection found unreachable (gc__done's argument), by generation.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8);
    __type(key, __u64);
    __type(value, __u64);
} gc_collected SEC(".maps");

// The generation being collected, by thread id (gc__done does not carry it).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u64);
} gc_generation SEC(".maps");

// Start timestamps by thread id.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u64);
} gc_started SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u64);
} import_started SEC(".maps");

SEC("usdt")
int on_gc_start(struct pt_regs *ctx) {
    long generation = 0;
    bpf_usdt_arg(ctx, 0, &generation);
    add_u64(&gc_collections, generation, 1);
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 gen = generation;
    bpf_map_update_elem(&gc_generation, &tid, &gen, BPF_ANY);
    start(&gc_started);
    return 0;
}

SEC("usdt")
int on_gc_done(struct pt_regs *ctx) {
    long found = 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *gen = bpf_map_lookup_elem(&gc_generation, &tid);
    // CPython 3.11 passes collected + uncollectable objects.
    bpf_usdt_arg(ctx, 0, &found);
    if (gen && found > 0)
        add_u64(&gc_collected, *gen, found);
    bpf_map_delete_elem(&gc_generation, &tid);
    finish(&gc_started, &gc_pause);
    return 0;
}

SEC("uprobe")
int on_import_entry(struct pt_regs *ctx) {
    start(&import_started);
    return 0;
}

SEC("uretprobe")
int on_import_return(struct pt_regs *ctx) {
    finish(&import_started, &import_latency);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
