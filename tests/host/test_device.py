"""host.Device against driver-side mock queues (virtio_spec.testing): status and features,
queue setup, transmit, receive (mergeable and not), interrupts, the control queue and its
effect on traffic, malformed control chains, reset."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import (
    ConfigInterrupt,
    CtrlHandled,
    CtrlOwner,
    CtrlReply,
    Device,
    DeviceNeedsReset,
    FrameDeferred,
    FrameDelivered,
    FrameDropped,
    FrameTransmitted,
    Interrupt,
    KickIgnored,
    MoreAvailable,
    StatusChanged,
    get_profile,
)
from virtio_spec.ctrl import build_ctrl
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError, RingError
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of, negotiate
from virtio_spec.status import DeviceStatus as S
from virtio_spec.structs import virtio_net_config, virtio_net_hdr
from virtio_spec.testing import GuestAllocator, MockPackedQueue, MockSplitQueue, guest_memory

MAC = bytes.fromhex("525400123456")
OTHER = bytes.fromhex("020000000077")
SRC = bytes.fromhex("020000000001")


def frame(dst: bytes = MAC, size: int = 60, vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    body = tag + b"\x08\x00" + bytes(range(256)) * 8
    return (dst + SRC + body)[:max(size, 14 + len(tag))]


def hdr(**fields: int) -> bytes:
    base = dict(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0,
                num_buffers=0)
    base.update(fields)
    return bytes(virtio_net_hdr.build(base))


@dataclass
class Live:
    dev: Device
    queues: dict[int, MockSplitQueue | MockPackedQueue]
    features: int

    def kick(self, index: int) -> list:
        return self.dev.notify(index)

    def ctrl(self, data: bytes, writable: tuple[int, ...] = (1,)) -> tuple[list, list]:
        ctrlq = self.queues[self.dev.num_queues - 1]
        ctrlq.add_chain([data[:2], data[2:]] if len(data) > 2 else [data], list(writable))
        events = self.kick(self.dev.num_queues - 1)
        return events, ctrlq.used()


def bring_up(profile: str = "default", *, drop: tuple[int, ...] = (), size: int = 8) -> Live:
    mem = guest_memory(1 << 21)
    alloc = GuestAllocator(mem)
    dev = Device(profile, mem)
    for value in (0, 1, 3):
        dev.write_status(value)
    feats = negotiate(dev.device_features, dev.device_features & ~mask_of(drop))
    dev.write_features(feats)
    assert dev.write_status(11)[0].accepted
    packed = bool(feats >> F.VIRTIO_F_RING_PACKED & 1)
    queues: dict[int, MockSplitQueue | MockPackedQueue] = {}
    for i in range(dev.num_queues):
        cls = MockPackedQueue if packed else MockSplitQueue
        q = cls(mem, size, event_idx=dev.has(F.VIRTIO_F_EVENT_IDX),
                indirect=dev.has(F.VIRTIO_F_INDIRECT_DESC), allocator=alloc)
        dev.set_queue(i, size, *q.addresses)
        dev.enable_queue(i)
        queues[i] = q
    dev.write_status(15)
    assert dev.live
    return Live(dev, queues, feats)


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# -- features, status, config -------------------------------------------------------------


def test_default_profile_offers_the_documented_features():
    offered = Device("default").device_features
    for bit in (F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_CTRL_VQ, N.VIRTIO_NET_F_MAC,
                N.VIRTIO_NET_F_STATUS, N.VIRTIO_NET_F_MTU, N.VIRTIO_NET_F_MRG_RXBUF,
                N.VIRTIO_NET_F_CTRL_RX, N.VIRTIO_NET_F_CTRL_VLAN, N.VIRTIO_NET_F_CTRL_MAC_ADDR,
                N.VIRTIO_NET_F_GUEST_ANNOUNCE, N.VIRTIO_NET_F_MQ, F.VIRTIO_F_EVENT_IDX,
                F.VIRTIO_F_INDIRECT_DESC):
        assert offered >> bit & 1, bit.name
    assert not offered >> N.VIRTIO_NET_F_XDP_OFFLOAD & 1
    assert Device("packed").device_features >> F.VIRTIO_F_RING_PACKED & 1


def test_config_fields_are_valid_only_with_their_feature():
    cfg = virtio_net_config.parse(Device("default").read_config(0, 28).ljust(80, b"\0"))
    assert (bytes(cfg.mac), cfg.status, cfg.max_virtqueue_pairs, cfg.mtu) == (MAC, 1, 2, 1500)
    minimal = Device("minimal").read_config(0, 28)
    cfg = virtio_net_config.parse(minimal.ljust(80, b"\0"))
    assert bytes(cfg.mac) == MAC
    assert (cfg.status, cfg.max_virtqueue_pairs, cfg.mtu) == (0, 0, 0)
    xdp = Device("rfc2019")
    cfg = virtio_net_config.parse(xdp.read_config(0, 80))
    assert cfg.xdp_max_insns == 4096 and cfg.xdp_map_types == 0b110
    # the 256-bit helper bitmap: map_lookup_elem (1) in word 0, strtol (105) in word 1
    assert cfg.xdp_helpers[0] >> 1 & 1 and not cfg.xdp_helpers[0] >> 6 & 1
    assert cfg.xdp_helpers[1] >> (105 - 64) & 1 and cfg.xdp_helpers[2:] == [0, 0]


def test_config_reads_outside_and_writes_are_refused():
    dev = Device("default")
    with pytest.raises(RemoteProtocolError) as err:
        dev.read_config(20, 9)
    assert err.value.clause == "5.1.4"
    with pytest.raises(RemoteProtocolError) as err:
        dev.write_config(0, b"\x02")
    assert err.value.clause == "5.1.4.2"
    assert dev.read_config(0, 6) == MAC


def test_features_ok_refused_for_an_unoffered_bit_status_reads_without_it():
    dev = Device("default")
    for value in (0, 1, 3):
        dev.write_status(value)
    bad = negotiate(dev.device_features, dev.device_features) | 1 << F.VIRTIO_F_RING_PACKED
    dev.write_features(bad)
    (event,) = dev.write_status(11)
    assert isinstance(event, StatusChanged) and not event.accepted
    assert event.clause == "2.2.1" and "VIRTIO_F_RING_PACKED" in event.reason
    assert dev.read_status() == S.ACKNOWLEDGE | S.DRIVER
    assert dev.negotiated == 0


def test_features_ok_refused_for_a_broken_dependency():
    dev = Device("default")
    for value in (0, 1, 3):
        dev.write_status(value)
    dev.write_features(mask_of((F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_CTRL_RX)))
    (event,) = dev.write_status(11)
    assert not event.accepted and "VIRTIO_NET_F_CTRL_VQ" in event.reason
    assert not dev.read_status() & S.FEATURES_OK


def test_queue_layout_follows_negotiated_mq_and_ctrl_vq():
    with_mq = bring_up()
    assert with_mq.dev.num_queues == 5
    assert with_mq.dev.queue_role(4)[0].value == "controlq"
    without = bring_up(drop=(N.VIRTIO_NET_F_MQ,))
    assert without.dev.num_queues == 3
    assert without.dev.queue_role(2)[0].value == "controlq"
    with pytest.raises(RemoteProtocolError) as err:
        without.dev.queue_max_size(3)
    assert err.value.clause == "5.1.2"


def test_queue_setup_is_checked():
    dev = Device("default", guest_memory())
    with pytest.raises(RemoteProtocolError) as err:
        dev.set_queue(0, 8, 0x10_0000, 0x10_1000, 0x10_2000)
    assert err.value.clause == "3.1.1"
    for value in (0, 1, 3):
        dev.write_status(value)
    dev.write_features(negotiate(dev.device_features, dev.device_features))
    dev.write_status(11)
    with pytest.raises(RemoteProtocolError) as err:
        dev.set_queue(0, 512, 0x10_0000, 0x10_1000, 0x10_2000)
    assert err.value.clause == "4.1.4.3.2"
    with pytest.raises(RingError):
        dev.set_queue(0, 6, 0x10_0000, 0x10_1000, 0x10_2000)
    dev.set_queue(0, 8, 0x7000_0000, 0x10_1000, 0x10_2000)
    with pytest.raises(RingError):  # descriptor table outside guest memory
        dev.enable_queue(0)
    assert dev.read_status() == S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK


def test_no_buffers_consumed_before_driver_ok():
    mem = guest_memory()
    dev = Device("minimal", mem)
    for value in (0, 1, 3):
        dev.write_status(value)
    dev.write_features(negotiate(dev.device_features, dev.device_features))
    dev.write_status(11)
    tx = MockSplitQueue(mem, 8)
    dev.set_queue(1, 8, *tx.addresses)
    dev.enable_queue(1)
    tx.add_chain([hdr(), frame()])
    (event,) = dev.notify(1)
    assert isinstance(event, KickIgnored) and "2.1.2" in event.reason
    assert tx.used() == []


# -- transmit -----------------------------------------------------------------------------


def test_tx_strips_the_header_and_returns_the_chain_with_len_zero():
    live = bring_up()
    f = frame(OTHER, 100)
    head = live.queues[1].add_chain([hdr(), f])
    events = live.kick(1)
    assert [e.frame for e in of(events, FrameTransmitted)] == [f]
    assert [(u.id, u.len) for u in live.queues[1].used()] == [(head, 0)]
    assert live.dev.stats["tx_bytes"] == 100


def test_tx_notify_takes_one_lap_of_a_ring_the_driver_keeps_refilling():
    """A driver in another process refills as fast as the device drains (DPDK txonly):
    a notify hands out at most the queue size in frames and ends with MoreAvailable, so
    the edge can let other work run before it calls again; nothing is lost between."""
    live = bring_up(size=8)
    txq = live.queues[1]
    engine = live.dev.slot(1).engine
    refills = iter(range(20))
    push_many = engine.push_many

    def push_and_refill(items):  # the driver reaps each chain and posts a new one
        push_many(items)
        txq.used()
        if next(refills, None) is not None:
            txq.add_chain([hdr() + frame(OTHER)])

    engine.push_many = push_and_refill
    for _ in range(8):
        txq.add_chain([hdr() + frame(OTHER)])
    rounds = []
    while True:
        events = live.kick(1)
        rounds.append(len(of(events, FrameTransmitted)))
        if not of(events, MoreAvailable):
            break
        assert of(events, MoreAvailable) == [MoreAvailable(1, 8)]
    assert rounds == [8, 8, 8, 4]
    assert live.dev.stats["tx_frames"] == 28 and live.dev.live


def test_ctrl_notify_takes_one_lap_of_a_ring_the_driver_keeps_refilling():
    """The control queue too: a driver posting a command for each one answered cannot
    keep the device in one notify."""
    live = bring_up(size=8)
    index = live.dev.num_queues - 1
    ctrlq = live.queues[index]
    engine = live.dev.slot(index).engine
    refills = iter(range(14))
    push = engine.push
    promisc = build_ctrl(0, 0, {"on": 1})  # one readable descriptor, one writable

    def push_and_refill(chain, written):
        push(chain, written)
        ctrlq.used()
        if next(refills, None) is not None:
            ctrlq.add_chain([promisc], [1])

    engine.push = push_and_refill
    for _ in range(4):  # 8 descriptors: 4 commands in flight
        ctrlq.add_chain([promisc], [1])
    rounds = []
    while True:
        events = live.kick(index)
        rounds.append(len(of(events, CtrlHandled)))
        if not of(events, MoreAvailable):
            break
    assert rounds == [8, 8, 2]
    assert live.dev.stats["ctrl_commands"] == 18 and live.dev.live


@pytest.mark.parametrize(("bad", "reason"), [
    ([hdr(flags=2), frame(OTHER)], "DATA_VALID"),
    ([hdr(flags=1), frame(OTHER)], "without VIRTIO_NET_F_CSUM"),
    ([hdr(gso_type=1), frame(OTHER)], "gso_type"),
    ([hdr()[:10]], "less than the 12-byte"),
    ([hdr()], "empty frame"),
])
def test_tx_header_breaking_a_must_drops_the_frame_and_the_queue_keeps_going(bad, reason):
    live = bring_up()
    live.queues[1].add_chain(bad)
    good = frame(OTHER, 80)
    live.queues[1].add_chain([hdr(), good])
    events = live.kick(1)
    (drop,) = of(events, FrameDropped)
    assert reason in drop.reason and drop.clause.startswith("5.1.6.2")
    assert [e.frame for e in of(events, FrameTransmitted)] == [good]
    assert len(live.queues[1].used()) == 2
    assert live.dev.live


def test_tx_num_buffers_is_counted_and_ignored():
    """§5.1.6.2.1 has the driver zero num_buffers, which means nothing on transmit; DPDK's
    virtio PMD leaves there what its mbuf's headroom held: sent, and counted."""
    live = bring_up()
    frames = [frame(OTHER, 80), frame(OTHER, 81)]
    live.queues[1].add_chain([hdr(num_buffers=1), frames[0]])
    live.queues[1].add_chain([hdr(), frames[1]])
    events = live.kick(1)
    assert of(events, FrameDropped) == []
    assert [e.frame for e in of(events, FrameTransmitted)] == frames
    assert live.dev.stats["tx_num_buffers"] == 1 and live.dev.stats["tx_frames"] == 2


def test_tx_frame_above_mtu_is_dropped():
    live = bring_up()
    live.queues[1].add_chain([hdr(), frame(OTHER, 1500 + 14 + 1)])
    (drop,) = of(live.kick(1), FrameDropped)
    assert drop.clause == "5.1.4.2"


# -- receive ------------------------------------------------------------------------------


def test_rx_mergeable_frame_spans_buffers_with_num_buffers():
    live = bring_up()
    rx = live.queues[0]
    heads = [rx.add_chain(writable=[100]) for _ in range(4)]
    f = frame(MAC, 250)
    events = live.dev.receive([f])
    (delivered,) = of(events, FrameDelivered)
    assert delivered.buffers == 3
    used = rx.used()
    assert [u.id for u in used] == heads[:3]
    assert [u.len for u in used] == [100, 100, 62]
    data = b"".join(u.data for u in used)
    assert virtio_net_hdr.parse(data[:12]).num_buffers == 3
    assert data[12:] == f


def test_rx_without_mrg_rxbuf_uses_one_buffer_and_num_buffers_1():
    live = bring_up(drop=(N.VIRTIO_NET_F_MRG_RXBUF,))
    rx = live.queues[0]
    rx.add_chain(writable=[1526])
    f = frame(MAC, 300)
    live.dev.receive([f])
    (used,) = rx.used()
    assert used.len == 312 and used.data[12:] == f
    assert virtio_net_hdr.parse(used.data[:12]).num_buffers == 1


def test_rx_buffer_too_small_without_mrg_rxbuf_drops_and_returns_it():
    live = bring_up(drop=(N.VIRTIO_NET_F_MRG_RXBUF,))
    rx = live.queues[0]
    rx.add_chain(writable=[64])
    (drop,) = of(live.dev.receive([frame(MAC, 300)]), FrameDropped)
    assert drop.clause == "5.1.6.3.1"
    assert [u.len for u in rx.used()] == [0]


def test_rx_waits_for_buffers_then_the_rx_kick_delivers():
    live = bring_up()
    f = frame(MAC, 90)
    events = live.dev.receive([f])
    assert of(events, FrameDeferred) and not of(events, FrameDelivered)
    live.queues[0].add_chain(writable=[256])
    events = live.kick(0)
    assert of(events, FrameDelivered)
    (used,) = live.queues[0].used()
    assert used.data[12:] == f


def test_rx_drops_when_not_live_and_above_mtu():
    live = bring_up()
    live.queues[0].add_chain(writable=[4096])
    (drop,) = of(live.dev.receive([frame(MAC, 1600)]), FrameDropped)
    assert drop.clause == "5.1.4.1"
    live.dev.write_status(0)
    (drop,) = of(live.dev.receive([frame(MAC)]), FrameDropped)
    assert drop.clause == "2.1.2"


# -- interrupts ---------------------------------------------------------------------------


def test_interrupt_suppressed_by_no_interrupt_flag_without_event_idx():
    live = bring_up(drop=(F.VIRTIO_F_EVENT_IDX,))
    tx = live.queues[1]
    tx.driver.disable_interrupts()
    tx.add_chain([hdr(), frame(OTHER)])
    (irq,) = of(live.kick(1), Interrupt)
    assert not irq.sent and "NO_INTERRUPT set" in irq.why
    tx.driver.enable_interrupts()
    tx.add_chain([hdr(), frame(OTHER)])
    (irq,) = of(live.kick(1), Interrupt)
    assert irq.sent and "NO_INTERRUPT clear" in irq.why


def test_interrupt_follows_used_event_with_event_idx():
    live = bring_up()
    tx = live.queues[1]
    tx.add_chain([hdr(), frame(OTHER)])
    (irq,) = of(live.kick(1), Interrupt)
    assert irq.sent and "used_event=0" in irq.why
    # The driver has not reaped: used_event stays 0, so the next one is suppressed.
    tx.add_chain([hdr(), frame(OTHER)])
    (irq,) = of(live.kick(1), Interrupt)
    assert not irq.sent and "used idx 1->2" in irq.why


def test_packed_ring_round_trip():
    live = bring_up("packed")
    assert live.dev.has(F.VIRTIO_F_RING_PACKED)
    f = frame(OTHER, 70)
    live.queues[1].add_chain([hdr(), f])
    assert [e.frame for e in of(live.kick(1), FrameTransmitted)] == [f]
    live.queues[0].add_chain(writable=[512])
    g = frame(MAC, 90)
    assert of(live.dev.receive([g]), FrameDelivered)
    (used,) = live.queues[0].used()
    assert used.data[12:] == g


# -- control queue ------------------------------------------------------------------------


def rx_accepts(live: Live, f: bytes) -> bool:
    live.queues[0].add_chain(writable=[2048])
    events = live.dev.receive([f])
    live.queues[0].used()
    return bool(of(events, FrameDelivered))


def mac_table(uni: list[bytes], multi: list[bytes]) -> bytes:
    return build_ctrl(1, 0, {"unicast": {"macs": uni}, "multicast": {"macs": multi}})


def test_promisc_off_and_mac_table_filter_traffic():
    live = bring_up()
    assert rx_accepts(live, frame(OTHER))  # promiscuous after reset (QEMU)
    events, used = live.ctrl(build_ctrl(0, 0, {"on": 0}))
    assert of(events, CtrlHandled)[0].ack == 0 and used[0].data == b"\x00"
    assert not rx_accepts(live, frame(OTHER))
    assert rx_accepts(live, frame(MAC))
    assert rx_accepts(live, frame(b"\xff" * 6))
    group = bytes.fromhex("01005e000001")
    assert not rx_accepts(live, frame(group))
    _, used = live.ctrl(mac_table([OTHER], [group]))
    assert used[0].data == b"\x00"
    assert rx_accepts(live, frame(OTHER)) and rx_accepts(live, frame(group))
    live.ctrl(mac_table([], []))
    assert not rx_accepts(live, frame(OTHER))
    live.ctrl(build_ctrl(0, 1, {"on": 1}))  # ALLMULTI
    assert rx_accepts(live, frame(bytes.fromhex("01005e7f0001")))


def test_mac_table_with_multicast_in_the_unicast_list_is_err():
    live = bring_up()
    events, used = live.ctrl(mac_table([bytes.fromhex("01005e000001")], []))
    assert used[0].data == b"\x01" and "wrong table" in of(events, CtrlHandled)[0].detail


def test_mac_addr_set_updates_config_before_the_ack():
    live = bring_up()
    live.ctrl(build_ctrl(0, 0, {"on": 0}))
    new = bytes.fromhex("020000000042")
    _, used = live.ctrl(build_ctrl(1, 1, {"mac": new}))
    assert used[0].data == b"\x00"
    assert live.dev.read_config(0, 6) == new
    assert rx_accepts(live, frame(new)) and not rx_accepts(live, frame(MAC))


def test_vlan_table_filters_tagged_frames():
    live = bring_up()
    live.ctrl(build_ctrl(0, 0, {"on": 0}))
    assert not rx_accepts(live, frame(MAC, vlan=5))
    live.ctrl(build_ctrl(2, 0, {"vid": 5}))
    assert rx_accepts(live, frame(MAC, vlan=5))
    live.ctrl(build_ctrl(2, 1, {"vid": 5}))
    assert not rx_accepts(live, frame(MAC, vlan=5))
    _, used = live.ctrl(build_ctrl(2, 0, {"vid": 4096}))
    assert used[0].data == b"\x01"


def test_without_ctrl_vlan_tagged_frames_pass():
    live = bring_up(drop=(N.VIRTIO_NET_F_CTRL_VLAN,))
    live.ctrl(build_ctrl(0, 0, {"on": 0}))
    assert rx_accepts(live, frame(MAC, vlan=7))
    _, used = live.ctrl(build_ctrl(2, 0, {"vid": 7}))
    assert used[0].data == b"\x01"  # §5.1.6.5.3: VLAN commands need CTRL_VLAN


def test_unknown_class_and_malformed_body_ack_err_and_device_keeps_running():
    live = bring_up()
    events, used = live.ctrl(b"\x7f\x00")
    assert used[0].data == b"\x01" and used[0].len == 1
    assert "unknown control class 127" in of(events, CtrlHandled)[0].detail
    _, used = live.ctrl(b"\x00\x00\x01\x00")  # PROMISC with 2 data bytes
    assert used[0].data == b"\x01"
    _, used = live.ctrl(b"\x00\x00\x02")  # PROMISC 2 is neither on nor off
    assert used[0].data == b"\x01"
    assert live.dev.live


@pytest.mark.parametrize(("readable", "writable", "why"), [
    (b"\x00", (1,), "no class/command header"),
    (build_ctrl(0, 0, {"on": 1}), (2,), "the first writable buffer has 2"),
    (build_ctrl(0, 0, {"on": 1}), (), "the first writable buffer has 0"),
])
def test_malformed_ctrl_chain_sets_device_needs_reset(readable, writable, why):
    live = bring_up()
    events, used = live.ctrl(readable, writable)
    (fail,) = of(events, DeviceNeedsReset)
    assert why in fail.reason and fail.clause == "5.1.6.5"
    assert of(events, ConfigInterrupt)
    assert used == []
    assert live.dev.read_status() & S.DEVICE_NEEDS_RESET
    assert isinstance(live.kick(1)[0], KickIgnored)
    # The device still answers the transport, and a reset brings it back.
    live.dev.write_status(0)
    assert live.dev.read_status() == 0


def test_announce_sets_status_and_announce_ack_clears_it():
    live = bring_up()
    (irq,) = live.dev.announce()
    assert isinstance(irq, ConfigInterrupt)
    assert live.dev.read_config(6, 2) == b"\x03\x00"
    _, used = live.ctrl(build_ctrl(3, 0))
    assert used[0].data == b"\x00"
    assert live.dev.read_config(6, 2) == b"\x01\x00"


def test_vq_pairs_set_range_and_effect():
    live = bring_up()
    with pytest.raises(Exception, match="pair 1"):
        live.dev.receive([frame(MAC)], pair=1)
    for bad in (0, 3):
        _, used = live.ctrl(build_ctrl(4, 0, {"virtqueue_pairs": bad}))
        assert used[0].data == b"\x01"
    _, used = live.ctrl(build_ctrl(4, 0, {"virtqueue_pairs": 2}))
    assert used[0].data == b"\x00" and live.dev.net.curr_queue_pairs == 2
    live.queues[2].add_chain(writable=[512])
    assert of(live.dev.receive([frame(MAC)], pair=1), FrameDelivered)


def test_guest_offloads_set_only_negotiated_offloads():
    live = bring_up()
    _, used = live.ctrl(build_ctrl(5, 0, {"offloads": 1 << N.VIRTIO_NET_F_GUEST_CSUM}))
    assert used[0].data == b"\x00"
    _, used = live.ctrl(build_ctrl(5, 0, {"offloads": 1 << N.VIRTIO_NET_F_GUEST_TSO4}))
    assert used[0].data == b"\x01"
    assert live.dev.net.guest_offloads == 1 << N.VIRTIO_NET_F_GUEST_CSUM


def test_command_without_its_feature_is_err():
    live = bring_up(drop=(N.VIRTIO_NET_F_CTRL_RX,))
    events, used = live.ctrl(build_ctrl(0, 0, {"on": 0}))
    assert used[0].data == b"\x01" and "VIRTIO_NET_F_CTRL_RX" in of(events, CtrlHandled)[0].detail


def test_results_go_after_the_ack_and_must_fit():
    live = bring_up()
    live.dev.ctrl.register(3, 0, lambda req: CtrlReply.ok("with result", b"\xaa\xbb\xcc"))
    events, used = live.ctrl(build_ctrl(3, 0), (1, 8))
    assert used[0].len == 4 and used[0].data == b"\x00\xaa\xbb\xcc"
    assert of(events, CtrlHandled)[0].written == 4
    _, used = live.ctrl(build_ctrl(3, 0), (1, 2))
    assert used[0].len == 1 and used[0].data == b"\x01"


# -- reset --------------------------------------------------------------------------------


def test_reset_tears_down_queues_filters_and_config():
    live = bring_up()
    live.ctrl(build_ctrl(0, 0, {"on": 0}))
    live.ctrl(build_ctrl(1, 1, {"mac": OTHER}))
    live.ctrl(build_ctrl(4, 0, {"virtqueue_pairs": 2}))
    live.dev.announce()
    events = live.dev.write_status(0)
    assert events[0].status == 0
    assert live.dev.slot(0) is None and live.dev.num_queues == 2
    assert live.dev.net.rx_filter.promisc and live.dev.net.curr_queue_pairs == 1
    assert live.dev.read_config(0, 8) == MAC + b"\x01\x00"
    assert isinstance(live.dev.notify(1)[0], KickIgnored)
    assert get_profile("default").mac == MAC


def test_link_down_outlives_a_reset_and_announce_does_not():
    """The carrier is the host's (QEMU keeps link_down on the netdev and its
    virtio_net_reset clears only VIRTIO_NET_S_ANNOUNCE): a reset keeps LINK_UP as set."""
    live = bring_up()
    (irq,) = live.dev.set_link(False)
    assert isinstance(irq, ConfigInterrupt) and irq.why == "link down"
    assert live.dev.set_link(False) == []  # no change, no notification
    live.dev.announce()
    assert live.dev.read_config(6, 2) == b"\x02\x00"
    live.dev.write_status(0)
    assert live.dev.read_config(6, 2) == b"\x00\x00"
    assert live.dev.set_link(True) == []  # STATUS not negotiated after the reset
    assert live.dev.read_config(6, 2) == b"\x01\x00"
    live.dev.write_status(0)
    assert live.dev.read_config(6, 2) == b"\x01\x00"


# -- hostile rings ------------------------------------------------------------------------


def test_ring_violation_sets_needs_reset_and_the_device_keeps_answering():
    live = bring_up()
    tx = live.queues[1]
    tx.add_chain([hdr(), frame(OTHER)])
    tx.poke_avail_idx(100)  # more than the queue size ahead (§2.7.6)
    events = live.kick(1)
    (fail,) = of(events, DeviceNeedsReset)
    assert fail.clause == "2.7.6" and of(events, ConfigInterrupt)
    assert live.dev.read_status() & S.DEVICE_NEEDS_RESET
    assert live.dev.read_config(0, 6) == MAC
    assert isinstance(live.kick(0)[0], KickIgnored)


def test_rx_buffer_outside_guest_memory_sets_needs_reset():
    live = bring_up()
    rx = live.queues[0]
    head = rx.add_chain(writable=[256])
    rx.poke_desc(head, addr=0x7FFF_0000)
    events = live.dev.receive([frame(MAC)])
    (fail,) = of(events, DeviceNeedsReset)
    assert "outside every memory region" in fail.reason
    assert not of(events, FrameDelivered)


def test_mergeable_frame_waits_holding_its_first_buffers_until_more_arrive():
    live = bring_up()
    rx = live.queues[0]
    first = rx.add_chain(writable=[100])
    f = frame(MAC, 250)
    events = live.dev.receive([f])
    assert of(events, FrameDeferred) and rx.used() == []
    assert live.dev.slot(0).held  # popped, in flight, not lost
    more = [rx.add_chain(writable=[100]) for _ in range(2)]
    events = live.kick(0)
    assert of(events, FrameDelivered)[0].buffers == 3
    used = rx.used()
    assert [u.id for u in used] == [first, *more]
    assert b"".join(u.data for u in used)[12:] == f


def test_features_cannot_change_after_features_ok():
    live = bring_up()
    (event,) = live.dev.write_features(live.features | 1 << F.VIRTIO_F_RING_PACKED)
    assert not event.taken and "features are written after DRIVER" in event.reason
    assert live.dev.negotiated == live.features


def test_rx_buffer_smaller_than_the_header_is_returned_and_the_next_one_used():
    live = bring_up()
    rx = live.queues[0]
    tiny = rx.add_chain(writable=[8])
    good = rx.add_chain(writable=[256])
    f = frame(MAC, 100)
    events = live.dev.receive([f])
    (drop,) = of(events, FrameDropped)
    assert drop.length == 0 and drop.clause == "5.1.6.3.1"
    assert of(events, FrameDelivered)
    used = {u.id: u for u in rx.used()}
    assert used[tiny].len == 0 and used[good].data[12:] == f
    assert live.dev.stats["rx_dropped"] == 0


@settings(max_examples=200, deadline=None)
@given(cls=st.integers(0, 12), command=st.integers(0, 6), data=st.binary(max_size=40))
def test_any_well_shaped_ctrl_request_is_answered_and_the_device_stays_live(cls, command,
                                                                            data):
    live = bring_up()
    events, used = live.ctrl(bytes([cls, command]) + data)
    (handled,) = of(events, CtrlHandled)
    assert handled.ack in (0, 1) and used[0].data == bytes([handled.ack])
    assert live.dev.live


# -- the control queue kept by a vhost-user front-end (QEMU, DPDK virtio_user) --------------

#: What DPDK virtio_user with queues=2 accepts from the default profile: the control
#: queue family and MQ, without CTRL_VQ (it answers the control queue itself).
FRONTEND_FEATURES = mask_of((F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_MAC, N.VIRTIO_NET_F_STATUS,
                             N.VIRTIO_NET_F_MRG_RXBUF, N.VIRTIO_NET_F_CTRL_RX,
                             N.VIRTIO_NET_F_CTRL_VLAN, N.VIRTIO_NET_F_MQ,
                             N.VIRTIO_NET_F_CTRL_MAC_ADDR))


def frontend_device(features: int = FRONTEND_FEATURES,
                    owner: CtrlOwner = CtrlOwner.FRONTEND) -> tuple[Device, list]:
    dev = Device("default", guest_memory(1 << 21))
    for value in (0, 1, 3):
        dev.write_status(value)
    dev.write_features(features, ctrl_owner=owner)
    return dev, dev.write_status(11)


def test_driver_talking_to_the_device_still_needs_ctrl_vq_for_mq():
    dev, (event,) = frontend_device(owner=CtrlOwner.DEVICE)
    assert not event.accepted and "without VIRTIO_NET_F_CTRL_VQ" in event.reason
    assert dev.ctrl_owner is CtrlOwner.DEVICE
    with pytest.raises(LocalProtocolError, match="only a front-end"):
        dev.set_curr_queue_pairs(2)


def test_frontend_owned_control_queue_takes_mq_and_no_controlq_exists():
    dev, (event,) = frontend_device()
    assert event.accepted, event.reason
    assert dev.ctrl_owner is CtrlOwner.FRONTEND
    assert dev.negotiated == FRONTEND_FEATURES
    assert dev.queue_pairs == 2 and dev.num_queues == 4
    assert [dev.queue_role(i)[0].value for i in range(4)] == \
        ["receiveq", "transmitq", "receiveq", "transmitq"]
    with pytest.raises(RemoteProtocolError, match="queue 4 does not exist"):
        dev.queue_role(4)
    # the front-end's VLAN table never reaches us: no VLAN filtering with CTRL_VLAN
    assert not dev.net.rx_filter.vlan_filtering
    assert dev.net.curr_queue_pairs == 1  # until the front-end enables more
    dev.set_curr_queue_pairs(2)
    assert dev.net.curr_queue_pairs == 2
    for bad in (0, 3):
        with pytest.raises(LocalProtocolError, match=r"outside 1\.\.2"):
            dev.set_curr_queue_pairs(bad)
    dev.write_status(0)  # a reset hands the control queue back to the device
    assert dev.ctrl_owner is CtrlOwner.DEVICE and dev.net.curr_queue_pairs == 1


def test_frontend_owned_pairs_carry_traffic_on_the_second_pair():
    dev, _ = frontend_device()
    mem = dev.memory
    assert mem is not None
    alloc = GuestAllocator(mem)
    queues = {}
    for i in range(4):
        queues[i] = MockSplitQueue(mem, 8, allocator=alloc)
        dev.set_queue(i, 8, *queues[i].addresses)
        dev.enable_queue(i)
    dev.write_status(15)
    dev.set_curr_queue_pairs(2)
    queues[2].add_chain(writable=[512])
    assert of(dev.receive([frame(MAC, vlan=9)], pair=1), FrameDelivered)
    f = frame(OTHER, 80)
    queues[3].add_chain([hdr(), f])
    assert [e.frame for e in of(dev.notify(3), FrameTransmitted)] == [f]


def test_xdp_offload_is_never_served_by_a_frontend_control_queue():
    dev = Device("rfc2019", guest_memory())
    for value in (0, 1, 3):
        dev.write_status(value)
    dev.write_features(FRONTEND_FEATURES | 1 << N.VIRTIO_NET_F_XDP_OFFLOAD,
                       ctrl_owner=CtrlOwner.FRONTEND)
    (event,) = dev.write_status(11)
    assert not event.accepted and "without VIRTIO_NET_F_CTRL_VQ" in event.reason


def test_frontend_owner_with_ctrl_vq_accepted_is_our_mistake():
    dev = Device("default", guest_memory())
    for value in (0, 1, 3):
        dev.write_status(value)
    with pytest.raises(LocalProtocolError, match="two control queues"):
        dev.write_features(FRONTEND_FEATURES | 1 << N.VIRTIO_NET_F_CTRL_VQ,
                           ctrl_owner=CtrlOwner.FRONTEND)



def _peak_bytes(call):
    """What `call()` returns, and the most memory Python held for it meanwhile."""
    import tracemalloc
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_tx_chain_longer_than_any_frame_is_dropped_before_it_is_read():
    """64 descriptors over the same MiB make a 64 MiB chain: it is dropped for its
    length, unread (the device never holds more than a frame of it), and used with 0."""
    live = bring_up(size=128)
    txq = live.queues[1]
    buf = txq.alloc.alloc(1 << 20)
    head = txq.driver.add([(buf, 1 << 20)] * 64, [])
    txq.publish()
    events, peak = _peak_bytes(lambda: live.kick(1))
    assert peak < 1 << 20
    (drop,) = of(events, FrameDropped)
    assert drop.reason == (f"{64 << 20} readable bytes, more than the 12-byte virtio_net_hdr "
                           f"and the largest frame (65550 bytes); not read")
    assert not of(events, FrameTransmitted)
    assert [(u.id, u.len) for u in txq.driver.reap()] == [(head, 0)]
    assert live.dev.stats["tx_dropped"] == 1
    txq.add_chain([hdr() + frame()])  # the queue goes on
    assert len(of(live.kick(1), FrameTransmitted)) == 1


def test_the_largest_tx_frame_is_the_c_datapaths():
    from host.netqueues import MAX_TX_FRAME
    native = pytest.importorskip("vxdp.native")
    assert MAX_TX_FRAME == native.DP_MAX_FRAME


def test_a_control_chain_longer_than_max_request_is_err_unread():
    """The same 64 MiB trick on the control queue: VIRTIO_NET_ERR naming the limit, before
    the body is read; the device stays live and answers the next command."""
    from host.ctrl import MAX_STANDARD_REQUEST
    live = bring_up(size=128)
    ctrlq = live.queues[live.dev.num_queues - 1]
    hdr_gpa = ctrlq.alloc.alloc(2)
    live.dev.memory.write(hdr_gpa, bytes([1, 0]))  # MAC_TABLE_SET
    buf = ctrlq.alloc.alloc(1 << 20)
    ack = ctrlq.alloc.alloc(1)
    ctrlq.driver.add([(hdr_gpa, 2)] + [(buf, 1 << 20)] * 64, [(ack, 1)])
    ctrlq.publish()
    events, peak = _peak_bytes(lambda: live.kick(live.dev.num_queues - 1))
    assert peak < 1 << 20
    (done,) = of(events, CtrlHandled)
    assert done.ack == 1 and done.name == "MAC_TABLE_SET"
    assert f"{2 + (64 << 20)} readable bytes, more than the {MAX_STANDARD_REQUEST}" \
        in done.detail and "max_request" in done.detail
    assert live.dev.memory.read(ack, 1) == b"\x01"
    assert [u.len for u in ctrlq.driver.reap()] == [1]
    assert live.dev.live
    _, used = live.ctrl(build_ctrl(0, 0, {"on": 0}))
    assert used[-1].data == b"\x00"


def test_max_request_admits_the_largest_standard_command_and_can_be_raised():
    """A MAC table of MAC_TABLE_MAX_READ addresses is read (and overflows, as QEMU's
    longer tables do); one address more is refused unread, until max_request is raised."""
    from host.ctrl import MAC_TABLE_MAX_READ, MAX_STANDARD_REQUEST
    live = bring_up(size=16)
    macs = [bytes([2, 0, 0, i >> 8 & 0xFF, i & 0xFF, 1]) for i in range(MAC_TABLE_MAX_READ)]
    table = mac_table(macs, [])
    assert len(table) == MAX_STANDARD_REQUEST
    events, used = live.ctrl(table)
    assert used[0].data == b"\x00" and live.dev.net.rx_filter.uni_overflow
    events, used = live.ctrl(mac_table([*macs, OTHER], []))
    assert used[0].data == b"\x01" and "max_request" in of(events, CtrlHandled)[0].detail
    live.dev.ctrl.max_request = MAX_STANDARD_REQUEST + 6
    _, used = live.ctrl(mac_table([*macs, OTHER], []))
    assert used[0].data == b"\x00"
