/*
 * Running programs compiled by vxdp.bpf.jit in place of the interpreter (ABI: vxdp_jit.h).
 *
 * vxdp_prog_set_jit() attaches a compiled program to a loaded one; from then on the batch
 * loops (xdp.c, datapath.c) and the raw harness run its compiled code through
 * vxdp_jit_run(), which is inline in them (vm_int.h: per packet it only refreshes the
 * packet's bounds and calls the compiled function), and vxdp_interp() hands any run of it
 * there too.  The context set-up, and all that follows a tail call, are here.  The compiled
 * code does the fast work
 * itself (ALU, jumps, stack and packet accesses, bpf-to-bpf frames, the branch budget) and
 * calls back here for everything else through the ops table: the interpreter's own slow
 * memory paths (context rewriting, map values, ringbuf samples, read-only checks), helper
 * calls and tail calls, with the interpreter's messages.  The semantics are the
 * interpreter's (vm.c); tests/vxdp/test_jit.py and the differential suite hold them equal.
 *
 * Control moves between programs here: a taken tail call returns VXDP_JIT_TAIL and an exit
 * into another program's frame VXDP_JIT_RESUME; vxdp_jit_finish() enters the next function.
 * A tail call into a program that has no compiled code fails the run (the interpreter
 * cannot take over mid-run with the JIT's frames): engines compile every program they load.
 */
#include <stddef.h>

#include "vm_int.h"
#include "vxdp_jit.h"

_Static_assert(VXDP_JIT_STACK_SIZE == VXDP_STACK_SIZE, "jit stack size");
_Static_assert(VXDP_JIT_MAX_FRAMES == VXDP_MAX_CALL_FRAMES, "jit call frames");
_Static_assert(sizeof(struct bpf_insn) == 8, "insn size");
_Static_assert(sizeof(struct vxdp_jit_region) == sizeof(struct vxdp_map_region) &&
               offsetof(struct vxdp_jit_region, hi) == offsetof(struct vxdp_map_region, hi) &&
               offsetof(struct vxdp_jit_region, writable) ==
                   offsetof(struct vxdp_map_region, writable), "map regions as the core's");
_Static_assert(sizeof(((struct vxdp_run *)0)->ctx_md) == 6 * 4, "xdp_md fields");

uint32_t vxdp_jit_abi(void) { return VXDP_JIT_ABI; }

int vxdp_prog_set_jit(struct vxdp_prog *prog, uintptr_t info_addr, char *err, size_t errlen)
{
    const struct vxdp_jit_info *info = (const struct vxdp_jit_info *)info_addr;

    if (!info) {
        prog->jit = NULL;   /* back to the interpreter */
        return 0;
    }
    if (info->abi != VXDP_JIT_ABI)
        return vxdp_errf(err, errlen, -EINVAL, "compiled program has jit ABI %u, the core "
                         "speaks %u", info->abi, VXDP_JIT_ABI);
    if (info->mode != prog->mode)
        return vxdp_errf(err, errlen, -EINVAL, "compiled program is for mode %u, the "
                         "program was loaded for mode %u", info->mode, prog->mode);
    if (info->ninsns != prog->len)
        return vxdp_errf(err, errlen, -EINVAL, "compiled program has %u instructions, the "
                         "program %u", info->ninsns, prog->len);
    if (!info->entry)
        return vxdp_errf(err, errlen, -EINVAL, "compiled program has no entry point");
    for (uint32_t i = 0; i < prog->nmaps; i++)
        vxdp_map_jit_desc(prog->maps[i], &prog->jit_maps[i]);
    prog->jit = info->entry;
    return 0;
}

int vxdp_prog_has_jit(const struct vxdp_prog *prog) { return prog->jit != NULL; }

/* ---------------------------------------------------------------- ops */

static inline struct vxdp_run *run_of(struct vxdp_jit_ctx *c)
{
    struct vxdp_run *r = c->run;
    r->stack_lo = c->stack_lo;   /* the compiled code moves it on bpf-to-bpf calls */
    return r;
}

static uint64_t op_load(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t addr, uint32_t size,
                        uint32_t sx)
{
    struct vxdp_run *r = run_of(c);
    uint64_t v = 0;
    r->pc = pc;
    int rc = vxdp_load_slow(r, addr, size, sx != 0, &v);
    if (rc) {
        c->status = rc;
        return 0;
    }
    return v;
}

static void *op_store(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t addr, uint32_t size)
{
    struct vxdp_run *r = run_of(c);
    r->pc = pc;
    void *p = vxdp_store_slow(r, addr, size);
    if (!p)
        c->status = r->fault ? r->fault : -EFAULT;
    return p;
}

static uint64_t op_call(struct vxdp_jit_ctx *c, uint32_t pc, uint32_t id, uint64_t a1,
                        uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    struct vxdp_run *r = run_of(c);
    const struct vxdp_prog *prog = r->prog;
    uint64_t v;

    r->pc = pc;
    v = prog->helpers[id](r, a1, a2, a3, a4, a5);
    if (unlikely(r->fault)) {
        c->status = r->fault;
        return v;
    }
    /* the bpf_conformance harness's helper 5 unwinds the program when it returns 0 */
    if (prog->mode == VXDP_MODE_RAW && id == 5 && v == 0)
        c->status = 1;
    vxdp_jit_refresh(c, r);
    return v;
}

static uint64_t op_callx(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t id, uint64_t a1,
                         uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    struct vxdp_run *r = run_of(c);
    uint32_t helper_id = (uint32_t)id;
    if (helper_id >= VXDP_HELPER_MAX || !r->prog->helpers[helper_id]) {
        r->pc = pc;
        c->status = vxdp_run_fail(r, -EINVAL, "callx at pc %u to unknown helper %u", pc,
                                  helper_id);
        return 0;
    }
    return op_call(c, pc, helper_id, a1, a2, a3, a4, a5);
}

/* bpf_tail_call(ctx, prog_array, index): as the interpreter's tail_call (vm.c), except
 * that the switch to the next program happens in vxdp_jit_finish once the compiled code has
 * charged the branch budget. */
static int op_tail_call(struct vxdp_jit_ctx *c, uint32_t pc, uint64_t map, uint64_t index)
{
    struct vxdp_run *r = run_of(c);
    const struct vxdp_prog *prog = r->prog;
    struct vxdp_map *m = (struct vxdp_map *)(uintptr_t)map;
    struct vxdp_prog *next;
    uint32_t id, i;

    r->pc = pc;
    for (i = 0; i < prog->nmaps && prog->maps[i] != m; i++)
        ;
    if (i == prog->nmaps || vxdp_map_type(m) != VXDP_MAP_PROG_ARRAY) {
        c->status = vxdp_run_fail(r, -EINVAL, "tail call at pc %u: r2 is not a prog array "
                                  "of this program", pc);
        return c->status;
    }
    if (r->tail_calls >= VXDP_MAX_TAIL_CALLS)
        return 0;
    if (vxdp_map_prog_array_get(m, (uint32_t)index, &id))
        return 0;
    next = vxdp_prog_by_id(id);
    if (!next || next->mode != prog->mode)
        return 0;
    r->tail_calls++;
    c->next_prog = next;
    return 1;
}

static void op_fault(struct vxdp_jit_ctx *c, uint32_t pc, uint32_t kind, uint64_t a,
                     uint64_t b)
{
    struct vxdp_run *r = run_of(c);
    r->pc = pc;
    switch (kind) {
    case VXDP_JIT_F_DEPTH:
        c->status = vxdp_run_fail(r, -E2BIG, "the call stack of %d frames is too deep at "
                                  "pc %u", VXDP_MAX_CALL_FRAMES, pc);
        break;
    case VXDP_JIT_F_BUDGET:
        c->status = vxdp_run_fail(r, -ELOOP, "branch budget of %u exhausted at pc %u "
                                  "(endless loop?)", VXDP_BRANCH_BUDGET, pc);
        break;
    case VXDP_JIT_F_MISALIGNED:
        c->status = vxdp_run_fail(r, -EFAULT, "misaligned %llu-byte atomic at pc %u: 0x%llx",
                                  (unsigned long long)a, pc, (unsigned long long)b);
        break;
    case VXDP_JIT_F_ENTRY:
        c->status = vxdp_run_fail(r, -EINVAL, "compiled program entered at pc %llu, which "
                                  "is no entry", (unsigned long long)a);
        break;
    default:
        c->status = vxdp_run_fail(r, -EINVAL, "compiled program reported fault %u at pc %u",
                                  kind, pc);
        break;
    }
}

static const struct vxdp_jit_ops jit_ops = {
    .load = op_load,
    .store = op_store,
    .call = op_call,
    .callx = op_callx,
    .tail_call = op_tail_call,
    .fault = op_fault,
};

/* ---------------------------------------------------------------- runs */

static void enter(struct vxdp_jit_ctx *c, struct vxdp_run *r, const struct vxdp_prog *p)
{
    r->prog = p;
    c->prog = p;
    c->insns = (const uint8_t *)p->insns;
    c->regions = (const struct vxdp_jit_region *)p->regions;
    c->maps = p->jit_maps;
    c->nregions = p->nmaps;
}

/* What stays the same from one run of `p` on `r` to the next: set up on the first run (of
 * a batch, or after another program ran on `r`), not per packet. */
static void ctx_setup(struct vxdp_jit_ctx *c, struct vxdp_run *r, const struct vxdp_prog *p)
{
    c->ops = &jit_ops;
    c->run = r;
    c->stack_base = (uintptr_t)r->stack;
    c->stack_hi = (uintptr_t)r->stack + sizeof(r->stack);
    /* the context the load_slow rewriting serves (vm.c), inline for 4-byte loads */
    c->ctx_lo = p->mode == VXDP_MODE_XDP ? (uintptr_t)r->ctx_md : 0;
    c->ctx_val[5] = 0;   /* egress_ifindex: 0 outside devmap programs */
    c->resume_pc = 0;
    c->next_prog = NULL;
    r->jit_prog_id = p->id;
    enter(c, r, p);
}

/* What the inline entry (vm_int.h, vxdp_jit_run) leaves to the first run of a batch or
 * burst, and to the run after a tail call: the context set up for `p` (afresh when another
 * program ran on `r` last), the registers a compiled function does not write back (r3-r10:
 * only a tail call or a resume leaves others there) and the context values that stay the
 * same for a batch or burst (whoever changes ingress_ifindex or rx_queue_index clears
 * r->jit_ready). */
void vxdp_jit_prepare(struct vxdp_run *r, const struct vxdp_prog *p)
{
    struct vxdp_jit_ctx *c = &r->jit;

    if (r->jit_prog_id != p->id)
        ctx_setup(c, r, p);
    else if (c->prog != p)   /* the last run ended in another program */
        enter(c, r, p);
    /* spelled out: a memset of the registers costs GCC's `rep stos` */
    c->reg[3] = 0, c->reg[4] = 0, c->reg[5] = 0, c->reg[6] = 0, c->reg[7] = 0;
    c->reg[8] = 0, c->reg[9] = 0, c->reg[10] = c->stack_hi;
    c->ctx_val[3] = r->ingress_ifindex;
    c->ctx_val[4] = r->rx_queue_index;
    r->jit_ready = p->id;
}

/* The rest of a run whose compiled function returned `st` other than VXDP_JIT_DONE:
 * the next program's function is entered until one finishes or the run fails. */
int vxdp_jit_finish(struct vxdp_run *r, int st, uint64_t *ret)
{
    struct vxdp_jit_ctx *c = &r->jit;

    for (;;) {
        const struct vxdp_prog *p;
        uint32_t entry;
        switch (st) {
        case VXDP_JIT_DONE:
            *ret = c->reg[0];
            return 0;
        case VXDP_JIT_TAIL:
        case VXDP_JIT_RESUME:
            r->jit_ready = 0;
            p = c->next_prog;
            entry = st == VXDP_JIT_TAIL ? 0 : c->resume_pc;
            if (!p->jit) {
                r->pc = entry;
                return vxdp_run_fail(r, -EINVAL, "%s program %u, which has no compiled code "
                                     "(a compiled program reaches only compiled programs)",
                                     st == VXDP_JIT_TAIL ? "tail call into" : "return into",
                                     p->id);
            }
            enter(c, r, p);
            st = p->jit(c, entry);
            continue;
        default:
            return r->fault ? r->fault : -EFAULT;
        }
    }
}

/* vxdp_jit_run out of line: vxdp_interp() hands compiled programs here rather than carry
 * the inline entry, which would cost the interpreter's own entry a stack frame. */
int vxdp_jit_run_call(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret)
{
    return vxdp_jit_run(r, r1, r2, ret);
}
