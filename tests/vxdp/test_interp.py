"""The C interpreter in raw mode (the bpf_conformance harness setting): every opcode group
against values worked out from RFC 9669, frames, the harness helpers, and the loader and
run-time checks that keep a hostile program from hurting the process."""

from __future__ import annotations

import struct

import pytest

from vxdp.bpf.asm import assemble
from vxdp.bpf.interp import run_raw, run_raw_mem
from vxdp.errors import InvalidProgram, ProgramFault

M64 = (1 << 64) - 1


def asm(text: str) -> bytes:
    from vxdp.bpf.isa import encode
    return encode(assemble(text))


def raw(*insns: tuple[int, int, int, int, int]) -> bytes:
    """Encode (opcode, dst, src, off, imm) tuples, for encodings the assembler refuses."""
    return b"".join(struct.pack("<BBhi", op, dst | src << 4, off, imm)
                    for op, dst, src, off, imm in insns)


def r0(body: str, mem: bytes = b"") -> int:
    return run_raw(asm(body + "\nexit"), mem)


ALU_CASES = [
    # 64-bit arithmetic and wrap-around
    ("lddw %r0, 0xffffffffffffffff\nadd %r0, 2", 1),
    ("mov %r0, 3\nsub %r0, 5", M64 - 1),
    ("mov %r0, -1\nmul %r0, -1", 1),
    ("mov %r0, 7\nneg %r0", (-7) & M64),
    # 32-bit ops zero the upper half
    ("lddw %r0, 0x1ffffffff\nadd32 %r0, 1", 0),
    ("mov %r0, -1\nmov32 %r0, %r0", 0xFFFFFFFF),
    ("mov32 %r0, 5\nneg32 %r0", 0xFFFFFFFB),
    # division and modulo by zero (RFC 9669 4.1)
    ("mov %r0, 9\nmov %r1, 0\ndiv %r0, %r1", 0),
    ("mov %r0, 9\nmov %r1, 0\nmod %r0, %r1", 9),
    ("lddw %r0, 0x100000009\nmov %r1, 0\nmod32 %r0, %r1", 9),
    ("mov %r0, -9\nmov %r1, 0\nsdiv %r0, %r1", 0),
    ("mov %r0, -9\nmov %r1, 0\nsmod %r0, %r1", (-9) & M64),
    # signed division: truncation toward zero, the minimum by -1 wraps
    ("mov %r0, -7\nsdiv %r0, 2", (-3) & M64),
    ("mov %r0, -7\nsmod %r0, 2", (-1) & M64),
    ("mov %r0, 7\nsmod %r0, -2", 1),
    ("lddw %r0, 0x8000000000000000\nsdiv %r0, -1", 1 << 63),
    ("lddw %r0, 0x8000000000000000\nsmod %r0, -1", 0),
    ("mov32 %r0, 0x80000000\nsdiv32 %r0, -1", 0x80000000),
    ("mov32 %r0, -7\nsdiv32 %r0, 2", 0xFFFFFFFD),
    # unsigned division with a negative immediate: the immediate is sign-extended to 64
    ("mov %r0, -1\ndiv %r0, -1", 1),
    ("mov %r0, -1\ndiv32 %r0, -1", 1),
    # shifts are masked
    ("mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1", 2),
    ("mov %r0, 1\nmov %r1, 33\nlsh32 %r0, %r1", 2),
    ("mov %r0, -16\narsh %r0, 2", (-4) & M64),
    ("mov32 %r0, -16\narsh32 %r0, 2", 0xFFFFFFFC),
    ("mov %r0, -16\nrsh32 %r0, 2", 0x3FFFFFFC),
    # sign-extending moves (cpu v4)
    ("mov %r1, 0x80\nmovsx864 %r0, %r1", (-128) & M64),
    ("mov %r1, 0x8000\nmovsx1632 %r0, %r1", 0xFFFF8000),
    ("mov32 %r1, 0x80000000\nmovsx3264 %r0, %r1", (-(1 << 31)) & M64),
    # byte swaps: to-le truncates on a little-endian machine, to-be and bswap swap
    ("lddw %r0, 0x1122334455667788\nle16 %r0", 0x7788),
    ("lddw %r0, 0x1122334455667788\nbe32 %r0", 0x88776655),
    ("lddw %r0, 0x1122334455667788\nbswap64 %r0", 0x8877665544332211),
    ("lddw %r0, 0x1122334455667788\nbswap16 %r0", 0x8877),
    ("lddw %r0, 0x8877665544332211\nor %r0, 0\nxor %r0, 0x11\nand %r0, 0xff00", 0x2200),
]


@pytest.mark.parametrize(("body", "want"), ALU_CASES)
def test_alu(body: str, want: int) -> None:
    assert r0(body) == want


JMP_CASES = [
    ("mov %r1, -1\njsgt %r1, 0, +1\nmov %r0, 1", 1),  # signed: -1 > 0 is false
    ("mov %r1, -1\njgt %r1, 0, +1\nmov %r0, 1", 0),   # unsigned: taken
    ("lddw %r1, 0x100000000\njeq32 %r1, 0, +1\nmov %r0, 1", 0),  # 32-bit compare
    ("lddw %r1, 0x100000000\njeq %r1, 0, +1\nmov %r0, 1", 1),
    ("mov %r1, 6\njset %r1, 2, +1\nmov %r0, 1", 0),
    ("mov32 %r1, -2\njslt32 %r1, -1, +1\nmov %r0, 1", 0),
    ("mov %r1, 5\nmov %r2, 5\njle %r1, %r2, +1\nmov %r0, 1", 0),
    ("ja32 +1\nmov %r0, 1", 0),
]


@pytest.mark.parametrize(("body", "want"), JMP_CASES)
def test_jumps(body: str, want: int) -> None:
    assert r0("mov %r0, 0\n" + body) == want


def test_loads_and_stores_of_every_size() -> None:
    mem = bytes(range(1, 17))
    assert r0("ldxb %r0, [%r1+1]", mem) == 2
    assert r0("ldxh %r0, [%r1+2]", mem) == 0x0403
    assert r0("ldxw %r0, [%r1+4]", mem) == 0x08070605
    assert r0("ldxdw %r0, [%r1+8]", mem) == 0x100F0E0D0C0B0A09
    assert r0("ldxsb %r0, [%r1]", b"\x80") == (-128) & M64
    assert r0("ldxsh %r0, [%r1]", b"\x00\x80") == (-32768) & M64
    assert r0("ldxsw %r0, [%r1]", b"\0\0\0\x80") == (-(1 << 31)) & M64
    prog = asm("stb [%r1], 0x11\nsth [%r1+2], -1\nstw [%r1+4], 0x44332211\n"
               "mov %r3, 0x77\nstxb [%r1+8], %r3\nstdw [%r10-8], -2\nldxdw %r0, [%r10-8]\nexit")
    ret, out = run_raw_mem(prog, bytes(9))
    assert ret == (-2) & M64
    assert out == b"\x11\0\xff\xff\x11\x22\x33\x44\x77"


def test_r1_is_zero_without_memory_and_r2_is_its_length() -> None:
    assert r0("mov %r0, %r1") == 0
    assert r0("mov %r0, %r2", bytes(8)) == 8


ATOMIC_CASES = [
    ("lock add", 5, 7), ("lock or32", 5, 7), ("lock and", 6, 3), ("lock xor32", 6, 3),
    ("lock fetch add", 5, 7), ("lock fetch xor32", 6, 3), ("lock fetch and", 6, 3),
    ("lock fetch or32", 5, 7), ("lock xchg", 5, 7), ("lock xchg32", 5, 7),
]


@pytest.mark.parametrize(("op", "mem", "src"), ATOMIC_CASES)
def test_atomics(op: str, mem: int, src: int) -> None:
    width = 32 if op.endswith("32") else 64
    name = op.split()[-1].rstrip("32")
    fn = {"add": lambda a, b: a + b, "or": lambda a, b: a | b, "and": lambda a, b: a & b,
          "xor": lambda a, b: a ^ b, "xchg": lambda a, b: b}[name]
    fetch = "fetch" in op or name == "xchg"
    prog = (f"mov %r2, {mem}\nstxdw [%r10-8], %r2\nmov %r1, {src}\n{op} [%r10-8], %r1\n"
            "ldxdw %r0, [%r10-8]\nlsh %r0, 32\nor %r0, %r1\nexit")
    got = run_raw(asm(prog))
    assert got >> 32 == fn(mem, src) & ((1 << width) - 1)
    assert got & 0xFFFFFFFF == (mem if fetch else src)


def test_cmpxchg_swaps_only_on_match() -> None:
    base = "mov %r2, 5\nstxdw [%r10-8], %r2\nmov %r1, 9\n"
    assert r0(base + "mov %r0, 5\nlock cmpxchg [%r10-8], %r1\nldxdw %r0, [%r10-8]") == 9
    assert r0(base + "mov %r0, 4\nlock cmpxchg [%r10-8], %r1\nldxdw %r0, [%r10-8]") == 5
    assert r0(base + "mov %r0, 4\nlock cmpxchg [%r10-8], %r1") == 5
    # 32-bit: compares the low half of r0, r0 gets the old value zero-extended
    assert r0("lddw %r0, 0x100000005\nmov %r2, 5\nstxw [%r10-4], %r2\nmov %r1, 9\n"
              "lock cmpxchg32 [%r10-4], %r1\nldxw %r1, [%r10-4]\nlsh %r1, 32\n"
              "or %r0, %r1") == (9 << 32) | 5


def test_lddw_loads_64_bits() -> None:
    assert r0("lddw %r0, 0x8877665544332211") == 0x8877665544332211


def test_local_call_gets_a_new_frame_and_keeps_r6_to_r9() -> None:
    prog = asm("""
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
        stdw [%r10-8], 1000     # the callee's own frame
        ldxdw %r0, [%r1-8]      # the caller's frame, reached through a pointer
        exit
    """)
    assert run_raw(prog) == 42 + 6 + 42


def test_call_depth_is_limited_to_eight_frames() -> None:
    def chain(depth: int) -> bytes:
        lines = [f"call local f{i + 1}" if i < depth else "mov %r0, 1" for i in range(depth + 1)]
        text = "\n".join(f"f{i}:\n{line}\nexit" for i, line in enumerate(lines))
        return asm(text)
    assert run_raw(chain(7)) == 1  # main + 7 callees = 8 frames
    with pytest.raises(ProgramFault, match="too deep at pc 14"):  # the call in f7
        run_raw(chain(8))


def test_harness_helpers() -> None:
    assert r0("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 0") \
        == 0x0102030405
    assert r0("mov %r1, 49\ncall 3") == 7
    _, out = run_raw_mem(asm("mov %r2, 2\ncall 1\nexit"), b"\x00\x2a\x01")
    assert out == b"\x2a\x00\x01"
    # helper 5 unwinds: a 0 return ends the program with r0 = 0
    assert r0("mov %r1, 0\ncall 5\nmov %r0, 2") == 0
    assert r0("mov %r1, -1\ncall 5\nmov %r0, 2") == 2
    # callx: the helper id is in the register named by dst
    assert r0("mov %r1, 0\nmov %r2, 5\ncall %r2\nmov %r0, 2") == 0


def test_out_of_bounds_accesses_fail_naming_pc_and_address() -> None:
    with pytest.raises(ProgramFault, match=r"at pc 1: 1-byte read at 0x[0-9a-f]+ outside "
                                           "every region"):
        run_raw(asm("mov %r0, 0\nldxb %r0, [%r1+4]\nexit"), b"1234")
    with pytest.raises(ProgramFault, match="at pc 0: 8-byte write"):
        run_raw(asm("stdw [%r10+0], 1\nexit"))
    with pytest.raises(ProgramFault, match="at pc 0: 8-byte write"):
        run_raw(asm("stdw [%r10-520], 1\nexit"))  # below the only frame in use
    with pytest.raises(ProgramFault, match="pc 2"):
        run_raw(asm("mov %r1, 0\nmov %r0, 0\nldxdw %r0, [%r1+0]\nexit"))
    with pytest.raises(ProgramFault, match="pc 2: 8-byte read at 0xffffffffffffffff"):
        run_raw(asm("lddw %r1, 0xffffffffffffffff\nldxdw %r0, [%r1+0]\nexit"))
    with pytest.raises(ProgramFault, match="misaligned"):
        run_raw(asm("mov %r1, 1\nlock add [%r10-7], %r1\nexit"))
    with pytest.raises(ProgramFault, match="pc 1"):  # helpers check their pointers too
        run_raw(asm("mov %r2, 100\ncall 1\nexit"), b"abc")


def test_endless_loop_is_cut_off() -> None:
    with pytest.raises(ProgramFault, match="branch budget"):
        run_raw(asm("mov %r0, 0\nja -1\nexit"))


@pytest.mark.parametrize(("code", "message"), [
    (raw((0x07, 10, 0, 0, 1), (0x95, 0, 0, 0, 0)), "frame pointer is read only at pc 0"),
    (raw((0xFF, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)), "invalid opcode 0xff at pc 0"),
    (raw((0x05, 0, 0, 5, 0), (0x95, 0, 0, 0, 0)), "jump out of range from insn 0 to 6"),
    (raw((0xB7, 0, 0, 0, 0)), "last insn is not an exit or jmp at pc 0"),
    (raw((0x18, 0, 0, 0, 0)), "no second slot"),
    (raw((0x05, 0, 0, 1, 0), (0x18, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)),
     "jump into the middle of ldimm64 insn at pc 0"),
    (raw((0x85, 0, 0, 0, 99), (0x95, 0, 0, 0, 0)), "unknown#99 at pc 0"),
    (raw((0xB7, 11, 0, 0, 0), (0x95, 0, 0, 0, 0)), "invalid register at pc 0"),
    (raw((0x18, 1, 1, 0, 0), (0, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)), "names map index 0 of 0"),
    (raw((0xDB, 10, 1, 0, 0xE0), (0x95, 0, 0, 0, 0)), "invalid opcode 0xdb at pc 0"),
    (raw((0x85, 0, 1, 0, 5), (0x95, 0, 0, 0, 0)), "jump out of range from insn 0 to 6"),
])
def test_loader_refuses_malformed_programs(code: bytes, message: str) -> None:
    with pytest.raises(InvalidProgram, match=message):
        run_raw(code)


def test_program_ending_in_a_jump_is_accepted() -> None:
    assert r0("mov %r0, 3\nja +1\nexit\nja -2") == 3


# ---------------------------------------------------------------- hostile programs

_ALU = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0]
_JMP = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
OPCODES = sorted(
    {cls | op | src for cls in (0x04, 0x07) for op in _ALU for src in (0, 8)}
    | {0x84, 0x87, 0xD4, 0xDC, 0xD7}
    | {cls | op | src for cls in (0x05, 0x06) for op in _JMP for src in (0, 8)}
    | {0x05, 0x06, 0x85, 0x95}
    | {0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91, 0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73,
       0x7B, 0xC3, 0xDB})


def hostile_program(seed: int, n: int = 40) -> bytes:
    """A random program that passes the loader's structural checks more often than not:
    forward jumps only (so it ends), pointers into and around its memory and stack."""
    import random
    rnd = random.Random(seed)
    out = [(0xBF, 3, 1, 0, 0), (0xBF, 4, 10, 0, 0), (0x07, 4, 0, 0, rnd.randint(-600, 8))]
    for pc in range(len(out), n - 1):
        op = rnd.choice(OPCODES)
        dst, src = rnd.randint(0, 9), rnd.randint(0, 10)
        off = rnd.choice([0, 0, 1, -1, 8, 16, 32, rnd.randint(-600, 600)])
        imm = rnd.choice([0, 1, -1, 16, 32, 64, 2**31 - 1, -2**31, rnd.randint(0, 6)])
        cls, code = op & 0x07, op & 0xF0
        if cls in (0x04, 0x07):  # keep ALU fields legal, or the loader refuses everything
            off = rnd.choice([0, 1]) if code in (0x30, 0x90) else 0
            if code == 0xB0 and op & 0x08:
                off = rnd.choice([0, 8, 16, 32 if cls == 0x07 else 0])
            if code == 0xD0:
                imm = rnd.choice([16, 32, 64])
        if cls in (0x05, 0x06) and op not in (0x85, 0x95):
            off = rnd.randint(0, max(0, n - 2 - pc))
            imm = off if op == 0x06 else imm
        if op == 0x85:
            src = 0
            imm = rnd.randint(0, 5)
        if op in (0xC3, 0xDB):
            imm = rnd.choice([0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1])
        if rnd.random() < 0.002:  # now and then, an encoding the loader must refuse
            op = rnd.randint(0, 255)
        out.append((op, dst, src, off, imm))
    out.append((0x95, 0, 0, 0, 0))
    return raw(*out)


def test_hostile_programs_never_hurt_the_process() -> None:
    outcomes = {"ok": 0, "refused": 0, "fault": 0}
    for seed in range(3000):
        code = hostile_program(seed)
        try:
            run_raw(code, bytes(range(64)))
            outcomes["ok"] += 1
        except InvalidProgram:
            outcomes["refused"] += 1
        except ProgramFault as exc:
            assert " at pc " in str(exc)
            outcomes["fault"] += 1
    assert min(outcomes.values()) > 100, outcomes  # every path was exercised
