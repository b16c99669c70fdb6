"""The library's own virtio-net driver: what the device checks play against a device.

`DriverSession` does what a conforming driver does (virtio 1.3 §3.1.1) one step at a
time, so that a check can stop anywhere, look, or misbehave on purpose: reset, negotiate,
program the queues with the driver-side mocks of `virtio_spec.testing` over the memory
the device's adapter attached, set DRIVER_OK, then post control requests, transmit frames
and post receive buffers.  It never reads an implementation's internals: only the
`Transport` calls and the guest memory the rings live in.

`ReferenceDriver` wraps a session as a `DriverUnderTest`, so the driver checks have a
known-good driver to run against and the library's two halves check each other.

PYTEST_DONT_REWRITE: a check's message is the same under pytest (the plugin) as under
`vxdp conformance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..ctrl import VIRTIO_NET_CTRL_ACK_SIZE, VirtioNetCtrlClass, VirtioNetCtrlRx
from ..features import VirtioFeature, VirtioNetFeature, mask_of, negotiate
from ..memory import GuestAllocator, GuestMemory
from ..status import DeviceStatus
from ..structs import (
    VIRTIO_NET_CONFIG_OFFSETS,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_WRITE,
    net_hdr_size,
)
from ..testing import MockPackedQueue, MockSplitQueue, Used
from .adapter import Transport, Unsupported
from .observe import ObservedChain, walk_split

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus

#: What the session accepts unless a check asks for more: the plain modern device with a
#: control queue and the control features that need nothing else.
DEFAULT_WANT = mask_of([
    _F.VIRTIO_F_VERSION_1, _N.VIRTIO_NET_F_CTRL_VQ, _N.VIRTIO_NET_F_CTRL_RX,
    _N.VIRTIO_NET_F_CTRL_RX_EXTRA, _N.VIRTIO_NET_F_CTRL_MAC_ADDR, _N.VIRTIO_NET_F_MAC,
    _N.VIRTIO_NET_F_STATUS, _N.VIRTIO_NET_F_MTU,
])
MEMORY_SIZE = 1 << 21
QUEUE_SIZE = 64
RESET_POLLS = 8


class SetupError(Exception):
    """The device would not let the session reach the state a check needs (reported as
    an error, not as a failure of the clause being checked)."""


def ethernet_frame(n: int = 0, length: int = 60, *, dst: bytes = b"\xff" * 6) -> bytes:
    """A frame to send or receive: broadcast by default (no MAC filter drops it),
    EtherType 0x88B5 (IEEE local experimental), payload marked with `n`."""
    src = bytes([0x02, 0, 0, 0, 0, n & 0xFF])
    body = bytes((n + i) & 0xFF for i in range(max(length - 14, 0)))
    return dst + src + b"\x88\xb5" + body


def net_hdr(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
            csum_start: int = 0, csum_offset: int = 0, num_buffers: int = 0) -> bytes:
    """A 12-byte VERSION_1 virtio_net_hdr (§5.1.6)."""
    return (bytes([flags, gso_type]) + hdr_len.to_bytes(2, "little")
            + gso_size.to_bytes(2, "little") + csum_start.to_bytes(2, "little")
            + csum_offset.to_bytes(2, "little") + num_buffers.to_bytes(2, "little"))


@dataclass(frozen=True)
class CtrlReply:
    """A control request the device marked used: ack byte, used.len, result bytes."""

    head: int
    used_len: int
    ack: int
    result: bytes


MockQueue = MockSplitQueue | MockPackedQueue


class DriverSession:
    """One conforming driver driving `dev` (see the module docstring)."""

    def __init__(self, dev: Transport, *, memory_size: int = MEMORY_SIZE) -> None:
        self.dev = dev
        self.offered = dev.read_device_features()
        self.negotiated = 0
        self.memory_size = memory_size
        self.mem: GuestMemory | None = None
        self.alloc: GuestAllocator | None = None
        self.queues: dict[int, MockQueue] = {}
        self.notifications: list[int] = []

    # -- status and features ---------------------------------------------------------

    def has(self, bit: int) -> bool:
        return bool(self.negotiated >> bit & 1)

    def status(self) -> int:
        return self.dev.read_status()

    def reset(self) -> None:
        """Write 0 and wait for the status to read 0 (§2.4)."""
        self.dev.write_status(0)
        for _ in range(RESET_POLLS):
            if self.dev.read_status() == 0:
                break
        self.queues.clear()
        self.negotiated = 0
        self.notifications.extend(self.dev.take_notifications())

    def negotiate(self, want: int = DEFAULT_WANT, *, exact: int | None = None) -> bool:
        """Reset, ACKNOWLEDGE, DRIVER, write features, FEATURES_OK, re-read the status.

        Writes `exact` if given, else what a sane driver takes of `want` from the offer.
        Returns whether FEATURES_OK stuck."""
        self.reset()
        self.dev.write_status(_S.ACKNOWLEDGE)
        self.dev.write_status(_S.ACKNOWLEDGE | _S.DRIVER)
        features = negotiate(self.offered, want) if exact is None else exact
        self.dev.write_driver_features(features)
        self.dev.write_status(_S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK)
        ok = bool(self.dev.read_status() & _S.FEATURES_OK)
        self.negotiated = features if ok else 0
        return ok

    def config(self, field: str, length: int) -> int:
        """A little-endian config field by name."""
        raw = self.dev.read_config(VIRTIO_NET_CONFIG_OFFSETS[field], length)
        return int.from_bytes(raw, "little")

    @property
    def pairs(self) -> int:
        """Queue pairs that exist (§5.1.2): max_virtqueue_pairs with MQ, else 1."""
        if self.has(_N.VIRTIO_NET_F_MQ):
            return max(1, self.config("max_virtqueue_pairs", 2))
        return 1

    def rxq(self, pair: int = 0) -> int:
        return 2 * pair

    def txq(self, pair: int = 0) -> int:
        return 2 * pair + 1

    @property
    def ctrlq(self) -> int:
        if not self.has(_N.VIRTIO_NET_F_CTRL_VQ):
            raise SetupError("no control queue: VIRTIO_NET_F_CTRL_VQ not negotiated")
        return 2 * self.pairs

    @property
    def hdr_size(self) -> int:
        return net_hdr_size(self.has(_N.VIRTIO_NET_F_HASH_REPORT))

    # -- queues ------------------------------------------------------------------------

    def memory(self) -> GuestMemory:
        if self.mem is None:
            self.mem = self.dev.attach_memory(self.memory_size)
            self.alloc = GuestAllocator(self.mem)
        return self.mem

    def setup_queue(self, index: int, size: int = QUEUE_SIZE) -> MockQueue:
        """Program and enable queue `index` with a fresh ring of at most `size`."""
        mem = self.memory()
        limit = self.dev.queue_max_size(index)
        if limit <= 0:
            raise SetupError(f"device reports no queue {index}")
        size = min(size, limit)
        packed = self.has(_F.VIRTIO_F_RING_PACKED)
        if not packed:
            size = 1 << (size.bit_length() - 1)  # split sizes are powers of 2 (§2.7)
        kwargs = dict(event_idx=self.has(_F.VIRTIO_F_EVENT_IDX),
                      indirect=self.has(_F.VIRTIO_F_INDIRECT_DESC), allocator=self.alloc)
        q: MockQueue = (MockPackedQueue(mem, size, **kwargs) if packed  # type: ignore[arg-type]
                        else MockSplitQueue(mem, size, **kwargs))  # type: ignore[arg-type]
        self.dev.setup_queue(index, size, *q.addresses)
        self.dev.enable_queue(index)
        self.queues[index] = q
        return q

    def setup_queues(self, size: int = QUEUE_SIZE) -> None:
        for pair in range(self.pairs):
            self.setup_queue(self.rxq(pair), size)
            self.setup_queue(self.txq(pair), size)
        if self.has(_N.VIRTIO_NET_F_CTRL_VQ):
            self.setup_queue(self.ctrlq, size)

    def driver_ok(self) -> None:
        self.dev.write_status(_S.ACKNOWLEDGE | _S.DRIVER | _S.FEATURES_OK | _S.DRIVER_OK)

    def bring_up(self, want: int = DEFAULT_WANT, *, size: int = QUEUE_SIZE) -> DriverSession:
        """Negotiate, set up every queue, DRIVER_OK; SetupError if the device refuses."""
        if not self.negotiate(want):
            raise SetupError(f"device refused FEATURES_OK for {self.negotiated_attempt(want):#x}")
        self.setup_queues(size)
        self.driver_ok()
        return self

    def negotiated_attempt(self, want: int) -> int:
        return negotiate(self.offered, want)

    # -- traffic -----------------------------------------------------------------------

    def kick(self, index: int) -> None:
        self.dev.kick(index)
        self.notifications.extend(self.dev.take_notifications())

    def take_notifications(self) -> list[int]:
        self.notifications.extend(self.dev.take_notifications())
        out, self.notifications = self.notifications, []
        return out

    def add(self, index: int, readable: Sequence[bytes] = (), writable: Sequence[int] = (), *,
            indirect: bool = False, publish: bool = True) -> int:
        """Add a chain to queue `index` (published unless told not to)."""
        return self.queues[index].add_chain(readable, writable, indirect=indirect,
                                            publish=publish)

    def reap(self, index: int) -> list[Used]:
        return self.queues[index].used()

    def observe(self, index: int, head: int) -> ObservedChain:
        """The chain at `head` of split queue `index`, as laid out in memory."""
        q = self.queues[index]
        if not isinstance(q, MockSplitQueue):
            raise Unsupported("observe() reads split rings")
        return walk_split(self.memory(), q.desc, q.size, head, queue=index)

    def indirect_from(self, index: int, head: int, *, first_direct: int = 0,
                      pointer_flags: int = 0) -> None:
        """Rewrite an unpublished split chain so its descriptors after the first
        `first_direct` live in an indirect table (§2.7.5.3): the same buffers, one
        table; `pointer_flags` are added to the pointer's INDIRECT (e.g. WRITE)."""
        q = self.queues[index]
        assert isinstance(q, MockSplitQueue)
        ids = q.driver.descriptors_of(head)
        descs = [q.peek_desc(i) for i in ids]
        rest = descs[first_direct:]
        table = q.raw_table([(a, n, (f & ~1) | (1 if k + 1 < len(rest) else 0), k + 1)
                             for k, (a, n, f, _) in enumerate(rest)])
        flags = int(VIRTQ_DESC_F_INDIRECT) | pointer_flags
        q.poke_desc(ids[first_direct], addr=table, len=16 * len(rest), flags=flags, next=0)

    def ctrl(self, cls: int, command: int, data: bytes = b"", *, result: int = 0,
             pieces: bool = False, indirect: bool = False) -> CtrlReply | None:
        """Send one control request and return the device's reply, None if the device
        did not mark it used.  `pieces` puts class, command and data in separate
        descriptors."""
        q = self.ctrlq
        readable = [bytes([cls]), bytes([command]), data] if pieces else \
            [bytes([cls, command]) + data]
        readable = [r for r in readable if r]
        # The ack is a buffer of its own; a command-specific-result follows it (1.4).
        writable = [VIRTIO_NET_CTRL_ACK_SIZE] + ([result] if result else [])
        head = self.add(q, readable, writable, indirect=indirect)
        self.kick(q)
        for used in self.reap(q):
            if used.id == head:
                ack = used.data[0] if used.data else -1
                return CtrlReply(head, used.len, ack, used.data[1:])
        return None

    def post_rx(self, count: int, size: int, pair: int = 0) -> list[int]:
        """Post `count` receive buffers of `size` bytes and kick."""
        q = self.rxq(pair)
        heads = [self.add(q, (), [size], publish=False) for _ in range(count)]
        self.queues[q].publish()
        self.kick(q)
        return heads

    def transmit(self, frame: bytes, hdr: bytes | None = None, *, pieces: int = 0,
                 pair: int = 0, indirect: bool = False) -> int:
        """Queue `hdr` + `frame` on transmitq and kick.  `pieces` > 0 cuts the bytes into
        buffers of that many bytes."""
        data = (net_hdr() if hdr is None else hdr) + frame
        if pieces:
            readable = [data[i:i + pieces] for i in range(0, len(data), pieces)]
        else:
            readable = [data]
        q = self.txq(pair)
        head = self.add(q, readable, (), indirect=indirect)
        self.kick(q)
        return head


class ReferenceDriver:
    """The session as a `DriverUnderTest`: negotiates `want`, fills receiveq1 with
    `rx_buffers` buffers of `rx_size` bytes, then transmits and polls on request."""

    def __init__(self, want: int = DEFAULT_WANT | mask_of([_F.VIRTIO_F_INDIRECT_DESC,
                                                          _F.VIRTIO_F_EVENT_IDX]), *,
                 rx_buffers: int = 8, rx_size: int = 1526 + 12) -> None:
        self.want = want
        self.rx_buffers = rx_buffers
        self.rx_size = rx_size
        self.session: DriverSession | None = None

    def start(self, device: Transport) -> None:
        s = self.session = DriverSession(device)
        if not s.negotiate(self.want):
            device.write_status(int(s.status()) | _S.FAILED)
            return
        s.setup_queues()
        s.driver_ok()
        if s.has(_N.VIRTIO_NET_F_MTU) and not s.has(_N.VIRTIO_NET_F_MRG_RXBUF):
            # §5.1.4.2: room for one packet of mtu plus the Ethernet header.
            self.rx_size = max(self.rx_size, s.hdr_size + s.config("mtu", 2) + 14)
        s.post_rx(self.rx_buffers, self.rx_size)

    def _live(self) -> DriverSession:
        if self.session is None or not self.session.negotiated:
            raise Unsupported("driver is not live")
        return self.session

    def transmit(self, frames: Sequence[bytes]) -> None:
        s = self._live()
        for frame in frames:
            s.transmit(frame)

    def poll(self) -> list[bytes]:
        s = self._live()
        s.take_notifications()
        s.reap(s.txq())
        got = [u.data[s.hdr_size:] for u in s.reap(s.rxq())]
        if got:
            s.post_rx(len(got), self.rx_size)
        return got

    def set_promisc(self, on: bool) -> None:
        s = self._live()
        if not s.has(_N.VIRTIO_NET_F_CTRL_RX):
            return  # §5.1.6.5.1.2: no RX class commands without CTRL_RX
        s.ctrl(VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC,
               bytes([int(on)]))

    def set_queue_pairs(self, pairs: int) -> None:
        raise Unsupported("the reference driver runs one queue pair")

    def close(self) -> None:
        self.session = None


#: VIRTQ_DESC_F_WRITE, for checks that set it where it does not belong.
DESC_F_WRITE = int(VIRTQ_DESC_F_WRITE)

__all__ = [
    "DEFAULT_WANT",
    "DESC_F_WRITE",
    "CtrlReply",
    "DriverSession",
    "ReferenceDriver",
    "SetupError",
    "ethernet_frame",
    "net_hdr",
]
