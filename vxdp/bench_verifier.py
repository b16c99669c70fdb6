"""Verification time per program: our verifier beside the kernel's, on the same objects.

Every XDP program of the C corpus (tests/vxdp/progs, the objects the differential suite
runs; an installed vxdp without the source tree measures the bench's own programs,
vxdp/bench_progs, and the report names the folder it measured) and, when Debian's libxdp1
is installed, of the stock xdp-tools objects (programs
nobody here wrote) is verified by `vxdp.bpf.verifier` and, where bpf() is permitted, by
the kernel in the same run, `repeat` times each, keeping each side's best time.  Our time
is wall time in this process; the kernel's is what it reports itself ("verification time N usec",
BPF_LOG_STATS), so the syscall's cost is not counted against it, taken both with its
instruction log on (log level 1, as this bench always measured it) and off (`quiet`, how
a loader without a log runs it: several times faster).  Instructions processed are given
for both: they explain most of the difference.  A benchmark, never a test: nothing here
judges a time.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from vxdp.bench import PROGS_DIR
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.bpf.verifier import BUILD
from vxdp.bpf.verifier.compare import Comparison, compare_with_kernel

#: The differential corpus, in a source checkout.
CORPUS_DIR = Path(__file__).resolve().parents[1] / "tests" / "vxdp" / "progs"
STOCK_DIR = Path(f"/usr/lib/{platform.machine()}-linux-gnu/bpf")
STOCK_GLOBS = ("xdp*.o", "xsk*.o")  # libxdp1's XDP objects (xdp-tools)


@dataclass
class VerifierBench:
    corpus: Path = PROGS_DIR
    rows: list[Comparison] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    build: str = BUILD  # the verifier's: "mypyc" (compiled) or "python"

    def medians(self) -> tuple[float | None, float | None]:
        """Median ours/kernel over the programs: against the logging kernel, the quiet one."""
        out: list[float | None] = []
        for quiet in (False, True):
            ratios = [r for c in self.rows if (r := c.ratio(quiet)) is not None]
            out.append(statistics.median(ratios) if ratios else None)
        return out[0], out[1]

    def text(self) -> str:
        lines = [f"verification time per program of {self.corpus} and the stock objects "
                 f"(ours: wall time here, best of the runs, {self.build} build; kernel: its "
                 f"own reported time, with its instruction log / without)"]
        if self.unavailable:
            lines.append(f"  not measured: {self.unavailable}")
            return "\n".join(lines)
        lines.append(f"  {'program':28} {'ours':>4} {'kern':>4} {'ours ms':>9} "
                     f"{'kern ms':>9} {'quiet ms':>9} {'ratio':>6} {'quiet':>6} "
                     f"{'ours insns':>10} {'kern insns':>10}")
        verdict = {True: "ok", False: "REJ", None: "-"}
        for c in self.rows:
            def ms(v: float | None) -> str:
                return f"{v * 1e3:9.3f}" if v is not None else f"{'-':>9}"

            def x(v: float | None) -> str:
                return f"{v:6.1f}" if v is not None else f"{'-':>6}"

            lines.append(f"  {c.program:28} {verdict[c.ours.accepted]:>4} "
                         f"{verdict[c.kernel_accepted]:>4} {ms(c.ours.seconds)} "
                         f"{ms(c.kernel_seconds)} {ms(c.kernel_seconds_quiet)} "
                         f"{x(c.ratio())} {x(c.ratio(True))} {c.ours.insns_processed:10} "
                         f"{c.kernel_insns if c.kernel_insns is not None else '-':>10}")
        logged, quiet = self.medians()
        if logged is not None and quiet is not None:
            lines.append(f"  median ours/kernel: {logged:.1f}x against the kernel with its "
                         f"log, {quiet:.1f}x without, over {len(self.rows)} programs; "
                         f"verdicts agree on {sum(1 for c in self.rows if c.agrees)} of "
                         f"{len(self.rows)}")
        for name, why in self.skipped.items():
            lines.append(f"  left out {name}: {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        logged, quiet = self.medians()
        return {"corpus": str(self.corpus), "build": self.build,
                "programs": [c.to_json() for c in self.rows],
                "skipped": self.skipped,
                "unavailable": self.unavailable, "median_ratio": logged,
                "median_ratio_quiet": quiet}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def objects(progs_dir: Path, sources: Sequence[str] | None) -> list[tuple[str, Path]]:
    """(name, object path) of every corpus source (compiled) and stock object."""
    out = [(src.name, compile_c(src)) for src in sorted(progs_dir.glob("*.c"))]
    for pattern in STOCK_GLOBS:
        out += [(obj.name, obj) for obj in sorted(STOCK_DIR.glob(pattern))]
    return [(n, p) for n, p in out if sources is None or n in sources]


def default_corpus() -> Path:
    """The differential corpus where the source tree is at hand, else the bench's programs."""
    return CORPUS_DIR if CORPUS_DIR.is_dir() else PROGS_DIR


def run(progs_dir: Path | None = None, sources: Sequence[str] | None = None,
        repeat: int = 3) -> VerifierBench:
    """Verify every program of every source in `progs_dir` (default: `default_corpus()`)
    and every stock object (or only `sources`)."""
    progs_dir = default_corpus() if progs_dir is None else progs_dir
    bench = VerifierBench(corpus=progs_dir)
    bench.unavailable = clang_unavailable()
    if bench.unavailable:
        return bench
    for name, path in objects(progs_dir, sources):
        try:
            obj = load_object(path)
        except Exception as exc:  # an object we cannot load is reported, not fatal
            bench.skipped[name] = str(exc)
            continue
        for program in obj.programs.values():
            bench.rows.append(_best([compare_with_kernel(program)
                                     for _ in range(max(repeat, 1))]))
    return bench


def _best(runs: list[Comparison]) -> Comparison:
    """One program's runs as one row: each side's shortest time (a shared machine only
    ever makes a run slower)."""
    def least(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return min(known) if known else None

    ours = min((c.ours for c in runs), key=lambda r: r.seconds)
    return replace(runs[0], ours=ours,
                   kernel_seconds=least([c.kernel_seconds for c in runs]),
                   kernel_seconds_quiet=least([c.kernel_seconds_quiet for c in runs]))
