"""The XDP offload extension to virtio-net: constants, bodies, results, capabilities.

This is vxdp's completion of the 2019 "virtio_net XDP offload" RFC (P. Bhole, J. Wang;
netdev, Nov 2019), as fixed in DESIGN.md "Protocol decisions":

* feature bit VIRTIO_NET_F_XDP_OFFLOAD = 58 (in `features`), requiring CTRL_VQ and
  VERSION_1;
* control class VIRTIO_NET_CTRL_EBPF = 0x40.  The RFC used 6, which virtio 1.3 assigned
  to VIRTIO_NET_CTRL_NOTF_COAL; DESIGN.md's 9 is VIRTNET_RSS_CTX_CTRL in the drafts after
  virtio 1.4, so vxdp moved to 0x40, far above the classes the spec hands out in order
  (docs/offload-spec.md).  `rfc_compat` mode still uses 6 and is refused when NOTF_COAL
  is negotiated (`ebpf_ctrl_class`);
* commands PROG = 1 and MAP = 2, with the sub-command in the body's `cmd` field;
* bodies byte-exact to the RFC, little-endian (`virtio_net_ctrl_ebpf_prog`, 8-byte header
  then raw 8-byte instructions; `virtio_net_ctrl_ebpf_map`, 40-byte header then
  buf = key || value-or-next-key);
* results in device-writable buffers after the ack byte (virtio 1.4 style
  command-specific-result), never written back into the driver's readable request:
  le32 errno (a positive Linux errno, 0 on success) then the command's result;
* capabilities in config space from offset 28 (`XdpCapabilities`), the helpers as a
  256-bit bitmap (le64[4]), with three profiles.  A profile is the one source of truth:
  the device advertises it and verifies against it, and vxdp's verifier profile is
  derived from it (`vxdp.bpf.profiles.Profile.from_capabilities`).

virtio_spec imports nothing else of vxdp, so the few BPF numbers needed here are defined
locally; they come from Linux include/uapi/linux/bpf.h (enum bpf_map_type, the helper
FN() list) and stay in step with `vxdp.bpf` by test, not by import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Final

from construct import (
    Bytes,
    ExprValidator,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Rebuild,
    Struct,
    len_,
    this,
)

from .errors import LocalProtocolError, RemoteProtocolError
from .features import VirtioNetFeature

# ----------------------------------------------------------------------------------------
# Control class, commands, sub-commands

#: Our control class for the offload.  DESIGN.md chose 9, which the virtio drafts after
#: 1.4 give to VIRTNET_RSS_CTX_CTRL (VIRTIO_NET_F_RSS_CONTEXT, bit 64); the spec assigns
#: classes in order from 0, so 0x40 stays clear of them (docs/offload-spec.md).
VIRTIO_NET_CTRL_EBPF: Final = 0x40
#: The RFC's class; since virtio 1.3 it is VIRTIO_NET_CTRL_NOTF_COAL.
VIRTIO_NET_CTRL_EBPF_RFC: Final = 6
#: Version of the bodies and results below, reported in `xdp_abi_version`.
XDP_ABI_VERSION: Final = 1
#: Size of one BPF instruction (struct bpf_insn).
BPF_INSN_SIZE: Final = 8


class VirtioNetCtrlEbpf(IntEnum):
    """Commands of class VIRTIO_NET_CTRL_EBPF (the RFC's numbering)."""

    VIRTIO_NET_CTRL_EBPF_PROG = 1
    VIRTIO_NET_CTRL_EBPF_MAP = 2


class VirtioNetBpfProgCmd(IntEnum):
    """`virtio_net_ctrl_ebpf_prog.cmd` (RFC 1, 2; QUERY is ours)."""

    VIRTIO_NET_BPF_CMD_SET_OFFLOAD = 1
    VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD = 2
    VIRTIO_NET_BPF_CMD_QUERY = 3


class VirtioNetBpfMapCmd(IntEnum):
    """`virtio_net_ctrl_ebpf_map.cmd` (the RFC's numbering)."""

    VIRTIO_NET_BPF_CMD_CREATE_MAP = 1
    VIRTIO_NET_BPF_CMD_FREE_MAP = 2
    VIRTIO_NET_BPF_CMD_UPDATE_ELEM = 3
    VIRTIO_NET_BPF_CMD_LOOKUP_ELEM = 4
    VIRTIO_NET_BPF_CMD_DELETE_ELEM = 5
    VIRTIO_NET_BPF_CMD_GET_FIRST = 6
    VIRTIO_NET_BPF_CMD_GET_NEXT = 7


def ebpf_ctrl_class(negotiated: int, *, rfc_compat: bool = False) -> int:
    """The control class the offload uses on a device with `negotiated` features.

    In rfc_compat mode it is the RFC's 6, which is VIRTIO_NET_CTRL_NOTF_COAL in virtio
    1.3: the two meanings cannot coexist, so rfc_compat with NOTF_COAL is refused.
    """
    if not rfc_compat:
        return VIRTIO_NET_CTRL_EBPF
    if negotiated >> VirtioNetFeature.VIRTIO_NET_F_NOTF_COAL & 1:
        raise LocalProtocolError("rfc_compat uses control class 6, which is "
                                 "VIRTIO_NET_CTRL_NOTF_COAL once VIRTIO_NET_F_NOTF_COAL "
                                 "is negotiated")
    return VIRTIO_NET_CTRL_EBPF_RFC


# ----------------------------------------------------------------------------------------
# Request bodies (driver-written, device-readable)

#: struct virtio_net_ctrl_ebpf_prog: 8-byte header + `len` bytes of instructions.
#:   0 le32 len (BYTES, = insn_cnt * 8)  4 le16 cmd  6 le16 gpl_compatible  8 insns[len]
#: UNSET_OFFLOAD and QUERY send the header only (len = 0).
virtio_net_ctrl_ebpf_prog: Any = Struct(
    # A whole number of instructions: len % 8 == 0.
    "len" / Rebuild(ExprValidator(Int32ul, lambda obj, ctx: obj % BPF_INSN_SIZE == 0),
                    len_(this.insns)),
    "cmd" / Int16ul,
    "gpl_compatible" / Int16ul,
    "insns" / Bytes(this.len),
)
EBPF_PROG_HDR_SIZE: Final = 8

#: struct virtio_net_ctrl_ebpf_map: 40-byte header + `buf_len` bytes of buf.
#:   0 buf_len  4 cmd  8 map_type  12 key_size  16 value_size  20 max_entries
#:   24 map_flags  28 map_fd (our device-local map handle)  (all le32)  32 le64 flags
#:   40 buf = key || value-or-next-key
virtio_net_ctrl_ebpf_map: Any = Struct(
    "buf_len" / Rebuild(Int32ul, len_(this.buf)),
    "cmd" / Int32ul,
    "map_type" / Int32ul,
    "key_size" / Int32ul,
    "value_size" / Int32ul,
    "max_entries" / Int32ul,
    "map_flags" / Int32ul,
    "map_fd" / Int32ul,
    "flags" / Int64ul,
    "buf" / Bytes(this.buf_len),
)
EBPF_MAP_HDR_SIZE: Final = 40


def map_buf_len(key_size: int, value_size: int) -> int:
    """The RFC's buf size for element commands: key_size + max(key_size, value_size)."""
    return key_size + max(key_size, value_size)


def split_map_buf(body: Any) -> tuple[bytes, bytes]:
    """(key, value-or-next-key) from a parsed map body, checked against its sizes.

    Raises RemoteProtocolError when buf is shorter than the key, or than key + value
    for UPDATE_ELEM: the device must not read past what the driver sent.
    """
    buf, key_size = bytes(body.buf), int(body.key_size)
    need = key_size
    if body.cmd == VirtioNetBpfMapCmd.VIRTIO_NET_BPF_CMD_UPDATE_ELEM:
        need += int(body.value_size)
    if len(buf) < need:
        raise RemoteProtocolError(f"map command {int(body.cmd)}: buf_len {len(buf)} "
                                  f"shorter than the {need} bytes it needs", "5.1.6.5")
    return buf[:key_size], buf[key_size:]


# ----------------------------------------------------------------------------------------
# Results (device-written, after the ack byte)


class XdpProgState(IntEnum):
    """`state` in the QUERY result, after netdevsim's bound-program states."""

    NONE = 0  # no program offloaded
    XLATED = 1  # verified and translated, not running
    LOADED = 2  # attached and running on the receive path


class XdpEngine(IntEnum):
    """`engine` in the QUERY result: where the device runs the program."""

    NONE = 0
    INTERP = 1
    JIT = 2
    KERNEL = 3
    SMARTNIC = 4


#: UNSET_OFFLOAD, FREE_MAP, UPDATE_ELEM, DELETE_ELEM: le32 errno only.
virtio_net_ebpf_result: Any = Struct("errno" / Int32ul)

#: SET_OFFLOAD: le32 errno; le32 log_len; char log[log_len] (the verifier log, UTF-8,
#: possibly truncated to the driver's buffer; present on success and on rejection).
virtio_net_ebpf_prog_set_result: Any = Struct(
    "errno" / Int32ul,
    "log_len" / Rebuild(Int32ul, len_(this.log)),
    "log" / Bytes(this.log_len),
)

#: QUERY: le32 errno, then when errno is 0 a 64-byte info block:
#:   4 u8 state (XdpProgState)  5 u8 engine (XdpEngine)  6 le16 flags (bit 0: gpl)
#:   8 le32 insn_cnt (as sent)  12 le32 xlated_cnt (after the device rebound map handles)
#:   16 le32 image_len (bytes of the translated image; 0 for the interpreter)
#:   20 le32 map_cnt  24 u8 tag[8] (the kernel's program tag)
#:   32 u8 digest[32] (SHA-256 of the instructions as sent)
virtio_net_ebpf_prog_info: Any = Struct(
    "state" / Int8ul,
    "engine" / Int8ul,
    "flags" / Int16ul,
    "insn_cnt" / Int32ul,
    "xlated_cnt" / Int32ul,
    "image_len" / Int32ul,
    "map_cnt" / Int32ul,
    "tag" / Bytes(8),
    "digest" / Bytes(32),
)
XDP_PROG_INFO_GPL: Final = 1
virtio_net_ebpf_prog_query_result: Any = Struct(
    "errno" / Int32ul,
    "info" / If(this.errno == 0, virtio_net_ebpf_prog_info),
)

#: CREATE_MAP: le32 errno; le32 map_handle (valid when errno is 0).
virtio_net_ebpf_map_create_result: Any = Struct(
    "errno" / Int32ul,
    "map_handle" / Int32ul,
)

#: LOOKUP_ELEM: le32 errno; value[value_size] when errno is 0.
#: GET_FIRST / GET_NEXT: le32 errno; key[key_size] when errno is 0 (ENOENT at the end).
#: Parse parameter `size`: the map's value_size or key_size.
virtio_net_ebpf_map_data_result: Any = Struct(
    "errno" / Int32ul,
    "data" / If(this.errno == 0, Bytes(this._params.size)),
)

_P, _M = VirtioNetBpfProgCmd, VirtioNetBpfMapCmd
_C = VirtioNetCtrlEbpf
#: The result layout of every (command, sub-command).
EBPF_RESULTS: Final[dict[tuple[int, int], Any]] = {
    (_C.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_SET_OFFLOAD):
        virtio_net_ebpf_prog_set_result,
    (_C.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_UNSET_OFFLOAD): virtio_net_ebpf_result,
    (_C.VIRTIO_NET_CTRL_EBPF_PROG, _P.VIRTIO_NET_BPF_CMD_QUERY): virtio_net_ebpf_prog_query_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_CREATE_MAP):
        virtio_net_ebpf_map_create_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_FREE_MAP): virtio_net_ebpf_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_UPDATE_ELEM): virtio_net_ebpf_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_LOOKUP_ELEM):
        virtio_net_ebpf_map_data_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_DELETE_ELEM): virtio_net_ebpf_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_GET_FIRST):
        virtio_net_ebpf_map_data_result,
    (_C.VIRTIO_NET_CTRL_EBPF_MAP, _M.VIRTIO_NET_BPF_CMD_GET_NEXT):
        virtio_net_ebpf_map_data_result,
}


def ebpf_result_struct(command: int, cmd: int) -> Any:
    """The result layout for a command and its body's `cmd`; unknown pairs are the
    peer's error, never a KeyError."""
    try:
        return EBPF_RESULTS[(command, cmd)]
    except KeyError:
        raise RemoteProtocolError(f"unknown ebpf command {command} sub-command {cmd}",
                                  "5.1.6.5") from None


# ----------------------------------------------------------------------------------------
# Capabilities (config space from offset 28) and profiles


class BpfMapType(IntEnum):
    """The BPF_MAP_TYPE ids the profiles name (Linux uapi enum bpf_map_type)."""

    BPF_MAP_TYPE_HASH = 1
    BPF_MAP_TYPE_ARRAY = 2
    BPF_MAP_TYPE_PROG_ARRAY = 3
    BPF_MAP_TYPE_PERCPU_HASH = 5
    BPF_MAP_TYPE_PERCPU_ARRAY = 6
    BPF_MAP_TYPE_LRU_HASH = 9
    BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
    BPF_MAP_TYPE_LPM_TRIE = 11
    BPF_MAP_TYPE_DEVMAP = 14
    BPF_MAP_TYPE_DEVMAP_HASH = 25
    BPF_MAP_TYPE_RINGBUF = 27


#: Width of the helper bitmap in config space: le64 xdp_helpers[4], bit i of word i / 64
#: for helper id i.  Every helper id the kernel has (211 in Linux 6.18) fits.
HELPER_MASK_BITS: Final = 256
HELPER_MASK_WORDS: Final = HELPER_MASK_BITS // 64
#: Width of the map type mask (le32 xdp_map_types).
MAP_TYPE_MASK_BITS: Final = 32


def _mask(ids: Iterable[int], width: int, what: str) -> int:
    ids = set(ids)
    wide = sorted(i for i in ids if not 0 <= i < width)
    if wide:
        raise LocalProtocolError(f"{what} ids {wide} do not fit the {width}-bit mask")
    return sum(1 << i for i in ids)


def _ids(mask: int) -> frozenset[int]:
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)


def helper_words(mask: int) -> list[int]:
    """The 256-bit helper mask as the four le64 words of `xdp_helpers`, word 0 first."""
    return [mask >> (64 * w) & (2**64 - 1) for w in range(HELPER_MASK_WORDS)]


def helper_mask(words: Iterable[int]) -> int:
    """The helper mask from the four le64 words of `xdp_helpers`."""
    return sum(int(word) << (64 * w) for w, word in enumerate(words))


@dataclass(frozen=True)
class XdpCapabilities:
    """What a device offers for offloaded XDP, as read from or written to config space.

    `xdp_max_maps` counts maps held by the device at once; `xdp_max_map_mem_kib` caps
    their summed storage, max_entries * (key_size + value_size) per map;
    `xdp_helpers` is the 256-bit helper mask.
    """

    xdp_max_insns: int
    xdp_max_maps: int
    xdp_max_map_mem_kib: int
    xdp_map_types: int
    xdp_helpers: int
    xdp_abi_version: int = XDP_ABI_VERSION
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)

    @classmethod
    def build(cls, name: str, *, max_insns: int, max_maps: int, max_map_mem_kib: int,
              map_types: Iterable[int], helpers: Iterable[int],
              description: str = "") -> XdpCapabilities:
        """Capabilities from lists of ids (LocalProtocolError for an id the masks cannot
        hold)."""
        return cls(max_insns, max_maps, max_map_mem_kib,
                   _mask(map_types, MAP_TYPE_MASK_BITS, "map type"),
                   _mask(helpers, HELPER_MASK_BITS, "helper"), XDP_ABI_VERSION, name,
                   description)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str = "") -> XdpCapabilities:
        """From a parsed `virtio_net_config` (or any mapping with the xdp_* fields;
        `xdp_helpers` as its four le64 words or as one integer)."""
        helpers = config["xdp_helpers"]
        mask = int(helpers) if isinstance(helpers, int) else helper_mask(helpers)
        return cls(int(config["xdp_max_insns"]), int(config["xdp_max_maps"]),
                   int(config["xdp_max_map_mem_kib"]), int(config["xdp_map_types"]),
                   mask, int(config["xdp_abi_version"]), name)

    def as_profile(self, otherwise: str) -> XdpCapabilities:
        """These capabilities named after the profile whose fields they equal (`rfc2019`,
        `host`, `smartnic`), else `otherwise`: config space carries fields, no name."""
        known = [p.name for p in PROFILES.values() if p == self]
        return replace(self, name=known[0] if known else otherwise)

    def to_config(self) -> dict[str, Any]:
        """The xdp_* fields, ready to merge into a `virtio_net_config` build."""
        out: dict[str, Any] = {f: getattr(self, f) for f in CONFIG_FIELDS}
        out["xdp_helpers"] = helper_words(self.xdp_helpers)
        return out

    @property
    def map_type_ids(self) -> frozenset[int]:
        return _ids(self.xdp_map_types)

    @property
    def helper_ids(self) -> frozenset[int]:
        """The offloadable helper ids."""
        return _ids(self.xdp_helpers)

    def allows_map_type(self, map_type: int) -> bool:
        return 0 <= map_type < MAP_TYPE_MASK_BITS and bool(self.xdp_map_types >> map_type & 1)

    def allows_helper(self, helper_id: int) -> bool:
        return 0 <= helper_id < HELPER_MASK_BITS and bool(self.xdp_helpers >> helper_id & 1)

    def shortfalls(self, need: XdpCapabilities) -> list[str]:
        """Where these capabilities fall short of `need` (empty: they cover it).

        The migration check: a destination must cover what the source offered.
        """
        out = []
        for f in ("xdp_max_insns", "xdp_max_maps", "xdp_max_map_mem_kib"):
            if getattr(self, f) < getattr(need, f):
                out.append(f"{f} {getattr(self, f)} < {getattr(need, f)}")
        for f, what in (("xdp_map_types", "map types"), ("xdp_helpers", "helpers")):
            missing = _ids(getattr(need, f) & ~getattr(self, f))
            if missing:
                out.append(f"{what} missing: {sorted(missing)}")
        if self.xdp_abi_version != need.xdp_abi_version:
            out.append(f"xdp_abi_version {self.xdp_abi_version} != {need.xdp_abi_version}")
        return out


CONFIG_FIELDS: Final = ("xdp_max_insns", "xdp_max_maps", "xdp_max_map_mem_kib",
                        "xdp_map_types", "xdp_abi_version", "xdp_helpers")

_T = BpfMapType
#: The 2019 RFC: HASH and ARRAY maps (patch 17/18), the helper allow-list of patch
#: 18/18 without csum_update (40), which the kernel refuses to XDP programs ("program of
#: this type cannot use helper bpf_csum_update#40"), and QEMU's 4096-instruction buffer.
#: The RFC set no map limits (a TODO in its cover letter); we pick 16 maps and 4 MiB.
RFC2019: Final = XdpCapabilities.build(
    "rfc2019", max_insns=4096, max_maps=16, max_map_mem_kib=4 * 1024,
    map_types=(_T.BPF_MAP_TYPE_HASH, _T.BPF_MAP_TYPE_ARRAY),
    helpers=(1, 2, 3, 5, 7, 44, 54, 65, 105, 106),
    description="the 2019 RFC's offload: HASH and ARRAY, ten helpers, 4096 insns")

#: What vxdp's host core runs for a guest: 1,000,000 instructions (the kernel's
#: BPF_COMPLEXITY_LIMIT_INSNS), 64 maps, 1 GiB; every XDP helper the core implements
#: except tail_call (12: there is one program slot per device, so a PROG_ARRAY could
#: never be filled), the ring buffer and perf_event_output (130-133, 25: no command
#: reads records back), fib_lookup (69: it answers from the host's routing table, which
#: is not the guest's to read) and bpf_loop (181: its callback is verified from the
#: program's BTF, which SET_OFFLOAD does not carry);
#: key/value maps, the LPM trie and device maps, but no per-CPU maps (their values are
#: one per host CPU, which the guest cannot size or should not learn).
HOST: Final = XdpCapabilities.build(
    "host", max_insns=1_000_000, max_maps=64, max_map_mem_kib=1024 * 1024,
    map_types=(_T.BPF_MAP_TYPE_ARRAY, _T.BPF_MAP_TYPE_HASH, _T.BPF_MAP_TYPE_LRU_HASH,
               _T.BPF_MAP_TYPE_LPM_TRIE, _T.BPF_MAP_TYPE_DEVMAP,
               _T.BPF_MAP_TYPE_DEVMAP_HASH),
    helpers=(1, 2, 3, 5, 6, 7, 8, 23, 28, 44, 51, 54, 65, 105, 106, 118, 125, 188, 189,
             190),
    description="everything the host's C core runs for a guest")

#: The SmartNIC model (`vxdp smartnic`, docs/smartnic.md), after Netronome's NFP, the
#: one NIC Linux offloads XDP to: only HASH and ARRAY maps (the kernel offloads no other
#: type); the helpers NFP's verifier hook takes for XDP (drivers/net/ethernet/netronome/
#: nfp/bpf/verifier.c: map lookup, update and delete, get_prandom_u32, xdp_adjust_head,
#: xdp_adjust_tail; its perf_event_output has no map type here to write to); 2800
#: instructions, what an Agilio NIC was measured to hold (CentaurusInfra/mizar's XDP
#: offload notes), since NFP sizes programs by its code store, not by a BPF count; at
#: most 8 maps in 2 MiB of NIC memory.  The NIC's own limits past these (its code store,
#: stack, 64-byte map elements, what its translator maps) are vxdp.bpf.nic.machine's:
#: no config field carries them, and the NIC refuses with its own errno.
SMARTNIC: Final = XdpCapabilities.build(
    "smartnic", max_insns=2800, max_maps=8, max_map_mem_kib=2 * 1024,
    map_types=(_T.BPF_MAP_TYPE_HASH, _T.BPF_MAP_TYPE_ARRAY),
    helpers=(1, 2, 3, 7, 44, 65),
    description="an NFP-like SmartNIC: HASH and ARRAY, six helpers, 2800 insns, small maps")

PROFILES: Final[dict[str, XdpCapabilities]] = {
    p.name: p for p in (RFC2019, HOST, SMARTNIC)}


def profile(name: str) -> XdpCapabilities:
    """A capability profile by name (`rfc2019`, `host`, `smartnic`)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LocalProtocolError(f"unknown xdp capability profile {name!r}; "
                                 f"known: {', '.join(sorted(PROFILES))}") from None


__all__ = [
    "BPF_INSN_SIZE",
    "CONFIG_FIELDS",
    "EBPF_MAP_HDR_SIZE",
    "EBPF_PROG_HDR_SIZE",
    "EBPF_RESULTS",
    "HELPER_MASK_BITS",
    "HELPER_MASK_WORDS",
    "HOST",
    "MAP_TYPE_MASK_BITS",
    "PROFILES",
    "RFC2019",
    "SMARTNIC",
    "VIRTIO_NET_CTRL_EBPF",
    "VIRTIO_NET_CTRL_EBPF_RFC",
    "XDP_ABI_VERSION",
    "XDP_PROG_INFO_GPL",
    "BpfMapType",
    "VirtioNetBpfMapCmd",
    "VirtioNetBpfProgCmd",
    "VirtioNetCtrlEbpf",
    "XdpCapabilities",
    "XdpEngine",
    "XdpProgState",
    "ebpf_ctrl_class",
    "ebpf_result_struct",
    "helper_mask",
    "helper_words",
    "map_buf_len",
    "profile",
    "split_map_buf",
    "virtio_net_ctrl_ebpf_map",
    "virtio_net_ctrl_ebpf_prog",
    "virtio_net_ebpf_map_create_result",
    "virtio_net_ebpf_map_data_result",
    "virtio_net_ebpf_prog_info",
    "virtio_net_ebpf_prog_query_result",
    "virtio_net_ebpf_prog_set_result",
    "virtio_net_ebpf_result",
]
