"""Host and guest runtimes in one process over socketpairs: real vhost-user messages,
memfd memory, eventfd kicks and calls; traffic both ways, switching, hostile peers,
the host going away and coming back."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from host import CtrlOwner
from virtio_spec.features import VirtioNetFeature
from virtio_spec.structs import VirtioNetStatus
from vxdp.errors import VhostUserRemoteError
from vxdp.packets import TrafficGenerator, udp_packet
from vxdp.pcap import read_pcap
from vxdp.runtime import HostRuntime, open_port
from vxdp.runtime.host import PROTOCOL_FEATURES, guest_mac
from vxdp.vhost_user import FrontendConnection, FrontendMemory
from vxdp.vhost_user.messages import VhostUserRequest

from .conftest import Rig, until

RigFactory = Callable[..., Rig]


async def test_wire_to_guest(rig_factory: RigFactory, tmp_path: Path, datapath: str) -> None:
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port("gen:count=100,seed=4,size=200"))
        guest = await rig.add_guest(port=open_port(f"pcap:out={tmp_path / 'rx.pcap'}"))
        await rig.host.wire_done.wait()
        await until(lambda: guest.stack["packets"] == 100, "100 frames in the guest")
    sent = TrafficGenerator(4, sizes=(200,)).packets(100)
    assert [p.data for p in read_pcap(tmp_path / "rx.pcap")] == sent
    stats = rig.host.stats()
    g = stats["guests"][0]
    assert g["queues"]["receiveq1"] == {"packets": 100, "bytes": 20000}
    assert g["live"] and g["sessions"] == 1
    assert g["datapath"]["kind"] == datapath  # the C port took the rings, or the model ran
    assert stats["wire"]["rx_packets"] == 100
    assert guest.stats()["rx"]["receiveq1"] == {"packets": 100, "bytes": 20000}


async def test_a_replay_larger_than_the_ring_loses_nothing(rig_factory: RigFactory,
                                                         datapath: str) -> None:
    """The pump reads only what the guest has buffers for and waits for its refills (a
    kick once the ring ran dry), so 2000 frames through a 256-entry ring all arrive."""
    with trio.fail_after(30):
        rig = rig_factory(wire=open_port("gen:count=2000,seed=5,size=64"))
        guest = await rig.add_guest(port=open_port("null"))
        await rig.host.wire_done.wait()
        await until(lambda: guest.stack["packets"] == 2000, "2000 frames in the guest")
    g = rig.host.stats()["guests"][0]
    assert g["queues"]["receiveq1"]["packets"] == 2000
    assert g["drops"]["rx"] == 0
    if datapath == "c":
        c = g["datapath"]["c_counters"]
        assert c["drop_no_buffer"] == 0
        # the guest refilled unannounced while the port had buffers: a kick when the
        # ring ran dry at most, not one a refill
        assert 0 < g["kicks"]["receiveq1"] <= 2000 / 256 + 2


async def test_guest_to_wire(rig_factory: RigFactory, tmp_path: Path) -> None:
    out = tmp_path / "wire.pcap"
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port(f"pcap:out={out}"))
        guest = await rig.add_guest(port=open_port("gen:count=300,seed=8,size=90"))
        await until(lambda: rig.host.wire.tx_packets == 300, "300 frames on the wire")
    sent = TrafficGenerator(8, sizes=(90,)).packets(300)
    assert [p.data for p in read_pcap(out)] == sent
    q = rig.host.stats()["guests"][0]["queues"]["transmitq1"]
    assert q == {"packets": 300, "bytes": 300 * 90}
    assert guest.stats()["tx"]["transmitq1"]["packets"] == 300
    # GET_QUEUE_NUM counts pairs (QEMU net, DPDK): 2 pairs and the control queue's ring
    assert guest.queue_pairs == rig.host.profile.max_queue_pairs == 2
    assert sorted(guest.driver.queues) == [0, 1, 2, 3, 4]
    assert guest.driver.has(VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ)  # our guest keeps it
    assert rig.host.guests[0].device.ctrl_owner is CtrlOwner.DEVICE  # type: ignore[union-attr]


async def test_switching_between_two_guests(rig_factory: RigFactory) -> None:
    with trio.fail_after(20):
        rig = rig_factory(sockets=2)
        g0 = await rig.add_guest(port=open_port("null"))
        g1 = await rig.add_guest(port=open_port("null"))
        prof = rig.host.profile
        to_g1 = udp_packet("10.0.0.9", "10.0.0.2", 7, 8, b"one", src_mac="02:00:00:00:00:09",
                           dst_mac=guest_mac(prof, 1).hex(":"))
        bcast = udp_packet("10.0.0.9", "10.0.0.255", 7, 8, b"all",
                           src_mac="02:00:00:00:00:09", dst_mac="ff:ff:ff:ff:ff:ff")
        rig.host.from_wire([to_g1, bcast, to_g1])
        await until(lambda: g1.stack["packets"] == 3 and g0.stack["packets"] == 1,
                    "unicast to guest 1 only, the broadcast to both")
        # guest 0 sends to guest 1's MAC: switched locally, not to the wire
        await g0.transmit([to_g1])
        await until(lambda: g1.stack["packets"] == 4, "guest 0 -> guest 1")
    assert rig.host.wire.tx_packets == 0
    assert g0.driver.mac != g1.driver.mac


async def test_hostile_front_end_leaves_other_guest_running(rig_factory: RigFactory) -> None:
    with trio.fail_after(20):
        rig = rig_factory(sockets=2, wire=open_port("null"))
        good = await rig.add_guest(port=open_port("null"))
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b:
            result: list[str] = []

            async def serve() -> None:
                result.append(await rig.host.guests[1].serve_socket(a))
            rig.nursery.start_soon(serve)
            # SET_VRING_NUM before SET_OWNER, then a header announcing a huge payload
            hdr = struct.pack("<III", int(VhostUserRequest.SET_VRING_NUM), 1, 8)
            await b.send(hdr + struct.pack("<II", 0, 256))
            await until(lambda: bool(result), "the hostile session to end")
        assert "VHOST_USER_SET_VRING_NUM" in result[0] and "SET_OWNER" in result[0]
        assert rig.host.guests[1].last_disconnect == result[0]
        frame = udp_packet("10.0.0.9", "10.0.0.1", 7, 8, b"still here")
        rig.host.from_wire([frame])
        await until(lambda: good.stack["packets"] == 1, "the good guest to keep receiving")


async def test_host_gone_then_back(rig_factory: RigFactory, tmp_path: Path) -> None:
    out = tmp_path / "wire.pcap"
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port(f"pcap:out={out}"))
        guest = await rig.add_guest(port=open_port("null"))
        first = TrafficGenerator(1, sizes=(80,)).packets(40)
        await guest.transmit(first)
        await until(lambda: rig.host.wire.tx_packets == 40, "first frames on the wire")
        rig.kill_host_side(0)
        await until(lambda: guest.gone_count == 1, "the guest to notice")
        assert any(kind == "device_gone" for kind, _ in guest.reports)
        assert guest.driver.negotiated and guest.driver.queues  # state kept
        # queued while the device is gone: they wait in the ring
        meanwhile = TrafficGenerator(2, sizes=(80,)).packets(5)
        await guest.transmit(meanwhile)
        assert rig.host.wire.tx_packets == 40
        rig.connect(0)
        await until(lambda: any(k == "reconnected" for k, _ in guest.reports), "reconnect")
        await until(lambda: rig.host.wire.tx_packets == 45, "queued frames sent on resume")
        later = TrafficGenerator(3, sizes=(80,)).packets(10)
        await guest.transmit(later)
        await until(lambda: rig.host.wire.tx_packets == 55, "frames after the reconnect")
        inbound = udp_packet("10.0.0.9", "10.0.0.1", 7, 8, b"welcome back")
        rig.host.from_wire([inbound])
        await until(lambda: guest.stack["packets"] == 1, "rx after the reconnect")
    assert [p.data for p in read_pcap(out)] == first + meanwhile + later
    assert "rings resumed" in dict(guest.reports)["reconnected"]
    assert rig.host.guests[0].sessions == 2


async def test_device_refusals_are_nacked_and_the_session_goes_on(
        rig_factory: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    rig = rig_factory()
    port = rig.host.guests[0]
    memory = FrontendMemory.create([(0x4000_0000, 1 << 20)])
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.fail_after(10):
            rig.nursery.start_soon(port.serve_socket, a)
            async with FrontendConnection(b) as conn:
                await conn.negotiate(port.config.features, PROTOCOL_FEATURES)
                await conn.set_mem_table(memory)
                core = conn.core
                # a ring enabled before the driver set FEATURES_OK: the device cannot place it
                with pytest.raises(VhostUserRemoteError, match="refused VHOST_USER_SET_VRING_ENABLE"):
                    await conn.start_vring(memory, 0, 16, (0x4000_0000, 0x4000_1000,
                                                           0x4000_2000), kick=None, call=None)
                # virtio 1.3 §5.1.4.2: the driver MUST NOT write config
                with pytest.raises(VhostUserRemoteError, match="refused VHOST_USER_SET_CONFIG"):
                    await conn.send(core.set_config(0, b"\x02" * 6))
                assert await conn.value(core.get_status()) == 0  # still serving
                assert port.session is not None and port.device is not None
            await until(lambda: port.session is None, "the session to end cleanly")
    finally:
        memory.close()
    assert port.last_disconnect == "closed"
    assert "device refused vring 0 enabled" in caplog.text
    assert "cannot be unmapped" not in caplog.text  # the device let go of the memory


async def test_a_host_with_fewer_features_gets_a_fresh_initialization(
        rig_factory: RigFactory, datapath: str) -> None:
    with trio.fail_after(20):
        rig = rig_factory()
        guest = await rig.add_guest(port=open_port("null"))
        rig.kill_host_side(0)
        await until(lambda: guest.gone_count == 1, "the guest to notice")
        smaller = HostRuntime(["minimal.sock"], profile="minimal", datapath=datapath)
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        rig.nursery.start_soon(smaller.guests[0].serve_socket, a)
        rig._dialers[0].send_nowait(b)
        await until(lambda: [k for k, _ in guest.reports].count("device_ready") == 2,
                    "a second DRIVER_OK")
        assert "no longer offers the negotiated features" in dict(guest.reports)["reconnected"]
        smaller.from_wire([udp_packet("10.0.0.9", "10.0.0.1", 7, 8, b"fresh")])
        await until(lambda: guest.stack["packets"] == 1, "rx on the re-initialized device")
    assert not guest.driver.has(VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ)  # what minimal offers
    smaller.close()


async def test_a_guest_that_breaks_its_ring_costs_only_itself(rig_factory: RigFactory) -> None:
    with trio.fail_after(20):
        rig = rig_factory(sockets=2)
        bad = await rig.add_guest(port=open_port("null"))
        good = await rig.add_guest(port=open_port("null"))
        rxq = bad.driver.queues[0]
        avail = rxq.addresses[1]
        # the guest's avail idx runs far past the ring (virtio 1.3 §2.7.6: at most size)
        bad.memory.guest.write(avail + 2, (bad.memory.guest.read_u16(avail + 2) + 1000)
                               .to_bytes(2, "little"))
        bcast = udp_packet("10.0.0.9", "10.0.0.255", 7, 8, b"all",
                           dst_mac="ff:ff:ff:ff:ff:ff")
        # as the wire pump does: ask for room (a fresh read of each avail idx; the C
        # port otherwise keeps using buffers it saw announced before the write), then send
        assert await rig.host.wait_for_room(5) == 5
        rig.host.from_wire([bcast] * 5)
        await until(lambda: good.stack["packets"] == 5, "the good guest keeps receiving")
    stats = rig.host.stats()["guests"]
    assert bad.stack["packets"] == 0
    assert stats[0]["drops"]["rx"] >= 5 or not stats[0]["live"]
    assert stats[1]["queues"]["receiveq1"]["packets"] == 5


async def test_a_guest_that_leaves_after_wire_bursts_lets_its_memory_go(
        rig_factory: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    """The wire pump's view of a guest's receive ring (the C port's, with the C
    datapath) goes with the session: its memory unmaps, and a new session takes bursts."""
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port("gen:count=100,seed=4,size=200"))
        guest = await rig.add_guest(port=open_port("null"))
        await rig.host.wire_done.wait()
        await until(lambda: guest.stack["packets"] == 100, "100 frames in the guest")
        rig.kill_host_side(0)
        await until(lambda: guest.gone_count == 1, "the guest to notice")
        await until(lambda: rig.host.guests[0].session is None, "the host to let go")
        assert "cannot be unmapped" not in caplog.text
        rig.connect(0)
        await until(lambda: any(k == "reconnected" for k, _ in guest.reports), "reconnect")
        await until(lambda: rig.host.guests[0].live, "the device live again")
        await until(lambda: rig.host.guests[0].rx_posted, "receive buffers posted again")
        rig.host.from_wire(TrafficGenerator(5, sizes=(200,)).packets(40))
        await until(lambda: guest.stack["packets"] == 140, "frames after the reconnect")
    assert "cannot be unmapped" not in caplog.text


async def test_host_config_changes_reach_the_guest(rig_factory: RigFactory,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Link down, then an announce request: each goes to the guest as a CONFIG_CHANGE_MSG
    on the back-end request channel; the guest re-reads status and config and answers
    the announce with VIRTIO_NET_CTRL_ANNOUNCE_ACK (virtio 1.3 §5.1.6.5.4), which clears
    VIRTIO_NET_S_ANNOUNCE in the device."""
    caplog.set_level("INFO", logger="vxdp.runtime.guestport")
    with trio.fail_after(20):
        rig = rig_factory()
        guest = await rig.add_guest(port=open_port("null"))
        port = rig.host.guests[0]
        device = port.device
        assert device is not None and port.session is not None
        assert guest.driver.has(VirtioNetFeature.VIRTIO_NET_F_GUEST_ANNOUNCE)
        assert port.session.backend.can_signal_config  # BACKEND_REQ, CONFIG negotiated
        port._handle(device.set_link(False))  # as the host's own carrier change does
        await until(lambda: ("config_changed", "config changed: link down") in guest.reports,
                    "the guest to see the link go down")
        assert device.config.status & int(VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE) == 0
        port._handle(device.announce())
        await until(lambda: ("config_changed", "config changed: link down, announce requested")
                    in guest.reports, "the guest to see the announce request")
        await until(lambda: not device.config.status
                    & int(VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE),
                    "the guest's ANNOUNCE_ACK to clear status.ANNOUNCE")
        port._handle(device.set_link(True))
        await until(lambda: guest.reports[-1] == ("config_changed", "config changed: link up"),
                    "the link back up")
    assert guest.config_changes == 3 and port.session.config_changes_sent == 3
    assert caplog.text.count("config change signalled") == 3
    assert "not signalled" not in caplog.text


async def test_an_invalid_action_counts_once_as_aborted(rig_factory: RigFactory,
                                                         datapath: str) -> None:
    """A program returning an action that does not exist ends aborted (the kernel's
    bpf_warn_invalid_xdp_action, then trace_xdp_exception): the stats count each frame
    once under aborted, on either datapath."""
    from vxdp.bpf.asm import assemble
    from vxdp.bpf.isa import encode
    from vxdp.bpf.program import Program
    with trio.fail_after(20):
        rig = rig_factory()
        await rig.add_guest(port=open_port("null"))
        rig.host.attach(Program("bad_action", "xdp", encode(assemble("mov %r0, 99\nexit"))))
        rig.host.from_wire([udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"x")] * 7)
        actions = rig.host.actions()
    assert actions == {"aborted": 7, "drop": 0, "pass": 0, "tx": 0, "redirect": 0}
