"""The host's switch in C against its Python switch, end to end: the same traffic (from
the wire through the pump and `from_wire`, and from a guest) through two hosts, one
switching in C (`HostRuntime.c_switch`, the default), one per frame in Python in front
of the same C ports; the same frames reach the same guests and the wire, in the same
order, and every counter agrees.  Guests the C side cannot serve (link down, no device)
are the edge's, in both."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
import trio

from host import get_profile
from tests.host.test_switch import BY_BYTE
from virtio_spec.ctrl import VirtioNetCtrlClass, VirtioNetCtrlMac, VirtioNetCtrlMq
from virtio_spec.status import DeviceStatus
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.frames import PackedFrames
from vxdp.packets import udp_packet
from vxdp.runtime import open_port
from vxdp.runtime.guestport import FIRST_GUEST_IFINDEX, flow_pair
from vxdp.runtime.host import guest_mac
from vxdp.runtime.wire import PackedRun, WirePort, WireSpec

from .conftest import Rig, until

RigFactory = Callable[..., Rig]


class GatedWire(WirePort):
    """Frames at hand once `on` is set (for the C pump; `receive` gives one at a time);
    what is sent is kept."""

    def __init__(self, frames: Sequence[bytes]) -> None:
        super().__init__(WireSpec("null"))
        self.frames = PackedFrames.pack(frames)
        self.at = 0
        self.on = trio.Event()
        self.sent: list[bytes] = []

    def packed_run(self) -> PackedRun | None:
        left = len(self.frames) - self.at
        return PackedRun(self.frames, self.at, False, left) if self.on.is_set() and left \
            else None

    def _advance(self, run: PackedRun, frames: int, at: int) -> None:
        self.at = at

    async def _next(self, limit: int) -> Sequence[bytes] | None:
        await self.on.wait()
        if self.at >= len(self.frames):
            return None
        burst = self.frames[self.at:self.at + 1]  # one a call: the rest is the C pump's
        self.at += len(burst)
        return burst

    def _emit(self, frames: Sequence[bytes]) -> None:
        self.sent += list(frames)


def _frame(dst: bytes, action: int, k: int) -> bytes:
    f = udp_packet("10.0.0.9", "10.0.0.1", 7, 8, bytes([k]) * (20 + k % 40),
                   src_mac="02:00:00:00:00:09", dst_mac=dst.hex(":"))
    return f[:14] + bytes([action]) + f[15:]


async def _settle(rig: Rig) -> None:
    """Until nothing moves any more (the guests' stacks included)."""
    last = ""
    while True:
        now = json.dumps([rig.host.stats(), [g.stack for g in rig.guests]], default=str)
        if now == last:
            return
        last = now
        await trio.sleep(0.1)


async def _run(rig_factory: RigFactory, c_switch: bool) -> dict[str, object]:
    prof = get_profile("default")
    macs = [guest_mac(prof, n) for n in range(4)] + [b"\xff" * 6, bytes.fromhex("02eeeeeeee01")]
    wire_frames = [_frame(macs[k % 6], k % 4, k) for k in range(90)]
    wire = GatedWire(wire_frames)
    rig = rig_factory(sockets=4, wire=wire)
    rig.host.c_switch = c_switch
    guests = [await rig.add_guest(port=open_port("null")) for _ in range(3)]  # 3: no device
    rig.host.attach(Program("by_byte", "xdp", encode(assemble(BY_BYTE))))
    rig.host.guests[2].set_link(False)
    await until(lambda: all(g.cpath is not None and g.cpath.active
                            for g in rig.host.guests[:3]), "three C ports")
    wire.on.set()
    await until(lambda: wire.at == len(wire_frames), "the wire's frames taken")
    await _settle(rig)
    # the pump's rounds differ in size (a round's frames go guest by guest, in both):
    # what went out is compared as a set, the rest in order
    pumped = sorted(wire.sent)
    wire.sent.clear()
    rig.host.from_wire([_frame(macs[k % 6], (k + 1) % 4, k) for k in range(30)])
    await _settle(rig)
    await guests[0].transmit([_frame(macs[k % 6], k % 4, k) for k in range(30)])
    await _settle(rig)
    host = rig.host.stats()
    out: dict[str, object] = {"pumped_out": pumped, "wire": wire.sent, "stacks": [g.stack for g in guests],
                              "xdp": host["xdp"]["actions"], "pumped": host["switch"]}
    for n, g in enumerate(host["guests"]):
        c = dict(g["datapath"].get("c_counters", {}))
        for noisy in ("irq_sent", "irq_suppressed"):
            c.pop(noisy, None)
        out[f"guest{n}"] = {"drops": g["drops"], "queues": g["queues"], "c": c}
    return out


@pytest.mark.parametrize("datapath", ["c"])
async def test_the_c_switch_does_what_the_python_switch_does(rig_factory: RigFactory) -> None:
    with trio.fail_after(60):
        c = await _run(rig_factory, True)
        py = await _run(rig_factory, False)
    c_pumped, py_pumped = c.pop("pumped"), py.pop("pumped")
    assert c == py
    assert c_pumped["c_frames"] > 0 and py_pumped["c_frames"] == 0  # type: ignore[index]
    g = c["guest0"]
    assert g["c"]["xdp_tx"] and g["c"]["guest_packets"] and g["c"]["xdp_drop"]  # type: ignore[index]
    assert c["guest2"]["drops"]["link_down"] > 0  # type: ignore[index]
    assert c["guest3"]["drops"]["no_device"] > 0  # type: ignore[index]



@pytest.mark.parametrize("datapath", ["c"])
async def test_a_ring_broken_under_the_c_pump_needs_a_reset(rig_factory: RigFactory) -> None:
    """The C pump meets a receive ring its driver broke: that guest's device sets
    DEVICE_NEEDS_RESET (from the switch's events), its frames count as dropped, the
    other guest keeps receiving."""
    prof = get_profile("default")
    frames = [_frame(guest_mac(prof, k % 2), 2, k) for k in range(40)]
    wire = GatedWire(frames)
    with trio.fail_after(30):
        rig = rig_factory(sockets=2, wire=wire)
        bad = await rig.add_guest(port=open_port("null"))
        good = await rig.add_guest(port=open_port("null"))
        await until(lambda: all(g.cpath is not None and g.cpath.active
                                for g in rig.host.guests), "two C ports")
        avail = bad.driver.queues[0].addresses[1]
        bad.memory.guest.write(avail + 2, (bad.memory.guest.read_u16(avail + 2) + 1000)
                               .to_bytes(2, "little"))
        wire.on.set()
        await until(lambda: good.stack["packets"] == 20, "the good guest's 20 frames")
        port = rig.host.guests[0]
        await until(lambda: port.device is not None and bool(
            port.device.read_status() & DeviceStatus.DEVICE_NEEDS_RESET),
            "DEVICE_NEEDS_RESET on the bad guest's device")
    # (at most the first frame: a buffer the port saw announced before the write)
    assert bad.stack["packets"] <= 1
    assert rig.host.stats()["switch"]["c_frames"] > 0
    c = rig.host.stats()["guests"][0]["datapath"]["c_counters"]
    assert c["drop_ring_broken"] > 0


@pytest.mark.parametrize("c_switch", [True, False], ids=["c-switch", "python-switch"])
@pytest.mark.parametrize("datapath", ["c"])
async def test_the_switch_follows_a_mac_the_driver_set(rig_factory: RigFactory,
                                                        c_switch: bool) -> None:
    """VIRTIO_NET_CTRL_MAC_ADDR_SET: the host switches the guest's frames by the address
    its driver set (the device's config mac), not the configured one; a device reset
    brings the configured one back (QEMU's virtio_net_reset)."""
    prof = get_profile("default")
    configured, new = guest_mac(prof, 0), bytes.fromhex("02aabbccdd01")
    with trio.fail_after(30):
        rig = rig_factory(sockets=2)
        rig.host.c_switch = c_switch
        first = await rig.add_guest(port=open_port("null"))
        other = await rig.add_guest(port=open_port("null"))
        port = rig.host.guests[0]
        await until(lambda: all(g.cpath is not None and g.cpath.active and g.rx_posted
                                for g in rig.host.guests), "two C ports")
        cmd = first.driver.ctrl_command(int(VirtioNetCtrlClass.VIRTIO_NET_CTRL_MAC),
                                        int(VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET),
                                        {"mac": new})
        await first.pump()
        await until(lambda: cmd.done, "MAC_ADDR_SET answered")
        assert cmd.ok and first.driver.mac == new
        assert port.mac == new and rig.host.stats()["guests"][0]["mac"] == new.hex(":")
        rig.host.from_wire([_frame(new, 2, k) for k in range(10)])  # action byte 2: PASS
        await until(lambda: first.stack["packets"] == 10, "the frames to the new MAC")
        await _settle(rig)
        assert other.stack["packets"] == 0  # to a known unicast MAC: not flooded
        seen = rig.host.stats()["guests"][1]
        assert not any(seen["drops"].values()) and seen["datapath"]["c_counters"]["rx_packets"] == 0
        # from the other guest: switched to the first by its new MAC, not to the wire
        await other.transmit([_frame(new, 2, 100 + k) for k in range(5)])
        await until(lambda: first.stack["packets"] == 15, "the other guest's frames")
    port._handle(port._need_device().write_status(0))  # a reset, as the driver's
    port._sync_mac()
    assert port.mac == configured and rig.host._macs[configured] is port


@pytest.mark.parametrize("link_up", [True, False], ids=["link-up", "link-down"])
@pytest.mark.parametrize("datapath", ["c"])
async def test_a_redirect_from_the_python_side_reaches_a_c_port(rig_factory: RigFactory,
                                                                link_up: bool) -> None:
    """Guest 0 runs 2 queue pairs (pair 2 is the device model's, so its frames meet the
    host's program in Python); the program redirects every frame to guest 1, whose
    receive ring is the C port's: the frames from both sides arrive there, none dropped.
    With guest 1's link down, frames redirected to it from either side are dropped, as
    QEMU drops a netdev's frames while its link is down."""
    prof = get_profile("default")
    to_g0 = [udp_packet("10.0.0.9", "10.0.0.1", 1000 + k, 8, bytes([k]) * 30,
                        src_mac="02:00:00:00:00:09", dst_mac=guest_mac(prof, 0).hex(":"))
             for k in range(40)]
    via_model = sum(flow_pair(f, 2) != 0 for f in to_g0)
    assert 0 < via_model < len(to_g0)  # both paths taken
    redirect = Program("to_guest1", "xdp", encode(assemble(
        f"mov %r1, {FIRST_GUEST_IFINDEX + 1}\nmov %r2, 0\ncall 23\nexit")))
    with trio.fail_after(30):
        rig = rig_factory(sockets=2)
        g0 = await rig.add_guest(port=open_port("null"))
        g1 = await rig.add_guest(port=open_port("null"))
        await until(lambda: all(g.cpath is not None and g.cpath.active and g.rx_posted
                                for g in rig.host.guests), "two C ports")
        cmd = g0.driver.ctrl_command(int(VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ),
                                     int(VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET),
                                     {"virtqueue_pairs": 2})
        await g0.pump()
        await until(lambda: cmd.done, "VQ_PAIRS_SET answered")
        assert cmd.ok
        rig.host.attach(redirect)
        rig.host.guests[1].set_link(link_up)
        rig.host.from_wire(to_g0)
        if link_up:
            await until(lambda: g1.stack["packets"] == len(to_g0), "every frame on guest 1")
        await _settle(rig)
    stats = rig.host.stats()["guests"]
    c = stats[1]["datapath"]["c_counters"]
    assert g0.stack["packets"] == 0
    assert c["redirect_in"] == len(to_g0) - (0 if link_up else via_model)
    if link_up:
        assert not any(stats[1]["drops"].values())
    else:
        assert g1.stack["packets"] == 0
        assert stats[1]["drops"]["link_down"] == via_model  # from the Python side
        assert c["drop_link_down"] == len(to_g0) - via_model  # from guest 0's C port
