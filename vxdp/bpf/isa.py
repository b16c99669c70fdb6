"""The BPF instruction set (RFC 9669, cpu v4): vocabulary, decode/encode, structural checks.

An instruction is 8 bytes, little-endian: opcode, a byte holding dst_reg (low nibble) and
src_reg (high nibble), a signed 16-bit offset and a signed 32-bit immediate.  `Insn` is one
such slot; LD_IMM64 takes two slots exactly as in the kernel (the second holds only the
upper half of the immediate, see `imm64`).

`check_program` is the structural check every loader, engine and the verifier rely on: it
rejects what the kernel rejects before any data-flow analysis (unknown opcodes, reserved
fields not zero, bad registers, writes to r10, jumps out of range or into an LD_IMM64,
calls to nowhere, a last instruction that falls through).  After it passes, no path can run
past the end of the program.  Messages use the kernel's wording and end with `at pc N`.

Policy left to the verifier, because RFC 9669 defines the behaviour: division by a zero
immediate, shifts by more than the operand width, and whether a program type may use
callx or the legacy packet loads.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from itertools import pairwise
from typing import Final, TypeVar, cast

from vxdp.errors import InvalidProgram

E = TypeVar("E", bound=Enum)

INSN_SIZE = 8
MAX_REG = 10  # r0..r10; r10 is the read-only frame pointer
REG_FP = 10

# -- opcode fields (RFC 9669 §3) -----------------------------------------------------------


# The opcode fields and immediates by the kernel's names (include/uapi/linux/bpf.h,
# bpf_common.h): the enums below are made of them.  Plain `Final` ints because the
# verifier compares them on every instruction, and a compiled (mypyc) build inlines
# them as C constants where an enum member is an attribute lookup and a rich compare.

BPF_LD: Final = 0x00
BPF_LDX: Final = 0x01
BPF_ST: Final = 0x02
BPF_STX: Final = 0x03
BPF_ALU: Final = 0x04
BPF_JMP: Final = 0x05
BPF_JMP32: Final = 0x06
BPF_ALU64: Final = 0x07

BPF_W: Final = 0x00
BPF_H: Final = 0x08
BPF_B: Final = 0x10
BPF_DW: Final = 0x18

BPF_IMM: Final = 0x00
BPF_ABS: Final = 0x20
BPF_IND: Final = 0x40
BPF_MEM: Final = 0x60
BPF_MEMSX: Final = 0x80
BPF_ATOMIC: Final = 0xC0

BPF_K: Final = 0x00
BPF_X: Final = 0x08

BPF_ADD: Final = 0x00
BPF_SUB: Final = 0x10
BPF_MUL: Final = 0x20
BPF_DIV: Final = 0x30
BPF_OR: Final = 0x40
BPF_AND: Final = 0x50
BPF_LSH: Final = 0x60
BPF_RSH: Final = 0x70
BPF_NEG: Final = 0x80
BPF_MOD: Final = 0x90
BPF_XOR: Final = 0xA0
BPF_MOV: Final = 0xB0
BPF_ARSH: Final = 0xC0
BPF_END: Final = 0xD0

BPF_JA: Final = 0x00
BPF_JEQ: Final = 0x10
BPF_JGT: Final = 0x20
BPF_JGE: Final = 0x30
BPF_JSET: Final = 0x40
BPF_JNE: Final = 0x50
BPF_JSGT: Final = 0x60
BPF_JSGE: Final = 0x70
BPF_CALL: Final = 0x80
BPF_EXIT: Final = 0x90
BPF_JLT: Final = 0xA0
BPF_JLE: Final = 0xB0
BPF_JSLT: Final = 0xC0
BPF_JSLE: Final = 0xD0

BPF_FETCH: Final = 0x01
BPF_XCHG: Final = 0xE1
BPF_CMPXCHG: Final = 0xF1

BPF_PSEUDO_MAP_FD: Final = 0x01
BPF_PSEUDO_MAP_VALUE: Final = 0x02
BPF_PSEUDO_BTF_ID: Final = 0x03
BPF_PSEUDO_FUNC: Final = 0x04
BPF_PSEUDO_MAP_IDX: Final = 0x05
BPF_PSEUDO_MAP_IDX_VALUE: Final = 0x06

BPF_PSEUDO_CALL: Final = 0x01
BPF_PSEUDO_KFUNC_CALL: Final = 0x02


class Cls(IntEnum):
    """Instruction class, the low three bits of the opcode."""

    LD = BPF_LD
    LDX = BPF_LDX
    ST = BPF_ST
    STX = BPF_STX
    ALU = BPF_ALU
    JMP = BPF_JMP
    JMP32 = BPF_JMP32
    ALU64 = BPF_ALU64


class Size(IntEnum):
    W = BPF_W
    H = BPF_H
    B = BPF_B
    DW = BPF_DW


SIZE_BYTES = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}


class Mode(IntEnum):
    IMM = BPF_IMM
    ABS = BPF_ABS  # legacy packet access
    IND = BPF_IND  # legacy packet access
    MEM = BPF_MEM
    MEMSX = BPF_MEMSX  # sign-extending load (cpu v4)
    ATOMIC = BPF_ATOMIC


class Src(IntEnum):
    K = BPF_K  # use the immediate
    X = BPF_X  # use src_reg


class AluOp(IntEnum):
    ADD = BPF_ADD
    SUB = BPF_SUB
    MUL = BPF_MUL
    DIV = BPF_DIV  # off=1: SDIV
    OR = BPF_OR
    AND = BPF_AND
    LSH = BPF_LSH
    RSH = BPF_RSH
    NEG = BPF_NEG
    MOD = BPF_MOD  # off=1: SMOD
    XOR = BPF_XOR
    MOV = BPF_MOV  # off=8/16/32: MOVSX
    ARSH = BPF_ARSH
    END = BPF_END  # byte swap; ALU64 class: unconditional BSWAP


END_TO_LE = Src.K  # source bit of BPF_END
END_TO_BE = Src.X


class JmpOp(IntEnum):
    JA = BPF_JA
    JEQ = BPF_JEQ
    JGT = BPF_JGT
    JGE = BPF_JGE
    JSET = BPF_JSET
    JNE = BPF_JNE
    JSGT = BPF_JSGT
    JSGE = BPF_JSGE
    CALL = BPF_CALL
    EXIT = BPF_EXIT
    JLT = BPF_JLT
    JLE = BPF_JLE
    JSLT = BPF_JSLT
    JSLE = BPF_JSLE


CONDITIONAL_JMP_OPS = frozenset(JmpOp) - {JmpOp.JA, JmpOp.CALL, JmpOp.EXIT}


class AtomicOp(IntEnum):
    """The immediate of a BPF_ATOMIC instruction (RFC 9669 §5.3)."""

    ADD = BPF_ADD
    OR = BPF_OR
    AND = BPF_AND
    XOR = BPF_XOR
    FETCH = BPF_FETCH
    XCHG = BPF_XCHG
    CMPXCHG = BPF_CMPXCHG


ATOMIC_IMMS = frozenset({AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR,
                         AtomicOp.ADD | AtomicOp.FETCH, AtomicOp.OR | AtomicOp.FETCH,
                         AtomicOp.AND | AtomicOp.FETCH, AtomicOp.XOR | AtomicOp.FETCH,
                         AtomicOp.XCHG, AtomicOp.CMPXCHG})


class Pseudo(IntEnum):
    """src_reg values of LD_IMM64 (include/uapi/linux/bpf.h)."""

    NONE = 0
    MAP_FD = BPF_PSEUDO_MAP_FD
    MAP_VALUE = BPF_PSEUDO_MAP_VALUE
    BTF_ID = BPF_PSEUDO_BTF_ID
    FUNC = BPF_PSEUDO_FUNC
    MAP_IDX = BPF_PSEUDO_MAP_IDX
    MAP_IDX_VALUE = BPF_PSEUDO_MAP_IDX_VALUE


class CallSrc(IntEnum):
    """src_reg values of BPF_CALL (RFC 9669 §4.3.1)."""

    HELPER = 0  # helper by static id
    LOCAL = BPF_PSEUDO_CALL  # bpf-to-bpf call, imm is the pc-relative target
    KFUNC = BPF_PSEUDO_KFUNC_CALL  # helper by BTF id


def plain(enum: type[E]) -> type[E]:
    """The members of `enum` as the attributes of a plain class: `plain(AluOp).MOV is
    AluOp.MOV`, the same objects, read four times faster.  On Python 3.11 every
    `AluOp.MOV` goes through the hook of EnumType.__getattr__ (about 60 ns); the verifier
    reads such constants for every instruction of every path, so its modules rebind the
    enums they read that have no kernel names (`T = plain(T)`; the opcode fields are the
    `BPF_*` ints above).  A compiled build reads the members themselves and ignores the
    rebinding.  Only member access is offered: no iteration, lookup by value or
    isinstance."""
    return cast("type[E]", type(enum.__name__, (), dict(enum.__members__)))


_ALU_OPS = frozenset(int(v) for v in AluOp)
_JMP_OPS = frozenset(int(v) for v in JmpOp)
_CALL_SRCS = frozenset(int(v) for v in CallSrc)
_PSEUDOS = frozenset(int(v) for v in Pseudo)

# Named opcodes used throughout the package.
OP_LD_IMM64: Final = BPF_LD | BPF_IMM | BPF_DW  # 0x18
OP_JA: Final = BPF_JMP | BPF_JA  # 0x05
OP_GOTOL: Final = BPF_JMP32 | BPF_JA  # 0x06
OP_CALL: Final = BPF_JMP | BPF_CALL  # 0x85
OP_CALLX: Final = BPF_JMP | BPF_CALL | BPF_X  # 0x8d
OP_EXIT: Final = BPF_JMP | BPF_EXIT  # 0x95


# -- instructions --------------------------------------------------------------------------

_INSN = struct.Struct("<BBhi")


class Insn:
    """One 8-byte instruction slot.  `off` is signed 16-bit, `imm` signed 32-bit.

    The opcode's fields (`cls`, `size`, `mode`, `op`, `source`) are plain ints worked out
    once when the instruction is made: the verifier reads them for every instruction of
    every path, and an attribute is several times cheaper than a property.

    Immutable (every attribute is Final: mypy refuses an assignment) and compared by
    value, as the frozen dataclass it was, but a plain slotted class: a program's
    instructions are made every time it is decoded, and a frozen dataclass's ten
    object.__setattr__ calls made decoding a tenth of the time verifying a small program
    took."""

    __slots__ = ("cls", "dst", "imm", "mode", "off", "op", "opcode", "size", "source", "src")

    def __init__(self, opcode: int, dst: int = 0, src: int = 0, off: int = 0,
                 imm: int = 0) -> None:
        if not (0 <= opcode <= 0xFF and 0 <= dst <= 15 and 0 <= src <= 15
                and -0x8000 <= off <= 0x7FFF and -0x80000000 <= imm <= 0x7FFFFFFF):
            raise ValueError(f"instruction field out of range: "
                             f"{_insn_repr(opcode, dst, src, off, imm)}")
        self.opcode: Final = opcode
        self.dst: Final = dst
        self.src: Final = src
        self.off: Final = off
        self.imm: Final = imm
        self.cls: Final = opcode & 0x07
        self.size: Final = opcode & 0x18
        self.mode: Final = opcode & 0xE0
        self.op: Final = opcode & 0xF0
        self.source: Final = opcode & 0x08

    def _key(self) -> tuple[int, int, int, int, int]:
        return self.opcode, self.dst, self.src, self.off, self.imm

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Insn):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return _insn_repr(*self._key())

    def to_bytes(self) -> bytes:
        return _INSN.pack(self.opcode, self.dst | self.src << 4, self.off, self.imm)

    @classmethod
    def from_bytes(cls, data: bytes, at: int = 0) -> Insn:
        opcode, regs, off, imm = _INSN.unpack_from(data, at)
        return cls(opcode, regs & 0x0F, regs >> 4, off, imm)


def _insn_repr(opcode: int, dst: int, src: int, off: int, imm: int) -> str:
    return f"Insn(opcode={opcode}, dst={dst}, src={src}, off={off}, imm={imm})"


def s32(value: int) -> int:
    """Wrap an integer to a signed 32-bit value (the encoding of an immediate)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def s16(value: int) -> int:
    """Wrap an integer to a signed 16-bit value (the encoding of an offset)."""
    value &= 0xFFFF
    return value - (1 << 16) if value & 0x8000 else value


def ld_imm64(dst: int, value: int, src: int = Pseudo.NONE, hi_imm: int | None = None
             ) -> tuple[Insn, Insn]:
    """The two slots of `dst = value`; for pseudo forms `hi_imm` sets the second imm."""
    lo = s32(value)
    hi = s32(value >> 32) if hi_imm is None else s32(hi_imm)
    return Insn(OP_LD_IMM64, dst, src, 0, lo), Insn(0, 0, 0, 0, hi)


def imm64(insns: Sequence[Insn], pc: int) -> int:
    """The unsigned 64-bit immediate of the LD_IMM64 at `pc`."""
    if pc + 1 >= len(insns):
        raise InvalidProgram(f"invalid bpf_ld_imm64 insn at pc {pc}")
    return (insns[pc].imm & 0xFFFFFFFF) | (insns[pc + 1].imm & 0xFFFFFFFF) << 32


def decode(data: bytes) -> list[Insn]:
    """Split raw bytes into instruction slots."""
    if len(data) % INSN_SIZE:
        raise InvalidProgram(f"program of {len(data)} bytes is not a whole number of "
                             f"{INSN_SIZE}-byte instructions")
    # an instruction met again (a program repeats about a third of its slots) is the same
    # immutable Insn: made, and checked, once
    made: dict[tuple[int, int, int, int], Insn] = {}
    out: list[Insn] = []
    for fields in _INSN.iter_unpack(data):
        insn = made.get(fields)
        if insn is None:
            opcode, regs, off, imm = fields
            insn = made[fields] = Insn(opcode, regs & 0x0F, regs >> 4, off, imm)
        out.append(insn)
    return out


def encode(insns: Iterable[Insn]) -> bytes:
    return b"".join(i.to_bytes() for i in insns)


# -- classification (used by the verifier, engines and the disassemblers) -------------------


def is_ldimm64(insn: Insn) -> bool:
    return insn.opcode == OP_LD_IMM64


def is_helper_call(insn: Insn) -> bool:
    return insn.opcode == OP_CALL and insn.src == CallSrc.HELPER


def is_pseudo_call(insn: Insn) -> bool:
    """A bpf-to-bpf call (`call pc+N`)."""
    return insn.opcode == OP_CALL and insn.src == BPF_PSEUDO_CALL


def is_kfunc_call(insn: Insn) -> bool:
    return insn.opcode == OP_CALL and insn.src == BPF_PSEUDO_KFUNC_CALL


def is_callx(insn: Insn) -> bool:
    return insn.opcode == OP_CALLX


def is_exit(insn: Insn) -> bool:
    return insn.opcode == OP_EXIT


def is_pseudo_func(insn: Insn) -> bool:
    """LD_IMM64 of a subprogram's address (a callback for bpf_loop and friends)."""
    return insn.opcode == OP_LD_IMM64 and insn.src == BPF_PSEUDO_FUNC


def is_jump(insn: Insn) -> bool:
    """ja, gotol or a conditional jump (not call or exit)."""
    return insn.cls in (BPF_JMP, BPF_JMP32) and insn.op not in (BPF_CALL, BPF_EXIT)


def is_unconditional_jump(insn: Insn) -> bool:
    return insn.opcode in (OP_JA, OP_GOTOL)


def jump_target(insn: Insn, pc: int) -> int | None:
    """Where a jump, a local call or a pseudo-func LD_IMM64 at `pc` leads; else None."""
    if insn.opcode == OP_GOTOL:
        return pc + insn.imm + 1
    if is_jump(insn):
        return pc + insn.off + 1
    if is_pseudo_call(insn) or is_pseudo_func(insn):
        return pc + insn.imm + 1
    return None


def iter_insns(insns: Sequence[Insn]) -> Iterator[int]:
    """The pc of every instruction, skipping the second slot of each LD_IMM64."""
    pc = 0
    while pc < len(insns):
        yield pc
        pc += 2 if is_ldimm64(insns[pc]) else 1


# -- structural checks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    pc: int
    message: str

    def __str__(self) -> str:
        return f"{self.message} at pc {self.pc}"


def check_program(insns: Sequence[Insn], *, legacy_packet_access: bool = False) -> None:
    """Raise InvalidProgram for the first structural problem (see the module docstring)."""
    for problem in problems(insns, legacy_packet_access=legacy_packet_access):
        raise InvalidProgram(str(problem))


def problems(insns: Sequence[Insn], *, legacy_packet_access: bool = False
             ) -> Iterator[Problem]:
    """Every problem of single instructions in pc order; when there is none, those of the
    control-flow checks (jump and call targets, subprogram ends)."""
    if not insns:
        yield Problem(0, "program has no instructions")
        return
    found = False
    pcs = list(iter_insns(insns))
    # an instruction's own checks depend on it alone (an LD_IMM64's on the next slot
    # too): a slot decode shares between pcs is checked once
    seen: dict[int, str | None] = {}
    for pc in pcs:
        insn = insns[pc]
        if insn.cls == BPF_LD:
            message = _check_insn(insns, pc, legacy_packet_access)
        else:
            key = id(insn)
            if key in seen:
                message = seen[key]
            else:
                message = seen[key] = _check_insn(insns, pc, legacy_packet_access)
        if message is not None:
            found = True
            yield Problem(pc, message)
    if not found:  # jump checks need well-formed instructions to mean anything
        yield from _check_flow(insns, pcs)


def _reg(insn: Insn, dst_written: bool, src_used: bool) -> str | None:
    """Register rules (the kernel's check_reg_arg)."""
    if insn.dst > MAX_REG:
        return f"R{insn.dst} is invalid"
    if src_used and insn.src > MAX_REG:
        return f"R{insn.src} is invalid"
    if dst_written and insn.dst == REG_FP:
        return "frame pointer is read only"
    return None


def _check_insn(insns: Sequence[Insn], pc: int, legacy: bool) -> str | None:
    insn = insns[pc]
    cls = insn.cls
    if cls in (BPF_ALU, BPF_ALU64):
        return _check_alu(insn)
    if cls in (BPF_JMP, BPF_JMP32):
        return _check_jmp(insn)
    if cls == BPF_LDX:
        if insn.mode not in (BPF_MEM, BPF_MEMSX) or (
                insn.mode == BPF_MEMSX and insn.size == BPF_DW):
            return f"unknown opcode {insn.opcode:02x}"
        if insn.imm != 0:
            return "BPF_LDX uses reserved fields"
        return _reg(insn, dst_written=True, src_used=True)
    if cls == BPF_ST:
        if insn.mode != BPF_MEM:
            return f"unknown opcode {insn.opcode:02x}"
        if insn.src != 0:
            return "BPF_ST uses reserved fields"
        return _reg(insn, dst_written=False, src_used=False)
    if cls == BPF_STX:
        return _check_stx(insn)
    return _check_ld(insns, pc, legacy)


def _check_alu(insn: Insn) -> str | None:
    op, alu64, x = insn.op, insn.cls == BPF_ALU64, insn.source == BPF_X
    if op not in _ALU_OPS or (op == BPF_NEG and x) or (op == BPF_END and alu64 and x):
        return f"unknown opcode {insn.opcode:02x}"
    if op == BPF_END:
        if insn.src != 0 or insn.off != 0 or insn.imm not in (16, 32, 64):
            return "BPF_END uses reserved fields"
    elif op == BPF_NEG:
        if insn.src != 0 or insn.off != 0 or insn.imm != 0:
            return "BPF_NEG uses reserved fields"
    elif op == BPF_MOV:
        if x:
            allowed = (0, 8, 16, 32) if alu64 else (0, 8, 16)
            if insn.off not in allowed or insn.imm != 0:
                return "BPF_MOV uses reserved fields"
        elif insn.src != 0 or insn.off != 0:
            return "BPF_MOV uses reserved fields"
    else:
        signed_ok = op in (BPF_DIV, BPF_MOD)
        if insn.off not in ((0, 1) if signed_ok else (0,)):
            return "BPF_ALU uses reserved fields"
        if (x and insn.imm != 0) or (not x and insn.src != 0):
            return "BPF_ALU uses reserved fields"
    return _reg(insn, dst_written=True, src_used=x)


def _check_jmp(insn: Insn) -> str | None:
    op, jmp32, x = insn.op, insn.cls == BPF_JMP32, insn.source == BPF_X
    if op not in _JMP_OPS or (jmp32 and op in (BPF_CALL, BPF_EXIT)) or (
            x and op in (BPF_JA, BPF_EXIT)):
        return f"unknown opcode {insn.opcode:02x}"
    if op == BPF_JA:
        if insn.src != 0 or insn.dst != 0 or (insn.imm if not jmp32 else insn.off):
            return "BPF_JA uses reserved fields"
        return None
    if op == BPF_CALL:
        if x:  # callx (RFC 9669 conformance group "callx"): the target is in dst_reg
            if insn.src != 0 or insn.off != 0 or insn.imm != 0:
                return "BPF_CALL uses reserved fields"
            return _reg(insn, dst_written=False, src_used=False)
        if insn.src not in _CALL_SRCS or insn.dst != 0 or (
                insn.src != BPF_PSEUDO_KFUNC_CALL and insn.off != 0):
            return "BPF_CALL uses reserved fields"
        return None
    if op == BPF_EXIT:
        # The kernel ignores `off` here; RFC 9669 says unused fields are zero.
        if insn.imm != 0 or insn.src != 0 or insn.dst != 0 or insn.off != 0:
            return "BPF_EXIT uses reserved fields"
        return None
    if (x and insn.imm != 0) or (not x and insn.src != 0):
        return "BPF_JMP/JMP32 uses reserved fields"
    return _reg(insn, dst_written=False, src_used=x)


def _check_stx(insn: Insn) -> str | None:
    if insn.mode == BPF_MEM:
        if insn.imm != 0:
            return "BPF_STX uses reserved fields"
        return _reg(insn, dst_written=False, src_used=True)
    if insn.mode != BPF_ATOMIC:
        return f"unknown opcode {insn.opcode:02x}"
    if insn.size not in (BPF_W, BPF_DW):
        return "invalid atomic operand size"
    if insn.imm not in ATOMIC_IMMS:
        return f"BPF_ATOMIC uses invalid atomic opcode {insn.imm & 0xFFFFFFFF:02x}"
    problem = _reg(insn, dst_written=False, src_used=True)
    if problem is None and insn.imm & BPF_FETCH and insn.imm != BPF_CMPXCHG \
            and insn.src == REG_FP:
        return "frame pointer is read only"  # fetch forms write src_reg
    return problem


def _check_ld(insns: Sequence[Insn], pc: int, legacy: bool) -> str | None:
    insn = insns[pc]
    if insn.mode in (BPF_ABS, BPF_IND) and insn.size != BPF_DW:
        if not legacy:
            return "BPF_LD_[ABS|IND] instructions not allowed for this program type"
        if insn.dst != 0 or insn.off != 0 or (insn.mode == BPF_ABS and insn.src != 0):
            return "BPF_LD_[ABS|IND] uses reserved fields"
        return _reg(insn, dst_written=False, src_used=insn.mode == BPF_IND)
    if insn.opcode != OP_LD_IMM64:
        return f"unknown opcode {insn.opcode:02x}"
    if pc + 1 >= len(insns):
        return "invalid bpf_ld_imm64 insn"
    nxt = insns[pc + 1]
    if nxt.opcode != 0 or nxt.dst != 0 or nxt.src != 0 or nxt.off != 0:
        return "invalid bpf_ld_imm64 insn"
    if insn.off != 0:
        return "BPF_LD_IMM64 uses reserved fields"
    if insn.src not in _PSEUDOS:
        return "unrecognized bpf_ld_imm64 insn"
    if insn.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX) and nxt.imm != 0:
        return "unrecognized bpf_ld_imm64 insn"
    return _reg(insn, dst_written=True, src_used=False)


def subprog_starts(insns: Sequence[Insn], pcs: Iterable[int] | None = None) -> list[int]:
    """Sorted entry pcs of the functions: 0 plus every local-call and pseudo-func target
    (`pcs`: those of iter_insns(insns), when the caller has them)."""
    starts = {0}
    for pc in iter_insns(insns) if pcs is None else pcs:
        insn = insns[pc]
        if is_pseudo_call(insn) or is_pseudo_func(insn):
            starts.add(pc + insn.imm + 1)
    return sorted(starts)


def _check_flow(insns: Sequence[Insn], pcs: list[int]) -> Iterator[Problem]:
    """Jump targets, call targets and fall-through (the kernel's check_subprogs)."""
    n = len(insns)
    second_halves = {pc + 1 for pc in pcs if insns[pc].opcode == OP_LD_IMM64}
    for pc in pcs:
        insn = insns[pc]
        if insn.opcode in (OP_CALL, OP_LD_IMM64) and (is_pseudo_call(insn)
                                                     or is_pseudo_func(insn)):
            target = pc + insn.imm + 1
            if not 0 <= target < n:
                yield Problem(pc, "call to invalid destination")
            elif target in second_halves:
                yield Problem(pc, f"jump into the middle of ldimm64 insn {target - 1}")
    starts = subprog_starts(insns, pcs)
    if starts[0] < 0 or starts[-1] >= n:
        return  # already reported as a call to an invalid destination
    bounds = [*starts, n]
    jmp = (BPF_JMP, BPF_JMP32)
    for start, end in pairwise(bounds):
        for pc in range(start, end):
            insn = insns[pc]
            if insn.cls not in jmp or pc in second_halves:
                continue  # is_jump below, tested on the class first (most are not)
            if is_jump(insn):
                dest = jump_target(insn, pc)
                assert dest is not None
                if not start <= dest < end:
                    yield Problem(pc, f"jump out of range from insn {pc} to {dest}")
                elif dest in second_halves:
                    yield Problem(pc, f"jump into the middle of ldimm64 insn {dest - 1}")
        last = end - 1
        if last in second_halves:
            last -= 1
        if not (is_exit(insns[last]) or is_unconditional_jump(insns[last])):
            yield Problem(last, "last insn is not an exit or jmp")
