/* anbiq plugin ABI, version 2, for C (see plugins/ABI.md).
 *
 * Build:  clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry -Wl,--export-dynamic \
 *                -Wl,--stack-first -Wl,-z,stack-size=1048576 -o my_loss.wasm my_loss.c
 * Local variables live on clang's shadow stack in linear memory: 64 KiB unless -Wl,-z,stack-size=BYTES says
 * otherwise, counted in the memory cap (`limits.memory_mib`). With -Wl,--stack-first a local array larger than the
 * stack traps ("out of bounds memory access"); without it, the stack sits above the static data and overflowing it
 * by a little overwrites that data silently.
 * A plugin defines its loss with ANBIQ_LOSS(fn) (tensor style) or ANBIQ_DENSE_LOSS(fn) (dense style) and its
 * describe JSON with ANBIQ_DESCRIBE("{...}"); this header provides the allocator, memset, memcpy, memmove and memcmp
 * (there is no libc), and the other exports. Include it in one .c file: it defines the exports.
 * Handles (anbiq_t) name host tensors for the current call only; every operation runs in libtorch with autograd.
 */
#ifndef ANBIQ_PLUGIN_H
#define ANBIQ_PLUGIN_H

#define ANBIQ_ABI_VERSION 2

typedef int anbiq_t;
typedef long long anbiq_i64;

#define ANBIQ_IMPORT(name) __attribute__((import_module("anbiq"), import_name(#name)))
#define ANBIQ_EXPORT(name) __attribute__((export_name(#name)))

enum anbiq_reduction { ANBIQ_NONE = 0, ANBIQ_MEAN = 1, ANBIQ_SUM = 2, ANBIQ_BATCHMEAN = 3 };

/* Elementwise. */
ANBIQ_IMPORT(neg) anbiq_t anbiq_neg(anbiq_t a);
ANBIQ_IMPORT(exp) anbiq_t anbiq_exp(anbiq_t a);
ANBIQ_IMPORT(log) anbiq_t anbiq_log(anbiq_t a);
ANBIQ_IMPORT(log1p) anbiq_t anbiq_log1p(anbiq_t a);
ANBIQ_IMPORT(sqrt) anbiq_t anbiq_sqrt(anbiq_t a);
ANBIQ_IMPORT(abs) anbiq_t anbiq_abs(anbiq_t a);
ANBIQ_IMPORT(sigmoid) anbiq_t anbiq_sigmoid(anbiq_t a);
ANBIQ_IMPORT(tanh) anbiq_t anbiq_tanh(anbiq_t a);
ANBIQ_IMPORT(relu) anbiq_t anbiq_relu(anbiq_t a);
ANBIQ_IMPORT(detach) anbiq_t anbiq_detach(anbiq_t a);
ANBIQ_IMPORT(to_float) anbiq_t anbiq_to_float(anbiq_t a);
ANBIQ_IMPORT(add) anbiq_t anbiq_add(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(sub) anbiq_t anbiq_sub(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(mul) anbiq_t anbiq_mul(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(div) anbiq_t anbiq_div(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(pow) anbiq_t anbiq_pow(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(maximum) anbiq_t anbiq_maximum(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(minimum) anbiq_t anbiq_minimum(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(eq) anbiq_t anbiq_eq(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(gt) anbiq_t anbiq_gt(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(lt) anbiq_t anbiq_lt(anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(where) anbiq_t anbiq_where(anbiq_t cond, anbiq_t a, anbiq_t b);
ANBIQ_IMPORT(add_scalar) anbiq_t anbiq_add_scalar(anbiq_t a, double s);
ANBIQ_IMPORT(sub_scalar) anbiq_t anbiq_sub_scalar(anbiq_t a, double s);
ANBIQ_IMPORT(mul_scalar) anbiq_t anbiq_mul_scalar(anbiq_t a, double s);
ANBIQ_IMPORT(div_scalar) anbiq_t anbiq_div_scalar(anbiq_t a, double s);
ANBIQ_IMPORT(pow_scalar) anbiq_t anbiq_pow_scalar(anbiq_t a, double s);
ANBIQ_IMPORT(rsub_scalar) anbiq_t anbiq_rsub_scalar(anbiq_t a, double s); /* s - a */
ANBIQ_IMPORT(rdiv_scalar) anbiq_t anbiq_rdiv_scalar(anbiq_t a, double s); /* s / a */
ANBIQ_IMPORT(clamp) anbiq_t anbiq_clamp(anbiq_t a, double lo, double hi);
ANBIQ_IMPORT(scalar) anbiq_t anbiq_scalar(double v);
/* Softmax of a / temperature along dim. */
ANBIQ_IMPORT(softmax) anbiq_t anbiq_softmax(anbiq_t a, int dim, double temperature);
ANBIQ_IMPORT(log_softmax) anbiq_t anbiq_log_softmax(anbiq_t a, int dim, double temperature);
/* Reductions (keepdim 0 or 1). */
ANBIQ_IMPORT(sum) anbiq_t anbiq_sum(anbiq_t a, int dim, int keepdim);
ANBIQ_IMPORT(mean) anbiq_t anbiq_mean(anbiq_t a, int dim, int keepdim);
ANBIQ_IMPORT(amax) anbiq_t anbiq_amax(anbiq_t a, int dim, int keepdim);
ANBIQ_IMPORT(logsumexp) anbiq_t anbiq_logsumexp(anbiq_t a, int dim, int keepdim);
ANBIQ_IMPORT(argmax) anbiq_t anbiq_argmax(anbiq_t a, int dim, int keepdim);
ANBIQ_IMPORT(sum_all) anbiq_t anbiq_sum_all(anbiq_t a);
ANBIQ_IMPORT(mean_all) anbiq_t anbiq_mean_all(anbiq_t a);
/* Losses. kl_div: sum target * (log target - input), input = log q; log_target: target is log p. */
ANBIQ_IMPORT(kl_div) anbiq_t anbiq_kl_div(anbiq_t input, anbiq_t target, int reduction, int log_target);
ANBIQ_IMPORT(cross_entropy) anbiq_t anbiq_cross_entropy(anbiq_t logits, anbiq_t target, int reduction);
ANBIQ_IMPORT(mse) anbiq_t anbiq_mse(anbiq_t a, anbiq_t b, int reduction);
/* Indexing and shapes. */
ANBIQ_IMPORT(gather) anbiq_t anbiq_gather(anbiq_t a, int dim, anbiq_t index);
ANBIQ_IMPORT(one_hot) anbiq_t anbiq_one_hot(anbiq_t labels, int classes);
ANBIQ_IMPORT(unsqueeze) anbiq_t anbiq_unsqueeze(anbiq_t a, int dim);
ANBIQ_IMPORT(ndim) int anbiq_ndim(anbiq_t a);
ANBIQ_IMPORT(numel) anbiq_i64 anbiq_numel(anbiq_t a);
ANBIQ_IMPORT(size) anbiq_i64 anbiq_size(anbiq_t a, int dim);
ANBIQ_IMPORT(free) void anbiq_free(anbiq_t a);
/* Copies at most max f32 values of a small tensor into out; returns the count. */
ANBIQ_IMPORT(read) int anbiq_read(anbiq_t a, float *out, int max);
/* Parameters (declared in describe), progress in [0, 1], the T of [B, T, V] sequence inputs (1 for classifiers;
   dense calls see sequences as B*T rows), logging, giving up with a message. */
ANBIQ_IMPORT(param) double anbiq_param_n(const char *name, int len);
ANBIQ_IMPORT(progress) double anbiq_progress(void);
ANBIQ_IMPORT(seq_len) int anbiq_seq_len(void);
ANBIQ_IMPORT(log_msg) void anbiq_log_msg_n(const char *msg, int len);
ANBIQ_IMPORT(panic) void anbiq_panic_n(const char *msg, int len);

static inline int anbiq_strlen(const char *s) {
    int n = 0;
    while (s[n]) n++;
    return n;
}
static inline double anbiq_param(const char *name) { return anbiq_param_n(name, anbiq_strlen(name)); }
static inline void anbiq_log_msg(const char *msg) { anbiq_log_msg_n(msg, anbiq_strlen(msg)); }

/* memset, memcpy, memmove and memcmp for the calls clang generates (zeroing loops, struct copies) and for your own;
   weak, so definitions in another file (a libc) win, and no_builtin, so clang does not turn their loops back into
   calls to themselves. Define ANBIQ_NO_MEM_FUNCTIONS before the include to leave them out. (-mbulk-memory makes
   clang use wasm's memory.fill and memory.copy for the calls it generates instead.) */
#ifndef ANBIQ_NO_MEM_FUNCTIONS
#ifdef __cplusplus
#define ANBIQ_MEMFN extern "C" __attribute__((weak, no_builtin, visibility("hidden")))
#else
#define ANBIQ_MEMFN __attribute__((weak, no_builtin, visibility("hidden")))
#endif
ANBIQ_MEMFN void *memset(void *dst, int c, __SIZE_TYPE__ n) {
    unsigned char *d = (unsigned char *)dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
ANBIQ_MEMFN void *memcpy(void *__restrict dst, const void *__restrict src, __SIZE_TYPE__ n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n--) *d++ = *s++;
    return dst;
}
ANBIQ_MEMFN void *memmove(void *dst, const void *src, __SIZE_TYPE__ n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}
ANBIQ_MEMFN int memcmp(const void *a, const void *b, __SIZE_TYPE__ n) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}
#endif

/* The bump allocator: buffers the host asks for persist; the loss macros release a call's allocations on return.
   Returns 0 only for a size that overflows the address space: under anbiq, growing memory past the cap
   (`limits.memory_mib`, 64 MiB by default) traps, and the call fails with "needed more memory than its cap". */
extern unsigned char __heap_base;
static unsigned long anbiq_heap_top;
static inline void *anbiq_malloc(unsigned long size, unsigned long align) {
    if (!anbiq_heap_top) anbiq_heap_top = (unsigned long)&__heap_base;
    if (!align) align = 1;
    unsigned long start = (anbiq_heap_top + align - 1) & ~(align - 1), end = start + size;
    if (start < anbiq_heap_top || end < start) return 0;
    unsigned long have = __builtin_wasm_memory_size(0) * 65536ul;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (unsigned long)-1) return 0;
    anbiq_heap_top = end;
    return (void *)start;
}

ANBIQ_EXPORT(anbiq_abi_version) int anbiq_abi_version(void) { return ANBIQ_ABI_VERSION; }
ANBIQ_EXPORT(anbiq_alloc) int anbiq_alloc(int size, int align) { return (int)(unsigned long)anbiq_malloc(size, align); }

#define ANBIQ_DESCRIBE(json)                                                                   \
    static const char anbiq_describe_json[] = json;                                            \
    ANBIQ_EXPORT(anbiq_describe) anbiq_i64 anbiq_describe(void) {                              \
        return ((anbiq_i64)(unsigned long)anbiq_describe_json << 32) | (sizeof(anbiq_describe_json) - 1); \
    }

/* anbiq_t fn(anbiq_t student, anbiq_t teacher, anbiq_t labels) */
#define ANBIQ_LOSS(fn)                                                                         \
    ANBIQ_EXPORT(anbiq_loss) anbiq_t anbiq_loss(anbiq_t s, anbiq_t t, anbiq_t y) {             \
        unsigned long mark = anbiq_heap_top;                                                   \
        anbiq_t out = fn(s, t, y);                                                             \
        if (mark) anbiq_heap_top = mark;                                                       \
        return out;                                                                            \
    }

/* float fn(const float *student, const float *teacher, const anbiq_i64 *labels, int batch, int classes, float *grad) */
#define ANBIQ_DENSE_LOSS(fn)                                                                   \
    ANBIQ_EXPORT(anbiq_loss_dense) float anbiq_loss_dense(const float *s, const float *t, const anbiq_i64 *y, \
                                                          int b, int c, float *g) {            \
        unsigned long mark = anbiq_heap_top;                                                   \
        float out = fn(s, t, y, b, c, g);                                                      \
        if (mark) anbiq_heap_top = mark;                                                       \
        return out;                                                                            \
    }

#endif
