"""What real vhost-user front-ends send, replayed against `vxdp host` in-process.

DPDK virtio_user 22.11 (seen on the wire by tests/vxdp/interop/test_testpmd_frontend.py):
SET_OWNER before GET_FEATURES, SET_VRING_CALL before SET_MEM_TABLE, SET_FEATURES with
no SET_STATUS before it, then its first SET_STATUS with ACKNOWLEDGE|DRIVER|FEATURES_OK
in one write.  QEMU (hw/virtio/vhost-user.c, vhost_user_add_status: GET_STATUS, then
SET_STATUS of what it read OR the new bits) sends FEATURES_OK alone after SET_FEATURES,
then adds ACKNOWLEDGE|DRIVER|DRIVER_OK.  The device model takes one §3.1.1 step a write; the
host walks the steps a write stands for (`status_steps`).
"""

from __future__ import annotations

import socket
from collections import Counter

import pytest
import trio

from host import CtrlOwner
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of
from virtio_spec.status import DeviceStatus as S
from vxdp.packets import udp_packet
from vxdp.runtime import HostRuntime
from vxdp.runtime.guestport import flow_pair
from vxdp.runtime.host import status_steps
from vxdp.vhost_user import FrontendConnection, FrontendMemory
from vxdp.vhost_user.messages import VHOST_USER_F_PROTOCOL_FEATURES
from vxdp.vhost_user.messages import VhostUserProtocolFeature as PF

A, D, F, OK, FAIL = 1, 2, 8, 4, 128
VERSION_1 = 1 << 32
MRG_RXBUF = 1 << 15
INDIRECT = 1 << 28
PROTO = 1 << VHOST_USER_F_PROTOCOL_FEATURES
#: DPDK virtio_user 22.11's SET_PROTOCOL_FEATURES against vxdp host: MQ|REPLY_ACK|STATUS.
DPDK_PROTOCOL = 1 << PF.MQ | 1 << PF.REPLY_ACK | 1 << PF.STATUS


@pytest.mark.parametrize(("current", "written", "steps"), [
    (0, A | D | F, [A, A | D, A | D | F]),            # DPDK's first SET_STATUS
    (0, F, [A, A | D, A | D | F]),                    # QEMU's FEATURES_OK alone
    (A | D | F, A | D | F | OK, [A | D | F | OK]),    # one step: as written
    (0, A, [A]),
    (A | D, A | D, [A | D]),                          # nothing new: the device decides
    (A | D | F | OK, 0, [0]),                         # reset
    (A | D, A | D | FAIL, [A | D | FAIL]),            # FAILED goes as written
    (A | D | F, A | D, [A | D]),                      # clears a bit: the device refuses
    (0, 0x10 | A, [0x10 | A]),                        # undefined bit: the device refuses
])
def test_status_steps(current: int, written: int, steps: list[int]) -> None:
    assert status_steps(current, written) == steps




async def _with_frontend(host: HostRuntime, script) -> None:  # type: ignore[no-untyped-def]
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.guests[0].serve_socket, a)
        async with FrontendConnection(b) as fe:
            await script(fe)
    # serve_socket closed `a` when the front-end left


async def _dpdk_opening(fe: FrontendConnection, features: int) -> int:
    """DPDK virtio_user 22.11's order up to its FEATURES_OK check; returns GET_STATUS."""
    core = fe.core
    await fe.send(core.set_owner())
    offered = await fe.value(core.get_features())
    assert offered & PROTO
    proto = await fe.value(core.get_protocol_features())
    await fe.send(core.set_protocol_features(proto & DPDK_PROTOCOL))
    await fe.send(core.set_vring_call(0, None))
    await fe.send(core.set_vring_call(1, None))
    await fe.send(core.set_features(features | PROTO))
    await fe.send(core.set_status(A | D | F))
    return int(await fe.value(core.get_status()))


async def test_dpdk_virtio_user_opening_reaches_features_ok() -> None:
    host = HostRuntime(["unused.sock"], datapath="python")
    seen: list[int] = []

    async def script(fe: FrontendConnection) -> None:
        seen.append(await _dpdk_opening(fe, VERSION_1 | MRG_RXBUF | INDIRECT))
        await fe.send(fe.core.set_status(A | D | F | OK))
        seen.append(int(await fe.value(fe.core.get_status())))
        seen.append(host.guests[0].device.negotiated)  # type: ignore[union-attr]

    with trio.fail_after(10):
        await _with_frontend(host, script)
    host.close()
    assert seen == [A | D | F, A | D | F | OK, VERSION_1 | MRG_RXBUF | INDIRECT]


async def test_features_before_status_are_still_judged() -> None:
    """Features held until the walk reaches FEATURES_OK are checked then: without
    VERSION_1 the device refuses FEATURES_OK (§2.2.2) and the front-end reads it."""
    host = HostRuntime(["unused.sock"], datapath="python")
    seen: list[int] = []

    async def script(fe: FrontendConnection) -> None:
        seen.append(await _dpdk_opening(fe, MRG_RXBUF))

    with trio.fail_after(10):
        await _with_frontend(host, script)
    host.close()
    assert seen == [A | D]


async def test_qemu_status_order() -> None:
    """QEMU: SET_FEATURES, FEATURES_OK alone, later ACKNOWLEDGE|DRIVER|DRIVER_OK added."""
    host = HostRuntime(["unused.sock"], datapath="python")
    seen: list[int] = []

    async def script(fe: FrontendConnection) -> None:
        core = fe.core
        await fe.negotiate(VERSION_1 | MRG_RXBUF, 1 << PF.STATUS | 1 << PF.REPLY_ACK)
        await fe.send(core.set_status(int(await fe.value(core.get_status())) | F))
        seen.append(int(await fe.value(core.get_status())))
        await fe.send(core.set_status(int(await fe.value(core.get_status())) | A | D | OK))
        seen.append(int(await fe.value(core.get_status())))

    with trio.fail_after(10):
        await _with_frontend(host, script)
    host.close()
    assert seen == [A | D | F, A | D | F | OK]


async def test_status_walk_before_features_keeps_the_old_order() -> None:
    """Our own guest's order (ACKNOWLEDGE, DRIVER, SET_FEATURES, FEATURES_OK) is
    unchanged: features written at DRIVER are taken at once."""
    host = HostRuntime(["unused.sock"], datapath="python")
    seen: list[int] = []

    async def script(fe: FrontendConnection) -> None:
        core = fe.core
        await fe.negotiate(0, 1 << PF.STATUS | 1 << PF.REPLY_ACK)
        await fe.send(core.set_status(A))
        await fe.send(core.set_status(A | D))
        await fe.send(core.set_features(VERSION_1 | PROTO))
        assert host.guests[0].features_pending is None
        await fe.send(core.set_status(A | D | F))
        seen.append(int(await fe.value(core.get_status())))

    with trio.fail_after(10):
        await _with_frontend(host, script)
    host.close()
    assert seen == [A | D | F]
    assert S(seen[0]) & S.FEATURES_OK


#: DPDK virtio_user 22.11 with queues=2 against the default profile: MQ and the control
#: queue family without CTRL_VQ (its own control queue answers the driver).
DPDK_MQ = VERSION_1 | MRG_RXBUF | mask_of((N.VIRTIO_NET_F_MQ, N.VIRTIO_NET_F_CTRL_RX,
                                           N.VIRTIO_NET_F_CTRL_VLAN,
                                           N.VIRTIO_NET_F_CTRL_MAC_ADDR))


async def test_dpdk_two_pairs_follow_set_vring_enable() -> None:
    """A front-end that keeps the control queue: FEATURES_OK taken without CTRL_VQ, no
    controlq at the device, GET_QUEUE_NUM answers pairs, and curr_queue_pairs follows the
    pairs whose two rings are enabled; frames from the wire spread over them by flow."""
    host = HostRuntime(["unused.sock"], datapath="python")
    port = host.guests[0]
    memory = FrontendMemory.create([(0x4000_0000, 1 << 20)])
    seen: dict[str, object] = {}
    frames = [udp_packet("10.0.0.1", "10.0.0.2", 1000 + i, 2000, b"x") for i in range(40)]
    split = Counter(flow_pair(f, 2) for f in frames)
    assert split[0] and split[1]

    def backlog(index: int) -> int:
        slot = port.device.slot(index)  # type: ignore[union-attr]
        return len(slot.backlog) if slot is not None else -1

    async def script(fe: FrontendConnection) -> None:
        core = fe.core
        seen["status"] = await _dpdk_opening(fe, DPDK_MQ)
        seen["queue_num"] = await fe.value(core.get_queue_num())
        await fe.set_mem_table(memory)
        for i in range(4):  # DPDK enables pair 1 first, pair 2 on its VQ_PAIRS_SET
            areas = [memory.uva(0x4000_0000 + 0x3000 * i + off)
                     for off in (0, 0x1000, 0x2000)]
            for out in core.vring_setup(i, 16, *areas, kick=None, call=None, enable=i < 2):
                await fe.send(out)
        await fe.send(core.set_status(A | D | F | OK))
        device = port.device
        assert device is not None and device.live
        seen["owner"], seen["queues"] = device.ctrl_owner, device.num_queues
        seen["pairs"] = [device.net.curr_queue_pairs]
        await fe.send(core.set_vring_enable(2, True))
        seen["pairs"].append(device.net.curr_queue_pairs)  # type: ignore[attr-defined]
        await fe.send(core.set_vring_enable(3, True))
        seen["pairs"].append(device.net.curr_queue_pairs)  # type: ignore[attr-defined]
        port.deliver(frames)  # no buffers posted: each pair's frames wait in its backlog
        seen["backlogs"] = [backlog(0), backlog(2)]
        await fe.send(core.set_vring_enable(3, False))
        seen["pairs"].append(device.net.curr_queue_pairs)  # type: ignore[attr-defined]
        del device

    try:
        with trio.fail_after(10):
            await _with_frontend(host, script)
    finally:
        host.close()
        memory.close()
    assert seen == {"status": A | D | F, "queue_num": 2, "owner": CtrlOwner.FRONTEND,
                    "queues": 4, "pairs": [1, 1, 2, 1],
                    "backlogs": [split[0], split[1]]}


async def test_our_guest_order_keeps_the_control_queue_at_the_device() -> None:
    """With CTRL_VQ accepted (our guest) the device answers the control queue: 5 queues
    for 2 pairs, one pair in use until the driver's VQ_PAIRS_SET."""
    host = HostRuntime(["unused.sock"], datapath="python")
    seen: list[object] = []

    async def script(fe: FrontendConnection) -> None:
        await _dpdk_opening(fe, DPDK_MQ | 1 << N.VIRTIO_NET_F_CTRL_VQ)
        device = host.guests[0].device
        assert device is not None
        seen.extend([device.ctrl_owner, device.num_queues, device.net.curr_queue_pairs])
        del device

    with trio.fail_after(10):
        await _with_frontend(host, script)
    host.close()
    assert seen == [CtrlOwner.DEVICE, 5, 1]
