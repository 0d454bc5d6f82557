// For programs with `instances: pid_keyed`: one loaded copy whose probes are
// placed once per file, for every process that maps it, and that counts
// only the processes the exporter selected, by their pid.
//
// - exporter_pid() is the process's pid as the exporter sees it (in the
//   exporter's own PID namespace, where it runs as a sidecar); put it first
//   in every metric map's key, as a __u64 (the config names it with the
//   `pid` decoder).
// - exporter_selected() says whether the exporter selected this process:
//   return early when it did not (the probe fires in every process that
//   maps the file, selected or not).
//
// The exporter fills both maps: exporter_pidns before the first process is
// selected, exporter_pids as processes come and go. Needs <bpf/bpf_helpers.h>
// first. Written by `ebpf-userspace-exporter headers -o DIR`.
#ifndef EXPORTER_PIDS_BPF_H
#define EXPORTER_PIDS_BPF_H

// Where the exporter runs: its PID namespace's device and inode, or zeros in
// the initial namespace (kernel pids are its pids).
struct exporter_pidns_info {
    __u64 dev;
    __u64 ino;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exporter_pidns_info);
} exporter_pidns SEC(".maps");

// The selected processes, by pid as exporter_pid() gives it.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u8);
} exporter_pids SEC(".maps");

// The current process's pid in the exporter's PID namespace; 0 for a process
// that namespace cannot see.
static __always_inline __u32 exporter_pid(void) {
    __u32 zero = 0;
    struct exporter_pidns_info *ns = bpf_map_lookup_elem(&exporter_pidns, &zero);
    if (ns && ns->ino) {
        struct bpf_pidns_info ids = {};
        if (bpf_get_ns_current_pid_tgid(ns->dev, ns->ino, &ids, sizeof(ids)) != 0)
            return 0;
        return ids.tgid;
    }
    return bpf_get_current_pid_tgid() >> 32;
}

// Whether the exporter selected the current process.
static __always_inline int exporter_selected(void) {
    __u32 pid = exporter_pid();
    return pid != 0 && bpf_map_lookup_elem(&exporter_pids, &pid) != 0;
}

#endif
