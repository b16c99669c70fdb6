"""What the vhost-user back-end tells the device, as plain frozen dataclasses.

`Backend` turns each accepted front-end message into exactly one of these.  Events whose
`answer` is "device" need the device's answer (`Backend.respond(event, answer)`): the
ring's next available index for GET_VRING_BASE, the config window for GET_CONFIG, the
status byte for GET_STATUS.  Events the back-end answers itself ("backend") or that only
take an ack ("ack") are answered with `respond(event)` (or `ok=False` for a refusal).

fds in events are the back-end's: they stay open until the back-end retires them
(`Backend.take_retired()`), which it does when they are replaced, when a ring stops, on
reset and on close.  The memory table's fds are retired as soon as their event is
answered: map them while handling `MemTableSet` (mmap keeps its own duplicate).
`Connected`, `Kicked` and `Disconnected` come from the edge, not from messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .messages import MemoryTable, VhostUserRequest


@dataclass(frozen=True)
class BackendEvent:
    """Base of every back-end event; `answer` says who answers it."""

    answer: ClassVar[str] = "ack"

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class FeaturesQueried(BackendEvent):
    answer: ClassVar[str] = "backend"


@dataclass(frozen=True)
class FeaturesSet(BackendEvent):
    features: int

    def describe(self) -> str:
        return f"features set {self.features:#x}"


@dataclass(frozen=True)
class ProtocolFeaturesQueried(BackendEvent):
    answer: ClassVar[str] = "backend"


@dataclass(frozen=True)
class ProtocolFeaturesSet(BackendEvent):
    features: int

    def describe(self) -> str:
        return f"protocol features set {self.features:#x}"


@dataclass(frozen=True)
class OwnerSet(BackendEvent):
    pass


@dataclass(frozen=True)
class DeviceReset(BackendEvent):
    """RESET_DEVICE (or the older RESET_OWNER): rings and features are back to initial."""

    via: VhostUserRequest

    def describe(self) -> str:
        return f"device reset ({self.via.spec_name})"


@dataclass(frozen=True)
class QueueNumQueried(BackendEvent):
    answer: ClassVar[str] = "backend"


@dataclass(frozen=True)
class MemTableSet(BackendEvent):
    """New guest memory: map `fds` (one per region) while handling this event."""

    table: MemoryTable
    fds: tuple[int, ...]

    def describe(self) -> str:
        spans = ", ".join(f"{r.guest_phys_addr:#x}+{r.memory_size:#x}"
                          for r in self.table.regions)
        return f"memory table [{spans}]"


@dataclass(frozen=True)
class VringNumSet(BackendEvent):
    index: int
    num: int

    def describe(self) -> str:
        return f"vring {self.index} size {self.num}"


@dataclass(frozen=True)
class VringAddrSet(BackendEvent):
    """Ring areas, translated to guest-physical (split: desc/avail/used; packed: ring/
    driver event/device event)."""

    index: int
    desc: int
    avail: int
    used: int
    packed: bool

    def describe(self) -> str:
        return (f"vring {self.index} {'packed' if self.packed else 'split'} areas "
                f"desc={self.desc:#x} avail={self.avail:#x} used={self.used:#x}")


@dataclass(frozen=True)
class VringBaseSet(BackendEvent):
    index: int
    base: int

    def describe(self) -> str:
        return f"vring {self.index} base {self.base}"


@dataclass(frozen=True)
class VringBaseQueried(BackendEvent):
    """GET_VRING_BASE: the ring is stopped; answer with its next available index."""

    answer: ClassVar[str] = "device"
    index: int

    def describe(self) -> str:
        return f"vring {self.index} stopped, base asked"


@dataclass(frozen=True)
class VringKickSet(BackendEvent):
    """The kick eventfd (None: the front-end asked for polling); the ring is started."""

    index: int
    fd: int | None

    def describe(self) -> str:
        return f"vring {self.index} kick fd {self.fd} (started)"


@dataclass(frozen=True)
class VringCallSet(BackendEvent):
    index: int
    fd: int | None

    def describe(self) -> str:
        return f"vring {self.index} call fd {self.fd}"


@dataclass(frozen=True)
class VringErrSet(BackendEvent):
    index: int
    fd: int | None

    def describe(self) -> str:
        return f"vring {self.index} err fd {self.fd}"


@dataclass(frozen=True)
class VringEnableSet(BackendEvent):
    index: int
    enabled: bool

    def describe(self) -> str:
        return f"vring {self.index} {'enabled' if self.enabled else 'disabled'}"


@dataclass(frozen=True)
class ConfigQueried(BackendEvent):
    """GET_CONFIG: answer with exactly `size` bytes of config space at `offset`."""

    answer: ClassVar[str] = "device"
    offset: int
    size: int
    flags: int

    def describe(self) -> str:
        return f"config read {self.size} bytes at {self.offset}"


@dataclass(frozen=True)
class ConfigSet(BackendEvent):
    offset: int
    data: bytes
    flags: int

    def describe(self) -> str:
        return f"config write {len(self.data)} bytes at {self.offset}"


@dataclass(frozen=True)
class BackendChannelSet(BackendEvent):
    """SET_BACKEND_REQ_FD: `fd` is the back-end request channel's socket (it replaces an
    earlier one, which is retired)."""

    fd: int

    def describe(self) -> str:
        return f"back-end request channel fd {self.fd}"


@dataclass(frozen=True)
class DeviceStateFdSet(BackendEvent):
    """SET_DEVICE_STATE_FD: move the device's state through `fd` (SAVE: write it and
    close; LOAD: read it to the end); `suspended` says every vring is stopped, as the
    phase requires.  Answer with 0 (success) or an errno below 256; the back-end keeps
    `fd` only until the answer: work on a duplicate."""

    answer: ClassVar[str] = "device"
    direction: int
    phase: int
    fd: int
    suspended: bool

    def describe(self) -> str:
        way = {0: "save", 1: "load"}.get(self.direction, f"direction {self.direction}")
        return f"device state {way} through fd {self.fd} (phase {self.phase})"


@dataclass(frozen=True)
class DeviceStateChecked(BackendEvent):
    """CHECK_DEVICE_STATE: answer 0 when the transfer (and, loading, the restore) went
    through, else an errno."""

    answer: ClassVar[str] = "device"

    def describe(self) -> str:
        return "device state checked"


@dataclass(frozen=True)
class StatusSet(BackendEvent):
    status: int

    def describe(self) -> str:
        return f"status set {self.status:#04x}"


@dataclass(frozen=True)
class StatusQueried(BackendEvent):
    answer: ClassVar[str] = "device"


# -- from the edge ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Connected(BackendEvent):
    """A front-end connected (the session's first event)."""

    answer: ClassVar[str] = "none"


@dataclass(frozen=True)
class Kicked(BackendEvent):
    """The front-end kicked vring `index` (its kick eventfd became readable)."""

    answer: ClassVar[str] = "none"
    index: int

    def describe(self) -> str:
        return f"vring {self.index} kicked"


@dataclass(frozen=True)
class Disconnected(BackendEvent):
    """The session ended; `reason` is empty for a clean close.  Drop every view of the
    session's memory while handling this: the edge unmaps it afterwards."""

    answer: ClassVar[str] = "none"
    reason: str = ""

    def describe(self) -> str:
        return f"disconnected: {self.reason}" if self.reason else "disconnected"


__all__ = [
    "BackendChannelSet", "BackendEvent", "ConfigQueried", "ConfigSet", "Connected",
    "DeviceReset", "DeviceStateChecked", "DeviceStateFdSet", "Disconnected",
    "FeaturesQueried", "FeaturesSet", "Kicked", "MemTableSet", "OwnerSet",
    "ProtocolFeaturesQueried", "ProtocolFeaturesSet", "QueueNumQueried", "StatusQueried",
    "StatusSet", "VringAddrSet", "VringBaseQueried", "VringBaseSet", "VringCallSet",
    "VringEnableSet", "VringErrSet", "VringKickSet", "VringNumSet",
]
