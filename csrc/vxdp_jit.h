/*
 * The ABI between the packet core and programs compiled by vxdp.bpf.jit.
 *
 * vxdp.bpf.jitgen translates a program to C; that C is compiled into a shared object of its
 * own (cached by program digest) and this header is pasted at its top, so the core and the
 * compiled code agree on every layout below.  The compiled object links against nothing of
 * the core: everything it needs arrives at call time in `struct vxdp_jit_ctx`, the ops
 * table included (the slow memory paths, helper calls, tail calls and fault messages are
 * the core's own, so they cannot drift from the interpreter).
 *
 * A compiled program exports one symbol, `vxdp_jit_info`; vxdp_prog_set_jit() checks its
 * ABI, mode and length against the loaded program and from then on the core runs the
 * compiled entry in place of the interpreter (vxdp_jit_run in vm_int.h, jit_glue.c).
 *
 * Control flow between programs stays in the core: a compiled function returns
 * VXDP_JIT_TAIL after a tail call was taken and VXDP_JIT_RESUME when an exit pops a frame
 * that belongs to another program (a tail call made from a subprogram); the core then
 * enters that program's function with `entry` = the pc to start at (0 or a return site),
 * the registers in `reg`.
 *
 * Plain C (no includes beyond stdint) so it can be pasted into generated sources.
 */
#ifndef VXDP_JIT_H
#define VXDP_JIT_H

#include <stdint.h>

#define VXDP_JIT_ABI 4
#define VXDP_JIT_STACK_SIZE 512          /* VXDP_STACK_SIZE */
#define VXDP_JIT_MAX_FRAMES 8            /* VXDP_MAX_CALL_FRAMES */

/* what a compiled function returns */
#define VXDP_JIT_DONE 0                  /* exit at depth 0: r0 is in reg[0] */
#define VXDP_JIT_FAULT 1                 /* the run failed; the core holds the message */
#define VXDP_JIT_TAIL 2                  /* a tail call was taken: enter next_prog at 0 */
#define VXDP_JIT_RESUME 3                /* enter next_prog at resume_pc */

/* faults the compiled code detects itself (the core words the message) */
#define VXDP_JIT_F_DEPTH 1               /* bpf-to-bpf call beyond VXDP_JIT_MAX_FRAMES */
#define VXDP_JIT_F_BUDGET 2              /* branch budget exhausted (a = 0) */
#define VXDP_JIT_F_MISALIGNED 3          /* atomic: a = size, b = address */
#define VXDP_JIT_F_ENTRY 4               /* entered at a pc that is no entry: a = pc */

struct vxdp_jit_ctx;

typedef int (*vxdp_jit_fn)(struct vxdp_jit_ctx *c, uint32_t entry);

struct vxdp_jit_ops {
    /* a load outside the stack and packet: context rewriting, map values, ringbuf
     * samples; on a fault the value is 0 and c->status is set */
    uint64_t (*load)(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t addr, uint32_t size,
                     uint32_t sx);
    /* the host address to store to, NULL (c->status set) when the store is refused */
    void *(*store)(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t addr, uint32_t size);
    /* helper `id` (callx: any id, checked); r0 back; c->status > 0 ends the run with r0
     * (the raw harness's unwinding helper), < 0 is a fault; refreshes pkt_lo/pkt_hi */
    uint64_t (*call)(struct vxdp_jit_ctx *c, uint32_t pc, uint32_t id, uint64_t a1,
                     uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
    uint64_t (*callx)(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t id, uint64_t a1,
                      uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
    /* bpf_tail_call(ctx, map, index): 0 not taken (go on), 1 taken (next_prog set),
     * < 0 fault */
    int (*tail_call)(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t map, uint64_t index);
    /* record a fault found by the compiled code (VXDP_JIT_F_*) */
    void (*fault)(struct vxdp_jit_ctx *c, uint32_t pc, uint32_t kind, uint64_t a,
                  uint64_t b);
};

/* the value arena of one map the program uses (struct vxdp_map_region of the core) */
struct vxdp_jit_region {
    uintptr_t lo, hi;
    _Bool writable;
};

/* what compiled code needs to serve bpf_map_lookup_elem inline, as the kernel's JIT
 * does for plain arrays (array_map_gen_lookup): one per map of the program, in the
 * program's map order, filled by the core when the compiled code is attached */
struct vxdp_jit_map {
    uintptr_t map;                       /* the address an LD_IMM64 of the map gives */
    uintptr_t values;                    /* the value of element 0 */
    uint32_t max_entries;
    uint32_t stride;                     /* bytes from one element's value to the next */
    _Bool inline_array;                  /* a plain array: lookups may be served inline */
};

struct vxdp_jit_frame {
    const void *prog;                    /* the program to return into */
    uint32_t ret_pc;
    uint32_t pad;
    uint64_t saved[4];                   /* r6-r9 */
};

struct vxdp_jit_ctx {
    const struct vxdp_jit_ops *ops;
    void *run;                           /* the core's run (opaque here) */
    const void *prog;                    /* the program running now (opaque here) */
    const uint8_t *insns;                /* its instructions as loaded (maps rebound) */
    uint64_t reg[11];                    /* the registers at entry and at TAIL/RESUME */
    uintptr_t stack_base;                /* lowest byte of the run's stack frames */
    uintptr_t stack_lo, stack_hi;        /* the frames in use: [stack_lo, stack_hi) */
    uintptr_t pkt_lo, pkt_hi;            /* the packet region: [pkt_lo, pkt_hi) */
    /* XDP: the struct xdp_md the program sees at ctx_lo, and what a 4-byte load of each
     * field gives (data, data_end and data_meta as 64-bit pointers, as the kernel rewrites
     * them); refreshed with pkt_lo/pkt_hi after every helper call */
    uintptr_t ctx_lo;
    uint64_t ctx_val[6];
    /* the map value arenas of the program running now: loads and stores in them are
     * served inline (a store only where the map is writable for programs) */
    const struct vxdp_jit_region *regions;
    const struct vxdp_jit_map *maps;     /* as many as regions */
    uint32_t nregions;
    int32_t status;                      /* set by ops: 0, > 0 unwind, < 0 fault */
    uint32_t depth;                      /* bpf-to-bpf frames below the current one */
    uint32_t budget;                     /* taken backward jumps + calls left */
    uint32_t resume_pc;
    const void *next_prog;               /* TAIL / RESUME: the program to enter */
    struct vxdp_jit_frame frames[VXDP_JIT_MAX_FRAMES];
};

/* the one symbol of a compiled program */
struct vxdp_jit_info {
    uint32_t abi;                        /* VXDP_JIT_ABI */
    uint32_t mode;                       /* VXDP_MODE_RAW or VXDP_MODE_XDP */
    uint32_t ninsns;                     /* instruction slots it was compiled from */
    uint32_t reserved;
    vxdp_jit_fn entry;
};

#endif
