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
