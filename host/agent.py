"""The host agent of the agent path (sans-I/O): one guest's channel to its device's offload.

The 2019 RFC's review asked why the offload is not forwarded "at a higher layer" (Jakub
Kicinski); Jason Wang answered that it would take a library and agents in the guest and
on the host.  That path is built here so that it can be compared with the control queue:

    libbpf (guest) -> guest agent -> host agent -> host

The guest's operations are the very `guest.offload` ones; the guest agent carries each
command (class, command, body, result room) over an RPC channel instead of the control
virtqueue, and this agent hands it to the same `host.offload.DeviceOffload` the control
queue feeds, that of the guest's current device.  The answer is the same ack and result
bytes.  The wire format is `vxdp.control.agent`; the trio edge `vxdp.runtime.agent`.

Rules
-----
* A channel belongs to one guest (in a real deployment a per-VM virtio-serial port or
  vsock connection; here one Unix socket per guest socket).  The binding is the channel,
  made by the host when it creates it: nothing a guest says moves it.  A request that
  names another guest (`guest`), or a hello from a device whose MAC is not the channel's
  guest's, is refused with EPERM and reaches no device.  Map handles are the device's own
  (`DeviceOffload`): another guest's handle is just one this device does not hold.
* The device is the guest's current one: none (the front-end is not connected) or not
  live (before DRIVER_OK, or waiting for a reset) is ENODEV.  What the agent offloads
  belongs to that device exactly as what the control queue offloads does: a device reset
  or the front-end leaving destroys it.
* Commands are parsed by the control queue's own parser (`virtio_spec.ctrl.parse_ctrl`)
  and answered by `DeviceOffload.handle`.  What the control queue would answer with
  VIRTIO_NET_ERR and no result (not the offload's class, a malformed body, a device
  without the offload), the agent answers so too.  The offload's feature bit is not
  needed: the agent path is the one that works without the virtio spec change.
* A SET_OFFLOAD becomes a `VerifyJob` the edge runs off its event loop, then `finish`.
  One program is verified at a time per device: a SET_OFFLOAD while another one (over
  either path) is being verified is answered EBUSY.  A job whose device was reset or
  replaced meanwhile loads nothing and is answered ENODEV; one superseded by a
  SET_OFFLOAD over the control queue is answered EBUSY.
"""

from __future__ import annotations

import errno as E
from dataclasses import dataclass, field, replace

from virtio_spec.ctrl import VIRTIO_NET_ERR, parse_ctrl
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.offload import VirtioNetBpfProgCmd, VirtioNetCtrlEbpf, virtio_net_ebpf_result
from vxdp.errors import errno_name

from .device import Device
from .offload import OffloadOutcome, VerifyJob


class AgentRefused(Exception):
    """A request the agent refuses before any device sees it (the RPC's error reply)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True)
class AgentBinding:
    """The guest a channel belongs to: its number, its device's MAC, the channel."""

    guest: int
    mac: bytes
    channel: str

    def describe(self) -> str:
        return f"guest {self.guest} ({self.mac.hex(':')}, channel {self.channel})"


@dataclass
class HostAgent:
    """The host agent of one guest's channel (see the module docstring)."""

    binding: AgentBinding
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("hellos", "commands", "refused", "crossings"), 0))

    def check(self, named: int | None = None, mac: bytes | None = None) -> None:
        """Refuse (EPERM) a request naming a guest other than the channel's, or a MAC
        other than its guest's device's."""
        b = self.binding
        if named is not None and named != b.guest:
            self.counts["crossings"] += 1
            raise AgentRefused(E.EPERM, f"agent channel {b.channel} belongs to guest "
                                        f"{b.guest}: it cannot reach guest {named} (a channel "
                                        f"reaches its own guest's device only)")
        if mac is not None and mac != b.mac:
            self.counts["crossings"] += 1
            raise AgentRefused(E.EPERM, f"agent channel {b.channel} belongs to guest "
                                        f"{b.guest} (mac {b.mac.hex(':')}), not to a device "
                                        f"with mac {mac.hex(':')}: the agent socket and the "
                                        f"vhost-user socket are of different guests")

    def follow(self, mac: bytes) -> None:
        """The channel's guest's device now has `mac` (a migrated device keeps the MAC
        its driver read on the source): the hello's check follows it.  The binding is
        still the channel; only what mis-wiring is recognised by changes."""
        if mac != self.binding.mac:
            self.binding = replace(self.binding, mac=mac)

    def live_device(self, device: Device | None, *, suspended: bool = False) -> Device:
        """The channel's guest's device, when one is live (ENODEV otherwise) and not
        suspended (EAGAIN: a migration is saving it, and what it answered now would not
        move with it; the control queue is paused the same way)."""
        g = self.binding.guest
        if device is None:
            raise AgentRefused(E.ENODEV, f"guest {g} has no device: its front-end is not "
                                         f"connected")
        if not device.live:
            raise AgentRefused(E.ENODEV, f"guest {g}'s device is not live (status "
                                         f"{device.status_names or 'reset'})")
        if suspended:
            raise AgentRefused(E.EAGAIN, f"guest {g}'s device is stopped (its rings "
                                         f"suspended: a migration is saving it); ask the "
                                         f"host it moves to")
        return device

    def command(self, device: Device | None, cls: int, command: int, body: bytes,
                room: int, *, suspended: bool = False) -> OffloadOutcome:
        """One offload command for the guest's device: the outcome the control queue's
        handler would give (`job` set for a SET_OFFLOAD to verify)."""
        dev = self.live_device(device, suspended=suspended)
        self.counts["commands"] += 1
        offload = dev.offload
        if offload is None:
            return self._err(f"the device (profile {dev.profile.name}) offers no XDP offload")
        if cls != dev.ctrl.ebpf_class:
            return self._err(f"class {cls} is not the offload's ({dev.ctrl.ebpf_class}): "
                             f"the agent carries offload commands only")
        try:
            parsed = parse_ctrl(bytes([cls, command]) + body, ebpf_class=cls)
        except RemoteProtocolError as exc:
            return self._err(str(exc))
        if offload.pending is not None and _is_set_offload(parsed.data, command):
            return self._errno(E.EBUSY, "the device is verifying another program")
        return offload.handle(command, parsed.data, room)

    def finish(self, device: Device, current: Device | None, job: VerifyJob
               ) -> OffloadOutcome:
        """The answer to a SET_OFFLOAD whose job ran on `device`; `current` is the
        guest's device now."""
        offload = device.offload
        if current is not device or offload is None or job.cancelled:
            return self._errno(E.ENODEV, "the device was reset or replaced during "
                                         "verification: nothing was loaded")
        if offload.pending is not job:
            return self._errno(E.EBUSY, "a SET_OFFLOAD over the control queue replaced "
                                        "this one during verification")
        return offload.finish(job)

    def _err(self, detail: str) -> OffloadOutcome:
        """VIRTIO_NET_ERR without a result, as the control queue answers it."""
        self.counts["refused"] += 1
        return OffloadOutcome(int(VIRTIO_NET_ERR), b"", detail)

    def _errno(self, errno: int, detail: str) -> OffloadOutcome:
        self.counts["refused"] += 1
        return OffloadOutcome(int(VIRTIO_NET_ERR),
                              bytes(virtio_net_ebpf_result.build({"errno": errno})),
                              f"{errno_name(errno)}: {detail}")


def _is_set_offload(body: object, command: int) -> bool:
    return (command == VirtioNetCtrlEbpf.VIRTIO_NET_CTRL_EBPF_PROG
            and int(getattr(body, "cmd", -1)) == VirtioNetBpfProgCmd.VIRTIO_NET_BPF_CMD_SET_OFFLOAD)


__all__ = ["AgentBinding", "AgentRefused", "HostAgent"]
