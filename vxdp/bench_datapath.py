"""Mpps of the C datapath: XDP offloaded to the host port against the same programs in
guest driver mode (the RFC's comparison: 5.2x for DROP, 4.8x for TX).

Workloads (64-byte frames, bursts of 32 to 256, one guest over one guest memory):

    offload XDP_DROP   wire -> host port, xdp_drop in the port's offload slot (where a
                       program a guest offloads runs): nothing reaches the guest
    offload XDP_TX     wire -> host port, xdp_swap_tx offloaded: back to the wire
    PASS into guest    wire -> host port, xdp_pass offloaded -> guest rx ring (enqueue)
    driver XDP_DROP    wire -> host port -> guest rx ring -> guest xdp_drop (driver mode)
    driver XDP_TX      wire -> host -> guest xdp_swap_tx -> guest tx ring -> host -> wire

This is the C work alone; `vxdp bench --suite process` measures the same through the
control queue, end to end, between a `vxdp host` and a `vxdp guest` process.

Each figure is frames / time spent in the burst calls a frame needs on its path (host
enqueue, guest receive, host transmit), the FFI crossing of each burst included; Python
only moves the bursts.  Best of `rounds`.  The programs come from vxdp/bench_progs/
datapath.c, compiled with clang.  A benchmark, never a test: nothing asserts a timing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guest.datapath import GuestPort
from host.datapath import HostPort, HostSwitch, QueueConfig
from virtio_spec.features import VirtioFeature
from virtio_spec.testing import GuestAllocator, guest_memory
from vxdp import native
from vxdp import packets as P
from vxdp.bpf.clang import compile_c
from vxdp.bpf.elf import load_object
from vxdp.bpf.program import Program
from vxdp.errors import VxdpError

PROGS = Path(__file__).resolve().parent / "bench_progs" / "datapath.c"
FRAME = P.Flow("udp", "10.0.0.1", "10.1.0.1", 40000, 53).packet(b"\x00" * 18)  # 60 bytes
FEATURES = 1 << VirtioFeature.VIRTIO_F_VERSION_1
QUEUE_SIZE = 1024
RFC_RATIOS = {"drop": 5.2, "tx": 4.8}


@dataclass(frozen=True)
class Figure:
    workload: str
    burst: int
    mpps: float
    ns_per_frame: float


@dataclass
class DatapathReport:
    figures: list[Figure] = field(default_factory=list)

    def best(self, workload: str) -> float:
        return max((f.mpps for f in self.figures if f.workload == workload), default=0.0)

    def ratios(self) -> dict[str, float]:
        """Offloaded over driver mode, best burst of each."""
        out: dict[str, float] = {}
        for name, off, drv in (("drop", "offload XDP_DROP", "driver XDP_DROP"),
                               ("tx", "offload XDP_TX", "driver XDP_TX")):
            if self.best(drv):
                out[name] = self.best(off) / self.best(drv)
        return out

    def text(self) -> str:
        lines = [f"{'workload':<20}{'burst':>6}{'Mpps':>9}{'ns/frame':>10}"]
        for f in self.figures:
            lines.append(f"{f.workload:<20}{f.burst:>6}{f.mpps:>9.2f}{f.ns_per_frame:>10.1f}")
        for name, r in self.ratios().items():
            lines.append(f"offload/driver-mode {name.upper()}: {r:.1f}x "
                         f"(RFC 2019: {RFC_RATIOS[name]}x)")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"figures": [asdict(f) for f in self.figures],
                           "ratios": self.ratios()})


def _programs() -> dict[str, Program]:
    return dict(load_object(compile_c(PROGS)).programs)


class _Rig:
    """One guest and its host port, with bursts preloaded so a timed call is one crossing."""

    def __init__(self, burst: int) -> None:
        mem = guest_memory(size=16 << 20)
        self.guest = GuestPort(mem, GuestAllocator(mem), FEATURES, queue_size=QUEUE_SIZE,
                               burst=burst)
        rx, tx = self.guest.setup_requests()
        self.host = HostPort(HostSwitch(1), 10, mem,
                             QueueConfig(rx.size, rx.desc, rx.driver, rx.device),
                             QueueConfig(tx.size, tx.desc, tx.driver, tx.device), FEATURES,
                             burst=burst)
        self.guest.start()
        self.burst = burst
        self.frames = native.Burst(burst, burst * len(FRAME))
        self.frames.load([FRAME] * burst)
        self.wire = native.Burst(burst, burst * 2048)
        self.passed = native.Burst(burst, burst * 2048)

    def host_rx(self) -> None:
        self.wire.clear()
        native.port_rx_burst(self.host.handle, self.frames, self.wire)

    def guest_rx(self) -> None:
        self.passed.clear()
        native.gport_rx_burst(self.guest.handle, self.burst, self.passed)

    def host_tx(self) -> None:
        self.wire.clear()
        native.port_tx_burst(self.host.handle, self.burst, self.wire)


def _time(steps: Sequence[Callable[[], None]], untimed: Sequence[Callable[[], None]],
          iterations: int) -> float:
    """Seconds spent in `steps` over `iterations` bursts (`untimed` run in between)."""
    total = 0
    clock = time.perf_counter_ns
    for _ in range(iterations):
        for step in steps:
            t0 = clock()
            step()
            total += clock() - t0
        for step in untimed:
            step()
    return total / 1e9


#: the counter that must have seen every frame of a workload: (host or guest, counter)
EXPECT = {
    "offload XDP_DROP": ("host", "off_drop"),
    "offload XDP_TX": ("host", "wire_packets"),
    "PASS into guest": ("host", "guest_packets"),
    "driver XDP_DROP": ("guest", "xdp_drop"),
    "driver XDP_TX": ("host", "tx_packets"),
}


def _check(rig: _Rig, workload: str, frames: int) -> None:
    """A figure only counts if every frame took the path it names (no silent drops)."""
    side, counter = EXPECT[workload]
    stats = rig.host.stats if side == "host" else rig.guest.stats
    if stats[counter] != frames:
        raise VxdpError(f"bench {workload}: {counter} is {stats[counter]}, expected {frames} "
                        f"(host {rig.host.stats}, guest {rig.guest.stats})")


#: (workload, program offloaded on the host, program in the guest, timed steps, untimed)
CASES: tuple[tuple[str, str | None, str | None, tuple[str, ...], tuple[str, ...]], ...] = (
    ("offload XDP_DROP", "xdp_drop", None, ("host_rx",), ()),
    ("offload XDP_TX", "xdp_swap_tx", None, ("host_rx",), ()),
    ("PASS into guest", "xdp_pass", None, ("host_rx",), ("guest_rx",)),
    ("driver XDP_DROP", None, "xdp_drop", ("host_rx", "guest_rx"), ()),
    ("driver XDP_TX", None, "xdp_swap_tx", ("host_rx", "guest_rx", "host_tx"), ()),
)


def run(bursts: Sequence[int] = (32, 256), frames: int = 200_000, rounds: int = 3,
        programs: dict[str, Program] | None = None) -> DatapathReport:
    """Measure every workload at every burst size (best of `rounds`)."""
    progs = programs or _programs()
    report = DatapathReport()
    for burst in bursts:
        iterations = max(1, frames // burst)
        for name, host_prog, guest_prog, timed, untimed in CASES:
            best = float("inf")
            for _ in range(rounds):
                rig = _Rig(burst)
                if host_prog:
                    rig.host.attach_offload(progs[host_prog])
                if guest_prog:
                    rig.guest.attach(progs[guest_prog])
                steps = [getattr(rig, s) for s in timed]
                others = [getattr(rig, s) for s in untimed]
                _time(steps, others, 4)  # warm up
                best = min(best, _time(steps, others, iterations))
                _check(rig, name, (iterations + 4) * burst)
            n = iterations * burst
            report.figures.append(Figure(name, burst, n / best / 1e6, best / n * 1e9))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="vxdp-bench-datapath", description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--json", action="store_true")
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--bursts", default="32,256")
    args = ap.parse_args(argv)
    report = run([int(b) for b in args.bursts.split(",")], args.frames)
    print(report.to_json() if args.json else report.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
