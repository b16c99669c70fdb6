"""Tristate numbers: the kernel's bit-level abstraction of a 64-bit value.

A `Tnum(value, mask)` stands for every u64 `x` with `x & ~mask == value`: a bit set in
`mask` is unknown, otherwise it equals the bit of `value`.  The invariant
`value & mask == 0` always holds.  The operations are sound over-approximations of the
concrete operation applied to every pair of members (checked against brute force in
tests/vxdp/verifier/test_tnum.py), and follow the definitions of kernel/bpf/tnum.c so that
our register states print and compare the way the kernel's do.
"""

from __future__ import annotations

from typing import Final

U64: Final = (1 << 64) - 1
U32: Final = (1 << 32) - 1


class Tnum:
    """Immutable.  A plain class rather than a frozen dataclass: one is made for most
    instructions, and its own __init__ is the fastest to run, interpreted or compiled
    (mypyc builds a dataclass's generated __init__ as a Python call)."""

    __slots__ = ("mask", "value")

    def __init__(self, value: int, mask: int) -> None:
        self.value: Final = value
        self.mask: Final = mask

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tnum):
            return NotImplemented
        return self.value == other.value and self.mask == other.mask

    def __hash__(self) -> int:
        return hash((self.value, self.mask))

    def __repr__(self) -> str:
        return f"Tnum(value={self.value}, mask={self.mask})"

    # -- constructors -------------------------------------------------------------------

    @staticmethod
    def const(v: int) -> Tnum:
        return Tnum(v & U64, 0)

    @staticmethod
    def unknown() -> Tnum:
        return _UNKNOWN

    @staticmethod
    def range(lo: int, hi: int) -> Tnum:
        """The smallest tnum holding every u64 in [lo, hi] (as tnum_range)."""
        chi = lo ^ hi
        bits = chi.bit_length()
        if bits > 63:
            return _UNKNOWN
        delta = (1 << bits) - 1
        return Tnum(lo & ~delta & U64, delta)

    # -- queries ------------------------------------------------------------------------

    @property
    def is_const(self) -> bool:
        return self.mask == 0

    @property
    def is_unknown(self) -> bool:
        return self.mask == U64

    @property
    def umin(self) -> int:
        return self.value

    @property
    def umax(self) -> int:
        return self.value | self.mask

    def contains(self, x: int) -> bool:
        return (x & U64) & ~self.mask == self.value

    def includes(self, other: Tnum) -> bool:
        """True when every member of `other` is a member of self (tnum_in)."""
        if other.mask & ~self.mask:
            return False
        return other.value & ~self.mask == self.value

    def is_aligned(self, size: int) -> bool:
        if size == 0:
            return True
        return not ((self.value | self.mask) & (size - 1))

    # -- arithmetic ---------------------------------------------------------------------

    def add(self, b: Tnum) -> Tnum:
        sm = (self.mask + b.mask) & U64
        sv = (self.value + b.value) & U64
        sigma = (sm + sv) & U64
        chi = sigma ^ sv
        mu = chi | self.mask | b.mask
        return Tnum(sv & ~mu & U64, mu)

    def sub(self, b: Tnum) -> Tnum:
        dv = (self.value - b.value) & U64
        alpha = (dv + self.mask) & U64
        beta = (dv - b.mask) & U64
        chi = alpha ^ beta
        mu = chi | self.mask | b.mask
        return Tnum(dv & ~mu & U64, mu)

    def neg(self) -> Tnum:
        return Tnum.const(0).sub(self)

    def and_(self, b: Tnum) -> Tnum:
        alpha = self.value | self.mask
        beta = b.value | b.mask
        v = self.value & b.value
        return Tnum(v, alpha & beta & ~v & U64)

    def or_(self, b: Tnum) -> Tnum:
        v = self.value | b.value
        mu = self.mask | b.mask
        return Tnum(v, mu & ~v & U64)

    def xor(self, b: Tnum) -> Tnum:
        v = self.value ^ b.value
        mu = self.mask | b.mask
        return Tnum(v & ~mu & U64, mu)

    def mul(self, b: Tnum) -> Tnum:
        """Long multiplication, one bit of self at a time: certain 1 bits add b's unknown
        bits, unknown bits add everything b might be; the known product is exact."""
        a = self
        acc_v = (self.value * b.value) & U64
        acc_m = Tnum(0, 0)
        while a.value or a.mask:
            if a.value & 1:
                acc_m = acc_m.add(Tnum(0, b.mask))
            elif a.mask & 1:
                acc_m = acc_m.add(Tnum(0, (b.value | b.mask) & U64))
            a = a.rshift(1)
            b = b.lshift(1)
        return Tnum(acc_v, 0).add(acc_m)

    def lshift(self, s: int) -> Tnum:
        return Tnum((self.value << s) & U64, (self.mask << s) & U64)

    def rshift(self, s: int) -> Tnum:
        return Tnum(self.value >> s, self.mask >> s)

    def arshift(self, s: int, bits: int = 64) -> Tnum:
        """Arithmetic shift right of the low `bits` bits (32 or 64), result zero-extended."""
        width = (1 << bits) - 1
        return Tnum(_sar(self.value, s, bits) & width, _sar(self.mask, s, bits) & width)

    def intersect(self, b: Tnum) -> Tnum:
        v = self.value | b.value
        mu = self.mask & b.mask
        return Tnum(v & ~mu & U64, mu)

    def union(self, b: Tnum) -> Tnum:
        """The smallest tnum holding the members of both (used when joining states)."""
        mu = self.mask | b.mask | (self.value ^ b.value)
        return Tnum(self.value & ~mu & U64, mu)

    def cast(self, size: int) -> Tnum:
        """Truncate to `size` bytes (tnum_cast)."""
        w = (1 << (size * 8)) - 1
        return Tnum(self.value & w, self.mask & w)

    # -- 32-bit halves ------------------------------------------------------------------

    def subreg(self) -> Tnum:
        return self.cast(4)

    def clear_subreg(self) -> Tnum:
        return self.rshift(32).lshift(32)

    def with_subreg(self, sub: Tnum) -> Tnum:
        return self.clear_subreg().or_(sub.cast(4))

    def const_subreg(self, v: int) -> Tnum:
        return self.with_subreg(Tnum.const(v & U32))

    # -- printing -----------------------------------------------------------------------

    def __str__(self) -> str:
        """As the kernel's tnum_strn: `(0x0; 0xff)`."""
        return f"({self.value:#x}; {self.mask:#x})"


_UNKNOWN: Final = Tnum(0, U64)


def _sar(x: int, s: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    x &= (1 << bits) - 1
    if x & sign:
        x -= 1 << bits
    return x >> s
