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
#include "metrics.bpf.h"


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
    __u64 ns = bpf_ktime_get_ns() - *t0;
    bpf_map_delete_elem(&started, &tid);
    observe(&resolve_latency, ns);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
