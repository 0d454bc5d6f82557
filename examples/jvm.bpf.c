// OpenJDK 17 HotSpot (Debian's openjdk-17, probes in lib/server/libjvm.so):
// garbage collections and their pauses (USDT hotspot:gc__begin/gc__end),
// Java threads started and stopped (hotspot:thread__start/thread__stop),
// classes loaded (hotspot:class__loaded) and safepoint times
// (hs_private:safepoint__begin/safepoint__end).
//
// Every probe used here fires WITHOUT -XX:+ExtendedDTraceProbes. That flag
// (or its parts -XX:+DTraceMethodProbes, -XX:+DTraceAllocProbes,
// -XX:+DTraceMonitorProbes) only enables hotspot:method__entry and
// method__return, hotspot:object__alloc, and the monitor probes
// (monitor__contended__enter/entered/exit, monitor__wait/waited,
// monitor__notify/notifyAll); they cost the JVM a lot and are not used here.
//
// Arguments (HotSpot 17, as readelf -n shows them in libjvm.so):
//   gc__begin(bool full): true for a full collection (what System.gc()
//     asks for), false for a young one;
//   gc__end(): no arguments;
//   thread__start/thread__stop(char *name, int name_len, long java_tid,
//     uintptr_t os_tid, bool daemon);
//   class__loaded(char *name, int name_len, void *class_loader_data,
//     bool shared): shared is true for a class from the CDS archive;
//   safepoint__begin(), safepoint__end(): no arguments.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c jvm.bpf.c -o jvm.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "exporter_pids.bpf.h"
#include "metrics.bpf.h"


// Collections by the `full` argument of gc__begin (0 or 1).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_collections SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_pause SEC(".maps");

// Threads by the `daemon` argument (0 or 1).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} threads_started SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} threads_stopped SEC(".maps");

// Classes by the `shared` argument (0 or 1: from the CDS archive).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} classes_loaded SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} safepoint_time SEC(".maps");

// Start timestamps by thread id (the VM thread runs both).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} gc_started SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} safepoint_started SEC(".maps");

// A bool argument as 0 or 1.
static __always_inline __u64 flag(struct pt_regs *ctx, __u64 n) {
    long value = 0;
    bpf_usdt_arg(ctx, n, &value);
    return value != 0;
}

SEC("usdt")
int on_gc_begin(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&gc_collections, flag(ctx, 0), 1);
    start(&gc_started);
    return 0;
}

SEC("usdt")
int on_gc_end(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    finish(&gc_started, &gc_pause);
    return 0;
}

SEC("usdt")
int on_thread_start(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&threads_started, flag(ctx, 4), 1);
    return 0;
}

SEC("usdt")
int on_thread_stop(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&threads_stopped, flag(ctx, 4), 1);
    return 0;
}

SEC("usdt")
int on_class_loaded(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    add_u64(&classes_loaded, flag(ctx, 3), 1);
    return 0;
}

SEC("usdt")
int on_safepoint_begin(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    start(&safepoint_started);
    return 0;
}

SEC("usdt")
int on_safepoint_end(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    finish(&safepoint_started, &safepoint_time);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
