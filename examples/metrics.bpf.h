// Helpers the example programs share: adding to counters and recording
// durations into the exp2 histograms their configs read (slots 0..SLOT_MAX
// count observations of at most 2^slot ns; slot SLOT_MAX + 1 holds the sum in
// ns). Included as "metrics.bpf.h" from beside the .bpf.c file; it needs
// <bpf/bpf_helpers.h> first.
//
// A program for `instances: pid_keyed` includes "exporter_pids.bpf.h" before
// this file: its metric maps are then keyed by METRIC_KEY, the pid of the
// process (exporter_pid()) followed by the u64 the metric counts by, and
// add_u64(), observe() and finish() put the pid in. Otherwise METRIC_KEY is
// the u64 alone.
#ifndef EXAMPLES_METRICS_BPF_H
#define EXAMPLES_METRICS_BPF_H

#define SLOT_MAX 31

// Adds n to the u64 value at key, creating the entry when it is missing (a
// concurrent creator wins the insert; its entry is then added to).
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

#ifdef EXPORTER_PIDS_BPF_H
// A metric map's key: the process, then what the metric counts by.
struct pid_u64 {
    __u64 pid;
    __u64 key;
};
#define METRIC_KEY struct pid_u64

// add() for metric maps: the current process's entry of key.
static __always_inline void add_u64(void *map, __u64 key, __u64 n) {
    struct pid_u64 k = {.pid = exporter_pid(), .key = key};
    add(map, &k, n);
}
#else
#define METRIC_KEY __u64

// add() for maps keyed by a u64.
static __always_inline void add_u64(void *map, __u64 key, __u64 n) {
    add(map, &key, n);
}
#endif

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

// Records one duration in an exp2 histogram map keyed by u64 slot.
static __always_inline void observe(void *hist, __u64 ns) {
    add_u64(hist, exp2_slot(ns), 1);
    add_u64(hist, SLOT_MAX + 1, ns);
}

// Remembers when the current thread started something (map: u32 tid -> u64 ns).
static __always_inline void start(void *starts) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(starts, &tid, &now, BPF_ANY);
}

// Records the time since start() on this thread in hist, if it started.
static __always_inline void finish(void *starts, void *hist) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *t0 = bpf_map_lookup_elem(starts, &tid);
    if (!t0)
        return;
    observe(hist, bpf_ktime_get_ns() - *t0);
    bpf_map_delete_elem(starts, &tid);
}

#endif
