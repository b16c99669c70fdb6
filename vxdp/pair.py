"""One guest driver and one host device wired together in one process, with a trace.

`Pair` is the in-process transport: it owns the shared `GuestMemory`, carries every
`guest.transport` request to the `host.Device` (`InProcessTransport`, a dispatch table
keyed by request type, the edge a vhost-user frontend/backend pair will replace),
delivers the device's interrupts back to the driver, and records a readable `Trace` of
every step: status writes, features offered and accepted by name, queue addresses, each
chain added, popped and used, each kick and interrupt decided and why, frames on the wire
and in the guest.

    pair = Pair.create(profile="default")
    pair.negotiate()
    pair.send_from_guest([frame])      # -> frames that reached the wire
    pair.deliver_to_guest([frame])     # -> frames the guest received
    pair.ctrl(cls, command, body)      # -> guest.CtrlCommand, acked
    pair.offload(client.load(program)) # a guest.offload operation, run to its end

No trio: everything here is synchronous calls between the two sans-I/O models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from guest import (
    SUPPORTED_FEATURES,
    CtrlCommand,
    Driver,
    DriverEvent,
    EnableQueue,
    FrameReceived,
    InitState,
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
from guest.offload import Answer, OffloadRequest
from host import (
    ConfigInterrupt,
    Device,
    DeviceEvent,
    DeviceProfile,
    FrameTransmitted,
    Interrupt,
    OffloadVerify,
    XdpBounced,
)
from virtio_spec.errors import RemoteProtocolError
from virtio_spec.memory import GuestAllocator, GuestMemory

T = TypeVar("T")
#: Guest memory of a pair unless told otherwise (rings and buffers of every queue fit).
DEFAULT_MEMORY = 4 << 20
#: Guest-physical base of that memory (not 0, so that "address 0" bugs show).
MEMORY_BASE = 0x4000_0000


@dataclass(frozen=True)
class TraceEntry:
    """One step: who (`guest`, `host`, `wire`, `transport`, `demo`), what, and the data."""

    seq: int
    actor: str
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.kind == "section":
            return f"\n== {self.text}"
        return f"{self.seq:4d} {self.actor:<9} {self.text}"

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "actor": self.actor, "kind": self.kind,
                           "text": self.text, **self.data}, sort_keys=False)


class Trace:
    """The ordered record of a pair's run."""

    def __init__(self) -> None:
        self.entries: list[TraceEntry] = []

    def add(self, actor: str, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        self.entries.append(TraceEntry(len(self.entries) + 1, actor, kind, text, data or {}))

    def section(self, title: str) -> None:
        self.add("demo", "section", title)

    def of_kind(self, kind: str) -> list[TraceEntry]:
        return [e for e in self.entries if e.kind == kind]

    def text(self) -> str:
        return "\n".join(e.line() for e in self.entries).lstrip("\n") + "\n"

    def json_lines(self) -> str:
        return "".join(e.to_json() + "\n" for e in self.entries)


def _show(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, int):
        return hex(value)
    return str(value)


class InProcessTransport:
    """Carries driver requests to a device in the same process.

    `carry(request)` returns `(reply, device_events)`; the device's RemoteProtocolError
    (a request it refuses) propagates for the caller to hand to `Driver.fail_request`.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        d = device
        self._handlers: dict[type[Request], Callable[[Any], tuple[Any, list[DeviceEvent]]]] = {
            ReadStatus: lambda r: (d.read_status(), []),
            WriteStatus: lambda r: (None, d.write_status(r.value)),
            ReadDeviceFeatures: lambda r: (d.device_features, []),
            WriteDriverFeatures: lambda r: (None, d.write_features(r.features)),
            ReadConfig: lambda r: (d.read_config(r.offset, r.length), []),
            ReadQueueMax: lambda r: (d.queue_max_size(r.index), []),
            SetupQueue: lambda r: (None, d.set_queue(r.index, r.size, r.desc, r.driver,
                                                     r.device)),
            EnableQueue: lambda r: (None, d.enable_queue(r.index)),
            Kick: lambda r: (None, d.notify(r.queue)),
        }

    def carry(self, request: Request) -> tuple[Any, list[DeviceEvent]]:
        return self._handlers[type(request)](request)


class Pair:
    """A driver and a device over one shared guest memory."""

    def __init__(self, device: Device, driver: Driver, memory: GuestMemory) -> None:
        self.device = device
        self.driver = driver
        self.memory = memory
        self.transport = InProcessTransport(device)
        self.trace = Trace()
        self.wire: list[bytes] = []  # frames the device transmitted
        self.received: list[bytes] = []  # frames the driver received
        self.kicks = 0
        self.interrupts = 0

    @classmethod
    def create(cls, profile: DeviceProfile | str = "default", *,
               features: int = SUPPORTED_FEATURES, extra_features: int = 0,
               queue_size: int = 16, rx_buffer_size: int = 1536,
               memory_size: int = DEFAULT_MEMORY) -> Pair:
        """A fresh pair: `profile` for the device, `features` the driver wants."""
        memory = GuestMemory([(MEMORY_BASE, bytearray(memory_size))])
        device = Device(profile, memory)
        driver = Driver(memory, GuestAllocator(memory), features=features,
                        extra_features=extra_features, queue_size=queue_size,
                        rx_buffer_size=rx_buffer_size)
        return cls(device, driver, memory)

    # ------------------------------------------------------------ running

    def negotiate(self) -> bool:
        """Run the driver's initialization; True when it reached DRIVER_OK."""
        self.driver.initialize()
        self.pump()
        return self.driver.state is InitState.LIVE

    def pump(self) -> None:
        """Carry requests and deliver interrupts until both sides are quiet."""
        while True:
            self._driver_events()
            request = self.driver.next_request()
            if request is None:
                return
            try:
                value, events = self.transport.carry(request)
            except RemoteProtocolError as err:
                self.trace.add("transport", "refused", f"{request.describe()} refused: {err}",
                               {**request.fields(), "error": str(err)})
                self.driver.fail_request(err)
                continue
            shown = f" -> {_show(value)}" if value is not None else ""
            data = request.fields()
            if value is not None:
                data["reply"] = _show(value)
            self.trace.add("guest", request.kind, request.describe() + shown, data)
            if isinstance(request, Kick):
                self.kicks += 1
            self.driver.reply(value)
            self._device_events(events)

    def _device_events(self, events: Iterable[DeviceEvent]) -> None:
        pending: list[DeviceEvent] = []
        for event in events:
            self.trace.add("host", event.kind, event.describe(), event.fields())
            if isinstance(event, FrameTransmitted):
                self.wire.append(event.frame)
                self.trace.add("wire", "wire_tx", f"{len(event.frame)} bytes leave the host",
                               {"len": len(event.frame)})
            elif isinstance(event, Interrupt | ConfigInterrupt):
                pending.append(event)
            elif isinstance(event, XdpBounced):  # the offloaded program's XDP_TX
                self.wire.append(event.frame)
                self.trace.add("wire", "wire_tx", f"{len(event.frame)} bytes leave the host "
                                                  f"(bounced by the offloaded program)",
                               {"len": len(event.frame)})
            elif isinstance(event, OffloadVerify):
                # in process there is nobody else to serve: verify now, then answer
                event.job.run()
                self._device_events(self.device.finish_ctrl(event.job))
        self._driver_events()
        for event in pending:
            if isinstance(event, Interrupt):
                if event.sent:
                    self.interrupts += 1
                    self.driver.interrupt(event.queue)
            else:
                self.driver.config_interrupt()
            self._driver_events()

    def _driver_events(self) -> None:
        for event in self.driver.events():
            self._record(event)

    def _record(self, event: DriverEvent) -> None:
        self.trace.add("guest", event.kind, event.describe(), event.fields())
        if isinstance(event, FrameReceived):
            self.received.append(event.frame)

    # ------------------------------------------------------------ traffic and control

    def send_from_guest(self, frames: Iterable[bytes], pair: int = 0) -> list[bytes]:
        """The guest transmits `frames`; returns the frames that reached the wire."""
        start = len(self.wire)
        frames = list(frames)
        queued = self.driver.transmit(frames, pair)
        self.pump()
        if queued < len(frames):
            self.trace.add("guest", "tx_busy", f"{len(frames) - queued} frame(s) did not fit "
                                               f"the transmit ring", {"left": len(frames) - queued})
        return self.wire[start:]

    def deliver_to_guest(self, frames: Iterable[bytes], pair: int = 0) -> list[bytes]:
        """The host network sends `frames` to the guest; returns what the guest received."""
        start = len(self.received)
        frames = list(frames)
        for frame in frames:
            self.trace.add("wire", "wire_rx", f"{len(frame)} bytes arrive for the guest "
                                              f"(dst {frame[:6].hex(':')})",
                           {"len": len(frame), "dst": frame[:6].hex(":")})
        self._device_events(self.device.receive(frames, pair))
        self.pump()
        return self.received[start:]

    def ctrl(self, cls: int, command: int, body: Any = None, *,
             result_size: int = 0) -> CtrlCommand:
        """Send a control command and run both sides until it is answered."""
        cmd = self.driver.ctrl_command(cls, command, body, result_size=result_size)
        self.pump()
        return cmd

    def offload(self, op: Generator[OffloadRequest, Answer, T]) -> T:
        """Run a `guest.offload` operation over the control queue: each command it
        yields is sent and answered (the device verifies SET_OFFLOAD's program in
        place); returns what the operation returns, or raises its OffloadError."""
        try:
            request = next(op)
            while True:
                cmd = self.ctrl(request.cls, request.command, request.body,
                                result_size=request.room)
                request = op.send(Answer.of(cmd))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def notify(self, queue: int) -> None:
        """Deliver a notification for `queue` to the device outside the driver's own
        kick decisions (conformance checks, hostile-guest tests)."""
        self.trace.add("guest", "kick", f"kick q{queue} (forced)", {"queue": queue})
        self._device_events(self.device.notify(queue))
        self.pump()

    def announce(self) -> None:
        """The host asks the guest to announce itself (as after a migration)."""
        self._device_events(self.device.announce())
        self.pump()

    def reset(self) -> None:
        """The driver resets the device (status 0)."""
        self.driver.reset()
        self.pump()


__all__ = ["DEFAULT_MEMORY", "MEMORY_BASE", "InProcessTransport", "Pair", "Trace",
           "TraceEntry"]
