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
    migration          not built in vxdp yet: reported as not measured, never as a result

Everything runs in this process, the host and the guest runtime on one trio loop over a
socketpair (vhost-user) and a Unix socket in a temporary directory (the agent): a round
trip includes both ends' work on one thread.  Nothing is precomputed.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from guest import SUPPORTED_FEATURES
from virtio_spec.features import VirtioNetFeature
from vxdp.bpf.program import MapType, Program
from vxdp.packets import TrafficGenerator

from .compare import Row, demo_program, reference_actions, run_placement
from .guest import GuestRuntime
from .host import HostRuntime
from .offload import VIAS
from .wire import NullPort, WireSpec

SCENARIOS = ("no host agent", "unpatched driver", "host restart", "migration")
#: Why migration has no numbers (vxdp has no migration to run yet).
MIGRATION_NOTE = "vxdp has no live migration yet"
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
    outcome: str  # offloaded, re-offloaded, driver, refused, lost, not measured
    detail: str
    seconds: float | None = None
    code: str = ""  # the errno's name of a refusal or fallback (ENOENT, EOPNOTSUPP...)

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
            report.survival.extend(await survival(prog, profile=profile, timeout=timeout))
    trio.run(main)
    return report


# -- what each path survives ----------------------------------------------------------------


class _Stage:
    """One guest and a host that can be restarted under it: vhost-user over a fresh
    socketpair per host, the host agent (when the host runs one) at the same path."""

    def __init__(self, nursery: trio.Nursery, tmp: str, profile: str, *,
                 agent: bool) -> None:
        self.nursery = nursery
        self.profile = profile
        self.path = os.path.join(tmp, "guest0.agent")
        self.agent = agent
        self.host: HostRuntime | None = None
        self._scope: trio.CancelScope | None = None
        self._ended: trio.Event | None = None
        self._dials, self._dialled = trio.open_memory_channel[trio.socket.SocketType](2)

    async def dial(self) -> trio.socket.SocketType:
        return await self._dialled.receive()

    async def start_host(self) -> HostRuntime:
        host = HostRuntime(["guest0"], profile=self.profile, wire=NullPort(WireSpec("null")),
                           agents=[self.path] if self.agent else [])
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
        self.host, self._scope, self._ended = host, scope, ended
        self._dials.send_nowait(b)
        return host

    async def stop_host(self) -> None:
        """The host process goes away: its vhost-user end and its agent socket."""
        if self._scope is None or self._ended is None or self.host is None:
            return
        self._scope.cancel()
        await self._ended.wait()
        self.host.close()
        self.host = None

    def close(self) -> None:
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
                    timeout: float) -> Survival:
    if scenario == "migration":
        return Survival(scenario, via, "not measured", MIGRATION_NOTE)
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
                if stage.host is not None:
                    stage.host.close()
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
    key = ((m.spec.max_entries - 1 if m.spec.type is MapType.ARRAY else 0)
           .to_bytes(m.spec.key_size, "little"))
    marker = bytes([0xA5]) * m.spec.value_size
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


async def survival(program: Program | None = None, *, profile: str = "host",
                   timeout: float = 10.0) -> list[Survival]:
    """Every scenario, once per path (see the module docstring)."""
    prog = program if program is not None else demo_program()
    return [await _scenario(scenario, via, prog, profile, timeout)
            for scenario in SCENARIOS for via in VIAS]


__all__ = ["METRICS", "MIGRATION_NOTE", "SCENARIOS", "PathsReport", "Spread", "Survival",
           "compare_paths", "survival"]
