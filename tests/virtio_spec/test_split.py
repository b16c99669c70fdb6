"""The split virtqueue with a well-behaved peer: data flow, indices, notifications."""

from __future__ import annotations

import pytest

from virtio_spec.errors import LocalProtocolError, MemoryAccessError, RingError
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.structs import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_WRITE,
    avail_ring_size,
    used_ring_size,
    virtq_avail,
    virtq_desc,
    virtq_used,
)
from virtio_spec.testing import MockSplitQueue, Used, guest_memory


def test_a_chain_carries_request_bytes_to_the_device_and_the_reply_back() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    head = q.add_chain(readable=[b"GET ", b"/index"], writable=[4, 16])
    chain = dev.pop()
    assert chain is not None
    assert (chain.head, chain.read(), chain.readable_len, chain.writable_len) == \
        (head, b"GET /index", 10, 20)
    assert [s.length for s in chain.writable] == [4, 16]
    dev.push(chain, chain.write(b"200 OK, hello"))
    assert dev.pop() is None
    assert q.used() == [Used(head, 13, b"200 OK, hello")]
    assert q.driver.free_descriptors == 8


def test_2_7_5_1_readable_segments_cannot_be_written_by_the_device() -> None:
    q = MockSplitQueue(size=4)
    dev = q.device()
    q.add_chain([b"request"], [4])
    chain = dev.pop()
    assert chain is not None
    with pytest.raises(TypeError):
        chain.readable[0].view[0] = 0
    chain.writable[0].view[0] = 0x41  # the writable part is, of course, writable


def test_the_device_writes_only_what_it_reports_and_segments_are_scattered() -> None:
    q = MockSplitQueue(size=4)
    dev = q.device()
    q.add_chain(writable=[3, 3, 3])
    chain = dev.pop()
    assert chain is not None and chain.readable == ()
    assert chain.write(b"abcd", offset=2) == 4
    assert [bytes(s.view) for s in chain.writable] == [b"\0\0a", b"bcd", b"\0\0\0"]
    with pytest.raises(LocalProtocolError, match="overruns"):
        chain.write(b"xxxx", offset=6)
    dev.push(chain, 6)
    assert q.used()[0].data == b"\0\0abcd"


def test_chains_complete_out_of_order_and_every_descriptor_comes_back() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    heads = [q.add_chain([bytes([i])], [1]) for i in range(4)]
    assert q.driver.free_descriptors == 0
    chains = dev.pop_many(10)
    assert [c.head for c in chains] == heads
    dev.push_many([(c, c.write(c.read())) for c in reversed(chains)])
    assert [(u.id, u.data) for u in q.used()] == \
        [(h, bytes([i])) for i, h in reversed(list(enumerate(heads)))]
    assert q.driver.free_descriptors == 8 and not q.driver.in_flight


def test_pop_many_stops_at_its_limit() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    for _ in range(5):
        q.add_chain([b"x"])
    assert len(dev.pop_many(3)) == 3
    assert dev.pending() == 2


def test_push_many_moves_used_idx_once_for_the_batch() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    for _ in range(3):
        q.add_chain(writable=[1])
    chains = dev.pop_many(3)
    dev.push_many([(c, 0) for c in chains])
    assert dev.used_idx == 3
    assert q.mem.read_u16(q.used_ring + 2) == 3


def test_nothing_is_visible_before_publish() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    q.add_chain([b"a"], publish=False)
    assert dev.pop() is None
    assert q.publish() is True
    assert dev.pop() is not None


def test_an_indirect_chain_takes_one_ring_descriptor() -> None:
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    head = q.add_chain([b"a", b"b", b"c"], [2, 2, 2], indirect=True)
    assert q.driver.free_descriptors == 7
    chain = dev.pop()
    assert chain is not None
    assert (chain.descriptors, chain.read(), chain.writable_len) == (1, b"abc", 6)
    dev.push(chain, chain.write(b"wxyz"))
    assert q.used() == [Used(head, 4, b"wxyz")]
    assert q.driver.free_descriptors == 8


def test_2_7_5_3_2_direct_descriptors_followed_by_one_indirect_are_accepted() -> None:
    # "The device MUST handle the case of zero or more normal chained descriptors
    # followed by a single descriptor with flags & VIRTQ_DESC_F_INDIRECT", and MUST ignore
    # WRITE on that descriptor.
    q = MockSplitQueue(size=8, indirect=True)
    dev = q.device()
    head = q.add_chain([b"hdr", b"unused"])
    second = q.driver.descriptors_of(head)[1]
    table = q.alloc.alloc(32)
    out = q.alloc.alloc(8)
    q.mem.write(table, bytes(32))
    q.mem.write_u64(table, out)
    q.mem.write_u32(table + 8, 8)
    q.mem.write_u16(table + 12, int(VIRTQ_DESC_F_WRITE))
    q.poke_desc(second, addr=table, len=16,
                flags=int(VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE))
    chain = dev.pop()
    assert chain is not None
    assert (chain.read(), chain.writable_len, chain.descriptors) == (b"hdr", 8, 2)
    assert chain.writable[0].gpa == out


def test_pushing_what_is_not_in_flight_or_too_much_is_our_error_and_writes_nothing() -> None:
    q = MockSplitQueue(size=4)
    dev = q.device()
    q.add_chain(writable=[4])
    q.add_chain(writable=[4])
    a, b = dev.pop_many(2)
    with pytest.raises(LocalProtocolError, match="not in flight"):
        dev.push(3, 0)
    with pytest.raises(LocalProtocolError, match="writable part is 4"):
        dev.push_many([(a, 4), (b, 5)])
    with pytest.raises(LocalProtocolError, match="not in flight"):
        dev.push_many([(a, 1), (a, 1)])
    assert dev.used_idx == 0 and dev.in_flight == {a.head, b.head}
    assert q.used() == []


def test_a_full_queue_refuses_more_chains_without_leaking_guest_memory() -> None:
    q = MockSplitQueue(size=2)
    q.add_chain([b"a", b"b"])
    before = q.alloc.free_bytes
    with pytest.raises(LocalProtocolError, match="1 descriptors needed, 0 free"):
        q.add_chain([b"c"])
    assert q.alloc.free_bytes == before


def test_indices_wrap_at_65535() -> None:
    q = MockSplitQueue(size=4, start_idx=0xFFFE)
    dev = q.device()
    for i in range(10):
        q.add_chain([bytes([i])], [1])
        chain = dev.pop()
        assert chain is not None
        dev.push(chain, chain.write(chain.read()))
        assert q.used()[0].data == bytes([i])
    assert dev.last_avail_idx == dev.used_idx == q.driver.avail_idx == 8


def test_kicks_follow_the_no_notify_flag_without_event_idx() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    assert q.add_chain([b"a"]) is not None and q.kicks == 1
    dev.disable_notifications()
    q.add_chain([b"b"])
    assert q.kicks == 1
    assert dev.enable_notifications() is True  # work is pending: do not sleep
    q.add_chain([b"c"])
    assert q.kicks == 2


def test_interrupts_follow_the_no_interrupt_flag_without_event_idx() -> None:
    q = MockSplitQueue(size=8)
    dev = q.device()
    for _ in range(2):
        q.add_chain(writable=[1])
    a, b = dev.pop_many(2)
    assert dev.should_interrupt() is False  # nothing pushed yet
    dev.push(a, 0)
    assert dev.should_interrupt() is True
    q.driver.disable_interrupts()
    dev.push(b, 0)
    assert dev.should_interrupt() is False
    assert q.driver.enable_interrupts() is True


def test_event_idx_kicks_once_per_pop_round() -> None:
    q = MockSplitQueue(size=8, event_idx=True)
    dev = q.device()
    assert q.publish() is False  # nothing added
    q.add_chain([b"a"])
    assert q.kicks == 1  # avail_event starts at 0, idx went 0 -> 1
    q.add_chain([b"b"])
    assert q.kicks == 1  # the device has not caught up: no new kick
    dev.pop_many(8)
    assert q.avail_event() == 2
    q.add_chain([b"c"])
    assert q.kicks == 2


def test_event_idx_interrupts_when_used_idx_passes_used_event() -> None:
    q = MockSplitQueue(size=8, event_idx=True)
    dev = q.device()
    for _ in range(3):
        q.add_chain(writable=[1])
    a, b, c = dev.pop_many(3)
    dev.push(a, 0)
    assert dev.should_interrupt() is True   # used_event 0 passed
    dev.push(b, 0)
    assert dev.should_interrupt() is False  # the driver has not reaped yet
    q.used()
    assert q.used_event() == 2
    dev.push(c, 0)
    assert dev.should_interrupt() is True


def test_event_idx_disabled_interrupts_stay_quiet_until_enabled() -> None:
    q = MockSplitQueue(size=8, event_idx=True)
    dev = q.device()
    for _ in range(3):
        q.add_chain(writable=[1])
    chains = dev.pop_many(3)
    q.driver.disable_interrupts()
    # virtio 1.3 §2.7.7.1: with EVENT_IDX the driver MUST leave avail.flags at 0
    assert q.mem.read_u16(q.addresses[1]) == 0
    dev.push(chains[0], 0)
    assert dev.should_interrupt() is False
    assert q.driver.enable_interrupts() is True
    q.used()
    dev.push(chains[1], 0)
    assert dev.should_interrupt() is True


def test_queue_geometry_is_checked() -> None:
    mem = guest_memory()
    base = mem.regions[0].base
    with pytest.raises(RingError, match="power of 2"):
        SplitDeviceQueue(mem, 6, base, base + 0x1000, base + 0x2000)
    with pytest.raises(RingError, match="aligned") as err:
        SplitDeviceQueue(mem, 8, base + 8, base + 0x1000, base + 0x2000)
    assert err.value.clause == "2.7.1"
    with pytest.raises(MemoryAccessError, match="ring area"):
        SplitDeviceQueue(mem, 8, base, base + 0x1000, 0x10)


def test_the_rings_in_memory_parse_as_the_spec_structures() -> None:
    # The engine's struct offsets and the construct layouts in `structs` must agree.
    q = MockSplitQueue(size=4, event_idx=True, start_idx=7)
    dev = q.device()
    head = q.add_chain([b"abc"], [5])
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, 2)
    avail = virtq_avail.parse(q.mem.read(q.avail, avail_ring_size(4)), queue_size=4,
                              event_idx=True)
    used = virtq_used.parse(q.mem.read(q.used_ring, used_ring_size(4)), queue_size=4,
                            event_idx=True)
    desc = virtq_desc.parse(q.mem.read(q.desc + 16 * head, 16))
    assert (avail.idx, avail.ring[7 % 4]) == (8, head)
    assert (used.idx, used.ring[7 % 4].id, used.ring[7 % 4].len, used.avail_event) == \
        (8, head, 2, 8)
    assert (desc.len, desc.flags & int(VIRTQ_DESC_F_WRITE), desc.addr) == \
        (3, 0, chain.readable[0].gpa)
