"""The machine code of each BPF operation on VXME-32: an emitter, and the sequences for
64-bit arithmetic on register pairs, shifts, multiplication, division by constants, byte
order and compares (vxdp.bpf.nic.translate decides what maps; this says how).

Sequences use the temporaries t0..t4 and leave the flags as their last instruction set
them; a branch the translator places reads the flags of the subtraction or the `or` just
before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vxdp.bpf.isa import AluOp, Cls, Insn, JmpOp, Src

from .machine import M32, Cond, Op, Word, hi, lo, temp

T0, T1, T2, T3, T4 = (temp(n) for n in range(5))
_LOGIC = {AluOp.AND: Op.AND, AluOp.OR: Op.OR, AluOp.XOR: Op.XOR}
_CARRY = {AluOp.ADD: (Op.ADD, Op.ADDC), AluOp.SUB: (Op.SUB, Op.SUBC)}
_SHIFT = {AluOp.LSH: Op.SHL, AluOp.RSH: Op.SHR, AluOp.ARSH: Op.ASR}
#: Ordered compares: (operands swapped, branch condition) of the subtraction a - b.
_ORDER = {JmpOp.JGT: (True, Cond.LO), JmpOp.JGE: (False, Cond.HS),
          JmpOp.JLT: (False, Cond.LO), JmpOp.JLE: (True, Cond.HS),
          JmpOp.JSGT: (True, Cond.LT), JmpOp.JSGE: (False, Cond.GE),
          JmpOp.JSLT: (False, Cond.LT), JmpOp.JSLE: (True, Cond.GE)}


@dataclass
class Label:
    """A place inside one instruction's sequence (the BPF pcs are the translator's)."""

    at: int | None = None


@dataclass
class Emitter:
    """Words in order, and the branches whose targets are placed later."""

    words: list[Word] = field(default_factory=list)
    fixups: list[tuple[int, int | Label]] = field(default_factory=list)

    def __call__(self, op: Op, d: int = 0, a: int = 0, b: int = 0, *, imm: int | None = None,
                 x: int = 0) -> None:
        self.words.append(Word(op, d, a, b, imm is not None and op not in _NOT_B, x,
                               0 if imm is None else imm & M32))

    def movi(self, d: int, value: int) -> None:
        self(Op.MOV, d, imm=value)

    def br(self, cond: Cond, target: int | Label) -> None:
        self.fixups.append((len(self.words), target))
        self.words.append(Word(Op.BR, x=int(cond)))

    def place(self, label: Label) -> None:
        label.at = len(self.words)


_NOT_B = frozenset({Op.LD, Op.ST, Op.ATADD, Op.RDPV, Op.LDMAP, Op.CALL, Op.BR})


def sext_hi(imm: int) -> int:
    """The high word of a 32-bit immediate sign-extended to 64 bits."""
    return M32 if imm < 0 else 0


class Codegen:
    """The emitter and the arithmetic and compare sequences of one image."""

    def __init__(self) -> None:
        self.e = Emitter()

    def alu64(self, insn: Insn) -> None:
        e, op, d = self.e, insn.op, insn.dst
        x, imm = insn.source == Src.X, insn.imm
        bl, bh = (lo(insn.src), hi(insn.src)) if x else (None, None)

        def pair(op_lo: Op, op_hi: Op) -> None:
            if x:
                e(op_lo, lo(d), lo(d), bl or 0)
                e(op_hi, hi(d), hi(d), bh or 0)
            else:
                e(op_lo, lo(d), lo(d), imm=imm)
                e(op_hi, hi(d), hi(d), imm=sext_hi(imm))

        if op == AluOp.MOV:
            if x and insn.src != d:
                e(Op.MOV, lo(d), b=lo(insn.src))
                e(Op.MOV, hi(d), b=hi(insn.src))
            elif not x:
                e.movi(lo(d), imm)
                e.movi(hi(d), sext_hi(imm))
        elif op in _CARRY:
            pair(*_CARRY[AluOp(op)])
        elif op in _LOGIC:
            pair(_LOGIC[AluOp(op)], _LOGIC[AluOp(op)])
        elif op == AluOp.NEG:
            e.movi(T0, 0)
            e(Op.SUB, lo(d), T0, lo(d))
            e(Op.SUBC, hi(d), T0, hi(d))
        elif op == AluOp.MUL:
            if not x:
                e.movi(T2, imm)
                e.movi(T3, sext_hi(imm))
                bl, bh = T2, T3
            assert bl is not None and bh is not None
            e(Op.MUL, T0, lo(d), bh)  # the cross products land in the high word
            e(Op.MUL, T1, hi(d), bl)
            e(Op.ADD, T0, T0, T1)
            e(Op.MULHU, T1, lo(d), bl)
            e(Op.ADD, hi(d), T0, T1)
            e(Op.MUL, lo(d), lo(d), bl)
        elif op in _SHIFT:
            if x:
                self.shift64_var(AluOp(op), d, lo(insn.src))
            else:
                self.shift64_const(AluOp(op), d, imm & 63)
        else:  # END in the ALU class (to_le / to_be) is translated in alu32
            raise AssertionError(f"alu64 op {op:#x}")

    def shift64_const(self, op: AluOp, d: int, n: int) -> None:
        e, L, H = self.e, lo(d), hi(d)
        if n == 0:
            return
        if op == AluOp.LSH:
            if n < 32:
                e(Op.SHR, T0, L, imm=32 - n)
                e(Op.SHL, H, H, imm=n)
                e(Op.OR, H, H, T0)
                e(Op.SHL, L, L, imm=n)
            else:
                e(Op.SHL, H, L, imm=n - 32)
                e.movi(L, 0)
        elif n < 32:  # RSH, ARSH
            e(Op.SHL, T0, H, imm=32 - n)
            e(Op.SHR, L, L, imm=n)
            e(Op.OR, L, L, T0)
            e(Op.ASR if op == AluOp.ARSH else Op.SHR, H, H, imm=n)
        elif op == AluOp.ARSH:
            e(Op.ASR, L, H, imm=n - 32)
            e(Op.ASR, H, H, imm=31)
        else:
            e(Op.SHR, L, H, imm=n - 32)
            e.movi(H, 0)

    def shift64_var(self, op: AluOp, d: int, amount: int) -> None:
        """A 64-bit shift by a register (masked to 63): the two halves of the amount's
        range as two paths; the small path shifts the crossing bits in two steps so a
        shift by 0 needs no branch of its own."""
        e, L, H = self.e, lo(d), hi(d)
        big, done = Label(), Label()
        e(Op.AND, T0, amount, imm=63)  # n
        e(Op.SUB, T1, T0, imm=32)  # n - 32; C: n >= 32
        e.br(Cond.HS, big)
        e.movi(T2, 31)
        e(Op.SUB, T2, T2, T0)  # 31 - n
        if op == AluOp.LSH:
            e(Op.SHR, T3, L, imm=1)
            e(Op.SHR, T3, T3, T2)  # the bits crossing into the high word
            e(Op.SHL, H, H, T0)
            e(Op.OR, H, H, T3)
            e(Op.SHL, L, L, T0)
        else:
            e(Op.SHL, T3, H, imm=1)
            e(Op.SHL, T3, T3, T2)  # the bits crossing into the low word
            e(Op.SHR, L, L, T0)
            e(Op.OR, L, L, T3)
            e(Op.ASR if op == AluOp.ARSH else Op.SHR, H, H, T0)
        e.br(Cond.AL, done)
        e.place(big)
        if op == AluOp.LSH:
            e(Op.SHL, H, L, T1)
            e.movi(L, 0)
        elif op == AluOp.ARSH:
            e(Op.ASR, L, H, T1)
            e(Op.ASR, H, H, imm=31)
        else:
            e(Op.SHR, L, H, T1)
            e.movi(H, 0)
        e.place(done)

    def alu32(self, insn: Insn) -> None:
        e, op, d = self.e, insn.op, insn.dst
        x, imm = insn.source == Src.X, insn.imm
        L = lo(d)

        def binary(machine_op: Op, value: int | None = None) -> None:
            if x:
                e(machine_op, L, L, lo(insn.src))
            else:
                e(machine_op, L, L, imm=imm if value is None else value)

        if op == AluOp.MOV:
            if x:
                e(Op.MOV, L, b=lo(insn.src))
            else:
                e.movi(L, imm)
        elif op in _CARRY:
            binary(_CARRY[AluOp(op)][0])
        elif op in _LOGIC:
            binary(_LOGIC[AluOp(op)])
        elif op == AluOp.MUL:
            binary(Op.MUL)
        elif op in _SHIFT:
            binary(_SHIFT[AluOp(op)], imm & 31)
        elif op == AluOp.NEG:
            e.movi(T0, 0)
            e(Op.SUB, L, T0, L)
        elif op == AluOp.DIV:
            self.div32_const(L, imm & M32)
        elif op == AluOp.END:
            self.endian(insn)
            return
        e.movi(hi(d), 0)

    def div32_const(self, L: int, d: int) -> None:
        """x / d for a constant d: by 0 gives 0 (BPF's rule); a power of two shifts; any
        other d multiplies by its reciprocal: with l = ceil(log2 d) and
        m = floor(2^32 * (2^l - d) / d) + 1, t = mulhi(x, m), x / d =
        (t + ((x - t) >> 1)) >> (l - 1) for every 32-bit x (Granlund and Montgomery,
        "Division by invariant integers using multiplication", 1994)."""
        e = self.e
        if d == 0:
            e.movi(L, 0)
        elif d & (d - 1) == 0:
            if d > 1:
                e(Op.SHR, L, L, imm=d.bit_length() - 1)
        else:
            shift = (d - 1).bit_length()
            m = (1 << 32) * ((1 << shift) - d) // d + 1
            e(Op.MULHU, T0, L, imm=m)
            e(Op.SUB, T1, L, T0)
            e(Op.SHR, T1, T1, imm=1)
            e(Op.ADD, T1, T1, T0)
            e(Op.SHR, L, T1, imm=shift - 1)

    def endian(self, insn: Insn) -> None:
        e, L, H = self.e, lo(insn.dst), hi(insn.dst)
        bits, to_be = insn.imm, insn.source == Src.X
        if bits == 64:
            if to_be:
                e(Op.BSWAP, T0, L, x=4)
                e(Op.BSWAP, L, H, x=4)
                e(Op.MOV, H, b=T0)
            return
        if to_be:
            e(Op.BSWAP, L, L, x=bits // 8)
        elif bits == 16:
            e(Op.AND, L, L, imm=0xFFFF)
        e.movi(H, 0)

    def branch(self, insn: Insn, target: int) -> None:
        """A conditional jump to BPF pc `target`: 64-bit compares as a subtraction over
        the pair (operands swapped for > and <=), equality as the or of the halves'
        differences, JMP32 on the low words."""
        e, op, a = self.e, JmpOp(insn.op), insn.dst
        wide, x = insn.cls == Cls.JMP, insn.source == Src.X
        if wide:
            k_lo, k_hi = insn.imm & M32, sext_hi(insn.imm)
        else:
            k_lo, k_hi = insn.imm & M32, 0
        if op in (JmpOp.JEQ, JmpOp.JNE, JmpOp.JSET):
            f = Op.AND if op == JmpOp.JSET else Op.XOR
            cond = Cond.EQ if op == JmpOp.JEQ else Cond.NE
            if f is Op.XOR and not x and not k_lo and not k_hi:  # a test for zero
                if wide:
                    e(Op.OR, T0, lo(a), hi(a))
                else:
                    e(Op.OR, T0, lo(a), imm=0)
                e.br(cond, target)
                return
            if x:
                e(f, T0, lo(a), lo(insn.src))
            else:
                e(f, T0, lo(a), imm=k_lo)
            if wide:
                if x:
                    e(f, T1, hi(a), hi(insn.src))
                else:
                    e(f, T1, hi(a), imm=k_hi)
                e(Op.OR, T0, T0, T1)
            e.br(cond, target)
            return
        swapped, cond = _ORDER[op]
        if x:
            pairs: list[tuple[int, int | None]] = [(lo(a), lo(insn.src)), (hi(a), hi(insn.src))]
        elif swapped:  # b - a with b the immediate: into registers first
            e.movi(T2, k_lo)
            if wide:
                e.movi(T3, k_hi)
            pairs = [(lo(a), T2), (hi(a), T3)]
        else:
            pairs = [(lo(a), None), (hi(a), None)]  # None: the immediate
        for n, (ra, rb) in enumerate(pairs[:2 if wide else 1]):
            machine_op, dreg = (Op.SUB, T0) if n == 0 else (Op.SUBC, T1)
            if rb is None:
                e(machine_op, dreg, ra, imm=(k_lo, k_hi)[n])
            elif swapped:
                e(machine_op, dreg, rb, ra)
            else:
                e(machine_op, dreg, ra, rb)
        e.br(cond, target)


__all__ = ["T0", "T1", "T2", "T3", "T4", "Codegen", "Emitter", "Label", "sext_hi"]
