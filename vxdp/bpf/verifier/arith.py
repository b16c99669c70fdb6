"""Scalar ALU operations and branch refinement on `Scalar`.

`alu(op, dst, src, bits)` is the abstract counterpart of one BPF ALU/ALU64 instruction on
two scalars (adjust_scalar_min_max_vals): bounds for +, -, *, &, |, ^ and constant shifts
are computed per half, everything else that is not a pair of constants becomes unknown.

`refine(op, a, b, bits)` returns what a true comparison `a op b` teaches about both
operands (reg_set_min_max), or None when no pair of values can satisfy it: the branch is
dead.  `branch_taken` uses it both ways: a comparison that cannot be false always jumps.
"""

from __future__ import annotations

import functools
from typing import Final

from vxdp.bpf.isa import (
    BPF_ADD,
    BPF_AND,
    BPF_ARSH,
    BPF_DIV,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LSH,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_XOR,
)
from vxdp.bpf.verifier.scalar import Half, Scalar, _signed
from vxdp.bpf.verifier.tnum import U64, Tnum

NEGATE: Final[dict[int, int]] = {
    BPF_JEQ: BPF_JNE, BPF_JNE: BPF_JEQ, BPF_JGT: BPF_JLE, BPF_JLE: BPF_JGT,
    BPF_JGE: BPF_JLT, BPF_JLT: BPF_JGE, BPF_JSGT: BPF_JSLE,
    BPF_JSLE: BPF_JSGT, BPF_JSGE: BPF_JSLT, BPF_JSLT: BPF_JSGE,
}
JSET_FALSE: Final = 0x100  # pseudo-op: the fall-through of JSET, `(a & b) == 0`
NEGATE[BPF_JSET] = JSET_FALSE
NEGATE[JSET_FALSE] = BPF_JSET

SWAP: Final[dict[int, int]] = {  # b op' a  <=>  a op b
    BPF_JEQ: BPF_JEQ, BPF_JNE: BPF_JNE, BPF_JGT: BPF_JLT, BPF_JLT: BPF_JGT,
    BPF_JGE: BPF_JLE, BPF_JLE: BPF_JGE, BPF_JSGT: BPF_JSLT,
    BPF_JSLT: BPF_JSGT, BPF_JSGE: BPF_JSLE, BPF_JSLE: BPF_JSGE,
    BPF_JSET: BPF_JSET, JSET_FALSE: JSET_FALSE,
}


# -- ALU ---------------------------------------------------------------------------------


def _add(a: Half, b: Half) -> Half:
    h = Half.full(a.bits)
    smin, smax = a.smin + b.smin, a.smax + b.smax
    if h.smin <= smin and smax <= h.smax:
        h = h.with_s(smin, smax)
    if a.umax + b.umax <= h.umax:
        h = h.with_u(a.umin + b.umin, a.umax + b.umax)
    return h


def _sub(a: Half, b: Half) -> Half:
    h = Half.full(a.bits)
    smin, smax = a.smin - b.smax, a.smax - b.smin
    if h.smin <= smin and smax <= h.smax:
        h = h.with_s(smin, smax)
    if a.umin >= b.umax:
        h = h.with_u(a.umin - b.umax, a.umax - b.umin)
    return h


def _mul(a: Half, b: Half) -> Half:
    h = Half.full(a.bits)
    if a.umax * b.umax <= h.umax:
        h = h.with_u(a.umin * b.umin, a.umax * b.umax)
    corners = [x * y for x in (a.smin, a.smax) for y in (b.smin, b.smax)]
    if h.smin <= min(corners) and max(corners) <= h.smax:
        h = h.with_s(min(corners), max(corners))
    return h


def _bitwise(op: int, a: Half, b: Half, t: Tnum) -> Half:
    """&, |, ^ given the result's tnum `t` (already cut to the width)."""
    h = Half.full(a.bits)
    if op == BPF_AND:
        h = h.with_u(t.value, min(a.umax, b.umax, t.umax))
    elif op == BPF_OR:
        h = h.with_u(max(a.umin, b.umin, t.value), t.umax)
    else:
        h = h.with_u(t.value, t.umax)
    if a.smin >= 0 and b.smin >= 0:  # both non-negative: so is the result
        h = h.with_s(h.umin, h.umax)
    return h


def _tnum_op(op: int, a: Tnum, b: Tnum) -> Tnum:
    if op == BPF_ADD:
        return a.add(b)
    if op == BPF_SUB:
        return a.sub(b)
    if op == BPF_MUL:
        return a.mul(b)
    if op == BPF_AND:
        return a.and_(b)
    if op == BPF_OR:
        return a.or_(b)
    return a.xor(b)


def _half_op(op: int, a: Half, b: Half, t: Tnum) -> Half:
    if op == BPF_ADD:
        return _add(a, b)
    if op == BPF_SUB:
        return _sub(a, b)
    if op == BPF_MUL:
        return _mul(a, b)
    return _bitwise(op, a, b, t)


_TRACKED: Final = frozenset({BPF_ADD, BPF_SUB, BPF_MUL, BPF_AND, BPF_OR, BPF_XOR})


def _concrete(op: int, x: int, y: int, bits: int, signed_op: bool) -> int:
    """The BPF semantics of one operation on concrete values (RFC 9669 §4.1)."""
    mask = (1 << bits) - 1
    x &= mask
    y &= mask
    if op == BPF_NEG:
        return -x & mask
    if op == BPF_DIV:
        if y == 0:
            return 0
        if signed_op:
            sx, sy = _signed(x, bits), _signed(y, bits)
            q = abs(sx) // abs(sy)
            return (q if (sx < 0) == (sy < 0) else -q) & mask
        return x // y
    if op == BPF_MOD:
        if y == 0:
            return x
        if signed_op:
            sx, sy = _signed(x, bits), _signed(y, bits)
            r = abs(sx) % abs(sy)
            return (-r if sx < 0 else r) & mask
        return x % y
    if op == BPF_LSH:
        return (x << (y & (bits - 1))) & mask
    if op == BPF_RSH:
        return x >> (y & (bits - 1))
    if op == BPF_ARSH:
        return (_signed(x, bits) >> (y & (bits - 1))) & mask
    table: dict[int, int] = {BPF_ADD: x + y, BPF_SUB: x - y, BPF_MUL: x * y, BPF_AND: x & y,
             BPF_OR: x | y, BPF_XOR: x ^ y}
    return table[op] & mask


def _shift(op: int, a: Scalar, amount: int, bits: int) -> Scalar:
    """A shift by a constant amount smaller than the width."""
    h = a.half(bits)
    t = a.tnum(bits)
    full = Half.full(bits)
    if op == BPF_LSH:
        t = t.lshift(amount).cast(bits // 8)
        res = full.with_u(h.umin << amount, h.umax << amount) if h.umax >> (
            bits - amount) == 0 else full
    elif op == BPF_RSH:
        t = t.rshift(amount)
        res = full.with_u(h.umin >> amount, h.umax >> amount)
    else:
        t = t.arshift(amount, bits)
        res = full.with_s(h.smin >> amount, h.smax >> amount)
    if bits == 32:
        half32 = res
        out = Scalar.from_halves(t, Half.full(64), half32)
        return out.zext32() if out is not None else Scalar.unknown()
    out = Scalar.from_halves(t, res, Half.full(32))
    return out if out is not None else Scalar.unknown()


@functools.lru_cache(maxsize=1 << 15)
def alu(op: int, dst: Scalar, src: Scalar, bits: int, *, signed_op: bool = False) -> Scalar:
    """dst op= src on scalars, for a 64-bit (ALU64) or 32-bit (ALU) instruction."""
    if op == BPF_MOV:
        return src if bits == 64 else src.zext32()
    if op in (BPF_DIV, BPF_MOD):  # the kernel tracks neither, constants included
        return Scalar.unknown() if bits == 64 else Scalar.unknown().zext32()
    if op == BPF_NEG:
        return alu(BPF_SUB, Scalar.const(0), dst, bits)
    if dst.tnum(bits).is_const and src.tnum(bits).is_const:
        v = _concrete(op, dst.tnum(bits).value, src.tnum(bits).value, bits, signed_op)
        return Scalar.const(v)
    if op in (BPF_LSH, BPF_RSH, BPF_ARSH):
        if src.tnum(bits).is_const and src.tnum(bits).value < bits:
            return _shift(op, dst, src.tnum(bits).value, bits)
        return Scalar.unknown() if bits == 64 else Scalar.unknown().zext32()
    if op not in _TRACKED:
        return Scalar.unknown() if bits == 64 else Scalar.unknown().zext32()
    if bits == 32:
        t32 = _tnum_op(op, dst.var_off.subreg(), src.var_off.subreg()).subreg()
        h32 = _half_op(op, dst.half(32), src.half(32), t32)
        out = Scalar.from_halves(t32, Half.full(64), h32)
        return out.zext32() if out is not None else Scalar.unknown().zext32()
    t = _tnum_op(op, dst.var_off, src.var_off)
    h64 = _half_op(op, dst.half(64), src.half(64), t)
    h32 = _half_op(op, dst.half(32), src.half(32), t.subreg())
    out = Scalar.from_halves(t, h64, h32)
    return out if out is not None else Scalar.unknown()


def _swap(v: int, width: int) -> int:
    return int.from_bytes((v & ((1 << width) - 1)).to_bytes(width // 8, "little"), "big")


def bswap(value: Scalar, width: int, to_be: bool, alu64: bool) -> Scalar:
    """BPF_END (the kernel's scalar_byte_swap): a swap (to_be on this little-endian
    machine, and every ALU64 bswap) swaps the tnum's bytes and derives the bounds from it;
    to_le only truncates, keeping the bounds of a value that fits."""
    if to_be or alu64:
        t = value.var_off
        s = Scalar(Tnum(_swap(t.value, width), _swap(t.mask, width))).sync()
        return s if s is not None else Scalar.unsigned(width // 8)
    return value.cast(width // 8)


def _sx(x: int, bits: int) -> int:
    """The low `bits` bits of x as a signed number."""
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def sext(value: Scalar, size: int) -> Scalar:
    """Sign-extension of the low `size` bytes to 64 bits (coerce_reg_to_size_sx): the
    bounds survive when every value has the same upper bits and one sign once extended."""
    bits = size * 8
    if value.is_const:
        return Scalar.const(_sx(value.value, bits))
    if value.smin >> bits == value.smax >> bits:
        lo, hi = sorted((_sx(value.smin, bits), _sx(value.smax, bits)))
        if (lo >= 0) == (hi >= 0):
            s = Scalar(Tnum.range(lo & U64, hi & U64), lo & U64, hi & U64, lo, hi).sync()
            if s is not None:
                return s
    return Scalar.signed(size)


def movsx(value: Scalar, size_bits: int, alu64: bool) -> Scalar:
    """MOVSX: sign-extend the low `size_bits` bits (to 64, or to 32 and zero-extended,
    as coerce_subreg_to_size_sx)."""
    if alu64:
        return sext(value, size_bits // 8)
    low = sext(value.zext32(), size_bits // 8)
    return low.zext32()


# -- comparisons -------------------------------------------------------------------------


def _cmp_half(op: int, a: Half, b: Half, ta: Tnum, tb: Tnum
              ) -> tuple[Half, Half, Tnum, Tnum] | None:
    if op == BPF_JEQ:
        u = (max(a.umin, b.umin), min(a.umax, b.umax))
        s = (max(a.smin, b.smin), min(a.smax, b.smax))
        if (ta.value ^ tb.value) & ~ta.mask & ~tb.mask:
            return None
        t = ta.intersect(tb)
        a = a.with_u(*u).with_s(*s)
        return a, a, t, t
    if op == BPF_JNE:
        if ta.is_const and tb.is_const and ta.value == tb.value:
            return None
        if tb.is_const:
            a = _exclude(a, tb.value)
        elif ta.is_const:
            b = _exclude(b, ta.value)
        return a, b, ta, tb
    if op in (BPF_JLT, BPF_JLE):
        d = 1 if op == BPF_JLT else 0
        a = a.with_u(a.umin, min(a.umax, b.umax - d))
        b = b.with_u(max(b.umin, a.umin + d), b.umax)
        return a, b, ta, tb
    if op in (BPF_JSLT, BPF_JSLE):
        d = 1 if op == BPF_JSLT else 0
        a = a.with_s(a.smin, min(a.smax, b.smax - d))
        b = b.with_s(max(b.smin, a.smin + d), b.smax)
        return a, b, ta, tb
    if op == BPF_JSET:
        if not (ta.umax & tb.umax):
            return None
        if tb.is_const and tb.value and not tb.value & (tb.value - 1):
            ta = ta.or_(tb)  # a single bit tested set: that bit is one
        return a, b, ta, tb
    if op == JSET_FALSE:
        if ta.value & tb.value:
            return None
        if tb.is_const:
            ta = ta.and_(Tnum.const(~tb.value))
        elif ta.is_const:
            tb = tb.and_(Tnum.const(~ta.value))
        return a, b, ta, tb
    # JGT, JGE, JSGT, JSGE: the mirrored comparison
    res = _cmp_half(SWAP[op], b, a, tb, ta)
    if res is None:
        return None
    nb, na, ntb, nta = res
    return na, nb, nta, ntb


def _exclude(h: Half, v: int) -> Half:
    if h.umin == v:
        h = h.with_u(h.umin + 1, h.umax)
    elif h.umax == v:
        h = h.with_u(h.umin, h.umax - 1)
    sv = _signed(v, h.bits)
    if h.smin == sv:
        h = h.with_s(h.smin + 1, h.smax)
    elif h.smax == sv:
        h = h.with_s(h.smin, h.smax - 1)
    return h


@functools.lru_cache(maxsize=1 << 15)
def refine(op: int, a: Scalar, b: Scalar, bits: int) -> tuple[Scalar, Scalar] | None:
    """Both operands narrowed by `a op b` being true; None when it never can be."""
    res = _cmp_half(op, a.half(bits), b.half(bits), a.tnum(bits), b.tnum(bits))
    if res is None:
        return None
    ha, hb, ta, tb = res
    out = []
    for old, h, t in ((a, ha, ta), (b, hb, tb)):
        if bits == 64:
            s = Scalar(t, h.umin, h.umax, h.smin, h.smax,
                       old.u32_min, old.u32_max, old.s32_min, old.s32_max).sync()
        else:
            s = Scalar(old.var_off.with_subreg(t), old.umin, old.umax, old.smin, old.smax,
                       h.umin, h.umax, h.smin, h.smax).sync()
        if s is None:
            return None
        out.append(s)
    return out[0], out[1]


def branch_taken(op: int, a: Scalar, b: Scalar, bits: int) -> bool | None:
    """True: the jump is always taken; False: never; None: either may happen."""
    if refine(op, a, b, bits) is None:
        return False
    if refine(NEGATE[op], a, b, bits) is None:
        return True
    return None


__all__ = ["JSET_FALSE", "NEGATE", "SWAP", "alu", "branch_taken", "bswap", "movsx", "refine"]
