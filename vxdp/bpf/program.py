"""What a loaded BPF program is, independent of the engine that runs it.

A `Program` is the unit every engine, the verifier and the offload protocol agree on:

* `insns` is the final instruction stream (8-byte slots, little-endian), `.text`
  subprograms already appended and their call offsets fixed, exactly what BPF_PROG_LOAD
  would be given, with one difference: every map reference is an LD_IMM64 whose `src_reg`
  is BPF_PSEUDO_MAP_FD or BPF_PSEUDO_MAP_VALUE and whose `imm` is an **index into
  `Program.maps`** (for MAP_VALUE the second slot's imm holds the offset).  Each engine
  rebinds that index to its own object: a kernel fd, a C-core map handle, or, over virtio,
  the device-local map handle the guest got back from MAP CREATE.
* `maps` are the specs the program needs created before it is loaded, global data maps
  (`.data`, `.bss`, `.rodata`) included with their initial contents.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

INSN_SIZE = 8
XDP_HEADROOM = 256  # XDP_PACKET_HEADROOM in the kernel
MAX_CALL_FRAMES = 8  # MAX_CALL_FRAMES in the kernel
STACK_SIZE = 512  # MAX_BPF_STACK
MAX_TAIL_CALLS = 33  # MAX_TAIL_CALL_CNT

BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_CALL = 1  # src_reg of a bpf-to-bpf call
BPF_PSEUDO_KFUNC_CALL = 2

# BPF_MAP_UPDATE_ELEM flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# map_flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10


class ProgType(IntEnum):
    """enum bpf_prog_type (the ones vxdp knows)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    SCHED_CLS = 3
    XDP = 6


class MapType(IntEnum):
    """enum bpf_map_type, numbered as include/uapi/linux/bpf.h."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27


MAP_IN_MAP_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
PERCPU_MAP_TYPES = frozenset({MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH})
ARRAY_MAP_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
                             MapType.DEVMAP})


class XdpAction(IntEnum):
    """enum xdp_action."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


class XdpMd(IntEnum):
    """Offsets of the fields of `struct xdp_md`, the XDP context (all __u32)."""

    data = 0
    data_end = 4
    data_meta = 8
    ingress_ifindex = 12
    rx_queue_index = 16
    egress_ifindex = 20


XDP_MD_SIZE = 24


LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two slots


def rebind_map_refs(insns: bytes, new_imm: Callable[[int, int], int]) -> bytes:
    """`insns` with the imm of every map reference (LD_IMM64 whose src_reg is
    BPF_PSEUDO_MAP_FD or BPF_PSEUDO_MAP_VALUE) replaced by `new_imm(pc, imm)`: the one
    walk every rebinding shares (index -> kernel fd, index -> the device's map handle a
    guest sends, handle -> index on the device).  Other LD_IMM64s are left alone, and
    their second slot is never read as an instruction."""
    code = bytearray(insns)
    pc, n = 0, len(code) // INSN_SIZE
    while pc < n:
        at = pc * INSN_SIZE
        if code[at] == LD_IMM64:
            if code[at + 1] >> 4 in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
                imm = struct.unpack_from("<i", code, at + 4)[0]
                struct.pack_into("<i", code, at + 4, new_imm(pc, imm))
            pc += 2
            continue
        pc += 1
    return bytes(code)


@dataclass(frozen=True)
class MapSpec:
    """A map as an object file declares it, before any engine creates it."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    initial: bytes | None = None  # global data: the section's bytes (.bss: zeros)
    frozen: bool = False  # .rodata: frozen after the initial value is written
    # map-in-map: the inner maps' template (what lookups give), and the slots filled at
    # load: (slot index, index in Program.maps of the map put there)
    inner: MapSpec | None = None
    slots: tuple[tuple[int, int], ...] = ()

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES


@dataclass(frozen=True)
class Program:
    """One program of an object, ready for an engine (see the module docstring)."""

    name: str
    section: str
    insns: bytes
    maps: tuple[MapSpec, ...] = ()
    license: str = "GPL"
    prog_type: ProgType = ProgType.XDP
    frags: bool = False  # section xdp.frags: BPF_F_XDP_HAS_FRAGS
    func_starts: tuple[int, ...] = field(default=(0,))  # insn index of each function
    # the object's BTF as the kernel gets it, and (insn index, FUNC type id) per function:
    # what marks a function global (verified on its own, from its prototype); without
    # them every function is static, as for the kernel
    btf: bytes | None = field(default=None, repr=False, compare=False)
    func_info: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.insns) % INSN_SIZE:
            raise ValueError(f"program {self.name!r}: {len(self.insns)} bytes is not a "
                             f"whole number of {INSN_SIZE}-byte instructions")

    @property
    def insn_count(self) -> int:
        return len(self.insns) // INSN_SIZE

    @property
    def gpl_compatible(self) -> bool:
        """As the kernel's license_is_gpl_compatible()."""
        return self.license in {"GPL", "GPL v2", "GPL and additional rights",
                                "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}

    @property
    def digest(self) -> str:
        """sha256 over the instructions: the cache key of the JIT and the offload QUERY."""
        return hashlib.sha256(self.insns).hexdigest()

    @property
    def tag(self) -> str:
        """The kernel's program tag (`bpftool prog show`), as bpf_prog_calc_tag() makes
        it: the first 8 bytes of a hash of the instructions with the imm of the slots of
        map-referencing LD_IMM64s zeroed, so it does not depend on fds (or our indices).
        The hash is SHA-256, as in current kernels (checked against Linux 6.18's tag);
        older kernels used SHA-1 (`tag_sha1`)."""
        return hashlib.sha256(self._tag_input()).digest()[:8].hex()

    @property
    def tag_sha1(self) -> str:
        """The tag as kernels that hashed it with SHA-1 computed it."""
        return hashlib.sha1(self._tag_input()).digest()[:8].hex()

    def _tag_input(self) -> bytes:
        raw = bytearray(self.insns)
        was_ld_map = False
        for at in range(0, len(raw), INSN_SIZE):
            code, regs, off = raw[at], raw[at + 1], raw[at + 2:at + 4]
            if not was_ld_map and code == 0x18 and regs >> 4 in (BPF_PSEUDO_MAP_FD,
                                                                  BPF_PSEUDO_MAP_VALUE):
                was_ld_map = True
                raw[at + 4:at + 8] = bytes(4)
            elif was_ld_map and code == 0 and regs == 0 and off == b"\0\0":
                was_ld_map = False
                raw[at + 4:at + 8] = bytes(4)
            else:
                was_ld_map = False
        return bytes(raw)
