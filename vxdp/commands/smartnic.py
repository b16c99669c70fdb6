"""`vxdp smartnic`: the SmartNIC process, a virtio-net device reached by passthrough.

    vxdp smartnic --socket PATH [--socket PATH ...] [--control PATH] [--wire SPEC]
                  [--datapath c|python] [--stats-json FILE] [-v]

Each `--socket` is one virtual function of the NIC, a vhost-user back-end the guest
dials directly (`vxdp guest --socket PATH --xdp OBJ.o --mode offload|auto`): no host
device model in between.  Its device offers VIRTIO_NET_F_XDP_OFFLOAD with the `smartnic`
capabilities; a program the guest offloads is verified under them, then translated for
the NIC's micro-engine (VXME-32, docs/smartnic.md), which refuses what it has no mapping
for with its own errno and `[vxme]` log line; `vxdp guest --mode auto` then falls back to
driver mode.  `--wire` is the NIC's port (`null`, `pcap:...`, `gen:...`, `tap:NAME`).
`--control PATH` serves `vxdp prog show|dump xlated|dump jited --host PATH` (dump jited:
the image, its machine type and the words each BPF instruction became), `vxdp map`,
`vxdp link` and `stats`.  On SIGINT or SIGTERM it writes `--stats-json` and exits 0;
SIGUSR1 writes it without stopping.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "smartnic"
HELP = "run a SmartNIC: virtio-net virtual functions a guest offloads XDP to directly"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", action="append", required=True, metavar="PATH",
                        help="a virtual function's vhost-user socket (repeat for more)")
    parser.add_argument("--control", metavar="PATH",
                        help="serve the control socket (vxdp prog, vxdp map) at PATH "
                             "(default: none)")
    parser.add_argument("--wire", default="null", metavar="SPEC",
                        help="the NIC's port: null, pcap:IN[,out=OUT], gen:..., tap:NAME")
    parser.add_argument("--datapath", default="c", choices=("c", "python"),
                        help="c: the packet core moves bursts and runs the program on its "
                             "interpreter (default); python: the device model moves them "
                             "and runs the image on the micro-engine's simulator")
    parser.add_argument("--stats-json", metavar="FILE", type=Path,
                        help="write counters as JSON here on SIGINT/SIGTERM")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens (-vv: more)")


def run(args: argparse.Namespace) -> int:
    import trio

    from vxdp.runtime.cli import serve_until_signalled, setup_logging
    from vxdp.runtime.smartnic import SmartNicRuntime
    from vxdp.runtime.wire import open_port
    setup_logging(args.verbose)
    nic = SmartNicRuntime(args.socket, wire=open_port(args.wire), datapath=args.datapath,
                          control=args.control)

    def banner() -> str:
        return (f"serving {len(nic.guests)} virtual function socket(s): "
                f"{', '.join(g.path for g in nic.guests)}; {nic.describe()}; wire "
                f"{nic.wire.spec.describe()}"
                + (f"; control {nic.control.path}" if nic.control else ""))
    return trio.run(serve_until_signalled, nic, args.stats_json, "smartnic", banner)
