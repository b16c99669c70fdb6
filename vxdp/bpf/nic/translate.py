"""BPF to VXME-32: the SmartNIC's translator (its "JIT", as NFP's drivers/net/ethernet/
netronome/nfp/bpf/jit.c is the NFP's).

    image = translate(program)          # TranslationRefused: no mapping, with the pc
    image.words, image.spans            # the machine words; which BPF insn made which
    image.to_bytes()                    # what the NIC's code store holds (le64 words)

The program is one the device's verifier accepted; the translator decides whether the
micro-engine can run it, and refuses (TranslationRefused, EOPNOTSUPP) what it has no
mapping for, naming the pc and the instruction, even though the verifier took it:

* cpu v4 instructions (sign-extending loads and moves, bswap, sdiv/smod, gotol), legacy
  packet loads, bpf-to-bpf calls, callx, kfuncs, and any helper the firmware lacks
  ("unsupported function id", NFP's words);
* modulo, 64-bit division and division by a register: the engine has no divider; a
  32-bit division by a constant becomes a multiply by its reciprocal (NFP does the same);
* plain stores into map values ("map writes not supported", as NFP) and atomics other
  than add, or into anything but a map value; map helpers whose key or value is not on
  the stack at a constant offset;
* memory accesses whose pointer may point into different memories on different paths,
  stack accesses at a variable offset, a stack deeper than LM_STACK, and what would make
  an address's value observable (a pointer stored into the packet, read back in part
  from a spill, compared with a scalar other than 0, or in arithmetic other than adding
  a scalar or subtracting two pointers into the same memory): NIC addresses are not the
  host's, so such a program would behave differently there;
* an image past the code store (E2BIG).

Everything else maps, instruction by instruction, onto the machine (vxdp.bpf.nic.machine):
64-bit operations on register pairs with carries, compares as subtractions and flag
branches, loads and stores on the memory the analysis (vxdp.bpf.nic.regions) says the
pointer addresses, context loads as packet-vector reads, map references as relocations
the firmware resolves at load, helpers as firmware calls.  Dead code is not translated.
"""

from __future__ import annotations

import errno as E
from dataclasses import dataclass
from typing import Any

from vxdp.bpf.disasm import helper_name, insn_text
from vxdp.bpf.isa import (
    OP_CALLX,
    OP_GOTOL,
    SIZE_BYTES,
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
    decode,
    imm64,
    is_ldimm64,
    iter_insns,
)
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.errors import TranslationRefused

from .emit import T0, T1, Codegen, Label, sext_hi
from .machine import (
    CODE_STORE,
    CTX_HANDLE,
    FIRMWARE_HELPERS,
    LM_STACK,
    M32,
    MACHINE,
    MAX_ELEM_SIZE,
    Cond,
    Op,
    PvField,
    Reloc,
    Space,
    Word,
    hi,
    lo,
    mem_x,
)
from .regions import SCALAR, STACK, State, Val, analyse, src_val

NIC_MAP_TYPES = frozenset({MapType.HASH, MapType.ARRAY})
MAP_HELPERS = {1: ("map_lookup", (2,)), 2: ("map_update", (2, 3)), 3: ("map_delete", (2,))}
_SPACES = {"stack": Space.LM, "pkt": Space.PKT, "mapval": Space.EMEM}
_CTX_FIELDS = {0: PvField.DATA, 4: PvField.DATA_END, 8: PvField.DATA_META,
               12: PvField.INGRESS_IFINDEX, 16: PvField.RX_QUEUE_INDEX,
               20: PvField.EGRESS_IFINDEX}
_NO_ADDRESS = "NIC addresses are not host addresses"


@dataclass(frozen=True)
class Span:
    """The words one BPF instruction became (pc -1: the prologue)."""

    pc: int
    first: int
    count: int
    bpf: str  # the instruction as the verifier log prints it, or what the span is


@dataclass
class Image:
    """A translated program: what the NIC's code store holds, and where it came from."""

    words: list[Word]
    spans: list[Span]
    stack_size: int
    insn_count: int
    machine: str = MACHINE
    maps: tuple[MapSpec, ...] = ()

    def to_bytes(self) -> bytes:
        return b"".join(w.to_bytes() for w in self.words)

    @property
    def size(self) -> int:
        """Bytes of the image (QUERY's image_len)."""
        return 8 * len(self.words)

    def listing(self) -> list[dict[str, Any]]:
        """Per BPF instruction: its text and the machine words it became (JSON-ready)."""
        return [{"pc": s.pc, "bpf": s.bpf, "words": [
            {"addr": a, "word": f"{self.words[a].encode():016x}", "asm": self.words[a].text()}
            for a in range(s.first, s.first + s.count)]} for s in self.spans]

    def describe(self) -> str:
        return (f"{self.machine} image: {len(self.words)} insns ({self.size} B) from "
                f"{self.insn_count} BPF insns, stack {self.stack_size} B")


def check_map(spec: MapSpec, index: int | None = None) -> None:
    """The NIC's own limits on a map (TranslationRefused, pc -1): HASH or ARRAY, no
    flags, elements of at most MAX_ELEM_SIZE bytes of key + value, each rounded up to 8
    (the NFP driver's nfp_bpf_map_alloc checks the same against its firmware)."""
    name = f"map {spec.name!r}" + (f" (#{index})" if index is not None else "")
    if spec.type not in NIC_MAP_TYPES:
        raise TranslationRefused(f"{name}: map type {spec.type.name} not supported by the "
                                 f"NIC firmware (HASH and ARRAY)", E.EOPNOTSUPP, -1)
    if spec.flags:
        raise TranslationRefused(f"{name}: map flags {spec.flags:#x} are not supported",
                                 E.EINVAL, -1)
    elem = -(-spec.key_size // 8) * 8 + -(-spec.value_size // 8) * 8
    if elem > MAX_ELEM_SIZE:
        raise TranslationRefused(f"{name}: map elements too large: {elem}B, NIC max element "
                                 f"size (key+value): {MAX_ELEM_SIZE}B", E.ENOMEM, -1)


class _Translator(Codegen):
    def __init__(self, program: Program) -> None:
        self.program = program
        self.insns = decode(program.insns)
        self.analysis = analyse(self.insns)
        super().__init__()

    # -- refusals -----------------------------------------------------------------------

    def refuse(self, pc: int, why: str, errno: int = E.EOPNOTSUPP) -> TranslationRefused:
        try:
            text = f"({self.insns[pc].opcode:02x}) {insn_text(self.insns, pc)}"
        except (KeyError, ValueError, IndexError):
            text = f"({self.insns[pc].opcode:02x})"
        return TranslationRefused(f"pc {pc}: {text}: {why}", errno, pc)

    # -- the program --------------------------------------------------------------------

    def run(self) -> Image:
        spans: list[Span] = []
        e = self.e
        e.movi(lo(1), CTX_HANDLE)
        e.movi(hi(1), 0)
        e.movi(lo(10), LM_STACK)
        e.movi(hi(10), 0)
        spans.append(Span(-1, 0, len(e.words), "prologue: r1 = ctx, r10 = LM stack top"))
        stack = self._stack_size()
        starts: dict[int, int] = {}
        for pc in iter_insns(self.insns):
            first = starts[pc] = len(e.words)
            state = self.analysis.at(pc)
            if state is None:
                spans.append(Span(pc, first, 0, f"{pc}: dead code, not translated"))
                continue
            self.insn(pc, self.insns[pc], state)
            if len(e.words) > CODE_STORE:
                raise self.refuse(pc, f"program too large: the image passes the code store "
                                      f"of {CODE_STORE} instructions ({len(e.words)} at this "
                                      f"insn)", E.E2BIG)
            spans.append(Span(pc, first, len(e.words) - first,
                              f"{pc}: ({self.insns[pc].opcode:02x}) "
                              f"{insn_text(self.insns, pc)}"))
        words = e.words
        for at, target in e.fixups:
            dest = target.at if isinstance(target, Label) else starts[target]
            assert dest is not None
            w = words[at]
            words[at] = Word(w.op, x=w.x, imm=dest)
        return Image(words, spans, stack, len(self.insns), maps=self.program.maps)

    def _stack_size(self) -> int:
        """The deepest stack byte any access or map-helper argument reaches (rounded up
        to 8); refused past LM_STACK, at the instruction that goes deepest."""
        deepest, where = 0, -1
        for pc, state in sorted(self.analysis.states.items()):
            insn = self.insns[pc]
            reach: list[int] = []
            if insn.cls in (Cls.LDX, Cls.ST, Cls.STX) and insn.mode in (Mode.MEM, Mode.ATOMIC):
                base = state.regs[insn.src if insn.cls == Cls.LDX else insn.dst]
                if base.pointers == {STACK} and base.off is not None:
                    reach.append(base.off + insn.off)
            elif insn.opcode == Cls.JMP | JmpOp.CALL and insn.src == CallSrc.HELPER \
                    and insn.imm in MAP_HELPERS:
                for reg in MAP_HELPERS[insn.imm][1]:
                    v = state.regs[reg]
                    if v.pointers == {STACK} and v.off is not None:
                        reach.append(v.off)
            for off in reach:
                if -off > deepest:
                    deepest, where = -off, pc
        size = -(-deepest // 8) * 8
        if size > LM_STACK:
            raise self.refuse(where, f"stack too large: program {size}B > NIC stack "
                                     f"{LM_STACK}B")
        return size

    # -- one instruction ----------------------------------------------------------------

    def insn(self, pc: int, insn: Insn, s: State) -> None:
        cls = insn.cls
        if is_ldimm64(insn):
            self.ld_imm64(pc, insn)
        elif cls == Cls.LD:
            raise self.refuse(pc, "legacy packet loads (LD_ABS, LD_IND) have no mapping on "
                                  f"{MACHINE}")
        elif cls == Cls.LDX:
            self.load(pc, insn, s)
        elif cls in (Cls.ST, Cls.STX):
            self.store(pc, insn, s)
        elif cls in (Cls.ALU, Cls.ALU64):
            self.alu(pc, insn, s)
        else:
            self.jmp(pc, insn, s)

    def ld_imm64(self, pc: int, insn: Insn) -> None:
        e = self.e
        if insn.src == Pseudo.NONE:
            value = imm64(self.insns, pc)
            e.movi(lo(insn.dst), value & M32)
            e.movi(hi(insn.dst), value >> 32)
            return
        if insn.src not in (Pseudo.MAP_FD, Pseudo.MAP_IDX, Pseudo.MAP_VALUE,
                            Pseudo.MAP_IDX_VALUE):
            raise self.refuse(pc, f"64-bit immediate of kind {Pseudo(insn.src).name} has no "
                                  f"mapping on {MACHINE}")
        maps = self.program.maps
        if not 0 <= insn.imm < len(maps):
            raise self.refuse(pc, f"map #{insn.imm} is not a map of the program", E.EINVAL)
        try:
            check_map(maps[insn.imm], insn.imm)
        except TranslationRefused as exc:
            raise self.refuse(pc, str(exc), exc.errno) from None
        value = insn.src in (Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE)
        e(Op.LDMAP, lo(insn.dst), x=Reloc.MAP_VALUE if value else Reloc.MAP_ID, imm=insn.imm)
        if value and self.insns[pc + 1].imm:
            e(Op.ADD, lo(insn.dst), lo(insn.dst), imm=self.insns[pc + 1].imm)
        e.movi(hi(insn.dst), 0)

    # -- memory -------------------------------------------------------------------------

    def _memory(self, pc: int, reg: int, insn: Insn, s: State, size: int) -> str:
        """The one memory register `reg` points into here (refused otherwise)."""
        base = s.regs[reg]
        mems = base.memories
        if not base.pointers:
            raise self.refuse(pc, f"r{reg} is no pointer here", E.EINVAL)
        if len(mems) != 1 or None in mems:
            raise self.refuse(pc, f"ptr type changed for instruction: r{reg} may be "
                                  f"{base.describe()} on different paths, and the "
                                  f"micro-engine's loads and stores name one memory")
        mem = next(iter(mems))
        assert mem is not None
        if mem == "stack":
            if base.off is None:
                raise self.refuse(pc, "variable ptr stack access: the stack is local memory, "
                                      "addressed at constant offsets")
            at = base.off + insn.off
            if not -LM_STACK <= at <= at + size <= 0:
                raise self.refuse(pc, f"stack access at fp{at:+d} outside the NIC stack of "
                                      f"{LM_STACK}B")
        return mem

    def _spilled(self, pc: int, insn: Insn, s: State, size: int) -> None:
        """A load from the stack must not read part of a spilled pointer."""
        base = s.regs[insn.src]
        if base.off is None:
            return
        at = base.off + insn.off
        for off, val in s.slots:
            if val.is_pointer and off < at + size and at < off + 8 \
                    and not (off == at and size == 8):
                raise self.refuse(pc, f"partial read of a spilled {val.describe()} pointer: "
                                      f"{_NO_ADDRESS}")

    def load(self, pc: int, insn: Insn, s: State) -> None:
        if insn.mode == Mode.MEMSX:
            raise self.refuse(pc, f"sign-extending load (cpu v4) has no mapping on {MACHINE}")
        size = SIZE_BYTES[Size(insn.size)]
        mem = self._memory(pc, insn.src, insn, s, size)
        e, d = self.e, insn.dst
        if mem == "ctx":
            field_ = _CTX_FIELDS.get(insn.off)
            if field_ is None or size != 4:
                raise self.refuse(pc, f"context access off={insn.off} size={size} has no "
                                      f"packet-vector field", E.EINVAL)
            e(Op.RDPV, lo(d), x=field_)
            e.movi(hi(d), 0)
            return
        if mem == "stack":
            self._spilled(pc, insn, s, size)
        e(Op.LD, lo(d), lo(insn.src), x=mem_x(_SPACES[mem], size), imm=insn.off)
        if size < 8:
            e.movi(hi(d), 0)

    def store(self, pc: int, insn: Insn, s: State) -> None:
        size = SIZE_BYTES[Size(insn.size)]
        mem = self._memory(pc, insn.dst, insn, s, size)
        e = self.e
        if insn.mode == Mode.ATOMIC:
            self.atomic(pc, insn, s, mem, size)
            return
        if mem == "ctx":
            raise self.refuse(pc, "unsupported store to context field: the packet vector is "
                                  "read-only")
        if mem == "mapval":
            raise self.refuse(pc, "map writes not supported: the micro-engine changes map "
                                  "values with atomic adds only")
        if insn.cls == Cls.STX:
            value = s.regs[insn.src]
            if value.is_pointer:
                if mem != "stack":
                    raise self.refuse(pc, f"{value.describe()} pointer stored into the "
                                          f"packet: {_NO_ADDRESS}")
                at = (s.regs[insn.dst].off or 0) + insn.off
                if size != 8 or at % 8:
                    raise self.refuse(pc, f"partial spill of a {value.describe()} pointer: "
                                          f"{_NO_ADDRESS}")
            src = lo(insn.src)
        else:
            e.movi(T0, insn.imm)
            if size == 8:
                e.movi(T1, sext_hi(insn.imm))
            src = T0
        e(Op.ST, 0, lo(insn.dst), src, x=mem_x(_SPACES[mem], size), imm=insn.off)

    def atomic(self, pc: int, insn: Insn, s: State, mem: str, size: int) -> None:
        if insn.imm != AtomicOp.ADD:
            name = next((op.name.lower() for op in AtomicOp if op == insn.imm & ~1), "?")
            fetch = " with fetch" if insn.imm & AtomicOp.FETCH else ""
            raise self.refuse(pc, f"atomic op not implemented: {name}{fetch} (the "
                                  f"micro-engine's atomics add)")
        if mem != "mapval":
            raise self.refuse(pc, "atomic add not to a map value pointer: the micro-engine "
                                  "adds atomically in map memory (EMEM) only")
        if s.regs[insn.src].is_pointer:
            raise self.refuse(pc, f"atomic add of a pointer: {_NO_ADDRESS}")
        self.e(Op.ATADD, 0, lo(insn.dst), lo(insn.src), x=mem_x(Space.EMEM, size),
               imm=insn.off)

    # -- ALU ----------------------------------------------------------------------------

    def _pointer_alu(self, pc: int, insn: Insn, dst: Val, src: Val) -> None:
        op, wide = insn.op, insn.cls == Cls.ALU64
        if op == AluOp.MOV:
            if insn.source == Src.X and src.is_pointer and not wide:
                raise self.refuse(pc, f"32-bit move of a {src.describe()} pointer: "
                                      f"{_NO_ADDRESS}")
            return
        if not dst.is_pointer and not src.is_pointer:
            return
        if wide and op in (AluOp.ADD, AluOp.SUB):
            if dst.is_pointer and not src.is_pointer:
                return
            if op == AluOp.ADD and src.is_pointer and not dst.is_pointer:
                return
        mems = dst.memories | src.memories
        if op == AluOp.SUB and dst.pointers and src.pointers and len(mems) == 1 \
                and None not in mems and SCALAR not in dst.kinds | src.kinds:
            return  # a distance: the same in any address space (also in 32 bits)
        what = (dst if dst.is_pointer else src).describe()
        raise self.refuse(pc, f"{AluOp(op).name.lower()} on a {what} pointer has no mapping: "
                              f"{_NO_ADDRESS}")

    def alu(self, pc: int, insn: Insn, s: State) -> None:
        op, wide, x = insn.op, insn.cls == Cls.ALU64, insn.source == Src.X
        if op == AluOp.MOV and insn.off:
            raise self.refuse(pc, f"sign-extending move (cpu v4) has no mapping on {MACHINE}")
        if op in (AluOp.DIV, AluOp.MOD) and insn.off:
            raise self.refuse(pc, f"signed division (cpu v4) has no mapping on {MACHINE}")
        if op == AluOp.END and wide:
            raise self.refuse(pc, f"bswap (cpu v4) has no mapping on {MACHINE}")
        if op == AluOp.MOD:
            raise self.refuse(pc, f"modulo has no mapping on {MACHINE}: the micro-engine has "
                                  f"no divider")
        if op == AluOp.DIV and wide:
            raise self.refuse(pc, f"64-bit division has no mapping on {MACHINE}: the "
                                  f"micro-engine divides 32-bit values by constants")
        if op == AluOp.DIV and x:
            raise self.refuse(pc, "divisor is not constant: the micro-engine divides by "
                                  "multiplying with a constant's reciprocal")
        dst, src = s.regs[insn.dst], src_val(insn, s)
        self._pointer_alu(pc, insn, dst, src)
        if wide:
            self.alu64(insn)
        else:
            self.alu32(insn)

    # -- jumps, calls, exit -------------------------------------------------------------

    def jmp(self, pc: int, insn: Insn, s: State) -> None:
        e, op = self.e, insn.op
        if insn.opcode == OP_GOTOL:
            raise self.refuse(pc, f"gotol (cpu v4) has no mapping on {MACHINE}")
        if insn.opcode == OP_CALLX:
            raise self.refuse(pc, f"callx has no mapping on {MACHINE}")
        if op == JmpOp.CALL:
            self.call(pc, insn, s)
        elif op == JmpOp.EXIT:
            e(Op.EXIT)
        elif op == JmpOp.JA:
            e.br(Cond.AL, pc + insn.off + 1)
        else:
            self.compare(pc, insn, s)

    def call(self, pc: int, insn: Insn, s: State) -> None:
        if insn.src == CallSrc.LOCAL:
            raise self.refuse(pc, f"bpf-to-bpf calls have no mapping on {MACHINE}: the "
                                  f"micro-engine keeps no call stack")
        if insn.src != CallSrc.HELPER:
            raise self.refuse(pc, f"kfunc calls have no mapping on {MACHINE}")
        if insn.imm not in FIRMWARE_HELPERS:
            raise self.refuse(pc, f"unsupported function id: {insn.imm} "
                                  f"({helper_name(insn.imm)}): the NIC firmware has no such "
                                  f"helper")
        if insn.imm in MAP_HELPERS:
            name, args = MAP_HELPERS[insn.imm]
            for reg in args:
                v = s.regs[reg]
                if v.pointers != {STACK}:
                    raise self.refuse(pc, f"{name}: unsupported ptr type {v.describe()} in "
                                          f"r{reg}: the firmware reads keys and values from "
                                          f"the stack")
                if v.off is None:
                    raise self.refuse(pc, f"{name}: variable pointer in r{reg}")
        self.e(Op.CALL, x=insn.imm)

    def _pointer_cmp(self, pc: int, insn: Insn, a: Val, b: Val) -> None:
        if not a.is_pointer and not b.is_pointer:
            return
        if insn.op == JmpOp.JSET:
            raise self.refuse(pc, f"bit test of a pointer: {_NO_ADDRESS}")
        if a.is_pointer and b.is_pointer:
            mems = a.memories | b.memories
            if len(mems) == 1 and None not in mems and (a.kinds | b.kinds) & {SCALAR} == set():
                return
            raise self.refuse(pc, f"comparison of a {a.describe()} pointer with a "
                                  f"{b.describe()} pointer: {_NO_ADDRESS}")
        ptr, other = (a, b) if a.is_pointer else (b, a)
        if other.kinds == {SCALAR} and other.const == 0:
            return  # a NULL check: map values are never at address 0
        raise self.refuse(pc, f"comparison of a {ptr.describe()} pointer with a scalar: "
                              f"{_NO_ADDRESS}")

    def compare(self, pc: int, insn: Insn, s: State) -> None:
        self._pointer_cmp(pc, insn, s.regs[insn.dst], src_val(insn, s))
        self.branch(insn, pc + insn.off + 1)


def translate(program: Program) -> Image:
    """The program as the NIC runs it; TranslationRefused names the pc of what has no
    mapping (see the module docstring)."""
    return _Translator(program).run()


def words_of(image: bytes) -> list[Word]:
    """An image's words from its bytes (as the code store holds them)."""
    return [Word.decode(int.from_bytes(image[i:i + 8], "little"))
            for i in range(0, len(image), 8)]


__all__ = ["MAP_HELPERS", "NIC_MAP_TYPES", "Image", "Span", "check_map", "translate",
           "words_of"]

