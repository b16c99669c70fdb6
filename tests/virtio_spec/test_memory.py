"""GuestMemory: translation, refusals, backing buffers; and the test allocator."""

from __future__ import annotations

import mmap

import pytest

from virtio_spec.errors import LocalProtocolError, MemoryAccessError
from virtio_spec.memory import GuestMemory
from virtio_spec.testing import GuestAllocator, guest_memory


@pytest.fixture
def mem() -> GuestMemory:
    # Two regions with a hole between them, and a third right after the second.
    return GuestMemory([(0x1000, bytearray(0x1000)), (0x8000, bytearray(0x1000)),
                        (0x9000, bytearray(0x1000))])


def test_write_then_read_round_trips_through_the_region(mem: GuestMemory) -> None:
    mem.write(0x8010, b"virtio")
    assert mem.read(0x8010, 6) == b"virtio"
    assert bytes(mem.regions[1].view[0x10:0x16]) == b"virtio"


def test_translate_gives_a_writable_view_into_guest_memory(mem: GuestMemory) -> None:
    view = mem.translate(0x1ff0, 0x10)
    view[:] = b"\xab" * 16
    assert mem.read(0x1ff0, 16) == b"\xab" * 16


def test_integer_helpers_are_little_endian(mem: GuestMemory) -> None:
    mem.write_u16(0x1000, 0x1234)
    mem.write_u32(0x1002, 0xdeadbeef)
    mem.write_u64(0x1008, 0x0102030405060708)
    assert mem.read(0x1000, 16) == bytes.fromhex("3412efbeadde0000 0807060504030201")
    assert (mem.read_u16(0x1000), mem.read_u32(0x1002), mem.read_u64(0x1008)) == \
        (0x1234, 0xdeadbeef, 0x0102030405060708)


@pytest.mark.parametrize("gpa, length", [(0x0, 4), (0x2000, 1), (0x7fff, 2), (0xa000, 1),
                                         (0x1ff8, 9)])
def test_ranges_outside_every_region_are_refused_naming_the_address(
        mem: GuestMemory, gpa: int, length: int) -> None:
    with pytest.raises(MemoryAccessError, match=f"{gpa:#x}"):
        mem.translate(gpa, length)
    assert not mem.contains(gpa, length)


def test_a_range_spanning_two_adjacent_regions_is_refused(mem: GuestMemory) -> None:
    # Documented choice: one contiguous view per range, so 0x8ff8..0x9008 is refused
    # although the two regions together cover it.
    assert mem.contains(0x8ff8, 8) and mem.contains(0x9000, 8)
    with pytest.raises(MemoryAccessError, match="0x8ff8"):
        mem.translate(0x8ff8, 16)


def test_lengths_past_2_32_are_refused(mem: GuestMemory) -> None:
    with pytest.raises(MemoryAccessError, match="2\\*\\*32"):
        mem.translate(0x1000, (1 << 32) + 1)
    with pytest.raises(MemoryAccessError):
        mem.translate(0x1000, -1)


def test_address_wrap_around_and_negative_addresses_are_refused() -> None:
    top = GuestMemory([((1 << 64) - 0x1000, bytearray(0x1000))])
    assert top.read((1 << 64) - 4, 4) == bytes(4)
    with pytest.raises(MemoryAccessError, match="wraps"):
        top.translate((1 << 64) - 4, 8)
    with pytest.raises(MemoryAccessError, match="wraps"):
        top.translate(-8, 4)


def test_zero_length_access_inside_or_at_the_end_of_a_region_is_empty(
        mem: GuestMemory) -> None:
    assert bytes(mem.translate(0x2000, 0)) == b""
    with pytest.raises(MemoryAccessError):
        mem.translate(0x5000, 0)


def test_overlapping_regions_are_refused_at_construction() -> None:
    with pytest.raises(MemoryAccessError, match="overlap"):
        GuestMemory([(0x1000, bytearray(0x1000)), (0x1800, bytearray(0x1000))])


def test_regions_past_the_64_bit_space_or_empty_are_refused() -> None:
    with pytest.raises(MemoryAccessError):
        GuestMemory([((1 << 64) - 0x10, bytearray(0x20))])
    with pytest.raises(MemoryAccessError):
        GuestMemory([(0x1000, bytearray())])


def test_read_only_buffers_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="read-only"):
        GuestMemory([(0x1000, memoryview(bytes(16)))])


def test_mmap_and_memoryview_regions_share_memory_with_their_owner() -> None:
    backing = mmap.mmap(-1, 0x2000)
    raw = bytearray(0x100)
    mem = GuestMemory([(0x10000, backing), (0x40000, memoryview(raw))])
    mem.write(0x10ffe, b"shared")
    assert backing[0xffe:0x1004] == b"shared"
    mem.write(0x40000, b"xy")
    assert raw[:2] == b"xy"
    del mem
    backing.close()


def test_allocator_aligns_reuses_and_coalesces_freed_blocks() -> None:
    mem = guest_memory(size=0x1000, regions=2)
    alloc = GuestAllocator(mem)
    total = alloc.free_bytes
    a = alloc.alloc(10, align=64)
    b = alloc.alloc(100)
    assert a % 64 == 0 and b % 16 == 0 and b >= a + 10
    alloc.free(a)
    alloc.free(b)
    assert alloc.free_bytes == total
    # Coalesced: the whole first region is one block again.
    assert alloc.alloc(0x1000, align=1) == mem.regions[0].base


def test_allocator_never_hands_out_a_block_across_regions() -> None:
    mem = guest_memory(size=0x1000, regions=2, gap=0)
    alloc = GuestAllocator(mem)
    first = alloc.alloc(0x800)
    alloc.free(first)
    with pytest.raises(LocalProtocolError, match="no room"):
        alloc.alloc(0x1800)
    assert mem.contains(alloc.alloc(0x1000), 0x1000)
