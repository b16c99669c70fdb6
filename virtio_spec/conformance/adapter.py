"""The small adapters the conformance checks drive: what is observable at the virtio boundary.

The checks never look inside an implementation.  They see what a PCI function, an MMIO
window or a vhost-user socket carries: feature and status accesses, config reads (and
writes), queue programming, the memory the rings live in, notifications both ways, and,
for a network device, frames on the host's side of the wire.  Anything reachable that
way can be checked: our own models in-process, or DPDK's vhost port and QEMU over
vhost-user through an adapter that turns these calls into messages.

Two roles, one transport vocabulary:

* `Transport` is the transport side of a device, the calls a driver makes.  A
  `DeviceUnderTest` is a Transport plus the wire; the device checks play driver against
  it (the library's own driver, `session.DriverSession`).
* A `DriverUnderTest` is started against a Transport; the driver checks hand it the
  library's `recorder.RecordingDevice`, which answers like a device, records every access
  and shows the rings the driver builds.

Guest memory: `attach_memory(size)` asks the transport for `size` bytes of guest memory
the device can reach (a bytearray in-process; memfd regions sent with SET_MEM_TABLE over
vhost-user) and returns it as a `GuestMemory`; ring areas and buffers live in it.

Refusals: a device that refuses a transport operation (a queue index that does not exist,
a size above its maximum) raises `TransportRefused`.  An operation an implementation
cannot do at all through its adapter (no wire access, no promiscuous switch in the
driver's API) raises `Unsupported`; the check is then reported not applicable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ..memory import GuestMemory

#: What `take_notifications()` reports for a configuration change notification.
CONFIG_NOTIFICATION = -1


class NotApplicable(Exception):
    """The clause does not apply to this implementation (a feature not offered or not
    negotiated, a situation the implementation never enters); the reason is the text."""


class Unsupported(NotApplicable):
    """The adapter cannot perform the operation (e.g. no access to the wire)."""


#: What a driver raises when it refuses a request the spec forbids it to send (e.g.
#: VQ_PAIRS_SET 0, or PROMISC without CTRL_RX): refusing is conformant, sending is not.
REFUSED: tuple[type[Exception], ...] = (ValueError, LookupError, RuntimeError)


class TransportRefused(Exception):
    """The device refused a transport operation (its message says why)."""


@runtime_checkable
class Transport(Protocol):
    """The transport side of a virtio device: what a driver reads, writes and signals."""

    def read_device_features(self) -> int:
        """The feature bits the device offers (all 64+ bits as one int)."""
        ...

    def write_driver_features(self, features: int) -> None:
        """The feature bits the driver accepts."""
        ...

    def read_status(self) -> int:
        """The device status field (virtio 1.3 §2.1)."""
        ...

    def write_status(self, value: int) -> None:
        """Write the device status field; 0 resets the device (§2.4)."""
        ...

    def read_config(self, offset: int, length: int) -> bytes:
        """Bytes of the device-specific configuration space."""
        ...

    def write_config(self, offset: int, data: bytes) -> None:
        """Write device-specific configuration (drivers must not, §5.1.4.2)."""
        ...

    def queue_max_size(self, index: int) -> int:
        """The largest size queue `index` may be given; 0 when it does not exist."""
        ...

    def attach_memory(self, size: int) -> GuestMemory:
        """Guest memory of `size` bytes shared with the device (SET_MEM_TABLE)."""
        ...

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        """Program queue `index`: size and area addresses (split: descriptor table,
        available ring, used ring; packed: ring, driver and device event areas)."""
        ...

    def enable_queue(self, index: int) -> None:
        """Enable a programmed queue."""
        ...

    def kick(self, index: int) -> None:
        """An available buffer notification for queue `index` (§2.9)."""
        ...

    def take_notifications(self) -> list[int]:
        """Notifications sent to the driver since the last call, in order: a queue index
        for a used buffer notification, CONFIG_NOTIFICATION for a config change."""
        ...


@runtime_checkable
class DeviceUnderTest(Transport, Protocol):
    """A virtio-net device as the device checks see it: its transport and its wire."""

    def receive(self, frames: Sequence[bytes]) -> None:
        """Frames arriving from the host network, for the device to deliver to the
        driver's receive queues (raise Unsupported when the wire is not reachable)."""
        ...

    def take_transmitted(self) -> list[bytes]:
        """Frames the device sent to the host network since the last call (raise
        Unsupported when the wire is not reachable)."""
        ...

    def close(self) -> None:
        """Release the device (a socket, a process); the check is done with it."""
        ...


@runtime_checkable
class DriverUnderTest(Protocol):
    """A virtio-net driver as the driver checks see it: started against a device, then
    asked to do what its users would ask (send frames, change filters)."""

    def start(self, device: Transport) -> None:
        """Initialize against `device` until the driver is live or has given up.  A
        driver that gives up returns normally: the checks read what it did."""
        ...

    def transmit(self, frames: Sequence[bytes]) -> None:
        """Send frames (on transmitq1)."""
        ...

    def poll(self) -> list[bytes]:
        """Take the device's notifications and used buffers; return frames received."""
        ...

    def set_promisc(self, on: bool) -> None:
        """Ask for promiscuous mode (raise Unsupported if the driver has no such API, one
        of REFUSED if it declines because the spec forbids the command)."""
        ...

    def set_queue_pairs(self, pairs: int) -> None:
        """Ask for `pairs` queue pairs (raise Unsupported without such an API, one of
        REFUSED if it declines because the spec forbids the request)."""
        ...

    def close(self) -> None:
        """Release the driver."""
        ...


#: A fresh device for each call (the checks reset it, but never share one between checks).
DeviceFactory = Callable[[], DeviceUnderTest]
#: A fresh driver for each call.
DriverFactory = Callable[[], DriverUnderTest]


__all__ = [
    "CONFIG_NOTIFICATION",
    "REFUSED",
    "DeviceFactory",
    "DeviceUnderTest",
    "DriverFactory",
    "DriverUnderTest",
    "NotApplicable",
    "Transport",
    "TransportRefused",
    "Unsupported",
]
