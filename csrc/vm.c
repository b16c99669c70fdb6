/*
 * The BPF machine: the program loader (structural checks, map rebinding) and the
 * interpreter (computed-goto dispatch, as the kernel's ___bpf_prog_run).
 *
 * Semantics are RFC 9669 (BPF ISA, cpu v4): division by zero yields 0, modulo by zero leaves
 * the destination unchanged (ALU32: truncated to 32 bits), shift amounts are masked, signed
 * division of the minimum by -1 wraps.  Every load and store is bounds-checked at run time
 * against the regions the run owns (stack frames in use, packet, context, map values,
 * ringbuf reservations): the verifier is a separate component and the interpreter does
 * not trust that it ran.
 */
#include <stdlib.h>

#include "vm_int.h"

/* Loaded programs by id (what PROG_ARRAY slots hold): a program with id i sits in slot
 * i % REGISTRY_SIZE, so a tail call finds its target with one load. */
#define REGISTRY_SIZE 4096u
static struct vxdp_prog *prog_registry[REGISTRY_SIZE];
static uint32_t prog_next_id = 1;

int vxdp_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int vxdp_run_fail(struct vxdp_run *r, int code, const char *fmt, ...)
{
    if (r->fault)
        return r->fault;  /* keep the first failure */
    r->fault = code;
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

struct vxdp_prog *vxdp_prog_by_id(uint32_t id)
{
    struct vxdp_prog *p = prog_registry[id % REGISTRY_SIZE];
    return p && p->id == id ? p : NULL;
}

/* ---------------------------------------------------------------- loader */

static bool alu_op_valid(const struct bpf_insn *in, bool is64)
{
    uint8_t op = BPF_OP(in->code);
    switch (op) {
    case BPF_ADD: case BPF_SUB: case BPF_MUL: case BPF_OR: case BPF_AND: case BPF_LSH:
    case BPF_RSH: case BPF_XOR: case BPF_ARSH:
        return in->off == 0;
    case BPF_DIV: case BPF_MOD:
        return in->off == 0 || in->off == 1;
    case BPF_NEG:
        return BPF_SRC(in->code) == BPF_K && in->off == 0;
    case BPF_MOV:
        if (in->off == 0)
            return true;
        if (BPF_SRC(in->code) != BPF_X)
            return false;
        return in->off == 8 || in->off == 16 || (is64 && in->off == 32);
    case BPF_END:
        if (is64 && BPF_SRC(in->code) != BPF_K)
            return false;
        return in->imm == 16 || in->imm == 32 || in->imm == 64;
    default:
        return false;
    }
}

static bool jmp_op_valid(uint8_t op)
{
    switch (op) {
    case BPF_JEQ: case BPF_JGT: case BPF_JGE: case BPF_JSET: case BPF_JNE: case BPF_JSGT:
    case BPF_JSGE: case BPF_JLT: case BPF_JLE: case BPF_JSLT: case BPF_JSLE:
        return true;
    default:
        return false;
    }
}

static bool atomic_op_valid(int32_t imm)
{
    switch (imm) {
    case BPF_ADD: case BPF_OR: case BPF_AND: case BPF_XOR:
    case BPF_ADD | BPF_FETCH: case BPF_OR | BPF_FETCH: case BPF_AND | BPF_FETCH:
    case BPF_XOR | BPF_FETCH: case BPF_XCHG: case BPF_CMPXCHG:
        return true;
    default:
        return false;
    }
}

/* Check one instruction; returns 0 or -EINVAL with the reason.  `targets` collects the
 * branch targets so they can be checked against LD_IMM64 second slots afterwards. */
static int check_insn(struct vxdp_prog *p, uint32_t pc, uint8_t *second_slot,
                      struct vxdp_map **maps, uint32_t nmaps, char *err, size_t errlen)
{
    struct bpf_insn *in = &p->insns[pc];
    uint8_t cls = BPF_CLASS(in->code);
    int64_t target;

    if (in->dst > 10 || in->src > 10)
        return vxdp_errf(err, errlen, -EINVAL, "invalid register at pc %u", pc);
    switch (cls) {
    case BPF_ALU:
    case BPF_ALU64:
        if (!alu_op_valid(in, cls == BPF_ALU64))
            goto bad_opcode;
        if (in->dst == 10)
            goto frame_pointer;
        return 0;
    case BPF_JMP:
    case BPF_JMP32: {
        uint8_t op = BPF_OP(in->code);
        if (op == BPF_EXIT) {
            if (in->code != (BPF_JMP | BPF_EXIT))
                goto bad_opcode;
            return 0;
        }
        if (op == BPF_CALL) {
            if (cls != BPF_JMP)
                goto bad_opcode;
            if (BPF_SRC(in->code) == BPF_X) {   /* callx: a ubpf extension, raw mode only */
                uint32_t reg = in->dst ? in->dst : (uint32_t)in->imm;
                if (p->mode != VXDP_MODE_RAW || reg > 10)
                    goto bad_opcode;
                return 0;
            }
            if (in->src == BPF_PSEUDO_CALL) {
                target = (int64_t)pc + 1 + in->imm;
                goto check_target;
            }
            if (in->src != 0)
                goto bad_opcode;
            if (in->imm < 0 || in->imm >= VXDP_HELPER_MAX ||
                (!p->helpers[in->imm] && !(p->mode == VXDP_MODE_XDP &&
                                           in->imm == BPF_FUNC_tail_call)))
                return vxdp_errf(err, errlen, -EINVAL, "invalid func unknown#%d at pc %u",
                                 in->imm, pc);
            return 0;
        }
        if (op == BPF_JA) {
            if (BPF_SRC(in->code) != BPF_K)
                goto bad_opcode;
            target = (int64_t)pc + 1 + (cls == BPF_JMP32 ? in->imm : in->off);
            goto check_target;
        }
        if (!jmp_op_valid(op))
            goto bad_opcode;
        target = (int64_t)pc + 1 + in->off;
        goto check_target;
    }
    case BPF_LD: {
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            goto bad_opcode;
        if (pc + 1 >= p->len)
            return vxdp_errf(err, errlen, -EINVAL,
                             "invalid bpf_ld_imm64 insn at pc %u: no second slot", pc);
        struct bpf_insn *hi = &p->insns[pc + 1];
        if (hi->code || hi->dst || hi->src || hi->off)
            return vxdp_errf(err, errlen, -EINVAL, "invalid bpf_ld_imm64 insn at pc %u", pc);
        if (in->dst == 10)
            goto frame_pointer;
        second_slot[pc + 1] = 1;
        if (in->src == 0)
            return 0;
        if (in->src == BPF_PSEUDO_FUNC) {   /* a callback: the address of its first insn */
            uint64_t addr;
            target = (int64_t)pc + 1 + in->imm;
            if (target < 0 || target >= (int64_t)p->len || hi->imm)
                return vxdp_errf(err, errlen, -EINVAL, "ld_imm64 at pc %u: function at %lld "
                                 "is not in the program", pc, (long long)target);
            p->callable[target] = 1;
            addr = (uint64_t)(uintptr_t)&p->insns[target];
            in->src = 0;
            in->imm = (int32_t)(uint32_t)addr;
            hi->imm = (int32_t)(uint32_t)(addr >> 32);
            return 0;
        }
        if (in->src != BPF_PSEUDO_MAP_FD && in->src != BPF_PSEUDO_MAP_VALUE)
            return vxdp_errf(err, errlen, -EINVAL,
                             "unsupported ld_imm64 src_reg %u at pc %u", in->src, pc);
        if ((uint32_t)in->imm >= nmaps)
            return vxdp_errf(err, errlen, -EINVAL,
                             "ld_imm64 at pc %u names map index %u of %u", pc,
                             (uint32_t)in->imm, nmaps);
        struct vxdp_map *m = maps[in->imm];
        uint64_t value;
        if (in->src == BPF_PSEUDO_MAP_FD) {
            value = (uint64_t)(uintptr_t)m;
        } else {
            void *v = vxdp_map_value_ptr(m, (uint32_t)hi->imm, 1);
            if (!v)
                return vxdp_errf(err, errlen, -EINVAL,
                                 "ld_imm64 at pc %u: map value offset %u not in a direct "
                                 "value map", pc, (uint32_t)hi->imm);
            value = (uint64_t)(uintptr_t)v;
        }
        in->src = 0;
        in->imm = (int32_t)(uint32_t)value;
        hi->imm = (int32_t)(uint32_t)(value >> 32);
        return 0;
    }
    case BPF_LDX:
        if (BPF_MODE(in->code) == BPF_MEMSX) {
            if (BPF_SIZE(in->code) == BPF_DW)
                goto bad_opcode;
        } else if (BPF_MODE(in->code) != BPF_MEM) {
            goto bad_opcode;
        }
        if (in->dst == 10)
            goto frame_pointer;
        return 0;
    case BPF_ST:
        if (BPF_MODE(in->code) != BPF_MEM)
            goto bad_opcode;
        return 0;
    case BPF_STX:
        if (BPF_MODE(in->code) == BPF_MEM)
            return 0;
        if (BPF_MODE(in->code) != BPF_ATOMIC ||
            (BPF_SIZE(in->code) != BPF_W && BPF_SIZE(in->code) != BPF_DW) ||
            !atomic_op_valid(in->imm))
            goto bad_opcode;
        if ((in->imm & BPF_FETCH) && in->imm != BPF_CMPXCHG && in->src == 10)
            goto frame_pointer;
        return 0;
    }
bad_opcode:
    return vxdp_errf(err, errlen, -EINVAL, "invalid opcode 0x%02x at pc %u", in->code, pc);
frame_pointer:
    return vxdp_errf(err, errlen, -EINVAL, "frame pointer is read only at pc %u", pc);
check_target:
    if (target < 0 || target >= (int64_t)p->len)
        return vxdp_errf(err, errlen, -EINVAL, "jump out of range from insn %u to %lld", pc,
                         (long long)target);
    return 0;
}

static bool jumps_into_second_slot(const struct vxdp_prog *p, const uint8_t *second_slot,
                                   uint32_t *bad_pc)
{
    for (uint32_t pc = 0; pc < p->len; pc++) {
        const struct bpf_insn *in = &p->insns[pc];
        uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
        int64_t t;
        if (second_slot[pc] || (cls != BPF_JMP && cls != BPF_JMP32) || op == BPF_EXIT)
            continue;
        if (op == BPF_CALL) {
            if (in->src != BPF_PSEUDO_CALL || BPF_SRC(in->code) == BPF_X)
                continue;
            t = (int64_t)pc + 1 + in->imm;
        } else if (op == BPF_JA && cls == BPF_JMP32) {
            t = (int64_t)pc + 1 + in->imm;
        } else {
            t = (int64_t)pc + 1 + in->off;
        }
        if (second_slot[t]) {
            *bad_pc = pc;
            return true;
        }
    }
    return false;
}

int vxdp_prog_load(struct vxdp_prog **out, const void *insns, size_t len, uint32_t mode,
                   struct vxdp_map **maps, uint32_t nmaps, char *err, size_t errlen)
{
    struct vxdp_prog *p;
    uint8_t *second_slot;
    uint32_t bad_pc;
    int rc = 0;

    *out = NULL;
    if (len == 0 || len % sizeof(struct bpf_insn))
        return vxdp_errf(err, errlen, -EINVAL, "program of %zu bytes is not a whole number "
                         "of 8-byte instructions", len);
    if (len / sizeof(struct bpf_insn) > VXDP_MAX_INSNS)
        return vxdp_errf(err, errlen, -E2BIG, "program too large (%zu insns, max %u)",
                         len / sizeof(struct bpf_insn), VXDP_MAX_INSNS);
    if (mode != VXDP_MODE_RAW && mode != VXDP_MODE_XDP)
        return vxdp_errf(err, errlen, -EINVAL, "unknown program mode %u", mode);
    if (nmaps > VXDP_MAX_PROG_MAPS)
        return vxdp_errf(err, errlen, -E2BIG, "program uses %u maps, max %u", nmaps,
                         VXDP_MAX_PROG_MAPS);
    for (uint32_t i = 0; i < nmaps; i++)
        if (!maps[i])
            return vxdp_errf(err, errlen, -EINVAL, "map %u is missing", i);

    p = calloc(1, sizeof(*p));
    if (!p)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    p->len = (uint32_t)(len / sizeof(struct bpf_insn));
    p->mode = mode;
    p->helpers = mode == VXDP_MODE_RAW ? vxdp_raw_helpers : vxdp_xdp_helpers;
    p->insns = malloc(len);
    p->callable = calloc(p->len, 1);
    second_slot = calloc(p->len, 1);
    if (!p->insns || !second_slot || !p->callable) {
        rc = vxdp_errf(err, errlen, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(p->insns, insns, len);

    for (uint32_t pc = 0; pc < p->len; pc++) {
        if (second_slot[pc])
            continue;
        rc = check_insn(p, pc, second_slot, maps, nmaps, err, errlen);
        if (rc)
            goto fail;
    }
    if (jumps_into_second_slot(p, second_slot, &bad_pc)) {
        rc = vxdp_errf(err, errlen, -EINVAL, "jump into the middle of ldimm64 insn at pc %u",
                       bad_pc);
        goto fail;
    }
    for (uint32_t pc = 0; pc < p->len; pc++) {
        if (p->callable[pc] && second_slot[pc]) {
            rc = vxdp_errf(err, errlen, -EINVAL, "function address into the middle of ldimm64 "
                           "insn %u", pc - 1);
            goto fail;
        }
    }
    {
        const struct bpf_insn *last = &p->insns[p->len - 1];
        bool ends = !second_slot[p->len - 1] &&
                    (last->code == (BPF_JMP | BPF_EXIT) || last->code == (BPF_JMP | BPF_JA) ||
                     last->code == (BPF_JMP32 | BPF_JA));
        if (!ends) {
            rc = vxdp_errf(err, errlen, -EINVAL, "last insn is not an exit or jmp at pc %u",
                           p->len - 1);
            goto fail;
        }
    }

    {
        uint32_t tries;
        for (tries = 0; tries < REGISTRY_SIZE && prog_registry[prog_next_id % REGISTRY_SIZE];
             tries++)
            prog_next_id = prog_next_id + 1 ? prog_next_id + 1 : 1;
        if (tries == REGISTRY_SIZE) {
            rc = vxdp_errf(err, errlen, -ENOSPC, "too many programs loaded (%u)",
                           REGISTRY_SIZE);
            goto fail;
        }
        p->id = prog_next_id;
        prog_next_id = prog_next_id + 1 ? prog_next_id + 1 : 1;
        prog_registry[p->id % REGISTRY_SIZE] = p;
    }
    p->nmaps = nmaps;
    for (uint32_t i = 0; i < nmaps; i++) {
        p->maps[i] = maps[i];
        vxdp_map_region(maps[i], &p->regions[i]);
        vxdp_map_get(maps[i]);
    }
    free(second_slot);
    *out = p;
    return 0;
fail:
    free(second_slot);
    free(p->insns);
    free(p);
    return rc;
}

void vxdp_prog_free(struct vxdp_prog *p)
{
    if (!p)
        return;
    if (prog_registry[p->id % REGISTRY_SIZE] == p)
        prog_registry[p->id % REGISTRY_SIZE] = NULL;
    for (uint32_t i = 0; i < p->nmaps; i++)
        vxdp_map_free(p->maps[i]);   /* drops the reference taken at load */
    free(p->insns);
    free(p->callable);
    free(p);
}

uint32_t vxdp_prog_id(const struct vxdp_prog *p) { return p->id; }

/* ------------------------------------------------------------ interpreter */

struct frame {
    const struct bpf_insn *ret;
    const struct vxdp_prog *prog;
    uint64_t saved[4];   /* r6-r9 */
};

static inline bool in_region(uint64_t a, uint64_t n, uintptr_t lo, uintptr_t hi)
{
    return a >= lo && a <= hi && hi - a >= n;
}

static uintptr_t run_stack_lo(const struct vxdp_run *r, uint32_t depth)
{
    return (uintptr_t)r->stack + (VXDP_MAX_CALL_FRAMES - 1 - depth) * VXDP_STACK_SIZE;
}

/* Which region holds [addr, addr+len): 1 writable, 0 read-only, -1 none. */
static int region_of(const struct vxdp_run *r, uint64_t addr, uint64_t len)
{
    uintptr_t slo = r->stack_lo;
    uintptr_t shi = (uintptr_t)r->stack + sizeof(r->stack);

    if (in_region(addr, len, slo, shi) || in_region(addr, len, r->pkt_lo, r->pkt_hi))
        return 1;
    for (uint32_t i = 0; i < r->prog->nmaps; i++) {
        const struct vxdp_map_region *reg = &r->prog->regions[i];
        if (in_region(addr, len, reg->lo, reg->hi))
            return reg->writable;
    }
    for (uint32_t i = 0; i < r->prog->nmaps; i++) {   /* maps inside map-in-maps */
        int kind = vxdp_map_inner_region(r->prog->maps[i], addr, len);
        if (kind >= 0)
            return kind;
    }
    for (uint32_t i = 0; i < r->nresv; i++)
        if (in_region(addr, len, (uintptr_t)r->resv[i].lo, (uintptr_t)r->resv[i].hi))
            return 1;
    return -1;
}

void *vxdp_mem_check(struct vxdp_run *r, uint64_t addr, uint64_t len, bool write)
{
    int kind = region_of(r, addr, len);

    if (kind == 1 || (kind == 0 && !write))
        return (void *)(uintptr_t)addr;
    if (kind == 0) {
        vxdp_run_fail(r, -EACCES, "write into read-only map value at pc %u: "
                      "%llu bytes at 0x%llx", r->pc, (unsigned long long)len,
                      (unsigned long long)addr);
        return NULL;
    }
    vxdp_run_fail(r, -EFAULT, "invalid memory access at pc %u: %llu-byte %s at 0x%llx outside "
                  "every region", r->pc, (unsigned long long)len, write ? "write" : "read",
                  (unsigned long long)addr);
    return NULL;
}

/* The kernel's *_nofault reads: readable program memory or NULL, never a fault. */
const void *vxdp_mem_peek(const struct vxdp_run *r, uint64_t addr, uint64_t len)
{
    return region_of(r, addr, len) >= 0 ? (const void *)(uintptr_t)addr : NULL;
}

/* A load outside the stack and the packet: the XDP context (whose 32-bit fields the kernel
 * rewrites into 64-bit pointer loads, convert_ctx_access in net/core/filter.c), map values
 * and ringbuf reservations. */
static int load_slow(struct vxdp_run *r, uint64_t addr, uint32_t size, bool sx, uint64_t *out)
{
    uintptr_t ctx = (uintptr_t)r->ctx_md;
    if (r->prog->mode == VXDP_MODE_XDP && addr >= ctx && addr < ctx + sizeof(r->ctx_md)) {
        uint64_t off = addr - ctx;
        if (size != 4 || off % 4 || sx)
            return vxdp_run_fail(r, -EACCES, "invalid bpf_context access off=%llu size=%u "
                                 "at pc %u", (unsigned long long)off, size, r->pc);
        switch (off / 4) {
        case 0: *out = (uintptr_t)r->data; break;
        case 1: *out = (uintptr_t)r->data_end; break;
        case 2: *out = (uintptr_t)r->data_meta; break;
        case 3: *out = r->ingress_ifindex; break;
        case 4: *out = r->rx_queue_index; break;
        default: *out = 0; break;   /* egress_ifindex: 0 outside devmap programs */
        }
        return 0;
    }
    void *p = vxdp_mem_check(r, addr, size, false);
    if (!p)
        return r->fault;
    switch (size) {
    case 1: { uint8_t v; memcpy(&v, p, 1); *out = sx ? (uint64_t)(int8_t)v : v; break; }
    case 2: { uint16_t v; memcpy(&v, p, 2); *out = sx ? (uint64_t)(int16_t)v : v; break; }
    case 4: { uint32_t v; memcpy(&v, p, 4); *out = sx ? (uint64_t)(int32_t)v : v; break; }
    default: { uint64_t v; memcpy(&v, p, 8); *out = v; break; }
    }
    return 0;
}

static void *store_slow(struct vxdp_run *r, uint64_t addr, uint32_t size)
{
    uintptr_t ctx = (uintptr_t)r->ctx_md;
    if (r->prog->mode == VXDP_MODE_XDP && addr + size > ctx && addr < ctx + sizeof(r->ctx_md)) {
        vxdp_run_fail(r, -EACCES, "invalid bpf_context access off=%llu size=%u at pc %u: the "
                      "context is read-only", (unsigned long long)(addr - ctx), size, r->pc);
        return NULL;
    }
    return vxdp_mem_check(r, addr, size, true);
}

static inline uint16_t bswap16(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }
static inline uint64_t bswap64(uint64_t v) { return __builtin_bswap64(v); }

/* The jump table is built from one list so the labels and their opcodes cannot drift. */
#define ALU_OPS(X) X(ADD) X(SUB) X(MUL) X(DIV) X(OR) X(AND) X(LSH) X(RSH) X(MOD) X(XOR) \
    X(MOV) X(ARSH)
#define JMP_OPS(X) X(JEQ) X(JGT) X(JGE) X(JSET) X(JNE) X(JSGT) X(JSGE) X(JLT) X(JLE) \
    X(JSLT) X(JSLE)
#define MEM_SIZES(X) X(B, uint8_t) X(H, uint16_t) X(W, uint32_t) X(DW, uint64_t)

/* The interpreter: from `start`, in call frame `base` (0 for a program's run, the frame
 * below the caller's for a callback), until the exit of that frame. */
static int interp(struct vxdp_run *r, const struct bpf_insn *start, uint32_t base,
                  uint64_t r1, uint64_t r2, uint64_t *ret)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"   /* specific opcodes over the default */
    static const void *const jt[256] = {
        [0 ... 255] = &&bad_insn,
#define ALU_ENTRY(OP) \
        [BPF_ALU64 | BPF_##OP | BPF_X] = &&ALU64_##OP##_X, \
        [BPF_ALU64 | BPF_##OP | BPF_K] = &&ALU64_##OP##_K, \
        [BPF_ALU | BPF_##OP | BPF_X] = &&ALU_##OP##_X, \
        [BPF_ALU | BPF_##OP | BPF_K] = &&ALU_##OP##_K,
        ALU_OPS(ALU_ENTRY)
#undef ALU_ENTRY
        [BPF_ALU64 | BPF_NEG] = &&ALU64_NEG,
        [BPF_ALU | BPF_NEG] = &&ALU_NEG,
        [BPF_ALU | BPF_END | BPF_K] = &&ALU_END_LE,
        [BPF_ALU | BPF_END | BPF_X] = &&ALU_END_BE,
        [BPF_ALU64 | BPF_END | BPF_K] = &&ALU64_BSWAP,
#define JMP_ENTRY(OP) \
        [BPF_JMP | BPF_##OP | BPF_X] = &&JMP_##OP##_X, \
        [BPF_JMP | BPF_##OP | BPF_K] = &&JMP_##OP##_K, \
        [BPF_JMP32 | BPF_##OP | BPF_X] = &&JMP32_##OP##_X, \
        [BPF_JMP32 | BPF_##OP | BPF_K] = &&JMP32_##OP##_K,
        JMP_OPS(JMP_ENTRY)
#undef JMP_ENTRY
        [BPF_JMP | BPF_JA] = &&JMP_JA,
        [BPF_JMP32 | BPF_JA] = &&JMP32_JA,
        [BPF_JMP | BPF_CALL] = &&JMP_CALL,
        [BPF_JMP | BPF_CALL | BPF_X] = &&JMP_CALLX,
        [BPF_JMP | BPF_EXIT] = &&JMP_EXIT,
        [BPF_LD | BPF_IMM | BPF_DW] = &&LD_IMM_DW,
#define MEM_ENTRY(SZ, T) \
        [BPF_LDX | BPF_MEM | BPF_##SZ] = &&LDX_MEM_##SZ, \
        [BPF_ST | BPF_MEM | BPF_##SZ] = &&ST_MEM_##SZ, \
        [BPF_STX | BPF_MEM | BPF_##SZ] = &&STX_MEM_##SZ,
        MEM_SIZES(MEM_ENTRY)
#undef MEM_ENTRY
        [BPF_LDX | BPF_MEMSX | BPF_B] = &&LDX_MEMSX_B,
        [BPF_LDX | BPF_MEMSX | BPF_H] = &&LDX_MEMSX_H,
        [BPF_LDX | BPF_MEMSX | BPF_W] = &&LDX_MEMSX_W,
        [BPF_STX | BPF_ATOMIC | BPF_W] = &&STX_ATOMIC_W,
        [BPF_STX | BPF_ATOMIC | BPF_DW] = &&STX_ATOMIC_DW,
    };
#pragma GCC diagnostic pop
    const struct vxdp_prog *prog = r->prog;
    const struct bpf_insn *insn = start;
    uint64_t reg[11] = {0};
    struct frame frames[VXDP_MAX_CALL_FRAMES];
    uint32_t depth = base;
    uint32_t budget = VXDP_BRANCH_BUDGET;
    const uintptr_t stack_hi = (uintptr_t)r->stack + sizeof(r->stack);
    uintptr_t stack_lo = run_stack_lo(r, base);
    uint64_t addr;
    void *ptr;

    reg[1] = r1;
    reg[2] = r2;
    reg[10] = stack_lo + VXDP_STACK_SIZE;
    r->stack_lo = stack_lo;

#define DST reg[insn->dst]
#define SRC reg[insn->src]
#define IMM ((uint64_t)(int64_t)insn->imm)
#define PC ((uint32_t)(insn - prog->insns))
#define CONT ({ insn++; goto *jt[insn->code]; })
#define FAST_OK(a, n) ((in_region((a), (n), stack_lo, stack_hi)) || \
                       in_region((a), (n), r->pkt_lo, r->pkt_hi))

    goto *jt[insn->code];

#define ALU_SIMPLE(NAME, OP) \
    ALU64_##NAME##_X: DST = DST OP SRC; CONT; \
    ALU64_##NAME##_K: DST = DST OP IMM; CONT; \
    ALU_##NAME##_X: DST = (uint32_t)((uint32_t)DST OP (uint32_t)SRC); CONT; \
    ALU_##NAME##_K: DST = (uint32_t)((uint32_t)DST OP (uint32_t)insn->imm); CONT;
    ALU_SIMPLE(ADD, +)
    ALU_SIMPLE(SUB, -)
    ALU_SIMPLE(MUL, *)
    ALU_SIMPLE(OR, |)
    ALU_SIMPLE(AND, &)
    ALU_SIMPLE(XOR, ^)
#undef ALU_SIMPLE

#define ALU_SHIFT(NAME, OP) \
    ALU64_##NAME##_X: DST = DST OP (SRC & 63); CONT; \
    ALU64_##NAME##_K: DST = DST OP (insn->imm & 63); CONT; \
    ALU_##NAME##_X: DST = (uint32_t)((uint32_t)DST OP (SRC & 31)); CONT; \
    ALU_##NAME##_K: DST = (uint32_t)((uint32_t)DST OP (insn->imm & 31)); CONT;
    ALU_SHIFT(LSH, <<)
    ALU_SHIFT(RSH, >>)
#undef ALU_SHIFT
    ALU64_ARSH_X: DST = (uint64_t)((int64_t)DST >> (SRC & 63)); CONT;
    ALU64_ARSH_K: DST = (uint64_t)((int64_t)DST >> (insn->imm & 63)); CONT;
    ALU_ARSH_X: DST = (uint32_t)((int32_t)DST >> (SRC & 31)); CONT;
    ALU_ARSH_K: DST = (uint32_t)((int32_t)DST >> (insn->imm & 31)); CONT;

    /* division: off 0 unsigned, off 1 signed (sdiv/smod) */
    {
        uint64_t d64;
        uint32_t d32;
    ALU64_DIV_X: d64 = SRC; goto div64;
    ALU64_DIV_K: d64 = IMM; goto div64;
    div64:
        if (!d64)
            DST = 0;
        else if (!insn->off)
            DST = DST / d64;
        else if ((int64_t)d64 == -1)
            DST = -DST;   /* INT64_MIN / -1 wraps to INT64_MIN */
        else
            DST = (uint64_t)((int64_t)DST / (int64_t)d64);
        CONT;
    ALU64_MOD_X: d64 = SRC; goto mod64;
    ALU64_MOD_K: d64 = IMM; goto mod64;
    mod64:
        if (!d64)
            ;   /* modulo by zero leaves dst unchanged */
        else if (!insn->off)
            DST = DST % d64;
        else if ((int64_t)d64 == -1)
            DST = 0;
        else
            DST = (uint64_t)((int64_t)DST % (int64_t)d64);
        CONT;
    ALU_DIV_X: d32 = (uint32_t)SRC; goto div32;
    ALU_DIV_K: d32 = (uint32_t)insn->imm; goto div32;
    div32:
        if (!d32)
            DST = 0;
        else if (!insn->off)
            DST = (uint32_t)DST / d32;
        else if ((int32_t)d32 == -1)
            DST = (uint32_t)-(uint32_t)DST;
        else
            DST = (uint32_t)((int32_t)DST / (int32_t)d32);
        CONT;
    ALU_MOD_X: d32 = (uint32_t)SRC; goto mod32;
    ALU_MOD_K: d32 = (uint32_t)insn->imm; goto mod32;
    mod32:
        if (!d32)
            DST = (uint32_t)DST;
        else if (!insn->off)
            DST = (uint32_t)DST % d32;
        else if ((int32_t)d32 == -1)
            DST = 0;
        else
            DST = (uint32_t)((int32_t)DST % (int32_t)d32);
        CONT;
    }
    ALU64_NEG: DST = -DST; CONT;
    ALU_NEG: DST = (uint32_t)-(uint32_t)DST; CONT;
    ALU64_MOV_X:
        switch (insn->off) {
        case 8: DST = (uint64_t)(int8_t)SRC; break;
        case 16: DST = (uint64_t)(int16_t)SRC; break;
        case 32: DST = (uint64_t)(int32_t)SRC; break;
        default: DST = SRC; break;
        }
        CONT;
    ALU64_MOV_K: DST = IMM; CONT;
    ALU_MOV_X:
        switch (insn->off) {
        case 8: DST = (uint32_t)(int32_t)(int8_t)SRC; break;
        case 16: DST = (uint32_t)(int32_t)(int16_t)SRC; break;
        default: DST = (uint32_t)SRC; break;
        }
        CONT;
    ALU_MOV_K: DST = (uint32_t)insn->imm; CONT;
    ALU_END_LE:   /* little-endian host: to_le truncates */
        switch (insn->imm) {
        case 16: DST = (uint16_t)DST; break;
        case 32: DST = (uint32_t)DST; break;
        default: break;
        }
        CONT;
    ALU_END_BE:
    ALU64_BSWAP:
        switch (insn->imm) {
        case 16: DST = bswap16((uint16_t)DST); break;
        case 32: DST = bswap32((uint32_t)DST); break;
        default: DST = bswap64(DST); break;
        }
        CONT;

#define TAKE(off_expr) ({ \
        int32_t o_ = (off_expr); \
        if (o_ < 0 && unlikely(--budget == 0)) goto out_of_budget; \
        insn += o_; \
        CONT; })
    JMP_JA: TAKE(insn->off);
    JMP32_JA: TAKE(insn->imm);
#define JMP_COND(NAME, T, OP) \
    JMP_##NAME##_X: if ((T)DST OP (T)SRC) TAKE(insn->off); CONT; \
    JMP_##NAME##_K: if ((T)DST OP (T)IMM) TAKE(insn->off); CONT;
#define JMP32_COND(NAME, T, OP) \
    JMP32_##NAME##_X: if ((T)DST OP (T)SRC) TAKE(insn->off); CONT; \
    JMP32_##NAME##_K: if ((T)DST OP (T)insn->imm) TAKE(insn->off); CONT;
#define JMP_BOTH(NAME, OP, SIGNED) \
    JMP_COND(NAME, SIGNED##64_t, OP) \
    JMP32_COND(NAME, SIGNED##32_t, OP)
    JMP_BOTH(JEQ, ==, uint)
    JMP_BOTH(JNE, !=, uint)
    JMP_BOTH(JGT, >, uint)
    JMP_BOTH(JGE, >=, uint)
    JMP_BOTH(JLT, <, uint)
    JMP_BOTH(JLE, <=, uint)
    JMP_BOTH(JSGT, >, int)
    JMP_BOTH(JSGE, >=, int)
    JMP_BOTH(JSLT, <, int)
    JMP_BOTH(JSLE, <=, int)
    JMP_JSET_X: if (DST & SRC) TAKE(insn->off); CONT;
    JMP_JSET_K: if (DST & IMM) TAKE(insn->off); CONT;
    JMP32_JSET_X: if ((uint32_t)DST & (uint32_t)SRC) TAKE(insn->off); CONT;
    JMP32_JSET_K: if ((uint32_t)DST & (uint32_t)insn->imm) TAKE(insn->off); CONT;

    {
        uint32_t helper_id;
    JMP_CALL:
        if (insn->src == BPF_PSEUDO_CALL) {
            if (depth + 1 >= VXDP_MAX_CALL_FRAMES) {
                r->pc = PC;
                vxdp_run_fail(r, -E2BIG, "the call stack of %d frames is too deep at pc %u",
                              VXDP_MAX_CALL_FRAMES, PC);
                goto fault;
            }
            if (unlikely(--budget == 0))
                goto out_of_budget;
            frames[depth].ret = insn + 1;
            frames[depth].prog = prog;
            memcpy(frames[depth].saved, &reg[6], sizeof(frames[depth].saved));
            depth++;
            stack_lo = run_stack_lo(r, depth);
            r->stack_lo = stack_lo;
            reg[10] = stack_lo + VXDP_STACK_SIZE;
            insn += insn->imm + 1;
            goto *jt[insn->code];
        }
        helper_id = (uint32_t)insn->imm;
        if (prog->mode == VXDP_MODE_XDP && helper_id == BPF_FUNC_tail_call)
            goto tail_call;
        goto call_helper;
    JMP_CALLX:
        helper_id = (uint32_t)reg[insn->dst ? insn->dst : (uint32_t)insn->imm];
        if (helper_id >= VXDP_HELPER_MAX || !prog->helpers[helper_id]) {
            r->pc = PC;
            vxdp_run_fail(r, -EINVAL, "callx at pc %u to unknown helper %u", PC, helper_id);
            goto fault;
        }
    call_helper:
        r->pc = PC;
        reg[0] = prog->helpers[helper_id](r, reg[1], reg[2], reg[3], reg[4], reg[5]);
        if (unlikely(r->fault))
            goto fault;
        /* the bpf_conformance harness's helper 5 unwinds the program when it returns 0 */
        if (prog->mode == VXDP_MODE_RAW && helper_id == 5 && reg[0] == 0)
            goto done;
        CONT;
    tail_call: {
        /* bpf_tail_call(ctx, prog_array, index): on failure execution continues with the
         * next instruction (kernel/bpf/core.c JMP_TAIL_CALL) */
        struct vxdp_map *m = (struct vxdp_map *)(uintptr_t)reg[2];
        uint32_t id, i;
        struct vxdp_prog *next;
        for (i = 0; i < prog->nmaps && prog->maps[i] != m; i++)
            ;
        if (i == prog->nmaps || vxdp_map_type(m) != VXDP_MAP_PROG_ARRAY) {
            r->pc = PC;
            vxdp_run_fail(r, -EINVAL, "tail call at pc %u: r2 is not a prog array of this "
                          "program", PC);
            goto fault;
        }
        if (r->callbacks) {   /* the verifier refuses it too */
            r->pc = PC;
            vxdp_run_fail(r, -EINVAL, "tail call at pc %u inside a callback", PC);
            goto fault;
        }
        if (r->tail_calls >= VXDP_MAX_TAIL_CALLS)
            CONT;
        if (vxdp_map_prog_array_get(m, (uint32_t)reg[3], &id))
            CONT;
        next = vxdp_prog_by_id(id);
        if (!next || next->mode != prog->mode)
            CONT;
        r->tail_calls++;
        if (unlikely(--budget == 0))
            goto out_of_budget;
        prog = next;
        r->prog = next;
        insn = next->insns;
        goto *jt[insn->code];
    }
    }
    JMP_EXIT:
        if (depth == base)
            goto done;
        depth--;
        insn = frames[depth].ret;
        prog = frames[depth].prog;
        r->prog = prog;
        memcpy(&reg[6], frames[depth].saved, sizeof(frames[depth].saved));
        stack_lo = run_stack_lo(r, depth);
        r->stack_lo = stack_lo;
        reg[10] = stack_lo + VXDP_STACK_SIZE;
        goto *jt[insn->code];

    LD_IMM_DW:
        DST = (uint64_t)(uint32_t)insn[0].imm | ((uint64_t)(uint32_t)insn[1].imm << 32);
        insn++;
        CONT;

/* LDX: T is the width loaded, CAST how it widens (unsigned: zero-, signed: sign-extend) */
#define LDX(LABEL, T, CAST, SX) \
    LABEL: \
        addr = SRC + insn->off; \
        if (likely(FAST_OK(addr, sizeof(T)))) { \
            T v_; \
            memcpy(&v_, (const void *)(uintptr_t)addr, sizeof(T)); \
            DST = (uint64_t)(CAST)v_; \
        } else { \
            r->pc = PC; \
            if (load_slow(r, addr, sizeof(T), SX, &DST)) \
                goto fault; \
        } \
        CONT;
    LDX(LDX_MEM_B, uint8_t, uint8_t, false)
    LDX(LDX_MEM_H, uint16_t, uint16_t, false)
    LDX(LDX_MEM_W, uint32_t, uint32_t, false)
    LDX(LDX_MEM_DW, uint64_t, uint64_t, false)
    LDX(LDX_MEMSX_B, uint8_t, int8_t, true)
    LDX(LDX_MEMSX_H, uint16_t, int16_t, true)
    LDX(LDX_MEMSX_W, uint32_t, int32_t, true)

#define STORE(LABEL, T, VALUE) \
    LABEL: \
        addr = DST + insn->off; \
        if (likely(FAST_OK(addr, sizeof(T)))) { \
            ptr = (void *)(uintptr_t)addr; \
        } else { \
            r->pc = PC; \
            if (!(ptr = store_slow(r, addr, sizeof(T)))) \
                goto fault; \
        } \
        { T v_ = (T)(VALUE); memcpy(ptr, &v_, sizeof(T)); } \
        CONT;
    STORE(ST_MEM_B, uint8_t, insn->imm)
    STORE(ST_MEM_H, uint16_t, insn->imm)
    STORE(ST_MEM_W, uint32_t, insn->imm)
    STORE(ST_MEM_DW, uint64_t, IMM)
    STORE(STX_MEM_B, uint8_t, SRC)
    STORE(STX_MEM_H, uint16_t, SRC)
    STORE(STX_MEM_W, uint32_t, SRC)
    STORE(STX_MEM_DW, uint64_t, SRC)

#define ATOMIC(SZ, T) \
    STX_ATOMIC_##SZ: { \
        T *p_, old_; \
        addr = DST + insn->off; \
        r->pc = PC; \
        if (addr % sizeof(T)) { \
            vxdp_run_fail(r, -EFAULT, "misaligned %zu-byte atomic at pc %u: 0x%llx", \
                          sizeof(T), PC, (unsigned long long)addr); \
            goto fault; \
        } \
        if (FAST_OK(addr, sizeof(T))) \
            p_ = (T *)(uintptr_t)addr; \
        else if (!(p_ = store_slow(r, addr, sizeof(T)))) \
            goto fault; \
        switch (insn->imm) { \
        case BPF_ADD: __atomic_fetch_add(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_OR: __atomic_fetch_or(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_AND: __atomic_fetch_and(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_XOR: __atomic_fetch_xor(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_ADD | BPF_FETCH: SRC = __atomic_fetch_add(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_OR | BPF_FETCH: SRC = __atomic_fetch_or(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_AND | BPF_FETCH: SRC = __atomic_fetch_and(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_XOR | BPF_FETCH: SRC = __atomic_fetch_xor(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        case BPF_XCHG: SRC = __atomic_exchange_n(p_, (T)SRC, __ATOMIC_SEQ_CST); break; \
        default: /* BPF_CMPXCHG: r0 = old; store src when old == r0 */ \
            old_ = (T)reg[0]; \
            __atomic_compare_exchange_n(p_, &old_, (T)SRC, false, __ATOMIC_SEQ_CST, \
                                        __ATOMIC_SEQ_CST); \
            reg[0] = old_; \
            break; \
        } \
        CONT; \
    }
    ATOMIC(W, uint32_t)
    ATOMIC(DW, uint64_t)

bad_insn:
    r->pc = PC;
    vxdp_run_fail(r, -EINVAL, "invalid opcode 0x%02x at pc %u", insn->code, PC);
    goto fault;
out_of_budget:
    r->pc = PC;
    vxdp_run_fail(r, -ELOOP, "branch budget of %u exhausted at pc %u (endless loop?)",
                  VXDP_BRANCH_BUDGET, PC);
    goto fault;
done:
    *ret = reg[0];
    r->prog = prog;
    return 0;
fault:
    return r->fault ? r->fault : -EFAULT;
}

int vxdp_interp(struct vxdp_run *r, uint64_t r1, uint64_t r2, uint64_t *ret)
{
    r->callbacks = 0;   /* a run starts outside every callback */
    if (r->prog->jit)   /* compiled by vxdp.bpf.jit: the same semantics (jit_glue.c) */
        return vxdp_jit_run_call(r, r1, r2, ret);
    return interp(r, r->prog->insns, 0, r1, r2, ret);
}

int vxdp_interp_callback(struct vxdp_run *r, uint32_t entry, uint64_t r1, uint64_t r2,
                         uint64_t *ret)
{
    uintptr_t caller_lo = r->stack_lo;
    uint32_t caller = VXDP_MAX_CALL_FRAMES - 1 -
                      (uint32_t)((caller_lo - (uintptr_t)r->stack) / VXDP_STACK_SIZE);
    int rc;

    if (caller + 1 >= VXDP_MAX_CALL_FRAMES)
        return vxdp_run_fail(r, -E2BIG, "the call stack of %d frames is too deep at pc %u",
                             VXDP_MAX_CALL_FRAMES, r->pc);
    r->callbacks++;
    rc = interp(r, &r->prog->insns[entry], caller + 1, r1, r2, ret);
    r->callbacks--;
    r->stack_lo = caller_lo;
    return rc;
}

/* The slow paths of compiled programs are the interpreter's own (jit_glue.c). */
int vxdp_load_slow(struct vxdp_run *r, uint64_t addr, uint32_t size, bool sx, uint64_t *out)
{
    return load_slow(r, addr, size, sx, out);
}

void *vxdp_store_slow(struct vxdp_run *r, uint64_t addr, uint32_t size)
{
    return store_slow(r, addr, size);
}
