"""`vxdp bench`: ns/packet of four XDP workloads on the interpreter beside the kernel JIT.

    vxdp bench [-j] [--workload NAME ...] [--rounds N] [--batch N] [--no-jit] [--progs DIR]

Prints a table (or with `-j` one JSON object) of ns/packet for drop, parse+swap+TX,
array counter and 5-tuple hash lookup, measured in the same run on the interpreter, on
vxdp's JIT where a C compiler is at hand and, where bpf() is permitted, on the kernel
through BPF_PROG_TEST_RUN; the calibration line
gives the interpreter's ns per executed instruction and fixed ns per packet against the
targets (2.5 ns/insn, 20 ns fixed).  Exit status 0 whatever the figures: a benchmark
measures, it does not judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vxdp.bench import PROGS_DIR, WORKLOADS, Bench, report_json, report_text

NAME = "bench"
HELP = "ns/packet of four XDP workloads: interpreter beside the kernel JIT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("--workload", action="append", metavar="NAME",
                        choices=[w.name for w in WORKLOADS],
                        help="run only this workload (repeatable)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (best kept)")
    parser.add_argument("--batch", type=int, default=256, help="packets per run_xdp call")
    parser.add_argument("--seconds", type=float, default=0.2,
                        help="minimum seconds per interpreter round")
    parser.add_argument("--repeat", type=int, default=200_000,
                        help="BPF_PROG_TEST_RUN repeat count per kernel round")
    parser.add_argument("--no-jit", action="store_true",
                        help="leave out vxdp's JIT engine (it compiles each program with cc)")
    parser.add_argument("--progs", type=Path, default=PROGS_DIR, metavar="DIR",
                        help="the corpus directory holding the workloads' C sources")


def run(args: argparse.Namespace) -> int:
    bench = Bench(progs_dir=args.progs, batch=args.batch, rounds=args.rounds,
                  min_seconds=args.seconds, kernel_repeat=args.repeat,
                  workloads=args.workload, with_jit=not args.no_jit)
    report = bench.run()
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report))
    return 0
