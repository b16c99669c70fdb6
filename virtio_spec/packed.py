"""The packed virtqueue (virtio 1.3 §2.8): a driver side and a device side over guest memory.

Theory of operation.  A packed queue of size Q (1..32768, any value) is one ring of Q
`pvirtq_desc` plus two 4-byte `pvirtq_event_suppress` areas: the driver's (read by the
device, it throttles used-buffer notifications) and the device's (read by the driver, it
throttles kicks).  Both sides walk the ring in order, each with a position (offset) and a
ring wrap counter that starts at 1 and flips each time the position passes the end
(§2.8.1).

The driver makes a descriptor available by setting AVAIL = its wrap counter and USED =
the inverse; a chain is consecutive descriptors linked by NEXT, and the driver exposes the
first descriptor's flags last (§2.8.6), which `PackedDriverQueue` defers to `publish()`.
The buffer id travels in the last descriptor (§2.8.6).  The device pops chains in ring order
(§2.8.12) and writes *one* used descriptor per chain (id, bytes written, AVAIL = USED =
its wrap counter) at its used position, which then skips forward by the chain's length;
the driver skips by the same count, which it remembers per buffer id (§2.8.6).

Hostile input is refused with `RingError` naming the clause, and as on split rings
(see `split`), a queue that refused a chain records the error in `broken` and pops no
more until it is rebuilt after a device reset; chains already popped can still be pushed.

Descriptors are read and written with a precompiled `struct.Struct` at the offsets of
`structs.pvirtq_desc` (le64 addr, le32 len, le16 id, le16 flags): the per-descriptor hot
path, where parsing with construct measured ~250x slower per descriptor.  Flags, which
expose a descriptor to the other side, and the event suppression areas are stored with
one 16-bit store each (`memory.store_le16`), never `struct.pack_into` (see `memory`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from .chain import Chain, ChainBuilder
from .errors import LocalProtocolError, MemoryAccessError, RingError
from .memory import GuestMemory, le16_words, store_le16
from .notify import packed_should_notify
from .queue import DeviceQueueBase, QueueBase, chain_elements
from .split import UsedElem
from .structs import (
    DESC_SIZE,
    EVENT_SUPPRESS_ALIGN,
    EVENT_SUPPRESS_SIZE,
    PACKED_RING_ALIGN,
    RING_EVENT_FLAGS_DESC,
    RING_EVENT_FLAGS_DISABLE,
    RING_EVENT_FLAGS_ENABLE,
    VIRTQ_DESC_F_AVAIL,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_USED,
    VIRTQ_DESC_F_WRITE,
    check_queue_size,
    packed_ring_size,
)

# pvirtq_desc: le64 addr, le32 len, le16 id, le16 flags (16 bytes).
_DESC = struct.Struct("<QIHH")
_ID_LEN = struct.Struct("<IH")  # len and id, the two fields before flags
_U16 = struct.Struct("<H")
_FLAGS_OFF = 14
_NEXT = int(VIRTQ_DESC_F_NEXT)
_WRITE = int(VIRTQ_DESC_F_WRITE)
_INDIRECT = int(VIRTQ_DESC_F_INDIRECT)
_AVAIL = int(VIRTQ_DESC_F_AVAIL)
_USED = int(VIRTQ_DESC_F_USED)
_WRAP_BIT = 1 << 15
_EVENT_FLAGS_MASK = 0x3  # desc_event_flags is 2 bits (§2.8.14)


def avail_flags(wrap: bool) -> int:
    """AVAIL/USED bits marking a descriptor available under wrap counter `wrap` (§2.8.1)."""
    return _AVAIL if wrap else _USED


def used_flags(wrap: bool) -> int:
    """AVAIL/USED bits marking a descriptor used under wrap counter `wrap` (§2.8.1)."""
    return _AVAIL | _USED if wrap else 0


class _PackedRing(QueueBase):
    """The three areas of one packed queue, translated once."""

    def __init__(self, mem: GuestMemory, size: int, ring: int, driver_event: int,
                 device_event: int, *, event_idx: bool, name: str) -> None:
        check_queue_size(size, packed=True)
        self.name = name or "packed queue"
        # virtio 1.3 §2.8.11: the driver MUST align each part as §2.8.10.1 says.
        self._ring, self._driver_event, self._device_event = self._map_areas(mem, (
            ("descriptor ring", ring, PACKED_RING_ALIGN, packed_ring_size(size)),
            ("driver event area", driver_event, EVENT_SUPPRESS_ALIGN, EVENT_SUPPRESS_SIZE),
            ("device event area", device_event, EVENT_SUPPRESS_ALIGN, EVENT_SUPPRESS_SIZE)),
            align_clause="2.8.11", area_clause="2.8")
        self._ring16 = le16_words(self._ring)
        self.mem = mem
        self.size = size
        self.event_idx = event_idx
        self.addresses = (ring, driver_event, device_event)
        self.broken: RingError | None = None

    def _flags(self, slot: int) -> int:
        return int(_U16.unpack_from(self._ring, slot * DESC_SIZE + _FLAGS_OFF)[0])

    def _set_flags(self, slot: int, flags: int) -> None:
        # One 16-bit store: flags expose a descriptor, a reader must never see a value
        # between the old and the new (struct.pack_into clears first; see `memory`).
        store_le16(self._ring16, slot * DESC_SIZE + _FLAGS_OFF, flags)

    @staticmethod
    def _write_event(area: memoryview, off_wrap: int, flags: int) -> None:
        words = le16_words(area)
        store_le16(words, 0, off_wrap)
        store_le16(words, 2, flags)

    @staticmethod
    def _read_event(area: memoryview) -> tuple[int, int]:
        off_wrap, flags = struct.unpack_from("<HH", area)
        return int(off_wrap), int(flags) & _EVENT_FLAGS_MASK

    def _advance(self, off: int, wrap: bool, count: int) -> tuple[int, bool]:
        off += count
        while off >= self.size:
            off -= self.size
            wrap = not wrap
        return off, wrap

class PackedDeviceQueue(_PackedRing, DeviceQueueBase):
    """The device side of a packed virtqueue.

    `start_off`/`start_wrap` give the position of the next descriptor to pop (after
    GET_VRING_BASE or a migration); the used position defaults to the same place.
    """

    def __init__(self, mem: GuestMemory, size: int, ring: int, driver_event: int,
                 device_event: int, *, event_idx: bool = False, indirect: bool = False,
                 start_off: int = 0, start_wrap: bool = True, used_off: int | None = None,
                 used_wrap: bool | None = None, name: str = "") -> None:
        super().__init__(mem, size, ring, driver_event, device_event, event_idx=event_idx,
                         name=name)
        if not 0 <= start_off < size or (used_off is not None and not 0 <= used_off < size):
            raise LocalProtocolError(f"{self.name}: start offset outside the ring")
        self.indirect = indirect
        self.next_avail, self.avail_wrap = start_off, start_wrap
        self.next_used = start_off if used_off is None else used_off
        self.used_wrap = start_wrap if used_wrap is None else used_wrap
        self._advanced = 0  # used slots written since the last interrupt decision
        self._notifications = True
        self._in_flight: dict[int, tuple[int, int]] = {}  # id -> (slots, writable bytes)
        self._in_flight_slots = 0

    @property
    def in_flight(self) -> frozenset[int]:
        """Buffer ids popped and not yet pushed."""
        return frozenset(self._in_flight)

    def _is_avail(self, flags: int, wrap: bool) -> bool:
        # virtio 1.3 §2.8.1: available means AVAIL == wrap counter and USED == its inverse.
        return bool(flags & _AVAIL) == wrap and bool(flags & _USED) != wrap

    def has_available(self) -> bool:
        """True when the descriptor at our position has been made available."""
        self._check_not_broken()
        return self._is_avail(self._flags(self.next_avail), self.avail_wrap)

    def pop(self) -> Chain | None:
        """The next available chain in ring order (§2.8.12), validated, or None."""
        if not self.has_available():
            return None
        try:
            chain = self._walk()
        except RingError as err:
            raise self._break(err) from None
        self.next_avail, self.avail_wrap = self._advance(self.next_avail, self.avail_wrap,
                                                         chain.descriptors)
        self._in_flight[chain.head] = (chain.descriptors, chain.writable_len)
        self._in_flight_slots += chain.descriptors
        if self.event_idx and self._notifications:
            self._ask_for_kick()
        return chain

    def _walk(self) -> Chain:
        first = self.next_avail
        builder = ChainBuilder(self.mem, f"{self.name}: chain at slot {first}",
                               order_clause="2.8.17", addr_clause="2.8.4")
        slot, wrap, count = first, self.avail_wrap, 0
        while True:
            count += 1
            if count > self.size:
                # virtio 1.3 §2.8.17: "A driver MUST NOT create a descriptor list longer
                # than the Queue Size."
                raise RingError(f"{builder.label}: list longer than the queue size "
                                f"{self.size}", "2.8.17")
            addr, length, ident, flags = _DESC.unpack_from(self._ring, slot * DESC_SIZE)
            if count > 1 and not self._is_avail(flags, wrap):
                # virtio 1.3 §2.8.6: flags must be set correctly in all descriptors of the
                # list, and the first is exposed only after the rest.
                raise RingError(f"{builder.label}: slot {slot} continues the list but is "
                                f"not available", "2.8.6")
            if flags & _INDIRECT:
                self._indirect(builder, slot, addr, length, flags, count)
            else:
                builder.add(f"slot {slot}", addr, length, bool(flags & _WRITE))
            if not flags & _NEXT:
                # virtio 1.3 §2.8.6: "Buffer ID is included in the last descriptor".
                if ident in self._in_flight:
                    # virtio 1.3 §2.8.21.1: each buffer takes the next *free* buffer id.
                    raise RingError(f"{builder.label}: buffer id {ident} is already in "
                                    f"flight", "2.8.21.1")
                if self._in_flight_slots + count > self.size:
                    # virtio 1.3 §2.8.17: "A driver MUST make sure there's enough space in
                    # the ring for the whole list before making the first descriptor in
                    # the list available"; slots we have not marked used are not free.
                    raise RingError(f"{builder.label}: {count} slots on top of "
                                    f"{self._in_flight_slots} in flight overrun the ring",
                                    "2.8.17")
                return builder.build(ident, count)
            slot, wrap = self._advance(slot, wrap, 1)

    def _indirect(self, builder: ChainBuilder, slot: int, addr: int, length: int,
                  flags: int, count: int) -> None:
        at = f"{builder.label}: slot {slot}"
        # virtio 1.3 §2.8.19: INDIRECT only if VIRTIO_F_INDIRECT_DESC was negotiated, never
        # in a list linked by NEXT, and no flag but WRITE inside the table.
        if not self.indirect:
            raise RingError(f"{at}: INDIRECT without VIRTIO_F_INDIRECT_DESC", "2.8.19")
        if flags & _NEXT or count > 1:
            raise RingError(f"{at}: INDIRECT in a list linked by NEXT", "2.8.19")
        # virtio 1.3 §2.8.7: the table is desc[len / 16].
        if length == 0 or length % DESC_SIZE:
            raise RingError(f"{at}: indirect table length {length} is not a non-zero "
                            f"multiple of {DESC_SIZE}", "2.8.7")
        entries = length // DESC_SIZE
        if entries > self.size:
            raise RingError(f"{at}: indirect table of {entries} descriptors is longer than "
                            f"the queue size {self.size}", "2.8.19")
        try:
            table = self.mem.translate(addr, length)
        except MemoryAccessError as err:
            raise MemoryAccessError(f"{at}: indirect table: {err}", "2.8.7") from None
        # virtio 1.3 §2.8.7: descriptors in the table are consecutive; WRITE is the only
        # valid flag (NEXT and the id are reserved and ignored), WRITE on the pointer too.
        for j in range(entries):
            e_addr, e_len, _, e_flags = _DESC.unpack_from(table, j * DESC_SIZE)
            if e_flags & _INDIRECT:
                raise RingError(f"{at}: indirect table inside an indirect table", "2.8.19")
            builder.add(f"indirect descriptor {j}", e_addr, e_len, bool(e_flags & _WRITE))

    def push_many(self, items: Iterable[tuple[Chain | int, int]]) -> None:
        """Write one used descriptor per chain, in completion order (§2.8.12)."""
        batch: list[tuple[int, int, int]] = []
        for chain, written in items:
            ident = chain if isinstance(chain, int) else chain.head
            entry = self._in_flight.get(ident)
            if entry is None or any(ident == i for i, _, _ in batch):
                raise LocalProtocolError(f"{self.name}: push of buffer id {ident}, not in "
                                         f"flight")
            slots, capacity = entry
            if not 0 <= written <= capacity:
                raise LocalProtocolError(f"{self.name}: push of buffer id {ident} with "
                                         f"{written} bytes written, its writable part is "
                                         f"{capacity}")
            batch.append((ident, written, slots))
        for ident, written, slots in batch:
            del self._in_flight[ident]
            self._in_flight_slots -= slots
            base = self.next_used * DESC_SIZE
            _ID_LEN.pack_into(self._ring, base + 8, written, ident)
            # virtio 1.3 §2.8.3: WRITE in a used descriptor says data was written; §2.8.1:
            # used means AVAIL = USED = our wrap counter; flags go last, they expose it.
            self._set_flags(self.next_used,
                            used_flags(self.used_wrap) | (_WRITE if written else 0))
            self.next_used, self.used_wrap = self._advance(self.next_used, self.used_wrap,
                                                           slots)
            self._advanced += slots

    def should_interrupt(self) -> bool:
        """Whether to send a used-buffer notification for what was pushed since the last
        call, from the driver's event suppression area (§2.8.10)."""
        off_wrap, flags = self._read_event(self._driver_event)
        advanced, self._advanced = self._advanced, 0
        return packed_should_notify(
            event_idx=self.event_idx, desc_event_flags=flags, off_wrap=off_wrap,
            new_off=self.next_used, new_wrap=self.used_wrap, advanced=advanced,
            queue_size=self.size)

    def _ask_for_kick(self) -> None:
        self._write_event(self._device_event,
                          self.next_avail | (_WRAP_BIT if self.avail_wrap else 0),
                          RING_EVENT_FLAGS_DESC)

    def enable_notifications(self) -> bool:
        """Ask the driver to kick again; True if a chain is already available."""
        self._notifications = True
        if self.event_idx:
            self._ask_for_kick()
        else:
            self._write_event(self._device_event, 0, RING_EVENT_FLAGS_ENABLE)
        return self.has_available()

    def disable_notifications(self) -> None:
        """Tell the driver kicks are not needed (polling)."""
        self._notifications = False
        self._write_event(self._device_event, 0, RING_EVENT_FLAGS_DISABLE)


class PackedDriverQueue(_PackedRing):
    """The driver side of a packed virtqueue.

    The driver owns the ring until it hands the addresses over, so the constructor
    initialises it: both event areas ENABLE, and every descriptor marked as used in the lap
    before its position, which for the default start (offset 0, wrap 1) is the
    zero-initialised ring of §2.8.13.
    """

    def __init__(self, mem: GuestMemory, size: int, ring: int, driver_event: int,
                 device_event: int, *, event_idx: bool = False, indirect: bool = False,
                 start_off: int = 0, start_wrap: bool = True, name: str = "") -> None:
        super().__init__(mem, size, ring, driver_event, device_event, event_idx=event_idx,
                         name=name)
        if not 0 <= start_off < size:
            raise LocalProtocolError(f"{self.name}: start offset {start_off} outside the ring")
        self.indirect = indirect
        self.next_avail, self.avail_wrap = start_off, start_wrap
        self.next_used, self.used_wrap = start_off, start_wrap
        self._free_ids = list(range(size - 1, -1, -1))  # a stack: pop() gives 0 first
        self._free_slots = size
        self._chains: dict[int, list[int]] = {}  # id -> its ring slots
        self._heads: list[tuple[int, int]] = []  # (slot, flags) exposed by publish()
        self._added = 0  # slots added since the last kick decision
        self._interrupts = True
        self._ring[:] = bytes(len(self._ring))
        for slot in range(size):
            # Slots before the start were used in this lap, the rest in the previous one.
            self._set_flags(slot, used_flags(start_wrap if slot < start_off else
                                             not start_wrap))
        self._write_event(self._driver_event, 0, RING_EVENT_FLAGS_ENABLE)
        self._write_event(self._device_event, 0, RING_EVENT_FLAGS_ENABLE)

    @property
    def free_descriptors(self) -> int:
        """Ring slots available for new chains (an indirect chain needs one)."""
        return self._free_slots

    @property
    def in_flight(self) -> frozenset[int]:
        """Buffer ids added and not yet reaped."""
        return frozenset(self._chains)

    def slots_of(self, ident: int) -> tuple[int, ...]:
        """The ring slots of the chain with buffer id `ident`, in order."""
        return tuple(self._chains[ident])

    def add(self, readable: Sequence[tuple[int, int]], writable: Sequence[tuple[int, int]],
            *, indirect_table: int | None = None) -> int:
        """Place a chain of (gpa, len) buffers, readable first; return its buffer id.

        With `indirect_table` (a 16-aligned gpa with room for 16 bytes per buffer) the
        buffers go into an indirect table and the chain takes one ring slot.  The chain
        becomes visible to the device at `publish()`.
        """
        elems = chain_elements(self.name, readable, writable)
        if len(elems) > self.size:
            raise LocalProtocolError(f"{self.name}: a list of {len(elems)} buffers is "
                                     f"longer than the queue size (§2.8.17)")
        if indirect_table is not None:
            if not self.indirect:
                raise LocalProtocolError(f"{self.name}: indirect chain without "
                                         f"VIRTIO_F_INDIRECT_DESC (§2.8.19)")
            table = self.mem.translate(indirect_table, DESC_SIZE * len(elems))
            for j, (addr, length, flags) in enumerate(elems):
                _DESC.pack_into(table, j * DESC_SIZE, addr, length, 0, flags)
            elems = [(indirect_table, DESC_SIZE * len(elems), _INDIRECT)]
        if len(elems) > self._free_slots or not self._free_ids:
            raise LocalProtocolError(f"{self.name}: {len(elems)} slots needed, "
                                     f"{self._free_slots} free")
        ident = self._free_ids.pop()
        slots: list[int] = []
        for j, (addr, length, flags) in enumerate(elems):
            slot = self.next_avail
            full = flags | (_NEXT if j + 1 < len(elems) else 0) | avail_flags(self.avail_wrap)
            _DESC.pack_into(self._ring, slot * DESC_SIZE, addr, length, ident,
                            self._flags(slot))
            if j == 0:
                self._heads.append((slot, full))  # §2.8.6: the first goes last
            else:
                self._set_flags(slot, full)
            slots.append(slot)
            self.next_avail, self.avail_wrap = self._advance(self.next_avail,
                                                             self.avail_wrap, 1)
        self._chains[ident] = slots
        self._free_slots -= len(slots)
        self._added += len(slots)
        return ident

    def publish(self) -> bool:
        """Expose every added chain; True when the device wants a kick (§2.8.10)."""
        for slot, flags in self._heads:
            self._set_flags(slot, flags)
        self._heads.clear()
        off_wrap, flags = self._read_event(self._device_event)
        added, self._added = self._added, 0
        return packed_should_notify(
            event_idx=self.event_idx, desc_event_flags=flags, off_wrap=off_wrap,
            new_off=self.next_avail, new_wrap=self.avail_wrap, advanced=added,
            queue_size=self.size)

    def has_used(self) -> bool:
        """True when the descriptor at our used position has been marked used."""
        self._check_not_broken()
        flags = self._flags(self.next_used)
        # virtio 1.3 §2.8.1: used means AVAIL == USED == the device's wrap counter.
        return bool(flags & _USED) == self.used_wrap and \
            bool(flags & _AVAIL) == bool(flags & _USED)

    def pop_used(self) -> UsedElem | None:
        """Reap one used descriptor and free its slots and id, or None."""
        if not self.has_used():
            return None
        _, length, ident, flags = _DESC.unpack_from(self._ring, self.next_used * DESC_SIZE)
        slots = self._chains.pop(ident, None)
        if slots is None:
            # virtio 1.3 §2.8.6: the used descriptor carries the id of a list we made
            # available; we skip by that list's length.
            raise self._break(RingError(
                f"{self.name}: used slot {self.next_used}: buffer id {ident} is not in "
                f"flight", "2.8.6"))
        self.next_used, self.used_wrap = self._advance(self.next_used, self.used_wrap,
                                                       len(slots))
        self._free_ids.append(ident)
        self._free_slots += len(slots)
        if self.event_idx and self._interrupts:
            self._ask_for_interrupt()
        # virtio 1.3 §2.8.4: len is reserved in a used descriptor without WRITE.
        return UsedElem(ident, length if flags & _WRITE else 0)

    def reap(self) -> list[UsedElem]:
        """Every used descriptor available now."""
        out: list[UsedElem] = []
        while (elem := self.pop_used()) is not None:
            out.append(elem)
        return out

    def _ask_for_interrupt(self) -> None:
        self._write_event(self._driver_event,
                          self.next_used | (_WRAP_BIT if self.used_wrap else 0),
                          RING_EVENT_FLAGS_DESC)

    def enable_interrupts(self) -> bool:
        """Ask for used-buffer notifications; True if used descriptors already wait."""
        self._interrupts = True
        if self.event_idx:
            self._ask_for_interrupt()
        else:
            self._write_event(self._driver_event, 0, RING_EVENT_FLAGS_ENABLE)
        return self.has_used()

    def disable_interrupts(self) -> None:
        """Ask the device not to interrupt."""
        self._interrupts = False
        self._write_event(self._driver_event, 0, RING_EVENT_FLAGS_DISABLE)


__all__ = ["PackedDeviceQueue", "PackedDriverQueue", "avail_flags", "used_flags"]
