"""What the driver asks of its transport: the seam between `guest.Driver` and a device.

A virtio transport (PCI, MMIO, vhost-user) carries a handful of operations between a
driver and a device besides the rings themselves: status, feature and config access,
queue programming and driver notifications (kicks).  `guest.Driver` never performs them:
it emits one of these requests at a time (`Driver.next_request()`) and is told the answer
(`Driver.reply(value)`), h11 style.  Today `vxdp.pair` answers them by calling
`host.Device` in-process; a vhost-user frontend will answer them with its messages
(GET_FEATURES, SET_FEATURES, SET_STATUS, GET_CONFIG, SET_VRING_NUM/ADDR/ENABLE, and a
write to the kick eventfd).

Replies: reads answer with an `int` (ReadStatus, ReadDeviceFeatures, ReadQueueMax) or
`bytes` (ReadConfig); every other request is answered with None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from virtio_spec.events import Record
from virtio_spec.features import describe
from virtio_spec.status import status_names


@dataclass(frozen=True)
class Request(Record):
    """Base of every transport request."""

    kind: ClassVar[str] = "request"


@dataclass(frozen=True)
class ReadStatus(Request):
    """Read the device status field (virtio 1.3 §2.1)."""

    kind: ClassVar[str] = "read_status"

    def describe(self) -> str:
        return "read status"


@dataclass(frozen=True)
class WriteStatus(Request):
    """Write the device status field; 0 resets the device (§2.4)."""

    kind: ClassVar[str] = "write_status"
    value: int

    def describe(self) -> str:
        return f"write status {self.value:#04x} ({status_names(self.value)})"


@dataclass(frozen=True)
class ReadDeviceFeatures(Request):
    """Read the features the device offers (§3.1.1 step 4)."""

    kind: ClassVar[str] = "read_device_features"

    def describe(self) -> str:
        return "read device features"


@dataclass(frozen=True)
class WriteDriverFeatures(Request):
    """Write the features the driver accepts (§3.1.1 step 4)."""

    kind: ClassVar[str] = "write_driver_features"
    features: int

    def describe(self) -> str:
        return f"write driver features {self.features:#x}: {', '.join(describe(self.features))}"


@dataclass(frozen=True)
class ReadConfig(Request):
    """Read `length` bytes of device-specific config at `offset` (§5.1.4)."""

    kind: ClassVar[str] = "read_config"
    offset: int
    length: int

    def describe(self) -> str:
        return f"read config {self.length} bytes at {self.offset}"


@dataclass(frozen=True)
class ReadQueueMax(Request):
    """Read the largest size the device supports for queue `index` (0: no such queue)."""

    kind: ClassVar[str] = "read_queue_max"
    index: int

    def describe(self) -> str:
        return f"read max size of queue {self.index}"


@dataclass(frozen=True)
class SetupQueue(Request):
    """Program queue `index`: its size and area addresses (split: descriptor table,
    available ring, used ring; packed: ring, driver event area, device event area)."""

    kind: ClassVar[str] = "setup_queue"
    index: int
    size: int
    desc: int
    driver: int
    device: int
    layout: str = "split"

    def describe(self) -> str:
        if self.layout == "split":
            names = ("desc", "avail", "used")
        else:
            names = ("ring", "driver_event", "device_event")
        addrs = " ".join(f"{n}={a:#x}" for n, a in zip(names, (self.desc, self.driver,
                                                               self.device)))
        return f"set up queue {self.index}: {self.layout} size {self.size} {addrs}"


@dataclass(frozen=True)
class EnableQueue(Request):
    """Enable queue `index` (PCI queue_enable, vhost-user SET_VRING_ENABLE)."""

    kind: ClassVar[str] = "enable_queue"
    index: int

    def describe(self) -> str:
        return f"enable queue {self.index}"


@dataclass(frozen=True)
class Kick(Request):
    """An available-buffer notification for `queue` (§2.9); `why` explains the decision."""

    kind: ClassVar[str] = "kick"
    queue: int
    why: str

    def describe(self) -> str:
        return f"kick q{self.queue}: {self.why}"


__all__ = ["EnableQueue", "Kick", "ReadConfig", "ReadDeviceFeatures", "ReadQueueMax",
           "ReadStatus", "Request", "SetupQueue", "WriteDriverFeatures", "WriteStatus"]
