"""Verifier state: registers, stack slots, call frames, acquired references.

Theory of operation.  A `Reg` is immutable; a `Frame` holds eleven of them and the stack of
one function, byte by byte; a `State` is the frames of the current call chain plus the
references a path holds (ring-buffer reservations).  The interpreter copies a `State` when
a path forks (`State.copy()` copies containers, never the immutable registers).

Stack model (the kernel's): 512 bytes per frame, each byte INVALID (never written), MISC
(data of unknown value), ZERO, or SPILL (part of an 8-byte slot holding a register spilled
with its type).  A slot is 8 aligned bytes; `Slot.spilled` is the register when the whole
slot is a spill.  Stack accesses are always naturally aligned (the kernel enforces it for
the stack), so a spill or fill is exactly one slot.

The run's context lives here too: `Env` is what one verification knows besides the state
(the program, the injected profile, the mode, the id generator), and `Reject` is how a
check refuses, with the kernel's wording (the analyzer turns it into a report entry).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, NamedTuple

from vxdp.bpf.btf import FuncProto
from vxdp.bpf.isa import Insn
from vxdp.bpf.profiles import Profile
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier.scalar import Scalar

STACK_SIZE: Final = 512
SLOT: Final = 8
NUM_SLOTS: Final = STACK_SIZE // SLOT
FP: Final = 10
CALLER_SAVED: Final = (1, 2, 3, 4, 5)


class T(Enum):
    """Register types, valued by the name the kernel's log prints."""

    NOT_INIT = "?"
    SCALAR = "scalar"
    CTX = "ctx"
    MAP_PTR = "map_ptr"
    MAP_VALUE = "map_value"
    STACK = "fp"
    PACKET = "pkt"
    PACKET_META = "pkt_meta"
    PACKET_END = "pkt_end"
    RINGBUF_MEM = "ringbuf_mem"
    MEM = "mem"  # a global function's pointer argument (PTR_TO_MEM of its BTF size)
    XDP_SOCK = "xdp_sock"  # an XSKMAP lookup, NULL-checked: struct bpf_xdp_sock
    FUNC = "func"  # a function's address (a callback); `off` is its entry pc

    __hash__ = object.__hash__  # members are singletons; the C-level hash keeps keys fast


PACKET_TYPES: Final = frozenset({T.PACKET, T.PACKET_META})
SIZED_MEM_TYPES: Final = frozenset({T.RINGBUF_MEM, T.MEM})  # memory of `Reg.mem_size` bytes
POINTER_TYPES: Final = frozenset(T) - {T.NOT_INIT, T.SCALAR}
_SCALAR: Final = T.SCALAR  # a global is read far faster than an enum member (see isa.plain)
_UNKNOWN_VAR: Final = Scalar.unknown()
_new: Final = tuple.__new__


class Reg(NamedTuple):
    """One register.  For pointers, `off` is the fixed offset and `var` the variable part
    (a scalar; constant zero for most pointers); for scalars `var` is the value.

    Immutable, as a tuple: the walk makes one for most instructions, and a tuple is made
    several times faster than a frozen dataclass (whose every field is an
    object.__setattr__).  `_replace` gives a copy with some fields changed."""

    type: T
    var: Scalar = _UNKNOWN_VAR
    off: int = 0
    id: int = 0  # scalars: copies share it; nullable/packet pointers: one check refines all
    map: int = -1  # index into Program.maps
    range: int = 0  # packet pointers: bytes known in bounds from (base + var)
    maybe_null: bool = False
    mem_size: int = 0  # ring-buffer and global-argument memory
    ref: int = 0  # reference id a release helper must get back
    frame: int = 0  # stack pointers: the frame they point into

    @property
    def is_pointer(self) -> bool:
        return self.type in POINTER_TYPES

    def with_var(self, var: Scalar) -> Reg:
        """This register with another value (variable part): _replace, fast."""
        return _new(Reg, (self.type, var, self.off, self.id, self.map, self.range,
                          self.maybe_null, self.mem_size, self.ref, self.frame))

    def with_off(self, off: int) -> Reg:
        """This register with another fixed offset (_replace, fast)."""
        return _new(Reg, (self.type, self.var, off, self.id, self.map, self.range,
                          self.maybe_null, self.mem_size, self.ref, self.frame))

    def with_id(self, id: int) -> Reg:
        """This register with another id (_replace, fast)."""
        return _new(Reg, (self.type, self.var, self.off, id, self.map, self.range,
                          self.maybe_null, self.mem_size, self.ref, self.frame))

    def with_range(self, range: int) -> Reg:
        """This register with another packet range (_replace, fast)."""
        return _new(Reg, (self.type, self.var, self.off, self.id, self.map, range,
                          self.maybe_null, self.mem_size, self.ref, self.frame))

    @property
    def is_scalar(self) -> bool:
        return self.type is _SCALAR

    def type_name(self) -> str:
        """As the kernel's reg_type_str: `map_value_or_null`, `pkt`, `fp`, ..."""
        return self.type.value + ("_or_null" if self.maybe_null else "")

    def __str__(self) -> str:
        return self.text(())

    def text(self, maps: Sequence[MapSpec]) -> str:
        """As the kernel's log prints it: `map_value(map=flows,ks=4,vs=8,off=4)`."""
        if self.type is T.SCALAR:
            base = str(self.var)
            if self.id and not self.var.is_const:
                base = base.replace("scalar(", f"scalar(id={self.id},", 1)
            return base
        if self.type is T.NOT_INIT:
            return "?"
        if self.type is T.STACK and self.var.is_const:
            return f"fp{self.off + self.var.value if self.var.value < 1 << 63 else self.off}"
        parts = []
        if self.id:
            parts.append(f"id={self.id}")
        if self.ref:
            parts.append(f"ref_obj_id={self.ref}")
        if self.type in (T.MAP_PTR, T.MAP_VALUE):
            if 0 <= self.map < len(maps):
                spec = maps[self.map]
                parts.append(f"map={spec.name},ks={spec.key_size},vs={spec.value_size}")
            else:
                parts.append(f"map={self.map}")
        if self.off:
            parts.append(f"off={self.off}")
        if self.type in PACKET_TYPES:
            parts.append(f"r={self.range}")
        if self.type is T.RINGBUF_MEM:
            parts.append(f"mem_size={self.mem_size}")
        elif self.type is T.MEM:
            parts.append(f"sz={self.mem_size}")
        if not self.var.is_const or self.var.value:
            parts.append(self.var.fields())
        return f"{self.type_name()}({','.join(p for p in parts if p)})"


NOT_INIT: Final = Reg(T.NOT_INIT)


# Registers are immutable, so the scalar registers a value makes are shared: one lookup
# instead of making a register on most instructions.
@functools.lru_cache(maxsize=1 << 14)
def scalar(value: Scalar | None = None) -> Reg:
    return Reg(_SCALAR, value if value is not None else Scalar.unknown())


@functools.lru_cache(maxsize=1 << 12)
def const(v: int) -> Reg:
    return Reg(_SCALAR, Scalar.const(v))


@functools.lru_cache(maxsize=1 << 12)
def pointer(t: T, **kw: int | bool) -> Reg:
    return Reg(t, Scalar.const(0), **kw)  # type: ignore[arg-type]


class B(Enum):
    """Stack byte kinds (the kernel's STACK_INVALID / MISC / ZERO / SPILL)."""

    INVALID = "?"
    MISC = "m"
    ZERO = "0"
    SPILL = "r"

    __hash__ = object.__hash__


class Slot:
    """8 aligned bytes of stack: the kind of each byte, low address first.  Immutable
    (the hash, cached, aside); a plain class for speed, as Tnum."""

    __slots__ = ("_hash", "bytes", "spilled")

    def __init__(self, bytes: tuple[B, ...] = (B.INVALID,) * SLOT,
                 spilled: Reg | None = None) -> None:
        self.bytes: Final = bytes
        self.spilled: Final = spilled
        self._hash = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Slot):
            return NotImplemented
        return self.spilled == other.spilled and self.bytes == other.bytes

    def __hash__(self) -> int:
        h = self._hash
        if not h:
            h = self._hash = hash((self.bytes, self.spilled)) or 1
        return h

    def __repr__(self) -> str:
        return f"Slot(bytes={self.bytes!r}, spilled={self.spilled!r})"

    def __str__(self) -> str:
        return self.text(())

    def text(self, maps: Sequence[MapSpec]) -> str:
        if self.spilled is not None:
            return self.spilled.text(maps)
        return "".join(b.value for b in reversed(self.bytes))


EMPTY_SLOT: Final = Slot()


class Frame:
    """One function's registers and stack on the current path (compared by identity:
    the walk copies frames, never compares them)."""

    __slots__ = (
        "callback_depth",
        "callsite",
        "depth",
        "in_callback",
        "regs",
        "stack",
        "subprog",
        "written",
    )

    def __init__(self, regs: list[Reg], stack: dict[int, Slot], callsite: int = -1,
                 subprog: int = 0, depth: int = 0, written: int = 0,
                 in_callback: bool = False, callback_depth: int = 0) -> None:
        self.regs = regs
        self.stack = stack  # slot index (0 = bytes fp-8..fp-1) -> slot; absent = EMPTY
        self.callsite = callsite  # pc of the call that made this frame (-1: the main program)
        self.subprog = subprog  # entry pc of the function this frame runs
        self.depth = depth  # deepest stack byte touched, as a positive number
        self.written = written  # slots overwritten whole since the path's last checkpoint
        self.in_callback = in_callback  # a callback's frame: its exit goes back to the call
        self.callback_depth = callback_depth  # callbacks its helper call ran on this path

    def __repr__(self) -> str:
        return (f"Frame(regs={self.regs!r}, stack={self.stack!r}, callsite={self.callsite}, "
                f"subprog={self.subprog}, depth={self.depth}, written={self.written}, "
                f"in_callback={self.in_callback}, callback_depth={self.callback_depth})")

    def copy(self) -> Frame:
        return Frame(list(self.regs), dict(self.stack), self.callsite, self.subprog,
                     self.depth, self.written, self.in_callback, self.callback_depth)

    def slot(self, index: int) -> Slot:
        return self.stack.get(index, EMPTY_SLOT)


class State:
    """The frames of the current call chain and the references the path holds.

    `cur` (the innermost frame) and `regs` (its registers) are read for nearly every
    instruction: plain attributes, set again whenever the frames change, which they do
    only through `push`, `pop` and `adopt` (never assign `frames` directly).  A plain
    class with its own `__init__` rather than a dataclass: one is made on every fork, and
    this is the fastest construction both interpreted and compiled (mypyc)."""

    __slots__ = ("cur", "frames", "refs", "regs")

    def __init__(self, frames: list[Frame], refs: dict[int, int] | None = None) -> None:
        self.frames = frames
        self.refs: dict[int, int] = {} if refs is None else refs  # reference id -> its pc
        cur = self.cur = frames[-1]
        self.regs = cur.regs

    def __repr__(self) -> str:
        return f"State(frames={self.frames!r}, refs={self.refs!r})"

    def push(self, frame: Frame) -> None:
        """A call: `frame` becomes the innermost."""
        self.frames.append(frame)
        self.cur = frame
        self.regs = frame.regs

    def pop(self) -> Frame:
        """A return: the innermost frame goes."""
        frame = self.frames.pop()
        cur = self.cur = self.frames[-1]
        self.regs = cur.regs
        return frame

    def adopt(self, other: State) -> None:
        """Become `other` (its frames and references, shared, not copied)."""
        self.frames = other.frames
        self.refs = other.refs
        self.cur = other.cur
        self.regs = other.regs

    def copy(self) -> State:
        """A copy whose frames and references can change on their own (registers and
        slots, immutable, are shared)."""
        return State([f.copy() for f in self.frames], self.refs.copy())

    def all_regs(self) -> list[tuple[int, int | None, int, Reg]]:
        """(frame, slot or None, regno, reg) for every register and spilled register."""
        out: list[tuple[int, int | None, int, Reg]] = []
        for fi, f in enumerate(self.frames):
            for i, r in enumerate(f.regs):
                out.append((fi, None, i, r))
            for si, s in f.stack.items():
                if s.spilled is not None:
                    out.append((fi, si, -1, s.spilled))
        return out

    def set_reg(self, frame: int, slot: int | None, regno: int, reg: Reg) -> None:
        f = self.frames[frame]
        if slot is None:
            f.regs[regno] = reg
        else:
            f.stack[slot] = Slot(f.stack[slot].bytes, reg)

    def map_regs(self, fn: Callable[[Reg], Reg | None]) -> None:
        """Replace every register r (and spilled register) with fn(r) (None: keep)."""
        for f in self.frames:  # the order of all_regs(): fn may count what it sees
            regs = f.regs
            for regno, r in enumerate(regs):
                new = fn(r)
                if new is not None and new is not r:
                    regs[regno] = new
            stack = f.stack
            for si, s in stack.items():  # values replaced, keys kept: safe while iterating
                if s.spilled is not None:
                    new = fn(s.spilled)
                    if new is not None and new is not s.spilled:
                        stack[si] = Slot(s.bytes, new)

    def map_regs_with_id(self, id: int, fn: Callable[[Reg], Reg | None]) -> None:
        """map_regs over the registers whose id is `id` only, in the same order: for an
        `fn` that leaves every other register alone (it checks the id itself)."""
        for f in self.frames:
            regs = f.regs
            for regno, r in enumerate(regs):
                if r.id == id:
                    new = fn(r)
                    if new is not None and new is not r:
                        regs[regno] = new
            stack = f.stack
            for si, s in stack.items():
                sp = s.spilled
                if sp is not None and sp.id == id:
                    new = fn(sp)
                    if new is not None and new is not sp:
                        stack[si] = Slot(s.bytes, new)


def new_state() -> State:
    """The state at a program's first instruction: R1 = ctx, R10 = fp."""
    regs = [NOT_INIT] * 11
    regs[1] = pointer(T.CTX)
    regs[FP] = pointer(T.STACK, frame=0)
    return State([Frame(regs, {})])


# -- the run's context ------------------------------------------------------------------

BPF_MAX_VAR_OFF: Final = 1 << 29
BPF_MAX_VAR_SIZ: Final = 1 << 29
MAX_PACKET_OFF: Final = 0xFFFF


class Reject(Exception):
    """A rule was broken; the message is the kernel's wording for it."""


@dataclass
class Env:
    program: Program
    insns: list[Insn]
    profile: Profile
    privileged: bool = True
    next_id: int = 0
    subprog_starts: list[int] = field(default_factory=lambda: [0])
    max_depth: dict[int, int] = field(default_factory=dict)  # subprog entry -> stack bytes
    callees: dict[int, set[int]] = field(default_factory=dict)  # subprog -> called subprogs
    pc: int = 0  # the instruction being checked (for references' alloc_insn)
    frames_alive: int = 1  # call frames of the current state (stack pointers beyond: stale)
    # told of every stack read (frame index, slot mask): the analyzer's read marks
    read_hook: Callable[[State, int, int], None] | None = None
    # global functions (entry pc -> BTF prototype): verified on their own, after main
    global_funcs: dict[int, FuncProto] = field(default_factory=dict)
    called_globals: set[int] = field(default_factory=set)
    changes_pkt_data: frozenset[int] = frozenset()  # functions that may move the packet
    note_hook: Callable[[str], None] | None = None  # a line for the log (level 1)
    # told which scalars (frame, regno) and spilled slots (frame, slot) a decision needed
    precise_hook: Callable[[set[tuple[int, int]], set[tuple[int, int]]], None] | None = None
    aux: Any = None  # what the instruction being checked records for backtracking
    # derived from the program's maps (__post_init__):
    # the inner-map templates of its map-in-maps, past its own maps (what a lookup gives)
    inner_specs: list[MapSpec] = field(init=False)
    # map-in-map index -> the map index standing for its inner maps
    inner_map: dict[int, int] = field(init=False)
    # indices of the program's XSKMAPs (a lookup in one gives an xdp_sock)
    xsk_maps: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        maps = self.program.maps
        self.inner_specs = [m.inner for m in maps if m.inner is not None]
        self.inner_map = {}
        for i, m in enumerate(maps):
            if m.inner is not None:
                self.inner_map[i] = len(maps) + len(self.inner_map)
        self.xsk_maps = frozenset(i for i, m in enumerate(maps) if m.type is MapType.XSKMAP)

    def mark_precise(self, state: State, *regnos: int) -> None:
        """The verdict depends on these registers' values (scalars only): mark_chain_precision."""
        if self.precise_hook is None:
            return
        f = len(state.frames) - 1
        regs = {(f, r) for r in regnos if state.regs[r].is_scalar}
        if regs:
            self.precise_hook(regs, set())

    def mark_slot_precise(self, frame: int, slot: int) -> None:
        if self.precise_hook is not None:
            self.precise_hook(set(), {(frame, slot)})

    def note(self, line: str) -> None:
        if self.note_hook is not None:
            self.note_hook(line)

    def mark_read(self, state: State, frame: int, lo: int, hi: int) -> None:
        """Bytes [lo, hi) of a frame's stack were read (negative offsets)."""
        if self.read_hook is None or hi <= lo:
            return
        first, last = (-hi) // SLOT, (-lo - 1) // SLOT
        mask = ((1 << (last + 1)) - 1) & ~((1 << first) - 1)
        self.read_hook(state, frame, mask)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def map_spec(self, index: int) -> MapSpec:
        """The program's map `index`; past them, the inner-map templates of its
        map-in-maps (what a lookup in one gives: `inner_map`)."""
        maps = self.program.maps
        if index < len(maps):
            return maps[index]
        return self.inner_specs[index - len(maps)]

    @property
    def allow_ptr_leaks(self) -> bool:
        return self.privileged

    @property
    def allow_uninit_stack(self) -> bool:
        return self.privileged

    def subprog_of(self, pc: int) -> int:
        """Entry pc of the function that holds `pc`."""
        best = 0
        for s in self.subprog_starts:
            if s <= pc:
                best = s
        return best
