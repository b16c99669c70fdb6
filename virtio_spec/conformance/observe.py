"""Lenient ring observers: what a chain looks like in memory, rules broken or not.

The ring engines (`split`, `packed`) refuse a chain at the first broken rule, which is
right for a device but wrong for a checker: a check of §2.7.4.2 wants to see the chain
whose writable descriptor comes first, and a check of §2.7.5.3.1 wants to see the nested
indirect table.  These walkers read the descriptors exactly as they are, never raise on
peer data, and record what they met (`ObservedChain.problems`): a loop (more descriptors
than the budget), a `next` out of range, an indirect table they could not read.

Split: `walk_split(mem, desc_table, size, head)` follows NEXT through the table and one
level of indirect table.  Packed: `walk_packed(mem, ring, size, off, wrap)` reads the
available descriptors from (off, wrap) to the end of the chain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..memory import GuestMemory
from ..structs import (
    DESC_SIZE,
    VIRTQ_DESC_F_AVAIL,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_USED,
    VIRTQ_DESC_F_WRITE,
)

_DESC = struct.Struct("<QIHH")
_NEXT, _WRITE, _INDIRECT = int(VIRTQ_DESC_F_NEXT), int(VIRTQ_DESC_F_WRITE), int(
    VIRTQ_DESC_F_INDIRECT)
_AVAIL, _USED = int(VIRTQ_DESC_F_AVAIL), int(VIRTQ_DESC_F_USED)


@dataclass(frozen=True, slots=True)
class RawDesc:
    """One descriptor as read: `table` is "ring" or "indirect"; `next_or_id` is `next`
    (split) or the buffer id (packed)."""

    table: str
    index: int
    addr: int
    len: int
    flags: int
    next_or_id: int

    @property
    def writable(self) -> bool:
        return bool(self.flags & _WRITE)

    @property
    def indirect(self) -> bool:
        return bool(self.flags & _INDIRECT)

    @property
    def has_next(self) -> bool:
        return bool(self.flags & _NEXT)


@dataclass(frozen=True)
class ObservedChain:
    """A chain as the driver laid it out; `descs` in walk order, indirect pointers
    included; `problems` names what the walker met."""

    queue: int
    head: int
    descs: tuple[RawDesc, ...]
    problems: tuple[str, ...] = ()
    #: The readable bytes as they were when the chain was observed (drivers reuse
    #: buffers, so reading them later may show a newer request).
    data: bytes = b""

    @property
    def buffers(self) -> tuple[RawDesc, ...]:
        """The descriptors that describe buffers (not the indirect-table pointers)."""
        return tuple(d for d in self.descs if not d.indirect)

    @property
    def readable(self) -> tuple[RawDesc, ...]:
        return tuple(d for d in self.buffers if not d.writable)

    @property
    def writable(self) -> tuple[RawDesc, ...]:
        return tuple(d for d in self.buffers if d.writable)

    @property
    def total_len(self) -> int:
        return sum(d.len for d in self.buffers)

    def read(self, mem: GuestMemory, *, writable: bool = False) -> bytes:
        """The bytes of the readable (or writable) buffers, gathered; unreadable
        buffers contribute nothing."""
        out = bytearray()
        for d in (self.writable if writable else self.readable):
            if mem.contains(d.addr, d.len):
                out += mem.read(d.addr, d.len)
        return bytes(out)


def _read_desc(mem: GuestMemory, gpa: int, table: str, index: int) -> RawDesc | None:
    if not mem.contains(gpa, DESC_SIZE):
        return None
    addr, length, a, b = _DESC.unpack_from(mem.translate(gpa, DESC_SIZE))
    return RawDesc(table, index, addr, length, a, b)


def walk_split(mem: GuestMemory, desc_table: int, size: int, head: int, *,
               queue: int = 0) -> ObservedChain:
    """The chain at `head` of a split queue's descriptor table (split layout: le16 flags
    then le16 next)."""
    descs: list[RawDesc] = []
    problems: list[str] = []
    if not 0 <= head < size:
        return ObservedChain(queue, head, (), (f"head {head} is not below the queue size "
                                               f"{size}",))
    table_gpa, table_len, table_name = desc_table, size, "ring"
    index, walked, budget = head, 0, size
    while True:
        walked += 1
        if walked > budget:
            problems.append(f"more than {budget} descriptors: a loop")
            break
        raw = _read_desc(mem, table_gpa + DESC_SIZE * index, table_name, index)
        if raw is None:
            problems.append(f"{table_name} descriptor {index} is outside guest memory")
            break
        # split layout: flags at +12, next at +14 (RawDesc keeps them as read).
        descs.append(raw)
        if raw.indirect:
            if table_name == "indirect":
                problems.append(f"indirect descriptor {index} points at a nested table")
                break
            if raw.len % DESC_SIZE or not raw.len or not mem.contains(raw.addr, raw.len):
                problems.append(f"indirect table {raw.addr:#x}+{raw.len} is unusable")
                break
            if raw.has_next:
                problems.append(f"descriptor {index} has INDIRECT and NEXT")
            table_gpa, table_len, table_name = raw.addr, raw.len // DESC_SIZE, "indirect"
            index, walked, budget = 0, 0, table_len
            continue
        if not raw.has_next:
            break
        if raw.next_or_id >= table_len:
            problems.append(f"{table_name} descriptor {index}: next {raw.next_or_id} is out "
                            f"of range")
            break
        index = raw.next_or_id
    return ObservedChain(queue, head, tuple(descs), tuple(problems))


def packed_is_avail(flags: int, wrap: bool) -> bool:
    """AVAIL == wrap and USED != wrap (virtio 1.3 §2.8.1)."""
    return bool(flags & _AVAIL) == wrap and bool(flags & _USED) != wrap


def walk_packed(mem: GuestMemory, ring: int, size: int, off: int, wrap: bool, *,
                queue: int = 0) -> tuple[ObservedChain | None, int, bool]:
    """The available chain starting at ring slot `off` under wrap counter `wrap`, and the
    position after it; (None, off, wrap) when that slot is not available."""
    descs: list[RawDesc] = []
    problems: list[str] = []
    slot, w = off, wrap
    while True:
        raw = _read_desc(mem, ring + DESC_SIZE * slot, "ring", slot)
        if raw is None:
            return None, off, wrap
        # packed layout: le16 id at +12, le16 flags at +14: swap what RawDesc read.
        raw = RawDesc("ring", slot, raw.addr, raw.len, raw.next_or_id, raw.flags)
        if not packed_is_avail(raw.flags, w):
            if not descs:
                return None, off, wrap
            problems.append(f"slot {slot}: chain continues into a descriptor that is not "
                            f"available")
            break
        descs.append(raw)
        slot += 1
        if slot == size:
            slot, w = 0, not w
        if raw.indirect and mem.contains(raw.addr, raw.len) and raw.len % DESC_SIZE == 0:
            for i in range(raw.len // DESC_SIZE):
                entry = _read_desc(mem, raw.addr + DESC_SIZE * i, "indirect", i)
                if entry is not None:
                    descs.append(RawDesc("indirect", i, entry.addr, entry.len,
                                         entry.next_or_id, entry.flags))
        if not raw.has_next:
            break
        if len(descs) > size:
            problems.append(f"more than {size} descriptors: a loop")
            break
    head_id = descs[-1].next_or_id if descs else 0
    ring_descs = [d for d in descs if d.table == "ring"]
    if ring_descs:
        head_id = ring_descs[-1].next_or_id
    return ObservedChain(queue, head_id, tuple(descs), tuple(problems)), slot, w


__all__ = ["ObservedChain", "RawDesc", "packed_is_avail", "walk_packed", "walk_split"]
