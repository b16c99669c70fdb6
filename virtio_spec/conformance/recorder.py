"""The recording device: a virtio-net device that answers a driver and remembers everything.

The driver checks start a `DriverUnderTest` against a `RecordingDevice` and then read
what the driver did.  The device

* offers exactly what the check says (even a set breaking §2.2.2, to see whether the
  driver still accepts it) and can refuse FEATURES_OK on demand;
* logs every transport operation as an `Op`, with the status the driver saw then;
* serves a `virtio_net_config` built from its parameters (mac, status, max pairs, mtu);
* works the rings like a simple device: every chain the driver makes available is
  observed with the lenient walkers of `observe` (rules broken or not) and kept in
  `chains[queue]`; transmit and control chains are used at once (control requests
  acked VIRTIO_NET_OK); receive chains wait for `deliver(frames)`;
* notifies the driver as the driver's suppression fields allow, and asks for every kick
  (used.flags 0; with EVENT_IDX, avail_event = the next avail idx).

It is the library's device: sans-I/O, no threads; the driver's adapter calls it.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field, replace

from ..features import VirtioFeature, VirtioNetFeature
from ..memory import GuestMemory
from ..notify import need_event
from ..status import DeviceStatus, DeviceStatusMachine
from ..structs import (
    DESC_SIZE,
    USED_ELEM_SIZE,
    VIRTIO_NET_CONFIG_SIZE,
    VIRTIO_NET_CONFIG_STD_SIZE,
    net_hdr_size,
    virtio_net_config,
)
from .adapter import CONFIG_NOTIFICATION, TransportRefused
from .observe import ObservedChain, walk_packed, walk_split

_F, _N, _S = VirtioFeature, VirtioNetFeature, DeviceStatus
_U16 = struct.Struct("<H")
MEMORY_BASE = 0x8000_0000


@dataclass(frozen=True)
class Op:
    """One transport operation: `kind`, its arguments, and the status it was made in."""

    kind: str
    args: tuple[int, ...]
    status: int
    data: bytes = b""


@dataclass
class RecordedQueue:
    """A queue the driver programmed, and what the device saw on it."""

    index: int
    size: int
    areas: tuple[int, int, int]
    packed: bool
    enabled: bool = False
    last_avail: int = 0  # split: avail entries consumed; packed: slot offset
    wrap: bool = True  # packed: the device's wrap counter
    used_idx: int = 0  # split: used.idx; packed: used offset
    used_wrap: bool = True
    signalled: int = 0
    avail_seen: list[int] = field(default_factory=list)  # split: avail.idx at each scan
    avail_flags_seen: list[int] = field(default_factory=list)
    rx_waiting: deque[ObservedChain] = field(default_factory=deque)


class RecordingDevice:
    """See the module docstring.  `offer` is the feature mask the device offers."""

    def __init__(self, offer: int, *, mac: bytes = bytes.fromhex("525400c0ffee"),
                 mtu: int = 1500, max_pairs: int = 1, queue_max: int = 256,
                 refuse_features_ok: bool = False) -> None:
        self.offer = offer
        self.mac = mac
        self.mtu = mtu
        self.max_pairs = max_pairs
        self.queue_max = queue_max
        self.refuse_features_ok = refuse_features_ok
        self.machine = DeviceStatusMachine(offer, validate_offer=False)
        self.log: list[Op] = []
        self.mem: GuestMemory | None = None
        self.queues: dict[int, RecordedQueue] = {}
        self.chains: dict[int, list[ObservedChain]] = {}
        self.accepted: list[int] = []  # every feature write
        self._notes: list[int] = []

    # -- what the checks read -----------------------------------------------------------

    @property
    def status(self) -> int:
        return int(self.machine.status)

    @property
    def negotiated(self) -> int:
        return self.machine.negotiated or 0

    def has(self, bit: int) -> bool:
        return bool(self.negotiated >> bit & 1)

    def ops(self, *kinds: str) -> list[Op]:
        return [op for op in self.log if not kinds or op.kind in kinds]

    @property
    def pairs(self) -> int:
        return self.max_pairs if self.has(_N.VIRTIO_NET_F_MQ) else 1

    def role(self, index: int) -> str:
        if self.has(_N.VIRTIO_NET_F_CTRL_VQ) and index == 2 * self.pairs:
            return "ctrl"
        return "rx" if index % 2 == 0 else "tx"

    def all_chains(self, role: str | None = None) -> list[ObservedChain]:
        return [c for i, cs in self.chains.items() for c in cs
                if role is None or self.role(i) == role]

    @property
    def hdr_size(self) -> int:
        return net_hdr_size(self.has(_N.VIRTIO_NET_F_HASH_REPORT))

    # -- the transport ----------------------------------------------------------------

    def _op(self, kind: str, *args: int, data: bytes = b"") -> None:
        self.log.append(Op(kind, tuple(args), self.status, data))

    def read_device_features(self) -> int:
        self._op("read_features")
        return self.offer

    def write_driver_features(self, features: int) -> None:
        self._op("write_features", features)
        self.accepted.append(features)
        self.machine.write_features(features)

    def read_status(self) -> int:
        self._op("read_status", self.status)
        return self.status

    def write_status(self, value: int) -> None:
        self._op("write_status", value)
        if value & _S.FEATURES_OK and not self.status & _S.FEATURES_OK and \
                self.refuse_features_ok:
            return
        outcome = self.machine.write_status(value)
        if value == 0 and outcome.accepted:
            self.queues.clear()

    def config_bytes(self) -> bytes:
        values = dict(mac=self.mac, status=1, max_virtqueue_pairs=self.max_pairs,
                      mtu=self.mtu, speed=0xFFFFFFFF, duplex=0xFF, rss_max_key_size=0,
                      rss_max_indirection_table_length=0, supported_hash_types=0,
                      supported_tunnel_types=0, xdp_max_insns=4096, xdp_max_maps=8,
                      xdp_max_map_mem_kib=1024, xdp_map_types=6, xdp_abi_version=1,
                      xdp_helpers=[0xE, 0, 0, 0])
        raw = bytes(virtio_net_config.build(values))
        xdp = self.offer >> _N.VIRTIO_NET_F_XDP_OFFLOAD & 1
        return raw[:VIRTIO_NET_CONFIG_SIZE if xdp else VIRTIO_NET_CONFIG_STD_SIZE]

    def read_config(self, offset: int, length: int) -> bytes:
        self._op("read_config", offset, length)
        raw = self.config_bytes()
        if offset < 0 or length < 0 or offset + length > len(raw):
            raise TransportRefused(f"config read {offset}+{length} outside {len(raw)} bytes")
        return raw[offset:offset + length]

    def write_config(self, offset: int, data: bytes) -> None:
        self._op("write_config", offset, len(data), data=bytes(data))

    def queue_max_size(self, index: int) -> int:
        self._op("queue_max", index)
        if self.machine.negotiated is None:
            return 0
        limit = 2 * self.pairs + (1 if self.has(_N.VIRTIO_NET_F_CTRL_VQ) else 0)
        return self.queue_max if 0 <= index < limit else 0

    def attach_memory(self, size: int) -> GuestMemory:
        self._op("attach_memory", size)
        self.mem = GuestMemory([(MEMORY_BASE, bytearray(size))])
        return self.mem

    def set_memory(self, mem: GuestMemory) -> None:
        """For drivers that bring their own memory (vhost-user SET_MEM_TABLE)."""
        self._op("set_memory")
        self.mem = mem

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        self._op("setup_queue", index, size, desc, driver, device)
        self.queues[index] = RecordedQueue(index, size, (desc, driver, device),
                                           self.has(_F.VIRTIO_F_RING_PACKED))
        self.chains.setdefault(index, [])

    def enable_queue(self, index: int) -> None:
        self._op("enable_queue", index)
        if index in self.queues:
            self.queues[index].enabled = True

    def kick(self, index: int) -> None:
        self._op("kick", index)
        if self.machine.queues_live:
            self.scan(index)

    def take_notifications(self) -> list[int]:
        out, self._notes = self._notes, []
        return out

    # -- the device at work -------------------------------------------------------------

    def scan(self, only: int | None = None) -> None:
        """Observe and serve every chain made available since the last scan."""
        if self.mem is None or not self.machine.queues_live:
            return
        for q in list(self.queues.values()):
            if q.enabled and (only is None or q.index == only):
                self._scan(q)

    def _scan(self, q: RecordedQueue) -> None:
        mem = self.mem
        assert mem is not None
        new: list[ObservedChain] = []
        if q.packed:
            for _ in range(q.size):
                chain, off, wrap = walk_packed(mem, q.areas[0], q.size, q.last_avail, q.wrap,
                                               queue=q.index)
                if chain is None:
                    break
                q.last_avail, q.wrap = off, wrap
                new.append(chain)
        else:
            avail = q.areas[1]
            idx = mem.read_u16(avail + 2)
            q.avail_seen.append(idx)
            q.avail_flags_seen.append(mem.read_u16(avail))
            count = (idx - q.last_avail) & 0xFFFF
            if count > q.size:
                count = 0  # decremented or runaway: recorded in avail_seen, not served
            for _ in range(count):
                head = mem.read_u16(avail + 4 + 2 * (q.last_avail % q.size))
                new.append(walk_split(mem, q.areas[0], q.size, head, queue=q.index))
                q.last_avail = (q.last_avail + 1) & 0xFFFF
            if self.has(_F.VIRTIO_F_EVENT_IDX):
                # Ask for a kick at the very next buffer (avail_event, §2.7.10).
                mem.write_u16(q.areas[2] + 4 + USED_ELEM_SIZE * q.size, q.last_avail)
        new = [replace(c, data=c.read(mem)) for c in new]
        self.chains[q.index].extend(new)
        role = self.role(q.index)
        done = []
        for chain in new:
            if role == "rx":
                q.rx_waiting.append(chain)
            elif role == "ctrl":
                first = chain.writable[0] if chain.writable else None
                if first is not None and first.len and mem.contains(first.addr, 1):
                    mem.write(first.addr, b"\x00")  # VIRTIO_NET_OK
                done.append((chain, 1 if first is not None else 0))
            else:
                done.append((chain, 0))
        self._use(q, done)

    def _use(self, q: RecordedQueue, done: list[tuple[ObservedChain, int]]) -> None:
        mem = self.mem
        if not done or mem is None:
            return
        old = q.used_idx
        for chain, written in done:
            if q.packed:
                ring_descs = sum(1 for d in chain.descs if d.table == "ring")
                slot = q.areas[0] + DESC_SIZE * q.used_idx
                flags = (1 << 7 | 1 << 15) if q.used_wrap else 0
                mem.write(slot + 8, struct.pack("<IHH", written, chain.head, flags))
                q.used_idx += ring_descs
                while q.used_idx >= q.size:
                    q.used_idx -= q.size
                    q.used_wrap = not q.used_wrap
            else:
                used = q.areas[2]
                mem.write(used + 4 + USED_ELEM_SIZE * (q.used_idx % q.size),
                          struct.pack("<II", chain.head, written))
                q.used_idx = (q.used_idx + 1) & 0xFFFF
                mem.write_u16(used + 2, q.used_idx)
        if self._wants_interrupt(q, old):
            self._notes.append(q.index)

    def _wants_interrupt(self, q: RecordedQueue, old: int) -> bool:
        mem = self.mem
        assert mem is not None
        if q.packed:
            flags = mem.read_u16(q.areas[1] + 2) & 3
            return flags != 1  # RING_EVENT_FLAGS_DISABLE (DESC is read as ENABLE)
        avail = q.areas[1]
        if self.has(_F.VIRTIO_F_EVENT_IDX):
            event = mem.read_u16(avail + 4 + 2 * q.size)
            return need_event(event, q.used_idx, old)
        return not mem.read_u16(avail) & 1

    def deliver(self, frames: list[bytes], pair: int = 0) -> int:
        """Put frames into the driver's receive buffers (num_buffers 1 each); returns how
        many found a buffer."""
        q = self.queues.get(2 * pair)
        if q is None or self.mem is None:
            return 0
        self._scan(q)
        mem = self.mem
        done = []
        for frame in frames:
            if not q.rx_waiting:
                break
            chain = q.rx_waiting.popleft()
            data = bytearray(self.hdr_size) + frame
            data[10:12] = (1).to_bytes(2, "little")
            room = sum(d.len for d in chain.writable)
            if room < len(data):
                continue
            at = 0
            for d in chain.writable:
                piece = bytes(data[at:at + d.len])
                if piece and mem.contains(d.addr, len(piece)):
                    mem.write(d.addr, piece)
                at += len(piece)
            done.append((chain, len(data)))
        self._use(q, done)
        return len(done)

    def config_changed(self) -> None:
        """Send a configuration change notification."""
        self._notes.append(CONFIG_NOTIFICATION)


__all__ = ["MEMORY_BASE", "Op", "RecordedQueue", "RecordingDevice"]
