"""The agent path end to end in one process: a GuestRuntime offloads over its guest
agent to the HostRuntime's host agent (a Unix socket per guest), the vhost-user side
over socketpairs as in the other rigs; the channel is bound to its guest, hostile peers
get errors, a guest without an agent is told why and `auto` falls back."""

from __future__ import annotations

import errno as E
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from guest.offload import OffloadClient
from tests.host.test_offload import counting
from vxdp.control.agent import agent_connection, command_args
from vxdp.control.protocol import NEED_DATA, Reply
from vxdp.runtime import open_port
from vxdp.runtime.compare import demo_program

from .conftest import Rig, until

RigFactory = Callable[..., Rig]


async def agent_rig(rig_factory: RigFactory, tmp_path: Path, guests: int = 1,
                    **kw: Any) -> tuple[Rig, list[Path]]:
    paths = [tmp_path / f"g{n}.agent" for n in range(guests)]
    rig = rig_factory(sockets=guests, profile="host", wire=open_port("null"), agents=paths,
                      **kw)
    await rig.nursery.start(rig.host.serve_agents)
    return rig, paths


async def test_a_guest_without_an_agent_is_told_why(rig_factory: RigFactory,
                                                     tmp_path: Path) -> None:
    """Nothing at the path, or a socket nobody serves: `offload` runs nothing and says
    why, `auto` falls back to driver mode with the same reason."""
    stale = tmp_path / "stale.agent"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(stale))
    left.close()  # a socket file whose host is gone
    program = demo_program()
    with trio.fail_after(30):
        rig = rig_factory(sockets=3, profile="host", wire=open_port("null"))
        none = await rig.add_guest(port=open_port("null"), offload=program, mode="offload",
                                   agent=tmp_path / "missing.agent")
        auto = await rig.add_guest(port=open_port("null"), offload=program, mode="auto",
                                   agent=stale)
        ctrl = await rig.add_guest(port=open_port("null"), offload=program, mode="offload")
        await until(lambda: none.offload.state == "refused" and auto.offload.state == "driver"
                    and ctrl.offload.state == "offloaded", "three placements")
    assert none.offload.reason.startswith("ENOENT: agent: no host agent answers at ")
    assert "vxdp host --agent" in none.offload.reason and not none.xdp.attached
    assert auto.offload.reason.startswith("ECONNREFUSED: agent: no host agent answers")
    assert auto.xdp.attached  # the program runs in the driver
    assert any("falling back to driver mode: ECONNREFUSED" in t for _, t in auto.reports)
    assert rig.host.guests[0].offload_info()["program"] is None
    assert rig.host.guests[2].offload_info()["program"] is not None  # the control queue


async def test_an_older_host_or_another_socket_is_no_agent(rig_factory: RigFactory,
                                                           tmp_path: Path) -> None:
    """The guest agent reaches a socket that speaks the framing but not the agent's ops
    (the host's control socket): EOPNOTSUPP, said plainly."""
    ctl = tmp_path / "host.ctl"
    with trio.fail_after(30):
        rig = rig_factory(profile="host", wire=open_port("null"), control=ctl)
        assert rig.host.control is not None
        await rig.nursery.start(rig.host.control.serve)
        guest = await rig.add_guest(port=open_port("null"), offload=demo_program(),
                                    mode="auto", agent=ctl)
        await until(lambda: guest.offload.state == "driver", "the fallback")
    assert guest.offload.reason.startswith("EOPNOTSUPP: agent: ")
    assert "does not speak the agent protocol" in guest.offload.reason


async def raw_call(path: Path, frames: list[bytes]) -> list[Reply]:
    """A hostile client: raw frames in, the replies out (the connection kept)."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    conn = agent_connection("client")
    replies: list[Reply] = []
    with sock:
        await sock.connect(str(path))
        for data in frames:
            await sock.send(data)
            while (event := conn.next_event()) is NEED_DATA:
                conn.receive_data(await sock.recv(65536))
            assert isinstance(event, Reply)
            replies.append(event)
    return replies


def frame(doc: Any) -> bytes:
    body = msgpack.packb(doc, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


async def test_a_channel_cannot_be_crossed(rig_factory: RigFactory, tmp_path: Path) -> None:
    """Guest 1 pointed at guest 0's agent socket is refused (its device's MAC is not
    guest 0's); a hostile client on guest 0's socket naming guest 1, sending garbage or
    unknown ops gets errors, reaches no device, and the host goes on serving."""
    with trio.fail_after(30):
        rig, (g0, _g1) = await agent_rig(rig_factory, tmp_path, guests=2)
        first = await rig.add_guest(port=open_port("null"))
        wrong = await rig.add_guest(port=open_port("null"), offload=counting(),
                                    mode="offload", agent=g0)
        await until(lambda: wrong.offload.state == "refused", "the refusal")
        assert wrong.offload.reason.startswith("EPERM: agent: agent channel ")
        assert "belongs to guest 0" in wrong.offload.reason
        ports = rig.host.guests
        assert all(p.device is not None and p.device.offload is not None
                   and not p.device.offload.maps for p in ports)
        create = next(OffloadClient(first.driver.xdp_caps).create_map(counting().maps[0]))
        args = command_args(create.cls, create.command, create.body, create.room, guest=1)
        replies = await raw_call(g0, [
            agent_connection("client").send_request("agent.command", args)[1],
            b"\x00\x00\x00\x02\xc1\xc1",
            frame({"v": 1, "id": 4, "op": "map.update", "args": {}}),
            frame({"v": 1, "id": 5, "op": "agent.hello", "args": {"guest": 1}}),
            agent_connection("client").send_request("agent.command",
                                                     {**args, "guest": 0})[1]])
        assert [r.error.errno if r.error else None for r in replies] == [
            E.EPERM, E.EBADMSG, E.EOPNOTSUPP, E.EPERM, None]
        assert "cannot reach guest 1" in replies[0].error.message  # type: ignore[union-attr]
        assert replies[4].result["ack"] == 0  # the same command for its own guest: done
        assert ports[0].device is not None and ports[0].device.offload is not None
        assert len(ports[0].device.offload.maps) == 1
        assert ports[1].device is not None and ports[1].device.offload is not None
        assert not ports[1].device.offload.maps
        assert ports[0].agent is not None and ports[0].agent.agent.counts["crossings"] == 3
        assert first.ready.is_set() and wrong.ready.is_set()  # both guests still served


async def hostile_agent(path: Path, answer: Callable[[Any], bytes | None],
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A host agent that answers each request with `answer(request)` (None: never)."""
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    with listener:
        await listener.bind(str(path))
        listener.listen(4)
        task_status.started()
        while True:
            sock, _ = await listener.accept()
            with sock:
                conn = agent_connection("server")
                while True:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        data = await sock.recv(65536)
                        conn.receive_data(data)
                        if not data:
                            break
                        continue
                    out = answer(event)
                    if out is None:
                        await trio.sleep_forever()
                    await sock.send(out)


async def test_a_hostile_or_hung_host_agent_never_takes_the_guest_down(
        rig_factory: RigFactory, tmp_path: Path) -> None:
    """A hello of the wrong shape, an answer longer than the room, no answer at all, a
    session cut by a new device: each is an AgentError for the placement (auto: driver
    mode), never an exception out of the guest."""
    from vxdp.runtime.agent import AgentCarrier, AgentError
    garbage, toolong, hung = (tmp_path / n for n in ("garbage.agent", "toolong.agent",
                                                     "hung.agent"))
    server = agent_connection("server")
    hello = {"agent": 1, "guest": 0, "mac": "52:54:00:12:34:56", "live": True,
             "profile": "host", "caps": None}
    from virtio_spec.offload import HOST
    caps_hello = {**hello, "caps": HOST.to_config()}

    def bad_hello(req: Any) -> bytes:
        return server.send_result(req.id, {**hello, "caps": {"xdp_max_insns": -1}})

    def long_answer(req: Any) -> bytes:
        if req.op == "agent.hello":
            return server.send_result(req.id, caps_hello)
        return server.send_result(req.id, {"ack": 0, "result": bytes(req.args["room"] + 1)})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(hostile_agent, garbage, bad_hello)
            await nursery.start(hostile_agent, toolong, long_answer)
            await nursery.start(hostile_agent, hung, lambda req: None)
            rig = rig_factory(sockets=2, profile="host", wire=open_port("null"))
            a = await rig.add_guest(port=open_port("null"), offload=counting(), mode="auto",
                                    agent=garbage)
            b = await rig.add_guest(port=open_port("null"), offload=counting(),
                                    mode="offload", agent=toolong)
            await until(lambda: a.offload.state == "driver" and b.offload.state == "refused",
                        "both placements")
            assert a.offload.reason.startswith("EPROTO: agent: ")
            assert "broke the agent protocol" in a.offload.reason
            assert b.offload.reason.startswith("EPROTO: agent: ")
            assert "result bytes for a room of 8" in b.offload.reason
            carrier = AgentCarrier(a, hung, timeout=0.3)
            with pytest.raises(AgentError) as slow:
                await carrier.capabilities()
            assert slow.value.errno == E.ETIMEDOUT
            cut = AgentCarrier(a, hung)
            failure: list[AgentError] = []

            async def ask() -> None:
                try:
                    await cut.capabilities()
                except AgentError as exc:
                    failure.append(exc)
            nursery.start_soon(ask)
            await until(lambda: cut.sessions == 1, "the session opened")
            await trio.sleep(0.05)
            cut.reset()  # a new device while the hello waits
            await until(lambda: bool(failure), "the cut call failed")
            assert failure[0].errno == E.ECONNRESET
            nursery.cancel_scope.cancel()
