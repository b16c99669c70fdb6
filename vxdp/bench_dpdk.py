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
    virtio_user -> guest 1 XDP_DROP
                               testpmd transmits to a second guest's MAC (an idle
                               `vxdp guest` child process); the host's program on that
                               guest's port drops them, counted there

Each figure is the receiver's rx packet counter over a timed window (after a warm-up),
read through testpmd's `show port stats`; the sender's tx rate is given beside it (what
it managed to place in the ring; the rest it dropped for want of room).  Frames are
`frame_len` bytes (60, as vxdp.bench_datapath's).  Each process gets one forwarding
lcore; with two CPUs they get one each (`vxdp.dpdk.lcores_for`), so the figures are a
two-core DPDK datapath against our one-core burst figures.  A benchmark, never a test:
nothing asserts a rate.  Without testpmd the report says why and holds no figures.

Taking turns.  With `vxdp_host`, both set-ups are up for the whole run (ours: the host,
testpmd as guest 0, guest 1; DPDK's: its vhost testpmd and its virtio_user testpmd) and
only one forwards at a time: each round is our transmit-to-wire window, then PASS beside
DPDK's enqueue and XDP_DROP on guest 1 beside DPDK's dequeue, ours first in even rounds
and DPDK's first in odd ones (ABBA: neither side always goes first).  A set-up that is
not forwarding idles (testpmd after `stop` waits in a blocking read; our host waits on
eventfds and the wire's event): each figure's `idle_pct` is the CPU the other set-up's
threads ran in its window, added up.  Each of our windows is paired with the DPDK window
of the same direction next to it (`pair_windows`); the pair is comparable when the placement
probes before and after both windows (four) fall in one class (`placement`), and quiet
when neither window lost CPU to neighbours or the hypervisor (`QUIET_PCT`).

Where each window's CPU went (`DpdkFigure.cpu`, a `WindowCpu`), to tell a slow window's
cause apart:

    xcpu_ns     a cache line's round trip between the two forwarding CPUs, probed just
                before the window with nothing forwarding (csrc/xcpu.c; the median of
                three short probes, so that one probe preempted does not mark a window);
                `xcpu_after_ns` the same just after it, forwarding stopped.  On a VM it
                says where the hypervisor put the two vCPUs: ~25 ns on one core, ~100 ns
                on one cache complex, ~500 to ~1200 ns apart (a 2-vCPU EPYC guest moves
                between these every few seconds), and every window of either datapath
                is slower apart
    threads     run and run-queue wait, % of one CPU, of every thread of the bench's
                processes (this one: `vxdp`, the host and the bench in one thread;
                the testpmds; the second guest) that had 1% or more of either
                (/proc/PID/task/TID/schedstat)
    others_pct  the CPU time of the machine's other processes, % of one CPU (all of
                /proc/stat's busy time less the threads above): neighbour load
    steal_pct   time the hypervisor gave the vCPUs to someone else (/proc/stat)
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
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
#: each target's pair of directions: (ours, DPDK's)
COMPARED = {"pass": (VXDP_DIRECTIONS[1], ENQUEUE), "guest_drop": (VXDP_DIRECTIONS[2], DEQUEUE)}
#: placement classes by a probe's round trip, ns: under CORE_NS the two vCPUs share a
#: core, under NEAR_NS a cache complex, from FAR_NS on they are apart; a probe between
#: NEAR_NS and FAR_NS is "unclear" (a placement changing under the probe, or a probe
#: preempted) and makes its window comparable with none
CORE_NS, NEAR_NS, FAR_NS = 50.0, 200.0, 300.0
#: a window is quiet when the machine's other processes and the hypervisor's steal took
#: under this % of one CPU in it, added up
QUIET_PCT = 10.0
#: the bench's processes by set-up (labels of `WindowCpu.threads`, before the ":")
VXDP_PROCS = ("vxdp", "vxdp-guest1", "testpmd-guest")
DPDK_PROCS = ("testpmd-vhost", "testpmd-user")


def placement(xcpu_ns: float | None) -> str | None:
    """The placement class of one probe: "core", "near", "far", "unclear"; None unprobed."""
    if xcpu_ns is None:
        return None
    if xcpu_ns < CORE_NS:
        return "core"
    if xcpu_ns < NEAR_NS:
        return "near"
    return "far" if xcpu_ns >= FAR_NS else "unclear"


@dataclass(frozen=True)
class WindowCpu:
    """Where one window's CPU went (the module docstring says how each is taken)."""

    xcpu_ns: float | None  # probed before the window
    threads: dict[str, tuple[float, float]]  # label: (run %, run-queue wait %)
    others_pct: float
    steal_pct: float
    xcpu_after_ns: float | None = None  # probed after it, forwarding stopped
    procs: dict[str, float] = field(default_factory=dict)  # label: run % of all threads

    @property
    def probes(self) -> tuple[float | None, float | None]:
        return self.xcpu_ns, self.xcpu_after_ns

    def text(self) -> str:
        xcpu = "/".join(f"{x:.0f}" if x is not None else "-" for x in
                        (self.probes if self.xcpu_after_ns is not None else self.probes[:1]))
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
        procs = dict.fromkeys(self.procs, 0.0)
        ours = 0.0
        for key, (comm, run, wait) in threads.items():
            _, run0, wait0 = self._threads.get(key, (comm, run, wait))
            run_pct = (run - run0) / 1e9 / elapsed * 100
            wait_pct = (wait - wait0) / 1e9 / elapsed * 100
            ours += run_pct
            procs[key[0]] += run_pct
            if run_pct >= 1 or wait_pct >= 1:
                label = key[0] if key[1] == self.procs[key[0]] and key[0] == "vxdp" \
                    else f"{key[0]}:{comm}"
                if label in shares:
                    label += f"#{key[1]}"
                shares[label] = (round(run_pct, 1), round(wait_pct, 1))
        hz = os.sysconf("SC_CLK_TCK") * elapsed / 100
        return WindowCpu(self.xcpu_ns, shares,
                         round(max((busy - self._ticks0[0]) / hz - ours, 0.0), 1),
                         round((steal - self._ticks0[1]) / hz, 1),
                         procs={k: round(v, 2) for k, v in procs.items()})


def _forwarding_cpus() -> tuple[int, int] | None:
    """The CPUs the two forwarding threads of a window run on (`dpdk.forwarding_cpu`);
    None with one CPU.  Asked before the bench pins itself, which narrows the set."""
    a, b = dpdk.forwarding_cpu(0), dpdk.forwarding_cpu(1)
    return (a, b) if a is not None and b is not None and a != b else None


def _probe_xcpu(cpus: tuple[int, int] | None, probes: int = 3,
                rounds: int = 5000) -> float | None:
    """Their cache-line round trip, the median of `probes` probes of `rounds` trips (a
    probe whose thread was preempted reads several times high; None with one CPU or no
    answer)."""
    from vxdp import native
    from vxdp.errors import CoreError
    if cpus is None:
        return None
    try:
        return statistics.median(native.xcpu_rtt_ns(*cpus, rounds=rounds)
                                 for _ in range(probes))
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
    #: seconds from the run's start to the window's first probe and after its last one
    started: float | None = None
    ended: float | None = None
    #: run % (of one CPU) of all threads of the set-up not forwarding, added up (None:
    #: only one set-up)
    idle_pct: float | None = None

    @property
    def probes(self) -> tuple[float | None, ...]:
        return self.cpu.probes if self.cpu is not None else (None,)


def _common_placement(probes: Sequence[float | None]) -> str | None:
    """The class all `probes` fall in, None when they differ, are unclear or missing."""
    classes = {placement(x) for x in probes}
    if len(classes) != 1:
        return None
    (only,) = classes
    return only if only not in (None, "unclear") else None


@dataclass(frozen=True)
class WindowPair:
    """One of our windows and the DPDK window of the same direction next to it."""

    ours: DpdkFigure
    theirs: DpdkFigure

    @property
    def ratio(self) -> float | None:
        return self.ours.mpps / self.theirs.mpps if self.theirs.mpps else None

    @property
    def probes(self) -> tuple[float | None, ...]:
        return self.ours.probes + self.theirs.probes

    @property
    def placement(self) -> str | None:
        """The class every probe of both windows falls in; None: not comparable."""
        return _common_placement(self.probes)

    @property
    def comparable(self) -> bool:
        return self.placement is not None and self.ratio is not None

    @property
    def quiet(self) -> bool:
        """Both windows quiet (`QUIET_PCT`): no neighbour took CPU from either side."""
        return all(f.cpu is not None and f.cpu.others_pct + f.cpu.steal_pct < QUIET_PCT
                   for f in (self.ours, self.theirs))

    @property
    def gap(self) -> float | None:
        """Seconds between the first window's last probe and the second's first."""
        a, b = sorted((self.ours, self.theirs), key=lambda f: f.started or 0.0)
        return b.started - a.ended if a.ended is not None and b.started is not None \
            else None

    def to_dict(self) -> dict[str, object]:
        return {"ours_mpps": self.ours.mpps, "theirs_mpps": self.theirs.mpps,
                "ratio": self.ratio, "xcpu_ns": list(self.probes),
                "placement": self.placement, "comparable": self.comparable,
                "quiet": self.quiet,
                "ours_first": (self.ours.started or 0.0) <= (self.theirs.started or 0.0),
                "gap_s": self.gap,
                # the most neighbours and the hypervisor took in either window, % of a CPU
                "others_pct": max((f.cpu.others_pct for f in (self.ours, self.theirs)
                                   if f.cpu is not None), default=None),
                "steal_pct": max((f.cpu.steal_pct for f in (self.ours, self.theirs)
                                  if f.cpu is not None), default=None)}


def pair_windows(figures: Sequence[DpdkFigure], ours: str, theirs: str) -> list[WindowPair]:
    """Pair each window of direction `ours` with a window of `theirs` next to it.

    `figures` are in time order.  Of the windows of the two directions, two neighbours
    of different directions make a pair and neither is paired again; a window whose
    neighbours are of its own direction (or taken) stays unpaired.  Taking turns ABBA
    (ours, theirs | theirs, ours | ...), every window gets the one beside it in time."""
    seq = [f for f in figures if f.direction in (ours, theirs)]
    pairs, i = [], 0
    while i + 1 < len(seq):
        a, b = seq[i], seq[i + 1]
        if a.direction == b.direction:
            i += 1
            continue
        pairs.append(WindowPair(a, b) if a.direction == ours else WindowPair(b, a))
        i += 2
    return pairs


def _spread(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "min": None, "median": None, "max": None}
    return {"count": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values)}


@dataclass(frozen=True)
class PairSummary:
    """A target's ratio over its comparable pairs, overall and by placement."""

    target: float
    pairs: int  # all pairs
    ratios: tuple[float, ...]  # comparable pairs' ratios, in time order
    by_placement: dict[str, tuple[float, ...]]  # "near": ratios of near/near pairs, ...
    quiet: tuple[float, ...] = ()  # the comparable pairs' ratios whose windows were quiet

    @property
    def comparable(self) -> int:
        return len(self.ratios)

    @property
    def at_or_over(self) -> int:
        return sum(r >= self.target for r in self.ratios)

    @property
    def met(self) -> bool | None:
        """Met when in every placement class seen the median comparable pair is at or
        over the target; None without a comparable pair."""
        if not self.ratios:
            return None
        return all(statistics.median(r) >= self.target for r in self.by_placement.values())

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "pairs": self.pairs, "comparable": self.comparable,
                **{k: v for k, v in _spread(self.ratios).items() if k != "count"},
                "at_or_over": self.at_or_over, "met": self.met,
                "quiet": _spread(self.quiet),
                "by_placement": {k: _spread(v) for k, v in sorted(self.by_placement.items())}}

    def text(self) -> str:
        if not self.ratios:
            return f"no comparable pair of {self.pairs}"
        s = _spread(self.ratios)
        parts = [f"{k}/{k} {len(v)}: " + " / ".join(f"{x:.2f}" for x in
                                                   (min(v), statistics.median(v), max(v)))
                 for k, v in sorted(self.by_placement.items())]
        verdict = "met" if self.met else "failed"
        q = _spread(self.quiet)
        quiet = (f"{q['count']} quiet: {q['min']:.2f} / {q['median']:.2f} / {q['max']:.2f}x"
                 if self.quiet else "none quiet")
        return (f"{self.comparable} of {self.pairs} pairs comparable: min / median / max "
                f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}x "
                f"({'; '.join(parts)}; {quiet}); {self.at_or_over} of {self.comparable} "
                f"at or over {self.target}x: {verdict}")


def summarize(pairs: Sequence[WindowPair], target: float) -> PairSummary:
    ratios: list[float] = []
    quiet: list[float] = []
    by: dict[str, list[float]] = {}
    for p in pairs:
        if p.comparable:
            assert p.ratio is not None and p.placement is not None
            ratios.append(p.ratio)
            by.setdefault(p.placement, []).append(p.ratio)
            if p.quiet:
                quiet.append(p.ratio)
    return PairSummary(target, len(pairs), tuple(ratios),
                       {k: tuple(v) for k, v in by.items()}, tuple(quiet))


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

    def pairs(self, ours: str, theirs: str) -> list[WindowPair]:
        return pair_windows(self.figures, ours, theirs)

    def summary(self, name: str) -> PairSummary:
        """The target `name`'s ratio over its comparable pairs."""
        return summarize(self.pairs(*COMPARED[name]), TARGETS[name])

    def round_ratios(self, ours: str, theirs: str) -> list[float]:
        """ours/theirs pair by pair (`pair_windows`), comparable or not."""
        return [p.ratio for p in self.pairs(ours, theirs) if p.ratio is not None]

    def placements_apart(self, ours: str, theirs: str) -> list[tuple[float, float]]:
        """(our xcpu ns, theirs) probed before each window, of the pairs whose two
        windows were probed on different vCPU placements (one probe more than twice the
        other): their ratio compares two machines as much as two datapaths."""
        out = []
        for p in self.pairs(ours, theirs):
            x, y = p.ours.probes[0], p.theirs.probes[0]
            if x is not None and y is not None and max(x, y) > 2 * min(x, y):
                out.append((x, y))
        return out

    def text(self) -> str:
        if self.skipped:
            return f"DPDK virtio_user <-> vhost: not measured ({self.skipped})"
        lines = [f"{'DPDK testpmd':<32}{'Mpps':>9}{'sender Mpps':>13}"]
        for f in self.figures:
            idle = (f"   the other set-up ran {f.idle_pct:.1f}% of a CPU"
                    if f.idle_pct is not None else "")
            lines.append(f"{f.direction:<32}{f.mpps:>9.2f}{f.sender_mpps:>13.2f}{idle}")
            if f.cpu is not None:
                lines.append(f"    {f.cpu.text()}")
        lines.append(f"({self.frame_len}-byte frames, {self.cpus} CPU(s), one forwarding "
                     f"lcore per process)")
        for name, ratio, what in (
                ("pass", self.vxdp_pass_ratio, "vxdp host -> DPDK guest / DPDK vhost enqueue"),
                ("guest_drop", self.guest_drop_ratio,
                 "DPDK guest -> XDP_DROP on guest 1 / DPDK vhost dequeue")):
            if ratio is None:
                continue
            ours, theirs = COMPARED[name]
            rounds = sorted(self.round_ratios(ours, theirs))
            spread = (f"; by pair min / median / max {rounds[0]:.2f} / "
                      f"{statistics.median(rounds):.2f} / {rounds[-1]:.2f}x"
                      if len(rounds) > 1 else "")
            lines.append(f"{what} (target {TARGETS[name]}x): {ratio:.2f}x best over best"
                         f"{spread}")
            lines.append(f"    {self.summary(name).text()}")
            apart = self.placements_apart(ours, theirs)
            if apart:
                lines.append(f"    {len(apart)} of {len(rounds)} pair(s) on different vCPU "
                             f"placements (xcpu " + ", ".join(f"{x:.0f} vs {y:.0f}"
                                                              for x, y in apart) + " ns)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "figures": [asdict(f) for f in self.figures], "frame_len": self.frame_len,
            "cpus": self.cpus, "skipped": self.skipped,
            "vhost_enqueue_mpps": self.vhost_enqueue_mpps,
            "vxdp_pass_ratio": self.vxdp_pass_ratio,
            "guest_drop_ratio": self.guest_drop_ratio,
            "targets": TARGETS}
        for name, (ours, theirs) in COMPARED.items():
            out[f"{name}_ratios"] = self.round_ratios(ours, theirs)
            out[f"{name}_placements_apart"] = self.placements_apart(ours, theirs)
            out[f"{name}_pairs"] = [p.to_dict() for p in self.pairs(ours, theirs)]
            out[f"{name}_comparable"] = self.summary(name).to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class _Turn:
    """One direction's traffic in a window: how it starts, its counters, how it stops."""

    direction: str
    start: Callable[[], Awaitable[None]]
    counters: Callable[[], Awaitable[tuple[int, int]]]  # (received, sent) so far
    stop: Callable[[], Awaitable[None]]
    idle: tuple[str, ...] = ()  # processes (labels) of the set-up not forwarding


#: after a window's traffic is told to stop, before the placement is probed again (our
#: wire pump ends its turn within 0.5 ms, the host's transmit handler polls 20 us)
SETTLE = 0.01


async def _run_window(turn: _Turn, procs: dict[str, int], cpus: tuple[int, int] | None,
                      seconds: float, warmup: float, origin: float) -> DpdkFigure:
    """Probe, start, warm up, count over `seconds`, stop, probe again."""
    started = time.perf_counter() - origin
    watch = _CpuWatch(procs, cpus)
    await turn.start()
    try:
        await trio.sleep(warmup)
        watch.start()
        t0 = time.perf_counter()
        rx0, tx0 = await turn.counters()
        t0 = (t0 + time.perf_counter()) / 2
        await trio.sleep(seconds)
        t1 = time.perf_counter()
        rx1, tx1 = await turn.counters()
        t1 = (t1 + time.perf_counter()) / 2
        cpu = watch.stop()
    finally:
        await turn.stop()
    await trio.sleep(SETTLE)
    cpu = replace(cpu, xcpu_after_ns=_probe_xcpu(cpus))
    idle = None
    if turn.idle:
        idle = round(sum(cpu.procs.get(label, 0.0) for label in turn.idle), 2)
    elapsed = t1 - t0
    return DpdkFigure(turn.direction, (rx1 - rx0) / elapsed / 1e6,
                      (tx1 - tx0) / elapsed / 1e6, rx1 - rx0, elapsed, cpu,
                      round(started, 3), round(time.perf_counter() - origin, 3), idle)


def _dpdk_turn(vhost: dpdk.Testpmd, user: dpdk.Testpmd, direction: str,
               idle: tuple[str, ...] = ()) -> _Turn:
    """DPDK's own pair in `direction` (txonly on the sender, rxonly on the receiver)."""
    sender, receiver = (user, vhost) if direction == DEQUEUE else (vhost, user)

    async def start() -> None:
        await receiver.forward("rxonly")
        await sender.forward("txonly")

    async def counters() -> tuple[int, int]:
        r = await receiver.port_stats(0)
        s = await sender.port_stats(0)
        return r.rx_packets, s.tx_packets

    async def stop() -> None:
        await sender.halt()
        await receiver.halt()
    return _Turn(direction, start, counters, stop, idle)


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


def schedule(rounds: int, kinds: Sequence[tuple[_Turn, _Turn | None]],
             first: Sequence[_Turn] = ()) -> list[_Turn]:
    """The windows in order: each round `first`, then each kind's (ours, theirs), ours
    first in even rounds and theirs first in odd ones."""
    out: list[_Turn] = []
    for r in range(rounds):
        out += first
        for ours, theirs in kinds:
            pair = [ours] if theirs is None else [ours, theirs] if r % 2 == 0 \
                else [theirs, ours]
            out += pair
    return out


async def _measure_mixed(report: DpdkReport, tmp: str, seconds: float, warmup: float,
                         frame_len: int, rounds: int, directions: Sequence[str],
                         host_burst: int = BURST, guest_drop: bool = True) -> None:
    """Both set-ups up at once, windows taking turns (the module docstring): testpmd's
    virtio_user as guest 0 of `vxdp host`, its transmit to the wire, PASS into it and,
    with `guest_drop`, its frames to guest 1 (an idle `vxdp guest` child process)
    dropped by the host's program on guest 1's port; beside them DPDK's own pair in
    `directions`."""
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
    origin = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            if guest_drop:
                with open(f"{tmp}/guest1.log", "wb") as log:
                    second = subprocess.Popen(
                        [sys.executable, "-m", "vxdp", "guest", "--socket", socks[1]],
                        stdout=subprocess.DEVNULL, stderr=log)
            sock = f"{tmp}/vhost.sock"
            async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                         prefix=dpdk.unique_prefix("bench-vhost"),
                                         lcores=dpdk.lcores_for(0)) as vhost, \
                    dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                      prefix=dpdk.unique_prefix("bench-user"),
                                      lcores=dpdk.lcores_for(1)) as duser, \
                    dpdk.open_testpmd([f"virtio_user0,path={socks[0]},queues=1"],
                                      prefix=dpdk.unique_prefix("bench-guest"),
                                      lcores=dpdk.lcores_for(0)) as user:
                await vhost.wait_for("virtio is now ready for processing")
                for pmd in (vhost, duser, user):
                    await pmd.command(f"set txpkts {frame_len}")
                if cpu is not None and cpu in affinity:
                    os.sched_setaffinity(0, {cpu})
                frame = Flow("udp", "10.0.0.1", "10.1.0.1", 40000, 53).packet(
                    bytes(max(frame_len - 42, 0)))
                # addressed to the guest's MAC as the host knows it (no flooding)
                frame = host.guests[0].profile.mac + frame[6:]
                procs = {"vxdp": os.getpid(), "testpmd-guest": user.process.pid,
                         "testpmd-vhost": vhost.process.pid,
                         "testpmd-user": duser.process.pid}
                if second is not None:
                    procs["vxdp-guest1"] = second.pid

                def theirs(direction: str) -> _Turn | None:
                    return _dpdk_turn(vhost, duser, direction, VXDP_PROCS) \
                        if direction in directions else None

                async def wire_counters() -> tuple[int, int]:
                    return wire.tx_packets, wire.tx_packets

                to_wire = _Turn(VXDP_DIRECTIONS[0], lambda: user.forward("txonly"),
                                wire_counters, user.halt, DPDK_PROCS)

                async def pass_start() -> None:
                    await user.forward("rxonly")
                    wire.start(frame, host.burst)

                async def pass_counters() -> tuple[int, int]:
                    return (await user.port_stats(0)).rx_packets, wire.rx_packets

                async def pass_stop() -> None:
                    wire.stop()
                    await user.halt()
                kinds = [(_Turn(VXDP_DIRECTIONS[1], pass_start, pass_counters, pass_stop,
                                DPDK_PROCS), theirs(ENQUEUE))]
                if guest_drop:
                    kinds.append((await _guest_drop_turn(host, user, second, drop),
                                  theirs(DEQUEUE)))
                for turn in schedule(rounds, kinds, [to_wire]):
                    report.figures.append(
                        await _run_window(turn, procs, cpus, seconds, warmup, origin))
            nursery.cancel_scope.cancel()
    finally:
        os.sched_setaffinity(0, affinity)
        if second is not None and second.poll() is None:
            second.terminate()
            second.wait()
        host.close()


async def _guest_drop_turn(host: object, user: dpdk.Testpmd, second: object,
                           drop: object) -> _Turn:
    """testpmd (guest 0) transmits to guest 1's MAC; the host's xdp_drop on guest 1's
    port drops them (switched guest to guest in the host, never on the wire).  Waits
    for guest 1's port first."""
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

    async def start() -> None:
        await user.command(f"set eth-peer 0 {g1.profile.mac.hex(':')}")
        host.attach(drop)  # type: ignore[arg-type]
        await user.forward("txonly")

    async def counters() -> tuple[int, int]:
        return dropped(), (await user.port_stats(0)).tx_packets

    async def stop() -> None:
        try:
            await user.halt()
        finally:
            host.detach()
            await user.command("set eth-peer 0 02:00:00:00:00:00")
    return _Turn(VXDP_DIRECTIONS[2], start, counters, stop, DPDK_PROCS)


async def measure(seconds: float = 2.0, *, warmup: float = 0.5, frame_len: int = FRAME_LEN,
                  rounds: int = 1, directions: Sequence[str] = DIRECTIONS,
                  vxdp_host: bool = False, host_burst: int = BURST,
                  sock_dir: Path | None = None, guest_drop: bool = True) -> DpdkReport:
    """DPDK's pair in `directions`, `rounds` times, windows of `seconds`; with
    `vxdp_host`, the directions between testpmd's virtio_user and `vxdp host` (at most
    `host_burst` frames a round, `vxdp host`'s default; with `guest_drop`, also to a
    second guest whose port drops them) taking turns with DPDK's (the module
    docstring), both set-ups up the whole time."""
    report = DpdkReport(frame_len=frame_len, cpus=dpdk.cpu_count())
    reason = dpdk.unavailable()
    if reason is not None:
        report.skipped = reason
        return report
    with TemporaryDirectory(prefix="vxdp-bench-", dir=sock_dir) as tmp:
        if vxdp_host:
            await _measure_mixed(report, tmp, seconds, warmup, frame_len, rounds,
                                 directions, host_burst, guest_drop)
        else:
            await _measure_dpdk(report, tmp, seconds, warmup, frame_len, rounds, directions)
    return report


async def _measure_dpdk(report: DpdkReport, tmp: str, seconds: float, warmup: float,
                        frame_len: int, rounds: int, directions: Sequence[str]) -> None:
    sock = f"{tmp}/vhost.sock"
    origin = time.perf_counter()
    async with dpdk.open_testpmd([f"net_vhost0,iface={sock},queues=1"],
                                 prefix=dpdk.unique_prefix("bench-vhost"),
                                 lcores=dpdk.lcores_for(0)) as vhost:
        async with dpdk.open_testpmd([f"virtio_user0,path={sock},queues=1"],
                                     prefix=dpdk.unique_prefix("bench-user"),
                                     lcores=dpdk.lcores_for(1)) as user:
            await vhost.wait_for("virtio is now ready for processing")
            for pmd in (vhost, user):
                await pmd.command(f"set txpkts {frame_len}")
            procs = {"vxdp": os.getpid(), "testpmd-vhost": vhost.process.pid,
                     "testpmd-user": user.process.pid}
            for _ in range(rounds):
                for direction in directions:
                    report.figures.append(await _run_window(
                        _dpdk_turn(vhost, user, direction), procs, _forwarding_cpus(),
                        seconds, warmup, origin))


def run(seconds: float = 2.0, **kw: object) -> DpdkReport:
    """`measure()` from synchronous code (the bench command)."""
    return trio.run(lambda: measure(seconds, **kw))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="vxdp-bench-dpdk", description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=0.5, help="window length")
    ap.add_argument("--warmup", type=float, default=0.2, help="warm-up before each window")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--frame-len", type=int, default=FRAME_LEN)
    ap.add_argument("--vxdp-host", action="store_true",
                    help="also measure testpmd's virtio_user against vxdp host, taking turns")
    ap.add_argument("--host-burst", type=int, default=BURST,
                    help=f"frames vxdp host moves per round at most (default {BURST})")
    args = ap.parse_args(argv)
    report = run(args.seconds, warmup=args.warmup, rounds=args.rounds,
                 frame_len=args.frame_len, vxdp_host=args.vxdp_host,
                 host_burst=args.host_burst)
    print(report.to_json() if args.json else report.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["COMPARED", "DIRECTIONS", "ENQUEUE", "FRAME_LEN", "TARGETS", "VXDP_DIRECTIONS",
           "DpdkFigure", "DpdkReport", "PairSummary", "RepeatWire", "WindowCpu", "WindowPair",
           "measure", "pair_windows", "placement", "run", "schedule", "summarize"]
