// Any C program: calls of libc's getaddrinfo() by result and their latency,
// from a uprobe/uretprobe pair on libc.so.6. Name resolution is a classic
// hidden stall (a slow DNS server, a missing /etc/hosts entry); this shows it
// per process without touching the program.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c libc_getaddrinfo.bpf.c -o libc_getaddrinfo.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

// exp2 slots 0..31 (ns), slot 32 holds the sum in ns.
#define SLOT_MAX 31

// Key: getaddrinfo's return value (0, or an EAI_* code, negative).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __s64);
    __type(value, __u64);
} calls_by_result SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} resolve_latency SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u64);
} started SEC(".maps");

static __always_inline void add(void *map, const void *key, __u64 n) {
    __u64 *v = bpf_map_lookup_elem(map, key);
    if (v) {
        __sync_fetch_and_add(v, n);
        return;
    }
    if (bpf_map_update_elem(map, key, &n, BPF_NOEXIST) != 0) {
        v = bpf_map_lookup_elem(map, key);
        if (v)
            __sync_fetch_and_add(v, n);
    }
}

// The smallest k with value <= 2^k, capped at SLOT_MAX.
static __always_inline __u64 exp2_slot(__u64 value) {
    __u64 slot = 0;
    for (int i = 0; i < SLOT_MAX; i++) {
        if (((__u64)1 << slot) >= value)
            break;
        slot++;
    }
    return slot;
}

SEC("uprobe")
int on_getaddrinfo(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&started, &tid, &now, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(on_getaddrinfo_return, int rc) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __s64 result = rc;
    add(&calls_by_result, &result, 1);
    __u64 *t0 = bpf_map_lookup_elem(&started, &tid);
    if (!t0)
        return 0;
    __u64 ns = bpf_ktime_get_ns() - *t0, slot = exp2_slot(ns), sum = SLOT_MAX + 1;
    bpf_map_delete_elem(&started, &tid);
    add(&resolve_latency, &slot, 1);
    add(&resolve_latency, &sum, ns);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
