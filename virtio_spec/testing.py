"""Test helpers for anyone driving a virtio device: guest memory and driver-side mock queues.

In the spirit of rust-vmm's `mock.rs`: a device test builds a `MockSplitQueue` (or
`MockPackedQueue`), adds chains as plain bytes and sizes, hands the queue's addresses to
the device side, and reaps what the device wrote, without assembling a ring by hand::

    mem = guest_memory()
    q = MockSplitQueue(mem, size=8)
    head = q.add_chain(readable=[b"request"], writable=[64])
    dev = q.device()                          # the SplitDeviceQueue over the same rings
    chain = dev.pop(); dev.push(chain, chain.write(b"reply"))
    assert q.used() == [Used(head, 5, b"reply")]

The raw `poke_*` helpers write single ring fields so hostile-peer tests can corrupt a ring
the way a broken or malicious driver would.  Nothing here imports a test framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .memory import GuestAllocator, GuestMemory
from .packed import PackedDeviceQueue, PackedDriverQueue
from .split import SplitDeviceQueue, SplitDriverQueue
from .structs import (
    AVAIL_RING_ALIGN,
    DESC_SIZE,
    DESC_TABLE_ALIGN,
    EVENT_SUPPRESS_ALIGN,
    EVENT_SUPPRESS_SIZE,
    PACKED_RING_ALIGN,
    USED_ELEM_SIZE,
    USED_RING_ALIGN,
    avail_ring_size,
    desc_table_size,
    packed_ring_size,
    used_ring_size,
)

#: Where `guest_memory()` puts its first region by default (not 0, to catch "gpa 0" bugs).
DEFAULT_BASE = 0x10_0000


def guest_memory(size: int = 1 << 20, base: int = DEFAULT_BASE, regions: int = 1,
                 gap: int = 0x1000) -> GuestMemory:
    """Guest memory of `regions` bytearray regions of `size` bytes each, `gap` apart."""
    return GuestMemory([(base + i * (size + gap), bytearray(size)) for i in range(regions)])


@dataclass(frozen=True, slots=True)
class Used:
    """A reaped chain: `id` (split head / packed buffer id), `len` as the device reported
    it, and `data`, the first min(len, capacity) bytes of its writable buffers."""

    id: int
    len: int
    data: bytes


class _MockQueue:
    """What both mocks share: the allocator and per-chain buffer bookkeeping."""

    driver: Any

    def __init__(self, mem: GuestMemory | None, allocator: GuestAllocator | None) -> None:
        self.mem = mem if mem is not None else guest_memory()
        self.alloc = allocator if allocator is not None else GuestAllocator(self.mem)
        self.kicks = 0
        # id -> (every block to free, writable (gpa, len) buffers)
        self._buffers: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    def _place(self, readable: Sequence[bytes], writable: Sequence[int]) -> tuple[
            list[int], list[tuple[int, int]], list[tuple[int, int]]]:
        blocks: list[int] = []
        rd: list[tuple[int, int]] = []
        wr: list[tuple[int, int]] = []
        for data in readable:
            gpa = self.alloc.alloc(len(data))
            self.mem.write(gpa, data)
            blocks.append(gpa)
            rd.append((gpa, len(data)))
        for size in writable:
            gpa = self.alloc.alloc(size)
            self.mem.translate(gpa, size)[:] = bytes(size)
            blocks.append(gpa)
            wr.append((gpa, size))
        return blocks, rd, wr

    def add_chain(self, readable: Sequence[bytes] = (), writable: Sequence[int] = (), *,
                  indirect: bool = False, publish: bool = True) -> int:
        """Copy `readable` into fresh buffers, allocate zeroed `writable` buffers of the
        given sizes, add them as one chain and (by default) publish it.  Returns the id
        the device will push back (split: head index; packed: buffer id)."""
        blocks, rd, wr = self._place(readable, writable)
        table = None
        if indirect:
            table = self.alloc.alloc(DESC_SIZE * (len(rd) + len(wr)), DESC_TABLE_ALIGN)
            blocks.append(table)
        try:
            ident = int(self.driver.add(rd, wr, indirect_table=table))
        except Exception:
            for gpa in blocks:
                self.alloc.free(gpa)
            raise
        self._buffers[ident] = (blocks, wr)
        if publish:
            self.publish()
        return ident

    def publish(self) -> bool:
        """Publish added chains; True (and `kicks` counts it) when a kick is due."""
        kick = bool(self.driver.publish())
        self.kicks += kick
        return kick

    def used(self) -> list[Used]:
        """Reap every used chain with the bytes the device wrote, freeing its buffers."""
        out: list[Used] = []
        for elem in self.driver.reap():
            blocks, wr = self._buffers.pop(elem.id)
            left = elem.len
            data = bytearray()
            for gpa, size in wr:
                take = min(size, left)
                data += self.mem.read(gpa, take)
                left -= take
            for gpa in blocks:
                self.alloc.free(gpa)
            out.append(Used(elem.id, elem.len, bytes(data)))
        return out


class MockSplitQueue(_MockQueue):
    """A driver-side split queue in its own freshly allocated rings."""

    def __init__(self, mem: GuestMemory | None = None, size: int = 256, *,
                 event_idx: bool = False, indirect: bool = False, start_idx: int = 0,
                 allocator: GuestAllocator | None = None) -> None:
        super().__init__(mem, allocator)
        self.size = size
        self.desc = self.alloc.alloc(desc_table_size(size), DESC_TABLE_ALIGN)
        self.avail = self.alloc.alloc(avail_ring_size(size), AVAIL_RING_ALIGN)
        self.used_ring = self.alloc.alloc(used_ring_size(size), USED_RING_ALIGN)
        self.driver: SplitDriverQueue = SplitDriverQueue(
            self.mem, size, self.desc, self.avail, self.used_ring, event_idx=event_idx,
            indirect=indirect, start_idx=start_idx)

    @property
    def addresses(self) -> tuple[int, int, int]:
        """(descriptor table, available ring, used ring) guest-physical addresses."""
        return self.desc, self.avail, self.used_ring

    def device(self, **overrides: Any) -> SplitDeviceQueue:
        """A device side over these rings with the same features and starting index."""
        kwargs: dict[str, Any] = dict(event_idx=self.driver.event_idx,
                                      indirect=self.driver.indirect,
                                      last_avail_idx=self.driver.last_used_idx)
        kwargs.update(overrides)
        return SplitDeviceQueue(self.mem, self.size, *self.addresses, **kwargs)

    # -- raw pokes, for hostile-driver tests -------------------------------------------

    def poke_desc(self, index: int, *, addr: int | None = None, len: int | None = None,
                  flags: int | None = None, next: int | None = None) -> None:
        """Overwrite fields of descriptor `index` in the table."""
        base = self.desc + DESC_SIZE * index
        if addr is not None:
            self.mem.write_u64(base, addr)
        if len is not None:
            self.mem.write_u32(base + 8, len)
        if flags is not None:
            self.mem.write_u16(base + 12, flags)
        if next is not None:
            self.mem.write_u16(base + 14, next)

    def peek_desc(self, index: int) -> tuple[int, int, int, int]:
        """(addr, len, flags, next) of descriptor `index`."""
        base = self.desc + DESC_SIZE * index
        return (self.mem.read_u64(base), self.mem.read_u32(base + 8),
                self.mem.read_u16(base + 12), self.mem.read_u16(base + 14))

    def raw_table(self, descs: Sequence[tuple[int, int, int, int]]) -> int:
        """Write an indirect table of (addr, len, flags, next) entries into fresh guest
        memory and return its address (for hand-made, possibly hostile, chains)."""
        gpa = self.alloc.alloc(DESC_SIZE * max(len(descs), 1), DESC_TABLE_ALIGN)
        for i, (addr, length, flags, nxt) in enumerate(descs):
            base = gpa + DESC_SIZE * i
            self.mem.write_u64(base, addr)
            self.mem.write_u32(base + 8, length)
            self.mem.write_u16(base + 12, flags)
            self.mem.write_u16(base + 14, nxt)
        return gpa

    def poke_avail_idx(self, value: int) -> None:
        """Write avail.idx."""
        self.mem.write_u16(self.avail + 2, value & 0xFFFF)

    def poke_avail_ring(self, slot: int, head: int) -> None:
        """Write avail.ring[slot]."""
        self.mem.write_u16(self.avail + 4 + 2 * slot, head)

    def poke_used_idx(self, value: int) -> None:
        """Write used.idx (a hostile *device*, for driver-side tests)."""
        self.mem.write_u16(self.used_ring + 2, value & 0xFFFF)

    def poke_used_elem(self, slot: int, id: int, len: int) -> None:
        """Write used.ring[slot] (a hostile device)."""
        self.mem.write_u32(self.used_ring + 4 + USED_ELEM_SIZE * slot, id)
        self.mem.write_u32(self.used_ring + 8 + USED_ELEM_SIZE * slot, len)

    def used_event(self) -> int:
        """avail.used_event as the driver last wrote it."""
        return self.mem.read_u16(self.avail + 4 + 2 * self.size)

    def avail_event(self) -> int:
        """used.avail_event as the device last wrote it."""
        return self.mem.read_u16(self.used_ring + 4 + USED_ELEM_SIZE * self.size)


class MockPackedQueue(_MockQueue):
    """A driver-side packed queue in its own freshly allocated ring and event areas."""

    def __init__(self, mem: GuestMemory | None = None, size: int = 256, *,
                 event_idx: bool = False, indirect: bool = False, start_off: int = 0,
                 start_wrap: bool = True, allocator: GuestAllocator | None = None) -> None:
        super().__init__(mem, allocator)
        self.size = size
        self.ring = self.alloc.alloc(packed_ring_size(size), PACKED_RING_ALIGN)
        self.driver_event = self.alloc.alloc(EVENT_SUPPRESS_SIZE, EVENT_SUPPRESS_ALIGN)
        self.device_event = self.alloc.alloc(EVENT_SUPPRESS_SIZE, EVENT_SUPPRESS_ALIGN)
        self.driver: PackedDriverQueue = PackedDriverQueue(
            self.mem, size, self.ring, self.driver_event, self.device_event,
            event_idx=event_idx, indirect=indirect, start_off=start_off,
            start_wrap=start_wrap)

    @property
    def addresses(self) -> tuple[int, int, int]:
        """(descriptor ring, driver event area, device event area) addresses."""
        return self.ring, self.driver_event, self.device_event

    def device(self, **overrides: Any) -> PackedDeviceQueue:
        """A device side over this ring with the same features and starting position."""
        kwargs: dict[str, Any] = dict(event_idx=self.driver.event_idx,
                                      indirect=self.driver.indirect,
                                      start_off=self.driver.next_used,
                                      start_wrap=self.driver.used_wrap)
        kwargs.update(overrides)
        return PackedDeviceQueue(self.mem, self.size, *self.addresses, **kwargs)

    def slots_of(self, ident: int) -> tuple[int, ...]:
        """Ring slots the chain with buffer id `ident` occupies, in order."""
        return self.driver.slots_of(ident)

    def poke_desc(self, slot: int, *, addr: int | None = None, len: int | None = None,
                  id: int | None = None, flags: int | None = None) -> None:
        """Overwrite fields of the descriptor in ring `slot`."""
        base = self.ring + DESC_SIZE * slot
        if addr is not None:
            self.mem.write_u64(base, addr)
        if len is not None:
            self.mem.write_u32(base + 8, len)
        if id is not None:
            self.mem.write_u16(base + 12, id)
        if flags is not None:
            self.mem.write_u16(base + 14, flags)

    def peek_desc(self, slot: int) -> tuple[int, int, int, int]:
        """(addr, len, id, flags) of the descriptor in ring `slot`."""
        base = self.ring + DESC_SIZE * slot
        return (self.mem.read_u64(base), self.mem.read_u32(base + 8),
                self.mem.read_u16(base + 12), self.mem.read_u16(base + 14))

    def raw_table(self, descs: Sequence[tuple[int, int, int, int]]) -> int:
        """Write an indirect table of (addr, len, id, flags) entries into fresh guest
        memory and return its address (for hand-made, possibly hostile, chains)."""
        gpa = self.alloc.alloc(DESC_SIZE * max(len(descs), 1), DESC_TABLE_ALIGN)
        for i, (addr, length, ident, flags) in enumerate(descs):
            base = gpa + DESC_SIZE * i
            self.mem.write_u64(base, addr)
            self.mem.write_u32(base + 8, length)
            self.mem.write_u16(base + 12, ident)
            self.mem.write_u16(base + 14, flags)
        return gpa

    def event(self, area: int) -> tuple[int, int]:
        """(desc off_wrap, flags) of an event suppression area."""
        return self.mem.read_u16(area), self.mem.read_u16(area + 2)


__all__ = ["DEFAULT_BASE", "GuestAllocator", "MockPackedQueue", "MockSplitQueue", "Used",
           "guest_memory"]
