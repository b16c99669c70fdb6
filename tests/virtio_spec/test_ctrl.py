"""Control virtqueue requests (virtio 1.3 §5.1.6.5): vectors, sizes, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Container

from virtio_spec import ctrl as C
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of

Cl = C.VirtioNetCtrlClass
MAC_A, MAC_B, MAC_M = bytes.fromhex("525400000001"), bytes.fromhex("525400000002"), \
    bytes.fromhex("01005e000001")


def plain(value: Any) -> Any:
    if isinstance(value, Container | dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# (name, class, command, body value, wire bytes including the 2-byte header)
VECTORS: list[tuple[str, int, int, dict[str, Any], bytes]] = [
    ("rx promisc on", Cl.VIRTIO_NET_CTRL_RX, C.VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC,
     {"on": 1}, bytes.fromhex("0000" "01")),
    ("rx nobcast off", Cl.VIRTIO_NET_CTRL_RX, C.VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_NOBCAST,
     {"on": 0}, bytes.fromhex("0005" "00")),
    ("mac table set", Cl.VIRTIO_NET_CTRL_MAC, C.VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET,
     {"unicast": {"entries": 2, "macs": [MAC_A, MAC_B]},
      "multicast": {"entries": 1, "macs": [MAC_M]}},
     bytes.fromhex("0100" "02000000") + MAC_A + MAC_B + bytes.fromhex("01000000") + MAC_M),
    ("mac table set empty", Cl.VIRTIO_NET_CTRL_MAC,
     C.VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET,
     {"unicast": {"entries": 0, "macs": []}, "multicast": {"entries": 0, "macs": []}},
     bytes.fromhex("0100" "00000000" "00000000")),
    ("mac addr set", Cl.VIRTIO_NET_CTRL_MAC, C.VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET,
     {"mac": MAC_A}, bytes.fromhex("0101") + MAC_A),
    ("vlan add", Cl.VIRTIO_NET_CTRL_VLAN, C.VirtioNetCtrlVlan.VIRTIO_NET_CTRL_VLAN_ADD,
     {"vid": 100}, bytes.fromhex("0200" "6400")),
    ("vlan del", Cl.VIRTIO_NET_CTRL_VLAN, C.VirtioNetCtrlVlan.VIRTIO_NET_CTRL_VLAN_DEL,
     {"vid": 4095}, bytes.fromhex("0201" "ff0f")),
    ("announce ack", Cl.VIRTIO_NET_CTRL_ANNOUNCE,
     C.VirtioNetCtrlAnnounce.VIRTIO_NET_CTRL_ANNOUNCE_ACK, {}, bytes.fromhex("0300")),
    ("mq pairs set", Cl.VIRTIO_NET_CTRL_MQ, C.VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
     {"virtqueue_pairs": 4}, bytes.fromhex("0400" "0400")),
    ("mq rss config", Cl.VIRTIO_NET_CTRL_MQ, C.VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_RSS_CONFIG,
     {"hash_types": 0x3F, "indirection_table_mask": 1,
      "unclassified_queue": {"reserved": 0, "vq_index_1_16": 0},
      "indirection_table": [{"reserved": 0, "vq_index_1_16": 0},
                            {"reserved": 0, "vq_index_1_16": 3}],
      "max_tx_vq": 4, "hash_key_length": 4, "hash_key_data": b"\x6d\x5a\x56\xda"},
     bytes.fromhex("0401" "3f000000" "0100" "0000" "0000" "0300" "0400" "04" "6d5a56da")),
    ("mq hash config", Cl.VIRTIO_NET_CTRL_MQ, C.VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_HASH_CONFIG,
     {"hash_types": 0x7, "reserved": [0, 0, 0, 0], "hash_key_length": 2,
      "hash_key_data": b"\xaa\xbb"},
     bytes.fromhex("0402" "07000000" "0000000000000000" "02" "aabb")),
    ("guest offloads set", Cl.VIRTIO_NET_CTRL_GUEST_OFFLOADS,
     C.VirtioNetCtrlGuestOffloads.VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
     {"offloads": (1 << N.VIRTIO_NET_F_GUEST_CSUM) | (1 << N.VIRTIO_NET_F_GUEST_USO4)},
     bytes.fromhex("0500" "0200000000004000")),
    ("notf coal tx set", Cl.VIRTIO_NET_CTRL_NOTF_COAL,
     C.VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_TX_SET,
     {"max_packets": 15, "max_usecs": 10}, bytes.fromhex("0600" "0f000000" "0a000000")),
    ("notf coal vq set", Cl.VIRTIO_NET_CTRL_NOTF_COAL,
     C.VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET,
     {"vq_index": 3, "reserved": 0, "coal": {"max_packets": 8, "max_usecs": 50}},
     bytes.fromhex("0602" "0300" "0000" "08000000" "32000000")),
    ("notf coal vq get", Cl.VIRTIO_NET_CTRL_NOTF_COAL,
     C.VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET,
     {"vq_index": 1, "reserved": 0}, bytes.fromhex("0603" "0100" "0000")),
    ("hash tunnel set", Cl.VIRTIO_NET_CTRL_HASH_TUNNEL,
     C.VirtioNetCtrlHashTunnel.VIRTIO_NET_CTRL_HASH_TUNNEL_SET,
     {"enabled_tunnel_types": 0x10}, bytes.fromhex("0700" "10000000")),
    ("stats query", Cl.VIRTIO_NET_CTRL_STATS, C.VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_QUERY,
     {}, bytes.fromhex("0800")),
    ("stats get", Cl.VIRTIO_NET_CTRL_STATS, C.VirtioNetCtrlStats.VIRTIO_NET_CTRL_STATS_GET,
     {"stats": [{"vq_index": 0, "reserved": [0, 0, 0], "types_bitmap": 1},
                {"vq_index": 4, "reserved": [0, 0, 0], "types_bitmap": 1 << 32}]},
     bytes.fromhex("0801" "0000" "000000000000" "0100000000000000"
                   "0400" "000000000000" "0000000001000000")),
]


@pytest.mark.parametrize("name,cls,command,value,raw", VECTORS, ids=[v[0] for v in VECTORS])
def test_ctrl_vectors_parse_and_build(name: str, cls: int, command: int,
                                      value: dict[str, Any], raw: bytes) -> None:
    parsed = C.parse_ctrl(raw)
    assert (parsed["class"], parsed.command) == (cls, command)
    assert plain(parsed.data) == value
    assert C.build_ctrl(cls, command, value) == raw


def test_class_and_command_numbers() -> None:
    assert [int(c) for c in Cl] == list(range(9))
    assert [int(c) for c in C.VirtioNetCtrlRx] == list(range(6))
    assert (C.VIRTIO_NET_OK, C.VIRTIO_NET_ERR) == (0, 1)
    assert C.VirtioNetCtrlNotfCoal.VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET == 3
    assert (C.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN, C.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX) == (1, 0x8000)


def test_payload_sizes_carry_their_formula() -> None:
    assert C.virtio_net_ctrl_hdr.sizeof() == C.VIRTIO_NET_CTRL_HDR_SIZE == 2
    assert C.virtio_net_ctrl_coal.sizeof() == 8
    assert C.virtio_net_ctrl_coal_vq.sizeof() == 12
    assert C.virtio_net_stats_reply_hdr.sizeof() == 8
    # TABLE_SET: 8 + 6 * (unicast + multicast)
    body = C.virtio_net_ctrl_mac_table.build(
        {"unicast": {"macs": [MAC_A] * 3}, "multicast": {"macs": [MAC_M] * 2}})
    assert len(body) == 8 + 6 * 5
    # RSS: 4 + 2 + 2 + 2 * (mask + 1) + 2 + 1 + key_length
    rss = C.virtio_net_rss_config.build({
        "hash_types": 0, "indirection_table_mask": 127,
        "unclassified_queue": {"reserved": 0, "vq_index_1_16": 0},
        "indirection_table": [{"reserved": 0, "vq_index_1_16": i % 4} for i in range(128)],
        "max_tx_vq": 4, "hash_key_data": bytes(40)})
    assert len(rss) == 4 + 2 + 2 + 2 * 128 + 2 + 1 + 40


@pytest.mark.parametrize("raw,match", [
    (b"", "shorter than its 2-byte"),
    (b"\x00", "shorter than its 2-byte"),
    (bytes([10, 0]), "unknown control class 10 command 0"),
    (bytes([0, 6, 1]), "unknown control class 0 command 6"),
    (bytes([3, 1]), "unknown control class 3 command 1"),
    (bytes([6, 4]), "unknown control class 6 command 4"),
    (bytes([0xFF, 0xFF]), "unknown control class 255 command 255"),
])
def test_unknown_class_or_command_is_a_remote_error(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as err:
        C.parse_ctrl(raw)
    assert err.value.clause == "5.1.6.5"


@pytest.mark.parametrize("raw,match", [
    (bytes.fromhex("0000"), "data -> on"),                       # body missing
    (bytes.fromhex("0000" "02"), "failed validation: 2"),        # neither 0 nor 1
    (bytes.fromhex("0000" "0100"), "expected end of stream"),     # trailing byte
    (bytes.fromhex("0100" "ffffffff") + MAC_A, "data -> unicast"),  # entries past the data
    (bytes.fromhex("0101" "5254"), "data -> mac"),               # short MAC
    (bytes.fromhex("0402" "07000000" "0100000000000000" "00"), "failed validation: 1"),
    (bytes.fromhex("0401" "00000000" "ffff" "0000"), "indirection_table"),
])
def test_malformed_bodies_are_remote_errors(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as err:
        C.parse_ctrl(raw)
    assert err.value.clause == "5.1.6.5"
    assert "malformed control class" in str(err.value)


def test_switch_lookup_never_raises_key_error_on_any_header() -> None:
    for cls in range(256):
        for command in (0, 1, 2, 7, 255):
            try:
                C.parse_ctrl(bytes([cls, command]))
            except RemoteProtocolError:
                pass


def test_command_features() -> None:
    rx = mask_of([N.VIRTIO_NET_F_CTRL_VQ, N.VIRTIO_NET_F_CTRL_RX])
    C.check_command_allowed(Cl.VIRTIO_NET_CTRL_RX, 0, rx)
    with pytest.raises(RemoteProtocolError, match="without negotiating VIRTIO_NET_F_CTRL_RX_EXTRA"
                       ) as err:
        C.check_command_allowed(Cl.VIRTIO_NET_CTRL_RX, 5, rx)
    assert err.value.clause == "5.1.6.5.1.2"
    with pytest.raises(RemoteProtocolError) as err:
        C.check_command_allowed(Cl.VIRTIO_NET_CTRL_MQ, 1, rx)
    assert err.value.clause == "5.1.6.5.7.1"
    # ADDR_SET is allowed by CTRL_MAC_ADDR alone (what Linux relies on).
    C.check_command_allowed(Cl.VIRTIO_NET_CTRL_MAC, 1, mask_of([N.VIRTIO_NET_F_CTRL_MAC_ADDR]))
    with pytest.raises(RemoteProtocolError, match="unknown control class 12"):
        C.check_command_allowed(12, 0, rx)
    assert set(C.COMMAND_FEATURES) == set(C.CTRL_COMMANDS)


@pytest.mark.parametrize(("cls", "command", "ebpf_class", "name"), [
    (0, 0, 9, "RX_PROMISC"),
    (1, 0, 9, "MAC_TABLE_SET"),
    (4, 0, 9, "MQ_VQ_PAIRS_SET"),
    (6, 0, 9, "NOTF_COAL_TX_SET"),
    (9, 1, 9, "EBPF_PROG"),
    (9, 2, 9, "EBPF_MAP"),
    (6, 2, 6, "EBPF_MAP"),  # rfc_compat: the offload class shadows NOTF_COAL
    (9, 1, 6, "class 9 command 1"),
    (0, 99, 9, "class 0 command 99"),
])
def test_command_name_covers_every_class(cls, command, ebpf_class, name):
    from virtio_spec.ctrl import command_name
    assert command_name(cls, command, ebpf_class=ebpf_class) == name
