"""State pruning: when a path reaches a state already proven safe, it stops.

`subsumes(old, cur, live)` is the kernel's states_equal in its non-exact form: every
concrete state `cur` stands for is one `old` stands for, looking only at registers that
are live at the instruction (dead ones cannot influence anything) and at the whole stack.
Identifiers (scalar links, NULL-check ids, packet ids, references) must correspond one to
one, so that a check that refines several registers in `old` refines the same set in `cur`.

`state_key` is the exact form, with identifiers renumbered: two states with the same key
are the same state.  The interpreter uses it to find infinite loops (a path that comes
back to a state it has already been in) and as a fast path for pruning.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Final

from vxdp.bpf.isa import plain
from vxdp.bpf.verifier.state import EMPTY_SLOT, NOT_INIT, B, Reg, Slot, State, T

# enum members as plain attributes: read on every instruction (see isa.plain)
B, T = plain(B), plain(T)  # type: ignore[misc]


class _IdMap:
    """A one-to-one correspondence between the ids of two states."""

    def __init__(self) -> None:
        self.fwd: dict[int, int] = {}
        self.back: dict[int, int] = {}

    def check(self, old: int, cur: int) -> bool:
        if not old:
            return True
        if not cur:
            return False
        seen = self.fwd.get(old)
        if seen is None:
            if cur in self.back:
                return False
            self.fwd[old] = cur
            self.back[cur] = old
            return True
        return seen == cur


def regsafe(old: Reg, cur: Reg, ids: _IdMap, precise: bool = True) -> bool:
    """`precise` False: no path from `old` depended on this scalar's value, so any
    scalar will do (the kernel's regsafe for a scalar without its precise mark)."""
    if old.type is T.NOT_INIT:
        return True
    if old.type is not cur.type:
        return False
    if old.type is T.SCALAR:
        if not precise:
            return True
        return old.var.includes(cur.var) and ids.check(old.id, cur.id)
    if (old.off != cur.off or old.map != cur.map or old.maybe_null != cur.maybe_null
            or old.frame != cur.frame or old.mem_size != cur.mem_size):
        return False
    if not old.var.includes(cur.var):
        return False
    if old.type in (T.PACKET, T.PACKET_META) and cur.range < old.range:
        return False
    if not ids.check(old.id, cur.id):
        return False
    return ids.check(old.ref, cur.ref)


_SCALAR_BYTES: Final = {B.SPILL: B.MISC}


def _slot_safe(old: Slot, cur: Slot, ids: _IdMap, uninit_ok: bool, precise: bool = True
               ) -> bool:
    if old == cur:
        return True
    if old.spilled is not None and old.spilled.is_scalar and not precise:
        # a spilled scalar nothing depended on: any data will do
        old = Slot(tuple(_SCALAR_BYTES.get(b, b) for b in old.bytes))
    if old.spilled is not None:
        if cur.spilled is None or old.bytes != cur.bytes:
            if old.spilled.is_scalar and old.spilled.var.var_off.is_unknown and \
                    all(b in (B.MISC, B.ZERO) for b in cur.bytes) and \
                    all(b is B.SPILL for b in old.bytes):
                return True
            return False
        return regsafe(old.spilled, cur.spilled, ids)
    for ob, cb in zip(old.bytes, cur.bytes):
        if ob is B.INVALID:
            continue
        if ob is B.MISC:
            if cb is B.INVALID and not uninit_ok:
                return False
            if cb is B.SPILL and cur.spilled is not None and cur.spilled.is_pointer:
                return False
            continue
        if ob is B.ZERO:
            if cb is B.ZERO:
                continue
            if cb is B.SPILL and cur.spilled is not None and cur.spilled.is_scalar and \
                    cur.spilled.var.is_const and cur.spilled.var.value == 0:
                continue
            return False
        return False
    return True


def subsumes(old: State, cur: State, live: frozenset[int], uninit_ok: bool = True,
             live_slots: int = -1, precise: Collection[tuple[int, int]] | None = None,
             precise_slots: Collection[tuple[int, int]] | None = None) -> bool:
    """`precise`/`precise_slots`: the (frame, regno) and (frame, slot) scalars of `old`
    some path depended on (None: all of them).

    The answer does not depend on the order things are compared in (the ids' one-to-one
    map fails on a conflicting pair whichever comes first), so the cheap cases come
    first: the same register object, an imprecise scalar against a scalar (regsafe's
    answer for it), and only `old`'s stack slots (a slot `old` never wrote is INVALID
    there, which any slot of `cur` satisfies)."""
    old_frames, cur_frames = old.frames, cur.frames
    if len(old_frames) != len(cur_frames) or len(old.refs) != len(cur.refs):
        return False
    ids = _IdMap()
    last = len(old_frames) - 1
    for fi in range(last + 1):
        fo, fc = old_frames[fi], cur_frames[fi]
        if fo.callsite != fc.callsite or fo.in_callback != fc.in_callback:
            return False
        oregs, cregs = fo.regs, fc.regs
        for regno in (_compared_regs(live) if fi == last else _ALL_REGNOS):
            ro, rc = oregs[regno], cregs[regno]
            if ro is rc and not ro.id and not ro.ref:
                continue  # the same register (states share them): safe, no id to map
            if ro.type is _SCALAR_T:
                if rc.type is not _SCALAR_T:
                    return False
                if precise is not None and (fi, regno) not in precise:
                    continue  # nothing depended on its value: any scalar will do
                if not (ro.var.includes(rc.var) and ids.check(ro.id, rc.id)):
                    return False
            elif not regsafe(ro, rc, ids):
                return False
        cstack = fc.stack
        for si, so in fo.stack.items():
            if fi == last and not live_slots >> si & 1:
                continue  # no path from here reads this slot of the current frame
            sc = cstack.get(si, EMPTY_SLOT)
            if so is sc and (so.spilled is None or not (so.spilled.id or so.spilled.ref)):
                continue
            if not _slot_safe(so, sc, ids, uninit_ok,
                              precise_slots is None or (fi, si) in precise_slots):
                return False
    return True


_SCALAR_T: Final = T.SCALAR
_ALL_REGNOS: Final = tuple(range(11))
_COMPARED: Final[dict[frozenset[int], tuple[int, ...]]] = {}


def _compared_regs(live: frozenset[int]) -> tuple[int, ...]:
    """The innermost frame's registers pruning compares: the live ones and R10."""
    regs = _COMPARED.get(live)
    if regs is None:
        regs = _COMPARED[live] = tuple(r for r in range(11) if r in live or r == 10)
    return regs


def clean(state: State, live: frozenset[int], live_slots: int = -1) -> State:
    """A copy with the innermost frame's dead registers and stack slots forgotten
    (clean_live_states)."""
    st = state.copy()
    regs = st.cur.regs
    for regno in range(10):
        if regno not in live:
            regs[regno] = NOT_INIT
    if live_slots != -1:
        stack = st.cur.stack
        for si in [si for si in stack if not live_slots >> si & 1]:
            del stack[si]
    return st


class StateKey:
    """A state's exact identity, hashed once: a key goes in and out of the analyzer's
    dicts several times, and a tuple hashes every register again each time."""

    __slots__ = ("hash", "items")

    def __init__(self, items: tuple[object, ...]) -> None:
        self.items = items
        self.hash = hash(items)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, StateKey):
            return NotImplemented
        return self.hash == other.hash and self.items == other.items


def state_key(state: State) -> Hashable:
    """Exact identity of a state (ids as they are: a loop that renumbers ids every time
    round is not recognised here, and runs into the complexity limit instead)."""
    out: list[object] = []
    for f in state.frames:
        # a callback's rounds differ in how many ran before: the same state again in a
        # later round is the loop going on, not an infinite loop
        out.append((f.callsite, f.in_callback, f.callback_depth))
        out.append(tuple(f.regs))
        if f.stack:
            out.append(tuple(sorted(f.stack.items())))
    if state.refs:
        out.append(tuple(sorted(state.refs)))
    return StateKey(tuple(out))
