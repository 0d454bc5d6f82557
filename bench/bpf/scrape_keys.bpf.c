// The scrape-cost benchmark's map: USDT bench:key(i) counts key i, so a target
// firing it for i in 0..N leaves N keys to scrape. MAX_KEYS is set at build.
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

#ifndef MAX_KEYS
#define MAX_KEYS 1024
#endif

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_KEYS);
    __type(key, __u64);
    __type(value, __u64);
} scrape_keys SEC(".maps");

SEC("usdt")
int on_key(struct pt_regs *ctx) {
    long key = 0;
    __u64 one = 1, *n;
    bpf_usdt_arg(ctx, 0, &key);
    __u64 k = key;
    n = bpf_map_lookup_elem(&scrape_keys, &k);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(&scrape_keys, &k, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
