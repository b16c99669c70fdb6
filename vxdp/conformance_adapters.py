"""Adapters from our models to `virtio_spec.conformance`'s protocols.

`virtio_spec` stands alone, so the glue between its conformance checks and our
`host.Device` / `guest` driver lives here, on the vxdp side.  Each adapter speaks only
what the boundary carries (see `virtio_spec.conformance.adapter`):

* `HostDeviceAdapter` turns the transport calls into `host.Device` calls, collects the
  interrupts out of the events the device returns, and reads the wire from its
  `FrameTransmitted` events; `receive` feeds frames in from the host network.
* `device_factory(profile)` / `DEVICE_PROFILES` give the factories the CLI and the tests
  run the device checks with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from host.device import Device
from host.events import ConfigInterrupt, DeviceEvent, FrameTransmitted, Interrupt
from virtio_spec.conformance.adapter import CONFIG_NOTIFICATION, TransportRefused
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.memory import GuestMemory

#: Where the adapter places guest memory (not 0, to catch "gpa 0" bugs).
MEMORY_BASE = 0x4000_0000


class HostDeviceAdapter:
    """`host.Device` as a `DeviceUnderTest`."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.events: list[DeviceEvent] = []  # everything the device said, for traces
        self._notes: list[int] = []
        self._wire: list[bytes] = []

    def _take(self, events: list[DeviceEvent]) -> None:
        self.events.extend(events)
        for ev in events:
            if isinstance(ev, Interrupt) and ev.sent:
                self._notes.append(ev.queue)
            elif isinstance(ev, ConfigInterrupt):
                self._notes.append(CONFIG_NOTIFICATION)
            elif isinstance(ev, FrameTransmitted):
                self._wire.append(bytes(ev.frame))

    def _call(self, fn: Callable[[], list[DeviceEvent]]) -> None:
        try:
            self._take(fn())
        except RemoteProtocolError as err:
            raise TransportRefused(str(err)) from None

    def read_device_features(self) -> int:
        return self.device.device_features

    def write_driver_features(self, features: int) -> None:
        self._call(lambda: self.device.write_features(features))

    def read_status(self) -> int:
        return self.device.read_status()

    def write_status(self, value: int) -> None:
        self._call(lambda: self.device.write_status(value))

    def read_config(self, offset: int, length: int) -> bytes:
        try:
            return self.device.read_config(offset, length)
        except RemoteProtocolError as err:
            raise TransportRefused(str(err)) from None

    def write_config(self, offset: int, data: bytes) -> None:
        try:
            self.device.write_config(offset, data)
        except RemoteProtocolError as err:
            raise TransportRefused(str(err)) from None

    def queue_max_size(self, index: int) -> int:
        try:
            return self.device.queue_max_size(index)
        except RemoteProtocolError:
            return 0

    def attach_memory(self, size: int) -> GuestMemory:
        mem = GuestMemory([(MEMORY_BASE, bytearray(size))])
        self.device.set_memory(mem)
        return mem

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        self._call(lambda: self.device.set_queue(index, size, desc, driver, device))

    def enable_queue(self, index: int) -> None:
        self._call(lambda: self.device.enable_queue(index))

    def kick(self, index: int) -> None:
        self._call(lambda: self.device.notify(index))

    def take_notifications(self) -> list[int]:
        out, self._notes = self._notes, []
        return out

    def receive(self, frames: Sequence[bytes]) -> None:
        self._take(self.device.receive(list(frames)))

    def take_transmitted(self) -> list[bytes]:
        out, self._wire = self._wire, []
        return out

    def close(self) -> None:
        self.events.clear()


def device_factory(profile: str = "default") -> Callable[[], HostDeviceAdapter]:
    """A factory of fresh `host.Device`s of `profile`, adapted."""
    def make() -> HostDeviceAdapter:
        return HostDeviceAdapter(Device(profile))
    make.__name__ = f"host.Device({profile!r})"
    return make


#: The device profiles the CLI and the tests run the device checks on.
DEVICE_PROFILES = ("default", "packed", "minimal", "host")


__all__ = ["DEVICE_PROFILES", "MEMORY_BASE", "HostDeviceAdapter", "device_factory"]
