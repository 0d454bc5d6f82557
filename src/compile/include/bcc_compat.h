/* bcc's C dialect on top of libbpf, force-included before inline `code:`.
 *
 * Written for ebpf-userspace-exporter: table declarations become libbpf
 * BTF-defined maps, the Rust side rewrites `table.method(...)` into the
 * `__bcc_method(&table, ...)` macros below, and bcc's USDT and math helpers
 * are provided with bcc's semantics. */
#ifndef __BCC_COMPAT_H
#define __BCC_COMPAT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/usdt.bpf.h>

/* Argument counting, for bcc's optional macro arguments. */
#define __BCC_NARG(...) __BCC_NARG_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define __BCC_NARG_(_1, _2, _3, _4, _5, _6, _7, _8, N, ...) N
#define __BCC_JOIN(a, b) __BCC_JOIN_(a, b)
#define __BCC_JOIN_(a, b) a##b
#define __BCC_OVERLOAD(name, ...) __BCC_JOIN(name, __BCC_NARG(__VA_ARGS__))(__VA_ARGS__)

/* One BTF-defined map. */
#define __BCC_MAP(_name, _type, _key, _leaf, _size) \
    struct {                                        \
        __uint(type, _type);                        \
        __uint(max_entries, _size);                 \
        __type(key, _key);                          \
        __type(value, _leaf);                       \
    } _name SEC(".maps")

/* BPF_TABLE("kind", key, leaf, name, size): the Rust pass turns the kind string into a suffix. */
#define BPF_TABLE_hash(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_HASH, _k, _v, _s)
#define BPF_TABLE_array(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_ARRAY, _k, _v, _s)
#define BPF_TABLE_percpu_hash(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_PERCPU_HASH, _k, _v, _s)
#define BPF_TABLE_percpu_array(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_PERCPU_ARRAY, _k, _v, _s)
#define BPF_TABLE_lru_hash(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_LRU_HASH, _k, _v, _s)
#define BPF_TABLE_lru_percpu_hash(_k, _v, _n, _s) __BCC_MAP(_n, BPF_MAP_TYPE_LRU_PERCPU_HASH, _k, _v, _s)

/* bcc's defaults: key u64, leaf u64, 10240 entries. */
#define BPF_HASH(...) __BCC_OVERLOAD(__BCC_HASH, __VA_ARGS__)
#define __BCC_HASH1(_n) BPF_TABLE_hash(u64, u64, _n, 10240)
#define __BCC_HASH2(_n, _k) BPF_TABLE_hash(_k, u64, _n, 10240)
#define __BCC_HASH3(_n, _k, _v) BPF_TABLE_hash(_k, _v, _n, 10240)
#define __BCC_HASH4(_n, _k, _v, _s) BPF_TABLE_hash(_k, _v, _n, _s)

#define BPF_PERCPU_HASH(...) __BCC_OVERLOAD(__BCC_PERCPU_HASH, __VA_ARGS__)
#define __BCC_PERCPU_HASH1(_n) BPF_TABLE_percpu_hash(u64, u64, _n, 10240)
#define __BCC_PERCPU_HASH2(_n, _k) BPF_TABLE_percpu_hash(_k, u64, _n, 10240)
#define __BCC_PERCPU_HASH3(_n, _k, _v) BPF_TABLE_percpu_hash(_k, _v, _n, 10240)
#define __BCC_PERCPU_HASH4(_n, _k, _v, _s) BPF_TABLE_percpu_hash(_k, _v, _n, _s)

/* Arrays: key int, leaf u64 by default. */
#define BPF_ARRAY(...) __BCC_OVERLOAD(__BCC_ARRAY, __VA_ARGS__)
#define __BCC_ARRAY1(_n) BPF_TABLE_array(int, u64, _n, 10240)
#define __BCC_ARRAY2(_n, _v) BPF_TABLE_array(int, _v, _n, 10240)
#define __BCC_ARRAY3(_n, _v, _s) BPF_TABLE_array(int, _v, _n, _s)

#define BPF_PERCPU_ARRAY(...) __BCC_OVERLOAD(__BCC_PERCPU_ARRAY, __VA_ARGS__)
#define __BCC_PERCPU_ARRAY1(_n) BPF_TABLE_percpu_array(int, u64, _n, 10240)
#define __BCC_PERCPU_ARRAY2(_n, _v) BPF_TABLE_percpu_array(int, _v, _n, 10240)
#define __BCC_PERCPU_ARRAY3(_n, _v, _s) BPF_TABLE_percpu_array(int, _v, _n, _s)

/* Histograms: an int-keyed array of 64 slots, or a hash when a key type is given. */
#define BPF_HISTOGRAM(...) __BCC_OVERLOAD(__BCC_HISTOGRAM, __VA_ARGS__)
#define __BCC_HISTOGRAM1(_n) BPF_TABLE_array(int, u64, _n, 64)
#define __BCC_HISTOGRAM2(_n, _k) BPF_TABLE_hash(_k, u64, _n, 64)
#define __BCC_HISTOGRAM3(_n, _k, _s) BPF_TABLE_hash(_k, u64, _n, _s)

#define BPF_PERF_OUTPUT(_n)                              \
    struct {                                             \
        __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);     \
        __uint(key_size, sizeof(int));                   \
        __uint(value_size, sizeof(u32));                 \
    } _n SEC(".maps")

#define BPF_RINGBUF_OUTPUT(_n, _pages)                   \
    struct {                                             \
        __uint(type, BPF_MAP_TYPE_RINGBUF);              \
        __uint(max_entries, (_pages) * 4096);            \
    } _n SEC(".maps")

/* Table methods, as the Rust pass writes them: __bcc_METHOD(&table, args...).
 * Keys and values take the table's own types, as bcc does. */
#define __bcc_key_t(_m) typeof(*((_m)->key))
#define __bcc_leaf_t(_m) typeof(*((_m)->value))

#define __bcc_increment(...) __BCC_OVERLOAD(__bcc_increment, __VA_ARGS__)
#define __bcc_increment2(_m, _key) __bcc_increment3(_m, _key, 1)
#define __bcc_increment3(_m, _key, _n)                                          \
    ({                                                                          \
        __bcc_key_t(_m) __bcc_k = (_key);                                       \
        __bcc_leaf_t(_m) *__bcc_v = bpf_map_lookup_elem((_m), &__bcc_k);        \
        if (__bcc_v) {                                                          \
            __sync_fetch_and_add(__bcc_v, (_n));                                \
        } else {                                                                \
            __bcc_leaf_t(_m) __bcc_init = (_n);                                 \
            /* Another CPU may insert first: then add to its entry. */          \
            if (bpf_map_update_elem((_m), &__bcc_k, &__bcc_init, BPF_NOEXIST)) { \
                __bcc_v = bpf_map_lookup_elem((_m), &__bcc_k);                  \
                if (__bcc_v)                                                    \
                    __sync_fetch_and_add(__bcc_v, (_n));                        \
            }                                                                   \
        }                                                                       \
    })
#define __bcc_atomic_increment(...) __bcc_increment(__VA_ARGS__)

#define __bcc_lookup(_m, _kp) ((__bcc_leaf_t(_m) *)bpf_map_lookup_elem((_m), (_kp)))
#define __bcc_update(_m, _kp, _vp) bpf_map_update_elem((_m), (_kp), (_vp), BPF_ANY)
#define __bcc_insert(_m, _kp, _vp) bpf_map_update_elem((_m), (_kp), (_vp), BPF_NOEXIST)
#define __bcc_delete(_m, _kp) bpf_map_delete_elem((_m), (_kp))
#define __bcc_lookup_or_try_init(_m, _kp, _initp)                              \
    ({                                                                          \
        __bcc_leaf_t(_m) *__bcc_found = bpf_map_lookup_elem((_m), (_kp));       \
        if (!__bcc_found) {                                                     \
            bpf_map_update_elem((_m), (_kp), (_initp), BPF_NOEXIST);            \
            __bcc_found = bpf_map_lookup_elem((_m), (_kp));                     \
        }                                                                       \
        __bcc_found;                                                            \
    })
#define __bcc_lookup_or_init(_m, _kp, _initp) __bcc_lookup_or_try_init(_m, _kp, _initp)
#define __bcc_perf_submit(_m, _ctx, _data, _size) \
    bpf_perf_event_output((_ctx), (_m), BPF_F_CURRENT_CPU, (_data), (_size))
#define __bcc_ringbuf_output(_m, _data, _size, _flags) bpf_ringbuf_output((_m), (_data), (_size), (_flags))
#define __bcc_push(_m, _vp, _flags) bpf_map_push_elem((_m), (_vp), (_flags))
#define __bcc_pop(_m, _vp) bpf_map_pop_elem((_m), (_vp))
#define __bcc_peek(_m, _vp) bpf_map_peek_elem((_m), (_vp))

/* bpf_usdt_readarg(n, ctx, &v): bcc's 1-based USDT argument read, any integer width. */
#define bpf_usdt_readarg(_n, _ctx, _ptr)                                 \
    ({                                                                   \
        long __bcc_arg = 0;                                              \
        int __bcc_rc = bpf_usdt_arg((void *)(_ctx), (_n) - 1, &__bcc_arg); \
        *(_ptr) = (typeof(*(_ptr)))__bcc_arg;                            \
        __bcc_rc;                                                        \
    })

/* bpf_usdt_readarg_p(n, ctx, buf, len): copy what a pointer argument points at. */
#define bpf_usdt_readarg_p(_n, _ctx, _buf, _len)                         \
    ({                                                                   \
        long __bcc_ptr = 0;                                              \
        int __bcc_rc = bpf_usdt_arg((void *)(_ctx), (_n) - 1, &__bcc_ptr); \
        if (__bcc_rc == 0)                                               \
            __bcc_rc = bpf_probe_read_user((_buf), (_len), (void *)__bcc_ptr); \
        __bcc_rc;                                                        \
    })

/* bcc's log2 helpers: bpf_log2(v) is floor(log2(v)) (0 for 0); bpf_log2l(v) is
 * the bit length of v, floor(log2(v)) + 1, and 1 for 0. */
static __always_inline unsigned int bpf_log2(unsigned int v) {
    unsigned int r = 0;
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { r += 1; }
    return r;
}

static __always_inline unsigned int bpf_log2l(unsigned long v) {
    unsigned int high = v >> 32;
    return high ? bpf_log2(high) + 33 : bpf_log2((unsigned int)v) + 1;
}

/* bcc's older names for helpers. */
#ifndef bpf_probe_read_str
#define bpf_probe_read_str bpf_probe_read_kernel_str
#endif

char __bcc_license[] SEC("license") = "GPL";

#endif /* __BCC_COMPAT_H */
