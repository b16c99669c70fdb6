"""Properties of the ring engines under random use (hypothesis).

* need_event / packed_need_event agree with brute-force enumeration of the indices moved.
* Random add / pop / push / reap sequences conserve buffers, descriptors, ids and bytes,
  on split rings starting near the 16-bit wrap and on packed rings of odd sizes.
* No lost wake-ups: a side that re-enabled notifications and found nothing to do is
  always notified about the next buffer; with EVENT_IDX every split decision equals
  "the idx moved past the event index".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from virtio_spec.chain import Chain
from virtio_spec.notify import need_event, packed_need_event
from virtio_spec.testing import MockPackedQueue, MockSplitQueue, Used

U16 = st.integers(0, 0xFFFF)
FAST = settings(max_examples=200, deadline=None)
Op = tuple[Any, ...]


# -- need_event against enumeration ----------------------------------------------------


@FAST
@given(event=U16, old=U16, moved=st.integers(0, 600))
def test_need_event_is_true_exactly_when_the_event_index_was_passed(
        event: int, old: int, moved: int) -> None:
    new = (old + moved) & 0xFFFF
    passed = {(old + k) & 0xFFFF for k in range(moved)}
    assert need_event(event, new, old) is (event in passed)


@FAST
@given(event=st.integers(0, 40), old=st.integers(0xFFF0, 0xFFFF), moved=st.integers(0, 40))
def test_need_event_across_the_16_bit_wrap(event: int, old: int, moved: int) -> None:
    new = (old + moved) & 0xFFFF
    assert need_event(event, new, old) is (((event - old) & 0xFFFF) < moved)


@st.composite
def packed_positions(draw: st.DrawFn) -> tuple[int, int, bool, int, int, bool]:
    size = draw(st.integers(1, 64))
    return (size, draw(st.integers(0, size - 1)), draw(st.booleans()),
            draw(st.integers(0, size)), draw(st.integers(0, size - 1)), draw(st.booleans()))


@FAST
@given(packed_positions())
def test_packed_need_event_is_true_exactly_when_the_named_slot_was_passed(
        case: tuple[int, int, bool, int, int, bool]) -> None:
    size, new_off, new_wrap, advanced, ev_off, ev_wrap = case
    passed = set()
    off, wrap = new_off, new_wrap
    for _ in range(advanced):  # walk back over the slots just made available/used
        off -= 1
        if off < 0:
            off, wrap = size - 1, not wrap
        passed.add((off, wrap))
    off_wrap = ev_off | (1 << 15 if ev_wrap else 0)
    assert packed_need_event(off_wrap, new_off, new_wrap, advanced, size) is \
        ((ev_off, ev_wrap) in passed)


# -- conservation under random use -----------------------------------------------------


@dataclass
class Model:
    """What the driver put in, what the device wrote, and what came back."""

    sent: dict[int, bytes] = field(default_factory=dict)      # id -> readable bytes
    written: dict[int, bytes] = field(default_factory=dict)   # id -> bytes the device wrote
    added: int = 0
    returned: list[int] = field(default_factory=list)


OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.binary(max_size=9), max_size=3),
              st.lists(st.integers(0, 9), max_size=3), st.booleans()),
    st.tuples(st.just("pop"), st.integers(1, 5)),
    st.tuples(st.just("push"), st.integers(0, 10), st.integers(0, 100)),
    st.tuples(st.just("reap"),),
), max_size=60)


def _run(q: MockSplitQueue | MockPackedQueue, ops: list[Op]) -> None:
    dev = q.device()
    model = Model()
    popped: list[Chain] = []
    free_bytes = q.alloc.free_bytes

    def check(used: list[Used]) -> None:
        for u in used:
            assert u.data == model.written.pop(u.id)
            assert u.len == len(u.data)
            model.returned.append(u.id)

    for op in ops:
        if op[0] == "add":
            _, readable, writable, indirect = op
            if not readable and not writable:
                continue
            need = 1 if indirect else len(readable) + len(writable)
            if q.driver.free_descriptors < need or len(readable) + len(writable) > q.size \
                    or (indirect and not q.driver.indirect):
                continue
            ident = q.add_chain(readable, writable, indirect=indirect)
            assert ident not in model.sent and ident not in model.written
            model.sent[ident] = b"".join(readable)
            model.added += 1
        elif op[0] == "pop":
            for chain in dev.pop_many(op[1]):
                assert chain.read() == model.sent.pop(chain.head)
                popped.append(chain)
        elif op[0] == "push" and popped:
            chain = popped.pop(op[1] % len(popped))
            n = chain.writable_len * op[2] // 100
            data = bytes((chain.head + i) & 0xFF for i in range(n))
            assert chain.write(data) == n
            dev.push(chain, n)
            model.written[chain.head] = data
        elif op[0] == "reap":
            check(q.used())
    # Drain: everything added comes back exactly once, with every byte and descriptor.
    while (chain := dev.pop()) is not None:
        assert chain.read() == model.sent.pop(chain.head)
        popped.append(chain)
    dev.push_many([(c, 0) for c in popped])
    model.written.update({c.head: b"" for c in popped})
    check(q.used())
    assert not model.sent and not model.written
    assert len(model.returned) == model.added
    assert q.driver.free_descriptors == q.size and not q.driver.in_flight
    assert not dev.in_flight and dev.broken is None
    assert q.alloc.free_bytes == free_bytes


@FAST
@given(ops=OPS, start=st.integers(0xFFF0, 0xFFFF), size_log=st.integers(0, 4),
       indirect=st.booleans(), event_idx=st.booleans())
def test_split_rings_conserve_buffers_across_the_16_bit_wrap(
        ops: list[Op], start: int, size_log: int, indirect: bool,
        event_idx: bool) -> None:
    _run(MockSplitQueue(size=1 << size_log, start_idx=start, indirect=indirect,
                        event_idx=event_idx), ops)


@FAST
@given(ops=OPS, size=st.integers(1, 13), start=st.integers(0, 12), wrap=st.booleans(),
       indirect=st.booleans(), event_idx=st.booleans())
def test_packed_rings_conserve_buffers_over_many_laps(
        ops: list[Op], size: int, start: int, wrap: bool,
        indirect: bool, event_idx: bool) -> None:
    _run(MockPackedQueue(size=size, start_off=start % size, start_wrap=wrap,
                         indirect=indirect, event_idx=event_idx), ops)


# -- notifications: no lost wake-ups, EVENT_IDX as enumeration -------------------------

WAKE_OPS = st.lists(st.tuples(st.sampled_from(["add", "serve", "complete", "reap"]),
                              st.integers(1, 4)), max_size=50)


def _wakeups(q: MockSplitQueue | MockPackedQueue, ops: list[tuple[str, int]]) -> None:
    dev = q.device()
    split = isinstance(q, MockSplitQueue)
    device_asleep = driver_asleep = False
    popped: list[Chain] = []
    for op, n in ops:
        if op == "add":
            n = min(n, q.driver.free_descriptors)
            if not n:
                continue
            before_idx = q.driver.avail_idx if split else 0
            event = q.avail_event() if isinstance(q, MockSplitQueue) else 0
            for _ in range(n):
                q.add_chain(writable=[1], publish=False)
            kick = q.publish()
            if device_asleep:
                assert kick, "the device slept with notifications on and missed a kick"
            if isinstance(q, MockSplitQueue) and q.driver.event_idx:
                moved = {(before_idx + k) & 0xFFFF for k in range(n)}
                assert kick is (event in moved)
            if kick:
                device_asleep = False
        elif op == "serve":
            popped += dev.pop_many(n)
            if not dev.enable_notifications():
                device_asleep = True
            elif n % 2:
                dev.disable_notifications()  # busy polling
        elif op == "complete" and popped:
            batch, popped = popped[:n], popped[n:]
            before_used = dev.used_idx if split else 0
            event = q.used_event() if isinstance(q, MockSplitQueue) else 0
            dev.push_many([(c, 0) for c in batch])
            irq = dev.should_interrupt()
            if driver_asleep:
                assert irq, "the driver slept with interrupts on and missed an interrupt"
            if isinstance(q, MockSplitQueue) and q.driver.event_idx:
                moved = {(before_used + k) & 0xFFFF for k in range(len(batch))}
                assert irq is (event in moved)
            if irq:
                driver_asleep = False
        elif op == "reap":
            q.used()
            if not q.driver.enable_interrupts():
                driver_asleep = True
            elif n % 2:
                q.driver.disable_interrupts()


@FAST
@given(ops=WAKE_OPS, start=st.integers(0xFFF8, 0xFFFF), event_idx=st.booleans())
def test_split_notifications_are_never_lost(ops: list[tuple[str, int]], start: int,
                                            event_idx: bool) -> None:
    _wakeups(MockSplitQueue(size=8, start_idx=start, event_idx=event_idx), ops)


@FAST
@given(ops=WAKE_OPS, size=st.integers(1, 9), event_idx=st.booleans())
def test_packed_notifications_are_never_lost(ops: list[tuple[str, int]], size: int,
                                             event_idx: bool) -> None:
    _wakeups(MockPackedQueue(size=size, event_idx=event_idx), ops)
