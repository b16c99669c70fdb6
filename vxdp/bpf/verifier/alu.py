"""ALU instructions: scalar arithmetic and the pointer arithmetic rules.

check_alu_op and adjust_ptr_min_max_vals of the kernel, privileged and unprivileged:
which operators a pointer may take (64-bit + and - of a scalar; - of another pointer gives
a scalar when pointer leaks are allowed), which pointer types take none (map_ptr, pkt_end,
nullable pointers), and the bounds a pointer's variable offset may reach.
"""

from __future__ import annotations

from typing import Final

from vxdp.bpf.isa import (
    BPF_ADD,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_DIV,
    BPF_END,
    BPF_K,
    BPF_LSH,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_X,
    BPF_XOR,
    Insn,
    plain,
)
from vxdp.bpf.verifier.arith import alu, bswap, movsx
from vxdp.bpf.verifier.scalar import S64_MIN, Scalar, to_s64
from vxdp.bpf.verifier.state import (
    BPF_MAX_VAR_OFF,
    FP,
    PACKET_TYPES,
    Env,
    Reg,
    Reject,
    State,
    T,
    const,
    scalar,
)

# enum members as plain attributes: read on every instruction (see isa.plain)
T = plain(T)  # type: ignore[misc]

OP_TEXT: Final[dict[int, str]] = {BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=",
           BPF_OR: "|=", BPF_AND: "&=", BPF_LSH: "<<=", BPF_RSH: ">>=",
           BPF_NEG: "neg", BPF_MOD: "%=", BPF_XOR: "^=", BPF_MOV: "=",
           BPF_ARSH: "s>>=", BPF_END: "endian"}


def read_reg(state: State, regno: int) -> Reg:
    reg = state.regs[regno]
    if reg.type is T.NOT_INIT:
        raise Reject(f"R{regno} !read_ok")
    return reg


def check_alu(env: Env, state: State, insn: Insn) -> None:
    bits = 64 if insn.cls == BPF_ALU64 else 32
    op = insn.op
    dst = insn.dst
    regs = state.regs
    if op == BPF_MOV:
        if insn.source == BPF_X:
            src = read_reg(state, insn.src)
            regs[dst] = _mov_reg(env, state, insn, src, bits)
        else:
            v = insn.imm if bits == 64 else insn.imm & 0xFFFFFFFF
            regs[dst] = const(v)
        return
    dreg = regs[dst]
    if dreg.type is _SCALAR and insn.source == BPF_K and op in _PLAIN_K_OPS:
        # the commonest case, `scalar op= K` with no K to refuse (the checks below,
        # none of which applies): the value alone
        regs[dst] = scalar(alu(op, dreg.var, const(insn.imm if bits == 64
                                                   else insn.imm & 0xFFFFFFFF).var, bits))
        return
    dreg = read_reg(state, dst)
    if op in (BPF_NEG, BPF_END):
        if dreg.is_pointer:
            if not env.allow_ptr_leaks:
                raise Reject(f"R{dst} pointer arithmetic prohibited")
            regs[dst] = scalar() if bits == 64 else scalar(Scalar.unknown().zext32())
            return
        if op == BPF_NEG:
            regs[dst] = scalar(alu(op, dreg.var, Scalar.const(0), bits))
        else:
            regs[dst] = scalar(bswap(dreg.var, insn.imm, insn.source == BPF_X,
                                     insn.cls == BPF_ALU64))
        return
    if insn.source == BPF_X:
        sreg = read_reg(state, insn.src)
    else:
        if op in (BPF_DIV, BPF_MOD) and insn.imm == 0:
            raise Reject("div by zero")
        if op in (BPF_LSH, BPF_RSH, BPF_ARSH) and not 0 <= insn.imm < bits:
            raise Reject(f"invalid shift {insn.imm}")
        sreg = const(insn.imm if bits == 64 else insn.imm & 0xFFFFFFFF)
    # both initialised (read_reg, const): a pointer is what is not a scalar
    dst_ptr, src_ptr = dreg.type is not _SCALAR, sreg.type is not _SCALAR
    if dst_ptr or src_ptr:
        if insn.source == BPF_X and dst_ptr != src_ptr:
            # the pointer's offset is the scalar's value from now on
            env.mark_precise(state, insn.src if dst_ptr else dst)
        regs[dst] = _pointer_alu(env, insn, dreg, sreg, bits)
        return
    if insn.off == 1 and op in (BPF_DIV, BPF_MOD):  # sdiv, smod
        regs[dst] = scalar(alu(op, dreg.var, sreg.var, bits, signed_op=True))
    else:  # no keyword: the memoised call's key is shorter
        regs[dst] = scalar(alu(op, dreg.var, sreg.var, bits))


_SCALAR: Final = T.SCALAR
# `dst op= K` of a scalar that needs no check of K (division by zero, shift range) and
# is not NEG or END: everything but DIV, MOD, the shifts, NEG, END and MOV
_PLAIN_K_OPS: Final = frozenset({BPF_ADD, BPF_SUB, BPF_MUL, BPF_OR, BPF_AND,
                          BPF_XOR})


def _mov_reg(env: Env, state: State, insn: Insn, src: Reg, bits: int) -> Reg:
    if insn.off:  # MOVSX
        if src.is_pointer:
            if not env.allow_ptr_leaks:
                raise Reject(f"R{insn.src} sign-extension part of pointer")
            return scalar()
        return scalar(movsx(src.var, insn.off, bits == 64))
    if bits == 64:
        if src.is_scalar and not src.var.is_const and insn.src != insn.dst:
            if not src.id:  # link the copies: a bound learned on one holds for both
                src = src.with_id(env.new_id())
                state.regs[insn.src] = src
        return src
    if src.is_pointer:
        if not env.allow_ptr_leaks:
            raise Reject(f"R{insn.src} partial copy of pointer")
        return scalar(Scalar.unknown().zext32())
    return scalar(src.var.zext32())


def _check_sane_offset(env: Env, reg: Reg, ptr_type: str, known_scalar: bool) -> None:
    """check_reg_sane_offset: keep pointer math far from wrapping."""
    v = reg.var
    if known_scalar and reg.is_scalar:
        val = to_s64(v.value)
        if val >= BPF_MAX_VAR_OFF or val <= -BPF_MAX_VAR_OFF:
            raise Reject(f"math between {ptr_type} pointer and {val} is not allowed")
        return
    if reg.off >= BPF_MAX_VAR_OFF or reg.off <= -BPF_MAX_VAR_OFF:
        raise Reject(f"{ptr_type} pointer offset {reg.off} is not allowed")
    if v.smin == S64_MIN:
        raise Reject(f"math between {ptr_type} pointer and register with unbounded min "
                     f"value is not allowed")
    if v.smin >= BPF_MAX_VAR_OFF or v.smin <= -BPF_MAX_VAR_OFF:
        raise Reject(f"value {v.smin} makes {ptr_type} pointer be out of bounds")


_ARITH_OK: Final = frozenset({T.CTX, T.MAP_VALUE, T.STACK, T.PACKET, T.PACKET_META, T.RINGBUF_MEM,
                       T.MEM})


def _pointer_alu(env: Env, insn: Insn, dreg: Reg, sreg: Reg, bits: int) -> Reg:
    op, dst = insn.op, insn.dst
    # both initialised (check_alu): a pointer is what is not a scalar
    dst_ptr = dreg.type is not _SCALAR
    if dst_ptr and sreg.type is not _SCALAR:
        if op == BPF_SUB and env.allow_ptr_leaks:
            return scalar() if bits == 64 else scalar(Scalar.unknown().zext32())
        raise Reject(f"R{dst} pointer {OP_TEXT[op]} pointer prohibited")
    if bits == 32:
        if op == BPF_SUB and env.allow_ptr_leaks:
            return scalar(Scalar.unknown().zext32())
        raise Reject(f"R{dst} 32-bit pointer arithmetic prohibited")
    ptr, off_reg = (dreg, sreg) if dst_ptr else (sreg, dreg)
    if ptr.maybe_null:
        raise Reject(f"R{dst} pointer arithmetic on {ptr.type_name()} prohibited, "
                     f"null-check it first")
    known = off_reg.var.is_const
    if ptr.type not in _ARITH_OK:
        if not (ptr.type is T.MAP_PTR and known and off_reg.var.value == 0
                and op == BPF_ADD):
            raise Reject(f"R{dst} pointer arithmetic on {ptr.type_name()} prohibited")
        return ptr
    if op == BPF_SUB:
        if dreg is off_reg:
            raise Reject(f"R{dst} tried to subtract pointer from scalar")
        if ptr.type is T.STACK:
            raise Reject(f"R{dst} subtraction from stack pointer prohibited")
    elif op in (BPF_AND, BPF_OR, BPF_XOR):
        raise Reject(f"R{dst} bitwise operator {OP_TEXT[op]} on pointer prohibited")
    elif op != BPF_ADD:
        raise Reject(f"R{dst} pointer arithmetic with {OP_TEXT[op]} operator prohibited")
    if not env.allow_ptr_leaks and not known and ptr.type is T.STACK:
        raise Reject(f"R{dst} variable stack access prohibited for !root")
    tname = ptr.type_name()
    _check_sane_offset(env, off_reg, tname, known)
    _check_sane_offset(env, ptr, tname, False)
    if known:
        delta = to_s64(off_reg.var.value)
        new_off = ptr.off + (delta if op == BPF_ADD else -delta)
        if not -(1 << 31) <= new_off < (1 << 31):
            raise Reject(f"R{dst} pointer arithmetic overflow")
        res = ptr.with_off(new_off)
    else:
        var = alu(op, ptr.var, off_reg.var, 64)
        if ptr.type in PACKET_TYPES:  # a new variable part: re-learn the range
            res = Reg(ptr.type, var, ptr.off, env.new_id(), ptr.map, 0, ptr.maybe_null,
                      ptr.mem_size, ptr.ref, ptr.frame)
        else:
            res = ptr.with_var(var)
    _check_sane_offset(env, res, tname, False)
    if ptr.type is T.STACK and not env.allow_ptr_leaks:
        _check_stack_ptr_bounds(res, dst)
    return res


def _check_stack_ptr_bounds(reg: Reg, regno: int) -> None:
    off = reg.off + to_s64(reg.var.value)
    if off < -512 or off >= 0:
        raise Reject(f"R{regno} stack pointer arithmetic goes out of range, prohibited for "
                     f"!root")


def write_fp_check(insn: Insn) -> None:
    if insn.dst == FP:
        raise Reject("frame pointer is read only")
