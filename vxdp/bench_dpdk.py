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

Where each window's CPU went (`DpdkFigure.cpu`, a `WindowCpu`), to tell a slow window's
cause apart:

    xcpu_ns     a cache line's round trip between the two forwarding CPUs, probed just
                before the window with nothing forwarding (csrc/xcpu.c).  On a VM it
                says where the hypervisor put the two vCPUs: ~100 ns on one cache
                complex, ~500 ns apart (a 2-vCPU EPYC guest moves between the two every
                few seconds), and every window of either datapath is slower apart
    threads     run and run-queue wait, % of one CPU, of every thread of the bench's
                processes (this one: `vxdp`, the host and the bench in one thread;
                the testpmds; the second guest) that had 1% or more of either
                (/proc/PID/task/TID/schedstat)
    others_pct  the CPU time of the machine's other processes, % of one CPU (all of
                /proc/stat's busy time less the threads above): neighbour load
    steal_pct   time the hypervisor gave the vCPUs to someone else (/proc/stat)

A ratio whose two windows were probed on different placements says so (the report's
`*_placements_apart`); the ratios themselves are taken as they come.
"""

from __future__ import annotations

import json
import os
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
DEQUEUE = "virtio_user -> vhost"
VXDP_DIRECTIONS = ("virtio_user -> vxdp host", "vxdp host -> virtio_user",
                   "virtio_user -> guest 1 XDP_DROP")
FRAME_LEN = 60
#: vxdp's figure over DPDK's, each from the same run: PASS into a DPDK guest over DPDK's
#: vhost enqueue; a DPDK guest's frames to another guest, dropped by the host's program
#: on that guest's port, over DPDK's vhost dequeue
TARGETS = {"pass": 0.8, "guest_drop": 0.8}


@dataclass(frozen=True)
class WindowCpu:
    """Where one window's CPU went (the module docstring says how each is taken)."""

    xcpu_ns: float | None
    threads: dict[str, tuple[float, float]]  # label: (run %, run-queue wait %)
    others_pct: float
    steal_pct: float

    def text(self) -> str:
        xcpu = f"{self.xcpu_ns:.0f}" if self.xcpu_ns is not None else "-"
        busy = ", ".join(f"{k} {run:.0f}/{wait:.0f}" for k, (run, wait) in
                         sorted(self.threads.items(), key=lambda kv: -kv[1][0])
                         if run >= 5 or wait >= 5)
        return (f"xcpu {xcpu} ns; run/wait % {busy or '-'}; others {self.others_pct:.0f}%, "
                f"steal {self.steal_pct:.0f}%")


def _ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of all CPUs so far (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7]


def _schedstat(procs: dict[str, int]) -> dict[tuple[str, int], tuple[str, int, int]]:
    """(label, tid): (thread name, ns run, ns waited on a run queue) of every thread."""
    out = {}
    for label, pid in procs.items():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    run, wait = (int(x) for x in f.read().split()[:2])
            except (OSError, ValueError):
                continue
            out[(label, int(tid))] = (comm, run, wait)
    return out


class _CpuWatch:
    """One window's `WindowCpu`: made (and the placement probed) before the window's
    traffic starts; `start()` and `stop()` around the counted interval."""

    def __init__(self, procs: dict[str, int], cpus: tuple[int, int] | None) -> None:
        self.procs = procs
        self.xcpu_ns = _probe_xcpu(cpus)

    def start(self) -> None:
        self._threads, self._ticks0 = _schedstat(self.procs), _ticks()
        self._t0 = time.perf_counter()

    def stop(self) -> WindowCpu:
        elapsed = time.perf_counter() - self._t0
        threads, (busy, steal) = _schedstat(self.procs), _ticks()
        shares: dict[str, tuple[float, float]] = {}
        ours = 0.0
        for key, (comm, run, wait) in threads.items():
            _, run0, wait0 = self._threads.get(key, (comm, run, wait))
            run_pct = (run - run0) / 1e9 / elapsed * 100
            wait_pct = (wait - wait0) / 1e9 / elapsed * 100
            ours += run_pct
            if run_pct >= 1 or wait_pct >= 1:
                label = key[0] if key[1] == self.procs[key[0]] and key[0] == "vxdp" \
                    else f"{key[0]}:{comm}"
                if label in shares:
                    label += f"#{key[1]}"
                shares[label] = (round(run_pct, 1), round(wait_pct, 1))
        hz = os.sysconf("SC_CLK_TCK") * elapsed / 100
        return WindowCpu(self.xcpu_ns, shares,
                         round(max((busy - self._ticks0[0]) / hz - ours, 0.0), 1),
                         round((steal - self._ticks0[1]) / hz, 1))


def _forwarding_cpus() -> tuple[int, int] | None:
    """The CPUs the two forwarding threads of a window run on (`dpdk.forwarding_cpu`);
    None with one CPU.  Asked before the bench pins itself, which narrows the set."""
    a, b = dpdk.forwarding_cpu(0), dpdk.forwarding_cpu(1)
    return (a, b) if a is not None and b is not None and a != b else None


def _probe_xcpu(cpus: tuple[int, int] | None) -> float | None:
    """Their cache-line round trip (None with one CPU or no answer)."""
    from vxdp import native
    from vxdp.errors import CoreError
    if cpus is None:
        return None
    try:
        return native.xcpu_rtt_ns(*cpus)
    except CoreError:
        return None


@dataclass(frozen=True)
class DpdkFigure:
    direction: str
    mpps: float  # the receiver's rx rate
    sender_mpps: float  # what the sender placed in the ring
    frames: int  # received in the window
    seconds: float
    cpu: WindowCpu | None = None  # where the window's CPU went


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
        """vxdp host -> DPDK guest over DPDK's vhost enqueue (best over best)."""
        ours, theirs = self.mpps(VXDP_DIRECTIONS[1]), self.vhost_enqueue_mpps
        return ours / theirs if ours is not None and theirs else None

    @property
    def guest_drop_ratio(self) -> float | None:
        """DPDK guest -> host XDP_DROP on guest 1 over DPDK's vhost dequeue."""
        ours, theirs = self.mpps(VXDP_DIRECTIONS[2]), self.mpps(DEQUEUE)
        return ours / theirs if ours is not None and theirs else None

    def round_ratios(self, ours: str, theirs: str) -> list[float]:
        """ours/theirs round by round (the figures of round i taken together: the
        rounds interleave vxdp's windows and DPDK's, so each ratio is of one moment)."""
        a = [f.mpps for f in self.figures if f.direction == ours]
        b = [f.mpps for f in self.figures if f.direction == theirs]
        return [x / y for x, y in zip(a, b) if y]

    def placements_apart(self, ours: str, theirs: str) -> list[tuple[float, float]]:
        """(our xcpu ns, theirs) of the rounds whose two windows were probed on different
        vCPU placements (one probe more than twice the other): their ratio compares two
        machines as much as two datapaths."""
        a = [f.cpu.xcpu_ns if f.cpu else None for f in self.figures if f.direction == ours]
        b = [f.cpu.xcpu_ns if f.cpu else None for f in self.figures if f.direction == theirs]
        return [(x, y) for x, y in zip(a, b)
                if x is not None and y is not None and max(x, y) > 2 * min(x, y)]

    def text(self) -> str:
        if self.skipped:
            return f"DPDK virtio_user <-> vhost: not measured ({self.skipped})"
        lines = [f"{'DPDK testpmd':<32}{'Mpps':>9}{'sender Mpps':>13}"]
        for f in self.figures:
            lines.append(f"{f.direction:<32}{f.mpps:>9.2f}{f.sender_mpps:>13.2f}")
            if f.cpu is not None:
                lines.append(f"    {f.cpu.text()}")
        lines.append(f"({self.frame_len}-byte frames, {self.cpus} CPU(s), one forwarding "
                     f"lcore per process)")
        for name, ratio, ours, theirs, what in (
                ("pass", self.vxdp_pass_ratio, VXDP_DIRECTIONS[1], ENQUEUE,
                 "vxdp host -> DPDK guest / DPDK vhost enqueue"),
                ("guest_drop", self.guest_drop_ratio, VXDP_DIRECTIONS[2], DEQUEUE,
                 "DPDK guest -> XDP_DROP on guest 1 / DPDK vhost dequeue")):
            if ratio is None:
                continue
            rounds = sorted(self.round_ratios(ours, theirs))
            spread = (f"; by round min / median / max {rounds[0]:.2f} / "
                      f"{rounds[len(rounds) // 2]:.2f} / {rounds[-1]:.2f}x"
                      if len(rounds) > 1 else "")
            lines.append(f"{what}: {ratio:.2f}x best over best{spread} "
                         f"(target {TARGETS[name]}x)")
            apart = self.placements_apart(ours, theirs)
            if apart:
                lines.append(f"    {len(apart)} of {len(rounds)} round(s) on different vCPU "
                             f"placements (xcpu " + ", ".join(f"{x:.0f} vs {y:.0f}"
                                                              for x, y in apart) + " ns)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"figures": [asdict(f) for f in self.figures], "frame_len": self.frame_len,
                "cpus": self.cpus, "skipped": self.skipped,
                "vhost_enqueue_mpps": self.vhost_enqueue_mpps,
                "vxdp_pass_ratio": self.vxdp_pass_ratio,
                "guest_drop_ratio": self.guest_drop_ratio,
                "pass_ratios": self.round_ratios(VXDP_DIRECTIONS[1], ENQUEUE),
                "guest_drop_ratios": self.round_ratios(VXDP_DIRECTIONS[2], DEQUEUE),
                "pass_placements_apart": self.placements_apart(VXDP_DIRECTIONS[1], ENQUEUE),
                "guest_drop_placements_apart": self.placements_apart(VXDP_DIRECTIONS[2],
                                                                     DEQUEUE),
                "targets": TARGETS}

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
    watch = _CpuWatch({"vxdp": os.getpid(), "testpmd-vhost": vhost.process.pid,
                       "testpmd-guest": user.process.pid}, _forwarding_cpus())
    await receiver.forward("rxonly")
    await sender.forward("txonly")
    try:
        await trio.sleep(warmup)
        watch.start()
        rx, tx, elapsed = await _window(sender, receiver, seconds)
        cpu = watch.stop()
    finally:
        await sender.halt()
        await receiver.halt()
    return DpdkFigure(direction, rx / elapsed / 1e6, tx / elapsed / 1e6, rx, elapsed, cpu)


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
                        frame_len: int, rounds: int, host_burst: int = BURST,
                        guest_drop: bool = True) -> None:
    """testpmd's virtio_user as guest 0 of `vxdp host`: its transmit to the wire, PASS
    into it and, with `guest_drop`, its frames to guest 1 (an idle `vxdp guest` child
    process) dropped by the host's program on guest 1's port."""
    import subprocess
    import sys

    from vxdp.bpf.asm import assemble
    from vxdp.bpf.isa import encode
    from vxdp.bpf.program import Program
    from vxdp.packets import Flow
    from vxdp.runtime import HostRuntime
    socks = [f"{tmp}/vxdp-host.sock"] + ([f"{tmp}/vxdp-guest1.sock"] if guest_drop else [])
    # The host where DPDK's second testpmd forwards in its own pair (testpmd as guest
    # forwards where DPDK's first does): one CPU each, as theirs have.  Unpinned, the
    # scheduler put the host on testpmd's busy CPU in about one window of three, at
    # half the rate.
    cpu, affinity, cpus = dpdk.forwarding_cpu(1), os.sched_getaffinity(0), _forwarding_cpus()
    wire = RepeatWire()
    host = HostRuntime(socks, wire=wire, burst=host_burst)
    drop = Program("xdp_drop", "xdp", encode(assemble("mov %r0, 1\nexit")))
    second = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            if guest_drop:
                with open(f"{tmp}/guest1.log", "wb") as log:
                    second = subprocess.Popen(
                        [sys.executable, "-m", "vxdp", "guest", "--socket", socks[1]],
                        stdout=subprocess.DEVNULL, stderr=log)
            async with dpdk.open_testpmd([f"virtio_user0,path={socks[0]},queues=1"],
                                         prefix=dpdk.unique_prefix("bench-guest"),
                                         lcores=dpdk.lcores_for(0)) as user:
                if cpu is not None and cpu in affinity:
                    os.sched_setaffinity(0, {cpu})
                await user.command(f"set txpkts {frame_len}")
                frame = Flow("udp", "10.0.0.1", "10.1.0.1", 40000, 53).packet(
                    bytes(max(frame_len - 42, 0)))
                # addressed to the guest's MAC as the host knows it (no flooding)
                frame = host.guests[0].profile.mac + frame[6:]
                procs = {"vxdp": os.getpid(), "testpmd-guest": user.process.pid}
                if second is not None:
                    procs["vxdp-guest1"] = second.pid
                for _ in range(rounds):
                    # DPDK's driver into our device
                    watch = _CpuWatch(procs, cpus)
                    await user.forward("txonly")
                    await trio.sleep(warmup)
                    watch.start()
                    a, t0 = wire.tx_packets, time.perf_counter()
                    await trio.sleep(seconds)
                    b, t1 = wire.tx_packets, time.perf_counter()
                    share = watch.stop()
                    await user.halt()
                    report.figures.append(DpdkFigure(VXDP_DIRECTIONS[0], (b - a) / (t1 - t0) / 1e6,
                                                     (b - a) / (t1 - t0) / 1e6, b - a, t1 - t0,
                                                     share))
                    # our device into DPDK's driver (PASS into the guest)
                    watch = _CpuWatch(procs, cpus)
                    await user.forward("rxonly")
                    wire.start(frame, host.burst)
                    try:
                        await trio.sleep(warmup)
                        watch.start()
                        r0, t0 = await user.port_stats(0), time.perf_counter()
                        w0 = wire.rx_packets
                        await trio.sleep(seconds)
                        r1, t1 = await user.port_stats(0), time.perf_counter()
                        w1 = wire.rx_packets
                        share = watch.stop()
                    finally:
                        wire.stop()
                        await user.halt()
                    rx = r1.rx_packets - r0.rx_packets
                    report.figures.append(DpdkFigure(VXDP_DIRECTIONS[1], rx / (t1 - t0) / 1e6,
                                                     (w1 - w0) / (t1 - t0) / 1e6, rx, t1 - t0,
                                                     share))
                    if guest_drop:
                        await _guest_drop(report, host, user, second, drop, seconds, warmup,
                                          procs, cpus)
            nursery.cancel_scope.cancel()
    finally:
        os.sched_setaffinity(0, affinity)
        if second is not None and second.poll() is None:
            second.terminate()
            second.wait()
        host.close()


async def _guest_drop(report: DpdkReport, host: object, user: dpdk.Testpmd,
                      second: object, drop: object, seconds: float, warmup: float,
                      procs: dict[str, int], cpus: tuple[int, int] | None) -> None:
    """testpmd (guest 0) transmits to guest 1's MAC; the host's xdp_drop on guest 1's
    port drops them (switched guest to guest in the host, never on the wire)."""
    from vxdp.runtime import HostRuntime
    assert isinstance(host, HostRuntime)
    g1 = host.guests[1]
    with trio.fail_after(30):
        while not (g1.live and g1.cpath is not None and g1.cpath.active):
            if second is not None and second.poll() is not None:  # type: ignore[attr-defined]
                raise dpdk.DpdkError("the second guest (vxdp guest) exited")
            await trio.sleep(0.01)

    def dropped() -> int:
        return g1.cpath.stats().get("xdp_drop", 0) if g1.cpath is not None else 0
    await user.command(f"set eth-peer 0 {g1.profile.mac.hex(':')}")
    host.attach(drop)  # type: ignore[arg-type]
    watch = _CpuWatch(procs, cpus)
    try:
        await user.forward("txonly")
        await trio.sleep(warmup)
        watch.start()
        a, s0, t0 = dropped(), await user.port_stats(0), time.perf_counter()
        await trio.sleep(seconds)
        b, s1, t1 = dropped(), await user.port_stats(0), time.perf_counter()
        cpu = watch.stop()
        await user.halt()
    finally:
        host.detach()
        await user.command("set eth-peer 0 02:00:00:00:00:00")
    report.figures.append(DpdkFigure(VXDP_DIRECTIONS[2], (b - a) / (t1 - t0) / 1e6,
                                     (s1.tx_packets - s0.tx_packets) / (t1 - t0) / 1e6,
                                     b - a, t1 - t0, cpu))


async def measure(seconds: float = 2.0, *, warmup: float = 0.5, frame_len: int = FRAME_LEN,
                  rounds: int = 1, directions: Sequence[str] = DIRECTIONS,
                  vxdp_host: bool = False, host_burst: int = BURST,
                  sock_dir: Path | None = None, guest_drop: bool = True) -> DpdkReport:
    """Both directions with one pair of testpmd processes; with `vxdp_host`, before
    them the directions between testpmd's virtio_user and `vxdp host` (at most
    `host_burst` frames a round, `vxdp host`'s default; with `guest_drop`, also to a
    second guest whose port drops them).  `rounds` times, vxdp's windows and DPDK's
    taking turns, so that a ratio can be taken round by round."""
    report = DpdkReport(frame_len=frame_len, cpus=dpdk.cpu_count())
    reason = dpdk.unavailable()
    if reason is not None:
        report.skipped = reason
        return report
    with TemporaryDirectory(prefix="vxdp-bench-", dir=sock_dir) as tmp:
        for _ in range(rounds):
            if vxdp_host:
                await _measure_vxdp(report, tmp, seconds, warmup, frame_len, 1, host_burst,
                                    guest_drop)
            await _measure_dpdk(report, tmp, seconds, warmup, frame_len, directions)
    return report


async def _measure_dpdk(report: DpdkReport, tmp: str, seconds: float, warmup: float,
                        frame_len: int, directions: Sequence[str]) -> None:
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
            for direction in directions:
                report.figures.append(
                    await _measure(vhost, user, direction, seconds, warmup))


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


__all__ = ["DIRECTIONS", "ENQUEUE", "FRAME_LEN", "VXDP_DIRECTIONS", "DpdkFigure", "DpdkReport", "RepeatWire", "WindowCpu", "measure", "run"]
