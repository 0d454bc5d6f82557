// CPython 3.11 garbage collection in detail, from USDT gc__start/gc__done:
// one struct value per generation feeds several counters and gauges
// (collections, objects found, pause time, the last collection's finds and
// the longest pause), an in-flight gauge says whether a collection runs now,
// and an exp2 histogram of pause times per generation (exported as a
// Prometheus native histogram to scrapers that ask for one).
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c python_gc_detail.bpf.c -o python_gc_detail.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "metrics.bpf.h"

// Everything about one generation's collections (the config reads each
// member by name, through this struct's BTF).
struct generation_stats {
    __u64 collections;
    __u64 found;        // collected + uncollectable, over all collections
    __u64 pause_ns;     // total
    __s64 last_found;   // of the latest collection
    __u64 max_pause_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8);
    __type(key, __u64);
    __type(value, struct generation_stats);
} gc_generations SEC(".maps");

// Collections running now (+1 at gc__start, -1 at gc__done), one slot.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __s64);
} gc_running SEC(".maps");

// Pause histogram keyed by (generation, exp2 slot of the pause in ns).
struct pause_key {
    __u64 generation;
    __u64 slot;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, struct pause_key);
    __type(value, __u64);
} gc_pauses SEC(".maps");

// The collection a thread is in: its generation and start time.
struct in_progress {
    __u64 generation;
    __u64 started_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct in_progress);
} gc_threads SEC(".maps");

static __always_inline void running_add(__s64 n) {
    __u32 zero = 0;
    __s64 *v = bpf_map_lookup_elem(&gc_running, &zero);
    if (v)
        __sync_fetch_and_add(v, n);
}

SEC("usdt")
int on_gc_start(struct pt_regs *ctx) {
    long generation = 0;
    bpf_usdt_arg(ctx, 0, &generation);
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct in_progress now = {.generation = generation, .started_ns = bpf_ktime_get_ns()};
    bpf_map_update_elem(&gc_threads, &tid, &now, BPF_ANY);
    running_add(1);
    return 0;
}

SEC("usdt")
int on_gc_done(struct pt_regs *ctx) {
    long found = 0;
    bpf_usdt_arg(ctx, 0, &found);
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct in_progress *started = bpf_map_lookup_elem(&gc_threads, &tid);
    if (!started)
        return 0;
    running_add(-1);
    __u64 generation = started->generation;
    __u64 pause = bpf_ktime_get_ns() - started->started_ns;
    bpf_map_delete_elem(&gc_threads, &tid);

    struct generation_stats zero = {}, *s = bpf_map_lookup_elem(&gc_generations, &generation);
    if (!s) {
        bpf_map_update_elem(&gc_generations, &generation, &zero, BPF_NOEXIST);
        s = bpf_map_lookup_elem(&gc_generations, &generation);
        if (!s)
            return 0;
    }
    __sync_fetch_and_add(&s->collections, 1);
    if (found > 0)
        __sync_fetch_and_add(&s->found, found);
    __sync_fetch_and_add(&s->pause_ns, pause);
    s->last_found = found;
    if (pause > s->max_pause_ns)
        s->max_pause_ns = pause;

    struct pause_key key = {.generation = generation, .slot = exp2_slot(pause)};
    add(&gc_pauses, &key, 1);
    key.slot = SLOT_MAX + 1;
    add(&gc_pauses, &key, pause);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
