"""vxdp.pair: the guest driver and the host device together, in one process."""

from __future__ import annotations

import json

import pytest

from guest import SUPPORTED_FEATURES, CommandRefused, InitState
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.status import DeviceStatus as S
from vxdp.packets import udp_packet
from vxdp.pair import Pair

GUEST_MAC = "52:54:00:12:34:56"


def to_guest(size: int = 64, dst: str = GUEST_MAC, tag: int = 0) -> bytes:
    payload = bytes((tag + i) & 0xFF for i in range(max(size - 42, 0)))
    return udp_packet("10.0.0.2", "10.0.0.1", 4000, 5000, payload, dst_mac=dst)


def from_guest(tag: int, size: int = 64) -> bytes:
    payload = bytes((tag + i) & 0xFF for i in range(max(size - 42, 0)))
    return udp_packet("10.0.0.1", "10.0.0.2", 5000, 4000, payload, src_mac=GUEST_MAC)


def test_negotiate_reaches_driver_ok_and_traces_names():
    pair = Pair.create()
    assert pair.negotiate()
    assert pair.device.negotiated == pair.driver.negotiated != 0
    assert pair.device.read_status() == S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK
    writes = [e.data["value"] for e in pair.trace.of_kind("write_status")]
    assert writes == [0, 1, 3, 11, 15]
    (neg,) = pair.trace.of_kind("negotiated")
    assert "VIRTIO_NET_F_MRG_RXBUF" in neg.text and "VIRTIO_F_EVENT_IDX" in neg.text
    assert len(pair.trace.of_kind("setup_queue")) == pair.device.num_queues == 5


def test_device_refusing_features_ok_leaves_the_driver_failed():
    pair = Pair.create(extra_features=1 << F.VIRTIO_F_RING_PACKED)
    assert not pair.negotiate()
    assert pair.driver.state is InitState.FAILED
    status = pair.device.read_status()
    assert status & S.FAILED and not status & S.FEATURES_OK
    refusal = [e for e in pair.trace.of_kind("status") if not e.data["accepted"]]
    assert refusal and refusal[0].data["clause"] == "2.2.1"
    assert "VIRTIO_F_RING_PACKED" in refusal[0].text
    assert not pair.trace.of_kind("setup_queue")


@pytest.mark.parametrize("event_idx", [True, False])
def test_round_trips_with_event_idx_on_and_off(event_idx):
    features = SUPPORTED_FEATURES if event_idx else SUPPORTED_FEATURES & ~(
        1 << F.VIRTIO_F_EVENT_IDX)
    pair = Pair.create(features=features, queue_size=8)
    assert pair.negotiate()
    assert pair.device.has(F.VIRTIO_F_EVENT_IDX) == event_idx
    sent = [from_guest(i, 60 + i) for i in range(20)]
    wire = []
    for k in range(0, 20, 3):  # several laps of an 8-entry ring
        wire += pair.send_from_guest(sent[k:k + 3])
    assert wire == sent
    inbound = [to_guest(100 + i, tag=i) for i in range(20)]
    got = []
    for k in range(0, 20, 4):
        got += pair.deliver_to_guest(inbound[k:k + 4])
    assert got == inbound
    whys = [e.text for e in pair.trace.of_kind("interrupt")]
    marker = "EVENT_IDX: used_event=" if event_idx else "avail.flags="
    assert whys and all(marker in w for w in whys)
    kicks = [e.text for e in pair.trace.of_kind("kick_decision")]
    assert all(("avail_event=" in k) == event_idx for k in kicks)
    assert pair.device.stats["tx_frames"] == 20 and pair.device.stats["rx_frames"] == 20


def test_mergeable_rx_through_the_pair():
    pair = Pair.create(rx_buffer_size=128)
    pair.negotiate()
    big = to_guest(600)
    assert pair.deliver_to_guest([big]) == [big]
    (delivered,) = pair.trace.of_kind("rx_frame")
    assert len(big) == 600 and delivered.data["buffers"] == 5  # 612 bytes in 128-byte buffers


def test_rx_without_mergeable_buffers():
    pair = Pair.create(features=SUPPORTED_FEATURES & ~(1 << N.VIRTIO_NET_F_MRG_RXBUF))
    pair.negotiate()
    f = to_guest(1400)
    assert pair.deliver_to_guest([f]) == [f]
    assert pair.trace.of_kind("rx_frame")[0].data["buffers"] == 1


def test_mac_filter_set_by_ctrl_drops_foreign_frames():
    pair = Pair.create()
    pair.negotiate()
    foreign = to_guest(dst="02:00:00:00:00:77")
    assert pair.deliver_to_guest([foreign]) == [foreign]  # promiscuous after reset
    assert pair.ctrl(0, 0, {"on": 0}).ok
    mine = to_guest(80)
    assert pair.deliver_to_guest([foreign, mine]) == [mine]
    (drop,) = pair.trace.of_kind("drop")
    assert "02:00:00:00:00:77 not in the mac table" in drop.text
    table = {"unicast": {"macs": [bytes.fromhex("020000000077")]}, "multicast": {"macs": []}}
    assert pair.ctrl(1, 0, table).ok
    assert pair.deliver_to_guest([foreign]) == [foreign]


def test_driver_refuses_an_unknown_ctrl_command_and_stays_live():
    # The device's ERR ack for unknown classes is tested in tests/host; a conformant
    # driver never puts such a command on the ring (virtio 1.3 §5.1.6.5).
    pair = Pair.create()
    pair.negotiate()
    with pytest.raises(CommandRefused, match="unknown control class 42"):
        pair.ctrl(42, 1, b"\x00")
    assert pair.driver.state is InitState.LIVE


def test_announce_round_trip():
    pair = Pair.create()
    pair.negotiate()
    pair.announce()
    names = [e.data.get("name") for e in pair.trace.of_kind("ctrl")]
    assert names == ["ANNOUNCE_ACK"]
    assert pair.device.read_config(6, 2) == b"\x01\x00"


def test_second_queue_pair_after_vq_pairs_set():
    pair = Pair.create()
    pair.negotiate()
    with pytest.raises(Exception, match="pair 1"):
        pair.send_from_guest([from_guest(1)], pair=1)
    assert pair.ctrl(4, 0, {"virtqueue_pairs": 2}).ok
    assert pair.send_from_guest([from_guest(2)], pair=1) == [from_guest(2)]
    assert pair.deliver_to_guest([to_guest(tag=3)], pair=1) == [to_guest(tag=3)]
    assert pair.trace.of_kind("rx")[-1].data["queue"] == 2


def test_packed_ring_pair():
    pair = Pair.create("packed", queue_size=8)
    assert pair.negotiate()
    assert pair.device.has(F.VIRTIO_F_RING_PACKED)
    sent = [from_guest(i) for i in range(12)]
    assert pair.send_from_guest(sent[:6]) + pair.send_from_guest(sent[6:]) == sent
    inbound = [to_guest(300, tag=i) for i in range(12)]
    assert pair.deliver_to_guest(inbound) == inbound
    assert "driver event flags=" in pair.trace.of_kind("interrupt")[0].text


def test_minimal_profile_has_no_control_queue():
    pair = Pair.create("minimal")
    assert pair.negotiate()
    assert pair.device.num_queues == 2
    with pytest.raises(Exception, match="no control queue"):
        pair.ctrl(0, 0, {"on": 0})
    assert pair.send_from_guest([from_guest(1)]) == [from_guest(1)]


def test_reset_then_renegotiate():
    pair = Pair.create()
    pair.negotiate()
    pair.ctrl(0, 0, {"on": 0})
    pair.reset()
    assert pair.device.read_status() == 0 and pair.device.slot(0) is None
    assert pair.negotiate()
    foreign = to_guest(dst="02:00:00:00:00:99")
    assert pair.deliver_to_guest([foreign]) == [foreign]  # filters were reset too


def test_trace_json_lines_parse():
    pair = Pair.create()
    pair.negotiate()
    pair.send_from_guest([from_guest(1)])
    rows = [json.loads(line) for line in pair.trace.json_lines().splitlines()]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert {"guest", "host", "wire"} <= {r["actor"] for r in rows}
    assert any(r["kind"] == "tx_frame" and len(bytes.fromhex(r["frame"])) == 64 for r in rows)


def test_device_needs_reset_reaches_the_driver_and_a_reset_recovers():
    pair = Pair.create()
    pair.negotiate()
    tx = pair.driver.queues[1]
    pair.memory.write_u16(tx.addresses[1] + 2, 0x1234)  # corrupt avail.idx (§2.7.6)
    pair.notify(1)
    (changed,) = pair.trace.of_kind("config_changed")
    assert changed.data["needs_reset"] and "device needs reset" in changed.text
    assert pair.device.read_status() & S.DEVICE_NEEDS_RESET
    pair.reset()
    assert pair.negotiate()
    assert pair.send_from_guest([from_guest(9)]) == [from_guest(9)]
