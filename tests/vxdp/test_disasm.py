"""vxdp.bpf.disasm: the verifier-log syntax, checked against a vector table, against the
kernel's own verifier log, and against llvm-objdump on clang-compiled code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from vxdp.bpf import syscall
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.disasm import disassemble, format_insn, insn_text
from vxdp.bpf.isa import Insn, check_program, decode, encode, ld_imm64
from vxdp.bpf.program import ProgType

# (encoding, the kernel's text): every class and the cpu v4 forms.
VECTORS = [
    ("b700000000000000", "r0 = 0"),
    ("b4010000feffffff", "w1 = -2"),
    ("bc21000000000000", "w1 = w2"),
    ("0701000008000000", "r1 += 8"),
    ("1f21000000000000", "r1 -= r2"),
    ("2401000003000000", "w1 *= 3"),
    ("3f10000000000000", "r0 /= r1"),
    ("3f10010000000000", "r0 s/= r1"),
    ("3400010005000000", "w0 s/= 5"),
    ("9f10010000000000", "r0 s%= r1"),
    ("4f21000000000000", "r1 |= r2"),
    ("5701000000ff0000", "r1 &= 65280"),
    ("6701000020000000", "r1 <<= 32"),
    ("7c21000000000000", "w1 >>= w2"),
    ("a701000001000000", "r1 ^= 1"),
    ("c701000003000000", "r1 s>>= 3"),
    ("8700000000000000", "r0 = -r0"),
    ("8400000000000000", "w0 = -w0"),
    ("9401000007000000", "w1 %= 7"),
    ("bf10080000000000", "r0 = (s8)r1"),
    ("bf10100000000000", "r0 = (s16)r1"),
    ("bf10200000000000", "r0 = (s32)r1"),
    ("bc10080000000000", "w0 = (s8)w1"),
    ("dc00000010000000", "r0 = be16 r0"),
    ("d400000020000000", "r0 = le32 r0"),
    ("d700000040000000", "r0 = bswap64 r0"),
    ("6111000000000000", "r1 = *(u32 *)(r1 +0)"),
    ("7112feff00000000", "r2 = *(u8 *)(r1 -2)"),
    ("6912040000000000", "r2 = *(u16 *)(r1 +4)"),
    ("79a1f8ff00000000", "r1 = *(u64 *)(r10 -8)"),
    ("9110000000000000", "r0 = *(s8 *)(r1 +0)"),
    ("8910020000000000", "r0 = *(s16 *)(r1 +2)"),
    ("8110040000000000", "r0 = *(s32 *)(r1 +4)"),
    ("7b1af8ff00000000", "*(u64 *)(r10 -8) = r1"),
    ("6a0afeff39300000", "*(u16 *)(r10 -2) = 12345"),
    ("720a0000ffffffff", "*(u8 *)(r10 +0) = -1"),
    ("db1af8ff00000000", "lock *(u64 *)(r10 -8) += r1"),
    ("c31afcff50000000", "lock *(u32 *)(r10 -4) &= r1"),
    ("db1af8ff40000000", "lock *(u64 *)(r10 -8) |= r1"),
    ("db1af8ffa0000000", "lock *(u64 *)(r10 -8) ^= r1"),
    ("db0af8ff01000000", "r0 = atomic64_fetch_add((u64 *)(r10 -8), r0)"),
    ("c31afcff41000000", "r1 = atomic_fetch_or((u32 *)(r10 -4), r1)"),
    ("db1af8ffe1000000", "r1 = atomic64_xchg((u64 *)(r10 -8), r1)"),
    ("c32af8fff1000000", "r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r2)"),
    ("2d23050000000000", "if r3 > r2 goto pc+5"),
    ("1601fdff01000000", "if w1 == 0x1 goto pc-3"),
    ("a501010000f0ffff", "if r1 < 0xfffff000 goto pc+1"),
    ("6e21000000000000", "if w1 s> w2 goto pc+0"),
    ("4501020080000000", "if r1 & 0x80 goto pc+2"),
    ("d501ffff00000000", "if r1 s<= 0x0 goto pc-1"),
    ("0500020000000000", "goto pc+2"),
    ("0600000000000100", "gotol pc+65536"),
    ("8500000001000000", "call bpf_map_lookup_elem#1"),
    ("850000002c000000", "call bpf_xdp_adjust_head#44"),
    ("85000000ff0f0000", "call unknown#4095"),
    ("8510000003000000", "call pc+3"),
    ("8d02000000000000", "callx r2"),
    ("9500000000000000", "exit"),
    ("2000000004000000", "r0 = *(u32 *)skb[4]"),
    ("5010000002000000", "r0 = *(u8 *)skb[r1 + 2]"),
]


@pytest.mark.parametrize(("hexbytes", "text"), VECTORS, ids=[v[1] for v in VECTORS])
def test_vector(hexbytes: str, text: str) -> None:
    insns = decode(bytes.fromhex(hexbytes))
    assert insn_text(insns, 0) == text
    assert format_insn(insns, 0) == f"0: ({hexbytes[:2]}) {text}"


def test_ld_imm64_forms_and_one_line_for_two_slots() -> None:
    insns = [*ld_imm64(1, 0x1234), Insn(0x18, 1, 1, 0, 3), Insn(0),
             Insn(0x18, 2, 2, 0, 0), Insn(0, imm=16), Insn(0x18, 3, 4, 0, 2), Insn(0),
             *ld_imm64(0, -1), Insn(0x95)]
    assert disassemble(insns) == [
        "0: (18) r1 = 0x1234",
        "2: (18) r1 = map[idx:3]",
        "4: (18) r2 = map[idx:0][0]+16",
        "6: (18) r3 = subprog[+2]",
        "8: (18) r0 = 0xffffffffffffffff",
        "10: (95) exit",
    ]
    named = disassemble(insns, map_name=lambda i: f"id:{100 + i}")
    assert named[1] == "2: (18) r1 = map[id:103]"


# -- the real verifier prints the same lines ----------------------------------------------------

_PROGRAM = [Insn(0xB7, 0, 0, 0, 0), Insn(0x7B, 10, 0, -8, 0), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -8), Insn(0xB7, 1, 0, 0, 1), Insn(0xDB, 2, 1, 0, 0x01),
            Insn(0xDB, 2, 1, 0, 0x50), Insn(0xC3, 2, 1, 0, 0xE1), Insn(0xDB, 2, 1, 0, 0xF1),
            Insn(0xDC, 1, 0, 0, 16), Insn(0xD4, 1, 0, 0, 32), Insn(0x26, 1, 0, 1, 7),
            Insn(0xA4, 1, 0, 0, 3), Insn(0x79, 0, 10, -8, 0), Insn(0x85, 0, 0, 0, 5),
            Insn(0x67, 0, 0, 0, 1), Insn(0x05, 0, 0, 0, 0), Insn(0x95)]
# cpu v4: sdiv/smod, movsx, ldsx, bswap, gotol; and a plain LD_IMM64
_PROGRAM_V4 = [Insn(0xB7, 0, 0, 0, 0), Insn(0x7B, 10, 0, -8, 0), *ld_imm64(1, 0x123456789),
               Insn(0xB7, 2, 0, 0, 3), Insn(0x3F, 1, 2, 1, 0), Insn(0x37, 1, 0, 1, -3),
               Insn(0x9F, 1, 2, 1, 0), Insn(0xBF, 3, 1, 8, 0), Insn(0xBC, 3, 1, 16, 0),
               Insn(0xBF, 3, 1, 32, 0), Insn(0x91, 4, 10, -8, 0), Insn(0x89, 4, 10, -8, 0),
               Insn(0x81, 4, 10, -8, 0), Insn(0xD7, 4, 0, 0, 16), Insn(0xD7, 4, 0, 0, 64),
               Insn(0x06, 0, 0, 0, 0), Insn(0x16, 4, 0, 1, 7), Insn(0xB7, 0, 0, 0, 2),
               Insn(0xC7, 4, 0, 0, 3), Insn(0x84, 4), Insn(0x95)]


@pytest.mark.kernel
@pytest.mark.parametrize("program", [_PROGRAM, _PROGRAM_V4], ids=["v3", "v4"])
def test_same_lines_as_the_kernel_verifier_log(program: list[Insn]) -> None:
    check_program(program)  # what the kernel accepts, the structural check accepts
    try:
        res = syscall.prog_load(ProgType.XDP, encode(program), "GPL", log_level=2,
                                log_size=1 << 20)
    except OSError as exc:
        pytest.skip(f"bpf() not usable: {exc}")
    if res.fd is None:
        if res.errno in (1, 13) and "processed" not in res.log:
            pytest.skip(f"BPF_PROG_LOAD not permitted (errno {res.errno})")
        pytest.fail(f"the kernel refused the sample program: {res.log[-400:]}")
    os.close(res.fd)
    logged = {}
    for line in res.log.splitlines():
        m = re.match(r"^(\d+): (\(\w\w\) .*?)(\s+; .*)?$", line)
        if m:
            logged[int(m.group(1))] = f"{m.group(1)}: {m.group(2)}"
    ours = disassemble(program)
    assert len(logged) == len(ours)
    assert [logged[pc] for pc in sorted(logged)] == ours


# -- llvm-objdump on clang output ---------------------------------------------------------------

_C = r"""
typedef unsigned long long u64; typedef unsigned int u32; typedef unsigned short u16;
static long (*bpf_ktime_get_ns)(void) = (void *)5;
__attribute__((noinline)) static int sub(int a, int b) { return a * b + (a >> 3); }
__attribute__((section("xdp"), used)) int prog(void *ctx) {
    volatile u64 stack[4] = {1, 2, 3, 4};
    u32 *p = ctx;
    u32 a = p[0], b = p[1];
    u64 x = bpf_ktime_get_ns();
    __sync_fetch_and_add(&stack[0], x);
    u64 old = __sync_fetch_and_or(&stack[1], 7);
    u64 y = __sync_lock_test_and_set(&stack[2], a);
    __sync_val_compare_and_swap(&stack[3], 5, b);
    if ((int)a < -5) return sub(a, b) + 0x123456789ull;
    if (b > a) x ^= (x << 13) | (x >> 7);
    x += __builtin_bswap16((u16)a) + __builtin_bswap32(b) + (short)a + (signed char)b;
    x = x / (b | 1) + x % 7;
    return (int)(x + old + y + stack[0]);
}
"""


def _as_llvm(text: str) -> str:
    """Our kernel-syntax line rewritten in llvm-objdump's spelling."""
    text = re.sub(r"\(r(\d+) ([+-])(\d+)\)", r"(r\1 \2 \3)", text)
    text = re.sub(r"goto pc([+-]\d+)", r"goto \1", text)
    text = re.sub(r"call (?:bpf_\w+|unknown)#(\d+)", r"call \1", text)
    text = re.sub(r"call pc([+-]\d+)", r"call \1", text)
    text = re.sub(r" (0x[0-9a-f]+) goto",
                  lambda m: f" {int(m.group(1), 16) - ((int(m.group(1), 16) >> 31) << 32)} goto",
                  text)
    m = re.match(r"^(r\d+) = (0x[0-9a-f]+)$", text)
    if m:
        return f"{m.group(1)} = {int(m.group(2), 16)} ll"
    text = re.sub(r"atomic64_fetch_", "atomic_fetch_", text)
    text = re.sub(r"atomic64_(xchg|cmpxchg)\(\(u64 \*\)\((r\d+ [+-] \d+)\)", r"\1_64(\2", text)
    return text


def _llvm_lines(obj: Path, section: str) -> dict[int, str]:
    out = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", f"--section={section}",
                          str(obj)], capture_output=True, text=True, check=True).stdout
    lines = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+):\s+(.*?)(?:\s+<[\w.]+>)?$", line)
        if m:
            lines[int(m.group(1))] = m.group(2).strip()
    return lines


@pytest.mark.clang
@pytest.mark.parametrize("section", [".text", "xdp"])
def test_matches_llvm_objdump(tmp_path: Path, section: str) -> None:
    if reason := clang_unavailable():
        pytest.skip(reason)
    if shutil.which("llvm-objdump") is None:
        pytest.skip("llvm-objdump not installed")
    src = tmp_path / "prog.c"
    src.write_text(_C)
    obj = compile_c(src)
    with obj.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(section)
        assert sec is not None
        insns = decode(sec.data())
    theirs = _llvm_lines(obj, section)
    ours = {int(line.split(":")[0]): _as_llvm(line.split(") ", 1)[1])
            for line in disassemble(insns)}
    assert ours == theirs
