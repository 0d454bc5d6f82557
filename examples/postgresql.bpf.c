// PostgreSQL 15 (Debian's /usr/lib/postgresql/15/bin/postgres, built with
// --enable-dtrace): transactions by outcome (USDT transaction__commit,
// transaction__abort), query durations (query__start to query__done in each
// backend), LWLock waits by tranche and mode (lwlock__wait__start), and
// checkpoints by cause (checkpoint__start).
//
// Meant for `instances: per_binary`: backends are forked per connection and
// counted from their first instruction, and every series is the sum over all
// processes of the executable.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c postgresql.bpf.c -o postgresql.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "metrics.bpf.h"


// transactions keys
#define OUTCOME_COMMIT 0
#define OUTCOME_ABORT 1

// checkpoints keys, from checkpoint__start's flags (PostgreSQL's xlog.h)
#define CHECKPOINT_IS_SHUTDOWN 0x0001
#define CHECKPOINT_END_OF_RECOVERY 0x0002
#define CHECKPOINT_CAUSE_XLOG 0x0080
#define CHECKPOINT_CAUSE_TIME 0x0100
#define CAUSE_REQUESTED 0 // CHECKPOINT command, pg_start_backup, CREATE DATABASE, ...
#define CAUSE_TIME 1      // checkpoint_timeout
#define CAUSE_WAL 2       // max_wal_size
#define CAUSE_SHUTDOWN 3
#define CAUSE_END_OF_RECOVERY 4

#define TRANCHE_LEN 32

struct lwlock_key {
    char tranche[TRANCHE_LEN];
    __u32 mode; // LWLockMode: 0 exclusive, 1 shared, 2 wait until free
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2);
    __type(key, __u64);
    __type(value, __u64);
} transactions SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} query_latency SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct lwlock_key);
    __type(value, __u64);
} lwlock_waits SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8);
    __type(key, __u64);
    __type(value, __u64);
} checkpoints SEC(".maps");

// Start timestamps by backend (thread id: PostgreSQL backends are
// single-threaded processes). An LRU map: a backend that exits between
// query__start and query__done (or whose query fails: an error skips
// query__done) leaves its entry behind.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, __u64);
} query_started SEC(".maps");

// transaction__commit(LocalTransactionId)
SEC("usdt")
int on_commit(struct pt_regs *ctx) {
    add_u64(&transactions, OUTCOME_COMMIT, 1);
    return 0;
}

// transaction__abort(LocalTransactionId)
SEC("usdt")
int on_abort(struct pt_regs *ctx) {
    add_u64(&transactions, OUTCOME_ABORT, 1);
    return 0;
}

// query__start(const char *query): once per simple-query protocol message
SEC("usdt")
int on_query_start(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&query_started, &tid, &now, BPF_ANY);
    return 0;
}

// query__done(const char *query)
SEC("usdt")
int on_query_done(struct pt_regs *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *t0 = bpf_map_lookup_elem(&query_started, &tid);
    if (!t0)
        return 0;
    observe(&query_latency, bpf_ktime_get_ns() - *t0);
    bpf_map_delete_elem(&query_started, &tid);
    return 0;
}

// lwlock__wait__start(const char *tranche, LWLockMode mode)
SEC("usdt")
int on_lwlock_wait(struct pt_regs *ctx) {
    struct lwlock_key key = {};
    long tranche = 0, mode = 0;
    bpf_usdt_arg(ctx, 0, &tranche);
    bpf_usdt_arg(ctx, 1, &mode);
    bpf_probe_read_user_str(key.tranche, sizeof(key.tranche), (const void *)tranche);
    key.mode = (__u32)mode;
    add(&lwlock_waits, &key, 1);
    return 0;
}

// checkpoint__start(int flags)
SEC("usdt")
int on_checkpoint_start(struct pt_regs *ctx) {
    long flags = 0;
    __u64 cause = CAUSE_REQUESTED;
    bpf_usdt_arg(ctx, 0, &flags);
    if (flags & CHECKPOINT_IS_SHUTDOWN)
        cause = CAUSE_SHUTDOWN;
    else if (flags & CHECKPOINT_END_OF_RECOVERY)
        cause = CAUSE_END_OF_RECOVERY;
    else if (flags & CHECKPOINT_CAUSE_XLOG)
        cause = CAUSE_WAL;
    else if (flags & CHECKPOINT_CAUSE_TIME)
        cause = CAUSE_TIME;
    add_u64(&checkpoints, cause, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
