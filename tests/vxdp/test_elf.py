"""vxdp.bpf.elf: objects from clang become Programs the way libbpf would load them."""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import pytest

from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import internal_map_name, load_object, object_name, read_elf, select_program
from vxdp.bpf.isa import decode
from vxdp.bpf.program import (
    BPF_F_NO_PREALLOC,
    BPF_F_RDONLY_PROG,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    MapType,
    Program,
    ProgType,
)
from vxdp.errors import ElfError, UsageError

SRC = Path(__file__).parent / "elf_src"
pytestmark = pytest.mark.clang


def compiled(name: str) -> Path:
    if reason := clang_unavailable():
        pytest.skip(reason)
    return compile_c(SRC / f"{name}.c")


def insns(prog: Program) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) per 8-byte slot."""
    out = []
    for at in range(0, len(prog.insns), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", prog.insns, at)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def map_refs(prog: Program) -> list[tuple[str, int, int]]:
    """(map name, src_reg, offset) of every LD_IMM64 map reference, in program order."""
    code = insns(prog)
    refs = []
    for pc, (op, _dst, src, _off, imm) in enumerate(code):
        if op == 0x18 and src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
            refs.append((prog.maps[imm].name, src, code[pc + 1][4]))
    return refs


@pytest.fixture(scope="module")
def multi():
    return load_object(compiled("multi"), name="multi")


def test_programs_sections_and_types(multi):
    assert list(multi.programs) == ["xdp_main", "xdp_drop", "xdp_frag", "tc_pass"]
    p = multi.programs
    assert (p["xdp_main"].section, p["xdp_main"].prog_type, p["xdp_main"].frags) == \
        ("xdp", ProgType.XDP, False)
    assert p["xdp_drop"].section == "xdp/drop"
    assert p["xdp_frag"].frags and p["xdp_frag"].prog_type == ProgType.XDP
    assert p["tc_pass"].prog_type == ProgType.SCHED_CLS
    assert multi.license == "Dual BSD/GPL" and p["xdp_main"].gpl_compatible


def test_maps_in_libbpf_order_with_global_data(multi):
    by_name = {m.name: m for m in multi.maps}
    # BTF maps first (DATASEC order), then global data in section order
    assert [m.name for m in multi.maps][3:] == ["multi.data", "multi.rodata", "multi.bss"]
    assert {m.name for m in multi.maps[:3]} == {"counts", "stats", "lru"}
    c, s, lru = by_name["counts"], by_name["stats"], by_name["lru"]
    assert (c.type, c.key_size, c.value_size, c.max_entries) == (MapType.HASH, 4, 8, 64)
    assert (s.type, s.key_size, s.value_size, s.max_entries) == (MapType.PERCPU_ARRAY, 4, 12, 4)
    assert (lru.type, lru.key_size, lru.value_size, lru.flags) == (MapType.LRU_HASH, 8, 12, 2)
    data, ro, bss = by_name["multi.data"], by_name["multi.rodata"], by_name["multi.bss"]
    assert data.initial == struct.pack("<I", 7) and not data.frozen and data.flags == 0
    assert ro.initial == struct.pack("<I", 2) + bytes([1, 2, 3])
    assert ro.frozen and ro.flags == BPF_F_RDONLY_PROG
    assert bss.initial == bytes(8) and bss.value_size == 8
    assert all((m.type, m.key_size, m.max_entries) == (MapType.ARRAY, 4, 1)
               for m in (data, ro, bss))
    # every program shares the object's map list, so indexes agree between them
    assert all(p.maps == multi.maps for p in multi.programs.values())


def test_map_references_become_indexes_and_value_offsets(multi):
    assert map_refs(multi.programs["xdp_main"]) == [
        ("stats", BPF_PSEUDO_MAP_FD, 0),
        ("multi.data", BPF_PSEUDO_MAP_VALUE, 0),      # seen
        ("multi.bss", BPF_PSEUDO_MAP_VALUE, 0),       # total
        ("multi.rodata", BPF_PSEUDO_MAP_VALUE, 0),    # verdict
        ("counts", BPF_PSEUDO_MAP_FD, 0),             # in bump(), appended
        ("counts", BPF_PSEUDO_MAP_FD, 0),
    ]
    # pad_rodata sits at offset 4 of .rodata: symbol value + addend
    assert map_refs(multi.programs["xdp_frag"]) == [("multi.rodata", BPF_PSEUDO_MAP_VALUE, 4)]


def test_text_subprograms_appended_depth_first_and_calls_fixed(multi):
    main = multi.programs["xdp_main"]
    assert main.func_starts == (0, 34, 40)  # xdp_main, global_len, bump
    assert main.insn_count == 34 + 6 + 20
    calls = [(pc, imm) for pc, (op, _d, src, _o, imm) in enumerate(insns(main))
             if op == 0x85 and src == BPF_PSEUDO_CALL]
    assert [pc + 1 + imm for pc, imm in calls] == [34, 40]
    drop = multi.programs["xdp_drop"]  # calls only bump: only bump is appended
    assert drop.func_starts == (0, 4) and drop.insn_count == 4 + 20
    assert multi.programs["xdp_frag"].func_starts == (0,)


def test_legacy_maps_section_symbols_and_custom_data_section():
    obj = load_object(compiled("legacy").read_bytes(), name="legacy")
    assert [m.name for m in obj.maps] == ["pkt_count", "by_len", ".data.custom", "legacy.bss",
                                          "legacy.data"]
    by_len = obj.maps[1]
    assert (by_len.type, by_len.key_size, by_len.value_size, by_len.max_entries,
            by_len.flags) == (MapType.HASH, 4, 4, 16, BPF_F_NO_PREALLOC)
    prog = obj.programs["count"]
    refs = map_refs(prog)
    assert ("legacy.bss", BPF_PSEUDO_MAP_VALUE, 4) in refs  # hidden_counter: .bss sym + 4
    assert ("legacy.bss", BPF_PSEUDO_MAP_VALUE, 0) in refs  # twice_calls, in twice()
    assert ("legacy.data", BPF_PSEUDO_MAP_VALUE, 0) in refs
    assert (".data.custom", BPF_PSEUDO_MAP_VALUE, 0) in refs
    # static plus_one -> static twice: both through the .text section symbol
    assert len(prog.func_starts) == 3
    code = insns(prog)
    targets = sorted(pc + 1 + imm for pc, (op, _d, src, _o, imm) in enumerate(code)
                     if op == 0x85 and src == BPF_PSEUDO_CALL)
    assert targets == list(prog.func_starts[1:])


def test_object_name_from_path_and_internal_map_names(tmp_path):
    copy = tmp_path / "a-very-long-object.bpf.o"
    shutil.copy(compiled("multi"), copy)
    obj = load_object(copy)
    assert obj.name == "a-very-long-object" == object_name(copy)
    assert "a_very_l.bss" in {m.name for m in obj.maps}
    assert internal_map_name("multi", ".rodata") == "multi.rodata"
    assert internal_map_name("xdp_router_ipv4", ".data") == "xdp_rout.data"
    assert internal_map_name("x", ".rodata.str1.1") == ".rodata.str1.1"
    assert internal_map_name("x", ".data.abracadabra") == ".data.abracadab"


def test_select_program_follows_the_cli_rules(multi):
    assert select_program(multi, section="xdp").name == "xdp_main"
    assert select_program(multi, name="xdp_drop").section == "xdp/drop"
    assert select_program(multi, section="xdp/drop", name="xdp_drop").name == "xdp_drop"
    with pytest.raises(UsageError, match="holds 4 programs; choose one with --program"):
        select_program(multi)
    with pytest.raises(UsageError, match="no section 'xdp' and program 'xdp_drop'"):
        select_program(multi, section="xdp", name="xdp_drop")
    with pytest.raises(UsageError, match=r"programs: xdp_main \(section xdp\)"):
        select_program(multi, name="nope")
    single = load_object(compiled("rejected"))
    assert select_program(single).name == "unchecked"


@pytest.mark.parametrize(("source", "message"), [
    ("bad_kfunc", r"section 'xdp': relocation R_BPF_64_32 against symbol 'bpf_some_kfunc' "
                  r"at insn 0: extern symbols"),
    ("bad_core", r"section 'xdp': co-re relocation at insn 0 \(type 'md_view'"),
    ("bad_section", r"section 'kprobe/do_sys_open': program 'probe': section type not"),
])
def test_unsupported_features_name_section_symbol_and_relocation(source, message):
    with pytest.raises(ElfError, match=message):
        load_object(compiled(source))


def test_callback_address_is_a_pseudo_func_to_the_placed_function():
    prog = load_object(compiled("callback")).programs["loops"]
    insns = decode(prog.insns)
    (at,) = [pc for pc, i in enumerate(insns) if i.opcode == 0x18 and i.src == 4]
    target = at + insns[at].imm + 1
    assert target in prog.func_starts[1:]  # the callback, appended after the program
    assert insns[at + 1].imm == 0
    assert any(i.opcode == 0x85 and i.imm == 181 for i in insns)


def _patch_reloc_type(data: bytes, section: str, new_type: int) -> bytes:
    elf = read_elf(data)
    import io

    from elftools.elf.elffile import ELFFile
    sec = ELFFile(io.BytesIO(data)).get_section_by_name(section)
    off = sec["sh_offset"]
    out = bytearray(data)
    info = struct.unpack_from("<Q", out, off + 8)[0]
    struct.pack_into("<Q", out, off + 8, (info & ~0xFFFFFFFF) | new_type)
    assert elf.section_named(section) is not None
    return bytes(out)


def test_unknown_relocation_type_is_named():
    data = _patch_reloc_type(compiled("multi").read_bytes(), ".relxdp.frags", 3)
    with pytest.raises(ElfError, match=r"section 'xdp.frags': relocation R_BPF_64_ABS32 "
                                       r"against symbol 'pad_rodata' at insn 0: relocation "
                                       r"type not supported"):
        load_object(data)


def test_not_bpf_elf_and_not_elf_at_all(tmp_path):
    with pytest.raises(ElfError, match="not EM_BPF"):
        load_object(Path("/bin/true").read_bytes() if Path("/bin/true").exists()
                    else pytest.skip("no /bin/true"))
    with pytest.raises(ElfError, match="not a usable elf object"):
        load_object(b"\x7fELF" + bytes(10))
    with pytest.raises(ElfError):
        load_object(b"hello world, not an object file at all" * 4)
    with pytest.raises(UsageError, match="cannot read"):
        load_object(tmp_path / "missing.o")


def _patch_symbol_value(data: bytes, name: str, value: int) -> bytes:
    import io

    from elftools.elf.elffile import ELFFile
    symtab = ELFFile(io.BytesIO(data)).get_section_by_name(".symtab")
    index = next(i for i, y in enumerate(symtab.iter_symbols()) if y.name == name)
    out = bytearray(data)
    struct.pack_into("<Q", out, symtab["sh_offset"] + 24 * index + 8, value)  # st_value
    return bytes(out)


@pytest.mark.parametrize("value", [2**40, 5])
def test_a_variable_outside_its_section_is_named(value):
    """libbpf's btf_fixup_datasec() refuses a variable its section cannot hold; so do we
    (a 64-bit st_value once escaped as a struct.error)."""
    data = _patch_symbol_value(compiled("multi").read_bytes(), "seen", value)
    with pytest.raises(ElfError, match=rf"variable 'seen' at offset {value} \(\+4 bytes\) "
                                       r"lies outside section '.data' of 4 bytes"):
        load_object(data)


def test_corrupt_objects_never_escape_as_tracebacks():
    """Truncations and byte flips anywhere: either a clean load or an ElfError."""
    data = compiled("multi").read_bytes()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for n in range(300):
        mutated = bytearray(data)
        if n % 3 == 0:
            mutated = mutated[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            load_object(bytes(mutated))
            outcomes["ok"] += 1
        except ElfError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50  # the corruption was noticed, not ignored
