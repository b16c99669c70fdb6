"""The XDP hook, the host's attach point (attach/detach at run time) and driver mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.errors import InvalidProgram
from vxdp.packets import tcp_packet, udp_packet
from vxdp.runtime import XdpHook, open_port

from .conftest import Rig, core_unavailable, mix_program, until

pytestmark = pytest.mark.skipif(core_unavailable() is not None,
                                reason=str(core_unavailable()))
RigFactory = Callable[..., Rig]


def _asm(text: str, name: str = "t") -> Program:
    return Program(name, "xdp", encode(assemble(text)))


def _traffic() -> list[bytes]:
    """3 UDP even ports (PASS), 2 odd (DROP), 2 TCP (TX), 1 ICMP-less ARP-ish (PASS)."""
    frames = [udp_packet("10.0.0.9", "10.0.0.1", 7, port, b"u" * 30) for port in (2, 4, 6)]
    frames += [udp_packet("10.0.0.9", "10.0.0.1", 7, port, b"u" * 30) for port in (3, 5)]
    frames += [tcp_packet("10.0.0.9", "10.0.0.1", 7, 80, b"t" * 30, flags="S")] * 2
    frames.append(bytes.fromhex("ffffffffffff020000000009" "0806") + bytes(46))
    return frames


def test_hook_sorts_a_burst() -> None:
    hook = XdpHook()
    frames = _traffic()
    assert hook.run(frames).passed == frames  # nothing attached: everything passes
    assert hook.actions == dict.fromkeys(hook.actions, 0)
    hook.attach(mix_program())
    v = hook.run(frames)
    assert v.passed == [frames[i] for i in (0, 1, 2, 7)]
    assert v.dropped == 2 and len(v.tx) == 2
    assert v.tx[0][:6] == frames[5][6:12] and v.tx[0][6:12] == frames[5][:6]  # MACs swapped
    assert hook.actions == {"aborted": 0, "drop": 2, "pass": 4, "tx": 2, "redirect": 0}
    assert hook.detach() and not hook.detach()


def test_faults_and_bad_return_values_count_as_aborted() -> None:
    hook = XdpHook()
    # reads 4 bytes at data + 100: fine for long frames, a fault for short ones
    hook.attach(_asm("ldxw %r2, [%r1+0]\nldxw %r0, [%r2+100]\nmov %r0, 2\nexit"))
    long, short = bytes(200), bytes(60)
    v = hook.run([long, short, long])
    assert len(v.passed) == 2 and v.dropped == 1
    assert hook.actions["aborted"] == 1 and hook.faults == 1
    hook.attach(_asm("mov %r0, 77\nexit"))
    assert hook.run([long]).dropped == 1 and hook.actions["aborted"] == 2


def test_a_refused_program_keeps_the_old_one() -> None:
    hook = XdpHook()
    hook.attach(_asm("mov %r0, 1\nexit", "dropper"))
    with pytest.raises(InvalidProgram):
        hook.attach(_asm("ja +0", "broken"))
    assert hook.program is not None and hook.program.name == "dropper"
    assert hook.run([bytes(60)]).dropped == 1


async def test_host_attach_and_detach_at_run_time(rig_factory: RigFactory) -> None:
    with trio.fail_after(20):
        rig = rig_factory()
        guest = await rig.add_guest(port=open_port("null"))
        frames = _traffic()
        rig.host.from_wire(frames)
        await until(lambda: guest.stack["packets"] == 8, "all 8 without a program")
        rig.host.attach(mix_program())
        rig.host.from_wire(frames)
        await until(lambda: guest.stack["packets"] == 12, "4 more passed by the program")
        assert rig.host.wire.tx_packets == 2  # XDP_TX: back out of the wire
        assert rig.host.detach()
        rig.host.from_wire(frames)
        await until(lambda: guest.stack["packets"] == 20, "8 more after detach")
    xdp = rig.host.stats()["xdp"]
    assert xdp["actions"] == {"aborted": 0, "drop": 2, "pass": 4, "tx": 2, "redirect": 0}
    assert rig.host.stats()["guests"][0]["queues"]["receiveq1"]["packets"] == 20


async def test_driver_mode_xdp_in_the_guest(rig_factory: RigFactory) -> None:
    hook = XdpHook()
    hook.attach(mix_program())
    with trio.fail_after(20):
        rig = rig_factory(wire=open_port("null"))
        guest = await rig.add_guest(port=open_port("null"), xdp=hook)
        rig.host.from_wire(_traffic())
        await until(lambda: guest.stack["packets"] == 4, "4 frames pass the guest's program")
        # XDP_TX in the guest: out through the device, onto the host's wire
        await until(lambda: rig.host.wire.tx_packets == 2, "2 frames sent back by the guest")
    assert guest.stats()["xdp"]["actions"] == {"aborted": 0, "drop": 2, "pass": 4, "tx": 2,
                                               "redirect": 0}
    assert guest.stats()["rx"]["receiveq1"]["packets"] == 8
    assert rig.host.stats()["guests"][0]["queues"]["transmitq1"]["packets"] == 2


async def test_redirect_to_another_guest_and_to_the_wire(rig_factory: RigFactory) -> None:
    with trio.fail_after(20):
        rig = rig_factory(sockets=2, wire=open_port("null"))
        g0 = await rig.add_guest(port=open_port("null"))
        g1 = await rig.add_guest(port=open_port("null"))
        to_g0 = udp_packet("10.0.0.9", "10.0.0.1", 7, 8, b"for guest 0",
                           dst_mac=g0.driver.mac.hex(":"))
        # bpf_redirect(ifindex, 0): guest n is ifindex 2 + n, the wire is 1
        rig.host.attach(_asm("mov %r1, 3\nmov %r2, 0\ncall 23\nexit", "to_guest1"))
        rig.host.from_wire([to_g0, to_g0])
        await until(lambda: g1.stack["packets"] == 2, "guest 1 gets guest 0's frames")
        rig.host.attach(_asm("mov %r1, 1\nmov %r2, 0\ncall 23\nexit", "to_wire"))
        rig.host.from_wire([to_g0])
        await until(lambda: rig.host.wire.tx_packets == 1, "the frame back on the wire")
    assert g0.stack["packets"] == 0
    assert rig.host.stats()["xdp"]["actions"]["redirect"] == 3
