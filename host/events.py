"""What a virtio-net device model tells its caller, as plain frozen dataclasses.

`host.Device` never performs I/O: every call returns the list of events it caused, in
order.  Some carry work for the edge (a frame to put on the wire, an interrupt to
inject); the rest say what happened and why, which is what traces, the conformance
library and tests read.  `describe()` gives one readable line; `fields()` a JSON-ready
dict (bytes become hex).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from virtio_spec.events import Record


@dataclass(frozen=True)
class DeviceEvent(Record):
    """Base of every device event."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True)
class StatusChanged(DeviceEvent):
    """The driver wrote the status field; `accepted` False when the device refused it."""

    kind: ClassVar[str] = "status"
    written: int
    status: int
    status_names: str
    accepted: bool
    reason: str = ""
    clause: str = ""

    def describe(self) -> str:
        line = f"status write {self.written:#04x} -> reads {self.status:#04x} ({self.status_names})"
        if not self.accepted:
            line += f"; refused: {self.reason}"
            line += f" (virtio 1.3 \u00a7{self.clause})" if self.clause else ""
        return line


@dataclass(frozen=True)
class FeaturesWritten(DeviceEvent):
    """The driver wrote its accepted features."""

    kind: ClassVar[str] = "features"
    accepted: int
    names: tuple[str, ...]
    taken: bool
    reason: str = ""

    def describe(self) -> str:
        verdict = "taken" if self.taken else f"refused: {self.reason}"
        return f"driver features {self.accepted:#x} {verdict}: {', '.join(self.names)}"


@dataclass(frozen=True)
class QueueReady(DeviceEvent):
    """A queue was programmed and enabled; its ring engine exists."""

    kind: ClassVar[str] = "queue"
    queue: int
    role: str
    size: int
    layout: str
    addresses: tuple[int, int, int]

    def describe(self) -> str:
        names = ("desc", "avail", "used") if self.layout == "split" else (
            "ring", "driver_event", "device_event")
        addrs = " ".join(f"{n}={a:#x}" for n, a in zip(names, self.addresses))
        return f"queue {self.queue} ({self.role}) enabled: {self.layout} size {self.size} {addrs}"


@dataclass(frozen=True)
class ChainPopped(DeviceEvent):
    """The device took a descriptor chain: readable and writable segment lengths."""

    kind: ClassVar[str] = "chain"
    queue: int
    head: int
    readable: tuple[int, ...]
    writable: tuple[int, ...]
    descriptors: int

    def describe(self) -> str:
        return (f"q{self.queue} pop chain head={self.head}: {self.descriptors} descriptor(s), "
                f"readable {list(self.readable)} writable {list(self.writable)}")


@dataclass(frozen=True)
class ChainUsed(DeviceEvent):
    """A used element the device published: chain head and bytes written."""

    kind: ClassVar[str] = "used"
    queue: int
    head: int
    written: int

    def describe(self) -> str:
        return f"q{self.queue} used id={self.head} len={self.written}"


@dataclass(frozen=True)
class Interrupt(DeviceEvent):
    """The used-buffer notification decision for one queue, sent or suppressed."""

    kind: ClassVar[str] = "interrupt"
    queue: int
    sent: bool
    why: str

    def describe(self) -> str:
        return f"q{self.queue} interrupt {'SENT' if self.sent else 'suppressed'}: {self.why}"


@dataclass(frozen=True)
class ConfigInterrupt(DeviceEvent):
    """A configuration change notification (link, announce, needs-reset)."""

    kind: ClassVar[str] = "config_interrupt"
    why: str

    def describe(self) -> str:
        return f"config interrupt: {self.why}"


@dataclass(frozen=True)
class FrameTransmitted(DeviceEvent):
    """A frame the guest sent, header stripped, for the wire."""

    kind: ClassVar[str] = "tx_frame"
    queue: int
    frame: bytes

    def describe(self) -> str:
        return f"q{self.queue} tx frame of {len(self.frame)} bytes to the wire"


@dataclass(frozen=True)
class FrameDropped(DeviceEvent):
    """A frame that did not make it (either direction), and why."""

    kind: ClassVar[str] = "drop"
    queue: int
    direction: str
    length: int
    reason: str
    clause: str = ""

    def describe(self) -> str:
        cite = f" (virtio 1.3 \u00a7{self.clause})" if self.clause else ""
        return f"q{self.queue} {self.direction} drop of {self.length} bytes: {self.reason}{cite}"


@dataclass(frozen=True)
class FrameDelivered(DeviceEvent):
    """A frame placed into the guest's rx buffers."""

    kind: ClassVar[str] = "rx_frame"
    queue: int
    length: int
    buffers: int
    verdict: str

    def describe(self) -> str:
        return (f"q{self.queue} rx frame of {self.length} bytes in {self.buffers} buffer(s) "
                f"(num_buffers={self.buffers}); filter: {self.verdict}")


@dataclass(frozen=True)
class FrameDeferred(DeviceEvent):
    """No rx buffers: the frame waits in the device's backlog for the next rx kick."""

    kind: ClassVar[str] = "rx_deferred"
    queue: int
    length: int
    backlog: int

    def describe(self) -> str:
        return (f"q{self.queue} rx frame of {self.length} bytes waits for buffers "
                f"(backlog {self.backlog})")


@dataclass(frozen=True)
class CtrlHandled(DeviceEvent):
    """A control command and the device's answer."""

    kind: ClassVar[str] = "ctrl"
    queue: int
    head: int
    cls: int
    command: int
    name: str
    ack: int
    written: int
    detail: str

    def describe(self) -> str:
        ack = "OK" if self.ack == 0 else "ERR"
        return (f"q{self.queue} ctrl {self.name} (class {self.cls}, command {self.command}) "
                f"-> {ack}: {self.detail}")


@dataclass(frozen=True)
class KickIgnored(DeviceEvent):
    """A driver notification the device did not act on, and why."""

    kind: ClassVar[str] = "kick_ignored"
    queue: int
    reason: str

    def describe(self) -> str:
        return f"q{self.queue} kick ignored: {self.reason}"


@dataclass(frozen=True)
class MoreAvailable(DeviceEvent):
    """The device stopped after `handled` chains, a lap of the ring, with more available:
    a driver in another process refilled as fast as they went.  The edge calls
    `notify(queue)` again once other work had its turn (QEMU's virtio-net tx_burst)."""

    kind: ClassVar[str] = "more_available"
    queue: int
    handled: int

    def describe(self) -> str:
        return f"q{self.queue} more available after {self.handled} chains: notify again"


@dataclass(frozen=True)
class DeviceNeedsReset(DeviceEvent):
    """The device hit an unrecoverable peer error and set DEVICE_NEEDS_RESET."""

    kind: ClassVar[str] = "needs_reset"
    queue: int
    reason: str
    clause: str

    def describe(self) -> str:
        cite = f" (virtio 1.3 \u00a7{self.clause})" if self.clause else ""
        return f"q{self.queue} DEVICE_NEEDS_RESET: {self.reason}{cite}"


@dataclass(frozen=True)
class XdpBounced(DeviceEvent):
    """The offloaded program returned XDP_TX: the frame goes back out of the port it
    came in (the wire, for frames from the wire)."""

    kind: ClassVar[str] = "xdp_tx"
    queue: int
    frame: bytes

    def describe(self) -> str:
        return f"q{self.queue} offloaded XDP_TX: {len(self.frame)} bytes back out"


@dataclass(frozen=True)
class XdpRedirected(DeviceEvent):
    """The offloaded program returned XDP_REDIRECT to `ifindex` (a devmap value or
    bpf_redirect's argument): the edge delivers the frame there or counts the drop."""

    kind: ClassVar[str] = "xdp_redirect"
    queue: int
    ifindex: int
    frame: bytes

    def describe(self) -> str:
        return (f"q{self.queue} offloaded XDP_REDIRECT: {len(self.frame)} bytes to ifindex "
                f"{self.ifindex}")


@dataclass(frozen=True)
class OffloadVerify(DeviceEvent):
    """A SET_OFFLOAD waits for its program's verification: the edge runs `job.run()`
    (CPU only, off its event loop if it likes) and hands it to `Device.finish_ctrl`.
    The control queue holds this command, and the ones behind it, until then."""

    kind: ClassVar[str] = "offload_verify"
    queue: int
    head: int
    insns: int
    job: Any = field(repr=False, compare=False)

    def describe(self) -> str:
        return (f"q{self.queue} SET_OFFLOAD (chain {self.head}): {self.insns} insns to verify "
                f"before the command is answered")

    def fields(self) -> dict[str, object]:
        return {"kind": self.kind, "queue": self.queue, "head": self.head,
                "insns": self.insns}


@dataclass(frozen=True)
class OffloadChanged(DeviceEvent):
    """The program the guest offloaded changed: the edge attaches `program` (a
    `host.offload.OffloadedProgram`) on this device's receive path, or detaches it
    (None)."""

    kind: ClassVar[str] = "offload"
    reason: str
    program: Any = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        p = self.program
        what = "none" if p is None else (f"program {p.program.tag} ({p.program.insn_count} "
                                         f"insns, {len(p.maps)} maps, engine {p.engine})")
        return f"offloaded program now {what}: {self.reason}"

    def fields(self) -> dict[str, object]:
        p = self.program
        return {"kind": self.kind, "reason": self.reason,
                "tag": None if p is None else p.program.tag,
                "insns": None if p is None else p.program.insn_count}


__all__ = ["ChainPopped", "ChainUsed", "ConfigInterrupt", "CtrlHandled", "DeviceEvent",
           "DeviceNeedsReset", "FeaturesWritten", "FrameDeferred", "FrameDelivered",
           "FrameDropped", "FrameTransmitted", "Interrupt", "KickIgnored", "MoreAvailable",
           "OffloadChanged", "OffloadVerify", "QueueReady", "StatusChanged", "XdpBounced",
           "XdpRedirected"]
