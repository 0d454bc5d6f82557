// The scrape-size benchmark's histograms: USDT bench:key(i) observes four
// latency-like values derived from i (256 ns to 16 ms, spread by a
// multiplicative hash, different per histogram), each into an exp2 histogram
// of slots 0..31 with the sum in slot 32, the layout of the examples' latency
// histograms.
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

#define SLOT_MAX 31

#define HISTOGRAM(name)                                                                            \
    struct {                                                                                       \
        __uint(type, BPF_MAP_TYPE_HASH);                                                           \
        __uint(max_entries, SLOT_MAX + 2);                                                         \
        __type(key, __u64);                                                                        \
        __type(value, __u64);                                                                      \
    } name SEC(".maps");

HISTOGRAM(latency_0)
HISTOGRAM(latency_1)
HISTOGRAM(latency_2)
HISTOGRAM(latency_3)

static __always_inline void add(void *map, __u64 slot, __u64 n) {
    __u64 *v = bpf_map_lookup_elem(map, &slot);
    if (v)
        __sync_fetch_and_add(v, n);
    else
        bpf_map_update_elem(map, &slot, &n, BPF_NOEXIST);
}

static __always_inline void observe(void *map, __u64 i, __u64 j) {
    __u64 x = (i + j * 7919) * 0x9E3779B97F4A7C15ULL;
    __u64 value = 256 + (x >> (40 + (i + j) % 8));
    __u64 slot = 0;
    // Slot k holds values up to 2^k.
    for (int k = 0; k < SLOT_MAX; k++) {
        if (((__u64)1 << slot) >= value)
            break;
        slot++;
    }
    add(map, slot, 1);
    add(map, SLOT_MAX + 1, value);
}

SEC("usdt")
int on_key(struct pt_regs *ctx) {
    long i = 0;
    bpf_usdt_arg(ctx, 0, &i);
    observe(&latency_0, i, 0);
    observe(&latency_1, i, 1);
    observe(&latency_2, i, 2);
    observe(&latency_3, i, 3);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
