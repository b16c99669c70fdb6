"""Program.tag against the tag the kernel gives the same program (bpftool's `tag`)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object, select_program

PROGS = Path(__file__).parent / "progs"


@pytest.mark.parametrize("name", ["xdp_drop", "xdp_flow_hash", "xdp_global_data"])
def test_tag_is_the_kernels(name: str) -> None:
    if clang_unavailable():
        pytest.skip(str(clang_unavailable()))
    from vxdp.bpf.kernel import kernel_unavailable
    if kernel_unavailable():
        pytest.skip(str(kernel_unavailable()))
    from vxdp.bpf.engine import create_engine
    program = select_program(load_object(compile_c(PROGS / f"{name}.c")))
    with create_engine("kernel", program) as engine:
        kernel_tag = engine.info().tag.hex()  # type: ignore[attr-defined]
    if kernel_tag == program.tag_sha1 != program.tag:
        pytest.skip("this kernel hashes program tags with SHA-1 (before the SHA-256 switch)")
    assert program.tag == kernel_tag


def _prog(map_index: int, r0: int) -> bytes:
    """r1 = map[map_index] (LD_IMM64, BPF_PSEUDO_MAP_FD); r0 = r0; exit."""
    return (struct.pack("<BBhi", 0x18, 0x11, 0, map_index) + struct.pack("<BBhi", 0, 0, 0, 0)
            + struct.pack("<BBhi", 0xB7, 0x00, 0, r0) + struct.pack("<BBhi", 0x95, 0, 0, 0))


def test_tag_ignores_map_fds_and_sees_code() -> None:
    from vxdp.bpf.program import MapSpec, MapType, Program
    spec = MapSpec("m", MapType.ARRAY, 4, 4, 1)
    a = Program("p", "xdp", _prog(0, 0), maps=(spec,))
    b = Program("p", "xdp", _prog(1, 0), maps=(spec, spec))
    c = Program("p", "xdp", _prog(0, 1), maps=(spec,))
    assert a.tag == b.tag != c.tag
    assert a.tag_sha1 == b.tag_sha1 != c.tag_sha1
