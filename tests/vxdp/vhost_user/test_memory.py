"""memfd regions: created, shared, mapped at an offset, translated, closed."""

import os

import pytest

from vxdp.errors import VhostUserLocalError, VhostUserRemoteError
from vxdp.vhost_user.memory import BackendMemory, FrontendMemory, uva_to_gpa
from vxdp.vhost_user.messages import MemoryRegionDesc, MemoryTable


def test_frontend_regions_are_shared_with_the_backend():
    front = FrontendMemory.create([(0x0, 0x4000), (0x100000, 0x2000)])
    try:
        table = front.table()
        assert [(r.guest_phys_addr, r.memory_size, r.mmap_offset) for r in table.regions] == \
            [(0x0, 0x4000, 0), (0x100000, 0x2000, 0)]
        # the userspace_addr is where our mapping really is
        assert front.uva(0x100010) == table.regions[1].userspace_addr + 0x10
        back = BackendMemory.map(table, front.fds())
        front.guest.write(0x100010, b"guest wrote")
        assert back.guest.read(0x100010, 11) == b"guest wrote"
        back.guest.write(0x20, b"host wrote")
        assert front.guest.read(0x20, 10) == b"host wrote"
        assert back.gpa(front.uva(0x3000), 0x1000) == 0x3000
        back.close()
        with pytest.raises(VhostUserLocalError, match="unmapped"):
            back.guest  # noqa: B018
    finally:
        front.close()


def test_backend_maps_at_mmap_offset():
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 0x3000)
        os.pwrite(fd, b"at 0x2000", 0x2000)
        table = MemoryTable((MemoryRegionDesc(0x10000, 0x1000, 0x7F0000000000, 0x2000),))
        back = BackendMemory.map(table, [fd])
        assert back.guest.read(0x10000, 9) == b"at 0x2000"
        back.close()
    finally:
        os.close(fd)


def test_backend_refuses_short_files_and_close_refuses_while_viewed():
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 0x1000)
        table = MemoryTable((MemoryRegionDesc(0, 0x2000, 0x7F0000000000, 0),))
        with pytest.raises(VhostUserRemoteError, match="needs 0x2000 bytes of its fd"):
            BackendMemory.map(table, [fd])
        ok = MemoryTable((MemoryRegionDesc(0, 0x1000, 0x7F0000000000, 0),))
        back = BackendMemory.map(ok, [fd])
        view = back.guest.translate(0, 16)
        with pytest.raises(VhostUserLocalError, match="still viewed"):
            back.close()
        view.release()
        back.close()  # a second close finishes the job
    finally:
        os.close(fd)


def test_uva_translation_stays_inside_one_region():
    regions = (MemoryRegionDesc(0x0, 0x1000, 0x5000, 0),
               MemoryRegionDesc(0x1000, 0x1000, 0x6000, 0))
    assert uva_to_gpa(regions, 0x6010, 16) == 0x1010
    with pytest.raises(VhostUserRemoteError, match=r"0x5ff0\+0x20 is outside every"):
        uva_to_gpa(regions, 0x5FF0, 0x20)  # spans both regions


def test_region_sizes_are_pages():
    with pytest.raises(VhostUserLocalError, match="not a positive page multiple"):
        FrontendMemory.create([(0, 100)])


def test_frontend_close_tries_every_region_and_can_be_retried():
    front = FrontendMemory.create([(0x0, 0x1000), (0x10000, 0x1000)])
    pinned = memoryview(front.regions[0].mapping)
    with pytest.raises(VhostUserLocalError, match="region at 0x0 is still viewed"):
        front.close()
    assert front.regions[1].fd == -1  # the other region was closed all the same
    pinned.release()
    front.close()
    assert front.regions[0].fd == -1
