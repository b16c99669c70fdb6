"""Precision tracking: which scalars' values a verdict depended on (the kernel's
mark_chain_precision and backtrack_insn, written for this analyzer).

Theory of operation.  A path is a chain of checkpoints (the states remembered at prune
points, `Checkpoint`), each holding the state it was taken in and the instructions
executed from its parent to it (`hist`, a linked list, newest first: `(pc, frame, aux,
older)`, where `frame` is the call depth the instruction ran at and `aux` what the
instruction alone cannot tell: the stack slot a spill wrote or a fill read, the
registers and slots linked to a compared one).

A scalar is *precise* in a checkpoint when some path from it made a decision on its
value: a branch it decided, a pointer offset, a helper's size argument, the zero bytes
a store wrote, a constant map key.  `backtrack` starts from the registers and stack
slots such a decision needs, walks the instructions back (a copy moves the need to its
source, an addition adds its operand, a constant or a load from memory ends it, a fill
moves it to the slot, a spill to the register spilled, a call or return moves it between
frames), and marks them precise in every checkpoint it crosses, up the chain, until
nothing is left or a checkpoint already had them (they went further up then).

Pruning compares scalars only where the old state marked them precise: a scalar nothing
depended on matches any scalar (`prune.subsumes`).  Checkpoints start with no marks (the
kernel's reset of inherited precision, which keeps states general); only complete ones
prune, and by then every path through them has marked what it needed.  A path pruned
against a checkpoint takes on that checkpoint's marks (`propagate`), since its future is
the checkpoint's.
"""

from __future__ import annotations

from typing import Any, cast

from vxdp.bpf.isa import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_LD,
    BPF_LDX,
    BPF_MOV,
    BPF_NEG,
    BPF_ST,
    BPF_STX,
    BPF_X,
    Insn,
    is_helper_call,
)
from vxdp.bpf.verifier.state import State

RegKey = tuple[int, int]  # (frame, regno)
SlotKey = tuple[int, int]  # (frame, slot index)
# (pc, frame, aux, older): a linked list, newest first.  `older` is a Hist; the alias is
# not spelled recursively because mypyc (the optional compiled build) cannot translate that.
Hist = tuple[int, int, object, Any] | None


class Checkpoint:
    """A state kept at a prune point, and what paths from it learnt.  Compared by
    identity."""

    __slots__ = (
        "branches",
        "hist",
        "hits",
        "key",
        "misses",
        "parent",
        "pc",
        "precise",
        "precise_slots",
        "reads",
        "state",
        "written_before",
    )

    def __init__(self, pc: int, state: State, key: Any, parent: Checkpoint | None,
                 hist: Hist = None, written_before: tuple[int, ...] = ()) -> None:
        self.pc = pc
        self.state = state
        self.key = key
        self.parent = parent
        self.hist = hist  # the instructions from the parent checkpoint to this one
        self.branches = 1
        self.hits = 0
        self.misses = 0
        # stack liveness, the kernel's way: slots (per frame index) that some path from
        # here read before overwriting them whole, and the slots overwritten whole on the
        # way here from the previous checkpoint (they screen a read from reaching further up)
        self.reads: dict[int, int] = {}
        self.written_before = written_before
        # scalars (registers, spilled stack slots) whose value some path from here needed
        self.precise: set[RegKey] = set()
        self.precise_slots: set[SlotKey] = set()


def _back_alu(insn: Insn, f: int, regs: set[RegKey]) -> None:
    dst = (f, insn.dst)
    if dst not in regs:
        return
    op = insn.op
    if op == BPF_MOV:
        regs.discard(dst)  # the old value is gone; a register copy hands the need on
        if insn.source == BPF_X:
            regs.add((f, insn.src))
    elif insn.source == BPF_X and op not in (BPF_NEG, BPF_END):
        regs.add((f, insn.src))  # dst op= src: both operands made the result


def _back_call(insn: Insn, f: int, aux: object, regs: set[RegKey],
               slots: set[SlotKey]) -> None:
    if aux == "callback":
        # into a callback from the helper call: its R2 was the caller's R3, its R1 a
        # fresh index; the caller's frame went on untouched
        moved = {(f, 3)} if (f + 1, 2) in regs else set()
        regs.difference_update({k for k in regs if k[0] > f})
        slots.difference_update({k for k in slots if k[0] > f})
        regs.update(moved)
        return
    if is_helper_call(insn) or aux == "global":
        for r in range(6):  # R0 is the helper's (or global function's) own; R1-R5 died
            regs.discard((f, r))
        return
    # a call of a static function: the callee's arguments were the caller's R1-R5
    moved = {(f, r) for (fr, r) in regs if fr == f + 1 and 1 <= r <= 5}
    regs.difference_update({k for k in regs if k[0] > f or (k[0] == f and k[1] <= 5)})
    slots.difference_update({k for k in slots if k[0] > f})
    regs.update(moved)


def backtrack_insn(insn: Insn, f: int, aux: object, regs: set[RegKey],
                   slots: set[SlotKey]) -> None:
    """What had to be precise before `insn` (run at call depth `f`) for `regs` and `slots`
    to be precise after it."""
    cls = insn.cls
    slot: Any = aux  # loads and stores record the slot (None when not the stack)
    if cls in (BPF_ALU, BPF_ALU64):
        _back_alu(insn, f, regs)
    elif cls == BPF_LDX:
        dst = (f, insn.dst)
        if dst in regs:
            regs.discard(dst)
            if aux is not None:  # a fill: the value was the spilled register's
                slots.add(slot)
    elif cls == BPF_ST:
        if aux is not None:
            slots.discard(slot)
    elif cls == BPF_STX:
        if insn.mode == BPF_ATOMIC:
            if aux is not None:
                slots.discard(slot)
            if insn.imm == BPF_CMPXCHG:
                regs.discard((f, 0))
            elif insn.imm & BPF_FETCH:
                regs.discard((f, insn.src))
        elif aux is not None and slot in slots:
            slots.discard(slot)
            regs.add((f, insn.src))  # a spill: the slot held this register
    elif cls == BPF_LD:
        regs.discard((f, insn.dst))
    elif insn.op == BPF_CALL:
        _back_call(insn, f, aux, regs, slots)
    elif insn.op == BPF_EXIT:
        # a function returning to its caller (depth f - 1): R0 came from the callee; a
        # callback returns to the helper call with the caller's registers as they were
        if aux != "callback" and (f - 1, 0) in regs:
            regs.discard((f - 1, 0))
            regs.add((f, 0))
    elif insn.op != BPF_JA and aux is not None:
        linked_regs, linked_slots = cast(tuple[frozenset[RegKey], frozenset[SlotKey]], aux)
        if regs & linked_regs or slots & linked_slots:
            regs.update(linked_regs)
            slots.update(linked_slots)


def jump_links(state: State, insn: Insn) -> tuple[frozenset[RegKey], frozenset[SlotKey]] | None:
    """The registers and spilled slots a comparison refines together (the compared ones
    and every scalar sharing their ids), when a later need for one means a need for all."""
    cur = state.regs
    dreg = cur[insn.dst]
    x = insn.source == BPF_X
    if not x and not (dreg.id and dreg.is_scalar):
        return None  # `dst op K`, nothing linked: dst's need is its own (the common case)
    f = len(state.frames) - 1
    regs = {(f, insn.dst)}
    if x:
        regs.add((f, insn.src))
    ids = {cur[r].id for _, r in regs if cur[r].is_scalar and cur[r].id}
    slots: set[SlotKey] = set()
    if ids:
        for fi, si, regno, reg in state.all_regs():
            if reg.id in ids and reg.is_scalar:  # the id first: most registers have none
                if si is None:
                    regs.add((fi, regno))
                else:
                    slots.add((fi, si))
    elif insn.source != BPF_X:
        return None  # `dst op K`, nothing linked: dst's need is its own
    return frozenset(regs), frozenset(slots)


def backtrack(insns: list[Insn], hist: Hist, cp: Checkpoint | None, regs: set[RegKey],
              slots: set[SlotKey]) -> None:
    """Mark precise, up the chain from `cp` (the newest checkpoint of the path whose
    latest instructions are `hist`), what `regs` and `slots` depended on."""
    while regs or slots:
        node = hist
        while node is not None and (regs or slots):
            pc, f, aux, node = node
            backtrack_insn(insns[pc], f, aux, regs, slots)
        if cp is None or not (regs or slots):
            return
        frames = cp.state.frames
        for key in list(regs):
            fr, r = key
            if fr >= len(frames) or not frames[fr].regs[r].is_scalar or key in cp.precise:
                regs.discard(key)  # not a scalar here, or marked (and passed up) before
            else:
                cp.precise.add(key)
        for key in list(slots):
            fr, si = key
            spilled = frames[fr].stack.get(si) if fr < len(frames) else None
            if spilled is None or spilled.spilled is None or not spilled.spilled.is_scalar \
                    or key in cp.precise_slots:
                slots.discard(key)
            else:
                cp.precise_slots.add(key)
        hist, cp = cp.hist, cp.parent


def propagate(insns: list[Insn], old: Checkpoint, state: State, hist: Hist,
              cp: Checkpoint | None) -> None:
    """A path pruned against `old` needs what `old` needed (propagate_precision)."""
    regs: set[RegKey] = set()
    slots: set[SlotKey] = set()
    frames = state.frames
    for fr, r in old.precise:
        if fr < len(frames) and frames[fr].regs[r].is_scalar:
            regs.add((fr, r))
    for fr, si in old.precise_slots:
        s = frames[fr].stack.get(si) if fr < len(frames) else None
        if s is not None and s.spilled is not None and s.spilled.is_scalar:
            slots.add((fr, si))
    backtrack(insns, hist, cp, regs, slots)
