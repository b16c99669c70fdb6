"""The kernel's verifier-log syntax: one line per instruction, as kernel/bpf/disasm.c prints.

    >>> disassemble(decode(code))
    ['0: (b7) r0 = 0', '1: (61) r2 = *(u32 *)(r1 +4)', '2: (95) exit']

Helper calls are named from `vxdp.bpf.helpers` (`call bpf_map_lookup_elem#1`), unknown ids
print as the kernel does (`call unknown#N`).  LD_IMM64 takes one line for its two slots.
Pseudo LD_IMM64 forms print as `bpftool prog dump xlated` does; since a vxdp `Program`
carries map *indices* (see vxdp.bpf.program) the default is `map[idx:N]`, and a caller
that knows better (a device handle, a kernel map id, a name) passes `map_name`.
callx, which the kernel rejects and so never prints, uses LLVM's `callx rN`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vxdp.bpf.helpers import HELPERS
from vxdp.bpf.isa import (
    OP_CALLX,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    AluOp,
    AtomicOp,
    CallSrc,
    Cls,
    Insn,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Src,
    imm64,
    is_ldimm64,
    iter_insns,
)

MapName = Callable[[int], str]
"""Given a map index or fd from an LD_IMM64, the text inside `map[...]` (e.g. `id:7`)."""

_ALU: dict[int, str] = {
    AluOp.ADD: "+=", AluOp.SUB: "-=", AluOp.MUL: "*=", AluOp.DIV: "/=", AluOp.OR: "|=",
    AluOp.AND: "&=", AluOp.LSH: "<<=", AluOp.RSH: ">>=", AluOp.MOD: "%=", AluOp.XOR: "^=",
    AluOp.MOV: "=", AluOp.ARSH: "s>>="}
_ALU_SIGNED: dict[int, str] = {AluOp.DIV: "s/=", AluOp.MOD: "s%="}
_MOVSX: dict[int, str] = {8: "(s8)", 16: "(s16)", 32: "(s32)"}
_LDST: dict[int, str] = {Size.W: "u32", Size.H: "u16", Size.B: "u8", Size.DW: "u64"}
_LDSX: dict[int, str] = {Size.W: "s32", Size.H: "s16", Size.B: "s8", Size.DW: "s64"}
_JMP: dict[int, str] = {
    JmpOp.JEQ: "==", JmpOp.JGT: ">", JmpOp.JGE: ">=", JmpOp.JSET: "&", JmpOp.JNE: "!=",
    JmpOp.JSGT: "s>", JmpOp.JSGE: "s>=", JmpOp.JLT: "<", JmpOp.JLE: "<=", JmpOp.JSLT: "s<",
    JmpOp.JSLE: "s<="}
_ATOMIC_ALU: dict[int, str] = {
    AtomicOp.ADD: "add", AtomicOp.AND: "and", AtomicOp.OR: "or", AtomicOp.XOR: "xor"}


def default_map_name(index: int) -> str:
    return f"idx:{index}"


def helper_name(helper_id: int) -> str:
    """The kernel's name for a helper id (`bpf_map_lookup_elem`), or `unknown`."""
    helper = HELPERS.get(helper_id)
    return f"bpf_{helper.name}" if helper else "unknown"


def _mem(reg: int, off: int) -> str:
    return f"(r{reg} {off:+d})"


def _alu(insn: Insn) -> str:
    w = "w" if insn.cls == Cls.ALU else "r"
    op, d = insn.op, insn.dst
    if op == AluOp.END:
        if insn.cls == Cls.ALU64:
            return f"r{d} = bswap{insn.imm} r{d}"
        order = "le" if insn.source == Src.K else "be"
        return f"r{d} = {order}{insn.imm} r{d}"
    if op == AluOp.NEG:
        return f"{w}{d} = -{w}{d}"
    if op not in _ALU:
        return f"BUG_alu_{insn.opcode:02x}"
    sign = insn.off == 1 and op in _ALU_SIGNED
    text = _ALU_SIGNED[op] if sign else _ALU[op]
    if insn.source == Src.X:
        movsx = _MOVSX.get(insn.off, "") if op == AluOp.MOV else ""
        return f"{w}{d} {text} {movsx}{w}{insn.src}"
    return f"{w}{d} {text} {insn.imm}"


def _stx(insn: Insn) -> str:
    size = _LDST[insn.size]
    mem = _mem(insn.dst, insn.off)
    if insn.mode == Mode.MEM:
        return f"*({size} *){mem} = r{insn.src}"
    if insn.mode != Mode.ATOMIC:
        return f"BUG_{insn.opcode:02x}"
    bits = "64" if insn.size == Size.DW else ""
    imm = insn.imm
    if imm in _ATOMIC_ALU:
        return f"lock *({size} *){mem} {_ALU[imm]} r{insn.src}"
    if (imm & ~AtomicOp.FETCH) in _ATOMIC_ALU and imm & AtomicOp.FETCH:
        name = _ATOMIC_ALU[imm & ~AtomicOp.FETCH]
        return f"r{insn.src} = atomic{bits}_fetch_{name}(({size} *){mem}, r{insn.src})"
    if imm == AtomicOp.CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg(({size} *){mem}, r0, r{insn.src})"
    if imm == AtomicOp.XCHG:
        return f"r{insn.src} = atomic{bits}_xchg(({size} *){mem}, r{insn.src})"
    return f"BUG_{insn.opcode:02x}"


def _ld_imm64(insns: Sequence[Insn], pc: int, map_name: MapName) -> str:
    insn = insns[pc]
    if pc + 1 >= len(insns):
        return f"r{insn.dst} = <truncated ld_imm64>"
    value = imm64(insns, pc)
    hi = insns[pc + 1].imm
    src = insn.src
    if src in (Pseudo.MAP_FD, Pseudo.MAP_IDX):
        text = f"map[{map_name(insn.imm)}]"
    elif src == Pseudo.MAP_VALUE:
        text = f"map[{map_name(insn.imm)}][0]+{hi}"
    elif src == Pseudo.MAP_IDX_VALUE:
        text = f"map[{map_name(insn.imm)}]+{hi}"
    elif src == Pseudo.FUNC:
        text = f"subprog[{insn.imm:+d}]"
    else:
        text = f"{value:#x}"
    return f"r{insn.dst} = {text}"


def _jmp(insn: Insn) -> str:
    op = insn.op
    if insn.opcode == OP_CALLX:
        return f"callx r{insn.dst}"
    if op == JmpOp.CALL:
        if insn.src == CallSrc.LOCAL:
            return f"call pc{insn.imm:+d}"
        if insn.src == CallSrc.KFUNC:
            return f"call kernel-function#{insn.imm}"
        name = helper_name(insn.imm) if insn.src == CallSrc.HELPER else "unknown"
        return f"call {name}#{insn.imm}"
    if insn.opcode == OP_JA:
        return f"goto pc{insn.off:+d}"
    if insn.opcode == OP_GOTOL:
        return f"gotol pc{insn.imm:+d}"
    if insn.opcode == OP_EXIT:
        return "exit"
    w = "w" if insn.cls == Cls.JMP32 else "r"
    text = _JMP.get(op, f"BUG_{op:02x}")
    if insn.source == Src.X:
        return f"if {w}{insn.dst} {text} {w}{insn.src} goto pc{insn.off:+d}"
    return f"if {w}{insn.dst} {text} {insn.imm & 0xFFFFFFFF:#x} goto pc{insn.off:+d}"


def insn_text(insns: Sequence[Insn], pc: int, *, map_name: MapName = default_map_name
              ) -> str:
    """The instruction at `pc` without its `pc: (op)` prefix, e.g. `r0 = 0`."""
    insn = insns[pc]
    cls = insn.cls
    if cls in (Cls.ALU, Cls.ALU64):
        return _alu(insn)
    if cls in (Cls.JMP, Cls.JMP32):
        return _jmp(insn)
    if cls == Cls.STX:
        return _stx(insn)
    if cls == Cls.ST:
        if insn.mode != Mode.MEM:
            return f"BUG_st_{insn.opcode:02x}"
        return f"*({_LDST[insn.size]} *){_mem(insn.dst, insn.off)} = {insn.imm}"
    if cls == Cls.LDX:
        if insn.mode == Mode.MEM:
            size = _LDST[insn.size]
        elif insn.mode == Mode.MEMSX:
            size = _LDSX[insn.size]
        else:
            return f"BUG_ldx_{insn.opcode:02x}"
        return f"r{insn.dst} = *({size} *){_mem(insn.src, insn.off)}"
    # BPF_LD
    if insn.mode == Mode.ABS:
        return f"r0 = *({_LDST[insn.size]} *)skb[{insn.imm}]"
    if insn.mode == Mode.IND:
        return f"r0 = *({_LDST[insn.size]} *)skb[r{insn.src} + {insn.imm}]"
    if is_ldimm64(insn):
        return _ld_imm64(insns, pc, map_name)
    return f"BUG_ld_{insn.opcode:02x}"


def format_insn(insns: Sequence[Insn], pc: int, *, map_name: MapName = default_map_name
                ) -> str:
    """One verifier-log line: `pc: (opcode) text`."""
    return f"{pc}: ({insns[pc].opcode:02x}) {insn_text(insns, pc, map_name=map_name)}"


def disassemble(insns: Sequence[Insn], *, map_name: MapName = default_map_name) -> list[str]:
    """Every instruction as a verifier-log line (LD_IMM64 takes one line for two slots)."""
    return [format_insn(insns, pc, map_name=map_name) for pc in iter_insns(insns)]
