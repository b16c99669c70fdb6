"""A hostile guest against a `HostRuntime` in this process (over socketpairs): rings it
breaks, chains far larger than any frame, control commands larger than any command, a
receive ring it never refills.  Each attack costs the attacker and nobody else."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import trio

from virtio_spec.status import DeviceStatus
from vxdp.packets import udp_packet
from vxdp.runtime import open_port

from .conftest import Rig, until

RigFactory = Callable[..., Rig]

BCAST = udp_packet("10.0.0.9", "10.0.0.255", 7, 8, b"all", dst_mac="ff:ff:ff:ff:ff:ff")


def bump_avail(guest, queue: int, by: int = 1000) -> None:
    """The guest moves queue `queue`'s avail idx far past the ring (virtio 1.3 §2.7.6:
    at most the queue size ahead of the device)."""
    avail = guest.driver.queues[queue].addresses[1]
    mem = guest.memory.guest
    mem.write(avail + 2, ((mem.read_u16(avail + 2) + by) & 0xFFFF).to_bytes(2, "little"))


@pytest.mark.parametrize("queue", [0, 1])
async def test_a_ring_broken_under_either_datapath_sets_device_needs_reset(
        rig_factory: RigFactory, queue: int, datapath: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The C port breaks the ring as the model does, and like the model the device then
    sets DEVICE_NEEDS_RESET, tells the driver (a config change) and logs the rule; the
    other guest is served as before."""
    caplog.set_level(logging.WARNING, logger="vxdp.runtime.guestport")
    with trio.fail_after(20):
        rig = rig_factory(sockets=2)
        bad = await rig.add_guest(port=open_port("null"))
        good = await rig.add_guest(port=open_port("null"))
        port = rig.host.guests[0]
        bump_avail(bad, queue)
        if queue == 0:
            assert await rig.host.wait_for_room(5) == 5
            rig.host.from_wire([BCAST] * 5)
        else:
            bad.kicks[1].signal()
        await until(lambda: port.device is not None and bool(
            port.device.read_status() & DeviceStatus.DEVICE_NEEDS_RESET),
            "DEVICE_NEEDS_RESET on the attacker's device")
        await until(lambda: bad.config_changes > 0, "a config change to the driver")
        before = good.stack["packets"]
        rig.host.from_wire([BCAST] * 3)
        await until(lambda: good.stack["packets"] == before + 3,
                    "the good guest keeps receiving")
    assert f"guest 0: q{queue} DEVICE_NEEDS_RESET: " in caplog.text
    assert "avail idx moved from 0 to" in caplog.text
    assert "(virtio 1.3 \u00a72.7.6)" in caplog.text
