"""vxdp.bpf.asm: the ubpf/bpf_conformance dialect, against hand vectors, llvm-mc encodings,
and `assemble(to_asm(x)) == x` over random instructions."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vxdp.bpf.asm import AsmError, assemble, to_asm
from vxdp.bpf.isa import Insn, check_program, decode, encode, problems

# (dialect line, encoding): the forms of the .data files plus the cpu v4 ones.
VECTORS = [
    ("mov %r0, 1", "b700000001000000"),
    ("mov32 %r0, -1", "b4000000ffffffff"),
    ("mov64 %r1, %r2", "bf21000000000000"),
    ("add32 %r0, %r1", "0c10000000000000"),
    ("sub %r1, 0x10", "1701000010000000"),
    ("mul %r1, 0xffffffff", "27010000ffffffff"),
    ("div32 %r1, 3", "3401000003000000"),
    ("sdiv %r1, %r2", "3f21010000000000"),
    ("smod32 %r1, 5", "9401010005000000"),
    ("neg %r3", "8703000000000000"),
    ("neg32 %r3", "8403000000000000"),
    ("arsh32 %r0, 4", "c400000004000000"),
    ("movsx832 %r2, %r1", "bc12080000000000"),
    ("movsx1664 %r8, %r7", "bf78100000000000"),
    ("movsx3264 %r0, %r9", "bf90200000000000"),
    ("be16 %r0", "dc00000010000000"),
    ("le64 %r0", "d400000040000000"),
    ("swap32 %r0", "d700000020000000"),
    ("bswap64 %r0", "d700000040000000"),
    ("ldxb %r0, [%r1+2]", "7110020000000000"),
    ("ldxdw %r0, [%r10-8]", "79a0f8ff00000000"),
    ("ldxh %r3, [%r1]", "6913000000000000"),
    ("ldxsb %r0, [%r10-1]", "91a0ffff00000000"),
    ("ldxsw %r0, [%r1+0x4]", "8110040000000000"),
    ("stb [%r10-1], 0x80", "720affff80000000"),
    ("stdw [%r1 + 8], -2", "7a010800feffffff"),
    ("stxw [%r10-4], %r1", "631afcff00000000"),
    ("lddw %r0, 0x1122334455667788", "1800000088776655" "0000000044332211"),
    ("lddw %r1, -1", "18010000ffffffff" "00000000ffffffff"),
    ("lock add [%r10-8], %r1", "db1af8ff00000000"),
    ("lock fetch add32 [%r10-4], %r1", "c31afcff01000000"),
    ("lock fetch xor [%r10-8], %r3", "db3af8ffa1000000"),
    ("lock xchg32 [%r10-8], %r1", "c31af8ffe1000000"),
    ("lock cmpxchg [%r10-8], %r1", "db1af8fff1000000"),
    ("ja +2", "0500020000000000"),
    ("ja32 -1", "06000000ffffffff"),
    ("jne %r0, 15, +1", "550001000f000000"),
    ("jsle32 %r1, %r2, -3", "de21fdff00000000"),
    ("jset %r1, 0x80000000, +0", "4501000000000080"),
    ("call 5", "8500000005000000"),
    ("call helper 1", "8500000001000000"),
    ("call local +3", "8510000003000000"),
    ("call runtime 7", "8520000007000000"),
    ("call %r2", "8d02000000000000"),
    ("callx %r3", "8d03000000000000"),
    ("exit", "9500000000000000"),
    ("ldabsw 12", "200000000c000000"),
    ("ldindb %r1, 2", "5010000002000000"),
    ("lddw %r1, map_fd(3)", "1811000003000000" "0000000000000000"),
    ("lddw %r2, map_value(0, 16)", "1822000000000000" "0000000010000000"),
    (".insn 0xff, 1, 2, -1, 7", "ff21ffff07000000"),
]


@pytest.mark.parametrize(("line", "hexbytes"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector(line: str, hexbytes: str) -> None:
    insns = assemble(line)
    assert encode(insns).hex() == hexbytes
    assert assemble(to_asm(insns)) == insns


def test_labels_exit_label_and_comments() -> None:
    text = """
    # a comment line
    mov %r0, 0          # trailing comment
    jeq %r1, 0, exit
    call local func
    ja32 done
    lddw %r2, 1
    done:
    exit
    func:
    mov %r0, 7
    jne %r0, 7, func
    exit
    """
    insns = assemble(text)
    assert insns[1].off == 4  # the first `exit` (pc 6), since no label is named exit
    assert insns[2].imm == 4  # func at pc 7
    assert insns[3].imm == 2  # done at pc 6, past the two-slot lddw
    assert insns[8].off == -2
    check_program(insns)


def test_explicit_exit_label_wins() -> None:
    insns = assemble("ja exit\nexit\nexit:\nmov %r0, 1\nexit")
    assert insns[0].off == 1


@pytest.mark.parametrize(("text", "message"), [
    ("mov %r0, 1\nfrob %r1", "line 2: unknown mnemonic 'frob'"),
    ("mov %r16, 1", "line 1: invalid register '%r16'"),
    ("mov %r0", "line 1: mov takes 2 operands, got 1"),
    ("exit %r0", "line 1: exit takes 0 operands, got 1"),
    ("ja nowhere\nexit", "line 1: undefined label 'nowhere'"),
    ("a:\na:\nexit", "line 2: duplicate label 'a'"),
    ("mov %r0, 0x100000000", "line 1: immediate 0x100000000 out of range"),
    ("ldxw %r0, %r1", "line 1: invalid memory operand '%r1' (expected [%rN+off])"),
    ("stw [%r1+0x10000], 1", "line 1: offset 0x10000 out of range"),
    ("lock nand [%r10-8], %r1", "line 1: unknown atomic operation 'nand'"),
    ("call far 5", "line 1: call takes N, helper N, local TARGET, runtime N or %rN"),
    ("movsx832 %r0, 5", "line 1: movsx832 takes a register source"),
    ("lddw %r1, map_fdx(1)", "line 1: unknown lddw form 'map_fdx'"),
])
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(text)
    assert str(info.value) == message


# -- llvm-mc agrees on the encodings --------------------------------------------------------------

# (dialect, the same instruction as llvm-mc 14 spells it)
LLVM_PAIRS = [
    ("mov %r0, 0", "r0 = 0"), ("mov32 %r1, %r2", "w1 = w2"), ("and32 %r1, 255", "w1 &= 255"),
    ("neg %r1", "r1 = -r1"), ("neg32 %r0", "w0 = -w0"), ("arsh %r3, 2", "r3 s>>= 2"),
    ("lsh32 %r1, %r2", "w1 <<= w2"), ("div %r1, 3", "r1 /= 3"), ("xor32 %r2, %r3", "w2 ^= w3"),
    ("be16 %r0", "r0 = be16 r0"), ("le64 %r0", "r0 = le64 r0"),
    ("ldxb %r1, [%r2-1]", "r1 = *(u8 *)(r2 - 1)"), ("ldxh %r1, [%r2+4]", "r1 = *(u16 *)(r2 + 4)"),
    ("stxh [%r1+2], %r3", "*(u16 *)(r1 + 2) = w3"),
    ("stxdw [%r10-8], %r1", "*(u64 *)(r10 - 8) = r1"),
    ("lock add [%r10-8], %r1", "lock *(u64 *)(r10 - 8) += r1"),
    ("lock and [%r10-8], %r1", "lock *(u64 *)(r10 - 8) &= r1"),
    ("lock or [%r10-8], %r1", "lock *(u64 *)(r10 - 8) |= r1"),
    ("lock xor32 [%r10-8], %r1", "lock *(u32 *)(r10 - 8) ^= w1"),
    ("lock add32 [%r10-4], %r1", "lock *(u32 *)(r10 - 4) += w1"),
    ("jslt32 %r1, %r2, +3", "if w1 s< w2 goto +3"), ("jgt %r1, 5, -2", "if r1 > 5 goto -2"),
    ("jsge %r1, %r2, +0", "if r1 s>= r2 goto +0"), ("ja +5", "goto +5"),
    ("lddw %r0, 0x1122334455667788", "r0 = 0x1122334455667788 ll"),
    ("call 5", "call 5"), ("exit", "exit"),
]


@pytest.mark.clang
def test_same_encodings_as_llvm_mc() -> None:
    if shutil.which("llvm-mc") is None:
        pytest.skip("llvm-mc not installed")
    source = "\n".join(llvm for _, llvm in LLVM_PAIRS) + "\n"
    out = subprocess.run(["llvm-mc", "-triple", "bpfel", "-mcpu=v3", "-show-encoding"],
                         input=source, capture_output=True, text=True, check=True).stdout
    encodings = [bytes(int(b, 16) for b in m.split(","))
                 for m in re.findall(r"encoding: \[([^\]]*)\]", out)]
    assert len(encodings) == len(LLVM_PAIRS)
    for (dialect, llvm), code in zip(LLVM_PAIRS, encodings, strict=True):
        assert encode(assemble(dialect)) == code, (dialect, llvm)


# -- round trips ------------------------------------------------------------------------------------

_any_insn = st.builds(Insn, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                      st.integers(-(1 << 15), (1 << 15) - 1),
                      st.integers(-(1 << 31), (1 << 31) - 1))


@settings(max_examples=150, deadline=None)
@given(st.lists(_any_insn, min_size=1, max_size=12), st.booleans())
def test_round_trip_of_any_slots(insns: list[Insn], labels: bool) -> None:
    assert assemble(to_asm(insns, labels=labels)) == insns


_VALID_OPCODES = sorted({
    *(cls | op | src for cls in (0x04, 0x07) for op in range(0, 0xD0, 0x10) for src in (0, 8)
      if not (op == 0x80 and src)),
    0xD4, 0xDC, 0xD7,
    *(cls | size | 0x60 for cls in (0x01, 0x02, 0x03) for size in (0, 8, 0x10, 0x18)),
    0x81, 0x89, 0x91, 0xC3, 0xDB,
    *(cls | op | src for cls in (0x05, 0x06) for op in range(0x10, 0xE0, 0x10)
      for src in (0, 8) if op not in (0x80, 0x90)),
    0x05, 0x06, 0x85, 0x8D, 0x95, 0x18,
})


_FLOW = ("jump", "call to", "last insn")


def _insn_ok(chunk: list[Insn]) -> bool:
    """No problem of the instruction itself (control flow is not its business here)."""
    return not any(not p.message.startswith(_FLOW) for p in problems([*chunk, Insn(0x95)]))


_IMM = st.integers(-(1 << 31), (1 << 31) - 1)
_OFF = st.integers(-(1 << 15), (1 << 15) - 1)


@st.composite
def _candidate(draw: st.DrawFn) -> list[Insn]:
    """Mostly valid instructions: fields drawn the way each class uses them."""
    opcode = draw(st.sampled_from(_VALID_OPCODES))
    cls, op, x = opcode & 0x07, opcode & 0xF0, bool(opcode & 0x08)
    dst = draw(st.integers(0, 9))
    src = draw(st.integers(0, 10))
    if opcode == 0x18:
        pseudo = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6]))
        hi = 0 if pseudo in (1, 5) else draw(_IMM)
        return [Insn(opcode, dst, pseudo, 0, draw(_IMM)), Insn(0, imm=hi)]
    if cls in (0x04, 0x07):  # ALU
        if op == 0xD0:
            return [Insn(opcode, dst, 0, 0, draw(st.sampled_from([16, 32, 64])))]
        off = draw(st.sampled_from({0x30: [0, 1], 0x90: [0, 1]}.get(
            op, [0, 8, 16, 32] if op == 0xB0 and x else [0])))
        return [Insn(opcode, dst, src if x else 0, off, 0 if x else draw(_IMM))]
    if cls in (0x05, 0x06):  # JMP
        if opcode in (0x85, 0x95, 0x8D, 0x05, 0x06):
            return [{0x85: Insn(0x85, 0, draw(st.sampled_from([0, 1, 2])), 0, draw(_IMM)),
                     0x95: Insn(0x95), 0x8D: Insn(0x8D, dst), 0x05: Insn(0x05, off=draw(_OFF)),
                     0x06: Insn(0x06, imm=draw(_IMM))}[opcode]]
        return [Insn(opcode, dst, src if x else 0, draw(_OFF), 0 if x else draw(_IMM))]
    if cls == 0x03 and opcode & 0xE0 == 0xC0:  # atomics
        imm = draw(st.sampled_from([0x00, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, 0xE1,
                                    0xF1]))
        return [Insn(opcode, dst, draw(st.integers(0, 9)), draw(_OFF), imm)]
    imm = draw(_IMM) if cls == 0x02 else 0
    return [Insn(opcode, dst, src if cls != 0x02 else 0, draw(_OFF), imm)]


_valid_insn = _candidate().filter(_insn_ok)


@settings(max_examples=150, deadline=None)
@given(st.lists(_valid_insn, min_size=1, max_size=8))
def test_valid_instructions_get_mnemonics_and_round_trip(chunks: list[list[Insn]]) -> None:
    insns = [i for chunk in chunks for i in chunk]
    text = to_asm(insns)
    assert ".insn" not in text, text
    assert assemble(text) == insns


def test_disassembled_conformance_style_program() -> None:
    text = to_asm(decode(bytes.fromhex(
        "b700000000000000" "1501010000000000" "0700000001000000" "9500000000000000")))
    assert text == "mov %r0, 0\njeq %r1, 0, L3\nadd %r0, 1\nL3:\nexit\n"
