"""Stores the other side may be watching: a reader sees the old value or the new one.

The driver polls used.idx from its own process while the device publishes it (DPDK's
virtio PMD does, in a tight loop).  `struct.pack_into` clears a field before it writes
the value, and DPDK, reading used.idx as 0 in that gap, took back 65535 - n "used"
chains, wrecked its descriptor free list, published avail.idx more than the queue size
ahead (virtio 1.3 §2.7.6) and crashed.  These tests catch a store that shows a reader
anything between the old and the new value:

* deterministically, with a value whose conversion to a machine integer reads the field:
  CPython's struct converts after it has cleared the field, a single store before;
* for real, with a reader process polling used.idx of a shared memfd while the device
  pushes.
"""

from __future__ import annotations

import gc
import mmap
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from virtio_spec.errors import LocalProtocolError
from virtio_spec.memory import GuestMemory, le16_words, load_le16, store_le16
from virtio_spec.packed import PackedDeviceQueue
from virtio_spec.testing import MockPackedQueue, MockSplitQueue


class Watched:
    """An int-like value that records what `read()` returns at the moment a store turns
    it into a machine integer (`__index__`): what a concurrent reader of the field being
    stored would see then."""

    def __init__(self, value: int, read: Callable[[], int], seen: list[int]) -> None:
        self.value, self.read, self.seen = value, read, seen

    def __index__(self) -> int:
        self.seen.append(self.read())
        return self.value

    def _wrap(self, value: int) -> Watched:
        return Watched(value, self.read, self.seen)

    def __and__(self, mask: int) -> Watched:
        return self._wrap(self.value & mask)

    def __add__(self, other: int) -> Watched:
        return self._wrap(self.value + other)

    def __mod__(self, other: int) -> int:
        return self.value % other

    def __ge__(self, other: int) -> bool:
        return self.value >= other

    def __lt__(self, other: int) -> bool:
        return self.value < other


def test_store_le16_shows_a_reader_the_old_value_until_it_writes_the_new() -> None:
    words = le16_words(memoryview(bytearray(8)))
    store_le16(words, 2, 0x01FF)
    seen: list[int] = []
    store_le16(words, 2, Watched(0x0200, lambda: load_le16(words, 2), seen))  # type: ignore[arg-type]
    assert seen == [0x01FF], "the field was cleared before the new value went in"
    assert load_le16(words, 2) == 0x0200
    assert bytes(words.cast("B")[2:4]) == b"\x00\x02"  # little-endian in memory


@pytest.mark.parametrize(("width", "old", "new"), [
    (2, 0x01FF, 0x0200), (4, 0xDEADBEEF, 0x12345678), (8, 0x0102030405060708, 0x8)])
def test_guest_memory_integer_stores_never_clear_the_field_first(width: int, old: int,
                                                                 new: int) -> None:
    mem = GuestMemory([(0x1000, bytearray(0x100))])
    write = {2: mem.write_u16, 4: mem.write_u32, 8: mem.write_u64}[width]
    read = {2: mem.read_u16, 4: mem.read_u32, 8: mem.read_u64}[width]
    write(0x1010, old)
    seen: list[int] = []
    write(0x1010, Watched(new, lambda: read(0x1010), seen))  # type: ignore[arg-type]
    assert seen == [old]
    assert read(0x1010) == new


def test_out_of_range_values_are_refused_and_leave_the_field_alone() -> None:
    mem = GuestMemory([(0x1000, bytearray(0x100))])
    mem.write_u16(0x1000, 7)
    with pytest.raises(LocalProtocolError, match="does not fit a 16-bit field"):
        mem.write_u16(0x1000, 0x10000)
    assert mem.read_u16(0x1000) == 7


def test_split_device_publishes_used_idx_without_passing_through_zero() -> None:
    """What DPDK read: used.idx polled while the device pushes shows the old idx or the
    new one (virtio 1.3 §2.7.8.2: elements, then idx), never 0."""
    q = MockSplitQueue(size=8, start_idx=0x00FF)
    used_idx = q.used_ring + 2
    seen: list[int] = []
    dev = q.device(used_idx=Watched(0x00FF, lambda: q.mem.read_u16(used_idx), seen))
    q.add_chain([b"frame"])
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, 0)
    assert seen == [0x00FF], f"used.idx was seen as {seen} while moving 0xff -> 0x100"
    assert q.mem.read_u16(used_idx) == 0x0100
    assert [u.id for u in q.used()] == [chain.head]


def test_packed_device_flags_go_from_available_to_used_in_one_store() -> None:
    q = MockPackedQueue(size=8)
    dev = q.device()
    assert isinstance(dev, PackedDeviceQueue)
    q.add_chain([b"frame"])
    chain = dev.pop()
    assert chain is not None
    flags_at = q.ring + 14  # slot 0's flags (pvirtq_desc: addr, len, id, flags)
    before = q.mem.read_u16(flags_at)
    seen: list[int] = []
    dev._set_flags(0, Watched(0x8080, lambda: q.mem.read_u16(flags_at), seen))  # type: ignore[arg-type]
    assert seen == [before]
    assert q.mem.read_u16(flags_at) == 0x8080


_READER = """
import mmap, os, sys
fd, size, idx, stop, cpu = map(int, sys.argv[1:])
os.sched_setaffinity(0, {cpu})
words = memoryview(mmap.mmap(fd, size)).cast("H")
i, s = idx >> 1, stop >> 1
prev = words[i]
changes = backwards = 0
words[s + 1] = 1  # ready
while not words[s]:
    value = words[i]
    if value != prev:
        changes += 1
        backwards += (value - prev) & 0xFFFF >= 0x8000
        prev = value
print(changes, backwards)
"""


def _race(region: mmap.mmap, fd: int, size: int, pushes: int,
          cpus: tuple[int, int]) -> tuple[int, int]:
    """Push `pushes` chains on CPU cpus[0] while a reader process on cpus[1] polls
    used.idx; (changes, backwards) as the reader saw them.  The last 64 bytes of the
    region hold its stop and ready flags."""
    view = memoryview(region)
    mem = GuestMemory([(0x10_0000, view[:size - 64])])
    flags = le16_words(view[size - 64:])
    q = MockSplitQueue(mem, size=64)
    dev = q.device()
    used_idx = q.used_ring + 2 - 0x10_0000
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(fd), str(size), str(used_idx), str(size - 64),
         str(cpus[1])],
        pass_fds=[fd], stdout=subprocess.PIPE, text=True)
    try:
        while not load_le16(flags, 2):
            assert reader.poll() is None, "the reader process ended before it started"
        for _ in range(pushes):
            q.add_chain([b"frame"])
            chain = dev.pop()
            assert chain is not None
            dev.push(chain, 0)
            q.used()
    finally:
        store_le16(flags, 0, 1)
        out, _ = reader.communicate(timeout=30)
    changes, backwards = map(int, out.split())
    return changes, backwards


def test_a_driver_process_polling_used_idx_never_sees_it_go_backwards() -> None:
    """The race itself: a reader process polls used.idx of a memfd-backed ring while the
    device pops and pushes; every value it sees is one the device published."""
    size, pushes = 1 << 16, 3000
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("needs two CPUs: the device and the reader must run at once")
    cpus = (min(allowed), max(allowed))
    fd = os.memfd_create("vxdp-shared-stores")
    try:
        os.ftruncate(fd, size)
        region = mmap.mmap(fd, size)
        os.sched_setaffinity(0, {cpus[0]})
        try:
            changes, backwards = _race(region, fd, size, pushes, cpus)
        finally:
            os.sched_setaffinity(0, allowed)
            gc.collect()  # the queues' views of the region, before it is unmapped
            region.close()
    finally:
        os.close(fd)
    assert backwards == 0, (f"the reader saw used.idx go backwards {backwards} times in "
                            f"{changes} changes: a store showed it a value in between")
    if changes < pushes // 20:
        pytest.skip(f"the reader saw {changes} of {pushes} pushes: it did not run "
                    f"alongside the device (one free CPU?)")
