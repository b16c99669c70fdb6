"""Load BPF object files (clang -target bpf) into `Program`s, following libbpf's rules.

    obj = load_object(Path("prog.o"))        # or the object's bytes
    prog = select_program(obj, section="xdp")  # DESIGN.md's --section/--program rules

What is understood, as libbpf does it (tools/lib/bpf/libbpf.c):

* programs: every global function of a section named `xdp`, `xdp/*`, `xdp.frags`,
  `xdp.frags/*` (XDP; `.frags` sets BPF_F_XDP_HAS_FRAGS), `tc`, `tc/*`, `classifier`,
  `classifier/*` (SCHED_CLS); several programs may share a section;
* maps, in libbpf's order: the legacy `maps` section (`struct bpf_map_def`), the BTF-defined
  `.maps` section, then global data (`.data`, `.data.*`, `.rodata`, `.rodata.*`, `.bss`,
  `.bss.*`) as single-entry ARRAY maps named by `internal_map_name()`, `.rodata` frozen and
  BPF_F_RDONLY_PROG; every program of the object shares the object's map list, so a map
  index means the same map in each of them (tail calls rely on this);
* relocations: R_BPF_64_64 on LD_IMM64 (a map: BPF_PSEUDO_MAP_FD, imm = map index; global
  data: BPF_PSEUDO_MAP_VALUE, second slot imm = symbol value + addend; a function, the
  callback of bpf_loop: BPF_PSEUDO_FUNC, imm its offset, the function placed as a called
  one), R_BPF_64_32 on
  bpf-to-bpf calls (global functions, and static ones through the section symbol plus imm);
  the `.text` functions a program calls are appended after it, as libbpf does, and the call
  offsets fixed.

Everything else (externs/kfuncs, CO-RE relocations, relocation types other than the two
above) raises `ElfError` naming the section, symbol and relocation.

Where vxdp differs from libbpf 1.x, on purpose: it still accepts `xdp/*` section names and
the legacy `maps` section (libbpf 1.0 dropped both; older objects use them); it does not set
BPF_F_MMAPABLE on global data maps (nothing here mmaps them) and does not bind `.rodata`
maps to programs that do not reference them (libbpf's BPF_PROG_BIND_MAP).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from vxdp.bpf.btf import (
    Btf,
    core_relocations,
    fixup_datasecs,
    func_infos,
    parse_btf,
    parse_map_def,
)
from vxdp.bpf.maps import possible_cpus
from vxdp.bpf.program import (
    BPF_F_RDONLY_PROG,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    INSN_SIZE,
    MapSpec,
    MapType,
    Program,
    ProgType,
)
from vxdp.errors import ElfError, UsageError

BPF_OBJ_NAME_LEN = 16
MAX_GLOBAL_DATA = 1 << 24  # one .data/.bss/.rodata section, as one map value
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_32 = 10
_RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
                4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}
_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
_CALL = 0x85  # BPF_JMP | BPF_CALL
_BPF_MAP_DEF = struct.Struct("<5I")  # type, key_size, value_size, max_entries, map_flags


# -- the ELF file, read once through pyelftools ---------------------------------------------

SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800


@dataclass(frozen=True)
class ElfSection:
    index: int
    name: str
    size: int
    flags: int
    nobits: bool
    data: bytes = field(repr=False)

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR) and not self.nobits


@dataclass(frozen=True)
class ElfSymbol:
    name: str
    value: int
    size: int
    type: str  # STT_FUNC, STT_OBJECT, STT_SECTION, STT_NOTYPE, ...
    bind: str  # STB_GLOBAL, STB_LOCAL, STB_WEAK
    shndx: int  # 0: undefined (an extern); -1: absolute or common


@dataclass(frozen=True)
class ElfRelocations:
    name: str
    target: int  # index of the section the entries patch
    entries: tuple[tuple[int, int, ElfSymbol], ...]  # (offset, type, symbol)


@dataclass(frozen=True)
class ElfFile:
    sections: tuple[ElfSection, ...]
    symbols: tuple[ElfSymbol, ...]
    relocation_sections: tuple[ElfRelocations, ...]

    def section(self, index: int) -> ElfSection:
        if not 0 < index < len(self.sections):
            raise ElfError(f"section index {index} out of range")
        return self.sections[index]

    def section_named(self, name: str) -> ElfSection | None:
        return next((s for s in self.sections if s.name == name), None)


def read_elf(data: bytes) -> ElfFile:
    """Read what the loader needs from an ELF image; any corruption is an ElfError."""
    try:
        return _read_elf(ELFFile(io.BytesIO(data)))
    except ElfError:
        raise
    except (ELFError, ConstructError, struct.error, zlib.error, UnicodeDecodeError, IndexError,
            KeyError, ValueError, TypeError, AttributeError, AssertionError,
            OverflowError) as exc:
        raise ElfError(f"not a usable elf object: {str(exc).lower() or type(exc).__name__}") \
            from None


def _read_elf(elf: ELFFile) -> ElfFile:
    if elf.elfclass != 64 or not elf.little_endian:
        raise ElfError("not a 64-bit little-endian elf object")
    if elf["e_machine"] != "EM_BPF":
        raise ElfError(f"elf machine is {elf['e_machine']}, not EM_BPF")
    if elf["e_type"] != "ET_REL":
        raise ElfError(f"elf type is {elf['e_type']}, not a relocatable object (ET_REL)")
    sections: list[ElfSection] = []
    symtab: SymbolTableSection | None = None
    for i, sec in enumerate(elf.iter_sections()):
        nobits = sec["sh_type"] == "SHT_NOBITS"
        size = sec["sh_size"]
        if sec["sh_flags"] & SHF_COMPRESSED:  # clang -gz: only debug info is ever compressed
            if not sec.name.startswith(".debug"):
                raise ElfError(f"section {sec.name!r}: compressed sections are not supported")
            sections.append(ElfSection(i, sec.name, 0, sec["sh_flags"], True, b""))
            continue
        data = b"" if nobits or sec["sh_type"] == "SHT_NULL" else sec.data()
        if not nobits and len(data) != size:
            raise ElfError(f"section {sec.name!r}: {size} bytes declared, {len(data)} in file")
        sections.append(ElfSection(i, sec.name, size, sec["sh_flags"], nobits, data))
        if isinstance(sec, SymbolTableSection) and sec["sh_type"] == "SHT_SYMTAB":
            symtab = sec
    if symtab is None:
        raise ElfError("no symbol table (.symtab)")
    symbols = tuple(_symbol(s, sections) for s in symtab.iter_symbols())
    rels: list[ElfRelocations] = []
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):
            continue
        if sec.is_RELA():
            raise ElfError(f"section {sec.name!r}: rela relocations are not supported")
        entries = []
        for n, r in enumerate(sec.iter_relocations()):
            idx = r["r_info_sym"]
            if not 0 <= idx < len(symbols):
                raise ElfError(f"section {sec.name!r}: relocation {n} names symbol {idx}, "
                               f"past the symbol table")
            entries.append((r["r_offset"], r["r_info_type"], symbols[idx]))
        target = sec["sh_info"]
        if not 0 < target < len(sections):
            raise ElfError(f"section {sec.name!r}: patches section {target}, which does not exist")
        rels.append(ElfRelocations(sec.name, target, tuple(entries)))
    return ElfFile(tuple(sections), symbols, tuple(rels))


def _symbol(sym: object, sections: list[ElfSection]) -> ElfSymbol:
    s = sym  # a pyelftools Symbol
    shndx = s["st_shndx"]  # type: ignore[index]
    if shndx == "SHN_UNDEF":
        index = 0
    elif isinstance(shndx, int):
        index = shndx
    else:  # SHN_ABS, SHN_COMMON, ...
        index = -1
    info = s["st_info"]  # type: ignore[index]
    name = s.name  # type: ignore[attr-defined]
    if not name and info["type"] == "STT_SECTION" and 0 < index < len(sections):
        name = sections[index].name  # section symbols are named after their section
    return ElfSymbol(name, s["st_value"], s["st_size"], info["type"],  # type: ignore[index]
                     info["bind"], index)


def _prog_type(section: str) -> tuple[ProgType, bool] | None:
    """(type, frags) for a program section name, None when it is not one we load."""
    head = section.split("/", 1)[0]
    if head == "xdp":
        return ProgType.XDP, False
    if head == "xdp.frags":
        return ProgType.XDP, True
    if head in ("tc", "classifier"):
        return ProgType.SCHED_CLS, False
    return None


def object_name(path: Path | str) -> str:
    """libbpf's bpf_object name: the file's basename up to its first dot."""
    return Path(path).name.split(".", 1)[0]


def internal_map_name(obj_name: str, section: str) -> str:
    """The kernel-visible name libbpf gives a global data map (internal_map_name())."""
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    if "." in section[1:]:  # a custom `.data.foo` / `.rodata.foo`: no object prefix
        pfx_len = 0
    else:
        pfx_len = min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = obj_name[:pfx_len] + section[:sfx_len]
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def _is_global_data(sec: ElfSection) -> bool:
    if sec.size == 0 or sec.executable:
        return False
    return any(sec.name == base or sec.name.startswith(base + ".")
               for base in (".data", ".rodata", ".bss"))


@dataclass(frozen=True)
class BpfObject:
    """A loaded object file: its programs by function name, its maps, its license."""

    name: str
    programs: dict[str, Program]
    maps: tuple[MapSpec, ...]
    license: str
    btf: Btf | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Func:
    section: ElfSection
    start: int  # byte offset within the section
    size: int
    name: str


class _Loader:
    def __init__(self, elf: ElfFile, name: str) -> None:
        self.elf = elf
        self.name = name
        self.func_types: dict[tuple[str, int], int] = {}  # (section, offset) -> BTF FUNC
        self.kernel_btf: bytes | None = None  # .BTF with its DATASECs filled in
        self.btf = self._btf()
        self.maps: list[MapSpec] = []
        self.map_at: dict[tuple[int, int], int] = {}  # (shndx, offset) -> map index
        # map-in-map: (shndx, offset of the `values` slots) -> (map index, their bytes)
        self.slot_base: dict[tuple[int, int], tuple[int, int]] = {}
        self.data_map: dict[int, int] = {}  # global data shndx -> map index
        self.funcs: dict[tuple[int, int], _Func] = {}  # (shndx, offset) -> function
        self.relocs: dict[int, dict[int, tuple[int, ElfSymbol]]] = {}

    # -- object-wide tables -------------------------------------------------------------

    def _btf(self) -> Btf | None:
        sec = self.elf.section_named(".BTF")
        if sec is None:
            return None
        btf = parse_btf(sec.data)
        ext = self.elf.section_named(".BTF.ext")
        if ext is not None:
            for relo in core_relocations(ext.data, btf):
                raise ElfError(f"section {relo.section!r}: co-re relocation at insn "
                               f"{relo.insn_off // INSN_SIZE} (type {relo.type_name!r}, "
                               f"access {relo.access!r}, kind {relo.kind}) is not supported")
            self.func_types = func_infos(ext.data, btf)
        sizes = {s.name: s.size for s in self.elf.sections if s.name}
        offsets = {(self.elf.sections[y.shndx].name, y.name): y.value for y in self.elf.symbols
                   if 0 < y.shndx < len(self.elf.sections) and y.name}
        self.kernel_btf = fixup_datasecs(btf, sizes, offsets)
        return btf

    def license(self) -> str:
        sec = self.elf.section_named("license")
        if sec is None:
            return ""
        try:
            return sec.data.split(b"\0", 1)[0].decode()
        except UnicodeDecodeError:
            raise ElfError("section 'license': not a utf-8 string") from None

    def collect_maps(self) -> None:
        legacy = self.elf.section_named("maps")
        if legacy is not None:
            self._legacy_maps(legacy)
        btf_maps = self.elf.section_named(".maps")
        if btf_maps is not None:
            self._btf_maps(btf_maps)
        for sec in self.elf.sections:
            if _is_global_data(sec):
                self._data_map(sec)

    def _add_map(self, spec: MapSpec) -> int:
        if spec.type == MapType.PERF_EVENT_ARRAY and not spec.max_entries:
            # libbpf gives a perf event array without max_entries one slot per CPU
            spec = replace(spec, max_entries=possible_cpus())
        self.maps.append(spec)
        return len(self.maps) - 1

    def _legacy_maps(self, sec: ElfSection) -> None:
        syms = sorted((s for s in self.elf.symbols if s.shndx == sec.index and s.name
                       and s.type in ("STT_OBJECT", "STT_NOTYPE")), key=lambda s: s.value)
        if not syms:
            return
        def_size = sec.size // len(syms)
        if def_size < _BPF_MAP_DEF.size or sec.size % len(syms):
            raise ElfError(f"section 'maps': {sec.size} bytes do not hold {len(syms)} "
                           f"struct bpf_map_def")
        for sym in syms:
            raw = sec.data[sym.value: sym.value + def_size]
            if sym.value % def_size or len(raw) != def_size:
                raise ElfError(f"section 'maps': symbol {sym.name!r} at offset {sym.value} "
                               f"is not a whole map definition")
            if any(raw[_BPF_MAP_DEF.size:]):
                raise ElfError(f"section 'maps': map {sym.name!r} uses struct bpf_map_def "
                               f"fields vxdp does not support")
            mtype, ksize, vsize, nmax, flags = _BPF_MAP_DEF.unpack_from(raw)
            spec = MapSpec(sym.name, _map_type(mtype, sym.name, "maps"), ksize, vsize, nmax,
                           flags)
            self.map_at[(sec.index, sym.value)] = self._add_map(spec)

    def _btf_maps(self, sec: ElfSection) -> None:
        if self.btf is None:
            raise ElfError("section '.maps': btf-defined maps need a .BTF section")
        ds = self.btf.datasec(".maps")
        if ds is None:
            raise ElfError("section '.maps': no DATASEC '.maps' in .BTF")
        by_name = {s.name: s for s in self.elf.symbols if s.shndx == sec.index and s.name}
        for info in ds.members:
            var = self.btf.type(info.type)
            d = parse_map_def(self.btf, var)
            sym = by_name.get(var.name)
            if sym is None:
                raise ElfError(f"section '.maps': map {var.name!r} has no ELF symbol")
            inner = None
            if d.inner is not None:
                i = d.inner
                inner = MapSpec(i.name, i.type, i.key_size, i.value_size, i.max_entries,
                                i.flags)
            spec = MapSpec(d.name, d.type, d.key_size, d.value_size, d.max_entries, d.flags,
                           inner=inner)
            index = self._add_map(spec)
            self.map_at[(sec.index, sym.value)] = index
            if inner is not None:  # where its initial slots' relocations land
                self.slot_base[(sec.index, sym.value + d.values_offset)] = \
                    (index, sym.size - d.values_offset)

    def _data_map(self, sec: ElfSection) -> None:
        if sec.size > MAX_GLOBAL_DATA:
            raise ElfError(f"section {sec.name!r}: {sec.size} bytes of global data is more "
                           f"than vxdp accepts ({MAX_GLOBAL_DATA >> 20} MiB)")
        rodata = sec.name == ".rodata" or sec.name.startswith(".rodata.")
        initial = bytes(sec.size) if sec.nobits else sec.data
        spec = MapSpec(internal_map_name(self.name, sec.name), MapType.ARRAY, 4, sec.size, 1,
                       BPF_F_RDONLY_PROG if rodata else 0, initial=initial, frozen=rodata)
        self.data_map[sec.index] = self._add_map(spec)

    def collect_funcs(self) -> list[_Func]:
        """Every function of the executable sections; returns the programs among them."""
        programs: list[_Func] = []
        for sym in self.elf.symbols:
            if sym.type != "STT_FUNC" or sym.shndx <= 0:
                continue
            sec = self.elf.section(sym.shndx)
            if not sec.executable:
                raise ElfError(f"section {sec.name!r}: function {sym.name!r} is in a "
                               f"section that is not executable")
            if sym.value % INSN_SIZE or sym.size % INSN_SIZE or sym.value + sym.size > sec.size:
                raise ElfError(f"section {sec.name!r}: function {sym.name!r} "
                               f"({sym.value}+{sym.size}) is not whole instructions "
                               f"inside the section")
            f = _Func(sec, sym.value, sym.size, sym.name)
            self.funcs[(sec.index, sym.value)] = f
            if sec.name == ".text":
                continue
            if _prog_type(sec.name) is None:
                raise ElfError(f"section {sec.name!r}: program {sym.name!r}: section type "
                               f"not supported (xdp, xdp/*, xdp.frags, tc, classifier)")
            if sym.bind != "STB_GLOBAL":
                raise ElfError(f"section {sec.name!r}: program {sym.name!r} is static; "
                               f"programs must be global functions")
            programs.append(f)
        return sorted(programs, key=lambda f: (f.section.index, f.start))

    def collect_relocs(self) -> None:
        for rel in self.elf.relocation_sections:
            target = self.elf.section(rel.target)
            if not target.executable:
                if target.name in (".BTF", ".BTF.ext") or target.name.startswith(".debug"):
                    continue
                if target.name == ".maps":
                    self._map_slots(rel, target)
                    continue
                if rel.entries:
                    raise ElfError(f"section {target.name!r}: relocations in data sections "
                                   f"are not supported ({rel.name!r})")
                continue
            table = self.relocs.setdefault(target.index, {})
            for offset, rtype, sym in rel.entries:
                if offset % INSN_SIZE or offset + INSN_SIZE > target.size:
                    raise ElfError(f"section {target.name!r}: relocation "
                                   f"{_RELOC_NAMES.get(rtype, rtype)} against {sym.name!r} at "
                                   f"offset {offset} is not on an instruction")
                table[offset] = (rtype, sym)

    def _map_slots(self, rel: ElfRelocations, sec: ElfSection) -> None:
        """The initial slots of map-in-map definitions (`.values = { [1] = &inner }`):
        each relocation names the map a slot holds, as libbpf's init_slots."""
        for offset, _rtype, sym in rel.entries:
            where = f"section '.maps': relocation against {sym.name!r} at offset {offset}"
            hit = next(((base, outer) for (shndx, base), (outer, size) in self.slot_base.items()
                        if shndx == sec.index and base <= offset < base + size), None)
            if hit is None:
                raise ElfError(f"{where}: not in the slots of a map-in-map")
            base, outer = hit
            inner = self.map_at.get((sym.shndx, sym.value))
            if inner is None or (offset - base) % 8:
                raise ElfError(f"{where}: does not name a map")
            spec = self.maps[outer]
            slot = (offset - base) // 8
            if slot >= spec.max_entries:
                raise ElfError(f"{where}: slot {slot} past max_entries {spec.max_entries}")
            self.maps[outer] = replace(spec, slots=(*spec.slots, (slot, inner)))

    # -- linking one program ------------------------------------------------------------

    def link(self, main: _Func) -> tuple[bytes, tuple[int, ...], tuple[tuple[int, int], ...]]:
        """The program's code with the functions it calls appended depth-first (as libbpf's
        bpf_object__reloc_code() does) and every call and map reference fixed; with the
        start of each function and its func_info (insn, BTF FUNC id), empty when the
        object's BTF does not describe every one of them."""
        code = bytearray(main.section.data[main.start: main.start + main.size])
        placed = {(main.section.index, main.start): 0}
        self._relocate(code, main, placed)
        info: list[tuple[int, int]] = []
        for (shndx, start), insn in placed.items():
            type_id = self.func_types.get((self.elf.sections[shndx].name, start))
            if type_id is None:
                info = []
                break
            info.append((insn, type_id))
        return bytes(code), tuple(sorted(placed.values())), tuple(sorted(info))

    def _relocate(self, code: bytearray, func: _Func, placed: dict[tuple[int, int], int]) -> None:
        base = placed[(func.section.index, func.start)]
        for k in range(func.size // INSN_SIZE):
            self._fix_insn(code, base + k, func, k, placed)

    def _fix_insn(self, code: bytearray, pc: int, func: _Func, k: int,
                  placed: dict[tuple[int, int], int]) -> None:
        sec = func.section
        off = func.start + k * INSN_SIZE
        opcode, regs, _off, imm = struct.unpack_from("<BBhi", code, pc * INSN_SIZE)
        src = regs >> 4
        reloc = self.relocs.get(sec.index, {}).get(off)
        if reloc is None:
            if opcode == _CALL and src == BPF_PSEUDO_CALL:  # a call already pc-relative
                target = self._func_at(sec, off + (imm + 1) * INSN_SIZE, f"call at {off}")
                self._set_call(code, pc, target, func, placed)
            elif opcode == _CALL and src == BPF_PSEUDO_KFUNC_CALL:
                raise ElfError(f"section {sec.name!r}: kfunc call at insn {k} of "
                               f"{func.name!r} is not supported")
            return
        rtype, sym = reloc
        where = (f"section {sec.name!r}: relocation {_RELOC_NAMES.get(rtype, str(rtype))} "
                 f"against symbol {sym.name!r} at insn {off // INSN_SIZE}")
        if rtype == R_BPF_NONE:
            return
        if sym.shndx <= 0:
            raise ElfError(f"{where}: extern symbols (kfuncs, ksyms, kconfig) are not supported")
        target_sec = self.elf.section(sym.shndx)
        if rtype == R_BPF_64_32:
            if opcode != _CALL or src != BPF_PSEUDO_CALL:
                raise ElfError(f"{where}: not a bpf-to-bpf call instruction")
            if not target_sec.executable:
                raise ElfError(f"{where}: call into non-executable section {target_sec.name!r}")
            target = self._func_at(target_sec, sym.value + (imm + 1) * INSN_SIZE, where)
            self._set_call(code, pc, target, func, placed)
        elif rtype == R_BPF_64_64:
            if opcode != _LD_IMM64 or k + 1 >= func.size // INSN_SIZE:
                raise ElfError(f"{where}: not a 16-byte ld_imm64 instruction")
            if target_sec.executable:  # a function's address: a callback (bpf_loop)
                target = self._func_at(target_sec, sym.value + imm, where)
                self._set_func_ref(code, pc, regs, target, func, placed)
            else:
                self._set_map_ref(code, pc, regs, imm, sym, target_sec, where)
        else:
            raise ElfError(f"{where}: relocation type not supported")

    def _func_at(self, sec: ElfSection, offset: int, where: str) -> _Func:
        f = self.funcs.get((sec.index, offset))
        if f is None:
            raise ElfError(f"{where}: no function starts at offset {offset} of "
                           f"section {sec.name!r}")
        return f

    def _set_call(self, code: bytearray, pc: int, target: _Func, caller: _Func,
                  placed: dict[tuple[int, int], int]) -> None:
        key = (target.section.index, target.start)
        if key not in placed:
            if target.section.name != ".text" and target.section is not caller.section:
                raise ElfError(f"section {caller.section.name!r}: {caller.name!r} calls "
                               f"{target.name!r} of section {target.section.name!r}; only "
                               f".text functions can be called")
            placed[key] = len(code) // INSN_SIZE
            code += target.section.data[target.start: target.start + target.size]
            self._relocate(code, target, placed)
        struct.pack_into("<i", code, pc * INSN_SIZE + 4, placed[key] - (pc + 1))

    def _set_func_ref(self, code: bytearray, pc: int, regs: int, target: _Func, caller: _Func,
                      placed: dict[tuple[int, int], int]) -> None:
        """LD_IMM64 of a function (BPF_PSEUDO_FUNC): placed like a called one, imm the
        offset to it from the next instruction, as libbpf relocates a callback."""
        self._set_call(code, pc, target, caller, placed)  # places it, sets imm
        at = pc * INSN_SIZE
        code[at + 1] = (regs & 0x0F) | (BPF_PSEUDO_FUNC << 4)
        struct.pack_into("<i", code, at + INSN_SIZE + 4, 0)

    def _set_map_ref(self, code: bytearray, pc: int, regs: int, imm: int, sym: ElfSymbol,
                     sec: ElfSection, where: str) -> None:
        at = pc * INSN_SIZE
        if sec.index in self.data_map:
            index, src = self.data_map[sec.index], BPF_PSEUDO_MAP_VALUE
            offset = sym.value + imm
            if not 0 <= offset <= sec.size:
                raise ElfError(f"{where}: offset {offset} outside {sec.name!r}")
            struct.pack_into("<i", code, at + INSN_SIZE + 4, offset)
        elif (sec.index, sym.value + imm) in self.map_at:
            index, src = self.map_at[(sec.index, sym.value + imm)], BPF_PSEUDO_MAP_FD
        else:
            raise ElfError(f"{where}: symbol in section {sec.name!r} is neither a map nor "
                           f"global data")
        code[at + 1] = (regs & 0x0F) | (src << 4)
        struct.pack_into("<i", code, at + 4, index)


def _map_type(value: int, name: str, section: str) -> MapType:
    try:
        return MapType(value)
    except ValueError:
        raise ElfError(f"section {section!r}: map {name!r} has unknown type {value}") from None


def load_object(source: Path | str | bytes, *, name: str | None = None) -> BpfObject:
    """Load an object file (a path, or its bytes) into programs and map specs."""
    if isinstance(source, bytes):
        data, obj_name = source, name or "obj"
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
        obj_name = name or object_name(source)
    loader = _Loader(read_elf(data), obj_name)
    lic = loader.license()
    loader.collect_maps()
    mains = loader.collect_funcs()
    loader.collect_relocs()
    maps = tuple(loader.maps)
    programs: dict[str, Program] = {}
    for f in mains:
        ptype, frags = _prog_type(f.section.name) or (ProgType.XDP, False)
        insns, starts, info = loader.link(f)
        programs[f.name] = Program(f.name, f.section.name, insns, maps, lic, ptype, frags,
                                   starts, loader.kernel_btf if info else None, info)
    return BpfObject(obj_name, programs, maps, lic, loader.btf)


def _describe(progs: Iterable[Program]) -> str:
    return ", ".join(f"{p.name} (section {p.section})" for p in progs) or "none"


def select_program(obj: BpfObject, section: str | None = None,
                   name: str | None = None) -> Program:
    """Pick one program as the CLI does: by --section and/or --program, or the only one."""
    candidates = [p for p in obj.programs.values()
                  if (section is None or p.section == section)
                  and (name is None or p.name == name)]
    if len(candidates) == 1:
        return candidates[0]
    everything = _describe(obj.programs.values())
    if not candidates:
        wanted = " and ".join(x for x in (section and f"section {section!r}",
                                          name and f"program {name!r}") if x)
        if not obj.programs:
            raise UsageError(f"object {obj.name!r} holds no xdp or tc program")
        raise UsageError(f"object {obj.name!r} has no {wanted or 'program'} "
                         f"(programs: {everything})")
    where = f" in section {section!r}" if section else ""
    raise UsageError(f"object {obj.name!r} holds {len(candidates)} programs{where}; choose "
                     f"one with --program (programs: {_describe(candidates)})")


__all__ = ["BpfObject", "ElfFile", "internal_map_name", "load_object", "object_name",
           "read_elf", "select_program"]
