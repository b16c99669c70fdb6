"""One guest's receive and transmit queues on the C datapath (`host.datapath.HostPort`).

The host runtime runs a guest's device on the Python model until the driver sets
DRIVER_OK; then, when the rings are split and pair 1's two queues are running, `CPath`
takes them into C (`HostPort.from_device`): wire frames go in bursts through the
offloaded program and into the guest's buffers in one C call, and a transmit kick drains
the ring in one C call.  The control queue and any other pair stay with the model.
Before anything else touches the rings (GET_VRING_BASE, a reset, a disconnect) the queues
are handed back at C's indices (`hand_back`), so the model goes on where C stopped.

The C port has no receive backlog: a frame that finds no buffer is dropped and counted
(`drop_no_buffer`), as a NIC ring overflows.  Its counters outlive it: a retired port's
are added to `totals`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from host import Device, OffloadedProgram
from host.datapath import BurstOut, HostPort, HostSwitch
from virtio_spec.errors import RingError, VirtioError
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.program import Program
from vxdp.errors import VxdpError

log = logging.getLogger("vxdp.runtime.cpath")

#: Port counters the stats file shows as XDP actions, by action name.
#: xdp_aborted counts every run that ended aborted, invalid actions and faults included
#: (those two have counters of their own as well).
ACTION_COUNTERS = {"aborted": "xdp_aborted", "drop": "xdp_drop", "pass": "xdp_pass",
                   "tx": "xdp_tx", "redirect": "xdp_redirect"}
#: The same for the program the guest offloaded (off_aborted counts its faults and
#: invalid actions too).
OFFLOAD_COUNTERS = {name: "off_" + key.removeprefix("xdp_")
                    for name, key in ACTION_COUNTERS.items()}


def add_counts(into: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Add counters key by key (zeros kept, unlike Counter's +); returns `into`."""
    for key, value in more.items():
        into[key] = into.get(key, 0) + value
    return into


class CPath:
    """The C port of one guest (None until taken) and the counters of retired ones."""

    def __init__(self, switch: HostSwitch, ifindex: int) -> None:
        self.switch = switch
        self.ifindex = ifindex
        self.port: HostPort | None = None
        self.totals: dict[str, int] = {}
        self.refusal = ""

    @property
    def active(self) -> bool:
        return self.port is not None

    def take(self, device: Device, program: Program | None,
             maps: Sequence[CoreMap] | None, engine: str = "interp", *,
             link_up: bool = True) -> bool:
        """Move pair 1's queues of a live `device` into C, with the host-attached
        `program` on `engine` (interp or jit) and the guest's carrier; False (and why,
        in `refusal`) when the queues cannot go (packed rings, chains in flight)."""
        if self.port is not None:
            return True
        try:
            port = HostPort.from_device(self.switch, self.ifindex, device)
        except (VirtioError, VxdpError) as exc:
            self.refusal = str(exc)
            log.info("port %d stays on the Python datapath: %s", self.ifindex, exc)
            return False
        self.port = port
        port.set_carrier(link_up)
        if program is not None:
            self.attach(program, maps, engine)
        return True

    def attach(self, program: Program | None, maps: Sequence[CoreMap] | None,
               engine: str = "interp") -> None:
        """The host-attached program (None: none) on `engine`, interp or jit."""
        if self.port is not None:
            self.port.attach(program, maps, engine)

    def attach_offload(self, offloaded: OffloadedProgram | None) -> None:
        """The program the guest offloaded, on the port's way into the guest."""
        if self.port is None:
            return
        if offloaded is None:
            self.port.attach_offload(None)
            return
        # A SmartNIC's program runs in C on the core's interpreter: the BPF its image was
        # translated from, with the same semantics (docs/smartnic.md, what is emulated);
        # the device model's path runs the image itself on the micro-engine's simulator.
        engine = "interp" if offloaded.engine == "smartnic" else offloaded.engine
        self.port.attach_offload(offloaded.program, [m.map for m in offloaded.maps], engine)

    def release(self) -> None:
        """Hand the queues back to the device model and keep the port's counters."""
        port, self.port = self.port, None
        if port is None:
            return
        add_counts(self.totals, port.stats)
        port.hand_back()

    def rx(self, frames: Sequence[bytes]) -> BurstOut:
        assert self.port is not None
        return self.port.rx_burst(frames)

    def redirect_in(self, frames: Sequence[bytes]) -> BurstOut:
        assert self.port is not None
        return self.port.redirect_in(frames)

    def tx(self) -> BurstOut:
        assert self.port is not None
        return self.port.tx_burst()

    def newly_broken(self, queue: str) -> RingError | None:
        """The RingError that broke the port's "rx" or "tx" queue, once (see
        `HostPort.newly_broken`)."""
        return self.port.newly_broken(queue) if self.port is not None else None

    def tx_pending(self) -> bool:
        return self.port is not None and self.port.tx_pending() > 0

    def stats(self) -> dict[str, int]:
        out = dict(self.totals)
        return add_counts(out, self.port.stats) if self.port is not None else out

    def actions(self, counters: Mapping[str, str] = ACTION_COUNTERS) -> dict[str, int]:
        """Action counts of the host-attached program (or, with OFFLOAD_COUNTERS, of the
        offloaded one), over every port this guest had."""
        s = self.stats()
        return {name: s.get(key, 0) for name, key in counters.items()}


__all__ = ["ACTION_COUNTERS", "OFFLOAD_COUNTERS", "CPath", "add_counts"]
