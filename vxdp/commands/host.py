"""`vxdp host`: the host process, a vhost-user back-end per guest socket.

    vxdp host --socket PATH [--socket PATH ...] [--profile P] [--wire SPEC]
              [--xdp OBJ.o [--section S] [--program NAME]] [--stats-json FILE]
              [--control PATH] [--agent PATH ...]

Each `--socket` is one guest's vhost-user socket (the host listens, the guest dials).
`--wire` is where frames come from and go to (`null`, `pcap:IN[,out=OUT]`,
`gen:flows=N,size=S,rate=PPS,count=C,seed=X`, `tap:NAME`; see vxdp.runtime.wire);
`--xdp` attaches a program on the host (host-attached: the operator's), run on every
frame from the wire on its way into each guest.  Guests whose device offers
VIRTIO_NET_F_XDP_OFFLOAD (`--profile rfc2019|host|smartnic`) offload their own programs
over the control queue; the host verifies each under that profile's capabilities and
runs it after the host-attached one, on `--engine` (interp, or jit: compiled to C).  On SIGINT or SIGTERM the host writes `--stats-json` (per guest
and queue: packets and bytes; the wire's counters; XDP action counts) and exits 0;
SIGUSR1 writes it without stopping.  `--control PATH` serves the control socket there
(`vxdp prog ... --host PATH`, `vxdp map ... --host PATH`); there is no default, since
several hosts often run side by side, and without it nothing is listening.
`--agent PATH`, once per `--socket` and in the same order, serves that guest's host
agent (the RFC review's agent path, vxdp.runtime.agent): `vxdp guest --via agent
--agent PATH` offloads over it instead of the control queue.  A channel reaches its own
guest's device only.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

import trio

from host import PROFILES, get_profile
from vxdp.runtime.cli import (
    add_common,
    make_hook,
    say,
    setup_logging,
    until_signalled,
    write_stats,
)
from vxdp.runtime.host import HostRuntime
from vxdp.runtime.wire import open_port
from vxdp.runtime.xdp import host_verifier_profile

NAME = "host"
HELP = "run a host: vhost-user back-ends (one per guest socket), a wire port, host XDP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", action="append", required=True, metavar="PATH",
                        help="a guest's vhost-user socket to listen on (repeat for more)")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="device profile every guest gets (default: default)")
    parser.add_argument("--wire", default="null", metavar="SPEC",
                        help="wire port: null, pcap:IN[,out=OUT], gen:..., tap:NAME")
    parser.add_argument("--datapath", default="c", choices=("c", "python"),
                        help="c: the packet core moves bursts (default); python: the "
                             "device model does")
    parser.add_argument("--control", metavar="PATH",
                        help="serve the control socket (vxdp prog, vxdp map) at PATH "
                             "(default: none)")
    parser.add_argument("--agent", action="append", default=[], metavar="PATH",
                        help="serve a guest's host agent at PATH (the agent path of the "
                             "offload); once per --socket, in the same order")
    add_common(parser)


async def _main(runtime: HostRuntime, stats: Path | None) -> int:
    snapshot: dict[str, Any] | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            say("host", f"serving {len(runtime.guests)} guest socket(s): "
                        f"{', '.join(g.path for g in runtime.guests)}; wire "
                        f"{runtime.wire.spec.describe()}; xdp {runtime.xdp.describe()}"
                        + (f"; control {runtime.control.path}" if runtime.control else "")
                        + (f"; agents {', '.join(a.path for a in runtime.agents)}"
                           if runtime.agents else ""))
            signum = await until_signalled(lambda: write_stats(stats, runtime.stats()))
            snapshot = runtime.stats()  # as it was when the signal came, before teardown
            nursery.cancel_scope.cancel()
        say("host", f"{signal.Signals(signum).name}: stopping")
    finally:
        try:
            write_stats(stats, snapshot if snapshot is not None else runtime.stats())
        finally:
            runtime.close()
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    hook = make_hook(args, host_verifier_profile(get_profile(args.profile)))
    wire = open_port(args.wire)
    runtime = HostRuntime(args.socket, profile=args.profile, wire=wire, xdp=hook,
                          datapath=args.datapath, control=args.control,
                          engine=args.engine if args.engine in ("interp", "jit") else None,
                          agents=args.agent)
    return trio.run(_main, runtime, args.stats_json)
