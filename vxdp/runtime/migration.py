"""Live migration from the guest process: its vhost-user back-end moves from one host to
another while the guest (the VMM, its memory, the driver, the rings) stays.

This is what QEMU does when it migrates a VM between two vhost-user back-ends, from the
point of view of the back-ends: the source is stopped and its state saved, the
destination is loaded with it and resumes every ring where the source stopped, and the
driver never notices.  Here the guest process plays QEMU's front-end on both sides, over
two vhost-user connections at once.

    1. pre-check (the source runs on)   connect to the destination; it must offer the
       protocol features the move needs (STATUS, CONFIG, DEVICE_STATE); its features
       must cover the negotiated ones, its queue layout be the same, its XDP
       capabilities cover the source's when the offload is negotiated
       (`host.migration.shortfalls`, read from GET_FEATURES and its config space)
    2. pause          GET_VRING_BASE on the source's control queue: no command is
                      answered after this (those in the ring stay there)
    3. stop           GET_VRING_BASE on every other ring: the source is suspended, and
                      the downtime starts
    4. save           SET_DEVICE_STATE_FD (SAVE) and CHECK_DEVICE_STATE on the source:
                      its state through a pipe (`host.migration`: versioned msgpack)
    5. load           SET_DEVICE_STATE_FD (LOAD) and CHECK_DEVICE_STATE on the
                      destination: it checks the state field by field, restores the
                      device and re-verifies the offloaded program; a refusal resumes
                      the source (its rings restarted at their bases) and nothing is
                      lost but the frames that came meanwhile
    6. resume         SET_FEATURES, every ring at the source's base, SET_STATUS, kicks:
                      the destination runs, the downtime ends; it asks the guest to
                      announce itself (VIRTIO_NET_S_ANNOUNCE)
    7. leave          one more SAVE on the still-suspended source reads what it counted
                      since it stopped (the frames lost), then its connection closes

When the destination cannot take the device (step 1), `policy` decides: "refuse" (the
default) leaves everything as it was and says why; "fallback" moves the guest anyway
and gives up the offload: the source is stopped and saved (step 2 to 4), the driver
takes every frame the source placed in its rings, re-initializes the device on the
destination (as it would a new device) and runs its program in driver mode, its maps
filled with the entries the source's maps held.  "reoffload" moves it the same way and
then places the program as the guest's mode says, under the destination's own
capabilities: the maps created there, the entries written, then SET_OFFLOAD (the
program never runs on half-filled maps); a destination that refuses the program leaves
it in driver mode (mode auto) or not running (mode offload), said in the report.  That is
passthrough: a guest moved onto a SmartNIC's virtual function offloads to the NIC, which
translates the program for its micro-engine or refuses it.

The agent path (`vxdp guest --via agent`) carries the offload's commands over a channel
to the source host's agent, which is no part of the device: the objects move with the
device (the host agent keeps none of its own), the channel does not.  The migration is
told the destination's host agent for this guest (`agent`), probes it in step 1 (a
shortfall when none is named or none answers, so "refuse" or "fallback" decide), holds
the guest's agent commands from step 2 to the end (a host agent answers outside any
ring, so what the source's answered after its state was saved would be lost), and after
step 7 leaves the source's agent and opens a session with the destination's (`rebind`
in the timings).  A session left open would reach whatever device the source's socket
serves next.

The report (`MigrationReport`) says what happened and gives the downtime (from the
source's stop to the destination's resume, measured here), the frames lost (what reached
the source after it stopped, as the source counted them), the maps and entries moved,
the commands that were waiting in the control queue (answered by the destination) and
what the destination's verifier said.
"""

from __future__ import annotations

import errno as E
import os
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from guest import InitState
from guest.offload import OffloadError
from host import migration as state
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.offload import XdpCapabilities
from virtio_spec.structs import VIRTIO_NET_CONFIG_SIZE, config_ranges, virtio_net_config
from vxdp.errors import MigrationError, UsageError, VhostUserError, VhostUserRemoteError
from vxdp.vhost_user import VhostUserProtocolFeature as PF
from vxdp.vhost_user.transport import load_device_state, save_device_state

from .link import Link

if TYPE_CHECKING:
    from .guest import GuestRuntime

#: What the front-end asks of a back-end it migrates to or from.
NEEDED = {PF.STATUS: "the device status", PF.CONFIG: "config space",
          PF.DEVICE_STATE: "moving the device's state"}
POLICIES = ("refuse", "fallback", "reoffload")
#: The longest a whole migration may take.
TIMEOUT = 60.0
#: The longest the destination may take to answer the opening of its connection.
CONNECT_TIMEOUT = 5.0
#: The most state bytes the guest takes from a source (the destination has its own
#: limit, from its capabilities).
STATE_LIMIT = 1 << 31
_XDP = VirtioNetFeature.VIRTIO_NET_F_XDP_OFFLOAD


@dataclass
class MigrationReport:
    """What a migration did (JSON-ready with `to_json`)."""

    outcome: str  # "migrated", "refused", "fallback", "reoffloaded"
    reason: str
    source: str
    destination: str
    policy: str
    downtime_ms: float | None = None
    frames_lost: int | None = None
    state_bytes: int = 0
    maps: int = 0
    map_entries: int = 0
    commands_in_flight: int = 0
    program: dict[str, Any] | None = None
    reverified: str = ""
    placement: str = ""  # where the guest's program runs afterwards
    agent: str = ""  # the agent path: what became of the guest's agent channel
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """The report as `vxdp migrate` prints it."""
        head = {"migrated": f"migrated to {self.destination}",
                "fallback": f"migrated to {self.destination} without the offload",
                "reoffloaded": f"migrated to {self.destination} and offloaded again",
                "refused": f"not migrated to {self.destination}"}[self.outcome]
        lines = [f"{head}: {self.reason}" if self.reason else head]
        if self.downtime_ms is not None:
            lost = "unknown" if self.frames_lost is None else str(self.frames_lost)
            lines.append(f"\tdowntime {self.downtime_ms:.1f} ms  frames lost {lost}  "
                         f"state {self.state_bytes} bytes")
        if self.maps or self.program:
            lines.append(f"\tmaps {self.maps}  map entries {self.map_entries}  "
                         f"control commands in flight {self.commands_in_flight}")
        if self.program:
            lines.append(f"\tprogram tag {self.program['tag']}  {self.program['insns']} insns"
                         f"  {self.reverified}")
        if self.placement:
            lines.append(f"\tthe guest's program: {self.placement}")
        if self.agent:
            lines.append(f"\tagent channel: {self.agent}")
        if self.timings_ms:
            lines.append("\t" + "  ".join(f"{k} {v:.1f} ms" for k, v in
                                          self.timings_ms.items()))
        return "\n".join(lines)


async def _drop(link: Link) -> None:
    """Close a destination we do not move to (its reader sees the end, then it goes)."""
    link.hang_up()
    with trio.move_on_after(1), trio.CancelScope(shield=True):
        await link.closed.wait()
    link.close()


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)


class Migration:
    """One migration of a GuestRuntime's back-end (see the module docstring)."""

    def __init__(self, rt: GuestRuntime, to: str | os.PathLike[str] | trio.socket.SocketType,
                 policy: str, agent: str | os.PathLike[str] | None = None) -> None:
        if policy not in POLICIES:
            raise UsageError(f"migration policy {policy!r}: choose one of "
                             f"{', '.join(POLICIES)}")
        self.rt = rt
        self.to = to
        self.policy = policy
        self.agent = os.fspath(agent) if agent is not None else None
        name = to if isinstance(to, str | os.PathLike) else "a connected socket"
        self.report = MigrationReport("refused", "", str(rt.path or "a connected socket"),
                                      os.fspath(name) if not isinstance(name, str) else name,
                                      policy)
        self.t: dict[str, float] = {}
        self.bases: dict[int, int] | None = None  # the source's rings, once stopped
        self.handed_over = False  # the destination runs (or the driver starts over there)
        self.profile = ""  # the capabilities the device keeps, by profile name

    def _mark(self, name: str) -> float:
        self.t[name] = now = time.perf_counter()
        return now

    def _refused(self, reason: str) -> MigrationReport:
        self.report.outcome, self.report.reason = "refused", reason
        return self.report

    # -- the whole move ------------------------------------------------------------

    async def run(self) -> MigrationReport:
        rt = self.rt
        src = rt.link
        why = self._why_not(src)
        if why:
            return self._refused(why)
        assert src is not None
        if self._path() is not None and rt.path is not None and \
                os.path.realpath(rt.path) == os.path.realpath(self._path() or ""):
            return self._refused("the guest's back-end is there already")
        self._mark("start")
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                dst = await self._connect()
        except (OSError, VhostUserError) as exc:
            return self._refused(f"the destination cannot be reached: {exc}")
        except trio.TooSlowError:
            return self._refused(f"the destination did not answer within "
                                 f"{CONNECT_TIMEOUT:g} s (a vhost-user host serves one "
                                 f"front-end a socket at a time: is that one taken?)")
        try:
            with trio.fail_after(TIMEOUT):
                reasons = await self._precheck(src, dst)
                self._mark("prechecked")
                if reasons and self.policy == "refuse":
                    await _drop(dst)
                    self._times()
                    return self._refused("; ".join(reasons))
                if reasons:
                    return await self._fall_back(src, dst, "; ".join(reasons))
                async with self._hold():
                    return await self._switch(src, dst)
        except (VhostUserError, MigrationError, trio.TooSlowError) as exc:
            await _drop(dst)
            what = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            resumed = await self._recover(src)
            rt.report("migration", f"migration failed: {what}{resumed}")
            raise MigrationError(f"migration failed: {what}{resumed}",
                                 getattr(exc, "errno", E.EIO)) from exc

    async def _recover(self, src: Link) -> str:
        """A move that broke off after the source stopped and before the destination
        took over: the source goes on where it stopped, if it is still there."""
        rt = self.rt
        if self.bases is None or self.handed_over:
            return ""
        rt.link = src
        try:
            with trio.fail_after(10):
                await self._restart(src, self.bases)
        except (VhostUserError, trio.TooSlowError) as exc:
            return f"; the source could not resume: {exc}"
        await rt.pump()
        return "; the source resumed"

    def _why_not(self, src: Link | None) -> str:
        rt = self.rt
        if src is None or rt.driver.state is not InitState.LIVE:
            return "the guest has no live device to move"
        if rt.features_written is None or rt.features_written >> VirtioFeature.VIRTIO_F_RING_PACKED & 1:
            return "packed rings do not migrate (the back-end reports no used index for them)"
        if not (rt.backend_status and rt.backend_config):
            return "the source keeps neither the device status nor config space"
        if not src.core.has(PF.DEVICE_STATE):
            return ("the source does not offer VHOST_USER_PROTOCOL_F_DEVICE_STATE (19): it "
                    "cannot save its state")
        return ""

    async def _connect(self) -> Link:
        rt = self.rt
        if isinstance(self.to, str | os.PathLike):
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            try:
                await sock.connect(os.fspath(self.to))
            except BaseException:
                sock.close()
                raise
        else:
            sock = self.to
        dst = Link(sock)
        assert rt._nursery is not None
        rt._nursery.start_soon(dst.reader)
        dst.reading = True
        try:
            dst.proto = await rt._opening(dst, rt._nursery)
        except BaseException:
            await _drop(dst)
            raise
        return dst

    async def _config(self, link: Link, offered: int) -> Any:
        buf = bytearray(VIRTIO_NET_CONFIG_SIZE)
        for off, length in config_ranges(offered):
            buf[off:off + length] = bytes((await link.value(
                link.core.get_config(off, length))).data)
        return virtio_net_config.parse(bytes(buf))

    async def _precheck(self, src: Link, dst: Link) -> list[str]:
        """Why the destination cannot take the device transparently (empty: it can)."""
        rt = self.rt
        missing = [f"VHOST_USER_PROTOCOL_F_{f.name} ({int(f)}, {what})"
                   for f, what in NEEDED.items() if not dst.proto >> f & 1]
        if missing:
            return [f"the destination does not offer {', '.join(missing)}"]
        assert rt.features_written is not None
        negotiated = rt.features_written
        offered = int(await dst.value(dst.core.get_features())) & ~(1 << 30)
        mine = await self._config(src, rt.backend_offered)
        theirs = await self._config(dst, offered)
        xdp = bool(negotiated >> _XDP & 1)
        caps = XdpCapabilities.from_config(mine).as_profile("advertised") if xdp else None
        dest_caps = XdpCapabilities.from_config(theirs).as_profile("advertised") \
            if offered >> _XDP & 1 else None
        sizes = [rt.setups[i].size for i in rt.started]
        self.profile = caps.name if caps is not None else ""
        # docs/offload-spec.md [10.2.1]: checked "before the source stops"
        reasons = state.shortfalls(
            state.Destination(offered, int(theirs.max_virtqueue_pairs), dest_caps),
            negotiated=negotiated, max_queue_pairs=int(mine.max_virtqueue_pairs), caps=caps,
            ring_sizes=sizes)
        if rt.offload.state == "offloaded":  # the agent path: its channel must follow
            why = await rt.offload.carrier.probe(self.agent)
            if why:
                reasons.append(why)
        return reasons

    def _hold(self) -> AbstractAsyncContextManager[None]:
        """The agent path's commands wait through the move (`GuestOffload.held`)."""
        offload = self.rt.offload
        return offload.held() if offload.carrier.via == "agent" else nullcontext()

    async def _rebind(self, *, connect: bool) -> None:
        """The offload's carrier follows the device (the agent path: the source host's
        agent is left, the destination's is used; with `connect` its session opens now,
        timed).  A channel that cannot be re-bound leaves the program running on the
        destination and the guest without a way to reach it: the report says so."""
        self._mark("left")
        try:
            self.report.agent = await self.rt.offload.carrier.moved(self.agent,
                                                                    connect=connect)
        except OffloadError as exc:
            self.report.agent = f"not re-bound: {exc}"
            self.rt.report("migration", f"the agent channel could not be re-bound: {exc}")
        if connect and self.report.agent:
            self._mark("rebound")

    async def _stop_source(self, src: Link) -> dict[int, int]:
        """Pause the control queue, then stop every ring: their bases."""
        rt = self.rt
        ctrl = 2 * rt.driver.max_pairs if rt.driver.has(VirtioNetFeature.VIRTIO_NET_F_CTRL_VQ) \
            else None
        bases: dict[int, int] = {}
        if ctrl is not None and ctrl in rt.started:
            setup = rt.setups[ctrl]
            mem = rt.memory.guest
            avail, used = mem.read_u16(setup.driver + 2), mem.read_u16(setup.device + 2)
            self.report.commands_in_flight = (avail - used) & 0xFFFF
            bases[ctrl] = int((await src.value(src.core.get_vring_base(ctrl))).num)
            self.bases = bases
            self._mark("paused")
        for index in sorted(rt.started - {ctrl}):
            bases[index] = int((await src.value(src.core.get_vring_base(index))).num)
            self.bases = bases
            if "stopped" not in self.t:
                self._mark("stopped")
        self.t.setdefault("stopped", time.perf_counter())
        return bases

    async def _save(self, src: Link) -> tuple[bytes, state.SavedDevice]:
        data = await save_device_state(src.send, src.core, limit=STATE_LIMIT)
        return data, state.load(data, limit=STATE_LIMIT)

    async def _switch(self, src: Link, dst: Link) -> MigrationReport:
        rt = self.rt
        r = self.report
        try:
            await self._prepare(dst)
        except VhostUserRemoteError as exc:  # its ring limits show here (SET_VRING_NUM)
            await _drop(dst)
            self._times()
            return self._refused(f"the destination refused the rings: {exc}")
        self._mark("prepared")
        async with rt._pump_lock:  # the driver's requests wait, then go to the destination
            bases = await self._stop_source(src)
            data, saved = await self._save(src)
            self._mark("saved")
            r.state_bytes, r.maps, r.map_entries = len(data), \
                len(saved.offload.maps) if saved.offload else 0, saved.map_entries
            program = saved.offload.program if saved.offload else None
            if program is not None:
                tag = rt.offload.program.tag if rt.offload.program is not None else ""
                r.program = {"tag": tag, "insns": len(program.insns) // 8,
                             "digest": program.digest.hex(), "source_engine": program.engine}
            try:
                await load_device_state(dst.send, dst.core, data)
            except MigrationError as exc:
                self._mark("refused")
                lost = await self._lost(src)
                await self._restart(src, bases)
                self.bases = None  # the source runs again
                self._mark("resumed")
                await _drop(dst)
                r.downtime_ms = _ms(self.t["stopped"], self.t["resumed"])
                r.frames_lost = lost
                r.reverified = "the destination refused the state"
                self._times()
                rt.report("migration", f"the destination refused the state ({exc}); the "
                                       f"source resumed")
                return self._refused(f"the destination refused the state: {exc}")
            self._mark("loaded")
            if program is not None:
                r.reverified = f"accepted by the destination's verifier (profile " \
                               f"{self.profile or 'advertised'})"
            rt.link = dst
            await self._resume(dst, bases)
            self.handed_over = True
            rt.path = self._path() or rt.path
            self._mark("running")
        await rt.pump()
        r.downtime_ms = _ms(self.t["stopped"], self.t["running"])
        r.frames_lost = await self._lost(src)
        self._leave(src, dst)
        await self._rebind(connect=True)
        r.outcome = "migrated"
        r.placement = rt.offload.state if rt.offload.program is not None else ""
        self._times()
        rt.report("migration", f"migrated to {r.destination}: downtime {r.downtime_ms:.1f} ms, "
                               f"{r.frames_lost} frame(s) lost, {r.maps} map(s) with "
                               f"{r.map_entries} entries moved")
        return r

    def _path(self) -> str | None:
        return os.fspath(self.to) if isinstance(self.to, str | os.PathLike) else None

    async def _lost(self, src: Link) -> int | None:
        """What the suspended source dropped since it stopped (one more SAVE: the state
        carries the count)."""
        try:
            _, after = await self._save(src)
        except (VhostUserError, MigrationError):
            return None
        return after.frames_dropped

    async def _restart(self, src: Link, bases: Mapping[int, int]) -> None:
        """The source resumes: every ring started again at its base, kicked."""
        rt = self.rt
        for index in sorted(bases):
            await rt._start_ring(src, rt.setups[index], bases[index])
        for index in sorted(bases):
            rt.kicks[index].signal()
            rt.driver.interrupt(index)
        rt._c_wake.set()

    async def _prepare(self, dst: Link) -> None:
        """What the destination can be told before the source stops (none of it starts a
        ring): the features, every ring's size, areas and call eventfd."""
        rt = self.rt
        assert rt.features_written is not None
        core = dst.core
        await dst.send(core.set_features(rt._backend_part(rt.features_written) | 1 << 30))
        for index in sorted(rt.started):
            setup = rt.setups[index]
            desc, avail, used = (rt.memory.uva(a) for a in (setup.desc, setup.driver,
                                                           setup.device))
            await dst.send(core.set_vring_num(index, setup.size))
            await dst.send(core.set_vring_addr(index, desc, avail, used))
            await dst.send(core.set_vring_call(index, rt.calls[index].fd))

    async def _resume(self, dst: Link, bases: Mapping[int, int]) -> None:
        """The destination goes on where the source stopped (the driver's view of the
        device does not change: no status walk, no config read): each ring's base, its
        kick (the ring starts) and enable, as QEMU's vhost_virtqueue_start would after
        `_prepare`; the status; a kick on every ring."""
        rt = self.rt
        core = dst.core
        for index in sorted(bases):
            await dst.send(core.set_vring_base(index, bases[index]))
            await dst.send(core.set_vring_kick(index, rt.kicks[index].fd))
            if core.protocol_negotiated:
                await dst.send(core.set_vring_enable(index, True))
        await rt._write_status(dst, rt.status_written)
        for index in sorted(bases):
            rt.kicks[index].signal()
            rt.driver.interrupt(index)
        rt._c_wake.set()

    def _leave(self, src: Link, dst: Link) -> None:
        """The source's connection closes; the guest serves the destination's."""
        src.migrated = True
        self.rt._handover = dst
        src.hang_up()

    def _times(self) -> None:
        t, out = self.t, self.report.timings_ms
        for name, (a, b) in {"precheck": ("start", "prechecked"),
                             "prepare": ("prechecked", "prepared"),
                             "pause": ("prepared", "paused"),
                             "stop": ("paused", "stopped"), "save": ("stopped", "saved"),
                             "load": ("saved", "loaded"), "resume": ("loaded", "running"),
                             "restart": ("refused", "resumed"),
                             "rebind": ("left", "rebound")}.items():
            if a in t and b in t and not (name == "resume" and "loaded" not in t):
                out[name] = _ms(t[a], t[b])
        if "loaded" not in t and "saved" in t and "running" in t:  # the fallback
            out["reinit"] = _ms(t["saved"], t["running"])
        if "placed" in t and "running" in t:  # fallback and reoffload: placed again
            out["place"] = _ms(t["running"], t["placed"])

    # -- moving without the device's state --------------------------------------------

    async def _fall_back(self, src: Link, dst: Link, why: str) -> MigrationReport:
        """Move anyway, giving up what the destination cannot take: the driver starts
        over on a new device there and its program runs again with the maps' entries
        carried over: in driver mode (policy fallback), or offloaded to the new device
        as the guest's mode says (policy reoffload)."""
        async with self._hold():  # released before the program is placed again
            await self._move_without_state(src, dst, why)
        await self.rt.offload.settled.wait()  # placed again (offloaded there, or in the driver)
        return self._fallen_back(why)

    async def _move_without_state(self, src: Link, dst: Link, why: str) -> None:
        rt = self.rt
        r = self.report
        async with rt._pump_lock:
            await self._stop_source(src)
            data, saved = await self._save(src)
            self._mark("saved")
            r.state_bytes, r.map_entries = len(data), saved.map_entries
            r.maps = len(saved.offload.maps) if saved.offload else 0
            rt._drain()
            entries = {m.handle: m.entries for m in saved.offload.maps} \
                if saved.offload else {}
            replace = self.policy == "reoffload"
            rt.offload.moved(f"the destination cannot take the device's state: {why}"
                             if replace else f"the destination cannot run the offload: {why}",
                             entries, replace=replace)
            self.handed_over = True  # from here the driver starts over on the destination
            rt.link = dst
            rt.path = self._path() or rt.path
            rt.epoch += 1  # commands in flight went with the source's device
            rt.started.clear()
            rt._c_hand_back("migration without the offload")
            ready = rt._device_ready = trio.Event()
            rt.driver.initialize()
        await rt.pump()
        await ready.wait()
        self._mark("running")
        r.downtime_ms = _ms(self.t["stopped"], self.t["running"])
        r.frames_lost = await self._lost(src)
        self._leave(src, dst)
        await self._rebind(connect=False)

    def _fallen_back(self, why: str) -> MigrationReport:
        rt = self.rt
        r = self.report
        replace = self.policy == "reoffload"
        self._mark("placed")
        r.outcome, r.reason = ("reoffloaded" if replace else "fallback"), why
        state = rt.offload.state
        r.placement = (f"{state} mode (the offload stayed behind)" if not replace else
                       f"offloaded to the destination, {r.map_entries} map entries written "
                       f"before its program" if state == "offloaded" else
                       f"{state}: {rt.offload.reason}")
        r.reverified = ("not moved: the guest runs its program in driver mode" if not replace
                        else "not moved: the guest offloaded the program again under the "
                             "destination's capabilities")
        self._times()
        rt.report("migration", f"migrated to {r.destination} without the device's state "
                               f"({why}): downtime {r.downtime_ms:.1f} ms, {r.frames_lost} "
                               f"frame(s) lost, {r.map_entries} map entries carried over; "
                               f"the program: {r.placement}")
        return r


async def migrate(rt: GuestRuntime, to: str | os.PathLike[str] | trio.socket.SocketType, *,
                  policy: str = "refuse",
                  agent: str | os.PathLike[str] | None = None) -> MigrationReport:
    """Move `rt`'s back-end to the host serving `to`, and the agent path's channel to
    the host agent at `agent` (see the module docstring)."""
    return await Migration(rt, to, policy, agent).run()


__all__ = ["NEEDED", "POLICIES", "TIMEOUT", "Migration", "MigrationReport", "migrate"]
