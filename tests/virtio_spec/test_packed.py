"""The packed virtqueue with a well-behaved peer: wrap counters, ids, event suppression."""

from __future__ import annotations

import pytest

from virtio_spec.errors import LocalProtocolError, RingError
from virtio_spec.packed import PackedDeviceQueue, avail_flags, used_flags
from virtio_spec.structs import (
    RING_EVENT_FLAGS_DESC,
    RING_EVENT_FLAGS_DISABLE,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    pvirtq_desc,
    pvirtq_event_suppress,
)
from virtio_spec.testing import MockPackedQueue, Used, guest_memory


def test_a_chain_carries_request_bytes_to_the_device_and_the_reply_back() -> None:
    q = MockPackedQueue(size=8)
    dev = q.device()
    ident = q.add_chain([b"ping", b"!"], [8, 8])
    chain = dev.pop()
    assert chain is not None
    assert (chain.head, chain.read(), chain.writable_len, chain.descriptors) == \
        (ident, b"ping!", 16, 4)
    dev.push(chain, chain.write(b"pong pong pong"))
    assert q.used() == [Used(ident, 14, b"pong pong pong")]
    assert q.driver.free_descriptors == 8


def test_available_and_used_descriptors_carry_the_wrap_counter_encoding() -> None:
    # §2.8.1: available = AVAIL matches the driver's counter, USED its inverse;
    # used = both equal to the device's counter.
    q = MockPackedQueue(size=2)
    dev = q.device()
    ident = q.add_chain([b"a", b"b"])
    s0, s1 = q.slots_of(ident)
    assert q.peek_desc(s0)[3] == avail_flags(True) | int(VIRTQ_DESC_F_NEXT)
    assert q.peek_desc(s1)[3] == avail_flags(True)
    chain = dev.pop()
    assert chain is not None and (dev.next_avail, dev.avail_wrap) == (0, False)
    dev.push(chain, 0)
    assert q.peek_desc(s0)[3] == used_flags(True)  # no WRITE: nothing written
    assert (dev.next_used, dev.used_wrap) == (0, False)
    assert q.used() == [Used(ident, 0, b"")]
    # Second lap: the counters are now 0.
    ident = q.add_chain(writable=[4])
    assert q.peek_desc(0)[3] == avail_flags(False) | int(VIRTQ_DESC_F_WRITE)
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, 3)
    assert q.peek_desc(0)[3] == used_flags(False) | int(VIRTQ_DESC_F_WRITE)
    assert q.used() == [Used(ident, 3, b"\0\0\0")]


def test_the_first_descriptor_is_exposed_last() -> None:
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b", b"c"], publish=False)
    _, *rest = q.slots_of(ident)
    assert all(q.peek_desc(s)[3] & avail_flags(True) for s in rest)
    assert dev.pop() is None
    q.publish()
    assert dev.pop() is not None


def test_the_buffer_id_comes_from_the_last_descriptor() -> None:
    # §2.8.6: "Buffer ID is included in the last descriptor in the list."
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a", b"b", b"c"])
    first, middle, _ = q.slots_of(ident)
    q.poke_desc(first, id=3)
    q.poke_desc(middle, id=2)
    chain = dev.pop()
    assert chain is not None and chain.head == ident


def test_out_of_order_completion_skips_by_each_chain_length() -> None:
    q = MockPackedQueue(size=7)  # packed sizes need not be powers of 2
    dev = q.device()
    a = q.add_chain([b"aa", b"aa"], [2])
    b = q.add_chain([b"b"], [2])
    c = q.add_chain([b"c"], [2])
    ca, cb, cc = dev.pop_many(3)
    assert (ca.descriptors, cb.descriptors, cc.descriptors) == (3, 2, 2)
    assert dev.pop() is None
    dev.push(cc, cc.write(b"CC"))
    dev.push(ca, ca.write(b"AA"))
    dev.push(cb, cb.write(b"BB"))
    assert [(u.id, u.data) for u in q.used()] == [(c, b"CC"), (a, b"AA"), (b, b"BB")]
    assert q.driver.free_descriptors == 7
    # Used descriptors went to slots 0 (c, skip 2), 2 (a, skip 3), 5 (b, skip 2).
    assert (q.driver.next_used, q.driver.used_wrap) == (0, False)


def test_an_indirect_chain_takes_one_slot() -> None:
    q = MockPackedQueue(size=4, indirect=True)
    dev = q.device()
    ident = q.add_chain([b"x", b"y"], [3, 3], indirect=True)
    assert q.driver.free_descriptors == 3
    chain = dev.pop()
    assert chain is not None and (chain.descriptors, chain.read()) == (1, b"xy")
    dev.push(chain, chain.write(b"12345"))
    assert q.used() == [Used(ident, 5, b"12345")]


def test_ring_positions_survive_many_laps_with_odd_sizes() -> None:
    q = MockPackedQueue(size=5)
    dev = q.device()
    for i in range(40):
        q.add_chain([bytes([i])] * (1 + i % 3), [1])
        chain = dev.pop()
        assert chain is not None
        dev.push(chain, chain.write(chain.read()[:1]))
        assert q.used() == [Used(chain.head, 1, bytes([i]))]
    assert (dev.next_avail, dev.avail_wrap) == (dev.next_used, dev.used_wrap) == \
        (q.driver.next_avail, q.driver.avail_wrap)


@pytest.mark.parametrize("start_off, start_wrap", [(3, True), (3, False), (0, False)])
def test_a_queue_can_start_anywhere_in_the_ring(start_off: int, start_wrap: bool) -> None:
    q = MockPackedQueue(size=5, start_off=start_off, start_wrap=start_wrap)
    dev = q.device()
    assert dev.pop() is None and q.used() == []
    for i in range(12):
        q.add_chain([bytes([i]), b"-"], [1])
        chain = dev.pop()
        assert chain is not None and chain.read() == bytes([i]) + b"-"
        dev.push(chain, chain.write(b"!"))
        assert q.used() == [Used(chain.head, 1, b"!")]


def test_used_len_is_ignored_without_the_write_flag() -> None:
    # §2.8.4: "Element Length is reserved for used descriptors without VIRTQ_DESC_F_WRITE".
    q = MockPackedQueue(size=4)
    dev = q.device()
    ident = q.add_chain([b"a"])
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, 0)
    q.poke_desc(q.slots_of(ident)[0], len=999)
    assert q.used() == [Used(ident, 0, b"")]


def test_kicks_follow_the_device_event_area() -> None:
    q = MockPackedQueue(size=8)
    dev = q.device()
    q.add_chain([b"a"])
    assert q.kicks == 1  # ENABLE
    dev.disable_notifications()
    assert q.event(q.device_event)[1] == RING_EVENT_FLAGS_DISABLE
    q.add_chain([b"b"])
    assert q.kicks == 1
    assert dev.enable_notifications() is True
    q.add_chain([b"c"])
    assert q.kicks == 2


def test_event_idx_kicks_when_the_named_descriptor_is_made_available() -> None:
    q = MockPackedQueue(size=4, event_idx=True)
    dev = q.device()
    assert dev.enable_notifications() is False
    assert q.event(q.device_event) == (0 | 1 << 15, RING_EVENT_FLAGS_DESC)
    q.add_chain([b"a", b"b"])
    assert q.kicks == 1
    q.add_chain([b"c"])
    assert q.kicks == 1  # the device has not moved its event on
    dev.pop_many(4)
    assert q.event(q.device_event) == (3 | 1 << 15, RING_EVENT_FLAGS_DESC)
    q.add_chain([b"d"])  # slot 3, wrap 1: the named descriptor
    assert q.kicks == 2


def test_event_idx_interrupts_when_the_named_descriptor_is_used() -> None:
    q = MockPackedQueue(size=4, event_idx=True)
    dev = q.device()
    for _ in range(3):
        q.add_chain(writable=[1])
    a, b, c = dev.pop_many(3)
    assert q.driver.enable_interrupts() is False
    dev.push(a, 0)
    assert dev.should_interrupt() is True
    dev.push(b, 0)
    assert dev.should_interrupt() is False  # driver has not reaped: event still at 0
    q.used()
    dev.push(c, 0)
    assert dev.should_interrupt() is True
    q.driver.disable_interrupts()
    q.add_chain(writable=[1])
    dev.push(dev.pop() or 0, 0)
    assert dev.should_interrupt() is False


def test_buffer_ids_run_out_before_slots_are_shared() -> None:
    q = MockPackedQueue(size=2)
    q.add_chain([b"a"])
    q.add_chain([b"b"])
    with pytest.raises(LocalProtocolError, match="0 free"):
        q.add_chain([b"c"])


def test_queue_geometry_is_checked() -> None:
    mem = guest_memory()
    base = mem.regions[0].base
    with pytest.raises(RingError, match="queue size"):
        PackedDeviceQueue(mem, 0, base, base + 0x1000, base + 0x2000)
    with pytest.raises(RingError, match="aligned") as err:
        PackedDeviceQueue(mem, 5, base, base + 0x1002, base + 0x2000)
    assert err.value.clause == "2.8.11"


def test_the_ring_in_memory_parses_as_the_spec_structures() -> None:
    q = MockPackedQueue(size=4, event_idx=True)
    dev = q.device()
    ident = q.add_chain([b"abc"], [5])
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, 2)
    used = pvirtq_desc.parse(q.mem.read(q.ring, 16))
    assert (used.id, used.len, used.flags) == \
        (ident, 2, used_flags(True) | int(VIRTQ_DESC_F_WRITE))
    event = pvirtq_event_suppress.parse(q.mem.read(q.device_event, 4))
    assert (event.desc.desc_event_off, event.desc.desc_event_wrap,
            event.flags.desc_event_flags) == (2, 1, RING_EVENT_FLAGS_DESC)
