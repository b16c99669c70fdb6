"""The two paths of the 2019 RFC's review thread, measured side by side.

    controlq   libbpf (guest) -> virtio_net driver -> control virtqueue -> device
    agent      libbpf (guest) -> guest agent -> host agent -> device

Jakub Kicinski asked why the offload is not forwarded at a higher layer; Jason Wang
answered that this takes a library and agents in the guest and on the host, cannot
serve virtio-net hardware, and that bytecode over virtio was chosen with migration in
mind.  Here both paths run the same program through the same operations
(`guest.offload`), into the same device offload (`host.offload`) and the same datapath
slot (the C port's offload slot): only the transport differs, so what differs below is
what the transport costs and what it survives.

`compare_paths()` measures, in one run, `runs` times per path (alternating, so a machine
slowing down mid-run costs both alike; `compare.run_placement` does each):

    setup       the guest's DRIVER_OK (receive buffers posted) to the program running on
                the host: maps created, program sent, verified by the device, attached
    updates/s   map UPDATE_ELEM round trips from the guest, one after another
    Mpps        the same seeded frames through the offloaded program (the C datapath);
                the same datapath either way, so this should agree within noise

and `survival()` what each path survives, each scenario once per path:

    no host agent      the host runs no agent (an older host): `--mode auto`
    unpatched driver   the guest's driver does not negotiate VIRTIO_NET_F_XDP_OFFLOAD (a
                       kernel without the RFC's patches): `--mode auto`
    host restart       the host process restarts under the running guest (vhost-user
                       reconnect: a new device and a new host agent); how long until the
                       program runs again, and whether its maps kept their contents
    migration          `runs` live migrations of the guest's back-end from host A to host
                       B (`GuestRuntime.migrate`), frames arriving at A at MIGRATION_RATE
                       throughout: the downtime and the frames lost (the migration
                       report's, min/median/max), then on B: the program, a marker map
                       entry written on A, the program's counters (kept, and counting on
                       over COUNTER_FRAMES more frames), read from the guest over its path.
                       The agent path's channel is bound to A's host agent: the migration
                       is told B's (`agent=`) and re-binds there (timed)
    migration, no agent  the same move, once, to a host B that runs no host agent, with
                       the fallback policy: the control queue needs none; the agent path
                       cannot take its offload along (its channel has nowhere to go) and
                       the program moves into the guest's driver with its map entries

Everything runs in this process, the host and the guest runtime on one trio loop over a
socketpair (vhost-user) and a Unix socket in a temporary directory (the agent): a round
trip includes both ends' work on one thread.  Nothing is precomputed.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from guest import SUPPORTED_FEATURES
from virtio_spec.features import VirtioNetFeature
from vxdp.bpf.program import MapSpec, MapType, Program
from vxdp.packets import TrafficGenerator

from .compare import Row, demo_program, reference_actions, run_placement
from .guest import GuestRuntime
from .host import HostRuntime
from .migration import MigrationReport
from .offload import VIAS
from .wire import NullPort, WireSpec

SCENARIOS = ("no host agent", "unpatched driver", "host restart", "migration",
             "migration, no agent")
#: Frames a second reaching the source host while the guest's back-end moves (what the
#: frames lost are counted against), and the frames sent to B after the move (what the
#: counters must grow by).
MIGRATION_RATE = 2000
COUNTER_FRAMES = 64
METRICS = (("setup_ms", "setup ms"), ("updates_per_s", "updates/s"), ("mpps", "Mpps"))


@dataclass(frozen=True)
class Spread:
    """min, median, max of one metric over the runs."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values))

    def text(self, digits: int) -> str:
        return "/".join(f"{v:.{digits}f}" for v in (self.low, self.median, self.high))


@dataclass
class Survival:
    """One path in one scenario: where the program ended up, and why."""

    scenario: str
    via: str
    outcome: str  # offloaded, re-offloaded, migrated, driver, refused, lost
    detail: str
    seconds: float | None = None
    code: str = ""  # the errno's name of a refusal or fallback (ENOENT, EOPNOTSUPP...)
    runs: int = 0  # migration: the moves measured, and over them:
    downtime_ms: Spread | None = None
    frames_lost: Spread | None = None
    rebind_ms: Spread | None = None  # the agent path: its channel re-bound on B

    def text(self) -> str:
        took = f" in {self.seconds * 1e3:.1f} ms" if self.seconds is not None else ""
        return f"{self.outcome}{took}" + (f": {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PathsReport:
    """Both paths measured: the runs (compare.Row each) and the scenarios."""

    program: str
    frames: int
    updates: int
    expected: dict[str, int]
    runs: list[Row] = field(default_factory=list)
    survival: list[Survival] = field(default_factory=list)

    def of(self, via: str) -> list[Row]:
        return [r for r in self.runs if r.via == via]

    def spread(self, via: str) -> dict[str, Spread]:
        """min/median/max of setup ms, updates/s and Mpps over the path's runs."""
        rows = [r.to_json() for r in self.of(via)]
        return {key: Spread.of([float(r[key] or 0.0) for r in rows]) for key, _ in METRICS}

    @property
    def agree(self) -> bool:
        """Every run moved every frame and reproduced the reference's actions."""
        return bool(self.runs) and all(r.complete and r.actions == self.expected
                                       for r in self.runs)

    def table(self) -> list[str]:
        """Header and one line per path: min/median/max of each metric."""
        head = ["path", "runs", *(f"{name} min/med/max" for _, name in METRICS)]
        digits = {"setup_ms": 1, "updates_per_s": 0, "mpps": 3}
        body = [[via, str(len(self.of(via))),
                 *(self.spread(via)[key].text(digits[key]) for key, _ in METRICS)]
                for via in VIAS if self.of(via)]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        return ["  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                          for i, (x, w) in enumerate(zip(line, widths))).rstrip()
                for line in [head, *body]]

    def to_json(self) -> dict[str, Any]:
        return {"program": self.program, "frames": self.frames, "updates": self.updates,
                "expected": self.expected, "agree": self.agree,
                "runs": [r.to_json() for r in self.runs],
                "spread": {via: {k: asdict(v) for k, v in self.spread(via).items()}
                           for via in VIAS if self.of(via)},
                "survival": [s.to_json() for s in self.survival]}


def compare_paths(program: Program | None = None, *, count: int = 16384, runs: int = 3,
                  updates: int = 200, seed: int = 7, profile: str = "host",
                  timeout: float = 10.0, scenarios: bool = True) -> PathsReport:
    """Measure both paths (`runs` each, alternating) and, with `scenarios`, what each
    survives (see the module docstring)."""
    prog = program if program is not None else demo_program()
    frames = TrafficGenerator(seed, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.1, "icmp4": 0.1},
                              vlan_share=0.0).packets(count)
    report = PathsReport(prog.name, count, updates if prog.maps else 0,
                         reference_actions(prog, frames))

    async def main() -> None:
        for _ in range(runs):
            for via in VIAS:
                report.runs.append(await run_placement(
                    "offload", "c", prog, frames, report.expected, profile, timeout, via=via,
                    updates=report.updates))
        if scenarios:
            report.survival.extend(await survival(prog, profile=profile, timeout=timeout,
                                                  runs=runs))
    trio.run(main)
    return report


# -- what each path survives ----------------------------------------------------------------


class _Stage:
    """One guest and a host that can be restarted under it: vhost-user over a fresh
    socketpair per host, the host agent (when the host runs one) at the same path; and
    the hosts a migration moves the guest's back-end to."""

    def __init__(self, nursery: trio.Nursery, tmp: str, profile: str, *,
                 agent: bool) -> None:
        self.nursery = nursery
        self.tmp = tmp
        self.profile = profile
        self.path = os.path.join(tmp, "guest0.agent")
        self.agent = agent
        self.host: HostRuntime | None = None
        self.destinations: list[HostRuntime] = []
        self._scope: trio.CancelScope | None = None
        self._ended: trio.Event | None = None
        self._dials, self._dialled = trio.open_memory_channel[trio.socket.SocketType](2)

    async def dial(self) -> trio.socket.SocketType:
        return await self._dialled.receive()

    async def _serve(self, agent: str | None) -> tuple[HostRuntime, trio.socket.SocketType,
                                                       trio.CancelScope, trio.Event]:
        """A host with one guest socket (and its host agent at `agent`), serving one
        end of a new socketpair; the other end, for a guest to use."""
        host = HostRuntime(["guest0"], profile=self.profile, wire=NullPort(WireSpec("null")),
                           agents=[agent] if agent is not None else [])
        a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        scope, ended = trio.CancelScope(), trio.Event()

        async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
            try:
                with scope:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(host.serve_agents)  # before the guest dials
                        task_status.started()
                        await host.guests[0].serve_socket(a)
                        nursery.cancel_scope.cancel()
            finally:
                a.close()
                ended.set()
        await self.nursery.start(serve)
        return host, b, scope, ended

    async def start_host(self) -> HostRuntime:
        host, b, self._scope, self._ended = await self._serve(
            self.path if self.agent else None)
        self.host = host
        self._dials.send_nowait(b)
        return host

    async def destination(self, *, agent: bool) -> tuple[HostRuntime, trio.socket.SocketType,
                                                         str]:
        """Host B beside the guest's host: a socket its guest socket serves (a
        migration's `to`) and the path of its host agent for the guest (served when
        `agent`)."""
        path = os.path.join(self.tmp, f"guest0-{len(self.destinations)}.agent")
        host, b, _, _ = await self._serve(path if agent else None)
        self.destinations.append(host)
        return host, b, path

    async def stop_host(self) -> None:
        """The host process goes away: its vhost-user end and its agent socket."""
        if self._scope is None or self._ended is None or self.host is None:
            return
        self._scope.cancel()
        await self._ended.wait()
        self.host.close()
        self.host = None

    def close(self) -> None:
        for host in [self.host, *self.destinations]:
            if host is not None:
                host.close()
        self.host, self.destinations = None, []
        self._dials.close()
        self._dialled.close()


async def _placed(guest: GuestRuntime, placements: int, timeout: float) -> float | None:
    """Seconds until the guest's `placements`-th placement ended (None: not in time)."""
    start = time.perf_counter()
    with trio.move_on_after(timeout):
        while not (guest.offload.placements >= placements
                   and guest.offload.state in ("offloaded", "driver", "refused")):
            await trio.sleep(0.0005)
        return time.perf_counter() - start
    return None


def _outcome(scenario: str, guest: GuestRuntime, seconds: float | None) -> Survival:
    off = guest.offload
    via = off.carrier.via
    if seconds is None:
        return Survival(scenario, via, "lost", f"no placement within the deadline "
                                               f"(state {off.state})")
    if off.state == "offloaded":
        return Survival(scenario, via, "offloaded", "", seconds)
    code = off.reason.split(":", 1)[0]
    if off.state == "driver":
        return Survival(scenario, via, "driver", f"fell back to driver mode: {off.reason}",
                        seconds, code)
    return Survival(scenario, via, "refused", off.reason, seconds, code)


async def _scenario(scenario: str, via: str, program: Program, profile: str,
                    timeout: float, runs: int = 1) -> Survival:
    if scenario.startswith("migration"):
        return await _migrations(scenario, via, program, profile, timeout,
                                 runs if scenario == "migration" else 1)
    features = SUPPORTED_FEATURES
    if scenario == "unpatched driver":
        features &= ~(1 << VirtioNetFeature.VIRTIO_NET_F_XDP_OFFLOAD)
    mode = "offload" if scenario == "host restart" else "auto"
    with tempfile.TemporaryDirectory(prefix="vxdp-agent-") as tmp:
        guest: GuestRuntime | None = None
        stage: _Stage | None = None
        try:
            async with trio.open_nursery() as nursery:
                stage = _Stage(nursery, tmp, profile, agent=scenario != "no host agent")
                guest = GuestRuntime(None, port=NullPort(WireSpec("null")), offload=program,
                                     mode=mode, features=features, retry=0.01,
                                     agent=stage.path if via == "agent" else None)
                await nursery.start(lambda task_status: guest.run(
                    dial=stage.dial, task_status=task_status))
                await stage.start_host()
                seconds = await _placed(guest, 1, timeout)
                if scenario == "host restart":
                    result = await _restart(stage, guest, seconds, timeout)
                else:
                    result = _outcome(scenario, guest, seconds)
                nursery.cancel_scope.cancel()
        finally:
            if guest is not None:
                guest.close()
            if stage is not None:
                stage.close()
    return result


async def _restart(stage: _Stage, guest: GuestRuntime, first: float | None,
                   timeout: float) -> Survival:
    """Offloaded, a marker written into the map; the host restarts; the time until the
    program runs again, and whether the marker survived."""
    before = _outcome("host restart", guest, first)
    client = guest.offload.client
    if before.outcome != "offloaded" or client is None or client.offloaded is None:
        return before
    m = client.offloaded.maps[0]
    key, marker = _marker(m.spec)
    await guest.offload.run(client.update(m.handle, key, marker))
    await stage.stop_host()
    await stage.start_host()
    seconds = await _placed(guest, 2, timeout)
    after = _outcome("host restart", guest, seconds)
    client = guest.offload.client
    if after.outcome != "offloaded" or client is None or client.offloaded is None:
        return after
    m = client.offloaded.maps[0]
    kept = await guest.offload.run(client.lookup(m.handle, key)) == marker
    after.outcome = "re-offloaded"
    after.detail = ("map contents kept" if kept else
                    "map contents started over (they went with the old device)")
    return after


def _marker(spec: MapSpec) -> tuple[bytes, bytes]:
    """A key the demo program never counts under (an array's last: XDP_REDIRECT) and a
    value nobody else writes: what a map kept shows."""
    key = spec.max_entries - 1 if spec.type is MapType.ARRAY else 0
    return key.to_bytes(spec.key_size, "little"), bytes([0xA5]) * spec.value_size


# -- migration -------------------------------------------------------------------------


@dataclass
class _Move:
    """One migration of the guest's back-end, and what the destination was found with."""

    report: MigrationReport
    problems: list[str]  # what did not hold on the destination (empty: everything did)
    placement: str = ""  # where the program ran after the move (offloaded, driver)


class _Reader:
    """The program's first map as the guest reaches it: over its path (the control
    queue, or its agent) while offloaded, or in its driver after a fallback."""

    def __init__(self, guest: GuestRuntime) -> None:
        self.guest = guest

    async def get(self, key: bytes) -> bytes | list[bytes] | None:
        off = self.guest.offload
        client = off.client
        if off.state == "offloaded" and client is not None and client.offloaded is not None:
            return await off.run(client.lookup(client.offloaded.maps[0].handle, key))
        maps = self.guest.xdp.maps
        return maps[0].lookup(key) if maps else None

    async def counters(self, spec: MapSpec, marker_key: bytes) -> dict[bytes, int]:
        """Every counter of the map (the marker's key left out)."""
        out = {}
        for n in range(spec.max_entries):
            key = n.to_bytes(spec.key_size, "little")
            if key != marker_key:
                value = await self.get(key)
                # a per-CPU map's driver copy answers a value per CPU: the counter is their sum
                values = value if isinstance(value, list) else [value or b""]
                out[key] = sum(int.from_bytes(v, "little") for v in values)
        return out


async def _feed(host: HostRuntime, frames: list[bytes], stop: trio.Event) -> None:
    """Frames into `host` from its wire at MIGRATION_RATE until `stop`, whatever the host
    does with them (a stopped source counts them lost)."""
    start, sent = time.perf_counter(), 0
    while not stop.is_set():
        due = int((time.perf_counter() - start) * MIGRATION_RATE) - sent
        if due > 0:
            burst = [frames[(sent + i) % len(frames)] for i in range(due)]
            host.from_wire(burst)
            sent += due
        await trio.sleep(0.002)


async def _through(host: HostRuntime, frames: list[bytes]) -> None:
    """Frames into `host` as fast as its guest takes them."""
    at = 0
    while at < len(frames):
        room = await host.wait_for_room(min(32, len(frames) - at))
        host.from_wire(frames[at:at + room])
        at += room
        await trio.lowlevel.checkpoint()


async def _move(via: str, program: Program, profile: str, timeout: float,
                frames: list[bytes], after: dict[str, int], *, agent_on_b: bool,
                policy: str) -> _Move | Survival:
    """Offload on host A, frames into A, migrate to host B; on B: the program, the
    marker and the counters.  A Survival when the program was never offloaded on A."""
    spec = program.maps[0]
    key, marker = _marker(spec)
    with tempfile.TemporaryDirectory(prefix="vxdp-migrate-") as tmp:
        guest: GuestRuntime | None = None
        stage: _Stage | None = None
        try:
            async with trio.open_nursery() as nursery:
                stage = _Stage(nursery, tmp, profile, agent=True)
                guest = GuestRuntime(None, port=NullPort(WireSpec("null")), offload=program,
                                     mode="offload", retry=0.01,
                                     agent=stage.path if via == "agent" else None)
                await nursery.start(lambda task_status: guest.run(
                    dial=stage.dial, task_status=task_status))
                a = await stage.start_host()
                placed = _outcome("migration", guest, await _placed(guest, 1, timeout))
                client = guest.offload.client
                if placed.outcome != "offloaded" or client is None or \
                        client.offloaded is None:
                    nursery.cancel_scope.cancel()
                    return placed
                await guest.offload.run(client.update(client.offloaded.maps[0].handle,
                                                      key, marker))
                await _through(a, frames[:256])  # counts a device starting over would lose
                reader = _Reader(guest)
                before = await reader.counters(spec, key)
                b, to, b_agent = await stage.destination(agent=agent_on_b)
                stop = trio.Event()
                nursery.start_soon(_feed, a, frames, stop)
                report = await guest.migrate(to, policy=policy,
                                             agent=b_agent if via == "agent" else None)
                stop.set()
                move = _Move(report, [], guest.offload.state)
                if report.outcome != "refused":
                    await _check_destination(move, guest, b, reader, before, frames, after,
                                             spec, key, marker, timeout)
                nursery.cancel_scope.cancel()
        finally:
            if guest is not None:
                guest.close()
            if stage is not None:
                stage.close()
    return move


async def _check_destination(move: _Move, guest: GuestRuntime, b: HostRuntime,
                             reader: _Reader, before: dict[bytes, int], frames: list[bytes],
                             after: dict[str, int], spec: MapSpec, key: bytes,
                             marker: bytes, timeout: float) -> None:
    """On B: the program (offloaded: on B's device; else in the guest's driver), the
    marker, the counters as A left them (at least what was read before the move), and
    COUNTER_FRAMES more frames counted on top.  What does not hold goes to `problems`."""
    port = b.guests[0]
    problems = move.problems
    with trio.move_on_after(timeout):
        while not (port.live and port.rx_posted):
            await trio.sleep(0.001)
    info = port.offload_info().get("program")
    program = guest.offload.program
    if move.placement == "offloaded" and (info is None or program is None
                                          or info["tag"] != program.tag):
        problems.append("the program is not on the destination's device")
    if await reader.get(key) != marker:
        problems.append("the marker entry was not kept")
    kept = await reader.counters(spec, key)
    if any(kept[k] < before[k] for k in before) or not sum(before.values()):
        problems.append("the counters started over")
    await _through(b, frames[:COUNTER_FRAMES])
    want = sum(kept.values()) + COUNTER_FRAMES
    with trio.move_on_after(timeout):
        while sum((now := await reader.counters(spec, key)).values()) < want:
            await trio.sleep(0.002)
    actions = list(after.values())
    if [now[k] - kept[k] for k in kept] != actions[:len(kept)]:
        problems.append(f"the counters did not go on: {COUNTER_FRAMES} frames on the "
                        f"destination counted {[now[k] - kept[k] for k in kept]}, not "
                        f"{actions[:len(kept)]}")


async def _migrations(scenario: str, via: str, program: Program, profile: str,
                      timeout: float, runs: int) -> Survival:
    """`runs` moves from A to B (see the module docstring): one Survival with the
    spreads of the downtime, the frames lost and the agent's re-bind."""
    frames = TrafficGenerator(11, mix={"udp4": 0.5, "tcp4": 0.3, "udp6": 0.1,
                                       "icmp4": 0.1}, vlan_share=0.0).packets(1024)
    after = reference_actions(program, frames[:COUNTER_FRAMES])
    no_agent = scenario != "migration"
    moves: list[_Move] = []
    for _ in range(runs):
        move = await _move(via, program, profile, timeout, frames, after,
                           agent_on_b=not no_agent, policy="fallback" if no_agent else "refuse")
        if isinstance(move, Survival):
            return move
        moves.append(move)
    return _summary(scenario, via, moves)


def _summary(scenario: str, via: str, moves: list[_Move]) -> Survival:
    reports = [m.report for m in moves]
    last = reports[-1]
    out = Survival(scenario, via, "migrated", "", runs=len(moves))
    timed = [r for r in reports if r.downtime_ms is not None]
    if timed:
        out.downtime_ms = Spread.of([float(r.downtime_ms or 0) for r in timed])
        out.frames_lost = Spread.of([float(r.frames_lost or 0) for r in timed])
    rebinds = [r.timings_ms["rebind"] for r in reports if "rebind" in r.timings_ms]
    if rebinds:
        out.rebind_ms = Spread.of(rebinds)
    problems = sorted({p for m in moves for p in m.problems})
    if any(r.outcome == "refused" for r in reports):
        out.outcome, out.detail = "refused", last.reason
    elif problems:
        out.outcome, out.detail = "lost", "; ".join(problems)
    elif all(r.outcome == "migrated" for r in reports):
        held = (f"{len(moves)}/{len(moves)} moves: program, map entries and counters on the "
                f"destination, counting on")
        rebind = (f"; agent channel re-bound to the destination's host agent in "
                  f"{out.rebind_ms.text(1)} ms" if out.rebind_ms else "")
        out.detail = held + _measured(out) + rebind
    else:  # the fallback: the offload stayed behind
        out.outcome = "driver"
        out.code = next((w for w in re.findall(r"\bE[A-Z]+\b", last.reason)), "")
        out.detail = (f"moved without the offload: {last.reason}; in the guest's driver "
                      f"with {last.map_entries} map entries carried over, counting on"
                      + _measured(out))
    return out


def _measured(s: Survival) -> str:
    if s.downtime_ms is None or s.frames_lost is None:
        return ""
    return (f"; downtime {s.downtime_ms.text(1)} ms, frames lost {s.frames_lost.text(0)}"
            + (" (min/med/max)" if s.runs > 1 else ""))


async def survival(program: Program | None = None, *, profile: str = "host",
                   timeout: float = 10.0, runs: int = 3) -> list[Survival]:
    """Every scenario once per path, the migration `runs` times (see the module
    docstring)."""
    prog = program if program is not None else demo_program()
    return [await _scenario(scenario, via, prog, profile, timeout, runs)
            for scenario in SCENARIOS for via in VIAS]


__all__ = ["COUNTER_FRAMES", "METRICS", "MIGRATION_RATE", "SCENARIOS", "PathsReport", "Spread", "Survival",
           "compare_paths", "survival"]
