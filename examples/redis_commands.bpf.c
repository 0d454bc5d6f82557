// Redis 7.0 (Debian 12's /usr/bin/redis-server): commands executed and their
// latency, from a uprobe/uretprobe pair on call(), the function every command
// runs through (INFO commandstats counts its `calls` there too), and commands
// by name from a uprobe on lookupCommandLogic(commands, argv, argc, strict),
// which processCommand calls once per command a client sends (in Debian's
// build it does not go through lookupCommand, whose body is inlined there).
//
// The name is argv[0]'s string: argv[0] is a robj whose `ptr` (offset 8, after
// the type/encoding/lru bits and refcount, a layout Redis has kept since 2.x)
// points at the command name as the client typed it; it is lowercased here
// to match commandstats' names. Debian's redis has no debug info, so fields of
// the client struct (whose layout changes between releases) are not read.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c redis_commands.bpf.c -o redis_commands.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "metrics.bpf.h"

#define NAME_LEN 16
// call() nests (EXEC, scripts, MULTI): start times are kept per nesting level.
#define MAX_DEPTH 8

struct command_name {
    char name[NAME_LEN];
};

// Key 0: a command a client sent; 1: one run from inside another (EXEC, scripts).
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2);
    __type(key, __u64);
    __type(value, __u64);
} commands SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} command_latency SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct command_name);
    __type(value, __u64);
} commands_by_name SEC(".maps");

struct call_stack {
    __u64 depth;
    __u64 started[MAX_DEPTH];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct call_stack);
} calls_in_flight SEC(".maps");

SEC("uprobe")
int on_call_entry(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct call_stack fresh = {};
    struct call_stack *stack = bpf_map_lookup_elem(&calls_in_flight, &tid);
    if (!stack) {
        bpf_map_update_elem(&calls_in_flight, &tid, &fresh, BPF_NOEXIST);
        stack = bpf_map_lookup_elem(&calls_in_flight, &tid);
        if (!stack)
            return 0;
    }
    __u64 depth = stack->depth, nested = depth > 0;
    add(&commands, &nested, 1);
    if (depth < MAX_DEPTH)
        stack->started[depth & (MAX_DEPTH - 1)] = bpf_ktime_get_ns();
    stack->depth = depth + 1;
    return 0;
}

SEC("uretprobe")
int on_call_return(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct call_stack *stack = bpf_map_lookup_elem(&calls_in_flight, &tid);
    if (!stack || stack->depth == 0)
        return 0;
    __u64 depth = stack->depth - 1;
    stack->depth = depth;
    if (depth >= MAX_DEPTH)
        return 0;
    __u64 ns = bpf_ktime_get_ns() - stack->started[depth & (MAX_DEPTH - 1)];
    observe(&command_latency, ns);
    return 0;
}

SEC("uprobe")
int BPF_UPROBE(on_lookup_command, void *commands, void **argv, int argc) {
    void *name_object = 0;
    char *name = 0;
    struct command_name key = {};
    if (argc < 1 || bpf_probe_read_user(&name_object, sizeof name_object, argv) != 0)
        return 0;
    if (bpf_probe_read_user(&name, sizeof name, (char *)name_object + 8) != 0)
        return 0;
    if (bpf_probe_read_user_str(key.name, sizeof key.name, name) <= 0)
        return 0;
    for (int i = 0; i < NAME_LEN; i++) {
        char c = key.name[i];
        if (c >= 'A' && c <= 'Z')
            key.name[i] = c + ('a' - 'A');
    }
    add(&commands_by_name, &key, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
