"""Our guest against a plain vhost-user-net back-end, without DPDK: `vxdp host` with the
CONFIG (and STATUS) protocol features taken away, as DPDK's vhost library offers them.

The guest runtime then plays the VMM's part (vxdp/runtime/guest.py): it serves config
space itself, hides the control-queue features, keeps the MAC and STATUS bits out of
SET_FEATURES when the back-end did not offer them, never sends GET_CONFIG, and without
STATUS keeps the status byte itself.
"""

from __future__ import annotations

import socket
from dataclasses import replace

import trio

from vxdp.packets import udp_packet
from vxdp.runtime import GuestRuntime, HostRuntime
from vxdp.runtime.guest import FRONTEND_FEATURES, FRONTEND_MAC, VMM_FEATURES
from vxdp.vhost_user import BackendConfig, BackendSession, serve_connection
from vxdp.vhost_user import VhostUserProtocolFeature as PF
from vxdp.vhost_user import events as ev
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES

from .conftest import InjectPort, until

CTRL_VQ = 1 << 17
FRONTEND_OWN = FRONTEND_FEATURES  # MAC and STATUS: the front-end's config space


async def _pair(host: HostRuntime, guest: GuestRuntime, nursery: trio.Nursery,
                seen: list[str]) -> None:
    """Serve the host's port 0 on one end of a socketpair; the guest dials the other."""
    port = host.guests[0]

    def tap(handler):  # type: ignore[no-untyped-def]
        async def traced(session: BackendSession, event: ev.BackendEvent) -> object:
            seen.append(type(event).__name__)
            return await handler(session, event)
        return traced
    port.handlers = {cls: tap(h) for cls, h in port.handlers.items()}
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    async def serve() -> None:
        await port.serve_socket(a)
    nursery.start_soon(serve)
    nursery.start_soon(host.pump_wire)

    async def dial() -> trio.socket.SocketType:
        return b
    await nursery.start(lambda task_status: guest.run(dial=dial, task_status=task_status))


async def test_guest_serves_config_itself_without_config_feature() -> None:
    host = HostRuntime(["unused.sock"], wire=InjectPort())
    port = host.guests[0]
    port.config = replace(port.config, protocol_features=port.config.protocol_features
                          & ~(1 << PF.CONFIG))
    stack = InjectPort()
    guest = GuestRuntime(None, port=stack, retry=0.01)
    seen: list[str] = []
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await _pair(host, guest, nursery, seen)
                await guest.ready.wait()
                d = guest.driver
                assert not guest.backend_config and guest.backend_status
                assert d.mac == FRONTEND_MAC
                assert not d.negotiated & VMM_FEATURES and not d.negotiated & CTRL_VQ
                assert "ConfigQueried" not in seen  # no GET_CONFIG without CONFIG
                assert port.device is not None and port.device.negotiated is not None
                # the device took what the driver negotiated, the front-end's part aside
                assert port.device.negotiated == d.negotiated & guest.backend_offered
                await until(lambda: port.live, "the host device live")
                # and frames flow both ways
                frames = [udp_packet("10.0.0.1", "10.0.0.2", 7, 9, bytes(20 + i),
                                     dst_mac=FRONTEND_MAC.hex(":")) for i in range(20)]
                await guest.transmit(frames)
                wire = host.wire
                assert isinstance(wire, InjectPort)
                await until(lambda: len(wire.sent) == 20, "20 frames on the host's wire")
                assert wire.sent == frames
                wire.inject(frames)
                await until(lambda: len(stack.sent) == 20, "20 frames in the guest")
                assert stack.sent == frames
                nursery.cancel_scope.cancel()
    finally:
        guest.close()
        host.close()
    assert [k for k, _ in guest.reports].count("frontend_state") == 1


async def test_guest_keeps_status_without_status_feature() -> None:
    """A back-end with neither STATUS nor CONFIG (a bare vhost-user back-end that only
    answers GET_VRING_BASE): no SET_STATUS, GET_STATUS or GET_CONFIG is sent, the
    control queue stays hidden, and the driver reaches DRIVER_OK on the status the
    front-end keeps, with both rings started."""
    offered = (1 << 32 | 1 << 15 | CTRL_VQ | 1 << VHOST_USER_F_PROTOCOL_FEATURES)
    # GET_QUEUE_NUM counts pairs, as DPDK's vhost answers; its rings: one pair, no ctrl
    config = BackendConfig(features=offered, protocol_features=1 << PF.MQ | 1 << PF.REPLY_ACK,
                           queue_num=1, vrings=2)
    seen: list[str] = []

    async def trace(session: BackendSession, event: ev.BackendEvent) -> object:
        seen.append(type(event).__name__)
        if isinstance(event, ev.FeaturesSet):
            written.append(event.features)
        return 0 if isinstance(event, ev.VringBaseQueried) else None
    written: list[int] = []
    guest = GuestRuntime(None, retry=0.01)
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                nursery.start_soon(serve_connection, a, config, {ev.BackendEvent: trace})

                async def dial() -> trio.socket.SocketType:
                    return b
                await nursery.start(lambda task_status: guest.run(dial=dial,
                                                                  task_status=task_status))
                await guest.ready.wait()
                assert not guest.backend_status and not guest.backend_config
                assert guest.status_written == 0x0F
                assert guest.driver.negotiated == 1 << 32 | 1 << 15 | FRONTEND_OWN
                # the back-end gets the bits it offered, never the front-end's own
                assert written == [1 << 32 | 1 << 15 | 1 << VHOST_USER_F_PROTOCOL_FEATURES]
                for name in ("StatusSet", "StatusQueried", "ConfigQueried"):
                    assert name not in seen
                assert seen.count("VringKickSet") == 2  # both rings started all the same
                nursery.cancel_scope.cancel()
    finally:
        guest.close()
    kinds = [k for k, _ in guest.reports]
    assert "frontend_state" in kinds and "device_ready" in kinds
