"""Adapters from our models to `virtio_spec.conformance`'s protocols.

`virtio_spec` stands alone, so the glue between its conformance checks and our
`host.Device` / `guest` driver lives here, on the vxdp side.  Each adapter speaks only
what the boundary carries (see `virtio_spec.conformance.adapter`):

* `HostDeviceAdapter` turns the transport calls into `host.Device` calls, collects the
  interrupts out of the events the device returns, and reads the wire from its
  `FrameTransmitted` events; `receive` feeds frames in from the host network.
* `GuestDriverAdapter` runs `guest.Driver` against any `Transport`: it answers the
  driver's transport requests by calling the transport, hands the transport's
  notifications back as `interrupt()` / `config_interrupt()`, and maps the user-facing
  operations (transmit, promiscuous mode, queue pairs) onto the driver's API.
* `device_factory(profile)` / `DEVICE_PROFILES` and `driver_factory()` give the
  factories the CLI and the tests run the checks with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from guest.driver import Driver
from guest.events import FrameReceived
from guest.init import InitState
from guest.transport import (
    EnableQueue,
    Kick,
    ReadConfig,
    ReadDeviceFeatures,
    ReadQueueMax,
    ReadStatus,
    Request,
    SetupQueue,
    WriteDriverFeatures,
    WriteStatus,
)
from host.device import Device
from host.events import ConfigInterrupt, DeviceEvent, FrameTransmitted, Interrupt, OffloadVerify
from virtio_spec.conformance.adapter import CONFIG_NOTIFICATION, Transport, TransportRefused
from virtio_spec.ctrl import VirtioNetCtrlClass, VirtioNetCtrlMq, VirtioNetCtrlRx
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError
from virtio_spec.memory import GuestAllocator, GuestMemory

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
            elif isinstance(ev, OffloadVerify):
                # nothing else runs here: verify now, and the command is answered
                ev.job.run()
                self._take(self.device.finish_ctrl(ev.job))

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


class GuestDriverAdapter:
    """`guest.Driver` as a `DriverUnderTest`.  `driver_kwargs` go to `Driver(...)`."""

    #: Guest memory the adapter asks the transport for.
    MEMORY_SIZE = 8 << 20

    def __init__(self, **driver_kwargs: Any) -> None:
        self.driver_kwargs = driver_kwargs
        self.driver: Driver | None = None
        self.device: Transport | None = None
        self.received: list[bytes] = []

    def start(self, device: Transport) -> None:
        self.device = device
        mem = device.attach_memory(self.MEMORY_SIZE)
        self.driver = Driver(mem, GuestAllocator(mem), **self.driver_kwargs)
        self.driver.initialize()
        self._pump()

    def _answer(self, req: Request) -> Any:
        dev = self.device
        assert dev is not None
        if isinstance(req, ReadStatus):
            return dev.read_status()
        if isinstance(req, WriteStatus):
            return dev.write_status(req.value)
        if isinstance(req, ReadDeviceFeatures):
            return dev.read_device_features()
        if isinstance(req, WriteDriverFeatures):
            return dev.write_driver_features(req.features)
        if isinstance(req, ReadConfig):
            return dev.read_config(req.offset, req.length)
        if isinstance(req, ReadQueueMax):
            return dev.queue_max_size(req.index)
        if isinstance(req, SetupQueue):
            return dev.setup_queue(req.index, req.size, req.desc, req.driver, req.device)
        if isinstance(req, EnableQueue):
            return dev.enable_queue(req.index)
        if isinstance(req, Kick):
            return dev.kick(req.queue)
        raise LocalProtocolError(f"adapter cannot carry {req.describe()}")

    def _pump(self) -> None:
        """Answer every request and deliver every notification until both run dry."""
        drv, dev = self.driver, self.device
        assert drv is not None and dev is not None
        for _ in range(100_000):
            req = drv.next_request()
            if req is not None:
                try:
                    value = self._answer(req)
                except TransportRefused as err:
                    drv.fail_request(err)
                else:
                    drv.reply(value)
                continue
            notes = dev.take_notifications()
            if not notes:
                break
            for q in notes:
                if q == CONFIG_NOTIFICATION:
                    drv.config_interrupt()
                else:
                    drv.interrupt(q)
        for ev in drv.events():
            if isinstance(ev, FrameReceived):
                self.received.append(ev.frame)

    def _live(self) -> Driver:
        drv = self.driver
        if drv is None or drv.state is not InitState.LIVE:
            raise LocalProtocolError("guest driver is not live")
        return drv

    def transmit(self, frames: Sequence[bytes]) -> None:
        self._live().transmit(frames)
        self._pump()

    def poll(self) -> list[bytes]:
        self._pump()
        out, self.received = self.received, []
        return out

    def set_promisc(self, on: bool) -> None:
        # What a user of the driver's API would send; whether the driver lets it through
        # without VIRTIO_NET_F_CTRL_RX is what §5.1.6.5.1.2 checks.
        self._live().ctrl_command(VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX,
                                  VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC, {"on": int(on)})
        self._pump()

    def set_queue_pairs(self, pairs: int) -> None:
        self._live().ctrl_command(VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ,
                                  VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                  {"virtqueue_pairs": pairs})
        self._pump()

    def close(self) -> None:
        self.driver = None
        self.device = None


def driver_factory(**driver_kwargs: Any) -> Callable[[], GuestDriverAdapter]:
    """A factory of fresh `guest.Driver`s, adapted."""
    def make() -> GuestDriverAdapter:
        return GuestDriverAdapter(**driver_kwargs)
    make.__name__ = "guest.Driver"
    return make


def device_factory(profile: str = "default") -> Callable[[], HostDeviceAdapter]:
    """A factory of fresh `host.Device`s of `profile`, adapted."""
    def make() -> HostDeviceAdapter:
        return HostDeviceAdapter(Device(profile))
    make.__name__ = f"host.Device({profile!r})"
    return make


#: The device profiles the CLI and the tests run the device checks on.
DEVICE_PROFILES = ("default", "packed", "minimal", "host", "rfc2019")


__all__ = ["DEVICE_PROFILES", "MEMORY_BASE", "GuestDriverAdapter", "HostDeviceAdapter",
           "device_factory", "driver_factory"]
