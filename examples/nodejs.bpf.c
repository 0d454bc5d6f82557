// Node.js (V8): garbage collections by kind and their pauses, from a
// uprobe/uretprobe pair on V8's Heap::PerformGarbageCollection, which runs
// each collection on the thread that does it (the atomic pause):
//   V8 10.2 (Node.js 18): PerformGarbageCollection(GarbageCollector,
//     GarbageCollectionReason, const char*, GCCallbackFlags)
//   V8 11.3 and 12.4 (Node.js 20, 22): PerformGarbageCollection(
//     GarbageCollector, GarbageCollectionReason, const char*)
// The first argument after `this` is the collector: 0 scavenger,
// 1 mark-compactor, 2 minor mark-compactor (MinorMarkSweeper since V8 12;
// off by default). The spec names it by its C++ name without parameter list,
// so one config fits all three.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c nodejs.bpf.c -o nodejs.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "exporter_pids.bpf.h"
#include "metrics.bpf.h"

// Collections by collector, counted when they end.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_collections SEC(".maps");

// Pause histogram keyed by (pid, collector, exp2 slot of the pause in ns).
struct pause_key {
    __u64 pid;
    __u64 collector;
    __u64 slot;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct pause_key);
    __type(value, __u64);
} gc_pause SEC(".maps");

// The collection a thread is in (main thread, or a worker's isolate).
struct in_progress {
    __u64 collector;
    __u64 started_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, struct in_progress);
} gc_threads SEC(".maps");

SEC("uprobe")
int on_gc_start(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct in_progress now = {
        .collector = (__u32)PT_REGS_PARM2(ctx),
        .started_ns = bpf_ktime_get_ns(),
    };
    bpf_map_update_elem(&gc_threads, &tid, &now, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int on_gc_done(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct in_progress *started = bpf_map_lookup_elem(&gc_threads, &tid);
    if (!started)
        return 0;
    __u64 collector = started->collector;
    __u64 pause = bpf_ktime_get_ns() - started->started_ns;
    bpf_map_delete_elem(&gc_threads, &tid);

    add_u64(&gc_collections, collector, 1);
    struct pause_key key = {
        .pid = exporter_pid(), .collector = collector, .slot = exp2_slot(pause)};
    add(&gc_pause, &key, 1);
    key.slot = SLOT_MAX + 1;
    add(&gc_pause, &key, pause);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
