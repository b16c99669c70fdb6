"""Scalar values: a tnum plus signed and unsigned bounds, in 64 and 32 bits.

`Scalar` is the kernel's model of an integer register (`struct bpf_reg_state`'s
var_off, smin/smax, umin/umax, s32_min/s32_max, u32_min/u32_max).  Every field is a sound
fact on its own; `sync()` makes them agree (the kernel's reg_bounds_sync: bounds from the
tnum, signed from unsigned and back, the 32-bit half from the 64-bit range and back, then
the tnum from the bounds).

ALU operations live in `alu()`, comparison refinement in `refine()`.  Both work on the two
halves with one width-generic routine, as the kernel does for its 32- and 64-bit cases.
"""

from __future__ import annotations

import functools
from typing import Final

from vxdp.bpf.verifier.tnum import U32, U64, Tnum

S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1


def to_s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def to_s32(x: int) -> int:
    x &= U32
    return x - (1 << 32) if x >> 31 else x


def _signed(x: int, bits: int) -> int:
    return to_s64(x) if bits == 64 else to_s32(x)


class Half:
    """The bounds of one width (32 or 64 bits) of a scalar.  Immutable."""

    __slots__ = ("bits", "smax", "smin", "umax", "umin")

    def __init__(self, umin: int, umax: int, smin: int, smax: int, bits: int) -> None:
        self.umin: Final = umin
        self.umax: Final = umax
        self.smin: Final = smin
        self.smax: Final = smax
        self.bits: Final = bits

    def _key(self) -> tuple[int, int, int, int, int]:
        return self.umin, self.umax, self.smin, self.smax, self.bits

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Half):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Half(umin={self.umin}, umax={self.umax}, smin={self.smin}, "
                f"smax={self.smax}, bits={self.bits})")

    @staticmethod
    def full(bits: int) -> Half:
        return Half(0, (1 << bits) - 1, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, bits)

    @property
    def umax_all(self) -> int:
        return (1 << self.bits) - 1

    @property
    def smin_all(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def smax_all(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def with_u(self, lo: int, hi: int) -> Half:
        return Half(lo, hi, self.smin, self.smax, self.bits)

    def with_s(self, lo: int, hi: int) -> Half:
        return Half(self.umin, self.umax, lo, hi, self.bits)

    def u_full(self) -> Half:
        return self.with_u(0, self.umax_all)

    def s_full(self) -> Half:
        return self.with_s(self.smin_all, self.smax_all)


class Scalar:
    """A scalar's value: its known bits and its bounds, 64- and 32-bit, unsigned and
    signed (the kernel's bpf_reg_state fields).  Immutable (the hash, cached, aside).  A
    plain class rather than a frozen dataclass: see Tnum."""

    __slots__ = (
        "_hash",
        "s32_max",
        "s32_min",
        "smax",
        "smin",
        "u32_max",
        "u32_min",
        "umax",
        "umin",
        "var_off",
    )

    def __init__(self, var_off: Tnum, umin: int = 0, umax: int = U64, smin: int = S64_MIN,
                 smax: int = S64_MAX, u32_min: int = 0, u32_max: int = U32,
                 s32_min: int = S32_MIN, s32_max: int = S32_MAX) -> None:
        self.var_off: Final = var_off
        self.umin: Final = umin
        self.umax: Final = umax
        self.smin: Final = smin
        self.smax: Final = smax
        self.u32_min: Final = u32_min
        self.u32_max: Final = u32_max
        self.s32_min: Final = s32_min
        self.s32_max: Final = s32_max
        self._hash = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        return (self.umin == other.umin and self.umax == other.umax
                and self.smin == other.smin and self.smax == other.smax
                and self.u32_min == other.u32_min and self.u32_max == other.u32_max
                and self.s32_min == other.s32_min and self.s32_max == other.s32_max
                and self.var_off == other.var_off)

    def __hash__(self) -> int:
        # states are hashed whole (exact-state keys, memoised ALU): compute once
        h = self._hash
        if not h:
            h = hash((self.var_off.value, self.var_off.mask, self.umin, self.umax, self.smin,
                      self.smax, self.u32_min, self.u32_max, self.s32_min, self.s32_max)) or 1
            self._hash = h
        return h

    def __repr__(self) -> str:
        return (f"Scalar(var_off={self.var_off!r}, umin={self.umin}, umax={self.umax}, "
                f"smin={self.smin}, smax={self.smax}, u32_min={self.u32_min}, "
                f"u32_max={self.u32_max}, s32_min={self.s32_min}, s32_max={self.s32_max})")

    # -- constructors -------------------------------------------------------------------

    @staticmethod
    def unknown() -> Scalar:
        return _UNKNOWN

    @staticmethod
    @functools.lru_cache(maxsize=1 << 12)
    def const(v: int) -> Scalar:
        v &= U64
        lo = v & U32
        return Scalar(Tnum.const(v), v, v, to_s64(v), to_s64(v), lo, lo, to_s32(lo), to_s32(lo))

    @staticmethod
    def from_halves(var_off: Tnum, h64: Half, h32: Half) -> Scalar | None:
        return Scalar(var_off, h64.umin, h64.umax, h64.smin, h64.smax,
                      h32.umin, h32.umax, h32.smin, h32.smax).sync()

    @staticmethod
    @functools.cache
    def unsigned(size: int) -> Scalar:
        """An unknown value zero-extended from `size` bytes (a narrow load)."""
        if size >= 8:
            return _UNKNOWN
        s = Scalar(Tnum(0, (1 << (size * 8)) - 1), 0, (1 << (size * 8)) - 1).sync()
        assert s is not None
        return s

    @staticmethod
    @functools.cache
    def signed(size: int) -> Scalar:
        """An unknown value sign-extended from `size` bytes (a BPF_MEMSX load)."""
        if size >= 8:
            return _UNKNOWN
        bits = size * 8
        s = Scalar(Tnum.unknown(), smin=-(1 << (bits - 1)), smax=(1 << (bits - 1)) - 1).sync()
        assert s is not None
        return s

    # -- queries ------------------------------------------------------------------------

    @property
    def is_const(self) -> bool:
        return self.var_off.mask == 0  # var_off.is_const, without its call

    @property
    def value(self) -> int:
        """The u64 value of a constant."""
        return self.var_off.value

    @property
    def is_const32(self) -> bool:
        return self.var_off.subreg().is_const

    def half(self, bits: int) -> Half:
        if bits == 64:
            return Half(self.umin, self.umax, self.smin, self.smax, 64)
        return Half(self.u32_min, self.u32_max, self.s32_min, self.s32_max, 32)

    def tnum(self, bits: int) -> Tnum:
        return self.var_off if bits == 64 else self.var_off.subreg()

    def includes(self, other: Scalar) -> bool:
        """Every value `other` may hold, self may hold too (pruning's range_within)."""
        return (self.umin <= other.umin and other.umax <= self.umax
                and self.smin <= other.smin and other.smax <= self.smax
                and self.u32_min <= other.u32_min and other.u32_max <= self.u32_max
                and self.s32_min <= other.s32_min and other.s32_max <= self.s32_max
                and self.var_off.includes(other.var_off))

    @functools.lru_cache(maxsize=1 << 14)  # noqa: B019 - frozen values, a bounded cache
    def zext32(self) -> Scalar:
        """The 32-bit half zero-extended to 64 bits (the result of any ALU32 operation)."""
        s = Scalar(self.var_off.subreg(), self.u32_min, self.u32_max, self.u32_min,
                   self.u32_max, self.u32_min, self.u32_max, self.s32_min, self.s32_max).sync()
        assert s is not None
        return s

    @functools.lru_cache(maxsize=1 << 14)  # noqa: B019 - frozen values, a bounded cache
    def cast(self, size: int) -> Scalar:
        """Truncate to `size` bytes, zero-extended (coerce_reg_to_size)."""
        if size >= 8:
            return self
        if size == 4:
            return self.zext32()
        width = (1 << (size * 8)) - 1
        t = self.var_off.cast(size)
        if self.umax <= width:
            lo, hi = self.umin, self.umax
        else:
            lo, hi = 0, width
        s = Scalar(t, lo, hi).sync()
        assert s is not None
        return s

    # -- normalisation ------------------------------------------------------------------

    def sync(self) -> Scalar | None:
        """Make every field agree; None when they contradict (no value is possible)."""
        return _sync(self)

    # -- printing -----------------------------------------------------------------------

    def __str__(self) -> str:
        """As the kernel prints a scalar's state: `scalar(umax=255,var_off=(0x0; 0xff))`."""
        if self.is_const:
            return _num(to_s64(self.value))
        return f"scalar({self.fields()})"

    def fields(self) -> str:
        return _fields(self)


@functools.lru_cache(maxsize=1 << 16)
def _sync(self: Scalar) -> Scalar | None:
    s = self
    t = s.var_off
    if not t.mask:  # a constant: in bounds or impossible
        c = Scalar.const(t.value)
        ok = (s.umin <= c.umin <= s.umax and s.smin <= c.smin <= s.smax
              and s.u32_min <= c.u32_min <= s.u32_max and s.s32_min <= c.s32_min <= s.s32_max)
        return c if ok else None
    for _ in range(2):
        deduced = _deduce(_from_tnum(s))
        if deduced is None:
            return None
        s = deduced
        t2 = _intersect(s.var_off, Tnum.range(s.umin, s.umax))
        if t2 is None:
            return None
        t = t2
        sub = _intersect(t.subreg(), Tnum.range(s.u32_min, s.u32_max))
        if sub is None:
            return None
        s = Scalar(t.with_subreg(sub), s.umin, s.umax, s.smin, s.smax, s.u32_min,
                   s.u32_max, s.s32_min, s.s32_max)
    s = _from_tnum(s)
    if (s.umin > s.umax or s.smin > s.smax or s.u32_min > s.u32_max
            or s.s32_min > s.s32_max):
        return None
    return s


def _num(v: int) -> str:
    """Decimal for small numbers, hex otherwise (as the kernel's log)."""
    if -1024 <= v <= 1024:
        return str(v)
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def _fields(self: Scalar) -> str:
    """`smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff)`: bounds that say something,
    equal ones chained, as the kernel prints them."""
    fields = [("smin", self.smin, S64_MIN), ("smax", self.smax, S64_MAX),
              ("umin", self.umin, 0), ("umax", self.umax, U64),
              ("smin32", self.s32_min, S32_MIN), ("smax32", self.s32_max, S32_MAX),
              ("umin32", self.u32_min, 0), ("umax32", self.u32_max, U32)]
    parts: list[str] = []
    done: set[str] = set()
    for i, (name, value, default) in enumerate(fields):
        if name in done or value == default:
            continue
        chain = [name]
        for other, ovalue, odefault in fields[i + 1:]:
            if other not in done and ovalue == value and ovalue != odefault:
                chain.append(other)
                done.add(other)
        parts.append("=".join(chain) + "=" + _num(value))
    if not self.var_off.is_unknown:
        parts.append(f"var_off={self.var_off}")
    return ",".join(parts)


_UNKNOWN: Final = Scalar(Tnum.unknown())


def _intersect(a: Tnum, b: Tnum) -> Tnum | None:
    if (a.value ^ b.value) & ~a.mask & ~b.mask & U64:
        return None
    return a.intersect(b)


def _from_tnum(s: Scalar) -> Scalar:
    """Tighten the bounds with what the tnum says (__update_reg_bounds)."""
    t = s.var_off
    v32, m32 = t.value & U32, t.mask & U32
    return Scalar(
        t,
        max(s.umin, t.value), min(s.umax, t.value | t.mask),
        max(s.smin, to_s64(t.value | (t.mask & (1 << 63)))),
        min(s.smax, to_s64(t.value | (t.mask & ~(1 << 63) & U64))),
        max(s.u32_min, v32), min(s.u32_max, v32 | m32),
        max(s.s32_min, to_s32(v32 | (m32 & (1 << 31)))),
        min(s.s32_max, to_s32(v32 | (m32 & ~(1 << 31) & U32))))


def _deduce_half(umin: int, umax: int, smin: int, smax: int, bits: int
                 ) -> tuple[int, int, int, int]:
    """Signed from unsigned and back, when the range does not cross the sign boundary."""
    sign = 1 << (bits - 1)
    mod = 1 << bits
    su_min = umin - mod if umin & sign else umin
    su_max = umax - mod if umax & sign else umax
    if su_min <= su_max:
        smin, smax = max(smin, su_min), min(smax, su_max)
    if smin >= 0 or smax < 0:
        umin, umax = max(umin, smin % mod), min(umax, smax % mod)
    return umin, umax, smin, smax


def _deduce(s: Scalar) -> Scalar | None:
    umin, umax, smin, smax = _deduce_half(s.umin, s.umax, s.smin, s.smax, 64)
    u32min, u32max, s32min, s32max = _deduce_half(s.u32_min, s.u32_max, s.s32_min,
                                                  s.s32_max, 32)
    # 64 -> 32: a range inside one 2**32-aligned block fixes the low half's range.
    for lo64, hi64 in ((umin, umax), (smin, smax)):
        if lo64 >> 32 == hi64 >> 32:
            lo, hi = lo64 & U32, hi64 & U32
            u32min, u32max = max(u32min, lo), min(u32max, hi)
            slo, shi = to_s32(lo), to_s32(hi)
            if slo <= shi:
                s32min, s32max = max(s32min, slo), min(s32max, shi)
    if S32_MIN <= smin and smax <= S32_MAX:  # a value that fits s32 is its own low half
        s32min, s32max = max(s32min, smin), min(s32max, smax)
    u32min, u32max, s32min, s32max = _deduce_half(u32min, u32max, s32min, s32max, 32)
    # 32 -> 64: when the upper half is known, the low half's range is the whole story.
    t = s.var_off
    if not (t.mask >> 32):
        hi_bits = t.value & ~U32 & U64
        umin, umax = max(umin, hi_bits | u32min), min(umax, hi_bits | u32max)
        umin, umax, smin, smax = _deduce_half(umin, umax, smin, smax, 64)
    if umin > umax or u32min > u32max or smin > smax or s32min > s32max:
        return None
    return Scalar(s.var_off, umin, umax, smin, smax, u32min, u32max, s32min, s32max)
