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

A front-end that shrinks a region's file under the mapping would have the back-end's next
access to it raise SIGBUS, which ends the process.  Two rules keep the host alive:

* Seal where the file allows it.  The front-end's memfds are made with
  MFD_ALLOW_SEALING and sealed GROW|SHRINK|SEAL, as QEMU's memory-backend-memfd is by
  default; the back-end adds F_SEAL_SHRINK to a received fd that can take seals and has
  not got it (a memfd made without MFD_ALLOW_SEALING, a hugetlbfs or tmpfs file cannot).
* Guard every mapping.  Each mapped region is registered with the core's SIGBUS guard
  (csrc/guard.c): a fault there maps zero pages over the region and signals
  `BackendMemory.lost_fd`; `lost()` then names the region, and the edge ends that
  front-end's session (the other guests never notice).

Both sides close what they own with `close()`.  Views pin an mmap: drop every
`GuestMemory`, queue and view built over the regions first, or `close()` refuses.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import logging
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass

from virtio_spec.memory import GuestMemory
from vxdp.errors import CoreError, VhostUserLocalError, VhostUserRemoteError

from .messages import VHOST_MEMORY_BASELINE_NREGIONS, MemoryRegionDesc, MemoryTable

log = logging.getLogger("vxdp.vhost_user")

_LIMIT = 1 << 64
#: What the front-end seals its memfds with (QEMU memory-backend-memfd, seal=on).
FRONTEND_SEALS = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


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
    def create(cls, guest_phys_addr: int, size: int, name: str = "vxdp-guest", *,
               seal: bool = True) -> MemfdRegion:
        """A memfd of `size` bytes, mapped; sealed GROW|SHRINK|SEAL unless `seal` is False
        (the back-end can then seal it, or finds it cannot be sealed)."""
        if size <= 0 or size % mmap.PAGESIZE:
            raise VhostUserLocalError(f"region size {size:#x} is not a positive page multiple")
        fd = os.memfd_create(name, os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if seal else 0))
        try:
            os.ftruncate(fd, size)
            if seal:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, FRONTEND_SEALS)
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
    def create(cls, layout: Sequence[tuple[int, int]], *, seal: bool = True) -> FrontendMemory:
        made: list[MemfdRegion] = []
        try:
            for gpa, size in layout:
                made.append(MemfdRegion.create(gpa, size, seal=seal))
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


def seal_shrink(fd: int) -> bool:
    """Add F_SEAL_SHRINK to a region's fd where the file takes seals; True when the file
    cannot shrink any more (sealed now or before)."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return False  # EINVAL: not a file that has seals (a regular or hugetlbfs file)
    if seals & fcntl.F_SEAL_SHRINK:
        return True
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    except OSError:
        return False  # EPERM: made without MFD_ALLOW_SEALING, or sealed with F_SEAL_SEAL
    return True


class _Guard:
    """The core's SIGBUS guard, when the core loads (without it a truncated region still
    kills the process: logged once)."""

    warned = False

    @staticmethod
    def add(address: int, length: int, notify_fd: int) -> int | None:
        try:
            from vxdp import native
        except ImportError as exc:
            if not _Guard.warned:
                _Guard.warned = True
                log.warning("guest memory is not guarded against SIGBUS (the C core does "
                            "not load: %s)", exc)
            return None
        try:
            native.guard_install()
            return native.guard_add(address, length, notify_fd)
        except CoreError as exc:  # every slot in use: this table is refused, not the host
            raise VhostUserLocalError(f"guest memory cannot be guarded: {exc}") from None

    @staticmethod
    def remove(slot: int | None) -> None:
        if slot is not None:
            from vxdp import native
            native.guard_remove(slot)

    @staticmethod
    def lost(slot: int | None) -> int | None:
        if slot is None:
            return None
        from vxdp import native
        return native.guard_lost(slot)


class BackendMemory:
    """The back-end's view of the front-end's memory: received fds mapped shared.

    `BackendMemory.map(table, fds)` takes ownership of nothing: the mmaps hold their own
    duplicates of the fds, so the caller closes the fds it received whenever it likes.
    Every region is sealed against shrinking where its file allows and guarded against
    SIGBUS (see the module docstring): `lost_fd` (an eventfd) becomes readable when a
    region lost its pages, and `lost()` says which."""

    def __init__(self, table: MemoryTable, mappings: Sequence[mmap.mmap],
                 sealed: Sequence[bool] = ()) -> None:
        self.table = table
        self.sealed = tuple(sealed) or (False,) * len(mappings)
        views = []
        for r, mm in zip(table.regions, mappings):
            views.append((r.guest_phys_addr,
                          memoryview(mm)[r.mmap_offset:r.mmap_offset + r.memory_size]))
        self._guest: GuestMemory | None = GuestMemory(views)
        del views
        self.lost_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # (region index, mapping, its address, guard slot) of every region still mapped
        self._mapped: list[tuple[int, mmap.mmap, int, int | None]] = []
        try:
            for i, mm in enumerate(mappings):
                start = _address_of(mm)
                self._mapped.append((i, mm, start, _Guard.add(start, len(mm), self.lost_fd)))
        except BaseException:
            for *_, slot in self._mapped:
                _Guard.remove(slot)
            os.close(self.lost_fd)
            raise

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
        sealed: list[bool] = []
        try:
            for i, (r, fd) in enumerate(zip(table.regions, fds)):
                length = r.mmap_offset + r.memory_size
                # sealed before the size check: a file that cannot shrink stays big enough
                sealed.append(seal_shrink(fd))
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
            return cls(table, mappings, sealed)
        except BaseException:
            for mm in mappings:
                mm.close()
            raise

    def gpa(self, uva: int, length: int) -> int:
        """Guest-physical address of a front-end virtual range."""
        return uva_to_gpa(self.table.regions, uva, length)

    def lost(self) -> list[str]:
        """The regions whose pages a SIGBUS took (their file shrank under the mapping),
        each described for a log line; empty while every region is intact."""
        out = []
        for i, _, start, slot in self._mapped:
            fault = _Guard.lost(slot)
            if fault is not None:
                r = self.table.regions[i]
                offset = fault - start - r.mmap_offset
                out.append(f"memory region {i} (guest_phys_addr {r.guest_phys_addr:#x}, "
                           f"{r.memory_size:#x} bytes) lost its backing: an access at "
                           f"offset {offset:#x} raised SIGBUS (the front-end shrank the "
                           f"file under the mapping); its pages now read as zeros")
        return out

    def __del__(self) -> None:
        # Never closed (an error path): the guard lets go of the ranges before the mmaps
        # unmap them, so that a later mapping there is not taken for this memory.
        for *_, slot in getattr(self, "_mapped", ()):
            try:
                _Guard.remove(slot)
            except Exception:
                pass  # the interpreter is going away
        if getattr(self, "lost_fd", -1) >= 0:
            os.close(self.lost_fd)

    def close(self) -> None:
        """Unmap every region; every view of them must be gone (LocalError otherwise)."""
        self._guest = None
        busy: list[tuple[int, mmap.mmap, int, int | None]] = []
        for i, mm, start, slot in self._mapped:
            _Guard.remove(slot)  # unguarded before unmapped: the range may be reused
            try:
                mm.close()
            except BufferError:
                busy.append((i, mm, start, _Guard.add(start, len(mm), self.lost_fd)))
        self._mapped = busy
        if busy:
            raise VhostUserLocalError(
                f"{len(busy)} mapped region(s) still viewed (a queue or GuestMemory outlives "
                f"the memory table); drop them and close again")
        if self.lost_fd >= 0:
            os.close(self.lost_fd)
            self.lost_fd = -1


__all__ = ["FRONTEND_SEALS", "BackendMemory", "FrontendMemory", "MemfdRegion", "check_table",
           "seal_shrink", "uva_to_gpa"]
