"""Device-side checks: the library plays a conforming driver and watches the device.

Each function takes a `DeviceFactory`; the registry (see `registry`) wraps it so that it
is not applicable when the device does not offer what the clause needs, and so that its
AssertionError names the clause.  Its docstring paraphrases the sentence it checks.  The
driver it plays is `session.DriverSession`; everything it looks at crosses the virtio
boundary (status, features, config, guest memory, notifications, the wire).

Chapters 2 and 6 (status, features, reset, config access, split and packed rings,
notifications, VERSION_1, IN_ORDER) are here; §5.1 net rules are in `net_device_checks`.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

from ..features import (
    FEATURE_RULES,
    VirtioFeature,
    VirtioNetFeature,
    check_offer,
    describe,
    mask_of,
)
from ..status import DeviceStatus
from ..structs import VIRTIO_NET_CONFIG_FIELD_FEATURES, VIRTIO_NET_CONFIG_OFFSETS, virtio_net_config
from ..testing import MockPackedQueue, MockSplitQueue
from .adapter import CONFIG_NOTIFICATION, DeviceFactory, NotApplicable, TransportRefused
from .probes import (
    chains_for_every_queue,
    check_used_len,
    ctrl_probe,
    read_segments,
    same_outcome_for_shapes,
    segments,
    tx_or_ctrl_chain,
    used_and_notified,
    used_flags_after_traffic,
)
from .registry import device_clause
from .session import DEFAULT_WANT, DriverSession, SetupError

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus
_LIVE = _S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK


def _up(make: DeviceFactory, want: int = DEFAULT_WANT) -> DriverSession:
    return DriverSession(make()).bring_up(want)


# ----------------------------------------------------------------------------------------
# §2.1 device status


@device_clause("2.1.2", "no buffers consumed before DRIVER_OK",
               "The device must not consume buffers or send used buffer notifications "
               "before the driver sets DRIVER_OK.")
def check_2_1_2_no_use_before_driver_ok(make: DeviceFactory) -> None:
    """The device MUST NOT consume buffers or send any used buffer notification to the
    driver before DRIVER_OK (virtio 1.3 §2.1.2)."""
    s = DriverSession(make())
    if not s.negotiate():
        raise SetupError("device refused FEATURES_OK")
    s.setup_queues()
    index, head = tx_or_ctrl_chain(s)
    try:
        s.kick(index)
    except TransportRefused:
        pass  # refusing the kick is one way of not consuming
    used = s.reap(index)
    assert not used, f"queue {index}: chain {head} marked used before DRIVER_OK"
    notes = s.take_notifications()
    assert index not in notes, f"queue {index}: used buffer notification before DRIVER_OK"


@device_clause("2.1.2", "status is 0 after reset",
               "The device must initialize its status to 0 upon reset.", n=2)
def check_2_1_2_status_zero(make: DeviceFactory) -> None:
    """The device MUST initialize device status to 0 upon reset (virtio 1.3 §2.1.2): a
    fresh device reads 0, and so does one reset right after ACKNOWLEDGE."""
    dev = make()
    assert dev.read_status() == 0, f"fresh device reads status {dev.read_status():#x}"
    dev.write_status(_S.ACKNOWLEDGE)
    dev.write_status(0)
    assert dev.read_status() == 0, f"status {dev.read_status():#x} after a reset"


@device_clause("2.1.2", "config notification after DEVICE_NEEDS_RESET",
               "If DRIVER_OK is set when the device sets DEVICE_NEEDS_RESET, it must send a "
               "configuration change notification.", n=3)
def check_2_1_2_needs_reset_notifies(make: DeviceFactory) -> None:
    """After setting DEVICE_NEEDS_RESET while DRIVER_OK is set, the device MUST send a
    device configuration change notification (virtio 1.3 §2.1.2).  Provoked with an
    available idx that runs more than the queue size ahead; a device that does not set
    DEVICE_NEEDS_RESET for it makes the clause not applicable."""
    s = _up(make)
    index = s.txq()
    q = s.queues[index]
    if not isinstance(q, MockSplitQueue):
        raise NotApplicable("provoked on a split ring")
    q.poke_avail_idx(q.size + 5)
    try:
        s.kick(index)
    except TransportRefused:
        pass
    if not s.status() & _S.DEVICE_NEEDS_RESET:
        raise NotApplicable("device did not set DEVICE_NEEDS_RESET for a runaway avail idx")
    assert CONFIG_NOTIFICATION in s.take_notifications(), \
        "DEVICE_NEEDS_RESET set with DRIVER_OK but no configuration change notification"


# ----------------------------------------------------------------------------------------
# §2.2 feature bits, §6 reserved feature bits


@device_clause("2.2.2", "no feature offered without its dependencies",
               "The device must not offer a feature which requires another feature it does "
               "not offer.")
def check_2_2_2_offer_dependencies(make: DeviceFactory) -> None:
    """The device MUST NOT offer a feature which requires another feature which was not
    offered (virtio 1.3 §2.2.2, with the requirements of §5.1.3.1)."""
    offered = make().read_device_features()
    broken = [v for v in check_offer(offered) if v.level == "MUST" and v.clause == "2.2.2"]
    assert not broken, "; ".join(v.message for v in broken)


def _unoffered_bit(offered: int) -> int:
    known = [int(b) for b in (*_N, *_F) if b not in (_N.VIRTIO_NET_F_GSO,
                                                     _N.VIRTIO_NET_F_GUEST_RSC4,
                                                     _N.VIRTIO_NET_F_GUEST_RSC6)]
    for bit in sorted(known):
        if not offered >> bit & 1 and not any(r.feature == bit for r in FEATURE_RULES):
            return bit
    return 4  # unassigned in every virtio version


@device_clause("2.2.2", "FEATURES_OK refused for features not offered",
               "The device must fail to set FEATURES_OK when the accepted subset is one it "
               "cannot support; a bit it never offered is such a subset.", n=2)
def check_2_2_2_refuse_unoffered(make: DeviceFactory) -> None:
    """The device SHOULD accept any valid subset of features, otherwise it MUST fail to
    set FEATURES_OK when the driver writes it (virtio 1.3 §2.2.2).  A set holding a bit
    the device did not offer is not valid (§2.2.1) and not supported (§2.2.2: the device
    offers every feature it supports)."""
    s = DriverSession(make())
    bit = _unoffered_bit(s.offered)
    features = s.negotiated_attempt(DEFAULT_WANT) | 1 << bit
    assert not s.negotiate(exact=features), \
        f"FEATURES_OK taken with unoffered bit {bit} ({describe(1 << bit)[0]})"


@device_clause("2.2.2", "FEATURES_OK refused for a broken dependency",
               "The device must fail FEATURES_OK when the driver accepts a feature without "
               "the feature it requires.", n=3)
def check_2_2_2_refuse_broken_dependency(make: DeviceFactory) -> None:
    """The device MUST fail to set FEATURES_OK for a feature set it cannot support
    (virtio 1.3 §2.2.2): here a feature accepted without one it requires (§2.2.1,
    §5.1.3.1), e.g. CTRL_RX without CTRL_VQ."""
    s = DriverSession(make())
    rule = next((r for r in FEATURE_RULES if r.level == "MUST" and s.offered >> r.feature & 1
                 and r.requires_all - {_F.VIRTIO_F_VERSION_1}), None)
    if rule is None:
        raise NotApplicable("device offers no feature with a dependency")
    features = mask_of([_F.VIRTIO_F_VERSION_1, rule.feature])
    assert not s.negotiate(exact=features), \
        f"FEATURES_OK taken for {', '.join(describe(features))} ({rule.requirement()} missing)"


@device_clause("2.2.2", "valid subsets accepted",
               "The device should accept any valid subset of the features it offers.",
               n=4, level="SHOULD")
def check_2_2_2_accept_valid_subsets(make: DeviceFactory) -> None:
    """The device SHOULD accept any valid subset of features the driver accepts (virtio
    1.3 §2.2.2): VERSION_1 alone, the session's default set, and everything offered."""
    s = DriverSession(make())
    for want in (mask_of([_F.VIRTIO_F_VERSION_1]), DEFAULT_WANT, s.offered):
        features = s.negotiated_attempt(want)
        assert s.negotiate(exact=features), \
            f"FEATURES_OK refused for the valid set {', '.join(describe(features))}"


@device_clause("2.2.2", "re-negotiation after reset",
               "A device that accepted a feature set should not refuse the same set after "
               "a reset.", n=5, level="SHOULD")
def check_2_2_2_renegotiate(make: DeviceFactory) -> None:
    """Having accepted FEATURES_OK for a set once, the device SHOULD NOT fail
    re-negotiation of the same set after a device reset (virtio 1.3 §2.2.2)."""
    s = _up(make)
    features = s.negotiated
    assert s.negotiate(exact=features), "the same feature set was refused after a reset"


@device_clause("6.2", "VERSION_1 offered", "A device must offer VIRTIO_F_VERSION_1.")
def check_6_2_offers_version_1(make: DeviceFactory) -> None:
    """A device MUST offer VIRTIO_F_VERSION_1 (virtio 1.3 §6.2)."""
    assert make().read_device_features() >> _F.VIRTIO_F_VERSION_1 & 1, \
        "VIRTIO_F_VERSION_1 not offered"


@device_clause("6.2", "buffers used in order with IN_ORDER",
               "With VIRTIO_F_IN_ORDER negotiated the device must use buffers in the order "
               "they were made available.", n=2, requires=[_F.VIRTIO_F_IN_ORDER])
def check_6_2_in_order(make: DeviceFactory) -> None:
    """If VIRTIO_F_IN_ORDER has been negotiated, a device MUST use buffers in the same
    order in which they have been made available (virtio 1.3 §6.2)."""
    s = _up(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_IN_ORDER)
    cls, cmd, data = ctrl_probe(s)
    q = s.ctrlq
    heads = [s.add(q, [bytes([cls, cmd]) + data], [1], publish=False) for _ in range(4)]
    s.queues[q].publish()
    s.kick(q)
    order = [u.id for u in s.reap(q)]
    # Nothing used is no evidence of order (DPDK's vhost library never uses its control
    # queue: without this the clause passed against it).
    assert order, f"queue {q}: none of the {len(heads)} requests made available was used"
    assert order == heads[:len(order)], f"made available {heads}, used {order}"


# ----------------------------------------------------------------------------------------
# §2.4 reset, §2.5 config


@device_clause("2.4.1", "status 0 after reset from any state",
               "The device must reinitialize its status to 0 after receiving a reset.")
def check_2_4_1_reset_from_every_state(make: DeviceFactory) -> None:
    """A device MUST reinitialize device status to 0 after receiving a reset (virtio 1.3
    §2.4.1): from ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK and FAILED."""
    s = DriverSession(make())
    steps = [_S.ACKNOWLEDGE, _S.ACKNOWLEDGE | _S.DRIVER]
    for depth in range(len(steps)):
        s.reset()
        for value in steps[:depth + 1]:
            s.dev.write_status(value)
        s.dev.write_status(0)
        assert s.dev.read_status() == 0, f"status {s.dev.read_status():#x} after reset " \
            f"from {_S(steps[depth]).name}"
    s.bring_up()
    s.dev.write_status(0)
    assert s.dev.read_status() == 0, f"status {s.dev.read_status():#x} after reset from DRIVER_OK"
    s.reset()
    s.dev.write_status(_S.ACKNOWLEDGE)
    s.dev.write_status(_S.ACKNOWLEDGE | _S.FAILED)
    s.dev.write_status(0)
    assert s.dev.read_status() == 0, f"status {s.dev.read_status():#x} after reset from FAILED"


@device_clause("2.4.1", "queues quiet after reset",
               "After a reset the device must not notify or touch the queues until the "
               "driver re-initializes it.", n=2)
def check_2_4_1_quiet_after_reset(make: DeviceFactory) -> None:
    """A device MUST NOT send notifications or interact with the queues after indicating
    completion of the reset by reinitializing device status to 0, until the driver
    re-initializes the device (virtio 1.3 §2.4.1)."""
    s = _up(make)
    index, head = tx_or_ctrl_chain(s, publish=False)
    q = s.queues[index]
    s.reset()
    q.publish()
    try:
        s.kick(index)
    except TransportRefused:
        pass
    assert not q.driver.has_used(), f"queue {index}: chain {head} used after reset"
    assert not s.take_notifications(), "notification sent after reset"


def _config_fields(offered: int) -> list[tuple[str, int, int]]:
    """(name, offset, size) of every config field the offer makes present."""
    out = []
    for sub in virtio_net_config.subcons:
        name = sub.name
        feats = VIRTIO_NET_CONFIG_FIELD_FEATURES[name]
        if any(offered >> f & 1 for f in feats):
            out.append((name, VIRTIO_NET_CONFIG_OFFSETS[name], sub.sizeof()))
    return out


@device_clause("2.5.2", "config readable before FEATURES_OK",
               "The device must allow reading every device-specific config field, those of "
               "offered features included, before FEATURES_OK.")
def check_2_5_2_config_before_features_ok(make: DeviceFactory) -> None:
    """The device MUST allow reading of any device-specific configuration field before
    FEATURES_OK is set by the driver, including fields conditional on feature bits the
    device offers (virtio 1.3 §2.5.2).  The values must also agree with what is read
    once the features are negotiated (mtu, mac and the limits do not move)."""
    s = DriverSession(make())
    s.reset()
    s.dev.write_status(_S.ACKNOWLEDGE)
    s.dev.write_status(_S.ACKNOWLEDGE | _S.DRIVER)
    before: dict[str, bytes] = {}
    for name, off, size in _config_fields(s.offered):
        try:
            before[name] = s.dev.read_config(off, size)
        except TransportRefused as err:
            raise AssertionError(f"config field {name} unreadable before FEATURES_OK: "
                                 f"{err}") from None
        assert len(before[name]) == size, f"config field {name}: {len(before[name])} bytes"
    s.negotiate(s.offered)
    for name, off, size in _config_fields(s.offered):
        if name == "status":
            continue
        after = s.dev.read_config(off, size)
        assert after == before[name], f"config field {name} read {before[name].hex()} " \
            f"before FEATURES_OK, {after.hex()} after"


# ----------------------------------------------------------------------------------------
# §2.7 split virtqueues (chain handling, notifications, used ring), §2.8 packed


@device_clause("2.7.4.1", "any descriptor arrangement",
               "The device must not assume a particular arrangement of descriptors.")
def check_2_7_4_1_any_arrangement(make: DeviceFactory) -> None:
    """The device MUST NOT make assumptions about the particular arrangement of
    descriptors (virtio 1.3 §2.7.4.1): the same request in one buffer, in one buffer
    per byte group, and with class and command apart gets the same answer."""
    same_outcome_for_shapes(make, shapes=("whole", "pieces", "bytes"))


@device_clause("2.7.5.1", "device-readable buffers never written",
               "The device must not write to a device-readable buffer.")
def check_2_7_5_1_readable_untouched(make: DeviceFactory) -> None:
    """A device MUST NOT write to a device-readable buffer (virtio 1.3 §2.7.5.1):
    transmit and control requests read back unchanged after the device used them."""
    s = _up(make)
    for index, head in chains_for_every_queue(s):
        segs = segments(s, index, head)
        before = read_segments(s.memory(), segs)
        s.kick(index)
        after = read_segments(s.memory(), segs)
        assert before == after, f"queue {index} chain {head}: device-readable bytes changed " \
            f"from {before.hex()} to {after.hex()}"


@device_clause("2.7.5.1", "descriptor table never written",
               "The device must not write to any descriptor table entry.", n=2)
def check_2_7_5_1_desc_table_untouched(make: DeviceFactory) -> None:
    """A device MUST NOT write to any descriptor table entry (virtio 1.3 §2.7.5.1)."""
    s = _up(make)
    tables = {i: q for i, q in s.queues.items() if isinstance(q, MockSplitQueue)}
    if not tables:
        raise NotApplicable("split rings only (packed rings are written by design)")
    added = chains_for_every_queue(s)
    before = {i: s.memory().read(q.desc, 16 * q.size) for i, q in tables.items()}
    for index, _ in added:
        s.kick(index)
    for i, q in tables.items():
        after = s.memory().read(q.desc, 16 * q.size)
        changed = [k for k in range(q.size) if after[16 * k:16 * k + 16] !=
                   before[i][16 * k:16 * k + 16]]
        assert not changed, f"queue {i}: descriptor(s) {changed} rewritten by the device"


@device_clause("2.7.5.3.2", "WRITE on the indirect pointer ignored",
               "The device must ignore VIRTQ_DESC_F_WRITE on a descriptor that refers to an "
               "indirect table.", requires=[_F.VIRTIO_F_INDIRECT_DESC])
def check_2_7_5_3_2_ignore_write_on_pointer(make: DeviceFactory) -> None:
    """The device MUST ignore the write-only flag (flags & VIRTQ_DESC_F_WRITE) in the
    descriptor that refers to an indirect table (virtio 1.3 §2.7.5.3.2)."""
    same_outcome_for_shapes(make, shapes=("whole", "indirect", "indirect_write"),
                            extra=1 << _F.VIRTIO_F_INDIRECT_DESC)


@device_clause("2.7.5.3.2", "direct descriptors then one indirect",
               "The device must handle normal chained descriptors followed by a single "
               "indirect descriptor.", n=2, requires=[_F.VIRTIO_F_INDIRECT_DESC])
def check_2_7_5_3_2_direct_then_indirect(make: DeviceFactory) -> None:
    """The device MUST handle the case of zero or more normal chained descriptors
    followed by a single descriptor with flags & VIRTQ_DESC_F_INDIRECT (virtio 1.3
    §2.7.5.3.2)."""
    same_outcome_for_shapes(make, shapes=("whole", "indirect", "direct_then_indirect"),
                            extra=1 << _F.VIRTIO_F_INDIRECT_DESC)


@device_clause("2.7.7.2", "notify when not suppressed",
               "Without EVENT_IDX, when avail.flags is 0 the device must send a used buffer "
               "notification after using a buffer.")
def check_2_7_7_2_notify_flags_zero(make: DeviceFactory) -> None:
    """Without VIRTIO_F_EVENT_IDX, after the device writes a descriptor index into the
    used ring: if flags is 0, the device MUST send a notification (virtio 1.3 §2.7.7.2)."""
    s = _up(make)
    for _ in range(3):
        index, used, notes = used_and_notified(s)
        assert used, f"queue {index}: the chain was not used"
        assert index in notes, f"queue {index}: buffer used with avail.flags 0, no notification"


@device_clause("2.7.7.2", "notify at used_event",
               "With EVENT_IDX, when the used idx reaches used_event the device must send a "
               "notification.", n=2, requires=[_F.VIRTIO_F_EVENT_IDX])
def check_2_7_7_2_notify_at_used_event(make: DeviceFactory) -> None:
    """With VIRTIO_F_EVENT_IDX, if the idx field in the used ring was equal to
    used_event when the device wrote a descriptor index there, the device MUST send a
    notification (virtio 1.3 §2.7.7.2).  The session keeps used_event at the next slot."""
    s = _up(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_EVENT_IDX)
    for _ in range(3):
        index, used, notes = used_and_notified(s)
        assert used, f"queue {index}: the chain was not used"
        assert index in notes, f"queue {index}: used idx passed used_event, no notification"


@device_clause("2.7.7.2", "no notification when suppressed",
               "The device should not notify when avail.flags is NO_INTERRUPT (or, with "
               "EVENT_IDX, before used_event is reached).", n=3, level="SHOULD")
def check_2_7_7_2_suppressed(make: DeviceFactory) -> None:
    """Without EVENT_IDX, if flags is 1 the device SHOULD NOT send a notification; with
    it, unless the used idx reached used_event the device SHOULD NOT send one (virtio 1.3
    §2.7.7.2)."""
    for want in (DEFAULT_WANT, DEFAULT_WANT | 1 << _F.VIRTIO_F_EVENT_IDX):
        s = _up(make, want)
        index, used, notes = used_and_notified(s, suppress=True)
        assert used, f"queue {index}: the chain was not used"
        assert index not in notes, f"queue {index}: notified although the driver " \
            f"suppressed notifications ({'used_event' if s.has(_F.VIRTIO_F_EVENT_IDX) else 'flags'})"


@device_clause("2.7.8.2", "used.len counts bytes written",
               "The device must set used.len and write at least len bytes, from the first "
               "device-writable buffer, before updating used idx.")
def check_2_7_8_2_used_len(make: DeviceFactory) -> None:
    """The device MUST set len prior to updating the used idx, and MUST write at least
    len bytes to the descriptor, beginning at the first device-writable buffer, before
    updating the used idx (virtio 1.3 §2.7.8.2).  A control reply's len covers the ack
    it wrote and no more than the chain holds; a received frame's len is header + frame
    and those bytes are there."""
    check_used_len(make)


@device_clause("2.7.10.2", "used.flags 0 or 1 without EVENT_IDX",
               "Without EVENT_IDX the device must set used.flags to 0 or 1.")
def check_2_7_10_2_used_flags(make: DeviceFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is not negotiated the device MUST set flags to 0 or 1
    (virtio 1.3 §2.7.10.2)."""
    flags = used_flags_after_traffic(make, DEFAULT_WANT)
    assert all(f in (0, 1) for f in flags.values()), f"used.flags per queue: {flags}"


@device_clause("2.7.10.2", "used.flags 0 with EVENT_IDX",
               "With EVENT_IDX the device must set used.flags to 0.", n=2,
               requires=[_F.VIRTIO_F_EVENT_IDX])
def check_2_7_10_2_used_flags_event_idx(make: DeviceFactory) -> None:
    """If VIRTIO_F_EVENT_IDX is negotiated the device MUST set flags to 0 (virtio 1.3
    §2.7.10.2)."""
    flags = used_flags_after_traffic(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_EVENT_IDX)
    assert all(f == 0 for f in flags.values()), f"used.flags per queue: {flags}"


@device_clause("2.8.15", "packed: device-readable buffers never written",
               "On a packed ring too the device must not write to a device-readable buffer.",
               requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_15_packed_readable_untouched(make: DeviceFactory) -> None:
    """A device MUST NOT write to a device-readable buffer (virtio 1.3 §2.8.15)."""
    s = _up(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_RING_PACKED)
    for index, head in chains_for_every_queue(s):
        segs = segments(s, index, head)
        before = read_segments(s.memory(), segs)
        s.kick(index)
        after = read_segments(s.memory(), segs)
        assert before == after, f"queue {index} buffer {head}: device-readable bytes changed"


@device_clause("2.8.15", "packed: nothing used before AVAIL flips",
               "The device must not use a descriptor before it sees its AVAIL bit change.",
               n=2, requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_15_packed_wait_for_avail(make: DeviceFactory) -> None:
    """A device MUST NOT use a descriptor unless it observes the VIRTQ_DESC_F_AVAIL bit
    in its flags being changed (virtio 1.3 §2.8.15): a chain written but not exposed
    stays unused through a kick, and is used once exposed."""
    s = _up(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_RING_PACKED)
    index, head = tx_or_ctrl_chain(s, publish=False)
    q = s.queues[index]
    assert isinstance(q, MockPackedQueue)
    s.kick(index)
    assert not q.driver.has_used(), f"queue {index}: buffer {head} used before it was " \
        "made available"
    q.publish()
    s.kick(index)
    assert q.driver.has_used(), f"queue {index}: buffer {head} not used once available"


@device_clause("2.8.15", "packed: used descriptors left alone",
               "The device must not change a descriptor after changing its USED bit.", n=3,
               requires=[_F.VIRTIO_F_RING_PACKED])
def check_2_8_15_packed_used_stays(make: DeviceFactory) -> None:
    """A device MUST NOT change a descriptor after changing the VIRTQ_DESC_F_USED bit in
    its flags (virtio 1.3 §2.8.15)."""
    s = _up(make, DEFAULT_WANT | 1 << _F.VIRTIO_F_RING_PACKED)
    index, head = tx_or_ctrl_chain(s, kick=True)
    q = s.queues[index]
    assert isinstance(q, MockPackedQueue)
    first = q.slots_of(head)[0]
    snap = q.peek_desc(first)
    if not q.driver.has_used():
        raise AssertionError(f"queue {index}: buffer {head} never used")
    for _ in range(3):
        tx_or_ctrl_chain(s, kick=True)
        assert q.peek_desc(first) == snap, f"queue {index} slot {first}: used descriptor " \
            f"changed from {snap} to {q.peek_desc(first)}"


__all__ = [name for name in dir() if name.startswith("check_")]
