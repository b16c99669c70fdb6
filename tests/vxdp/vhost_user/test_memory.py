"""memfd regions: created, shared, mapped at an offset, translated, closed."""

import fcntl
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


SEALS = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def _memfd(size: int, flags: int = 0) -> int:
    fd = os.memfd_create("t", os.MFD_CLOEXEC | flags)
    os.ftruncate(fd, size)
    return fd


def test_frontend_memfds_are_sealed_as_qemu_seals_them():
    front = FrontendMemory.create([(0x0, 0x4000)])
    try:
        fd = front.fds()[0]
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS == SEALS
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
    finally:
        front.close()


@pytest.mark.parametrize(("flags", "sealed"), [(os.MFD_ALLOW_SEALING, True), (0, False)])
def test_backend_seals_what_can_be_sealed_against_shrinking(flags, sealed):
    """A memfd that allows seals gets F_SEAL_SHRINK from the back-end, so the front-end
    can no longer truncate it; one made without MFD_ALLOW_SEALING stays as it is (the
    SIGBUS guard covers it)."""
    fd = _memfd(0x2000, flags)
    try:
        table = MemoryTable((MemoryRegionDesc(0x0, 0x2000, 0x7F0000000000, 0),))
        back = BackendMemory.map(table, [fd])
        try:
            assert back.sealed == (sealed,)
            if sealed:
                with pytest.raises(PermissionError):
                    os.ftruncate(fd, 0)
                os.ftruncate(fd, 0x4000)  # growing is no harm to the mapping
        finally:
            back.close()
    finally:
        os.close(fd)


GUARD_CHILD = """
import os, select
from vxdp.vhost_user.memory import BackendMemory
from vxdp.vhost_user.messages import MemoryRegionDesc, MemoryTable
fd = os.memfd_create("shrinks", os.MFD_CLOEXEC)
os.ftruncate(fd, 0x3000)
os.pwrite(fd, b"guest data", 0x1000)
table = MemoryTable((MemoryRegionDesc(0x40000000, 0x2000, 0x7F0000000000, 0x1000),))
back = BackendMemory.map(table, [fd])
assert back.guest.read(0x40000000, 10) == b"guest data"
assert back.lost() == []
os.ftruncate(fd, 0x1800)  # the front-end shrinks its file under the mapping
print(back.guest.read(0x40000000 + 0x1000, 4).hex())  # past the end: SIGBUS
print(back.guest.read(0x40000000, 10).hex())  # the whole region reads as zeros now
back.guest.write(0x40000000, b"host")  # writes go nowhere, and do not fault
print(select.select([back.lost_fd], [], [], 0)[0] == [back.lost_fd])
print(back.lost()[0])
back.close()
print(os.pread(fd, 10, 0x1000))  # the file kept what it had: nothing was written back
"""


def test_a_region_that_shrinks_under_the_mapping_reads_zeros_and_is_reported():
    """The SIGBUS guard, in a child process (without it the child dies of SIGBUS)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "VXDP_CORE"}  # the plain core
    run = subprocess.run([sys.executable, "-c", GUARD_CHILD], capture_output=True,
                         text=True, timeout=60, env=env)
    assert run.returncode == 0, f"child ended {run.returncode}: {run.stderr}"
    lines = run.stdout.splitlines()
    assert lines[:3] == ["00000000", "00" * 10, "True"]
    assert lines[3].startswith("memory region 0 (guest_phys_addr 0x40000000, 0x2000 bytes) "
                               "lost its backing: an access at offset 0x1000 raised SIGBUS")
    assert lines[4] == repr(b"guest data")
