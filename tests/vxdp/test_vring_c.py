"""The C split-ring engine against virtio_spec.split, side by side.

Each case builds rings with virtio_spec.testing's mocks, then runs the Python engine over
that memory and the C engine over a byte-for-byte copy.  After every step both memories
must still be identical (used elements, used idx, avail_event written the same way), and
both engines must agree on chains, refusals (same clause, same kind, same text), interrupt
and kick decisions.  Random rings mix good chains with every kind of hostile descriptor.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable

import pytest

from virtio_spec.chain import Chain
from virtio_spec.errors import MemoryAccessError, RingError
from virtio_spec.memory import GuestMemory
from virtio_spec.split import SplitDeviceQueue, SplitDriverQueue
from virtio_spec.structs import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from virtio_spec.testing import GuestAllocator, MockSplitQueue, guest_memory
from vxdp import native

NEXT = int(VIRTQ_DESC_F_NEXT)
WRITE = int(VIRTQ_DESC_F_WRITE)
INDIRECT = int(VIRTQ_DESC_F_INDIRECT)


def clone(mem: GuestMemory) -> GuestMemory:
    return GuestMemory([(r.base, bytearray(r.view)) for r in mem.regions])


def same_memory(a: GuestMemory, b: GuestMemory) -> bool:
    return all(bytes(x.view) == bytes(y.view) for x, y in zip(a.regions, b.regions,
                                                               strict=True))


def copy_into(src: GuestMemory, dst: GuestMemory) -> None:
    for s, d in zip(src.regions, dst.regions, strict=True):
        d.view[:] = s.view


def py_chain(chain: Chain) -> tuple[int, int, list[tuple[int, int, bool]]]:
    segs = [(s.gpa, s.length, False) for s in chain.readable]
    segs += [(s.gpa, s.length, True) for s in chain.writable]
    return chain.head, chain.descriptors, segs


def strip_clause(text: str) -> str:
    return text.split(" (virtio 1.3 \u00a7")[0]


class Pair:
    """A Python device queue over `mem` and a C one over a copy of it."""

    def __init__(self, q: MockSplitQueue, **overrides: object) -> None:
        self.q = q
        self.py = q.device(**overrides)
        self.mem_c = clone(q.mem)
        self.gmem = native.gmem_new([(r.base, r.view) for r in self.mem_c.regions])
        kw = dict(event_idx=self.py.event_idx, indirect=self.py.indirect,
                  start_idx=self.py.last_avail_idx)
        self.c = native.vq_new(self.gmem, q.size, *q.addresses, **kw)  # type: ignore[arg-type]

    def sync_driver(self) -> None:
        """The driver wrote into the Python-side memory: let the C side see it too."""
        copy_into(self.q.mem, self.mem_c)

    def pop(self) -> object:
        """Pop on both; the same chain, None, or the same refusal."""
        py_exc: RingError | None = None
        c_exc: native.VringError | None = None
        py_out = c_out = None
        try:
            chain = self.py.pop()
            py_out = None if chain is None else py_chain(chain)
        except RingError as exc:
            py_exc = exc
        try:
            c_out = native.vq_pop(self.c)
        except native.VringError as exc:
            c_exc = exc
        if py_exc is None:
            assert c_exc is None, f"C refused what Python took: {c_exc}"
            assert c_out == py_out
        else:
            assert c_exc is not None, f"C took what Python refused: {py_exc}"
            assert c_exc.clause == py_exc.clause, (str(py_exc), str(c_exc))
            assert strip_clause(str(c_exc)) == strip_clause(str(py_exc))
            if "broken until reset" in str(py_exc):
                assert c_exc.errno == errno.EPIPE
            else:
                memory = isinstance(py_exc, MemoryAccessError)
                assert c_exc.errno == (errno.EFAULT if memory else errno.EPROTO)
            state = native.vq_state(self.c)
            assert self.py.broken is not None
            assert state["clause"] == self.py.broken.clause
        assert same_memory(self.q.mem, self.mem_c)
        return py_exc if py_exc is not None else py_out

    def push(self, items: list[tuple[int, int]]) -> None:
        self.py.push_many(items)
        native.vq_push(self.c, items)
        assert same_memory(self.q.mem, self.mem_c)

    def interrupt(self) -> bool:
        a, b = self.py.should_interrupt(), native.vq_should_interrupt(self.c)
        assert a == b
        return a


# -- the hostile cases of tests/virtio_spec/test_hostile.py, on both engines -------------

def _loop(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a", b"b", b"c"])
    q.poke_desc(q.driver.descriptors_of(head)[-1], flags=NEXT, next=head)


def _self_loop(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a"])
    q.poke_desc(head, flags=NEXT, next=head)


def _past_2_32(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a", b"b"])
    first, second = q.driver.descriptors_of(head)
    q.poke_desc(first, len=(1 << 31) + 1)
    q.poke_desc(second, len=(1 << 31) + 1)


def _next_out_of_range(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(head, next=8)


def _head_out_of_range(q: MockSplitQueue) -> None:
    q.add_chain([b"a"])
    q.poke_avail_ring((q.driver.avail_idx - 1) % q.size, 0xFFFF)


def _avail_jump(q: MockSplitQueue) -> None:
    q.add_chain([b"a"])
    q.poke_avail_idx(q.driver.avail_idx + 8)


def _avail_backwards(q: MockSplitQueue) -> None:
    q.add_chain([b"a"])
    q.poke_avail_idx(q.driver.avail_idx - 2)


def _readable_after_writable(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(head, flags=NEXT | WRITE)


def _readable_after_writable_indirect(q: MockSplitQueue) -> None:
    buf = q.alloc.alloc(8)
    table = q.raw_table([(buf, 8, WRITE | NEXT, 1), (buf, 8, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)


def _address_outside(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a"], [4])
    q.poke_desc(q.driver.descriptors_of(head)[1], addr=0xDEAD0000)


def _address_wraps(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a"], [4])
    q.poke_desc(q.driver.descriptors_of(head)[1], addr=2**64 - 2)


def _indirect_without_feature(q: MockSplitQueue) -> None:
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=16, flags=INDIRECT)


def _nested_indirect(q: MockSplitQueue) -> None:
    inner = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    outer = q.raw_table([(inner, 16, INDIRECT, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=outer, len=16, flags=INDIRECT)


def _indirect_len(length: int) -> Callable[[MockSplitQueue], None]:
    def setup(q: MockSplitQueue) -> None:
        head = q.add_chain([b"a"], indirect=True)
        q.poke_desc(head, len=length)
    return setup


def _indirect_next(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a", b"b"])
    table = q.raw_table([(q.alloc.alloc(4), 4, 0, 0)])
    q.poke_desc(head, addr=table, len=16, flags=INDIRECT | NEXT)


def _indirect_too_long(q: MockSplitQueue) -> None:
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, 0, 0)] * 9)
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=16 * 9, flags=INDIRECT)


def _direct_plus_indirect(q: MockSplitQueue) -> None:
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, i + 1) for i in range(7)] + [(buf, 4, 0, 0)])
    head = q.add_chain([b"a", b"b"])
    q.poke_desc(q.driver.descriptors_of(head)[1], addr=table, len=128, flags=INDIRECT)


def _indirect_loop(q: MockSplitQueue) -> None:
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, 1), (buf, 4, NEXT, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)


def _indirect_next_out(q: MockSplitQueue) -> None:
    buf = q.alloc.alloc(4)
    table = q.raw_table([(buf, 4, NEXT, 2), (buf, 4, 0, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)


def _indirect_outside(q: MockSplitQueue) -> None:
    head = q.add_chain([b"a"], indirect=True)
    q.poke_desc(head, addr=0x7000_0000)


def _indirect_buffer_outside(q: MockSplitQueue) -> None:
    table = q.raw_table([(q.alloc.alloc(4), 4, NEXT, 1), (0x9000_0000, 4, WRITE, 0)])
    head = q.add_chain([b"a"])
    q.poke_desc(head, addr=table, len=32, flags=INDIRECT)


HOSTILE = {
    "2.7.5.2-loop": (_loop, "2.7.5.2", False),
    "2.7.5.2-self-loop": (_self_loop, "2.7.5.2", False),
    "2.7.5.2-past-2**32": (_past_2_32, "2.7.5.2", False),
    "2.7.5-next-out-of-range": (_next_out_of_range, "2.7.5", False),
    "2.7.6-head-out-of-range": (_head_out_of_range, "2.7.6", False),
    "2.7.6-avail-idx-jump": (_avail_jump, "2.7.6", False),
    "2.7.6.1-avail-idx-backwards": (_avail_backwards, "2.7.6.1", False),
    "2.7.4.2-readable-after-writable": (_readable_after_writable, "2.7.4.2", False),
    "2.7.4.2-in-indirect": (_readable_after_writable_indirect, "2.7.4.2", True),
    "2.7.5-address-outside": (_address_outside, "2.7.5", False),
    "2.7.5-address-wraps": (_address_wraps, "2.7.5", False),
    "2.7.5.3.1-indirect-without-feature": (_indirect_without_feature, "2.7.5.3.1", False),
    "2.7.5.3.1-nested": (_nested_indirect, "2.7.5.3.1", True),
    "2.7.5.3.1-len-0": (_indirect_len(0), "2.7.5.3.1", True),
    "2.7.5.3.1-len-8": (_indirect_len(8), "2.7.5.3.1", True),
    "2.7.5.3.1-len-33": (_indirect_len(33), "2.7.5.3.1", True),
    "2.7.5.3.1-indirect-next": (_indirect_next, "2.7.5.3.1", True),
    "2.7.5.3.1-table-too-long": (_indirect_too_long, "2.7.5.3.1", True),
    "2.7.5.3.1-direct-plus-indirect": (_direct_plus_indirect, "2.7.5.3.1", True),
    "2.7.5.3.1-loop-in-table": (_indirect_loop, "2.7.5.3.1", True),
    "2.7.5-next-out-of-table": (_indirect_next_out, "2.7.5", True),
    "2.7.5.3-table-outside": (_indirect_outside, "2.7.5.3", True),
    "2.7.5-indirect-buffer-outside": (_indirect_buffer_outside, "2.7.5", True),
}


@pytest.mark.parametrize("start", [0, 0xFFFE])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_ring_refused_by_both_engines_with_the_same_clause(case: str,
                                                                    start: int) -> None:
    setup, clause, indirect = HOSTILE[case]
    q = MockSplitQueue(size=8, indirect=indirect, start_idx=start)
    good = q.add_chain([b"ok"], [4])
    pair = Pair(q)
    first = pair.pop()
    assert isinstance(first, tuple) and first[0] == good
    setup(q)
    pair.sync_driver()
    err = pair.pop()
    assert isinstance(err, RingError) and err.clause == clause
    again = pair.pop()  # broken until reset, on both
    assert isinstance(again, RingError) and "broken until reset" in str(again)
    # what was popped before the refusal can still be completed, on both
    pair.push([(good, 3)])
    assert pair.interrupt() is True


def test_2_7_13_1_head_already_in_flight_refused_by_both() -> None:
    q = MockSplitQueue(size=8)
    head = q.add_chain([b"a"])
    pair = Pair(q)
    assert isinstance(pair.pop(), tuple)
    q.poke_avail_ring(1, head)
    q.poke_avail_idx(2)
    pair.sync_driver()
    err = pair.pop()
    assert isinstance(err, RingError) and err.clause == "2.7.13.1"


def test_a_broken_c_queue_leaves_another_serving() -> None:
    mem = guest_memory()
    alloc = GuestAllocator(mem)
    bad, good = MockSplitQueue(mem, 8, allocator=alloc), MockSplitQueue(mem, 8, allocator=alloc)
    head = bad.add_chain([b"x"])
    bad.poke_desc(head, addr=0xFFFF_0000)
    ok = good.add_chain([b"frame"], [8])
    gmem = native.gmem_new([(r.base, r.view) for r in mem.regions])
    vbad = native.vq_new(gmem, 8, *bad.addresses)
    vgood = native.vq_new(gmem, 8, *good.addresses)
    with pytest.raises(native.VringError) as info:
        native.vq_pop(vbad)
    assert info.value.errno == errno.EFAULT and info.value.clause == "2.7.5"
    popped = native.vq_pop(vgood)
    assert popped is not None and popped[0] == ok
    native.vq_push(vgood, [(ok, 5)])
    assert [u.id for u in good.used()] == [ok]
    assert native.vq_state(vbad)["broken"] == -errno.EFAULT
    assert native.vq_state(vgood)["broken"] == 0


def test_push_misuse_is_refused_without_touching_the_ring() -> None:
    q = MockSplitQueue(size=4)
    head = q.add_chain([b"a"], [4])
    pair = Pair(q)
    pair.pop()
    before = bytes(pair.mem_c.regions[0].view)
    for items in ([(head, 5)], [(3, 0)], [(head, 1), (head, 1)], [(9, 0)]):
        with pytest.raises(native.VringError) as info:
            native.vq_push(pair.c, items)
        assert info.value.errno == errno.EINVAL
    assert bytes(pair.mem_c.regions[0].view) == before
    pair.push([(head, 4)])


def test_ring_areas_are_checked_at_setup() -> None:
    mem = guest_memory(size=1 << 16)
    gmem = native.gmem_new([(r.base, r.view) for r in mem.regions])
    base = mem.regions[0].base
    with pytest.raises(native.VringError, match="not 16-aligned") as info:
        native.vq_new(gmem, 8, base + 8, base + 0x1000, base + 0x2000)
    assert info.value.clause == "2.7.1"
    with pytest.raises(native.VringError, match="outside every memory region"):
        native.vq_new(gmem, 8, base, base + 0x1000, base + (1 << 16) - 8)
    with pytest.raises(native.VringError, match="power of 2"):
        native.vq_new(gmem, 6, base, base + 0x1000, base + 0x2000)


def test_regions_overlapping_or_empty_are_refused() -> None:
    with pytest.raises(native.CoreError, match="overlap"):
        native.gmem_new([(0x1000, bytearray(0x2000)), (0x2000, bytearray(0x1000))])
    with pytest.raises(native.CoreError):
        native.gmem_new([])


# -- random rings: good and hostile chains, several rounds --------------------------------

ADDR_POOL_OUTSIDE = (0x0, 0xDEAD_0000, 2**64 - 4, 0x7FFF_FFFF_F000)


def _random_round(rng: random.Random, q: MockSplitQueue, pair: Pair, corrupted: bool) -> bool:
    """One round; returns whether the driver's bookkeeping can no longer be trusted."""
    size = q.size
    # a few well-formed chains through the driver API, possibly indirect
    for _ in range(rng.randrange(0, 4)):
        if q.driver.free_descriptors < 4:
            break
        rd = [bytes(rng.randrange(1, 9)) for _ in range(rng.randrange(0, 3))]
        wr = [rng.randrange(1, 64) for _ in range(rng.randrange(0 if rd else 1, 3))]
        q.add_chain(rd, wr, indirect=q.driver.indirect and rng.random() < 0.3)
    # then, sometimes, corrupt something the way a hostile driver would
    if rng.random() < 0.35:
        corrupted = True
        kind = rng.randrange(7)
        idx = rng.randrange(size)
        if kind == 0:
            q.poke_desc(idx, flags=rng.choice([0, NEXT, WRITE, NEXT | WRITE, INDIRECT,
                                               INDIRECT | NEXT]), next=rng.randrange(size + 2))
        elif kind == 1:
            q.poke_desc(idx, addr=rng.choice(ADDR_POOL_OUTSIDE))
        elif kind == 2:
            q.poke_desc(idx, len=rng.choice([0, 15, 16, 32, 48, 2**31 + 1, 2**32 - 1]))
        elif kind == 3:
            q.poke_avail_ring(rng.randrange(size), rng.randrange(size + 3))
        elif kind == 4:
            q.poke_avail_idx(q.driver.avail_idx + rng.choice([-3, -1, 1, size, size + 1]))
        elif kind == 5:
            buf = q.alloc.alloc(16)
            table = q.raw_table([(rng.choice([buf, 0xDEAD_0000]), rng.randrange(20),
                                  rng.choice([0, NEXT, WRITE, NEXT | WRITE, INDIRECT]),
                                  rng.randrange(4)) for _ in range(rng.randrange(1, 5))])
            q.poke_desc(idx, addr=table, len=16 * rng.randrange(0, 5) + rng.choice([0, 0, 8]),
                        flags=rng.choice([INDIRECT, INDIRECT | NEXT]))
        else:
            q.mem.write_u16(q.avail, rng.choice([0, 1]))  # avail.flags: NO_INTERRUPT
            q.mem.write_u16(q.avail + 4 + 2 * size, rng.randrange(1 << 16))  # used_event
    pair.sync_driver()
    popped: list[tuple[int, int]] = []
    for _ in range(size + 1):
        out = pair.pop()
        if out is None or isinstance(out, RingError):
            break
        assert isinstance(out, tuple)
        capacity = sum(n for _, n, w in out[2] if w)
        popped.append((out[0], rng.randint(0, min(capacity, 2**32 - 1))))
    rng.shuffle(popped)
    while popped:
        k = rng.randrange(1, len(popped) + 1)
        pair.push(popped[:k])
        popped = popped[k:]
        pair.interrupt()
    if not corrupted:
        # the driver reaps, so its bookkeeping stays in step for the next round
        q.used()
    return corrupted


@pytest.mark.parametrize("seed", range(120))
def test_random_rings_agree(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([1, 2, 4, 8, 16])
    q = MockSplitQueue(size=size, event_idx=rng.random() < 0.5, indirect=rng.random() < 0.6,
                       start_idx=rng.choice([0, 0xFFFF - size, rng.randrange(1 << 16)]))
    pair = Pair(q)
    corrupted = False
    for _ in range(12):
        corrupted = _random_round(rng, q, pair, corrupted)
        if pair.py.broken is not None:
            break
    assert native.vq_state(pair.c)["last_avail_idx"] == pair.py.last_avail_idx
    assert native.vq_state(pair.c)["used_idx"] == pair.py.used_idx


# -- notifications ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_need_event_matches_the_python_rule(seed: int) -> None:
    from virtio_spec.notify import need_event
    rng = random.Random(seed)
    for _ in range(500):
        e, new, old = (rng.randrange(1 << 16) for _ in range(3))
        if rng.random() < 0.5:
            old = (new - rng.randrange(8)) & 0xFFFF
            e = (old + rng.randrange(-2, 10)) & 0xFFFF
        assert native.need_event(e, new, old) == need_event(e, new, old)


@pytest.mark.parametrize("event_idx", [False, True])
def test_notification_suppression_agrees(event_idx: bool) -> None:
    q = MockSplitQueue(size=8, event_idx=event_idx)
    pair = Pair(q)
    pair.py.disable_notifications()
    native.vq_disable_notifications(pair.c)
    assert same_memory(q.mem, pair.mem_c)
    q.add_chain([b"a"], [2])
    pair.sync_driver()
    assert pair.py.enable_notifications() == native.vq_enable_notifications(pair.c) is True
    assert same_memory(q.mem, pair.mem_c)
    out = pair.pop()
    assert isinstance(out, tuple)
    pair.push([(out[0], 2)])
    assert pair.interrupt() is True
    assert pair.interrupt() is False  # nothing new since


# -- state hand-over (GET/SET_VRING_BASE) ---------------------------------------------

def test_queue_handed_from_python_to_c_and_back() -> None:
    q = MockSplitQueue(size=16, event_idx=True, start_idx=0xFFF0)
    dev = q.device()
    for i in range(5):
        q.add_chain([b"p%d" % i], [4])
        chain = dev.pop()
        assert chain is not None
        dev.push(chain, chain.write(b"ok%d" % i))
    assert len(q.used()) == 5
    gmem = native.gmem_new([(r.base, r.view) for r in q.mem.regions])
    c = native.vq_new(gmem, 16, *q.addresses, event_idx=True)
    native.vq_set_state(c, {"last_avail_idx": dev.last_avail_idx, "used_idx": dev.used_idx,
                            "signalled_used": dev.used_idx, "notifications": True})
    heads = [q.add_chain([b"c%d" % i], [4]) for i in range(6)]  # wraps past 0xFFFF
    got = [native.vq_pop(c) for _ in range(6)]
    assert [g[0] for g in got if g is not None] == heads
    native.vq_push(c, [(h, 4) for h in heads])
    assert [u.id for u in q.used()] == heads
    st = native.vq_state(c)
    assert st["last_avail_idx"] == st["used_idx"] == (0xFFF0 + 11) & 0xFFFF
    back = SplitDeviceQueue(q.mem, 16, *q.addresses, event_idx=True,
                            last_avail_idx=st["last_avail_idx"], used_idx=st["used_idx"])
    h = q.add_chain([b"py"], [2])
    chain = back.pop()
    assert chain is not None and chain.head == h and chain.read() == b"py"


def test_set_state_refused_with_chains_in_flight() -> None:
    q = MockSplitQueue(size=4)
    q.add_chain([b"a"])
    gmem = native.gmem_new([(r.base, r.view) for r in q.mem.regions])
    c = native.vq_new(gmem, 4, *q.addresses)
    assert native.vq_pop(c) is not None
    with pytest.raises(native.VringError, match="in flight") as info:
        native.vq_set_state(c, native.vq_state(c))
    assert info.value.errno == errno.EBUSY


def test_broken_state_travels_with_the_queue() -> None:
    q = MockSplitQueue(size=4)
    head = q.add_chain([b"a"])
    q.poke_desc(head, flags=NEXT, next=head)
    gmem = native.gmem_new([(r.base, r.view) for r in q.mem.regions])
    c = native.vq_new(gmem, 4, *q.addresses)
    with pytest.raises(native.VringError):
        native.vq_pop(c)
    st = native.vq_state(c)
    other = native.vq_new(gmem, 4, *q.addresses)
    native.vq_set_state(other, st)
    with pytest.raises(native.VringError, match="broken until reset") as info:
        native.vq_pop(other)
    assert info.value.clause == "2.7.5.2"


# -- the driver side against SplitDriverQueue --------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_driver_side_agrees_with_split_driver_queue(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([2, 4, 8, 16])
    event_idx = rng.random() < 0.5
    start = rng.choice([0, 0xFFFF - 3, rng.randrange(1 << 16)])
    mem_py = guest_memory()
    alloc = GuestAllocator(mem_py)
    areas = (alloc.alloc(16 * size, 16), alloc.alloc(6 + 2 * size, 2),
             alloc.alloc(6 + 8 * size, 4))
    bufs = [alloc.alloc(64) for _ in range(4 * size)]
    drv = SplitDriverQueue(mem_py, size, *areas, event_idx=event_idx, start_idx=start)
    mem_c = clone(mem_py)
    gmem = native.gmem_new([(r.base, r.view) for r in mem_c.regions])
    cdrv = native.vq_new(gmem, size, *areas, event_idx=event_idx, driver=True,
                         start_idx=start)
    assert same_memory(mem_py, mem_c)
    dev_py = SplitDeviceQueue(mem_py, size, *areas, event_idx=event_idx, last_avail_idx=start)
    dev_c = SplitDeviceQueue(mem_c, size, *areas, event_idx=event_idx, last_avail_idx=start)
    for _ in range(20):
        for _ in range(rng.randrange(0, 4)):
            nr, nw = rng.randrange(0, 3), rng.randrange(0, 3)
            if nr + nw == 0 or nr + nw > drv.free_descriptors:
                continue
            segs = [(rng.choice(bufs), rng.randrange(1, 64), False) for _ in range(nr)]
            segs += [(rng.choice(bufs), rng.randrange(1, 64), True) for _ in range(nw)]
            a = drv.add([(g, n) for g, n, w in segs if not w], [(g, n) for g, n, w in segs if w])
            b = native.vq_add(cdrv, segs)
            assert a == b
        if rng.random() < 0.3:
            drv.disable_interrupts()
            native.vq_disable_interrupts(cdrv)
        elif rng.random() < 0.3:
            assert drv.enable_interrupts() == native.vq_enable_interrupts(cdrv)
        assert drv.publish() == native.vq_publish(cdrv)
        assert same_memory(mem_py, mem_c)
        for dev in (dev_py, dev_c):
            chains = dev.pop_many(size)
            dev.push_many([(c, min(c.writable_len, 7)) for c in chains[: len(chains) // 2 + 1]])
        assert same_memory(mem_py, mem_c)
        got_py = [(u.id, u.len) for u in drv.reap()]
        got_c = native.vq_reap(cdrv)
        assert got_py == got_c
        assert same_memory(mem_py, mem_c)
        assert native.vq_state(cdrv)["in_flight"] == len(drv.in_flight)
        # the device pushes the rest later: pending chains stay in flight on both
        leftover = dev_py.in_flight
        assert leftover == dev_c.in_flight
        dev_py.push_many([(h, 0) for h in sorted(leftover)])
        dev_c.push_many([(h, 0) for h in sorted(leftover)])
        assert [(u.id, u.len) for u in drv.reap()] == native.vq_reap(cdrv)


def test_driver_refuses_a_hostile_device_with_2_7_8() -> None:
    q = MockSplitQueue(size=8)
    gmem = native.gmem_new([(r.base, r.view) for r in q.mem.regions])
    c = native.vq_new(gmem, 8, *q.addresses, driver=True)
    buf = q.alloc.alloc(16)
    head = native.vq_add(c, [(buf, 16, True)])
    native.vq_publish(c)
    q.poke_used_elem(0, id=head + 3, len=4)
    q.poke_used_idx(1)
    with pytest.raises(native.VringError, match="not a chain in flight") as info:
        native.vq_reap(c)
    assert info.value.clause == "2.7.8"
    with pytest.raises(native.VringError, match="broken until reset"):
        native.vq_reap(c)
    c2 = native.vq_new(gmem, 8, *q.addresses, driver=True)
    native.vq_add(c2, [(buf, 16, True)])
    native.vq_publish(c2)
    q.poke_used_idx(2)
    with pytest.raises(native.VringError, match="past the 1 chains in flight") as info:
        native.vq_reap(c2)
    assert info.value.clause == "2.7.8"
