"""Which memory each register points into, at every instruction: the translator's analysis.

VXME-32 has no flat address space (vxdp.bpf.nic.machine): a load names its memory (the
stack in LM, the packet, map values in EMEM) and the context is no memory at all.  So the
translator must know, for every load, store and helper argument, what the pointer points
into, on every path that reaches it; NFP's translator asks the kernel's verifier the same
question at every instruction (its `insn_hook`, drivers/net/ethernet/netronome/nfp/bpf/
verifier.c, which refuses "ptr type changed for instruction").  Ours answers it itself,
so the verifier stays the device's and the machine stays out of it.

A forward data-flow analysis over the program as the verifier accepted it (so every path
is safe; this only classifies).  Each register holds a `Val`: the set of kinds it may be
on the paths that reach here (scalar, ctx, pkt, pkt_end, pkt_meta, stack, map, mapval),
the scalar's value when one constant reaches, the offset from the frame top when it
points into the stack.  8-byte stack slots written whole remember what was spilled there,
so a pointer spilled and filled keeps its kind.  Joins are unions: the analysis is
path-insensitive, where the verifier is not; a register that is a pointer on one path and
a scalar on another stays both, and the translator refuses where that matters.

No refusal happens here: `analyse` always finishes, and the translator judges each
instruction against the state before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from vxdp.bpf.isa import (
    OP_GOTOL,
    SIZE_BYTES,
    AluOp,
    AtomicOp,
    Cls,
    Insn,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Src,
    imm64,
    is_exit,
    is_helper_call,
    is_ldimm64,
    jump_target,
)

SCALAR, CTX, PKT, PKT_END, PKT_META = "scalar", "ctx", "pkt", "pkt_end", "pkt_meta"
STACK, MAP, MAPVAL = "stack", "map", "mapval"
POINTERS: Final = frozenset({CTX, PKT, PKT_END, PKT_META, STACK, MAP, MAPVAL})
#: The memory a pointer kind addresses (None: it addresses nothing the program may load).
MEMORY: Final = {PKT: "pkt", PKT_META: "pkt", PKT_END: "pkt", STACK: "stack",
                 MAPVAL: "mapval", CTX: "ctx", MAP: None}
M64: Final = (1 << 64) - 1
M32: Final = 0xFFFFFFFF
#: xdp_md offsets whose loads give packet pointers.
CTX_POINTERS: Final = {0: PKT, 4: PKT_END, 8: PKT_META}
HELPER_MAP_LOOKUP = 1


@dataclass(frozen=True, slots=True)
class Val:
    """What a register (or a spilled stack slot) may hold; no kinds: not written yet."""

    kinds: frozenset[str] = frozenset()
    const: int | None = None  # the scalar's value (u64) when only one reaches
    off: int | None = None  # stack: offset from the frame top (r10), when only one reaches
    map: int | None = None  # map, mapval: the program's map index, when only one reaches

    @property
    def pointers(self) -> frozenset[str]:
        return self.kinds & POINTERS

    @property
    def is_pointer(self) -> bool:
        return bool(self.kinds & POINTERS)

    @property
    def memories(self) -> frozenset[str | None]:
        """The memories its pointer kinds address."""
        return frozenset(MEMORY[k] for k in self.pointers)

    def join(self, other: Val) -> Val:
        if not self.kinds:
            return other
        if not other.kinds:
            return self
        return Val(self.kinds | other.kinds,
                   _same(self.const, other.const, self.kinds | other.kinds == {SCALAR}),
                   _same(self.off, other.off, True), _same(self.map, other.map, True))

    def describe(self) -> str:
        kinds = sorted(self.pointers) or [SCALAR]
        text = " or ".join(kinds)
        if STACK in self.kinds and self.off is not None:
            text += f" (fp{self.off:+d})"
        return text


def _same(a: int | None, b: int | None, keep: bool) -> int | None:
    return a if keep and a == b else None


def scalar(const: int | None = None) -> Val:
    return Val(frozenset({SCALAR}), None if const is None else const & M64)


def pointer(kind: str, *, off: int | None = None, map: int | None = None) -> Val:
    return Val(frozenset({kind}), off=off, map=map)


ANY_SCALAR: Final = scalar()
UNINIT: Final = Val()


@dataclass(frozen=True)
class State:
    """Registers r0..r10 and the spilled stack slots (offset -> value), at one pc.  A
    slot not listed holds data (a scalar)."""

    regs: tuple[Val, ...]
    slots: tuple[tuple[int, Val], ...] = ()

    def slot(self, off: int) -> Val:
        return dict(self.slots).get(off, ANY_SCALAR)

    def join(self, other: State) -> State:
        regs = tuple(a.join(b) for a, b in zip(self.regs, other.regs, strict=True))
        mine, theirs = dict(self.slots), dict(other.slots)
        slots = {}
        for off in mine.keys() | theirs.keys():
            v = mine.get(off, ANY_SCALAR).join(theirs.get(off, ANY_SCALAR))
            if v != ANY_SCALAR:
                slots[off] = v
        return State(regs, tuple(sorted(slots.items())))

    def with_reg(self, reg: int, val: Val) -> State:
        regs = list(self.regs)
        regs[reg] = val
        return State(tuple(regs), self.slots)


def entry_state() -> State:
    regs = [UNINIT] * 11
    regs[1] = pointer(CTX)
    regs[10] = pointer(STACK, off=0)
    return State(tuple(regs))


@dataclass
class Analysis:
    """The state before every reachable instruction (unreachable ones have none)."""

    states: dict[int, State] = field(default_factory=dict)

    def at(self, pc: int) -> State | None:
        return self.states.get(pc)


def analyse(insns: Sequence[Insn]) -> Analysis:
    """Run the analysis to its fixed point from pc 0 (the program's only entry)."""
    out = Analysis()
    work = [0]
    out.states[0] = entry_state()
    while work:
        pc = work.pop()
        state = out.states[pc]
        for succ, after in _step(insns, pc, state):
            if not 0 <= succ < len(insns):
                continue
            old = out.states.get(succ)
            new = after if old is None else old.join(after)
            if new != old:
                out.states[succ] = new
                work.append(succ)
    return out


def _step(insns: Sequence[Insn], pc: int, s: State) -> list[tuple[int, State]]:
    insn = insns[pc]
    cls = insn.cls
    if is_ldimm64(insn):
        return [(pc + 2, s.with_reg(insn.dst, _ld_imm64(insns, pc)))]
    if cls in (Cls.ALU, Cls.ALU64):
        return [(pc + 1, s.with_reg(insn.dst, alu_result(insn, s)))]
    if cls == Cls.LDX:
        return [(pc + 1, s.with_reg(insn.dst, _load(insn, s)))]
    if cls in (Cls.ST, Cls.STX):
        return [(pc + 1, _store(insn, s))]
    if is_exit(insn):
        return []
    if insn.opcode == OP_GOTOL:
        return [(pc + insn.imm + 1, s)]
    if cls in (Cls.JMP, Cls.JMP32) and insn.op == JmpOp.CALL:
        regs = list(s.regs)
        regs[0] = (Val(frozenset({MAPVAL, SCALAR}), map=s.regs[1].map)
                   if is_helper_call(insn) and insn.imm == HELPER_MAP_LOOKUP else ANY_SCALAR)
        for r in range(1, 6):
            regs[r] = UNINIT
        return [(pc + 1, State(tuple(regs), s.slots))]
    if cls in (Cls.JMP, Cls.JMP32):
        target = jump_target(insn, pc)
        if insn.op == JmpOp.JA:
            return [(target, s)] if target is not None else []
        return [(pc + 1, s)] + ([(target, s)] if target is not None else [])
    return [(pc + 1, s)]  # LD_ABS and the like: nothing the translator keeps


def _ld_imm64(insns: Sequence[Insn], pc: int) -> Val:
    insn = insns[pc]
    if insn.src in (Pseudo.MAP_FD, Pseudo.MAP_IDX):
        return pointer(MAP, map=insn.imm)
    if insn.src in (Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE):
        return pointer(MAPVAL, map=insn.imm)
    if insn.src == Pseudo.NONE:
        return scalar(imm64(insns, pc))
    return ANY_SCALAR


def src_val(insn: Insn, s: State) -> Val:
    """The second operand of an ALU or jump: the source register or the immediate
    (sign-extended to 64 bits, as ALU64 and JMP take it)."""
    if insn.source == Src.X:
        return s.regs[insn.src]
    return scalar(insn.imm)


def alu_result(insn: Insn, s: State) -> Val:
    """The destination after an ALU instruction (pointers stay pointers only through
    mov, and through add and sub of a scalar)."""
    op, wide = insn.op, insn.cls == Cls.ALU64
    dst, src = s.regs[insn.dst], src_val(insn, s)
    if op == AluOp.MOV and insn.off == 0:
        if wide:
            return src
        return scalar(None if src.const is None or src.is_pointer else src.const & M32)
    if wide and op in (AluOp.ADD, AluOp.SUB):
        if dst.is_pointer and not src.is_pointer:
            return _moved(dst, src, op == AluOp.SUB)
        if op == AluOp.ADD and src.is_pointer and not dst.is_pointer:
            return _moved(src, dst, False)
    if dst.is_pointer or src.is_pointer or dst.const is None or src.const is None:
        return ANY_SCALAR
    return scalar(_fold(op, wide, dst.const, src.const))


def _moved(p: Val, by: Val, minus: bool) -> Val:
    off = None
    if p.off is not None and by.const is not None:
        delta = by.const - (1 << 64) if by.const >> 63 else by.const
        off = p.off - delta if minus else p.off + delta
    return Val(p.kinds, None, off, p.map)


def _fold(op: int, wide: bool, a: int, b: int) -> int | None:
    mask, bits = (M64, 64) if wide else (M32, 32)
    a, b = a & mask, b & mask
    out = {AluOp.ADD: a + b, AluOp.SUB: a - b, AluOp.MUL: a * b, AluOp.OR: a | b,
           AluOp.AND: a & b, AluOp.XOR: a ^ b, AluOp.LSH: a << (b % bits),
           AluOp.RSH: a >> (b % bits), AluOp.NEG: -a}.get(AluOp(op))
    return None if out is None else out & mask


def _load(insn: Insn, s: State) -> Val:
    base = s.regs[insn.src]
    if insn.mode != Mode.MEM:
        return ANY_SCALAR
    if base.pointers == {CTX}:
        kind = CTX_POINTERS.get(insn.off)
        return pointer(kind) if kind is not None else ANY_SCALAR
    if base.pointers == {STACK} and base.off is not None:
        at = base.off + insn.off
        if insn.size == Size.DW and at % 8 == 0:
            return s.slot(at)
    return ANY_SCALAR


def _store(insn: Insn, s: State) -> State:
    base = s.regs[insn.dst]
    regs = s.regs
    if insn.mode == Mode.ATOMIC and insn.imm & AtomicOp.FETCH:
        reg = 0 if insn.imm == AtomicOp.CMPXCHG else insn.src
        regs = s.with_reg(reg, ANY_SCALAR).regs
    if STACK not in base.kinds:
        return State(regs, s.slots)
    slots = dict(s.slots)
    if base.off is None or base.pointers != {STACK}:
        return State(regs)  # anywhere in the stack: no spill survives
    at = base.off + insn.off
    size = SIZE_BYTES[Size(insn.size)]
    for off in [o for o in slots if o < at + size and at < o + 8]:
        del slots[off]
    if insn.cls == Cls.STX and insn.mode == Mode.MEM and insn.size == Size.DW \
            and at % 8 == 0 and s.regs[insn.src] != ANY_SCALAR:
        slots[at] = s.regs[insn.src]
    return State(regs, tuple(sorted(slots.items())))


__all__ = ["ANY_SCALAR", "CTX", "MAP", "MAPVAL", "MEMORY", "PKT", "PKT_END", "PKT_META",
           "POINTERS", "SCALAR", "STACK", "Analysis", "State", "Val", "alu_result",
           "analyse", "entry_state", "pointer", "scalar", "src_val"]
