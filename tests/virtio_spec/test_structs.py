"""Two-way vector tables for the virtqueue and virtio-net structures (virtio 1.3 §2.7, §2.8, §5.1)."""

from __future__ import annotations

from typing import Any

import pytest
from construct import Container

from virtio_spec import structs as S
from virtio_spec.errors import RingError

# (struct, params, bytes, value): the same pair drives parse and build.
RING_VECTORS: list[tuple[str, Any, dict[str, Any], bytes, dict[str, Any]]] = [
    ("virtq_desc", S.virtq_desc, {},
     bytes.fromhex("0010000000000000" "00020000" "0300" "0700"),
     {"addr": 0x1000, "len": 512, "flags": 3, "next": 7}),
    ("virtq_desc indirect", S.virtq_desc, {},
     bytes.fromhex("efcdab8967452301" "30000000" "0400" "0000"),
     {"addr": 0x0123456789ABCDEF, "len": 48, "flags": S.VIRTQ_DESC_F_INDIRECT, "next": 0}),
    ("virtq_avail q=4 event_idx", S.virtq_avail, {"queue_size": 4, "event_idx": True},
     bytes.fromhex("0100" "0500" "0000" "0100" "0200" "0300" "0400"),
     {"flags": 1, "idx": 5, "ring": [0, 1, 2, 3], "used_event": 4}),
    ("virtq_avail q=2 no event_idx", S.virtq_avail, {"queue_size": 2, "event_idx": False},
     bytes.fromhex("0000" "ffff" "0100" "0000"),
     {"flags": 0, "idx": 0xFFFF, "ring": [1, 0], "used_event": None}),
    ("virtq_used_elem", S.virtq_used_elem, {},
     bytes.fromhex("03000000" "ea050000"), {"id": 3, "len": 1514}),
    ("virtq_used q=2 event_idx", S.virtq_used, {"queue_size": 2, "event_idx": True},
     bytes.fromhex("0100" "0200" "00000000" "40000000" "01000000" "00000000" "0900"),
     {"flags": 1, "idx": 2, "ring": [{"id": 0, "len": 64}, {"id": 1, "len": 0}],
      "avail_event": 9}),
    ("pvirtq_desc", S.pvirtq_desc, {},
     bytes.fromhex("0020000000000000" "00010000" "0500" "8300"),
     {"addr": 0x2000, "len": 256, "id": 5, "flags": 0x83}),
    ("pvirtq_desc used", S.pvirtq_desc, {},
     bytes.fromhex("0000000000000000" "00000000" "ffff" "8080"),
     {"addr": 0, "len": 0, "id": 0xFFFF,
      "flags": S.VIRTQ_DESC_F_AVAIL | S.VIRTQ_DESC_F_USED}),
    ("pvirtq_event_suppress desc", S.pvirtq_event_suppress, {},
     bytes.fromhex("0580" "0200"),
     {"desc": {"desc_event_wrap": 1, "desc_event_off": 5},
      "flags": {"reserved": 0, "desc_event_flags": S.RING_EVENT_FLAGS_DESC}}),
    ("pvirtq_event_suppress disable", S.pvirtq_event_suppress, {},
     bytes.fromhex("ff7f" "0100"),
     {"desc": {"desc_event_wrap": 0, "desc_event_off": 0x7FFF},
      "flags": {"reserved": 0, "desc_event_flags": S.RING_EVENT_FLAGS_DISABLE}}),
]


def plain(value: Any) -> Any:
    """Containers and ListContainers as plain dicts and lists, without construct's `_io`."""
    if isinstance(value, Container | dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("name,struct,params,raw,value", RING_VECTORS,
                         ids=[v[0] for v in RING_VECTORS])
def test_ring_vectors_parse_and_build(name: str, struct: Any, params: dict[str, Any],
                                      raw: bytes, value: dict[str, Any]) -> None:
    assert plain(struct.parse(raw, **params)) == value
    assert struct.build(value, **params) == raw


def test_descriptor_flags_have_spec_values() -> None:
    assert (S.VIRTQ_DESC_F_NEXT, S.VIRTQ_DESC_F_WRITE, S.VIRTQ_DESC_F_INDIRECT) == (1, 2, 4)
    assert (S.VIRTQ_DESC_F_AVAIL, S.VIRTQ_DESC_F_USED) == (0x80, 0x8000)
    assert S.VIRTQ_AVAIL_F_NO_INTERRUPT == 1 and S.VIRTQ_USED_F_NO_NOTIFY == 1
    assert [int(f) for f in S.RingEventFlags] == [0, 1, 2]


@pytest.mark.parametrize("q", [1, 2, 256, 32768])
def test_split_part_sizes_follow_the_spec_table(q: int) -> None:
    # virtio 1.3 §2.7: desc 16*Q, avail 6+2*Q, used 6+8*Q.
    assert S.desc_table_size(q) == 16 * q == S.virtq_desc.sizeof() * q
    assert S.avail_ring_size(q) == 6 + 2 * q
    assert S.avail_ring_size(q) == S.virtq_avail.sizeof(queue_size=q, event_idx=True)
    assert S.used_ring_size(q) == 6 + 8 * q
    assert S.used_ring_size(q) == S.virtq_used.sizeof(queue_size=q, event_idx=True)
    assert S.packed_ring_size(q) == S.pvirtq_desc.sizeof() * q
    assert S.pvirtq_event_suppress.sizeof() == S.EVENT_SUPPRESS_SIZE == 4
    assert (S.DESC_TABLE_ALIGN, S.AVAIL_RING_ALIGN, S.USED_RING_ALIGN) == (16, 2, 4)
    assert (S.PACKED_RING_ALIGN, S.EVENT_SUPPRESS_ALIGN) == (16, 4)


@pytest.mark.parametrize("q,packed,ok", [
    (1, False, True), (256, False, True), (32768, False, True), (0, False, False),
    (3, False, False), (65536, False, False), (3, True, True), (32768, True, True),
    (32769, True, False), (0, True, False)])
def test_queue_size_rules(q: int, packed: bool, ok: bool) -> None:
    if ok:
        S.check_queue_size(q, packed=packed)
    else:
        with pytest.raises(RingError) as err:
            S.check_queue_size(q, packed=packed)
        assert err.value.clause == ("2.8" if packed else "2.7")


# --- virtio-net header and config (virtio 1.3 §5.1.4, §5.1.6) -----------------------------

HDR_VALUE = {"flags": S.VirtioNetHdrFlag.VIRTIO_NET_HDR_F_NEEDS_CSUM,
             "gso_type": S.VirtioNetHdrGso.VIRTIO_NET_HDR_GSO_TCPV4 | S.VIRTIO_NET_HDR_GSO_ECN,
             "hdr_len": 54, "gso_size": 1448, "csum_start": 34, "csum_offset": 16,
             "num_buffers": 0}
HDR_BYTES = bytes.fromhex("01" "81" "3600" "a805" "2200" "1000" "0000")

NET_VECTORS: list[tuple[str, Any, bytes, dict[str, Any]]] = [
    ("virtio_net_hdr", S.virtio_net_hdr, HDR_BYTES, HDR_VALUE),
    ("virtio_net_hdr zero rx", S.virtio_net_hdr, bytes(10) + b"\x03\x00",
     {"flags": 0, "gso_type": 0, "hdr_len": 0, "gso_size": 0, "csum_start": 0,
      "csum_offset": 0, "num_buffers": 3}),
    ("virtio_net_hdr_hash", S.virtio_net_hdr_hash,
     HDR_BYTES + bytes.fromhex("78563412" "0200" "0000"),
     {**HDR_VALUE, "hash_value": 0x12345678,
      "hash_report": S.VirtioNetHashReport.VIRTIO_NET_HASH_REPORT_TCPv4,
      "padding_reserved": 0}),
]


@pytest.mark.parametrize("name,struct,raw,value", NET_VECTORS, ids=[v[0] for v in NET_VECTORS])
def test_net_header_vectors_parse_and_build(name: str, struct: Any, raw: bytes,
                                            value: dict[str, Any]) -> None:
    assert plain(struct.parse(raw)) == value
    assert struct.build(value) == raw


def test_net_header_sizes_follow_5_1_6() -> None:
    assert S.virtio_net_hdr.sizeof() == S.net_hdr_size(False) == 12
    assert S.virtio_net_hdr_hash.sizeof() == S.net_hdr_size(True) == 20
    assert S.net_hdr_struct(True) is S.virtio_net_hdr_hash
    assert S.net_hdr_struct(False) is S.virtio_net_hdr
    assert S.VIRTIO_NET_HDR_LEGACY_SIZE == 10
    # VIRTIO_NET_HASH_TYPE_X == 1 << (VIRTIO_NET_HASH_REPORT_X - 1)
    for report, htype in zip(list(S.VirtioNetHashReport)[1:], S.VirtioNetHashType):
        assert htype == 1 << (report - 1)


CONFIG_VALUE = {
    "mac": bytes.fromhex("525400123456"), "status": S.VirtioNetStatus.VIRTIO_NET_S_LINK_UP,
    "max_virtqueue_pairs": 4, "mtu": 1500, "speed": 10000, "duplex": 1,
    "rss_max_key_size": 40, "rss_max_indirection_table_length": 128,
    "supported_hash_types": 0x3F, "supported_tunnel_types": 0x10,
    "xdp_max_insns": 4096, "xdp_max_maps": 16, "xdp_max_map_mem_kib": 1024,
    "xdp_map_types": 0b110, "xdp_abi_version": 1,
    "xdp_helpers": [0x0040_1000_0000_00AE, 0x0000_0600_0000_0002, 0, 1 << 63],
}
CONFIG_BYTES = bytes.fromhex(
    "525400123456" "0100" "0400" "dc05" "10270000" "01" "28" "8000" "3f000000" "10000000"
    "00100000" "10000000" "00040000" "06000000" "01000000"
    "ae00000000104000" "0200000000060000" "0000000000000000" "0000000000000080")


def test_config_vector_parses_and_builds() -> None:
    assert len(CONFIG_BYTES) == S.VIRTIO_NET_CONFIG_SIZE == 80
    assert plain(S.virtio_net_config.parse(CONFIG_BYTES)) == CONFIG_VALUE
    assert S.virtio_net_config.build(CONFIG_VALUE) == CONFIG_BYTES


@pytest.mark.parametrize("field,offset,size", [
    ("mac", 0, 6), ("status", 6, 2), ("max_virtqueue_pairs", 8, 2), ("mtu", 10, 2),
    ("speed", 12, 4), ("duplex", 16, 1), ("rss_max_key_size", 17, 1),
    ("rss_max_indirection_table_length", 18, 2), ("supported_hash_types", 20, 4),
    ("supported_tunnel_types", 24, 4), ("xdp_max_insns", 28, 4), ("xdp_max_maps", 32, 4),
    ("xdp_max_map_mem_kib", 36, 4), ("xdp_map_types", 40, 4), ("xdp_abi_version", 44, 4),
    ("xdp_helpers", 48, 32)])
def test_config_field_offsets(field: str, offset: int, size: int) -> None:
    assert S.VIRTIO_NET_CONFIG_OFFSETS[field] == offset
    # The bytes at that offset are the field's own encoding.
    value = CONFIG_VALUE[field]
    if isinstance(value, list):  # xdp_helpers: four le64 words
        raw = b"".join(int(w).to_bytes(8, "little") for w in value)
    else:
        raw = value if isinstance(value, bytes) else int(value).to_bytes(size, "little")
    assert CONFIG_BYTES[offset:offset + size] == raw
    assert field in S.VIRTIO_NET_CONFIG_FIELD_FEATURES


def test_config_standard_part_ends_where_our_capabilities_begin() -> None:
    assert S.VIRTIO_NET_CONFIG_OFFSETS["xdp_max_insns"] == S.VIRTIO_NET_CONFIG_STD_SIZE == 28
    assert set(S.VIRTIO_NET_CONFIG_OFFSETS) == set(S.VIRTIO_NET_CONFIG_FIELD_FEATURES)


def test_package_re_exports_resolve() -> None:
    import virtio_spec

    missing = [name for name in virtio_spec.__all__ if not hasattr(virtio_spec, name)]
    assert missing == []
    assert len(set(virtio_spec.__all__)) == len(virtio_spec.__all__)
    assert virtio_spec.virtq_desc is S.virtq_desc


@pytest.mark.parametrize(("features", "ranges"), [
    (0, [(0, 6)]),  # mac always exists (§5.1.4)
    (1 << 16 | 1 << 3, [(0, 8), (10, 2)]),  # STATUS, MTU: the MQ gap at 8 is skipped
    (1 << 22 | 1 << 16 | 1 << 3, [(0, 12)]),  # with MQ the runs merge
    (1 << 58, [(0, 6), (28, 52)]),  # XDP capabilities sit after supported_tunnel_types
])
def test_config_ranges_cover_only_offered_fields(features, ranges):
    from virtio_spec.structs import config_ranges
    assert config_ranges(features) == ranges
