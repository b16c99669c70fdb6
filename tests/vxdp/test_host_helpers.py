"""bpf_fib_lookup (69) and bpf_perf_event_output (25) on the C core, beside the kernel.

fib_lookup answers as a host with no routes and forwarding disabled: the kernel gives the
same answers in a fresh network namespace (only `lo`, ifindex 1, forwarding off), where
the kernel side of this test runs (`unshare --net`, root only).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.engine import create_engine
from vxdp.bpf.isa import encode
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.bpf.verifier import verify

# copy struct bpf_fib_lookup (64 bytes) from the packet to the stack, flags from bytes 64-67,
# and return what bpf_fib_lookup(ctx, &params, 64, flags) returns
FIB = """
    mov %r6, %r1
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    mov %r4, %r2
    add %r4, 68
    jgt %r4, %r3, short
""" + "".join(f"    ldxdw %r5, [%r2+{i}]\n    stxdw [%r10{i - 64}], %r5\n" for i in range(0, 64, 8)) + """
    ldxw %r4, [%r2+64]
    mov %r1, %r6
    mov %r2, %r10
    add %r2, -64
    mov %r3, 64
    call 69
    exit
    short:
    mov %r0, 2
    exit
"""

AF_INET, AF_INET6 = 2, 10


def params(family: int, ifindex: int, flags: int = 0, src: bytes = bytes(16),
           dst: bytes = bytes(16)) -> bytes:
    return (struct.pack("<BBHHHII", family, 0, 0, 0, 0, ifindex, 0) + src + dst
            + bytes(16) + struct.pack("<I", flags))


LINK_LOCAL = bytes.fromhex("fe800000000000000000000000000001")
GLOBAL6 = bytes.fromhex("20010db8000000000000000000000001")
CASES = {
    "ipv4 on the ingress device": params(AF_INET, 1),
    "ipv4 on no device": params(AF_INET, 7),
    "ipv4 ifindex 0": params(AF_INET, 0),
    "ipv6 global": params(AF_INET6, 1, dst=GLOBAL6),
    "ipv6 link-local destination": params(AF_INET6, 7, dst=LINK_LOCAL),
    "ipv6 multicast source": params(AF_INET6, 1, src=b"\xff" + bytes(15), dst=GLOBAL6),
    "unknown family": params(99, 1),
    "undefined flag": params(AF_INET, 1, flags=1 << 6),
    "output and direct flags": params(AF_INET, 1, flags=3),
}


def fib_program() -> Program:
    return Program("fib", "xdp", encode(assemble(FIB)))


def test_fib_lookup_is_verified_and_answers_as_a_host_without_routes() -> None:
    prog = fib_program()
    assert verify(prog).accepted
    with create_engine("interp", prog) as eng:
        got = {name: r.retval for name, r in
               zip(CASES, eng.run_xdp(list(CASES.values())), strict=True)}
    enodev, eafnosupport, einval = (-19) & 0xFFFFFFFF, (-97) & 0xFFFFFFFF, (-22) & 0xFFFFFFFF
    assert got == {
        "ipv4 on the ingress device": 5,  # BPF_FIB_LKUP_RET_FWD_DISABLED
        "ipv4 on no device": enodev,
        "ipv4 ifindex 0": enodev,
        "ipv6 global": 5,
        "ipv6 link-local destination": 4,  # BPF_FIB_LKUP_RET_NOT_FWDED, before the device
        "ipv6 multicast source": 4,
        "unknown family": eafnosupport,
        "undefined flag": einval,
        "output and direct flags": 5,
    }


_KERNEL_SIDE = textwrap.dedent("""
    import json, sys
    from tests.vxdp.test_host_helpers import CASES, fib_program
    from vxdp.bpf.kernel import KernelEngine, kernel_unavailable
    if (why := kernel_unavailable()) is not None:
        print(json.dumps({"skip": why})); sys.exit(0)
    with KernelEngine(fib_program()) as eng:
        res = eng.run_xdp(list(CASES.values()))
    print(json.dumps({n: r.retval for n, r in zip(CASES, res)}))
""")


@pytest.mark.kernel
def test_fib_lookup_answers_as_the_kernel_in_a_fresh_network_namespace() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a fresh network namespace")
    # the kernel's half needs no packet core: under `make test-asan` it runs without the
    # sanitizers' preload (which unshare(1), loaded first, would not keep first)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "VXDP_CORE")}
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", _KERNEL_SIDE],
                          capture_output=True, text=True, check=False, timeout=120, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if proc.returncode != 0:
        pytest.skip(f"cannot run in a new network namespace: {proc.stderr.strip()[-300:]}")
    kernel = json.loads(proc.stdout)
    if "skip" in kernel:
        pytest.skip(f"kernel oracle unavailable: {kernel['skip']}")
    with create_engine("interp", fib_program()) as eng:
        ours = {n: r.retval for n, r in zip(CASES, eng.run_xdp(list(CASES.values())))}
    assert ours == kernel


PERF = """
    mov %r6, %r1
    stdw [%r10-8], 0x1234
    mov %r1, %r6
    lddw %r2, map_fd(0)
    lddw %r3, 0x6ffffffff
    mov %r4, %r10
    add %r4, -8
    mov %r5, 8
    call 25
    exit
"""


def test_perf_event_output_records_data_and_packet_bytes() -> None:
    events = MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 4)
    prog = Program("perf", "xdp", encode(assemble(PERF)), (events,))
    assert verify(prog).accepted
    with create_engine("interp", prog) as eng:
        res = eng.run_xdp([bytes(range(20)), bytes(range(100, 104)) + bytes(10)])
        m = eng.maps[0]
        assert isinstance(m, CoreMap)
        recs = m.records()
    assert [r.retval for r in res] == [0, 0]
    # BPF_F_CURRENT_CPU, 6 packet bytes appended: CPU 0 here
    assert recs == [(0, struct.pack("<Q", 0x1234) + bytes(range(6))),
                    (0, struct.pack("<Q", 0x1234) + bytes(range(100, 104)) + bytes(2))]
    assert m.records() == []  # taken once


@pytest.mark.parametrize(("flags_asm", "want"), [
    ("mov %r3, 4", -7),  # slot 4 of 4: E2BIG
    ("mov %r3, 1", -95),  # another CPU's slot: EOPNOTSUPP (its reader is on CPU 1)
    ("mov %r3, 1\nlsh %r3, 63", -22),  # an undefined flag: EINVAL
    ("lddw %r3, 0xffffffff\nmov %r9, 99\nlsh %r9, 32\nor %r3, %r9", -14),  # past the packet
])
def test_perf_event_output_refusals_follow_the_kernel(flags_asm: str, want: int) -> None:
    events = MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 4)
    text = (f"mov %r6, %r1\nstdw [%r10-8], 1\n{flags_asm}\nmov %r1, %r6\n"
            "lddw %r2, map_fd(0)\nmov %r4, %r10\nadd %r4, -8\nmov %r5, 8\ncall 25\nexit")
    prog = Program("perf", "xdp", encode(assemble(text)), (events,))
    assert verify(prog).accepted
    with create_engine("interp", prog) as eng:
        (res,) = eng.run_xdp([bytes(20)])
        assert eng.maps[0].records() == []
    assert res.retval == want & 0xFFFFFFFF


LOOP_SOURCES = ["loop_callback_ok.c", "loop_callback_unrolled.c"]


@pytest.mark.clang
@pytest.mark.parametrize("source", LOOP_SOURCES)
def test_bpf_loop_runs_the_same_on_every_engine(source: str) -> None:
    # bpf_loop calls back into the program: the interpreter runs the callback (for the
    # jit too) in the frame below; the kernel's answer is the reference where it runs
    from pathlib import Path

    from vxdp.bpf.clang import clang_unavailable, compile_c
    from vxdp.bpf.elf import load_object
    from vxdp.bpf.engine import ENGINES
    from vxdp.bpf.kernel import kernel_unavailable
    if reason := clang_unavailable():
        pytest.skip(reason)
    src = Path(__file__).parent / "verifier" / "c" / source
    prog = next(iter(load_object(compile_c(src)).programs.values()))
    pkt = bytes.fromhex("020000000001020000000002" "0800") + bytes(50)
    answers = {}
    for name in ("interp", "jit", "kernel"):
        if name not in ENGINES or (name == "kernel" and kernel_unavailable()):
            continue
        with create_engine(name, prog) as eng:
            answers[name] = [r.retval for q in (0, 0) for r in
                             eng.run_xdp([pkt], rx_queue_index=q)]
    assert len(set(map(tuple, answers.values()))) == 1, answers
    assert answers["interp"] == {"loop_callback_ok.c": [3, 3],
                                 "loop_callback_unrolled.c": [1, 1]}[source]


@pytest.mark.clang
def test_map_in_map_slots_lookups_and_updates_on_every_engine() -> None:
    # slot 1 holds inner_b from load (the object's `.values`); a packet starting with 1
    # bumps it, one with 0 finds slot 0 empty; a map put in the hash of maps by id is used
    from pathlib import Path

    from vxdp.bpf.clang import clang_unavailable, compile_c
    from vxdp.bpf.elf import load_object
    from vxdp.bpf.engine import ENGINES
    from vxdp.bpf.kernel import kernel_unavailable
    if reason := clang_unavailable():
        pytest.skip(reason)
    src = Path(__file__).parent / "verifier" / "c" / "map_in_map_ok.c"
    prog = next(iter(load_object(compile_c(src)).programs.values()))
    seen = {}
    for name in ("interp", "jit", "kernel"):
        if name not in ENGINES or (name == "kernel" and kernel_unavailable()):
            continue
        with create_engine(name, prog) as eng:
            maps = {m.name: m for m in eng.maps}
            ids = {n: m.id for n, m in maps.items()}
            assert maps["by_queue"].lookup(struct.pack("<I", 1)) == struct.pack("<I",
                                                                              ids["inner_b"])
            assert maps["by_queue"].lookup(struct.pack("<I", 0)) is None
            maps["by_ifindex"].update(struct.pack("<I", 1), struct.pack("<I", ids["inner_a"]))
            res = [r.retval for r in eng.run_xdp([bytes([q]) + bytes(59) for q in (0, 1, 1)])]
            seen[name] = (tuple(res), maps["inner_b"].lookup(bytes(4)), maps["inner_a"].lookup(bytes(4)))
    assert seen["interp"] == ((1, 2, 2), struct.pack("<Q", 2), struct.pack("<Q", 4))
    assert len(set(seen.values())) == 1, seen
