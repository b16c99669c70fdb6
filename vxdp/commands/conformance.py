"""`vxdp conformance`: the virtio conformance checks against our device and driver models.

    vxdp conformance [--side device|driver|both] [--profile NAME ...] [--clause KEY ...] [-j]
    vxdp conformance --socket PATH [--capture PCAP] [--hide-ctrl] [--clause KEY ...] [-j]

Device clauses run against `host.Device` once per device profile (all of
`DEVICE_PROFILES` unless `--profile` narrows them); driver clauses run against
`guest.Driver` started on the library's recording device.  Prints a table with one row
per clause and target (or with `-j` one JSON object).  Exit status 1 when any clause
fails or errors, 2 for an unknown clause or profile, else 0.

`--socket PATH` runs the device clauses against a vhost-user back-end listening there
(`vxdp host`, DPDK's net_vhost, anyone's) through `vxdp.conformance_vhost`: what the
socket cannot show is n/a.  `--capture` names a pcap the back-end writes its wire to
(`vxdp host --wire pcap:out=PCAP`); `--hide-ctrl` hides the control queue features, as
QEMU does for a back-end that does not serve that queue (DPDK).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vxdp.errors import VxdpError

NAME = "conformance"
HELP = "virtio conformance checks (virtio 1.3 ch. 2, 3, 5.1, 6 and the offload) on our models"


class ConformanceUsageError(VxdpError, ValueError):
    """An unknown clause key or device profile, or a socket nobody serves."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vxdp.conformance_adapters import DEVICE_PROFILES
    parser.add_argument("--side", choices=("device", "driver", "both"), default="both",
                        help="which side's clauses to run (default both)")
    parser.add_argument("--profile", action="append", metavar="NAME",
                        help=f"device profile (repeatable; default {', '.join(DEVICE_PROFILES)})")
    parser.add_argument("--clause", action="append", metavar="KEY",
                        help="run only this clause, e.g. device:2.7.5.1 (repeatable)")
    parser.add_argument("--socket", action="append", metavar="PATH",
                        help="a vhost-user back-end's socket: run the device clauses "
                             "against it (repeatable; replaces the in-process models)")
    parser.add_argument("--capture", metavar="PCAP",
                        help="with --socket: a pcap the back-end writes its wire to")
    parser.add_argument("--hide-ctrl", action="store_true",
                        help="with --socket: hide the control queue features (QEMU's view "
                             "of a back-end that does not serve the control queue)")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from host.config import PROFILES
    from virtio_spec.conformance import merge, select
    from virtio_spec.conformance import run as run_checks
    from vxdp import conformance_adapters as adapters
    from vxdp.conformance_vhost import CTRL_QUEUE_FEATURES, VhostUserDevice, run_socket
    sides: tuple[str, ...] = ("device", "driver") if args.side == "both" else (args.side,)
    try:
        clauses = select(keys=args.clause) if args.clause else select()
    except KeyError as err:
        raise ConformanceUsageError(str(err.args[0])) from None
    profiles = args.profile or list(adapters.DEVICE_PROFILES)
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise ConformanceUsageError(f"unknown device profile(s) {', '.join(unknown)} "
                                    f"(known: {', '.join(sorted(PROFILES))})")
    reports = []
    if args.socket:
        if args.side == "driver":
            raise ConformanceUsageError("--socket runs device clauses; --side driver has no "
                                        "socket target")
        device_clauses = [c for c in clauses if c.side == "device"]
        for path in args.socket:
            try:
                VhostUserDevice(path).close()
            except (OSError, VxdpError) as exc:
                raise ConformanceUsageError(f"--socket {path}: no vhost-user back-end "
                                            f"answers there ({exc})") from None
            reports.append(run_socket(
                path, device_clauses, capture=Path(args.capture) if args.capture else None,
                hide=CTRL_QUEUE_FEATURES if args.hide_ctrl else 0))
        sides = ()
    if "device" in sides:
        device_clauses = [c for c in clauses if c.side == "device"]
        for name in profiles:
            reports.append(run_checks(device_clauses, device=adapters.device_factory(name),
                                      device_name=f"host.Device({name})"))
    if "driver" in sides:
        reports.append(run_checks([c for c in clauses if c.side == "driver"],
                                  driver=adapters.driver_factory(), driver_name="guest.Driver"))
    report = merge(reports)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1
