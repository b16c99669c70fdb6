"""The virtio-net control virtqueue: classes, commands, payloads (virtio 1.3 §5.1.6.5).

Every request is `struct virtio_net_ctrl`:

    u8 class; u8 command; u8 command-specific-data[];    (driver-written, device-readable)
    u8 ack; u8 command-specific-result[];                (device-written; result: 1.4)

`virtio_net_ctrl` parses and builds the driver-written part with a `Switch` keyed by
(class, command), built once at import; the body of class VIRTIO_NET_CTRL_EBPF comes
from `offload`.  `parse_ctrl` is the one entry point for peer bytes: an unknown
(class, command), a short or over-long body, or a bad field value is the driver's error
and raises RemoteProtocolError naming §5.1.6.5 (the device then acks VIRTIO_NET_ERR, as
QEMU does), never a KeyError or a construct error.

The payloads are named as the spec names them (`virtio_net_ctrl_mac`,
`virtio_net_rss_config`, `virtio_net_ctrl_coal_vq`, ...); where the spec gives a body no
struct name, it is named after its command (`virtio_net_ctrl_rx`, `virtio_net_ctrl_vlan`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

from construct import (
    Array,
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    ConstructError,
    Error,
    GreedyBytes,
    GreedyRange,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    OneOf,
    Rebuild,
    Struct,
    Switch,
    Terminated,
    len_,
    this,
)

from .errors import RemoteProtocolError
from .features import VirtioNetFeature as _N
from .offload import (
    VIRTIO_NET_CTRL_EBPF,
    VirtioNetCtrlEbpf,
    virtio_net_ctrl_ebpf_map,
    virtio_net_ctrl_ebpf_prog,
)

# ----------------------------------------------------------------------------------------
# Classes, commands, ack


class VirtioNetCtrlClass(IntEnum):
    """Control classes (virtio 1.3 §5.1.6.5; STATS is virtio 1.4).  vxdp's offload class
    is `offload.VIRTIO_NET_CTRL_EBPF` (0x40; 6 in the RFC's numbering)."""

    VIRTIO_NET_CTRL_RX = 0
    VIRTIO_NET_CTRL_MAC = 1
    VIRTIO_NET_CTRL_VLAN = 2
    VIRTIO_NET_CTRL_ANNOUNCE = 3
    VIRTIO_NET_CTRL_MQ = 4
    VIRTIO_NET_CTRL_GUEST_OFFLOADS = 5
    VIRTIO_NET_CTRL_NOTF_COAL = 6
    VIRTIO_NET_CTRL_HASH_TUNNEL = 7
    VIRTIO_NET_CTRL_STATS = 8


class VirtioNetCtrlRx(IntEnum):
    """Class RX (§5.1.6.5.1): PROMISC, ALLMULTI need CTRL_RX; the rest CTRL_RX_EXTRA."""

    VIRTIO_NET_CTRL_RX_PROMISC = 0
    VIRTIO_NET_CTRL_RX_ALLMULTI = 1
    VIRTIO_NET_CTRL_RX_ALLUNI = 2
    VIRTIO_NET_CTRL_RX_NOMULTI = 3
    VIRTIO_NET_CTRL_RX_NOUNI = 4
    VIRTIO_NET_CTRL_RX_NOBCAST = 5


class VirtioNetCtrlMac(IntEnum):
    """Class MAC (§5.1.6.5.2)."""

    VIRTIO_NET_CTRL_MAC_TABLE_SET = 0
    VIRTIO_NET_CTRL_MAC_ADDR_SET = 1


class VirtioNetCtrlVlan(IntEnum):
    """Class VLAN (§5.1.6.5.3)."""

    VIRTIO_NET_CTRL_VLAN_ADD = 0
    VIRTIO_NET_CTRL_VLAN_DEL = 1


class VirtioNetCtrlAnnounce(IntEnum):
    """Class ANNOUNCE (§5.1.6.5.4)."""

    VIRTIO_NET_CTRL_ANNOUNCE_ACK = 0


class VirtioNetCtrlMq(IntEnum):
    """Class MQ (§5.1.6.5.5 to §5.1.6.5.7)."""

    VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET = 0
    VIRTIO_NET_CTRL_MQ_RSS_CONFIG = 1
    VIRTIO_NET_CTRL_MQ_HASH_CONFIG = 2


class VirtioNetCtrlGuestOffloads(IntEnum):
    """Class GUEST_OFFLOADS (§5.1.6.5.8)."""

    VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET = 0


class VirtioNetCtrlNotfCoal(IntEnum):
    """Class NOTF_COAL (§5.1.6.5.9): TX/RX_SET need NOTF_COAL, VQ_* need VQ_NOTF_COAL."""

    VIRTIO_NET_CTRL_NOTF_COAL_TX_SET = 0
    VIRTIO_NET_CTRL_NOTF_COAL_RX_SET = 1
    VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET = 2
    VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET = 3


class VirtioNetCtrlHashTunnel(IntEnum):
    """Class HASH_TUNNEL (virtio 1.3 §5.1.6.4, "Inner Header Hash")."""

    VIRTIO_NET_CTRL_HASH_TUNNEL_SET = 0


class VirtioNetCtrlStats(IntEnum):
    """Class STATS (virtio 1.4 "Device Statistics")."""

    VIRTIO_NET_CTRL_STATS_QUERY = 0
    VIRTIO_NET_CTRL_STATS_GET = 1


class VirtioNetCtrlAck(IntEnum):
    """The ack byte (§5.1.6.5)."""

    VIRTIO_NET_OK = 0
    VIRTIO_NET_ERR = 1


VIRTIO_NET_OK: Final = VirtioNetCtrlAck.VIRTIO_NET_OK
VIRTIO_NET_ERR: Final = VirtioNetCtrlAck.VIRTIO_NET_ERR
#: The ack is exactly one device-writable byte.
VIRTIO_NET_CTRL_ACK_SIZE: Final = 1
#: u8 class + u8 command.
VIRTIO_NET_CTRL_HDR_SIZE: Final = 2
VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN: Final = 1
VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX: Final = 0x8000
#: VIRTIO_NET_STATS_TYPE_* bits of `supported_stats_types` (virtio 1.4).
VIRTIO_NET_STATS_TYPE_RX_BASIC: Final = 1 << 0
VIRTIO_NET_STATS_TYPE_RX_CSUM: Final = 1 << 1
VIRTIO_NET_STATS_TYPE_RX_GSO: Final = 1 << 2
VIRTIO_NET_STATS_TYPE_RX_SPEED: Final = 1 << 3
VIRTIO_NET_STATS_TYPE_TX_BASIC: Final = 1 << 16
VIRTIO_NET_STATS_TYPE_TX_CSUM: Final = 1 << 17
VIRTIO_NET_STATS_TYPE_TX_GSO: Final = 1 << 18
VIRTIO_NET_STATS_TYPE_TX_SPEED: Final = 1 << 19
VIRTIO_NET_STATS_TYPE_CVQ: Final = 1 << 32

# ----------------------------------------------------------------------------------------
# Payloads

#: 2 bytes: u8 class; u8 command.
virtio_net_ctrl_hdr: Any = Struct("class" / Int8ul, "command" / Int8ul)

#: RX class body: "one byte containing 0 (off) or 1 (on)" (§5.1.6.5.1).
virtio_net_ctrl_rx: Any = Struct("on" / OneOf(Int8ul, [0, 1]))

#: struct virtio_net_ctrl_mac (§5.1.6.5.2): le32 entries; u8 macs[entries][6].
virtio_net_ctrl_mac: Any = Struct(
    "entries" / Rebuild(Int32ul, len_(this.macs)),
    "macs" / Array(this.entries, Bytes(6)),
)

#: TABLE_SET body: the unicast table, then the multicast table; either may be empty
#: (§5.1.6.5.2.2).  Size 8 + 6 * (unicast + multicast).
virtio_net_ctrl_mac_table: Any = Struct(
    "unicast" / virtio_net_ctrl_mac,
    "multicast" / virtio_net_ctrl_mac,
)

#: ADDR_SET body: the 6-byte MAC address.
virtio_net_ctrl_mac_addr: Any = Struct("mac" / Bytes(6))

#: VLAN ADD/DEL body: "a little-endian 16-bit VLAN id" (§5.1.6.5.3).
virtio_net_ctrl_vlan: Any = Struct("vid" / Int16ul)

#: ANNOUNCE_ACK and STATS_QUERY carry no data.
virtio_net_ctrl_empty: Any = Struct()

#: struct virtio_net_ctrl_mq_pairs_set (§5.1.6.5.6): le16 virtqueue_pairs, 1..0x8000.
virtio_net_ctrl_mq_pairs_set: Any = Struct("virtqueue_pairs" / Int16ul)

#: struct rss_rq_id (virtio 1.3 §5.1.6.5.7.1): le16 {vq_index_1_16:15; reserved:1}.
#: vq_index_1_16 is bits 1..16 of the virtqueue index, i.e. the receive queue number.
rss_rq_id: Any = ByteSwapped(BitStruct(
    "reserved" / BitsInteger(1),
    "vq_index_1_16" / BitsInteger(15),
))

#: struct virtio_net_rss_config (§5.1.6.5.7.1); the indirection table has
#: indirection_table_mask + 1 entries.  Size 4 + 2 + 2 + 2 * (mask + 1) + 2 + 1 + key.
virtio_net_rss_config: Any = Struct(
    "hash_types" / Int32ul,
    "indirection_table_mask" / Int16ul,
    "unclassified_queue" / rss_rq_id,
    "indirection_table" / Array(this.indirection_table_mask + 1, rss_rq_id),
    "max_tx_vq" / Int16ul,
    "hash_key_length" / Rebuild(Int8ul, len_(this.hash_key_data)),
    "hash_key_data" / Bytes(this.hash_key_length),
)

#: struct virtio_net_hash_config (§5.1.6.5.6.4): le32 hash_types; le16 reserved[4];
#: u8 hash_key_length; u8 hash_key_data[].  "reserved MUST contain zeroes."
virtio_net_hash_config: Any = Struct(
    "hash_types" / Int32ul,
    "reserved" / Array(4, OneOf(Int16ul, [0])),
    "hash_key_length" / Rebuild(Int8ul, len_(this.hash_key_data)),
    "hash_key_data" / Bytes(this.hash_key_length),
)

#: GUEST_OFFLOADS_SET body: le64 offloads, a bitmap of GUEST_* feature bits (§5.1.6.5.8).
virtio_net_ctrl_guest_offloads: Any = Struct("offloads" / Int64ul)

#: struct virtio_net_ctrl_coal (§5.1.6.5.9): le32 max_packets; le32 max_usecs.
virtio_net_ctrl_coal: Any = Struct("max_packets" / Int32ul, "max_usecs" / Int32ul)

#: struct virtio_net_ctrl_coal_vq (§5.1.6.5.9): le16 vq_index; le16 reserved; coal.
#: The device "MUST ignore reserved".
virtio_net_ctrl_coal_vq: Any = Struct(
    "vq_index" / Int16ul,
    "reserved" / Int16ul,
    "coal" / virtio_net_ctrl_coal,
)

#: VQ_GET request: the driver-written head of virtio_net_ctrl_coal_vq; the device
#: writes the `virtio_net_ctrl_coal` part as the result.
virtio_net_ctrl_coal_vq_get: Any = Struct("vq_index" / Int16ul, "reserved" / Int16ul)

#: struct virtnet_hash_tunnel (virtio 1.3 §5.1.6.4): le32 enabled_tunnel_types.
virtnet_hash_tunnel: Any = Struct("enabled_tunnel_types" / Int32ul)

#: struct virtio_net_ctrl_queue_stats (virtio 1.4): 16-byte entries
#: {le16 vq_index; le16 reserved[3]; le64 types_bitmap}.
virtio_net_ctrl_queue_stats: Any = Struct(
    "stats" / GreedyRange(Struct(
        "vq_index" / Int16ul,
        "reserved" / Array(3, Int16ul),
        "types_bitmap" / Int64ul,
    )),
)

#: struct virtio_net_stats_capabilities (virtio 1.4): le64 supported_stats_types[1].
virtio_net_stats_capabilities: Any = Struct("supported_stats_types" / Int64ul)

#: struct virtio_net_stats_reply_hdr (virtio 1.4), 8 bytes: u8 type; u8 reserved;
#: le16 vq_index; le16 reserved1; le16 size (bytes of the entry, header included).
virtio_net_stats_reply_hdr: Any = Struct(
    "type" / Int8ul,
    "reserved" / Int8ul,
    "vq_index" / Int16ul,
    "reserved1" / Int16ul,
    "size" / Int16ul,
)

# ----------------------------------------------------------------------------------------
# The request Switch

_Cl = VirtioNetCtrlClass
_E = VirtioNetCtrlEbpf

#: The body of every known (class, command).
CTRL_COMMANDS: Final[dict[tuple[int, int], Any]] = {
    **{(_Cl.VIRTIO_NET_CTRL_RX, c): virtio_net_ctrl_rx for c in VirtioNetCtrlRx},
    (_Cl.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET):
        virtio_net_ctrl_mac_table,
    (_Cl.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET):
        virtio_net_ctrl_mac_addr,
    **{(_Cl.VIRTIO_NET_CTRL_VLAN, c): virtio_net_ctrl_vlan for c in VirtioNetCtrlVlan},
    (_Cl.VIRTIO_NET_CTRL_ANNOUNCE, VirtioNetCtrlAnnounce.VIRTIO_NET_CTRL_ANNOUNCE_ACK):
        virtio_net_ctrl_empty,
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET):
        virtio_net_ctrl_mq_pairs_set,
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_RSS_CONFIG):
        virtio_net_rss_config,
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_HASH_CONFIG):
        virtio_net_hash_config,
    (_Cl.VIRTIO_NET_CTRL_GUEST_OFFLOADS,
     VirtioNetCtrlGuestOffloads.VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET):
        virtio_net_ctrl_guest_offloads,
    (_Cl.VIRTIO_NET_CTRL_NOTF_COAL, VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_TX_SET):
        virtio_net_ctrl_coal,
    (_Cl.VIRTIO_NET_CTRL_NOTF_COAL, VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_RX_SET):
        virtio_net_ctrl_coal,
    (_Cl.VIRTIO_NET_CTRL_NOTF_COAL, VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET):
        virtio_net_ctrl_coal_vq,
    (_Cl.VIRTIO_NET_CTRL_NOTF_COAL, VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET):
        virtio_net_ctrl_coal_vq_get,
    (_Cl.VIRTIO_NET_CTRL_HASH_TUNNEL, VirtioNetCtrlHashTunnel.VIRTIO_NET_CTRL_HASH_TUNNEL_SET):
        virtnet_hash_tunnel,
    (_Cl.VIRTIO_NET_CTRL_STATS, VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_QUERY):
        virtio_net_ctrl_empty,
    (_Cl.VIRTIO_NET_CTRL_STATS, VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_GET):
        virtio_net_ctrl_queue_stats,
    (VIRTIO_NET_CTRL_EBPF, _E.VIRTIO_NET_CTRL_EBPF_PROG): virtio_net_ctrl_ebpf_prog,
    (VIRTIO_NET_CTRL_EBPF, _E.VIRTIO_NET_CTRL_EBPF_MAP): virtio_net_ctrl_ebpf_map,
}

#: The command-specific-result of the standard commands that have one.  The offload
#: results depend on the body's sub-command: see `offload.ebpf_result_struct`.
CTRL_RESULTS: Final[dict[tuple[int, int], Any]] = {
    (_Cl.VIRTIO_NET_CTRL_NOTF_COAL, VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET):
        virtio_net_ctrl_coal,
    (_Cl.VIRTIO_NET_CTRL_STATS, VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_QUERY):
        virtio_net_stats_capabilities,
    (_Cl.VIRTIO_NET_CTRL_STATS, VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_GET): GreedyBytes,
}


def switch_key(cls: int, command: int, ebpf_class: int = VIRTIO_NET_CTRL_EBPF) -> tuple[int, int]:
    """The CTRL_COMMANDS key for a wire (class, command).

    With `ebpf_class` = 6 (rfc_compat) class 6 means the offload and class 9 means
    nothing; see `offload.ebpf_ctrl_class`.
    """
    if ebpf_class != VIRTIO_NET_CTRL_EBPF:
        if cls == ebpf_class:
            return (VIRTIO_NET_CTRL_EBPF, command)
        if cls == VIRTIO_NET_CTRL_EBPF:
            return (-1, command)
    return (cls, command)


def _key(ctx: Any) -> tuple[int, int]:
    ebpf_class = ctx._params.get("ebpf_class", VIRTIO_NET_CTRL_EBPF)
    return switch_key(ctx["class"], ctx.command, ebpf_class)


#: struct virtio_net_ctrl, driver-written part: class, command, then the body the
#: (class, command) selects; nothing may follow the body.  Parse/build parameter
#: `ebpf_class` (default 9) selects the offload's class.
virtio_net_ctrl: Any = Struct(
    "class" / Int8ul,
    "command" / Int8ul,
    "data" / Switch(_key, CTRL_COMMANDS, default=Error),
    Terminated,
)


def parse_ctrl(data: bytes, *, ebpf_class: int = VIRTIO_NET_CTRL_EBPF) -> Any:
    """Parse the driver-written part of a control request (the device's entry point).

    Returns a container with `class`, `command` and `data`.  Raises RemoteProtocolError
    (clause 5.1.6.5) for a short header, an unknown (class, command) or a malformed body.
    """
    if len(data) < VIRTIO_NET_CTRL_HDR_SIZE:
        raise RemoteProtocolError(f"control request of {len(data)} bytes is shorter than "
                                  "its 2-byte class/command header", "5.1.6.5")
    cls, command = data[0], data[1]
    if switch_key(cls, command, ebpf_class) not in CTRL_COMMANDS:
        raise RemoteProtocolError(f"unknown control class {cls} command {command}", "5.1.6.5")
    try:
        return virtio_net_ctrl.parse(data, ebpf_class=ebpf_class)
    except ConstructError as exc:
        where = str(getattr(exc, "path", "") or "").replace("(parsing) -> ", "")
        detail = (f"{where}: " if where else "") + str(exc).strip().splitlines()[-1]
        raise RemoteProtocolError(f"malformed control class {cls} command {command} "
                                  f"({len(data) - 2} data bytes): {detail}", "5.1.6.5") from None


def build_ctrl(cls: int, command: int, data: Any = None, *,
               ebpf_class: int = VIRTIO_NET_CTRL_EBPF) -> bytes:
    """The driver side: class, command and body as bytes.  Our misuse raises
    construct's errors (a missing field), not a protocol error."""
    body = {} if data is None else data
    out: bytes = virtio_net_ctrl.build({"class": cls, "command": command, "data": body},
                                       ebpf_class=ebpf_class)
    return out


# ----------------------------------------------------------------------------------------
# Which feature allows which command

_RX_EXTRA = (_N.VIRTIO_NET_F_CTRL_RX_EXTRA,)
#: (class, command) -> (any of these features, clause).  A driver MUST have negotiated
#: one of them before issuing the command; the device acks VIRTIO_NET_ERR otherwise.
COMMAND_FEATURES: Final[dict[tuple[int, int], tuple[tuple[int, ...], str]]] = {
    (_Cl.VIRTIO_NET_CTRL_RX, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC):
        ((_N.VIRTIO_NET_F_CTRL_RX,), "5.1.6.5.1.2"),
    (_Cl.VIRTIO_NET_CTRL_RX, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_ALLMULTI):
        ((_N.VIRTIO_NET_F_CTRL_RX,), "5.1.6.5.1.2"),
    **{(_Cl.VIRTIO_NET_CTRL_RX, c): (_RX_EXTRA, "5.1.6.5.1.2") for c in (
        VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_ALLUNI, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOMULTI,
        VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOUNI, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOBCAST)},
    (_Cl.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET):
        ((_N.VIRTIO_NET_F_CTRL_RX,), "5.1.6.5.2.2"),
    # The spec ties the MAC class to CTRL_RX; Linux sends ADDR_SET on CTRL_MAC_ADDR alone.
    (_Cl.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET):
        ((_N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_CTRL_MAC_ADDR), "5.1.6.5.2.2"),
    **{(_Cl.VIRTIO_NET_CTRL_VLAN, c): ((_N.VIRTIO_NET_F_CTRL_VLAN,), "5.1.6.5.3")
       for c in VirtioNetCtrlVlan},
    (_Cl.VIRTIO_NET_CTRL_ANNOUNCE, VirtioNetCtrlAnnounce.VIRTIO_NET_CTRL_ANNOUNCE_ACK):
        ((_N.VIRTIO_NET_F_GUEST_ANNOUNCE,), "5.1.6.5.4"),
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET):
        ((_N.VIRTIO_NET_F_MQ,), "5.1.6.5.6"),
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_RSS_CONFIG):
        ((_N.VIRTIO_NET_F_RSS,), "5.1.6.5.7.1"),
    (_Cl.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_HASH_CONFIG):
        ((_N.VIRTIO_NET_F_HASH_REPORT,), "5.1.6.5.6.4"),
    (_Cl.VIRTIO_NET_CTRL_GUEST_OFFLOADS,
     VirtioNetCtrlGuestOffloads.VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET):
        ((_N.VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,), "5.1.6.5.8"),
    **{(_Cl.VIRTIO_NET_CTRL_NOTF_COAL, c): ((_N.VIRTIO_NET_F_NOTF_COAL,), "5.1.6.5.9") for c in (
        VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_TX_SET,
        VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_RX_SET)},
    **{(_Cl.VIRTIO_NET_CTRL_NOTF_COAL, c): ((_N.VIRTIO_NET_F_VQ_NOTF_COAL,), "5.1.6.5.9")
       for c in (VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET,
                 VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET)},
    (_Cl.VIRTIO_NET_CTRL_HASH_TUNNEL, VirtioNetCtrlHashTunnel.VIRTIO_NET_CTRL_HASH_TUNNEL_SET):
        ((_N.VIRTIO_NET_F_HASH_TUNNEL,), "5.1.6.4"),
    **{(_Cl.VIRTIO_NET_CTRL_STATS, c): ((_N.VIRTIO_NET_F_DEVICE_STATS,), "5.1.6.5.10")
       for c in VirtioNetCtrlStats},
    **{(VIRTIO_NET_CTRL_EBPF, c): ((_N.VIRTIO_NET_F_XDP_OFFLOAD,), "5.1.6.5")
       for c in VirtioNetCtrlEbpf},
}


_COMMAND_ENUMS: dict[int, type[IntEnum]] = {
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX: VirtioNetCtrlRx,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_MAC: VirtioNetCtrlMac,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_VLAN: VirtioNetCtrlVlan,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_ANNOUNCE: VirtioNetCtrlAnnounce,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ: VirtioNetCtrlMq,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_GUEST_OFFLOADS: VirtioNetCtrlGuestOffloads,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_NOTF_COAL: VirtioNetCtrlNotfCoal,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_HASH_TUNNEL: VirtioNetCtrlHashTunnel,
    VirtioNetCtrlClass.VIRTIO_NET_CTRL_STATS: VirtioNetCtrlStats,
}


def command_name(cls: int, command: int, *, ebpf_class: int = VIRTIO_NET_CTRL_EBPF) -> str:
    """`RX_PROMISC`, `MAC_TABLE_SET`, `EBPF_PROG`, ... or `class 10 command 3` when unknown.

    `ebpf_class` says where the offload class lives (9, or 6 in rfc_compat mode, where it
    shadows NOTF_COAL)."""
    enum: type[IntEnum] | None = (VirtioNetCtrlEbpf if cls == ebpf_class
                                  else _COMMAND_ENUMS.get(cls))
    if enum is not None and command in enum._value2member_map_:
        return str(enum(command).name).removeprefix("VIRTIO_NET_CTRL_")
    return f"class {cls} command {command}"


def check_command_allowed(cls: int, command: int, negotiated: int, *,
                          ebpf_class: int = VIRTIO_NET_CTRL_EBPF) -> None:
    """Raise RemoteProtocolError when the driver issues a command whose feature it did
    not negotiate (e.g. §5.1.6.5.1.2: "If the VIRTIO_NET_F_CTRL_RX feature has not
    been negotiated, the driver MUST NOT issue commands VIRTIO_NET_CTRL_RX_PROMISC...").

    In rfc_compat mode (`ebpf_class` 6) the offload has no feature bit: the RFC probed by
    sending the command.
    """
    key = switch_key(cls, command, ebpf_class)
    if key not in COMMAND_FEATURES:
        raise RemoteProtocolError(f"unknown control class {cls} command {command}", "5.1.6.5")
    if key[0] == VIRTIO_NET_CTRL_EBPF and ebpf_class != VIRTIO_NET_CTRL_EBPF:
        return
    anyof, clause = COMMAND_FEATURES[key]
    if not any(negotiated >> bit & 1 for bit in anyof):
        names = " or ".join(_N(bit).name for bit in anyof)
        raise RemoteProtocolError(f"control class {cls} command {command} issued without "
                                  f"negotiating {names}", clause)


__all__ = [
    "COMMAND_FEATURES",
    "CTRL_COMMANDS",
    "CTRL_RESULTS",
    "VIRTIO_NET_CTRL_ACK_SIZE",
    "VIRTIO_NET_CTRL_HDR_SIZE",
    "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX",
    "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN",
    "VIRTIO_NET_ERR",
    "VIRTIO_NET_OK",
    "VIRTIO_NET_STATS_TYPE_CVQ",
    "VIRTIO_NET_STATS_TYPE_RX_BASIC",
    "VIRTIO_NET_STATS_TYPE_RX_CSUM",
    "VIRTIO_NET_STATS_TYPE_RX_GSO",
    "VIRTIO_NET_STATS_TYPE_RX_SPEED",
    "VIRTIO_NET_STATS_TYPE_TX_BASIC",
    "VIRTIO_NET_STATS_TYPE_TX_CSUM",
    "VIRTIO_NET_STATS_TYPE_TX_GSO",
    "VIRTIO_NET_STATS_TYPE_TX_SPEED",
    "VirtioNetCtrlAck",
    "VirtioNetCtrlAnnounce",
    "VirtioNetCtrlClass",
    "VirtioNetCtrlGuestOffloads",
    "VirtioNetCtrlHashTunnel",
    "VirtioNetCtrlMac",
    "VirtioNetCtrlMq",
    "VirtioNetCtrlNotfCoal",
    "VirtioNetCtrlRx",
    "VirtioNetCtrlStats",
    "VirtioNetCtrlVlan",
    "build_ctrl",
    "check_command_allowed",
    "command_name",
    "parse_ctrl",
    "rss_rq_id",
    "switch_key",
    "virtio_net_ctrl",
    "virtio_net_ctrl_coal",
    "virtio_net_ctrl_coal_vq",
    "virtio_net_ctrl_coal_vq_get",
    "virtio_net_ctrl_empty",
    "virtio_net_ctrl_guest_offloads",
    "virtio_net_ctrl_hdr",
    "virtio_net_ctrl_mac",
    "virtio_net_ctrl_mac_addr",
    "virtio_net_ctrl_mac_table",
    "virtio_net_ctrl_mq_pairs_set",
    "virtio_net_ctrl_queue_stats",
    "virtio_net_ctrl_rx",
    "virtio_net_ctrl_vlan",
    "virtio_net_hash_config",
    "virtio_net_rss_config",
    "virtio_net_stats_capabilities",
    "virtio_net_stats_reply_hdr",
    "virtnet_hash_tunnel",
]
