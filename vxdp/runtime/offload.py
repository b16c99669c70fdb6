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
migration that cannot take the offload along (`fall_back`) runs the program in driver
mode on the next device, its maps filled with the entries the offloaded maps held.

Every control command waits at most CTRL_TIMEOUT for its answer (a device verifying a
large program takes seconds; one that never answers must not hold the guest).
"""

from __future__ import annotations

import errno as E
import logging
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
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
        #: set by a migration that gave up the offload: the next device runs the program
        #: in driver mode, its maps filled with the entries (by device handle) it carried
        self._fallback: tuple[str, dict[int, tuple[tuple[bytes, bytes], ...]]] | None = None
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
        if self._fallback is not None:
            self._driver_mode_after_migration(old)
        elif self.program is not None and self.mode != "driver":
            self.runtime.spawn(self.place)

    def fall_back(self, reason: str,
                  entries: dict[int, tuple[tuple[bytes, bytes], ...]]) -> None:
        """A migration moves the guest to a device that cannot run the offload: on the
        next device the program runs in driver mode, its maps holding `entries` (the
        source device's, by handle), and the reason is reported."""
        self._fallback = (reason, entries)

    def _driver_mode_after_migration(self, old: OffloadClient | None) -> None:
        assert self._fallback is not None
        reason, entries = self._fallback
        self._fallback = None
        program = self.program
        if program is None or self.state != "offloaded":
            return  # nothing was offloaded: what runs in the driver runs on
        self.runtime.set_driver_program(program)
        moved = 0
        offloaded = old.offloaded if old is not None else None
        by_name = {m.spec.name: m for m in (offloaded.maps if offloaded else ())}
        for spec, m in zip(program.maps, self.runtime.xdp.maps or ()):
            guest_map = by_name.get(spec.name)
            for key, value in entries.get(guest_map.handle, ()) if guest_map else ():
                m.update(key, value)
                moved += 1
        self.state, self.reason = "driver", reason
        self.runtime.report("offload", f"falling back to driver mode: {reason}; {moved} "
                                       f"map entries carried over from the offloaded maps")

    def device_replaced(self, why: str) -> None:
        """The rings resumed on a new device (the host restarted): what was offloaded
        went with the old one."""
        if self.state == "offloaded":
            self.runtime.report("offload", f"{why}: the offloaded program and its maps went "
                                           f"with the old device; offloading again (map "
                                           f"contents start over)")
        self.state = "none"
        self.device_ready()

    async def place(self) -> None:
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
            offloaded = await self.run(client.load(program))
        except OffloadError as exc:
            self._refused(exc)
            return
        self.log = offloaded.log
        self.state, self.reason = "offloaded", ""
        if self.runtime.xdp.attached:  # a driver-mode fallback from before: offload wins
            self.runtime.set_driver_program(None)
        last = offloaded.log.strip().splitlines()[-1] if offloaded.log.strip() else ""
        self.runtime.report("offload", f"program {program.name} ({program.insn_count} insns) "
                                       f"offloaded with {len(offloaded.maps)} map(s): {last}")

    def _refused(self, exc: OffloadError) -> None:
        self.log = exc.log
        name = errno_name(exc.errno)
        line = exc.log.strip().splitlines()[-1] if exc.log.strip() else str(exc)
        self.reason = f"{name}: {line}"
        if self.mode != "auto":
            self.state = "refused"
            self.runtime.report("offload", f"refused: {self.reason}; no program runs")
            return
        assert self.program is not None
        native = verify(self.program, profile=NATIVE)
        if not native.accepted:
            self.state = "refused"
            self.runtime.report("offload", f"refused: {self.reason}; driver mode refuses it "
                                           f"too: {native.reason}")
            return
        self.runtime.set_driver_program(self.program)
        self.state = "driver"
        self.runtime.report("offload", f"falling back to driver mode: {self.reason}")

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


__all__ = ["CTRL_TIMEOUT", "MODES", "VIAS", "Carrier", "ControlQueueCarrier", "GuestOffload"]
