"""The guest side of the C datapath: one rx/tx queue pair with driver-mode XDP.

Theory of operation
-------------------
`GuestPort` is what a guest's virtio-net driver does per packet, in C (csrc/datapath.c):
it owns the driver side of a receive and a transmit split queue in guest memory and two
buffer pools there, one buffer per chain.  Python calls it once per burst:

    port = GuestPort(memory, allocator, features)
    port.setup_requests()              # SetupQueue for the transport (rx = 0, tx = 1)
    port.start()                       # post every rx buffer; returns the kicks due
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

`Kicks` tell the transport which queues to notify (suppression, §2.7.10, decided in C).
Sans-I/O: nothing here blocks, sleeps or touches a socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from virtio_spec.errors import LocalProtocolError, RingError
from virtio_spec.features import VirtioFeature, VirtioNetFeature
from virtio_spec.memory import GuestMemory
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
from vxdp.bpf.program import Program, ProgType
from vxdp.errors import UsageError

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
                 tx_buffer_size: int = 2048, burst: int = native.BURST_MAX) -> None:
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
            areas = (self._area(desc_table_size(queue_size), DESC_TABLE_ALIGN),
                     self._area(avail_ring_size(queue_size), AVAIL_RING_ALIGN),
                     self._area(used_ring_size(queue_size), USED_RING_ALIGN))
            self.addresses[index] = areas
            vqs.append(native.vq_new(self._gmem, queue_size, *areas, event_idx=event_idx,
                                     driver=True, name=f"q{index}"))
        self._rxq, self._txq = vqs
        rx_pool = self._area(rx_buffers * self.rx_buffer_size, 64)
        tx_pool = self._area(tx_buffers * tx_buffer_size, 64)
        self.handle = native.gport_new(self._rxq, self._txq, features, rx_pool, rx_buffers,
                                       self.rx_buffer_size, tx_pool, tx_buffers,
                                       tx_buffer_size)
        self.burst_size = burst
        # room for a burst of XDP-sized frames and one merged frame of the largest size
        self._pass = native.Burst(burst, burst * 4096 + native.DP_MAX_FRAME)
        self._tx = native.Burst(burst, burst * tx_buffer_size)
        self.program: Program | None = None
        self.maps: list[CoreMap] = []

    def _area(self, size: int, align: int) -> int:
        gpa = self.allocator.alloc(size, align)
        self.memory.translate(gpa, size)[:] = bytes(size)
        self._blocks.append(gpa)
        return gpa

    def setup_requests(self) -> list[SetupQueue]:
        """The transport requests that hand both rings to the device."""
        return [SetupQueue(i, self.queue_size, *self.addresses[i]) for i in (RX_QUEUE,
                                                                                 TX_QUEUE)]

    def start(self) -> Kicks:
        """Post every rx buffer (after DRIVER_OK)."""
        _, mask = native.gport_refill(self.handle)
        return Kicks.from_mask(mask)

    def attach(self, program: Program | None, maps: Sequence[CoreMap] | None = None) -> None:
        """Run `program` in driver mode on every received frame (None detaches)."""
        if program is None:
            native.gport_attach(self.handle, None, None)
            self.program, self.maps = None, []
            return
        if program.prog_type != ProgType.XDP:
            raise UsageError(f"program {program.name!r} is {program.prog_type.name}, not xdp")
        core_maps = list(maps) if maps is not None else [CoreMap(s) for s in program.maps]
        prog = native.prog_load(program.insns, native.MODE_XDP,
                                [m.handle for m in core_maps])
        native.gport_attach(self.handle, prog, native.env_new(0))
        self.program, self.maps = program, core_maps

    def rx_burst(self, budget: int | None = None) -> tuple[list[bytes], Kicks]:
        """Frames the device delivered (at most `budget`), after the guest's program."""
        self._pass.clear()
        _, mask = native.gport_rx_burst(self.handle, budget or self.burst_size, self._pass)
        return self._pass.frames(), Kicks.from_mask(mask)

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

    def broken(self) -> dict[int, RingError]:
        """Queues a hostile device broke (§2.7.8), as RingError."""
        out: dict[int, RingError] = {}
        for index, vq in ((RX_QUEUE, self._rxq), (TX_QUEUE, self._txq)):
            st = native.vq_state(vq)
            if st["broken"]:
                out[index] = RingError(str(st["error"]), str(st["clause"]))
        return out


__all__ = ["GuestPort", "Kicks"]
