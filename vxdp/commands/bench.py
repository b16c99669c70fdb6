"""`vxdp bench`: every measurement of vxdp, each beside its reference from the same run.

    vxdp bench [-j] [--suite xdp|verifier|datapath|process|switch|dpdk|startup|exec ...]
               [--workload NAME ...] [--rounds N] [--batch N] [--no-jit] [--progs DIR]
               [--dpdk-seconds S] [--dpdk-window S] [--dpdk-rounds N]
               [--startup-runs N] [--exec-packets N]

Suites (all by default; `-j` prints one JSON object keyed by suite):
  xdp       the engines (vxdp.bench, below)
  verifier  verification time per corpus program, ours beside the kernel's
            (vxdp.bench_verifier)
  datapath  Mpps of the C datapath: offload XDP_DROP, offload XDP_TX, PASS into the guest,
            guest driver-mode XDP_DROP and XDP_TX, and offload/driver-mode ratios
            (vxdp.bench_datapath)
  process   the same end to end: `vxdp host` with a `vxdp guest` child process over
            vhost-user, the guest offloading its program over the control queue (`--mode
            offload`) or over its agent (`--via agent`), or running it in its driver, the
            host-attached program beside them, and the offload/driver-mode and
            agent/controlq ratios there (vxdp.bench_process)
  switch    host-attached XDP_DROP with 1, 2 and 4 `vxdp guest` processes, frames to
            each guest's MAC in turn: the switch in C beside the per-frame Python switch,
            and the 4-guest/1-guest ratio against its 0.8x target (vxdp.bench_switch)
  dpdk      testpmd against `vxdp host` and DPDK's own virtio_user <-> vhost pair, both
            set-ups up at once and short windows taking turns, ratios over the pairs of
            windows probed on one vCPU placement (vxdp.bench_dpdk); with the datapath
            suite, PASS into the guest over DPDK's vhost enqueue rate
  startup   wall time of `vxdp --help` and `vxdp verify` runs beside `python -c pass`
            and `bpftool version` (vxdp.bench_startup)
  exec      `vxdp exec` over a 100k-packet capture beside tshark printing the same
            (vxdp.bench_exec)

The xdp suite prints a table of ns/packet for drop, parse+swap+TX,
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
from typing import Any

NAME = "bench"
HELP = ("measurements beside their references: engines vs the kernel JIT, verifier vs the "
        "kernel's, datapath Mpps, DPDK vhost")
SUITES = ("xdp", "verifier", "datapath", "process", "switch", "dpdk", "startup", "exec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vxdp.bench import PROGS_DIR, WORKLOADS
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only this suite (repeatable; default: all)")
    parser.add_argument("--dpdk-seconds", type=float, default=2.0,
                        help="measuring window per direction in the process and switch "
                             "suites")
    parser.add_argument("--dpdk-window", type=float, default=0.5, metavar="S",
                        help="the dpdk suite's window per direction, each after a warm-up "
                             "of 0.2 s")
    parser.add_argument("--dpdk-rounds", type=int, default=10, metavar="N",
                        help="the dpdk suite's rounds, each one window per direction")
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
    parser.add_argument("--progs", type=Path, metavar="DIR",
                        help=f"the C sources: the xdp suite's workloads (default {PROGS_DIR}) "
                             f"and the programs the verifier suite verifies (default the "
                             f"differential corpus in a source tree, else the same folder)")
    parser.add_argument("--startup-runs", type=int, default=20, metavar="N",
                        help="timed runs of each command in the startup suite")
    parser.add_argument("--exec-packets", type=int, default=100_000, metavar="N",
                        help="packets in the exec suite's capture")


def run(args: argparse.Namespace) -> int:
    suites = args.suite or list(SUITES)
    out: dict[str, Any] = {}
    texts: list[str] = []
    if "xdp" in suites:
        from vxdp.bench import PROGS_DIR, Bench, report_json, report_text
        bench = Bench(progs_dir=args.progs or PROGS_DIR, batch=args.batch, rounds=args.rounds,
                      min_seconds=args.seconds, kernel_repeat=args.repeat,
                      workloads=args.workload, with_jit=not args.no_jit)
        report = bench.run()
        out["xdp"] = report_json(report)
        texts.append(report_text(report))
    if "verifier" in suites:
        from vxdp import bench_verifier
        ver = bench_verifier.run(args.progs)
        out["verifier"] = ver.to_dict()
        texts.append(ver.text())
    datapath = None
    if "datapath" in suites:
        from vxdp import bench_datapath
        datapath = bench_datapath.run(with_jit=not args.no_jit)
        out["datapath"] = json.loads(datapath.to_json())
        texts.append("C datapath, 64-byte frames\n" + datapath.text())
    if "process" in suites:
        from vxdp import bench_process
        proc = bench_process.run(args.dpdk_seconds)
        out["process"] = proc.to_dict()
        texts.append(proc.text())
    if "switch" in suites:
        from vxdp import bench_switch
        sw = bench_switch.run(args.dpdk_seconds)
        out["switch"] = sw.to_dict()
        texts.append(sw.text())
    if "dpdk" in suites:
        from vxdp import bench_dpdk
        dp = bench_dpdk.run(args.dpdk_window, warmup=0.2, rounds=args.dpdk_rounds,
                            vxdp_host=True)
        out["dpdk"] = dp.to_dict()
        text = dp.text()
        if datapath is not None and dp.vhost_enqueue_mpps:
            ratio = datapath.best("PASS into guest") / dp.vhost_enqueue_mpps
            out["dpdk"]["core_pass_ratio"] = ratio
            text += (f"\nC datapath PASS into guest / DPDK vhost enqueue: {ratio:.2f}x "
                     f"(target 0.5x)")
        texts.append(text)
    if "startup" in suites:
        from vxdp import bench_startup
        from vxdp.bench import PROGS_DIR
        startup = bench_startup.run(args.progs or PROGS_DIR, runs=args.startup_runs)
        out["startup"] = startup.to_dict()
        texts.append(startup.text())
    if "exec" in suites:
        from vxdp import bench_exec
        from vxdp.bench import PROGS_DIR
        ex = bench_exec.run(args.progs or PROGS_DIR, packets=args.exec_packets)
        out["exec"] = ex.to_dict()
        texts.append(ex.text())
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print("\n\n".join(texts))
    return 0
