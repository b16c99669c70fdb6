"""The image means what the program means: the NIC's translated code, run on the VXME-32
simulator, against the packet core's interpreter on the same frames and maps.

Three kinds of evidence: random straight-line programs over every ALU and compare the
translator maps (properties, with Hypothesis), division by constants over the whole u32
range of divisors, and the corpus of C programs (tests/vxdp/progs) wherever the NIC takes
one: verdicts, bytes and maps must be equal."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import virtio_spec.offload as O
from tests.vxdp.corpus import CASES, Case
from vxdp.bpf.asm import assemble
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object, select_program
from vxdp.bpf.engine import Engine, XdpResult, create_engine
from vxdp.bpf.interp import InterpEngine
from vxdp.bpf.isa import encode
from vxdp.bpf.nic import translate
from vxdp.bpf.nic.engine import NicEngine
from vxdp.bpf.program import MapSpec, MapType, Program, XdpAction
from vxdp.bpf.verifier import verify
from vxdp.errors import ProgramFault, TranslationRefused

from ..runtime.conftest import core_unavailable

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))

#: r6 = data, r7 = data_end; r1..r5 and r0 loaded from the first 48 bytes; at the end
#: r0..r5 are stored back over them, so the output bytes show every register.
PROLOGUE = """
ldxw %r6, [%r1+0]
ldxw %r7, [%r1+4]
mov %r8, %r6
add %r8, 48
jgt %r8, %r7, out
ldxdw %r0, [%r6+0]
ldxdw %r1, [%r6+8]
ldxdw %r2, [%r6+16]
ldxdw %r3, [%r6+24]
ldxdw %r4, [%r6+32]
ldxdw %r5, [%r6+40]
"""
EPILOGUE = """
stxdw [%r6+0], %r0
stxdw [%r6+8], %r1
stxdw [%r6+16], %r2
stxdw [%r6+24], %r3
stxdw [%r6+32], %r4
stxdw [%r6+40], %r5
out:
mov %r0, 2
exit
"""
EDGES = [0, 1, -1, 2, 31, 32, 33, 63, 64, 0x7FFFFFFF, -0x80000000, 0xFFFF, -2]
ALU = ["add", "sub", "mul", "or", "and", "xor", "lsh", "rsh", "arsh", "mov"]
JMP = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"]

reg = st.sampled_from(["%r0", "%r1", "%r2", "%r3", "%r4", "%r5"])
imm = st.one_of(st.sampled_from(EDGES), st.integers(-2**31, 2**31 - 1))
width = st.sampled_from(["", "32"])


@st.composite
def op(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["alu", "alu", "alu", "neg", "div", "end", "jmp"]))
    d = draw(reg)
    if kind == "alu":
        name, w = draw(st.sampled_from(ALU)), draw(width)
        src = draw(st.one_of(reg, imm.map(str)))
        if name in ("lsh", "rsh", "arsh") and not src.startswith("%"):
            src = str(draw(st.integers(0, 31 if w else 63)))
        return [f"{name}{w} {d}, {src}"]
    if kind == "neg":
        return [f"neg{draw(width)} {d}"]
    if kind == "div":
        return [f"div32 {d}, {draw(st.integers(0, 2**32 - 1))}"]
    if kind == "end":
        return [f"{draw(st.sampled_from(['be', 'le']))}{draw(st.sampled_from([16, 32, 64]))} {d}"]
    src = draw(st.one_of(reg, imm.map(str)))
    return [f"{draw(st.sampled_from(JMP))}{draw(width)} {d}, {src}, +1",
            f"xor {draw(reg)}, {draw(imm)}"]  # what the jump skips, or not


def run(engine: Engine, frames: list[bytes]) -> list[XdpResult]:
    with engine:
        return engine.run_xdp(frames)


def both(program: Program, frames: list[bytes]) -> tuple[list[XdpResult], list[XdpResult]]:
    return run(InterpEngine(program), frames), run(NicEngine(program), frames)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op(), min_size=1, max_size=14),
       st.lists(st.binary(min_size=48, max_size=80), min_size=1, max_size=3))
def test_alu_and_compares_mean_what_the_interpreter_says(ops: list[list[str]],
                                                         frames: list[bytes]) -> None:
    text = PROLOGUE + "\n".join(line for o in ops for line in o) + EPILOGUE
    want, got = both(Program("alu", "xdp", encode(assemble(text))), frames)
    assert got == want, text


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.sampled_from([3, 5, 7, 10, 641, 0x7FFFFFFF, 0x80000001, 0xFFFFFFFB,
                                  0xFFFFFFFF, 2**31, 1, 0]),
                 st.integers(2, 2**32 - 1)),
       st.lists(st.one_of(st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]),
                          st.integers(0, 2**32 - 1)), min_size=8, max_size=8))
def test_division_by_a_constant_is_exact(divisor: int, dividends: list[int]) -> None:
    """The reciprocal the translator multiplies by gives x / d for every u32 x."""
    text = PROLOGUE + f"ldxw %r1, [%r6+0]\ndiv32 %r1, {divisor}\nstxw [%r6+0], %r1\nja out\n" \
        + EPILOGUE
    frames = [struct.pack("<I", x) + bytes(60) for x in dividends]
    want, got = both(Program("div", "xdp", encode(assemble(text))), frames)
    assert got == want
    for x, res in zip(dividends, got, strict=True):
        assert struct.unpack_from("<I", res.data)[0] == (x // divisor if divisor else 0)


@pytest.mark.parametrize("width", ["", "32"])
@pytest.mark.parametrize("name", ["lsh", "rsh", "arsh"])
def test_shifts_by_every_amount(name: str, width: str) -> None:
    """A shift by each amount, as an immediate and from a register (the 64-bit ones
    cross the halves of the register pair), on values with bits on both sides."""
    bits = 32 if width else 64
    body = [f"mov %r3, %r1\n{name}{width} %r3, {k}\nstxdw [%r6+{48 + 8 * k}], %r3"
            for k in range(bits)]
    body.append(f"mov %r3, %r1\n{name}{width} %r3, %r2\nstxdw [%r6+24], %r3")
    text = PROLOGUE.replace("add %r8, 48", f"add %r8, {48 + 8 * bits}") + "\n".join(body) \
        + EPILOGUE
    values = [0x8000000000000001, 0xFFFFFFFF, 0x123456789ABCDEF0, 2**63 - 1, 0xFFFFFFFF00000000]
    frames = [struct.pack("<QQQ", 0, v, amount) + bytes(24 + 8 * bits)
              for v in values for amount in [*range(bits), bits, 2 * bits - 1, 2**64 - 1]]
    want, got = both(Program("shift", "xdp", encode(assemble(text))), frames)
    assert got == want


def test_compares_at_the_edges_of_64_bits() -> None:
    """Every 64-bit and 32-bit compare on values that carry, borrow and overflow."""
    values = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2]
    lines = []
    for bit, cond in enumerate(JMP):
        for w in ("", "32"):
            lines += [f"{cond}{w} %r1, %r2, +1", f"or %r3, {1 << (bit if not w else bit + 11)}"]
    text = PROLOGUE + "mov %r3, 0\n" + "\n".join(lines) + EPILOGUE
    frames = [struct.pack("<QQQ", 0, a, b) + bytes(40) for a in values for b in values]
    want, got = both(Program("cmp", "xdp", encode(assemble(text))), frames)
    assert got == want
    assert len({r.data[24:32] for r in got}) > 20  # the compares went different ways


HELPERS_MAP = MapSpec("h", MapType.HASH, 4, 8, 4)
HELPERS_ASM = """
mov %r6, %r1
ldxw %r2, [%r6+0]
ldxw %r3, [%r6+4]
mov %r4, %r2
add %r4, 16
jgt %r4, %r3, out
ldxb %r7, [%r2+0]
and %r7, 7
stxw [%r10-4], %r7
ldxdw %r8, [%r2+8]
stxdw [%r10-16], %r8
ldxb %r9, [%r2+1]
lddw %r1, map_fd(0)
mov %r2, %r10
add %r2, -4
mov %r3, %r10
add %r3, -16
mov %r4, %r9
and %r4, 3
call 2
mov %r8, %r0
jset %r9, 4, del
lddw %r1, map_fd(0)
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, adjust
mov %r1, %r9
lock add [%r0+0], %r1
lock add32 [%r0+4], %r1
ja adjust
del:
lddw %r1, map_fd(0)
mov %r2, %r10
add %r2, -4
call 3
add %r8, %r0
adjust:
call 7
mov %r7, %r0
mov %r1, %r6
mov %r2, %r9
and %r2, 15
sub %r2, 8
call 44
add %r8, %r0
mov %r1, %r6
mov %r2, %r9
rsh %r2, 4
sub %r2, 6
call 65
add %r8, %r0
ldxw %r2, [%r6+0]
ldxw %r3, [%r6+4]
mov %r4, %r2
add %r4, 14
jgt %r4, %r3, out
stxw [%r2+0], %r8
stxh [%r2+4], %r7
out:
mov %r0, 2
exit
"""


def test_map_helpers_atomics_and_packet_helpers_agree() -> None:
    """update (flags from the frame), lookup and atomic adds, delete, get_prandom_u32,
    xdp_adjust_head and xdp_adjust_tail, with their return codes written into the frame
    and the hash map compared at the end."""
    program = Program("helpers", "xdp", encode(assemble(HELPERS_ASM)), (HELPERS_MAP,))
    assert verify(program, profile=O.SMARTNIC).accepted
    frames = [bytes([k, flags]) + bytes(range(2, 40)) for k in range(8) for flags in
              (0, 1, 2, 4, 5, 0x13, 0x26, 0x3C, 0xF9)]
    with InterpEngine(program) as interp, NicEngine(program) as nic:
        want, got = interp.run_xdp(frames), nic.run_xdp(frames)
        assert got == want
        assert dict(nic.maps[0].items()) == dict(interp.maps[0].items())
    assert {len(r.data) for r in got} != {len(frames[0])}  # the helpers moved the frame
    assert len({r.data[4:6] for r in got}) > 10  # get_prandom_u32's values made it out


def test_a_fault_names_the_frame_the_word_and_the_bpf_pc() -> None:
    """What the verifier would refuse still stops at run time, on both sides."""
    text = "ldxw %r2, [%r1+0]\nldxw %r0, [%r2+4000]\nexit"
    program = Program("oob", "xdp", encode(assemble(text)))
    with pytest.raises(ProgramFault, match=r"packet 0: invalid pkt access at word 0x0006 "
                                           r"\(bpf pc 1\)"), NicEngine(program) as nic:
        nic.run_xdp([bytes(64)])
    with pytest.raises(ProgramFault), InterpEngine(program) as interp:
        interp.run_xdp([bytes(64)])


# ------------------------------------------------------------------- the C corpus


def _program(case: Case) -> Program:
    obj = load_object(compile_c(case.path), name=Path(case.source).stem)
    return select_program(obj, name=case.program)


def _nic_takes(case: Case) -> bool:
    program = _program(case)
    if not verify(program, profile=O.SMARTNIC).accepted:
        return False
    try:
        translate(program)
    except TranslationRefused:
        return False
    return True


def _outcome(engine_name: str, case: Case) -> tuple[list[XdpResult], dict[str, object]]:
    obj = load_object(compile_c(case.path), name=Path(case.source).stem)
    program = select_program(obj, name=case.program)
    with create_engine(engine_name, program) as engine:
        if case.prime is not None:
            case.prime(engine, obj)
        results = engine.run_xdp(case.packets())
        return results, {m.name: dict(m.items()) for m in engine.maps}


@pytest.mark.clang
def test_the_corpus_programs_the_nic_takes_run_as_on_the_interpreter() -> None:
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    taken = [c for c in CASES if _nic_takes(c)]
    assert len(taken) >= 5, [c.id for c in taken]
    for case in taken:
        want_results, want_maps = _outcome("interp", case)
        got_results, got_maps = _outcome("smartnic", case)
        assert got_results == want_results, case.id
        assert got_maps == want_maps, case.id
        assert {r.retval for r in want_results} <= {int(a) for a in XdpAction}


# ------------------------------------------------------------------- vxdp exec


@pytest.mark.clang
def test_vxdp_exec_runs_the_image_or_says_why_not(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--engine smartnic`: the same JSON as the interpreter's for a program the NIC
    takes; exit 2 naming the program, the pc and the rule for one it refuses."""
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    from vxdp.cli import main
    from vxdp.packets import TrafficGenerator
    from vxdp.pcap import write_pcap
    progs = Path(__file__).parents[1] / "progs"
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, TrafficGenerator(7).packets(20))
    counter = compile_c(progs / "xdp_array_counter.c")
    outputs = []
    for engine in ("interp", "smartnic"):
        assert main(["exec", str(counter), "--pcap", str(pcap), "--engine", engine, "-j"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 21
    flow = compile_c(progs / "xdp_flow_hash.c")
    assert main(["exec", str(flow), "--pcap", str(pcap), "--engine", "smartnic"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vxdp: error: program 'xdp_flow_lookup': the NIC's translator "
                          "(vxme-32) refuses it: pc 81: ") and "map writes not supported" in err
