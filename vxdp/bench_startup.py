"""Start-up of the `vxdp` command, hyperfine-like: wall time of whole runs, beside
references measured in the same run.

    python -c pass      the interpreter's own start-up: the floor of any Python command
    bpftool version     a C tool of the same trade (where bpftool is on PATH)
    vxdp --help         the command line alone: every subcommand's name and help line
    vxdp verify OBJ     xdp_drop.c as clang compiles it: ELF, BTF, the verifier

Each command runs `warmup` times untimed, then `runs` times, the commands taking turns run
by run so that a burst of load from a neighbour hits them alike.  The report gives min,
median and max of the wall times and the median's ratio to each reference; the target
(issue 12: at most 0.15 s) is judged on the median.

Bytecode.  An installed vxdp runs from compiled bytecode (pip compiles it at install time;
a source tree gets it on first import, into __pycache__).  A shell with
PYTHONDONTWRITEBYTECODE set never writes it, and a source-tree vxdp without caches then
compiles every module it imports on every run (docs/bench.md gives both figures).  The
vxdp commands run without that variable, so the warm-up runs write the caches an
installed vxdp would have; the report says when it was removed.

A benchmark, never a test: nothing here judges a time except the report's target line.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_SECONDS = 0.15
NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"


@dataclass
class Command:
    """One command line to time, and its wall times (seconds), one per timed run."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # None: this process's environment
    drain: bool = False  # read its stdout through a pipe (what a consumer of it pays)
    reference: bool = False
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system time of each run

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "argv": self.argv, "reference": self.reference,
                "runs": len(self.times), "min_s": min(self.times),
                "median_s": self.median, "max_s": max(self.times),
                "cpu_median_s": statistics.median(self.cpu)}


def vxdp_argv() -> list[str]:
    """How a user starts vxdp here: the console script beside this interpreter, else
    `python -m vxdp`."""
    script = Path(sys.executable).with_name("vxdp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "vxdp"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(cmd: Command) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run."""
    cpu = _children_cpu()
    start = time.perf_counter()
    if cmd.drain:
        with subprocess.Popen(cmd.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=cmd.env) as proc:
            assert proc.stdout is not None
            while proc.stdout.read(1 << 16):
                pass
            rc = proc.wait()
    else:
        rc = subprocess.run(cmd.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=cmd.env, check=False).returncode
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd.argv)} exited {rc}")
    return elapsed, _children_cpu() - cpu


def time_interleaved(commands: Sequence[Command], runs: int, warmup: int = 2) -> None:
    """Fill each command's `times`: `warmup` untimed runs each, then `runs` rounds in
    which every command runs once, in turn."""
    for cmd in commands:
        for _ in range(warmup):
            _run_once(cmd)
    for _ in range(runs):
        for cmd in commands:
            wall, cpu = _run_once(cmd)
            cmd.times.append(wall)
            cmd.cpu.append(cpu)


def format_rows(commands: Sequence[Command], unit: str = "ms") -> list[str]:
    """A table of wall time min/median/max and median CPU time (user + system, which
    the load of other processes hardly moves), with the wall median's ratio to every
    reference."""
    scale = {"ms": 1e3, "s": 1.0}[unit]
    refs = [c for c in commands if c.reference]
    head = f"  {'command':<36}{'min':>8}{'median':>8}{'max':>8}{'cpu':>8}  ({unit})"
    lines = [head + "".join(f"{'/' + r.name.split()[0]:>10}" for r in refs)]
    for c in commands:
        ratios = "".join(f"{'' if c.reference else f'{c.median / r.median:.1f}x':>10}"
                         for r in refs)
        cpu = statistics.median(c.cpu) if c.cpu else float("nan")
        lines.append(f"  {c.name:<36}{min(c.times) * scale:>8.1f}{c.median * scale:>8.1f}"
                     f"{max(c.times) * scale:>8.1f}{cpu * scale:>8.1f}  "
                     f"{'':{len(unit) + 2}}{ratios}")
    return lines


@dataclass
class StartupReport:
    commands: list[Command] = field(default_factory=list)
    runs: int = 0
    notes: list[str] = field(default_factory=list)

    def judged(self) -> list[Command]:
        return [c for c in self.commands if not c.reference]

    def met(self) -> bool:
        return all(c.median <= TARGET_SECONDS for c in self.judged())

    def text(self) -> str:
        lines = [f"start-up: wall time of {self.runs} runs of each command, the commands "
                 f"taking turns (cpu: median user + system time)"]
        lines += format_rows(self.commands)
        lines += [f"  note: {n}" for n in self.notes]
        verdicts = ", ".join(f"{c.name} {c.median * 1e3:.0f} ms "
                             f"{'met' if c.median <= TARGET_SECONDS else 'NOT met'}"
                             for c in self.judged())
        lines.append(f"target: median <= {TARGET_SECONDS * 1e3:.0f} ms: {verdicts}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"commands": [c.row() for c in self.commands], "runs": self.runs,
                "target_s": TARGET_SECONDS, "met": self.met(), "notes": self.notes}


def _verify_object(progs_dir: Path) -> tuple[Path | None, str]:
    """xdp_drop.c compiled, or None and why not."""
    from vxdp.bpf.clang import clang_unavailable, compile_c
    if (why := clang_unavailable()) is not None:
        return None, why
    return compile_c(progs_dir / "xdp_drop.c"), ""


def run(progs_dir: Path, runs: int = 20, warmup: int = 2) -> StartupReport:
    report = StartupReport(runs=runs)
    commands = [Command("python -c pass", [sys.executable, "-c", "pass"], reference=True)]
    if (bpftool := shutil.which("bpftool")) is not None:
        commands.append(Command("bpftool version", [bpftool, "version"], reference=True))
    else:
        report.notes.append("bpftool not on PATH: no C tool beside the figures")
    vxdp = vxdp_argv()
    ours = [("vxdp --help", [*vxdp, "--help"])]
    obj, why = _verify_object(progs_dir)
    if obj is not None:
        ours.append((f"vxdp verify {obj.stem.split('-')[0]}.o", [*vxdp, "verify", str(obj)]))
    else:
        report.notes.append(f"vxdp verify not measured: {why}")
    env = None
    if os.environ.get(NO_BYTECODE):
        env = {k: v for k, v in os.environ.items() if k != NO_BYTECODE}
        report.notes.append(f"{NO_BYTECODE} is set here and was removed for the vxdp "
                            "commands: the warm-up runs write the bytecode caches an "
                            "installed vxdp has")
    commands += [Command(name, argv, env=env) for name, argv in ours]
    time_interleaved(commands, runs, warmup)
    report.commands = commands
    return report


__all__ = ["TARGET_SECONDS", "Command", "StartupReport", "format_rows", "run",
           "time_interleaved", "vxdp_argv"]
