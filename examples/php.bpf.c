// PHP 8.2 (Debian's php8.2-fpm, built with --enable-dtrace): requests by
// method and their duration, from the USDT probes request__startup and
// request__shutdown(file, request_uri, request_method) that
// php_request_startup() and php_request_shutdown() fire once per request.
// Both are semaphore-guarded: they cost nothing until a probe is attached.
//
// A PHP built without --enable-dtrace (the official images' builds) has no
// probes, but exports php_request_startup() and php_request_shutdown(), the
// functions that fire them: uprobes on those count the same requests and
// time nearly the same span, with the method unknown (it is not an argument).
//
// An FPM worker serves one request at a time on one thread, so the start
// time is kept per thread. The status page (pm.status_path) and requests with
// no REQUEST_METHOD go through both probes too, as FPM's `accepted conn`
// counts them.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c php.bpf.c -o php.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "metrics.bpf.h"

// requests keys: the method, as a small number so that a client cannot grow
// the map with methods of its own invention (php.yaml names them).
#define METHOD_OTHER 0
#define METHOD_GET 1
#define METHOD_POST 2
#define METHOD_HEAD 3
#define METHOD_PUT 4
#define METHOD_DELETE 5
#define METHOD_PATCH 6
#define METHOD_OPTIONS 7
#define METHOD_UNKNOWN 8 // counted from the functions: no method to read

// The method's first 8 bytes as a little-endian u64, NUL-padded.
#define WORD(a, b, c, d, e, f, g, h)                                            \
    ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 |       \
     (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 9);
    __type(key, __u64);
    __type(value, __u64);
} requests SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} request_latency SEC(".maps");

// Start times by thread. An LRU map: a worker killed mid-request (a timeout,
// pm.max_requests does not: it ends between requests) leaves its entry behind.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u64);
} request_started SEC(".maps");

static __always_inline __u64 method_of(const char *method) {
    // 16 bytes: a method longer than 8 bytes is not a known one.
    union {
        char text[16];
        __u64 words[2];
    } m = {};
    if (bpf_probe_read_user_str(m.text, sizeof m.text, method) <= 0 || m.words[1] != 0)
        return METHOD_OTHER;
    switch (m.words[0]) {
    case WORD('G', 'E', 'T', 0, 0, 0, 0, 0):
        return METHOD_GET;
    case WORD('P', 'O', 'S', 'T', 0, 0, 0, 0):
        return METHOD_POST;
    case WORD('H', 'E', 'A', 'D', 0, 0, 0, 0):
        return METHOD_HEAD;
    case WORD('P', 'U', 'T', 0, 0, 0, 0, 0):
        return METHOD_PUT;
    case WORD('D', 'E', 'L', 'E', 'T', 'E', 0, 0):
        return METHOD_DELETE;
    case WORD('P', 'A', 'T', 'C', 'H', 0, 0, 0):
        return METHOD_PATCH;
    case WORD('O', 'P', 'T', 'I', 'O', 'N', 'S', 0):
        return METHOD_OPTIONS;
    }
    return METHOD_OTHER;
}

// request__startup(file, request_uri, request_method)
SEC("usdt")
int on_request_startup(struct pt_regs *ctx) {
    long method = 0;
    bpf_usdt_arg(ctx, 2, &method);
    add_u64(&requests, method_of((const char *)method), 1);
    start(&request_started);
    return 0;
}

// request__shutdown(file, request_uri, request_method)
SEC("usdt")
int on_request_shutdown(struct pt_regs *ctx) {
    finish(&request_started, &request_latency);
    return 0;
}

// php_request_startup(void), for builds without the USDT probes
SEC("uprobe")
int on_request_startup_call(struct pt_regs *ctx) {
    add_u64(&requests, METHOD_UNKNOWN, 1);
    start(&request_started);
    return 0;
}

// php_request_shutdown(void *dummy)
SEC("uprobe")
int on_request_shutdown_call(struct pt_regs *ctx) {
    finish(&request_started, &request_latency);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
