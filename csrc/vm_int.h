/*
 * Internals shared by the core's C files (never seen by cdef): instruction encoding, the
 * program and map objects, the per-run state and the region checks.
 */
#ifndef VXDP_VM_INT_H
#define VXDP_VM_INT_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vxdp_core.h"
#include "vxdp_jit.h"

#define VXDP_ENOTSUPP 524   /* the kernel's internal ENOTSUPP, as bpf() returns it */
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

struct bpf_insn {
    uint8_t code;
    uint8_t dst : 4;
    uint8_t src : 4;
    int16_t off;
    int32_t imm;
};

/* instruction classes and fields, include/uapi/linux/bpf_common.h and bpf.h */
#define BPF_CLASS(c) ((c) & 0x07)
#define BPF_LD 0x00
#define BPF_LDX 0x01
#define BPF_ST 0x02
#define BPF_STX 0x03
#define BPF_ALU 0x04
#define BPF_JMP 0x05
#define BPF_JMP32 0x06
#define BPF_ALU64 0x07
#define BPF_SIZE(c) ((c) & 0x18)
#define BPF_W 0x00
#define BPF_H 0x08
#define BPF_B 0x10
#define BPF_DW 0x18
#define BPF_MODE(c) ((c) & 0xe0)
#define BPF_IMM 0x00
#define BPF_MEM 0x60
#define BPF_MEMSX 0x80
#define BPF_ATOMIC 0xc0
#define BPF_OP(c) ((c) & 0xf0)
#define BPF_SRC(c) ((c) & 0x08)
#define BPF_K 0x00
#define BPF_X 0x08
#define BPF_ADD 0x00
#define BPF_SUB 0x10
#define BPF_MUL 0x20
#define BPF_DIV 0x30
#define BPF_OR 0x40
#define BPF_AND 0x50
#define BPF_LSH 0x60
#define BPF_RSH 0x70
#define BPF_NEG 0x80
#define BPF_MOD 0x90
#define BPF_XOR 0xa0
#define BPF_MOV 0xb0
#define BPF_ARSH 0xc0
#define BPF_END 0xd0
#define BPF_JA 0x00
#define BPF_JEQ 0x10
#define BPF_JGT 0x20
#define BPF_JGE 0x30
#define BPF_JSET 0x40
#define BPF_JNE 0x50
#define BPF_JSGT 0x60
#define BPF_JSGE 0x70
#define BPF_CALL 0x80
#define BPF_EXIT 0x90
#define BPF_JLT 0xa0
#define BPF_JLE 0xb0
#define BPF_JSLT 0xc0
#define BPF_JSLE 0xd0
#define BPF_FETCH 0x01
#define BPF_XCHG (0xe0 | BPF_FETCH)
#define BPF_CMPXCHG (0xf0 | BPF_FETCH)
#define BPF_PSEUDO_MAP_FD 1
#define BPF_PSEUDO_MAP_VALUE 2
#define BPF_PSEUDO_CALL 1
#define BPF_PSEUDO_FUNC 4
#define BPF_FUNC_loop 181
#define BPF_MAX_LOOPS (8u * 1024 * 1024)

#define VXDP_HELPER_MAX 212   /* helper ids are below this (BPF_FUNC_xxx) */
#define BPF_FUNC_tail_call 12

/* the bytes of a map programs may point into (value arena), fixed when the map is made */
struct vxdp_map_region {
    uintptr_t lo, hi;
    bool writable;
};

struct vxdp_run;
struct vxdp_jit_ctx;
typedef uint64_t (*vxdp_helper_fn)(struct vxdp_run *r, uint64_t a1, uint64_t a2, uint64_t a3,
                                   uint64_t a4, uint64_t a5);

struct vxdp_prog {
    struct bpf_insn *insns;
    uint32_t len;
    uint32_t mode;
    uint32_t id;
    uint32_t nmaps;
    struct vxdp_map *maps[VXDP_MAX_PROG_MAPS];
    struct vxdp_map_region regions[VXDP_MAX_PROG_MAPS];   /* value arenas, fixed at load */
    const vxdp_helper_fn *helpers;   /* VXDP_HELPER_MAX entries, NULL = unknown */
    uint8_t *callable;               /* per insn: an LD_IMM64 of a function names it */
    /* compiled code (vxdp.bpf.jit, jit_glue.c) run in place of the interpreter, or NULL */
    int (*jit)(struct vxdp_jit_ctx *c, uint32_t entry);
    struct vxdp_jit_map jit_maps[VXDP_MAX_PROG_MAPS];   /* what it needs of the maps */
};

struct vxdp_env {
    uint32_t cpu;
    uint64_t rnd[2];                 /* xorshift128+ state of get_prandom_u32 */
    size_t trace_len;
    char trace[VXDP_TRACE_BUF_SIZE];
};

struct ringbuf_resv {
    struct vxdp_map *map;
    uint8_t *lo, *hi;                /* the sample the program may write */
};

/* A run: registers live in the interpreter; this is everything a helper may touch. */
struct vxdp_run {
    const struct vxdp_prog *prog;    /* the program running now (tail calls switch it) */
    struct vxdp_env *env;
    uint32_t cpu;
    uint32_t pc;                     /* pc of the call being served, for messages */
    int fault;                       /* negative errno once the run has failed */
    uintptr_t stack_lo;              /* lowest byte of the stack frames in use */
    char *err;
    size_t errlen;
    /* the packet region the program may touch: [pkt_lo, pkt_hi) */
    uintptr_t pkt_lo, pkt_hi;
    /* XDP: the frame (xdp_buff) and its context; ctx points at ctx_md */
    uint8_t *hard_start;
    uint8_t *data, *data_end, *data_meta;
    uint8_t *head_low;               /* lowest headroom byte this packet exposed */
    uint32_t frame_sz;
    uint32_t ingress_ifindex, rx_queue_index;
    uint32_t ctx_md[6];
    int64_t redirect;
    uint32_t tail_calls;
    uint32_t callbacks;              /* callbacks (bpf_loop) running now */
    uint32_t nresv;
    struct ringbuf_resv resv[VXDP_MAX_RINGBUF_RESV];
    uint8_t stack[VXDP_MAX_CALL_FRAMES * VXDP_STACK_SIZE] __attribute__((aligned(16)));
    /* compiled programs (jit_glue.c): the context they run in, kept from one packet to
     * the next; valid for the program of id jit_prog_id (0: set it up afresh) */
    uint32_t jit_prog_id;
    /* jit_prog_id when its next run needs no preparation (vxdp_jit_prepare: the context
     * entered at that program, registers r3-r10 as set up, ingress_ifindex and
     * rx_queue_index in it), else 0: a new batch or burst, or a tail call or a resume
     * left another program and other registers there */
    uint32_t jit_ready;
    struct vxdp_jit_ctx jit;
};

/* errors: negative errno, text formatted into the caller's buffer */
int vxdp_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int vxdp_run_fail(struct vxdp_run *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* helpers.c: a memcpy the compiler cannot inline (GCC turns copies into a frame it knows
 * the alignment of into `rep movsq`, slow for packet-sized copies; glibc's is not) */
void *vxdp_memcpy(void *dst, const void *src, size_t n);

/* vm.c */
int vxdp_interp(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret);
/* run the function at insn `entry` of the running program as a callback, in the frame
 * below the current one (bpf_loop); the interpreter runs it even for compiled programs */
int vxdp_interp_callback(struct vxdp_run *r, uint32_t entry, uint64_t r1, uint64_t r2,
                         uint64_t *ret);
struct vxdp_prog *vxdp_prog_by_id(uint32_t id);
/* the interpreter's slow memory paths, shared with compiled code (jit_glue.c) */
int vxdp_load_slow(struct vxdp_run *r, uint64_t addr, uint32_t size, bool sx, uint64_t *out);
void *vxdp_store_slow(struct vxdp_run *r, uint64_t addr, uint32_t size);
/* jit_glue.c: the out-of-line parts of a run of a program that has compiled code, and
 * vxdp_jit_run (below) as a function of its own */
void vxdp_jit_prepare(struct vxdp_run *r, const struct vxdp_prog *p);
int vxdp_jit_finish(struct vxdp_run *r, int st, uint64_t *ret);
int vxdp_jit_run_call(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret);

/* the packet region and the context values after anything that may have moved them */
static inline void vxdp_jit_refresh(struct vxdp_jit_ctx *c, const struct vxdp_run *r)
{
    uintptr_t data = (uintptr_t)r->data;
    /* keeps GCC from reading data and data_end as one 16-byte load: the batch loop has
     * just stored them 8 bytes at a time, and the failed store forwarding cost more than
     * a whole short program */
    __asm__("" : "+r"(data));
    c->pkt_lo = r->pkt_lo;
    c->pkt_hi = r->pkt_hi;
    c->ctx_val[0] = data;
    c->ctx_val[1] = (uintptr_t)r->data_end;
    c->ctx_val[2] = (uintptr_t)r->data_meta;
}

/* A run of r->prog, which has compiled code: the interpreter's contract (vm.c).  Inline in
 * the batch loops, where a packet's run is the same program as the packet's before: all it
 * does then is the packet's bounds, what a run may have left (depth, stack, status, the
 * budget, r0-r2) and the call.  The rest is jit_glue.c's.  r->stack_lo is not kept here:
 * every call from compiled code into the core sets it first (jit_glue.c, run_of). */
static inline int vxdp_jit_run(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret)
{
    struct vxdp_jit_ctx *c = &r->jit;
    const struct vxdp_prog *p = r->prog;
    int st;

    if (unlikely(r->jit_ready != p->id))
        vxdp_jit_prepare(r, p);
    vxdp_jit_refresh(c, r);
    c->stack_lo = c->stack_hi - VXDP_STACK_SIZE;   /* depth 0: the topmost frame */
    c->status = 0;
    c->depth = 0;
    c->budget = VXDP_BRANCH_BUDGET;
    /* a compiled function writes back r0 only, unless it leaves for another program */
    c->reg[0] = 0, c->reg[1] = r1, c->reg[2] = r2;
    st = p->jit(c, 0);
    if (likely(st == VXDP_JIT_DONE)) {
        *ret = c->reg[0];
        return 0;
    }
    return vxdp_jit_finish(r, st, ret);
}

/* helpers.c: the helper tables of each mode; xdp.c: the frame helpers */
#define VXDP_HELPER_DECL(name) \
    uint64_t name(struct vxdp_run *r, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, \
                  uint64_t a5)
VXDP_HELPER_DECL(vxdp_h_redirect);
VXDP_HELPER_DECL(vxdp_h_redirect_map);
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_head);
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_meta);
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_tail);
VXDP_HELPER_DECL(vxdp_h_xdp_get_buff_len);
VXDP_HELPER_DECL(vxdp_h_xdp_load_bytes);
VXDP_HELPER_DECL(vxdp_h_xdp_store_bytes);
void vxdp_run_release_all(struct vxdp_run *r);

/* One run of r->prog as the batch loops make it (xdp.c, datapath.c): compiled code when
 * the program has some (`jit`: a loop that knows which engine runs its program passes a
 * constant, and its code keeps only that engine's entry), else the interpreter; ringbuf
 * samples the program left reserved are released (discarded) after it. */
static inline int vxdp_run_prog_on(struct vxdp_run *r, uint64_t r1, uint64_t r2,
                                   uint64_t *ret, bool jit)
{
    int rc = jit ? vxdp_jit_run(r, r1, r2, ret) : vxdp_interp(r, r1, r2, ret);
    if (unlikely(r->nresv))
        vxdp_run_release_all(r);
    return rc;
}

static inline int vxdp_run_prog(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret)
{
    return vxdp_run_prog_on(r, r1, r2, ret, r->prog->jit != NULL);
}

/* a1 is the run's context, else the run fails naming the helper (xdp.c) */
bool vxdp_is_ctx(struct vxdp_run *r, uint64_t a1, const char *helper);
extern const vxdp_helper_fn vxdp_raw_helpers[VXDP_HELPER_MAX];
extern const vxdp_helper_fn vxdp_xdp_helpers[VXDP_HELPER_MAX];
/* a helper's view of program memory: a host pointer to [addr, addr+len) or NULL (faulted) */
void *vxdp_mem_check(struct vxdp_run *r, uint64_t addr, uint64_t len, bool write);
/* the same without failing the run (the kernel's copy_from_kernel_nofault) */
const void *vxdp_mem_peek(const struct vxdp_run *r, uint64_t addr, uint64_t len);

/* maps.c: what the interpreter and helpers need of maps */
void vxdp_map_region(const struct vxdp_map *map, struct vxdp_map_region *out);
uint32_t vxdp_map_type(const struct vxdp_map *map);
uint32_t vxdp_map_value_size(const struct vxdp_map *map);
void vxdp_map_get(struct vxdp_map *map);
void *vxdp_map_value_ptr(struct vxdp_map *map, uint64_t offset, uint64_t len);
void *vxdp_map_prog_lookup(struct vxdp_map *map, const void *key, uint32_t cpu);
int vxdp_map_prog_update(struct vxdp_map *map, const void *key, const void *value,
                         uint64_t flags, uint32_t cpu);
int vxdp_map_prog_delete(struct vxdp_map *map, const void *key);
uint32_t vxdp_map_key_size(const struct vxdp_map *map);
int vxdp_map_prog_array_get(struct vxdp_map *map, uint32_t index, uint32_t *prog_id);
int vxdp_map_devmap_get(struct vxdp_map *map, uint32_t key, uint32_t *ifindex);
int vxdp_map_xsk_get(struct vxdp_map *map, uint32_t key, uint32_t *queue);
/* map-in-map: the inner map `outer` holds at address addr (NULL when none), and which
 * region of its inner maps holds [addr, addr+len): 1 writable, 0 read-only, -1 none */
struct vxdp_map *vxdp_map_inner_find(struct vxdp_map *outer, uint64_t addr);
int vxdp_map_inner_region(struct vxdp_map *outer, uint64_t addr, uint64_t len);
int vxdp_perf_output(struct vxdp_map *map, uint64_t index, uint32_t cpu, const void *a,
                     uint64_t alen, const void *b, uint64_t blen);
void *vxdp_ringbuf_reserve(struct vxdp_map *map, uint64_t size);
void vxdp_ringbuf_commit(struct vxdp_map *map, void *sample, bool discard);
bool vxdp_map_rdonly_prog(const struct vxdp_map *map);
void vxdp_map_jit_desc(const struct vxdp_map *map, struct vxdp_jit_map *out);

#endif
