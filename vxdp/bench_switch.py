"""Mpps of the host's switch with 1, 2 and 4 guests: host-attached XDP_DROP, `vxdp host`
in this process, one `vxdp guest` child process a guest (no program of its own).

    host XDP_DROP, N guests   a wire repeating 60-byte frames addressed to the N guests'
                              MACs in turn; each frame is switched to its guest and
                              dropped by the host-attached xdp_drop on that guest's port

Each N is measured twice in the same run, the windows taking turns: with the switch and
the wire's rounds in C (`HostRuntime.c_switch`, the default) and with the per-frame
Python switch in front of the same C ports (the reference: what the host did before).
The figure is the frames the ports' program dropped over a timed window after a warm-up,
best of `rounds`.  The issue's target: 4 guests at least 0.8x the 1-guest rate, both
from the same run.  A benchmark, never a test: nothing asserts a rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import trio

from vxdp import dpdk
from vxdp.bench_datapath import FRAME, PROGS
from vxdp.bench_dpdk import RepeatWire
from vxdp.bench_process import _spawn_guest, _stop
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.errors import VxdpError

GUESTS = (1, 2, 4)
SWITCHES = ("c", "python")
TARGET = 0.8  # 4 guests / 1 guest, the C switch


@dataclass(frozen=True)
class SwitchFigure:
    guests: int
    switch: str  # "c" or "python"
    mpps: float
    frames: int
    seconds: float


@dataclass
class SwitchReport:
    figures: list[SwitchFigure] = field(default_factory=list)
    cpus: int = 0
    load: str = ""
    skipped: str | None = None

    def best(self, guests: int, switch: str = "c") -> float:
        return max((f.mpps for f in self.figures
                    if f.guests == guests and f.switch == switch), default=0.0)

    def ratio(self, switch: str = "c") -> float | None:
        """4 guests over 1 guest (the largest count over 1, when 4 was not measured)."""
        top = max((f.guests for f in self.figures), default=1)
        one = self.best(1, switch)
        return self.best(top, switch) / one if one and top > 1 else None

    def text(self) -> str:
        if self.skipped:
            return f"host switch, N guest processes: not measured ({self.skipped})"
        lines = [f"{'host XDP_DROP':<22}{'C switch':>10}{'Python':>10}{'C/Python':>10}  (Mpps)"]
        for n in sorted({f.guests for f in self.figures}):
            c, py = self.best(n, "c"), self.best(n, "python")
            lines.append(f"{f'{n} guest(s)':<22}{c:>10.2f}{py:>10.2f}"
                         f"{(c / py if py else 0):>9.1f}x")
        for sw in SWITCHES:
            r = self.ratio(sw)
            if r is not None:
                verdict = f" (target {TARGET}x: {'met' if r >= TARGET else 'not met'})" \
                    if sw == "c" else ""
                lines.append(f"{sw} switch: 4 guests / 1 guest {r:.2f}x{verdict}")
        lines.append(f"(60-byte frames, {self.cpus} CPU(s), load {self.load})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"figures": [asdict(f) for f in self.figures],
                "ratio_4_1": {sw: self.ratio(sw) for sw in SWITCHES}, "target": TARGET,
                "cpus": self.cpus, "load": self.load, "skipped": self.skipped}


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


async def _measure_n(report: SwitchReport, tmp: str, obj: Path, program: object, n: int,
                     seconds: float, warmup: float) -> None:
    from vxdp.runtime import HostRuntime

    socks = [f"{tmp}/g{n}-{i}.sock" for i in range(n)]
    wire = RepeatWire()
    host = HostRuntime(socks, wire=wire)
    frames = [g.profile.mac + FRAME[6:] for g in host.guests]  # each to its guest

    def dropped() -> int:
        return sum(g.cpath.stats().get("xdp_drop", 0) for g in host.guests
                   if g.cpath is not None)

    procs = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            logs = []
            for i, sock in enumerate(socks):
                log = open(Path(tmp) / f"guest{n}-{i}.log", "wb")
                logs.append(log)
                procs.append(_spawn_guest(sock, obj, None, "driver", log))
            try:
                with trio.fail_after(60):
                    while not all(g.live and g.rx_posted and g.cpath is not None
                                  and g.cpath.active for g in host.guests):
                        for p in procs:
                            if p.poll() is not None:
                                raise VxdpError(f"vxdp guest exited {p.returncode}")
                        await trio.sleep(0.01)
                host.attach(program)  # type: ignore[arg-type]
                for switch in SWITCHES:
                    host.c_switch = switch == "c"
                    wire.start(frames, host.burst)
                    try:
                        await trio.sleep(warmup)
                        a, t0 = dropped(), time.perf_counter()
                        await trio.sleep(seconds)
                        b, t1 = dropped(), time.perf_counter()
                    finally:
                        wire.stop()
                    report.figures.append(SwitchFigure(n, switch, (b - a) / (t1 - t0) / 1e6,
                                                       b - a, t1 - t0))
                    await trio.sleep(0.05)
            finally:
                for p in procs:
                    await _stop(p)
                for log in logs:
                    log.close()
            nursery.cancel_scope.cancel()
    finally:
        host.close()


async def measure(seconds: float = 2.0, *, warmup: float = 0.5, rounds: int = 1,
                  guests: Sequence[int] = GUESTS, sock_dir: Path | None = None) -> SwitchReport:
    report = SwitchReport(cpus=dpdk.cpu_count(), load=_load())
    reason = clang_unavailable()
    if reason is not None:
        report.skipped = reason
        return report
    obj = compile_c(PROGS)
    program = dict(load_object(obj).programs)["xdp_drop"]
    with TemporaryDirectory(prefix="vxdp-bench-", dir=sock_dir) as tmp:
        for _ in range(rounds):
            for n in guests:
                await _measure_n(report, tmp, obj, program, n, seconds, warmup)
    report.load += f" -> {_load()}"
    return report


def run(seconds: float = 2.0, **kw: object) -> SwitchReport:
    """`measure()` from synchronous code (the bench command)."""
    return trio.run(lambda: measure(seconds, **kw))  # type: ignore[arg-type]


__all__ = ["GUESTS", "SwitchFigure", "SwitchReport", "measure", "run"]
