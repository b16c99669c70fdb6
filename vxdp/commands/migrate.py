"""`vxdp migrate`: move a running guest's vhost-user back-end to another host.

    vxdp migrate --guest GUEST.ctl --to HOST_B.sock [--agent HOST_B.agent]
                 [--policy refuse|fallback|reoffload] [-j]

The guest (`vxdp guest --control GUEST.ctl`) stays where it is, with its memory, driver
and rings; its device moves from the host it uses now to the host serving `HOST_B.sock`
(that host's socket for this guest), as QEMU moves a VM between two vhost-user
back-ends.  The destination is checked before the source stops (protocol features,
negotiated features, queue layout, XDP capabilities); the state moves with
VHOST_USER_SET_DEVICE_STATE_FD; the destination re-verifies the offloaded program.  When
the destination cannot take the device as it is, `--policy refuse` (the default) leaves
the guest where it was and says why; `--policy fallback` moves it anyway, re-initializes
its device there and runs its program in driver mode, with the map entries it had;
`--policy reoffload` moves it the same way and offloads the program again to the
destination under that device's own capabilities, the map entries written before the
program (passthrough to a SmartNIC's virtual function: the NIC translates it or refuses
it, and a guest in mode auto then runs it in its driver).  A guest that offloaded over
its agent (`vxdp guest --via agent`) needs `--agent`, the destination host's agent
socket for this guest: its channel to the source's agent stays behind, and is re-bound
there (without it, or with no agent answering there, the destination cannot take the
offload as it is: refused, or one of the other policies).

The report: the outcome, the downtime (source stopped to destination running), the
frames lost (those that reached the source after it stopped), the maps and entries
moved, the control commands that were in flight (answered by the destination), what
the destination's verifier said, and the time each step took.  Exit status: 0 moved
(also with the fallback or reoffload), 1 refused or broken off, 2 unusable input or no guest at PATH.
"""

from __future__ import annotations

import argparse
import os

from vxdp.commands._ctl import call, emit, host_command

NAME = "migrate"
HELP = "move a running guest's back-end (and its offloaded program) to another host"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vxdp.runtime.migration import POLICIES
    parser.add_argument("--guest", required=True, metavar="PATH", dest="guest_socket",
                        help="the control socket of the running `vxdp guest --control PATH`")
    parser.add_argument("--to", required=True, metavar="PATH",
                        help="the destination host's vhost-user socket for this guest")
    parser.add_argument("--agent", metavar="PATH",
                        help="the destination host's agent socket for this guest (a guest "
                             "whose offload goes over its agent: vxdp guest --via agent)")
    parser.add_argument("--policy", choices=POLICIES, default="refuse",
                        help="when the destination cannot take the device as it is: refuse "
                             "(default), fallback (move anyway, the program in driver mode) "
                             "or reoffload (move anyway, offload again to the destination)")
    parser.add_argument("-j", "--json", action="store_true", help="print the report as JSON")


@host_command
def run(args: argparse.Namespace) -> int:
    from vxdp.runtime.migration import MigrationReport
    args.host = None
    extra = {"agent": os.path.abspath(args.agent)} if args.agent else {}
    doc = call(args, "guest.migrate", to=os.path.abspath(args.to), policy=args.policy, **extra)
    report = MigrationReport(**doc)
    emit(args, doc, report.text())
    return 1 if report.outcome == "refused" else 0
