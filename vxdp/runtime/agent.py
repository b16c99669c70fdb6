"""The agent path's trio edge: a host agent per guest, and the guest agent's carrier.

    vxdp host  --socket g0.sock --agent g0.agent [--socket g1.sock --agent g1.agent]
    vxdp guest --socket g0.sock --xdp prog.o --mode offload --via agent --agent g0.agent

Host side.  `agent_server(port, path)` serves one guest's agent socket: a
`ControlServer` (the control socket's server: mode 0600, a stale socket replaced, one
task per client, malformed frames answered with errors, at most `MAX_AGENT_CLIENTS` at
once) speaking the agent protocol (`vxdp.control.agent`), whose handler is bound to that
guest's `GuestPort` and nothing else (`host.agent.HostAgent`: the binding is the socket).
A command goes to the `DeviceOffload` of the guest's current device, the one its control
queue feeds; a SET_OFFLOAD is verified on a worker thread (the host's other guests and
this guest's control queue go on), then the program goes to the datapath's offload slot
(`GuestPort.offload_changed`, as the control queue's `OffloadChanged` does).

Guest side.  `AgentCarrier` is the carrier `vxdp.runtime.offload.GuestOffload` uses with
`--via agent`: it dials the agent socket when it first needs it, says hello (its
device's MAC; the host agent answers with the guest it is bound to and the capabilities
its device offers, which the guest checks its program against), then carries each
`OffloadRequest` as `agent.command` and hands back the `Answer`.  A new device (the host
restarted, the device was reset) starts a new session: what was offloaded went with the
old device, and the guest offloads again, over whichever carrier it uses.

A guest without an agent (nothing listens at the path, or an older host whose socket
does not speak the agent protocol) gets `AgentError` with the reason: ECONNREFUSED or
ENOENT, EOPNOTSUPP for a peer without the agent's ops; `--mode auto` falls back to
driver mode on it as on any offload refusal.
"""

from __future__ import annotations

import errno as E
import logging
import os
from typing import TYPE_CHECKING, Any

import trio

from guest.offload import Answer, OffloadError, OffloadRequest
from host.agent import AgentBinding, AgentRefused, HostAgent
from virtio_spec.offload import XdpCapabilities
from vxdp.control.agent import (
    COMMAND,
    HELLO,
    Hello,
    agent_connection,
    answer_result,
    command_args,
    mac_text,
    parse_answer,
    request_limit,
)
from vxdp.control.protocol import NEED_DATA, Connection, expect_reply
from vxdp.errors import ControlError, errno_name

from .control import ControlServer, OpsHandler, failed

if TYPE_CHECKING:
    from .guest import GuestRuntime
    from .guestport import GuestPort

log = logging.getLogger("vxdp.runtime.agent")

#: Connections one guest's agent socket takes at once (its guest agent, a tool or two).
MAX_AGENT_CLIENTS = 4
#: The longest one agent call may take (SET_OFFLOAD includes the host's verification).
AGENT_TIMEOUT = 120.0
#: The longest a destination's host agent may take to answer a migration's probe.
PROBE_TIMEOUT = 5.0


class AgentError(OffloadError):
    """The agent channel failed (not the device): nothing listens, the peer is no agent,
    the host agent refused the request (EPERM: not this guest's channel), or it broke
    the protocol.  An OffloadError, so a placement treats it as any refusal."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__("agent", errno, message)
        self.log = ""  # no device log: a placement's reason is the whole "agent: ..." line


# -- the host agent ------------------------------------------------------------------------


class AgentHandler(OpsHandler):
    """The agent ops for one guest's channel (`host.agent.HostAgent` decides)."""

    serves = "a host agent"

    def __init__(self, port: GuestPort, channel: str) -> None:
        self.port = port
        self.agent = HostAgent(AgentBinding(port.number, port.profile.mac, channel))
        self.ops = {HELLO: self.hello, COMMAND: self.command}

    async def hello(self, args: dict[str, Any]) -> Any:
        mac = bytes.fromhex(args["mac"].replace(":", "")) if "mac" in args else None
        self._check(args.get("guest"), mac)
        self.agent.counts["hellos"] += 1
        port = self.port
        caps = port.profile.xdp
        return Hello(port.number, port.profile.mac, port.live,
                     caps.name if caps is not None else None, caps).to_wire()

    async def command(self, args: dict[str, Any]) -> Any:
        self._check(args.get("guest"))
        port = self.port
        device = port.device
        try:
            out = self.agent.command(device, args["cls"], args["command"], args["body"],
                                     args["room"], suspended=port.suspended)
        except AgentRefused as exc:
            raise failed(exc.errno, str(exc)) from None
        if out.job is not None and device is not None:
            log.info("guest %d: agent: %s", port.number, out.detail)
            await trio.to_thread.run_sync(out.job.run, abandon_on_cancel=True)
            out = self.agent.finish(device, port.device, out.job)
        if out.changed:
            port.offload_changed(f"over the agent: {out.detail}")
        return answer_result(out.ack, out.result)

    def _check(self, named: int | None, mac: bytes | None = None) -> None:
        self.agent.follow(self.port.profile.mac)  # a migrated device brings its MAC
        try:
            self.agent.check(named, mac)
        except AgentRefused as exc:
            log.warning("guest %d: agent: %s", self.port.number, exc)
            raise failed(exc.errno, str(exc)) from None

    def info(self) -> dict[str, Any]:
        """The channel and its counts, for the host's stats."""
        return {"channel": self.agent.binding.channel, **self.agent.counts}


def agent_server(port: GuestPort, path: str | os.PathLike[str]) -> ControlServer:
    """The agent socket of guest `port`, at `path` (served by `ControlServer.serve`);
    its handler becomes `port.agent` (the host's stats show its counts)."""
    limit = request_limit(port.profile.xdp)
    handler = AgentHandler(port, os.fspath(path))
    port.agent = handler
    return ControlServer(handler, path, max_clients=MAX_AGENT_CLIENTS, name="agent",
                         connection=lambda: agent_connection("server", max_request=limit))


# -- the guest agent -----------------------------------------------------------------------


class AgentCarrier:
    """The guest agent: a GuestOffload carrier over the agent socket at `path`."""

    via = "agent"

    def __init__(self, runtime: GuestRuntime, path: str | os.PathLike[str], *,
                 timeout: float = AGENT_TIMEOUT) -> None:
        self.runtime = runtime
        self.path: str | None = os.fspath(path)
        self.timeout = timeout
        #: why there is no path (a migration moved the device to a host whose agent it
        #: was not told): what a command is answered with
        self.unbound = ""
        self.hello: Hello | None = None
        self.sessions = 0
        self.calls = 0
        self._sock: trio.socket.SocketType | None = None
        self._conn: Connection | None = None

    def describe(self) -> str:
        return f"the host agent at {self.path}" if self.path else "no host agent"

    def wake(self) -> None:
        """Nothing waits on the device here: the host agent answers for it."""

    def reset(self) -> None:
        """A new device: the next command opens a new session (hello again)."""
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._conn, self.hello = None, None, None

    async def probe(self, path: str | None) -> str:
        """Why the channel cannot follow the guest's device to a host whose agent for it
        is at `path` ("" when it can): nothing named, nothing answering there, no agent
        protocol, or an agent whose guest has a live device already (the agent socket
        of another guest).  A hello without the MAC: the destination's guest takes this
        guest's MAC only when the device state arrives."""
        if path is None:
            return (f"the guest's offload goes over its agent channel to {self.describe()}, "
                    f"which stays with the source host: name the destination's host agent "
                    f"(vxdp migrate --agent PATH)")
        probe = AgentCarrier(self.runtime, path, timeout=PROBE_TIMEOUT)
        try:
            hello = await probe._session(mac=False)
        except AgentError as exc:
            return f"the destination's host agent: {errno_name(exc.errno)}: {exc}"
        finally:
            probe.close()
        if hello.live:
            return (f"the destination's host agent at {path} is guest {hello.guest}'s, whose "
                    f"device is live: not the agent of the socket this guest moves to")
        return ""

    async def moved(self, path: str | None, *, connect: bool) -> str:
        """The guest's device moved to another host (a live migration): the session
        belonged to the source host's agent and ends (kept, it would reach whatever
        device that host's socket serves next); the next command goes to `path`, the
        destination's host agent for this guest.  With `connect`, the session opens now
        (AgentError when it cannot).  What happened, in words."""
        source = self.describe()
        self.close()
        self.path = path
        if path is None:
            self.unbound = (f"the agent channel stayed with the source host ({source}) when "
                            f"the device migrated, and no host agent was named for the "
                            f"destination")
            return f"left {source}; no host agent named for the destination"
        self.unbound = ""
        if not connect:
            return f"left {source}; the next command goes to the host agent at {path}"
        hello = await self._session()
        return (f"re-bound from {source} to the host agent at {path} (guest {hello.guest} "
                f"there)")

    async def capabilities(self) -> XdpCapabilities:
        hello = await self._session()
        if hello.caps is None:
            raise AgentError(E.EOPNOTSUPP, f"{self.describe()} says guest {hello.guest}'s "
                                           f"device offers no XDP offload")
        return hello.caps

    async def exchange(self, request: OffloadRequest) -> Answer:
        hello = await self._session()
        result = await self._call(COMMAND, command_args(request.cls, request.command,
                                                        request.body, request.room,
                                                        hello.guest))
        try:
            ack, data = parse_answer(result, request.room)
        except ControlError as exc:
            self.close()
            raise AgentError(getattr(exc, "errno", E.EPROTO), str(exc)) from None
        return Answer(ack, data)

    async def _session(self, *, mac: bool = True) -> Hello:
        if self._sock is not None and self.hello is not None:
            return self.hello
        self.close()
        if self.path is None:
            raise AgentError(E.ENOTCONN, f"no host agent: {self.unbound}")
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise AgentError(exc.errno or E.EIO, f"no host agent answers at {self.path} "
                                                 f"({exc.strerror or exc}): the host runs no "
                                                 f"agent for this guest (vxdp host --agent)"
                             ) from None
        self._sock, self._conn = sock, agent_connection("client")
        self.sessions += 1
        doc = await self._call(HELLO, {"mac": mac_text(self.runtime.driver.mac)} if mac
                               else {})
        try:
            self.hello = Hello.from_wire(doc)
        except ControlError as exc:
            self.close()
            raise AgentError(getattr(exc, "errno", E.EPROTO), str(exc)) from None
        log.info("agent session %d with %s: guest %d, device %s", self.sessions, self.path,
                 self.hello.guest, "live" if self.hello.live else "not live")
        return self.hello

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        """One request and its reply's result; AgentError for anything else."""
        sock, conn = self._sock, self._conn
        assert sock is not None and conn is not None
        self.calls += 1
        mid, data = conn.send_request(op, args)
        try:
            with trio.fail_after(self.timeout):
                view = memoryview(data)
                while view:
                    view = view[await sock.send(view):]
                while (event := conn.next_event()) is NEED_DATA:
                    conn.receive_data(await sock.recv(65536))
            reply = expect_reply(event, mid)
        except trio.TooSlowError:
            self.close()
            raise AgentError(E.ETIMEDOUT, f"{self.describe()}: no answer to {op} within "
                                          f"{self.timeout:g} s") from None
        except trio.ClosedResourceError:  # reset() meanwhile: the guest is on a new device
            raise AgentError(E.ECONNRESET, f"{self.describe()}: {op}: the session ended "
                                           f"(a new device)") from None
        except OSError as exc:
            self.close()
            raise AgentError(exc.errno or E.EIO, f"{self.describe()}: {op}: "
                                                 f"{exc.strerror or exc}") from None
        except ControlError as exc:  # the host agent went away, or sent garbage
            self.close()
            raise AgentError(getattr(exc, "errno", E.EPROTO),
                             f"{self.describe()}: {op}: {exc}") from None
        if reply.error is None:
            return reply.result
        err = reply.error
        if op == HELLO and err.errno == E.EOPNOTSUPP:
            self.close()
            raise AgentError(E.EOPNOTSUPP, f"{self.path} does not speak the agent protocol "
                                           f"(an older host, or not an agent socket): "
                                           f"{err.message}")
        raise AgentError(err.errno, err.message)

    def stats(self) -> dict[str, Any]:
        hello = self.hello
        return {"agent": self.path, "sessions": self.sessions, "calls": self.calls,
                "guest": hello.guest if hello is not None else None}


__all__ = ["AGENT_TIMEOUT", "MAX_AGENT_CLIENTS", "AgentCarrier", "AgentError",
           "AgentHandler", "agent_server"]
