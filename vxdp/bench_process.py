"""Mpps of the offload against guest driver mode end to end: `vxdp host` and a `vxdp guest`
process over vhost-user, as the RFC measured a host and a VM.

    offload XDP_DROP        the guest offloaded xdp_drop over its control queue (`vxdp
                            guest --mode offload`): wire -> host, nothing reaches the guest
    offload XDP_TX          the guest offloaded xdp_swap_tx: back out of the wire
    agent XDP_DROP          the same two, offloaded over the agent path instead (`vxdp
    agent XDP_TX            guest --via agent`, the host's agent for the guest): the same
                            device offload and datapath slot, reached another way; the
                            agent/controlq ratios (same run, same windows) should be 1
    host-attached XDP_DROP  the same program attached by the host's operator: what the
    host-attached XDP_TX    offload costs against it on the same datapath
    PASS into guest         wire -> host -> the guest process's receive ring (no program)
    driver XDP_DROP         wire -> host -> guest process, xdp_drop in its driver
    driver XDP_TX           wire -> host -> guest process, xdp_swap_tx in its driver -> its
                            transmit ring -> host -> wire

The host runs in this process (its C datapath, a wire repeating one 60-byte frame as fast
as the host takes it); the guest is a child process (`vxdp guest`, its C datapath), so
every frame that crosses into the guest pays what crossing costs here: the copy into the
guest's buffers, the guest's wake-ups on its call eventfd and its kicks, two processes on
the machine's cores.  What this machine does not have is a VM: no VM exit on a kick, no
interrupt injection, which the RFC's guest paid.  Each figure is the count at the host
over a timed window after a warm-up: frames dropped by the offloaded program, frames the
guest took from its ring (it takes only what it has processed: the host can place no more
than the guest refills), frames on the wire.  Best of `rounds`.  A benchmark, never a
test: nothing asserts a rate.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import IO

import trio

from vxdp import dpdk
from vxdp.bench_datapath import FRAME, PROGS, RFC_RATIOS
from vxdp.bench_dpdk import RepeatWire
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.errors import VxdpError

WORKLOADS = ("offload XDP_DROP", "offload XDP_TX", "agent XDP_DROP", "agent XDP_TX",
             "host-attached XDP_DROP", "host-attached XDP_TX", "PASS into guest",
             "driver XDP_DROP", "driver XDP_TX")
#: offloaded workload, driver-mode workload
PAIRS = {"drop": ("offload XDP_DROP", "driver XDP_DROP"),
         "tx": ("offload XDP_TX", "driver XDP_TX")}
#: the agent path's workload, the control queue's
VIA_PAIRS = {"drop": ("agent XDP_DROP", "offload XDP_DROP"),
             "tx": ("agent XDP_TX", "offload XDP_TX")}


@dataclass(frozen=True)
class ProcessFigure:
    workload: str
    mpps: float
    frames: int
    seconds: float


@dataclass
class ProcessReport:
    figures: list[ProcessFigure] = field(default_factory=list)
    cpus: int = 0
    skipped: str | None = None

    def best(self, workload: str) -> float:
        return max((f.mpps for f in self.figures if f.workload == workload), default=0.0)

    def ratios(self, pairs: dict[str, tuple[str, str]] = PAIRS) -> dict[str, float]:
        """best(first) / best(second) of each pair (offload over driver mode; with
        VIA_PAIRS, the agent path over the control queue)."""
        return {name: self.best(a) / self.best(b) for name, (a, b) in pairs.items()
                if self.best(b)}

    def text(self) -> str:
        if self.skipped:
            return f"vxdp host + vxdp guest processes: not measured ({self.skipped})"
        lines = [f"{'host + guest process':<24}{'Mpps':>9}"]
        for name in WORKLOADS:
            if self.best(name):
                lines.append(f"{name:<24}{self.best(name):>9.2f}")
        lines += [f"offload/driver-mode {name.upper()} end to end: {r:.1f}x "
                  f"(RFC 2019: {RFC_RATIOS[name]}x)" for name, r in self.ratios().items()]
        lines += [f"agent/controlq offload {name.upper()}: {r:.2f}x (the same datapath "
                  f"slot: 1 expected)" for name, r in self.ratios(VIA_PAIRS).items()]
        lines.append(f"(60-byte frames, {self.cpus} CPU(s), host and guest one process each)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"figures": [asdict(f) for f in self.figures], "ratios": self.ratios(),
                "agent_ratios": self.ratios(VIA_PAIRS), "cpus": self.cpus,
                "skipped": self.skipped}


def _spawn_guest(sock: str, obj: Path, program: str | None, mode: str,
                 log: IO[bytes], agent: str | None = None) -> subprocess.Popen[bytes]:
    """`vxdp guest` on `sock` placing `program` as `mode` says (an offload over the
    host agent at `agent`, when given), its stderr to `log` (a file: a pipe nobody reads
    while it runs could fill and stall the guest)."""
    cmd = [sys.executable, "-m", "vxdp", "guest", "--socket", sock]
    if program is not None:
        cmd += ["--xdp", str(obj), "--program", program, "--mode", mode]
    if agent is not None:
        cmd += ["--via", "agent", "--agent", agent]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            while proc.poll() is None:
                await trio.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def measure(seconds: float = 2.0, *, warmup: float = 0.5, rounds: int = 1,
                  sock_dir: Path | None = None) -> ProcessReport:
    from vxdp.runtime import HostRuntime

    report = ProcessReport(cpus=dpdk.cpu_count())
    reason = clang_unavailable()
    if reason is not None:
        report.skipped = reason
        return report
    obj = compile_c(PROGS)
    programs = dict(load_object(obj).programs)
    with TemporaryDirectory(prefix="vxdp-bench-", dir=sock_dir) as tmp:
        sock, agent = f"{tmp}/guest.sock", f"{tmp}/guest.agent"
        wire = RepeatWire()
        # offers the offload, over the control queue and over the guest's host agent
        host = HostRuntime([sock], wire=wire, profile="host", agents=[agent])
        port = host.guests[0]
        frame = port.profile.mac + FRAME[6:]  # to the guest's MAC: no flooding

        def c(key: str) -> Callable[[], int]:
            return lambda: port.cpath.stats().get(key, 0) if port.cpath is not None else 0

        def on_wire() -> int:
            return wire.tx_packets

        async def window(workload: str, count: Callable[[], int]) -> None:
            wire.start(frame, host.burst)
            try:
                await trio.sleep(warmup)
                a, t0 = count(), time.perf_counter()
                await trio.sleep(seconds)
                b, t1 = count(), time.perf_counter()
            finally:
                wire.stop()
            report.figures.append(ProcessFigure(workload, (b - a) / (t1 - t0) / 1e6, b - a,
                                                t1 - t0))
            await trio.sleep(0.05)  # let the rings drain before the next workload

        async def with_guest(program: str | None, mode: str,
                             runs: Sequence[tuple[str, Callable[[], int], str | None]],
                             via_agent: bool = False) -> None:
            sessions = port.sessions
            log_path = Path(tmp) / "guest.log"
            with open(log_path, "wb") as log:
                proc = _spawn_guest(sock, obj, program, mode, log,
                                    agent if via_agent else None)

            def ready() -> bool:
                cpath = port.cpath
                if not (port.sessions > sessions and port.live and port.rx_posted
                        and cpath is not None and cpath.active):
                    return False
                # offload: the guest's program offloaded (over its control queue or its
                # agent), on the C port
                return mode != "offload" or (cpath.port is not None
                                             and cpath.port.offloaded is not None)
            try:
                with trio.fail_after(30):
                    while not ready():
                        if proc.poll() is not None:
                            raise VxdpError(f"vxdp guest exited {proc.returncode}: "
                                            f"{log_path.read_text(errors='replace')}")
                        await trio.sleep(0.01)
                for workload, count, offloaded in runs:
                    if offloaded is not None:
                        host.attach(programs[offloaded])
                    try:
                        await window(workload, count)
                    finally:
                        host.detach()
            finally:
                await _stop(proc)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                for _ in range(rounds):
                    await with_guest("xdp_drop", "offload",
                                     [("offload XDP_DROP", c("off_drop"), None)])
                    await with_guest("xdp_swap_tx", "offload",
                                     [("offload XDP_TX", on_wire, None)])
                    await with_guest("xdp_drop", "offload",
                                     [("agent XDP_DROP", c("off_drop"), None)], True)
                    await with_guest("xdp_swap_tx", "offload",
                                     [("agent XDP_TX", on_wire, None)], True)
                    await with_guest(None, "driver", [
                        ("host-attached XDP_DROP", c("xdp_drop"), "xdp_drop"),
                        ("host-attached XDP_TX", on_wire, "xdp_swap_tx"),
                        ("PASS into guest", c("guest_packets"), None)])
                    await with_guest("xdp_drop", "driver",
                                     [("driver XDP_DROP", c("guest_packets"), None)])
                    await with_guest("xdp_swap_tx", "driver",
                                     [("driver XDP_TX", on_wire, None)])
                nursery.cancel_scope.cancel()
        finally:
            host.close()
    return report


def run(seconds: float = 2.0, **kw: object) -> ProcessReport:
    """`measure()` from synchronous code (the bench command)."""
    return trio.run(lambda: measure(seconds, **kw))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="vxdp-bench-process",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    report = run(args.seconds, rounds=args.rounds)
    print(json.dumps(report.to_dict()) if args.json else report.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["PAIRS", "VIA_PAIRS", "WORKLOADS", "ProcessFigure", "ProcessReport", "measure", "run"]
