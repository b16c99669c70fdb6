/*
 * Helpers that do not touch the XDP frame: the bpf_conformance harness helpers (raw mode),
 * map access, time, random numbers, trace_printk, strtol/strtoul, csum_diff and ringbuf.
 * Semantics follow kernel/bpf/helpers.c, kernel/trace/bpf_trace.c, net/core/filter.c and
 * kernel/bpf/ringbuf.c; every pointer argument is checked against the run's regions first.
 */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "vm_int.h"

#define VXDP_HZ 250                     /* jiffies rate of bpf_jiffies64 (CONFIG_HZ_250) */
#define BPF_STRTOX_BASE_MASK 0x1fu
#define KSTRTOX_OVERFLOW (1u << 31)
#define BPF_RB_NO_WAKEUP 1u
#define BPF_RB_FORCE_WAKEUP 2u
#define TRACE_LINE_MAX 1024             /* MAX_BPRINTF_BUF */

#define HELPER(name) \
    static uint64_t name(struct vxdp_run *r, uint64_t a1, uint64_t a2, uint64_t a3, \
                         uint64_t a4, uint64_t a5)
#define UNUSED_ARGS(...) (void)r, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5

void *vxdp_memcpy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }

/* ---------------------------------------------------------------- env */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct vxdp_env *vxdp_env_new(uint64_t seed)
{
    struct vxdp_env *env = calloc(1, sizeof(*env));
    if (env)
        vxdp_env_set_seed(env, seed);
    return env;
}

void vxdp_env_free(struct vxdp_env *env) { free(env); }

void vxdp_env_set_cpu(struct vxdp_env *env, uint32_t cpu) { env->cpu = cpu; }

/* get_prandom_u32 is xorshift128+ seeded through splitmix64: one seed, one sequence. */
void vxdp_env_set_seed(struct vxdp_env *env, uint64_t seed)
{
    env->rnd[0] = splitmix64(&seed);
    env->rnd[1] = splitmix64(&seed);
}

size_t vxdp_env_trace_read(struct vxdp_env *env, char *buf, size_t cap)
{
    size_t n = env->trace_len < cap ? env->trace_len : cap;
    memcpy(buf, env->trace, n);
    memmove(env->trace, env->trace + n, env->trace_len - n);
    env->trace_len -= n;
    return n;
}

/* ---------------------------------------------------------------- raw mode (ubpf harness) */

HELPER(raw_gather_bytes)
{
    (void)r;
    return ((a1 & 0xff) << 32) | ((a2 & 0xff) << 24) | ((a3 & 0xff) << 16) |
           ((a4 & 0xff) << 8) | (a5 & 0xff);
}

HELPER(raw_memfrob)
{
    UNUSED_ARGS();
    uint8_t *p = vxdp_mem_check(r, a1, a2, true);
    if (p)
        for (uint64_t i = 0; i < a2; i++)
            p[i] ^= 42;
    return 0;
}

HELPER(raw_no_op)
{
    UNUSED_ARGS();
    return 0;
}

HELPER(raw_sqrti)
{
    UNUSED_ARGS();
    return (uint64_t)sqrt((double)a1);
}

/* The harness's strcmp_ext: both strings must end inside the run's memory. */
static const char *checked_string(struct vxdp_run *r, uint64_t addr)
{
    for (uint64_t n = 1;; n++) {
        const char *p = vxdp_mem_check(r, addr, n, false);
        if (!p)
            return NULL;
        if (!p[n - 1])
            return p;
    }
}

/* strncpy_from_kernel_nofault into buf (cap bytes): the string at addr, cut to cap - 1
 * bytes, or "" when it runs out of readable program memory before its end. */
static const char *peek_string(const struct vxdp_run *r, uint64_t addr, char *buf, size_t cap)
{
    size_t n = 0;
    for (; n + 1 < cap; n++) {
        const char *p = vxdp_mem_peek(r, addr + n, 1);
        if (!p) {
            n = 0;
            break;
        }
        if (!(buf[n] = *p))
            break;
    }
    buf[n] = 0;
    return buf;
}

HELPER(raw_strcmp_ext)
{
    UNUSED_ARGS();
    const char *s1 = checked_string(r, a1), *s2 = s1 ? checked_string(r, a2) : NULL;
    return s2 ? (uint64_t)(int64_t)strcmp(s1, s2) : 0;
}

/* Returns its argument; the interpreter ends the program when this returns 0 (ubpf's
 * unwind_stack_extension_index, set to 5 by the bpf_conformance harness). */
HELPER(raw_unwind)
{
    UNUSED_ARGS();
    return a1;
}

const vxdp_helper_fn vxdp_raw_helpers[VXDP_HELPER_MAX] = {
    [0] = raw_gather_bytes,
    [1] = raw_memfrob,
    [2] = raw_no_op,
    [3] = raw_sqrti,
    [4] = raw_strcmp_ext,
    [5] = raw_unwind,
};

/* ---------------------------------------------------------------- maps */

static struct vxdp_map *prog_map(struct vxdp_run *r, uint64_t addr, const char *helper)
{
    const struct vxdp_prog *p = r->prog;
    struct vxdp_map *inner;
    for (uint32_t i = 0; i < p->nmaps; i++)
        if ((uint64_t)(uintptr_t)p->maps[i] == addr)
            return p->maps[i];
    for (uint32_t i = 0; i < p->nmaps; i++)   /* a map a map-in-map gave the program */
        if ((inner = vxdp_map_inner_find(p->maps[i], addr)))
            return inner;
    vxdp_run_fail(r, -EINVAL, "%s at pc %u: r1 is not a map of this program", helper, r->pc);
    return NULL;
}

HELPER(h_map_lookup_elem)
{
    UNUSED_ARGS();
    struct vxdp_map *m = prog_map(r, a1, "map_lookup_elem");
    const void *key = m ? vxdp_mem_check(r, a2, vxdp_map_key_size(m), false) : NULL;
    return key ? (uint64_t)(uintptr_t)vxdp_map_prog_lookup(m, key, r->cpu) : 0;
}

HELPER(h_map_update_elem)
{
    UNUSED_ARGS();
    struct vxdp_map *m = prog_map(r, a1, "map_update_elem");
    const void *key = m ? vxdp_mem_check(r, a2, vxdp_map_key_size(m), false) : NULL;
    const void *val = key ? vxdp_mem_check(r, a3, vxdp_map_value_size(m), false) : NULL;
    return val ? (uint64_t)(int64_t)vxdp_map_prog_update(m, key, val, a4, r->cpu) : 0;
}

HELPER(h_map_delete_elem)
{
    UNUSED_ARGS();
    struct vxdp_map *m = prog_map(r, a1, "map_delete_elem");
    const void *key = m ? vxdp_mem_check(r, a2, vxdp_map_key_size(m), false) : NULL;
    return key ? (uint64_t)(int64_t)vxdp_map_prog_delete(m, key) : 0;
}

/* ---------------------------------------------------------------- time, cpu, random */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

HELPER(h_ktime_get_ns) { UNUSED_ARGS(); return clock_ns(CLOCK_MONOTONIC); }
HELPER(h_ktime_get_boot_ns) { UNUSED_ARGS(); return clock_ns(CLOCK_BOOTTIME); }
HELPER(h_jiffies64) { UNUSED_ARGS(); return clock_ns(CLOCK_MONOTONIC) / (1000000000ull / VXDP_HZ); }
HELPER(h_get_smp_processor_id) { UNUSED_ARGS(); return r->cpu; }

HELPER(h_get_prandom_u32)
{
    UNUSED_ARGS();
    uint64_t s1 = r->env->rnd[0];
    const uint64_t s0 = r->env->rnd[1];
    r->env->rnd[0] = s0;
    s1 ^= s1 << 23;
    r->env->rnd[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return (uint32_t)((r->env->rnd[1] + s0) >> 32);
}

/* ---------------------------------------------------------------- trace_printk */

static void trace_append(struct vxdp_env *env, const char *s, size_t n)
{
    size_t room = sizeof(env->trace) - env->trace_len;
    if (n > room)
        n = room;   /* a full buffer drops the newest text, like a full trace_pipe */
    memcpy(env->trace + env->trace_len, s, n);
    env->trace_len += n;
}

/* bpf_trace_printk: at most 3 arguments, %d %i %u %x %X %c %s %p %% with l/ll/h/hh; the
 * format must be NUL-terminated within fmt_size (bpf_bprintf_prepare). */
HELPER(h_trace_printk)
{
    UNUSED_ARGS();
    const char *fmt = vxdp_mem_check(r, a1, a2, false);
    uint64_t args[3] = {a3, a4, a5};
    char out[TRACE_LINE_MAX];
    size_t n = 0;
    uint32_t used = 0;

    if (!fmt)
        return 0;
    if (!a2 || fmt[a2 - 1])
        return (uint64_t)-EINVAL;
    for (const char *p = fmt; *p && n < sizeof(out) - 1; p++) {
        char spec[32], piece[TRACE_LINE_MAX];
        size_t sl = 0;
        int lmod = 0, w;
        if (*p != '%') {
            out[n++] = *p;
            continue;
        }
        spec[sl++] = *p++;
        if (*p == '%') {
            out[n++] = '%';
            continue;
        }
        while (*p && strchr("-+ #0123456789", *p) && sl < 16)
            spec[sl++] = *p++;
        while (*p == 'l' || *p == 'h') {
            lmod += *p == 'l' ? 1 : -1;
            p++;
        }
        if (!*p || !strchr("diuxXcsp", *p) || used == 3)
            return (uint64_t)-EINVAL;
        uint64_t v = args[used++];
        if (*p == 's') {
            /* %s reads as the kernel's strncpy_from_kernel_nofault: a bad address (R3-R5
             * are not checked by the verifier) prints nothing, it does not fail the run */
            char str[TRACE_LINE_MAX];
            const char *s = v ? peek_string(r, v, str, sizeof(str)) : "(null)";
            spec[sl++] = 's';
            spec[sl] = 0;
            w = snprintf(piece, sizeof(piece), spec, s);
        } else if (*p == 'p') {
            w = snprintf(piece, sizeof(piece), "0x%llx", (unsigned long long)v);
        } else if (*p == 'c') {
            spec[sl++] = 'c';
            spec[sl] = 0;
            w = snprintf(piece, sizeof(piece), spec, (int)(uint8_t)v);
        } else {
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = *p;
            spec[sl] = 0;
            bool sign = *p == 'd' || *p == 'i';
            long long sv = lmod >= 1 ? (long long)v : lmod == 0 ? (long long)(int32_t)v :
                           lmod == -1 ? (long long)(int16_t)v : (long long)(int8_t)v;
            unsigned long long uv = lmod >= 1 ? v : lmod == 0 ? (uint32_t)v :
                                    lmod == -1 ? (uint16_t)v : (uint8_t)v;
            w = sign ? snprintf(piece, sizeof(piece), spec, sv)
                     : snprintf(piece, sizeof(piece), spec, uv);
        }
        for (int i = 0; i < w && n < sizeof(out) - 1 && piece[i]; i++)
            out[n++] = piece[i];
    }
    out[n] = 0;
    trace_append(r->env, out, n);
    trace_append(r->env, "\n", 1);
    return n;
}

/* ---------------------------------------------------------------- strtol, strtoul */

static bool k_isspace(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0;   /* lib/ctype.c _S */
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : 99;
}

/* __bpf_strtoull (kernel/bpf/helpers.c) with _parse_integer_fixup_radix and
 * _parse_integer (lib/kstrtox.c): returns the bytes consumed or a negative errno. */
static int strtoull_k(const char *buf, size_t len, uint64_t flags, uint64_t *res, bool *neg)
{
    unsigned int base = flags & BPF_STRTOX_BASE_MASK;
    size_t i = 0, consumed, n;
    char str[64];
    const char *s;
    uint64_t acc = 0;
    unsigned int digits = 0;
    bool overflow = false;

    if (!len || (base != 0 && base != 8 && base != 10 && base != 16) ||
        (flags & ~(uint64_t)BPF_STRTOX_BASE_MASK))
        return -EINVAL;
    while (i < len && k_isspace((unsigned char)buf[i]))
        i++;
    *neg = i < len && buf[i] == '-';
    if (*neg)
        i++;
    consumed = i;
    n = len - i;
    if (!n)
        return -EINVAL;
    if (n > sizeof(str) - 1)
        n = sizeof(str) - 1;
    memcpy(str, buf + i, n);
    str[n] = 0;
    s = str;
    if (base == 0) {
        if (s[0] == '0') {
            base = ((s[1] | 0x20) == 'x' && hexval((unsigned char)s[2]) < 16) ? 16 : 8;
        } else {
            base = 10;
        }
    }
    if (base == 16 && s[0] == '0' && (s[1] | 0x20) == 'x')
        s += 2;
    for (;; digits++) {
        int d = hexval((unsigned char)s[digits]);
        if (d >= (int)base)
            break;
        if (acc > (UINT64_MAX - (uint64_t)d) / base)
            overflow = true;
        acc = acc * base + (uint64_t)d;
    }
    if (overflow)
        return -ERANGE;
    if (!digits)
        return -EINVAL;
    *res = acc;
    return (int)(consumed + (size_t)(s - str) + digits);
}

HELPER(h_strtol)
{
    UNUSED_ARGS();
    const char *buf = vxdp_mem_check(r, a1, a2, false);
    void *out = buf ? vxdp_mem_check(r, a4, 8, true) : NULL;
    uint64_t v = 0;
    int64_t sv;
    bool neg;
    if (!out)
        return 0;
    memset(out, 0, 8);   /* *res = 0 on every path, as the kernel since 6.12 */
    int rc = strtoull_k(buf, a2, a3, &v, &neg);
    if (rc < 0)
        return (uint64_t)(int64_t)rc;
    if (neg) {
        if (v - 1 > (uint64_t)INT64_MAX)   /* (long long)-v > 0 or v - 1 > LLONG_MAX */
            return (uint64_t)-ERANGE;
        sv = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX)
            return (uint64_t)-ERANGE;
        sv = (int64_t)v;
    }
    memcpy(out, &sv, 8);
    return (uint64_t)rc;
}

HELPER(h_strtoul)
{
    UNUSED_ARGS();
    const char *buf = vxdp_mem_check(r, a1, a2, false);
    void *out = buf ? vxdp_mem_check(r, a4, 8, true) : NULL;
    uint64_t v = 0;
    bool neg;
    if (!out)
        return 0;
    memset(out, 0, 8);
    int rc = strtoull_k(buf, a2, a3, &v, &neg);
    if (rc < 0)
        return (uint64_t)(int64_t)rc;
    if (neg)
        return (uint64_t)-EINVAL;
    memcpy(out, &v, 8);
    return (uint64_t)rc;
}

/* ---------------------------------------------------------------- csum_diff */

static uint64_t add64_with_carry(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s + (s < a);
}

static uint32_t add32_with_carry(uint32_t a, uint32_t b)
{
    uint32_t s = a + b;
    return s + (s < a);
}

static uint32_t ror32(uint32_t v, unsigned int n) { return (v >> n) | (v << (32 - n)); }

/* csum_partial as arch/x86/lib/csum-partial_64.c computes it: 64-bit words with carry, a
 * zero-padded little-endian tail, an odd start handled by rotating, folded to 32 bits. */
static uint32_t csum_partial(const uint8_t *buff, uint64_t len, uint32_t sum)
{
    uint64_t temp64 = sum;
    bool odd = (uintptr_t)buff & 1;
    uint32_t result;

    if (odd) {
        if (!len)
            return sum;
        temp64 = ror32(sum, 8);
        temp64 += (uint64_t)buff[0] << 8;
        len--;
        buff++;
    }
    for (; len >= 8; len -= 8, buff += 8) {
        uint64_t w;
        memcpy(&w, buff, 8);
        temp64 = add64_with_carry(temp64, w);
    }
    if (len) {
        uint64_t trail = 0;
        memcpy(&trail, buff, len);
        temp64 = add64_with_carry(temp64, trail);
    }
    result = add32_with_carry((uint32_t)(temp64 >> 32), (uint32_t)temp64);
    return odd ? ror32(result, 8) : result;
}

/* bpf_csum_diff (net/core/filter.c as of 6.12, "bpf_csum_diff: optimize and homogenize for
 * all archs"): no size rule left beyond what the verifier proves; the result is
 * csum_sub(csum_partial(to, seed), csum_partial(from, 0)), csum_partial(to, seed) or
 * ~csum_partial(from, ~seed), folded to 16 bits (csum_from32to16). */
HELPER(h_csum_diff)
{
    UNUSED_ARGS();
    const uint8_t *from = a2 ? vxdp_mem_check(r, a1, a2, false) : NULL;
    const uint8_t *to = a4 ? vxdp_mem_check(r, a3, a4, false) : NULL;
    uint32_t seed = (uint32_t)a5, ret;
    if (r->fault)
        return 0;
    if (a2 && a4)
        ret = add32_with_carry(csum_partial(to, a4, seed), ~csum_partial(from, a2, 0));
    else if (a4)
        ret = csum_partial(to, a4, seed);
    else if (a2)
        ret = ~csum_partial(from, a2, ~seed);
    else
        ret = seed;
    ret = (ret & 0xffff) + (ret >> 16);
    ret = (ret & 0xffff) + (ret >> 16);
    return ret;
}

/* ---------------------------------------------------------------- ringbuf */

HELPER(h_ringbuf_output)
{
    UNUSED_ARGS();
    struct vxdp_map *m = prog_map(r, a1, "ringbuf_output");
    const void *data = m ? vxdp_mem_check(r, a2, a3, false) : NULL;
    void *sample;
    if (!data)
        return 0;
    if (a4 & ~(uint64_t)(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
        return (uint64_t)-EINVAL;
    sample = vxdp_ringbuf_reserve(m, a3);
    if (!sample)
        return (uint64_t)-EAGAIN;
    memcpy(sample, data, a3);
    vxdp_ringbuf_commit(m, sample, false);
    return 0;
}

HELPER(h_ringbuf_reserve)
{
    UNUSED_ARGS();
    struct vxdp_map *m = prog_map(r, a1, "ringbuf_reserve");
    uint8_t *sample;
    if (!m || a3 || r->nresv == VXDP_MAX_RINGBUF_RESV)
        return 0;
    sample = vxdp_ringbuf_reserve(m, a2);
    if (!sample)
        return 0;
    r->resv[r->nresv].map = m;
    r->resv[r->nresv].lo = sample;
    r->resv[r->nresv].hi = sample + a2;
    r->nresv++;
    return (uint64_t)(uintptr_t)sample;
}

static void ringbuf_release(struct vxdp_run *r, uint64_t sample, bool discard)
{
    for (uint32_t i = 0; i < r->nresv; i++) {
        if ((uint64_t)(uintptr_t)r->resv[i].lo == sample) {
            vxdp_ringbuf_commit(r->resv[i].map, r->resv[i].lo, discard);
            r->resv[i] = r->resv[--r->nresv];
            return;
        }
    }
    vxdp_run_fail(r, -EINVAL, "ringbuf_%s at pc %u: 0x%llx is not a reservation of this run",
                  discard ? "discard" : "submit", r->pc, (unsigned long long)sample);
}

HELPER(h_ringbuf_submit) { UNUSED_ARGS(); ringbuf_release(r, a1, false); return 0; }
HELPER(h_ringbuf_discard) { UNUSED_ARGS(); ringbuf_release(r, a1, true); return 0; }

/* Reservations a program left open when its run ended are discarded. */
void vxdp_run_release_all(struct vxdp_run *r)
{
    while (r->nresv)
        ringbuf_release(r, (uint64_t)(uintptr_t)r->resv[0].lo, true);
}

/* ---------------------------------------------------------------- perf_event_output */

#define BPF_F_INDEX_MASK 0xffffffffull
#define BPF_F_CURRENT_CPU BPF_F_INDEX_MASK
#define BPF_F_CTXLEN_MASK (0xfffffull << 32)

/* bpf_xdp_event_output (net/core/filter.c) into __bpf_perf_event_output: the record is
 * the data, then the packet's first (flags >> 32) bytes.  Every slot of the map is taken
 * to have a reader on the CPU of its index (as libbpf's perf_buffer opens them), so a
 * write to another CPU's slot is -EOPNOTSUPP, as the kernel's oncpu check. */
HELPER(h_perf_event_output)
{
    UNUSED_ARGS();
    struct vxdp_map *m = vxdp_is_ctx(r, a1, "perf_event_output") ?
                         prog_map(r, a2, "perf_event_output") : NULL;
    const void *data = m ? vxdp_mem_check(r, a4, a5, false) : NULL;
    uint64_t pkt_len = (uint64_t)(r->data_end - r->data);
    uint64_t ctx_len = (a3 & BPF_F_CTXLEN_MASK) >> 32, index = a3 & BPF_F_INDEX_MASK;
    if (!data)
        return 0;
    if (vxdp_map_type(m) != VXDP_MAP_PERF_EVENT_ARRAY) {
        vxdp_run_fail(r, -EINVAL, "perf_event_output at pc %u: r2 is not a perf event array",
                      r->pc);
        return 0;
    }
    if (a3 & ~(BPF_F_CTXLEN_MASK | BPF_F_INDEX_MASK))
        return (uint64_t)-EINVAL;
    if (ctx_len > pkt_len)
        return (uint64_t)-EFAULT;
    if (index == BPF_F_CURRENT_CPU)
        index = r->cpu;
    return (uint64_t)(int64_t)vxdp_perf_output(m, index, r->cpu, data, a5, r->data, ctx_len);
}

/* ---------------------------------------------------------------- fib_lookup */

#define BPF_FIB_LOOKUP_FLAGS 0x3full    /* DIRECT OUTPUT SKIP_NEIGH TBID SRC MARK */
#define BPF_FIB_LKUP_RET_NOT_FWDED 4
#define BPF_FIB_LKUP_RET_FWD_DISABLED 5
#define FIB_AF_INET 2
#define FIB_AF_INET6 10
#define FIB_PARAMS_SIZE 64              /* sizeof(struct bpf_fib_lookup) */

/* rt6_need_strict: multicast, link-local (fe80::/10) and loopback (::1) are never
 * forwarded */
static bool ipv6_strict(const uint8_t *a)
{
    static const uint8_t loopback[16] = {[15] = 1};
    return a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
           !memcmp(a, loopback, 16);
}

/* bpf_xdp_fib_lookup on a host with no routes and forwarding disabled on every device:
 * the parameter checks of net/core/filter.c, then bpf_ipv{4,6}_fib_lookup's first steps.
 * The only device is the one the packet came in on (ctx->ingress_ifindex): any other
 * ifindex is -ENODEV; on it forwarding is off, so the answer is
 * BPF_FIB_LKUP_RET_FWD_DISABLED (IPv6 link-local, multicast and loopback addresses are
 * BPF_FIB_LKUP_RET_NOT_FWDED before that).  The guest never sees host routes. */
HELPER(h_fib_lookup)
{
    UNUSED_ARGS();
    uint8_t *p = vxdp_is_ctx(r, a1, "fib_lookup") ? vxdp_mem_check(r, a2, FIB_PARAMS_SIZE, true)
                                              : NULL;
    uint32_t ifindex;
    if ((int64_t)(int32_t)a3 < FIB_PARAMS_SIZE)
        return (uint64_t)-EINVAL;
    if (!p)
        return 0;
    if ((uint32_t)a4 & ~BPF_FIB_LOOKUP_FLAGS)
        return (uint64_t)-EINVAL;
    memcpy(&ifindex, p + 8, 4);
    switch (p[0]) {
    case FIB_AF_INET:
        break;
    case FIB_AF_INET6:
        if (ipv6_strict(p + 32) || ipv6_strict(p + 16))
            return BPF_FIB_LKUP_RET_NOT_FWDED;
        break;
    default:
        return (uint64_t)-EAFNOSUPPORT;
    }
    if (ifindex != r->ingress_ifindex)
        return (uint64_t)-ENODEV;
    return BPF_FIB_LKUP_RET_FWD_DISABLED;
}

/* ---------------------------------------------------------------- bpf_loop */

/* bpf_loop (kernel/bpf/bpf_iter.c): callback(i, ctx) for i = 0.. until it returns nonzero
 * or nr_loops ran; returns the rounds run.  The callback is one the program named with an
 * LD_IMM64 of a function (vm.c marks them at load); it runs in the frame below. */
HELPER(h_loop)
{
    UNUSED_ARGS();
    const struct vxdp_prog *p = r->prog;
    uintptr_t fn = (uintptr_t)a2, base = (uintptr_t)p->insns;
    uint32_t entry;
    uint64_t i, ret = 0;
    if (a4)
        return (uint64_t)-EINVAL;
    if (a1 > BPF_MAX_LOOPS)
        return (uint64_t)-E2BIG;
    entry = (uint32_t)((fn - base) / sizeof(struct bpf_insn));
    if (fn < base || (fn - base) % sizeof(struct bpf_insn) || entry >= p->len ||
        !p->callable[entry]) {
        vxdp_run_fail(r, -EINVAL, "loop at pc %u: r2 is not a function of this program",
                      r->pc);
        return 0;
    }
    for (i = 0; i < a1; i++) {
        uint32_t pc = r->pc;
        if (vxdp_interp_callback(r, entry, i, a3, &ret))
            return 0;   /* the run failed in the callback (r->fault says why) */
        r->pc = pc;
        if (ret)
            return i + 1;
    }
    return i;
}

/* ---------------------------------------------------------------- the XDP table */

const vxdp_helper_fn vxdp_xdp_helpers[VXDP_HELPER_MAX] = {
    [1] = h_map_lookup_elem,
    [2] = h_map_update_elem,
    [3] = h_map_delete_elem,
    [5] = h_ktime_get_ns,
    [6] = h_trace_printk,
    [7] = h_get_prandom_u32,
    [8] = h_get_smp_processor_id,
    /* 12, tail_call, is served by the interpreter itself */
    [23] = vxdp_h_redirect,
    [25] = h_perf_event_output,
    [28] = h_csum_diff,
    [44] = vxdp_h_xdp_adjust_head,
    [51] = vxdp_h_redirect_map,
    [54] = vxdp_h_xdp_adjust_meta,
    [65] = vxdp_h_xdp_adjust_tail,
    [69] = h_fib_lookup,
    [105] = h_strtol,
    [106] = h_strtoul,
    [118] = h_jiffies64,
    [125] = h_ktime_get_boot_ns,
    [130] = h_ringbuf_output,
    [131] = h_ringbuf_reserve,
    [132] = h_ringbuf_submit,
    [133] = h_ringbuf_discard,
    [181] = h_loop,
    [188] = vxdp_h_xdp_get_buff_len,
    [189] = vxdp_h_xdp_load_bytes,
    [190] = vxdp_h_xdp_store_bytes,
};
