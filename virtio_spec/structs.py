"""Virtqueue and virtio-net structures as construct `Struct`s, named and spelled as the spec.

virtio 1.3 §2.7 (split virtqueue), §2.8 (packed virtqueue), §5.1.4 (virtio-net config
space) and §5.1.6 (virtio-net header).  Every multi-byte field is little-endian: vxdp only
speaks VERSION_1 (modern) devices, where "le16/le32/le64" is the wire order (§1.4).

The construct objects are built once at import.  Structures whose length depends on the
queue take it as a *parse/build parameter*, e.g.::

    virtq_avail.parse(raw, queue_size=256, event_idx=True)
    virtq_used.build(value, queue_size=256, event_idx=False)

Flags are plain integers in the parsed containers (the ring engines do bit arithmetic on
them); the `IntFlag` / `IntEnum` classes here name the bits.

The size helpers are the authority on how much guest memory each part occupies: the spec
sizes include the event-index words whether or not VIRTIO_F_EVENT_IDX is negotiated.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Any, Final

from construct import (
    Array,
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Struct,
    this,
)

from .errors import RingError
from .features import VirtioNetFeature as _N

# ----------------------------------------------------------------------------------------
# Flags (virtio 1.3 §2.7.5, §2.7.6, §2.7.8, §2.8.1, §2.8.10)


class VirtqDescFlag(IntFlag):
    """`flags` of a split (`virtq_desc`) or packed (`pvirtq_desc`) descriptor.

    virtio 1.3 §2.7.5: NEXT, WRITE, INDIRECT.  §2.8.1: AVAIL and USED exist only in the
    packed ring, where the driver marks a descriptor available with AVAIL = its wrap
    counter and USED = its inverse, and the device marks it used with both equal to its
    own wrap counter.
    """

    VIRTQ_DESC_F_NEXT = 1
    VIRTQ_DESC_F_WRITE = 2
    VIRTQ_DESC_F_INDIRECT = 4
    VIRTQ_DESC_F_AVAIL = 1 << 7
    VIRTQ_DESC_F_USED = 1 << 15


class VirtqAvailFlag(IntFlag):
    """`virtq_avail.flags` (virtio 1.3 §2.7.6): the driver asks for no used-buffer
    notifications.  Ignored by the device when VIRTIO_F_EVENT_IDX is negotiated."""

    VIRTQ_AVAIL_F_NO_INTERRUPT = 1


class VirtqUsedFlag(IntFlag):
    """`virtq_used.flags` (virtio 1.3 §2.7.8): the device asks for no available-buffer
    notifications.  Ignored by the driver when VIRTIO_F_EVENT_IDX is negotiated."""

    VIRTQ_USED_F_NO_NOTIFY = 1


class RingEventFlags(IntEnum):
    """`pvirtq_event_suppress.flags.desc_event_flags`, a 2-bit value (virtio 1.3 §2.8.14).

    DESC (notify at a given ring offset and wrap) is only valid with VIRTIO_F_EVENT_IDX;
    the value 3 is reserved.
    """

    RING_EVENT_FLAGS_ENABLE = 0
    RING_EVENT_FLAGS_DISABLE = 1
    RING_EVENT_FLAGS_DESC = 2


VIRTQ_DESC_F_NEXT: Final = VirtqDescFlag.VIRTQ_DESC_F_NEXT
VIRTQ_DESC_F_WRITE: Final = VirtqDescFlag.VIRTQ_DESC_F_WRITE
VIRTQ_DESC_F_INDIRECT: Final = VirtqDescFlag.VIRTQ_DESC_F_INDIRECT
VIRTQ_DESC_F_AVAIL: Final = VirtqDescFlag.VIRTQ_DESC_F_AVAIL
VIRTQ_DESC_F_USED: Final = VirtqDescFlag.VIRTQ_DESC_F_USED
VIRTQ_AVAIL_F_NO_INTERRUPT: Final = VirtqAvailFlag.VIRTQ_AVAIL_F_NO_INTERRUPT
VIRTQ_USED_F_NO_NOTIFY: Final = VirtqUsedFlag.VIRTQ_USED_F_NO_NOTIFY
RING_EVENT_FLAGS_ENABLE: Final = RingEventFlags.RING_EVENT_FLAGS_ENABLE
RING_EVENT_FLAGS_DISABLE: Final = RingEventFlags.RING_EVENT_FLAGS_DISABLE
RING_EVENT_FLAGS_DESC: Final = RingEventFlags.RING_EVENT_FLAGS_DESC

# ----------------------------------------------------------------------------------------
# Sizes and alignment (virtio 1.3 §2.7 table "Virtqueue Part Alignment Size", §2.8.10.1)

#: Largest queue size a split or packed ring may have (virtio 1.3 §2.7, §2.8: 32768).
MAX_QUEUE_SIZE: Final = 32768

DESC_TABLE_ALIGN: Final = 16
AVAIL_RING_ALIGN: Final = 2
USED_RING_ALIGN: Final = 4
PACKED_RING_ALIGN: Final = 16
EVENT_SUPPRESS_ALIGN: Final = 4
#: `pvirtq_event_suppress` is two le16 words: 4 bytes (virtio 1.3 §2.8.10.1).
EVENT_SUPPRESS_SIZE: Final = 4
#: One descriptor, split or packed: le64 + le32 + le16 + le16 = 16 bytes.
DESC_SIZE: Final = 16
#: One `virtq_used_elem`: le32 id + le32 len = 8 bytes.
USED_ELEM_SIZE: Final = 8


def desc_table_size(queue_size: int) -> int:
    """Split descriptor table: 16 * Q bytes, aligned to 16 (virtio 1.3 §2.7)."""
    return DESC_SIZE * queue_size


def avail_ring_size(queue_size: int) -> int:
    """Split available ring: 6 + 2 * Q bytes, aligned to 2 (virtio 1.3 §2.7).

    flags (2) + idx (2) + ring[Q] (2 * Q) + used_event (2).
    """
    return 6 + 2 * queue_size


def used_ring_size(queue_size: int) -> int:
    """Split used ring: 6 + 8 * Q bytes, aligned to 4 (virtio 1.3 §2.7).

    flags (2) + idx (2) + ring[Q] (8 * Q) + avail_event (2).
    """
    return 6 + USED_ELEM_SIZE * queue_size


def packed_ring_size(queue_size: int) -> int:
    """Packed descriptor ring: 16 * Q bytes, aligned to 16 (virtio 1.3 §2.8.10.1).

    The driver and device event suppression areas are 4 bytes each, aligned to 4
    (`EVENT_SUPPRESS_SIZE`, `EVENT_SUPPRESS_ALIGN`).
    """
    return DESC_SIZE * queue_size


def check_queue_size(queue_size: int, *, packed: bool) -> None:
    """Raise RingError unless `queue_size` is a valid size for the ring layout.

    virtio 1.3 §2.7: a split queue's size is a power of 2, at most 32768.
    virtio 1.3 §2.8: a packed queue's size need not be a power of 2, at most 32768.
    Zero means "queue not available" and is never a usable size.
    """
    clause = "2.8" if packed else "2.7"
    if not 1 <= queue_size <= MAX_QUEUE_SIZE:
        raise RingError(f"queue size {queue_size} outside 1..{MAX_QUEUE_SIZE}", clause)
    if not packed and queue_size & (queue_size - 1):
        raise RingError(f"split queue size {queue_size} is not a power of 2", clause)


# ----------------------------------------------------------------------------------------
# Split virtqueue (virtio 1.3 §2.7.5, §2.7.6, §2.7.8)

#: struct virtq_desc (virtio 1.3 §2.7.5), 16 bytes: le64 addr; le32 len; le16 flags;
#: le16 next.  Also the element of an indirect table (§2.7.5.3), whose length is a
#: multiple of 16.
virtq_desc: Any = Struct(
    "addr" / Int64ul,
    "len" / Int32ul,
    "flags" / Int16ul,
    "next" / Int16ul,
)

#: struct virtq_avail (virtio 1.3 §2.7.6), 6 + 2 * Q bytes in memory.
#: Parameters: `queue_size` (Q) and `event_idx` (VIRTIO_F_EVENT_IDX negotiated: parse
#: and build `used_event`; otherwise it is None and not touched).
virtq_avail: Any = Struct(
    "flags" / Int16ul,
    "idx" / Int16ul,
    "ring" / Array(this._params.queue_size, Int16ul),
    "used_event" / If(this._params.event_idx, Int16ul),
)

#: struct virtq_used_elem (virtio 1.3 §2.7.8), 8 bytes: le32 id (head of the used
#: chain); le32 len (bytes written into the device-writable part).
virtq_used_elem: Any = Struct(
    "id" / Int32ul,
    "len" / Int32ul,
)

#: struct virtq_used (virtio 1.3 §2.7.8), 6 + 8 * Q bytes in memory.
#: Parameters as for `virtq_avail`; `avail_event` exists only with `event_idx`.
virtq_used: Any = Struct(
    "flags" / Int16ul,
    "idx" / Int16ul,
    "ring" / Array(this._params.queue_size, virtq_used_elem),
    "avail_event" / If(this._params.event_idx, Int16ul),
)

# ----------------------------------------------------------------------------------------
# Packed virtqueue (virtio 1.3 §2.8.13, §2.8.14)

#: struct pvirtq_desc (virtio 1.3 §2.8.13), 16 bytes: le64 addr; le32 len; le16 id;
#: le16 flags.  Note the order differs from virtq_desc: id before flags.
pvirtq_desc: Any = Struct(
    "addr" / Int64ul,
    "len" / Int32ul,
    "id" / Int16ul,
    "flags" / Int16ul,
)

#: struct pvirtq_event_suppress (virtio 1.3 §2.8.14, used as §2.8.10 describes), 4 bytes:
#: le16 desc {desc_event_off:15, desc_event_wrap:1}; le16 flags {desc_event_flags:2,
#: reserved:14}.  Bit fields are allocated from the least significant bit, so
#: desc_event_wrap is bit 15 of the first le16.
pvirtq_event_suppress: Any = Struct(
    "desc" / ByteSwapped(BitStruct(
        "desc_event_wrap" / BitsInteger(1),
        "desc_event_off" / BitsInteger(15),
    )),
    "flags" / ByteSwapped(BitStruct(
        "reserved" / BitsInteger(14),
        "desc_event_flags" / BitsInteger(2),
    )),
)

# ----------------------------------------------------------------------------------------
# virtio-net header (virtio 1.3 §5.1.6)


class VirtioNetHdrFlag(IntFlag):
    """`virtio_net_hdr.flags` (virtio 1.3 §5.1.6).  The driver MUST NOT set DATA_VALID or
    RSC_INFO (§5.1.6.2.1); the device ignores flags it does not know (§5.1.6.2.2)."""

    VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
    VIRTIO_NET_HDR_F_DATA_VALID = 2
    VIRTIO_NET_HDR_F_RSC_INFO = 4


class VirtioNetHdrGso(IntEnum):
    """The low 7 bits of `virtio_net_hdr.gso_type` (virtio 1.3 §5.1.6); bit 7 is the
    VIRTIO_NET_HDR_GSO_ECN flag, allowed only with VIRTIO_NET_F_HOST_ECN."""

    VIRTIO_NET_HDR_GSO_NONE = 0
    VIRTIO_NET_HDR_GSO_TCPV4 = 1
    VIRTIO_NET_HDR_GSO_UDP = 3
    VIRTIO_NET_HDR_GSO_TCPV6 = 4
    VIRTIO_NET_HDR_GSO_UDP_L4 = 5


VIRTIO_NET_HDR_GSO_ECN: Final = 0x80


class VirtioNetHashReport(IntEnum):
    """`virtio_net_hdr.hash_report` (virtio 1.3 §5.1.6.4, "Hash reporting for incoming packets").

    VIRTIO_NET_HASH_TYPE_X == 1 << (VIRTIO_NET_HASH_REPORT_X - 1).
    """

    VIRTIO_NET_HASH_REPORT_NONE = 0
    VIRTIO_NET_HASH_REPORT_IPv4 = 1
    VIRTIO_NET_HASH_REPORT_TCPv4 = 2
    VIRTIO_NET_HASH_REPORT_UDPv4 = 3
    VIRTIO_NET_HASH_REPORT_IPv6 = 4
    VIRTIO_NET_HASH_REPORT_TCPv6 = 5
    VIRTIO_NET_HASH_REPORT_UDPv6 = 6
    VIRTIO_NET_HASH_REPORT_IPv6_EX = 7
    VIRTIO_NET_HASH_REPORT_TCPv6_EX = 8
    VIRTIO_NET_HASH_REPORT_UDPv6_EX = 9


#: 12 bytes: u8 flags + u8 gso_type + 5 * le16 (hdr_len, gso_size, csum_start,
#: csum_offset, num_buffers).  virtio 1.3 §5.1.6.
VIRTIO_NET_HDR_SIZE: Final = 12
#: 20 bytes with VIRTIO_NET_F_HASH_REPORT: 12 + le32 hash_value + le16 hash_report +
#: le16 padding_reserved (§5.1.6.3.1: "20 bytes if VIRTIO_NET_F_HASH_REPORT is negotiated").
VIRTIO_NET_HDR_HASH_SIZE: Final = 20
#: 10 bytes: the legacy header without VIRTIO_NET_F_MRG_RXBUF had no num_buffers (§5.1.6.1).
VIRTIO_NET_HDR_LEGACY_SIZE: Final = 10

#: struct virtio_net_hdr as a VERSION_1 device uses it without HASH_REPORT (12 bytes).
virtio_net_hdr: Any = Struct(
    "flags" / Int8ul,
    "gso_type" / Int8ul,
    "hdr_len" / Int16ul,
    "gso_size" / Int16ul,
    "csum_start" / Int16ul,
    "csum_offset" / Int16ul,
    "num_buffers" / Int16ul,
)

#: struct virtio_net_hdr with the VIRTIO_NET_F_HASH_REPORT fields (20 bytes); Linux
#: calls this layout `virtio_net_hdr_v1_hash`.
virtio_net_hdr_hash: Any = Struct(
    *virtio_net_hdr.subcons,
    "hash_value" / Int32ul,
    "hash_report" / Int16ul,
    "padding_reserved" / Int16ul,
)


def net_hdr_struct(hash_report: bool) -> Any:
    """The header layout for the negotiated features: 20 bytes with HASH_REPORT, else 12."""
    return virtio_net_hdr_hash if hash_report else virtio_net_hdr


def net_hdr_size(hash_report: bool) -> int:
    """virtio 1.3 §5.1.6.3.1: 20 bytes if VIRTIO_NET_F_HASH_REPORT, 12 if not."""
    return VIRTIO_NET_HDR_HASH_SIZE if hash_report else VIRTIO_NET_HDR_SIZE


# ----------------------------------------------------------------------------------------
# virtio-net configuration space (virtio 1.3 §5.1.4) and vxdp's XDP capabilities


class VirtioNetStatus(IntFlag):
    """`virtio_net_config.status` (virtio 1.3 §5.1.4), present with VIRTIO_NET_F_STATUS."""

    VIRTIO_NET_S_LINK_UP = 1
    VIRTIO_NET_S_ANNOUNCE = 2


class VirtioNetHashType(IntFlag):
    """Supported/enabled hash types (virtio 1.3 §5.1.6.4.3, "Supported/enabled hash types")."""

    VIRTIO_NET_HASH_TYPE_IPv4 = 1 << 0
    VIRTIO_NET_HASH_TYPE_TCPv4 = 1 << 1
    VIRTIO_NET_HASH_TYPE_UDPv4 = 1 << 2
    VIRTIO_NET_HASH_TYPE_IPv6 = 1 << 3
    VIRTIO_NET_HASH_TYPE_TCPv6 = 1 << 4
    VIRTIO_NET_HASH_TYPE_UDPv6 = 1 << 5
    VIRTIO_NET_HASH_TYPE_IP_EX = 1 << 6
    VIRTIO_NET_HASH_TYPE_TCP_EX = 1 << 7
    VIRTIO_NET_HASH_TYPE_UDP_EX = 1 << 8


class VirtioNetHashTunnelType(IntFlag):
    """Encapsulation types for inner header hash (virtio 1.3 §5.1.6.4, VIRTIO_NET_F_HASH_TUNNEL)."""

    VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_2784 = 1 << 0
    VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_2890 = 1 << 1
    VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_7676 = 1 << 2
    VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_UDP = 1 << 3
    VIRTIO_NET_HASH_TUNNEL_TYPE_VXLAN = 1 << 4
    VIRTIO_NET_HASH_TUNNEL_TYPE_VXLAN_GPE = 1 << 5
    VIRTIO_NET_HASH_TUNNEL_TYPE_GENEVE = 1 << 6
    VIRTIO_NET_HASH_TUNNEL_TYPE_IPIP = 1 << 7
    VIRTIO_NET_HASH_TUNNEL_TYPE_NVGRE = 1 << 8


#: struct virtio_net_config (virtio 1.3 §5.1.4), 28 bytes, followed by vxdp's XDP
#: offload capabilities (docs/offload-spec.md), present when VIRTIO_NET_F_XDP_OFFLOAD is
#: offered; 80 bytes in all.  Offsets:
#:
#:  0 mac[6]  6 status  8 max_virtqueue_pairs  10 mtu  12 speed  16 duplex
#:  17 rss_max_key_size  18 rss_max_indirection_table_length  20 supported_hash_types
#:  24 supported_tunnel_types | 28 xdp_max_insns  32 xdp_max_maps  36 xdp_max_map_mem_kib
#:  40 xdp_map_types  44 xdp_abi_version  48 xdp_helpers[4] (le64 each: the 256-bit helper
#:  bitmap, naturally aligned as every field of virtio_net_config is)
#:
#: duplex: the field text says 0x01 full / 0x00 half, §5.1.4.1 says the reverse; readers
#: should treat anything but 0x00/0x01 as unknown (§5.1.4.2).
virtio_net_config: Any = Struct(
    "mac" / Bytes(6),
    "status" / Int16ul,
    "max_virtqueue_pairs" / Int16ul,
    "mtu" / Int16ul,
    "speed" / Int32ul,
    "duplex" / Int8ul,
    "rss_max_key_size" / Int8ul,
    "rss_max_indirection_table_length" / Int16ul,
    "supported_hash_types" / Int32ul,
    "supported_tunnel_types" / Int32ul,
    "xdp_max_insns" / Int32ul,
    "xdp_max_maps" / Int32ul,
    "xdp_max_map_mem_kib" / Int32ul,
    "xdp_map_types" / Int32ul,
    "xdp_abi_version" / Int32ul,
    "xdp_helpers" / Array(4, Int64ul),
)

#: Size of the standard part (through supported_tunnel_types), virtio 1.3 §5.1.4.
VIRTIO_NET_CONFIG_STD_SIZE: Final = 28
#: Size with the XDP capability fields: 28 + 5 * 4 + 4 * 8 = 80.
VIRTIO_NET_CONFIG_SIZE: Final = 80


def _offsets(struct: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    at = 0
    for sub in struct.subcons:
        out[sub.name] = at
        at += sub.sizeof()
    return out


def virtio_net_config_zero() -> dict[str, Any]:
    """Every `virtio_net_config` field at zero, ready to `build` (a field no offered
    feature makes exist reads as zero, virtio 1.3 §5.1.4)."""
    out: dict[str, Any] = {}
    for sub in virtio_net_config.subcons:
        out[sub.name] = bytes(sub.sizeof()) if sub.name == "mac" else (
            [0] * sub.count if sub.name == "xdp_helpers" else 0)
    return out


#: Byte offset of every `virtio_net_config` field, for serving (offset, length) reads.
VIRTIO_NET_CONFIG_OFFSETS: Final[dict[str, int]] = _offsets(virtio_net_config)

#: The feature bits under which each config field exists (any one of them suffices);
#: `mac` always exists but is only valid with VIRTIO_NET_F_MAC (virtio 1.3 §5.1.4).
VIRTIO_NET_CONFIG_FIELD_FEATURES: Final[dict[str, tuple[int, ...]]] = {
    "mac": (_N.VIRTIO_NET_F_MAC,),
    "status": (_N.VIRTIO_NET_F_STATUS,),
    "max_virtqueue_pairs": (_N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_RSS),
    "mtu": (_N.VIRTIO_NET_F_MTU,),
    "speed": (_N.VIRTIO_NET_F_SPEED_DUPLEX,),
    "duplex": (_N.VIRTIO_NET_F_SPEED_DUPLEX,),
    "rss_max_key_size": (_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT),
    "rss_max_indirection_table_length": (_N.VIRTIO_NET_F_RSS,),
    "supported_hash_types": (_N.VIRTIO_NET_F_RSS, _N.VIRTIO_NET_F_HASH_REPORT),
    "supported_tunnel_types": (_N.VIRTIO_NET_F_HASH_TUNNEL,),
    **{name: (_N.VIRTIO_NET_F_XDP_OFFLOAD,) for name in (
        "xdp_max_insns", "xdp_max_maps", "xdp_max_map_mem_kib", "xdp_map_types",
        "xdp_abi_version", "xdp_helpers")},
}




def config_ranges(features: int) -> list[tuple[int, int]]:
    """(offset, length) runs of `virtio_net_config` that exist for a device offering
    `features`, adjacent fields merged; mac always exists (§5.1.4).  A driver reads these
    and nothing else: §2.5.1 says it MUST check that a feature is offered before accessing
    the optional field it governs, so a gap (e.g. max_virtqueue_pairs without MQ between
    status and mtu) is never touched."""
    names = list(VIRTIO_NET_CONFIG_OFFSETS)
    runs: list[tuple[int, int]] = []
    for i, name in enumerate(names):
        if name != "mac" and not any(features >> bit & 1
                                     for bit in VIRTIO_NET_CONFIG_FIELD_FEATURES[name]):
            continue
        off, size = VIRTIO_NET_CONFIG_OFFSETS[name], virtio_net_config.subcons[i].sizeof()
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1] = (runs[-1][0], runs[-1][1] + size)
        else:
            runs.append((off, size))
    return runs

__all__ = [
    "AVAIL_RING_ALIGN",
    "DESC_SIZE",
    "DESC_TABLE_ALIGN",
    "EVENT_SUPPRESS_ALIGN",
    "EVENT_SUPPRESS_SIZE",
    "MAX_QUEUE_SIZE",
    "PACKED_RING_ALIGN",
    "RING_EVENT_FLAGS_DESC",
    "RING_EVENT_FLAGS_DISABLE",
    "RING_EVENT_FLAGS_ENABLE",
    "USED_ELEM_SIZE",
    "USED_RING_ALIGN",
    "VIRTIO_NET_CONFIG_FIELD_FEATURES",
    "VIRTIO_NET_CONFIG_OFFSETS",
    "VIRTIO_NET_CONFIG_SIZE",
    "VIRTIO_NET_CONFIG_STD_SIZE",
    "VIRTIO_NET_HDR_GSO_ECN",
    "VIRTIO_NET_HDR_HASH_SIZE",
    "VIRTIO_NET_HDR_LEGACY_SIZE",
    "VIRTIO_NET_HDR_SIZE",
    "VIRTQ_AVAIL_F_NO_INTERRUPT",
    "VIRTQ_DESC_F_AVAIL",
    "VIRTQ_DESC_F_INDIRECT",
    "VIRTQ_DESC_F_NEXT",
    "VIRTQ_DESC_F_USED",
    "VIRTQ_DESC_F_WRITE",
    "VIRTQ_USED_F_NO_NOTIFY",
    "RingEventFlags",
    "VirtioNetHashReport",
    "VirtioNetHashTunnelType",
    "VirtioNetHashType",
    "VirtioNetHdrFlag",
    "VirtioNetHdrGso",
    "VirtioNetStatus",
    "VirtqAvailFlag",
    "VirtqDescFlag",
    "VirtqUsedFlag",
    "avail_ring_size",
    "check_queue_size",
    "config_ranges",
    "desc_table_size",
    "net_hdr_size",
    "net_hdr_struct",
    "packed_ring_size",
    "pvirtq_desc",
    "pvirtq_event_suppress",
    "used_ring_size",
    "virtio_net_config",
    "virtio_net_config_zero",
    "virtio_net_hdr",
    "virtio_net_hdr_hash",
    "virtq_avail",
    "virtq_desc",
    "virtq_used",
    "virtq_used_elem",
]
