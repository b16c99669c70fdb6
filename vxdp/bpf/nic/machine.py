"""VXME-32, the micro-engine of vxdp's SmartNIC model: its registers, memories and limits,
the instruction word, its encoding and its disassembly.  docs/smartnic.md describes the
machine for people; this module is its one definition for code.

The machine is modelled on the flow-processing micro-engines of Netronome's NFP (the
only NIC the Linux kernel ever offloaded XDP to, drivers/net/ethernet/netronome/nfp/bpf),
without copying its encoding: a 32-bit core, so every 64-bit BPF register is a pair of
32-bit registers; several memories, each with its own instructions, instead of one
address space; map helpers in firmware; no divider.

Registers: g0..g31, 32 bits each.  BPF register rN lives in the pair g(2N) (low word,
printed `rNl`) and g(2N+1) (high word, `rNh`) for N = 0..10; g22..g31 are the
translator's temporaries `t0`..`t9`.  Four flags, set by every ALU instruction: Z (the
result is 0), N (its bit 31), C (carry out of add/addc; for sub/subc, no borrow) and V
(signed overflow of add/addc/sub/subc); the other ALU instructions clear C and V.

Memories (`Space`): LM, the engine's local memory, holds the program's stack (LM_STACK
bytes; BPF's r10 is the LM address LM_STACK); PKT, the packet buffer, a frame with
headroom as XDP gives it (pointers into the packet are offsets in the frame); EMEM, where
map values live (addresses the firmware hands out for looked-up elements).  The XDP
context is no memory: its fields are the packet vector, read with `rdpv`.

An instruction is one 64-bit word (an image is a sequence of little-endian words):

    63..56 op   55..51 d   50..46 a   45..41 b   40 i   39..32 x   31..0 imm

`d` the destination register, `a` the first operand, `b` the second (or, with `i` set,
the 32-bit immediate `imm`); `x` a modifier: the condition of a branch, the space and
width of a memory access (space << 4 | bytes), the field of `rdpv`, the helper of a
`call`, the relocation of `ldmap`, the width of `bswap`.  Memory instructions address
[a + imm] (imm a signed 32-bit offset) and use `b` for the value; a branch's `imm` is the
absolute word address of its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from vxdp.errors import InvalidProgram

MACHINE: Final = "vxme-32"
DESCRIPTION: Final = "vxdp micro-engine, 32-bit, NFP-like"
#: Instruction words an image may hold: the engine's code store.
CODE_STORE: Final = 8192
#: Bytes of local memory for the program's stack (NFP reads its FW stack size from the
#: device, NFP_NET_CFG_BPF_STACK_SZ * 64; ours is a choice of the model).
LM_STACK: Final = 256
#: Largest map element: key and value, each rounded up to 8 bytes (Netronome's Agilio
#: firmware takes 64 bytes of key + value; the NFP driver reads max_elem_sz from it).
MAX_ELEM_SIZE: Final = 64
#: The context handle: what r1 holds at entry, and what the packet helpers take as ctx.
CTX_HANDLE: Final = 0x00C70000
#: Base of the EMEM addresses the firmware hands out, one 64 KiB window per element.
EMEM_BASE: Final = 0x10000000
EMEM_WINDOW: Final = 0x10000
#: What a map reference (`ldmap d, map#N`) holds: this tag or'ed with the map's slot.
MAP_TAG: Final = 0x4D000000
NREGS: Final = 32
FIRST_TEMP: Final = 22  # t0 = g22 .. t9 = g31
WORD_SIZE: Final = 8
M32: Final = 0xFFFFFFFF

#: The helpers the firmware implements, by BPF helper id: the `call` targets an image may
#: name.  virtio_spec.offload.SMARTNIC advertises exactly these (kept in step by test, as
#: vxdp.bpf may not import virtio_spec).
FIRMWARE_HELPERS: Final[dict[int, str]] = {
    1: "map_lookup_elem", 2: "map_update_elem", 3: "map_delete_elem",
    7: "get_prandom_u32", 44: "xdp_adjust_head", 65: "xdp_adjust_tail",
}


class Op(IntEnum):
    """The opcodes (the word's top byte)."""

    MOV = 0x01  # d = b
    ADD = 0x02  # d = a + b                 (C: carry out)
    ADDC = 0x03  # d = a + b + C
    SUB = 0x04  # d = a - b                 (C: no borrow)
    SUBC = 0x05  # d = a - b - !C
    AND = 0x06
    OR = 0x07
    XOR = 0x08
    SHL = 0x09  # d = a << (b & 31)
    SHR = 0x0A  # d = a >> (b & 31), logical
    ASR = 0x0B  # d = a >> (b & 31), arithmetic
    MUL = 0x0C  # d = low 32 bits of a * b (unsigned)
    MULHU = 0x0D  # d = high 32 bits of a * b (unsigned)
    BSWAP = 0x0E  # d = a byte-swapped; x = 2 (low half, upper half cleared) or 4
    BR = 0x20  # if cond(x): pc = imm
    LD = 0x30  # d = mem[a + imm] (8 bytes: d, d + 1)
    ST = 0x31  # mem[a + imm] = b (8 bytes: b, b + 1)
    ATADD = 0x32  # mem[a + imm] += b, atomically (EMEM only)
    RDPV = 0x38  # d = packet vector field x
    LDMAP = 0x39  # d = relocation x of map slot imm, resolved at load
    CALL = 0x40  # firmware helper x: arguments g2..g11, result g0 g1
    EXIT = 0x41  # the verdict is g0


ALU_OPS: Final = frozenset({Op.MOV, Op.ADD, Op.ADDC, Op.SUB, Op.SUBC, Op.AND, Op.OR, Op.XOR,
                            Op.SHL, Op.SHR, Op.ASR, Op.MUL, Op.MULHU, Op.BSWAP})


class Cond(IntEnum):
    """Branch conditions on the flags."""

    AL = 0  # always
    EQ = 1  # Z
    NE = 2  # !Z
    HS = 3  # C (unsigned >=, after a subtraction)
    LO = 4  # !C (unsigned <)
    GE = 5  # N == V (signed >=)
    LT = 6  # N != V (signed <)


class Space(IntEnum):
    LM = 1
    PKT = 2
    EMEM = 3


class PvField(IntEnum):
    """The packet vector: what `rdpv` reads (struct xdp_md, field by field)."""

    DATA = 0
    DATA_END = 1
    DATA_META = 2
    INGRESS_IFINDEX = 3
    RX_QUEUE_INDEX = 4
    EGRESS_IFINDEX = 5


class Reloc(IntEnum):
    """What `ldmap` loads for a map slot: the map itself, or its first value's address."""

    MAP_ID = 0
    MAP_VALUE = 1


WIDTHS: Final = (1, 2, 4, 8)


def reg_name(g: int) -> str:
    """`r3l`, `r3h` for the pairs of BPF registers, `t0`.. for the temporaries."""
    if g < FIRST_TEMP:
        return f"r{g // 2}{'lh'[g % 2]}"
    return f"t{g - FIRST_TEMP}"


def lo(bpf_reg: int) -> int:
    return 2 * bpf_reg


def hi(bpf_reg: int) -> int:
    return 2 * bpf_reg + 1


def temp(n: int) -> int:
    return FIRST_TEMP + n


def mem_x(space: Space, width: int) -> int:
    return int(space) << 4 | width


@dataclass(frozen=True, slots=True)
class Word:
    """One instruction (see the module docstring for the fields)."""

    op: Op
    d: int = 0
    a: int = 0
    b: int = 0
    i: bool = False
    x: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not all(0 <= r < NREGS for r in (self.d, self.a, self.b)):
            raise InvalidProgram(f"{self.op.name.lower()}: register out of g0..g31")
        if not 0 <= self.x <= 0xFF or not -0x80000000 <= self.imm <= M32:
            raise InvalidProgram(f"{self.op.name.lower()}: field out of range")
        object.__setattr__(self, "imm", self.imm & M32)  # one spelling per word

    def encode(self) -> int:
        return (int(self.op) << 56 | self.d << 51 | self.a << 46 | self.b << 41
                | int(self.i) << 40 | self.x << 32 | self.imm & M32)

    def to_bytes(self) -> bytes:
        return self.encode().to_bytes(WORD_SIZE, "little")

    @classmethod
    def decode(cls, word: int) -> Word:
        try:
            op = Op(word >> 56 & 0xFF)
        except ValueError:
            raise InvalidProgram(f"word {word:016x}: no opcode {word >> 56 & 0xFF:#04x} on "
                                 f"{MACHINE}") from None
        return cls(op, word >> 51 & 31, word >> 46 & 31, word >> 41 & 31, bool(word >> 40 & 1),
                   word >> 32 & 0xFF, word & M32)

    @property
    def simm(self) -> int:
        """`imm` as a signed 32-bit value (memory offsets)."""
        v = self.imm & M32
        return v - (1 << 32) if v & 0x80000000 else v

    # -- disassembly --------------------------------------------------------------------

    def _b(self) -> str:
        return f"#{self.imm & M32:#x}" if self.i else reg_name(self.b)

    def _pair(self, g: int, width: int) -> str:
        return f"{reg_name(g)}:{reg_name(g + 1)}" if width == 8 else reg_name(g)

    def text(self) -> str:
        """The instruction in the machine's assembly syntax."""
        op, d = self.op, reg_name(self.d)
        name = op.name.lower()
        if op is Op.MOV:
            return f"mov {d}, {self._b()}"
        if op is Op.BSWAP:
            return f"bswap.{8 * self.x} {d}, {reg_name(self.a)}"
        if op in ALU_OPS:
            return f"{name} {d}, {reg_name(self.a)}, {self._b()}"
        if op is Op.BR:
            cond = Cond(self.x)
            return f"br{'' if cond is Cond.AL else '.' + cond.name.lower()} @{self.imm:#06x}"
        if op in (Op.LD, Op.ST, Op.ATADD):
            space, width = Space(self.x >> 4), self.x & 0xF
            off = self.simm
            addr = f"[{reg_name(self.a)} {'-' if off < 0 else '+'} {abs(off)}]"
            tag = f"{name}.{space.name.lower()}.{width}"
            if op is Op.LD:
                return f"{tag} {self._pair(self.d, width)}, {addr}"
            return f"{tag} {addr}, {self._pair(self.b, width)}"
        if op is Op.RDPV:
            return f"rdpv {d}, {PvField(self.x).name.lower()}"
        if op is Op.LDMAP:
            kind = "map" if self.x == Reloc.MAP_ID else "mapval"
            return f"ldmap {d}, {kind}#{self.imm}"
        if op is Op.CALL:
            return f"call fw.{FIRMWARE_HELPERS.get(self.x, f'helper{self.x}')}"
        return "exit"


__all__ = ["ALU_OPS", "CODE_STORE", "CTX_HANDLE", "DESCRIPTION", "EMEM_BASE", "EMEM_WINDOW",
           "FIRMWARE_HELPERS", "FIRST_TEMP", "LM_STACK", "M32", "MACHINE", "MAP_TAG",
           "MAX_ELEM_SIZE", "NREGS", "WIDTHS", "WORD_SIZE", "Cond", "Op", "PvField", "Reloc",
           "Space", "Word", "hi", "lo", "mem_x", "reg_name", "temp"]
