// MariaDB 10.11 (Debian 12's /usr/sbin/mariadbd): client commands by type
// (uprobe on dispatch_command, whose first argument is the protocol command:
// COM_QUERY, COM_INIT_DB, COM_PING, ...) and statement durations
// (uprobe/uretprobe on mysql_execute_command, which runs every SQL
// statement). Debian's server has no USDT and no .symtab, but exports both
// functions in .dynsym under their C++ (Itanium-mangled) names; mariadb.yaml
// names them demangled, with their parameter lists:
//
//   _Z16dispatch_command19enum_server_commandP3THDPcjb
//     dispatch_command(enum_server_command, THD*, char*, unsigned int, bool)
//   _Z21mysql_execute_commandP3THDb
//     mysql_execute_command(THD*, bool)
//
// mysql_execute_command nests (a stored procedure's statements, triggers'
// and some SHOW commands' inner statements run through it): only the
// outermost call of a thread is timed, so the histogram counts the
// statements clients sent. Threads: one per connection (the default
// thread_handling), or a pool's workers, one statement at a time each.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c mariadb.bpf.c -o mariadb.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "metrics.bpf.h"

// enum_server_command has 256 values at most (the command is one byte on
// the wire); mariadb.yaml names them.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, __u64);
    __type(value, __u64);
} commands SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} statement_latency SEC(".maps");

// Per thread: how deep in mysql_execute_command, and when the outermost
// call started. An LRU map: a connection thread killed mid-statement leaves
// its entry behind.
struct statement {
    __u64 depth;
    __u64 started;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct statement);
} statements_in_flight SEC(".maps");

SEC("uprobe")
int BPF_UPROBE(on_dispatch_command, int command) {
    add_u64(&commands, (__u64)(__u32)command & 0xff, 1);
    return 0;
}

SEC("uprobe")
int on_execute_entry(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct statement *s = bpf_map_lookup_elem(&statements_in_flight, &tid);
    if (s && s->depth > 0) {
        s->depth++;
        return 0;
    }
    struct statement fresh = {.depth = 1, .started = bpf_ktime_get_ns()};
    bpf_map_update_elem(&statements_in_flight, &tid, &fresh, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int on_execute_return(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct statement *s = bpf_map_lookup_elem(&statements_in_flight, &tid);
    if (!s || s->depth == 0)
        return 0;
    s->depth--;
    if (s->depth == 0)
        observe(&statement_latency, bpf_ktime_get_ns() - s->started);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
