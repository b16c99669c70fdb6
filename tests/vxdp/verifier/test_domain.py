"""The abstract domain against brute force: every concrete result is a member.

Tnums are drawn with few unknown bits so that their members can all be enumerated;
scalars are built from small sets of concrete values (the abstraction of the set), so an
operation's abstract result must contain the operation applied to every pair.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from vxdp.bpf.isa import AluOp, JmpOp
from vxdp.bpf.verifier.arith import (
    JSET_FALSE,
    _concrete,
    alu,
    branch_taken,
    bswap,
    movsx,
    refine,
    sext,
)
from vxdp.bpf.verifier.scalar import Scalar, to_s32, to_s64
from vxdp.bpf.verifier.tnum import U32, U64, Tnum

# -- tnums -------------------------------------------------------------------------------


@st.composite
def tnums(draw: st.DrawFn, max_unknown: int = 4) -> Tnum:
    positions = draw(st.lists(st.integers(0, 63), max_size=max_unknown, unique=True))
    mask = sum(1 << p for p in positions)
    value = draw(st.integers(0, U64)) & ~mask
    return Tnum(value, mask)


def members(t: Tnum) -> list[int]:
    bits = [i for i in range(64) if t.mask >> i & 1]
    out = []
    for combo in itertools.product((0, 1), repeat=len(bits)):
        out.append(t.value | sum(b << i for b, i in zip(combo, bits)))
    return out


BINARY = {
    "add": (Tnum.add, lambda a, b: (a + b) & U64),
    "sub": (Tnum.sub, lambda a, b: (a - b) & U64),
    "mul": (Tnum.mul, lambda a, b: (a * b) & U64),
    "and": (Tnum.and_, lambda a, b: a & b),
    "or": (Tnum.or_, lambda a, b: a | b),
    "xor": (Tnum.xor, lambda a, b: a ^ b),
}


@settings(max_examples=300, deadline=None)
@given(a=tnums(), b=tnums(), op=st.sampled_from(sorted(BINARY)))
def test_tnum_binary_ops_are_sound(a: Tnum, b: Tnum, op: str) -> None:
    abstract, concrete = BINARY[op]
    res = abstract(a, b)
    assert res.value & res.mask == 0
    for x in members(a):
        for y in members(b):
            assert res.contains(concrete(x, y)), (op, a, b, x, y, res)


@settings(max_examples=200, deadline=None)
@given(a=tnums(6), s=st.integers(0, 63))
def test_tnum_shifts_are_sound(a: Tnum, s: int) -> None:
    for x in members(a):
        assert a.lshift(s).contains((x << s) & U64)
        assert a.rshift(s).contains(x >> s)
        assert a.arshift(s).contains(to_s64(x) >> s & U64)
        assert a.arshift(s % 32, 32).contains((to_s32(x) >> (s % 32)) & U32)


@settings(max_examples=300, deadline=None)
@given(lo=st.integers(0, U64), span=st.integers(0, 1 << 20))
def test_tnum_range_holds_the_range(lo: int, span: int) -> None:
    hi = min(lo + span, U64)
    t = Tnum.range(lo, hi)
    for x in (lo, hi, (lo + hi) // 2):
        assert t.contains(x)


def test_tnum_examples_match_the_kernel() -> None:
    assert str(Tnum.range(0, 255)) == "(0x0; 0xff)"
    assert Tnum.const(4).and_(Tnum.unknown()) == Tnum(0, 4)
    assert Tnum(0, 0xFF).add(Tnum.const(1)) == Tnum(0, 0x1FF)
    assert Tnum.range(0, 1 << 63) == Tnum.unknown()
    assert Tnum(0, 0xF).includes(Tnum(4, 3))
    assert not Tnum(0, 0xF).includes(Tnum(0x10, 0))


# -- scalars -----------------------------------------------------------------------------

values64 = st.one_of(st.integers(0, 300), st.integers(U64 - 300, U64),
                     st.integers(0, U64), st.integers((1 << 31) - 100, (1 << 32) + 100))


def abstract(xs: list[int]) -> Scalar:
    """The abstraction of a set of u64 values (what a verifier may know about them)."""
    t = Tnum.const(xs[0])
    for x in xs[1:]:
        t = t.union(Tnum.const(x))
    s = Scalar(t, min(xs), max(xs), min(map(to_s64, xs)), max(map(to_s64, xs)),
               min(x & U32 for x in xs), max(x & U32 for x in xs),
               min(to_s32(x) for x in xs), max(to_s32(x) for x in xs)).sync()
    assert s is not None
    return s


def contains(s: Scalar, x: int) -> bool:
    x &= U64
    lo = x & U32
    return (s.var_off.contains(x) and s.umin <= x <= s.umax and s.smin <= to_s64(x) <= s.smax
            and s.u32_min <= lo <= s.u32_max and s.s32_min <= to_s32(lo) <= s.s32_max)


ALU_OPS = [AluOp.ADD, AluOp.SUB, AluOp.MUL, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.LSH,
           AluOp.RSH, AluOp.ARSH, AluOp.DIV, AluOp.MOD, AluOp.NEG, AluOp.MOV]


@settings(max_examples=150, deadline=None)
@given(xs=st.lists(values64, min_size=1, max_size=4), ys=st.lists(values64, min_size=1,
       max_size=3), op=st.sampled_from(ALU_OPS), bits=st.sampled_from([32, 64]))
def test_scalar_alu_is_sound(xs: list[int], ys: list[int], op: int, bits: int) -> None:
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        ys = [y % bits for y in ys]
    a, b = abstract(xs), abstract(ys)
    res = alu(op, a, b, bits)
    for x in xs:
        for y in ys:
            want = y if op == AluOp.MOV else x
            want = _concrete(op, x, y, bits, False) if op != AluOp.MOV else want & (
                U64 if bits == 64 else U32)
            assert contains(res, want), (op, bits, xs, ys, res)


CMP_OPS = [JmpOp.JEQ, JmpOp.JNE, JmpOp.JGT, JmpOp.JGE, JmpOp.JLT, JmpOp.JLE, JmpOp.JSGT,
           JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE, JmpOp.JSET, JSET_FALSE]


def holds(op: int, x: int, y: int, bits: int) -> bool:
    mask = U64 if bits == 64 else U32
    x, y = x & mask, y & mask
    sx, sy = (to_s64(x), to_s64(y)) if bits == 64 else (to_s32(x), to_s32(y))
    return {JmpOp.JEQ: x == y, JmpOp.JNE: x != y, JmpOp.JGT: x > y, JmpOp.JGE: x >= y,
            JmpOp.JLT: x < y, JmpOp.JLE: x <= y, JmpOp.JSGT: sx > sy, JmpOp.JSGE: sx >= sy,
            JmpOp.JSLT: sx < sy, JmpOp.JSLE: sx <= sy, JmpOp.JSET: bool(x & y),
            JSET_FALSE: not x & y}[op]


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(values64, min_size=1, max_size=4), ys=st.lists(values64, min_size=1,
       max_size=3), op=st.sampled_from(CMP_OPS), bits=st.sampled_from([32, 64]))
def test_refine_keeps_every_satisfying_pair(xs: list[int], ys: list[int], op: int,
                                            bits: int) -> None:
    a, b = abstract(xs), abstract(ys)
    res = refine(op, a, b, bits)
    pairs = [(x, y) for x in xs for y in ys if holds(op, x, y, bits)]
    if res is None:
        assert not pairs, (op, bits, xs, ys)
        return
    ra, rb = res
    for x, y in pairs:
        assert contains(ra, x) and contains(rb, y), (op, bits, xs, ys, ra, rb)
    taken = branch_taken(op, a, b, bits)
    if taken is True:
        assert all(holds(op, x, y, bits) for x in xs for y in ys)
    if taken is False:
        assert not pairs


def test_refinement_examples() -> None:
    u32 = Scalar.unsigned(4)
    res = refine(JmpOp.JLT, u32, Scalar.const(16), 64)
    assert res is not None and res[0].umax == 15 and str(res[0].var_off) == "(0x0; 0xf)"
    assert branch_taken(JmpOp.JGT, Scalar.unsigned(1), Scalar.const(255), 64) is False
    assert branch_taken(JmpOp.JLE, Scalar.unsigned(1), Scalar.const(255), 64) is True
    assert alu(AluOp.AND, Scalar.unknown(), Scalar.const(0xFF), 64).umax == 0xFF


def _bswap(x: int, width: int) -> int:
    return int.from_bytes((x & ((1 << width) - 1)).to_bytes(width // 8, "little"), "big")


def _sext(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return (x - (1 << bits) if x >> (bits - 1) else x) & U64


@settings(max_examples=200, deadline=None)
@given(lo=values64, span=st.integers(0, 40), width=st.sampled_from([16, 32, 64]),
       swap=st.booleans())
def test_byte_swap_and_truncation_are_sound(lo: int, span: int, width: int,
                                            swap: bool) -> None:
    xs = [(lo + i) & U64 for i in range(span + 1)]
    res = bswap(abstract(xs), width, swap, False)
    for x in xs:
        want = _bswap(x, width) if swap else x & ((1 << width) - 1)
        assert contains(res, want), (xs, width, swap, res)


@settings(max_examples=200, deadline=None)
@given(lo=values64, span=st.integers(0, 300), size=st.sampled_from([1, 2, 4]),
       alu64=st.booleans())
def test_sign_extension_is_sound(lo: int, span: int, size: int, alu64: bool) -> None:
    xs = [(lo + i) & U64 for i in range(span + 1)]
    res = movsx(abstract(xs), size * 8, alu64)
    for x in xs:
        want = _sext(x, size * 8) if alu64 else _sext(x, size * 8) & U32
        assert contains(res, want), (xs, size, alu64, res)
    assert contains(sext(abstract(xs), size), _sext(xs[0], size * 8))


def test_byte_swap_and_sign_extension_keep_bounds_as_the_kernel() -> None:
    # be16 of (x & 0x300) is in [0, 3]; (s8) of [0, 15] stays [0, 15] (Linux 6.18)
    masked = alu(AluOp.AND, Scalar.unknown(), Scalar.const(0x300), 64)
    assert bswap(masked, 16, True, False).umax == 3
    small = alu(AluOp.AND, Scalar.unknown(), Scalar.const(15), 64)
    assert (movsx(small, 8, True).smin, movsx(small, 8, True).umax) == (0, 15)
    assert bswap(small, 16, False, False).umax == 15  # le16 truncates, bounds kept
