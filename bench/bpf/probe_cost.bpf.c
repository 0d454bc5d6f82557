// The exporter's side of the probe-cost benchmark: each probe adds one to a
// per-CPU counter, the same work as bpftrace's `@ = count()`.
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} hits SEC(".maps");

static __always_inline int count(void) {
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&hits, &zero);
    if (n)
        *n += 1;
    return 0;
}

SEC("usdt")
int on_usdt(struct pt_regs *ctx) { return count(); }

SEC("uprobe")
int on_uprobe(struct pt_regs *ctx) { return count(); }

SEC("uretprobe")
int on_uretprobe(struct pt_regs *ctx) { return count(); }

char LICENSE[] SEC("license") = "GPL";
