"""Mpps of DPDK's own virtio path, measured in the same run as ours: testpmd's
virtio_user port against testpmd's net_vhost port, two processes, one vhost-user socket.

    virtio_user -> vhost   virtio_user txonly, net_vhost rxonly: the guest transmits and
                           the vhost library dequeues (rte_vhost_dequeue_burst)
    vhost -> virtio_user   net_vhost txonly, virtio_user rxonly: the vhost library
                           enqueues into the guest's receive ring (rte_vhost_enqueue_burst),
                           DPDK's counterpart of our "PASS into guest"

and, with `vxdp_host=True`, the same two paths with `vxdp host` (in this process, the C
datapath, no program attached) in the vhost port's place, DPDK's virtio PMD as its guest:

    virtio_user -> vxdp host   testpmd txonly; frames counted leaving the host's wire
    vxdp host -> virtio_user   a 60-byte frame burst repeated on the host's wire, into
                               testpmd's receive ring (PASS into the guest, end to end);
                               counted by testpmd rxonly

Each figure is the receiver's rx packet counter over a timed window (after a warm-up),
read through testpmd's `show port stats`; the sender's tx rate is given beside it (what
it managed to place in the ring; the rest it dropped for want of room).  Frames are
`frame_len` bytes (60, as vxdp.bench_datapath's).  Each process gets one forwarding
lcore; with two CPUs they get one each (`vxdp.dpdk.lcores_for`), so the figures are a
two-core DPDK datapath against our one-core burst figures.  A benchmark, never a test:
nothing asserts a rate.  Without testpmd the report says why and holds no figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import trio

from vxdp import dpdk
from vxdp.frames import PackedFrames
from vxdp.runtime.host import BURST
from vxdp.runtime.wire import PackedRun, WirePort, WireSpec

DIRECTIONS = ("virtio_user -> vhost", "vhost -> virtio_user")
ENQUEUE = "vhost -> virtio_user"
VXDP_DIRECTIONS = ("virtio_user -> vxdp host", "vxdp host -> virtio_user")
FRAME_LEN = 60


@dataclass(frozen=True)
class DpdkFigure:
    direction: str
    mpps: float  # the receiver's rx rate
    sender_mpps: float  # what the sender placed in the ring
    frames: int  # received in the window
    seconds: float


@dataclass
class DpdkReport:
    figures: list[DpdkFigure] = field(default_factory=list)
    frame_len: int = FRAME_LEN
    cpus: int = 0
    skipped: str | None = None

    def mpps(self, direction: str) -> float | None:
        rates = [f.mpps for f in self.figures if f.direction == direction]
        return max(rates) if rates else None

    @property
    def vhost_enqueue_mpps(self) -> float | None:
        """DPDK's vhost enqueue rate, the yardstick for PASS into the guest."""
        return self.mpps(ENQUEUE)

    @property
    def vxdp_pass_ratio(self) -> float | None:
        """vxdp host -> DPDK guest over DPDK's vhost enqueue (the 0.5x target)."""
        ours, theirs = self.mpps(VXDP_DIRECTIONS[1]), self.vhost_enqueue_mpps
        return ours / theirs if ours is not None and theirs else None

    def text(self) -> str:
        if self.skipped:
            return f"DPDK virtio_user <-> vhost: not measured ({self.skipped})"
        lines = [f"{'DPDK testpmd':<24}{'Mpps':>9}{'sender Mpps':>13}",
                 *(f"{f.direction:<24}{f.mpps:>9.2f}{f.sender_mpps:>13.2f}"
                   for f in self.figures),
                 f"({self.frame_len}-byte frames, {self.cpus} CPU(s), one forwarding lcore "
                 f"per process)"]
        if self.vxdp_pass_ratio is not None:
            lines.append(f"vxdp host -> DPDK guest / DPDK vhost enqueue: "
                         f"{self.vxdp_pass_ratio:.2f}x (target 0.5x)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"figures": [asdict(f) for f in self.figures], "frame_len": self.frame_len,
                "cpus": self.cpus, "skipped": self.skipped,
                "vhost_enqueue_mpps": self.vhost_enqueue_mpps,
                "vxdp_pass_ratio": self.vxdp_pass_ratio}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


async def _window(sender: dpdk.Testpmd, receiver: dpdk.Testpmd,
                  seconds: float) -> tuple[int, int, float]:
    """(rx frames, tx frames, elapsed) over one timed window."""
    t0 = time.perf_counter()
    r0 = await receiver.port_stats(0)
    s0 = await sender.port_stats(0)
    t0 = (t0 + time.perf_counter()) / 2
    await trio.sleep(seconds)
    t1 = time.perf_counter()
    r1 = await receiver.port_stats(0)
    s1 = await sender.port_stats(0)
    t1 = (t1 + time.perf_counter()) / 2
    return r1.rx_packets - r0.rx_packets, s1.tx_packets - s0.tx_packets, t1 - t0


async def _measure(vhost: dpdk.Testpmd, user: dpdk.Testpmd, direction: str,
                   seconds: float, warmup: float) -> DpdkFigure:
    sender, receiver = (user, vhost) if direction == DIRECTIONS[0] else (vhost, user)
    await receiver.forward("rxonly")
    await sender.forward("txonly")
    try:
        await trio.sleep(warmup)
        rx, tx, elapsed = await _window(sender, receiver, seconds)
    finally:
        await sender.halt()
        await receiver.halt()
    return DpdkFigure(direction, rx / elapsed / 1e6, tx / elapsed / 1e6, rx, elapsed)


class RepeatWire(WirePort):
    """The host's wire for the bench: counts what leaves; repeats one burst while on."""

    def __init__(self) -> None:
        super().__init__(WireSpec("null"))
        self.burst = PackedFrames.pack([])
        self._on = trio.Event()

    def start(self, frame: bytes | Sequence[bytes], count: int) -> None:
        """Repeat `count` frames: `frame`, or the frames given, in turn."""
        frames = [frame] if isinstance(frame, bytes) else list(frame)
        self.burst = PackedFrames.pack([frames[i % len(frames)] for i in range(count)])
        self._on.set()

    def stop(self) -> None:
        self._on = trio.Event()

    def packed_run(self) -> PackedRun | None:
        """The burst, going round, while on (the host's C pump takes it in C)."""
        return PackedRun(self.burst, 0, True, 1 << 62) if self._on.is_set() else None

    async def _next(self, limit: int) -> Sequence[bytes] | None:
        if self._on.is_set():
            await trio.lowlevel.checkpoint_if_cancelled()  # frames at hand, as a replay's
        else:
            await self._on.wait()
        return self.burst[:limit]


async def _measure_vxdp(report: DpdkReport, tmp: str, seconds: float, warmup: float,
                        frame_len: int, rounds: int, host_burst: int = BURST) -> None:
    from vxdp.packets import Flow
    from vxdp.runtime import HostRuntime

    sock = f"{tmp}/vxdp-host.sock"
    wire = RepeatWire()
    host = HostRuntime([sock], wire=wire, burst=host_burst)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                         prefix=dpdk.unique_prefix("bench-guest"),
                                         lcores=dpdk.lcores_for(0)) as user:
                await user.command(f"set txpkts {frame_len}")
                frame = Flow("udp", "10.0.0.1", "10.1.0.1", 40000, 53).packet(
                    bytes(max(frame_len - 42, 0)))
                # addressed to the guest's MAC as the host knows it (no flooding)
                frame = host.guests[0].profile.mac + frame[6:]
                for _ in range(rounds):
                    # DPDK's driver into our device
                    await user.forward("txonly")
                    await trio.sleep(warmup)
                    a, t0 = wire.tx_packets, time.perf_counter()
                    await trio.sleep(seconds)
                    b, t1 = wire.tx_packets, time.perf_counter()
                    await user.halt()
                    report.figures.append(DpdkFigure(VXDP_DIRECTIONS[0], (b - a) / (t1 - t0) / 1e6,
                                                     (b - a) / (t1 - t0) / 1e6, b - a, t1 - t0))
                    # our device into DPDK's driver (PASS into the guest)
                    await user.forward("rxonly")
                    wire.start(frame, host.burst)
                    try:
                        await trio.sleep(warmup)
                        r0, t0 = await user.port_stats(0), time.perf_counter()
                        w0 = wire.rx_packets
                        await trio.sleep(seconds)
                        r1, t1 = await user.port_stats(0), time.perf_counter()
                        w1 = wire.rx_packets
                    finally:
                        wire.stop()
                        await user.halt()
                    rx = r1.rx_packets - r0.rx_packets
                    report.figures.append(DpdkFigure(VXDP_DIRECTIONS[1], rx / (t1 - t0) / 1e6,
                                                     (w1 - w0) / (t1 - t0) / 1e6, rx, t1 - t0))
            nursery.cancel_scope.cancel()
    finally:
        host.close()


async def measure(seconds: float = 2.0, *, warmup: float = 0.5, frame_len: int = FRAME_LEN,
                  rounds: int = 1, directions: Sequence[str] = DIRECTIONS,
                  vxdp_host: bool = False, host_burst: int = BURST,
                  sock_dir: Path | None = None) -> DpdkReport:
    """Both directions (best of `rounds`) with one pair of testpmd processes; with
    `vxdp_host`, then both directions between testpmd's virtio_user and `vxdp host`
    (at most `host_burst` frames a round, `vxdp host`'s default)."""
    report = DpdkReport(frame_len=frame_len, cpus=dpdk.cpu_count())
    reason = dpdk.unavailable()
    if reason is not None:
        report.skipped = reason
        return report
    with TemporaryDirectory(prefix="vxdp-bench-", dir=sock_dir) as tmp:
        if vxdp_host:
            await _measure_vxdp(report, tmp, seconds, warmup, frame_len, rounds, host_burst)
        sock = f"{tmp}/vhost.sock"
        async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                     prefix=dpdk.unique_prefix("bench-vhost"),
                                     lcores=dpdk.lcores_for(0)) as vhost:
            async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                         prefix=dpdk.unique_prefix("bench-user"),
                                         lcores=dpdk.lcores_for(1)) as user:
                await vhost.wait_for("virtio is now ready for processing")
                for pmd in (vhost, user):
                    await pmd.command(f"set txpkts {frame_len}")
                for _ in range(rounds):
                    for direction in directions:
                        report.figures.append(
                            await _measure(vhost, user, direction, seconds, warmup))
    return report


def run(seconds: float = 2.0, **kw: object) -> DpdkReport:
    """`measure()` from synchronous code (the bench command)."""
    return trio.run(lambda: measure(seconds, **kw))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="vxdp-bench-dpdk", description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--frame-len", type=int, default=FRAME_LEN)
    ap.add_argument("--vxdp-host", action="store_true",
                    help="also measure testpmd's virtio_user against vxdp host")
    ap.add_argument("--host-burst", type=int, default=BURST,
                    help=f"frames vxdp host moves per round at most (default {BURST})")
    args = ap.parse_args(argv)
    report = run(args.seconds, rounds=args.rounds, frame_len=args.frame_len,
                 vxdp_host=args.vxdp_host, host_burst=args.host_burst)
    print(report.to_json() if args.json else report.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["DIRECTIONS", "ENQUEUE", "FRAME_LEN", "VXDP_DIRECTIONS", "DpdkFigure", "DpdkReport", "RepeatWire", "measure", "run"]
