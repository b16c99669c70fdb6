"""The offload end to end in one process: a GuestRuntime hands its program and maps to a
HostRuntime's device over the control virtqueue (real vhost-user over socketpairs), the
host runs it on the way into the guest (the C port, or the Python device model), and the
mode policy (`offload`, `auto`) reacts to what the device says."""

from __future__ import annotations

import errno as E
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from guest.offload import OffloadClient, OffloadError
from tests.host.test_offload import counting
from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import encode
from vxdp.bpf.program import Program
from vxdp.packets import TrafficGenerator
from vxdp.runtime import open_port
from vxdp.runtime.compare import demo_program, reference_actions
from vxdp.runtime.guest import GuestRuntime

from .conftest import Rig, until

RigFactory = Callable[..., Rig]

async def offloaded_guest(rig_factory: RigFactory) -> tuple[Rig, GuestRuntime, OffloadClient]:
    """A host (profile "host") and one guest that offloaded `counting()` to it; the
    guest's offload client, whose program is on the device."""
    rig = rig_factory(profile="host", wire=open_port("null"))
    guest = await rig.add_guest(port=open_port("null"), offload=counting(), mode="offload")
    await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
    client = guest.offload.client
    assert client is not None and client.offloaded is not None
    return rig, guest, client


async def send_from_wire(rig: Rig, frames: list[bytes]) -> None:
    at = 0
    while at < len(frames):
        room = await rig.host.wait_for_room(min(32, len(frames) - at))
        rig.host.from_wire(frames[at:at + room])
        at += room
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("via", ["controlq", "agent"])
async def test_offloaded_program_runs_on_the_host(rig_factory: RigFactory, datapath: str,
                                                  via: str, tmp_path: Path) -> None:
    """Over the control queue, or over the agents (the same operations, another
    transport: tests/vxdp/runtime/test_agent.py)."""
    program = demo_program()
    frames = TrafficGenerator(11, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.2},
                              vlan_share=0.0).packets(300)
    want = reference_actions(program, frames)
    agents = [tmp_path / "g0.agent"] if via == "agent" else []
    with trio.fail_after(30):
        rig = rig_factory(profile="host", wire=open_port("null"), agents=agents)
        await rig.nursery.start(rig.host.serve_agents)
        guest = await rig.add_guest(port=open_port("null"), offload=program, mode="offload",
                                    agent=agents[0] if agents else None)
        await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
        await send_from_wire(rig, frames)
        port = rig.host.guests[0]
        await until(lambda: sum(port.offload_actions().values()) == len(frames),
                    "every frame through the offloaded program")
        await until(lambda: guest.stack["packets"] == want["pass"], "PASS frames in the guest")
    assert port.offload_actions() == want
    assert rig.host.wire.tx_packets == want["tx"]
    assert guest.actions() == dict.fromkeys(want, 0)  # nothing ran in the guest's driver
    host = rig.host.stats()["guests"][0]
    info = host["offload"]
    assert info["program"]["tag"] == program.tag and info["profile"] == "host"
    assert guest.stats()["offload"]["state"] == "offloaded"
    assert guest.stats()["offload"]["via"] == via
    assert any("offloaded with 1 map(s)" in text for kind, text in guest.reports
               if kind == "offload")
    if via == "agent":  # map and program over the agent; not one over the control queue
        assert host["agent"]["hellos"] == 1 and host["agent"]["commands"] == 2
        assert host["device"]["ctrl_commands"] < 2
    else:
        assert host["agent"] is None and host["device"]["ctrl_commands"] >= 2


@pytest.mark.parametrize("via", ["controlq", "agent"])
async def test_guest_reads_the_maps_the_host_program_writes(rig_factory: RigFactory, via: str,
                                                           tmp_path: Path) -> None:
    """Over the control queue, or over the agents (the same operations, another
    transport: tests/vxdp/runtime/test_agent.py)."""
    agents = [tmp_path / "g0.agent"] if via == "agent" else []
    with trio.fail_after(30):
        rig = rig_factory(profile="host", wire=open_port("null"), agents=agents)
        await rig.nursery.start(rig.host.serve_agents)
        guest = await rig.add_guest(port=open_port("null"), offload=counting(),
                                    mode="offload", agent=agents[0] if agents else None)
        await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
        await send_from_wire(rig, TrafficGenerator(3).packets(40))
        await until(lambda: guest.stack["packets"] == 40, "40 frames passed")
        client = guest.offload.client
        assert client is not None and client.offloaded is not None
        (handle,) = client.offloaded.handles
        value = await guest.offload.run(client.lookup(handle, bytes(4)))
        assert value is not None and struct.unpack("<Q", value)[0] == 40
        await guest.offload.run(client.update(handle, bytes(4), struct.pack("<Q", 1000)))
        await send_from_wire(rig, TrafficGenerator(4).packets(2))
        await until(lambda: guest.stack["packets"] == 42, "2 more frames")
        value = await guest.offload.run(client.lookup(handle, bytes(4)))
    assert value is not None and struct.unpack("<Q", value)[0] == 1002


async def test_auto_falls_back_to_driver_mode_with_the_reason(rig_factory: RigFactory
                                                              ) -> None:
    """A device without VIRTIO_NET_F_XDP_OFFLOAD: the program runs in the driver."""
    program = demo_program()
    frames = TrafficGenerator(5, mix={"udp4": 0.6, "tcp4": 0.4}, vlan_share=0.0).packets(64)
    want = reference_actions(program, frames)
    with trio.fail_after(30):
        rig = rig_factory(profile="default", wire=open_port("null"))
        guest = await rig.add_guest(port=open_port("null"), offload=program, mode="auto")
        await until(lambda: guest.offload.state == "driver", "the fallback to driver mode")
        await send_from_wire(rig, frames)
        await until(lambda: sum(guest.actions().values()) == len(frames),
                    "every frame through the driver-mode program")
    assert guest.actions() == want
    assert guest.offload.reason.startswith("EOPNOTSUPP: ")
    assert any("falling back to driver mode: EOPNOTSUPP" in text
               for _, text in guest.reports)


async def test_auto_falls_back_when_the_device_refuses(rig_factory: RigFactory) -> None:
    """The capabilities admit the program, the device cannot hold its map (xdp_max_
    map_mem_kib of the smartnic profile): the device's errno and line are reported."""
    big = counting(max_entries=400_000)  # 4.6 MiB of array > the NIC's 2 MiB
    with trio.fail_after(30):
        rig = rig_factory(profile="smartnic", wire=open_port("null"))
        guest = await rig.add_guest(port=open_port("null"), offload=big, mode="auto")
        await until(lambda: guest.offload.state in ("driver", "refused"), "a placement")
    assert guest.offload.state == "driver"
    assert guest.offload.reason.startswith("ENOMEM: ")
    assert "xdp_max_map_mem_kib" in guest.offload.reason or "ENOMEM" in guest.offload.reason
    assert rig.host.guests[0].device.offload.maps == {}  # type: ignore[union-attr]


async def test_offload_mode_refusal_runs_nothing(rig_factory: RigFactory) -> None:
    redirect = Program("redir", "xdp", encode(assemble("mov %r1, 1\nmov %r2, 0\ncall 23\n"
                                                        "exit\n")))
    with trio.fail_after(30):
        rig = rig_factory(profile="rfc2019", wire=open_port("null"))
        guest = await rig.add_guest(port=open_port("null"), offload=redirect, mode="offload")
        await until(lambda: guest.offload.state == "refused", "the refusal")
    assert "EACCES" in guest.offload.reason and "not offered" in guest.offload.reason
    assert not guest.xdp.attached
    assert rig.host.guests[0].offload_info()["program"] is None


async def test_the_guest_going_away_destroys_what_it_offloaded(rig_factory: RigFactory
                                                               ) -> None:
    """offload-behaviour.md item 14 over vhost-user: the guest's connection ends, its
    device and everything offloaded to it go; on a new connection the guest offloads
    again from scratch."""
    with trio.fail_after(30):
        rig = rig_factory(profile="host", wire=open_port("null"))
        guest = await rig.add_guest(port=open_port("null"), offload=counting(),
                                    mode="offload")
        await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
        port = rig.host.guests[0]
        assert port.device is not None and port.device.offload is not None
        first = port.device.offload  # holds maps, not the device (its memory must go)
        assert first.maps
        rig.kill_host_side(0)
        await until(lambda: port.device is None, "the device dropped")
        assert port.offload_info()["program"] is None
        rig.connect(0)
        await until(lambda: guest.offload.placements == 2 and
                    guest.offload.state == "offloaded", "offloaded again")
    assert port.device is not None and port.device.offload is not first
    assert port.offload_info()["program"]["tag"] == counting().tag  # type: ignore[index]
    assert any("offloading again" in text for _, text in guest.reports)


async def test_an_offload_command_in_flight_at_a_host_restart_runs_once(
        rig_factory: RigFactory) -> None:
    """A resumed ring is taken again from the old device's used index: a MAP CREATE the
    host died before answering would run on the new device and leave a map nobody
    holds.  The guest resets the device instead of resuming, and offloads again: the
    new device holds the program's maps and no other."""
    with trio.fail_after(30):
        rig, guest, client = await offloaded_guest(rig_factory)
        port = rig.host.guests[0]
        rig.kill_host_side(0)
        await until(lambda: guest.link is None, "the guest without a device")
        create = next(client.create_map(client.offloaded.maps[0].spec))
        cmd = guest.driver.ctrl_command(create.cls, create.command, create.body,
                                        result_size=create.room)
        assert [c.name for c in guest.driver.ctrl_in_flight()] == [cmd.name]
        rig.connect(0)
        await until(lambda: guest.offload.placements == 2 and
                    guest.offload.state == "offloaded", "offloaded again")
        await trio.sleep(0.2)  # time for a replayed command to show
    assert port.device is not None and port.device.offload is not None
    assert len(port.device.offload.maps) == len(counting().maps) == 1
    assert cmd.done and cmd.error == "device reset"
    reconnected = dict(guest.reports)["reconnected"]
    assert f"{cmd.name} was in flight" in reconnected and "re-initializing" in reconnected


async def test_a_hostile_command_gets_an_errno_and_the_guest_keeps_going(
        rig_factory: RigFactory) -> None:
    with trio.fail_after(30):
        _, guest, client = await offloaded_guest(rig_factory)
        (handle,) = client.offloaded.handles
        with pytest.raises(OffloadError) as refused:
            await guest.offload.run(client.free_map(handle))
        assert refused.value.errno == E.EBUSY
        value = await guest.offload.run(client.lookup(handle, bytes(4)))
    assert value is not None


async def test_an_error_says_whether_the_device_answered(rig_factory: RigFactory) -> None:
    """"device answered" only when the errno is the device's answer; a command the
    guest's transport ended (no device connected, the device went away) says that."""
    with trio.fail_after(30):
        rig, guest, client = await offloaded_guest(rig_factory)
        (handle,) = client.offloaded.handles
        with pytest.raises(OffloadError) as busy:
            await guest.offload.run(client.free_map(handle))
        rig.kill_host_side(0)
        await until(lambda: guest.link is None, "the guest without a device")
        with pytest.raises(OffloadError) as gone:
            await guest.offload.run(client.lookup(handle, bytes(4)))
    assert str(busy.value).startswith("FREE_MAP: device answered EBUSY (")
    assert busy.value.answered
    assert (str(gone.value), gone.value.errno) == ("LOOKUP_ELEM: no device connected",
                                                   E.ENODEV)
    assert not gone.value.answered


async def test_the_host_runs_offloaded_programs_compiled_when_asked(
        rig_factory: RigFactory, datapath: str) -> None:
    """`vxdp host --engine jit`: the device compiles the program while it verifies it,
    QUERY says so, and the datapath runs the compiled code with the same verdicts."""
    from vxdp.bpf import jit
    if (why := jit.unavailable()) is not None:
        pytest.skip(why)
    program = demo_program()
    frames = TrafficGenerator(13, mix={"udp4": 0.6, "tcp4": 0.4}, vlan_share=0.0).packets(96)
    want = reference_actions(program, frames)
    with trio.fail_after(60):
        rig = rig_factory(profile="host", wire=open_port("null"), engine="jit")
        guest = await rig.add_guest(port=open_port("null"), offload=program, mode="offload")
        await until(lambda: guest.offload.state == "offloaded", "the program offloaded",
                    timeout=50)
        client = guest.offload.client
        assert client is not None
        info = await guest.offload.run(client.query())
        await send_from_wire(rig, frames)
        port = rig.host.guests[0]
        await until(lambda: sum(port.offload_actions().values()) == len(frames),
                    "every frame through the compiled program")
    assert info is not None and info.engine.name == "JIT" and info.image_len > 0
    assert port.offload_actions() == want
    if datapath == "c":
        assert port.cpath is not None and port.cpath.port is not None
        from vxdp import native
        assert native.prog_has_jit(port.cpath.port.handle.offload[0])
