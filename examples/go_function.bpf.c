// A Go program: calls of one Go function by its first argument, from a
// uprobe. Go (1.17+ on amd64) passes integer arguments in registers in the
// order RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11, not the C ABI's; the first
// is read from RAX here.
//
// No uretprobe: it would replace return addresses on the goroutine's stack,
// which Go moves and inspects, and crash the program; the exporter refuses a
// uretprobe on a Go binary. To time a Go function, probe its entry and the
// call site's next instruction (or each RET in it) with uprobes instead.
//
// Build: ebpf-userspace-exporter headers -o include &&
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -Iinclude -c go_function.bpf.c -o go_function.bpf.o
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __s64);
    __type(value, __u64);
} calls_by_argument SEC(".maps");

SEC("uprobe")
int on_work(struct pt_regs *ctx) {
    __s64 argument = (__s64)ctx->rax;
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
