"""`vxdp exec` over a large capture: wall time of whole runs, stdout read through a pipe.

    vxdp exec OBJ --pcap P -j   one JSON line per packet, then the maps
    vxdp exec OBJ --pcap P      the table: one row per packet, a summary, the maps
    tshark -r P -T fields ...   a packet tool printing a line per packet of the same file
                                (the reference, where tshark is on PATH)

The program is xdp_parse_swap_tx.c from the corpus, the capture `packets` seeded frames
of vxdp.packets.TrafficGenerator (64 flows, its default mix) written once to a temporary
folder.  The commands take turns run by run (vxdp.bench_startup.time_interleaved); the
report gives min, median and max, the median per packet, and the median's ratio to
tshark's.  A benchmark, never a test.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vxdp.bench_startup import Command, format_rows, time_interleaved, vxdp_argv

PROGRAM = "xdp_parse_swap_tx.c"


@dataclass
class ExecReport:
    packets: int
    runs: int
    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"vxdp exec: {self.packets} packets through {PROGRAM}, stdout read "
                 f"through a pipe, {self.runs} runs each, the commands taking turns"]
        lines += format_rows(self.commands, unit="s")
        for c in self.commands:
            lines.append(f"  {c.name}: {c.median / self.packets * 1e6:.1f} us per packet "
                         "(median)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"packets": self.packets, "runs": self.runs,
                "commands": [c.row() for c in self.commands], "notes": self.notes}


def run(progs_dir: Path, packets: int = 100_000, runs: int = 3, warmup: int = 1
        ) -> ExecReport:
    from vxdp.bpf.clang import clang_unavailable, compile_c
    from vxdp.packets import TrafficGenerator
    from vxdp.pcap import Packet, write_pcap

    report = ExecReport(packets, runs)
    if (why := clang_unavailable()) is not None:
        report.notes.append(f"not measured: {why}")
        return report
    obj = compile_c(progs_dir / PROGRAM)
    with tempfile.TemporaryDirectory(prefix="vxdp-bench-exec-") as tmp:
        pcap = Path(tmp) / "traffic.pcap"
        frames = TrafficGenerator(7, flows=64).packets(packets)
        write_pcap(pcap, [Packet(f, i * 1000) for i, f in enumerate(frames)])
        vxdp = [*vxdp_argv(), "exec", str(obj), "--pcap", str(pcap)]
        commands = []
        if (tshark := shutil.which("tshark")) is not None:
            commands.append(Command("tshark -T fields", [tshark, "-r", str(pcap), "-T",
                                                         "fields", "-e", "frame.number",
                                                         "-e", "frame.len"],
                                    drain=True, reference=True))
        else:
            report.notes.append("tshark not on PATH: no packet tool beside the figures")
        commands += [Command("vxdp exec -j", [*vxdp, "-j"], drain=True),
                     Command("vxdp exec (table)", vxdp, drain=True)]
        time_interleaved(commands, runs, warmup)
    report.commands = commands
    return report


__all__ = ["ExecReport", "run"]
