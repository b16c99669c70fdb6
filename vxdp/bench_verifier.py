"""Verification time per program: our verifier beside the kernel's, on the same objects.

Every XDP program of the C corpus (tests/vxdp/progs, the objects the differential suite
runs) is verified by `vxdp.bpf.verifier` and, where bpf() is permitted, by the kernel.
The corpus comes with the source tree; an installed vxdp without it measures the bench's
own programs (vxdp/bench_progs), and the report names the folder it measured.
Our time is wall time in this process; the kernel's is what it reports itself
("verification time N usec", BPF_LOG_STATS), so the syscall's cost is not counted against
it.  Instructions processed are given for both: they explain most of the difference.

Programs listed in SLOW are left out by name, with the reason printed: the bench measures
what a user waits for, and one program our verifier explores for tens of seconds (no
precision tracking yet, docs/verifier.md) would drown the rest.  A benchmark, never a
test: nothing here judges a time.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vxdp.bench import PROGS_DIR
from vxdp.bpf.clang import clang_unavailable, compile_c
from vxdp.bpf.elf import load_object
from vxdp.bpf.verifier.compare import Comparison, compare_with_kernel

#: The differential corpus, in a source checkout.
CORPUS_DIR = Path(__file__).resolve().parents[1] / "tests" / "vxdp" / "progs"

#: Sources left out, and why (printed with the report).
SLOW: dict[str, str] = {
    "xdp_helper_edges.c": "562k insns processed here against the kernel's 2k "
                          "(no precision tracking yet): ~40 s",
}


@dataclass
class VerifierBench:
    corpus: Path = PROGS_DIR
    rows: list[Comparison] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None

    def text(self) -> str:
        lines = [f"verification time per program of {self.corpus} (ours: wall time here; "
                 f"kernel: its own reported time)"]
        if self.unavailable:
            lines.append(f"  not measured: {self.unavailable}")
            return "\n".join(lines)
        lines.append(f"  {'program':28} {'ours':>6} {'kernel':>6} {'ours ms':>9} "
                     f"{'kernel ms':>9} {'ratio':>7} {'ours insns':>10} {'kernel insns':>12}")
        for c in self.rows:
            k_ms = f"{c.kernel_seconds * 1e3:9.3f}" if c.kernel_seconds is not None else "        -"
            ratio = (f"{c.ours.seconds / c.kernel_seconds:7.0f}"
                     if c.kernel_seconds else "      -")
            verdict = {True: "ok", False: "REJ", None: "-"}
            lines.append(f"  {c.program:28} {verdict[c.ours.accepted]:>6} "
                         f"{verdict[c.kernel_accepted]:>6} {c.ours.seconds * 1e3:9.3f} {k_ms} "
                         f"{ratio} {c.ours.insns_processed:10} "
                         f"{c.kernel_insns if c.kernel_insns is not None else '-':>12}")
        ratios = [c.ours.seconds / c.kernel_seconds for c in self.rows if c.kernel_seconds]
        if ratios:
            lines.append(f"  median ours/kernel: {statistics.median(ratios):.0f}x over "
                         f"{len(ratios)} programs; verdicts agree on "
                         f"{sum(1 for c in self.rows if c.agrees)} of {len(self.rows)}")
        for name, why in self.skipped.items():
            lines.append(f"  left out {name}: {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"corpus": str(self.corpus), "programs": [c.to_json() for c in self.rows],
                "skipped": self.skipped, "unavailable": self.unavailable}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def default_corpus() -> Path:
    """The differential corpus where the source tree is at hand, else the bench's programs."""
    return CORPUS_DIR if CORPUS_DIR.is_dir() else PROGS_DIR


def run(progs_dir: Path | None = None, sources: Sequence[str] | None = None) -> VerifierBench:
    """Verify every program of every source in `progs_dir` (default: `default_corpus()`),
    or only `sources`."""
    progs_dir = default_corpus() if progs_dir is None else progs_dir
    bench = VerifierBench(corpus=progs_dir)
    bench.unavailable = clang_unavailable()
    if bench.unavailable:
        return bench
    for src in sorted(progs_dir.glob("*.c")):
        if sources is not None and src.name not in sources:
            continue
        if src.name in SLOW:
            bench.skipped[src.name] = SLOW[src.name]
            continue
        obj = load_object(compile_c(src))
        for program in obj.programs.values():
            bench.rows.append(compare_with_kernel(program))
    return bench
