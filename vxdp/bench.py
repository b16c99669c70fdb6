"""`vxdp bench`: nanoseconds per packet on the interpreter beside the kernel JIT.

Four workloads, compiled from their C sources in vxdp/bench_progs (package data; the
differential corpus, tests/vxdp/progs, links to them):

    drop                 xdp_drop.c            return XDP_DROP
    parse+swap+TX        xdp_parse_swap_tx.c   Ethernet/IPv4/UDP parse, swap, XDP_TX
    array counter        xdp_array_counter.c   ARRAY lookup and two atomic adds
    5-tuple hash lookup  xdp_flow_hash.c       HASH lookup with a 16-byte key (1024 flows)

Every engine runs the same program over the same packet in the same process: the
interpreter through `Engine.run_xdp` in batches (the FFI crossing included, as the host
pays it), the kernel through BPF_PROG_TEST_RUN with `repeat` (its own per-run average),
and, where a C compiler is at hand, vxdp's own JIT (the `jit` engine, same core, same
batch call) as a third column.
Each figure is the best of several rounds, and programs compared with each other (the
two calibration programs) are measured round-robin, so a burst of load from a neighbour
inflates neither one alone.

The interpreter gets two figures.  `interp` is wall time per packet through run_xdp, what
a Python caller pays (batch marshalling and one XdpResult per packet included).  `core` is
the time spent inside the packet core's batch call alone, as cProfile attributes it to
that one C function (the profiler only sees the call boundary, once per batch, so it adds
nothing per packet); it is what the host's C datapath would pay.  The `jit` column is the
same measurement with the program JIT-compiled.

Per-instruction and fixed costs come from two calibration programs whose path length is
known exactly: straight-line code of CAL_SHORT and CAL_LONG instructions.  The difference
gives ns per executed instruction; the short run minus its instructions gives the fixed
cost per packet.  The targets (2.5 ns/insn, 20 ns fixed) are judged on the core figures.
This is a benchmark, never a test: nothing fails on a slow machine.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vxdp import packets as P
from vxdp.bpf.clang import compile_c
from vxdp.bpf.elf import load_object, select_program
from vxdp.bpf.engine import Engine, create_engine
from vxdp.bpf.program import Program
from vxdp.errors import UsageError, VxdpError

#: The workloads' C sources, shipped in the package (an installed vxdp benches without tests/).
PROGS_DIR = Path(__file__).resolve().parent / "bench_progs"
TARGET_NS_PER_INSN = 2.5
TARGET_FIXED_NS = 20.0
CAL_SHORT = 4  # r3 = ingress_ifindex; r0 = r3; r0 &= 3; exit
CAL_LONG = 1004  # the same around 998 instructions of ALU work (see calibration_program)

BENCH_FLOW = P.Flow("udp", "10.0.0.1", "10.1.0.1", 40000, 53)
BENCH_PACKET = BENCH_FLOW.packet(b"\x00" * 18)  # 60 bytes: a 64-byte frame less its FCS

Primer = Callable[[Engine], None]


@dataclass(frozen=True)
class Workload:
    name: str
    source: str
    program: str
    prime: Primer | None = None


def _prime_flows(engine: Engine) -> None:
    flows = engine.map_by_name("flows")
    policy = struct.pack("<IIQ", 2, 0, 0)  # XDP_PASS, counters zero
    gen = P.TrafficGenerator(1, flows=1023, mix={"udp4": 1.0, "tcp4": 1.0}, vlan_share=0.0)
    for f in [*gen.flows, BENCH_FLOW]:
        key = (P.ip_bytes(f.src) + P.ip_bytes(f.dst) + struct.pack("!HH", f.sport, f.dport)
               + bytes([6 if f.proto == "tcp" else 17, 0, 0, 0]))
        flows.update(key, policy)


WORKLOADS: tuple[Workload, ...] = (
    Workload("drop", "xdp_drop.c", "xdp_drop_all"),
    Workload("parse+swap+TX", "xdp_parse_swap_tx.c", "xdp_swap_tx"),
    Workload("array counter", "xdp_array_counter.c", "xdp_count_proto"),
    Workload("5-tuple hash lookup", "xdp_flow_hash.c", "xdp_flow_lookup", _prime_flows),
)


def calibration_program(n_insns: int) -> Program:
    """Straight-line code of exactly `n_insns` executed instructions returning XDP_DROP
    when ingress_ifindex is 1, as in every bench run.

    The body alternates `r3 += r4` and `r3 ^= r4` over values read from the context, so
    a C compiler (the `jit` engine) can neither fold it to a constant nor drop it as dead:
    r4 is rx_queue_index * 4, which leaves the low two bits of r3 (ingress_ifindex), and
    with them the verdict, unchanged.
    """
    if n_insns != CAL_SHORT and n_insns < CAL_SHORT + 3:
        raise UsageError(f"a calibration program has {CAL_SHORT} or at least "
                         f"{CAL_SHORT + 3} instructions")

    def insn(op: int, dst: int, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
        return struct.pack("<BBhi", op, dst | src << 4, off, imm)

    head = insn(0x61, 3, 1, 12)  # r3 = *(u32 *)(r1 + 12): ingress_ifindex
    tail = insn(0xBF, 0, 3) + insn(0x57, 0, imm=3) + insn(0x95, 0)  # r0 = r3 & 3; exit
    if n_insns == CAL_SHORT:
        return Program(f"cal_{n_insns}", "xdp", head + tail)
    body = [insn(0x0F, 3, 4), insn(0xAF, 3, 4)]  # r3 += r4, r3 ^= r4
    setup = insn(0x61, 4, 1, 16) + insn(0x67, 4, imm=2)  # r4 = rx_queue_index << 2
    n_body = n_insns - CAL_SHORT - 2
    code = head + setup + b"".join(body[i % 2] for i in range(n_body)) + tail
    return Program(f"cal_{n_insns}", "xdp", code)


@dataclass
class Measurement:
    name: str
    program: str
    interp_ns_per_pkt: float | None = None  # through Engine.run_xdp
    core_ns_per_pkt: float | None = None  # inside the core's batch call, interpreted
    jit_ns_per_pkt: float | None = None  # inside the core's batch call, JIT-compiled
    kernel_ns_per_pkt: float | None = None
    ratio: float | None = None  # core / kernel (interp / kernel when core is unknown)
    jit_ratio: float | None = None  # jit / kernel
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchReport:
    workloads: list[Measurement]
    calibration: dict[str, float | None]
    targets: dict[str, Any]
    kernel: str  # "jit", "interpreter" or why it is missing
    kernel_available: bool
    jit: str | None  # why the vxdp JIT was not measured, None when it was
    batch: int
    rounds: int


@dataclass
class Figures:
    """The best ns/packet seen so far for one program, per way of running it."""

    run_xdp: float | None = None
    core: float | None = None
    jit: float | None = None
    kernel: float | None = None

    def keep(self, **seen: float | None) -> None:
        for name, v in seen.items():
            old = getattr(self, name)
            if v is not None and (old is None or v < old):
                setattr(self, name, v)


CORE_CALL = "vxdp_run_xdp"  # the packet core's batch entry point, as cProfile names it


def _time_interp(engine: Engine, packet: bytes, batch: int, rounds: int,
                 min_seconds: float) -> tuple[float, float | None]:
    """Best ns/packet over `rounds` rounds of at least `min_seconds` each: through
    run_xdp, and inside the core's batch call (None when the profiler cannot see it)."""
    pkts = [packet] * batch
    engine.run_xdp(pkts)  # warm caches and any lazy setup
    best = float("inf")
    for _ in range(rounds):
        runs = 0
        start = time.perf_counter_ns()
        while True:
            engine.run_xdp(pkts)
            runs += 1
            elapsed = time.perf_counter_ns() - start
            if elapsed >= min_seconds * 1e9:
                break
        best = min(best, elapsed / (runs * batch))
    core_best: float | None = None
    for _ in range(rounds):
        prof = cProfile.Profile(time.perf_counter_ns, 1e-9)
        runs = max(1, int(min_seconds * 1e9 / (best * batch)))
        prof.enable()
        for _ in range(runs):
            engine.run_xdp(pkts)
        prof.disable()
        seconds = sum(st[2] for key, st in pstats.Stats(prof).stats.items()  # type: ignore[attr-defined]
                      if key[0] == "~" and CORE_CALL in key[2])
        if seconds > 0:
            ns = seconds * 1e9 / (runs * batch)
            core_best = ns if core_best is None else min(core_best, ns)
    return best, core_best


def _time_kernel(engine: Engine, packet: bytes, rounds: int, repeat: int) -> float:
    from vxdp.bpf.kernel import test_run

    best = float("inf")
    for _ in range(rounds):
        _, _, ns = test_run(engine, packet, repeat)  # type: ignore[arg-type]
        best = min(best, float(ns))
    return best


def _kernel_state() -> str | None:
    """None when the kernel can run programs, else why not."""
    try:
        from vxdp.bpf.kernel import kernel_unavailable
    except ImportError as exc:  # pragma: no cover - the kernel module is part of vxdp
        return f"kernel engine missing: {exc}"
    return kernel_unavailable()


def _jit_state() -> str | None:
    """None when the vxdp JIT engine can compile here, else why not."""
    try:
        with create_engine("jit", calibration_program(CAL_SHORT)) as eng:
            eng.run_xdp([BENCH_PACKET])
    except VxdpError as exc:
        return str(exc)
    return None


def _jit_mode() -> str:
    try:
        value = Path("/proc/sys/net/core/bpf_jit_enable").read_text().strip()
    except OSError:
        return "jit (unknown setting)"
    return "jit" if value in ("1", "2") else "interpreter (bpf_jit_enable=0)"


class Bench:
    """Runs the workloads; `run()` returns a BenchReport."""

    def __init__(self, *, progs_dir: Path = PROGS_DIR, batch: int = 256, rounds: int = 5,
                 min_seconds: float = 0.1, kernel_repeat: int = 200_000,
                 workloads: Sequence[str] | None = None, with_jit: bool = True) -> None:
        if not progs_dir.is_dir():
            raise UsageError(f"corpus directory {progs_dir} not found (give --progs DIR)")
        if batch < 1 or rounds < 1 or kernel_repeat < 1 or min_seconds <= 0:
            raise UsageError("batch, rounds and repeat must be positive")
        names = {w.name: w for w in WORKLOADS}
        unknown = [n for n in workloads or () if n not in names]
        if unknown:
            raise UsageError(f"unknown workload {unknown[0]!r} (choose from {', '.join(names)})")
        self.workloads = [names[n] for n in workloads] if workloads else list(WORKLOADS)
        self.progs_dir = progs_dir
        self.batch, self.rounds, self.min_seconds = batch, rounds, min_seconds
        self.kernel_repeat = kernel_repeat
        self.kernel_reason = _kernel_state()
        self.jit_reason = _jit_state() if with_jit else "not asked for (--no-jit)"

    def _both(self, program: Program, prime: Primer | None) -> Figures:
        (res,) = self._interleaved([program], prime)
        return res

    def _interleaved(self, programs: Sequence[Program], prime: Primer | None
                     ) -> list[Figures]:
        """Measure several programs round-robin, one round each in turn, keeping each
        one's best: a burst of load then hits them alike rather than one of them."""
        best = [Figures() for _ in programs]
        interp = [create_engine("interp", p) for p in programs]
        jit = [create_engine("jit", p) for p in programs] if self.jit_reason is None else []
        kernel = ([create_engine("kernel", p) for p in programs]
                  if self.kernel_reason is None else [])
        try:
            for eng in [*interp, *jit, *kernel]:
                if prime:
                    prime(eng)
            for _ in range(self.rounds):
                for fig, eng in zip(best, interp):
                    e2e, core = _time_interp(eng, BENCH_PACKET, self.batch, 1,
                                             self.min_seconds)
                    fig.keep(run_xdp=e2e, core=core)
                for fig, eng in zip(best, jit):
                    fig.keep(jit=_time_interp(eng, BENCH_PACKET, self.batch, 1,
                                              self.min_seconds)[1])
                for fig, eng in zip(best, kernel):
                    fig.keep(kernel=_time_kernel(eng, BENCH_PACKET, 1, self.kernel_repeat))
        finally:
            for eng in [*interp, *jit, *kernel]:
                eng.close()
        return best

    def calibrate(self) -> dict[str, float | None]:
        short, long = self._interleaved([calibration_program(CAL_SHORT),
                                         calibration_program(CAL_LONG)], None)
        cal: dict[str, float | None] = {}
        for who, field_name in (("interp", "run_xdp"), ("core", "core"), ("jit", "jit"),
                                ("kernel", "kernel")):
            lo, hi = getattr(short, field_name), getattr(long, field_name)
            if lo is None or hi is None:
                cal[f"{who}_ns_per_insn"] = cal[f"{who}_fixed_ns"] = None
                continue
            per = (hi - lo) / (CAL_LONG - CAL_SHORT)
            cal[f"{who}_ns_per_insn"] = per
            cal[f"{who}_fixed_ns"] = lo - CAL_SHORT * per
        return cal

    def run(self) -> BenchReport:
        cal = self.calibrate()
        results = []
        for w in self.workloads:
            obj = load_object(compile_c(self.progs_dir / w.source), name=Path(w.source).stem)
            m = Measurement(w.name, f"{w.source}:{w.program}")
            try:
                fig = self._both(select_program(obj, name=w.program), w.prime)
            except VxdpError as exc:
                m.notes.append(str(exc))
                results.append(m)
                continue
            m.interp_ns_per_pkt, m.core_ns_per_pkt = fig.run_xdp, fig.core
            m.jit_ns_per_pkt, m.kernel_ns_per_pkt = fig.jit, fig.kernel
            ours = m.core_ns_per_pkt if m.core_ns_per_pkt is not None else m.interp_ns_per_pkt
            if m.kernel_ns_per_pkt and ours is not None:
                m.ratio = ours / m.kernel_ns_per_pkt
            if m.kernel_ns_per_pkt and m.jit_ns_per_pkt is not None:
                m.jit_ratio = m.jit_ns_per_pkt / m.kernel_ns_per_pkt
            results.append(m)
        per = cal["core_ns_per_insn"]
        fixed = cal["core_fixed_ns"]
        if per is None or fixed is None:  # the core call was not visible: judge end to end
            per, fixed = cal["interp_ns_per_insn"], cal["interp_fixed_ns"]
        targets = {"ns_per_insn_max": TARGET_NS_PER_INSN, "fixed_ns_max": TARGET_FIXED_NS,
                   "ns_per_insn": per, "fixed_ns": fixed,
                   "met": per is not None and fixed is not None
                   and per <= TARGET_NS_PER_INSN and fixed <= TARGET_FIXED_NS}
        kernel = self.kernel_reason or _jit_mode()
        return BenchReport(results, cal, targets, kernel, self.kernel_reason is None,
                           self.jit_reason, self.batch, self.rounds)


def report_json(report: BenchReport) -> dict[str, Any]:
    out = asdict(report)
    out["cpu"] = os.cpu_count()
    return out


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def report_text(report: BenchReport) -> str:
    cal, t = report.calibration, report.targets
    kernel = (f"kernel ({report.kernel}, BPF_PROG_TEST_RUN repeat)" if report.kernel_available
              else f"kernel unavailable: {report.kernel}")
    lines = [f"vxdp bench: interpreter (run_xdp batches of {report.batch}) vs {kernel}; "
             f"best of {report.rounds} rounds"]
    if report.jit is not None:
        lines.append(f"vxdp jit not measured: {report.jit}")
    lines += ["",
              f"{'workload':<22}{'run_xdp':>9}{'core':>8}{'jit':>8}{'kernel':>8}"
              f"{'core/kernel':>13}{'jit/kernel':>12}   (ns/packet)"]
    for m in report.workloads:
        ratios = [("-" if r is None else f"{r:.1f}x") for r in (m.ratio, m.jit_ratio)]
        lines.append(f"{m.name:<22}{_fmt(m.interp_ns_per_pkt):>9}{_fmt(m.core_ns_per_pkt):>8}"
                     f"{_fmt(m.jit_ns_per_pkt):>8}{_fmt(m.kernel_ns_per_pkt):>8}"
                     f"{ratios[0]:>13}{ratios[1]:>12}")
        lines += [f"    note: {n}" for n in m.notes]
    lines += ["", f"calibration ({CAL_SHORT} vs {CAL_LONG} straight-line instructions):"]
    for who, label in (("interp", "run_xdp"), ("core", "core"), ("jit", "jit"),
                       ("kernel", "kernel")):
        lines.append(f"  {label + ':':<9}{_fmt(cal[f'{who}_ns_per_insn'], '.2f'):>7} ns/insn, "
                     f"{_fmt(cal[f'{who}_fixed_ns']):>8} ns fixed per packet")
    lines.append(f"targets (core): <= {t['ns_per_insn_max']} ns/insn and <= "
                 f"{t['fixed_ns_max']:.0f} ns fixed: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)
