"""Live migration of a guest whose offload goes over its agent (`--via agent`): the
device moves with its objects as for the control queue; the guest's agent channel,
bound to the source host's agent, is re-bound to the destination's, or the move is
refused (or falls back to driver mode) when no agent there is named or answers."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import trio

from vxdp.bpf.program import MapSpec, MapType
from vxdp.packets import TrafficGenerator
from vxdp.runtime import GuestRuntime, open_port

from .conftest import Rig, until
from .test_agent import agent_rig
from .test_migration import counter
from .test_offload import counting, send_from_wire

RigFactory = Callable[..., Rig]


async def agent_guest(rig_factory: RigFactory, tmp_path: Path, *, agents: bool = True
                      ) -> tuple[Rig, Rig, list[Path], GuestRuntime]:
    """Host A with one guest socket, host B with two (guest 1's MAC is not the guest's),
    each with its agents (B without, unless `agents`); the guest offloaded over A's."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, pa = await agent_rig(rig_factory, tmp_path / "a")
    if agents:
        b, pb = await agent_rig(rig_factory, tmp_path / "b", guests=2)
    else:
        b, pb = rig_factory(sockets=2, profile="host", wire=open_port("null")), []
    guest = await a.add_guest(port=open_port("null"), offload=counting(), mode="offload",
                              agent=pa[0])
    await until(lambda: guest.offload.state == "offloaded", "the program offloaded")
    return a, b, pb, guest


async def test_the_agent_channel_is_re_bound_to_the_destinations_agent(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    with trio.fail_after(30):
        a, b, pb, guest = await agent_guest(rig_factory, tmp_path)
        await send_from_wire(a, TrafficGenerator(1).packets(30))
        await until(lambda: guest.stack["packets"] == 30, "30 frames through the source")
        source_agent = a.host.guests[0].agent
        assert source_agent is not None
        before = dict(source_agent.agent.counts)
        report = await guest.migrate(b.socket_to(1), agent=pb[1])
        assert report.outcome == "migrated", report.text()
        port_b = b.host.guests[1]
        await until(lambda: port_b.live and port_b.rx_posted, "the destination serving")
        await send_from_wire(b, TrafficGenerator(2).packets(12))
        await until(lambda: guest.stack["packets"] == 42, "12 more through the destination")
        count = await counter(guest)  # over the agent: the destination's
    assert count == 42
    assert report.agent.startswith("re-bound from the host agent at ")
    assert f"to the host agent at {pb[1]} (guest 1 there)" in report.agent
    assert "rebind" in report.timings_ms and "agent channel: re-bound" in report.text()
    # the destination's agent took the guest (whose MAC its socket did not have before)
    dest = port_b.agent
    assert dest is not None and dest.agent.counts["hellos"] == 2  # the probe, the session
    assert dest.agent.counts["commands"] >= 1 and dest.agent.counts["crossings"] == 0
    # the source's agent saw nothing after the move
    assert source_agent.agent.counts == before
    assert guest.offload.carrier.stats()["agent"] == str(pb[1])


async def test_no_agent_named_or_none_answering_refuses_or_falls_back(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    with trio.fail_after(40):
        _, b, _, guest = await agent_guest(rig_factory, tmp_path, agents=False)
        unnamed = await guest.migrate(b.socket_to(0))
        await until(lambda: b.host.guests[0].session is None, "the refused session gone")
        silent = await guest.migrate(b.socket_to(0), agent=tmp_path / "b" / "none.agent")
        await until(lambda: b.host.guests[0].session is None, "the refused session gone")
        assert await counter(guest) == 0  # still on the source, over its agent
        moved = await guest.migrate(b.socket_to(0), policy="fallback",
                                    agent=tmp_path / "b" / "none.agent")
        await until(lambda: guest.offload.state == "driver", "the program in driver mode")
    assert (unnamed.outcome, unnamed.downtime_ms) == ("refused", None)
    assert "stays with the source host: name the destination's host agent" in unnamed.reason
    assert silent.outcome == "refused"
    assert "the destination's host agent: ENOENT: agent: no host agent answers" in silent.reason
    assert moved.outcome == "fallback" and "ENOENT" in moved.reason
    assert moved.agent.startswith("left the host agent at ")
    assert b.host.guests[0].offload_info()["program"] is None


async def test_agent_commands_in_flight_wait_and_none_is_lost(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    """Updates go on over the agent while the device moves: each waits (held through
    the move), none fails, and every one acknowledged is in the destination's map."""
    acked: dict[bytes, bytes] = {}
    with trio.fail_after(40):
        _, b, pb, guest = await agent_guest(rig_factory, tmp_path)
        client = guest.offload.client
        assert client is not None
        table = await guest.offload.run(client.create_map(MapSpec("t", MapType.HASH, 4, 4,
                                                                  4096)))
        done = trio.Event()

        async def writer() -> None:
            i = 0
            while not done.is_set() or i < 40:
                key, value = struct.pack("<I", i), struct.pack("<I", i * 7)
                await guest.offload.run(client.update(table.handle, key, value))
                acked[key] = value
                i += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await until(lambda: len(acked) >= 20, "updates acknowledged by the source")
            report = await guest.migrate(b.socket_to(0), agent=pb[0])
            done.set()
        device = b.host.guests[0].device
        assert device is not None and device.offload is not None
        on_dest = device.offload.maps[table.handle].map
        missing = [k.hex() for k, v in acked.items() if on_dest.lookup(k) != v]
    assert report.outcome == "migrated", report.text()
    assert missing == [] and len(acked) >= 40
