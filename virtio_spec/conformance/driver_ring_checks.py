"""Driver-side checks of the rings the driver builds (virtio 1.3 §2.7 split, §2.8 packed):
alignment, chain shape, indirect tables, the available index, notification suppression.
The recording device observes every chain with the lenient walkers of `observe`.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

import itertools

from ..chain import MAX_CHAIN_BYTES
from ..features import VirtioFeature, VirtioNetFeature
from ..status import DeviceStatus
from ..structs import (
    AVAIL_RING_ALIGN,
    DESC_TABLE_ALIGN,
    EVENT_SUPPRESS_ALIGN,
    PACKED_RING_ALIGN,
    USED_RING_ALIGN,
)
from .adapter import DriverFactory, NotApplicable
from .driver_run import (
    PLAIN_OFFER,
    RING_OFFER,
    DriverRun,
    busy,
    made_chains,
    start,
)
from .observe import ObservedChain
from .recorder import Op
from .registry import driver_clause
from .session import ethernet_frame

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus
_WRITE_FLAG = 2  # VIRTQ_DESC_F_WRITE

# ----------------------------------------------------------------------------------------
# §2.7 split rings, §2.8 packed rings


def _setups(run: DriverRun) -> list[Op]:
    return run.rec.ops("setup_queue")


@driver_clause("2.7.1", "split ring parts aligned",
               "The driver must align each part of a split virtqueue as the table of §2.7 "
               "says: descriptors 16, available ring 2, used ring 4.")
def check_2_7_1_alignment(make: DriverFactory) -> None:
    """The driver MUST ensure that the physical address of the first byte of each
    virtqueue part is a multiple of the specified alignment value (virtio 1.3 §2.7.1)."""
    run = start(make, PLAIN_OFFER)
    run.must_be_live()
    for op in _setups(run):
        index, _, desc, avail, used = op.args
        for what, gpa, align in (("descriptor table", desc, DESC_TABLE_ALIGN),
                                 ("available ring", avail, AVAIL_RING_ALIGN),
                                 ("used ring", used, USED_RING_ALIGN)):
            assert gpa % align == 0, f"queue {index}: {what} at {gpa:#x} not {align}-aligned"


@driver_clause("2.8.11", "packed ring parts aligned",
               "The driver must align the packed ring to 16 and both event areas to 4.",
               requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_11_alignment(make: DriverFactory) -> None:
    """The driver MUST ensure that the physical address of the first byte of each
    virtqueue part is a multiple of the specified alignment value (virtio 1.3 §2.8.11)."""
    run = start(make, PLAIN_OFFER | 1 << _F.VIRTIO_F_RING_PACKED)
    run.require()
    for op in _setups(run):
        index, _, ring, drv, dev = op.args
        for what, gpa, align in (("descriptor ring", ring, PACKED_RING_ALIGN),
                                 ("driver event area", drv, EVENT_SUPPRESS_ALIGN),
                                 ("device event area", dev, EVENT_SUPPRESS_ALIGN)):
            assert gpa % align == 0, f"queue {index}: {what} at {gpa:#x} not {align}-aligned"




@driver_clause("2.7.4.2", "writable after readable",
               "The driver must place device-writable descriptors after device-readable ones.")
def check_2_7_4_2_order(make: DriverFactory) -> None:
    """The driver MUST place any device-writable descriptor elements after any
    device-readable descriptor elements (virtio 1.3 §2.7.4.2), on every queue."""
    for offer in (PLAIN_OFFER, RING_OFFER):
        for chain in made_chains(busy(make, offer)):
            kinds = [d.writable for d in chain.buffers]
            assert kinds == sorted(kinds), f"queue {chain.queue} chain {chain.head}: " \
                f"readable after writable ({['w' if k else 'r' for k in kinds]})"


@driver_clause("2.7.5.2", "no loops, at most 2^32 bytes",
               "The driver must not add a chain longer than 2^32 bytes; loops are forbidden.")
def check_2_7_5_2_bounded(make: DriverFactory) -> None:
    """Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total; this
    implies that loops in the descriptor chain are forbidden (virtio 1.3 §2.7.5.2)."""
    for chain in made_chains(busy(make)):
        loops = [p for p in chain.problems if "loop" in p or "out of range" in p]
        assert not loops, f"queue {chain.queue} chain {chain.head}: {loops[0]}"
        assert chain.total_len <= MAX_CHAIN_BYTES, \
            f"queue {chain.queue} chain {chain.head}: {chain.total_len} bytes"


@driver_clause("2.7.5.3.1", "INDIRECT only when negotiated",
               "The driver must not set VIRTQ_DESC_F_INDIRECT unless INDIRECT_DESC was "
               "negotiated.")
def check_2_7_5_3_1_indirect_negotiated(make: DriverFactory) -> None:
    """The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag unless the
    VIRTIO_F_INDIRECT_DESC feature was negotiated (virtio 1.3 §2.7.5.3.1); the device
    does not offer it."""
    run = busy(make, PLAIN_OFFER)
    for chain in made_chains(run):
        assert not any(d.indirect for d in chain.descs), \
            f"queue {chain.queue} chain {chain.head}: INDIRECT without VIRTIO_F_INDIRECT_DESC"


def _indirect_chains(run: DriverRun) -> list[ObservedChain]:
    run.require()
    chains = [c for c in made_chains(run) if any(d.indirect for d in c.descs)]
    if not chains:
        raise NotApplicable("driver negotiated INDIRECT_DESC but made no indirect chain")
    return chains


@driver_clause("2.7.5.3.1", "no nested indirect tables",
               "The driver must not set VIRTQ_DESC_F_INDIRECT within an indirect table.", n=2,
               requires=[_F.VIRTIO_F_INDIRECT_DESC])
def check_2_7_5_3_1_not_nested(make: DriverFactory) -> None:
    """The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag within an indirect
    descriptor, i.e. only one table per descriptor (virtio 1.3 §2.7.5.3.1)."""
    for chain in _indirect_chains(busy(make)):
        nested = [d for d in chain.descs if d.table == "indirect" and d.indirect]
        assert not nested, f"queue {chain.queue} chain {chain.head}: nested indirect table"


@driver_clause("2.7.5.3.1", "INDIRECT never with NEXT",
               "The driver must not set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT.",
               n=3, requires=[_F.VIRTIO_F_INDIRECT_DESC])
def check_2_7_5_3_1_not_with_next(make: DriverFactory) -> None:
    """A driver MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT in flags
    (virtio 1.3 §2.7.5.3.1)."""
    for chain in _indirect_chains(busy(make)):
        both = [d for d in chain.descs if d.indirect and d.has_next]
        assert not both, f"queue {chain.queue} chain {chain.head}: INDIRECT with NEXT"


@driver_clause("2.7.5.3.1", "chain no longer than the queue",
               "The driver must not create a descriptor chain longer than the queue size.", n=4)
def check_2_7_5_3_1_chain_length(make: DriverFactory) -> None:
    """A driver MUST NOT create a descriptor chain longer than the Queue Size of the
    device (virtio 1.3 §2.7.5.3.1), indirect tables included."""
    run = busy(make)
    sizes = {q.index: q.size for q in run.rec.queues.values()}
    for chain in made_chains(run):
        assert len(chain.buffers) <= sizes[chain.queue], \
            f"queue {chain.queue} chain {chain.head}: {len(chain.buffers)} descriptors"


@driver_clause("2.7.6.1", "avail idx never decremented",
               "The driver must not decrement the available idx.")
def check_2_7_6_1_monotonic(make: DriverFactory) -> None:
    """A driver MUST NOT decrement the available idx on a virtqueue, i.e. there is no way
    to unexpose buffers (virtio 1.3 §2.7.6.1)."""
    run = busy(make)
    for q in run.rec.queues.values():
        seen = q.avail_seen
        for old, new in itertools.pairwise(seen):
            assert (new - old) & 0xFFFF < 0x8000, \
                f"queue {q.index}: avail idx went from {old} to {new}"


@driver_clause("2.7.7.1", "avail.flags 0 or 1 without EVENT_IDX",
               "Without EVENT_IDX the driver must set avail.flags to 0 or 1.")
def check_2_7_7_1_flags(make: DriverFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is not negotiated, the driver MUST set flags to 0 or 1
    (virtio 1.3 §2.7.7.1)."""
    run = busy(make, PLAIN_OFFER | 1 << _F.VIRTIO_F_INDIRECT_DESC)
    for q in run.rec.queues.values():
        bad = [f for f in q.avail_flags_seen if f not in (0, 1)]
        assert not bad, f"queue {q.index}: avail.flags {bad[0]:#x}"


@driver_clause("2.7.7.1", "avail.flags 0 with EVENT_IDX",
               "With EVENT_IDX the driver must set avail.flags to 0.", n=2,
               requires=[_F.VIRTIO_F_EVENT_IDX])
def check_2_7_7_1_flags_event_idx(make: DriverFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is negotiated, the driver MUST set flags to 0 (virtio 1.3
    §2.7.7.1)."""
    run = busy(make, RING_OFFER)
    run.require()
    for q in run.rec.queues.values():
        bad = [f for f in q.avail_flags_seen if f != 0]
        assert not bad, f"queue {q.index}: avail.flags {bad[0]:#x} with EVENT_IDX"


def _kicked_after_transmit(run: DriverRun) -> None:
    run.must_be_live()
    run.require()
    txq = 1
    mark = len(run.rec.log)
    run.driver.transmit([ethernet_frame(7)])
    kicks = [op for op in run.rec.log[mark:] if op.kind == "kick" and op.args[0] == txq]
    assert kicks, "a buffer was made available on transmitq1 while the device asked for " \
        "notifications, and no notification came"


@driver_clause("2.7.10.1", "notify when used.flags is 0",
               "Without EVENT_IDX, when used.flags is 0 the driver must notify after making a "
               "buffer available.")
def check_2_7_10_1_notify(make: DriverFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is not negotiated and used.flags is 0, the driver MUST send
    a notification after writing a descriptor index into the available ring (virtio 1.3
    §2.7.10.1)."""
    run = start(make, PLAIN_OFFER)
    if run.rec.has(_F.VIRTIO_F_EVENT_IDX):
        raise NotApplicable("EVENT_IDX negotiated")
    _kicked_after_transmit(run)


@driver_clause("2.7.10.1", "notify at avail_event",
               "With EVENT_IDX, when the avail idx reaches avail_event the driver must "
               "notify.", n=2, requires=[_F.VIRTIO_F_EVENT_IDX])
def check_2_7_10_1_notify_event_idx(make: DriverFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is negotiated and the idx of the available ring was equal to
    avail_event when the driver placed a descriptor index there, the driver MUST send a
    notification (virtio 1.3 §2.7.10.1); the device keeps avail_event at the next slot."""
    _kicked_after_transmit(start(make, RING_OFFER))


def _packed_chains(make: DriverFactory) -> tuple[DriverRun, list[ObservedChain]]:
    run = busy(make, RING_OFFER | 1 << _F.VIRTIO_F_RING_PACKED)
    run.require()
    return run, made_chains(run)


@driver_clause("2.8.17", "packed: writable after readable",
               "On a packed ring the driver must place device-writable descriptors after "
               "device-readable ones.", requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_17_order(make: DriverFactory) -> None:
    """The driver MUST place any device-writable descriptor elements after any
    device-readable descriptor elements (virtio 1.3 §2.8.17)."""
    for chain in _packed_chains(make)[1]:
        kinds = [d.writable for d in chain.buffers]
        assert kinds == sorted(kinds), f"queue {chain.queue} buffer {chain.head}: " \
            f"readable after writable ({['w' if k else 'r' for k in kinds]})"


@driver_clause("2.8.17", "packed: list no longer than the queue",
               "On a packed ring the driver must not create a descriptor list longer than the "
               "queue size.", n=2, requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_17_length(make: DriverFactory) -> None:
    """A driver MUST NOT create a descriptor list longer than the Queue Size; loops are
    forbidden (virtio 1.3 §2.8.17)."""
    run, chains = _packed_chains(make)
    sizes = {q.index: q.size for q in run.rec.queues.values()}
    for chain in chains:
        assert not chain.problems, f"queue {chain.queue} buffer {chain.head}: {chain.problems[0]}"
        assert len(chain.buffers) <= sizes[chain.queue], \
            f"queue {chain.queue} buffer {chain.head}: {len(chain.buffers)} descriptors"


@driver_clause("2.8.19", "packed: only WRITE inside an indirect table",
               "Within a packed indirect table the driver must set no flag but "
               "VIRTQ_DESC_F_WRITE.", requires=[_F.VIRTIO_F_RING_PACKED,
                                                _F.VIRTIO_F_INDIRECT_DESC])
def check_2_8_19_table_flags(make: DriverFactory) -> None:
    """The driver MUST NOT set any flags except DESC_F_WRITE within an indirect
    descriptor (virtio 1.3 §2.8.19)."""
    for chain in _packed_chains(make)[1]:
        bad = [d for d in chain.descs if d.table == "indirect" and d.flags & ~_WRITE_FLAG]
        assert not bad, f"queue {chain.queue} buffer {chain.head}: indirect entry " \
            f"{bad[0].index} has flags {bad[0].flags:#x}"


@driver_clause("2.8.19", "packed: no INDIRECT in a linked list",
               "The driver must not put an INDIRECT descriptor in a list linked by "
               "VIRTQ_DESC_F_NEXT.", n=2, requires=[_F.VIRTIO_F_RING_PACKED,
                                                   _F.VIRTIO_F_INDIRECT_DESC])
def check_2_8_19_not_linked(make: DriverFactory) -> None:
    """A driver MUST NOT write direct descriptors with DESC_F_INDIRECT set in a
    scatter-gather list linked by VIRTQ_DESC_F_NEXT (virtio 1.3 §2.8.19)."""
    for chain in _packed_chains(make)[1]:
        ring = [d for d in chain.descs if d.table == "ring"]
        assert len(ring) == 1 or not any(d.indirect for d in ring), \
            f"queue {chain.queue} buffer {chain.head}: INDIRECT in a list of {len(ring)}"



__all__ = [name for name in dir() if name.startswith("check_")]
