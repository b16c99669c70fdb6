"""The `jit` engine: compiled programs behave as the interpreter does, value for value and
fault message for fault message, in raw mode (every bpf_conformance file, the interpreter's
own cases, hostile programs) and in XDP mode (context, packet moves, frames, tail calls);
the generated C is readable and warning-free, and compiled objects are cached by digest."""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.vxdp import test_differential as diff
from tests.vxdp.corpus import Case
from tests.vxdp.test_interp import ALU_CASES, JMP_CASES, asm, hostile_program, raw
from vxdp import native
from vxdp.bpf import interp, jitgen
from vxdp.bpf.clang import clang_unavailable
from vxdp.bpf.datatest import data_files, parse_file
from vxdp.bpf.engine import Engine, create_engine
from vxdp.bpf.interp import InterpEngine
from vxdp.bpf.program import BPF_F_RDONLY_PROG, MapSpec, MapType, Program
from vxdp.errors import InvalidProgram, ProgramFault, VxdpError

# no C compiler here: the engine is unavailable, and says why
jit = pytest.importorskip("vxdp.bpf.jit", exc_type=ImportError)
JitEngine = jit.JitEngine

CONFORMANCE = Path(os.environ.get("VXDP_CONFORMANCE_DIR",
                                  "/work/shared/testdata/bpf_conformance"))
ROOT = Path(__file__).resolve().parents[2]
PKT = bytes(range(62))
RunRaw = Callable[[bytes, bytes], int]


def host_addresses_hidden(text: str) -> str:
    """Fault texts name host addresses, which differ between any two runs."""
    return re.sub(r"0x[0-9a-f]+", lambda m: "0xHOST" if 1 << 20 <= int(m.group(), 16) < 1 << 47
                  else m.group(), text)


def outcome(run: RunRaw, code: bytes, mem: bytes = b"") -> tuple[str, object]:
    """What a user sees of one raw run: the value, or the error and its exact text."""
    try:
        return "r0", run(code, mem)
    except ProgramFault as exc:
        return "fault", host_addresses_hidden(f"{exc} (errno {exc.errno})")
    except InvalidProgram as exc:
        return "refused", str(exc)


def same(code: bytes, mem: bytes = b"") -> tuple[str, object]:
    want = outcome(interp.run_raw, code, mem)
    got = outcome(jit.run_raw, code, mem)
    assert got == want, f"jit {got} != interp {want}"
    return got


# ---------------------------------------------------------------- raw mode

@pytest.mark.parametrize(("body", "want"), ALU_CASES + [("mov %r0, 0\n" + b, w)
                                                        for b, w in JMP_CASES])
def test_alu_and_jump_cases_of_the_interpreter(body: str, want: int) -> None:
    assert same(asm(body + "\nexit")) == ("r0", want)


def test_every_conformance_file_runs_as_on_the_interpreter() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE}: no bpf_conformance files here")
    tests = [(p.stem, t.program(), t.mem) for p in data_files(CONFORMANCE)
             if (t := parse_file(p)).program() is not None]
    jit.precompile([code for _, code, _ in tests if code], native.MODE_RAW)
    kinds: dict[str, int] = {}
    for name, code, mem in tests:
        assert code is not None
        want = outcome(interp.run_raw, code, mem)
        got = outcome(jit.run_raw, code, mem)
        assert got == want, f"{name}: jit {got} != interp {want}"
        kinds[got[0]] = kinds.get(got[0], 0) + 1
    assert len(tests) > 300 and kinds["r0"] > 300, kinds


def test_faults_carry_the_interpreters_messages() -> None:
    cases = [
        ("mov %r0, 0\nldxb %r0, [%r1+4]\nexit", b"1234", "1-byte read"),
        ("stdw [%r10+0], 1\nexit", b"", "8-byte write"),
        ("stdw [%r10-520], 1\nexit", b"", "8-byte write"),
        ("stw [%r10-2], 1\nexit", b"", "4-byte write"),  # across the top of the frame
        ("ldxh %r0, [%r10-513]\nexit", b"", "2-byte read"),  # below the frame in use
        ("lddw %r1, 0xffffffffffffffff\nldxdw %r0, [%r1+0]\nexit", b"", "0xffffffffffffffff"),
        ("mov %r1, 1\nlock add [%r10-7], %r1\nexit", b"", "misaligned 8-byte atomic"),
        ("mov %r1, 1\nlock fetch add32 [%r10-6], %r1\nexit", b"", "misaligned 4-byte"),
        ("mov %r2, 100\ncall 1\nexit", b"abc", "at pc 1"),
        ("mov %r0, 0\nja -1\nexit", b"", "branch budget"),
        ("mov %r1, 77\ncall %r1\nexit", b"", "callx at pc 1 to unknown helper 77"),
    ]
    for text, mem, words in cases:
        kind, message = same(asm(text), mem)
        assert kind == "fault" and words in str(message), (text, message)


def test_frames_depth_and_the_unwinding_helper() -> None:
    def chain(depth: int) -> bytes:
        lines = [f"call local f{i + 1}" if i < depth else "mov %r0, 1" for i in range(depth + 1)]
        return asm("\n".join(f"f{i}:\n{line}\nexit" for i, line in enumerate(lines)))
    assert same(chain(7)) == ("r0", 1)
    kind, message = same(chain(8))
    assert kind == "fault" and "too deep at pc 14" in str(message)
    assert same(asm("""
        mov %r6, 6
        stdw [%r10-8], 42
        mov %r1, %r10
        call local f
        add %r0, %r6
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        exit
    f:
        mov %r6, 100
        stdw [%r10-8], 1000
        ldxdw %r0, [%r1-8]
        exit
    """)) == ("r0", 42 + 6 + 42)
    # helper 5 ends the program (from a subprogram too) when it returns 0
    assert same(asm("call local f\nmov %r0, 9\nexit\nf:\nmov %r1, 0\ncall 5\nmov %r0, 2\n"
                    "exit")) == ("r0", 0)
    assert same(asm("mov %r1, 0\nmov %r2, 5\ncall %r2\nmov %r0, 2\nexit")) == ("r0", 0)


def test_memory_left_behind_is_the_same() -> None:
    prog = asm("stb [%r1], 0x11\nsth [%r1+2], -1\nstw [%r1+4], 0x44332211\n"
               "mov %r3, 0x77\nstxb [%r1+8], %r3\nstdw [%r10-8], -2\nldxdw %r0, [%r10-8]\nexit")
    assert jit.run_raw_mem(prog, bytes(9)) == interp.run_raw_mem(prog, bytes(9))


DATA_REGS = (0, 2, 3, 4, 5, 6, 7, 8, 9)  # r1 (memory) and r10 (stack) are only ever bases


def deterministic_program(seed: int, n: int = 48) -> bytes:
    """A random program whose every value is independent of where the host put its memory
    and stack (pointers are used as bases, never as data), so that two engines, each with
    its own allocations, must agree on the result or the fault, byte for byte."""
    rnd = random.Random(seed)
    alu = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0]
    out: list[tuple[int, int, int, int, int]] = []
    for pc in range(n - 1):
        dst, src = rnd.choice(DATA_REGS), rnd.choice(DATA_REGS)
        imm = rnd.choice([0, 1, -1, 7, 16, 32, 63, 64, 2**31 - 1, -2**31, rnd.randint(-99, 99)])
        base = rnd.choice([1, 1, 10, 10, 10, 10, 10, dst])
        off = (rnd.randint(-2, 64) if base == 1 else rnd.randint(-514, -8) if base == 10
               else rnd.choice([0, 8, -8]))
        size = rnd.choice([0x00, 0x08, 0x10, 0x18])
        kind = rnd.randrange(10)
        if kind < 4:
            cls, op = rnd.choice([0x04, 0x07]), rnd.choice(alu)
            x = rnd.choice([0, 8])
            off = rnd.choice([0, 1]) if op in (0x30, 0x90) else 0
            if op == 0x80:
                x = 0
            if op == 0xB0 and x:
                off = rnd.choice([0, 8, 16] + ([32] if cls == 0x07 else []))
            if op == 0xD0:
                imm, x = rnd.choice([16, 32, 64]), 0 if cls == 0x07 else x
            out.append((cls | op | x, dst, src, off, imm))
        elif kind < 6:
            cls = rnd.choice([0x05, 0x06])
            op = rnd.choice([0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0])
            out.append((cls | op | rnd.choice([0, 8]), dst, src, rnd.randint(0, n - 2 - pc),
                        imm))
        elif kind < 7:
            mode = rnd.choice([0x60, 0x60, 0x80]) if size != 0x18 else 0x60
            out.append((0x01 | mode | size, dst, base, off, 0))
        elif kind < 8:
            out.append((rnd.choice([0x02, 0x03]) | 0x60 | size, base, src, off, imm))
        elif kind < 9:
            atomic = rnd.choice([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1])
            out.append((0xC3 | rnd.choice([0x00, 0x18]), base, src, off & ~3, atomic))
        else:
            out.append((0x85, 0, 0, 0, rnd.choice([1, 2])))  # 5 returns the pointer r1
    out.append((0x95, 0, 0, 0, 0))
    return raw(*out)


def test_random_programs_behave_as_on_the_interpreter() -> None:
    codes = [deterministic_program(seed) for seed in range(60)]
    jit.precompile(codes, native.MODE_RAW)
    kinds = {"r0": 0, "fault": 0, "refused": 0}
    for seed, code in enumerate(codes):
        want = outcome(interp.run_raw_mem, code, bytes(range(64)))
        got = outcome(jit.run_raw_mem, code, bytes(range(64)))
        assert got == want, f"seed {seed}: jit {got} != interp {want}"
        kinds[got[0]] += 1
    assert kinds["r0"] >= 10 and kinds["fault"] >= 10, kinds


def test_hostile_programs_never_hurt_the_process() -> None:
    """The interpreter's hostile programs (they read host pointers, so only the kind of
    ending is compared: a value, a refusal or a fault naming the pc)."""
    codes = [hostile_program(seed) for seed in range(30)]
    jit.precompile(codes, native.MODE_RAW)
    for code in codes:
        kind, text = outcome(jit.run_raw, code, bytes(range(64)))
        assert kind != "fault" or " at pc " in str(text)


# ---------------------------------------------------------------- XDP mode

def prog(text: str, *maps: MapSpec, name: str = "t") -> Program:
    from vxdp.bpf.asm import assemble
    from vxdp.bpf.isa import encode
    return Program(name, "xdp", encode(assemble(text)), maps=maps)


def both(program: Program, setup: Callable[[Engine], None] | None = None,
         packets: tuple[bytes, ...] = (PKT, PKT[:20])) -> list[tuple[int, bytes, int | None]]:
    """Run on interp and jit; the results (or the fault text) must be equal."""
    seen = []
    for name in ("interp", "jit"):
        with create_engine(name, program) as e:
            if setup:
                setup(e)
            try:
                seen.append([(r.retval, r.data, r.redirect) for r in e.run_xdp(packets)])
            except ProgramFault as exc:
                seen.append([(-1, host_addresses_hidden(str(exc)).encode(), exc.errno)])
    assert seen[0] == seen[1], f"interp {seen[0]} != jit {seen[1]}"
    return seen[1]


def test_context_loads_are_rewritten_and_writes_refused() -> None:
    res = both(prog("ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r0, %r3\nsub %r0, %r2\n"
                    "ldxw %r4, [%r1+12]\nlsh %r4, 16\nor %r0, %r4\nexit"))
    assert [r[0] for r in res] == [62 | 1 << 16, 20 | 1 << 16]
    fields = "ldxw %r0, [%r1+16]\nldxw %r2, [%r1+20]\nlsh %r2, 8\nor %r0, %r2\nexit"
    for engine in (InterpEngine, JitEngine):
        with engine(prog(fields)) as e:
            assert e.run_xdp([PKT], ingress_ifindex=3, rx_queue_index=5)[0].retval == 5
    (fault,) = both(prog("ldxw %r0, [%r1+2]\nexit"))  # not a field boundary
    assert b"invalid bpf_context access off=2 size=4" in fault[1]
    (fault,) = both(prog("stw [%r1+0], 1\nmov %r0, 2\nexit"))
    assert b"context is read-only" in fault[1]
    (fault,) = both(prog("ldxdw %r0, [%r1+0]\nexit"))
    assert b"invalid bpf_context access off=0 size=8" in fault[1]


def test_context_fields_are_each_batchs() -> None:
    """The compiled context keeps ingress_ifindex and rx_queue_index from one packet of a
    batch to the next: a batch with other values sees its own."""
    fields = "ldxw %r0, [%r1+12]\nlsh %r0, 8\nldxw %r2, [%r1+16]\nor %r0, %r2\nexit"
    for engine in (InterpEngine, JitEngine):
        with engine(prog(fields)) as e:
            got = [[r.retval for r in e.run_xdp([PKT, PKT], ingress_ifindex=i, rx_queue_index=q)]
                   for i, q in ((3, 5), (7, 1), (7, 1), (1, 0))]
            assert got == [[0x305] * 2, [0x701] * 2, [0x701] * 2, [0x100] * 2], engine


def test_packet_bounds_follow_adjust_head() -> None:
    # grow the head by 8 bytes, then write and read the new first bytes through data
    text = """
        mov %r6, %r1
        mov %r2, -8
        call 44
        ldxw %r2, [%r6+0]
        ldxw %r3, [%r6+4]
        stdw [%r2+0], 0x5a
        ldxb %r0, [%r2+0]
        ldxb %r4, [%r3-1]
        add %r0, %r4
        exit
    """
    res = both(prog(text))
    assert res[0][0] == 0x5A + 61 and res[0][1][:8] == b"\x5a" + bytes(7)
    # after shrinking it back, the old head is out of reach again
    (fault,) = both(prog("mov %r6, %r1\nmov %r2, 8\ncall 44\nldxw %r2, [%r6+0]\n"
                         "ldxb %r0, [%r2-1]\nexit"))
    assert b"1-byte read" in fault[1]


def test_map_values_inline_and_read_only_maps_refused() -> None:
    lookup = ("stw [%r10-4], 0\nlddw %r1, map_fd(0)\nmov %r2, %r10\nadd %r2, -4\ncall 1\n"
              "jeq %r0, 0, +{n}\n")
    rw = MapSpec("rw", MapType.ARRAY, 4, 8, 1)
    ro = MapSpec("ro", MapType.ARRAY, 4, 8, 1, flags=BPF_F_RDONLY_PROG)
    bump = lookup.format(n=4) + ("mov %r1, 5\nlock add [%r0+0], %r1\nldxdw %r1, [%r0+0]\n"
                                 "stxb [%r0+7], %r1\nmov %r0, 2\nexit")
    assert [r[0] for r in both(prog(bump, rw))] == [2, 2]
    (fault,) = both(prog(bump, ro))
    assert b"write into read-only map value" in fault[1]
    read = lookup.format(n=1) + "ldxw %r0, [%r0+4]\nexit"
    assert [r[0] for r in both(prog(read, ro))] == [0, 0]
    (fault,) = both(prog(lookup.format(n=1) + "ldxdw %r0, [%r0+4]\nexit", rw))  # past the end
    assert b"8-byte read" in fault[1]


def test_array_lookups_served_inline_answer_as_the_helper() -> None:
    """Plain arrays are looked up inline (as the kernel's JIT does); every key place and
    index gives what the helper gives, and other map types still go to the helper."""
    def fill(e: Engine) -> None:
        (m,) = e.maps
        for i in range(3):
            value = struct.pack("<Q", 10 * i + 1)
            m.update(struct.pack("<I", i), [value] * m.ncpus if m.spec.percpu else value)

    # the key is the packet's first four bytes (in the packet), or a copy of them on the
    # stack; r0 = the value's first byte, 200 for no element (no verifier runs here, so
    # the packet's length goes unchecked: every packet has 62 bytes)
    for where in ("mov %r2, %r6", "ldxw %r3, [%r6+0]\nstxw [%r10-4], %r3\n"
                  "mov %r2, %r10\nadd %r2, -4"):
        text = f"""
            ldxw %r6, [%r1+0]
            {where}
            lddw %r1, map_fd(0)
            call 1
            mov %r1, 200
            jeq %r0, 0, +1
            ldxb %r1, [%r0+0]
            mov %r0, %r1
            exit
        """
        packets = tuple(struct.pack("<I", i) + PKT[4:] for i in (0, 2, 3, 0xFFFFFFFF))
        for spec in (MapSpec("a", MapType.ARRAY, 4, 8, 3),
                     MapSpec("p", MapType.PERCPU_ARRAY, 4, 8, 3),
                     MapSpec("h", MapType.HASH, 4, 8, 3)):
            res = both(prog(text, spec), fill, packets)
            assert [r[0] for r in res] == [1, 21, 200, 200], spec.type
    # a key that is nowhere the program may read: the helper's fault, word for word
    (fault,) = both(prog("mov %r2, 64\nlddw %r1, map_fd(0)\ncall 1\nmov %r0, 2\nexit",
                         MapSpec("a", MapType.ARRAY, 4, 8, 3)), packets=(PKT,))
    assert fault[0] == -1 and b"at pc 3: 4-byte read at 0x40" in fault[1]


def test_a_run_after_a_tail_call_starts_with_fresh_registers() -> None:
    """The compiled context lives from one packet of a batch to the next; the registers a
    packet had when it tail-called into another program are not the next packet's."""
    main = prog("""
        ldxw %r2, [%r1+0]
        ldxb %r3, [%r2+0]
        jne %r3, 1, +6
        mov %r7, 90
        mov %r8, 9
        lddw %r2, map_fd(1)
        mov %r3, 0
        call 12
        mov %r0, %r7
        add %r0, %r8
        add %r0, %r3
        exit
    """, COUNTER, JUMPS, name="main")
    target = prog("mov %r0, 2\nexit", COUNTER, JUMPS, name="target")
    packets = (b"\x01" + PKT[1:], b"\x00" + PKT[1:], b"\x01" + PKT[1:], PKT)
    assert [r[0] for r in both(main, _slot(0, target), packets)] == [2, 0, 2, 0]


COUNTER = MapSpec("counter", MapType.ARRAY, 4, 8, 1)
JUMPS = MapSpec("jumps", MapType.PROG_ARRAY, 4, 4, 2)


def _slot(index: int, target: Program) -> Callable[[Engine], None]:
    def setup(e: Engine) -> None:
        e.maps[1].update(struct.pack("<I", index), struct.pack("<I", e.load_tail_target(target)))
    return setup


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


def test_tail_calls_stop_after_33() -> None:
    p = prog(SELF_TAIL, COUNTER, JUMPS)
    seen = []
    for engine in (InterpEngine, JitEngine):
        with engine(p) as e:
            _slot(0, p)(e)
            seen.append((e.run_xdp([PKT])[0].retval, e.maps[0].lookup(struct.pack("<I", 0))))
    assert seen[0] == seen[1] == (2, struct.pack("<Q", 1 + 33))


@pytest.mark.parametrize("target_text", [
    "mov %r6, 99\nmov %r0, 40\nexit",
    # a target that makes calls of its own pops its own frame first, then the caller's
    "mov %r6, 99\ncall local f\nmov %r0, 40\nexit\nf:\nmov %r6, 3\nmov %r0, 1\nexit",
], ids=["target-without-calls", "target-with-calls"])
def test_tail_call_from_a_subprogram_returns_into_the_caller(target_text: str) -> None:
    """The target's exit pops the caller's frame, in the program that made the call."""
    main = prog("""
        mov %r6, 1000
        call local sub
        add %r0, %r6
        exit
    sub:
        mov %r6, 5
        lddw %r2, map_fd(1)
        mov %r3, 0
        call 12
        mov %r0, 7
        exit
    """, COUNTER, JUMPS, name="main")
    target = prog(target_text, COUNTER, JUMPS, name="target")
    res = both(main, _slot(0, target))
    assert [r[0] for r in res] == [1040, 1040]
    assert [r[0] for r in both(main)] == [1007, 1007]  # empty slot: the call falls through


def test_a_compiled_program_reaches_only_compiled_programs() -> None:
    main = prog("lddw %r2, map_fd(1)\nmov %r3, 0\ncall 12\nmov %r0, 2\nexit", COUNTER, JUMPS)
    with JitEngine(main) as e:
        interp_only = native.prog_load(prog("mov %r0, 1\nexit").insns, native.MODE_XDP,
                                       [m.handle for m in e.maps])  # type: ignore[attr-defined]
        e.maps[1].update(struct.pack("<I", 0), struct.pack("<I", native.prog_id(interp_only)))
        with pytest.raises(ProgramFault, match="has no compiled code"):
            e.run_xdp([PKT])


def test_attach_checks_mode_and_length() -> None:
    code = asm("mov %r0, 1\nexit")
    compiled = jit.compile_program(code, native.MODE_RAW)
    xdp_prog = native.prog_load(code, native.MODE_XDP)
    with pytest.raises(InvalidProgram, match="compiled program is for mode 0"):
        native.prog_set_jit(xdp_prog, compiled.info_addr)
    longer = native.prog_load(asm("mov %r0, 1\nmov %r0, 2\nexit"), native.MODE_RAW)
    with pytest.raises(InvalidProgram, match="has 2 instructions, the program 3"):
        native.prog_set_jit(longer, compiled.info_addr)
    raw_prog = native.prog_load(code, native.MODE_RAW)
    native.prog_set_jit(raw_prog, compiled.info_addr)
    assert native.prog_has_jit(raw_prog)
    native.prog_set_jit(raw_prog, 0)
    assert not native.prog_has_jit(raw_prog)


# ---------------------------------------------------------------- generated C and the cache

EVERY_KIND = """
    mov %r0, 0
    ldxw %r2, [%r1+0]
    stxdw [%r10-8], %r2
    lock fetch add [%r10-8], %r0
    lock cmpxchg [%r10-8], %r2
    sdiv32 %r0, -1
    jsgt %r2, -2147483648, +1
    be16 %r0
    call local f
    jeq %r0, %r0, +0
    exit
f:
    movsx864 %r0, %r2
    call 3
    exit
"""


def test_generated_c_is_labelled_commented_and_warning_free(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("VXDP_JIT_CACHE", str(tmp_path))
    code = asm(EVERY_KIND)
    before = jit.compile_count()
    compiled = jit.compile_program(code, native.MODE_RAW, name="every_kind")
    assert jit.compile_count() == before + 1
    assert compiled.so_path.parent.parent == tmp_path
    assert compiled.warnings == ""
    source = compiled.source_path.read_text()
    assert "/* 1: (61) r2 = *(u32 *)(r1 +0) */\nL1: VX_LDX(1, r2, r1, uint32_t, uint32_t, 0, 0);" in source
    assert "L8: VX_CALL(8, L11, 9);" in source and "case 9: goto L9;" in source
    assert "L9: if (1) goto L10;" in source
    for pc in range(14):
        assert f"\nL{pc}: " in source
    assert jit.run_raw(code, b"\x05\0\0\0") == interp.run_raw(code, b"\x05\0\0\0")
    # a program that makes calls pops its frames itself; one without leaves the pop (into
    # the program that tail-called it) to a function of its own
    assert "switch (ret_pc)" in source and "vx_leave_frame(c);" not in source
    short = jit.compile_program(asm("mov %r0, 1\nexit"), native.MODE_XDP, name="short")
    assert short.warnings == ""
    source = short.source_path.read_text()
    assert "return vx_leave_frame(c);" in source and "switch (ret_pc)" not in source


def test_compiled_objects_are_cached_by_digest(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VXDP_JIT_CACHE", str(tmp_path))
    code = asm("mov %r0, 41\nadd %r0, 1\nexit")
    first = jit.compile_program(code, native.MODE_RAW)
    count = jit.compile_count()
    assert jit.compile_program(code, native.MODE_RAW) is first
    assert jit.compile_program(code, native.MODE_XDP).key != first.key  # mode is in the key
    assert jit.compile_count() == count + 1
    # another process finds the object on disk and compiles nothing
    script = ("from vxdp.bpf import jit; from vxdp import native\n"
              f"print(jit.run_raw({code!r}), jit.compile_count())")
    env = {**os.environ, "VXDP_JIT_CACHE": str(tmp_path)}
    env.pop("VXDP_CORE", None)  # the sanitizer core needs a preload the child would not get
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True, timeout=60)
    assert out.stdout.split() == ["42", "0"]


def test_generator_refuses_what_the_loader_refuses() -> None:
    for code in (raw((0xFF, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)),
                 raw((0x05, 0, 0, 5, 0), (0x95, 0, 0, 0, 0)),
                 raw((0x8D, 0, 0, 0, 2), (0x95, 0, 0, 0, 0))):  # callx outside raw mode
        with pytest.raises(InvalidProgram, match="jit: "):
            jitgen.generate(code, native.MODE_XDP)
    with pytest.raises(VxdpError, match="exceeds the jit's limit"):
        jit.compile_program(bytes(8 * (jit.JIT_MAX_INSNS + 1)), native.MODE_RAW)


# ---------------------------------------------------------------- the corpus, without a kernel

@pytest.mark.clang
@pytest.mark.parametrize("case", diff.CASES, ids=lambda c: c.id)
def test_corpus_runs_as_on_the_interpreter(case: Case) -> None:
    """The differential corpus, jit against interp: judged where the kernel oracle is not
    available too (packets, lengths, every map and ringbuf record)."""
    if (why := clang_unavailable()) is not None:
        pytest.skip(why)
    want, got = diff.run_case("interp", case), diff.run_case("jit", case)
    problems = diff.describe_differences(case, "jit", want, got)
    assert not problems, "\n".join(problems)
