"""What the virtio-net driver model tells its caller (`Driver.next_event()`).

Plain frozen dataclasses with `describe()` (one readable line) and `fields()` (JSON-ready,
bytes as hex), like `host.events`.  Traffic arrives as `FrameReceived`, control answers
as `CtrlCompleted`; the rest explain what the driver did with the rings and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from virtio_spec.events import Record


@dataclass(frozen=True)
class DriverEvent(Record):
    """Base of every driver event."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True)
class FeaturesNegotiated(DriverEvent):
    """What the device offered and what the driver accepted, with names."""

    kind: ClassVar[str] = "negotiated"
    offered: int
    accepted: int
    offered_names: tuple[str, ...]
    accepted_names: tuple[str, ...]
    declined_names: tuple[str, ...]

    def describe(self) -> str:
        declined = ", ".join(self.declined_names) or "none"
        return (f"device offers {self.offered:#x}: {', '.join(self.offered_names)}; driver "
                f"accepts {len(self.accepted_names)} bits, declines: {declined}")


@dataclass(frozen=True)
class DriverReady(DriverEvent):
    """Initialization finished: DRIVER_OK is set."""

    kind: ClassVar[str] = "driver_ok"
    mac: str
    mtu: int
    queue_pairs: int
    queues: int
    xdp: str = ""

    def describe(self) -> str:
        line = (f"driver ready: mac {self.mac}, mtu {self.mtu}, {self.queue_pairs} queue "
                f"pair(s), {self.queues} queue(s)")
        return line + (f"; xdp offload capabilities: {self.xdp}" if self.xdp else "")


@dataclass(frozen=True)
class InitFailed(DriverEvent):
    """Initialization gave up; the driver set FAILED (§3.1.1)."""

    kind: ClassVar[str] = "init_failed"
    state: str
    reason: str

    def describe(self) -> str:
        return f"initialization failed in {self.state}: {self.reason}"


@dataclass(frozen=True)
class ChainAdded(DriverEvent):
    """The driver placed a chain: readable and writable buffer lengths."""

    kind: ClassVar[str] = "add"
    queue: int
    head: int
    readable: tuple[int, ...]
    writable: tuple[int, ...]
    indirect: bool

    def describe(self) -> str:
        how = " via an indirect table" if self.indirect else ""
        return (f"q{self.queue} add chain id={self.head}{how}: readable {list(self.readable)} "
                f"writable {list(self.writable)}")


@dataclass(frozen=True)
class KickDecision(DriverEvent):
    """After publishing: whether the device wants a notification, and why."""

    kind: ClassVar[str] = "kick_decision"
    queue: int
    sent: bool
    why: str

    def describe(self) -> str:
        return f"q{self.queue} kick {'SENT' if self.sent else 'suppressed'}: {self.why}"


@dataclass(frozen=True)
class UsedReaped(DriverEvent):
    """A used element the driver took back."""

    kind: ClassVar[str] = "reap"
    queue: int
    id: int
    len: int

    def describe(self) -> str:
        return f"q{self.queue} reap used id={self.id} len={self.len}"


@dataclass(frozen=True)
class FrameReceived(DriverEvent):
    """A frame reassembled from `buffers` rx buffers (num_buffers)."""

    kind: ClassVar[str] = "rx"
    queue: int
    frame: bytes
    buffers: int

    def describe(self) -> str:
        return f"q{self.queue} received frame of {len(self.frame)} bytes from {self.buffers} buffer(s)"


@dataclass(frozen=True)
class TxCompleted(DriverEvent):
    """The device is done with a transmitted chain; its buffers are free again."""

    kind: ClassVar[str] = "tx_done"
    queue: int
    id: int

    def describe(self) -> str:
        return f"q{self.queue} tx chain id={self.id} completed"


@dataclass(frozen=True)
class CtrlCompleted(DriverEvent):
    """A control command came back: the ack and any result bytes."""

    kind: ClassVar[str] = "ctrl_done"
    name: str
    cls: int
    command: int
    ack: int
    result: bytes

    def describe(self) -> str:
        ack = {0: "OK", 1: "ERR"}.get(self.ack, f"invalid ack {self.ack}")
        extra = f", {len(self.result)} result bytes" if self.result else ""
        return f"ctrl {self.name} acked {ack}{extra}"


@dataclass(frozen=True)
class DeviceError(DriverEvent):
    """The device broke a rule; the driver dropped what it could not trust."""

    kind: ClassVar[str] = "device_error"
    queue: int
    reason: str
    clause: str = ""

    def describe(self) -> str:
        cite = f" (virtio 1.3 \u00a7{self.clause})" if self.clause else ""
        return f"q{self.queue} device error: {self.reason}{cite}"


@dataclass(frozen=True)
class ConfigChanged(DriverEvent):
    """A config interrupt, read back: status bits and what they ask."""

    kind: ClassVar[str] = "config_changed"
    device_status: int
    link_up: bool
    announce: bool
    needs_reset: bool

    def describe(self) -> str:
        what = [f"link {'up' if self.link_up else 'down'}"]
        if self.announce:
            what.append("announce requested")
        if self.needs_reset:
            what.append("device needs reset")
        return "config changed: " + ", ".join(what)


__all__ = ["ChainAdded", "ConfigChanged", "CtrlCompleted", "DeviceError", "DriverEvent",
           "DriverReady", "FeaturesNegotiated", "FrameReceived", "InitFailed", "KickDecision",
           "TxCompleted", "UsedReaped"]
