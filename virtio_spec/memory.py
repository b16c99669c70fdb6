"""Guest memory: guest-physical address ranges mapped onto writable host buffers.

Everything a virtqueue refers to (its three areas, every buffer, every indirect table) is a
guest-physical address (GPA).  `GuestMemory` holds the guest's memory as a sorted set of
non-overlapping regions, each a writable buffer: a `bytearray` in tests, a `memoryview`,
or an `mmap` of a memfd shared over vhost-user (SET_MEM_TABLE) in the running emulator.

`translate(gpa, length)` is the one gate between a peer's addresses and our buffers: it
returns a writable `memoryview` over exactly that range, or raises `MemoryAccessError`
naming the address.  It refuses

* ranges outside every region, and ranges that run off the end of one;
* lengths past 2**32 (a descriptor's `len` is le32, virtio 1.3 §2.7.5) and negative ones;
* negative addresses and ranges that wrap past 2**64.

A range spanning two adjacent regions is refused too, even though together they cover it.
Callers get one contiguous view per descriptor, which is what both ring engines and the C
datapath want; QEMU instead splits such a buffer into two iovecs.  Our own allocators
never hand out such ranges, and real guests (one region per memory slot) almost never do.

Views into an `mmap` pin it: the edge must drop them before unmapping a region.

Stores the peer may watch.  The other side reads ring fields while we write them (DPDK's
virtio PMD polls used.idx from its own process), so every store of an integer field is
one store of the field's width: a reader sees the old value or the new one, nothing in
between.  `struct.pack_into` does not promise that: CPython clears the whole field
(`s_pack_internal` memsets it) before it writes the value, so a reader in another process
can catch a 0 or half a value.  A used.idx read as 0 made DPDK's tx cleanup take back up
to 65535 "used" chains and wreck its free list.  So stores go through native word views
(`memoryview.cast`), which write with a single store; `le16_words`, `load_le16` and
`store_le16` do it for the ring engines.  Loads through `struct.unpack_from` are single
loads and need no change.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import LocalProtocolError, MemoryAccessError

#: What a region may be backed by: anything exposing a writable byte buffer.
WritableBuffer = bytearray | memoryview | mmap.mmap

#: Longest single range a ring may ask for: a descriptor's le32 `len` (virtio 1.3 §2.7.5).
MAX_ACCESS = 1 << 32
_ADDRESS_LIMIT = 1 << 64

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: Guest memory is little-endian (virtio 1.3 §1.4); word views are native-endian.
_NATIVE_LE = sys.byteorder == "little"


def _le(value: int, width: int) -> int:
    """`value` as the native word whose bytes in memory are its little-endian form."""
    return value if _NATIVE_LE else int.from_bytes(value.to_bytes(width, "little"), "big")


def le16_words(view: memoryview) -> memoryview:
    """`view` (an even number of bytes) as 16-bit words for `load_le16`/`store_le16`."""
    if view.nbytes % 2:
        raise LocalProtocolError(f"a view of {view.nbytes} bytes is not whole 16-bit words")
    return view.cast("H")


def load_le16(words: memoryview, off: int) -> int:
    """The le16 at byte offset `off` (even) of `words`, in one 16-bit load."""
    return _le(int(words[off >> 1]), 2)


def store_le16(words: memoryview, off: int, value: int) -> None:
    """Store `value` as le16 at byte offset `off` (even) of `words` in one 16-bit store:
    a peer reading the field meanwhile sees the old or the new value (module docstring)."""
    words[off >> 1] = _le(value & 0xFFFF, 2)


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """One region: guest-physical `base`, `size` bytes, backed by writable `view`."""

    base: int
    size: int
    view: memoryview

    @property
    def end(self) -> int:
        """First guest-physical address past the region."""
        return self.base + self.size


class GuestMemory:
    """The guest's memory as regions `(gpa_base, writable_buffer)`.

    >>> mem = GuestMemory([(0x1000, bytearray(0x1000))])
    >>> mem.write(0x1800, b"hi"); bytes(mem.translate(0x1800, 2))
    b'hi'
    """

    def __init__(self, regions: Iterable[tuple[int, WritableBuffer]]) -> None:
        built: list[MemoryRegion] = []
        for base, buffer in regions:
            view = memoryview(buffer)
            if view.readonly:
                raise LocalProtocolError(f"memory region at {base:#x} is read-only")
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            size = view.nbytes
            if base < 0 or size == 0 or base + size > _ADDRESS_LIMIT:
                raise MemoryAccessError(
                    f"memory region {base:#x}+{size:#x} is empty or outside the 64-bit space")
            built.append(MemoryRegion(base, size, view))
        built.sort(key=lambda r: r.base)
        for left, right in itertools.pairwise(built):
            if right.base < left.end:
                raise MemoryAccessError(
                    f"memory regions {left.base:#x}+{left.size:#x} and "
                    f"{right.base:#x}+{right.size:#x} overlap")
        self._regions = tuple(built)
        self._bases = [r.base for r in built]

    @property
    def regions(self) -> tuple[MemoryRegion, ...]:
        """The regions, sorted by guest-physical base."""
        return self._regions

    def _region_for(self, gpa: int, length: int) -> MemoryRegion:
        if length < 0 or length > MAX_ACCESS:
            raise MemoryAccessError(f"access of {length} bytes at {gpa:#x} is not 0..2**32")
        if gpa < 0 or gpa + length > _ADDRESS_LIMIT:
            raise MemoryAccessError(f"access {gpa:#x}+{length:#x} wraps the address space")
        i = bisect.bisect_right(self._bases, gpa) - 1
        if i >= 0:
            region = self._regions[i]
            if gpa + length <= region.end and (gpa < region.end or length == 0):
                return region
        raise MemoryAccessError(
            f"guest address {gpa:#x}+{length:#x} is outside every memory region")

    def contains(self, gpa: int, length: int) -> bool:
        """True when `translate(gpa, length)` would succeed."""
        try:
            self._region_for(gpa, length)
        except MemoryAccessError:
            return False
        return True

    def translate(self, gpa: int, length: int) -> memoryview:
        """A writable view of guest memory `[gpa, gpa + length)` inside one region."""
        region = self._region_for(gpa, length)
        start = gpa - region.base
        return region.view[start:start + length]

    def read(self, gpa: int, length: int) -> bytes:
        """Copy `length` bytes out of guest memory."""
        return bytes(self.translate(gpa, length))

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        """Copy `data` into guest memory at `gpa`."""
        view = memoryview(data).cast("B")
        self.translate(gpa, view.nbytes)[:] = view

    def read_u16(self, gpa: int) -> int:
        """Little-endian 16-bit load."""
        return int(_U16.unpack_from(self.translate(gpa, 2))[0])

    def read_u32(self, gpa: int) -> int:
        """Little-endian 32-bit load."""
        return int(_U32.unpack_from(self.translate(gpa, 4))[0])

    def read_u64(self, gpa: int) -> int:
        """Little-endian 64-bit load."""
        return int(_U64.unpack_from(self.translate(gpa, 8))[0])

    def write_u16(self, gpa: int, value: int) -> None:
        """Little-endian 16-bit store, one store (the peer never sees a value between)."""
        self._store(gpa, value, 2, "H")

    def write_u32(self, gpa: int, value: int) -> None:
        """Little-endian 32-bit store, one store."""
        self._store(gpa, value, 4, "I")

    def write_u64(self, gpa: int, value: int) -> None:
        """Little-endian 64-bit store, one store."""
        self._store(gpa, value, 8, "Q")

    def _store(self, gpa: int, value: int, width: int, fmt: Literal["H", "I", "Q"]) -> None:
        if not 0 <= value < 1 << 8 * width:
            raise LocalProtocolError(f"{value} does not fit a {8 * width}-bit field")
        self.translate(gpa, width).cast(fmt)[0] = _le(value, width)

    def __repr__(self) -> str:
        spans = ", ".join(f"{r.base:#x}+{r.size:#x}" for r in self._regions)
        return f"GuestMemory([{spans}])"




class GuestAllocator:
    """First-fit allocator over every region of a GuestMemory (coalescing frees)."""

    def __init__(self, mem: GuestMemory) -> None:
        self.mem = mem
        self._free: list[tuple[int, int]] = [(r.base, r.size) for r in mem.regions]
        self._sizes: dict[int, tuple[int, int]] = {}  # gpa -> (block start, block size)

    def alloc(self, size: int, align: int = 16) -> int:
        """Guest-physical address of `size` fresh bytes aligned to `align`."""
        need = max(size, 1)
        for i, (start, length) in enumerate(self._free):
            gpa = -(-start // align) * align
            if gpa + need <= start + length:
                del self._free[i]
                if gpa + need < start + length:
                    self._free.insert(i, (gpa + need, start + length - gpa - need))
                if gpa > start:
                    self._free.insert(i, (start, gpa - start))
                self._sizes[gpa] = (gpa, need)
                return gpa
        raise LocalProtocolError(f"guest allocator: no room for {size} bytes")

    def free(self, gpa: int) -> None:
        """Return a block from `alloc`."""
        start, length = self._sizes.pop(gpa)
        i = bisect.bisect(self._free, (start, length))
        self._free.insert(i, (start, length))
        # Coalesce with the neighbours that touch it (never across regions: a gap or a
        # region end always separates them in address order).
        if i + 1 < len(self._free) and start + length == self._free[i + 1][0] and \
                self.mem.contains(start, length + self._free[i + 1][1]):
            self._free[i] = (start, length + self._free.pop(i + 1)[1])
        if i > 0:
            prev_start, prev_len = self._free[i - 1]
            cur_start, cur_len = self._free[i]
            if prev_start + prev_len == cur_start and \
                    self.mem.contains(prev_start, prev_len + cur_len):
                self._free[i - 1] = (prev_start, prev_len + cur_len)
                del self._free[i]

    @property
    def free_bytes(self) -> int:
        """Bytes not allocated."""
        return sum(length for _, length in self._free)


__all__ = ["MAX_ACCESS", "GuestAllocator", "GuestMemory", "MemoryRegion", "WritableBuffer",
           "le16_words", "load_le16", "store_le16"]
