"""BTF as an object file carries it: the `.BTF` type graph and the `.BTF.ext` CO-RE records.

    btf = parse_btf(section_bytes)
    btf.datasec(".maps")                 # the BTF-defined map variables, in order
    parse_map_def(btf, var_type_id, "counts")  # -> BtfMapDef(type, key_size, ...)

Layouts follow include/uapi/linux/btf.h: a 24-byte header, then the type section (each
`struct btf_type` followed by its kind's trailing records) and the string table.  Type ids
start at 1; id 0 is `void`.  Map definitions are decoded the way libbpf's
`parse_btf_map_def()` reads the `__uint()` / `__type()` macros of <bpf/bpf_helpers.h>:
`__uint(name, N)` is `int (*name)[N]` (a pointer to an array of N elements) and
`__type(name, T)` is `T *name`.

Only little-endian BTF is accepted (the BPF target is little-endian here); anything this
module cannot use raises `ElfError` naming the section and the type id.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from construct import (
    ConstructError,
    Int8ul,
    Int16ul,
    Int32sl,
    Int32ul,
    Struct,
)

from vxdp.bpf.program import MAP_IN_MAP_TYPES, MapType
from vxdp.errors import ElfError

BTF_MAGIC = 0xEB9F


class BtfKind(IntEnum):
    """BTF_KIND_* of include/uapi/linux/btf.h."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# struct btf_header: the first three fields are common to every version.
btf_header = Struct(
    "magic" / Int16ul,
    "version" / Int8ul,
    "flags" / Int8ul,
    "hdr_len" / Int32ul,
    "type_off" / Int32ul,
    "type_len" / Int32ul,
    "str_off" / Int32ul,
    "str_len" / Int32ul,
)

# struct btf_type: name_off, info (vlen 0-15, kind 24-28, kind_flag 31), size or type.
btf_type = Struct("name_off" / Int32ul, "info" / Int32ul, "size_or_type" / Int32ul)
btf_array = Struct("type" / Int32ul, "index_type" / Int32ul, "nelems" / Int32ul)
btf_member = Struct("name_off" / Int32ul, "type" / Int32ul, "offset" / Int32ul)
btf_enum = Struct("name_off" / Int32ul, "val" / Int32sl)
btf_enum64 = Struct("name_off" / Int32ul, "val_lo32" / Int32ul, "val_hi32" / Int32ul)
btf_param = Struct("name_off" / Int32ul, "type" / Int32ul)
btf_var = Struct("linkage" / Int32ul)
btf_var_secinfo = Struct("type" / Int32ul, "offset" / Int32ul, "size" / Int32ul)
btf_decl_tag = Struct("component_idx" / Int32sl)

# struct btf_ext_header (tools/lib/bpf/libbpf_internal.h): CO-RE fields when hdr_len >= 32.
btf_ext_header = Struct(
    "magic" / Int16ul,
    "version" / Int8ul,
    "flags" / Int8ul,
    "hdr_len" / Int32ul,
    "func_info_off" / Int32ul,
    "func_info_len" / Int32ul,
    "line_info_off" / Int32ul,
    "line_info_len" / Int32ul,
)
btf_ext_core = Struct("core_relo_off" / Int32ul, "core_relo_len" / Int32ul)
bpf_core_relo = Struct("insn_off" / Int32ul, "type_id" / Int32ul,
                       "access_str_off" / Int32ul, "kind" / Int32ul)

_VLEN_RECORD = {
    BtfKind.STRUCT: btf_member,
    BtfKind.UNION: btf_member,
    BtfKind.ENUM: btf_enum,
    BtfKind.ENUM64: btf_enum64,
    BtfKind.FUNC_PROTO: btf_param,
    BtfKind.DATASEC: btf_var_secinfo,
}
_SINGLE_RECORD = {
    BtfKind.INT: Int32ul,
    BtfKind.ARRAY: btf_array,
    BtfKind.VAR: btf_var,
    BtfKind.DECL_TAG: btf_decl_tag,
}
# Kinds whose size_or_type is a type id that does not change the size of what it names.
_MODIFIERS = frozenset({BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT,
                        BtfKind.TYPE_TAG})
_SIZED = frozenset({BtfKind.INT, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM, BtfKind.FLOAT,
                    BtfKind.DATASEC, BtfKind.ENUM64})


@dataclass(frozen=True)
class BtfMember:
    """A struct/union member, enum value, func parameter or datasec variable."""

    name: str
    type: int  # type id (enums: 0)
    offset: int  # struct: bit offset; datasec: byte offset; enum: the value
    size: int = 0  # datasec: the variable's size in bytes


@dataclass(frozen=True)
class BtfType:
    id: int
    kind: BtfKind
    name: str
    size_or_type: int
    vlen: int = 0
    kind_flag: bool = False
    members: tuple[BtfMember, ...] = ()
    array: tuple[int, int, int] | None = None  # (elem type, index type, nelems)
    extra: int = 0  # INT encoding word, VAR linkage, DECL_TAG component index
    at: int = 0  # byte offset of the record in the type section (for fix-ups)


class Btf:
    """A parsed `.BTF` section: types by id and the string table."""

    def __init__(self, types: list[BtfType], strings: bytes, raw: bytes = b"") -> None:
        self.types = types  # types[0] is void
        self.strings = strings
        self.raw = raw  # the section as parsed (header included)

    def __len__(self) -> int:
        return len(self.types)

    def type(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise ElfError(f"section '.BTF': type id {type_id} out of range "
                           f"(the section has {len(self.types) - 1} types)")
        return self.types[type_id]

    def string(self, offset: int) -> str:
        return _string_at(self.strings, offset, ".BTF")

    def skip_modifiers(self, type_id: int) -> BtfType:
        """Follow typedef/const/volatile/restrict/type_tag to the type they name."""
        t = self.type(type_id)
        for _ in range(len(self.types)):
            if t.kind not in _MODIFIERS:
                return t
            t = self.type(t.size_or_type)
        raise ElfError(f"section '.BTF': modifier loop at type id {type_id}")

    def size_of(self, type_id: int, _depth: int = 0) -> int:
        """sizeof() the type, as btf__resolve_size() computes it."""
        if _depth > 32:
            raise ElfError(f"section '.BTF': type id {type_id} nests too deeply")
        t = self.skip_modifiers(type_id)
        if t.kind in _SIZED:
            return t.size_or_type
        if t.kind == BtfKind.PTR:
            return 8
        if t.kind == BtfKind.ARRAY and t.array is not None:
            return t.array[2] * self.size_of(t.array[0], _depth + 1)
        raise ElfError(f"section '.BTF': type id {t.id} ({t.kind.name.lower()} "
                       f"{t.name!r}) has no size")

    def by_name(self, name: str, kind: BtfKind) -> BtfType | None:
        for t in self.types:
            if t.kind == kind and t.name == name:
                return t
        return None

    def datasec(self, name: str) -> BtfType | None:
        return self.by_name(name, BtfKind.DATASEC)


def _string_at(strings: bytes, offset: int, section: str) -> str:
    if not 0 <= offset < max(len(strings), 1):
        raise ElfError(f"section {section!r}: string offset {offset} outside the string table")
    end = strings.find(b"\0", offset)
    if end < 0:
        raise ElfError(f"section {section!r}: string at offset {offset} is not terminated")
    try:
        return strings[offset:end].decode()
    except UnicodeDecodeError:
        raise ElfError(f"section {section!r}: string at offset {offset} is not utf-8") from None


def parse_btf(data: bytes) -> Btf:
    """Parse a `.BTF` section; corrupt input raises ElfError naming what is wrong."""
    try:
        hdr = btf_header.parse(data)
    except ConstructError:
        raise ElfError("section '.BTF': truncated header") from None
    if hdr.magic != BTF_MAGIC:
        raise ElfError(f"section '.BTF': bad magic {hdr.magic:#06x} (only little-endian "
                       f"btf, magic {BTF_MAGIC:#06x}, is supported)")
    if hdr.version != 1:
        raise ElfError(f"section '.BTF': unsupported version {hdr.version}")
    base = hdr.hdr_len
    for what, off, length in (("type", hdr.type_off, hdr.type_len),
                              ("string", hdr.str_off, hdr.str_len)):
        if base + off + length > len(data) or hdr.hdr_len < 24:
            raise ElfError(f"section '.BTF': {what} section ({off}+{length}) runs past the "
                           f"end of the section ({len(data)} bytes)")
    strings = data[base + hdr.str_off: base + hdr.str_off + hdr.str_len]
    raw = data[base + hdr.type_off: base + hdr.type_off + hdr.type_len]
    types = [BtfType(0, BtfKind.UNKN, "void", 0)]
    at = 0
    while at < len(raw):
        t, at = _parse_type(raw, at, len(types), strings)
        types.append(t)
    return Btf(types, strings, data)


_HEAD = struct.Struct("<III")  # struct btf_type: name_off, info, size_or_type
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_REC = {  # the record each member of a vlen kind has, by kind (include/uapi/linux/btf.h)
    BtfKind.STRUCT: struct.Struct("<III"), BtfKind.UNION: struct.Struct("<III"),
    BtfKind.ENUM: struct.Struct("<Ii"), BtfKind.ENUM64: struct.Struct("<III"),
    BtfKind.FUNC_PROTO: struct.Struct("<II"), BtfKind.DATASEC: struct.Struct("<III"),
}


def _parse_type(raw: bytes, at: int, type_id: int, strings: bytes) -> tuple[BtfType, int]:
    """One `struct btf_type` and its records at `at`: the type and where the next starts
    (read with struct, the layouts above, for speed: programs carry hundreds of types)."""
    try:
        name_off, info, size_or_type = _HEAD.unpack_from(raw, at)
        pos = at + _HEAD.size
        raw_kind = (info >> 24) & 0x1F
        try:
            kind = BtfKind(raw_kind)
        except ValueError:
            raise ElfError(f"section '.BTF': type id {type_id} has unknown kind "
                           f"{raw_kind}") from None
        vlen = info & 0xFFFF
        name = _string_at(strings, name_off, ".BTF")
        members: tuple[BtfMember, ...] = ()
        array = None
        extra = 0
        rec = _REC.get(kind)
        if rec is not None:
            out = []
            for _ in range(vlen):
                out.append(_member(kind, rec.unpack_from(raw, pos), strings))
                pos += rec.size
            members = tuple(out)
        elif kind == BtfKind.ARRAY:
            array = struct.unpack_from("<III", raw, pos)
            pos += 12
        elif kind in (BtfKind.INT, BtfKind.VAR):
            extra = _U32.unpack_from(raw, pos)[0]
            pos += 4
        elif kind == BtfKind.DECL_TAG:
            extra = _I32.unpack_from(raw, pos)[0]
            pos += 4
    except struct.error:
        raise ElfError(f"section '.BTF': type id {type_id} is truncated") from None
    return BtfType(type_id, kind, name, size_or_type, vlen, bool(info >> 31), members,
                   array, extra, at), pos


def _member(kind: BtfKind, rec: tuple[int, ...], strings: bytes) -> BtfMember:
    if kind == BtfKind.DATASEC:
        return BtfMember("", rec[0], rec[1], rec[2])
    name = _string_at(strings, rec[0], ".BTF")
    if kind in (BtfKind.STRUCT, BtfKind.UNION):
        return BtfMember(name, rec[1], rec[2])
    if kind == BtfKind.ENUM:
        return BtfMember(name, 0, rec[1])
    if kind == BtfKind.ENUM64:
        return BtfMember(name, 0, rec[1] | (rec[2] << 32))
    return BtfMember(name, rec[1], 0)  # FUNC_PROTO: a parameter


def _ext_header(ext: bytes) -> Any:
    """The `.BTF.ext` header (struct btf_ext_header), checked."""
    try:
        hdr = btf_ext_header.parse(ext)
    except ConstructError:
        raise ElfError("section '.BTF.ext': truncated header") from None
    if hdr.magic != BTF_MAGIC:
        raise ElfError(f"section '.BTF.ext': bad magic {hdr.magic:#06x}")
    return hdr


def func_infos(ext: bytes, btf: Btf) -> dict[tuple[str, int], int]:
    """The func_info records of a `.BTF.ext` section: (section, byte offset of the function
    in it) -> BTF id of its FUNC (struct bpf_func_info, as libbpf reads it)."""
    hdr = _ext_header(ext)
    body = ext[hdr.hdr_len + hdr.func_info_off: hdr.hdr_len + hdr.func_info_off
               + hdr.func_info_len]
    if not hdr.func_info_len:
        return {}
    if len(body) != hdr.func_info_len or len(body) < 4:
        raise ElfError("section '.BTF.ext': func_info table runs past the section")
    stream = io.BytesIO(body)
    out: dict[tuple[str, int], int] = {}
    try:
        rec_size = Int32ul.parse_stream(stream)
        if rec_size < 8:
            raise ElfError(f"section '.BTF.ext': func_info record size {rec_size} is too "
                           f"small")
        while stream.tell() < len(body):
            section = btf.string(Int32ul.parse_stream(stream))
            for _ in range(Int32ul.parse_stream(stream)):
                rec = stream.read(rec_size)
                if len(rec) != rec_size:
                    raise ConstructError("short record")
                insn_off, type_id = Int32ul.parse(rec[:4]), Int32ul.parse(rec[4:8])
                if btf.type(type_id).kind != BtfKind.FUNC:
                    raise ElfError(f"section '.BTF.ext': func_info of {section!r} at "
                                   f"{insn_off} names type id {type_id}, not a FUNC")
                out[(section, insn_off)] = type_id
    except ConstructError:
        raise ElfError("section '.BTF.ext': func_info table is truncated") from None
    return out


def fixup_datasecs(btf: Btf, section_sizes: dict[str, int],
                   var_offsets: dict[tuple[str, str], int]) -> bytes:
    """The section's bytes with every DATASEC's size and variable offsets filled in from the
    ELF file, as libbpf's btf_fixup_datasec() does before handing BTF to the kernel (clang
    leaves them 0; the kernel checks them)."""
    raw = bytearray(btf.raw)
    hdr = btf_header.parse(btf.raw)
    base = hdr.hdr_len + hdr.type_off
    for t in btf.types:
        if t.kind != BtfKind.DATASEC or t.name not in section_sizes:
            continue
        sec_size = section_sizes[t.name]
        if sec_size > 0xFFFF_FFFF:  # a DATASEC's size is a u32
            raise ElfError(f"section {t.name!r}: {sec_size} bytes do not fit the 32-bit "
                           f"size of its DATASEC in '.BTF'")
        struct.pack_into("<I", raw, base + t.at + 8, sec_size)
        for i, m in enumerate(t.members):
            var = btf.type(m.type)
            off = var_offsets.get((t.name, var.name))
            if off is None:
                continue
            if off + m.size > sec_size:  # libbpf: "variable ... is out of section"
                raise ElfError(f"section '.BTF': variable {var.name!r} at offset {off} "
                               f"(+{m.size} bytes) lies outside section {t.name!r} "
                               f"of {sec_size} bytes")
            struct.pack_into("<I", raw, base + t.at + 12 + 12 * i + 4, off)
    return bytes(raw)


class ParamKind(Enum):
    """How the verifier sees a global function's argument (btf_prepare_func_args)."""

    SCALAR = "scalar"  # an int or enum: ARG_ANYTHING
    CTX = "ctx"  # a pointer to the program's context: ARG_PTR_TO_CTX
    MEM = "mem"  # a pointer to a sized type: ARG_PTR_TO_MEM (| PTR_MAYBE_NULL)


@dataclass(frozen=True)
class FuncParam:
    kind: ParamKind
    size: int = 0  # MEM: bytes the function may read and write
    nullable: bool = True  # MEM: the caller may pass NULL (no __arg_nonnull tag)


@dataclass(frozen=True)
class FuncProto:
    """A function of the program as its BTF declares it."""

    name: str
    is_global: bool
    params: tuple[FuncParam, ...] = ()
    problem: str = ""  # why the kernel cannot use this prototype (global functions only)


MAX_FUNC_ARGS = 5
CTX_TYPE_NAMES = ("xdp_md", "xdp_buff")  # the XDP context, as the program and the kernel
BTF_FUNC_GLOBAL = 1


def func_proto(btf: Btf, func_id: int) -> FuncProto:
    """Decode a FUNC for the verifier the way the kernel's btf_prepare_func_args() does for
    an XDP program: ints and enums are scalars, a pointer to `struct xdp_md` (or one
    tagged `__arg_ctx`) the context, any other pointer to a sized type memory of that
    size, NULL allowed unless tagged `__arg_nonnull`."""
    fn = btf.type(func_id)
    name = fn.name
    is_global = fn.vlen == BTF_FUNC_GLOBAL  # a FUNC's vlen holds its linkage
    proto = btf.skip_modifiers(fn.size_or_type)
    if proto.kind != BtfKind.FUNC_PROTO:
        return FuncProto(name, is_global, problem=f"Invalid type of function {name}()")
    if len(proto.members) > MAX_FUNC_ARGS:
        return FuncProto(name, is_global, problem=f"Global function {name}() with "
                         f"{len(proto.members)} > {MAX_FUNC_ARGS} args. Buggy compiler.")
    ret = btf.skip_modifiers(proto.size_or_type)
    if ret.kind not in (BtfKind.INT, BtfKind.ENUM, BtfKind.ENUM64):
        return FuncProto(name, is_global, problem=f"Global function {name}() doesn't "
                         f"return scalar. Only those are supported.")
    tags: dict[int, set[str]] = {}
    for t in btf.types:
        if t.kind == BtfKind.DECL_TAG and t.size_or_type == func_id and \
                t.name.startswith("arg:"):
            tags.setdefault(t.extra, set()).add(t.name[4:])
    params = []
    for i, m in enumerate(proto.members):
        t = btf.skip_modifiers(m.type)
        arg_tags = tags.get(i, set())
        if t.kind == BtfKind.PTR and ("ctx" in arg_tags or
                                     btf.skip_modifiers(t.size_or_type).name in CTX_TYPE_NAMES):
            params.append(FuncParam(ParamKind.CTX))
            continue
        if t.kind == BtfKind.PTR:
            try:
                size = btf.size_of(t.size_or_type)
            except ElfError:
                target = btf.skip_modifiers(t.size_or_type)
                kind = "UNKNOWN" if target.kind == BtfKind.UNKN else target.kind.name
                return FuncProto(name, is_global, problem=f"arg#{i} reference type('{kind} "
                                 f"{target.name if target.id else ''}') size cannot be "
                                 f"determined: -22")
            params.append(FuncParam(ParamKind.MEM, size, "nonnull" not in arg_tags))
            continue
        if t.kind in (BtfKind.INT, BtfKind.ENUM, BtfKind.ENUM64):
            params.append(FuncParam(ParamKind.SCALAR))
            continue
        return FuncProto(name, is_global, problem=f"Arg#{i} type {t.kind.name} in {name}() "
                         f"is not supported yet.")
    return FuncProto(name, is_global, tuple(params))


@dataclass(frozen=True)
class CoreRelo:
    """One CO-RE relocation record of `.BTF.ext` (struct bpf_core_relo)."""

    section: str
    insn_off: int
    type_name: str
    access: str
    kind: int


def core_relocations(ext: bytes, btf: Btf) -> list[CoreRelo]:
    """The CO-RE relocation records of a `.BTF.ext` section (empty when it has none)."""
    hdr = _ext_header(ext)
    if hdr.hdr_len < 32:
        return []
    try:
        core = btf_ext_core.parse(ext[24:32])
    except ConstructError:
        raise ElfError("section '.BTF.ext': truncated header") from None
    off, length = core.core_relo_off, core.core_relo_len
    if length == 0:
        return []
    body = ext[hdr.hdr_len + off: hdr.hdr_len + off + length]
    if len(body) != length or length < 4:
        raise ElfError("section '.BTF.ext': co-re relocation table runs past the section")
    stream = io.BytesIO(body)
    out: list[CoreRelo] = []
    try:
        rec_size = Int32ul.parse_stream(stream)
        if rec_size < bpf_core_relo.sizeof():
            raise ElfError(f"section '.BTF.ext': co-re record size {rec_size} is too small")
        while stream.tell() < length:
            sec_name_off = Int32ul.parse_stream(stream)
            num = Int32ul.parse_stream(stream)
            section = btf.string(sec_name_off)
            for _ in range(num):
                rec = bpf_core_relo.parse(stream.read(rec_size))
                t = btf.type(rec.type_id)
                out.append(CoreRelo(section, rec.insn_off, t.name or f"type id {t.id}",
                                    btf.string(rec.access_str_off), rec.kind))
    except ConstructError:
        raise ElfError("section '.BTF.ext': co-re relocation table is truncated") from None
    return out


@dataclass(frozen=True)
class BtfMapDef:
    """What the `__uint()`/`__type()` fields of one `.maps` variable declare."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: BtfMapDef | None = None  # map-in-map: what `__array(values, struct ...)` declares
    values_offset: int = 0  # byte offset of the `values` slots in the definition


LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME = 0, 1  # enum libbpf_pin_type
_INT_FIELDS = ("type", "max_entries", "map_flags", "key_size", "value_size", "numa_node",
               "pinning", "map_extra")


def parse_map_def(btf: Btf, var: BtfType) -> BtfMapDef:
    """Decode one VAR of the `.maps` DATASEC as libbpf's parse_btf_map_def() does."""
    name = var.name
    where = f"section '.maps': map {name!r}"
    if var.kind != BtfKind.VAR:
        raise ElfError(f"{where}: btf type id {var.id} is a {var.kind.name.lower()}, "
                       f"not a variable")
    return _map_struct(btf, btf.skip_modifiers(var.size_or_type), name, where, 0)


def _map_struct(btf: Btf, st: BtfType, name: str, where: str, depth: int) -> BtfMapDef:
    if st.kind != BtfKind.STRUCT:
        raise ElfError(f"{where}: definition is a {st.kind.name.lower()}, not a struct")
    ints: dict[str, int] = {}
    sizes: dict[str, int] = {}
    values: BtfMember | None = None
    for m in st.members:
        if m.name in _INT_FIELDS:
            ints[m.name] = _field_int(btf, m, where)
        elif m.name in ("key", "value"):
            ptr = btf.skip_modifiers(m.type)
            if ptr.kind != BtfKind.PTR:
                raise ElfError(f"{where}: field {m.name!r} is not a __type() pointer")
            sizes[m.name] = btf.size_of(ptr.size_or_type)
        elif m.name == "values":
            values = m
        else:
            raise ElfError(f"{where}: unknown field {m.name!r}")
    for which in ("key", "value"):
        if which in sizes and f"{which}_size" in ints and sizes[which] != ints[f"{which}_size"]:
            raise ElfError(f"{where}: conflicting {which} sizes {sizes[which]} and "
                           f"{ints[which + '_size']}")
    # LIBBPF_PIN_BY_NAME asks the loader to share the map through bpffs; vxdp creates a
    # program's maps with the program, so it is ignored (stock xdp-tools objects set it)
    if ints.get("pinning", 0) not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME):
        raise ElfError(f"{where}: invalid pinning value {ints['pinning']}")
    if ints.get("map_extra", 0):
        raise ElfError(f"{where}: map_extra is not supported")
    if "type" not in ints:
        raise ElfError(f"{where}: no map type (__uint(type, ...))")
    try:
        map_type = MapType(ints["type"])
    except ValueError:
        raise ElfError(f"{where}: unknown map type {ints['type']}") from None
    inner = None
    if values is not None:
        # `__array(values, struct inner)`: an array of pointers to the inner map's
        # definition (libbpf's parse_btf_map_def, is_inner); initial slots come as
        # relocations against it
        if map_type not in MAP_IN_MAP_TYPES or depth:
            raise ElfError(f"{where}: field 'values' is only supported for map-in-map "
                           f"(initial prog array slots are not)")
        arr = btf.skip_modifiers(values.type)
        slot = btf.skip_modifiers(arr.array[0]) if arr.kind == BtfKind.ARRAY and arr.array \
            else None
        if slot is None or slot.kind != BtfKind.PTR:
            raise ElfError(f"{where}: field 'values' is not an array of pointers")
        inner = _map_struct(btf, btf.skip_modifiers(slot.size_or_type), f"{name}.inner",
                            f"{where} (inner map)", depth + 1)
        ints.setdefault("value_size", 4)  # a slot holds a map (its fd, then its id)
    elif map_type in MAP_IN_MAP_TYPES:
        raise ElfError(f"{where}: a map-in-map needs __array(values, ...) for its inner map")
    return BtfMapDef(name, map_type,
                     sizes.get("key", ints.get("key_size", 0)),
                     sizes.get("value", ints.get("value_size", 0)),
                     ints.get("max_entries", 0), ints.get("map_flags", 0), inner,
                     values.offset // 8 if values is not None else 0)


def _field_int(btf: Btf, m: BtfMember, where: str) -> int:
    """`__uint(name, N)` is `int (*name)[N]`: N is the array's element count."""
    ptr = btf.skip_modifiers(m.type)
    if ptr.kind != BtfKind.PTR:
        raise ElfError(f"{where}: field {m.name!r} is not a __uint() pointer to an array")
    arr = btf.skip_modifiers(ptr.size_or_type)
    if arr.kind != BtfKind.ARRAY or arr.array is None:
        raise ElfError(f"{where}: field {m.name!r} does not point to an array")
    return arr.array[2]
