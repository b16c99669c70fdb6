"""BPF to C: the code generator of the `jit` engine (vxdp.bpf.jit compiles and caches).

    source = generate(insns, mode)   # a C translation unit exporting `vxdp_jit_info`

One C statement per instruction, under a label `L<pc>` and a comment holding the
instruction as the verifier log prints it.  Registers are locals (`r0`..`r10`); the ABI
with the packet core is csrc/vxdp_jit.h, pasted at the top so the file stands alone.

Semantics are the interpreter's (csrc/vm.c) statement for statement: division by zero
gives 0 and modulo by zero leaves the destination, shift amounts are masked, every load and
store is bounds-checked (the stack frames in use and the packet inline; anything else
through the core's own slow path, which rewrites xdp_md loads and checks map values and
ringbuf samples), taken backward jumps and calls are charged to the branch budget, and
bpf-to-bpf frames keep r6-r9 as the interpreter does.  Map references are not baked in:
an LD_IMM64 of a map reads the address the core bound at load from the loaded instructions
(`c->insns`), so one compiled object serves every load of the same instructions.

The generator trusts nothing it is given: it runs after the core's loader accepted the
program, and refuses (InvalidProgram) any opcode that loader would have refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from vxdp.bpf.disasm import format_insn
from vxdp.bpf.isa import (
    SIZE_BYTES,
    AluOp,
    AtomicOp,
    CallSrc,
    Cls,
    Insn,
    JmpOp,
    Mode,
    Size,
    Src,
    decode,
    imm64,
    is_ldimm64,
)
from vxdp.errors import CoreError, InvalidProgram

GENERATOR_VERSION = 9  # part of the cache key: bump when the emitted code changes
#: csrc/vxdp_jit.h as package data: vxdp/bpf/vxdp_jit.h links to it in the source tree, a
#: wheel carries a copy (docs/architecture.md, "Packaging").
JIT_HEADER = resources.files("vxdp.bpf") / "vxdp_jit.h"
MODE_RAW, MODE_XDP = 0, 1
HELPER_MAP_LOOKUP = 1
HELPER_TAIL_CALL = 12
MAX_FRAMES = 8
STACK_SIZE = 512  # VXDP_JIT_STACK_SIZE

_TYPES = {Size.B: "uint8_t", Size.H: "uint16_t", Size.W: "uint32_t", Size.DW: "uint64_t"}
_STYPES = {Size.B: "int8_t", Size.H: "int16_t", Size.W: "int32_t"}
_SIMPLE = {AluOp.ADD: "+", AluOp.SUB: "-", AluOp.MUL: "*", AluOp.OR: "|", AluOp.AND: "&",
           AluOp.XOR: "^"}
_SHIFT = {AluOp.LSH: "<<", AluOp.RSH: ">>"}
_COND = {JmpOp.JEQ: ("==", False), JmpOp.JNE: ("!=", False), JmpOp.JGT: (">", False),
         JmpOp.JGE: (">=", False), JmpOp.JLT: ("<", False), JmpOp.JLE: ("<=", False),
         JmpOp.JSGT: (">", True), JmpOp.JSGE: (">=", True), JmpOp.JSLT: ("<", True),
         JmpOp.JSLE: ("<=", True)}
_ATOMIC = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor"}

# Support code of every compiled program: the fast checks and the statement macros.
PRELUDE = r"""
#include <stdint.h>
#include <string.h>

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#pragma GCC diagnostic ignored "-Wunused-label"   /* every instruction has its label */
#define VX_FN static inline __attribute__((unused))   /* support a program may not need */
#if defined(__GNUC__) && !defined(__clang__)
/* A program may access a constant address (r1 = 8; r0 = *(u32 *)(r1 + 0)).  The region
 * check before every access turns that into a fault at run time, but GCC warns about the
 * dead fast path all the same. */
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif

VX_FN int vx_in(uint64_t a, uint64_t n, uintptr_t lo, uintptr_t hi)
{
    return a >= lo && a <= hi && hi - a >= n;
}
/* the stack frames in use and the packet: checked inline, as the interpreter's FAST_OK
 * (the regions are disjoint, so which is tried first changes the cost, never the result) */
#define VX_FAST(A, N) (vx_in((A), (N), pkt_lo, pkt_hi) || vx_in((A), (N), stack_lo, stack_hi))

/* a map value the program may read (WRITE: and write): the core's vxdp_mem_check says
 * the same, so only a refusal goes out of line for its message */
VX_FN int vx_in_maps(const struct vxdp_jit_ctx *c, uint64_t a, uint64_t n, int write)
{
    for (uint32_t i = 0; i < c->nregions; i++)
        if (vx_in(a, n, c->regions[i].lo, c->regions[i].hi))
            return !write || c->regions[i].writable;
    return 0;
}

/* r10 is always the top of the current frame (stack_lo + VXDP_JIT_STACK_SIZE: only calls
 * and returns move it), so r10 + off with -512 <= off and off + size <= 0 is inside the
 * frames in use: such accesses, checked by the generator, need no check at run time */
#define VX_LDX_FP(D, OFF, T, CAST) do { \
    T v_; \
    memcpy(&v_, (const void *)(uintptr_t)(r10 + (OFF)), sizeof(T)); \
    D = (uint64_t)(CAST)v_; } while (0)
#define VX_STORE_FP(OFF, T, V) do { \
    T v_ = (T)(V); \
    memcpy((void *)(uintptr_t)(r10 + (OFF)), &v_, sizeof(T)); } while (0)

/* division and modulo as RFC 9669 (and vm.c): x / 0 = 0, x % 0 = x, INT_MIN / -1 wraps */
VX_FN uint64_t vx_udiv64(uint64_t a, uint64_t d) { return d ? a / d : 0; }
VX_FN uint64_t vx_umod64(uint64_t a, uint64_t d) { return d ? a % d : a; }
VX_FN uint64_t vx_sdiv64(uint64_t a, uint64_t d)
{
    return !d ? 0 : (int64_t)d == -1 ? -a : (uint64_t)((int64_t)a / (int64_t)d);
}
VX_FN uint64_t vx_smod64(uint64_t a, uint64_t d)
{
    return !d ? a : (int64_t)d == -1 ? 0 : (uint64_t)((int64_t)a % (int64_t)d);
}
VX_FN uint32_t vx_udiv32(uint32_t a, uint32_t d) { return d ? a / d : 0; }
VX_FN uint32_t vx_umod32(uint32_t a, uint32_t d) { return d ? a % d : a; }
VX_FN uint32_t vx_sdiv32(uint32_t a, uint32_t d)
{
    return !d ? 0 : (int32_t)d == -1 ? (uint32_t)-a : (uint32_t)((int32_t)a / (int32_t)d);
}
VX_FN uint32_t vx_smod32(uint32_t a, uint32_t d)
{
    return !d ? a : (int32_t)d == -1 ? 0 : (uint32_t)((int32_t)a % (int32_t)d);
}

/* the 64-bit immediate of the LD_IMM64 at PC as the core loaded it (maps bound) */
VX_FN uint64_t vx_imm64(const uint8_t *insns, uint32_t pc)
{
    uint32_t lo, hi;
    memcpy(&lo, insns + 8 * (uint64_t)pc + 4, 4);
    memcpy(&hi, insns + 8 * ((uint64_t)pc + 1) + 4, 4);
    return (uint64_t)lo | (uint64_t)hi << 32;
}

/* Faults and leaving a frame are rare: they are functions of their own, reached by a tail
 * call (-foptimize-sibling-calls), so that a short program's own function needs neither a
 * stack frame nor callee-saved registers for them. */
__attribute__((noinline, cold, unused))
static int vx_fail(struct vxdp_jit_ctx *c, uint32_t pc, uint32_t kind, uint64_t a,
                   uint64_t b)
{
    c->ops->fault(c, pc, kind, a, b);
    return VXDP_JIT_FAULT;
}
#define VX_FAIL(PC, KIND, A, B) return vx_fail(c, (PC), (KIND), (A), (B))
/* a taken backward jump or a call costs one unit of the branch budget */
#define VX_CHARGE(PC) do { if (unlikely(--budget == 0)) VX_FAIL(PC, VXDP_JIT_F_BUDGET, 0, 0); } while (0)
#define VX_BACK(PC, L) do { VX_CHARGE(PC); goto L; } while (0)

/* D = *(T *)A, widened through CAST; SX: sign-extending (for the slow path); CTX: a 4-byte
 * load of an xdp_md field is served here as the core's slow path would (vm.c load_slow) */
#define VX_LDX(PC, D, A, T, CAST, SX, CTX) do { \
    uint64_t a_ = (A); \
    if (likely(VX_FAST(a_, sizeof(T)))) { \
        T v_; \
        memcpy(&v_, (const void *)(uintptr_t)a_, sizeof(T)); \
        D = (uint64_t)(CAST)v_; \
    } else if ((CTX) && a_ - c->ctx_lo < 6 * 4 && !((a_ - c->ctx_lo) & 3)) { \
        D = c->ctx_val[(a_ - c->ctx_lo) / 4]; \
    } else if (vx_in_maps(c, a_, sizeof(T), 0)) { \
        T v_; \
        memcpy(&v_, (const void *)(uintptr_t)a_, sizeof(T)); \
        D = (uint64_t)(CAST)v_; \
    } else { \
        uint64_t v_ = c->ops->load(c, (PC), a_, sizeof(T), (SX)); \
        if (unlikely(c->status)) \
            goto fault; \
        D = v_; \
    } } while (0)

/* *(T *)A = V */
#define VX_STORE(PC, A, T, V) do { \
    uint64_t a_ = (A); \
    void *p_; \
    if (likely(VX_FAST(a_, sizeof(T))) || vx_in_maps(c, a_, sizeof(T), 1)) { \
        p_ = (void *)(uintptr_t)a_; \
    } else if (!(p_ = c->ops->store(c, (PC), a_, sizeof(T)))) { \
        goto fault; \
    } \
    T v_ = (T)(V); \
    memcpy(p_, &v_, sizeof(T)); } while (0)

/* the host address of an aligned T at A for an atomic, else fault */
#define VX_ATOMIC_PTR(PC, P, A, T) do { \
    uint64_t a_ = (A); \
    if (a_ % sizeof(T)) \
        VX_FAIL(PC, VXDP_JIT_F_MISALIGNED, sizeof(T), a_); \
    if (VX_FAST(a_, sizeof(T)) || vx_in_maps(c, a_, sizeof(T), 1)) \
        P = (T *)(uintptr_t)a_; \
    else if (!(P = c->ops->store(c, (PC), a_, sizeof(T)))) \
        goto fault; } while (0)
#define VX_ATOMIC(PC, A, T, OP, V) do { T *q_; VX_ATOMIC_PTR(PC, q_, A, T); \
    __atomic_fetch_##OP(q_, (T)(V), __ATOMIC_SEQ_CST); } while (0)
#define VX_ATOMIC_FETCH(PC, A, T, OP, S) do { T *q_; VX_ATOMIC_PTR(PC, q_, A, T); \
    S = __atomic_fetch_##OP(q_, (T)(S), __ATOMIC_SEQ_CST); } while (0)
#define VX_XCHG(PC, A, T, S) do { T *q_; VX_ATOMIC_PTR(PC, q_, A, T); \
    S = __atomic_exchange_n(q_, (T)(S), __ATOMIC_SEQ_CST); } while (0)
/* r0 = the old value; S stored when it equalled r0 */
#define VX_CMPXCHG(PC, A, T, S) do { T *q_; VX_ATOMIC_PTR(PC, q_, A, T); \
    T old_ = (T)r0; \
    __atomic_compare_exchange_n(q_, &old_, (T)(S), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    r0 = old_; } while (0)

/* helpers: r0 back; the packet may have moved */
#define VX_AFTER_CALL() do { \
    if (unlikely(c->status)) { \
        if (c->status > 0) \
            goto done; \
        goto fault; \
    } \
    pkt_lo = c->pkt_lo; \
    pkt_hi = c->pkt_hi; } while (0)
#define VX_HELPER(PC, ID) do { \
    r0 = c->ops->call(c, (PC), (ID), r1, r2, r3, r4, r5); VX_AFTER_CALL(); } while (0)
#define VX_CALLX(PC, R) do { \
    r0 = c->ops->callx(c, (PC), (R), r1, r2, r3, r4, r5); VX_AFTER_CALL(); } while (0)
/* bpf_map_lookup_elem(map, key): a plain array with its 4-byte key in the packet or the
 * stack is served here (the helper would find the same value: index < max_entries gives
 * element index, else NULL); any other map, or a key elsewhere, goes to the helper */
VX_FN const struct vxdp_jit_map *vx_inline_array(const struct vxdp_jit_ctx *c, uint64_t map)
{
    for (uint32_t i = 0; i < c->nregions; i++)
        if (c->maps[i].map == map)
            return c->maps[i].inline_array ? &c->maps[i] : 0;
    return 0;
}
#define VX_LOOKUP(PC) do { \
    const struct vxdp_jit_map *m_ = vx_inline_array(c, r1); \
    if (m_ && VX_FAST(r2, 4)) { \
        uint32_t k_; \
        memcpy(&k_, (const void *)(uintptr_t)r2, 4); \
        r0 = k_ < m_->max_entries ? m_->values + (uint64_t)k_ * m_->stride : 0; \
    } else { \
        VX_HELPER(PC, 1); \
    } } while (0)
/* bpf_tail_call: on failure execution goes on with the next instruction */
#define VX_TAIL_CALL(PC) do { \
    int t_ = c->ops->tail_call(c, (PC), r2, r3); \
    if (t_ < 0) \
        goto fault; \
    if (t_ > 0) { \
        VX_CHARGE(PC); \
        goto tail; \
    } } while (0)

/* bpf-to-bpf call: a new frame below, r6-r9 kept for the return */
#define VX_CALL(PC, L, RET) do { \
    if (c->depth + 1 >= VXDP_JIT_MAX_FRAMES) \
        VX_FAIL(PC, VXDP_JIT_F_DEPTH, 0, 0); \
    VX_CHARGE(PC); \
    struct vxdp_jit_frame *f_ = &c->frames[c->depth++]; \
    f_->prog = c->prog; \
    f_->ret_pc = (RET); \
    f_->saved[0] = r6, f_->saved[1] = r7, f_->saved[2] = r8, f_->saved[3] = r9; \
    stack_lo = c->stack_base + (VXDP_JIT_MAX_FRAMES - 1 - c->depth) * VXDP_JIT_STACK_SIZE; \
    c->stack_lo = stack_lo; \
    r10 = stack_lo + VXDP_JIT_STACK_SIZE; \
    goto L; } while (0)
#define VX_EXIT() do { if (c->depth == 0) goto done; goto ret; } while (0)

/* RET_LEAVE: pop the frame; r0-r5 and the budget are in c already */
__attribute__((noinline, cold, unused))
static int vx_leave_frame(struct vxdp_jit_ctx *c)
{
    struct vxdp_jit_frame *f = &c->frames[--c->depth];
    c->reg[6] = f->saved[0], c->reg[7] = f->saved[1];
    c->reg[8] = f->saved[2], c->reg[9] = f->saved[3];
    c->stack_lo = c->stack_base + (VXDP_JIT_MAX_FRAMES - 1 - c->depth) * VXDP_JIT_STACK_SIZE;
    c->reg[10] = c->stack_lo + VXDP_JIT_STACK_SIZE;
    if (f->prog == c->prog)
        return vx_fail(c, f->ret_pc, VXDP_JIT_F_ENTRY, f->ret_pc, 0);
    c->next_prog = f->prog;
    c->resume_pc = f->ret_pc;
    return VXDP_JIT_RESUME;
}
"""

ENTRY_HEAD = """
static int run(struct vxdp_jit_ctx *c, uint32_t entry)
{
    uint64_t r0 = c->reg[0], r1 = c->reg[1], r2 = c->reg[2], r3 = c->reg[3];
    uint64_t r4 = c->reg[4], r5 = c->reg[5], r6 = c->reg[6], r7 = c->reg[7];
    uint64_t r8 = c->reg[8], r9 = c->reg[9], r10 = c->reg[10];
    uintptr_t stack_lo = c->stack_lo;
    const uintptr_t stack_hi = c->stack_hi;
    uintptr_t pkt_lo = c->pkt_lo, pkt_hi = c->pkt_hi;
    uint32_t budget = c->budget;

    (void)stack_lo, (void)stack_hi;   /* programs that touch no memory or make no calls */
    (void)pkt_lo, (void)pkt_hi;
"""

# An exit at depth > 0 pops the frame of a bpf-to-bpf call.  In a program that makes such
# calls, execution goes on at the return site when the frame is its own.
RET_INLINE = """
ret:    /* exit from a bpf-to-bpf call: pop the frame */
    {
        struct vxdp_jit_frame *f_ = &c->frames[--c->depth];
        uint32_t ret_pc = f_->ret_pc;
        r6 = f_->saved[0], r7 = f_->saved[1], r8 = f_->saved[2], r9 = f_->saved[3];
        stack_lo = c->stack_base + (VXDP_JIT_MAX_FRAMES - 1 - c->depth) * VXDP_JIT_STACK_SIZE;
        c->stack_lo = stack_lo;
        r10 = stack_lo + VXDP_JIT_STACK_SIZE;
        if (f_->prog != c->prog) {   /* a frame of the program that tail-called us */
            c->next_prog = f_->prog;
            c->resume_pc = ret_pc;
            c->budget = budget;
            c->reg[0] = r0, c->reg[1] = r1, c->reg[2] = r2, c->reg[3] = r3, c->reg[4] = r4;
            c->reg[5] = r5, c->reg[6] = r6, c->reg[7] = r7, c->reg[8] = r8, c->reg[9] = r9;
            c->reg[10] = r10;
            return VXDP_JIT_RESUME;
        }
        switch (ret_pc) {   /* return into this program at ret_pc */
@SITES@
        default: VX_FAIL(ret_pc, VXDP_JIT_F_ENTRY, ret_pc, 0);
        }
    }
"""

# A program that makes no bpf-to-bpf calls has no return site: a frame it pops belongs to
# the program that tail-called it (or it is no frame to return into, a fault), and the
# function of its own below finds which.
RET_LEAVE = """
ret:    /* exit from a bpf-to-bpf call made by the program that tail-called this one */
    c->budget = budget;
    c->reg[0] = r0, c->reg[1] = r1, c->reg[2] = r2, c->reg[3] = r3, c->reg[4] = r4;
    c->reg[5] = r5;
    return vx_leave_frame(c);
"""

ENTRY_TAIL = """
done:
    c->reg[0] = r0;
    return VXDP_JIT_DONE;
fault:
    return VXDP_JIT_FAULT;
tail:
    c->budget = budget;
    c->reg[0] = r0, c->reg[1] = r1, c->reg[2] = r2, c->reg[3] = r3, c->reg[4] = r4;
    c->reg[5] = r5, c->reg[6] = r6, c->reg[7] = r7, c->reg[8] = r8, c->reg[9] = r9;
    c->reg[10] = r10;
    return VXDP_JIT_TAIL;
}
"""


def jit_header() -> str:
    """The ABI header the core was built with (csrc/vxdp_jit.h, package data)."""
    try:
        return JIT_HEADER.read_text()
    except OSError as exc:
        raise CoreError(f"jit: cannot read the ABI header {JIT_HEADER}: {exc}") from None


def _i32(v: int) -> str:
    """A C int literal of a signed 32-bit value (INT32_MIN has no literal of its own)."""
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


def _k64(v: int) -> str:
    """The immediate sign-extended to u64, as the interpreter's IMM."""
    return f"{v}ull" if v >= 0 else f"(uint64_t){_i32(v)}"


def _k32(v: int) -> str:
    """The immediate as u32, as the interpreter's (uint32_t)insn->imm."""
    return f"{v}u" if v >= 0 else f"(uint32_t){_i32(v)}"


def _addr(reg: int, off: int) -> str:
    if off == 0:
        return f"r{reg}"
    return f"r{reg} + {off}" if off > 0 else f"r{reg} - {-off}"


class _Gen:
    def __init__(self, insns: Sequence[Insn], mode: int) -> None:
        self.insns = insns
        self.mode = mode
        self.return_sites: list[int] = []

    def bad(self, pc: int) -> InvalidProgram:
        return InvalidProgram(f"jit: invalid opcode 0x{self.insns[pc].opcode:02x} at pc {pc}")

    def target(self, pc: int, delta: int) -> int:
        t = pc + 1 + delta
        if not 0 <= t < len(self.insns):
            raise InvalidProgram(f"jit: jump out of range from insn {pc} to {t}")
        return t

    def jump(self, pc: int, delta: int) -> str:
        t = self.target(pc, delta)
        return f"VX_BACK({pc}, L{t});" if delta < 0 else f"goto L{t};"

    def alu(self, pc: int, i: Insn) -> str:
        is64 = i.cls == Cls.ALU64
        op, d, s = i.op, i.dst, i.src
        x = i.source == Src.X
        if op == AluOp.NEG and not x and i.off == 0:
            return f"r{d} = -r{d};" if is64 else f"r{d} = (uint32_t)-(uint32_t)r{d};"
        if op == AluOp.END:
            if i.imm not in (16, 32, 64) or (is64 and x):
                raise self.bad(pc)
            if not is64 and not x:  # to little-endian on a little-endian host: truncate
                return {16: f"r{d} = (uint16_t)r{d};", 32: f"r{d} = (uint32_t)r{d};",
                        64: ";  /* no change */"}[i.imm]
            return f"r{d} = __builtin_bswap{i.imm}((uint{i.imm}_t)r{d});"
        if op == AluOp.MOV:
            return self.mov(pc, i, is64)
        if op in (AluOp.DIV, AluOp.MOD):
            if i.off not in (0, 1):
                raise self.bad(pc)
            fn = ("s" if i.off else "u") + ("div" if op == AluOp.DIV else "mod")
            if is64:
                return f"r{d} = vx_{fn}64(r{d}, {f'r{s}' if x else _k64(i.imm)});"
            return f"r{d} = vx_{fn}32((uint32_t)r{d}, {f'(uint32_t)r{s}' if x else _k32(i.imm)});"
        if i.off != 0:
            raise self.bad(pc)
        if op in _SIMPLE:
            sym = _SIMPLE[AluOp(op)]
            if is64 and x and s == d and op in (AluOp.OR, AluOp.AND):
                return ";  /* no change (compilers warn about the self-assignment) */"
            if is64:
                return f"r{d} {sym}= {f'r{s}' if x else _k64(i.imm)};"
            rhs = f"(uint32_t)r{s}" if x else _k32(i.imm)
            return f"r{d} = (uint32_t)((uint32_t)r{d} {sym} {rhs});"
        mask = 63 if is64 else 31
        amount = f"(r{s} & {mask})" if x else str(i.imm & mask)
        if op in _SHIFT:
            sym = _SHIFT[AluOp(op)]
            if is64:
                return f"r{d} {sym}= {amount};"
            return f"r{d} = (uint32_t)((uint32_t)r{d} {sym} {amount});"
        if op == AluOp.ARSH:
            if is64:
                return f"r{d} = (uint64_t)((int64_t)r{d} >> {amount});"
            return f"r{d} = (uint32_t)((int32_t)r{d} >> {amount});"
        raise self.bad(pc)

    def mov(self, pc: int, i: Insn, is64: bool) -> str:
        d, s = i.dst, i.src
        if i.source == Src.K:
            if i.off != 0:
                raise self.bad(pc)
            return f"r{d} = {_k64(i.imm) if is64 else _k32(i.imm)};"
        if i.off == 0:
            if is64 and s == d:
                return ";  /* no change (compilers warn about the self-assignment) */"
            return f"r{d} = r{s};" if is64 else f"r{d} = (uint32_t)r{s};"
        if i.off in (8, 16) or (is64 and i.off == 32):
            if is64:
                return f"r{d} = (uint64_t)(int{i.off}_t)r{s};"
            return f"r{d} = (uint32_t)(int32_t)(int{i.off}_t)r{s};"
        raise self.bad(pc)

    def jmp(self, pc: int, i: Insn) -> str:
        op, d, s = i.op, i.dst, i.src
        is32 = i.cls == Cls.JMP32
        if op == JmpOp.EXIT:
            if i.opcode != Cls.JMP | JmpOp.EXIT:
                raise self.bad(pc)
            return "VX_EXIT();"
        if op == JmpOp.CALL:
            return self.call(pc, i)
        if op == JmpOp.JA:
            if i.source != Src.K:
                raise self.bad(pc)
            return self.jump(pc, i.imm if is32 else i.off)
        x = i.source == Src.X
        if op == JmpOp.JSET:
            if is32:
                rhs = f"(uint32_t)r{s}" if x else _k32(i.imm)
                cond = f"(uint32_t)r{d} & {rhs}"
            else:
                cond = f"r{d} & {f'r{s}' if x else _k64(i.imm)}"
        elif op in _COND:
            sym, signed = _COND[JmpOp(op)]
            width = 32 if is32 else 64
            cast = f"(int{width}_t)" if signed else ("(uint32_t)" if is32 else "")
            if x and s == d:  # a register against itself: C compilers warn, say it plainly
                return f"if ({int(sym in ('==', '>=', '<='))}) {self.jump(pc, i.off)}"
            if not x and not signed and i.imm == 0 and sym in (">=", "<"):  # unsigned vs 0
                return f"if ({int(sym == '>=')}) {self.jump(pc, i.off)}"
            if x:
                rhs = f"{cast}r{s}"
            elif signed:
                rhs = _i32(i.imm)
            else:
                rhs = _k32(i.imm) if is32 else _k64(i.imm)
            cond = f"{cast}r{d} {sym} {rhs}"
        else:
            raise self.bad(pc)
        return f"if ({cond}) {self.jump(pc, i.off)}"

    def call(self, pc: int, i: Insn) -> str:
        if i.cls != Cls.JMP:
            raise self.bad(pc)
        if i.source == Src.X:  # callx (ubpf): the helper id is in a register
            if self.mode != MODE_RAW:
                raise self.bad(pc)
            reg = i.dst if i.dst else i.imm
            if not 0 <= reg <= 10:
                raise self.bad(pc)
            return f"VX_CALLX({pc}, r{reg});"
        if i.src == CallSrc.LOCAL:
            t = self.target(pc, i.imm)
            self.return_sites.append(pc + 1)
            return f"VX_CALL({pc}, L{t}, {pc + 1});"
        if i.src != CallSrc.HELPER or i.imm < 0:
            raise self.bad(pc)
        if self.mode == MODE_XDP and i.imm == HELPER_TAIL_CALL:
            return f"VX_TAIL_CALL({pc});"
        if self.mode == MODE_XDP and i.imm == HELPER_MAP_LOOKUP:
            return f"VX_LOOKUP({pc});"
        return f"VX_HELPER({pc}, {i.imm});"

    @staticmethod
    def in_frame(reg: int, off: int, size: int) -> bool:
        """r10 + off .. + size lies in the current frame (see VX_LDX_FP)."""
        return reg == 10 and -STACK_SIZE <= off and off + size <= 0

    def ldx(self, pc: int, i: Insn) -> str:
        size = Size(i.size)
        t = _TYPES[size]
        if i.mode in (Mode.MEM, Mode.MEMSX) and self.in_frame(i.src, i.off, SIZE_BYTES[size]):
            cast = _STYPES[size] if i.mode == Mode.MEMSX and size != Size.DW else t
            if i.mode == Mode.MEM or size != Size.DW:
                return f"VX_LDX_FP(r{i.dst}, {i.off}, {t}, {cast});"
        if i.mode == Mode.MEM:
            ctx = int(self.mode == MODE_XDP and size == Size.W)
            return f"VX_LDX({pc}, r{i.dst}, {_addr(i.src, i.off)}, {t}, {t}, 0, {ctx});"
        if i.mode == Mode.MEMSX and size != Size.DW:
            return (f"VX_LDX({pc}, r{i.dst}, {_addr(i.src, i.off)}, {t}, {_STYPES[size]}, "
                    "1, 0);")
        raise self.bad(pc)

    def store(self, pc: int, i: Insn) -> str:
        t = _TYPES[Size(i.size)]
        fp = self.in_frame(i.dst, i.off, SIZE_BYTES[Size(i.size)])
        if i.cls == Cls.ST:
            if i.mode != Mode.MEM:
                raise self.bad(pc)
            value = _k64(i.imm) if i.size == Size.DW else _i32(i.imm)
            if fp:
                return f"VX_STORE_FP({i.off}, {t}, {value});"
            return f"VX_STORE({pc}, {_addr(i.dst, i.off)}, {t}, {value});"
        if i.mode == Mode.MEM:
            if fp:
                return f"VX_STORE_FP({i.off}, {t}, r{i.src});"
            return f"VX_STORE({pc}, {_addr(i.dst, i.off)}, {t}, r{i.src});"
        if i.mode != Mode.ATOMIC or i.size not in (Size.W, Size.DW):
            raise self.bad(pc)
        a, s, imm = _addr(i.dst, i.off), i.src, i.imm
        if imm in _ATOMIC:
            return f"VX_ATOMIC({pc}, {a}, {t}, {_ATOMIC[AtomicOp(imm)]}, r{s});"
        if imm & AtomicOp.FETCH and imm & ~AtomicOp.FETCH in _ATOMIC:
            name = _ATOMIC[AtomicOp(imm & ~AtomicOp.FETCH)]
            return f"VX_ATOMIC_FETCH({pc}, {a}, {t}, {name}, r{s});"
        if imm == AtomicOp.XCHG:
            return f"VX_XCHG({pc}, {a}, {t}, r{s});"
        if imm == AtomicOp.CMPXCHG:
            return f"VX_CMPXCHG({pc}, {a}, {t}, r{s});"
        raise self.bad(pc)

    def ld(self, pc: int, i: Insn) -> str:
        if not is_ldimm64(i) or pc + 1 >= len(self.insns):
            raise self.bad(pc)
        if i.src == 0:
            return f"r{i.dst} = 0x{imm64(self.insns, pc):x}ull;"
        if i.src in (1, 2, 4):  # a map, a map value or a callback (bpf_loop): the address
            return f"r{i.dst} = vx_imm64(c->insns, {pc});"  # the core bound at load
        raise self.bad(pc)

    def statement(self, pc: int) -> str:
        i = self.insns[pc]
        if i.dst > 10 or i.src > 10:
            raise InvalidProgram(f"jit: invalid register at pc {pc}")
        cls = i.cls
        if cls in (Cls.ALU, Cls.ALU64):
            return self.alu(pc, i)
        if cls in (Cls.JMP, Cls.JMP32):
            return self.jmp(pc, i)
        if cls == Cls.LDX:
            return self.ldx(pc, i)
        if cls in (Cls.ST, Cls.STX):
            return self.store(pc, i)
        return self.ld(pc, i)

    def body(self) -> list[str]:
        lines: list[str] = []
        pc = 0
        while pc < len(self.insns):
            text = format_insn(self.insns, pc).replace("*/", "* /")
            lines.append(f"    /* {text} */")
            lines.append(f"L{pc}: {self.statement(pc)}")
            pc += 2 if is_ldimm64(self.insns[pc]) else 1
        return lines


def source_head() -> str:
    """What every compiled object starts with: the ABI header and the support code."""
    return "\n".join([f"/* vxdp jit (generated by vxdp.bpf.jitgen v{GENERATOR_VERSION}) */",
                      jit_header(), PRELUDE])


def program_source(code: bytes, mode: int, *, name: str = "", suffix: str = "") -> str:
    """The function of one program and its `vxdp_jit_info<suffix>` (after source_head();
    a suffix lets several programs share one object)."""
    if mode not in (MODE_RAW, MODE_XDP):
        raise InvalidProgram(f"jit: unknown program mode {mode}")
    insns = decode(code)
    if not insns:
        raise InvalidProgram("jit: empty program")
    gen = _Gen(insns, mode)
    body = gen.body()
    sites = sorted(set(gen.return_sites))
    out = [f"/* {name or 'program'}: {len(insns)} instruction slots, "
           f"{'xdp' if mode == MODE_XDP else 'raw'} mode */",
           ENTRY_HEAD.replace("static int run(", f"static int run{suffix}("),
           "    switch (entry) {   /* the start and the return sites of calls */",
           "    case 0: goto L0;"]
    out += [f"    case {s}: goto L{s};" for s in sites]
    out += ["    default: VX_FAIL(0, VXDP_JIT_F_ENTRY, entry, 0);", "    }", ""]
    out += body
    if sites:
        cases = "\n".join(f"        case {s}: goto L{s};" for s in sites)
        out.append(RET_INLINE.replace("@SITES@", cases).rstrip("\n"))
    else:
        out.append(RET_LEAVE.rstrip("\n"))
    out.append(ENTRY_TAIL)
    out.append("__attribute__((visibility(\"default\")))\n"
               f"const struct vxdp_jit_info vxdp_jit_info{suffix} = {{\n"
               f"    .abi = VXDP_JIT_ABI, .mode = {mode}, .ninsns = {len(insns)}, "
               f".entry = run{suffix},\n"
               "};\n")
    return "\n".join(out)


def generate(code: bytes, mode: int, *, name: str = "") -> str:
    """The C translation unit of `code` (instruction bytes as loaded, maps as indices)."""
    return source_head() + "\n" + program_source(code, mode, name=name)
