"""vxdp.bpf.btf: the .BTF type graph, map definitions and CO-RE records."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from vxdp.bpf.btf import BtfKind, core_relocations, parse_btf, parse_map_def
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.program import MapType
from vxdp.errors import ElfError

SRC = Path(__file__).parent / "elf_src"


class BtfBuilder:
    """Encodes BTF by hand, one type at a time (ids from 1), as clang would."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind: BtfKind, name: str, size_or_type: int, tail: bytes = b"",
            vlen: int = 0, kind_flag: int = 0) -> int:
        info = (kind_flag << 31) | (int(kind) << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_or_type) + tail
        self.count += 1
        return self.count

    def int_(self, name: str, size: int) -> int:
        return self.add(BtfKind.INT, name, size, struct.pack("<I", size * 8))

    def ptr(self, to: int) -> int:
        return self.add(BtfKind.PTR, "", to)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add(BtfKind.ARRAY, "", 0, struct.pack("<III", elem, index, n))

    def struct_(self, name: str, size: int, members: list[tuple[str, int, int]]) -> int:
        tail = b"".join(struct.pack("<III", self.s(n), t, off) for n, t, off in members)
        return self.add(BtfKind.STRUCT, name, size, tail, vlen=len(members))

    def uint_field(self, int_id: int, n: int) -> int:
        """`__uint(name, n)`: int (*name)[n]."""
        return self.ptr(self.array(int_id, int_id, n))

    def build(self, magic: int = 0xEB9F) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(self.types), len(self.types),
                          len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def test_every_kind_parses_with_names_and_records():
    b = BtfBuilder()
    i32 = b.int_("int", 4)
    u8 = b.int_("unsigned char", 1)
    p = b.ptr(i32)
    arr = b.array(u8, i32, 6)
    st = b.struct_("pair", 12, [("a", i32, 0), ("mac", arr, 32)])
    un = b.add(BtfKind.UNION, "u", 4, struct.pack("<III", b.s("x"), i32, 0), vlen=1)
    en = b.add(BtfKind.ENUM, "color", 4, struct.pack("<Ii", b.s("RED"), -1), vlen=1)
    fwd = b.add(BtfKind.FWD, "later", 0)
    td = b.add(BtfKind.TYPEDEF, "pair_t", st)
    vol = b.add(BtfKind.VOLATILE, "", td)
    cst = b.add(BtfKind.CONST, "", vol)
    rst = b.add(BtfKind.RESTRICT, "", p)
    proto = b.add(BtfKind.FUNC_PROTO, "", i32, struct.pack("<II", b.s("ctx"), p), vlen=1)
    fn = b.add(BtfKind.FUNC, "f", proto)
    var = b.add(BtfKind.VAR, "v", i32, struct.pack("<I", 1))
    ds = b.add(BtfKind.DATASEC, ".data", 4, struct.pack("<III", var, 0, 4), vlen=1)
    flt = b.add(BtfKind.FLOAT, "double", 8)
    tag = b.add(BtfKind.DECL_TAG, "hot", fn, struct.pack("<i", -1))
    ttag = b.add(BtfKind.TYPE_TAG, "user", i32)
    e64 = b.add(BtfKind.ENUM64, "big", 8, struct.pack("<III", b.s("HUGE"), 1, 2), vlen=1)
    btf = parse_btf(b.build())
    assert len(btf) == e64 + 1
    assert btf.type(st).members[1].name == "mac" and btf.type(st).members[1].offset == 32
    assert btf.type(arr).array == (u8, i32, 6)
    assert btf.type(en).members[0].offset == -1
    assert btf.type(e64).members[0].offset == (2 << 32) | 1
    assert btf.type(fwd).kind == BtfKind.FWD and btf.type(un).kind == BtfKind.UNION
    assert btf.type(var).extra == 1 and btf.type(tag).extra == -1
    assert btf.type(ds).members[0].size == 4
    assert btf.skip_modifiers(cst).id == st
    assert btf.size_of(cst) == 12 and btf.size_of(arr) == 6 and btf.size_of(rst) == 8
    assert btf.size_of(flt) == 8 and btf.size_of(ttag) == 4
    assert btf.datasec(".data") is not None and btf.type(fn).name == "f"
    with pytest.raises(ElfError, match="has no size"):
        btf.size_of(fn)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: struct.pack("<H", 0x9FEB) + d[2:], "bad magic"),
    (lambda d: d[:10], "truncated header"),
    (lambda d: d[:-3], "runs past the end"),
])
def test_corrupt_headers_are_elf_errors(mutate, message):
    b = BtfBuilder()
    b.int_("int", 4)
    assert parse_btf(b.build()).type(1).name == "int"
    with pytest.raises(ElfError, match=message):
        parse_btf(mutate(b.build()))


def test_unknown_kind_truncated_type_and_bad_string_are_named():
    b = BtfBuilder()
    b.add(BtfKind.INT, "int", 4, struct.pack("<I", 32))
    raw = bytearray(b.build())
    raw[24 + 7] = 25 & 0x1F  # kind byte of type 1 (bits 24-28 of info)
    with pytest.raises(ElfError, match="type id 1 has unknown kind 25"):
        parse_btf(bytes(raw))
    b2 = BtfBuilder()
    b2.add(BtfKind.STRUCT, "s", 4, b"", vlen=3)  # promises three members, has none
    with pytest.raises(ElfError, match="type id 1 is truncated"):
        parse_btf(b2.build())
    b3 = BtfBuilder()
    b3.types += struct.pack("<III", 9999, int(BtfKind.PTR) << 24, 0)
    with pytest.raises(ElfError, match="string offset 9999"):
        parse_btf(b3.build())


def _map_var(b: BtfBuilder, fields: list[tuple[str, int]]) -> int:
    st = b.struct_("", 8 * len(fields), [(n, t, 64 * i) for i, (n, t) in enumerate(fields)])
    return b.add(BtfKind.VAR, "m", st, struct.pack("<I", 1))


def test_map_definition_decodes_uint_and_type_fields():
    b = BtfBuilder()
    i32 = b.int_("int", 4)
    u64 = b.int_("unsigned long long", 8)
    key = b.struct_("k", 6, [])
    var = _map_var(b, [("type", b.uint_field(i32, MapType.LRU_HASH)),
                       ("max_entries", b.uint_field(i32, 99)),
                       ("map_flags", b.uint_field(i32, 2)),
                       ("key", b.ptr(key)),
                       ("value", b.ptr(b.add(BtfKind.TYPEDEF, "__u64", u64)))])
    btf = parse_btf(b.build())
    d = parse_map_def(btf, btf.type(var))
    assert (d.name, d.type, d.key_size, d.value_size, d.max_entries, d.flags) == \
        ("m", MapType.LRU_HASH, 6, 8, 99, 2)


@pytest.mark.parametrize(("field", "message"), [
    ("values", "field 'values' is only supported for map-in-map"),
    ("bogus", "unknown field 'bogus'"),
])
def test_map_definition_refuses_what_vxdp_cannot_do(field, message):
    b = BtfBuilder()
    i32 = b.int_("int", 4)
    var = _map_var(b, [("type", b.uint_field(i32, 1)), (field, b.uint_field(i32, 1))])
    btf = parse_btf(b.build())
    with pytest.raises(ElfError, match=message):
        parse_map_def(btf, btf.type(var))


def test_map_definition_pinning_by_name_is_ignored_other_values_refused():
    b = BtfBuilder()
    i32 = b.int_("int", 4)
    by_name = _map_var(b, [("type", b.uint_field(i32, 2)), ("max_entries", b.uint_field(i32, 4)),
                           ("pinning", b.uint_field(i32, 1))])
    bogus = _map_var(b, [("type", b.uint_field(i32, 2)), ("pinning", b.uint_field(i32, 2))])
    btf = parse_btf(b.build())
    d = parse_map_def(btf, btf.type(by_name))
    assert (d.type, d.max_entries) == (MapType.ARRAY, 4)
    with pytest.raises(ElfError, match="invalid pinning value 2"):
        parse_map_def(btf, btf.type(bogus))


def test_map_definition_conflicting_key_sizes_and_missing_type():
    b = BtfBuilder()
    i32 = b.int_("int", 4)
    bad = _map_var(b, [("type", b.uint_field(i32, 1)), ("key", b.ptr(i32)),
                       ("key_size", b.uint_field(i32, 8))])
    untyped = _map_var(b, [("max_entries", b.uint_field(i32, 1))])
    btf = parse_btf(b.build())
    with pytest.raises(ElfError, match="conflicting key sizes 4 and 8"):
        parse_map_def(btf, btf.type(bad))
    with pytest.raises(ElfError, match="no map type"):
        parse_map_def(btf, btf.type(untyped))


def _section(obj: Path, name: str) -> bytes:
    from elftools.elf.elffile import ELFFile
    with obj.open("rb") as f:
        return ELFFile(f).get_section_by_name(name).data()  # type: ignore[no-any-return]


@pytest.mark.clang
def test_core_relocations_are_read_from_btf_ext():
    if reason := clang_unavailable():
        pytest.skip(reason)
    obj = compile_c(SRC / "bad_core.c")
    btf = parse_btf(_section(obj, ".BTF"))
    relos = core_relocations(_section(obj, ".BTF.ext"), btf)
    assert relos and {r.type_name for r in relos} == {"md_view"}
    assert all(r.section == "xdp" for r in relos)
    clean = compile_c(SRC / "multi.c")
    assert core_relocations(_section(clean, ".BTF.ext"), parse_btf(_section(clean, ".BTF"))) == []
