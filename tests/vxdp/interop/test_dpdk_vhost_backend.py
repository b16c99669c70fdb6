"""Our guest (`vxdp.runtime.GuestRuntime`: guest.Driver over memfd memory, a vhost-user
front-end) against DPDK testpmd's net_vhost port, a back-end nobody here wrote.

DPDK's vhost library offers neither CONFIG nor a control queue it serves: the guest
runtime plays the VMM's part (config space and MAC of its own, control-queue features
hidden).  Checked: what DPDK logged as negotiated, frames the guest sends counted by
testpmd and echoed back in io mode frame for frame, testpmd's txonly frames all reaching
the guest's stack, on split and packed rings (DPDK offers VIRTIO_F_RING_PACKED).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from guest import SUPPORTED_FEATURES
from vxdp import dpdk
from vxdp.packets import udp_packet
from vxdp.runtime import GuestRuntime
from vxdp.runtime.guest import FRONTEND_MAC
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES
from vxdp.vhost_user.messages import VhostUserProtocolFeature as PF

from .conftest import InjectPort, until

RING_PACKED = 1 << 34
VERSION_1 = 1 << 32
CTRL_VQ = 1 << 17
PROTO = 1 << VHOST_USER_F_PROTOCOL_FEATURES


@pytest.mark.parametrize("layout", ["split", "packed"])
async def test_guest_against_testpmd_net_vhost(testpmd: str, sock_dir: Path,
                                               layout: str) -> None:
    sock = str(sock_dir / "v.sock")
    features = SUPPORTED_FEATURES if layout == "packed" else SUPPORTED_FEATURES & ~RING_PACKED
    stack = InjectPort()
    guest = GuestRuntime(sock, port=stack, features=features, retry=0.02)
    try:
        with trio.fail_after(45):
            async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                         binary=testpmd) as pmd:
                async with trio.open_nursery() as nursery:
                    await nursery.start(guest.run)
                    await _check(guest, stack, pmd, layout)
                    nursery.cancel_scope.cancel()
    finally:
        guest.close()


async def _check(guest: GuestRuntime, stack: InjectPort, pmd: dpdk.Testpmd,
                 layout: str) -> None:
    with trio.fail_after(10):
        await guest.ready.wait()
    await pmd.wait_for("virtio is now ready for processing")

    # -- negotiation, as DPDK's vhost library logged it ----------------------------------
    d = guest.driver
    assert d.negotiated & VERSION_1 and not d.negotiated & CTRL_VQ
    assert bool(d.negotiated & RING_PACKED) == (layout == "packed")
    assert d.mac == FRONTEND_MAC  # config space is the front-end's: DPDK has no CONFIG
    assert not guest.backend_config and guest.backend_status
    assert [k for k, _ in guest.reports].count("frontend_state") == 1
    log = dpdk.vhost_log(pmd.output)
    # the features DPDK took are the driver's, less the front-end's own MAC and STATUS
    assert log["features"] == (d.negotiated & guest.backend_offered) | PROTO
    assert log["protocol_features"] is not None
    assert log["protocol_features"] >> PF.STATUS & 1  # type: ignore[operator]
    messages = log["messages"]
    assert isinstance(messages, list)
    assert "VHOST_USER_GET_CONFIG" not in messages  # DPDK drops the connection on it
    for needed in ("VHOST_USER_SET_MEM_TABLE", "VHOST_USER_SET_VRING_KICK",
                   "VHOST_USER_SET_VRING_ENABLE", "VHOST_USER_SET_STATUS"):
        assert needed in messages

    # -- io mode: testpmd sends back what it receives; the guest gets its frames back ---
    await pmd.forward("io")
    frames = [udp_packet("10.0.0.9", "10.0.0.8", 5000 + i, 53, bytes(30 + i % 11),
                         src_mac=FRONTEND_MAC.hex(":"), dst_mac="02:00:00:00:00:01")
              for i in range(200)]
    await guest.transmit(frames)
    await until(lambda: len(stack.sent) >= len(frames), "200 frames echoed by testpmd")
    await pmd.halt()
    echoed = await pmd.port_stats(0)
    assert stack.sent == frames, (f"{len(stack.sent)} frames back; testpmd {echoed}; "
                                  f"guest {guest.stats()}; reports {guest.reports}")
    assert echoed.rx_packets == echoed.tx_packets == len(frames)
    assert echoed.rx_bytes == sum(map(len, frames))

    # -- txonly: every frame testpmd counts reaches the guest's stack -------------------
    await pmd.command("clear port stats 0")
    before = guest.stack["packets"]
    await pmd.forward("txonly")
    await until(lambda: guest.stack["packets"] - before >= 2000, "2000 txonly frames")
    await pmd.halt()
    sent = await pmd.port_stats(0)
    assert sent.tx_packets >= 2000 and sent.tx_errors == 0
    await until(lambda: guest.stack["packets"] - before == sent.tx_packets,
                f"all {sent.tx_packets} frames testpmd counted in the guest "
                f"(guest has {guest.stack['packets'] - before})")
    assert all(len(f) == 64 for f in stack.sent[len(frames):])
    assert guest.device_errors == 0
