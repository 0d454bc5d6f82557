// nginx (Debian 12's /usr/sbin/nginx 1.22): HTTP requests and their duration,
// from uprobes on two functions the binary exports for modules (it has no
// .symtab and no USDT):
//
// - ngx_http_create_request(ngx_connection_t *c): once per request read on a
//   connection, keep-alive requests included; it is where stub_status's
//   `requests` is incremented, so the two counts agree.
// - ngx_http_free_request(ngx_http_request_t *r, ngx_int_t rc): once per
//   request, when it is done (the response sent, or the request aborted).
//
// ngx_http_finalize_request is exported too but is not used: it runs several
// times per request (once per handler result, for subrequests, with
// NGX_AGAIN/NGX_DONE), so it neither counts requests nor ends them.
//
// The duration runs from create to free: from the request's first bytes to
// its response's last, as $request_time nearly does. A connection serves one
// request at a time in HTTP/1.x, so the start is kept by worker and connection: the
// request's `connection` field, the second member of ngx_http_request_t
// after a 4-byte signature (offset 8 on 64-bit), a layout nginx has kept
// since its first releases.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c nginx.bpf.c -o nginx.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "metrics.bpf.h"

// Offset of ngx_http_request_t's `connection` (after `uint32_t signature`).
#define REQUEST_CONNECTION_OFFSET 8

// A request's start, by worker and connection: workers are forked from one
// master, so two of them can hold a connection at the same address, and with
// `instances: per_binary` they share this map. Keyed by the connection alone,
// one worker's free could end (and delete) another's start: a free can run
// after its client has its response and opened the next connection, which
// the other worker may take (tests saw 38 durations for 39 requests).
struct started_key {
    __u32 tgid;
    __u32 pad;
    __u64 connection;
};

// One key (0): requests created.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1);
    __type(key, __u64);
    __type(value, __u64);
} requests SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} request_latency SEC(".maps");

// Start times by connection address. An LRU map: a worker that exits with
// requests in flight (a reload's graceful shutdown waits for them, a crash
// does not) leaves entries behind.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct started_key);
    __type(value, __u64);
} request_started SEC(".maps");

SEC("uprobe")
int BPF_UPROBE(on_create_request, void *connection) {
    struct started_key key = {.tgid = bpf_get_current_pid_tgid() >> 32,
                              .connection = (__u64)connection};
    __u64 now = bpf_ktime_get_ns();
    add_u64(&requests, 0, 1);
    bpf_map_update_elem(&request_started, &key, &now, BPF_ANY);
    return 0;
}

SEC("uprobe")
int BPF_UPROBE(on_free_request, void *request) {
    struct started_key key = {.tgid = bpf_get_current_pid_tgid() >> 32};
    if (bpf_probe_read_user(&key.connection, sizeof key.connection,
                            (char *)request + REQUEST_CONNECTION_OFFSET) != 0)
        return 0;
    __u64 *t0 = bpf_map_lookup_elem(&request_started, &key);
    if (!t0)
        return 0;
    observe(&request_latency, bpf_ktime_get_ns() - *t0);
    bpf_map_delete_elem(&request_started, &key);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
