"""DPDK testpmd's virtio_user port as the front-end of `vxdp host`.

testpmd dials the host's vhost-user socket with its own vhost-user code (DPDK
drivers/net/virtio/virtio_user), negotiates, shares its EAL memory as memfds, and drives
the rings with its own virtio PMD.  Traffic testpmd sends (txonly) must come out of the
host's wire port frame for frame; frames the host puts on the wire for the guest must be
counted by testpmd's rx.  Both datapaths: the C port (default) and the device model's
Python ring engines (`--datapath python`), which testpmd txonly keeps full.  With queues=2
both pairs carry traffic each way.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
import trio

from host import CtrlOwner
from virtio_spec.features import VirtioNetFeature
from vxdp import dpdk
from vxdp.packets import udp_packet
from vxdp.runtime import HostRuntime
from vxdp.runtime.guestport import flow_pair
from vxdp.runtime.host import PROTOCOL_FEATURES
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES
from vxdp.vhost_user.messages import VhostUserProtocolFeature as PF

from .conftest import InjectPort, until

VERSION_1 = 1 << 32
ETH_P_IP = 0x0800
IPPROTO_UDP = 17


async def test_testpmd_virtio_user_against_vxdp_host(testpmd: str, sock_dir: Path) -> None:
    sock = str(sock_dir / "h.sock")
    wire = InjectPort()
    host = HostRuntime([sock], wire=wire)  # the C datapath, the default
    try:
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                             binary=testpmd) as pmd:
                    await _check(host, wire, pmd)
                nursery.cancel_scope.cancel()
    finally:
        host.close()


async def _check(host: HostRuntime, wire: InjectPort, pmd: dpdk.Testpmd) -> None:
    g = host.guests[0]
    await until(lambda: g.live, "testpmd to set DRIVER_OK")

    # -- negotiation: what DPDK's vhost-user front-end took ------------------------------
    assert g.session is not None and g.device is not None
    backend = g.session.backend
    assert backend.protocol_features >> PF.STATUS & 1, "DPDK sets the status over STATUS"
    assert backend.protocol_features & ~PROTOCOL_FEATURES == 0
    assert backend.features is not None and backend.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1
    negotiated = g.device.negotiated
    assert negotiated == backend.features & ~(1 << VHOST_USER_F_PROTOCOL_FEATURES)
    assert negotiated & VERSION_1
    assert g.device.read_status() == 0x0F  # ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK
    assert {0, 1} <= g.running

    # -- testpmd transmits: every frame it counts reaches the host's wire ----------------
    await pmd.forward("txonly")
    await until(lambda: wire.tx_packets >= 2000, "2000 txonly frames on the host's wire")
    await pmd.halt()
    sent = await pmd.port_stats(0)
    assert sent.tx_packets >= 2000 and sent.tx_errors == 0
    await until(lambda: wire.tx_packets == sent.tx_packets,
                f"all {sent.tx_packets} frames testpmd counted on the wire "
                f"(wire has {wire.tx_packets})")
    assert wire.tx_bytes == sent.tx_bytes
    mac = pmd.port_mac(0)
    for frame in (wire.sent[0], wire.sent[-1]):
        # testpmd's txonly packet: 64 bytes, its port MAC as source, IPv4 UDP
        assert len(frame) == 64
        assert frame[6:12] == mac
        assert struct.unpack_from("!H", frame, 12)[0] == ETH_P_IP
        assert frame[23] == IPPROTO_UDP
    stats = g.stats()
    assert stats["queues"]["transmitq1"]["packets"] == sent.tx_packets  # type: ignore[index]

    # -- the host transmits into the guest: testpmd's rx counts every frame -------------
    await pmd.command("clear port stats 0")
    await pmd.forward("rxonly")
    frames = [udp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 2000, bytes(40 + i % 7),
                         dst_mac=mac.hex(":")) for i in range(300)]
    wire.inject(frames)
    got: list[dpdk.PortStats] = []

    async def counted() -> bool:
        got.append(await pmd.port_stats(0))
        return got[-1].rx_packets >= len(frames)
    with trio.move_on_after(10):
        while not await counted():
            await trio.sleep(0.05)
    await pmd.halt()
    final = await pmd.port_stats(0)
    assert final.rx_packets == len(frames), final
    assert final.rx_bytes == sum(map(len, frames))
    assert final.rx_errors == 0 and final.rx_missed == 0
    assert g.stats()["drops"]["no_device"] == 0  # type: ignore[index]


async def test_testpmd_txonly_into_the_python_datapath(testpmd: str, sock_dir: Path) -> None:
    """testpmd txonly for a few seconds into the device model's split rings (Python):
    the device never goes to DEVICE_NEEDS_RESET, testpmd keeps running, and every frame
    testpmd counts is counted on transmitq1 and reaches the wire.  (It used to fail
    within a second: used.idx stored with struct.pack_into read as 0 by DPDK, whose tx
    cleanup then broke its free list and ran avail.idx past the queue size.)"""
    sock = str(sock_dir / "py.sock")
    wire = InjectPort()
    host = HostRuntime([sock], wire=wire, datapath="python")
    try:
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                             binary=testpmd) as pmd:
                    g = host.guests[0]
                    await until(lambda: g.live, "testpmd to set DRIVER_OK")
                    await pmd.forward("txonly")
                    await trio.sleep(3)
                    assert g.device is not None and g.session is not None, \
                        f"the session ended: {g.last_disconnect}"
                    assert g.device.read_status() == 0x0F, g.device.status_names
                    assert pmd.process.poll() is None, \
                        f"testpmd ended ({pmd.process.returncode}) while sending"
                    await pmd.halt()
                    sent = await pmd.port_stats(0)
                    assert sent.tx_packets >= 2000 and sent.tx_errors == 0, sent
                    await until(lambda: wire.tx_packets == sent.tx_packets,
                                f"all {sent.tx_packets} frames testpmd counted on the wire "
                                f"(wire has {wire.tx_packets})")
                    assert g.stats()["datapath"] == {"kind": "python"}
                    assert g.stats()["queues"]["transmitq1"]["packets"] == \
                        sent.tx_packets  # type: ignore[index]
                    assert g.device.stats["tx_frames"] == sent.tx_packets
                nursery.cancel_scope.cancel()
    finally:
        host.close()


@pytest.mark.parametrize("datapath", ["c", "python"])
async def test_testpmd_forwarding_what_it_received_reaches_the_wire(
        testpmd: str, sock_dir: Path, datapath: str) -> None:
    """testpmd io-forwarding (port 0 back to itself) the frames the host passed into it:
    DPDK's virtio PMD pushes the transmit header into the mbuf's headroom without zeroing
    num_buffers (virtio 1.3 §5.1.6.2.1), so each frame goes out with the num_buffers of its
    receive.  The field means nothing on transmit: every frame reaches the wire, and the
    device counts them (they were all dropped as bad headers before)."""
    sock = str(sock_dir / "fwd.sock")
    wire = InjectPort()
    host = HostRuntime([sock], wire=wire, datapath=datapath)
    try:
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                             args=["--port-topology=loop"],
                                             binary=testpmd) as pmd:
                    g = host.guests[0]
                    await until(lambda: g.live, "testpmd to set DRIVER_OK")
                    mac = pmd.port_mac(0)
                    frames = [udp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 2000,
                                         bytes(40 + i % 7), dst_mac=mac.hex(":"))
                              for i in range(200)]
                    await pmd.forward("io")
                    wire.inject(frames)
                    await until(lambda: wire.tx_packets == len(frames),
                                f"the {len(frames)} frames testpmd forwarded on the wire "
                                f"(wire has {wire.tx_packets})")
                    await pmd.halt()
                    assert sorted(wire.sent) == sorted(frames)
                    if datapath == "c":
                        c = g.stats()["datapath"]["c_counters"]  # type: ignore[index]
                        assert c["tx_num_buffers"] == len(frames)
                        assert c["drop_tx_header"] == 0
                    else:
                        assert g.device is not None
                        assert g.device.stats["tx_num_buffers"] == len(frames)
                        assert g.device.stats["tx_dropped"] == 0
                nursery.cancel_scope.cancel()
    finally:
        host.close()


async def test_testpmd_two_queue_pairs(testpmd: str, sock_dir: Path) -> None:
    """testpmd's virtio_user with queues=2 keeps the control queue in the front-end (as
    QEMU does): it negotiates MQ without CTRL_VQ, and enables the second pair by
    SET_VRING_ENABLE.  The host takes that, and traffic goes over both pairs each way."""
    sock = str(sock_dir / "mq.sock")
    wire = InjectPort()
    host = HostRuntime([sock], wire=wire)  # the C datapath: pair 1 in C, pair 2 on the model
    try:
        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=2"],
                                             args=["--rxq=2", "--txq=2"],
                                             binary=testpmd) as pmd:
                    await _check_two_pairs(host, wire, pmd)
                nursery.cancel_scope.cancel()
    finally:
        host.close()


async def _check_two_pairs(host: HostRuntime, wire: InjectPort, pmd: dpdk.Testpmd) -> None:
    g = host.guests[0]
    await until(lambda: g.live, "testpmd to set DRIVER_OK")
    # -- negotiation: the control queue stays in DPDK, the pairs follow SET_VRING_ENABLE
    # (no local for the device: a failure's traceback would keep its ring views alive)
    assert g.device is not None
    negotiated = g.device.negotiated
    assert negotiated >> VirtioNetFeature.VIRTIO_NET_F_MQ & 1
    assert not negotiated >> VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ & 1
    assert g.device.ctrl_owner is CtrlOwner.FRONTEND
    assert g.device.num_queues == 4  # two pairs, no controlq at the device
    await until(lambda: g.device is not None and g.device.net.curr_queue_pairs == 2,
                "both pairs enabled")
    assert {0, 1, 2, 3} <= g.running
    assert g.stats()["datapath"]["kind"] == "c"  # type: ignore[index]  # pair 1 in C

    # -- testpmd transmits on both queues: the host drains both -------------------------
    await pmd.forward("txonly")
    await until(lambda: wire.tx_packets >= 2000, "2000 txonly frames on the host's wire")
    await pmd.halt()
    sent = await pmd.port_stats(0)
    await until(lambda: wire.tx_packets == sent.tx_packets,
                f"all {sent.tx_packets} frames testpmd counted on the wire "
                f"(wire has {wire.tx_packets})")
    queues = g.stats()["queues"]
    assert isinstance(queues, dict)
    tx1, tx2 = queues["transmitq1"]["packets"], queues["transmitq2"]["packets"]
    assert tx1 > 0 and tx2 > 0, queues
    assert tx1 + tx2 == sent.tx_packets

    # -- the host's wire into the guest: flows spread over both receive queues ----------
    await pmd.command("clear port stats 0")
    await pmd.forward("rxonly")
    mac = pmd.port_mac(0)
    frames = [udp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 2000, bytes(40),
                         dst_mac=mac.hex(":")) for i in range(300)]
    expected = Counter(flow_pair(f, 2) for f in frames)
    assert expected[0] and expected[1]
    wire.inject(frames)
    got: list[dpdk.PortStats] = []

    async def counted() -> bool:
        got.append(await pmd.port_stats(0))
        return got[-1].rx_packets >= len(frames)
    with trio.move_on_after(10):
        while not await counted():
            await trio.sleep(0.05)
    await pmd.halt()
    final = await pmd.port_stats(0)
    assert final.rx_packets == len(frames), final
    assert final.rx_errors == 0 and final.rx_missed == 0
    queues = g.stats()["queues"]
    assert isinstance(queues, dict)
    assert queues["receiveq1"]["packets"] == expected[0], queues
    assert queues["receiveq2"]["packets"] == expected[1], queues
    assert g.stats()["drops"] == {"rx": 0, "tx": 0, "no_device": 0, "link_down": 0,
                                  "suspended": 0}
