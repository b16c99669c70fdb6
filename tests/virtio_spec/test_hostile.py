"""Hostile peers: every ring violation is refused with RingError naming its clause.

One test per rule, named after the clause.  The policy after a refusal (see split.py):
the queue is `broken` until rebuilt after a reset, chains already popped can still be
completed, and other queues keep serving.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtio_spec.chain import Chain
from virtio_spec.errors import MemoryAccessError, RingError
from virtio_spec.packed import PackedDeviceQueue, avail_flags, used_flags
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.structs import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
)
from virtio_spec.testing import GuestAllocator, MockPackedQueue, MockSplitQueue, guest_memory

NEXT = int(VIRTQ_DESC_F_NEXT)
WRITE = int(VIRTQ_DESC_F_WRITE)
INDIRECT = int(VIRTQ_DESC_F_INDIRECT)
AVAIL1 = avail_flags(True)  # available in the first lap (wrap counter 1)


def refused(dev: SplitDeviceQueue | PackedDeviceQueue, clause: str,
            exc: type[RingError] = RingError) -> RingError:
    """Pop, expect `exc` for `clause`, and check the queue recorded it as broken."""
    with pytest.raises(exc) as info:
        dev.pop()
    assert info.value.clause == clause, str(info.value)
    assert dev.broken is info.value
    return info.value


# -- split ring, device side -----------------------------------------------------------


def test_2_7_5_2_descriptor_loop_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain([b"a", b"b", b"c"])
    q.poke_desc(q.driver.descriptors_of(head)[-1], flags=NEXT, next=head)
    err = refused(dev, "2.7.5.2")
    assert "longer than 8 descriptors" in str(err)


def test_2_7_5_2_self_loop_refused() -> None:
    q = MockSplitQueue(size=4)
    dev = q.device()
    head = q.add_chain([b"a"])
    q.poke_desc(head, flags=NEXT, next=head)
    refused(dev, "2.7.5.2")


def test_2_7_5_2_chain_past_2_32_bytes_refused() -> None:
    q = MockSplitQueue(size=4)
    dev = q.device()
    head = q.add_chain([b"a", b"b"])
    first, second = q.driver.descriptors_of(head)
    q.poke_desc(first, len=(1 << 31) + 1)
    q.poke_desc(second, len=(1 << 31) + 1)
    assert "past 2**32 bytes" in str(refused(dev, "2.7.5.2"))


def test_2_7_5_next_index_out_of_range_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(head, next=8)
    assert "next 8" in str(refused(dev, "2.7.5"))


def test_2_7_6_head_index_out_of_range_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    q.add_chain([b"a"])
    q.poke_avail_ring(0, 0xFFFF)
    assert "head 65535" in str(refused(dev, "2.7.6"))


def test_2_7_6_avail_idx_jumping_past_the_queue_size_refused() -> None:
    q = MockSplitQueue(size=8, start_idx=0xFFFC)
    dev = q.device()
    q.add_chain([b"a"])
    q.poke_avail_idx(0xFFFC + 9)
    assert "more than the queue size" in str(refused(dev, "2.7.6"))


def test_2_7_6_1_avail_idx_moving_backwards_refused() -> None:
    q = MockSplitQueue(size=8, start_idx=2)
    dev = q.device()
    q.add_chain([b"a"])
    assert dev.pop() is not None
    q.poke_avail_idx(1)
    assert "backwards" in str(refused(dev, "2.7.6.1"))


def test_2_7_13_1_head_already_in_flight_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain([b"a"])
    assert dev.pop() is not None
    q.poke_avail_ring(1, head)
    q.poke_avail_idx(2)
    refused(dev, "2.7.13.1")


def test_2_7_4_2_readable_after_writable_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(head, flags=NEXT | WRITE)
    assert "device-readable after a device-writable" in str(refused(dev, "2.7.4.2"))


def test_2_7_4_2_readable_after_writable_inside_an_indirect_table_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(8)
    table = q.raw_table([(buf, 8, WRITE | NEXT, 1), (buf, 8, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)
    refused(dev, "2.7.4.2")


def test_2_7_5_address_outside_guest_memory_refused() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain([b"a"], [4])
    q.poke_desc(q.driver.descriptors_of(head)[1], addr=0xDEAD0000)
    err = refused(dev, "2.7.5", MemoryAccessError)
    assert "0xdead0000" in str(err)


def test_2_7_5_3_1_indirect_without_the_feature_refused() -> None:
    q = MockSplitQueue(size=8, indirect=False)
    dev = q.device()
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=16, flags=INDIRECT)
    refused(dev, "2.7.5.3.1")


def test_2_7_5_3_1_nested_indirect_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    inner = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    outer = q.raw_table([(inner, 16, INDIRECT, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=outer, len=16, flags=INDIRECT)
    assert "inside an indirect table" in str(refused(dev, "2.7.5.3.1"))


@pytest.mark.parametrize("length", [0, 8, 24, 33])
def test_2_7_5_3_1_indirect_length_not_a_multiple_of_16_refused(length: int) -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    head = q.add_chain([b"a"], indirect=True)
    q.poke_desc(head, len=length)
    assert "multiple of 16" in str(refused(dev, "2.7.5.3.1"))


def test_2_7_5_3_1_indirect_combined_with_next_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    head = q.add_chain([b"a", b"b"])
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    q.poke_desc(head, addr=table, len=16, flags=INDIRECT | NEXT)
    assert "INDIRECT combined with NEXT" in str(refused(dev, "2.7.5.3.1"))


def test_2_7_5_3_1_indirect_table_longer_than_the_queue_refused() -> None:
    q = MockSplitQueue(size=4, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, 0, 0)] * 5)
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=80, flags=INDIRECT)
    refused(dev, "2.7.5.3.1")


def test_2_7_5_3_1_direct_plus_indirect_chain_longer_than_the_queue_refused() -> None:
    q = MockSplitQueue(size=4, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, i + 1) for i in range(3)] + [(buf, 4, 0, 0)])
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(q.driver.descriptors_of(head)[1], addr=table, len=64, flags=INDIRECT)
    refused(dev, "2.7.5.3.1")


def test_2_7_5_3_1_loop_inside_an_indirect_table_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, 1), (buf, 4, NEXT, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)
    refused(dev, "2.7.5.3.1")


def test_2_7_5_next_out_of_an_indirect_table_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, 2), (buf, 4, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)
    assert "table size 2" in str(refused(dev, "2.7.5"))


def test_2_7_5_3_indirect_table_outside_guest_memory_refused() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    head = q.add_chain([b"a"], indirect=True)
    q.poke_desc(head, addr=0x7000_0000)
    refused(dev, "2.7.5.3", MemoryAccessError)


# -- split ring, driver side (a hostile device) ----------------------------------------


def test_2_7_8_used_id_not_in_flight_refused_by_the_driver() -> None:
    q = MockSplitQueue(size=8)
    q.add_chain(writable=[4])
    q.poke_used_elem(0, id=5, len=4)
    q.poke_used_idx(1)
    with pytest.raises(RingError) as info:
        q.used()
    assert info.value.clause == "2.7.8" and q.driver.broken is info.value


def test_2_7_8_used_idx_past_the_chains_in_flight_refused_by_the_driver() -> None:
    q = MockSplitQueue(size=8)
    q.add_chain(writable=[4])
    q.poke_used_idx(2)
    with pytest.raises(RingError) as info:
        q.used()
    assert info.value.clause == "2.7.8"


# -- what a refusal leaves behind ------------------------------------------------------


def test_a_broken_queue_refuses_to_pop_but_completes_what_it_popped() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    good = q.add_chain([b"ok"], [2])
    bad = q.add_chain([b"a"])
    q.poke_desc(bad, flags=NEXT, next=bad)
    chains = dev.pop_many(4)
    assert [c.head for c in chains] == [good]  # good chains first, then broken
    assert dev.broken is not None and dev.broken.clause == "2.7.5.2"
    with pytest.raises(RingError, match="broken until reset") as info:
        dev.pop()
    assert info.value.clause == "2.7.5.2"
    with pytest.raises(RingError, match="broken"):
        dev.pop_many(4)
    dev.push(chains[0], chains[0].write(b"OK"))
    assert [(u.id, u.data) for u in q.used()] == [(good, b"OK")]


def test_a_broken_queue_leaves_another_queue_serving() -> None:
    mem = guest_memory()
    alloc = GuestAllocator(mem)
    rx, tx = MockSplitQueue(mem, 8, allocator=alloc), MockPackedQueue(mem, 8, allocator=alloc)
    rx_dev, tx_dev = rx.device(), tx.device()
    head = rx.add_chain([b"x"])
    rx.poke_desc(head, addr=0xFFFF_0000)
    with pytest.raises(MemoryAccessError):
        rx_dev.pop()
    ident = tx.add_chain([b"frame"], [5])
    chain = tx_dev.pop()
    assert chain is not None and chain.read() == b"frame"
    tx_dev.push(chain, chain.write(b"reply"))
    assert [(u.id, u.data) for u in tx.used()] == [(ident, b"reply")]
    # A second split queue over the same memory is just as independent.
    other = MockSplitQueue(mem, 4, allocator=alloc)
    other_dev = other.device()
    other.add_chain([b"still"])
    assert (c := other_dev.pop()) is not None and c.read() == b"still"
    assert rx_dev.broken is not None and other_dev.broken is None


# -- packed ring, device side ----------------------------------------------------------


def test_2_8_17_list_longer_than_the_queue_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b", b"c", b"d"])
    q.poke_desc(q.slots_of(ident)[-1], flags=AVAIL1 | NEXT)
    assert "longer than the queue size" in str(refused(dev, "2.8.17"))


def test_2_8_17_more_slots_in_flight_than_the_ring_refused() -> None:
    # The driver re-offers slot 0 while the device still owns it (never marked used).
    q = MockPackedQueue(size=2)
    dev = q.device()
    first = q.add_chain([b"a"])
    q.add_chain([b"b"])
    assert len(dev.pop_many(2)) == 2
    q.poke_desc(0, id=(first + 5), flags=avail_flags(False))
    assert "overrun the ring" in str(refused(dev, "2.8.17"))


def test_2_8_6_list_continuing_into_an_unavailable_descriptor_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b"])
    q.poke_desc(q.slots_of(ident)[1], flags=used_flags(False))
    assert "not available" in str(refused(dev, "2.8.6"))


def test_2_8_17_readable_after_writable_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b"])
    q.poke_desc(q.slots_of(ident)[0], flags=AVAIL1 | NEXT | WRITE)
    refused(dev, "2.8.17")


def test_2_8_17_readable_after_writable_inside_an_indirect_table_refused() -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, 0, WRITE), (buf, 4, 0, 0)])
    ident = q.add_chain([b"a"])
    q.poke_desc(q.slots_of(ident)[0], addr=table, len=32, flags=AVAIL1 | INDIRECT)
    refused(dev, "2.8.17")


def test_2_7_5_2_packed_chain_past_2_32_bytes_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b"])
    for slot in q.slots_of(ident):
        q.poke_desc(slot, len=(1 << 31) + 1)
    refused(dev, "2.7.5.2")


def test_2_8_4_address_outside_guest_memory_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a"])
    q.poke_desc(q.slots_of(ident)[0], addr=1 << 40)
    assert f"{1 << 40:#x}" in str(refused(dev, "2.8.4", MemoryAccessError))


def test_2_8_19_indirect_without_the_feature_refused() -> None:
    q = MockPackedQueue(size=4, indirect=False)
    dev = q.device()
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    ident = q.add_chain([b"a"])
    q.poke_desc(q.slots_of(ident)[0], addr=table, len=16, flags=AVAIL1 | INDIRECT)
    refused(dev, "2.8.19")


def test_2_8_19_indirect_combined_with_next_refused() -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    ident = q.add_chain([b"a", b"b"])
    q.poke_desc(q.slots_of(ident)[0], addr=table, len=16, flags=AVAIL1 | INDIRECT | NEXT)
    refused(dev, "2.8.19")


def test_2_8_19_indirect_after_next_refused() -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    ident = q.add_chain([b"a", b"b"])
    q.poke_desc(q.slots_of(ident)[1], addr=table, len=16, flags=AVAIL1 | INDIRECT)
    assert "linked by NEXT" in str(refused(dev, "2.8.19"))


def test_2_8_19_nested_indirect_refused() -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    inner = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    outer = q.raw_table([(inner, 16, 0, INDIRECT)])
    ident = q.add_chain([b"a"])
    q.poke_desc(q.slots_of(ident)[0], addr=outer, len=16, flags=AVAIL1 | INDIRECT)
    refused(dev, "2.8.19")


@pytest.mark.parametrize("length", [0, 4, 40])
def test_2_8_7_indirect_length_not_a_multiple_of_16_refused(length: int) -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    ident = q.add_chain([b"a"], [4], indirect=True)
    q.poke_desc(q.slots_of(ident)[0], len=length)
    refused(dev, "2.8.7")


def test_2_8_19_indirect_table_longer_than_the_queue_refused() -> None:
    q = MockPackedQueue(size=2, indirect=True)
    dev = q.device()
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, 0, 0)] * 3)
    ident = q.add_chain([b"a"])
    q.poke_desc(q.slots_of(ident)[0], addr=table, len=48, flags=AVAIL1 | INDIRECT)
    refused(dev, "2.8.19")


def test_2_8_21_1_buffer_id_already_in_flight_refused() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    first = q.add_chain([b"a"])
    second = q.add_chain([b"b"])
    assert dev.pop() is not None
    q.poke_desc(q.slots_of(second)[0], id=first)
    refused(dev, "2.8.21.1")


def test_2_8_6_used_id_not_in_flight_refused_by_the_driver() -> None:
    q = MockPackedQueue(size=4)
    q.add_chain([b"a"])
    q.poke_desc(0, id=3, flags=used_flags(True))
    with pytest.raises(RingError) as info:
        q.used()
    assert info.value.clause == "2.8.6" and q.driver.broken is info.value


# -- fuzzing: whatever the driver writes, only RingError comes out ---------------------

FIELDS = st.sampled_from(["addr", "len", "flags", "next"])
SMALL = st.integers(0, 20)
ANY16 = st.integers(0, 0xFFFF)


def _drain(dev: SplitDeviceQueue | PackedDeviceQueue) -> list[Chain]:
    popped: list[Chain] = []
    for _ in range(dev.size + 2):
        try:
            chain = dev.pop()
        except RingError:
            assert dev.broken is not None
            break
        if chain is None:
            break
        popped.append(chain)
    for chain in popped:
        dev.push(chain, chain.write(b"z" * min(chain.writable_len, 3)))
    return popped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pokes=st.lists(st.tuples(st.integers(0, 7), FIELDS, st.one_of(SMALL, ANY16,
                                st.integers(0, (1 << 64) - 1))), max_size=12),
       avail=st.lists(st.tuples(st.integers(0, 7), st.one_of(SMALL, ANY16)), max_size=3),
       idx=st.one_of(st.none(), ANY16))
def test_fuzzed_split_rings_only_ever_raise_ring_errors(
        pokes: list[tuple[int, str, int]], avail: list[tuple[int, int]],
        idx: int | None) -> None:
    q = MockSplitQueue(size=8, indirect=True, event_idx=True)
    dev = q.device()
    q.add_chain([b"abc"], [4])
    q.add_chain([b"d", b"e"], [2, 2], indirect=True)
    q.add_chain([b"f"], [1, 1])
    buffers = [q.peek_desc(i)[0] for i in range(8)]
    for index, field, value in pokes:
        if field == "addr" and value < len(buffers):
            value = buffers[value] or value  # sometimes a valid address
        limit = {"addr": 1 << 64, "len": 1 << 32, "flags": 1 << 16, "next": 1 << 16}[field]
        q.poke_desc(index, **{field: value % limit})
    for slot, head in avail:
        q.poke_avail_ring(slot, head)
    if idx is not None:
        q.poke_avail_idx(idx)
    _drain(dev)
    dev.should_interrupt()  # reads the driver's event fields: must not raise either


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pokes=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["addr", "len", "id",
                                                                     "flags"]),
                                st.one_of(SMALL, ANY16, st.integers(0, (1 << 64) - 1))),
                      max_size=12))
def test_fuzzed_packed_rings_only_ever_raise_ring_errors(
        pokes: list[tuple[int, str, int]]) -> None:
    q = MockPackedQueue(size=6, indirect=True, event_idx=True)
    dev = q.device()
    q.add_chain([b"abc"], [4])
    q.add_chain([b"d", b"e"], [2, 2], indirect=True)
    q.add_chain([b"f"], [1, 1])
    buffers = [q.peek_desc(i)[0] for i in range(6)]
    for slot, field, value in pokes:
        if field == "addr" and value < len(buffers):
            value = buffers[value] or value
        if field == "flags" and value < 20:
            value = (value & 0x7) | AVAIL1  # keep it available, vary NEXT/WRITE/INDIRECT
        limit = {"addr": 1 << 64, "len": 1 << 32, "id": 1 << 16, "flags": 1 << 16}[field]
        q.poke_desc(slot, **{field: value % limit})
    _drain(dev)
    dev.should_interrupt()  # reads the driver's event fields: must not raise either
