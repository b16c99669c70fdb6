"""Guest memory shared over vhost-user: memfd regions, their mapping, address translation.

The front-end owns guest memory: each region is a memfd (`os.memfd_create`, `ftruncate`,
`mmap` shared), placed at a guest-physical address and sent to the back-end with
SET_MEM_TABLE as `{guest_phys_addr, memory_size, userspace_addr, mmap_offset}` plus its
fd.  `userspace_addr` is where the region sits in the FRONT-END's address space (QEMU's
host virtual address; here the real address of our mmap), and SET_VRING_ADDR names ring
areas in that space, so the back-end translates them through the regions.

The back-end maps each received fd shared and read-write, `mmap_offset + memory_size`
bytes from file offset 0 (mmap wants page-aligned file offsets; the region's bytes start
`mmap_offset` into the mapping, as DPDK does), and views the regions as one
`virtio_spec.memory.GuestMemory`.

Both sides close what they own with `close()`.  Views pin an mmap: drop every
`GuestMemory`, queue and view built over the regions first, or `close()` refuses.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass

from virtio_spec.memory import GuestMemory
from vxdp.errors import VhostUserLocalError, VhostUserRemoteError

from .messages import VHOST_MEMORY_BASELINE_NREGIONS, MemoryRegionDesc, MemoryTable

_LIMIT = 1 << 64


def _address_of(mm: mmap.mmap) -> int:
    """The user virtual address of a mapping (the export is released at once)."""
    anchor = ctypes.c_char.from_buffer(mm)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


def check_table(table: MemoryTable) -> None:
    """Values a SET_MEM_TABLE must have: 1..8 non-empty regions that overlap neither in
    guest-physical nor in front-end virtual space and stay inside 64 bits."""
    regions = table.regions
    if not 1 <= len(regions) <= VHOST_MEMORY_BASELINE_NREGIONS:
        raise VhostUserRemoteError(
            f"VHOST_USER_SET_MEM_TABLE: {len(regions)} regions, want 1..8")
    for i, r in enumerate(regions):
        if r.memory_size == 0:
            raise VhostUserRemoteError(f"VHOST_USER_SET_MEM_TABLE: region {i} is empty")
        for start, name in ((r.guest_phys_addr, "guest_phys_addr"),
                            (r.userspace_addr, "userspace_addr"),
                            (r.mmap_offset, "mmap_offset")):
            if start + r.memory_size > _LIMIT:
                raise VhostUserRemoteError(
                    f"VHOST_USER_SET_MEM_TABLE: region {i} {name} {start:#x} + size "
                    f"{r.memory_size:#x} wraps the 64-bit space")
    for attr in ("guest_phys_addr", "userspace_addr"):
        spans = sorted((getattr(r, attr), getattr(r, attr) + r.memory_size, i)
                       for i, r in enumerate(regions))
        for (_, end, i), (start, _, j) in itertools.pairwise(spans):
            if start < end:
                raise VhostUserRemoteError(
                    f"VHOST_USER_SET_MEM_TABLE: regions {i} and {j} overlap in {attr}")


def uva_to_gpa(regions: Sequence[MemoryRegionDesc], uva: int, length: int) -> int:
    """Translate a front-end virtual range into guest-physical; it must lie in one region."""
    for r in regions:
        if r.userspace_addr <= uva and uva + length <= r.userspace_addr + r.memory_size:
            return r.guest_phys_addr + (uva - r.userspace_addr)
    raise VhostUserRemoteError(
        f"front-end address {uva:#x}+{length:#x} is outside every memory region")


@dataclass(slots=True)
class MemfdRegion:
    """One front-end region: a memfd, its shared mapping and where it sits."""

    fd: int
    mapping: mmap.mmap
    guest_phys_addr: int
    size: int
    userspace_addr: int

    @classmethod
    def create(cls, guest_phys_addr: int, size: int, name: str = "vxdp-guest") -> MemfdRegion:
        if size <= 0 or size % mmap.PAGESIZE:
            raise VhostUserLocalError(f"region size {size:#x} is not a positive page multiple")
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, mapping, guest_phys_addr, size, _address_of(mapping))

    def describe(self) -> MemoryRegionDesc:
        return MemoryRegionDesc(self.guest_phys_addr, self.size, self.userspace_addr, 0)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self.mapping.close()
        except BufferError as exc:
            raise VhostUserLocalError(
                f"region at {self.guest_phys_addr:#x} is still viewed; drop its views "
                f"before closing") from exc
        os.close(self.fd)
        self.fd = -1


class FrontendMemory:
    """The front-end's guest memory: memfd regions, a `GuestMemory` over them, the table.

    `FrontendMemory.create([(gpa, size), ...])` allocates the regions; `table()` and
    `fds()` are SET_MEM_TABLE's payload and ancillary data; `uva(gpa)` gives the address
    SET_VRING_ADDR carries."""

    def __init__(self, regions: Sequence[MemfdRegion]) -> None:
        self.regions = tuple(regions)
        self._guest: GuestMemory | None = GuestMemory(
            [(r.guest_phys_addr, r.mapping) for r in self.regions])

    @property
    def guest(self) -> GuestMemory:
        """The regions as guest memory (the driver's rings and buffers live here)."""
        if self._guest is None:
            raise VhostUserLocalError("front-end memory is closed")
        return self._guest

    @classmethod
    def create(cls, layout: Sequence[tuple[int, int]]) -> FrontendMemory:
        made: list[MemfdRegion] = []
        try:
            for gpa, size in layout:
                made.append(MemfdRegion.create(gpa, size))
            return cls(made)
        except BaseException:
            for r in made:
                r.close()
            raise

    def table(self) -> MemoryTable:
        return MemoryTable(tuple(r.describe() for r in self.regions))

    def fds(self) -> tuple[int, ...]:
        return tuple(r.fd for r in self.regions)

    def uva(self, gpa: int, length: int = 1) -> int:
        """Front-end virtual address of guest-physical `gpa` (range must be in one region)."""
        for r in self.regions:
            if r.guest_phys_addr <= gpa and gpa + length <= r.guest_phys_addr + r.size:
                return r.userspace_addr + (gpa - r.guest_phys_addr)
        raise VhostUserLocalError(f"guest address {gpa:#x}+{length:#x} is in no region")

    def close(self) -> None:
        """Unmap and close every region; LocalError (after trying them all) when some are
        still viewed, and a later close() finishes the job."""
        self._guest = None
        busy = []
        for r in self.regions:
            try:
                r.close()
            except VhostUserLocalError as exc:
                busy.append(str(exc))
        if busy:
            raise VhostUserLocalError("; ".join(busy))


class BackendMemory:
    """The back-end's view of the front-end's memory: received fds mapped shared.

    `BackendMemory.map(table, fds)` takes ownership of nothing: the mmaps hold their own
    duplicates of the fds, so the caller closes the fds it received whenever it likes."""

    def __init__(self, table: MemoryTable, mappings: Sequence[mmap.mmap]) -> None:
        self.table = table
        self._mappings = list(mappings)
        views = []
        for r, mm in zip(table.regions, self._mappings):
            views.append((r.guest_phys_addr,
                          memoryview(mm)[r.mmap_offset:r.mmap_offset + r.memory_size]))
        self._guest: GuestMemory | None = GuestMemory(views)
        del views

    @property
    def guest(self) -> GuestMemory:
        """The mapped regions as guest memory, for the device's ring engines."""
        if self._guest is None:
            raise VhostUserLocalError("back-end memory is unmapped")
        return self._guest

    @classmethod
    def map(cls, table: MemoryTable, fds: Sequence[int]) -> BackendMemory:
        check_table(table)
        if len(fds) != len(table.regions):
            raise VhostUserRemoteError(
                f"VHOST_USER_SET_MEM_TABLE: {len(table.regions)} regions, {len(fds)} fds")
        mappings: list[mmap.mmap] = []
        try:
            for i, (r, fd) in enumerate(zip(table.regions, fds)):
                length = r.mmap_offset + r.memory_size
                try:
                    file_size = os.fstat(fd).st_size
                except OSError as exc:
                    raise VhostUserRemoteError(
                        f"VHOST_USER_SET_MEM_TABLE: region {i} fd is unusable: {exc}") from exc
                if file_size < length:
                    raise VhostUserRemoteError(
                        f"VHOST_USER_SET_MEM_TABLE: region {i} needs {length:#x} bytes of its "
                        f"fd, the file has {file_size:#x}")
                try:
                    mappings.append(mmap.mmap(fd, length, mmap.MAP_SHARED,
                                              mmap.PROT_READ | mmap.PROT_WRITE))
                except (OSError, ValueError) as exc:
                    raise VhostUserRemoteError(
                        f"VHOST_USER_SET_MEM_TABLE: region {i} cannot be mapped: {exc}"
                    ) from exc
            return cls(table, mappings)
        except BaseException:
            for mm in mappings:
                mm.close()
            raise

    def gpa(self, uva: int, length: int) -> int:
        """Guest-physical address of a front-end virtual range."""
        return uva_to_gpa(self.table.regions, uva, length)

    def close(self) -> None:
        """Unmap every region; every view of them must be gone (LocalError otherwise)."""
        self._guest = None
        busy = []
        for mm in self._mappings:
            try:
                mm.close()
            except BufferError:
                busy.append(mm)
        self._mappings = busy
        if busy:
            raise VhostUserLocalError(
                f"{len(busy)} mapped region(s) still viewed (a queue or GuestMemory outlives "
                f"the memory table); drop them and close again")


__all__ = ["BackendMemory", "FrontendMemory", "MemfdRegion", "check_table", "uva_to_gpa"]
