"""One virtqueue as the driver owns it: ring areas, buffers, and the notification story.

`DriverQueue` wraps the driver side of a ring engine (`virtio_spec.split` or
`virtio_spec.packed`) with what a driver adds on top: it allocates the ring areas and the
buffers in guest memory (through an `Allocator`), remembers which buffers each chain
carries, copies the device's writes back out when a chain is reaped, and explains every
kick decision from the device's suppression fields (split: used.flags and avail_event,
§2.7.10; packed: the device event area, §2.8.10).

The device is hostile: a used length larger than what the chain could hold is reported
(`Reaped.overrun`) and only the chain's own bytes are read; ring-level violations raise
`RingError` from the engine and leave the ring `broken`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from virtio_spec.errors import LocalProtocolError
from virtio_spec.memory import GuestMemory
from virtio_spec.packed import PackedDriverQueue
from virtio_spec.split import SplitDriverQueue
from virtio_spec.structs import (
    AVAIL_RING_ALIGN,
    DESC_SIZE,
    DESC_TABLE_ALIGN,
    EVENT_SUPPRESS_ALIGN,
    EVENT_SUPPRESS_SIZE,
    PACKED_RING_ALIGN,
    USED_RING_ALIGN,
    RingEventFlags,
    avail_ring_size,
    desc_table_size,
    packed_ring_size,
    used_ring_size,
)

from .events import ChainAdded, KickDecision
from .transport import SetupQueue


class Allocator(Protocol):
    """Guest memory allocation (e.g. `virtio_spec.memory.GuestAllocator`)."""

    def alloc(self, size: int, align: int = 16) -> int: ...

    def free(self, gpa: int) -> None: ...


@dataclass(frozen=True)
class Reaped:
    """A used chain: its id, the length the device reported, the bytes read back (at
    most the chain's writable capacity), and whether the length overran it."""

    id: int
    len: int
    data: bytes
    capacity: int

    @property
    def overrun(self) -> bool:
        return self.len > self.capacity


class DriverQueue:
    """The driver's side of queue `index`."""

    def __init__(self, index: int, name: str, mem: GuestMemory, alloc: Allocator, size: int,
                 *, packed: bool, event_idx: bool, indirect: bool) -> None:
        self.index = index
        self.name = name
        self.mem = mem
        self.alloc = alloc
        self.size = size
        self.packed = packed
        self._blocks: list[int] = []
        self.ring: SplitDriverQueue | PackedDriverQueue
        if packed:
            areas = (self._area(packed_ring_size(size), PACKED_RING_ALIGN),
                     self._area(EVENT_SUPPRESS_SIZE, EVENT_SUPPRESS_ALIGN),
                     self._area(EVENT_SUPPRESS_SIZE, EVENT_SUPPRESS_ALIGN))
            self.ring = PackedDriverQueue(mem, size, *areas, event_idx=event_idx,
                                          indirect=indirect, name=f"q{index}")
        else:
            areas = (self._area(desc_table_size(size), DESC_TABLE_ALIGN),
                     self._area(avail_ring_size(size), AVAIL_RING_ALIGN),
                     self._area(used_ring_size(size), USED_RING_ALIGN))
            self.ring = SplitDriverQueue(mem, size, *areas, event_idx=event_idx,
                                         indirect=indirect, name=f"q{index}")
        self.addresses = areas
        # chain id -> (blocks to free, writable (gpa, len) buffers)
        self._chains: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    def _area(self, size: int, align: int) -> int:
        gpa = self.alloc.alloc(size, align)
        self.mem.translate(gpa, size)[:] = bytes(size)
        self._blocks.append(gpa)
        return gpa

    def setup_request(self) -> SetupQueue:
        """The transport request that hands this ring to the device."""
        return SetupQueue(self.index, self.size, *self.addresses,
                          layout="packed" if self.packed else "split")

    @property
    def free_descriptors(self) -> int:
        return self.ring.free_descriptors

    @property
    def in_flight(self) -> int:
        return len(self._chains)

    def descriptors_needed(self, buffers: int) -> int:
        """Ring descriptors a chain of `buffers` buffers takes (1 when indirect)."""
        return 1 if self.ring.indirect and buffers > 1 else buffers

    def add(self, readable: Sequence[bytes], writable: Sequence[int]) -> ChainAdded:
        """Copy `readable` into fresh buffers, allocate `writable` zeroed buffers, add the
        chain (through an indirect table when negotiated and more than one buffer)."""
        blocks: list[int] = []
        rd: list[tuple[int, int]] = []
        wr: list[tuple[int, int]] = []
        try:
            for data in readable:
                gpa = self.alloc.alloc(len(data))
                blocks.append(gpa)
                self.mem.write(gpa, data)
                rd.append((gpa, len(data)))
            for size in writable:
                gpa = self.alloc.alloc(size)
                blocks.append(gpa)
                self.mem.translate(gpa, size)[:] = bytes(size)
                wr.append((gpa, size))
            table = None
            if self.ring.indirect and len(rd) + len(wr) > 1:
                table = self.alloc.alloc(DESC_SIZE * (len(rd) + len(wr)), DESC_TABLE_ALIGN)
                blocks.append(table)
            head = self.ring.add(rd, wr, indirect_table=table)
        except Exception:
            for gpa in blocks:
                self.alloc.free(gpa)
            raise
        self._chains[head] = (blocks, wr)
        return ChainAdded(self.index, head, tuple(n for _, n in rd), tuple(n for _, n in wr),
                          table is not None)

    def publish(self) -> KickDecision:
        """Publish added chains and decide the kick, explaining the decision."""
        why = self._explain_kick()
        sent = self.ring.publish()
        return KickDecision(self.index, sent, why)

    def _explain_kick(self) -> str:
        ring, mem = self.ring, self.mem
        if isinstance(ring, SplitDriverQueue):
            avail, used = self.addresses[1], self.addresses[2]
            old, new = mem.read_u16(avail + 2), ring.avail_idx
            if ring.event_idx:
                event = mem.read_u16(used + used_ring_size(self.size) - 2)
                return f"EVENT_IDX: avail_event={event}, avail idx {old}->{new} (\u00a72.7.10)"
            flags = mem.read_u16(used)
            state = "set" if flags & 1 else "clear"
            return f"used.flags={flags:#x} (NO_NOTIFY {state}), avail idx {old}->{new} (\u00a72.7.10)"
        area = self.addresses[2]
        off_wrap, flags = mem.read_u16(area), mem.read_u16(area + 2) & 3
        name = RingEventFlags(flags).name if flags in RingEventFlags._value2member_map_ \
            else f"reserved {flags}"
        return (f"device event flags={name} off_wrap={off_wrap:#x}, next avail "
                f"{ring.next_avail} wrap {int(ring.avail_wrap)} (\u00a72.8.10)")

    def reap(self) -> list[Reaped]:
        """Every used chain available now, with the bytes the device wrote; buffers are
        freed.  RingError (ring broken) propagates."""
        out: list[Reaped] = []
        for elem in self.ring.reap():
            blocks, wr = self._chains.pop(elem.id)
            capacity = sum(n for _, n in wr)
            left = min(elem.len, capacity)
            data = bytearray()
            for gpa, size in wr:
                take = min(size, left)
                data += self.mem.read(gpa, take)
                left -= take
            for gpa in blocks:
                self.alloc.free(gpa)
            out.append(Reaped(elem.id, elem.len, bytes(data), capacity))
        return out

    def take_over(self, avail_idx: int, last_used_idx: int,
                  chains: dict[int, tuple[int, int, bool]], blocks: Sequence[int] = ()) -> None:
        """Continue the ring where another driver of this queue left it (a hand-back from
        the C datapath): one-descriptor chains in flight, head -> (gpa, len, writable),
        whose buffers live in `blocks` (freed with the queue, not per chain)."""
        if self.packed or not isinstance(self.ring, SplitDriverQueue):
            raise LocalProtocolError(f"{self.name}: only a split ring can be taken over")
        if self._chains:
            raise LocalProtocolError(f"{self.name}: {len(self._chains)} chains of this "
                                     f"driver still in flight")
        self.ring.take_over(avail_idx, last_used_idx, {head: [head] for head in chains})
        self._chains = {head: ([], [(gpa, n)] if writable else [])
                        for head, (gpa, n, writable) in chains.items()}
        self._blocks.extend(blocks)

    def release(self) -> None:
        """Free every buffer and the ring areas (after a device reset)."""
        for blocks, _ in self._chains.values():
            for gpa in blocks:
                self.alloc.free(gpa)
        self._chains.clear()
        for gpa in self._blocks:
            self.alloc.free(gpa)
        self._blocks.clear()


__all__ = ["Allocator", "DriverQueue", "Reaped"]
