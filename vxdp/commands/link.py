"""`vxdp link`: the guests of a running host, their link state and announce requests.

    vxdp link show --host PATH [-j]
    vxdp link set GUEST up|down --host PATH [-j]
    vxdp link announce GUEST --host PATH [-j]

`GUEST` is the guest's number on the host (the order of `vxdp host --socket`, from 0).
`show` prints every guest: its socket, MAC, carrier, whether a driver is live on it, the
device status, the negotiated features.  `set` changes the carrier as QEMU's `set_link`
does: the guest's driver sees VIRTIO_NET_S_LINK_UP change through a config change, and
the setting stays with the guest's socket, so a guest that reconnects finds the link as
it was left (also when no guest is connected at the time).  `announce` sets
VIRTIO_NET_S_ANNOUNCE: the guest announces itself and acks with
VIRTIO_NET_CTRL_ANNOUNCE_ACK (virtio 1.3 §5.1.6.5.4); it needs a live driver that
negotiated VIRTIO_NET_F_GUEST_ANNOUNCE.  Exit status: 0 done, 1 the operation failed
(ENOTCONN: no live guest; EOPNOTSUPP: no GUEST_ANNOUNCE), 2 unusable input (ENODEV: no
such guest) or no host at PATH.
"""

from __future__ import annotations

import argparse
from typing import Any

from vxdp.commands._ctl import add_host_options, call, emit, host_command
from vxdp.errors import UsageError

NAME = "link"
HELP = "the guests of a running host: link state and announce (show, set, announce)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_host_options(parser, leaf=False, guest=False)
    sub = parser.add_subparsers(dest="link_command", metavar="COMMAND", required=True)
    p = sub.add_parser("show", aliases=["list"], help="every guest and its link")
    add_host_options(p, leaf=True, guest=False)
    p = sub.add_parser("set", help="set a guest's link up or down")
    p.add_argument("guest", metavar="GUEST", help="the guest's number on the host")
    p.add_argument("state", choices=("up", "down"))
    add_host_options(p, leaf=True, guest=False)
    p = sub.add_parser("announce", help="ask a guest to announce itself")
    p.add_argument("guest", metavar="GUEST", help="the guest's number on the host")
    add_host_options(p, leaf=True, guest=False)


def guest_number(text: str) -> int:
    try:
        number = int(text, 10)
    except ValueError:
        raise UsageError(f"guest {text!r} is not a number (guests are 0, 1, ...)") from None
    if number < 0:
        raise UsageError(f"guest {number} is negative (guests are 0, 1, ...)")
    return number


def show_text(g: dict[str, Any]) -> str:
    if g["live"]:
        state = "live"
    elif g["connected"]:
        state = "connected, not live"
    else:
        state = "no front-end"
    head = (f"{g['guest']}: socket {g['socket']}  mac {g['mac']}  link {g['link']}  "
            f"{state}" + ("  announce pending" if g["announce_pending"] else ""))
    lines = [head]
    if g["connected"]:
        lines.append(f"\tstatus {g['status'] or '0'}  ifindex {g['ifindex']}  "
                     f"config changes {g['config_changes']}")
        if g["features"]:
            lines.append(f"\tfeatures {' '.join(g['features'])}")
    return "\n".join(lines)


@host_command
def run(args: argparse.Namespace) -> int:
    cmd = args.link_command
    if cmd in ("show", "list"):
        guests = call(args, "guest.list")
        emit(args, guests, "\n".join(map(show_text, guests)))
        return 0
    number = guest_number(args.guest)
    if cmd == "set":
        done = call(args, "guest.link", guest=number, up=args.state == "up")
        if not done["changed"]:
            how = "unchanged"
        elif not done["connected"]:
            how = f"no front-end: its next device starts with the link {done['link']}"
        elif done["signalled"]:
            how = "config change sent"
        elif done["live"] and "VIRTIO_NET_F_STATUS" not in done["features"]:
            how = "its driver did not negotiate VIRTIO_NET_F_STATUS and takes the link as up"
        else:
            how = "no config change sent: the driver sees it when it next reads its config"
        what = f"link {done['link']}"
    else:
        done = call(args, "guest.announce", guest=number)
        how = ("config change sent" if done["signalled"] else
               "no config change sent: the driver sees it when it next reads its config")
        what = "announce requested"
    emit(args, done, f"guest {number}: {what} ({how})")
    return 0
