"""The split virtqueue (virtio 1.3 §2.7): a driver side and a device side over guest memory.

Theory of operation.  A split queue of size Q (a power of 2, at most 32768) lives in three
areas of guest memory: the descriptor table (16 * Q bytes, written by the driver), the
available ring (driver -> device: flags, idx, ring[Q], used_event) and the used ring
(device -> driver: flags, idx, ring[Q] of (id, len), avail_event).  `idx` fields are
free-running 16-bit counters; slot = idx % Q, distances are `(a - b) & 0xFFFF`.

`SplitDriverQueue` places chains of readable-then-writable buffers (§2.7.13), publishes
them by moving avail.idx forward (§2.7.13.3), decides whether to kick (§2.7.10) and reaps
used elements, returning their descriptors to its free list (§2.7.14).

`SplitDeviceQueue` pops available chains (`pop`, `pop_many`) as validated `Chain`s, pushes
used elements writing each element before idx (§2.7.8.2) and decides whether to interrupt
(§2.7.7.2).

Each side treats the other as hostile.  Everything read from the rings is checked, and
any violation raises `RingError` naming the clause.  Policy after a violation (QEMU's, the
spec's §2.1.2 "needs reset"): the queue records the error in `broken` and refuses to pop
or reap until it is rebuilt after a device reset, because its indices can no longer be
trusted.  Chains already popped can still be pushed, so nothing acknowledged is lost.
Each queue object is independent: one broken queue leaves the others serving.

Descriptors and used elements are read and written with precompiled `struct.Struct`s at
the offsets of `virtq_desc` and `virtq_used_elem` in `structs`: this is the
per-descriptor hot path, where parsing with construct measured ~250x slower per
descriptor.  The 16-bit fields (idx, flags, avail ring entries, used_event, avail_event),
which the other side polls, go through word views (`memory.load_le16`/`store_le16`): one
store each, never `struct.pack_into`, which clears a field before writing it and so shows
a concurrent reader a 0 (see `memory`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .chain import Chain, ChainBuilder
from .errors import LocalProtocolError, MemoryAccessError, RingError
from .memory import GuestMemory, le16_words, load_le16, store_le16
from .notify import split_should_notify
from .queue import DeviceQueueBase, QueueBase, chain_elements
from .structs import (
    AVAIL_RING_ALIGN,
    DESC_SIZE,
    DESC_TABLE_ALIGN,
    USED_ELEM_SIZE,
    USED_RING_ALIGN,
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    avail_ring_size,
    check_queue_size,
    desc_table_size,
    used_ring_size,
)

# virtq_desc: le64 addr, le32 len, le16 flags, le16 next (16 bytes).
_DESC = struct.Struct("<QIHH")
# virtq_used_elem: le32 id, le32 len (8 bytes).
_USED_ELEM = struct.Struct("<II")
_NEXT = int(VIRTQ_DESC_F_NEXT)
_WRITE = int(VIRTQ_DESC_F_WRITE)
_INDIRECT = int(VIRTQ_DESC_F_INDIRECT)
_NO_INTERRUPT = int(VIRTQ_AVAIL_F_NO_INTERRUPT)
_NO_NOTIFY = int(VIRTQ_USED_F_NO_NOTIFY)
# Offsets inside virtq_avail / virtq_used.
_FLAGS, _IDX, _RING = 0, 2, 4


@dataclass(frozen=True, slots=True)
class UsedElem:
    """A used element as the driver reaps it: chain head `id`, bytes written `len`."""

    id: int
    len: int


class _SplitRing(QueueBase):
    """The three areas of one split queue, translated once."""

    def __init__(self, mem: GuestMemory, size: int, desc: int, avail: int, used: int,
                 *, event_idx: bool, name: str) -> None:
        check_queue_size(size, packed=False)
        self.name = name or "split queue"
        # virtio 1.3 §2.7.1: the driver MUST align each part as the table says.
        self._desc, self._avail, self._used = self._map_areas(mem, (
            ("descriptor table", desc, DESC_TABLE_ALIGN, desc_table_size(size)),
            ("available ring", avail, AVAIL_RING_ALIGN, avail_ring_size(size)),
            ("used ring", used, USED_RING_ALIGN, used_ring_size(size))),
            align_clause="2.7.1", area_clause="2.7")
        # The avail and used rings as 16-bit words: every idx, flags, event and avail ring
        # entry is read and written whole (memory.store_le16).
        self._avail16, self._used16 = le16_words(self._avail), le16_words(self._used)
        self.mem = mem
        self.size = size
        self.event_idx = event_idx
        self.addresses = (desc, avail, used)
        self.broken: RingError | None = None
        self._used_event_off = _RING + 2 * size  # avail.used_event
        self._avail_event_off = _RING + USED_ELEM_SIZE * size  # used.avail_event

    def _u16(self, words: memoryview, off: int) -> int:
        return load_le16(words, off)

    def _put16(self, words: memoryview, off: int, value: int) -> None:
        store_le16(words, off, value)

class SplitDeviceQueue(_SplitRing, DeviceQueueBase):
    """The device side of a split virtqueue.

    `last_avail_idx` / `used_idx` let a queue start anywhere (after GET_VRING_BASE or a
    migration); `used_idx` defaults to `last_avail_idx`.  `indirect` and `event_idx` are
    the negotiated VIRTIO_F_INDIRECT_DESC / VIRTIO_F_EVENT_IDX.
    """

    def __init__(self, mem: GuestMemory, size: int, desc: int, avail: int, used: int, *,
                 event_idx: bool = False, indirect: bool = False, last_avail_idx: int = 0,
                 used_idx: int | None = None, name: str = "") -> None:
        super().__init__(mem, size, desc, avail, used, event_idx=event_idx, name=name)
        self.indirect = indirect
        self.last_avail_idx = last_avail_idx & 0xFFFF
        self.used_idx = (self.last_avail_idx if used_idx is None else used_idx) & 0xFFFF
        self._signalled_used = self.used_idx
        self._notifications = True
        self._in_flight: dict[int, int] = {}  # head -> writable bytes

    @property
    def in_flight(self) -> frozenset[int]:
        """Heads popped and not yet pushed."""
        return frozenset(self._in_flight)

    def pending(self) -> int:
        """How many chains the driver has made available that we have not popped."""
        self._check_not_broken()
        avail_idx = self._u16(self._avail16, _IDX)
        count = (avail_idx - self.last_avail_idx) & 0xFFFF
        if count > self.size:
            # virtio 1.3 §2.7.6: idx is where the driver puts the next entry; it can be at
            # most Q ahead of what we consumed (there are only Q descriptors), and
            # §2.7.6.1: "The driver MUST NOT decrement the available idx".
            backwards = count >= 0x8000
            raise self._break(RingError(
                f"{self.name}: avail idx moved from {self.last_avail_idx} to {avail_idx}, "
                + ("backwards" if backwards else
                   f"more than the queue size {self.size} ahead"),
                "2.7.6.1" if backwards else "2.7.6"))
        return count

    def pop(self) -> Chain | None:
        """The next available chain, validated, or None when the ring is empty."""
        if not self.pending():
            return None
        slot = self.last_avail_idx % self.size
        head = self._u16(self._avail16, _RING + 2 * slot)
        try:
            chain = self._walk(head, slot)
        except RingError as err:
            raise self._break(err) from None
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        self._in_flight[head] = chain.writable_len
        if self.event_idx and self._notifications:
            # virtio 1.3 §2.7.10: ask to be kicked when the driver publishes the next one.
            self._put16(self._used16, self._avail_event_off, self.last_avail_idx)
        return chain

    def _walk(self, head: int, slot: int) -> Chain:
        size = self.size
        if head >= size:
            raise RingError(f"{self.name}: avail ring slot {slot}: head {head} is not below "
                            f"the queue size {size}", "2.7.6")
        if head in self._in_flight:
            # virtio 1.3 §2.7.13.1: the driver places buffers into *free* descriptors.
            raise RingError(f"{self.name}: avail ring slot {slot}: head {head} is already "
                            f"in flight", "2.7.13.1")
        builder = ChainBuilder(self.mem, f"{self.name}: chain {head}",
                               order_clause="2.7.4.2", addr_clause="2.7.5")
        table, table_len, in_table = self._desc, size, False
        index, count, budget, budget_clause = head, 0, size, "2.7.5.2"
        direct = 0  # ring descriptors the chain occupies
        while True:
            where = f"indirect descriptor {index}" if in_table else f"descriptor {index}"
            count += 1
            if count > budget:
                raise RingError(f"{self.name}: chain {head} is longer than {budget} "
                                f"descriptors (a loop?)", budget_clause)
            addr, length, flags, nxt = _DESC.unpack_from(table, index * DESC_SIZE)
            if not in_table:
                direct += 1
            if flags & _INDIRECT:
                table, table_len = self._indirect_table(f"{builder.label}: {where}",
                                                        in_table, addr, length, flags)
                # virtio 1.3 §2.7.5.3.1: the whole chain, table included, is at most Q
                # long; a table walked more times than it has entries loops.
                count -= 1
                budget = min(size, count + table_len)
                budget_clause = "2.7.5.3.1"
                in_table, index = True, 0
                continue
            builder.add(where, addr, length, bool(flags & _WRITE))
            if not flags & _NEXT:
                return builder.build(head, direct)
            if nxt >= table_len:
                raise RingError(f"{builder.label}: {where}: next {nxt} is not below the "
                                f"table size {table_len}", "2.7.5")
            index = nxt

    def _indirect_table(self, at: str, in_table: bool, addr: int, length: int,
                        flags: int) -> tuple[memoryview, int]:
        # virtio 1.3 §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag
        # unless the VIRTIO_F_INDIRECT_DESC feature was negotiated", "MUST NOT set the
        # VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor", "MUST NOT set both
        # VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT".
        if not self.indirect:
            raise RingError(f"{at}: INDIRECT without VIRTIO_F_INDIRECT_DESC", "2.7.5.3.1")
        if in_table:
            raise RingError(f"{at}: indirect table inside an indirect table", "2.7.5.3.1")
        if flags & _NEXT:
            raise RingError(f"{at}: INDIRECT combined with NEXT", "2.7.5.3.1")
        # virtio 1.3 §2.7.5.3: the table is desc[len / 16]; §2.7.5.3.1 caps a chain at Q.
        if length == 0 or length % DESC_SIZE:
            raise RingError(f"{at}: indirect table length {length} is not a non-zero "
                            f"multiple of {DESC_SIZE}", "2.7.5.3.1")
        entries = length // DESC_SIZE
        if entries > self.size:
            raise RingError(f"{at}: indirect table of {entries} descriptors is longer than "
                            f"the queue size {self.size}", "2.7.5.3.1")
        # virtio 1.3 §2.7.5.3.2: the device ignores WRITE on the descriptor of the table.
        try:
            return self.mem.translate(addr, length), entries
        except MemoryAccessError as err:
            raise MemoryAccessError(f"{at}: indirect table: {err}", "2.7.5.3") from None

    def push_many(self, items: Iterable[tuple[Chain | int, int]]) -> None:
        """Mark several chains used; one used.idx update for the batch."""
        batch: list[tuple[int, int]] = []
        for chain, written in items:
            head = chain if isinstance(chain, int) else chain.head
            capacity = self._in_flight.get(head)
            if capacity is None or any(head == h for h, _ in batch):
                raise LocalProtocolError(f"{self.name}: push of head {head}, not in flight")
            # virtio 1.3 §2.7.5.1 / §2.7.8.2: len counts bytes written to writable buffers.
            if not 0 <= written <= capacity:
                raise LocalProtocolError(f"{self.name}: push of head {head} with {written} "
                                         f"bytes written, its writable part is {capacity}")
            batch.append((head, written))
        idx = self.used_idx
        for head, written in batch:
            del self._in_flight[head]
            _USED_ELEM.pack_into(self._used, _RING + USED_ELEM_SIZE * (idx % self.size),
                                 head, written)
            idx = (idx + 1) & 0xFFFF
        # virtio 1.3 §2.7.8.2: "The device MUST set len prior to updating the used idx."
        self.used_idx = idx
        self._put16(self._used16, _IDX, idx)

    def should_interrupt(self) -> bool:
        """Whether to send a used-buffer notification for what was pushed since the last
        call (virtio 1.3 §2.7.7.2: NO_INTERRUPT flag, or used_event with EVENT_IDX)."""
        old, self._signalled_used = self._signalled_used, self.used_idx
        return split_should_notify(
            event_idx=self.event_idx, flags=self._u16(self._avail16, _FLAGS),
            suppress_flag=_NO_INTERRUPT, event=self._u16(self._avail16, self._used_event_off),
            new_idx=self.used_idx, old_idx=old)

    def enable_notifications(self) -> bool:
        """Ask the driver to kick again; True if chains are already pending (check them
        before sleeping, or a kick sent meanwhile is lost)."""
        self._notifications = True
        if self.event_idx:
            self._put16(self._used16, self._avail_event_off, self.last_avail_idx)
        else:
            self._put16(self._used16, _FLAGS, self._u16(self._used16, _FLAGS) & ~_NO_NOTIFY)
        return self.pending() > 0

    def disable_notifications(self) -> None:
        """Tell the driver kicks are not needed (polling).  With EVENT_IDX this only stops
        moving avail_event forward, as vhost does; the driver may still kick once."""
        self._notifications = False
        if not self.event_idx:
            self._put16(self._used16, _FLAGS, self._u16(self._used16, _FLAGS) | _NO_NOTIFY)


class SplitDriverQueue(_SplitRing):
    """The driver side of a split virtqueue.

    The driver owns the rings until it hands their addresses to the device, so the
    constructor initialises them: flags 0 and both idx = `start_idx` (0 after reset; any
    value to exercise wrap-around or to resume after migration).
    """

    def __init__(self, mem: GuestMemory, size: int, desc: int, avail: int, used: int, *,
                 event_idx: bool = False, indirect: bool = False, start_idx: int = 0,
                 name: str = "") -> None:
        super().__init__(mem, size, desc, avail, used, event_idx=event_idx, name=name)
        self.indirect = indirect
        start_idx &= 0xFFFF
        self.avail_idx = start_idx  # shadow: entries written, published or not
        self.last_used_idx = start_idx
        self._kicked = start_idx
        self._free = list(range(size - 1, -1, -1))  # a stack: pop() gives 0 first
        self._chains: dict[int, list[int]] = {}  # head -> its descriptors
        self._interrupts = True
        for area, off in ((self._avail16, _FLAGS), (self._used16, _FLAGS),
                          (self._avail16, self._used_event_off),
                          (self._used16, self._avail_event_off)):
            self._put16(area, off, 0)
        self._put16(self._avail16, _IDX, start_idx)
        self._put16(self._used16, _IDX, start_idx)
        if event_idx:
            self._put16(self._avail16, self._used_event_off, start_idx)

    @property
    def free_descriptors(self) -> int:
        """Descriptors available for new chains (an indirect chain needs one)."""
        return len(self._free)

    @property
    def in_flight(self) -> frozenset[int]:
        """Heads added and not yet reaped."""
        return frozenset(self._chains)

    def descriptors_of(self, head: int) -> tuple[int, ...]:
        """The ring descriptors of the chain at `head`, in chain order."""
        return tuple(self._chains[head])

    def add(self, readable: Sequence[tuple[int, int]], writable: Sequence[tuple[int, int]],
            *, indirect_table: int | None = None) -> int:
        """Place a chain of (gpa, len) buffers, readable first, and return its head.

        With `indirect_table` (a 16-aligned gpa with room for 16 bytes per buffer) the
        buffers go into an indirect table and the chain takes one ring descriptor.  The
        chain is visible to the device only after `publish()`.
        """
        elems = chain_elements(self.name, readable, writable)
        if indirect_table is not None:
            # virtio 1.3 §2.7.5.3.1: INDIRECT only if negotiated; chain at most Q long.
            if not self.indirect:
                raise LocalProtocolError(f"{self.name}: indirect chain without "
                                         f"VIRTIO_F_INDIRECT_DESC")
            if len(elems) > self.size:
                raise LocalProtocolError(f"{self.name}: indirect chain of {len(elems)} "
                                         f"buffers is longer than the queue size")
            table = self.mem.translate(indirect_table, DESC_SIZE * len(elems))
            for i, (addr, length, flags) in enumerate(elems):
                more = _NEXT if i + 1 < len(elems) else 0
                _DESC.pack_into(table, i * DESC_SIZE, addr, length, flags | more, i + 1)
            elems = [(indirect_table, DESC_SIZE * len(elems), _INDIRECT)]
        if len(elems) > len(self._free):
            raise LocalProtocolError(f"{self.name}: {len(elems)} descriptors needed, "
                                     f"{len(self._free)} free")
        ids = [self._free.pop() for _ in elems]
        for i, (addr, length, flags) in enumerate(elems):
            nxt = ids[i + 1] if i + 1 < len(ids) else 0
            more = _NEXT if i + 1 < len(ids) else 0
            _DESC.pack_into(self._desc, ids[i] * DESC_SIZE, addr, length, flags | more, nxt)
        head = ids[0]
        self._chains[head] = ids
        self._put16(self._avail16, _RING + 2 * (self.avail_idx % self.size), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return head

    def publish(self) -> bool:
        """Make every added chain visible; True when the device wants a kick (§2.7.10)."""
        # virtio 1.3 §2.7.13.3: idx moves after the ring entries are written; §2.7.6.1: it
        # only ever moves forward.
        self._put16(self._avail16, _IDX, self.avail_idx)
        old, self._kicked = self._kicked, self.avail_idx
        return split_should_notify(
            event_idx=self.event_idx, flags=self._u16(self._used16, _FLAGS),
            suppress_flag=_NO_NOTIFY, event=self._u16(self._used16, self._avail_event_off),
            new_idx=self.avail_idx, old_idx=old)

    def has_used(self) -> bool:
        """True when the device has marked chains used that we have not reaped."""
        return self._used_count() > 0

    def _used_count(self) -> int:
        self._check_not_broken()
        used_idx = self._u16(self._used16, _IDX)
        count = (used_idx - self.last_used_idx) & 0xFFFF
        if count > len(self._chains):
            # virtio 1.3 §2.7.8: each used element returns one chain the driver added.
            raise self._break(RingError(
                f"{self.name}: used idx moved from {self.last_used_idx} to {used_idx}, "
                f"past the {len(self._chains)} chains in flight", "2.7.8"))
        return count

    def pop_used(self) -> UsedElem | None:
        """Reap one used element and free its descriptors, or None."""
        if not self._used_count():
            return None
        slot = self.last_used_idx % self.size
        head, length = _USED_ELEM.unpack_from(self._used, _RING + USED_ELEM_SIZE * slot)
        ids = self._chains.pop(head, None)
        if ids is None:
            raise self._break(RingError(
                f"{self.name}: used ring slot {slot}: id {head} is not a chain in flight",
                "2.7.8"))
        self._free.extend(reversed(ids))
        self.last_used_idx = (self.last_used_idx + 1) & 0xFFFF
        if self.event_idx and self._interrupts:
            # virtio 1.3 §2.7.7: interrupt us when the next element is used.
            self._put16(self._avail16, self._used_event_off, self.last_used_idx)
        return UsedElem(head, length)

    def reap(self) -> list[UsedElem]:
        """Every used element available now."""
        out: list[UsedElem] = []
        while (elem := self.pop_used()) is not None:
            out.append(elem)
        return out

    def take_over(self, avail_idx: int, last_used_idx: int,
                  chains: Mapping[int, Sequence[int]]) -> None:
        """Continue a ring another driver ran (a hand-back), without writing the rings:
        its shadow avail idx (= the published one), the next used index it would have
        reaped, and its chains in flight (head -> descriptors in chain order)."""
        count = (avail_idx - last_used_idx) & 0xFFFF
        taken = [d for ids in chains.values() for d in ids]
        busy = set(taken)
        if count != len(chains) or len(busy) != len(taken) \
                or any(not 0 <= d < self.size for d in taken):
            raise LocalProtocolError(f"{self.name}: avail idx {avail_idx} and last used idx "
                                     f"{last_used_idx} leave {count} chains in flight, "
                                     f"{len(chains)} given with {len(taken)} descriptors")
        self.avail_idx = self._kicked = avail_idx & 0xFFFF
        self.last_used_idx = last_used_idx & 0xFFFF
        self._free = [d for d in range(self.size - 1, -1, -1) if d not in busy]
        self._chains = {head: list(ids) for head, ids in chains.items()}
        self._interrupts = True

    def enable_interrupts(self) -> bool:
        """Ask for used-buffer notifications; True if used elements already wait."""
        self._interrupts = True
        if self.event_idx:
            self._put16(self._avail16, self._used_event_off, self.last_used_idx)
        self._put16(self._avail16, _FLAGS, self._u16(self._avail16, _FLAGS) & ~_NO_INTERRUPT)
        return self.has_used()

    def disable_interrupts(self) -> None:
        """Ask the device not to interrupt: NO_INTERRUPT in avail.flags, or with EVENT_IDX
        used_event parked a full lap behind (the flag is then not ours to set)."""
        self._interrupts = False
        if self.event_idx:
            # virtio 1.3 §2.7.7.1: with EVENT_IDX the driver MUST set flags to 0
            self._put16(self._avail16, self._used_event_off, self.last_used_idx - 1)
        else:
            self._put16(self._avail16, _FLAGS, self._u16(self._avail16, _FLAGS) | _NO_INTERRUPT)


__all__ = ["SplitDeviceQueue", "SplitDriverQueue", "UsedElem"]
