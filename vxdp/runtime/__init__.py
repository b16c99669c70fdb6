"""The guest and host processes (the trio edge over the sans-I/O models).

`host.HostRuntime` serves one vhost-user socket per guest and bridges each to a
`host.Device`, a wire port and the host-attached XDP program; `guest.GuestRuntime` is
a `guest.Driver` over memfd memory carried as a vhost-user front-end, with driver-mode
XDP, reconnection and live migration (`GuestRuntime.migrate(to, policy=...)` ->
`MigrationReport`, vxdp.runtime.migration); `wire` holds the ports (pcap replay and capture, a traffic
generator, TAP, null); `xdp.XdpHook` is the attach point both use.
"""

from .guest import DeviceGone, GuestRuntime
from .guestport import GuestPort
from .host import HostRuntime
from .migration import POLICIES, MigrationReport
from .wire import WirePort, WireSpec, open_port, parse_spec
from .xdp import ACTION_NAMES, Verdict, XdpHook, load_program

__all__ = [
    "ACTION_NAMES",
    "POLICIES",
    "DeviceGone",
    "GuestPort",
    "GuestRuntime",
    "HostRuntime",
    "MigrationReport",
    "Verdict",
    "WirePort",
    "WireSpec",
    "XdpHook",
    "load_program",
    "open_port",
    "parse_spec",
]
