"""Which stack slots a path may still read: static liveness of the stack, for pruning.

The kernel prunes with dynamic liveness (REG_LIVE_READ marks propagated to parent
states); without it, two states that differ only in a slot nobody reads again never
prune, and a function with a few such branches explodes.  This is the static
counterpart, per function:

1. A forward pass finds which registers may hold an address in the function's own stack
   frame: `fp + k` (known k) or `fp + ?` (unknown offset), from `r10`, copies and
   constant additions.  If such an address is ever stored to memory, it could come back
   through a load we cannot follow: the function then gets no stack liveness at all
   (every slot live), the safe answer.
2. A backward pass computes, for each instruction, the slots that may be read before
   being overwritten whole: loads through `fp + k` read their bytes, loads through
   `fp + ?` read every slot, a helper or a call handed `fp + k` may read every slot from
   k up to the frame's top (`fp + ?`: all), an aligned 8-byte store kills its slot.

Slots are bits of an int: bit i covers bytes fp-8(i+1) .. fp-8i-1 (state.Frame.stack).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from vxdp.bpf.isa import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_FETCH,
    BPF_JMP,
    BPF_JMP32,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_MOV,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_X,
    OP_EXIT,
    SIZE_BYTES,
    Insn,
    is_helper_call,
)
from vxdp.bpf.verifier.cfg import Flow, solve_backward

ALL: Final = (1 << 64) - 1
ANY: Final = "any"  # an address in the frame at an unknown offset
Val = int | str | None  # fp + k, fp + ?, or not a frame address
Regs = tuple[Val, ...]


def _slots(lo: int, hi: int) -> int:
    """The slots holding any byte of [lo, hi) (negative offsets from fp)."""
    lo, hi = max(lo, -512), min(hi, 0)
    if lo >= hi:
        return 0
    first, last = (-hi) // 8, (-lo - 1) // 8  # slot of byte hi - 1, slot of byte lo
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


def _join(a: Val, b: Val) -> Val:
    if a == b:
        return a
    if a is None and b is None:
        return None
    return ANY


def _step(insn: Insn, regs: Regs) -> Regs | None:
    """Forward transfer; None when a frame address escapes to memory."""
    cls, op = insn.cls, insn.op
    # the common cases change nothing: `regs` itself, no copy
    if cls == BPF_JMP32 or cls == BPF_ST or (cls == BPF_JMP and op != BPF_CALL):
        return regs
    if cls == BPF_ALU or cls == BPF_LDX or cls == BPF_LD:
        if regs[insn.dst] is None:
            return regs
    elif cls == BPF_STX:
        if regs[insn.src] is not None:
            return None  # a frame address stored to memory: we lose track of it
        if insn.mode != BPF_ATOMIC:
            return regs
    elif cls == BPF_ALU64 and regs[insn.dst] is None and (
            insn.source == BPF_K or regs[insn.src] is None):
        return regs  # no frame address in, none out
    r = list(regs)
    if cls == BPF_ALU64:
        src: Val = r[insn.src] if insn.source == BPF_X else None
        if op == BPF_MOV:
            r[insn.dst] = src if insn.source == BPF_X and not insn.off else None
        elif op in (BPF_ADD, BPF_SUB) and insn.source == BPF_K:
            d = r[insn.dst]
            if isinstance(d, int):
                r[insn.dst] = d + insn.imm if op == BPF_ADD else d - insn.imm
        elif r[insn.dst] is not None or src is not None:
            r[insn.dst] = ANY
    elif cls == BPF_ALU or cls == BPF_LDX or cls == BPF_LD:
        r[insn.dst] = None
    elif cls == BPF_STX:
        if r[insn.src] is not None:
            return None  # a frame address stored to memory: we lose track of it
        if insn.mode == BPF_ATOMIC:
            if insn.imm == BPF_CMPXCHG:
                r[0] = None
            elif insn.imm & BPF_FETCH:
                r[insn.src] = None
    elif cls == BPF_JMP and op == BPF_CALL:
        passed = any(r[i] is not None for i in range(1, 6))
        for i in range(0, 6):
            r[i] = None
        if not is_helper_call(insn) and passed:
            r[0] = ANY  # a callee may hand back an address it was given
    return tuple(r)


def _reads(insn: Insn, regs: Regs) -> tuple[int, int]:
    """(slots read, slots overwritten whole) by one instruction."""
    cls = insn.cls
    if cls == BPF_LDX or (cls == BPF_STX and insn.mode == BPF_ATOMIC):
        base = regs[insn.src if cls == BPF_LDX else insn.dst]
        size = SIZE_BYTES[insn.size]  # type: ignore[index]
        if isinstance(base, int):
            return _slots(base + insn.off, base + insn.off + size), 0
        return (ALL if base == ANY else 0), 0
    if cls in (BPF_ST, BPF_STX):
        base = regs[insn.dst]
        lo = base + insn.off if isinstance(base, int) else None
        if lo is not None and insn.size == 0x18 and lo % 8 == 0 and -512 <= lo < 0:
            return 0, _slots(lo, lo + 8)
        return 0, 0
    if cls == BPF_JMP and insn.op == BPF_CALL:
        read = 0
        for i in range(1, 6):
            v = regs[i]
            if isinstance(v, int):
                read |= _slots(v, 0)
            elif v == ANY:
                read = ALL
        return read, 0
    return 0, 0


_NO_ACCESS: Final = (BPF_ALU, BPF_ALU64, BPF_LD, BPF_JMP32)  # classes that touch no memory


def live_slots(insns: Sequence[Insn], flow: Flow | None = None,
               at: Iterable[int] | None = None) -> dict[int, int]:
    """For each instruction (or the pcs `at`), the bitmask of the function's own stack
    slots that may be read from there on (ALL where we cannot tell)."""
    flow = flow or Flow(insns)
    pcs, starts, func_of = flow.pcs, flow.starts, flow.func_of
    entry_regs: Regs = (None,) * 10 + (0,)
    regs_in: dict[int, Regs] = {}
    escaped: set[int] = set()  # functions whose frame address escaped
    work = list(starts)
    for s in starts:
        regs_in[s] = entry_regs
    while work:
        pc = work.pop()
        if func_of[pc] in escaped:
            continue
        after = _step(insns[pc], regs_in[pc])
        if after is None:
            escaped.add(func_of[pc])
            continue
        for nxt in flow.succ[pc]:
            before = regs_in.get(nxt)
            if before == after:
                continue  # nothing new reaches nxt
            joined = after if before is None else tuple(
                _join(a, b) for a, b in zip(before, after))
            if joined != before:
                regs_in[nxt] = joined
                work.append(nxt)
    # (pc, slots read, ~slots overwritten), last pc first; a function whose frame
    # address escaped has every slot live everywhere, once and for all
    fixed: dict[int, int] = {}
    facts: list[tuple[int, int, int]] = []
    for pc in reversed(pcs):
        if func_of[pc] in escaped:
            fixed[pc] = ALL
            continue
        regs = regs_in.get(pc)
        insn = insns[pc]
        if regs is None:
            gen, kill = ALL, 0
        elif insn.cls in _NO_ACCESS or (insn.cls == BPF_JMP and insn.op != BPF_CALL):
            gen, kill = 0, 0  # what _reads says of them, without the call
        else:
            gen, kill = _reads(insn, regs)
        if insn.opcode == OP_EXIT:
            facts.append((pc, gen, 0))  # nothing is read after it
        else:
            facts.append((pc, gen, ~kill))
    live = solve_backward(flow, facts, fixed, ALL)
    return {pc: live[pc] for pc in (pcs if at is None else at)}
