"""Assembler and disassembler for the ubpf / bpf_conformance assembly dialect.

The dialect of the `.data` conformance files, one instruction a line:

    mov32 %r0, 0            add %r1, %r2            neg %r0        be16 %r0
    ldxw %r0, [%r1+4]       ldxsb %r0, [%r10-1]     stxdw [%r10-8], %r1    stb [%r1], 7
    lddw %r0, 0x1122334455667788                    jne %r0, 15, fail      ja +2
    lock fetch add32 [%r10-4], %r1                  call 5      call local func1
    call %r2                exit                    # a comment
    fail:                   (a label; the label `exit` means the first `exit`)

`32` selects the 32-bit class (`add32`, `jeq32`, `lock or32`), no suffix or `64` the 64-bit
one.  cpu v4 adds `sdiv`, `smod`, `movsx832`/`movsx1664`/`movsx3264` (source width, then
class), `ldxs{b,h,w}`, `bswap16`/`swap16` and `ja32` (gotol).  Immediates are decimal or
hex; values up to 2**32-1 wrap to the signed 32-bit field as in bpf_conformance.

Extensions of ours, so that every instruction has a spelling and `assemble(to_asm(x)) == x`
holds: pseudo LD_IMM64 forms (`lddw %r1, map_fd(3)`, `map_value(3, 8)`, `func(+5)`,
`btf_id(n)`, `map_idx(n)`, `map_idx_value(n, off)`), `call runtime N` (kfunc by BTF id),
`callx %rN`, the legacy `ldabs{b,h,w} IMM` / `ldind{b,h,w} %rS, IMM`, and `.insn OPCODE,
DST, SRC, OFF, IMM` for any encoding at all (used for what has no mnemonic).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vxdp.bpf.isa import (
    OP_CALL,
    OP_CALLX,
    OP_EXIT,
    OP_GOTOL,
    OP_JA,
    OP_LD_IMM64,
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
    iter_insns,
    jump_target,
    s16,
    s32,
)
from vxdp.errors import InvalidProgram


class AsmError(InvalidProgram):
    """Assembly text that cannot be assembled; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


# -- the vocabulary, one table for both directions --------------------------------------------

_ALU_OPS: dict[str, int] = {"add": AluOp.ADD, "sub": AluOp.SUB, "mul": AluOp.MUL, "div": AluOp.DIV,
            "or": AluOp.OR, "and": AluOp.AND, "lsh": AluOp.LSH, "rsh": AluOp.RSH,
            "mod": AluOp.MOD, "xor": AluOp.XOR, "mov": AluOp.MOV, "arsh": AluOp.ARSH}
_SIGNED_OPS: dict[str, int] = {"sdiv": AluOp.DIV, "smod": AluOp.MOD}
_JMP_OPS: dict[str, int] = {"jeq": JmpOp.JEQ, "jgt": JmpOp.JGT, "jge": JmpOp.JGE, "jset": JmpOp.JSET,
            "jne": JmpOp.JNE, "jsgt": JmpOp.JSGT, "jsge": JmpOp.JSGE, "jlt": JmpOp.JLT,
            "jle": JmpOp.JLE, "jslt": JmpOp.JSLT, "jsle": JmpOp.JSLE}
_SIZES: dict[str, int] = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW}
_ATOMIC_OPS: dict[str, int] = {"add": AtomicOp.ADD, "or": AtomicOp.OR, "and": AtomicOp.AND,
               "xor": AtomicOp.XOR, "xchg": AtomicOp.XCHG, "cmpxchg": AtomicOp.CMPXCHG}
_PSEUDO_NAMES: dict[str, int] = {"map_fd": Pseudo.MAP_FD, "map_value": Pseudo.MAP_VALUE,
                 "btf_id": Pseudo.BTF_ID, "func": Pseudo.FUNC, "map_idx": Pseudo.MAP_IDX,
                 "map_idx_value": Pseudo.MAP_IDX_VALUE}

_ALU_NAMES = {v: k for k, v in _ALU_OPS.items()}
_JMP_NAMES = {v: k for k, v in _JMP_OPS.items()}
_SIZE_NAMES = {v: k for k, v in _SIZES.items()}
_ATOMIC_NAMES = {v: k for k, v in _ATOMIC_OPS.items()}
_PSEUDO_KINDS = {v: k for k, v in _PSEUDO_NAMES.items()}

_LABEL = re.compile(r"^([A-Za-z_.$][\w.$]*):\s*(.*)$")
_REG = re.compile(r"^%?r(\d+)$")
_MEM = re.compile(r"^\[\s*(%?r\d+)\s*(?:([+-])\s*(\w+))?\s*\]$")
_NUM = re.compile(r"^[+-]?(0x[0-9a-fA-F]+|\d+)$")
_PSEUDO = re.compile(r"^(\w+)\(\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)$")


def _int(text: str, lo: int, hi: int, what: str) -> int:
    if not _NUM.match(text):
        raise ValueError(f"invalid {what} {text!r}")
    value = int(text, 0) if not re.match(r"^[+-]?0\d", text) else int(text, 10)
    if not lo <= value <= hi:
        raise ValueError(f"{what} {text} out of range")
    return value


def _imm32(text: str) -> int:
    return s32(_int(text, -(1 << 31), (1 << 32) - 1, "immediate"))


def _reg(text: str) -> int:
    m = _REG.match(text)
    if not m or int(m.group(1)) > 15:
        raise ValueError(f"invalid register {text!r}")
    return int(m.group(1))


def _mem(text: str) -> tuple[int, int]:
    m = _MEM.match(text)
    if not m:
        raise ValueError(f"invalid memory operand {text!r} (expected [%rN+off])")
    off = 0
    if m.group(2):
        off = _int(m.group(3), 0, 0xFFFF, "offset")
        off = -off if m.group(2) == "-" else off
    return _reg(m.group(1)), s16(off)


@dataclass
class _Fixup:
    slot: int
    label: str
    line: int
    in_imm: bool  # call local / gotol / pseudo func keep the target in imm


class _Assembler:
    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self.labels: dict[str, int] = {}
        self.first_exit: int | None = None
        self.fixups: list[_Fixup] = []
        self.line = 0

    def target(self, text: str, in_imm: bool) -> int:
        """A jump target: `+N`/`-N` relative, else a label resolved at the end."""
        if text[:1] in "+-":
            return _int(text, -(1 << 31), (1 << 31) - 1, "jump offset")
        if not re.match(r"^[A-Za-z_.$][\w.$]*$", text):
            raise ValueError(f"invalid jump target {text!r}")
        self.fixups.append(_Fixup(len(self.insns), text, self.line, in_imm))
        return 0

    def emit(self, opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        if not -(1 << 15) <= off < (1 << 15):
            raise ValueError(f"offset {off} does not fit in 16 bits")
        self.insns.append(Insn(opcode, dst, src, off, imm))

    def line_of(self, mnemonic: str, rest: str) -> None:
        ops = [o.strip() for o in rest.split(",")] if rest else []
        handler = _dispatch(mnemonic)
        if handler is None:
            raise ValueError(f"unknown mnemonic {mnemonic!r}")
        handler(self, mnemonic, ops)

    def resolve(self) -> list[Insn]:
        for fix in self.fixups:
            where = self.labels.get(fix.label)
            if where is None and fix.label == "exit":
                where = self.first_exit
            if where is None:
                raise AsmError(fix.line, f"undefined label {fix.label!r}")
            rel = where - fix.slot - 1
            old = self.insns[fix.slot]
            if fix.in_imm:
                self.insns[fix.slot] = Insn(old.opcode, old.dst, old.src, old.off, rel)
            elif not -(1 << 15) <= rel < (1 << 15):
                raise AsmError(fix.line, f"jump to {fix.label!r} does not fit in 16 bits")
            else:
                self.insns[fix.slot] = Insn(old.opcode, old.dst, old.src, rel, old.imm)
        return self.insns


def _count(ops: list[str], n: int, mnemonic: str) -> None:
    if len(ops) != n:
        raise ValueError(f"{mnemonic} takes {n} operand{'s' if n != 1 else ''}, got {len(ops)}")


def _split_class(mnemonic: str) -> tuple[str, int]:
    if mnemonic.endswith("32"):
        return mnemonic[:-2], Cls.ALU
    if mnemonic.endswith("64"):
        return mnemonic[:-2], Cls.ALU64
    return mnemonic, Cls.ALU64


def _alu(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    name, cls = _split_class(mnemonic)
    if name == "neg":
        _count(ops, 1, mnemonic)
        a.emit(cls | AluOp.NEG, _reg(ops[0]))
        return
    _count(ops, 2, mnemonic)
    off = 0
    if name in _SIGNED_OPS:
        op, off = _SIGNED_OPS[name], 1
    elif name.startswith("movsx"):
        op, off = AluOp.MOV, int(name[5:])
        if not ops[1].lstrip("%").startswith("r"):
            raise ValueError(f"{mnemonic} takes a register source")
    else:
        op = _ALU_OPS[name]
    if _REG.match(ops[1]):
        a.emit(cls | op | Src.X, _reg(ops[0]), _reg(ops[1]), off)
    else:
        a.emit(cls | op | Src.K, _reg(ops[0]), 0, off, _imm32(ops[1]))


def _end(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    _count(ops, 1, mnemonic)
    m = re.match(r"^(be|le|b?swap)(16|32|64)$", mnemonic)
    assert m
    kind = m.group(1)
    opcode = {"le": Cls.ALU | AluOp.END | Src.K, "be": Cls.ALU | AluOp.END | Src.X
              }.get(kind, Cls.ALU64 | AluOp.END | Src.K)
    a.emit(opcode, _reg(ops[0]), imm=int(m.group(2)))


def _jmp(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    if mnemonic == "exit":
        _count(ops, 0, mnemonic)
        if a.first_exit is None:
            a.first_exit = len(a.insns)
        a.emit(OP_EXIT)
        return
    if mnemonic == "ja":
        _count(ops, 1, mnemonic)
        a.emit(OP_JA, off=a.target(ops[0], in_imm=False))
        return
    if mnemonic in ("ja32", "gotol"):
        _count(ops, 1, mnemonic)
        a.emit(OP_GOTOL, imm=a.target(ops[0], in_imm=True))
        return
    _count(ops, 3, mnemonic)
    name, cls = (mnemonic[:-2], Cls.JMP32) if mnemonic.endswith("32") else (mnemonic, Cls.JMP)
    op = _JMP_OPS[name]
    dst = _reg(ops[0])
    if _REG.match(ops[1]):
        a.emit(cls | op | Src.X, dst, _reg(ops[1]), a.target(ops[2], in_imm=False))
    else:
        imm = _imm32(ops[1])
        a.emit(cls | op | Src.K, dst, 0, a.target(ops[2], in_imm=False), imm)


def _call(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    words = ops[0].split() if ops else []
    if mnemonic == "callx" or (len(words) == 1 and _REG.match(words[0])):
        if len(ops) != 1 or len(words) != 1:
            raise ValueError(f"{mnemonic} takes one register")
        a.emit(OP_CALLX, _reg(words[0]))
        return
    if len(words) == 1:
        words = ["helper", words[0]]
    if len(words) != 2 or words[0] not in ("helper", "local", "runtime"):
        raise ValueError("call takes N, helper N, local TARGET, runtime N or %rN")
    if words[0] == "local":
        _count(ops, 1, "call local")
        a.emit(OP_CALL, src=CallSrc.LOCAL, imm=a.target(words[1], in_imm=True))
    elif words[0] == "helper":
        _count(ops, 1, "call")
        a.emit(OP_CALL, imm=_imm32(words[1]))
    else:  # kfunc by BTF id; the optional second operand is the module BTF index
        off = s16(_int(ops[1], -(1 << 15), 0xFFFF, "offset")) if len(ops) == 2 else 0
        if len(ops) > 2:
            raise ValueError("call runtime takes N[, off]")
        a.emit(OP_CALL, src=CallSrc.KFUNC, off=off, imm=_imm32(words[1]))


def _lddw(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    if len(ops) < 2:
        raise ValueError("lddw takes 2 operands")
    dst = _reg(ops[0])
    m = _PSEUDO.match(", ".join(ops[1:]))  # map_value(3, 8) was split at its comma
    if m:
        kind = _PSEUDO_NAMES.get(m.group(1))
        if kind is None:
            raise ValueError(f"unknown lddw form {m.group(1)!r}")
        lo = a.target(m.group(2), in_imm=True) if kind == Pseudo.FUNC else _imm32(m.group(2))
        hi = _imm32(m.group(3)) if m.group(3) else 0
        a.emit(OP_LD_IMM64, dst, kind, 0, lo)
        a.emit(0, imm=hi)
        return
    _count(ops, 2, mnemonic)
    value = _int(ops[1], -(1 << 63), (1 << 64) - 1, "64-bit immediate") & (1 << 64) - 1
    a.emit(OP_LD_IMM64, dst, 0, 0, s32(value))
    a.emit(0, imm=s32(value >> 32))


def _mem_insn(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    _count(ops, 2, mnemonic)
    m = re.match(r"^(ldxs|ldx|stx|st)(dw|b|h|w)$", mnemonic)
    assert m
    kind, size = m.group(1), _SIZES[m.group(2)]
    if kind in ("ldx", "ldxs"):
        src, off = _mem(ops[1])
        mode = Mode.MEMSX if kind == "ldxs" else Mode.MEM
        a.emit(Cls.LDX | mode | size, _reg(ops[0]), src, off)
    elif kind == "st":
        dst, off = _mem(ops[0])
        a.emit(Cls.ST | Mode.MEM | size, dst, 0, off, _imm32(ops[1]))
    else:
        dst, off = _mem(ops[0])
        a.emit(Cls.STX | Mode.MEM | size, dst, _reg(ops[1]), off)


def _legacy(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    """The legacy packet loads: `ldabsw IMM`, `ldindw %rS, IMM` (result in r0)."""
    size = _SIZES[mnemonic[5:]]
    if mnemonic.startswith("ldind"):
        _count(ops, 2, mnemonic)
        a.emit(Cls.LD | Mode.IND | size, 0, _reg(ops[0]), 0, _imm32(ops[1]))
    else:
        _count(ops, 1, mnemonic)
        a.emit(Cls.LD | Mode.ABS | size, imm=_imm32(ops[0]))


def _lock(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    m = re.match(r"^(fetch\s+)?(\w+)\s+(\[.*\])$", ops[0]) if len(ops) == 2 else None
    if not m:
        raise ValueError("lock takes [fetch] OP [%rD+off], %rS")
    word = m.group(2)
    name, size = (word[:-2], Size.W) if word.endswith("32") else (word, Size.DW)
    if name.endswith("64"):
        name = name[:-2]
    if name not in _ATOMIC_OPS:
        raise ValueError(f"unknown atomic operation {word!r}")
    imm = _ATOMIC_OPS[name] | (AtomicOp.FETCH if m.group(1) else 0)
    dst, off = _mem(m.group(3))
    a.emit(Cls.STX | Mode.ATOMIC | size, dst, _reg(ops[1]), off, imm)


def _raw(a: _Assembler, mnemonic: str, ops: list[str]) -> None:
    _count(ops, 5, mnemonic)
    a.emit(_int(ops[0], 0, 0xFF, "opcode"), _int(ops[1], 0, 15, "register"),
           _int(ops[2], 0, 15, "register"), s16(_int(ops[3], -(1 << 15), 0xFFFF, "offset")),
           _imm32(ops[4]))


_Handler = Callable[[_Assembler, str, list[str]], None]


def _dispatch(mnemonic: str) -> _Handler | None:
    base, _ = _split_class(mnemonic)
    if base in _ALU_OPS or base in _SIGNED_OPS or base == "neg" or re.match(
            r"^movsx(8|16|32)$", base):
        if base == "movsx32" and not mnemonic.endswith("64"):
            return None
        return _alu
    if re.match(r"^(be|le|b?swap)(16|32|64)$", mnemonic):
        return _end
    if mnemonic in ("exit", "ja", "ja32", "gotol") or mnemonic in _JMP_OPS or (
            mnemonic.endswith("32") and mnemonic[:-2] in _JMP_OPS):
        return _jmp
    if mnemonic in ("call", "callx"):
        return _call
    if mnemonic == "lddw":
        return _lddw
    if re.match(r"^(ldx|stx|st)(dw|b|h|w)$|^ldxs(b|h|w)$", mnemonic):
        return _mem_insn
    if re.match(r"^(ldabs|ldind)(b|h|w)$", mnemonic):
        return _legacy
    if mnemonic == "lock":
        return _lock
    if mnemonic == ".insn":
        return _raw
    return None


def assemble(text: str) -> list[Insn]:
    """Assemble ubpf-dialect text; errors name the 1-based line."""
    a = _Assembler()
    for number, raw in enumerate(text.splitlines(), 1):
        a.line = number
        line = raw.split("#", 1)[0].strip()
        m = _LABEL.match(line)
        if m:
            label, line = m.group(1), m.group(2)
            if label in a.labels:
                raise AsmError(number, f"duplicate label {label!r}")
            a.labels[label] = len(a.insns)
        if not line:
            continue
        mnemonic, _, rest = line.partition(" ")
        try:
            a.line_of(mnemonic.lower(), rest.strip())
        except ValueError as exc:
            if isinstance(exc, AsmError):
                raise
            raise AsmError(number, str(exc)) from None
    return a.resolve()


# -- the ubpf-dialect disassembler --------------------------------------------------------------


def _m(reg: int, off: int) -> str:
    return f"[%r{reg}{off:+d}]"


def _rel(value: int) -> str:
    return f"{value:+d}"


def _insn_asm(insns: Sequence[Insn], pc: int, labels: dict[int, str]) -> str:
    """The dialect spelling of the instruction at `pc` (may not round-trip; see to_asm)."""
    i = insns[pc]
    cls, op = i.cls, i.op

    def tgt(rel: int) -> str:
        return labels.get(pc + rel + 1, _rel(rel))

    if cls in (Cls.ALU, Cls.ALU64):
        sfx = "32" if cls == Cls.ALU else ""
        if op == AluOp.END:
            if cls == Cls.ALU64:
                return f"bswap{i.imm} %r{i.dst}"
            return f"{'le' if i.source == Src.K else 'be'}{i.imm} %r{i.dst}"
        if op == AluOp.NEG:
            return f"neg{sfx} %r{i.dst}"
        if op == AluOp.MOV and i.source == Src.X and i.off in (8, 16, 32):
            return f"movsx{i.off}{'32' if cls == Cls.ALU else '64'} %r{i.dst}, %r{i.src}"
        if i.off == 1 and op in (AluOp.DIV, AluOp.MOD):
            name = "sdiv" if op == AluOp.DIV else "smod"
        else:
            name = _ALU_NAMES.get(op, "?")
        src = f"%r{i.src}" if i.source == Src.X else str(i.imm)
        return f"{name}{sfx} %r{i.dst}, {src}"
    if cls in (Cls.JMP, Cls.JMP32):
        if i.opcode == OP_EXIT:
            return "exit"
        if i.opcode == OP_JA:
            return f"ja {tgt(i.off)}"
        if i.opcode == OP_GOTOL:
            return f"ja32 {tgt(i.imm)}"
        if i.opcode == OP_CALLX:
            return f"callx %r{i.dst}"
        if i.opcode == OP_CALL:
            if i.src == CallSrc.LOCAL:
                return f"call local {tgt(i.imm)}"
            if i.src == CallSrc.KFUNC:
                return f"call runtime {i.imm}" + (f", {i.off}" if i.off else "")
            return f"call {i.imm}"
        sfx = "32" if cls == Cls.JMP32 else ""
        src = f"%r{i.src}" if i.source == Src.X else str(i.imm)
        return f"{_JMP_NAMES.get(op, '?')}{sfx} %r{i.dst}, {src}, {tgt(i.off)}"
    size = _SIZE_NAMES.get(i.size, "?")
    if cls == Cls.LDX:
        return f"ldx{'s' if i.mode == Mode.MEMSX else ''}{size} %r{i.dst}, {_m(i.src, i.off)}"
    if cls == Cls.ST:
        return f"st{size} {_m(i.dst, i.off)}, {i.imm}"
    if cls == Cls.STX and i.mode == Mode.ATOMIC:
        base = i.imm & ~AtomicOp.FETCH if i.imm not in (AtomicOp.XCHG, AtomicOp.CMPXCHG) \
            else i.imm
        name = _ATOMIC_NAMES.get(base, "?")
        fetch = "fetch " if i.imm & AtomicOp.FETCH and base == i.imm - 1 else ""
        return f"lock {fetch}{name}{'32' if i.size == Size.W else ''} " \
               f"{_m(i.dst, i.off)}, %r{i.src}"
    if cls == Cls.STX:
        return f"stx{size} {_m(i.dst, i.off)}, %r{i.src}"
    if i.mode == Mode.ABS:
        return f"ldabs{size} {i.imm}"
    if i.mode == Mode.IND:
        return f"ldind{size} %r{i.src}, {i.imm}"
    if i.opcode == OP_LD_IMM64 and pc + 1 < len(insns):
        hi = insns[pc + 1].imm
        if i.src == Pseudo.NONE:
            return f"lddw %r{i.dst}, {(i.imm & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32:#x}"
        kind = _PSEUDO_KINDS.get(i.src, "?")
        first = tgt(i.imm) if i.src == Pseudo.FUNC else str(i.imm)
        return f"lddw %r{i.dst}, {kind}({first}{f', {hi}' if hi else ''})"
    return "?"


def _raw_line(i: Insn) -> str:
    return f".insn {i.opcode:#04x}, {i.dst}, {i.src}, {i.off}, {i.imm}"


def to_asm(insns: Sequence[Insn], *, labels: bool = True) -> str:
    """Disassemble into the dialect; `assemble(to_asm(x)) == x` for every x.

    Jump targets become labels `L<pc>` when `labels` is true and the target lies inside the
    program.  An instruction whose fields the mnemonic cannot carry exactly (a reserved field
    set, an unknown opcode) is written as `.insn`.
    """
    names: dict[int, str] = {}
    pcs = list(iter_insns(insns))
    if labels:
        valid = set(pcs)
        for pc in pcs:
            dest = jump_target(insns[pc], pc)
            if dest is not None and dest in valid:
                names[dest] = f"L{dest}"
    out: list[str] = []
    for pc in pcs:
        if pc in names:
            out.append(f"{names[pc]}:")
        width = 2 if insns[pc].opcode == OP_LD_IMM64 and pc + 1 < len(insns) else 1
        slots = list(insns[pc:pc + width])
        text = _insn_asm(insns, pc, {})
        try:
            exact = assemble(text) == slots
        except InvalidProgram:
            exact = False
        if exact:
            out.append(_insn_asm(insns, pc, names) if names else text)
        else:
            out.extend(_raw_line(s) for s in slots)
    return "\n".join(out) + "\n"
