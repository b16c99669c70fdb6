"""host.Device resumes rings at a base (a vhost-user back-end restarted under a driver)."""

from __future__ import annotations

import pytest

from host import Device, FrameTransmitted
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.status import DeviceStatus as S
from vxdp.packets import udp_packet
from vxdp.pair import InProcessTransport, Pair


def _frames(n: int, tag: int) -> list[bytes]:
    return [udp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 53, bytes([tag]) * 40)
            for i in range(n)]


def _restart(pair: Pair, *, resume: bool) -> Device:
    """A fresh device over the same memory, brought up as the guest runtime replays it."""
    old = pair.device
    dev = Device(old.profile, pair.memory)
    dev.write_status(int(S.ACKNOWLEDGE))
    dev.write_status(int(S.ACKNOWLEDGE | S.DRIVER))
    dev.write_features(pair.driver.negotiated)
    dev.write_status(int(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK))
    for index, q in sorted(pair.driver.queues.items()):
        used = pair.memory.read_u16(q.addresses[2] + 2)
        dev.set_queue(index, q.size, *q.addresses, base=used if resume else None)
        dev.enable_queue(index)
    dev.write_status(int(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK))
    pair.device = dev
    pair.transport = InProcessTransport(dev)
    return dev


def test_resumed_device_continues_both_directions() -> None:
    pair = Pair.create(queue_size=8)
    assert pair.negotiate()
    first = _frames(11, 1)  # more than one ring's worth: indices wrap past the size
    assert pair.send_from_guest(first) == first[:len(pair.wire)]
    sent = len(pair.wire)
    dev = _restart(pair, resume=True)
    tx_slot = dev.slot(1)
    assert tx_slot is not None and tx_slot.engine is not None
    assert tx_slot.engine.last_avail_idx == sent  # type: ignore[union-attr]
    again = _frames(3, 2)
    assert pair.send_from_guest(again) == again
    inbound = _frames(5, 3)
    assert pair.deliver_to_guest(inbound) == inbound


def test_without_a_base_the_old_chains_are_seen_again() -> None:
    pair = Pair.create(queue_size=8)
    assert pair.negotiate()
    pair.send_from_guest(_frames(4, 1))
    dev = _restart(pair, resume=False)
    events = dev.notify(1)
    # starting at 0 the device re-reads the four chains the old device already completed
    assert sum(isinstance(e, FrameTransmitted) for e in events) == 4


def test_bad_bases_are_refused() -> None:
    pair = Pair.create(queue_size=8)
    assert pair.negotiate()
    dev = Device(pair.device.profile, pair.memory)
    dev.write_status(int(S.ACKNOWLEDGE))
    dev.write_status(int(S.ACKNOWLEDGE | S.DRIVER))
    dev.write_features(pair.driver.negotiated)
    dev.write_status(int(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK))
    q = pair.driver.queues[0]
    with pytest.raises(RemoteProtocolError, match="base 65536 is not a 16-bit ring index"):
        dev.set_queue(0, q.size, *q.addresses, base=0x10000)
    assert dev.slot(0) is None
