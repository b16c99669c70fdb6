"""XDP runs on the C core: the context, the frame of BPF_PROG_TEST_RUN, each helper's
semantics, tail calls and batches.  Where a case is deterministic it also runs on the
kernel (marked `kernel`), so the expected values are the oracle's, not ours."""

from __future__ import annotations

import errno
import struct

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.engine import Engine, create_engine
from vxdp.bpf.interp import InterpEngine
from vxdp.bpf.isa import encode
from vxdp.bpf.maps import possible_cpus
from vxdp.bpf.program import BPF_F_RDONLY_PROG, MapSpec, MapType, Program
from vxdp.errors import ProgramFault

PKT = bytes(range(62))
ENGINES = ["interp", pytest.param("kernel", marks=pytest.mark.kernel)]
EINVAL, EACCES, EFAULT, ERANGE = (-errno.EINVAL & 0xFFFFFFFF, -errno.EACCES & 0xFFFFFFFF,
                                  -errno.EFAULT & 0xFFFFFFFF, -errno.ERANGE & 0xFFFFFFFF)


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def prog(text: str, *maps: MapSpec) -> Program:
    return Program("t", "xdp", encode(assemble(text)), maps=maps)


def engine(name: str, program: Program) -> Engine:
    if name == "kernel":
        from vxdp.bpf.kernel import kernel_unavailable
        why = kernel_unavailable()
        if why:
            pytest.skip(why)
    return create_engine(name, program)


def run1(name: str, text: str, pkt: bytes = PKT, *maps: MapSpec) -> tuple[int, bytes]:
    with engine(name, prog(text, *maps)) as e:
        res = e.run_xdp([pkt])[0]
    return res.retval, res.data


def test_context_fields_and_pointers() -> None:
    e = InterpEngine(prog("ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r0, %r3\nsub %r0, %r2\n"
                          "exit"))
    assert [r.retval for r in e.run_xdp([PKT, PKT[:20]])] == [62, 20]
    e = InterpEngine(prog("ldxw %r0, [%r1+12]\nldxw %r2, [%r1+16]\nlsh %r2, 8\nor %r0, %r2\n"
                          "exit"))
    assert e.run_xdp([PKT], ingress_ifindex=3, rx_queue_index=2)[0].retval == 0x203


def test_packet_and_context_are_guarded() -> None:
    past_end = prog("ldxw %r2, [%r1+0]\nldxw %r0, [%r2+60]\nexit")
    with pytest.raises(ProgramFault, match=r"packet 1: invalid memory access at pc 1: "
                                           r"4-byte read at 0x[0-9a-f]+ outside every region"):
        InterpEngine(past_end).run_xdp([PKT + bytes(2), PKT])
    with pytest.raises(ProgramFault, match="context is read-only"):
        InterpEngine(prog("stw [%r1+0], 0\nmov %r0, 2\nexit")).run_xdp([PKT])
    with pytest.raises(ProgramFault, match="invalid bpf_context access off=2 size=4"):
        InterpEngine(prog("ldxw %r0, [%r1+2]\nexit")).run_xdp([PKT])
    with pytest.raises(ValueError, match="packet 0: 13 bytes"):
        InterpEngine(prog("mov %r0, 2\nexit")).run_xdp([PKT[:13]])


ADJUST = "mov %r6, %r1\nmov %r2, {off}\ncall {helper}\nexit"


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(("helper", "off", "ret", "out_len"), [
    (44, -216, 0, 62 + 216),   # down to the end of the 40-byte xdp_frame in the headroom
    (44, -217, EINVAL, 62),
    (44, 48, 0, 14),           # up to data_end - ETH_HLEN
    (44, 49, EINVAL, 62),
    (54, -36, 0, 62 + 36),     # meta: 4-aligned, up to the u8 meta_len
    (54, -2, EACCES, 62),
    (54, 4, EINVAL, 62),       # meta beyond data
    (65, 3520 - 62, 0, 3520),  # the tail grows to PAGE_SIZE - headroom - tailroom
    (65, 3520 - 61, EINVAL, 62),
    (65, -48, 0, 14),
    (65, -49, EINVAL, 62),
])
def test_adjust_helpers(name: str, helper: int, off: int, ret: int, out_len: int) -> None:
    got_ret, data = run1(name, ADJUST.format(off=off, helper=helper))
    assert (got_ret, len(data)) == (ret, out_len)
    if ret == 0 and off < 0 and helper != 65:
        assert data == bytes(-off) + PKT  # exposed headroom is zeroed
    if ret == 0 and helper == 65 and off > 0:
        assert data == PKT + bytes(off)   # grown tail is zeroed


def _stack_words(words: list[int]) -> str:
    """Store `words` in order at the bottom of the used stack, ending at r10."""
    n = 4 * len(words)
    return "\n".join(f"mov32 %r3, {w}\nstxw [%r10-{n - 4 * k}], %r3" for k, w in enumerate(words))


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(("frm", "to", "seed", "want"), [
    ([], [0x12345678, 0x9ABCDEF0], 0, 0xE259),
    ([0x12345678, 0x9ABCDEF0], [], 0, 0x1DA6),
    ([0x11111111, 0xFFFFFFF0], [0x22222222], 7, 0x2238),
    ([], [0xFFFFFFFF] * 4, 0xFFFFFFFF, 0xFFFF),
    ([0xFFFFFFFF] * 4, [], 0xFFFFFFFF, 0),
    ([], [], 0x12345678, 0x68AC),
])
def test_csum_diff(name: str, frm: list[int], to: list[int], seed: int, want: int) -> None:
    nf, nt = 4 * len(frm), 4 * len(to)
    r1 = f"mov %r1, %r10\nadd %r1, -{nf + nt}" if nf else "mov %r1, 0"
    r3 = f"mov %r3, %r10\nadd %r3, -{nt}" if nt else "mov %r3, 0"
    text = (f"{_stack_words(frm + to)}\n{r1}\nmov %r2, {nf}\n{r3}\nmov %r4, {nt}\n"
            f"mov32 %r5, {seed}\ncall 28\nexit")
    assert run1(name, text)[0] == want


FILL = "\n".join(f"lddw %r3, {0x0123456789ABCDEF * (k + 3) & (2**64 - 1)}\n"
                 f"stxdw [%r10-{8 * (k + 1)}], %r3" for k in range(64))


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(("fo", "fs", "to", "ts", "seed", "want"), [
    (-16, 6, -8, 8, 0, None),          # sizes need not be multiples of 4 any more (6.12+)
    (-7, 5, 0, 0, 0x1234, 0xD75D),      # an odd start address
    (0, 0, -9, 7, 0xFFFFFFFF, 0x7DB),
    (-3, 3, -8, 1, 0, 0x96F9),
    (-512, 256, -256, 256, 0, 0x6987),  # 512 bytes in all
    (-511, 300, -211, 211, 77, 0x982D),
])
def test_csum_diff_odd_sizes_and_addresses(name: str, fo: int, fs: int, to: int, ts: int,
                                           seed: int, want: int | None) -> None:
    r1 = f"mov %r1, %r10\nadd %r1, {fo}" if fs else "mov %r1, 0"
    r3 = f"mov %r3, %r10\nadd %r3, {to}" if ts else "mov %r3, 0"
    got = run1(name, f"{FILL}\n{r1}\nmov %r2, {fs}\n{r3}\nmov %r4, {ts}\nmov32 %r5, {seed}\n"
                     "call 28\nexit")[0]
    assert got <= 0xFFFF
    if want is not None:
        assert got == want


STRTOX = MapSpec("s.rodata", MapType.ARRAY, 4, 32, 1, flags=BPF_F_RDONLY_PROG)
RESULT = MapSpec("r.bss", MapType.ARRAY, 4, 16, 1, initial=bytes(16))


def strtox(name: str, helper: int, text: bytes, base: int) -> tuple[int, int]:
    spec = MapSpec(STRTOX.name, STRTOX.type, 4, 32, 1, STRTOX.flags, text.ljust(32, b"\0"),
                   frozen=True)
    code = (f"stdw [%r10-8], 77\nlddw %r1, map_value(0, 0)\nmov %r2, {len(text)}\n"
            f"mov %r3, {base}\nmov %r4, %r10\nadd %r4, -8\ncall {helper}\n"
            "lddw %r6, map_value(1, 0)\nstxdw [%r6+0], %r0\nldxdw %r1, [%r10-8]\n"
            "stxdw [%r6+8], %r1\nmov %r0, 2\nexit")
    with engine(name, prog(code, spec, RESULT)) as e:
        e.run_xdp([PKT])
        value = e.maps[1].lookup(u32(0))
    assert isinstance(value, bytes)
    return struct.unpack("<qq", value)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(("helper", "text", "base", "want"), [
    (105, b"  -0x1f", 0, (7, -31)),
    (105, b"123abc", 10, (3, 123)),
    (105, b"0x", 16, (-errno.EINVAL, 0)),
    (105, b"0x", 0, (1, 0)),
    (105, b"077", 0, (3, 63)),
    (105, b"9223372036854775808", 10, (-errno.ERANGE, 0)),
    (105, b"-9223372036854775808", 10, (20, -(1 << 63))),
    (105, b"   ", 10, (-errno.EINVAL, 0)),
    (105, b"12", 7, (-errno.EINVAL, 0)),
    (106, b"9223372036854775808", 10, (19, -(1 << 63))),
    (106, b"18446744073709551616", 10, (-errno.ERANGE, 0)),
    (106, b"-1", 10, (-errno.EINVAL, 0)),
    (106, b"fF", 16, (2, 255)),
])
def test_strtol_strtoul(name: str, helper: int, text: bytes, base: int,
                        want: tuple[int, int]) -> None:
    assert strtox(name, helper, text, base) == want


@pytest.mark.parametrize("name", ENGINES)
def test_load_store_bytes_and_buff_len(name: str) -> None:
    text = ("mov %r6, %r1\nmov %r2, 2\nmov %r3, %r10\nadd %r3, -4\nmov %r4, 4\ncall 189\n"
            "mov %r7, %r0\nmov %r1, %r6\nmov %r2, 10\nmov %r3, %r10\nadd %r3, -4\nmov %r4, 4\n"
            "call 190\nor %r7, %r0\nmov %r1, %r6\nmov %r2, 60\nmov %r3, %r10\nadd %r3, -4\n"
            "mov %r4, 4\ncall 189\nmov %r1, %r6\ncall 188\nexit")
    ret, data = run1(name, text)
    assert ret == 62
    assert data == PKT[:10] + PKT[2:6] + PKT[14:]
    ret, _ = run1(name, text.replace("call 188", "mov %r0, %r7"))
    assert ret == 0


def test_load_bytes_past_the_end_is_einval() -> None:
    text = ("mov %r2, 60\nmov %r3, %r10\nadd %r3, -4\nmov %r4, 4\ncall 189\nexit")
    assert run1("interp", text)[0] == EINVAL


def test_redirect_and_redirect_map_record_the_target() -> None:
    e = InterpEngine(prog("mov %r1, 5\nmov %r2, 0\ncall 23\nexit"))
    assert (e.run_xdp([PKT])[0].retval, e.run_xdp([PKT])[0].redirect) == (4, 5)
    e = InterpEngine(prog("mov %r1, 5\nmov %r2, 1\ncall 23\nexit"))
    assert (e.run_xdp([PKT])[0].retval, e.run_xdp([PKT])[0].redirect) == (0, None)
    dev = MapSpec("tx", MapType.DEVMAP, 4, 4, 4)
    code = ("ldxw %r2, [%r1+0]\nldxb %r2, [%r2+0]\nlddw %r1, map_fd(0)\nmov %r3, 2\n"
            "call 51\nexit")
    e = InterpEngine(prog(code, dev))
    e.maps[0].update(u32(1), u32(7))
    res = e.run_xdp([b"\x01" + PKT[1:], b"\x03" + PKT[1:]])
    assert [(r.retval, r.redirect) for r in res] == [(4, 7), (2, None)]


COUNTER = MapSpec("cnt", MapType.ARRAY, 4, 8, 1)
JUMPS = MapSpec("jt", MapType.PROG_ARRAY, 4, 4, 1)
SELF_TAIL = """
    mov %r6, %r1
    stw [%r10-4], 0
    lddw %r1, map_fd(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, +2
    mov %r1, 1
    lock add [%r0+0], %r1
    mov %r1, %r6
    lddw %r2, map_fd(1)
    mov %r3, 0
    call 12
    mov %r0, 2
    exit
"""


@pytest.mark.parametrize("name", ENGINES)
def test_tail_calls_stop_after_33(name: str) -> None:
    p = prog(SELF_TAIL, COUNTER, JUMPS)
    with engine(name, p) as e:
        e.maps[1].update(u32(0), u32(e.load_tail_target(p)))
        assert e.run_xdp([PKT])[0].retval == 2
        assert e.maps[0].lookup(u32(0)) == struct.pack("<Q", 1 + 33)


def test_tail_call_to_an_empty_slot_falls_through() -> None:
    e = InterpEngine(prog(SELF_TAIL, COUNTER, JUMPS))
    assert e.run_xdp([PKT])[0].retval == 2
    assert e.maps[0].lookup(u32(0)) == struct.pack("<Q", 1)


def test_map_helpers_and_per_cpu_slots() -> None:
    spec = MapSpec("pc", MapType.PERCPU_ARRAY, 4, 8, 1)
    code = ("stw [%r10-4], 0\nlddw %r1, map_fd(0)\nmov %r2, %r10\nadd %r2, -4\ncall 1\n"
            "jeq %r0, 0, +2\nmov %r1, 1\nlock add [%r0+0], %r1\ncall 8\nexit")
    e = InterpEngine(prog(code, spec))
    cpu = min(1, possible_cpus() - 1)
    e.cpu = cpu
    assert [r.retval for r in e.run_xdp([PKT] * 3)] == [cpu] * 3
    want = [bytes(8)] * possible_cpus()
    want[cpu] = struct.pack("<Q", 3)
    assert e.maps[0].lookup(u32(0)) == want
    h = MapSpec("h", MapType.HASH, 4, 4, 1)
    upd = ("stw [%r10-4], 9\nstw [%r10-8], 0x55\nlddw %r1, map_fd(0)\nmov %r2, %r10\n"
           "add %r2, -4\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 1\ncall 2\nexit")
    e = InterpEngine(prog(upd, h))
    assert e.run_xdp([PKT, PKT])[0].retval == 0
    assert e.run_xdp([PKT])[0].retval == -errno.EEXIST & 0xFFFFFFFF
    assert e.maps[0].lookup(u32(9)) == u32(0x55)


def test_ringbuf_records_reach_python() -> None:
    rb = MapSpec("events", MapType.RINGBUF, 0, 0, 4096)
    code = """
        mov %r6, %r1
        lddw %r1, map_fd(0)
        mov %r2, 8
        mov %r3, 0
        call 131
        jeq %r0, 0, +4
        stdw [%r0+0], 0x1234
        mov %r1, %r0
        mov %r2, 0
        call 132
        stdw [%r10-8], 0x77
        lddw %r1, map_fd(0)
        mov %r2, %r10
        add %r2, -8
        mov %r3, 4
        mov %r4, 0
        call 130
        lddw %r1, map_fd(0)
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, +3
        mov %r1, %r0
        mov %r2, 0
        call 133
        mov %r0, 2
        exit
    """
    e = InterpEngine(prog(code, rb))
    e.run_xdp([PKT] * 200)  # more than the 4 KiB ring holds: later records are refused
    m = e.maps[0]
    assert isinstance(m, CoreMap)
    recs = m.ringbuf_drain()
    assert recs[:2] == [struct.pack("<Q", 0x1234), u32(0x77)]
    assert 2 < len(recs) < 400
    e.run_xdp([PKT])
    assert m.ringbuf_drain() == [struct.pack("<Q", 0x1234), u32(0x77)]


def test_ringbuf_sample_bounds_are_enforced() -> None:
    rb = MapSpec("events", MapType.RINGBUF, 0, 0, 4096)
    code = ("lddw %r1, map_fd(0)\nmov %r2, 8\nmov %r3, 0\ncall 131\njeq %r0, 0, +3\n"
            "stdw [%r0+8], 1\nmov %r1, %r0\ncall 132\nmov %r0, 2\nexit")
    with pytest.raises(ProgramFault, match="at pc 6: 8-byte write"):
        InterpEngine(prog(code, rb)).run_xdp([PKT])


def test_trace_printk_is_captured() -> None:
    fmt = MapSpec("f.rodata", MapType.ARRAY, 4, 24, 1, initial=b"len=%d q=%u x=%x\0",
                  frozen=True)
    code = ("ldxw %r3, [%r1+4]\nldxw %r2, [%r1+0]\nsub %r3, %r2\nmov %r4, 7\nmov %r5, -1\n"
            "lddw %r1, map_value(0, 0)\nmov %r2, 17\ncall 6\nexit")
    e = InterpEngine(prog(code, fmt))
    assert [r.retval for r in e.run_xdp([PKT, PKT[:20]])] == [len("len=62 q=7 x=ffffffff")] * 2
    assert e.trace_lines() == ["len=62 q=7 x=ffffffff", "len=20 q=7 x=ffffffff"]
    assert e.trace_lines() == []


def test_trace_printk_string_from_anywhere_prints_empty_not_a_fault() -> None:
    # the verifier leaves arguments 3-5 unchecked (as the kernel): a %s of a number reads
    # nothing, as strncpy_from_kernel_nofault, and the run goes on
    fmt = MapSpec("f.rodata", MapType.ARRAY, 4, 16, 1, initial=b"s=[%s] n=%d\0",
                  frozen=True)
    code = ("mov %r3, 12345\nmov %r4, 9\nlddw %r1, map_value(0, 0)\nmov %r2, 12\n"
            "call 6\nmov %r0, 2\nexit")
    e = InterpEngine(prog(code, fmt))
    assert [r.retval for r in e.run_xdp([PKT])] == [2]
    assert e.trace_lines() == ["s=[] n=9"]


def test_prandom_is_seeded_and_cpu_time_helpers_answer() -> None:
    p = prog("call 7\nexit")
    a = [r.retval for r in InterpEngine(p, seed=1).run_xdp([PKT] * 8)]
    assert a == [r.retval for r in InterpEngine(p, seed=1).run_xdp([PKT] * 8)]
    assert a != [r.retval for r in InterpEngine(p, seed=2).run_xdp([PKT] * 8)]
    assert len(set(a)) == 8
    t = InterpEngine(prog("call 5\nmov %r6, %r0\ncall 125\ncall 5\nsub %r0, %r6\nexit"))
    assert 0 <= t.run_xdp([PKT])[0].retval < 10**9
    assert InterpEngine(prog("call 118\nexit")).run_xdp([PKT])[0].retval != 0


def test_batch_keeps_order_and_lengths() -> None:
    pkts = [bytes([i % 256]) * (14 + i) for i in range(300)]
    e = InterpEngine(prog("mov %r6, %r1\nmov %r2, 4\ncall 65\nldxw %r2, [%r6+0]\n"
                          "ldxb %r0, [%r2+0]\nexit"))
    res = e.run_xdp(pkts)
    assert [r.retval for r in res] == [i % 256 for i in range(300)]
    assert [r.data for r in res] == [p + bytes(4) for p in pkts]


@pytest.mark.parametrize("name", ENGINES)
def test_longest_output_is_the_whole_reachable_frame(name: str) -> None:
    # data down to the end of the xdp_frame, data_end up to the hard end: 4096 - 320 - 40
    text = ("mov %r6, %r1\nmov %r2, -216\ncall 44\nmov %r1, %r6\nmov %r2, 3458\ncall 65\n"
            "mov %r1, %r6\nmov %r2, 1\ncall 65\nexit")
    with engine(name, prog(text)) as e:
        res = e.run_xdp([PKT] * 3)
    assert [(r.retval, len(r.data)) for r in res] == [(EINVAL, 3736)] * 3
    assert all(r.data == bytes(216) + PKT + bytes(3458) for r in res)


def test_hostile_helper_calls_never_hurt_the_process() -> None:
    """Random programs calling every XDP helper with pointers into and around the packet,
    the stack, the context and map values: each run ends with a result or a ProgramFault."""
    import random

    from vxdp.bpf.helpers import HELPERS, XDP_HELPER_IDS, Arg
    from vxdp.bpf.program import BPF_F_NO_PREALLOC
    maps = (MapSpec("a", MapType.ARRAY, 4, 16, 4), MapSpec("h", MapType.HASH, 4, 8, 4),
            MapSpec("p", MapType.PERCPU_ARRAY, 4, 8, 2),
            MapSpec("l", MapType.LPM_TRIE, 8, 8, 4, flags=BPF_F_NO_PREALLOC),
            MapSpec("r", MapType.RINGBUF, 0, 0, 4096), MapSpec("d", MapType.DEVMAP, 4, 4, 4),
            MapSpec("j", MapType.PROG_ARRAY, 4, 4, 2), MapSpec("u", MapType.LRU_HASH, 4, 8, 4))
    helpers = sorted(XDP_HELPER_IDS | {12})
    outcomes = {"ok": 0, "fault": 0}
    for seed in range(400):
        rnd = random.Random(seed)
        lines = ["mov %r6, %r1", "ldxw %r7, [%r1+0]", "ldxw %r8, [%r1+4]", "mov %r9, %r10",
                 "add %r9, -64", "stdw [%r10-64], 0", "stdw [%r10-56], 0"]
        for _ in range(rnd.randint(1, 6)):
            helper = rnd.choice(helpers)
            args = HELPERS[helper].args if helper in HELPERS else ()
            for reg in range(1, 6):
                kind = args[reg - 1] if reg <= len(args) else None
                pick = rnd.randrange(7)
                if kind is Arg.PTR_TO_CTX and rnd.random() < 0.8:
                    lines.append(f"mov %r{reg}, %r6")
                elif (kind is Arg.CONST_MAP_PTR and rnd.random() < 0.8) or pick == 0:
                    lines.append(f"lddw %r{reg}, map_fd({rnd.randrange(len(maps))})")
                elif pick == 1:
                    lines.append(f"mov %r{reg}, {rnd.choice([0, 1, 4, 8, 16, -1, 3000])}")
                else:
                    base = rnd.choice([6, 7, 8, 9, 10])
                    lines.append(f"mov %r{reg}, %r{base}")
                    lines.append(f"add %r{reg}, {rnd.choice([0, 4, -8, 14, 60, -300, 64])}")
            lines.append(f"call {helper}")
            if rnd.random() < 0.3:  # use a returned pointer, null-checked
                lines += ["jeq %r0, 0, +1", f"ldxb %r2, [%r0+{rnd.choice([0, 7, 16, 64])}]"]
        lines += ["mov %r0, 2", "exit"]
        engine = InterpEngine(prog("\n".join(lines), *maps), seed=seed)
        engine.maps[6].update(u32(0), u32(engine.load_tail_target(prog("mov %r0, 1\nexit"))))
        try:
            engine.run_xdp([PKT, PKT[:20]])
            outcomes["ok"] += 1
        except ProgramFault as exc:
            assert " at pc " in str(exc)
            outcomes["fault"] += 1
    assert outcomes["ok"] >= 5 and outcomes["fault"] >= 100, outcomes
