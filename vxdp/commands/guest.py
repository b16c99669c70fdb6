"""`vxdp guest`: the guest process, a virtio-net driver over a vhost-user front-end.

    vxdp guest --socket PATH [--xdp OBJ.o [--section S] [--program NAME]
               [--mode driver|offload|auto [--via controlq|agent --agent PATH]]]
               [--wire SPEC] [--queue-size N] [--retry SECONDS] [--datapath c|python]
               [--control PATH] [--stats-json FILE]

The guest dials the host's socket (and keeps dialling until it answers), initializes the
device and moves frames.  `--xdp` places a program as `ip link set xdpdrv|xdpoffload`
would (`--mode`, vxdp.runtime.offload):
  driver   (default) in the driver, as XDP in a Linux guest's virtio_net: PASS reaches
           the guest's stack, TX goes back out through the device; verified at start-up;
  offload  on the host, over the control virtqueue: the program is checked against the
           device's advertised capabilities, its maps created on the device, then
           SET_OFFLOAD; the device verifies it again and runs it on the host, before
           frames cost a trip into the guest; a refusal is printed with the device's
           errno and log line, and no program runs;
  auto     offload, else driver mode, with the device's reason printed.
`--via` says what carries the offload: `controlq` (the default) the control virtqueue,
`agent` the guest agent's channel to the host agent at `--agent PATH` (`vxdp host
--agent`; the agent path of the RFC's review): the same commands, answered by the same
device.  A host without an agent is a refusal like any other (auto: driver mode).
`--control PATH` serves `vxdp prog show|map ... --guest PATH`: the program and its maps,
an offloaded program's maps read and written over the control queue.  `--wire` is the guest's stack side: frames it delivers are transmitted, frames
that reach the stack go to it (`pcap:out=RX.pcap` captures them).  When the host goes
away the guest prints `device gone`, keeps its driver state, and reconnects when the
socket answers again.  `--datapath c` (the default) runs receiveq1/transmitq1 on the C
core from DRIVER_OK on: refill, receive, driver-mode XDP and transmit per packet in C, in
bursts; `--datapath python` keeps every queue on the Python driver (the reference).
SIGINT or SIGTERM writes `--stats-json` and exits 0.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

import trio

from vxdp.bpf.profiles import NATIVE
from vxdp.errors import UsageError
from vxdp.runtime.cli import (
    add_common,
    make_hook,
    say,
    setup_logging,
    until_signalled,
    write_stats,
)
from vxdp.runtime.guest import DATAPATHS, QUEUE_MAX, GuestRuntime
from vxdp.runtime.offload import MODES, VIAS
from vxdp.runtime.wire import open_port
from vxdp.runtime.xdp import XdpHook, load_program

NAME = "guest"
HELP = "run a guest: virtio-net driver over vhost-user, driver-mode XDP, reconnects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", required=True, metavar="PATH",
                        help="the host's vhost-user socket for this guest")
    parser.add_argument("--wire", default="null", metavar="SPEC",
                        help="the guest stack's port: frames to send, and where received "
                             "frames go (null, pcap:IN[,out=OUT], gen:...)")
    parser.add_argument("--queue-size", type=int, default=QUEUE_MAX, metavar="N",
                        help=f"virtqueue size (default and most: {QUEUE_MAX})")
    parser.add_argument("--retry", type=float, default=0.1, metavar="SECONDS",
                        help="how often to dial a host that is not there (default 0.1)")
    parser.add_argument("--datapath", choices=DATAPATHS, default="c",
                        help="pair 1's per-packet work: the C core (default) or the Python "
                             "driver")
    parser.add_argument("--mode", choices=MODES, default="driver",
                        help="where --xdp runs: driver (default), offload (on the host, "
                             "over the control queue), auto (offload, else driver)")
    parser.add_argument("--via", choices=VIAS, default="controlq",
                        help="what carries the offload: controlq (the control virtqueue, "
                             "default) or agent (the host agent at --agent)")
    parser.add_argument("--agent", metavar="PATH",
                        help="the host agent's socket for this guest (with --via agent)")
    parser.add_argument("--control", metavar="PATH",
                        help="serve vxdp prog/map --guest PATH here (default: none)")
    add_common(parser)


async def _main(runtime: GuestRuntime, stats: Path | None) -> int:
    snapshot: dict[str, Any] | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            signum = await until_signalled(lambda: write_stats(stats, runtime.stats()))
            snapshot = runtime.stats()  # as it was when the signal came, before teardown
            nursery.cancel_scope.cancel()
        say("guest", f"{signal.Signals(signum).name}: stopping")
    finally:
        try:
            write_stats(stats, snapshot if snapshot is not None else runtime.stats())
        finally:
            runtime.close()
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    if not 1 <= args.queue_size <= QUEUE_MAX:
        raise UsageError(f"--queue-size {args.queue_size} is outside 1..{QUEUE_MAX}")
    if args.retry <= 0:
        raise UsageError(f"--retry {args.retry} must be above 0")
    if (args.via == "agent") != (args.agent is not None):
        raise UsageError("--via agent and --agent PATH go together" if args.agent is None
                         else "--agent PATH is for --via agent")
    if args.via == "agent" and args.mode == "driver":
        raise UsageError("--via agent carries an offload: give --mode offload or auto")
    offload = None
    if args.mode == "driver":
        hook = make_hook(args, NATIVE)  # driver mode: what the guest's kernel admits
    else:
        if args.xdp is None:
            raise UsageError(f"--mode {args.mode} places the program of --xdp: give one")
        hook = XdpHook(args.engine)
        offload = load_program(args.xdp, section=args.section, name=args.program)
    port = open_port(args.wire)
    runtime = GuestRuntime(args.socket, xdp=hook, port=port, queue_size=args.queue_size,
                           retry=args.retry, datapath=args.datapath,
                           report=lambda kind, text: say("guest", f"{kind}: {text}"),
                           offload=offload, mode=args.mode, control=args.control,
                           agent=args.agent)
    return trio.run(_main, runtime, args.stats_json)
