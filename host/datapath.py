"""The host side of the C datapath: a switch, and one port per guest, moved in bursts.

Theory of operation
-------------------
`HostSwitch` is the host's L2 uplink ("the wire", an ifindex) and the ports it can redirect
between.  `HostPort` is the device side of one guest: its receive and transmit virtqueues
run by the C ring engine over the guest's memory, and an optional offloaded XDP program.
Everything per packet happens in C (csrc/datapath.c); this module owns the handles, moves
one burst per call and turns the C counters and ring refusals into Python values:

    switch = HostSwitch(wire_ifindex=1)
    port = HostPort.from_device(switch, 10, device)      # after DRIVER_OK
    port.attach(program)                                  # host-attached XDP, or None
    port.attach_offload(program, maps, "jit")             # the guest's offloaded XDP
    out = port.rx_burst(frames)                           # wire -> XDP -> guest / wire
    out.wire, out.interrupts                              # frames for the wire, irqs due
    port.tx_burst()                                       # guest tx -> wire

Two programs a port, both optional: the host-attached one (the operator's) and the one the
guest offloaded over its control queue (`host.offload`), which runs on every frame going
into the guest after the host-attached one passed it (csrc/datapath.c).  Actions: DROP and
ABORTED count; TX puts the frame in `wire`; PASS goes on into the guest, where the last
PASS writes a virtio_net_hdr and the frame into the guest's rx buffers (several with
MRG_RXBUF, num_buffers set, virtio 1.3 §5.1.6.4); REDIRECT follows the devmap value:
another port's guest, or the wire when it names the switch's uplink.  Without rx buffers
a frame is dropped and counted.

Notifications on the receive queue follow vhost-net: a burst turns the driver's kicks off
while the ring holds buffers and back on when it runs dry (re-checking once after), so a
driver that refills as it goes costs no kick per refill; `rx_arm()` turns them on for a
caller about to wait for buffers.

Hand-over.  `from_device` takes a `host.Device`'s split queues after DRIVER_OK at their
current indices (GET_VRING_BASE semantics) and parks the device's own engines (the device
then ignores kicks on them); `hand_back` returns the indices to a fresh `SplitDeviceQueue`
so the Python model continues where C stopped.  A ring a hostile driver broke is reported
by `broken()` as the same `RingError` (clause included) virtio_spec.split would raise.

Sans-I/O: nothing here blocks, sleeps or touches a socket.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from virtio_spec.errors import LocalProtocolError, MemoryAccessError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.memory import GuestMemory
from virtio_spec.split import SplitDeviceQueue
from vxdp import native
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.interp import load_xdp
from vxdp.bpf.program import Program
from vxdp.errors import CoreError
from vxdp.frames import PackedFrames

if TYPE_CHECKING:
    from .device import Device

_F = VirtioFeature
_N = VirtioNetFeature


@dataclass(frozen=True)
class QueueConfig:
    """A split queue as the transport programmed it."""

    size: int
    desc: int
    avail: int
    used: int
    last_avail_idx: int = 0
    used_idx: int | None = None


@dataclass
class BurstOut:
    """What one burst produced: frames for the wire, and the guests' interrupts due
    (ifindex -> bit 0 rx, bit 1 tx)."""

    wire: Sequence[bytes]
    interrupts: dict[int, int] = field(default_factory=dict)


@dataclass
class SwitchOut:
    """What one switch call produced: frames for the wire (in order), frames for guests
    the edge delivers (guest index -> frames, in table order), and events (ifindex ->
    native.EV_* bits: interrupts due, rings newly broken)."""

    wire: Sequence[bytes]
    edge: dict[int, list[bytes]] = field(default_factory=dict)
    events: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class TxOut:
    """What a guest's transmit burst through the switch produced: runs of frames in
    order, each for the wire (None) or for a guest the edge delivers (its index)."""

    runs: list[tuple[int | None, Sequence[bytes]]]
    events: list[tuple[int, int]] = field(default_factory=list)
    #: `tx_turn`: why its laps stopped (native.TXT_*), and the chains they completed
    why: int = native.TXT_DRY
    chains: int = 0

    @property
    def edge_served(self) -> bool:
        """Some frames were for guests the edge delivers."""
        return any(dest is not None for dest, _ in self.runs)


@dataclass
class PumpOut:
    """What one pump call did: rounds, why it stopped (native.PUMP_*), frames and bytes
    taken from the source, and what the edge has to do (see SwitchOut)."""

    rounds: int
    why: int
    taken: int
    taken_bytes: int
    at: int  # the source's next frame
    out: SwitchOut


#: A forwarding table entry: (MAC, live, waited for by the pump, port or None).
TableEntry = tuple[bytes, bool, bool, "HostPort | None"]


def _runs(frames: PackedFrames, dest: Sequence[int]) -> list[tuple[int | None, Sequence[bytes]]]:
    """Consecutive frames of one destination together (0: the wire, g + 1: guest g)."""
    out: list[tuple[int | None, Sequence[bytes]]] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or dest[i] != dest[start]:
            d = dest[start]
            out.append((None if d == 0 else d - 1, frames[start:i]))
            start = i
    return out


class HostSwitch:
    """The uplink (`wire_ifindex`) and the ports REDIRECT can reach; with a forwarding
    table (`set_table`), the host's L2 switch in C: one call a burst from the wire
    (`rx`), a guest's transmit burst (`tx`) or a whole turn of the wire pump (`pump`),
    every port's program run within it (csrc/switch.c)."""

    def __init__(self, wire_ifindex: int = 1) -> None:
        self.wire_ifindex = wire_ifindex
        self.handle = native.switch_new(wire_ifindex)
        self.ports: dict[int, HostPort] = {}
        self.table: tuple[TableEntry, ...] = ()
        self._in = native.Burst(native.BURST_MAX, native.BURST_MAX * 2048)
        self._wire = native.Burst(1, 1)
        self._out = native.Burst(2 * native.BURST_MAX, 2 * native.BURST_MAX * 4096)
        self._dest = native.switch_dest(2 * native.BURST_MAX)
        self._sources: dict[int, tuple[PackedFrames, native.WireSource]] = {}

    def set_table(self, table: Sequence[TableEntry]) -> None:
        """The forwarding table, one entry a guest in the host's order (a C call only
        when it changed).  A port that leaves the switch leaves the table too."""
        table = tuple(table)
        if table == self.table:
            return
        native.switch_set_guests(self.handle, [(mac, live, wait, p.handle if p else None)
                                               for mac, live, wait, p in table])
        self.table = table
        # what the ports' programs may send out of one burst: as the per-port bursts hold
        frames = 2 * native.BURST_MAX * max(1, min(len(table), 16))
        if self._wire.max_frames < frames:
            self._wire = native.Burst(frames, frames * 4096)

    def _out_of(self, wire: list[PackedFrames], edge: list[tuple[int, int]],
                frames: Sequence[bytes]) -> SwitchOut:
        out = SwitchOut(_joined(wire))
        for index, guest in edge:
            out.edge.setdefault(guest, []).append(frames[index])
        out.events = native.switch_events(self.handle)
        return out

    def rx(self, frames: Sequence[bytes]) -> SwitchOut:
        """Frames from the wire switched by the table, in bursts of at most BURST_MAX
        (one C call each)."""
        wire: list[PackedFrames] = []
        edge: list[tuple[int, int]] = []
        step = native.BURST_MAX
        for at in range(0, len(frames), step):
            self._in = _loaded_burst(self._in, frames[at:at + step] if len(frames) > step
                                     else frames)
            self._wire.clear()
            edge += [(at + i, g) for i, g in native.switch_rx(self.handle, self._in,
                                                              self._wire)]
            if self._wire.count:
                wire.append(self._wire.packed())
        return self._out_of(wire, edge, frames)

    def tx(self, port: HostPort, budget: int = native.BURST_MAX) -> TxOut:
        """A guest's transmit chains (up to `budget`) switched by the table."""
        runs: list[tuple[int | None, Sequence[bytes]]] = []
        while budget > 0:
            self._out.clear()
            n = native.switch_tx(self.handle, port.handle, min(budget, port.burst_size),
                                 self._out, self._dest)
            runs += self._out_runs()
            budget -= n
            if n == 0:
                break
        return TxOut(runs, native.switch_events(self.handle))

    def tx_turn(self, port: HostPort, *, turn: float, spin: float,
                lap: int = native.BURST_MAX) -> TxOut:
        """What `tx` does, lap after lap in one C call (csrc/switch.c,
        vxdp_switch_tx_turn): laps of up to `lap` chains back to back for `turn` seconds,
        polling a dry ring for `spin` seconds before it stops; it stops at once for events
        or frames the edge delivers (`TxOut.why` says which), or when the out burst must
        be emptied first (TXT_FULL: call again)."""
        self._out.clear()
        _, chains, why = native.switch_tx_turn(
            self.handle, port.handle, self._out, self._dest, lap_max=lap,
            call_max=port.burst_size, turn_ns=max(int(turn * 1e9), 0),
            spin_ns=max(int(spin * 1e9), 0))
        return TxOut(self._out_runs(), native.switch_events(self.handle), why, chains)

    def _out_runs(self) -> list[tuple[int | None, Sequence[bytes]]]:
        """The out burst as runs by destination (None: the wire)."""
        count = self._out.count
        if not count:
            return []
        if native.switch_dest_wire(self._dest, count):
            return [(None, self._out.packed())]  # the common case: no work a frame
        return _runs(self._out.packed(), self._dest)

    def room(self, limit: int) -> int:
        """Frames (up to `limit`) every guest the pump waits for can take now."""
        return native.switch_room(self.handle, limit)

    def pump(self, frames: PackedFrames, at: int, *, cycle: bool, limit: int,
             round_max: int, turn: float, spin: float) -> PumpOut:
        """The wire pump's rounds in one C call, from frame `at` of `frames` (round
        again from the first with `cycle`), at most `limit` frames, for `turn` seconds,
        waiting at most `spin` seconds for receive room (see csrc/switch.c)."""
        cached = self._sources.get(id(frames))
        if cached is None or cached[0] is not frames:
            if len(self._sources) > 8:
                self._sources.clear()
            cached = (frames, native.WireSource(frames))
            self._sources[id(frames)] = cached
        src = cached[1]
        offset = frames.ends[at - 1] if 0 < at <= len(frames) else 0
        src.start(at, offset, cycle, limit)
        self._wire.clear()
        rounds, why = native.switch_pump(self.handle, src, self._wire, round_max=round_max,
                                         turn_ns=int(turn * 1e9), spin_ns=int(spin * 1e9))
        wire = [self._wire.packed()] if self._wire.count else []
        out = self._out_of(wire, native.switch_edge(self.handle), frames)
        return PumpOut(rounds, why, int(src.ptr.taken), int(src.ptr.taken_bytes), int(src.ptr.at),
                       out)

    def interrupts(self) -> dict[int, int]:
        """Every port's interrupts due since the last call (one C call per port)."""
        out: dict[int, int] = {}
        for ifindex, port in self.ports.items():
            mask = native.port_irq(port.handle)
            if mask:
                out[ifindex] = mask
        return out


def _joined(parts: list[PackedFrames]) -> Sequence[bytes]:
    """One burst's frames for the wire: the packed burst itself when there was one."""
    if len(parts) == 1:
        return parts[0]
    return [f for part in parts for f in part]


def _loaded_burst(burst: native.Burst, frames: Sequence[bytes]) -> native.Burst:
    """`burst` with `frames` loaded, or a new burst large enough for them."""
    try:
        burst.load(frames)
    except CoreError:  # larger frames than the burst buffer was sized for
        burst = native.Burst(burst.max_frames, sum(map(len, frames)))
        burst.load(frames)
    return burst


def _loaded(program: Program, maps: Sequence[CoreMap],
            engine: str) -> tuple[native.ProgHandle, native.EnvHandle]:
    """`program` loaded into the core over `maps` for XDP runs (compiled and attached
    when `engine` is jit: the datapath's runs then call the compiled code), with a fresh
    environment."""
    return load_xdp(program, maps, engine), native.env_new(0)


def _ring_error(state: dict[str, object]) -> RingError | None:
    """The RingError a C queue's break record stands for (None when not broken)."""
    code = int(state["broken"])  # type: ignore[call-overload]
    if not code:
        return None
    cls = MemoryAccessError if code == -errno.EFAULT else RingError
    return cls(str(state["error"]), str(state["clause"]))


class HostPort:
    """The device side of one guest on `switch` (see the module docstring)."""

    def __init__(self, switch: HostSwitch, ifindex: int, memory: GuestMemory,
                 rx: QueueConfig | None, tx: QueueConfig | None, features: int, *,
                 mtu: int = 0, burst: int = native.BURST_MAX) -> None:
        if features & (1 << _F.VIRTIO_F_RING_PACKED):
            raise LocalProtocolError("the C datapath runs split rings only")
        self.switch = switch
        self.ifindex = ifindex
        self.features = features
        self._gmem = native.gmem_new([(r.base, r.view) for r in memory.regions])
        kw = dict(event_idx=bool(features & (1 << _F.VIRTIO_F_EVENT_IDX)),
                  indirect=bool(features & (1 << _F.VIRTIO_F_INDIRECT_DESC)))
        self._rx = self._queue(rx, "rxq", kw)
        self._tx = self._queue(tx, "txq", kw)
        self.handle = native.port_new(switch.handle, ifindex, self._rx, self._tx, features,
                                      mtu)
        switch.ports[ifindex] = self
        self.burst_size = burst
        self._in = native.Burst(burst, burst * 2048)
        self._wire = native.Burst(2 * burst, 2 * burst * 4096)
        self.program: Program | None = None
        self.maps: list[CoreMap] = []
        self._reported: set[str] = set()  # broken queues `newly_broken` told of
        self.offloaded: Program | None = None

    def _queue(self, cfg: QueueConfig | None, name: str,
               kw: dict[str, bool]) -> native.VqHandle | None:
        if cfg is None:
            return None
        vq = native.vq_new(self._gmem, cfg.size, cfg.desc, cfg.avail, cfg.used,
                           start_idx=cfg.last_avail_idx, name=name, **kw)
        used = cfg.last_avail_idx if cfg.used_idx is None else cfg.used_idx
        native.vq_set_state(vq, {"last_avail_idx": cfg.last_avail_idx, "used_idx": used,
                                 "signalled_used": used, "notifications": True})
        return vq

    # ------------------------------------------------------------ hand-over

    @classmethod
    def from_device(cls, switch: HostSwitch, ifindex: int, device: Device,
                    pair: int = 0, **kw: int) -> HostPort:
        """Take receiveq(pair+1) and transmitq(pair+1) of a live `device` into C."""
        if not device.live or device.memory is None:
            raise LocalProtocolError("the C datapath takes queues after DRIVER_OK")
        configs: list[QueueConfig | None] = []
        for index in (2 * pair, 2 * pair + 1):
            slot = device.slot(index)
            if slot is None or slot.engine is None:
                configs.append(None)
                continue
            engine = slot.engine
            if not isinstance(engine, SplitDeviceQueue):
                raise LocalProtocolError("the C datapath runs split rings only")
            if engine.in_flight or slot.held or slot.backlog or engine.broken:
                raise LocalProtocolError(f"queue {index} has chains in flight, frames "
                                         "waiting or is broken: drain it first")
            configs.append(QueueConfig(slot.size, *slot.addresses, engine.last_avail_idx,
                                       engine.used_idx))
        mtu = device.profile.mtu if device.has(_N.VIRTIO_NET_F_MTU) else 0
        port = cls(switch, ifindex, device.memory, configs[0], configs[1],
                   device.negotiated, mtu=mtu, **kw)
        port._device = (device, pair)
        for index in (2 * pair, 2 * pair + 1):
            slot = device.slot(index)
            if slot is not None:
                slot.engine = None  # parked: the device ignores kicks until hand_back
        return port

    _device: tuple[Device, int] | None = None

    def queue_states(self) -> dict[str, dict[str, object]]:
        """GET_VRING_BASE: each queue's indices and break record."""
        out: dict[str, dict[str, object]] = {}
        for name, vq in (("rx", self._rx), ("tx", self._tx)):
            if vq is not None:
                out[name] = native.vq_state(vq)
        return out

    def rx_room(self) -> int | None:
        """Receive buffers posted and not taken yet (one C call, a fresh read of the
        driver's avail idx): frames that can come in now, one buffer a frame.  None
        without a receive queue, or with a broken one."""
        return native.port_rx_room(self.handle)

    def rx_arm(self) -> bool:
        """Ask the driver to kick receiveq when it posts buffers (the C port turns those
        kicks off while the ring holds buffers, on again when it runs dry); True when
        buffers are there already, so the caller need not wait for a kick."""
        if self._rx is None:
            return False
        try:
            return native.vq_enable_notifications(self._rx)
        except native.VringError:
            return False  # broken: the burst that finds it counts the drop

    def tx_quiet(self, quiet: bool) -> bool:
        """Transmit kicks off (`quiet`: the caller polls the ring, as vhost-net's tx
        handler does while it works) or back on; on, True when chains arrived meanwhile
        (poll again before waiting for a kick)."""
        if self._tx is None:
            return False
        if quiet:
            native.vq_disable_notifications(self._tx)
            return False
        try:
            return native.vq_enable_notifications(self._tx)
        except native.VringError:
            return False  # broken: nothing more will be taken

    def tx_pending(self) -> int:
        """Transmit chains the driver has made available and the port not taken yet: a
        caller whose `tx_burst` stopped at its budget comes back for them (with
        EVENT_IDX the driver does not kick again for chains it already published)."""
        if self._tx is None:
            return 0
        try:
            return native.vq_pending(self._tx)
        except native.VringError:
            return 0  # broken: nothing more will be taken

    def set_carrier(self, up: bool) -> None:
        """The guest's link (the operator's up/down): while it is down, frames other
        ports redirect here are dropped (`drop_link_down`)."""
        native.port_set_carrier(self.handle, up)

    def hand_back(self) -> None:
        """Give the queues back to the device model's Python engines, at C's indices."""
        if self._device is None:
            raise LocalProtocolError("this port did not take its queues from a Device")
        device, pair = self._device
        self._leave_table()  # the switch sends it nothing from here on
        native.port_release(self.handle)
        self.rx_arm()  # the model expects the driver's kicks: leave them on
        self.tx_quiet(False)
        assert device.memory is not None
        for index, vq in ((2 * pair, self._rx), (2 * pair + 1, self._tx)):
            slot = device.slot(index)
            if slot is None or vq is None:
                continue
            st = native.vq_state(vq)
            engine = SplitDeviceQueue(
                device.memory, slot.size, *slot.addresses,
                event_idx=bool(self.features & (1 << _F.VIRTIO_F_EVENT_IDX)),
                indirect=bool(self.features & (1 << _F.VIRTIO_F_INDIRECT_DESC)),
                last_avail_idx=int(st["last_avail_idx"]),
                used_idx=int(st["used_idx"]), name=f"q{index}")
            engine.broken = _ring_error(st)
            slot.engine = engine
            slot.last_signalled = engine.used_idx
        self.close()

    def _leave_table(self) -> None:
        table = self.switch.table
        if any(port is self for *_, port in table):
            self.switch.set_table([(mac, live, wait, None if port is self else port)
                                   for mac, live, wait, port in table])

    def close(self) -> None:
        """Leave the switch (and its table); the handles go with the object."""
        self._leave_table()
        self.switch.ports.pop(self.ifindex, None)
        self._device = None

    # ------------------------------------------------------------ programs

    def attach(self, program: Program | None, maps: Sequence[CoreMap] | None = None,
               engine: str = "interp") -> None:
        """Offload `program` onto this port (None detaches), to run on `engine`: interp,
        or jit (compiled, cached by digest; the port's runs call the compiled code).  Its
        maps are created from the program's specs unless `maps` (CoreMaps shared with
        someone else) are given."""
        if program is None:
            native.port_attach(self.handle, None, None)
            self.program, self.maps = None, []
            return
        core_maps = list(maps) if maps is not None else [CoreMap(s) for s in program.maps]
        native.port_attach(self.handle, *_loaded(program, core_maps, engine))
        self.program, self.maps = program, core_maps

    def attach_offload(self, program: Program | None, maps: Sequence[CoreMap] = (),
                       engine: str = "interp") -> None:
        """Run the program the guest offloaded (on `engine`, over the device's maps) on
        every frame into the guest, after the host-attached one; None detaches."""
        if program is None:
            native.port_attach_offload(self.handle, None, None)
        else:
            native.port_attach_offload(self.handle, *_loaded(program, maps, engine))
        self.offloaded = program

    # ------------------------------------------------------------ bursts

    def rx_burst(self, frames: Sequence[bytes]) -> BurstOut:
        """Frames from the wire, in bursts of at most `burst_size` (one C call each)."""
        return self._bursts_in(frames, native.port_rx_burst)

    def redirect_in(self, frames: Sequence[bytes]) -> BurstOut:
        """Frames a program on a port outside the core redirected here: past the
        host-attached program, through the offloaded one (as the switch's own redirects
        go), in bursts of at most `burst_size`."""
        return self._bursts_in(frames, native.port_redirect_in)

    def _bursts_in(self, frames: Sequence[bytes],
                   call: Callable[[native.PortHandle, native.Burst, native.Burst], int]
                   ) -> BurstOut:
        """`frames` through `call` a burst of at most `burst_size` at a time; what the
        port's programs sent to the wire, and the interrupts due."""
        wire: list[PackedFrames] = []
        step = self.burst_size
        for at in range(0, len(frames), step):
            self._in = _loaded_burst(self._in, frames[at:at + step] if len(frames) > step
                                     else frames)
            self._wire.clear()
            call(self.handle, self._in, self._wire)
            if self._wire.count:
                wire.append(self._wire.packed())
        return BurstOut(_joined(wire), self.switch.interrupts())

    def tx_burst(self, budget: int = native.BURST_MAX) -> BurstOut:
        """Frames the guest transmitted: every available tx chain, up to `budget`."""
        wire: list[PackedFrames] = []
        while budget > 0:
            self._wire.clear()
            n = native.port_tx_burst(self.handle, min(budget, self.burst_size), self._wire)
            if self._wire.count:
                wire.append(self._wire.packed())
            budget -= n
            if n == 0:
                break
        return BurstOut(_joined(wire), self.switch.interrupts())

    # ------------------------------------------------------------ state

    @property
    def stats(self) -> dict[str, int]:
        """The port's counters: packets, bytes, XDP actions, drops by reason."""
        return native.port_stats(self.handle)

    def last_fault(self) -> str:
        """Why the core stopped the last faulting run (counted as xdp_fault)."""
        return native.port_last_fault(self.handle)

    def newly_broken(self, queue: str) -> RingError | None:
        """The error that broke queue `queue` ("rx" or "tx") since the last call that
        reported it, else None: one cheap C call, for the caller to check after a burst
        (a ring the driver broke sets DEVICE_NEEDS_RESET, as the model's would)."""
        vq = self._rx if queue == "rx" else self._tx
        if vq is None or queue in self._reported or not native.vq_broken(vq):
            return None
        self._reported.add(queue)
        return _ring_error(native.vq_state(vq))

    def offload_fault(self) -> str:
        """Why the core stopped the offloaded program's last faulting run (off_fault)."""
        return native.port_offload_fault(self.handle)

    def broken(self) -> dict[str, RingError]:
        """Queues a hostile driver broke, with the error virtio_spec.split would raise."""
        out: dict[str, RingError] = {}
        for name, st in self.queue_states().items():
            err = _ring_error(st)
            if err is not None:
                out[name] = err
        return out


__all__ = ["BurstOut", "HostPort", "HostSwitch", "PumpOut", "QueueConfig", "SwitchOut",
           "TableEntry", "TxOut"]
