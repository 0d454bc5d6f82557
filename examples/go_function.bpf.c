// A Go program: calls of one Go function by its first argument, from a
// uprobe. Go (1.17+) passes integer arguments in registers of its own order:
// on amd64 RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11, not the C ABI's, so the
// first is read from RAX; on arm64 R0 to R15, whose first is the C ABI's too.
//
// No uretprobe: it would replace return addresses on the goroutine's stack,
// which Go moves and inspects, and crash the program; the exporter refuses a
// uretprobe on a Go binary. To time a Go function, probe its entry and the
// call site's next instruction (or each RET in it) with uprobes instead.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c go_function.bpf.c -o go_function.bpf.o
// (for arm64: -D__TARGET_ARCH_arm64 -I/usr/include/aarch64-linux-gnu).
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#if defined(__TARGET_ARCH_x86)
#define GO_ARG1(ctx) ((ctx)->rax)
#elif defined(__TARGET_ARCH_arm64)
#define GO_ARG1(ctx) PT_REGS_PARM1(ctx)
#else
#error "go_function.bpf.c knows Go's register ABI on x86 and arm64 only"
#endif

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __s64);
    __type(value, __u64);
} calls_by_argument SEC(".maps");

SEC("uprobe")
int on_work(struct pt_regs *ctx) {
    __s64 argument = (__s64)GO_ARG1(ctx);
    __u64 one = 1, *n = bpf_map_lookup_elem(&calls_by_argument, &argument);
    if (n)
        __sync_fetch_and_add(n, 1);
    else if (bpf_map_update_elem(&calls_by_argument, &argument, &one, BPF_NOEXIST) != 0) {
        n = bpf_map_lookup_elem(&calls_by_argument, &argument);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
