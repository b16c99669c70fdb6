"""A virtio-net driver model (virtio 1.3 §3.1.1, §5.1.5, §5.1.6), sans-I/O.

Theory of operation
-------------------
`Driver` talks to its device through two channels and performs no I/O itself:

* transport requests (`guest.transport`): one at a time, `next_request()` hands out the
  next one and `reply(value)` answers it (`fail_request(err)` when the transport or the
  device refused it).  Initialization is a sequence of such requests driven by the table
  in `guest.init`; later ones are kicks and config reads.
* the rings in shared guest memory (`guest.queues.DriverQueue` over the virtio_spec
  engines), plus the interrupts the edge delivers: `interrupt(queue)` for a used-buffer
  notification, `config_interrupt()` for a configuration change.

What happened comes out of `next_event()` / `events()` (`guest.events`): frames received,
control commands completed, kick decisions and why, device errors.

Queue layout (§5.1.2): receiveq(k+1) = 2k, transmitq(k+1) = 2k+1, controlq = 2N.  The
driver programs every queue of the N pairs the device offers, fills every receive queue
(mergeable buffers when VIRTIO_NET_F_MRG_RXBUF is negotiated, §5.1.6.3), and uses the
pairs the device was told about (1 after reset, more after VQ_PAIRS_SET, §5.1.6.5.6).

Lending a pair: pairs named in `lend_pairs` are handed at DRIVER_OK to another
datapath (the C one, `guest.datapath.GuestPort.from_driver`) with nothing posted: the
driver keeps their ring areas but posts, reaps and kicks nothing on them (`lent`) until
`take_back()` returns them at the other datapath's indices with its chains in flight.

Hostile device: every answer is checked (feature refusal, config values, queue sizes,
used lengths, num_buffers, ack bytes); what cannot be trusted is dropped with a
`DeviceError` event naming the clause, and initialization problems end in FAILED.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from virtio_spec.ctrl import (
    VirtioNetCtrlAnnounce,
    VirtioNetCtrlClass,
    VirtioNetCtrlMac,
    VirtioNetCtrlMq,
    build_ctrl,
    check_command_allowed,
    command_name,
)
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature, describe, mask_of, negotiate
from virtio_spec.memory import GuestMemory
from virtio_spec.offload import XdpCapabilities
from virtio_spec.status import DeviceStatus
from virtio_spec.structs import (
    VIRTIO_NET_CONFIG_SIZE,
    VirtioNetHdrGso,
    VirtioNetStatus,
    config_ranges,
    net_hdr_size,
    net_hdr_struct,
    virtio_net_config,
)

from .ctrl import CommandRefused, CtrlCommand
from .events import (
    ConfigChanged,
    CtrlCompleted,
    DeviceError,
    DriverEvent,
    DriverReady,
    FeaturesNegotiated,
    FrameReceived,
    InitFailed,
    TxCompleted,
    UsedReaped,
)
from .init import RESET_POLLS, InitEvent, InitState, next_state
from .queues import Allocator, DriverQueue, Reaped
from .transport import (
    EnableQueue,
    Kick,
    ReadConfig,
    ReadDeviceFeatures,
    ReadQueueMax,
    ReadStatus,
    Request,
    WriteDriverFeatures,
    WriteStatus,
)

_F = VirtioFeature
_N = VirtioNetFeature
_S = DeviceStatus
_C = VirtioNetCtrlClass

#: Everything this driver model knows how to use.
SUPPORTED_FEATURES = mask_of((
    _F.VIRTIO_F_VERSION_1, _F.VIRTIO_F_EVENT_IDX, _F.VIRTIO_F_INDIRECT_DESC,
    _F.VIRTIO_F_RING_PACKED, _N.VIRTIO_NET_F_MAC, _N.VIRTIO_NET_F_STATUS, _N.VIRTIO_NET_F_MTU,
    _N.VIRTIO_NET_F_MRG_RXBUF, _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX,
    _N.VIRTIO_NET_F_CTRL_VLAN, _N.VIRTIO_NET_F_CTRL_MAC_ADDR, _N.VIRTIO_NET_F_GUEST_ANNOUNCE,
    _N.VIRTIO_NET_F_MQ, _N.VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, _N.VIRTIO_NET_F_GUEST_CSUM,
    _N.VIRTIO_NET_F_XDP_OFFLOAD,
))
#: §5.1.6.3.1: without MRG_RXBUF (and without guest GSO) buffers SHOULD hold 1526 bytes.
MIN_RX_BUFFER = 1526
_ETH_HLEN, _VLAN_HLEN = 14, 4

Continuation = Callable[[Any], None]

class Driver:
    """One virtio-net driver instance over `memory`, allocating with `allocator`."""

    def __init__(self, memory: GuestMemory, allocator: Allocator, *,
                 features: int = SUPPORTED_FEATURES, extra_features: int = 0,
                 queue_size: int = 256, rx_buffer_size: int = 1536,
                 lend_pairs: Iterable[int] = ()) -> None:
        self.memory = memory
        self.allocator = allocator
        self.wanted = features & SUPPORTED_FEATURES
        self.extra_features = extra_features  # accepted even if not offered: test hook
        self.queue_size = queue_size
        self.rx_buffer_size = rx_buffer_size
        self.state = InitState.FAILED
        self.offered = 0
        self.negotiated = 0
        self.mac = bytes(6)
        self.mtu = 1500
        self.max_pairs = 1
        self.active_pairs = 1
        self.xdp_caps: XdpCapabilities | None = None
        self.queues: dict[int, DriverQueue] = {}
        # pairs handed to another datapath at DRIVER_OK (the C one); `lent` holds the
        # queue indices it runs now: the driver posts, reaps and kicks nothing on them
        self.lend_pairs = frozenset(lend_pairs)
        self.lent: set[int] = set()
        self._status = 0
        self._polls = 0
        self._plan: list[tuple[int, str]] = []
        self._outbox: deque[tuple[Request, Continuation | None]] = deque()
        self._pending: tuple[Request, Continuation | None] | None = None
        self._events: deque[DriverEvent] = deque()
        self._ctrl: dict[int, CtrlCommand] = {}

    # ------------------------------------------------------------ sans-I/O plumbing

    def next_request(self) -> Request | None:
        """The next transport request, or None.  Each must be answered first."""
        if self._pending is not None:
            raise LocalProtocolError(f"{self._pending[0].describe()} is still unanswered")
        if not self._outbox:
            return None
        self._pending = self._outbox.popleft()
        return self._pending[0]

    def reply(self, value: Any = None) -> None:
        """The transport's answer to the request `next_request()` returned."""
        if self._pending is None:
            raise LocalProtocolError("reply without a request in flight")
        _, cont = self._pending
        self._pending = None
        if cont is not None:
            cont(value)

    def fail_request(self, error: Exception) -> None:
        """The transport or the device refused the request in flight."""
        if self._pending is None:
            raise LocalProtocolError("fail_request without a request in flight")
        request, _ = self._pending
        self._pending = None
        if self.state not in (InitState.LIVE, InitState.FAILED):
            self._init_event(InitEvent.ERROR, f"{request.describe()} refused: {error}")
        else:
            self._events.append(DeviceError(getattr(request, "queue", -1),
                                             f"{request.describe()} refused: {error}"))

    def next_event(self) -> DriverEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[DriverEvent]:
        """Every event not yet taken."""
        out = list(self._events)
        self._events.clear()
        return out

    def _send(self, request: Request, cont: Continuation | None = None) -> None:
        self._outbox.append((request, cont))

    def has(self, bit: int) -> bool:
        """True when feature `bit` was negotiated."""
        return bool(self.negotiated >> bit & 1)

    @property
    def hdr_len(self) -> int:
        return net_hdr_size(self.has(_N.VIRTIO_NET_F_HASH_REPORT))

    # ------------------------------------------------------------ initialization

    def initialize(self) -> None:
        """Start §3.1.1 from the top (reset); drive it with next_request()/reply()."""
        self._release_queues()
        self._outbox.clear()
        self.negotiated = self.offered = 0
        self.active_pairs = 1
        self._enter(InitState.RESET)

    def reset(self) -> None:
        """Write 0 to the status (§2.4) and drop every queue; no re-initialization."""
        self._release_queues()
        self._outbox.clear()
        self.negotiated = 0
        self._status = 0
        self.state = InitState.RESET
        self._send(WriteStatus(0))

    def _release_queues(self) -> None:
        for q in self.queues.values():
            q.release()
        self.queues.clear()
        self.lent.clear()
        for cmd in self._ctrl.values():
            cmd.done, cmd.error = True, "device reset"
        self._ctrl.clear()

    def _write_status(self, bits: int, cont: Continuation) -> None:
        self._status = int(bits)
        self._send(WriteStatus(int(bits)), cont)

    def _enter(self, state: InitState) -> None:
        self.state = state
        done: Continuation = lambda _: self._init_event(InitEvent.DONE)  # noqa: E731
        if state is InitState.RESET:
            self._polls = 0
            self._write_status(0, done)
        elif state is InitState.WAIT_RESET:
            self._send(ReadStatus(), self._on_reset_status)
        elif state is InitState.ACKNOWLEDGE:
            self._write_status(int(_S.ACKNOWLEDGE), done)
        elif state is InitState.DRIVER:
            self._write_status(int(_S.ACKNOWLEDGE | _S.DRIVER), done)
        elif state is InitState.READ_FEATURES:
            self._send(ReadDeviceFeatures(), self._on_features)
        elif state is InitState.WRITE_FEATURES:
            self._send(WriteDriverFeatures(self.negotiated), done)
        elif state is InitState.FEATURES_OK:
            self._write_status(self._status | _S.FEATURES_OK, done)
        elif state is InitState.CHECK_FEATURES_OK:
            self._send(ReadStatus(), self._on_features_ok)
        elif state is InitState.READ_CONFIG:
            self._read_config()
        elif state is InitState.SETUP_QUEUES:
            index, _ = self._plan[len(self.queues)]
            self._send(ReadQueueMax(index), self._on_queue_max)
        elif state is InitState.DRIVER_OK:
            self._write_status(self._status | _S.DRIVER_OK, done)
        elif state is InitState.LIVE:
            caps = self.xdp_caps
            xdp = (f"max_insns={caps.xdp_max_insns} max_maps={caps.xdp_max_maps} "
                   f"map_types={sorted(caps.map_type_ids)} helpers={sorted(caps.helper_ids)}"
                   if caps else "")
            self._events.append(DriverReady(
                ":".join(f"{b:02x}" for b in self.mac), self.mtu, self.max_pairs,
                len(self.queues), xdp))
            for pair in sorted(self.lend_pairs):
                self.lent.update(i for i in (2 * pair, 2 * pair + 1) if i in self.queues)
            for q in self.queues.values():
                if q.name.startswith("receiveq") and q.index not in self.lent:
                    self._refill(q)
        elif state is InitState.FAILED:
            # §3.1.1: "the driver SHOULD set the FAILED status bit to indicate that it
            # has given up on the device".
            self._write_status(self._status | _S.FAILED, lambda _: None)

    def _init_event(self, event: InitEvent, reason: str = "") -> None:
        before = self.state
        after = next_state(before, event)
        if after is InitState.FAILED:
            self._events.append(InitFailed(str(before), reason or str(event)))
        self._enter(after)

    def _on_reset_status(self, value: Any) -> None:
        if int(value) == 0:
            self._init_event(InitEvent.STATUS_ZERO)
            return
        self._polls += 1
        if self._polls >= RESET_POLLS:
            # §2.4.2: the driver waits for the status to read 0 before re-initializing.
            self._init_event(InitEvent.ERROR, f"status still {int(value):#x} after reset "
                                              f"({RESET_POLLS} reads, \u00a72.4.2)")
        else:
            self._init_event(InitEvent.STATUS_NOT_ZERO)

    def _on_features(self, value: Any) -> None:
        self.offered = int(value)
        if not self.offered >> _F.VIRTIO_F_VERSION_1 & 1:
            self._init_event(InitEvent.ERROR, "device does not offer VIRTIO_F_VERSION_1 "
                                              "(\u00a76.2); this driver is modern-only")
            return
        # §2.2.1: accept only offered bits whose dependencies are accepted too.
        self.negotiated = negotiate(self.offered, self.wanted) | self.extra_features
        declined = self.offered & ~self.negotiated
        self._events.append(FeaturesNegotiated(
            self.offered, self.negotiated, tuple(describe(self.offered)),
            tuple(describe(self.negotiated)), tuple(describe(declined))))
        self._init_event(InitEvent.DONE)

    def _on_features_ok(self, value: Any) -> None:
        if int(value) & _S.FEATURES_OK:
            self._init_event(InitEvent.FEATURES_KEPT)
        else:
            # §3.1.1 step 6: "If it is not set, the device does not support our subset
            # of features and the device is unusable."  FAILED goes on top of what the
            # device kept (§2.1.1: the driver never clears a bit it reads back).
            self._status = int(value) & ~_S.DEVICE_NEEDS_RESET
            self._init_event(InitEvent.FEATURES_REFUSED,
                             f"device refused FEATURES_OK (status reads {int(value):#04x}, "
                             f"\u00a73.1.1)")

    def _read_config(self) -> None:
        """Read the config fields the offer makes exist, one request per run of adjacent
        fields (virtio 1.3 §2.5.1: never touch a field whose feature is not offered);
        absent fields stay zero and `_on_config` sees the whole structure."""
        buf = bytearray(VIRTIO_NET_CONFIG_SIZE)
        ranges = config_ranges(self.offered)

        def store(off: int, length: int, last: bool) -> Continuation:
            def cont(value: Any) -> None:
                buf[off:off + length] = bytes(value)[:length].ljust(length, b"\0")
                if last:
                    self._on_config(bytes(buf))
            return cont

        for i, (off, length) in enumerate(ranges):
            self._send(ReadConfig(off, length), store(off, length, i == len(ranges) - 1))

    def _on_config(self, value: Any) -> None:
        raw = bytes(value)
        cfg = virtio_net_config.parse(raw.ljust(VIRTIO_NET_CONFIG_SIZE, b"\0"))
        if self.has(_N.VIRTIO_NET_F_MAC):
            self.mac = bytes(cfg.mac)
        if self.has(_N.VIRTIO_NET_F_MTU):
            if not 68 <= cfg.mtu:
                self._init_event(InitEvent.ERROR, f"config mtu {cfg.mtu} is below 68 (\u00a75.1.4.1)")
                return
            self.mtu = int(cfg.mtu)
        # DESIGN.md: the XDP offload capabilities follow supported_tunnel_types.
        # named after the profile they equal (a refusal says which), else "device"
        self.xdp_caps = XdpCapabilities.from_config(cfg).as_profile("device") \
            if self.has(_N.VIRTIO_NET_F_XDP_OFFLOAD) else None
        self.max_pairs = 1
        if self.has(_N.VIRTIO_NET_F_MQ):
            if not 1 <= cfg.max_virtqueue_pairs <= 0x8000:
                self._init_event(InitEvent.ERROR, f"config max_virtqueue_pairs "
                                                  f"{cfg.max_virtqueue_pairs} outside 1..0x8000 "
                                                  f"(\u00a75.1.4.1)")
                return
            self.max_pairs = int(cfg.max_virtqueue_pairs)
        self._plan = [(2 * k + r, f"{'receiveq' if r == 0 else 'transmitq'}{k + 1}")
                      for k in range(self.max_pairs) for r in (0, 1)]
        if self.has(_N.VIRTIO_NET_F_CTRL_VQ):
            self._plan.append((2 * self.max_pairs, "controlq"))
        self._init_event(InitEvent.DONE)

    def _on_queue_max(self, value: Any) -> None:
        index, name = self._plan[len(self.queues)]
        top = int(value)
        if top <= 0:
            self._init_event(InitEvent.ERROR, f"queue {index} ({name}) is not available")
            return
        packed = self.has(_F.VIRTIO_F_RING_PACKED)
        size = min(top, self.queue_size)
        if not packed:
            size = 1 << (size.bit_length() - 1)  # §2.7: a split queue size is a power of 2
        queue = DriverQueue(index, name, self.memory, self.allocator, size, packed=packed,
                            event_idx=self.has(_F.VIRTIO_F_EVENT_IDX),
                            indirect=self.has(_F.VIRTIO_F_INDIRECT_DESC))
        self.queues[index] = queue
        self._send(queue.setup_request(),
                   lambda _: self._send(EnableQueue(index), self._on_queue_enabled))

    def _on_queue_enabled(self, _: Any) -> None:
        more = len(self.queues) < len(self._plan)
        self._init_event(InitEvent.MORE_QUEUES if more else InitEvent.QUEUES_DONE)

    # ------------------------------------------------------------ datapath

    def _require_live(self) -> None:
        if self.state is not InitState.LIVE:
            # §3.1.1: "The driver MUST NOT notify the device before setting DRIVER_OK."
            raise LocalProtocolError(f"driver is {self.state}, not LIVE")

    def _publish(self, q: DriverQueue) -> None:
        decision = q.publish()
        self._events.append(decision)
        if decision.sent:
            self._send(Kick(q.index, decision.why))

    @property
    def rx_buffer_len(self) -> int:
        """Bytes per receive buffer for the negotiated features (§5.1.6.3.1)."""
        if self.has(_N.VIRTIO_NET_F_MRG_RXBUF):
            # "the driver MUST ... buffers ... at least the size of the struct virtio_net_hdr"
            return max(self.rx_buffer_size, self.hdr_len)
        return max(self.rx_buffer_size, MIN_RX_BUFFER,
                   self.hdr_len + self.mtu + _ETH_HLEN + _VLAN_HLEN)

    def lent_queues(self, pair: int = 0) -> tuple[DriverQueue, DriverQueue]:
        """receiveq(pair+1) and transmitq(pair+1) while another datapath runs them."""
        rx, tx = 2 * pair, 2 * pair + 1
        if rx not in self.lent or tx not in self.lent:
            raise LocalProtocolError(f"pair {pair} is not lent (lent queues: "
                                     f"{sorted(self.lent)})")
        return self.queues[rx], self.queues[tx]

    def take_back(self, pair: int = 0,
                  states: dict[int, tuple[int, int, dict[int, tuple[int, int, bool]],
                                          list[int]]] | None = None) -> None:
        """The datapath that ran pair `pair` gives it back: per queue index, (avail idx,
        next used idx, chains in flight head -> (gpa, len, writable), buffer blocks); no
        state means it posted nothing.  Receive buffers are topped up (if LIVE)."""
        queues = self.lent_queues(pair)
        for q in queues:
            if states is not None and q.index in states:
                q.take_over(*states[q.index])
            self.lent.discard(q.index)
        if self.state is InitState.LIVE:
            self._refill(queues[0])

    def _refill(self, q: DriverQueue) -> None:
        added = 0
        while q.free_descriptors >= 1:
            self._events.append(q.add([], [self.rx_buffer_len]))
            added += 1
        if added:
            self._publish(q)

    def transmit(self, frames: Iterable[bytes], pair: int = 0) -> int:
        """Queue frames on transmitq(pair + 1); returns how many fit in the ring."""
        self._require_live()
        if not 0 <= pair < self.active_pairs:
            raise LocalProtocolError(f"pair {pair} is not in use ({self.active_pairs} active)")
        if 2 * pair + 1 in self.lent:
            raise LocalProtocolError(f"transmitq{pair + 1} is lent to another datapath")
        q = self.queues[2 * pair + 1]
        self._tx_done(q)
        layout = net_hdr_struct(self.has(_N.VIRTIO_NET_F_HASH_REPORT))
        # §5.1.6.2.1: num_buffers 0; flags 0 without VIRTIO_NET_F_CSUM; GSO_NONE.
        hdr = bytes(layout.build(dict(flags=0, gso_type=0, hdr_len=0, gso_size=0,
                                      csum_start=0, csum_offset=0, num_buffers=0,
                                      hash_value=0, hash_report=0, padding_reserved=0)))
        queued = 0
        for frame in frames:
            frame = bytes(frame)
            if not frame:
                raise LocalProtocolError("cannot transmit an empty frame")
            limit = self.mtu + _ETH_HLEN + _VLAN_HLEN
            if self.has(_N.VIRTIO_NET_F_MTU) and len(frame) > limit:
                # §5.1.4.2: no packets above mtu (plus link header) without GSO.
                raise LocalProtocolError(f"frame of {len(frame)} bytes exceeds mtu {self.mtu}")
            if q.free_descriptors < q.descriptors_needed(2):
                break
            self._events.append(q.add([hdr, frame], []))
            queued += 1
        if queued:
            self._publish(q)
        return queued

    def ctrl_in_flight(self) -> list[CtrlCommand]:
        """The control commands made available that the device has not returned."""
        return list(self._ctrl.values())

    def ctrl_command(self, cls: int, command: int, body: Any = None, *,
                     result_size: int = 0) -> CtrlCommand:
        """Send a control command; the returned object is completed when the device
        returns the chain (`interrupt(controlq)`).  `body` is a dict for the
        virtio_spec.ctrl struct of (cls, command), or raw data bytes."""
        self._require_live()
        index = 2 * self.max_pairs
        q = self.queues.get(index)
        if q is None:
            raise LocalProtocolError("no control queue: VIRTIO_NET_F_CTRL_VQ not negotiated")
        data = bytes([cls, command]) + body if isinstance(body, bytes | bytearray) \
            else build_ctrl(cls, command, body)
        self._check_command(cls, command, data[2:])
        readable = [data[:2]] + ([data[2:]] if len(data) > 2 else [])
        writable = [1] + ([result_size] if result_size else [])
        if q.free_descriptors < q.descriptors_needed(len(readable) + len(writable)):
            raise LocalProtocolError("control queue full")
        added = q.add(readable, writable)
        self._events.append(added)
        cmd = CtrlCommand(cls, command, command_name(cls, command), added.head, body)
        self._ctrl[added.head] = cmd
        self._publish(q)
        return cmd

    def _check_command(self, cls: int, command: int, body: bytes) -> None:
        """Refuse what the driver MUST NOT send, before it reaches the ring."""
        try:
            # virtio 1.3 §5.1.6.5.1.2 and kin: no command whose feature was not negotiated
            check_command_allowed(cls, command, self.negotiated)
        except RemoteProtocolError as err:
            raise CommandRefused(str(err)) from None
        if (cls, command) == (VirtioNetCtrlClass.VIRTIO_NET_CTRL_MQ,
                              VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET):
            # virtio 1.3 §5.1.6.5.6.1: MUST NOT request 0 or more than max_virtqueue_pairs
            pairs = int.from_bytes(body[:2], "little")
            if not 1 <= pairs <= self.max_pairs:
                raise CommandRefused(f"VQ_PAIRS_SET {pairs} outside 1..{self.max_pairs} "
                                     f"(virtio 1.3 \u00a75.1.6.5.6.1)")

    def interrupt(self, queue: int) -> None:
        """A used-buffer notification for `queue`: reap and process what came back."""
        q = self.queues.get(queue)
        if q is None:
            self._events.append(DeviceError(queue, "interrupt for a queue the driver has not set up"))
            return
        if queue in self.lent:
            return  # the datapath the queue is lent to reaps it
        try:
            reaped = q.reap()
        except RingError as err:
            self._events.append(DeviceError(queue, str(err), err.clause))
            return
        for r in reaped:
            self._events.append(UsedReaped(queue, r.id, r.len))
        if q.name.startswith("receiveq"):
            self._receive(q, reaped)
            if self.state is InitState.LIVE:
                self._refill(q)
        elif q.name.startswith("transmitq"):
            for r in reaped:
                self._events.append(TxCompleted(queue, r.id))
        else:
            for r in reaped:
                self._ctrl_done(r)

    def _tx_done(self, q: DriverQueue) -> None:
        try:
            reaped = q.reap()
        except RingError as err:
            self._events.append(DeviceError(q.index, str(err), err.clause))
            return
        for r in reaped:
            self._events.append(UsedReaped(q.index, r.id, r.len))
            self._events.append(TxCompleted(q.index, r.id))

    def _receive(self, q: DriverQueue, reaped: list[Reaped]) -> None:
        size = self.hdr_len
        mergeable = self.has(_N.VIRTIO_NET_F_MRG_RXBUF)
        layout = net_hdr_struct(self.has(_N.VIRTIO_NET_F_HASH_REPORT))
        i = 0
        while i < len(reaped):
            first = reaped[i]
            i += 1
            problem = self._rx_buffer_problem(first, size)
            if problem:
                self._events.append(DeviceError(q.index, *problem))
                continue
            hdr = layout.parse(first.data[:size])
            count = int(hdr.num_buffers)
            if (not mergeable and count != 1) or count < 1:
                # §5.1.6.4.1: num_buffers is 1 without MRG_RXBUF, and at least 1 with it.
                self._events.append(DeviceError(q.index, f"used id {first.id}: num_buffers "
                                                         f"{count} (mergeable: {mergeable})",
                                                "5.1.6.4.1"))
                continue
            if int(hdr.gso_type) != VirtioNetHdrGso.VIRTIO_NET_HDR_GSO_NONE:
                self._events.append(DeviceError(q.index, f"used id {first.id}: gso_type "
                                                         f"{int(hdr.gso_type)} without guest GSO",
                                                "5.1.6.4.1"))
                i += count - 1
                continue
            parts = [first.data[size:]]
            for _ in range(count - 1):
                if i >= len(reaped):
                    self._events.append(DeviceError(
                        q.index, f"used id {first.id}: {count - len(parts)} of {count} buffers "
                                 f"missing", "5.1.6.4"))
                    parts = []
                    break
                nxt = reaped[i]
                i += 1
                if nxt.overrun:
                    self._events.append(DeviceError(q.index, f"used id {nxt.id}: len {nxt.len} "
                                                             f"exceeds the {nxt.capacity}-byte "
                                                             f"buffer", "2.7.8.1"))
                parts.append(nxt.data)
            if parts:
                self._events.append(FrameReceived(q.index, b"".join(parts), count))

    @staticmethod
    def _rx_buffer_problem(r: Reaped, size: int) -> tuple[str, str] | None:
        if r.overrun:
            # §2.7.8.1: len is the number of bytes written into the buffer.
            return f"used id {r.id}: len {r.len} exceeds the {r.capacity}-byte buffer", "2.7.8.1"
        if r.len < size:
            return f"used id {r.id}: len {r.len} is shorter than the {size}-byte header", "5.1.6.4"
        return None

    def _ctrl_done(self, r: Reaped) -> None:
        cmd = self._ctrl.pop(r.id, None)
        if cmd is None:
            self._events.append(DeviceError(-1, f"used id {r.id} is not a control command"))
            return
        problem = cmd.complete(r)
        if problem:
            self._events.append(DeviceError(2 * self.max_pairs, problem, "5.1.6.5"))
        if cmd.ok:
            body = cmd.body if isinstance(cmd.body, dict) else {}
            key = (cmd.cls, cmd.command)
            if key == (_C.VIRTIO_NET_CTRL_MQ, VirtioNetCtrlMq.VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET):
                self.active_pairs = int(body.get("virtqueue_pairs", self.active_pairs))
            elif key == (_C.VIRTIO_NET_CTRL_MAC, VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_ADDR_SET):
                self.mac = bytes(body.get("mac", self.mac))
        if cmd.ack is not None:
            self._events.append(CtrlCompleted(cmd.name, cmd.cls, cmd.command, cmd.ack,
                                              cmd.result))

    # ------------------------------------------------------------ configuration changes

    def config_interrupt(self) -> None:
        """A configuration change notification: re-read status and config status."""
        self._send(ReadStatus(), self._on_config_status)

    def _on_config_status(self, value: Any) -> None:
        needs_reset = bool(int(value) & _S.DEVICE_NEEDS_RESET)
        if not self.has(_N.VIRTIO_NET_F_STATUS):
            self._events.append(ConfigChanged(int(value), True, False, needs_reset))
            return
        self._send(ReadConfig(6, 2), lambda raw: self._on_net_status(int(value), bytes(raw)))

    def _on_net_status(self, device_status: int, raw: bytes) -> None:
        status = int.from_bytes(raw[:2], "little")
        announce = bool(status & VirtioNetStatus.VIRTIO_NET_S_ANNOUNCE)
        needs_reset = bool(device_status & _S.DEVICE_NEEDS_RESET)
        self._events.append(ConfigChanged(device_status,
                                          bool(status & VirtioNetStatus.VIRTIO_NET_S_LINK_UP),
                                          announce, needs_reset))
        if announce and self.has(_N.VIRTIO_NET_F_GUEST_ANNOUNCE) and not needs_reset \
                and self.state is InitState.LIVE:
            # §5.1.6.5.4: the driver announces itself, then acks with ANNOUNCE_ACK.
            self.ctrl_command(_C.VIRTIO_NET_CTRL_ANNOUNCE,
                              VirtioNetCtrlAnnounce.VIRTIO_NET_CTRL_ANNOUNCE_ACK)


__all__ = ["MIN_RX_BUFFER", "SUPPORTED_FEATURES", "Driver"]
