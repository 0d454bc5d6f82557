// CPython, whatever the build offers (the config's `sources:` attaches, per
// process, the best of these sets; all write the same maps):
// - garbage collections per generation, the objects they found unreachable
//   and their pause times, from the USDT probes gc__start/gc__done of a build
//   with --with-dtrace (Debian's python3.11), or else from the static function
//   that runs gc.callbacks, invoke_gc_callback (found through .symtab in a
//   build from source: pyenv's, the official images' full variants);
// - imports: the time of PyImport_ImportModuleLevelObject, which every
//   `import` statement goes through, outermost calls only (exported: every
//   build has it);
// - GIL waits: the time PyEval_RestoreThread takes (exported), where a thread
//   takes the GIL back after a blocking call.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c python.bpf.c -o python.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "exporter_pids.bpf.h"
#include "metrics.bpf.h"


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

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} import_latency SEC(".maps");

// Objects each collection found unreachable (gc__done's argument), by generation.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gc_collected SEC(".maps");

// The generation being collected, by thread id (gc__done does not carry it).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} gc_generation SEC(".maps");

// Start timestamps by thread id.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} gc_started SEC(".maps");

// Per thread: when its outermost import began and how deep it is now
// (imports nest: a module's own imports run inside the import of it).
struct import_state {
    __u64 started;
    __u32 depth;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, struct import_state);
} import_state SEC(".maps");

// Time in PyEval_RestoreThread, an exp2 histogram like the others.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, METRIC_KEY);
    __type(value, __u64);
} gil_wait SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u32);
    __type(value, __u64);
} gil_started SEC(".maps");

SEC("usdt")
int on_gc_start(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    long generation = 0;
    bpf_usdt_arg(ctx, 0, &generation);
    add_u64(&gc_collections, generation, 1);
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 gen = generation;
    bpf_map_update_elem(&gc_generation, &tid, &gen, BPF_ANY);
    start(&gc_started);
    return 0;
}

SEC("usdt")
int on_gc_done(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    long found = 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *gen = bpf_map_lookup_elem(&gc_generation, &tid);
    // CPython 3.11 passes collected + uncollectable objects.
    bpf_usdt_arg(ctx, 0, &found);
    if (gen && found > 0)
        add_u64(&gc_collected, *gen, found);
    bpf_map_delete_elem(&gc_generation, &tid);
    finish(&gc_started, &gc_pause);
    return 0;
}

// What invoke_gc_callback's `phase` argument points at: 1 for "start", 2 for
// "stop", 0 for anything else (the register holds something else).
static __always_inline int gc_phase(__u64 address) {
    char s[6] = {};
    if (bpf_probe_read_user(s, sizeof(s), (const void *)address) != 0)
        return 0;
    if (s[0] == 's' && s[1] == 't' && s[2] == 'a' && s[3] == 'r' && s[4] == 't' && s[5] == 0)
        return 1;
    if (s[0] == 's' && s[1] == 't' && s[2] == 'o' && s[3] == 'p' && s[4] == 0)
        return 2;
    return 0;
}

// invoke_gc_callback(tstate or state, phase, generation, collected,
// uncollectable), static in every CPython 3.x, is called at the start and the
// stop of each collection that runs gc.callbacks (all but the one at
// shutdown). Compilers clone it and drop its first argument (3.8's
// invoke_gc_callback.constprop.0 passes phase first), so the phase string is
// looked for in the first two arguments and the others are read after it; a
// call where neither holds "start" or "stop", or whose generation is not 0 to
// 2, is not counted: a build whose copy passes its arguments otherwise counts
// nothing rather than garbage. (Not gc_collect_main: 3.8 and 3.9 have none,
// their `collect` is cloned apart in 3.8, and 3.13's automatic collections
// pass it generation -1, the generation being chosen inside.)
SEC("uprobe")
int on_gc_callback(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    // Every argument register is read first, at fixed offsets: the verifier
    // refuses ctx reads through a pointer the compiler moved per branch.
    __u64 arg1 = PT_REGS_PARM1(ctx), arg2 = PT_REGS_PARM2(ctx), arg3 = PT_REGS_PARM3(ctx),
          arg4 = PT_REGS_PARM4(ctx), arg5 = PT_REGS_PARM5(ctx);
    __u64 generation, collected, uncollectable;
    int phase = gc_phase(arg1);
    if (phase) {
        generation = (__u32)arg2;
        collected = arg3;
        uncollectable = arg4;
    } else {
        phase = gc_phase(arg2);
        if (!phase)
            return 0;
        generation = (__u32)arg3;
        collected = arg4;
        uncollectable = arg5;
    }
    if (generation > 2)
        return 0;
    if (phase == 1) {
        add_u64(&gc_collections, generation, 1);
        start(&gc_started);
        return 0;
    }
    // What gc.get_stats() adds up: collected plus uncollectable.
    __s64 found = (__s64)collected + (__s64)uncollectable;
    if (found > 0)
        add_u64(&gc_collected, generation, found);
    finish(&gc_started, &gc_pause);
    return 0;
}

// One observation per outermost import of a thread: the time of the import
// statement, with the imports it causes (nested calls) inside it.
SEC("uprobe")
int on_import_entry(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct import_state *state = bpf_map_lookup_elem(&import_state, &tid);
    if (state) {
        // Imports nest as deep as modules import modules; a state this deep
        // lost its returns (a detach mid-import): start over.
        if (state->depth < 256) {
            state->depth++;
            return 0;
        }
    }
    struct import_state fresh = {.started = bpf_ktime_get_ns(), .depth = 1};
    bpf_map_update_elem(&import_state, &tid, &fresh, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int on_import_return(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct import_state *state = bpf_map_lookup_elem(&import_state, &tid);
    // No state: the import began before the probes were attached.
    if (!state)
        return 0;
    if (state->depth > 1) {
        state->depth--;
        return 0;
    }
    observe(&import_latency, bpf_ktime_get_ns() - state->started);
    bpf_map_delete_elem(&import_state, &tid);
    return 0;
}

SEC("uprobe")
int on_restore_thread(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    start(&gil_started);
    return 0;
}

SEC("uretprobe")
int on_restore_thread_return(struct pt_regs *ctx) {
    if (!exporter_selected())
        return 0;
    finish(&gil_started, &gil_wait);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
