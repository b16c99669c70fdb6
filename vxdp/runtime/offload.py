"""The guest process's XDP placement: offloaded over the control queue, or in the driver.

`GuestOffload` is the trio edge of `guest.offload`: it carries each command an operation
yields to the device and sends the answer back in.  What carries it is its `carrier`:

    controlq  `ControlQueueCarrier` (the default): the driver's control queue
              (`Driver.ctrl_command`, the kick, the completion the controlq interrupt
              brings); the capabilities are those the device advertises in config space;
    agent     `vxdp.runtime.agent.AgentCarrier` (`vxdp guest --via agent`): the guest
              agent's RPC to the host agent, which hands the same command to the same
              device's offload; the capabilities come in the host agent's hello.

Both carry the same `OffloadRequest`s of the same operations and get the same `Answer`s:
the two paths of the RFC's review thread differ only in transport.  It also carries out
the placement `vxdp guest --mode` asks for, as `ip link set xdpoffload|xdpdrv` would:

    offload   the program is checked against the device's advertised capabilities
              (the same rules the device verifies with), its maps created on the device,
              then SET_OFFLOAD; a refusal is reported (errno and the device's log line)
              and no program runs;
    driver    the program runs in the guest's driver (driver-mode XDP), as before;
    auto      offload, and when the device cannot take the program (no
              VIRTIO_NET_F_XDP_OFFLOAD, the check or the device refuses it, no host agent
              answers) driver mode, with the reason reported.

The device owns what was offloaded: a reset, or a restarted host (the guest reconnects
to a new device), destroys it.  The guest then offloads again from scratch (map contents
start over: the device's maps went with it) and says so.  A command in flight when the
device went is lost with it.  A live migration moves the device, objects and all: the
guest goes on with them, and its commands in flight are answered by the destination; a
migration that cannot take the device's state along (`moved`) runs the program again on
the next device, its maps filled with the entries the offloaded maps held: in driver mode
(policy fallback), or placed as the mode says, offloaded to the new device when it takes
the program (policy reoffload: passthrough to a SmartNIC's virtual function).

Every control command waits at most CTRL_TIMEOUT for its answer (a device verifying a
large program takes seconds; one that never answers must not hold the guest).
"""

from __future__ import annotations

import errno as E
import logging
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from guest.ctrl import CommandRefused
from guest.offload import Answer, OffloadClient, OffloadError, OffloadRequest
from virtio_spec.errors import LocalProtocolError
from virtio_spec.features import VirtioNetFeature
from virtio_spec.offload import XdpCapabilities
from vxdp.bpf.profiles import NATIVE
from vxdp.bpf.program import Program
from vxdp.bpf.verifier import verify
from vxdp.errors import UsageError, errno_name

if TYPE_CHECKING:
    from .guest import GuestRuntime

log = logging.getLogger("vxdp.runtime.offload")

MODES = ("driver", "offload", "auto")
#: What carries the offload's commands (`vxdp guest --via`).
VIAS = ("controlq", "agent")
#: The longest one control command may take (SET_OFFLOAD includes the verification).
CTRL_TIMEOUT = 120.0
T = TypeVar("T")
#: A device's map entries by its map handle, and a program's by map name.
HandleEntries = Mapping[int, Sequence[tuple[bytes, bytes]]]
NameEntries = Mapping[str, Sequence[tuple[bytes, bytes]]]


class Carrier(Protocol):
    """What carries the offload's commands to the device (see the module docstring)."""

    via: str

    async def capabilities(self) -> XdpCapabilities:
        """What the device offers (OffloadError EOPNOTSUPP when it offers no offload)."""

    async def exchange(self, request: OffloadRequest) -> Answer:
        """Carry one command; its answer (OffloadError when it could not be carried)."""

    def wake(self) -> None:
        """A control command came back, or the device went."""

    def reset(self) -> None:
        """The guest is on a new device."""

    async def probe(self, agent: str | None) -> str:
        """Why the carrier cannot follow the device to another host, whose agent for
        this guest is at `agent` ("" when it can)."""

    async def moved(self, agent: str | None, *, connect: bool) -> str:
        """The device moved to another host (a migration): what changed, in words."""

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class ControlQueueCarrier:
    """The control virtqueue: each command a `Driver.ctrl_command`, answered by the
    completion its interrupt brings."""

    via = "controlq"

    def __init__(self, runtime: GuestRuntime) -> None:
        self.runtime = runtime
        self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()

    def reset(self) -> None:
        pass

    async def probe(self, agent: str | None) -> str:
        return ""  # the control queue is the device's: it moves with it

    async def moved(self, agent: str | None, *, connect: bool) -> str:
        return ""

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    async def capabilities(self) -> XdpCapabilities:
        driver = self.runtime.driver
        caps = driver.xdp_caps
        if caps is None:
            offered = driver.offered >> VirtioNetFeature.VIRTIO_NET_F_XDP_OFFLOAD & 1
            raise OffloadError("offload", E.EOPNOTSUPP, "the driver did not negotiate "
                               "VIRTIO_NET_F_XDP_OFFLOAD, which the device offers" if offered
                               else "the device does not offer VIRTIO_NET_F_XDP_OFFLOAD")
        return caps

    async def exchange(self, request: OffloadRequest) -> Answer:
        rt = self.runtime
        epoch = rt.epoch
        if rt.link is None:
            raise OffloadError(request.what, E.ENODEV, "no device connected")
        try:
            cmd = rt.driver.ctrl_command(request.cls, request.command, request.body,
                                         result_size=request.room)
        except (CommandRefused, LocalProtocolError) as exc:
            raise OffloadError(request.what, E.EINVAL, str(exc)) from None
        await rt.pump()
        with trio.move_on_after(CTRL_TIMEOUT):
            while True:
                self._wake = trio.Event()
                if cmd.done:
                    return Answer.of(cmd)
                if rt.epoch != epoch:  # a migration that resumes the rings is no end
                    raise OffloadError(request.what, E.ENODEV, "the device went away")
                await self._wake.wait()
        raise OffloadError(request.what, E.ETIMEDOUT,
                           f"no answer within {CTRL_TIMEOUT:g} s")


class GuestOffload:
    """Where the guest's XDP program runs, and its offload objects on the device."""

    def __init__(self, runtime: GuestRuntime, program: Program | None, mode: str,
                 carrier: Carrier | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.runtime = runtime
        self.program = program
        self.mode = mode
        self.carrier: Carrier = carrier if carrier is not None else ControlQueueCarrier(runtime)
        self.client: OffloadClient | None = None
        self.state = "none"  # none, offloaded, driver (fallen back), refused
        self.reason = ""
        self.log = ""  # the device's log of the last SET_OFFLOAD
        self.placements = 0
        #: set by a migration that did not move the device's state (`moved`)
        self._moved: tuple[str, HandleEntries, bool] | None = None
        self.settled = trio.Event()  # the program placed again after such a move
        self._lock = trio.Lock()

    # -- carrying commands ---------------------------------------------------------

    def wake(self) -> None:
        """A control command came back, or the device went: look again."""
        self.carrier.wake()

    async def run(self, op: Generator[OffloadRequest, Answer, T]) -> T:
        """Run a guest.offload operation over the carrier to its end."""
        async with self._lock:  # one operation at a time: commands are answered in order
            try:
                request = next(op)
                while True:
                    request = op.send(await self.carrier.exchange(request))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No offload operation runs inside (those under way finish first): a migration
        holds the agent path's commands so, from before the source stops until the
        channel is re-bound.  The control queue needs no such hold: the source pauses
        it, and the destination answers what waits in its ring; a host agent answers
        from outside any ring, so what it acknowledged after the source's state was
        saved would be lost."""
        async with self._lock:
            yield

    # -- placing the program -------------------------------------------------------

    def device_ready(self) -> None:
        """The driver is live on a (new) device: place the program as the mode says.
        The capabilities are the carrier's to find (`place`)."""
        self.carrier.reset()
        old, self.client = self.client, OffloadClient(None)
        moved, self._moved = self._moved, None
        if moved is not None:
            reason, entries, replace = moved
            if self.program is not None and self.state == "offloaded":
                contents = _by_name(old, entries)
                if replace:
                    self.runtime.spawn(partial(self._place_moved, contents))
                    return
                self._driver_mode(f"falling back to driver mode: {reason}", contents)
                self.state, self.reason = "driver", reason
            self.settled.set()
            if self.state != "none":
                return  # what runs in the driver runs on
        if self.program is not None and self.mode != "driver":
            self.runtime.spawn(self.place)

    def moved(self, reason: str, entries: HandleEntries, *, replace: bool) -> None:
        """A migration moves the guest to a device that does not take the source's state
        (`vxdp.runtime.migration`, policies fallback and reoffload): on the next device
        an offloaded program runs again with its maps holding `entries` (the source
        device's, by handle): in driver mode (`replace` False), or placed as the mode
        says (True: offloaded to the new device under its own capabilities, the entries
        written before SET_OFFLOAD; `auto` falls back to driver mode with them).
        `settled` is set once the program runs again, or was refused."""
        self._moved = (reason, entries, replace)
        self.settled = trio.Event()

    async def _place_moved(self, contents: NameEntries) -> None:
        try:
            self.state = "none"
            await self.place(contents)
        finally:
            self.settled.set()

    def _driver_mode(self, what: str, contents: NameEntries | None) -> None:
        """The program into the driver, its maps holding `contents`; reported."""
        assert self.program is not None
        self.runtime.set_driver_program(self.program)
        moved = 0
        for spec, m in zip(self.program.maps, self.runtime.xdp.maps or ()):
            for key, value in (contents or {}).get(spec.name, ()):
                m.update(key, value)
                moved += 1
        carried = (f"; {moved} map entries carried over from the offloaded maps"
                   if contents is not None else "")
        self.runtime.report("offload", f"{what}{carried}")

    def device_replaced(self, why: str) -> None:
        """The rings resumed on a new device (the host restarted): what was offloaded
        went with the old one."""
        if self.state == "offloaded":
            self.runtime.report("offload", f"{why}: the offloaded program and its maps went "
                                           f"with the old device; offloading again (map "
                                           f"contents start over)")
        self.state = "none"
        self.device_ready()

    async def place(self, contents: NameEntries | None = None) -> None:
        """Offload the program to the device, or as the mode says when it cannot
        (`contents`: entries its maps start with, by map name, carried over from the
        device the guest moved from)."""
        program, client = self.program, self.client
        assert program is not None and client is not None
        self.placements += 1
        try:
            async with self._lock:  # the agent's first call opens its session
                client.caps = await self.carrier.capabilities()
            report = client.check(program)
            if not report.accepted:
                pc = report.errors[0][0] if report.errors else -1
                raise OffloadError("offload", E.EACCES,
                                   f"the device's capabilities (profile {client.caps.name}) do "
                                   f"not admit the program: pc {pc}: {report.reason}")
            offloaded = await self.run(client.load(program, contents))
        except OffloadError as exc:
            self._refused(exc, contents)
            return
        self.log = offloaded.log
        self.state, self.reason = "offloaded", ""
        if self.runtime.xdp.attached:  # a driver-mode fallback from before: offload wins
            self.runtime.set_driver_program(None)
        last = offloaded.log.strip().splitlines()[-1] if offloaded.log.strip() else ""
        carried = (f", {sum(map(len, contents.values()))} map entries carried over from the "
                   f"device it moved from" if contents is not None else "")
        self.runtime.report("offload", f"program {program.name} ({program.insn_count} insns) "
                                       f"offloaded with {len(offloaded.maps)} map(s){carried}: "
                                       f"{last}")

    def _refused(self, exc: OffloadError, contents: NameEntries | None = None) -> None:
        self.log = exc.log
        name = errno_name(exc.errno)
        line = exc.log.strip().splitlines()[-1] if exc.log.strip() else str(exc)
        self.reason = f"{name}: {line}"
        lost = (f"; the {sum(map(len, contents.values()))} map entries carried over from the "
                f"device it moved from are dropped" if contents is not None else "")
        if self.mode != "auto":
            self.state = "refused"
            self.runtime.report("offload", f"refused: {self.reason}; no program runs{lost}")
            return
        assert self.program is not None
        native = verify(self.program, profile=NATIVE)
        if not native.accepted:
            self.state = "refused"
            self.runtime.report("offload", f"refused: {self.reason}; driver mode refuses it "
                                           f"too: {native.reason}{lost}")
            return
        self._driver_mode(f"falling back to driver mode: {self.reason}", contents)
        self.state = "driver"

    async def attach(self, program: Program, mode: str) -> None:
        """Place `program` now, as `mode` says (the guest's control socket: `vxdp prog
        attach --guest`), replacing what runs; returns once it is placed or refused."""
        if mode not in MODES:
            raise UsageError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        await self.detach()
        self.program, self.mode = program, mode
        if mode == "driver":
            report = verify(program, profile=NATIVE)
            if not report.accepted:
                raise OffloadError("driver mode", E.EACCES, report.log or report.reason)
            self.runtime.set_driver_program(program)
            self.state, self.reason = "driver", ""
            return
        if self.client is None:
            raise OffloadError("offload", E.ENODEV, "no device is live yet")
        await self.place()

    async def detach(self) -> bool:
        """Remove the program from wherever it runs; False when none did."""
        had = self.state in ("offloaded", "driver")
        client = self.client
        if self.state == "offloaded" and client is not None:
            await self.run(client.unload())
        if self.runtime.xdp.attached:
            self.runtime.set_driver_program(None)
        self.state, self.reason = "none", ""
        return had

    # -- results -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        client = self.client
        off = client.offloaded if client is not None else None
        return {
            "mode": self.mode, "via": self.carrier.via, **self.carrier.stats(),
            "state": self.state, "reason": self.reason,
            "program": self.program.name if self.program is not None else None,
            "tag": self.program.tag if self.program is not None else None,
            "maps": ({m.spec.name: m.handle for m in off.maps} if off is not None else {}),
            "placements": self.placements,
            "log": self.log.strip().splitlines()[-1] if self.log.strip() else "",
        }

    def close(self) -> None:
        self.carrier.close()


def _by_name(client: OffloadClient | None, entries: HandleEntries) -> NameEntries:
    """The entries of a device's maps (by handle) by the names of the guest's maps that
    are on it."""
    offloaded = client.offloaded if client is not None else None
    return {m.spec.name: tuple(entries.get(m.handle, ()))
            for m in (offloaded.maps if offloaded is not None else ())}


__all__ = ["CTRL_TIMEOUT", "MODES", "VIAS", "Carrier", "ControlQueueCarrier", "GuestOffload"]
