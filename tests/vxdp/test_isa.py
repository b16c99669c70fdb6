"""vxdp.bpf.isa: encodings both ways, classification, and the structural checks."""

from __future__ import annotations

import functools
import os

import pytest

from vxdp.bpf import syscall
from vxdp.bpf.isa import (
    Insn,
    check_program,
    decode,
    encode,
    imm64,
    is_callx,
    is_exit,
    is_helper_call,
    is_jump,
    is_kfunc_call,
    is_ldimm64,
    is_pseudo_call,
    is_pseudo_func,
    iter_insns,
    jump_target,
    ld_imm64,
    problems,
    subprog_starts,
)
from vxdp.bpf.program import ProgType
from vxdp.errors import InvalidProgram

# (8 bytes as hex, the slot): every class and every cpu v4 form, driven both ways.
VECTORS = [
    ("b700000000000000", Insn(0xB7, 0, 0, 0, 0)),  # r0 = 0
    ("bf10000000000000", Insn(0xBF, 0, 1, 0, 0)),  # r0 = r1
    ("b4010000feffffff", Insn(0xB4, 1, 0, 0, -2)),  # w1 = -2
    ("0701000008000000", Insn(0x07, 1, 0, 0, 8)),  # r1 += 8
    ("3f10010000000000", Insn(0x3F, 0, 1, 1, 0)),  # r0 s/= r1
    ("9700010003000000", Insn(0x97, 0, 0, 1, 3)),  # r0 s%= 3
    ("bf10080000000000", Insn(0xBF, 0, 1, 8, 0)),  # r0 = (s8)r1
    ("bc10100000000000", Insn(0xBC, 0, 1, 16, 0)),  # w0 = (s16)w1
    ("bf10200000000000", Insn(0xBF, 0, 1, 32, 0)),  # r0 = (s32)r1
    ("8700000000000000", Insn(0x87, 0, 0, 0, 0)),  # r0 = -r0
    ("dc00000010000000", Insn(0xDC, 0, 0, 0, 16)),  # r0 = be16 r0
    ("d400000040000000", Insn(0xD4, 0, 0, 0, 64)),  # r0 = le64 r0
    ("d700000020000000", Insn(0xD7, 0, 0, 0, 32)),  # r0 = bswap32 r0
    ("6112040000000000", Insn(0x61, 2, 1, 4, 0)),  # r2 = *(u32 *)(r1 +4)
    ("9101ffff00000000", Insn(0x91, 1, 0, -1, 0)),  # r1 = *(s8 *)(r0 -1)
    ("8901000000000000", Insn(0x89, 1, 0, 0, 0)),  # r1 = *(s16 *)(r0 +0)
    ("8101000000000000", Insn(0x81, 1, 0, 0, 0)),  # r1 = *(s32 *)(r0 +0)
    ("7a0af8ff01000000", Insn(0x7A, 10, 0, -8, 1)),  # *(u64 *)(r10 -8) = 1
    ("7b1af8ff00000000", Insn(0x7B, 10, 1, -8, 0)),  # *(u64 *)(r10 -8) = r1
    ("db1af8ff00000000", Insn(0xDB, 10, 1, -8, 0x00)),  # lock *(u64 *) += r1
    ("c31afcff01000000", Insn(0xC3, 10, 1, -4, 0x01)),  # atomic_fetch_add 32
    ("db1af8ff50000000", Insn(0xDB, 10, 1, -8, 0x50)),  # lock &=
    ("db1af8ffa1000000", Insn(0xDB, 10, 1, -8, 0xA1)),  # atomic64_fetch_xor
    ("db1af8ffe1000000", Insn(0xDB, 10, 1, -8, 0xE1)),  # xchg
    ("c31af8fff1000000", Insn(0xC3, 10, 1, -8, 0xF1)),  # cmpxchg 32
    ("1d23050000000000", Insn(0x1D, 3, 2, 5, 0)),  # if r3 == r2 goto pc+5
    ("1601fdff01000000", Insn(0x16, 1, 0, -3, 1)),  # if w1 == 0x1 goto pc-3
    ("0500020000000000", Insn(0x05, 0, 0, 2, 0)),  # goto pc+2
    ("0600000000000100", Insn(0x06, 0, 0, 0, 65536)),  # gotol pc+65536
    ("8500000001000000", Insn(0x85, 0, 0, 0, 1)),  # call bpf_map_lookup_elem#1
    ("8510000003000000", Insn(0x85, 0, 1, 0, 3)),  # call pc+3
    ("8520000007000000", Insn(0x85, 0, 2, 0, 7)),  # kfunc by BTF id
    ("8d02000000000000", Insn(0x8D, 2, 0, 0, 0)),  # callx r2
    ("9500000000000000", Insn(0x95, 0, 0, 0, 0)),  # exit
    ("1801000088776655", Insn(0x18, 1, 0, 0, 0x55667788)),  # first half of lddw
    ("0000000044332211", Insn(0x00, 0, 0, 0, 0x11223344)),  # second half
    ("1811000003000000", Insn(0x18, 1, 1, 0, 3)),  # r1 = map[idx:3]
]


@pytest.mark.parametrize(("hexbytes", "insn"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_decodes_and_encodes(hexbytes: str, insn: Insn) -> None:
    assert decode(bytes.fromhex(hexbytes)) == [insn]
    assert encode([insn]).hex() == hexbytes


def test_decode_rejects_a_partial_instruction() -> None:
    with pytest.raises(InvalidProgram, match="12 bytes is not a whole number"):
        decode(bytes(12))


@pytest.mark.parametrize("fields", [(256, 0, 0, 0, 0), (0, 16, 0, 0, 0), (0, 0, 0, 1 << 15, 0),
                                    (0, 0, 0, 0, 1 << 31), (0, 0, 0, 0, -(1 << 31) - 1)])
def test_insn_refuses_fields_that_do_not_fit(fields: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Insn(*fields)


def test_ld_imm64_two_slots_and_imm64() -> None:
    slots = [*ld_imm64(3, 0x8877665544332211), Insn(0x95)]
    assert encode(slots[:2]).hex() == "1803000011223344" "0000000055667788"
    assert imm64(slots, 0) == 0x8877665544332211
    assert list(iter_insns(slots)) == [0, 2]
    with pytest.raises(InvalidProgram, match="invalid bpf_ld_imm64 insn at pc 2"):
        imm64(slots, 2)


def test_classification() -> None:
    assert is_ldimm64(Insn(0x18)) and not is_ldimm64(Insn(0x10))
    assert is_helper_call(Insn(0x85, imm=1)) and not is_helper_call(Insn(0x85, src=1))
    assert is_pseudo_call(Insn(0x85, src=1, imm=2)) and is_kfunc_call(Insn(0x85, src=2))
    assert is_callx(Insn(0x8D, 2)) and is_exit(Insn(0x95))
    assert is_pseudo_func(Insn(0x18, src=4)) and not is_pseudo_func(Insn(0x18, src=1))
    assert is_jump(Insn(0x15, off=1)) and is_jump(Insn(0x06, imm=1))
    assert not is_jump(Insn(0x85)) and not is_jump(Insn(0x95))
    assert jump_target(Insn(0x05, off=-2), 5) == 4
    assert jump_target(Insn(0x06, imm=7), 1) == 9
    assert jump_target(Insn(0x85, src=1, imm=3), 2) == 6
    assert jump_target(Insn(0x85, imm=3), 2) is None


E = Insn(0x95)
R0 = Insn(0xB7, 0, 0, 0, 0)


def test_valid_programs_pass() -> None:
    # every form: alu32/64, v4 alu, memory, atomics, jumps, gotol, calls, callx, subprogs
    prog = [R0, Insn(0x3F, 0, 1, 1, 0), Insn(0xBC, 0, 1, 16, 0), Insn(0xD7, 0, 0, 0, 64),
            Insn(0x91, 1, 10, -1, 0), Insn(0xC3, 10, 1, -4, 0xF1), Insn(0x16, 1, 0, 1, 1),
            Insn(0x06, 0, 0, 0, 0), *ld_imm64(2, 1 << 40), Insn(0x85, 0, 1, 0, 2),
            Insn(0x8D, 2), E, R0, E]
    check_program(prog)
    assert subprog_starts(prog) == [0, 13]


# (name, program, message, pc, the kernel says the same)
BAD = [
    ("alu-k-src", [Insn(0x07, 1, 2, 0, 1), R0, E], "BPF_ALU uses reserved fields", 0, True),
    ("alu-x-imm", [Insn(0x0F, 1, 2, 0, 1), R0, E], "BPF_ALU uses reserved fields", 0, True),
    ("alu-off", [Insn(0x07, 1, 0, 1, 1), R0, E], "BPF_ALU uses reserved fields", 0, True),
    ("sdiv-off-2", [R0, Insn(0x37, 0, 0, 2, 1), E], "BPF_ALU uses reserved fields", 1, True),
    ("neg-x", [R0, Insn(0x8F, 0, 0, 0, 0), E], "unknown opcode 8f", 1, True),
    ("neg-imm", [R0, Insn(0x87, 0, 0, 0, 1), E], "BPF_NEG uses reserved fields", 1, True),
    ("end-imm-8", [R0, Insn(0xD4, 0, 0, 0, 8), E], "BPF_END uses reserved fields", 1, True),
    ("bswap-x", [R0, Insn(0xDF, 0, 0, 0, 16), E], "unknown opcode df", 1, True),
    ("movsx32-s32", [R0, Insn(0xBC, 0, 1, 32, 0), E], "BPF_MOV uses reserved fields", 1, True),
    ("mov-k-off", [Insn(0xB7, 0, 0, 8, 0), E], "BPF_MOV uses reserved fields", 0, True),
    ("alu-op-e0", [R0, Insn(0xE7, 0, 0, 0, 0), E], "unknown opcode e7", 1, True),
    ("dst-r11", [Insn(0xB7, 11, 0, 0, 0), R0, E], "R11 is invalid", 0, True),
    ("src-r11", [R0, Insn(0xBF, 1, 11, 0, 0), E], "R11 is invalid", 1, True),
    ("write-r10", [Insn(0xB7, 10, 0, 0, 0), R0, E], "frame pointer is read only", 0, True),
    ("ja-imm", [R0, Insn(0x05, 0, 0, 0, 1), E], "BPF_JA uses reserved fields", 1, True),
    ("gotol-off", [R0, Insn(0x06, 0, 0, 1, 0), E], "BPF_JA uses reserved fields", 1, True),
    ("call-dst", [R0, Insn(0x85, 1, 0, 0, 5), E], "BPF_CALL uses reserved fields", 1, True),
    ("call-src-3", [R0, Insn(0x85, 0, 3, 0, 5), E], "BPF_CALL uses reserved fields", 1, True),
    ("call-jmp32", [R0, Insn(0x86, 0, 0, 0, 5), E], "unknown opcode 86", 1, True),
    ("exit-imm", [R0, Insn(0x95, 0, 0, 0, 1)], "BPF_EXIT uses reserved fields", 1, True),
    ("exit-off", [R0, Insn(0x95, 0, 0, 1, 0)], "BPF_EXIT uses reserved fields", 1, False),
    ("jmp-k-src", [R0, Insn(0x15, 0, 1, 0, 0), E], "BPF_JMP/JMP32 uses reserved fields", 1,
     True),
    ("jmp-x-imm", [R0, Insn(0x1D, 0, 1, 0, 1), E], "BPF_JMP/JMP32 uses reserved fields", 1,
     True),
    ("jmp-op-f0", [R0, Insn(0xF5, 0, 0, 0, 0), E], "unknown opcode f5", 1, True),
    ("ldx-imm", [Insn(0x61, 0, 10, -4, 1), E], "BPF_LDX uses reserved fields", 0, True),
    ("ldxs-dw", [Insn(0x99, 0, 10, -8, 0), E], "unknown opcode 99", 0, True),
    ("st-src", [Insn(0x62, 10, 1, -4, 1), R0, E], "BPF_ST uses reserved fields", 0, True),
    ("stx-imm", [Insn(0x63, 10, 1, -4, 1), R0, E], "BPF_STX uses reserved fields", 0, True),
    ("atomic-op", [R0, Insn(0xDB, 10, 0, -8, 0x10), E],
     "BPF_ATOMIC uses invalid atomic opcode 10", 1, True),
    ("atomic-size", [R0, Insn(0xD3, 10, 0, -8, 0), E], "invalid atomic operand size", 1, True),
    ("atomic-fetch-r10", [R0, Insn(0xDB, 10, 10, -8, 1), E], "frame pointer is read only", 1,
     False),
    ("ldimm64-last", [R0, Insn(0x18, 0, 0, 0, 1)], "invalid bpf_ld_imm64 insn", 1, False),
    ("ldimm64-2nd", [Insn(0x18, 0, 0, 0, 1), Insn(0, 1, 0, 0, 0), E],
     "invalid bpf_ld_imm64 insn", 0, True),
    ("ldimm64-off", [Insn(0x18, 0, 0, 1, 1), Insn(0), E], "BPF_LD_IMM64 uses reserved fields",
     0, True),
    ("ldimm64-src-7", [Insn(0x18, 0, 7, 0, 1), Insn(0), E], "unrecognized bpf_ld_imm64 insn",
     0, True),
    ("ldimm64-mapfd-hi", [Insn(0x18, 1, 1, 0, 1), Insn(0, 0, 0, 0, 47), E],
     "unrecognized bpf_ld_imm64 insn", 0, False),
    ("jump-out", [R0, Insn(0x05, 0, 0, 5, 0), E], "jump out of range from insn 1 to 7", 1,
     True),
    ("jump-back-out", [R0, Insn(0x05, 0, 0, -3, 0), E], "jump out of range from insn 1 to -1",
     1, True),
    ("jump-mid-ldimm64", [Insn(0x05, 0, 0, 1, 0), *ld_imm64(0, 1), E],
     "jump into the middle of ldimm64 insn 1", 0, False),
    ("jump-into-subprog", [Insn(0x85, 0, 1, 0, 1), Insn(0x05, 0, 0, 1, 0), E, R0, E],
     "jump out of range from insn 1 to 3", 1, True),
    ("call-bad", [R0, Insn(0x85, 0, 1, 0, 5), E], "call to invalid destination", 1, True),
    ("call-before-start", [Insn(0x85, 0, 1, 0, -4), E], "call to invalid destination", 0,
     True),
    ("func-bad", [Insn(0x18, 1, 4, 0, 9), Insn(0), E], "call to invalid destination", 0, True),
    ("fallthrough", [R0, Insn(0xB7, 0, 0, 0, 1)], "last insn is not an exit or jmp", 1, True),
    ("subprog-fallthrough", [Insn(0x85, 0, 1, 0, 1), R0, R0, E],
     "last insn is not an exit or jmp", 1, True),
    ("unknown-00", [Insn(0x00, 0, 0, 0, 0), E], "unknown opcode 00", 0, True),
    ("ld-abs", [Insn(0x20, 0, 0, 0, 0), E],
     "BPF_LD_[ABS|IND] instructions not allowed for this program type", 0, True),
]


@pytest.mark.parametrize(("prog", "message", "pc"), [b[1:4] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_structural_problem_named_with_pc(prog: list[Insn], message: str, pc: int) -> None:
    with pytest.raises(InvalidProgram) as info:
        check_program(prog)
    assert str(info.value) == f"{message} at pc {pc}"


def test_empty_program_and_legacy_packet_access() -> None:
    with pytest.raises(InvalidProgram, match="program has no instructions"):
        check_program([])
    check_program([Insn(0x20, 0, 0, 0, 12), Insn(0x40, 0, 1, 0, 2), E],
                  legacy_packet_access=True)
    with pytest.raises(InvalidProgram, match=r"BPF_LD_\[ABS\|IND\] uses reserved fields"):
        check_program([Insn(0x20, 1, 0, 0, 12), E], legacy_packet_access=True)


def test_problems_lists_every_bad_instruction() -> None:
    prog = [Insn(0xB7, 11), Insn(0x07, 1, 2, 0, 1), E]
    assert [(p.pc, p.message) for p in problems(prog)] == [
        (0, "R11 is invalid"), (1, "BPF_ALU uses reserved fields")]


@functools.cache
def _kernel_unavailable() -> str | None:
    try:
        res = syscall.prog_load(ProgType.XDP, encode([R0, E]), "GPL")
    except OSError as exc:
        return f"bpf() not usable: {exc}"
    if res.fd is None:
        return f"BPF_PROG_LOAD refused a trivial program (errno {res.errno})"
    os.close(res.fd)
    return None


@pytest.mark.kernel
@pytest.mark.parametrize(("prog", "message"), [b[1:3] for b in BAD if b[4]],
                         ids=[b[0] for b in BAD if b[4]])
def test_the_kernel_refuses_with_the_same_words(prog: list[Insn], message: str) -> None:
    reason = _kernel_unavailable()
    if reason:
        pytest.skip(reason)
    res = syscall.prog_load(ProgType.XDP, encode(prog), "GPL", log_level=1, log_size=1 << 16)
    assert res.fd is None
    assert message in res.log
