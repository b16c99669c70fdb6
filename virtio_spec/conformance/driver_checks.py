"""Driver-side checks of status, features, initialization, config and the net device.

The library plays the device (`RecordingDevice`) and reads what the driver did at the
boundary: status and feature writes, config accesses, the queues it programmed, the
chains it made available, its notifications.  Ring rules are in `driver_ring_checks`.

Each check takes a `DriverFactory`, starts a fresh driver against a recording device
offering what the clause needs, lets it work (transmit, receive, change its filter), and
judges the record.  A clause whose features the driver did not negotiate is not
applicable (`DriverRun.require`, reading the clause from the registry).

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..ctrl import VirtioNetCtrlClass, VirtioNetCtrlMq
from ..features import VirtioFeature, VirtioNetFeature, check_accept, describe, mask_of
from ..status import DeviceStatus
from ..structs import (
    VIRTIO_NET_CONFIG_FIELD_FEATURES,
    VIRTIO_NET_CONFIG_OFFSETS,
    VIRTIO_NET_HDR_GSO_ECN,
    virtio_net_config,
)
from .adapter import REFUSED, DriverFactory, NotApplicable
from .driver_run import DRIVER_BITS, PLAIN_OFFER, RING_OFFER, DriverRun, busy, exercise, start
from .recorder import Op, RecordingDevice
from .registry import driver_clause

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus

# ----------------------------------------------------------------------------------------
# §2.1 status, §3.1.1 initialization


def _status_writes(log: Iterable[Op]) -> list[Op]:
    return [op for op in log if op.kind == "write_status"]


@driver_clause("2.1.1", "status bits never cleared",
               "The driver must not clear a device status bit (other than by a reset).")
def check_2_1_1_no_clear(make: DriverFactory) -> None:
    """The driver MUST NOT clear a device status bit (virtio 1.3 §2.1.1): every
    non-zero status write keeps the bits the driver had set."""
    busy = start(make, RING_OFFER)
    exercise(busy)
    for run in (busy, start(make, refuse_features_ok=True)):
        for op in _status_writes(run.rec.log):
            value = op.args[0]
            cleared = op.status & DRIVER_BITS & ~value
            assert value == 0 or not cleared, f"status write {value:#x} in status " \
                f"{op.status:#x} clears {_S(cleared).name}"


@driver_clause("2.1.1", "reset after FAILED",
               "After setting FAILED the driver must reset the device before initializing it "
               "again.", n=2)
def check_2_1_1_reset_after_failed(make: DriverFactory) -> None:
    """If the driver sets the FAILED bit, it MUST later reset the device before
    attempting to re-initialize it (virtio 1.3 §2.1.1).  Provoked by refusing
    FEATURES_OK, then starting the driver again on the same device."""
    rec = RecordingDevice(PLAIN_OFFER, refuse_features_ok=True)
    driver = make()
    driver.start(rec)
    writes = _status_writes(rec.log)
    if not any(op.args[0] & _S.FAILED for op in writes):
        raise NotApplicable("driver did not set FAILED when FEATURES_OK was refused")
    mark = len(rec.log)
    rec.refuse_features_ok = False
    make().start(rec)
    later = _status_writes(rec.log[mark:])
    assert later, "driver never wrote the status when started again"
    assert later[0].args[0] == 0, f"first status write after FAILED is {later[0].args[0]:#x}, " \
        "not a reset"


def _features_written(run: DriverRun) -> int:
    writes = [op.args[0] for op in run.rec.ops("write_features")]
    assert writes, "driver never wrote its features"
    return writes[-1]


@driver_clause("2.2.1", "nothing accepted that was not offered",
               "The driver must not accept a feature the device did not offer.")
def check_2_2_1_only_offered(make: DriverFactory) -> None:
    """The driver MUST NOT accept a feature which the device did not offer (virtio 1.3
    §2.2.1), for a rich and for a minimal offer."""
    for offer in (RING_OFFER, mask_of([_F.VIRTIO_F_VERSION_1])):
        run = start(make, offer)
        for accepted in (op.args[0] for op in run.rec.ops("write_features")):
            extra = accepted & ~offer
            assert not extra, f"driver accepted {', '.join(describe(extra))} not offered"


@driver_clause("2.2.1", "nothing accepted without its dependency",
               "The driver must not accept a feature which requires another feature it did "
               "not accept.", n=2)
def check_2_2_1_dependencies(make: DriverFactory) -> None:
    """The driver MUST NOT accept a feature which requires another feature which was not
    accepted (virtio 1.3 §2.2.1, requirements of §5.1.3.1).  The device offers, against
    §2.2.2, features without what they need: MQ, CTRL_RX and GUEST_TSO4 without CTRL_VQ
    and GUEST_CSUM."""
    offer = mask_of([_F.VIRTIO_F_VERSION_1, _N.VIRTIO_NET_F_MAC, _N.VIRTIO_NET_F_MQ,
                     _N.VIRTIO_NET_F_CTRL_RX, _N.VIRTIO_NET_F_GUEST_TSO4,
                     _N.VIRTIO_NET_F_CTRL_VLAN])
    run = start(make, offer, max_pairs=2)
    for accepted in (op.args[0] for op in run.rec.ops("write_features")):
        broken = [v for v in check_accept(offer, accepted)
                  if v.level == "MUST" and v.clause == "2.2.1" and "without" in v.message]
        assert not broken, "; ".join(v.message for v in broken)


@driver_clause("6.1", "VERSION_1 accepted", "A driver must accept VIRTIO_F_VERSION_1 if offered.")
def check_6_1_accepts_version_1(make: DriverFactory) -> None:
    """A driver MUST accept VIRTIO_F_VERSION_1 if it is offered (virtio 1.3 §6.1)."""
    run = start(make, PLAIN_OFFER)
    assert _features_written(run) >> _F.VIRTIO_F_VERSION_1 & 1, \
        "VIRTIO_F_VERSION_1 offered but not accepted"


_ORDER = [_S.ACKNOWLEDGE, _S.DRIVER, _S.FEATURES_OK, _S.DRIVER_OK]


@driver_clause("3.1.1", "initialization sequence",
               "The driver must initialize the device in the order of §3.1.1: reset, "
               "ACKNOWLEDGE, DRIVER, features, FEATURES_OK, setup, DRIVER_OK.")
def check_3_1_1_sequence(make: DriverFactory) -> None:
    """The driver MUST follow the sequence of virtio 1.3 §3.1.1: reset; ACKNOWLEDGE;
    DRIVER; read the device features and write the accepted subset; FEATURES_OK; set up
    the device; DRIVER_OK; one status bit per step."""
    run = start(make, PLAIN_OFFER)
    log = run.rec.log
    writes = _status_writes(log)
    assert writes and writes[0].args[0] == 0, "the first status write is not a reset"
    bits: list[int] = []
    have = 0
    for op in writes[1:]:
        new = op.args[0] & ~have & DRIVER_BITS
        have |= op.args[0]
        if new:
            bits.append(new)
    assert bits == [int(b) for b in _ORDER], \
        f"status bits set in the order {[_S(b).name for b in bits]}"
    kinds = [op.kind for op in log]
    first = {k: kinds.index(k) for k in ("read_features", "write_features") if k in kinds}
    assert "write_features" in first, "features never written"
    idx_driver = next(i for i, op in enumerate(log) if op.kind == "write_status"
                      and op.args[0] & _S.DRIVER)
    idx_fok = next(i for i, op in enumerate(log) if op.kind == "write_status"
                   and op.args[0] & _S.FEATURES_OK)
    assert first.get("read_features", 1 << 30) < first["write_features"], \
        "features written before the device features were read"
    assert idx_driver < first["write_features"] < idx_fok, \
        "features not written between DRIVER and FEATURES_OK"
    setup = [i for i, op in enumerate(log) if op.kind in ("setup_queue", "enable_queue")]
    assert all(i > idx_fok for i in setup), "queues set up before FEATURES_OK"


def _after_features_ok(log: list[Op]) -> list[Op]:
    for i, op in enumerate(log):
        if op.kind == "write_status" and op.args[0] & _S.FEATURES_OK:
            return log[i + 1:]
    return []


@driver_clause("3.1.1", "no feature bits after FEATURES_OK",
               "The driver must not accept new feature bits after setting FEATURES_OK.", n=2)
def check_3_1_1_features_frozen(make: DriverFactory) -> None:
    """The driver MUST NOT accept new feature bits after setting FEATURES_OK (virtio 1.3
    §3.1.1 step 5): no feature write until the next reset."""
    run = busy(make)
    for op in _after_features_ok(run.rec.log):
        if op.kind == "write_status" and op.args[0] == 0:
            break
        assert op.kind != "write_features", f"features {op.args[0]:#x} written after " \
            "FEATURES_OK"


@driver_clause("3.1.1", "status re-read after FEATURES_OK",
               "The driver must re-read the status after setting FEATURES_OK to see that the "
               "device kept it.", n=3)
def check_3_1_1_reread(make: DriverFactory) -> None:
    """Step 6 of the sequence the driver MUST follow (virtio 1.3 §3.1.1): re-read device
    status to ensure the FEATURES_OK bit is still set, before going on."""
    run = start(make, PLAIN_OFFER)
    rest = _after_features_ok(run.rec.log)
    assert rest, "FEATURES_OK never written"
    going_on = [i for i, op in enumerate(rest) if op.kind in ("setup_queue", "enable_queue",
                                                             "kick", "write_status")]
    stop = going_on[0] if going_on else len(rest)
    assert any(op.kind == "read_status" for op in rest[:stop]), \
        "status not re-read between FEATURES_OK and the next step"


@driver_clause("3.1.1", "no initialization after FEATURES_OK refused",
               "If the device does not keep FEATURES_OK the driver must not continue "
               "initialization.", n=4)
def check_3_1_1_stop_when_refused(make: DriverFactory) -> None:
    """If FEATURES_OK is not set on re-read the device is unusable; the driver MUST NOT
    continue initialization (virtio 1.3 §3.1.1): no queue discovery or setup (step 7), no
    DRIVER_OK, no kick."""
    run = start(make, PLAIN_OFFER, refuse_features_ok=True)
    for op in _after_features_ok(run.rec.log):
        if op.kind == "write_status" and op.args[0] == 0:
            break
        assert op.kind not in ("queue_max", "setup_queue", "enable_queue", "kick"), \
            f"{op.kind} after FEATURES_OK was refused"
        assert not (op.kind == "write_status" and op.args[0] & _S.DRIVER_OK), \
            "DRIVER_OK set after FEATURES_OK was refused"


@driver_clause("3.1.1", "no notification before DRIVER_OK",
               "The driver must not send available buffer notifications before setting "
               "DRIVER_OK.", n=5)
def check_3_1_1_no_kick_before_driver_ok(make: DriverFactory) -> None:
    """The driver MUST NOT send any buffer available notifications to the device before
    setting DRIVER_OK (virtio 1.3 §3.1.1)."""
    run = busy(make)
    for op in run.rec.log:
        if op.kind == "write_status" and op.args[0] & _S.DRIVER_OK:
            return
        assert op.kind != "kick", f"kick of queue {op.args[0]} before DRIVER_OK"
    raise AssertionError("DRIVER_OK never set")


# ----------------------------------------------------------------------------------------
# §2.5 config access, §5.1.4.2


def _present_bytes(offer: int) -> set[int]:
    out: set[int] = set()
    for sub in virtio_net_config.subcons:
        feats = VIRTIO_NET_CONFIG_FIELD_FEATURES[sub.name]
        if sub.name == "mac" or any(offer >> f & 1 for f in feats):
            off = VIRTIO_NET_CONFIG_OFFSETS[sub.name]
            out.update(range(off, off + sub.sizeof()))
    return out


@driver_clause("2.5.1", "optional config fields only when offered",
               "For optional config fields the driver must check that the feature is offered "
               "before accessing them.")
def check_2_5_1_optional_fields(make: DriverFactory) -> None:
    """For optional configuration space fields, the driver MUST check that the
    corresponding feature is offered before accessing that part of the configuration
    space (virtio 1.3 §2.5.1); mac always exists (§5.1.4)."""
    for offer in (mask_of([_F.VIRTIO_F_VERSION_1]), PLAIN_OFFER):
        run = start(make, offer)
        present = _present_bytes(offer)
        for op in run.rec.ops("read_config", "write_config"):
            off, length = op.args[0], op.args[1]
            stray = sorted(set(range(off, off + length)) - present)
            assert not stray, f"config access {off}+{length} touches bytes {stray[:4]} of " \
                f"fields not offered (offer {', '.join(describe(offer))})"


@driver_clause("5.1.4.2", "config never written",
               "The driver must not write to any of the device configuration fields.")
def check_5_1_4_2_no_config_write(make: DriverFactory) -> None:
    """The driver MUST NOT write to any of the device configuration fields (virtio 1.3
    §5.1.4.2), through initialization, traffic and filter changes."""
    run = busy(make)
    writes = run.rec.ops("write_config")
    assert not writes, f"config written at {[op.args[:2] for op in writes]}"


@driver_clause("5.1.4.2", "receive buffers fit an MTU-sized packet",
               "With MTU negotiated the driver must supply receive buffers for at least one "
               "packet of mtu plus the Ethernet header.", n=2, requires=[_N.VIRTIO_NET_F_MTU])
def check_5_1_4_2_mtu_buffers(make: DriverFactory) -> None:
    """If the driver negotiates VIRTIO_NET_F_MTU, it MUST supply enough receive buffers
    to receive at least one receive packet of size mtu (plus low level ethernet header
    length) with gso_type NONE or ECN (virtio 1.3 §5.1.4.2).  The device offers mtu
    4000."""
    run = start(make, RING_OFFER | 1 << _N.VIRTIO_NET_F_MRG_RXBUF, mtu=4000)
    run.must_be_live()
    run.require()
    rx = run.rec.all_chains("rx")
    need = run.rec.hdr_size + 4000 + 14
    if run.rec.has(_N.VIRTIO_NET_F_MRG_RXBUF):
        room = sum(sum(d.len for d in c.writable) for c in rx)
    else:
        room = max((sum(d.len for d in c.writable) for c in rx), default=0)
    assert room >= need, f"receive buffers hold {room} bytes for a packet, need {need}"


# ----------------------------------------------------------------------------------------
# §5.1.6 the network device: headers, receive buffers, control commands


def _tx_headers(run: DriverRun) -> list[bytes]:
    out = [c.data[:run.rec.hdr_size] for c in run.rec.all_chains("tx")]
    assert out, "the driver transmitted nothing"
    return out


_HOST_GSO = (_N.VIRTIO_NET_F_HOST_TSO4, _N.VIRTIO_NET_F_HOST_TSO6, _N.VIRTIO_NET_F_HOST_UFO,
             _N.VIRTIO_NET_F_HOST_USO)


@driver_clause("5.1.6.2.1", "tx num_buffers 0", "The driver must set num_buffers to zero.")
def check_5_1_6_2_1_num_buffers(make: DriverFactory) -> None:
    """The driver MUST set num_buffers to zero in the header of a transmitted packet
    (virtio 1.3 §5.1.6.2.1)."""
    for hdr in _tx_headers(busy(make)):
        assert hdr[10:12] == b"\0\0", f"tx header num_buffers {int.from_bytes(hdr[10:12], 'little')}"


@driver_clause("5.1.6.2.1", "tx flags 0 without CSUM",
               "Without VIRTIO_NET_F_CSUM the driver must set the header's flags to zero.", n=2)
def check_5_1_6_2_1_flags(make: DriverFactory) -> None:
    """If VIRTIO_NET_F_CSUM is not negotiated, the driver MUST set flags to zero (and so
    never VIRTIO_NET_HDR_F_NEEDS_CSUM) (virtio 1.3 §5.1.6.2.1)."""
    run = busy(make, RING_OFFER)
    if run.rec.has(_N.VIRTIO_NET_F_CSUM):
        raise NotApplicable("CSUM negotiated")
    for hdr in _tx_headers(run):
        assert hdr[0] == 0, f"tx header flags {hdr[0]:#x} without VIRTIO_NET_F_CSUM"


@driver_clause("5.1.6.2.1", "no DATA_VALID or RSC_INFO on tx",
               "The driver must not set VIRTIO_NET_HDR_F_DATA_VALID or "
               "VIRTIO_NET_HDR_F_RSC_INFO in a transmit header.", n=3)
def check_5_1_6_2_1_rx_only_flags(make: DriverFactory) -> None:
    """The driver MUST NOT set the VIRTIO_NET_HDR_F_DATA_VALID and
    VIRTIO_NET_HDR_F_RSC_INFO bits in flags (virtio 1.3 §5.1.6.2.1)."""
    run = busy(make, RING_OFFER | mask_of([_N.VIRTIO_NET_F_CSUM, _N.VIRTIO_NET_F_HOST_TSO4]))
    for hdr in _tx_headers(run):
        assert not hdr[0] & 0x6, f"tx header flags {hdr[0]:#x} set DATA_VALID or RSC_INFO"


@driver_clause("5.1.6.2.1", "gso_type NONE without host GSO features",
               "Without HOST_TSO4/TSO6/UFO/USO the driver must set gso_type to "
               "VIRTIO_NET_HDR_GSO_NONE.", n=4)
def check_5_1_6_2_1_gso(make: DriverFactory) -> None:
    """If none of the VIRTIO_NET_F_HOST_TSO4, TSO6, UFO or USO options have been
    negotiated, the driver MUST set gso_type to VIRTIO_NET_HDR_GSO_NONE (virtio 1.3
    §5.1.6.2.1)."""
    run = busy(make, RING_OFFER)
    if any(run.rec.has(b) for b in _HOST_GSO):
        raise NotApplicable("a host GSO feature was negotiated")
    for hdr in _tx_headers(run):
        assert hdr[1] & ~VIRTIO_NET_HDR_GSO_ECN == 0 and hdr[1] == 0, \
            f"tx header gso_type {hdr[1]:#x}"


@driver_clause("5.1.6.3.1", "merged rx buffers hold a header",
               "With MRG_RXBUF each receive buffer must be at least the size of the "
               "virtio_net_hdr.", requires=[_N.VIRTIO_NET_F_MRG_RXBUF])
def check_5_1_6_3_1_mergeable_size(make: DriverFactory) -> None:
    """If VIRTIO_NET_F_MRG_RXBUF is negotiated, each buffer MUST be at least the size of
    the struct virtio_net_hdr (virtio 1.3 §5.1.6.3.1)."""
    run = busy(make, RING_OFFER | 1 << _N.VIRTIO_NET_F_MRG_RXBUF)
    run.require()
    for chain in run.rec.all_chains("rx"):
        room = sum(d.len for d in chain.writable)
        assert room >= run.rec.hdr_size, f"rx buffer {chain.head} of {room} bytes"


@driver_clause("5.1.6.3.1", "rx buffers of 1526 bytes",
               "Without MRG_RXBUF or guest GSO the driver should post receive buffers of at "
               "least 1526 bytes.", n=2, level="SHOULD")
def check_5_1_6_3_1_buffer_size(make: DriverFactory) -> None:
    """If VIRTIO_NET_F_MRG_RXBUF is not negotiated (and no guest GSO feature), the driver
    SHOULD populate the receive queues with buffers of at least 1526 bytes (virtio 1.3
    §5.1.6.3.1)."""
    run = busy(make, PLAIN_OFFER)
    if run.rec.has(_N.VIRTIO_NET_F_MRG_RXBUF):
        raise NotApplicable("MRG_RXBUF negotiated")
    rx = run.rec.all_chains("rx")
    assert rx, "no receive buffers posted"
    for chain in rx:
        # 1526 = 12-byte header + 1514-byte frame (the 65562 of the GSO case is 12 + 65550)
        room = sum(d.len for d in chain.writable)
        assert room >= 1526, f"rx buffer {chain.head} holds {room} bytes"


def _ctrl_requests(run: DriverRun) -> list[tuple[int, int, bytes]]:
    out = []
    for chain in run.rec.all_chains("ctrl"):
        data = chain.data
        if len(data) >= 2:
            out.append((data[0], data[1], data[2:]))
    return out


@driver_clause("5.1.6.5.1.2", "no RX class commands without CTRL_RX",
               "Without CTRL_RX negotiated the driver must not issue VIRTIO_NET_CTRL_RX "
               "commands.")
def check_5_1_6_5_1_2_rx_class(make: DriverFactory) -> None:
    """If the VIRTIO_NET_F_CTRL_RX feature has not been negotiated, the driver MUST NOT
    issue commands VIRTIO_NET_CTRL_RX_PROMISC or VIRTIO_NET_CTRL_RX_ALLMULTI (virtio 1.3
    §5.1.6.5.1.2); the device offers a control queue without CTRL_RX."""
    offer = PLAIN_OFFER & ~(1 << _N.VIRTIO_NET_F_CTRL_RX)
    run = busy(make, offer)
    if not run.rec.has(_N.VIRTIO_NET_F_CTRL_VQ):
        raise NotApplicable("driver did not negotiate VIRTIO_NET_F_CTRL_VQ")
    sent = [r for r in _ctrl_requests(run) if r[0] == VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX]
    assert not sent, f"RX class command(s) {[r[1] for r in sent]} without CTRL_RX"


@driver_clause("5.1.6.5.6.1", "VQ_PAIRS_SET within 1..max_virtqueue_pairs",
               "The driver must not request 0 or more than max_virtqueue_pairs queue pairs.",
               requires=[_N.VIRTIO_NET_F_MQ])
def check_5_1_6_5_6_1_pairs_range(make: DriverFactory) -> None:
    """The driver MUST NOT request a virtqueue_pairs of 0 or greater than
    max_virtqueue_pairs in the device configuration space (virtio 1.3 §5.1.6.5.6.1); the
    driver is asked for 0, 2, 4 and 5 pairs of a 4-pair device."""
    run = start(make, PLAIN_OFFER | 1 << _N.VIRTIO_NET_F_MQ, max_pairs=4)
    run.must_be_live()
    run.require()
    for pairs in (0, 2, 4, 5):
        try:
            run.driver.set_queue_pairs(pairs)
        except REFUSED:
            pass  # refusing an impossible request is what a driver should do
        run.rec.scan()
    key = (VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
    asked = [int.from_bytes(d[:2], "little") for c, m, d in _ctrl_requests(run) if (c, m) == key]
    bad = [p for p in asked if not 1 <= p <= 4]
    assert not bad, f"VQ_PAIRS_SET {bad} on a device with max_virtqueue_pairs 4"



__all__ = [name for name in dir() if name.startswith("check_")]
