"""The guest side of the C datapath: one rx/tx queue pair with driver-mode XDP.

Theory of operation
-------------------
`GuestPort` is what a guest's virtio-net driver does per packet, in C (csrc/datapath.c):
it owns the driver side of a receive and a transmit split queue in guest memory and two
buffer pools there, one buffer per chain.  Python calls it once per burst:

    port = GuestPort(memory, allocator, features)
    port.setup_requests()              # SetupQueue for the transport (rx = 0, tx = 1)
    port.start()                       # post every rx buffer; returns the kicks due
    # or, over a guest.Driver that lent pair 1 at DRIVER_OK (Driver(lend_pairs=[0])):
    port = GuestPort.from_driver(driver)   # its rings, at its indices, nothing posted
    port.hand_back()                       # back to the driver at C's indices
    port.attach(program)               # driver-mode XDP (the fallback), or None
    frames, kicks = port.rx_burst()    # reap -> XDP -> DROP / TX / PASS -> refill
    sent, kicks = port.tx_burst(frames)

Receive: each used buffer starts with a virtio_net_hdr; with VIRTIO_NET_F_MRG_RXBUF its
num_buffers says how many buffers the frame spans (virtio 1.3 §5.1.6.4) and the frame is
reassembled.  Then the guest's program, if attached: DROP counts, TX re-posts the frame on
the guest's tx ring, PASS hands it up (the returned list), REDIRECT is dropped and counted
(the guest has one device).  Used buffers are re-posted at the end of the burst.

The device is hostile: a used id that is not in flight or a used idx running past what
was posted breaks the ring (§2.7.8, `broken()`); a used length past a buffer or a
num_buffers that does not match what was used drops that frame and is counted.

Hand-over.  `from_driver` takes the two rings a `guest.Driver` lent (`lend_pairs`): its
ring areas at its avail index, with nothing in flight (the driver posts no buffers on a
lent pair).  `hand_back` returns them to the driver at C's avail and used indices; the
chains C has in flight (one descriptor, one pool buffer each) become the driver's, which
then reaps them as its own, and the pools are freed with its queues.

`Kicks` tell the transport which queues to notify (suppression, §2.7.10, decided in C).
`interrupts(queue, enable)` is the other direction (§2.7.7): a poller turns used-buffer
notifications off while it works a non-empty ring and on before it sleeps, polling again
when buffers arrived in between (virtio_net's virtqueue_disable_cb /
virtqueue_enable_cb_prepare / virtqueue_poll).
Sans-I/O: nothing here blocks, sleeps or touches a socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from virtio_spec.errors import LocalProtocolError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.memory import GuestMemory
from virtio_spec.split import SplitDriverQueue
from virtio_spec.structs import (
    AVAIL_RING_ALIGN,
    DESC_TABLE_ALIGN,
    USED_RING_ALIGN,
    avail_ring_size,
    desc_table_size,
    used_ring_size,
)
from vxdp import native
from vxdp.bpf.coremaps import CoreMap
from vxdp.bpf.interp import load_xdp
from vxdp.bpf.program import Program
from vxdp.errors import CoreError

from .driver import Driver
from .init import InitState
from .queues import Allocator
from .transport import SetupQueue

_F = VirtioFeature
_N = VirtioNetFeature
RX_QUEUE, TX_QUEUE = 0, 1


@dataclass(frozen=True)
class Kicks:
    """Queues the driver must notify after a burst (suppression already applied)."""

    rx: bool = False
    tx: bool = False

    @classmethod
    def from_mask(cls, mask: int) -> Kicks:
        return cls(bool(mask & 1), bool(mask & 2))


class GuestPort:
    """receiveq1 and transmitq1 of one guest, run by the C datapath."""

    def __init__(self, memory: GuestMemory, allocator: Allocator, features: int, *,
                 queue_size: int = 256, rx_buffers: int | None = None,
                 rx_buffer_size: int | None = None, tx_buffers: int | None = None,
                 tx_buffer_size: int = 2048, burst: int = native.BURST_MAX,
                 rings: dict[int, tuple[int, int, int]] | None = None,
                 start_idx: dict[int, int] | None = None) -> None:
        if features & (1 << _F.VIRTIO_F_RING_PACKED):
            raise LocalProtocolError("the C datapath runs split rings only")
        self.memory = memory
        self.allocator = allocator
        self.features = features
        self.queue_size = queue_size
        mrg = bool(features & (1 << _N.VIRTIO_NET_F_MRG_RXBUF))
        # Linux: mergeable buffers of about a page less headroom; without MRG_RXBUF one
        # buffer must hold the header and the largest frame.
        self.rx_buffer_size = rx_buffer_size or (1536 if mrg else 12 + 1518 + 4)
        self.tx_buffer_size = tx_buffer_size
        rx_buffers = rx_buffers or queue_size
        tx_buffers = tx_buffers or queue_size
        self._blocks: list[int] = []
        event_idx = bool(features & (1 << _F.VIRTIO_F_EVENT_IDX))
        self._gmem = native.gmem_new([(r.base, r.view) for r in memory.regions])
        self.addresses: dict[int, tuple[int, int, int]] = {}
        vqs = []
        for index in (RX_QUEUE, TX_QUEUE):
            if rings is not None:
                areas = rings[index]  # another driver's rings, at its indices
            else:
                areas = (self._area(desc_table_size(queue_size), DESC_TABLE_ALIGN),
                         self._area(avail_ring_size(queue_size), AVAIL_RING_ALIGN),
                         self._area(used_ring_size(queue_size), USED_RING_ALIGN))
            self.addresses[index] = areas
            vqs.append(native.vq_new(self._gmem, queue_size, *areas, event_idx=event_idx,
                                     driver=True, name=f"q{index}",
                                     start_idx=(start_idx or {}).get(index, 0)))
        self._rxq, self._txq = vqs
        rx_pool = self._area(rx_buffers * self.rx_buffer_size, 64)
        tx_pool = self._area(tx_buffers * tx_buffer_size, 64)
        self._pools = (rx_pool, tx_pool)  # the driver's on a hand-back
        self.handle = native.gport_new(self._rxq, self._txq, features, rx_pool, rx_buffers,
                                       self.rx_buffer_size, tx_pool, tx_buffers,
                                       tx_buffer_size)
        self.burst_size = burst
        # room for a burst of XDP-sized frames and one merged frame of the largest size
        self._pass = native.Burst(burst, burst * 4096 + native.DP_MAX_FRAME)
        self._tx = native.Burst(burst, burst * tx_buffer_size)
        self.program: Program | None = None
        self.maps: list[CoreMap] = []
        self._driver: tuple[Driver, int] | None = None
        self.reaped = 0  # frames the last rx_burst took off the ring (before XDP)

    # ------------------------------------------------------------ hand-over

    @classmethod
    def from_driver(cls, driver: Driver, pair: int = 0, **kw: int) -> GuestPort:
        """Run receiveq(pair+1) and transmitq(pair+1), which `driver` lent at DRIVER_OK,
        from their current indices; the buffer pools come from the driver's allocator."""
        if driver.state is not InitState.LIVE:
            raise LocalProtocolError("the C datapath takes queues after DRIVER_OK")
        rxq, txq = driver.lent_queues(pair)
        rings: dict[int, tuple[int, int, int]] = {}
        start: dict[int, int] = {}
        for index, q in ((RX_QUEUE, rxq), (TX_QUEUE, txq)):
            ring = q.ring
            if q.packed or not isinstance(ring, SplitDriverQueue):
                raise LocalProtocolError("the C datapath runs split rings only")
            if q.in_flight or ring.avail_idx != ring.last_used_idx:
                raise LocalProtocolError(f"{q.name} has {q.in_flight} chains in flight: "
                                         "lend it before posting buffers")
            if q.size != rxq.size:
                raise LocalProtocolError(f"{q.name} has {q.size} entries, receiveq "
                                         f"{rxq.size}: one size for both")
            rings[index] = q.addresses
            start[index] = ring.avail_idx
        port = cls(driver.memory, driver.allocator, driver.negotiated,
                   queue_size=rxq.size, rings=rings, start_idx=start, **kw)
        port._driver = (driver, pair)
        return port

    def hand_back(self) -> None:
        """Give the queues back to the driver that lent them, at C's indices: the chains
        in flight (C's pool buffers) become the driver's, the pools go with its queues."""
        if self._driver is None:
            raise LocalProtocolError("this port did not take its queues from a Driver")
        driver, pair = self._driver
        self._driver = None
        states: dict[int, tuple[int, int, dict[int, tuple[int, int, bool]], list[int]]] = {}
        for index, vq, size, pool in ((RX_QUEUE, self._rxq, self.rx_buffer_size,
                                       self._pools[0]),
                                      (TX_QUEUE, self._txq, self.tx_buffer_size,
                                       self._pools[1])):
            # the driver asks for interrupts; C leaves the rings saying the same (on a ring
            # the device broke too: the flags are written first, the driver finds the break)
            try:
                native.gport_interrupts(self.handle, index, True)
            except CoreError:
                pass
            st = native.vq_state(vq)
            chains = {head: (gpa, size, index == RX_QUEUE)
                      for head, gpa in native.gport_inflight(self.handle, index,
                                                             self.queue_size)}
            states[2 * pair + index] = (int(st["avail_idx"]), int(st["last_used_idx"]),
                                        chains, [pool])
        self._blocks = [b for b in self._blocks if b not in self._pools]
        driver.take_back(pair, states)

    def _area(self, size: int, align: int) -> int:
        gpa = self.allocator.alloc(size, align)
        self.memory.translate(gpa, size)[:] = bytes(size)
        self._blocks.append(gpa)
        return gpa

    def setup_requests(self) -> list[SetupQueue]:
        """The transport requests that hand both rings to the device."""
        return [SetupQueue(i, self.queue_size, *self.addresses[i]) for i in (RX_QUEUE,
                                                                                 TX_QUEUE)]

    def interrupts(self, queue: int, enable: bool) -> bool:
        """Used-buffer notifications for queue 0 (rx) or 1 (tx) off or on (virtio 1.3
        §2.7.7); on enabling, True when used buffers arrived meanwhile: poll again."""
        return native.gport_interrupts(self.handle, queue, enable)

    def start(self) -> Kicks:
        """Post every rx buffer (after DRIVER_OK)."""
        _, mask = native.gport_refill(self.handle)
        return Kicks.from_mask(mask)

    def attach(self, program: Program | None, maps: Sequence[CoreMap] | None = None,
               engine: str = "interp") -> None:
        """Run `program` in driver mode on every received frame (None detaches), on
        `engine`: interp, or jit (compiled, cached by digest; the port's runs call the
        compiled code)."""
        if program is None:
            native.gport_attach(self.handle, None, None)
            self.program, self.maps = None, []
            return
        core_maps = list(maps) if maps is not None else [CoreMap(s) for s in program.maps]
        native.gport_attach(self.handle, load_xdp(program, core_maps, engine),
                            native.env_new(0))
        self.program, self.maps = program, core_maps

    def rx_burst(self, budget: int | None = None) -> tuple[Sequence[bytes], Kicks]:
        """Frames the device delivered (at most `budget`), after the guest's program,
        packed (`vxdp.frames.PackedFrames`); `reaped` says how many the ring gave (fewer
        than the budget: it is empty)."""
        self._pass.clear()
        self.reaped, mask = native.gport_rx_burst(self.handle, budget or self.burst_size,
                                                  self._pass)
        return self._pass.packed(), Kicks.from_mask(mask)

    def tx_burst(self, frames: Sequence[bytes]) -> tuple[int, Kicks]:
        """Post frames on the tx ring; returns how many fit (the rest: try again after the
        device used some) and the kicks due."""
        sent, mask = 0, 0
        for at in range(0, len(frames), self.burst_size):
            chunk = frames[at:at + self.burst_size]
            self._tx.load(chunk)
            n, m = native.gport_tx_burst(self.handle, self._tx)
            sent, mask = sent + n, mask | m
            if n < len(chunk):
                break
        return sent, Kicks.from_mask(mask)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: frames, bytes, XDP actions, drops by reason."""
        return native.gport_stats(self.handle)

    def last_fault(self) -> str:
        return native.gport_last_fault(self.handle)

    def queue_states(self) -> dict[int, dict[str, object]]:
        """Each queue's indices, in-flight count and break record, by 0 (rx) / 1 (tx)."""
        return {RX_QUEUE: native.vq_state(self._rxq), TX_QUEUE: native.vq_state(self._txq)}

    def broken(self) -> dict[int, RingError]:
        """Queues a hostile device broke (§2.7.8), as RingError."""
        out: dict[int, RingError] = {}
        for index, vq in ((RX_QUEUE, self._rxq), (TX_QUEUE, self._txq)):
            st = native.vq_state(vq)
            if st["broken"]:
                out[index] = RingError(str(st["error"]), str(st["clause"]))
        return out


__all__ = ["GuestPort", "Kicks"]
