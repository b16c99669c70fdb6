"""Control-flow checks before any data flow: the structure of the program.

`structural_problem` runs the ISA's own checks (vxdp.bpf.isa.problems: unknown opcodes,
reserved fields, bad registers, jumps out of range or into an LD_IMM64, a last instruction
that falls through) and then the kernel's check_cfg walk: every instruction reachable,
no back-edges for unprivileged programs.  `prune_points` and `live_regs` prepare the
interpreter: where states are remembered, and which registers a path may still read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Final

from vxdp.bpf.helpers import CALLBACK_HELPER_IDS, HELPERS
from vxdp.bpf.isa import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_ST,
    BPF_STX,
    BPF_X,
    OP_CALL,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    OP_LD_IMM64,
    Insn,
    is_exit,
    is_helper_call,
    is_jump,
    is_ldimm64,
    is_unconditional_jump,
    jump_target,
    problems,
)


def successors(insns: Sequence[Insn], pc: int) -> list[int]:
    """Where control may go after `pc` inside its function (calls fall through)."""
    insn = insns[pc]
    if is_exit(insn):
        return []
    step = 2 if is_ldimm64(insn) else 1
    if is_jump(insn):
        target = jump_target(insn, pc)
        assert target is not None
        if is_unconditional_jump(insn):
            return [target]
        return [pc + 1, target]
    return [pc + step]


class Flow:
    """The control flow of a program, computed once for every analysis before the walk:
    the instruction pcs, each one's successors, the functions' entries and which function
    holds each pc."""

    def __init__(self, insns: Sequence[Insn]) -> None:
        self.insns = insns
        self.pcs: list[int] = []
        self.succ: dict[int, list[int]] = {}
        self.loops = False  # whether some jump goes backwards (or to itself): a loop, maybe
        self.func_refs: list[tuple[int, int]] = []  # (pc, entry) of local calls, func loads
        self.jumps: list[int] = []  # pcs of the jumps (is_jump), for the later passes
        self.calls: list[int] = []  # pcs of the calls (helpers, functions, kfuncs)
        # One sweep, `successors` and `iter_insns` written out on the opcode (they are
        # the reference: test_cfg checks this sweep against them).
        pcs, succ, jumps, calls = self.pcs, self.succ, self.jumps, self.calls
        n = len(insns)
        pc = 0
        while pc < n:
            pcs.append(pc)
            insn = insns[pc]
            opcode = insn.opcode
            if opcode == OP_EXIT:
                succ[pc] = []
            elif insn.cls in _JMP_CLASSES and insn.op not in _CALL_OR_EXIT:  # is_jump
                jumps.append(pc)
                target = pc + (insn.imm if opcode == OP_GOTOL else insn.off) + 1
                if target <= pc:
                    self.loops = True
                succ[pc] = [target] if opcode in _UNCONDITIONAL else [pc + 1, target]
            elif opcode == OP_LD_IMM64:
                succ[pc] = [pc + 2]
                if insn.src == BPF_PSEUDO_FUNC:  # is_pseudo_func
                    self.func_refs.append((pc, pc + insn.imm + 1))
                pc += 1
            else:
                succ[pc] = [pc + 1]
                if opcode == OP_CALL:
                    calls.append(pc)
                    if insn.src == BPF_PSEUDO_CALL:  # is_pseudo_call
                        self.func_refs.append((pc, pc + insn.imm + 1))
            pc += 1
        self.starts = sorted({0, *(entry for _, entry in self.func_refs)})  # subprog_starts
        self.func_of: dict[int, int] = {}
        k = 0
        for pc in self.pcs:
            while k + 1 < len(self.starts) and self.starts[k + 1] <= pc:
                k += 1
            self.func_of[pc] = self.starts[k]


MAX_SUBPROGS: Final = 256  # the kernel's BPF_MAX_SUBPROGS, the main program included
_JMP_CLASSES: Final = (BPF_JMP, BPF_JMP32)
_CALL_OR_EXIT: Final = (BPF_CALL, BPF_EXIT)
_UNCONDITIONAL: Final = (OP_JA, OP_GOTOL)


def structural_problem(insns: Sequence[Insn], privileged: bool,
                       flow: Flow | None = None) -> tuple[int, str] | None:
    """The first structural reason to reject, as (pc, message); None when sound."""
    for p in problems(insns):
        return p.pc, p.message
    flow = flow or Flow(insns)
    if len(flow.starts) > MAX_SUBPROGS:
        return 0, "too many subprograms"  # the kernel's add_subprog
    reached: set[int] = set()
    starts = [0]
    callees = {entry for _, entry in flow.func_refs}
    starts.extend(sorted(callees))
    if privileged:  # back-edges are allowed: only reachability is asked
        reached.update(starts)
        work = list(starts)
        succ_of = flow.succ
        while work:
            for nxt in succ_of[work.pop()]:
                if nxt not in reached:
                    reached.add(nxt)
                    work.append(nxt)
        starts = []
    for start in starts:
        if start in reached:
            continue
        # iterative DFS; colours find back-edges as the kernel's check_cfg does
        colour: dict[int, int] = {}
        stack: list[tuple[int, int]] = [(start, 0)]
        colour[start] = 1
        while stack:
            pc, i = stack.pop()
            succ = flow.succ[pc]
            if i < len(succ):
                stack.append((pc, i + 1))
                nxt = succ[i]
                c = colour.get(nxt, 0)
                if c == 0:
                    colour[nxt] = 1
                    stack.append((nxt, 0))
                elif c == 1 and not privileged:
                    return pc, f"back-edge from insn {pc} to {nxt}"
            else:
                colour[pc] = 2
        reached.update(colour)
    for pc in flow.pcs:
        if pc not in reached:
            return pc, f"unreachable insn {pc}"
    return None


def prune_points(insns: Sequence[Insn], flow: Flow | None = None) -> set[int]:
    """Jump targets, both sides of conditional jumps, function entries, and the
    instructions after calls: where explored states are kept and compared."""
    flow = flow or Flow(insns)
    points = set(flow.starts)
    succ = flow.succ
    for pc in flow.jumps:
        points.update(succ[pc])  # the target, and the fall-through of a conditional one
    for pc in flow.calls:
        points.add(pc + 1)
        insn = insns[pc]
        if insn.src == 0 and insn.imm in CALLBACK_HELPER_IDS:  # is_helper_call
            points.add(pc)  # a callback comes back here: where its loop converges
    return points


def _uses_defs(insn: Insn) -> tuple[int, int]:
    """Registers an instruction reads and writes (conservatively: reads may be more), as
    bitmasks (bit r: register r)."""
    cls, op = insn.cls, insn.op
    x = insn.source == BPF_X
    dst, src = 1 << insn.dst, 1 << insn.src
    if cls == BPF_ALU or cls == BPF_ALU64:
        uses = src if x else 0
        if op != 0xB0:  # everything but MOV reads dst
            uses |= dst
        return uses, dst
    if cls == BPF_LDX:
        return src, dst
    if cls == BPF_ST:
        return dst, 0
    if cls == BPF_STX:
        if insn.mode == BPF_ATOMIC:
            uses, defs = dst | src, 0
            if insn.imm == BPF_CMPXCHG:
                uses |= 1
                defs |= 1
            elif insn.imm & BPF_FETCH:
                defs |= src
            return uses, defs
        return dst | src, 0
    if cls == BPF_LD:
        return 0, dst
    if op == BPF_CALL:
        if is_helper_call(insn):
            h = HELPERS.get(insn.imm)
            nargs = len(h.args) if h else 5
            return ((1 << (nargs + 1)) - 2), _CALL_DEFS  # R1..R<nargs>
        return _CALL_ARGS, _CALL_DEFS
    if op == BPF_EXIT:
        return 1, 0
    if op == BPF_JA:
        return 0, 0
    return (dst | src if x else dst), 0


_CALL_ARGS: Final = 0b111110  # R1-R5
_CALL_DEFS: Final = 0b111111  # R0-R5


def live_regs(insns: Sequence[Insn], flow: Flow | None = None,
              at: Iterable[int] | None = None) -> dict[int, frozenset[int]]:
    """Registers live on entry to each instruction (backward data flow to a fixpoint),
    for the pcs `at` (default: every instruction).

    Each frame has its own registers, so an exit reads only R0 (the caller's R6-R9 live
    in the caller's frame, which pruning compares whole).  Worked on bitmasks, one bit a
    register; each distinct set is made once."""
    flow = flow or Flow(insns)
    # (pc, uses, ~defs), last pc first; an exit reads R0 and nothing after it
    facts: list[tuple[int, int, int]] = []
    seen: dict[int, tuple[int, int]] = {}  # id(insn) -> (uses, ~defs): decode shares slots
    for pc in reversed(flow.pcs):
        insn = insns[pc]
        if insn.opcode == OP_EXIT:
            facts.append((pc, 1, 0))
            continue
        masks = seen.get(id(insn))
        if masks is None:
            uses, defs = _uses_defs(insn)
            masks = seen[id(insn)] = (uses, ~defs)
        facts.append((pc, masks[0], masks[1]))
    live = solve_backward(flow, facts, {}, 0)
    return {pc: _reg_set(live[pc]) for pc in (flow.pcs if at is None else at)}


def solve_backward(flow: Flow, facts: list[tuple[int, int, int]], fixed: dict[int, int],
                   outside: int) -> list[int]:
    """A backward data flow over bitmasks, to its fixpoint: for each (pc, gen, keep) of
    `facts` (last pc first), mask(pc) = (mask of its successors, or-ed) & keep | gen.
    `fixed`: pcs whose mask is given and stays; a successor that is no instruction
    counts as `outside`.  Indexed by pc (a list: two indexings a fact, no lookups)."""
    n = len(flow.insns)
    none, out_of = n, n + 1  # "no successor" (0) and "not an instruction" (outside)
    live = [0] * (n + 2)
    live[out_of] = outside
    for pc, mask in fixed.items():
        live[pc] = mask
    pcs = set(flow.pcs)
    succ = flow.succ
    work: list[tuple[int, int, int, int, int]] = []
    for pc, gen, keep in facts:
        nexts = succ[pc] if keep else ()  # keep 0: the successors do not matter
        a = nexts[0] if nexts else none
        b = nexts[1] if len(nexts) > 1 else none
        work.append((pc, gen, keep, a if a == none or a in pcs else out_of,
                     b if b == none or b in pcs else out_of))
    changed = True
    while changed:
        changed = False
        for pc, gen, keep, a, b in work:
            new = ((live[a] | live[b]) & keep) | gen
            if new != live[pc]:
                live[pc] = new
                changed = True
        # without a backward jump, one pass from the last instruction is the fixpoint
        changed = changed and flow.loops
    return live


@functools.lru_cache(maxsize=1 << 12)
def _reg_set(mask: int) -> frozenset[int]:
    """The registers of a bitmask (each set made once: there are few)."""
    return frozenset(r for r in range(16) if mask >> r & 1)


def funcs_changing_packet(insns: Sequence[Insn], helpers: frozenset[int],
                          flow: Flow | None = None) -> frozenset[int]:
    """Entry pcs of the functions that may move the packet: those calling one of `helpers`
    and, transitively, their callers (a call of a global function invalidates the caller's
    packet pointers when its callee's may, as the kernel's changes_pkt_data)."""
    flow = flow or Flow(insns)
    calls: dict[int, set[int]] = {s: set() for s in flow.starts}
    changing: set[int] = set()
    for pc in flow.calls:
        if is_helper_call(insns[pc]) and insns[pc].imm in helpers:
            changing.add(flow.func_of[pc])
    for pc, entry in flow.func_refs:
        calls[flow.func_of[pc]].add(entry)
    grew = True
    while grew:
        grew = False
        for func, callees in calls.items():
            if func not in changing and callees & changing:
                changing.add(func)
                grew = True
    return frozenset(changing)
