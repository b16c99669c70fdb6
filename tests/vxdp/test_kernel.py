"""vxdp.bpf.kernel: real maps (the errno table), the verifier, test runs, tail calls."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.bpf.kernel import (
    KernelEngine,
    KernelMap,
    kernel_unavailable,
    pinned_cpu,
    rebind,
    test_run,
    verify_in_kernel,
)
from vxdp.bpf.maps import possible_cpus
from vxdp.bpf.program import (
    BPF_EXIST,
    BPF_F_RDONLY_PROG,
    BPF_NOEXIST,
    MapSpec,
    MapType,
    Program,
    XdpAction,
)
from vxdp.errors import InvalidProgram, MapError, UsageError

SRC = Path(__file__).parent / "elf_src"
pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def _needs_kernel():
    if reason := kernel_unavailable():
        pytest.skip(reason)


def obj(name: str):
    if reason := clang_unavailable():
        pytest.skip(reason)
    return load_object(compile_c(SRC / f"{name}.c"), name=name)


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def raises_errno(code: int):
    return pytest.raises(MapError, match=os.strerror(code).lower())


def test_hash_map_errno_table():
    m = KernelMap(MapSpec("h", MapType.HASH, 4, 8, 2))
    try:
        assert m.lookup(u32(1)) is None
        with raises_errno(errno.ENOENT) as e:
            m.update(u32(1), u64(1), BPF_EXIST)
        assert e.value.errno == errno.ENOENT
        m.update(u32(1), u64(10), BPF_NOEXIST)
        with raises_errno(errno.EEXIST):
            m.update(u32(1), u64(11), BPF_NOEXIST)
        m.update(u32(1), u64(12), BPF_EXIST)
        assert m.lookup(u32(1)) == u64(12)
        m.update(u32(2), u64(20))
        with raises_errno(errno.E2BIG) as e:  # full
            m.update(u32(3), u64(30))
        assert e.value.errno == errno.E2BIG
        assert sorted(m.keys()) == [u32(1), u32(2)]
        assert m.next_key(u32(99)) in (u32(1), u32(2))  # absent key: the first key
        m.delete(u32(1))
        with raises_errno(errno.ENOENT):
            m.delete(u32(1))
        assert dict(m.items()) == {u32(2): u64(20)}
        with pytest.raises(MapError, match="key is 2 bytes, key_size is 4"):
            m.lookup(b"\0\0")
    finally:
        m.close()
    assert m.closed


def test_array_map_errno_table():
    m = KernelMap(MapSpec("a", MapType.ARRAY, 4, 4, 3))
    try:
        assert m.lookup(u32(2)) == u32(0)  # elements always exist
        assert m.lookup(u32(3)) is None
        with raises_errno(errno.EEXIST):
            m.update(u32(0), u32(1), BPF_NOEXIST)
        with raises_errno(errno.E2BIG) as e:  # index >= max_entries (arraymap.c)
            m.update(u32(3), u32(1))
        assert e.value.errno == errno.E2BIG
        with raises_errno(errno.EINVAL) as e:
            m.delete(u32(0))
        assert e.value.errno == errno.EINVAL
        assert list(m.keys()) == [u32(0), u32(1), u32(2)]
        assert m.next_key(u32(2)) is None
        assert m.next_key(u32(7)) == u32(0)
    finally:
        m.close()


def test_percpu_values_are_one_per_possible_cpu():
    m = KernelMap(MapSpec("pc", MapType.PERCPU_ARRAY, 4, 12, 1))
    try:
        n = possible_cpus()
        assert m.ncpus == n
        values = [bytes([i + 1]) * 12 for i in range(n)]
        m.update(u32(0), values)
        assert m.lookup(u32(0)) == values
        with pytest.raises(MapError, match=f"per-CPU value needs {n} entries"):
            m.update(u32(0), b"\0" * 12)
    finally:
        m.close()


def test_global_data_written_and_rodata_frozen():
    ro = KernelMap(MapSpec("x.rodata", MapType.ARRAY, 4, 4, 1, BPF_F_RDONLY_PROG,
                           initial=u32(0xABCD), frozen=True))
    try:
        assert ro.lookup(u32(0)) == u32(0xABCD)
        with raises_errno(errno.EPERM):
            ro.update(u32(0), u32(1))
    finally:
        ro.close()


def test_engine_runs_programs_with_maps_and_global_data():
    o = obj("multi")
    with KernelEngine(o.programs["xdp_main"]) as eng:
        pkts = [bytes(range(60)), bytes(100), bytes(range(14))]
        results = eng.run_xdp(pkts)
        assert [r.action for r in results] == [XdpAction.PASS] * 3  # .rodata verdict
        assert [r.data for r in results] == pkts
        assert eng.map_by_name("multi.data").lookup(u32(0)) == u32(7 + 3)
        assert eng.map_by_name("multi.bss").lookup(u32(0)) == u64(60 + 100 + 14)
        counts = dict(eng.map_by_name("counts").items())
        assert counts == {u32(0): u64(1), u32(1): u64(1), u32(2): u64(1)}
        stats = eng.map_by_name("stats").lookup(u32(0))
        assert isinstance(stats, list)
        assert stats[0][:4] == u32(3)  # pinned to CPU 0
        assert all(v == bytes(12) for v in stats[1:])


def test_frags_and_other_programs_run():
    o = obj("multi")
    with KernelEngine(o.programs["xdp_frag"]) as eng:
        assert eng.run_xdp([bytes(64)])[0].action == XdpAction.TX
    with KernelEngine(o.programs["xdp_drop"]) as eng:
        assert eng.run_xdp([bytes(64)])[0].retval == XdpAction.DROP
        assert eng.map_by_name("counts").lookup(u32(100)) == u64(1)
    with KernelEngine(o.programs["tc_pass"]) as eng, pytest.raises(UsageError, match="not xdp"):
        eng.run_xdp([bytes(64)])


def test_short_packet_is_a_clear_error():
    with KernelEngine(obj("multi").programs["xdp_drop"]) as eng, \
            pytest.raises(UsageError, match=r"packet 1: .*at least 14 bytes"):
        eng.run_xdp([bytes(20), bytes(5)])


def test_tail_call_target_shares_the_maps():
    o = obj("tail")
    with KernelEngine(o.programs["entry"]) as eng:
        assert eng.run_xdp([bytes(64)])[0].action == XdpAction.PASS  # empty slot: falls through
        fd = eng.load_tail_target(o.programs["target"])
        eng.map_by_name("jmp").update(u32(0), u32(fd))
        assert eng.run_xdp([bytes(64)])[0].action == XdpAction.TX


def test_shared_maps_are_not_closed_by_the_borrower():
    o = obj("multi")
    with KernelEngine(o.programs["xdp_main"]) as owner:
        with KernelEngine(o.programs["xdp_drop"], owner.maps) as borrower:
            borrower.run_xdp([bytes(64)])
        assert owner.map_by_name("counts").lookup(u32(100)) == u64(1)  # still open, shared
    with pytest.raises(UsageError, match="shares only kernel maps"):
        KernelEngine(o.programs["xdp_main"], [object()])  # type: ignore[list-item]


def test_verifier_refusal_carries_the_log():
    prog = obj("rejected").programs["unchecked"]
    ok, log = verify_in_kernel(prog)
    assert not ok and "invalid access to packet" in log
    with pytest.raises(InvalidProgram, match="invalid access to packet") as e:
        KernelEngine(prog)
    assert "kernel verifier refused it" in str(e.value)
    ok, log = verify_in_kernel(obj("multi").programs["xdp_main"])
    assert ok and "processed" in log
    ok, log = verify_in_kernel(obj("multi").programs["xdp_main"], log_level=2)
    assert ok and "call bpf_map_lookup_elem" in log


def test_test_run_repeats_and_reports_time():
    prog = obj("multi").programs["xdp_frag"]
    retval, out, ns = test_run(prog, bytes(range(64)), repeat=200)
    assert retval == XdpAction.TX and out == bytes(range(64)) and ns >= 0
    with KernelEngine(prog) as eng:
        assert test_run(eng, bytes(64))[0] == XdpAction.TX


def test_rebind_replaces_indexes_and_checks_them():
    o = obj("multi")
    prog = o.programs["xdp_frag"]
    code = rebind(prog, [100 + i for i in range(len(prog.maps))])
    rodata = [m.name for m in prog.maps].index("multi.rodata")
    assert struct.unpack_from("<i", code, 4)[0] == 100 + rodata
    assert struct.unpack_from("<i", code, 12)[0] == 4  # the value offset is kept
    with pytest.raises(InvalidProgram, match="references map index"):
        rebind(prog, [])


def test_pinned_cpu_restores_affinity():
    before = os.sched_getaffinity(0)
    with pinned_cpu(0):
        assert len(os.sched_getaffinity(0)) == 1
    assert os.sched_getaffinity(0) == before


def test_hand_built_program_runs():
    # r0 = *(u32 *)(r1 + 4) (data_end); r0 -= *(u32 *)(r1 + 0) (data); exit -> the length
    insns = bytes.fromhex("6110040000000000" "6112000000000000" "1c20000000000000"
                          "9500000000000000")
    with KernelEngine(Program("len", "xdp", insns)) as eng:
        assert [r.retval for r in eng.run_xdp([bytes(14), bytes(1000)])] == [14, 1000]


def _bpffs() -> bool:
    try:
        return any(line.split()[1:3] == ["/sys/fs/bpf", "bpf"]
                   for line in Path("/proc/mounts").read_text().splitlines())
    except OSError:
        return False


def _masked(xlated: bytes) -> bytes:
    """Map pointers differ between loads: zero the imm of both LD_IMM64 slots."""
    code = bytearray(xlated)
    pc = 0
    while pc * 8 < len(code):
        if code[pc * 8] == 0x18:
            code[pc * 8 + 4: pc * 8 + 8] = bytes(4)
            code[pc * 8 + 12: pc * 8 + 16] = bytes(4)
            pc += 2
        else:
            pc += 1
    return bytes(code)


def test_loader_matches_libbpf(tmp_path):
    """bpftool (libbpf) and vxdp load the same object into the same kernel program."""
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.skip("bpftool not installed (Debian package bpftool)")
    if not _bpffs():
        pytest.skip("no bpf filesystem mounted on /sys/fs/bpf for bpftool's pins")
    if reason := clang_unavailable():
        pytest.skip(reason)
    path = tmp_path / "subprogs.o"  # libbpf names the object after the file, as vxdp does
    path.write_bytes(compile_c(SRC / "subprogs.c").read_bytes())
    ours = load_object(path)
    pins = Path(f"/sys/fs/bpf/vxdp-test-{os.getpid()}-{tmp_path.name}")

    def tool(*args: str) -> str:
        return subprocess.run([bpftool, *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def map_names(ids: list[int]) -> set[str]:
        return {json.loads(tool("-j", "map", "show", "id", str(i)))["name"] for i in ids}

    try:
        tool("prog", "loadall", str(path), str(pins))
        for name, prog in ours.programs.items():
            raw = tmp_path / f"{name}.xlated"
            tool("prog", "dump", "xlated", "pinned", str(pins / name), "file", str(raw))
            theirs = json.loads(tool("-j", "prog", "show", "pinned", str(pins / name)))
            with KernelEngine(prog) as eng:
                info = eng.info()
                assert _masked(info.xlated) == _masked(raw.read_bytes()), name
                used, bound = map_names(list(info.map_ids)), map_names(theirs["map_ids"])
                # libbpf also binds every .rodata* map to each program (BPF_PROG_BIND_MAP)
                assert used <= bound
                assert bound - used <= {"subprogs.rodata", ".rodata.limits"}, name
                if name == "nested":  # reads both .rodata maps itself
                    assert used == bound
    finally:
        shutil.rmtree(pins, ignore_errors=True)


def test_fds_are_released_by_close_and_by_the_finaliser():
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    o = obj("tail")
    before = open_fds()
    with KernelEngine(o.programs["entry"]) as eng:
        eng.load_tail_target(o.programs["target"])
        assert open_fds() == before + 3  # map, program, tail target
    assert open_fds() == before
    m = KernelMap(MapSpec("gc", MapType.ARRAY, 4, 4, 1))
    assert open_fds() == before + 1
    del m  # never closed: the finaliser closes the fd
    gc.collect()
    assert open_fds() == before
    with pytest.raises(InvalidProgram):
        KernelEngine(obj("rejected").programs["unchecked"])
    assert open_fds() == before  # a refused load leaks nothing


def test_bad_ingress_device_is_explained():
    with KernelEngine(obj("multi").programs["xdp_drop"]) as eng, \
            pytest.raises(UsageError, match="rx_queue_index 4096 one of its rx queues"):
        eng.run_xdp([bytes(64)], rx_queue_index=4096)


@pytest.mark.parametrize(("code", "words"), [
    (errno.EPERM, "not permitted (EPERM): needs root or CAP_BPF"),
    (errno.ENOSYS, "not implemented by this kernel (ENOSYS)"),
    (errno.EINVAL, "BPF_MAP_CREATE failed: invalid argument (EINVAL)"),
])
def test_unavailable_reasons_say_why(monkeypatch, code, words):
    from vxdp.bpf import syscall

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(syscall, "map_create", refuse)
    assert words in kernel_unavailable.__wrapped__()  # the uncached probe
